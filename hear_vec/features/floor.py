"""Noise-floor features: what the seed's 133 features do not say about a clip's SNR.

The log-mel means and standard deviations describe a clip's average spectrum and how much it
varies, but not how far speech rises above the noise in each band. These features read that
from the distribution of band energies over frames (no voice-activity decision): in a noisy
clip the quiet frames of a band hold mostly noise (its low percentile is the noise floor) and
the loud ones speech plus noise (a high percentile), so their distance is a per-band SNR
proxy. Every feature is a difference of levels in dB, so all are invariant to the clip's gain.

Per row (power spectrogram P[f, n] of the shared STFT, valid frames n only; 16 bands k with
log-spaced edges from 62.5 Hz to the Nyquist frequency, each at least one bin):

    E_k[n]  = 10 log10( sum_{f in band k} P[f, n] + eps )          band energy [dB]
    E[n]    = 10 log10( sum_f P[f, n] + eps )                      frame energy [dB]
    Q_k(q)  = q-quantile over n of E_k[n] (numpy "linear"), Q(q) likewise of E[n]

    floor_k = Q_k(0.1) - Q(0.5)        16: noise-floor shape, relative to the median frame
    range_k = Q_k(0.9) - Q_k(0.1)      16: per-band dynamic range (a band's SNR proxy)
    range   = Q(0.9) - Q(0.1)           1: the same over the whole spectrum
    tilt    = floor_15 - floor_0        1: high- against low-band noise floor

eps = 1e-10 x (the row's mean frame energy) + 1e-30 keeps silent bands finite and scale-free.
Rows with no valid frame give zeros.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from hear_vec.dsp import N_FFT, frame_mask

__all__ = ["NUM_FLOOR_FEATURES", "FLOOR_FEATURE_NAMES", "floor_features", "band_edges"]

N_BANDS = 16
LOW_HZ = 62.5
FLOOR_FEATURE_NAMES: tuple[str, ...] = (
    tuple(f"floor_{k}" for k in range(N_BANDS)) + tuple(f"range_{k}" for k in range(N_BANDS))
    + ("range", "tilt"))
NUM_FLOOR_FEATURES = len(FLOOR_FEATURE_NAMES)  # 34


@functools.lru_cache(maxsize=8)
def band_edges(sample_rate: int, n_fft: int = N_FFT) -> tuple[int, ...]:
    """Bin edges (N_BANDS + 1) of the log-spaced bands: band k holds bins [e_k, e_{k+1})."""
    bins = n_fft // 2 + 1
    hz = np.geomspace(LOW_HZ, sample_rate / 2.0, N_BANDS + 1)
    edges = np.round(hz / (sample_rate / n_fft)).astype(int)
    edges[0], edges[-1] = 0, bins
    for k in range(1, N_BANDS + 1):  # at least one bin per band
        edges[k] = max(edges[k], edges[k - 1] + 1)
    for k in range(N_BANDS - 1, -1, -1):  # and the last edge stays the bin count
        edges[k] = min(edges[k], edges[k + 1] - 1)
    return tuple(int(e) for e in edges)


@functools.lru_cache(maxsize=8)
def _band_matrix_np(sample_rate: int, bins: int) -> np.ndarray:
    edges = band_edges(sample_rate, 2 * (bins - 1))
    m = np.zeros((N_BANDS, bins), dtype=np.float32)
    for k in range(N_BANDS):
        m[k, edges[k]:edges[k + 1]] = 1.0
    return m


def floor_features(power: Tensor, lengths: Tensor | None, sample_rate: int = 16000) -> Tensor:
    """(..., 34) noise-floor features (module docstring) of a power spectrogram
    (..., 513, N) of audio with ``lengths`` (...,) valid samples (hop 256, centered)."""
    shape = power.shape[:-2]
    bins, frames = power.shape[-2:]
    flat = power.reshape(-1, bins, frames)
    lens = None if lengths is None else lengths.reshape(-1)
    bands = torch.as_tensor(_band_matrix_np(sample_rate, bins), dtype=flat.dtype,
                            device=flat.device)
    band_energy = torch.matmul(bands, flat)                     # (B, 16, N)
    total = flat.sum(-2, keepdim=True)                          # (B, 1, N)
    fmask = frame_mask(lens, frames, flat[:, 0, :]).unsqueeze(-2)  # (B, 1, N)
    count = fmask.sum(-1, keepdim=True).clamp_min(1).to(flat.dtype)
    mean_energy = (total * fmask).sum(-1, keepdim=True) / count
    eps = 1e-10 * mean_energy + 1e-30
    e_band = 10.0 * torch.log10(band_energy + eps)
    e_total = 10.0 * torch.log10(total + eps)
    q_band = _quantiles(e_band, fmask, (0.1, 0.5, 0.9))     # (B, 16, 3)
    q_total = _quantiles(e_total, fmask, (0.1, 0.5, 0.9))   # (B, 1, 3)
    floor = q_band[..., 0] - q_total[..., 0, 1:2]               # (B, 16)
    spread = q_band[..., 2] - q_band[..., 0]
    whole = q_total[..., 0, 2] - q_total[..., 0, 0]
    out = torch.cat([floor, spread, whole.unsqueeze(-1),
                     (floor[:, -1] - floor[:, 0]).unsqueeze(-1)], dim=-1)
    out = torch.where(fmask.reshape(-1, 1, frames).any(-1), out, 0.0)
    return out.reshape(shape + (NUM_FLOOR_FEATURES,))


def _quantiles(x: Tensor, mask: Tensor, qs: tuple[float, ...]) -> Tensor:
    """q-quantiles (numpy "linear") of x (B, C, N) over the frames where mask (B, 1, N) is
    True, from one sort: (B, C, len(qs)); 0 for rows without a valid frame."""
    mask = mask.expand_as(x)
    ordered = torch.where(mask, x, torch.full_like(x, float("inf"))).sort(dim=-1).values
    count = mask.sum(-1, keepdim=True).to(x.dtype)              # (B, C, 1)
    q = torch.tensor(qs, dtype=x.dtype, device=x.device)
    pos = q * (count - 1).clamp_min(0)                          # (B, C, Q)
    lo = pos.floor()
    frac = pos - lo
    lo_i = lo.long()
    hi_i = (lo_i + 1).clamp_max(x.shape[-1] - 1)
    v_lo = ordered.gather(-1, lo_i)
    v_hi = torch.where(frac > 0, ordered.gather(-1, hi_i), v_lo)
    return torch.where(count > 0, v_lo + frac * (v_hi - v_lo), 0.0)
