"""PPO with a hybrid head (categorical method + squashed-Gaussian knobs), fully on the device.

What the seed's flags mean with many environments
-------------------------------------------------
The seed stepped one environment; here ``num_envs`` (N) environments step together, on every
rank of a ``torchrun`` job. All learners count **env transitions summed over all envs and
ranks** unless stated otherwise:

- ``total_steps``: the run stops once ``global_step`` (transitions, all envs and ranks) reaches
  it; ``train(total_steps)`` is a target, so a resumed learner runs up to the same total.
- ``rollout_steps`` (PPO): steps **per environment** in one rollout (CleanRL's ``num_steps``);
  a rollout holds ``rollout_steps * N`` transitions per rank.
- ``batch_size``: PPO: the minibatch size in transitions (the seed's/SB3's meaning), clamped to
  the rollout size; each epoch uses ``floor(rollout_steps * N / batch_size)`` minibatches of a
  fresh permutation. SAC/TD3: transitions sampled from the replay per gradient update.
- ``update_epochs`` (PPO): passes over each rollout.
- ``replay_size`` (SAC/TD3): replay capacity in transitions per rank.
- ``random_steps`` (SAC/TD3): transitions (all envs) of uniformly random actions at the start.
- ``warmup_steps`` (SAC/TD3): transitions collected before the first gradient update.
- ``updates_per_step`` (SAC/TD3): gradient updates per vectorized env step, i.e. per ``N``
  transitions (the seed's 1 update per transition is ``updates_per_step = N``; the default 1
  trades sample efficiency for throughput, replay ratio ``updates_per_step * batch_size / N``).
- ``eval_interval``: transitions between ``hooks.on_eval`` calls; ``log_interval``: iterations
  (PPO: rollouts; SAC/TD3: vectorized steps) between read-backs.

Head
----
:class:`~hear_vec.agents.networks.HybridGaussianActor` with a state-independent ``log_std[K, C]``:
``pi(k, x | s) = Cat(k; logits(s)) * tanhN(x; mu_k(s), sigma_k)`` with per-method knob means.
The rollout stores the method and the **pre-tanh** knob sample u, so the log-probability of
the stored action is exact (no atanh of a clipped value) and
``log pi = log_softmax_k + sum_j [log N(u_j) - log(1 - tanh^2 u_j)] - sum_j log half_j``
(:func:`~hear_vec.agents.distributions.hybrid_log_prob_entropy`). The entropy bonus is
``H(Cat) + sum_k pi_k H(N(mu_k, sigma_k))``. Why tanh-Gaussian rather than Beta or a clipped
Gaussian: bounded actions without probability mass piled on the bounds (clipping), sampling
by ``randn`` only (Beta needs Gamma sampling, which compiles and graphs poorly), and the same
distribution as SAC. The critic is a separate MLP (CleanRL's continuous-action PPO layout:
Tanh, orthogonal init).

Update (CleanRL ``ppo_continuous_action`` order): GAE(gamma, lambda) with truncated episodes
bootstrapped through ``gamma * V(final_observation)`` added to the reward; per minibatch
advantage normalization, clipped surrogate, optional clipped value loss, entropy bonus,
global grad-norm clipping. Target-KL early stopping stays on the device: once a minibatch's
approximate KL exceeds ``target_kl`` a device flag drops to 0 for the rest of the rollout's
update; the masked minibatches still run but step with zero learning rate and zero gradient
(parameters unchanged; Adam's moments decay as for a zero gradient) -- no host branch.

Loop (:meth:`PPO.train`): per iteration, collect ``rollout_steps`` steps of every env, GAE,
``update_epochs`` passes of minibatches, then the hooks. Hooks (evaluation, checkpoints, a stop
request) run only between iterations, so a checkpoint never falls inside a rollout and the
rollout buffers need not be saved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from hear_vec.agents.base import LearnerBase, VecEnv
from hear_vec.agents.config import LearnerConfig
from hear_vec.agents.distributions import hybrid_log_prob_entropy, sample_hybrid
from hear_vec.agents.networks import (
    GaussianHybridPolicy,
    HybridGaussianActor,
    build_gaussian_policy,
    mlp,
)
from hear_vec.agents.optim import average_gradients, make_adam, optimizer_step

__all__ = ["PPOConfig", "PPO", "load_policy"]


@dataclass
class PPOConfig(LearnerConfig):
    """PPO hyper-parameters (seed flag names; see the module docstring for step semantics).

    ``clip_vloss``: clip the value loss like the policy (off by default, as in SB3).
    ``target_kl``: None disables early stopping. ``anneal_lr``: linear decay to 0 over the run.
    ``init_log_std``: initial knob log-std in pre-tanh space.
    """

    log_interval: int = 1
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    entropy_coef: float = 0.01
    value_coef: float = 0.5
    rollout_steps: int = 16
    update_epochs: int = 10
    batch_size: int = 4096
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    max_grad_norm: float = 0.5
    norm_adv: bool = True
    clip_vloss: bool = False
    target_kl: float | None = None
    anneal_lr: bool = False
    init_log_std: float = 0.0
    adam_eps: float = 1e-5

    def validate(self) -> None:
        super().validate()
        for name in ("rollout_steps", "update_epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(f"gae_lambda must be in [0, 1], got {self.gae_lambda}")
        if self.clip_range <= 0:
            raise ValueError(f"clip_range must be > 0, got {self.clip_range}")
        if self.target_kl is not None and self.target_kl <= 0:
            raise ValueError(f"target_kl must be > 0 or None, got {self.target_kl}")


class PPO(LearnerBase):
    """Hybrid-action PPO. ``PPO(env, PPOConfig(...), device)``; ``train(total_steps, hooks)``."""

    algo = "ppo"
    config: PPOConfig
    METRICS = (
        "losses/policy_loss",
        "losses/value_loss",
        "losses/entropy",
        "losses/approx_kl",
        "losses/clipfrac",
        "losses/grad_norm",
        "losses/update_fraction",
    )

    def __init__(self, env: VecEnv, config: PPOConfig | None = None, device: Any = None) -> None:
        config = config if config is not None else PPOConfig()
        super().__init__(env, config, device)
        D, K, C, H, dev = (
            self.obs_dim,
            self.num_methods,
            self.num_knobs,
            config.hidden_dims,
            self.device,
        )
        self.actor = HybridGaussianActor(
            D,
            K,
            C,
            H,
            nn.Tanh,
            state_dependent_std=False,
            orthogonal=True,
            init_log_std=config.init_log_std,
        ).to(dev)
        self.critic = mlp(D, H, 1, nn.Tanh, orthogonal=True, out_std=1.0).to(dev)
        self._init_distributed(self.actor, self.critic)
        self.optimizer = make_adam(
            [
                (self.actor.parameters(), config.actor_lr),
                (self.critic.parameters(), config.critic_lr),
            ],
            dev,
            eps=config.adam_eps,
        )
        self._params = [*self.actor.parameters(), *self.critic.parameters()]
        self._base_lr = [
            torch.tensor(config.actor_lr, device=dev),
            torch.tensor(config.critic_lr, device=dev),
        ]
        self._active = torch.ones((), device=dev)
        # rollout storage [T, N, ...] (flat views are used by the minibatch updates)
        T, N = config.rollout_steps, self.num_envs
        self.buf_obs = torch.zeros(T, N, D, device=dev)
        self.buf_method = torch.zeros(T, N, dtype=torch.long, device=dev)
        self.buf_u = torch.zeros(T, N, C, device=dev)
        self.buf_logp = torch.zeros(T, N, device=dev)
        self.buf_value = torch.zeros(T, N, device=dev)
        self.buf_reward = torch.zeros(T, N, device=dev)
        self.buf_done = torch.zeros(T, N, device=dev)
        self.buf_adv = torch.zeros(T, N, device=dev)
        self.buf_ret = torch.zeros(T, N, device=dev)
        self.rollout_size = T * N
        self.minibatch_size = min(config.batch_size, self.rollout_size)
        self.num_minibatches = self.rollout_size // self.minibatch_size
        if config.norm_adv and self.minibatch_size < 2:
            raise ValueError("norm_adv needs minibatches of at least 2 transitions")
        self.policy = GaussianHybridPolicy(self.actor, self.knobs)
        self._build_step_fns()

    def _modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def _build_step_fns(self) -> None:
        self._lr = [g["lr"] for g in self.optimizer.param_groups]
        self._policy_fn = self._wrap(self._policy_impl)
        self._value_fn = self._wrap(self._value_impl)
        self._gae_fn = self._wrap(self._gae_impl)
        self._minibatch_fn = self._wrap(self._minibatch_impl)

    # -- rollout ---------------------------------------------------------------------------
    @torch.no_grad()
    def _policy_impl(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Sample ``(method, u, log pi, V)`` for the current obs."""
        logits, mean, log_std = self.actor(obs)
        method, u = sample_hybrid(logits, mean, log_std)
        logp, _ = hybrid_log_prob_entropy(logits, mean, log_std, method, u, self.knobs.log_half_sum)
        return method, u, logp, self.critic(obs).squeeze(-1)

    @torch.no_grad()
    def _value_impl(self, obs: Tensor) -> Tensor:
        return self.critic(obs).squeeze(-1)

    @torch.no_grad()
    def _gae_impl(self, next_obs: Tensor) -> Tensor:
        """Fills ``buf_adv`` and ``buf_ret`` (GAE over the rollout, bootstrapped by V(next_obs))."""
        cfg = self.config
        next_value = self.critic(next_obs).squeeze(-1)
        last = torch.zeros_like(next_value)
        for t in reversed(range(cfg.rollout_steps)):
            nv = next_value if t == cfg.rollout_steps - 1 else self.buf_value[t + 1]
            nonterminal = 1.0 - self.buf_done[t]
            delta = self.buf_reward[t] + cfg.gamma * nv * nonterminal - self.buf_value[t]
            last = delta + cfg.gamma * cfg.gae_lambda * nonterminal * last
            self.buf_adv[t] = last
        self.buf_ret.copy_(self.buf_adv + self.buf_value)
        return next_value

    def _collect(self) -> None:
        cfg = self.config
        obs = self._obs
        assert obs is not None
        for t in range(cfg.rollout_steps):
            method, u, logp, value = self._policy_fn(obs)
            self.buf_obs[t] = obs
            self.buf_method[t] = method
            self.buf_u[t] = u
            self.buf_logp[t] = logp
            self.buf_value[t] = value
            action = self.knobs.action(method, torch.tanh(u))
            obs, reward, terminated, truncated, true_next = self._env_step(action)
            # truncated episodes: bootstrap through the final observation's value
            bootstrap = cfg.gamma * truncated.to(reward.dtype) * self._value_fn(true_next)
            self.buf_reward[t] = reward + bootstrap
            self.buf_done[t] = (terminated | truncated).to(reward.dtype)
        self._obs = obs

    # -- update ----------------------------------------------------------------------------
    def _minibatch_impl(self, idx: Tensor) -> Tensor:
        cfg = self.config
        obs = self.buf_obs.view(-1, self.obs_dim)[idx]
        method = self.buf_method.view(-1)[idx]
        u = self.buf_u.view(-1, self.num_knobs)[idx]
        old_logp = self.buf_logp.view(-1)[idx]
        old_value = self.buf_value.view(-1)[idx]
        adv = self.buf_adv.view(-1)[idx]
        ret = self.buf_ret.view(-1)[idx]

        logits, mean, log_std = self.actor(obs)
        logp, entropy = hybrid_log_prob_entropy(
            logits, mean, log_std, method, u, self.knobs.log_half_sum
        )
        value = self.critic(obs).squeeze(-1)
        logratio = logp - old_logp
        ratio = logratio.exp()
        with torch.no_grad():
            approx_kl = ((ratio - 1) - logratio).mean()
            clipfrac = ((ratio - 1.0).abs() > cfg.clip_range).float().mean()
        if cfg.norm_adv:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg_loss = torch.max(
            -adv * ratio, -adv * ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range)
        ).mean()
        if cfg.clip_vloss:
            v_clipped = old_value + (value - old_value).clamp(-cfg.clip_range, cfg.clip_range)
            v_loss = 0.5 * torch.max((value - ret).square(), (v_clipped - ret).square()).mean()
        else:
            v_loss = 0.5 * (value - ret).square().mean()
        ent = entropy.mean()
        loss = pg_loss - cfg.entropy_coef * ent + cfg.value_coef * v_loss

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(self._params, self.world_size)
        grad_norm = nn.utils.clip_grad_norm_(
            self._params, cfg.max_grad_norm if cfg.max_grad_norm > 0 else math.inf
        )
        if cfg.target_kl is not None:
            self._active.mul_((approx_kl <= cfg.target_kl).to(self._active.dtype))
            torch._foreach_mul_([p.grad for p in self._params], self._active)  # type: ignore[misc]
        for lr, base in zip(self._lr, self._base_lr):
            lr.copy_(base * self._active)
        optimizer_step(self.optimizer)
        return torch.stack(
            [pg_loss, v_loss, ent, approx_kl, clipfrac, grad_norm, self._active.clone()]
        ).detach()

    def _explained_variance(self) -> Tensor:
        """``1 - Var(returns - values) / Var(returns)`` of the rollout (on the device)."""
        ret = self.buf_ret.reshape(-1)
        unexplained = (ret - self.buf_value.reshape(-1)).var()
        return (1 - unexplained / ret.var().clamp_min(1e-12)).reshape(1)

    def _update(self) -> None:
        cfg = self.config
        self._active.fill_(1.0)
        mb = self.minibatch_size
        for _ in range(cfg.update_epochs):
            perm = torch.rand(self.rollout_size, device=self.device).argsort()
            for i in range(self.num_minibatches):
                out = self._minibatch_fn(perm[i * mb : (i + 1) * mb])
                self.metrics.add("update", self.METRICS, out)
                self.num_updates += 1

    # -- loop ------------------------------------------------------------------------------
    def train(self, total_steps: int, hooks: Any = None) -> dict[str, float]:
        """Rollout + update until ``global_step >= total_steps`` (see the module docstring)."""
        self._begin(total_steps, hooks)
        cfg = self.config
        per_iteration = cfg.rollout_steps * self.steps_per_iteration
        num_iterations = max(1, -(-total_steps // per_iteration))
        while self.global_step < total_steps:
            prev = self.global_step
            if cfg.anneal_lr:
                frac = max(0.0, 1.0 - self.global_step / (num_iterations * per_iteration))
                for base, lr0 in zip(self._base_lr, (cfg.actor_lr, cfg.critic_lr)):
                    base.fill_(frac * lr0)
            self._collect()
            self._gae_fn(self._obs)
            self.metrics.add("rollout", ("losses/explained_variance",), self._explained_variance())
            self._update()
            self.global_step += per_iteration
            if not self._end_iteration(prev):
                break
        return self._finish()

    # -- inference -------------------------------------------------------------------------
    def inference_state(self) -> dict[str, Any]:
        """What :func:`load_policy` needs: the actor and its construction arguments."""
        state = self._inference_header()
        state["actor_kwargs"] = {"activation": "tanh", "state_dependent_std": False}
        state["networks"] = {"actor": self.actor.state_dict()}
        return state


def load_policy(state: dict[str, Any], device: Any = None) -> GaussianHybridPolicy:
    """The inference policy (``forward(obs, deterministic=True) -> action``) of a PPO
    ``inference_state()``."""
    if state.get("algo") != "ppo":
        raise ValueError(f"not a PPO inference state (algo={state.get('algo')!r})")
    return build_gaussian_policy(state, device)
