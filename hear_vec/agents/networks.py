"""Networks of the learners: the knob scaler, MLPs, batched critic ensembles, the hybrid
Gaussian actor and the inference policy of PPO / SAC.

Action layout (the env protocol, :class:`~hear_vec.agents.base.VecEnv`): ``action[:, 0]`` is
the method id as a float (integer valued, ``0..K-1``; ignored when K = 1) and ``action[:, 1:]``
the C continuous knobs inside ``[knob_low, knob_high]``. Inside the learners the knobs live in
the unit box ``x in [-1, 1]^C``; the env value is the affine map

    knob = center + half * x,   center = (high + low) / 2,   half = (high - low) / 2.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hear_vec.agents.distributions import gather_method, sample_hybrid
from hear_vec.env.spaces import ActionSpec

__all__ = [
    "KnobScaler",
    "layer_init",
    "mlp",
    "EnsembleLinear",
    "EnsembleMLP",
    "HybridGaussianActor",
    "HybridQEnsemble",
    "GaussianHybridPolicy",
    "build_gaussian_policy",
    "copy_module",
]


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


def copy_module(m: nn.Module) -> nn.Module:
    """A frozen deep copy (target networks)."""
    t = copy.deepcopy(m)
    t.requires_grad_(False)
    return t
