"""Shared pieces of the learners: the environment protocol, networks, hybrid distributions,
device-side bookkeeping, replay storage, CUDA-graph / compile wrappers, gradient averaging
across ranks and the parts of the training loop that PPO, SAC and TD3 have in common.

Action layout (the env protocol, :class:`VecEnv`)
-------------------------------------------------
``action[:, 0]`` is the method id as a float (integer valued, ``0..K-1``; ignored when K = 1)
and ``action[:, 1:]`` the C continuous knobs inside ``[knob_low, knob_high]``. Inside the
learners the knobs live in the unit box ``x in [-1, 1]^C``; the env value is the affine map

    knob = center + half * x,   center = (high + low) / 2,   half = (high - low) / 2.

Hybrid squashed-Gaussian policy (used by PPO and SAC)
-----------------------------------------------------
pi(k, x | s) = Cat(k; softmax(logits(s))) * p(x | s, k), with per-method knob Gaussians in an
unbounded space u ~ N(mu_k(s), sigma_k(s)^2) squashed by x = tanh(u). Its log-density in env
units (change of variables through tanh and the affine map) is

    log pi(k, x | s) = log_softmax(logits)_k
                       + sum_j [ log N(u_j; mu_kj, sigma_kj) - log(1 - tanh(u_j)^2) - log half_j ]

with log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2 u)) (stable for large |u|).

Hooks (what ``train(total_steps, hooks)`` calls; every method is optional)
-------------------------------------------------------------------------
- ``hooks.on_log(step: int, metrics: dict[str, float])`` every ``config.log_interval``
  iterations and once at the end of ``train``. Keys: ``charts/episodic_return``,
  ``charts/episodic_length`` (means over episodes finished since the last read-back; absent when
  none finished), ``charts/SPS``, ``charts/global_step``, ``losses/*`` (means since the last
  read-back).
- ``hooks.on_eval(step: int) -> bool | None`` each time ``global_step`` crosses a multiple of
  ``config.eval_interval`` (env transitions): evaluate / checkpoint here; return True to stop
  training after this iteration (early stopping). A read-back (and the non-finite check)
  always happens first, so a checkpoint written from ``on_eval`` is finite.

Non-finite losses are detected at each read-back (the sums of the losses since the previous
read-back, and every network parameter) and raise :class:`NonFiniteLossError`.

Distributed runs: when ``torch.distributed`` is initialized with world size > 1, the learners
broadcast rank 0's parameters at construction and, after every backward pass, average the
gradients across ranks with one ``all_reduce`` of the flattened gradients of the parameters
that the optimizer is about to step (DDP's arithmetic without wrapping the modules, so the
twin critics, target networks and temperatures stay plain modules and the update stays
capturable). Each rank steps its own environments; step counters and the ``*_steps`` config
fields count transitions of all ranks together; read-backs are averaged across ranks.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F

from hear_vec.env.spaces import ActionSpec

__all__ = [
    "ActionSpec",
    "VecEnv",
    "TrainHooks",
    "NonFiniteLossError",
    "LearnerConfig",
    "OffPolicyConfig",
    "KnobScaler",
    "layer_init",
    "mlp",
    "EnsembleLinear",
    "EnsembleMLP",
    "HybridGaussianActor",
    "HybridQEnsemble",
    "gumbel_argmax",
    "gather_method",
    "tanh_log_det",
    "squashed_sample",
    "hybrid_log_prob_entropy",
    "sample_hybrid",
    "GaussianHybridPolicy",
    "build_gaussian_policy",
    "EpisodeTracker",
    "MetricAccumulator",
    "ReplayBuffer",
    "CudaGraphFn",
    "make_adam",
    "optimizer_step",
    "load_optimizer_state",
    "average_gradients",
    "broadcast_modules",
    "world_info",
    "evaluate_policy",
    "LearnerBase",
    "OffPolicyLearner",
    "copy_module",
]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


# ---------------------------------------------------------------------------------------------
# Environment protocol
# ---------------------------------------------------------------------------------------------


@runtime_checkable
class VecEnv(Protocol):
    """What the learners consume: a batch of ``num_envs`` environments on ``device``.

    ``reset() -> obs[num_envs, observation_dim]`` (float32, already normalized).
    ``step(action[num_envs, 1 + C]) -> (obs, reward[num_envs], terminated[num_envs] bool,
    truncated[num_envs] bool, info)`` with same-step autoreset: the obs of a finished row is
    the first obs of its next episode and ``info["final_observation"]`` holds the last obs of
    the finished episode (rows that did not finish may hold anything).
    """

    num_envs: int
    observation_dim: int
    device: torch.device
    action_spec: ActionSpec

    def reset(self) -> Tensor: ...

    def step(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]: ...


class TrainHooks(Protocol):
    """Callbacks of ``train``; both methods are optional (looked up with ``getattr``)."""

    def on_log(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_eval(self, step: int) -> bool | None: ...


class NonFiniteLossError(RuntimeError):
    """A loss or a network parameter became NaN/inf; the learner state is no longer usable.

    Raised at a read-back (every ``log_interval`` iterations and before every ``on_eval``), so
    anything saved from ``on_eval`` before it was finite.
    """


def _check_env(env: Any) -> None:
    for name in ("num_envs", "observation_dim", "action_spec", "reset", "step"):
        if not hasattr(env, name):
            raise TypeError(f"env does not follow the VecEnv protocol: no attribute {name!r}")
    if not isinstance(env.action_spec, ActionSpec):
        raise TypeError(
            f"env.action_spec must be a hear_vec.agents.ActionSpec, got {type(env.action_spec)}"
        )
    for name in ("num_envs", "observation_dim"):
        v = getattr(env, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"env.{name} must be a positive int, got {v!r}")


# ---------------------------------------------------------------------------------------------
# Configuration shared by the learners
# ---------------------------------------------------------------------------------------------


@dataclass
class LearnerConfig:
    """Fields every learner has.

    ``log_interval``: iterations between read-backs / ``on_log`` calls (an iteration is one
    rollout + update for PPO, one vectorized env step + its updates for SAC/TD3).
    ``eval_interval``: env transitions (all envs, all ranks) between ``on_eval`` calls; 0 = never.
    ``compile``: ``torch.compile`` the act / update functions (with ``compile_backend``;
    "aot_eager" traces without code generation, for quick checks). ``cudagraphs``: capture them in
    CUDA graphs after two eager warm-up calls (CUDA only; combines with ``compile``).
    """

    gamma: float = 0.99
    hidden_dims: tuple[int, ...] = (256, 256)
    log_interval: int = 10
    eval_interval: int = 0
    compile: bool = False
    compile_backend: str = "inductor"
    cudagraphs: bool = False

    def validate(self) -> None:
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if len(self.hidden_dims) == 0 or any(int(h) < 1 for h in self.hidden_dims):
            raise ValueError(f"hidden_dims must be positive ints, got {self.hidden_dims}")
        if self.log_interval < 1:
            raise ValueError(f"log_interval must be >= 1, got {self.log_interval}")
        if self.eval_interval < 0:
            raise ValueError(f"eval_interval must be >= 0, got {self.eval_interval}")


@dataclass
class OffPolicyConfig(LearnerConfig):
    """Replay-based learners (SAC, TD3). Step counts are env transitions over all envs/ranks.

    ``batch_size``: transitions sampled from the replay per gradient update.
    ``replay_size``: replay capacity in transitions per rank (rounded down to a multiple of
    ``num_envs``; never more than the run's ``total_steps`` needs). Memory is about
    ``replay_size * (2 * obs_dim + C + 4) * 4`` bytes (~2.3 GB at 1e6 x 280-dim obs).
    ``random_steps``: the first transitions use uniformly random actions.
    ``warmup_steps``: transitions collected before the first update (learning starts once the
    replay holds ``max(warmup_steps / world, batch_size)`` transitions; after a resume without
    the replay in the checkpoint, this refills before updating again).
    ``updates_per_step``: gradient updates per vectorized env step (replay ratio =
    updates_per_step * batch_size / num_envs samples per collected transition).
    ``max_grad_norm``: 0 disables gradient clipping (the CleanRL default for SAC/TD3).
    """

    log_interval: int = 100
    batch_size: int = 256
    replay_size: int = 1_000_000
    random_steps: int = 5_000
    warmup_steps: int = 5_000
    updates_per_step: int = 1
    tau: float = 0.005
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    max_grad_norm: float = 0.0

    def validate(self) -> None:
        super().validate()
        for name in ("batch_size", "replay_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("random_steps", "warmup_steps", "updates_per_step"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if self.max_grad_norm < 0:
            raise ValueError(f"max_grad_norm must be >= 0, got {self.max_grad_norm}")


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------


class KnobScaler(nn.Module):
    """Affine map between unit knobs ``x in [-1, 1]^C`` and env knobs (see module docstring)."""

    def __init__(self, spec: ActionSpec) -> None:
        super().__init__()
        low = torch.tensor(spec.knob_low, dtype=torch.float32)
        high = torch.tensor(spec.knob_high, dtype=torch.float32)
        self.register_buffer("center", (high + low) / 2, persistent=False)
        self.register_buffer("scale", (high - low) / 2, persistent=False)
        #: sum_j log half_j, the log-Jacobian of the affine part
        self.log_half_sum = float(torch.log((high - low) / 2).sum())

    def to_env(self, x: Tensor) -> Tensor:
        return self.center + self.scale * x

    def to_unit(self, knobs: Tensor) -> Tensor:
        return (knobs - self.center) / self.scale

    def action(self, method: Tensor, x: Tensor) -> Tensor:
        """Env action ``[B, 1 + C]`` from method ids ``[B]`` (long) and unit knobs ``[B, C]``."""
        return torch.cat([method.to(x.dtype).unsqueeze(-1), self.to_env(x)], dim=-1)


def layer_init(layer: nn.Linear, std: float = math.sqrt(2.0), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights with gain ``std`` and constant bias (CleanRL's PPO init)."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(
    in_dim: int,
    hidden_dims: Sequence[int],
    out_dim: int,
    activation: type[nn.Module] = nn.ReLU,
    orthogonal: bool = False,
    out_std: float = 1.0,
) -> nn.Sequential:
    """``in -> [Linear, activation] * len(hidden) -> Linear -> out``; optional orthogonal init
    (hidden gain sqrt(2), output gain ``out_std``)."""
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden_dims:
        lin = nn.Linear(d, int(h))
        layers += [layer_init(lin) if orthogonal else lin, activation()]
        d = int(h)
    out = nn.Linear(d, out_dim)
    layers.append(layer_init(out, out_std) if orthogonal else out)
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """E independent linear layers applied as one batched matmul: ``[E, B, in] -> [E, B, out]``.

    Each member is initialized like ``nn.Linear`` (uniform in +-1/sqrt(in)).
    """

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(members, 1, out_features))
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor, detach_params: bool = False) -> Tensor:
        w, b = self.weight, self.bias
        if detach_params:
            w, b = w.detach(), b.detach()
        return torch.baddbmm(b, x, w)


class EnsembleMLP(nn.Module):
    """E MLPs with the same shape evaluated in one pass (the twin critics).

    ``forward(x)``: ``x`` is ``[B, in]`` (shared by all members) or ``[E, B, in]``; returns
    ``[E, B, out]``. ``detach_params=True`` evaluates with detached weights (the actor loss
    differentiates through the inputs only).
    """

    def __init__(
        self,
        members: int,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        dims = [in_dim, *[int(h) for h in hidden_dims], out_dim]
        self.members = members
        self.layers = nn.ModuleList(
            EnsembleLinear(members, a, b) for a, b in zip(dims[:-1], dims[1:])
        )
        self.activation = activation()

    def forward(self, x: Tensor, detach_params: bool = False) -> Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.members, -1, -1)
        for i, layer in enumerate(self.layers):
            x = layer(x, detach_params)
            if i < len(self.layers) - 1:
                x = self.activation(x)
        return x


class HybridGaussianActor(nn.Module):
    """Shared trunk -> method logits ``[B, K]`` and per-method knob Gaussians ``[B, K, C]``.

    ``state_dependent_std=False`` (PPO): a learned ``log_std[K, C]`` parameter. ``True`` (SAC):
    the head also outputs log-stds, squashed into ``[log_std_min, log_std_max]`` with tanh.
    """

    def __init__(
        self,
        obs_dim: int,
        num_methods: int,
        num_knobs: int,
        hidden_dims: Sequence[int],
        activation: type[nn.Module] = nn.ReLU,
        state_dependent_std: bool = True,
        orthogonal: bool = False,
        init_log_std: float = 0.0,
        log_std_bounds: tuple[float, float] = (-5.0, 2.0),
    ) -> None:
        super().__init__()
        self.num_methods, self.num_knobs = num_methods, num_knobs
        self.state_dependent_std = state_dependent_std
        self.log_std_min, self.log_std_max = log_std_bounds
        kc = num_methods * num_knobs
        out = num_methods + kc * (2 if state_dependent_std else 1)
        self.net = mlp(obs_dim, hidden_dims, out, activation, orthogonal, out_std=0.01)
        if not state_dependent_std:
            self.log_std = nn.Parameter(torch.full((num_methods, num_knobs), float(init_log_std)))

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Returns ``logits[B, K]``, ``mean[B, K, C]``, ``log_std[B, K, C]`` (pre-tanh space)."""
        K, C = self.num_methods, self.num_knobs
        h = self.net(obs)
        logits = h[:, :K]
        mean = h[:, K : K + K * C].reshape(-1, K, C)
        if self.state_dependent_std:
            raw = torch.tanh(h[:, K + K * C :].reshape(-1, K, C))
            log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (raw + 1)
        else:
            log_std = self.log_std.expand_as(mean)
        return logits, mean, log_std

    def deterministic(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Mode of the method (argmax logit) and tanh of its knob mean: ``(method[B], x[B, C])``."""
        logits, mean, _ = self(obs)
        method = logits.argmax(-1)
        return method, torch.tanh(gather_method(mean, method))


class HybridQEnsemble(nn.Module):
    """Twin (E) critics ``Q_e(s, k, x)`` for a method k and ITS unit knobs x (MP-DQN style:
    each method's value only sees its own knobs, no false gradients from the other methods').

    Input = ``[obs, one_hot(k) (omitted when K = 1), x]``.
    """

    def __init__(
        self,
        obs_dim: int,
        num_methods: int,
        num_knobs: int,
        hidden_dims: Sequence[int],
        members: int = 2,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.num_methods, self.num_knobs = num_methods, num_knobs
        self.onehot_dim = num_methods if num_methods > 1 else 0
        self.net = EnsembleMLP(
            members, obs_dim + self.onehot_dim + num_knobs, hidden_dims, 1, activation
        )

    def forward(
        self, obs: Tensor, method: Tensor, x: Tensor, detach_params: bool = False
    ) -> Tensor:
        """``obs[B, D]``, ``method[B]`` long, ``x[B, C]`` -> ``Q[E, B]``."""
        parts = [obs]
        if self.onehot_dim:
            parts.append(F.one_hot(method, self.num_methods).to(obs.dtype))
        parts.append(x)
        return self.net(torch.cat(parts, -1), detach_params).squeeze(-1)

    def all_methods(self, obs: Tensor, x: Tensor, detach_params: bool = False) -> Tensor:
        """``obs[B, D]``, per-method knobs ``x[B, K, C]`` -> ``Q[E, B, K]`` (B*K rows, one pass)."""
        B, K = obs.shape[0], self.num_methods
        parts = [obs.unsqueeze(1).expand(B, K, obs.shape[1])]
        if self.onehot_dim:
            eye = torch.eye(K, dtype=obs.dtype, device=obs.device)
            parts.append(eye.unsqueeze(0).expand(B, K, K))
        parts.append(x)
        inp = torch.cat(parts, -1).reshape(B * K, -1)
        return self.net(inp, detach_params).reshape(-1, B, K)


# ---------------------------------------------------------------------------------------------
# Hybrid distribution helpers (all shapes static; no host syncs)
# ---------------------------------------------------------------------------------------------


def gumbel_argmax(logits: Tensor) -> Tensor:
    """A sample of Cat(softmax(logits)) by the Gumbel-max trick: ``argmax(logits + G)``."""
    u = torch.rand_like(logits)
    return (logits - torch.log(-torch.log(u))).argmax(-1)


def gather_method(t: Tensor, method: Tensor) -> Tensor:
    """``t[B, K, C]``, ``method[B]`` -> ``t[b, method[b], :]`` of shape ``[B, C]``."""
    idx = method.view(-1, 1, 1).expand(-1, 1, t.shape[-1])
    return t.gather(1, idx).squeeze(1)


def tanh_log_det(u: Tensor) -> Tensor:
    """``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))``, elementwise, stable."""
    return 2.0 * (_LOG_2 - u - F.softplus(-2.0 * u))


def squashed_sample(mean: Tensor, log_std: Tensor, log_half_sum: float) -> tuple[Tensor, Tensor]:
    """Reparameterized tanh-Gaussian sample over the last dim.

    Returns ``x = tanh(mean + std * eps)`` and ``log p(x)`` in env units (summed over the last
    dim): ``sum_j [-eps_j^2/2 - log_std_j - log(2 pi)/2 - log(1 - x_j^2)] - log_half_sum``.
    """
    eps = torch.randn_like(mean)
    u = mean + log_std.exp() * eps
    logp = (-0.5 * eps.square() - log_std - _HALF_LOG_2PI - tanh_log_det(u)).sum(-1)
    return torch.tanh(u), logp - log_half_sum


def hybrid_log_prob_entropy(
    logits: Tensor,
    mean: Tensor,
    log_std: Tensor,
    method: Tensor,
    u: Tensor,
    log_half_sum: float,
) -> tuple[Tensor, Tensor]:
    """Log-density of a stored hybrid action ``(method[B], pre-tanh knobs u[B, C])`` and the
    policy entropy proxy.

    ``log pi = log_softmax(logits)_k + sum_j [log N(u_j; mu_kj, sigma_kj) - log(1 - tanh^2 u_j)]
    - log_half_sum``. Entropy = H(Cat) + sum_k pi_k H(N(mu_k, sigma_k)) (the Gaussian entropy of
    the pre-tanh knobs; the tanh-Gaussian's own entropy has no closed form).
    """
    logp_all = torch.log_softmax(logits, -1)
    logp_k = logp_all.gather(1, method.unsqueeze(1)).squeeze(1)
    mu = gather_method(mean, method)
    ls = gather_method(log_std, method)
    z = (u - mu) * torch.exp(-ls)
    logp_u = (-0.5 * z.square() - ls - _HALF_LOG_2PI - tanh_log_det(u)).sum(-1)
    probs = logp_all.exp()
    ent_cat = -(probs * logp_all).sum(-1)
    ent_gauss = (log_std + 0.5 + _HALF_LOG_2PI).sum(-1)  # [B, K]
    return logp_k + logp_u - log_half_sum, ent_cat + (probs * ent_gauss).sum(-1)


def sample_hybrid(logits: Tensor, mean: Tensor, log_std: Tensor) -> tuple[Tensor, Tensor]:
    """A sample ``(method[B], pre-tanh knobs u[B, C])`` of the hybrid policy: the method by
    Gumbel-max, then ``u ~ N(mean_k, exp(log_std_k)^2)`` of the chosen method only."""
    method = gumbel_argmax(logits)
    mu = gather_method(mean, method)
    u = mu + gather_method(log_std, method).exp() * torch.randn_like(mu)
    return method, u


_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


class GaussianHybridPolicy(nn.Module):
    """Inference policy of PPO and SAC: ``forward(obs, deterministic) -> action[B, 1 + C]``.

    Deterministic: the most likely method and tanh of its knob mean. Stochastic: a sample.
    """

    def __init__(self, actor: HybridGaussianActor, knobs: KnobScaler) -> None:
        super().__init__()
        self.actor, self.knobs = actor, knobs

    def forward(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        if deterministic:
            method, x = self.actor.deterministic(obs)
        else:
            method, u = sample_hybrid(*self.actor(obs))
            x = torch.tanh(u)
        return self.knobs.action(method, x)


def build_gaussian_policy(state: Mapping[str, Any], device: Any = None) -> GaussianHybridPolicy:
    """Rebuilds a :class:`GaussianHybridPolicy` from a PPO/SAC ``inference_state()``."""
    spec = ActionSpec.from_dict(state["action_spec"])
    kw = dict(state["actor_kwargs"])
    kw["activation"] = _ACTIVATIONS[kw["activation"]]
    actor = HybridGaussianActor(
        int(state["observation_dim"]),
        spec.num_methods,
        spec.num_knobs,
        [int(h) for h in state["hidden_dims"]],
        **kw,
    )
    actor.load_state_dict(state["networks"]["actor"])
    return GaussianHybridPolicy(actor, KnobScaler(spec)).to(device).eval()


# ---------------------------------------------------------------------------------------------
# Device-side bookkeeping
# ---------------------------------------------------------------------------------------------


class EpisodeTracker:
    """Running episodic return/length per env; finished-episode sums accumulated on the device."""

    def __init__(self, num_envs: int, device: torch.device) -> None:
        self.ret = torch.zeros(num_envs, device=device)
        self.len = torch.zeros(num_envs, device=device)
        self.stats = torch.zeros(3, device=device)  # sum return, sum length, count

    def update(self, reward: Tensor, done: Tensor) -> None:
        d = done.to(self.ret.dtype)
        self.ret += reward
        self.len += 1
        self.stats += torch.stack([(self.ret * d).sum(), (self.len * d).sum(), d.sum()])
        self.ret *= 1 - d
        self.len *= 1 - d

    def reset(self) -> None:
        self.ret.zero_()
        self.len.zero_()
        self.stats.zero_()


class MetricAccumulator:
    """Sums of metric vectors per group on the device; the host only counts calls."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.groups: dict[str, tuple[tuple[str, ...], Tensor]] = {}
        self.counts: dict[str, int] = {}

    def add(self, group: str, names: tuple[str, ...], values: Tensor) -> None:
        if group not in self.groups:
            self.groups[group] = (names, torch.zeros(len(names), device=self.device))
            self.counts[group] = 0
        self.groups[group][1].add_(values)
        self.counts[group] += 1

    def layout(self) -> list[tuple[str, tuple[str, ...], int]]:
        return [(g, names, self.counts[g]) for g, (names, _) in self.groups.items()]

    def sums(self) -> Tensor:
        if not self.groups:
            return torch.zeros(0, device=self.device)
        return torch.cat([s for _, s in self.groups.values()])

    def clear(self) -> None:
        for _, s in self.groups.values():
            s.zero_()
        for g in self.counts:
            self.counts[g] = 0


class ReplayBuffer:
    """Preallocated ring of transitions on the device, written ``num_envs`` rows at a time.

    Stores ``obs[D]``, ``method`` (long), unit knobs ``x[C]``, ``reward``, the true next obs
    (the final obs on episode ends) and ``terminated`` (float; truncation bootstraps).
    The write pointer and size are host ints (deterministic, no syncs).
    """

    FIELDS = ("obs", "method", "knobs", "reward", "next_obs", "terminated")

    def __init__(
        self, capacity: int, num_envs: int, obs_dim: int, num_knobs: int, device: torch.device
    ) -> None:
        capacity = max(num_envs, (capacity // num_envs) * num_envs)
        self.capacity, self.num_envs = capacity, num_envs
        self.obs = torch.zeros(capacity, obs_dim, device=device)
        self.method = torch.zeros(capacity, dtype=torch.long, device=device)
        self.knobs = torch.zeros(capacity, num_knobs, device=device)
        self.reward = torch.zeros(capacity, device=device)
        self.next_obs = torch.zeros(capacity, obs_dim, device=device)
        self.terminated = torch.zeros(capacity, device=device)
        self.ptr = 0
        self.size = 0

    def add(
        self,
        obs: Tensor,
        method: Tensor,
        knobs: Tensor,
        reward: Tensor,
        next_obs: Tensor,
        terminated: Tensor,
    ) -> None:
        s = slice(self.ptr, self.ptr + self.num_envs)
        self.obs[s] = obs
        self.method[s] = method
        self.knobs[s] = knobs
        self.reward[s] = reward
        self.next_obs[s] = next_obs
        self.terminated[s] = terminated.to(self.terminated.dtype)
        self.ptr = (self.ptr + self.num_envs) % self.capacity
        self.size = min(self.size + self.num_envs, self.capacity)

    def grow(self, capacity: int) -> None:
        """Reallocate with a larger capacity, keeping the stored rows (oldest first)."""
        capacity = (capacity // self.num_envs) * self.num_envs
        if capacity <= self.capacity:
            return
        order = torch.arange(self.size, device=self.obs.device)
        if self.size == self.capacity:  # wrapped: the oldest row sits at ptr
            order = (order + self.ptr) % self.capacity
        for f in self.FIELDS:
            old = getattr(self, f)
            new = old.new_zeros((capacity, *old.shape[1:]))
            new[: self.size] = old[order]
            setattr(self, f, new)
        self.capacity, self.ptr = capacity, self.size % capacity

    def sample_idx(self, batch_size: int) -> Tensor:
        return torch.randint(0, self.size, (batch_size,), device=self.obs.device)

    def gather(self, idx: Tensor) -> tuple[Tensor, ...]:
        return tuple(getattr(self, f)[idx] for f in self.FIELDS)

    def state_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {f: getattr(self, f)[: self.size].clone() for f in self.FIELDS}
        d.update(ptr=self.ptr, size=self.size, capacity=self.capacity)
        return d

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        n = min(int(d["size"]), self.capacity)
        for f in self.FIELDS:
            getattr(self, f)[:n] = d[f][:n].to(getattr(self, f).device)
        self.size = n
        self.ptr = int(d["ptr"]) % self.capacity if n == self.capacity else n % self.capacity


# ---------------------------------------------------------------------------------------------
# Compile / CUDA graphs
# ---------------------------------------------------------------------------------------------


class CudaGraphFn:
    """Wraps ``fn(*tensors) -> tensor | tuple[tensor, ...]`` into a CUDA graph.

    The first ``warmup`` calls run ``fn`` eagerly on a side stream (real calls, as in eager
    mode: they also create lazily allocated optimizer state); the next call captures ``fn``
    on static copies of its arguments and replays it; later calls copy the arguments into the
    static inputs and replay. Outputs are static tensors overwritten by the next call: consume
    them before calling again. Argument shapes must not change after capture.
    """

    def __init__(self, fn: Callable[..., Any], warmup: int = 2) -> None:
        self.fn, self.warmup = fn, warmup
        self.reset()

    def reset(self) -> None:
        self._graph: torch.cuda.CUDAGraph | None = None
        self._calls = 0
        self._static_in: list[Tensor] = []
        self._static_out: Any = None

    def __call__(self, *args: Tensor) -> Any:
        if self._graph is not None:
            for s, a in zip(self._static_in, args):
                s.copy_(a)
            self._graph.replay()
            return self._static_out
        if self._calls < self.warmup:
            self._calls += 1
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                out = self.fn(*args)
            torch.cuda.current_stream().wait_stream(stream)
            return out
        self._static_in = [a.clone() for a in args]
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._static_out = self.fn(*self._static_in)
        self._graph = graph
        graph.replay()
        return self._static_out


def make_adam(
    groups: Sequence[tuple[Iterable[nn.Parameter], float]], device: torch.device, eps: float = 1e-8
) -> torch.optim.Adam:
    """Fused Adam whose per-group learning rates are device tensors (so they can be masked or
    annealed inside compiled code / CUDA graphs); capturable on CUDA."""
    param_groups = [
        {"params": list(p), "lr": torch.tensor(float(lr), device=device)} for p, lr in groups
    ]
    return torch.optim.Adam(param_groups, eps=eps, fused=True, capturable=device.type == "cuda")


@torch.compiler.disable
def optimizer_step(opt: torch.optim.Optimizer) -> None:
    """``opt.step()`` kept out of ``torch.compile`` graphs: the fused Adam is already one kernel
    per parameter group, and tracing it multiplies CPU compile times (CUDA graphs still capture
    it)."""
    opt.step()


def load_optimizer_state(opt: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    """``opt.load_state_dict`` that keeps the optimizer's own lr tensors (values copied from the
    checkpoint) and its device flags, so a checkpoint moves between CPU and CUDA."""
    lrs = [g["lr"] for g in opt.param_groups]
    flags = [(g["fused"], g["capturable"]) for g in opt.param_groups]
    opt.load_state_dict(state)  # type: ignore[arg-type]
    for g, lr, (fused, capturable) in zip(opt.param_groups, lrs, flags):
        if isinstance(lr, Tensor):
            lr.copy_(torch.as_tensor(g["lr"], dtype=lr.dtype))
        g["lr"], g["fused"], g["capturable"] = lr, fused, capturable
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            if "step" in st and isinstance(st["step"], Tensor):
                st["step"] = st["step"].to(device=p.device, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------
# Distributed helpers
# ---------------------------------------------------------------------------------------------


def world_info() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when torch.distributed is not initialized."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def average_gradients(params: Sequence[Tensor], world_size: int) -> None:
    """Average ``.grad`` of ``params`` over ranks: one all_reduce of the flattened gradients
    (what DDP computes). No-op for world size 1. Missing grads count as zeros."""
    if world_size <= 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])  # type: ignore[union-attr]
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        n = g.numel()  # type: ignore[union-attr]
        g.copy_(flat[offset : offset + n].view_as(g))  # type: ignore[union-attr]
        offset += n


def broadcast_modules(modules: Iterable[nn.Module], world_size: int) -> None:
    """Copy rank 0's parameters and buffers to every rank (identical starting points)."""
    if world_size <= 1:
        return
    for m in modules:
        for t in [*m.parameters(), *m.buffers()]:
            dist.broadcast(t.data, src=0)


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_policy(
    policy: Callable[[Tensor], Tensor],
    env: Any,
    num_episodes: int,
    max_iterations: int = 1_000_000,
    check_every: int = 32,
) -> dict[str, float]:
    """Run ``policy(obs) -> action`` on ``env`` until every env row finished
    ``ceil(num_episodes / num_envs)`` episodes; returns the mean / std / min of those episodes'
    returns (``num_envs * ceil(num_episodes / num_envs)`` episodes) and their count.

    The host reads the completion count only every ``check_every`` steps.
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    n = env.num_envs
    per_env = -(-num_episodes // n)
    obs = env.reset()
    dev = obs.device
    ret = torch.zeros(n, device=dev)
    count = torch.zeros(n, dtype=torch.long, device=dev)
    total = torch.zeros(n, device=dev)
    total_sq = torch.zeros(n, device=dev)
    minimum = torch.full((n,), math.inf, device=dev)
    for it in range(max_iterations):
        obs, reward, term, trunc, _ = env.step(policy(obs))
        done = term | trunc
        ret += reward
        take = done & (count < per_env)
        total += torch.where(take, ret, 0.0)
        total_sq += torch.where(take, ret.square(), 0.0)
        minimum = torch.where(take, torch.minimum(minimum, ret), minimum)
        count += done.long()
        ret = torch.where(done, 0.0, ret)
        if (it + 1) % check_every == 0 and bool((count >= per_env).all()):
            break
    else:
        if not bool((count >= per_env).all()):
            raise RuntimeError(f"evaluation did not finish {per_env} episodes per env")
    m = n * per_env
    mean = float(total.sum()) / m
    var = max(float(total_sq.sum()) / m - mean * mean, 0.0)
    return {
        "mean_return": mean,
        "std_return": math.sqrt(var),
        "min_return": float(minimum.min()),
        "episodes": float(m),
    }


# ---------------------------------------------------------------------------------------------
# Learner base: bookkeeping, read-back, hooks, state dicts
# ---------------------------------------------------------------------------------------------


class LearnerBase:
    """Everything the three learners share except the algorithm itself.

    Subclasses set ``algo``, build networks/optimizers in ``__init__`` and implement
    ``_modules()`` (name -> module saved in ``state_dict``), ``_optimizers()``,
    ``_build_step_fns()`` (creates the possibly compiled / graphed functions; called again
    after ``load_state_dict``), ``policy`` (an ``nn.Module`` with
    ``forward(obs, deterministic) -> action``), ``inference_state()`` and ``train()``.
    """

    algo = ""
    config: LearnerConfig
    policy: nn.Module

    def __init__(self, env: VecEnv, config: LearnerConfig, device: Any = None) -> None:
        _check_env(env)
        config.validate()
        self.env, self.config = env, config
        self.device = torch.device(device if device is not None else env.device)
        env_device = torch.device(getattr(env, "device", self.device))
        if env_device.type != self.device.type:
            raise ValueError(
                f"the env lives on {str(env_device)!r} but the learner on {str(self.device)!r}; "
                "they must share the device"
            )
        if config.cudagraphs and self.device.type != "cuda":
            raise ValueError(
                f"cudagraphs=True needs a CUDA device, got device {str(self.device)!r}"
            )
        self.spec: ActionSpec = env.action_spec
        self.num_envs, self.obs_dim = env.num_envs, env.observation_dim
        self.num_methods, self.num_knobs = self.spec.num_methods, self.spec.num_knobs
        self.rank, self.world_size = world_info()
        self.steps_per_iteration = self.num_envs * self.world_size
        self.knobs = KnobScaler(self.spec).to(self.device)
        self.global_step = 0
        self.iteration = 0
        self.num_updates = 0
        self.metrics = MetricAccumulator(self.device)
        self.episodes = EpisodeTracker(self.num_envs, self.device)
        self.last_metrics: dict[str, float] = {}
        self._obs: Tensor | None = None
        self._hooks: Any = None
        self._mark = (time.perf_counter(), 0)
        self._pending = False

    # -- subclass interface ----------------------------------------------------------------
    def _modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def _build_step_fns(self) -> None:
        raise NotImplementedError

    def inference_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def train(self, total_steps: int, hooks: Any = None) -> dict[str, float]:
        raise NotImplementedError

    # -- shared helpers --------------------------------------------------------------------
    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` compiled and/or captured in a CUDA graph, as the config asks."""
        if self.config.compile:
            fn = torch.compile(fn, backend=self.config.compile_backend)
        if self.config.cudagraphs:
            fn = CudaGraphFn(fn)
        return fn

    def _optimize(
        self,
        opt: torch.optim.Optimizer,
        loss: Tensor,
        params: Sequence[nn.Parameter],
        max_grad_norm: float = 0.0,
    ) -> Tensor:
        """zero_grad -> backward -> average over ranks -> optional clip -> step. Returns the
        (pre-clip) gradient norm when clipping, else a zero tensor."""
        opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(params, self.world_size)
        norm = torch.zeros((), device=loss.device)
        if max_grad_norm > 0:
            norm = nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer_step(opt)
        return norm

    def _init_distributed(self, *modules: nn.Module) -> None:
        """Rank 0's initial weights everywhere (call before copying target networks)."""
        broadcast_modules(modules, self.world_size)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        """The policy's env action ``[B, 1 + C]`` for ``obs[B, D]`` (``deterministic``: mode)."""
        if obs.dim() != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"obs must be [batch, {self.obs_dim}], got {tuple(obs.shape)}")
        return self.policy(obs.to(self.device), deterministic)

    def evaluate(self, env: Any, num_episodes: int) -> dict[str, float]:
        """Mean return of the deterministic policy on ``env`` (see :func:`evaluate_policy`)."""
        return evaluate_policy(lambda o: self.act(o, True), env, num_episodes)

    def _begin(self, total_steps: int, hooks: Any) -> None:
        if isinstance(total_steps, bool) or int(total_steps) != total_steps or total_steps < 0:
            raise ValueError(f"total_steps must be a non-negative int, got {total_steps!r}")
        self._hooks = hooks
        if self._obs is None:
            obs = self.env.reset()
            if obs.shape != (self.num_envs, self.obs_dim):
                raise ValueError(
                    f"env.reset() returned {tuple(obs.shape)}, expected "
                    f"({self.num_envs}, {self.obs_dim})"
                )
            self._obs = obs.to(self.device)
            self.episodes.reset()
        self._mark = (time.perf_counter(), self.global_step)

    def _env_step(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Steps the env; returns ``(next_obs, reward, terminated, truncated, true_next_obs)``
        where ``true_next_obs`` is the final obs on rows that finished. Updates episode stats."""
        obs, reward, term, trunc, info = self.env.step(action)
        done = term | trunc
        final = info.get("final_observation")
        true_next = obs if final is None else torch.where(done.unsqueeze(-1), final, obs)
        self.episodes.update(reward, done)
        return obs, reward, term, trunc, true_next

    def _end_iteration(self, prev_step: int) -> bool:
        """Counts an iteration and runs the read-back / hooks that are due; returns True when
        training should go on (``on_eval`` returned nothing truthy)."""
        cfg = self.config
        self.iteration += 1
        self._pending = True
        log_now = self.iteration % cfg.log_interval == 0
        eval_now = (
            cfg.eval_interval > 0
            and self.global_step // cfg.eval_interval > prev_step // cfg.eval_interval
        )
        if log_now or eval_now:
            metrics = self._read_back()  # every read-back is logged, none is dropped
            if hasattr(self._hooks, "on_log"):
                self._hooks.on_log(self.global_step, metrics)
            if eval_now and hasattr(self._hooks, "on_eval"):
                if self._hooks.on_eval(self.global_step):
                    return False
        return True

    def _finish(self) -> dict[str, float]:
        if self._pending:
            metrics = self._read_back()
            if hasattr(self._hooks, "on_log"):
                self._hooks.on_log(self.global_step, metrics)
        self._hooks = None
        return self.last_metrics

    def _read_back(self) -> dict[str, float]:
        """One device->host copy of the accumulated metrics; raises on non-finite values."""
        params = [p for m in self._modules().values() for p in m.parameters()]
        norms = torch._foreach_norm([p.detach() for p in params])
        bad = (~torch.isfinite(torch.stack(norms))).sum().to(torch.float32).reshape(1)
        vec = torch.cat([self.metrics.sums(), self.episodes.stats, bad])
        if self.world_size > 1:
            dist.all_reduce(vec)
        values = vec.tolist()
        now = time.perf_counter()
        t0, s0 = self._mark
        self._mark = (now, self.global_step)
        out: dict[str, float] = {
            "charts/global_step": float(self.global_step),
            "charts/SPS": (self.global_step - s0) / max(now - t0, 1e-9),
        }
        i = 0
        for _, names, count in self.metrics.layout():
            for name in names:
                if count:
                    out[name] = values[i] / (count * self.world_size)
                i += 1
        ret_sum, len_sum, n_ep, n_bad = values[i : i + 4]
        if n_ep > 0:
            out["charts/episodic_return"] = ret_sum / n_ep
            out["charts/episodic_length"] = len_sum / n_ep
        self.metrics.clear()
        self.episodes.stats.zero_()
        self._pending = False
        bad_names = [k for k, v in out.items() if k.startswith("losses/") and not math.isfinite(v)]
        if bad_names or n_bad > 0:
            detail = ", ".join(f"{k}={out[k]}" for k in bad_names) or "network parameters"
            raise NonFiniteLossError(
                f"{self.algo}: non-finite loss at global step {self.global_step} ({detail}); "
                "training stopped, the last checkpoint written before this point is intact"
            )
        self.last_metrics = out
        return out

    # -- state -----------------------------------------------------------------------------
    def state_dict(self, include_replay: bool = False) -> dict[str, Any]:
        """Everything ``--resume`` needs, as tensors and plain containers (loads with
        ``torch.load(..., weights_only=True)``). Keys: ``algo``, ``format_version``, ``config``,
        ``observation_dim``, ``num_envs``, ``action_spec``, ``counters`` (global_step,
        iteration, num_updates), ``modules`` (name -> state_dict), ``optimizers``,
        ``rng`` (``cpu`` and, on CUDA, ``cuda`` generator states) and, if asked, ``replay``."""
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        state: dict[str, Any] = {
            "algo": self.algo,
            "format_version": 1,
            "config": _plain(asdict(self.config)),
            "observation_dim": self.obs_dim,
            "num_envs": self.num_envs,
            "action_spec": self.spec.to_dict(),
            "counters": {
                "global_step": self.global_step,
                "iteration": self.iteration,
                "num_updates": self.num_updates,
            },
            "modules": {k: m.state_dict() for k, m in self._modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self._optimizers().items()},
            "rng": rng,
        }
        replay = getattr(self, "replay", None)
        if include_replay and replay is not None:
            state["replay"] = replay.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any], restore_rng: bool = True) -> None:
        """Restores networks, optimizers, counters, RNG states (and the replay if saved).

        The learner keeps its constructor config (the saved one is informational). The env is
        reset at the next ``train`` call. ``restore_rng`` sets the global torch (and CUDA) RNG
        to the saved state; with several ranks each rank then reseeds to a distinct stream
        derived from it (the checkpoint holds rank 0's state).
        """
        if state.get("algo") != self.algo:
            raise ValueError(f"checkpoint is for algo {state.get('algo')!r}, not {self.algo!r}")
        if int(state["observation_dim"]) != self.obs_dim:
            raise ValueError(
                f"checkpoint observation_dim {state['observation_dim']} != env's {self.obs_dim}"
            )
        if ActionSpec.from_dict(state["action_spec"]) != self.spec:
            raise ValueError(
                f"checkpoint action_spec {state['action_spec']} != env's {self.spec.to_dict()}"
            )
        for k, m in self._modules().items():
            m.load_state_dict(state["modules"][k])
        for k, o in self._optimizers().items():
            load_optimizer_state(o, state["optimizers"][k])
        c = state["counters"]
        self.global_step = int(c["global_step"])
        self.iteration = int(c["iteration"])
        self.num_updates = int(c["num_updates"])
        if restore_rng:
            torch.set_rng_state(state["rng"]["cpu"].cpu())
            if self.device.type == "cuda" and "cuda" in state["rng"]:
                torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), self.device)
            if self.world_size > 1:
                # one checkpoint (rank 0's) for all ranks: derive distinct per-rank streams
                seed = int(torch.randint(0, 2**62, (1,)))
                torch.manual_seed(seed + 1_000_003 * self.rank)
        replay = getattr(self, "replay", None)
        if replay is not None and "replay" in state:
            replay.load_state_dict(state["replay"])
        self._obs = None
        self.metrics = MetricAccumulator(self.device)
        self._build_step_fns()

    def _inference_header(self) -> dict[str, Any]:
        return {
            "algo": self.algo,
            "format_version": 1,
            "observation_dim": self.obs_dim,
            "action_spec": self.spec.to_dict(),
            "hidden_dims": [int(h) for h in self.config.hidden_dims],
        }


def _plain(obj: Any) -> Any:
    """Config values as plain containers (tuples -> lists)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------
# Off-policy loop shared by SAC and TD3
# ---------------------------------------------------------------------------------------------


class OffPolicyLearner(LearnerBase):
    """Collect one vectorized step, store it, run ``updates_per_step`` updates.

    Subclasses provide ``_explore(obs) -> (method[N], unit knobs[N, C])`` (the behaviour
    policy after ``random_steps``) and ``_update(idx)`` (one gradient update on the replay rows
    ``idx``; accumulates its metrics).
    """

    config: OffPolicyConfig

    def __init__(self, env: VecEnv, config: OffPolicyConfig, device: Any = None) -> None:
        super().__init__(env, config, device)
        self.replay: ReplayBuffer | None = None
        per_rank_warmup = -(-config.warmup_steps // self.world_size)
        self._learning_starts = max(per_rank_warmup, config.batch_size)

    def _ensure_replay(self, total_steps: int) -> ReplayBuffer:
        """The replay, sized for this run: ``min(replay_size, transitions per rank)`` (so short
        runs do not allocate ``replay_size``); grown when a later ``train`` goes further.
        A capacity change invalidates captured graphs, so the step functions are rebuilt."""
        per_rank_total = -(-max(total_steps, 1) // self.world_size)
        cap = min(self.config.replay_size, per_rank_total + self.num_envs)
        if self.replay is None:
            self.replay = ReplayBuffer(
                cap, self.num_envs, self.obs_dim, self.num_knobs, self.device
            )
        elif cap >= self.replay.capacity + self.num_envs:
            self.replay.grow(cap)
            self._build_step_fns()
        return self.replay

    def _random_action(self) -> tuple[Tensor, Tensor]:
        n = self.num_envs
        method = torch.randint(0, self.num_methods, (n,), device=self.device)
        return method, torch.rand(n, self.num_knobs, device=self.device) * 2 - 1

    def _explore(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _update(self, idx: Tensor) -> None:
        raise NotImplementedError

    def load_state_dict(self, state: Mapping[str, Any], restore_rng: bool = True) -> None:
        if "replay" in state:
            cap = min(self.config.replay_size, int(state["replay"]["capacity"]))
            if self.replay is None:
                self.replay = ReplayBuffer(
                    cap, self.num_envs, self.obs_dim, self.num_knobs, self.device
                )
            else:
                self.replay.grow(cap)
        super().load_state_dict(state, restore_rng)

    def train(self, total_steps: int, hooks: Any = None) -> dict[str, float]:
        """Runs until ``global_step >= total_steps`` (env transitions, all envs and ranks)."""
        self._begin(total_steps, hooks)
        replay = self._ensure_replay(total_steps)
        cfg = self.config
        while self.global_step < total_steps:
            prev = self.global_step
            obs = self._obs
            assert obs is not None
            if self.global_step < cfg.random_steps:
                method, x = self._random_action()
            else:
                method, x = self._explore(obs)
                method, x = method.clone(), x.clone()
            next_obs, reward, term, _, true_next = self._env_step(self.knobs.action(method, x))
            replay.add(obs, method, x, reward, true_next, term)
            self._obs = next_obs
            self.global_step += self.steps_per_iteration
            if replay.size >= self._learning_starts:
                for _ in range(cfg.updates_per_step):
                    self._update(replay.sample_idx(cfg.batch_size))
                    self.num_updates += 1
            if not self._end_iteration(prev):
                break
        return self._finish()


def copy_module(m: nn.Module) -> nn.Module:
    """A frozen deep copy (target networks)."""
    t = copy.deepcopy(m)
    t.requires_grad_(False)
    return t
