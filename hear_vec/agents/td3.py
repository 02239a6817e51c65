"""TD3 with a P-DQN-style hybrid head (a method and its knobs), fully on the device.

Head (hybrid, not the seed's relaxation)
----------------------------------------
The actor outputs deterministic knobs for EVERY method, ``x_k(s) in [-1, 1]^C`` (K*C tanh
outputs); the twin critics :class:`~hear_vec.agents.networks.HybridQEnsemble` score
``Q(s, k, x_k)`` for a method and its own knobs (MP-DQN's fix of P-DQN: one method's value
never depends on the other methods' knobs), evaluated for all K methods in one batched pass.
The policy picks ``k* = argmax_k Q_1(s, k, x_k(s))`` and plays ``x_k*``; so inference needs the
critic as well as the actor (``inference_state`` carries both). Exploration: epsilon-greedy
over methods (``epsilon``) and Gaussian noise on the knobs (``exploration_noise``, in unit-knob
units, i.e. relative to half the knob range, as CleanRL scales it). Why: TD3's deterministic
policy gradient needs a differentiable continuous action; a discrete method fits Q-learning
(argmax over K values) rather than a rounded continuous dimension (the seed's relaxation,
whose Q is a step function in that dimension with zero gradient almost everywhere). With
K = 1 this is plain TD3 (CleanRL's ``td3_continuous_action``).

Losses (target policy smoothing, clipped double Q, delayed actor)
    x~'_k = clip(x'_k(s') + clip(N(0, policy_noise), +-noise_clip), -1, 1)   (target actor)
    y     = r + gamma (1 - terminated) max_k min_i Q'_i(s', k, x~'_k)
    L_Q   = sum_i mean (Q_i(s, k, x) - y)^2
    L_pi  = -mean_k mean_s Q_1(s, k, x_k(s))        every ``policy_delay`` critic updates,
followed by ``lerp_(online, tau)`` of the target actor and critics.

The loop (:meth:`TD3.train`, at the end of this file): act (uniformly random for the first
``random_steps`` transitions), step the envs, store the transitions in the replay
(:class:`~hear_vec.agents.replay.ReplayBuffer`), then ``updates_per_step`` critic updates (and
every ``policy_delay``-th an actor + target update) once the replay holds
``max(warmup_steps / world, batch_size)`` transitions. Step-count flags are documented in
:class:`~hear_vec.agents.config.OffPolicyConfig` and ``hear_vec/agents/ppo.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from hear_vec.agents.base import LearnerBase, VecEnv
from hear_vec.agents.config import OffPolicyConfig
from hear_vec.agents.distributions import gather_method
from hear_vec.agents.networks import HybridQEnsemble, KnobScaler, copy_module, mlp
from hear_vec.agents.off_policy import collect_step, prepare_replay
from hear_vec.agents.optim import make_adam
from hear_vec.agents.replay import ReplayBuffer
from hear_vec.env.spaces import ActionSpec

__all__ = ["TD3Config", "HybridDeterministicActor", "TD3Policy", "TD3", "load_policy"]


@dataclass
class TD3Config(OffPolicyConfig):
    """TD3 hyper-parameters (defaults follow the seed's flags / CleanRL).

    ``policy_noise``/``noise_clip``: target smoothing noise (unit-knob units).
    ``policy_delay``: critic updates per actor + target update. ``exploration_noise``: std of
    the behaviour noise on the knobs (unit-knob units). ``epsilon``: probability of a uniformly
    random method in the behaviour policy (after ``random_steps``).
    """

    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_delay: int = 2
    exploration_noise: float = 0.1
    epsilon: float = 0.1

    def validate(self) -> None:
        super().validate()
        if self.policy_delay < 1:
            raise ValueError(f"policy_delay must be >= 1, got {self.policy_delay}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")
        for name in ("policy_noise", "noise_clip", "exploration_noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


class HybridDeterministicActor(nn.Module):
    """``obs[B, D] -> x[B, K, C]`` in ``[-1, 1]``: deterministic knobs for every method."""

    def __init__(self, obs_dim: int, num_methods: int, num_knobs: int, hidden_dims: Sequence[int]):
        super().__init__()
        self.num_methods, self.num_knobs = num_methods, num_knobs
        self.net = mlp(obs_dim, hidden_dims, num_methods * num_knobs, nn.ReLU)

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.net(obs)).reshape(-1, self.num_methods, self.num_knobs)


class TD3Policy(nn.Module):
    """``forward(obs, deterministic=True) -> action[B, 1 + C]``: argmax of ``Q_1`` over methods
    with each method's actor knobs; ``deterministic=False`` adds the behaviour exploration."""

    def __init__(
        self,
        actor: HybridDeterministicActor,
        critic: HybridQEnsemble,
        knobs: KnobScaler,
        epsilon: float = 0.0,
        exploration_noise: float = 0.0,
    ) -> None:
        super().__init__()
        self.actor, self.critic, self.knobs = actor, critic, knobs
        self.epsilon, self.exploration_noise = epsilon, exploration_noise

    def select(self, obs: Tensor, deterministic: bool) -> tuple[Tensor, Tensor]:
        """``(method[B], unit knobs x[B, C])``."""
        x_all = self.actor(obs)
        K = self.actor.num_methods
        if K > 1:
            method = self.critic.all_methods(obs, x_all)[0].argmax(-1)
        else:
            method = torch.zeros(obs.shape[0], dtype=torch.long, device=obs.device)
        if not deterministic and K > 1:
            explore = torch.rand(obs.shape[0], device=obs.device) < self.epsilon
            random_method = torch.randint_like(method, 0, K)
            method = torch.where(explore, random_method, method)
        x = gather_method(x_all, method)
        if not deterministic:
            x = (x + self.exploration_noise * torch.randn_like(x)).clamp(-1.0, 1.0)
        return method, x

    def forward(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        return self.knobs.action(*self.select(obs, deterministic))


class TD3(LearnerBase):
    """Hybrid-action TD3. ``TD3(env, TD3Config(...), device)``; ``train(total_steps, hooks)``."""

    algo = "td3"
    config: TD3Config
    CRITIC_METRICS = ("losses/qf_loss", "losses/qf_values")
    ACTOR_METRICS = ("losses/actor_loss",)

    def __init__(self, env: VecEnv, config: TD3Config | None = None, device: Any = None) -> None:
        config = config if config is not None else TD3Config()
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
        self.actor = HybridDeterministicActor(D, K, C, H).to(dev)
        self.critic = HybridQEnsemble(D, K, C, H, members=2).to(dev)
        self._init_distributed(self.actor, self.critic)
        self.actor_target = copy_module(self.actor)
        self.critic_target = copy_module(self.critic)
        self.actor_opt = make_adam([(self.actor.parameters(), config.actor_lr)], dev)
        self.critic_opt = make_adam([(self.critic.parameters(), config.critic_lr)], dev)
        self._actor_params = list(self.actor.parameters())
        self._critic_params = list(self.critic.parameters())
        self._online = [*self._actor_params, *self._critic_params]
        self._targets = [*self.actor_target.parameters(), *self.critic_target.parameters()]
        self.policy = TD3Policy(
            self.actor, self.critic, self.knobs, config.epsilon, config.exploration_noise
        )
        self._build_step_fns()

    def _modules(self) -> dict[str, nn.Module]:
        return {
            "actor": self.actor,
            "critic": self.critic,
            "actor_target": self.actor_target,
            "critic_target": self.critic_target,
        }

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_opt, "critic": self.critic_opt}

    def _build_step_fns(self) -> None:
        self._explore_fn = self._wrap(self._explore_impl)
        self._critic_fn = self._wrap(self._critic_impl)
        self._actor_fn = self._wrap(self._actor_impl)

    # -- acting ----------------------------------------------------------------------------
    @torch.no_grad()
    def _explore_impl(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        return self.policy.select(obs, deterministic=False)

    # -- update ----------------------------------------------------------------------------
    def _critic_impl(self, idx: Tensor) -> Tensor:
        cfg = self.config
        assert self.replay is not None
        obs, method, x, reward, next_obs, terminated = self.replay.gather(idx)
        with torch.no_grad():
            x2 = self.actor_target(next_obs)
            noise = (torch.randn_like(x2) * cfg.policy_noise).clamp(-cfg.noise_clip, cfg.noise_clip)
            x2 = (x2 + noise).clamp(-1.0, 1.0)
            q2 = self.critic_target.all_methods(next_obs, x2).min(0).values.max(-1).values
            target = reward + cfg.gamma * (1.0 - terminated) * q2
        q = self.critic(obs, method, x)
        qf_loss = (q - target).square().mean(-1).sum()
        self._optimize(self.critic_opt, qf_loss, self._critic_params, cfg.max_grad_norm)
        return torch.stack([qf_loss, q.mean()]).detach()

    def _actor_impl(self, idx: Tensor) -> Tensor:
        assert self.replay is not None
        obs = self.replay.obs[idx]
        q = self.critic.all_methods(obs, self.actor(obs), detach_params=True)[0]
        actor_loss = -q.mean()
        self._optimize(self.actor_opt, actor_loss, self._actor_params, self.config.max_grad_norm)
        torch._foreach_lerp_(self._targets, self._online, self.config.tau)
        return actor_loss.detach().reshape(1)

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
                    idx = replay.sample_idx(cfg.batch_size)
                    self.metrics.add("critic", self.CRITIC_METRICS, self._critic_fn(idx))
                    if self.num_updates % cfg.policy_delay == 0:  # delayed actor + targets
                        self.metrics.add("actor", self.ACTOR_METRICS, self._actor_fn(idx))
                    self.num_updates += 1
            if not self._end_iteration(prev):
                break
        return self._finish()

    # -- inference -------------------------------------------------------------------------
    def inference_state(self) -> dict[str, Any]:
        """What :func:`load_policy` needs: the actor and the critics (the method argmax)."""
        state = self._inference_header()
        state["networks"] = {"actor": self.actor.state_dict(), "critic": self.critic.state_dict()}
        return state


def load_policy(state: dict[str, Any], device: Any = None) -> TD3Policy:
    """The deterministic inference policy of a TD3 ``inference_state()``."""
    if state.get("algo") != "td3":
        raise ValueError(f"not a TD3 inference state (algo={state.get('algo')!r})")
    spec = ActionSpec.from_dict(state["action_spec"])
    D, H = int(state["observation_dim"]), [int(h) for h in state["hidden_dims"]]
    actor = HybridDeterministicActor(D, spec.num_methods, spec.num_knobs, H)
    critic = HybridQEnsemble(D, spec.num_methods, spec.num_knobs, H, members=2)
    actor.load_state_dict(state["networks"]["actor"])
    critic.load_state_dict(state["networks"]["critic"])
    return TD3Policy(actor, critic, KnobScaler(spec)).to(device).eval()
