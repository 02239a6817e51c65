"""Noise power tracking by speech presence probability (Gerkmann & Hendriks 2012).

T. Gerkmann, R. C. Hendriks, "Unbiased MMSE-based noise power estimation with low complexity
and low tracking delay", IEEE TASLP 20(4), 2012. Per bin f and frame n, with the periodogram
P_n = |X_n|^2 and the previous estimate lambda_{n-1}:

    posterior   p_n = 1 / (1 + (1 + xi_H1) exp(-(P_n / lambda_{n-1}) xi_H1 / (1 + xi_H1)))
                (eq. 12 with equal priors P(H0) = P(H1); xi_H1 = 15 dB, the fixed a-priori SNR
                 of speech presence)
    anti-stall  pbar_n = 0.9 pbar_{n-1} + 0.1 p_n;  p_n <- min(p_n, 0.99) where pbar_n > 0.99
    MMSE        E[|N|^2 | X] = p_n lambda_{n-1} + (1 - p_n) P_n                      (eq. 8)
    smoothing   lambda_n = a lambda_{n-1} + (1 - a) E[|N|^2 | X]                      (eq. 9)

a = 0.8 for the paper's 16 ms hop (hear_vec's hop is 256 samples = 16 ms at 16 kHz).
The paper starts from the first frames' mean (it assumes a speech-free start); here the start
lambda_0 is the caller's static estimate (e.g. mmse_lsa's bias-corrected quantile), which
needs no speech pause at the start of the clip.

Not used by the operators: inside mmse_lsa it raised the LSA gain on the training noises but
lowered the best fixed chain on the validation split from +3.89 to +3.64 dB and the pretrained
recipe's agent from +3.80 to +3.66 dB (``benchmarks/results/noise_track_trial.md``), so
mmse_lsa keeps its static quantile. ``benchmarks/noise_psd_ceiling.py`` uses it.

On speech-free noise the estimate settles below the true power: with P / lambda_true
exponential(1), the fixed point r = E[p r + (1 - p) P] of eqs. 8-9 is r = 0.81 lambda_true
(-0.9 dB; computed by iterating the expectation over 2e6 draws), because large periodogram
values are partly read as speech. No bias correction is applied: on the training and validation
clips of ``benchmarks/noise_psd_ceiling.py`` (a = 0.98) the LSA gain rose when the track was
scaled *down* (x 0.7: +3.35 dB, x 1: +3.18, x 1.4: +2.89; measured by hand with its functions).

Every step is a ratio of powers, so the track is scale invariant (X -> c X gives
lambda -> c^2 lambda) and causal: per-row padded frames come after the valid ones and never
influence them. Eager: a Python loop over the fixed frame count; under torch.compile:
``torch.scan`` of the same step. Cost: 28 ms CPU time for 64 rows x 2 s on one thread,
of 275 ms for a whole mmse_lsa call (measured by hand with ``time.process_time``, min of 5).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["spp_noise_track", "XI_H1_DB", "TRACK_SMOOTHING", "SPEECH_FREE_FIXED_POINT"]

XI_H1_DB = 15.0  # fixed a-priori SNR under speech presence (dB), paper Sec. III
TRACK_SMOOTHING = 0.8  # a of eq. 9 for a 16 ms hop
SPEECH_FREE_FIXED_POINT = 0.81  # lambda / true power on speech-free noise (docstring)
_PBAR_SMOOTHING = 0.9
_STALL = 0.99


def _step(carry: tuple[Tensor, Tensor], power_n: Tensor, smoothing: float
          ) -> tuple[tuple[Tensor, Tensor], Tensor]:
    """One frame of the track: carry (lambda_{n-1}, pbar_{n-1}) (B, F) and P_n (B, F)."""
    noise, pbar = carry
    xi = 10.0 ** (XI_H1_DB / 10.0)
    snr_post = power_n / noise.clamp_min(torch.finfo(noise.dtype).tiny)  # 0 / 0: silent row
    # p = 1 / (1 + (1 + xi) exp(-snr xi / (1 + xi))) = sigmoid(snr xi / (1 + xi) - ln(1 + xi))
    presence = torch.sigmoid(snr_post * (xi / (1.0 + xi)) - math.log1p(xi))
    pbar = _PBAR_SMOOTHING * pbar + (1.0 - _PBAR_SMOOTHING) * presence
    presence = torch.where(pbar > _STALL, presence.clamp_max(_STALL), presence)
    estimate = presence * noise + (1.0 - presence) * power_n
    noise = smoothing * noise + (1.0 - smoothing) * estimate
    return (noise, pbar), noise


def spp_noise_track(power: Tensor, start: Tensor, smoothing: float = TRACK_SMOOTHING
                    ) -> Tensor:
    """Noise power lambda (B, F, N) tracked over frames of the periodogram ``power`` (B, F, N)
    from the static estimate ``start`` (B, F, 1), which must be > 0 wherever power is.

    lambda[..., n] is the estimate after frame n (eqs. 8-9 in the module docstring)."""
    noise = start.squeeze(-1).expand(power.shape[:-1]).contiguous()
    pbar = torch.full_like(noise, 0.5)
    frames = power.permute(2, 0, 1)  # (N, B, F)
    if torch.compiler.is_compiling():
        from torch._higher_order_ops.scan import scan

        def body(carry: tuple[Tensor, Tensor], p_n: Tensor):
            carry, noise_n = _step(carry, p_n, smoothing)
            return carry, noise_n.clone()  # scan's outputs may not alias its carry

        _, track = scan(body, (noise, pbar), frames.contiguous())
        return track.permute(1, 2, 0)
    out = torch.empty_like(frames)
    carry = (noise, pbar)
    for n in range(frames.shape[0]):  # fixed frame count: a recursion over time
        carry, out[n] = _step(carry, frames[n], smoothing)
    return out.permute(1, 2, 0)
