"""Hybrid (method, knobs) distribution helpers; all shapes static, no host syncs.

Hybrid squashed-Gaussian policy (used by PPO and SAC)
-----------------------------------------------------
pi(k, x | s) = Cat(k; softmax(logits(s))) * p(x | s, k), with per-method knob Gaussians in an
unbounded space u ~ N(mu_k(s), sigma_k(s)^2) squashed by x = tanh(u). Its log-density in env
units (change of variables through tanh and the affine map of
:class:`~hear_vec.agents.networks.KnobScaler`) is

    log pi(k, x | s) = log_softmax(logits)_k
                       + sum_j [ log N(u_j; mu_kj, sigma_kj) - log(1 - tanh(u_j)^2) - log half_j ]

with log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2 u)) (stable for large |u|).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = [
    "gumbel_argmax",
    "gather_method",
    "tanh_log_det",
    "squashed_sample",
    "hybrid_log_prob_entropy",
    "sample_hybrid",
]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


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
