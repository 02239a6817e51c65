"""Log-spectral-amplitude MMSE estimator (Ephraim & Malah 1985) with decision-directed
a-priori SNR.

Noise PSD. Per bin, from the q = 0.2 quantile of |X| over the row's valid frames, corrected
for the bias of a low quantile of Gaussian noise (|X|^2 of complex Gaussian noise of power
lambda is exponential, so its q-quantile is -ln(1 - q) lambda):

    lambda[f] = Q_0.2(|X[f, .]|)^2 / (-ln 0.8) (1 + 2 b f / (F - 1))

band_mix b tilts the estimate up towards high frequencies as in spectral_sub and wiener. A
relative floor of 1e-10 x the row's mean power keeps the ratio finite without breaking scale
invariance. (The quantile reads the same sort of |X| that spectral_sub and spectral_gate use.)
Why a quantile: it needs no voice-activity decision and no per-row selection of frames, and
on dev audio (20 clips, each with one of the 7 noises, at 0 and 5 dB) q = 0.1, 0.2, 0.35 and
0.5 gave the same mean SI-SDR gain within 0.15 dB; 0.2 leaves room for speech in up to ~80 %
of a bin's frames. Why static: a speech-presence track of it over frames
(:mod:`hear_vec.ops.noise_tracker`) helped on the training noises but lowered the best fixed
chain on the validation split from +3.89 to +3.64 dB (``benchmarks/results/noise_track_trial.md``).

Recursion over frames n (eager: a Python loop over the fixed frame count; under torch.compile:
torch.scan. Per-row padded frames come after the valid ones, so they never influence them):

    gamma_n = P_n / lambda                                    (a-posteriori SNR)
    xi_n    = max(a G_{n-1}^2 gamma_{n-1} + (1 - a) max(gamma_n - 1, 0), xi_min)
              (xi_0 = max(gamma_0 - 1, xi_min))
    v_n     = xi_n gamma_n / (1 + xi_n)
    G_n     = min(1, xi_n / (1 + xi_n) exp(E1(v_n) / 2))        (never amplify)

with a = 0.9 + 0.09 m (m = 8/9 gives the textbook 0.98) and xi_min = -25 dB.
Strength s blends the estimator in: the applied gain is 1 - s (1 - G), so s = 0 is exactly the
identity and s = 1 is the plain LSA estimator.

On CUDA the recursion runs as one fused Triton kernel (``kernels.lsa_recursion``: one program
per block of (row, bin) columns loops over the frames with prev in registers).

E1 (torch has none): :func:`exp1`, the power series for x <= 1 and Abramowitz & Stegun 5.1.56
(a rational approximation of x e^x E1(x), |error| < 2e-8, i.e. < 4e-8 relative) above.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hear_vec import _kernels
from hear_vec.ops._common import Spec, apply_spectral, bin_tilt, knob, quantile
from hear_vec.ops.lsa_gain import XI_MIN, _recursion, exp1, lsa_gain

__all__ = ["mmse_lsa", "mmse_lsa_gain", "quantile_noise", "exp1", "lsa_gain", "XI_MIN",
           "NOISE_QUANTILE"]

NOISE_QUANTILE = 0.2


def quantile_noise(spec: Spec) -> Tensor:
    """The static noise PSD (B, F, 1) before the band_mix tilt: Q_0.2(|X[f, .]|)^2 / -ln 0.8
    over each row's valid frames (module docstring)."""
    return quantile(spec, NOISE_QUANTILE).square() / -math.log1p(-NOISE_QUANTILE)


def mmse_lsa_gain(spec: Spec, knobs: Tensor) -> Tensor:
    """Real gain (B, F, N) of the LSA estimator on a shared analysis."""
    s, m, b = knob(knobs, 0), knob(knobs, 1), knob(knobs, 2)
    power = spec.mag.square()
    noise = quantile_noise(spec) * bin_tilt(b, power.shape[-2])
    fm = spec.fmask.to(power.dtype)
    row_mean = (power * fm).sum((-2, -1), keepdim=True) / (spec.count * power.shape[-2])
    noise = torch.maximum(noise, 1e-10 * row_mean)
    gamma = torch.where(noise > 0, power / noise.masked_fill(noise == 0, 1.0),
                        torch.zeros_like(power)).clamp_max(1e12)
    gamma = gamma.permute(2, 0, 1).contiguous()  # (N, B, F): one contiguous slab per frame
    alpha = (0.9 + 0.09 * m).reshape(-1, 1)  # (B, 1) decision-directed smoothing
    wet = (1.0 - alpha) * (gamma - 1.0).clamp_min(0.0)  # (1 - a) max(gamma - 1, 0)
    fused = _kernels.fused(gamma)  # CUDA: the fused Triton recursion (kernels.lsa_recursion)
    gains = fused.lsa_recursion(gamma, wet, alpha) if fused else _recursion(gamma, wet, alpha)
    return 1.0 - s * (1.0 - gains.permute(1, 2, 0))


def mmse_lsa(audio: Tensor, knobs: Tensor, lengths: Tensor | None = None) -> Tensor:
    """LSA-MMSE denoising of audio (..., T) with knobs (..., 3) = (strength, smoothing,
    band_mix) in [0, 1] and optional lengths (...,); returns (..., T), zero beyond lengths."""
    return apply_spectral(mmse_lsa_gain, audio, knobs, lengths, need_sorted=True)
