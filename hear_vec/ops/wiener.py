"""Wiener-style gain with a dry/wet mix (the seed's, with its two quirks corrected).

Power P[f, n] = |X[f, n]|^2. The noise power per bin is estimated in power units from the
mean power over the row's valid frames, scaled by the strength and tilted across bins by
band_mix exactly as spectral subtraction's weight:

    N[f] = s (1 + 2 b f / (F - 1)) mean_n P[f, n]
    G_w  = P / (P + N)                  (1 where P + N = 0, i.e. silent bins)
    G    = (1 - a) + a G_w,   a = 0.3 + 0.7 m   (dry/wet, as the seed)

band_mix therefore raises the noise estimate of the upper bins (up to 3x at Nyquist), i.e. it
suppresses high frequencies harder, the same meaning it has in spectral_sub and mmse_lsa.

Seed differences, on purpose: the seed estimated noise as (1 - s) mean|X| (magnitude) and
compared it with |X|^2 (power). Its strength was inverted (s = 1 was the identity) and the
gain depended on the input's loudness. Here s = 0 is exactly the identity (N = 0, G_w =
P / P = 1) and both sides are powers, so G is scale-invariant.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hear_vec import dsp
from hear_vec.ops._common import Spec, apply_spectral, bin_tilt, knob

__all__ = ["wiener", "wiener_gain"]


def wiener_gain(spec: Spec, knobs: Tensor) -> Tensor:
    """Real gain (B, F, N) of the Wiener method on a shared analysis."""
    s, m, b = knob(knobs, 0), knob(knobs, 1), knob(knobs, 2)
    power = spec.mag.square()
    mean_power = dsp.masked_mean(power, spec.fmask, keepdim=True)  # (B, F, 1)
    noise = s * bin_tilt(b, power.shape[-2]) * mean_power
    denom = power + noise
    g = torch.where(denom > 0, power / denom.masked_fill(denom == 0, 1.0),
                    torch.ones_like(power))
    alpha = 0.3 + 0.7 * m
    return 1.0 - alpha * (1.0 - g)


def wiener(audio: Tensor, knobs: Tensor, lengths: Tensor | None = None) -> Tensor:
    """Wiener denoising of audio (..., T) with knobs (..., 3) = (strength, smoothing,
    band_mix) in [0, 1] and optional lengths (...,); returns (..., T), zero beyond lengths."""
    return apply_spectral(wiener_gain, audio, knobs, lengths, need_sorted=False)
