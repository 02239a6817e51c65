"""Batched torch toy environments with known answers, following the learners' VecEnv protocol
(hear_vec.agents.base): same-step autoreset, ``info["final_observation"]``.

- :class:`PendulumEnv`: gym's Pendulum-v1 (dynamics, reward, 200-step truncation, random
  initial state), ``num_methods = 1``, one knob (torque) in [-2, 2]. A good policy scores
  about -150 per episode; random play about -1200.
- :class:`HybridContextEnv`: pick the right arm and match a continuous target. Each step shows a
  context ``c ~ U(-1, 1)^2`` (plus the time fraction); episodes are ``horizon`` steps and end
  with ``terminated`` (like the denoising env). Reward per step

      r = [k == k*(c)] + 1 - mean_j |x_j - t_{k,j}(c)|

  with the best arm ``k*(c)`` = the angular sector of c (K equal sectors) and per-arm knob
  targets ``t_k(c) = 0.5 + 0.4 * sign_k * c`` (in [0.1, 0.9]; sign_k differs between arms, so a
  shared knob head cannot serve every arm). The optimum is exactly 2 per step (a uniformly
  random policy gets about 1/K + 2/3).
- :class:`NaNRewardEnv`: wraps an env and returns NaN rewards after ``nan_after`` steps.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from hear_vec.env.spaces import ActionSpec

__all__ = ["PendulumEnv", "HybridContextEnv", "NaNRewardEnv"]


def _angle_normalize(x: Tensor) -> Tensor:
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


class PendulumEnv:
    """``num_envs`` Pendulum-v1 copies: obs = (cos th, sin th, thdot); action[:, 1] = torque."""

    max_speed, max_torque, dt, g, m, l = 8.0, 2.0, 0.05, 10.0, 1.0, 1.0
    max_episode_steps = 200

    def __init__(self, num_envs: int, device: Any = "cpu", seed: int = 0) -> None:
        self.num_envs = num_envs
        self.observation_dim = 3
        self.device = torch.device(device)
        self.action_spec = ActionSpec(1, (-self.max_torque,), (self.max_torque,))
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        self.th = torch.zeros(num_envs, device=self.device)
        self.thdot = torch.zeros(num_envs, device=self.device)
        self.t = torch.zeros(num_envs, dtype=torch.long, device=self.device)

    def _uniform(self, lo: float, hi: float) -> Tensor:
        u = torch.rand(self.num_envs, generator=self.gen, device=self.device)
        return lo + (hi - lo) * u

    def _obs(self) -> Tensor:
        return torch.stack([torch.cos(self.th), torch.sin(self.th), self.thdot], -1)

    def reset(self) -> Tensor:
        self.th = self._uniform(-math.pi, math.pi)
        self.thdot = self._uniform(-1.0, 1.0)
        self.t.zero_()
        return self._obs()

    def step(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]:
        u = action[:, 1].clamp(-self.max_torque, self.max_torque)
        th, thdot = self.th, self.thdot
        cost = _angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * u**2
        g, m, l, dt = self.g, self.m, self.l, self.dt
        newthdot = thdot + (3 * g / (2 * l) * torch.sin(th) + 3.0 / (m * l**2) * u) * dt
        newthdot = newthdot.clamp(-self.max_speed, self.max_speed)
        self.th = th + newthdot * dt
        self.thdot = newthdot
        self.t += 1
        final = self._obs()
        truncated = self.t >= self.max_episode_steps
        terminated = torch.zeros_like(truncated)
        self.th = torch.where(truncated, self._uniform(-math.pi, math.pi), self.th)
        self.thdot = torch.where(truncated, self._uniform(-1.0, 1.0), self.thdot)
        self.t = torch.where(truncated, 0, self.t)
        return self._obs(), -cost, terminated, truncated, {"final_observation": final}


class HybridContextEnv:
    """Contextual hybrid bandit with ``horizon``-step episodes (see the module docstring)."""

    optimum_per_step = 2.0

    def __init__(
        self,
        num_envs: int,
        num_methods: int = 3,
        horizon: int = 3,
        device: Any = "cpu",
        seed: int = 0,
    ) -> None:
        self.num_envs, self.K, self.horizon = num_envs, num_methods, horizon
        self.observation_dim = 3
        self.device = torch.device(device)
        self.action_spec = ActionSpec(num_methods, (0.0, 0.0), (1.0, 1.0))
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        signs = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
        self.signs = signs[torch.arange(num_methods) % 4].to(self.device)  # [K, 2]
        self.c = torch.zeros(num_envs, 2, device=self.device)
        self.t = torch.zeros(num_envs, device=self.device)

    def _new_context(self) -> Tensor:
        return torch.rand(self.num_envs, 2, generator=self.gen, device=self.device) * 2 - 1

    def _obs(self) -> Tensor:
        return torch.cat([self.c, (self.t / self.horizon).unsqueeze(-1)], -1)

    def best_arm(self, c: Tensor) -> Tensor:
        angle = torch.atan2(c[:, 1], c[:, 0]) + math.pi  # [0, 2 pi]
        return (angle / (2 * math.pi) * self.K).long().clamp(max=self.K - 1)

    def targets(self, c: Tensor) -> Tensor:
        """Knob targets of every arm, ``[B, K, 2]``."""
        return 0.5 + 0.4 * self.signs.unsqueeze(0) * c.unsqueeze(1)

    def reward(self, c: Tensor, action: Tensor) -> Tensor:
        k = action[:, 0].round().long().clamp(0, self.K - 1)
        x = action[:, 1:]
        t = self.targets(c)[torch.arange(c.shape[0], device=c.device), k]
        return (k == self.best_arm(c)).float() + 1.0 - (x - t).abs().mean(-1)

    def reset(self) -> Tensor:
        self.c = self._new_context()
        self.t = torch.zeros(self.num_envs, device=self.device)
        return self._obs()

    def step(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]:
        reward = self.reward(self.c, action)
        self.t = self.t + 1
        self.c = self._new_context()
        final = self._obs()
        terminated = self.t >= self.horizon
        self.t = torch.where(terminated, 0.0, self.t)
        truncated = torch.zeros_like(terminated)
        return self._obs(), reward, terminated, truncated, {"final_observation": final}


class NaNRewardEnv:
    """Wraps an env; rewards become NaN from step ``nan_after`` on (forces non-finite losses)."""

    def __init__(self, env: Any, nan_after: int) -> None:
        self.env, self.nan_after, self.steps = env, nan_after, 0
        self.num_envs, self.observation_dim = env.num_envs, env.observation_dim
        self.device, self.action_spec = env.device, env.action_spec

    def reset(self) -> Tensor:
        return self.env.reset()

    def step(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]:
        obs, reward, term, trunc, info = self.env.step(action)
        self.steps += 1
        if self.steps >= self.nan_after:
            reward = torch.full_like(reward, float("nan"))
        return obs, reward, term, trunc, info
