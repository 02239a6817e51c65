"""Delay alignment of a denoiser's output to its input before scoring.

Frame-based denoisers (RNNoise, NSNet2, ...) may return their output shifted by a few
milliseconds and with a different length. SI-SDR and STOI compare sample by sample, so an
unaligned output is scored as if it were distorted. The lag is estimated *blindly*, against
the noisy input the denoiser was given (never the clean reference):

    c[k] = sum_t out[t + k] * ref[t]                     (cross-correlation, via the FFT)
    lag  = argmax_{|k| <= max_lag} c[k]                  (first on ties, smallest |k| range)

``lag > 0``: the output is late by ``lag`` samples; the aligned output is
``aligned[t] = out[t + lag]`` for ``0 <= t + lag < len(out)``, zero elsewhere, cut or
zero-padded to ``len(ref)``. The search is bounded (e.g. +-50 ms) so a periodic signal
cannot pull it to a far-away peak.
"""

from __future__ import annotations

import numpy as np

__all__ = ["estimate_lag", "shift_to_length", "align_to_reference"]


def _vector(x: np.ndarray, name: str) -> np.ndarray:
    v = np.asarray(x, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D signal, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} holds non-finite samples")
    return v


def estimate_lag(output: np.ndarray, reference: np.ndarray, max_lag: int) -> int:
    """The lag (samples, in [-max_lag, max_lag]) that maximizes the cross-correlation
    ``sum_t output[t + lag] * reference[t]`` (see the module docstring)."""
    out, ref = _vector(output, "output"), _vector(reference, "reference")
    max_lag = int(max_lag)
    if max_lag < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    size = out.size + ref.size - 1
    nfft = 1 << (size - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(out, nfft) * np.conj(np.fft.rfft(ref, nfft)), nfft)
    hi = min(max_lag, out.size - 1)
    lo = min(max_lag, ref.size - 1)
    lags = np.arange(-lo, hi + 1)
    values = corr[lags % nfft]
    return int(lags[int(np.argmax(values))])


def shift_to_length(output: np.ndarray, lag: int, length: int) -> np.ndarray:
    """``aligned[t] = output[t + lag]`` where that index exists, else 0, for t < length
    (float32)."""
    out = np.asarray(output, dtype=np.float32).reshape(-1)
    aligned = np.zeros(int(length), dtype=np.float32)
    src_start = max(int(lag), 0)
    dst_start = max(-int(lag), 0)
    count = min(out.size - src_start, int(length) - dst_start)
    if count > 0:
        aligned[dst_start:dst_start + count] = out[src_start:src_start + count]
    return aligned


def align_to_reference(output: np.ndarray, reference: np.ndarray, max_lag: int
                       ) -> tuple[np.ndarray, int]:
    """(``output`` shifted by its estimated lag and cut / zero-padded to ``len(reference)``,
    the lag). ``output`` may be longer or shorter than ``reference``."""
    lag = estimate_lag(output, reference, max_lag)
    return shift_to_length(output, lag, np.asarray(reference).reshape(-1).size), lag
