"""Statistics along the last axis that ignore masked-out (padded) entries.

Conventions follow numpy: :func:`masked_quantile` interpolates linearly between order
statistics (``np.percentile``'s default), so the median of an even count averages the two
middle values. An all-masked row gives 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["masked_mean", "masked_std", "masked_quantile", "masked_median"]


def masked_mean(x: Tensor, mask: Tensor, keepdim: bool = False) -> Tensor:
    """Mean of x over the last axis where mask is True; mask broadcasts against x."""
    m = mask.to(x.dtype).expand_as(x)
    count = m.sum(-1, keepdim=keepdim).clamp_min(1)
    return (x * m).sum(-1, keepdim=keepdim) / count


def masked_std(x: Tensor, mask: Tensor, keepdim: bool = False) -> Tensor:
    """Population std (ddof=0, numpy's default) of x over the last axis where mask is True."""
    m = mask.to(x.dtype).expand_as(x)
    mean = masked_mean(x, mask, keepdim=True)
    count = m.sum(-1, keepdim=keepdim).clamp_min(1)
    var = ((x - mean).square() * m).sum(-1, keepdim=keepdim) / count
    return var.sqrt()


def masked_quantile(x: Tensor, mask: Tensor, q: float, keepdim: bool = False) -> Tensor:
    """q-quantile (0..1) of x over the last axis where mask is True, numpy 'linear' method:
    sorted valid values v_0..v_{n-1}, position p = q (n - 1), result v_floor(p) + frac(p) *
    (v_ceil(p) - v_floor(p))."""
    mask = mask.expand_as(x)
    inf = torch.tensor(float("inf"), dtype=x.dtype, device=x.device)
    ordered = torch.where(mask, x, inf).sort(dim=-1).values
    count = mask.sum(-1, keepdim=True)
    pos = q * (count - 1).clamp_min(0).to(x.dtype)
    lo = pos.floor()
    frac = pos - lo
    lo_i = lo.long()
    hi_i = (lo_i + 1).clamp_max(x.shape[-1] - 1)
    v_lo = ordered.gather(-1, lo_i)
    v_hi = ordered.gather(-1, hi_i)
    v_hi = torch.where(frac > 0, v_hi, v_lo)  # avoid inf * 0 when the upper neighbour is padding
    value = v_lo + frac * (v_hi - v_lo)
    value = torch.where(count > 0, value, torch.zeros_like(value))
    return value if keepdim else value.squeeze(-1)


def masked_median(x: Tensor, mask: Tensor, keepdim: bool = False) -> Tensor:
    """Median of x over the last axis where mask is True (numpy: mean of the middle two)."""
    return masked_quantile(x, mask, 0.5, keepdim=keepdim)
