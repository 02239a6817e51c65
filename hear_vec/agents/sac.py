"""Soft Actor-Critic with a hybrid action head (a method and its knobs), fully on the device.

Head (hybrid, not the seed's relaxation)
----------------------------------------
The actor is :class:`~hear_vec.agents.networks.HybridGaussianActor`: a categorical over the K
methods and, for EVERY method k, its own tanh-squashed Gaussian over the C knobs
(``pi(k, x | s) = pi(k | s) pi(x | s, k)``). The twin critics
:class:`~hear_vec.agents.networks.HybridQEnsemble` score ``Q(s, k, x_k)`` for a method and its
own knobs, evaluated for all K methods in one batched pass. Why: each denoiser has different
good knob values (strength 0.8 for one is not strength 0.8 for another), so per-method knobs
remove the interference of a shared knob head; summing exactly over the K methods (instead of
sampling one) gives low-variance discrete policy gradients and targets (as in discrete SAC);
rounding one continuous dimension to a method id (the seed's relaxation) makes Q
discontinuous in that dimension and its gradient meaningless. With K = 1 the categorical part
vanishes (log pi(k) = 0) and this is plain SAC (CleanRL's ``sac_continuous_action``).

Losses (alpha_c, alpha_d: temperatures of the knob and method entropies)
    y      = r + gamma (1 - terminated) sum_k pi(k|s') [min_i Q'_i(s', k, x'_k)
             - alpha_c log pi(x'_k | s', k) - alpha_d log pi(k|s')],   x'_k ~ pi(.|s', k)
    L_Q    = sum_i mean (Q_i(s, k, x) - y)^2
    L_pi   = mean sum_k pi(k|s) [alpha_d log pi(k|s) + alpha_c log pi(x_k|s,k) - min_i Q_i(s,k,x_k)]
    L_alpha = log alpha_c (H_c - H_c*) + log alpha_d (H_d - H_d*)
with H_c = -sum_k pi(k) log pi(x_k | k) (reparameterized sample), H_d the categorical entropy,
H_c* = ``target_entropy`` (default -C) and H_d* = ``discrete_target_entropy_scale * log K``.
Target critics follow with ``lerp_(online, tau)`` after every update.

The loop (:meth:`SAC.train`, at the end of this file): act (uniformly random for the first
``random_steps`` transitions), step the envs, store the transitions in the replay
(:class:`~hear_vec.agents.replay.ReplayBuffer`), then ``updates_per_step`` updates once the
replay holds ``max(warmup_steps / world, batch_size)`` transitions. Step-count flags are
documented in :class:`~hear_vec.agents.config.OffPolicyConfig` and ``hear_vec/agents/ppo.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from hear_vec.agents.base import LearnerBase, VecEnv
from hear_vec.agents.config import OffPolicyConfig
from hear_vec.agents.distributions import sample_hybrid, squashed_sample
from hear_vec.agents.networks import (
    GaussianHybridPolicy,
    HybridGaussianActor,
    HybridQEnsemble,
    build_gaussian_policy,
    copy_module,
)
from hear_vec.agents.off_policy import collect_step, prepare_replay
from hear_vec.agents.optim import make_adam
from hear_vec.agents.replay import ReplayBuffer

__all__ = ["SACConfig", "Temperature", "SAC", "load_policy"]


@dataclass
class SACConfig(OffPolicyConfig):
    """SAC hyper-parameters (defaults follow the seed's flags / CleanRL).

    ``initial_alpha``: starting value of both temperatures. ``autotune``: learn them (else
    fixed). ``target_entropy``: knob-entropy target (None -> -C). ``discrete_target_entropy_scale``:
    method-entropy target as a fraction of log K (0.5: well below uniform, still exploring).
    """

    alpha_lr: float = 3e-4
    initial_alpha: float = 0.2
    autotune: bool = True
    target_entropy: float | None = None
    discrete_target_entropy_scale: float = 0.5

    def validate(self) -> None:
        super().validate()
        if self.initial_alpha <= 0:
            raise ValueError(f"initial_alpha must be > 0, got {self.initial_alpha}")
        if not 0.0 <= self.discrete_target_entropy_scale < 1.0:
            raise ValueError("discrete_target_entropy_scale must be in [0, 1)")


class Temperature(nn.Module):
    """``log_alpha[2]``: (knob temperature, method temperature)."""

    def __init__(self, initial_alpha: float) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.full((2,), math.log(initial_alpha)))


class SAC(LearnerBase):
    """Hybrid-action SAC. ``SAC(env, SACConfig(...), device)``; ``train(total_steps, hooks)``."""

    algo = "sac"
    config: SACConfig
    METRICS = (
        "losses/qf_loss",
        "losses/qf_values",
        "losses/actor_loss",
        "losses/alpha_loss",
        "losses/alpha",
        "losses/alpha_method",
        "losses/entropy_knobs",
        "losses/entropy_method",
    )

    def __init__(self, env: VecEnv, config: SACConfig | None = None, device: Any = None) -> None:
        config = config if config is not None else SACConfig()
        super().__init__(env, config, device)
        self.replay: ReplayBuffer | None = None  # allocated by train(), sized for the run
        self._learning_starts = max(-(-config.warmup_steps // self.world_size), config.batch_size)
        D, K, C, H, dev = (
            self.obs_dim,
            self.num_methods,
            self.num_knobs,
            config.hidden_dims,
            self.device,
        )
        self.actor = HybridGaussianActor(D, K, C, H, nn.ReLU, state_dependent_std=True).to(dev)
        self.critic = HybridQEnsemble(D, K, C, H, members=2).to(dev)
        self.temperature = Temperature(config.initial_alpha).to(dev)
        self._init_distributed(self.actor, self.critic, self.temperature)
        self.critic_target = copy_module(self.critic)
        self.actor_opt = make_adam([(self.actor.parameters(), config.actor_lr)], dev)
        self.critic_opt = make_adam([(self.critic.parameters(), config.critic_lr)], dev)
        self.alpha_opt = make_adam([(self.temperature.parameters(), config.alpha_lr)], dev)
        self.target_entropy = float(
            config.target_entropy if config.target_entropy is not None else -C
        )
        self.target_entropy_method = config.discrete_target_entropy_scale * math.log(K)
        # the method temperature only learns when there is a method to choose
        self.method_alpha_mask = 1.0 if K > 1 else 0.0
        self._actor_params = list(self.actor.parameters())
        self._critic_params = list(self.critic.parameters())
        self._alpha_params = list(self.temperature.parameters())
        self._target_params = list(self.critic_target.parameters())
        self.policy = GaussianHybridPolicy(self.actor, self.knobs)
        self._build_step_fns()

    def _modules(self) -> dict[str, nn.Module]:
        return {
            "actor": self.actor,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "temperature": self.temperature,
        }

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_opt, "critic": self.critic_opt, "alpha": self.alpha_opt}

    def _build_step_fns(self) -> None:
        self._explore_fn = self._wrap(self._explore_impl)
        self._update_fn = self._wrap(self._update_impl)

    # -- acting ----------------------------------------------------------------------------
    @torch.no_grad()
    def _explore_impl(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        method, u = sample_hybrid(*self.actor(obs))
        return method, torch.tanh(u)

    # -- update ----------------------------------------------------------------------------
    def _soft_policy_terms(
        self, obs: Tensor, critic: HybridQEnsemble, detach_critic: bool
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """For every method: ``pi(k|s)``, ``log pi(k|s)``, ``log pi(x_k|s,k)`` of a
        reparameterized knob sample and ``min_i Q_i(s, k, x_k)`` (all ``[B, K]``)."""
        logits, mean, log_std = self.actor(obs)
        x, logp_x = squashed_sample(mean, log_std, self.knobs.log_half_sum)
        logp_k = torch.log_softmax(logits, -1)
        q = critic.all_methods(obs, x, detach_params=detach_critic).min(0).values
        return logp_k.exp(), logp_k, logp_x, q

    def _update_impl(self, idx: Tensor) -> Tensor:
        cfg = self.config
        assert self.replay is not None
        obs, method, x, reward, next_obs, terminated = self.replay.gather(idx)
        alpha = self.temperature.log_alpha.detach().exp()
        alpha_c, alpha_d = alpha[0], alpha[1]

        with torch.no_grad():
            p2, logp_k2, logp_x2, q2 = self._soft_policy_terms(next_obs, self.critic_target, True)
            v2 = (p2 * (q2 - alpha_c * logp_x2 - alpha_d * logp_k2)).sum(-1)
            target = reward + cfg.gamma * (1.0 - terminated) * v2
        q = self.critic(obs, method, x)
        qf_loss = (q - target).square().mean(-1).sum()
        self._optimize(self.critic_opt, qf_loss, self._critic_params, cfg.max_grad_norm)

        p, logp_k, logp_x, q_pi = self._soft_policy_terms(obs, self.critic, True)
        actor_loss = (p * (alpha_d * logp_k + alpha_c * logp_x - q_pi)).sum(-1).mean()
        self._optimize(self.actor_opt, actor_loss, self._actor_params, cfg.max_grad_norm)

        ent_knobs = -(p * logp_x).sum(-1).detach().mean()
        ent_method = -(p * logp_k).sum(-1).detach().mean()
        log_alpha = self.temperature.log_alpha
        alpha_loss = log_alpha[0] * (ent_knobs - self.target_entropy) + self.method_alpha_mask * (
            log_alpha[1] * (ent_method - self.target_entropy_method)
        )
        if cfg.autotune:
            self._optimize(self.alpha_opt, alpha_loss, self._alpha_params)

        torch._foreach_lerp_(self._target_params, self._critic_params, cfg.tau)
        return torch.stack(
            [qf_loss, q.mean(), actor_loss, alpha_loss, alpha_c, alpha_d, ent_knobs, ent_method]
        ).detach()

    # -- loop ------------------------------------------------------------------------------
    def train(self, total_steps: int, hooks: Any = None) -> dict[str, float]:
        """Runs until ``global_step >= total_steps`` (env transitions, all envs and ranks)."""
        self._begin(total_steps, hooks)
        cfg = self.config
        replay = prepare_replay(self, total_steps)
        while self.global_step < total_steps:
            prev = self.global_step
            collect_step(self, replay)
            if replay.size >= self._learning_starts:
                for _ in range(cfg.updates_per_step):
                    out = self._update_fn(replay.sample_idx(cfg.batch_size))
                    self.metrics.add("update", self.METRICS, out)
                    self.num_updates += 1
            if not self._end_iteration(prev):
                break
        return self._finish()

    # -- inference -------------------------------------------------------------------------
    def inference_state(self) -> dict[str, Any]:
        """What :func:`load_policy` needs: the actor and its construction arguments."""
        state = self._inference_header()
        state["actor_kwargs"] = {"activation": "relu", "state_dependent_std": True}
        state["networks"] = {"actor": self.actor.state_dict()}
        return state


def load_policy(state: dict[str, Any], device: Any = None) -> GaussianHybridPolicy:
    """The inference policy (``forward(obs, deterministic=True) -> action``) of a SAC
    ``inference_state()``."""
    if state.get("algo") != "sac":
        raise ValueError(f"not a SAC inference state (algo={state.get('algo')!r})")
    return build_gaussian_policy(state, device)
