"""The observation an agent sees, and the running normalizer kept on the device.

Layout of one observation row (D = 2 * F + num_methods + 3 + 1, F = 133 audio features, or
133 + 34 with the noise-floor features of :mod:`hear_vec.features.floor`):

    [ features(original noisy segment) : F | features(current audio) : F |
      previous method one-hot : num_methods  | previous knobs : 3 | step / max_steps : 1 ]

The seed saw only the first block (plus the last three) and so never saw what its own last
action did; the second block fixes that. The 2F audio features are normalized by a running
mean / std (Chan et al.'s parallel update, on the device); the one-hot, knobs and time
fraction are already in [0, 1] and pass through unchanged. Normalized values are clipped to
±``clip``: whole files at inference can be far longer, louder or quieter than training
segments (duration above all), and clipping keeps such a feature from dominating the input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hear_vec.features import NUM_FEATURES

__all__ = ["NUM_FEATURES", "observation_dim", "build_observation", "RunningNormalizer"]


def observation_dim(num_methods: int, num_features: int = NUM_FEATURES) -> int:
    """Width of an observation row for ``num_methods`` methods and ``num_features`` audio
    features per signal."""
    return 2 * num_features + num_methods + 3 + 1


def build_observation(noisy_features: Tensor, current_features: Tensor, prev_method: Tensor,
                      prev_knobs: Tensor, step: Tensor, max_steps: int,
                      num_methods: int) -> Tensor:
    """Raw (unnormalized) observation [B, D].

    prev_method: LongTensor[B], −1 before the first step (one-hot all zero);
    prev_knobs: [B, 3]; step: LongTensor[B] steps taken so far in the episode.
    """
    onehot = (prev_method.unsqueeze(-1) == torch.arange(num_methods, device=prev_method.device))
    dtype = noisy_features.dtype
    return torch.cat([
        noisy_features,
        current_features,
        onehot.to(dtype),
        prev_knobs.to(dtype),
        (step.to(dtype) / max_steps).unsqueeze(-1),
    ], dim=-1)


class RunningNormalizer(nn.Module):
    """Running mean / variance of the first ``num_normalized`` columns, kept in buffers.

    update(x): merges a batch's mean and variance into the running ones (Chan et al. 1979):
        delta = m_b - m, n' = n + n_b, m' = m + delta * n_b / n',
        M2' = M2 + M2_b + delta^2 * n * n_b / n'
    normalize(x): (x - m) / max(sqrt(M2 / n), min_std), clipped to [-clip, clip]; columns
    past ``num_normalized`` pass through. Before any update it is the identity (then clipped).
    """

    def __init__(self, dim: int, num_normalized: int, clip: float = 5.0,
                 min_std: float = 1e-2) -> None:
        super().__init__()
        self.dim = dim
        self.num_normalized = num_normalized
        self.clip = clip
        self.min_std = min_std
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(num_normalized, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(num_normalized, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Merge the rows of x [B, dim] (normalized columns only) into the statistics."""
        xb = x[:, : self.num_normalized].to(torch.float64)
        n_b = float(xb.shape[0])
        mean_b = xb.mean(0)
        m2_b = (xb - mean_b).square().sum(0)
        total = self.count + n_b
        delta = mean_b - self.mean
        self.mean.add_(delta * (n_b / total))
        self.m2.add_(m2_b + delta.square() * (self.count * n_b / total))
        self.count.copy_(total)

    def std(self) -> Tensor:
        var = self.m2 / self.count.clamp_min(1.0)
        std = var.sqrt().clamp_min(self.min_std)
        return torch.where(self.count > 1, std, torch.ones_like(std))

    def normalize(self, x: Tensor) -> Tensor:
        k = self.num_normalized
        mean = self.mean.to(x.dtype)
        std = self.std().to(x.dtype)
        head = ((x[:, :k] - mean) / std).clamp(-self.clip, self.clip)
        return torch.cat([head, x[:, k:]], dim=-1)

    def export(self) -> dict[str, Tensor | int | float]:
        """Plain-tensor state for checkpoints (loads with weights_only=True)."""
        return {"dim": self.dim, "num_normalized": self.num_normalized, "clip": self.clip,
                "min_std": self.min_std, "count": self.count.detach().cpu().clone(),
                "mean": self.mean.detach().cpu().clone(), "m2": self.m2.detach().cpu().clone()}

    @classmethod
    def from_export(cls, state: dict, device: torch.device | str = "cpu") -> RunningNormalizer:
        norm = cls(int(state["dim"]), int(state["num_normalized"]), float(state["clip"]),
                   float(state["min_std"]))
        norm.count.copy_(state["count"])
        norm.mean.copy_(state["mean"])
        norm.m2.copy_(state["m2"])
        return norm.to(device)
