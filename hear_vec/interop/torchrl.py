"""A TorchRL ``EnvBase`` view of :class:`~hear_vec.env.DenoiseEnv`.

    from hear_vec.interop.torchrl import DenoiseTorchRLEnv
    env = DenoiseTorchRLEnv(num_envs=8, device="cpu", data="synthetic")   # DenoiseEnv's args
    data = env.rollout(30, break_when_any_done=False)                    # batch [8, 30]

``batch_size = [N]``; every tensordict lives on the env's device (no host copies). Specs:
``observation`` ``Unbounded [N, D]`` float32; ``reward`` ``Unbounded [N, 1]``; ``done``,
``terminated``, ``truncated`` ``Categorical(2) [N, 1]`` bool. Action, by ``action_layout``:
``"vector"`` (default) ``action`` = ``Bounded [N, 1 + C]`` with ``low = (0, *knob_low)``,
``high = (M - 1, *knob_high)`` (the seed's 4-vector, the method id as a float that the env
rounds); ``"composite"`` ``method`` = ``Categorical(M) [N]`` (int64) and ``knobs`` =
``Bounded [N, C]`` — two action keys, for policies with a hybrid head (e.g. a
``CompositeDistribution`` of a categorical and a bounded continuous part). M is read from
``env.action_spec``. Checks as in :mod:`hear_vec.interop.actions`.

Resets. DenoiseEnv autoresets inside ``step`` (same step): for a row whose episode ends, the
observation it returns is the first of the next episode, and the last one of the episode that
ended is in ``info["final_observation"]``. TorchRL wants the opposite split: ``_step`` returns
the true next observation (``("next", "observation")`` is the episode's last one, so values
can be bootstrapped correctly), and a later ``reset`` with a ``"_reset"`` mask brings the
first observation of the next episode. So ``_step`` puts ``final_observation`` into
``("next", "observation")`` for the rows that ended and keeps the env's post-reset
observation aside; ``_reset`` with a ``"_reset"`` mask hands those kept observations back for
the masked rows (which DenoiseEnv has already restarted — no second draw, so the episode
stream is exactly DenoiseEnv's). This is what ``rollout(..., break_when_any_done=False)``,
``step_and_maybe_reset`` and the collectors do. The observations are never replaced by NaN
(TorchRL's ``AutoResetTransform`` does that because it cannot know the true last
observation; here it is known). Rows may end at different steps.

A ``reset()`` without a mask (or with an all-True mask over rows that did not all just end)
restarts every row: ``DenoiseEnv.reset(seed=...)`` with the seed from ``set_seed`` if one is
pending (so ``set_seed(s)`` then ``reset()`` replays the same episodes), else continuing the
env's RNG stream. A partial mask over rows that are mid-episode is an error: DenoiseEnv has
no per-row reset (TorchRL itself only resets rows that are done). The mask check costs one
device→host read per reset call, and only rollouts with a done row call reset.
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from hear_vec.interop.actions import ActionBounds, check_hybrid_action, check_vector_action

__all__ = ["DenoiseTorchRLEnv", "ACTION_LAYOUTS"]

ACTION_LAYOUTS = ("vector", "composite")


class DenoiseTorchRLEnv(EnvBase):
    """TorchRL view of DenoiseEnv (see the module docstring).

    Args:
        *args, **kwargs: DenoiseEnv's own arguments (``data``, ``num_envs``, ``device``,
            ``max_steps``, ``seed``, ...), with DenoiseEnv's defaults.
        action_layout: "vector" (the seed's 4-vector under ``action``) or "composite"
            (``method`` + ``knobs``).
        clip_actions, validate_actions: as in :mod:`hear_vec.interop.actions`.
        denoise_env: wrap this existing DenoiseEnv (or an env with its public surface)
            instead of building one (then no other DenoiseEnv argument may be given).
    """

    batch_locked = True

    def __init__(self, *args: Any, action_layout: str = "vector", clip_actions: bool = False,
                 validate_actions: bool = True, denoise_env: Any = None,
                 **kwargs: Any) -> None:
        if action_layout not in ACTION_LAYOUTS:
            raise ValueError(f"action_layout must be one of {', '.join(map(repr, ACTION_LAYOUTS))}"
                             f", got {action_layout!r}")
        if denoise_env is None:
            from hear_vec.env import DenoiseEnv

            denoise_env = DenoiseEnv(*args, **kwargs)
        elif args or kwargs:
            raise ValueError("pass either denoise_env or DenoiseEnv arguments, not both")
        env = denoise_env
        device = torch.device(env.device)
        n = int(env.num_envs)
        super().__init__(device=device, batch_size=torch.Size([n]))
        self.denoise_env = env
        self.action_layout = action_layout
        self.clip_actions = bool(clip_actions)
        self.validate_actions = bool(validate_actions)
        self.bounds = ActionBounds(env.action_spec, device)
        dim = int(env.observation_dim)
        self.observation_spec = Composite(
            observation=Unbounded(shape=(n, dim), dtype=torch.float32, device=device),
            shape=(n,), device=device)
        low, high = self.bounds.low_t, self.bounds.high_t
        if action_layout == "vector":
            self.action_spec = Bounded(low=low.expand(n, -1).clone(),
                                       high=high.expand(n, -1).clone(), shape=(n, low.numel()),
                                       dtype=torch.float32, device=device)
        else:
            self.full_action_spec = Composite(
                method=Categorical(self.bounds.num_methods, shape=(n,), dtype=torch.int64,
                                   device=device),
                knobs=Bounded(low=low[1:].expand(n, -1).clone(),
                              high=high[1:].expand(n, -1).clone(),
                              shape=(n, self.bounds.num_knobs), dtype=torch.float32,
                              device=device),
                shape=(n,), device=device)
        self.reward_spec = Unbounded(shape=(n, 1), dtype=torch.float32, device=device)
        self.done_spec = Composite(
            done=Categorical(2, shape=(n, 1), dtype=torch.bool, device=device),
            terminated=Categorical(2, shape=(n, 1), dtype=torch.bool, device=device),
            truncated=Categorical(2, shape=(n, 1), dtype=torch.bool, device=device),
            shape=(n,), device=device)
        self._pending_seed: int | None = None
        self._started = False
        self._next_obs: Tensor | None = None    # post-autoreset observations kept for _reset
        self._restarted: Tensor | None = None   # rows DenoiseEnv restarted in the last step

    # ------------------------------------------------------------------------------------
    def _set_seed(self, seed: int | None) -> None:
        """Applied at the next full reset (``DenoiseEnv.reset(seed=seed)``)."""
        self._pending_seed = None if seed is None else int(seed)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs: Any) -> TensorDictBase:
        mask = None if tensordict is None else tensordict.get("_reset", None)
        if mask is not None and self._started and self._restarted is not None:
            mask = mask.reshape(self.batch_size).to(self.device)
            if not bool((mask & ~self._restarted).any()):  # only rows DenoiseEnv restarted
                self._restarted = self._restarted & ~mask
                return self._reset_output(self._next_obs)
            if not bool(mask.all()):
                raise ValueError("DenoiseTorchRLEnv can only reset rows whose episode just ended "
                                 "(DenoiseEnv has no per-row reset); reset all rows instead")
        seed, self._pending_seed = self._pending_seed, None
        obs = self.denoise_env.reset(seed=seed)
        self._started = True
        self._next_obs = obs
        self._restarted = torch.zeros(self.batch_size, dtype=torch.bool, device=self.device)
        return self._reset_output(obs)

    def _reset_output(self, obs: Tensor) -> TensorDictBase:
        flag = torch.zeros((*self.batch_size, 1), dtype=torch.bool, device=self.device)
        return TensorDict({"observation": obs, "done": flag, "terminated": flag.clone(),
                           "truncated": flag.clone()}, batch_size=self.batch_size,
                          device=self.device)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        if self.action_layout == "vector":
            action = check_vector_action(tensordict.get("action"), self.bounds,
                                         self.batch_size[0], clip=self.clip_actions,
                                         validate=self.validate_actions)
        else:
            action = check_hybrid_action(tensordict.get("method"), tensordict.get("knobs"),
                                         self.bounds, self.batch_size[0],
                                         clip=self.clip_actions, validate=self.validate_actions)
        obs, reward, terminated, truncated, info = self.denoise_env.step(action)
        done = terminated | truncated
        next_obs = torch.where(done.unsqueeze(-1), info["final_observation"], obs)
        self._next_obs = obs
        self._restarted = done
        return TensorDict({
            "observation": next_obs,
            "reward": reward.to(torch.float32).unsqueeze(-1),
            "done": done.unsqueeze(-1),
            "terminated": terminated.unsqueeze(-1),
            "truncated": truncated.unsqueeze(-1),
        }, batch_size=self.batch_size, device=self.device)

    def episode_stats(self, reset: bool = True) -> dict[str, float]:
        """The env's episode accumulators (episodes, mean return, SI-SDR gain, ...)."""
        return self.denoise_env.episode_stats(reset=reset)
