"""Spectral subtraction (the seed's, unchanged).

Per bin f, the noise floor is the median of |X[f, n]| over the row's valid frames; the
subtraction weight rises linearly across bins, w[f] = 1 + 2 b f / (F - 1); the gain is

    G[f, n] = clip(1 - s w[f] floor[f] / |X[f, n]|, 0, 1) ** (1 + 2 m)

(s strength, m smoothing, b band_mix). s = 0 gives G = 1 exactly; the floor and |X| scale
together, so G is scale-invariant. Bins with |X| = 0 carry nothing and get G = 1.
"""

from __future__ import annotations

from torch import Tensor

from hear_vec.ops._common import Spec, apply_spectral, bin_tilt, knob, quantile

__all__ = ["spectral_sub", "spectral_sub_gain"]


def spectral_sub_gain(spec: Spec, knobs: Tensor) -> Tensor:
    """Real gain (B, F, N) of spectral subtraction on a shared analysis."""
    s, m, b = knob(knobs, 0), knob(knobs, 1), knob(knobs, 2)
    floor = quantile(spec, 0.5)  # (B, F, 1) median over valid frames
    over = s * bin_tilt(b, spec.mag.shape[-2]) * floor  # scaled floor, 0 when s = 0
    mag = spec.mag
    safe = mag.masked_fill(mag == 0, 1.0)
    ratio = (over / safe).masked_fill(mag == 0, 0.0)
    return (1.0 - ratio).clamp(0.0, 1.0).pow(1.0 + 2.0 * m)


def spectral_sub(audio: Tensor, knobs: Tensor, lengths: Tensor | None = None) -> Tensor:
    """Spectral subtraction of audio (..., T) with knobs (..., 3) = (strength, smoothing,
    band_mix) in [0, 1] and optional lengths (...,); returns (..., T), zero beyond lengths."""
    return apply_spectral(spectral_sub_gain, audio, knobs, lengths, need_sorted=True)
