"""Constants and constant tables of the batched STOI / ESTOI (:mod:`hear_vec.metrics.stoi`).

pystoi 0.4.1's constants (``FS``, ``N_FRAME``, ``NFFT``, ``NUMBAND``, ``MINFREQ``, ``N``,
``BETA``, ``DYN_RANGE``, ``EPS``) and the numpy tables derived from them. The tables go
through three caches, each for a reason:

1. ``functools.cache`` on :func:`_resample_plan`: the Kaiser filter design (numpy) runs once
   per input rate and process.
2. ``torch.compiler.assume_constant_result`` on :func:`_resample_dims` / :func:`_table_values`:
   under ``torch.compile`` they run once at trace time and their plain Python results become
   constants of the graph, so the numpy design is never traced into it.
3. ``_TABLES`` (a dict keyed by name, device and dtype) in :func:`_table`: the tensor of each
   table is built once per device / dtype, not on every call.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

FS = 10000  # internal sampling rate (Hz)
N_FRAME = 256  # window support (samples at 10 kHz)
HOP = N_FRAME // 2  # hop of the silence frames and of the STFT
NFFT = 512  # FFT size
NUMBAND = 15  # number of third-octave bands
MINFREQ = 150  # centre frequency of the first band (Hz)
N = 30  # frames per intermediate-intelligibility segment
BETA = -15.0  # lower SDR bound (dB)
DYN_RANGE = 40  # speech dynamic range (dB) for silent-frame removal
EPS = float(np.finfo("float").eps)  # pystoi's EPS (float64 eps), also used for float32
CLIP = 1.0 + 10 ** (-BETA / 20)  # y' <= x * (1 + 10^(-BETA/20))


@functools.cache
def _resample_plan(sample_rate: int) -> tuple[int, int, int, np.ndarray]:
    """Polyphase form of pystoi's ``resample_oct(x, FS, sample_rate)``.

    Returns (up, down, c_min, W) with W of shape (up, K) such that
    y[up*a + b] = sum_k x[down*a + c_min + k] * W[b, k] (x zero outside the row).
    """
    g = math.gcd(FS, sample_rate)
    up, down = FS // g, sample_rate // g
    # pystoi utils._resample_window_oct: Kaiser-windowed ideal low-pass, normalized to sum 1
    stopband_cutoff_f = 1.0 / (2 * max(up, down))
    roll_off_width = stopband_cutoff_f / 10
    rejection_db = 60.0  # -20 * log10_rejection with log10_rejection = -3
    half_len = math.ceil((rejection_db - 8) / (28.714 * roll_off_width))
    t = np.arange(-half_len, half_len + 1)
    ideal = 2 * up * stopband_cutoff_f * np.sinc(2 * stopband_cutoff_f * t)
    beta = 0.1102 * (rejection_db - 8.7)  # rejection > 50 dB
    h = np.kaiser(2 * half_len + 1, beta) * ideal
    h = h / np.sum(h)
    # scipy.signal.resample_poly: h *= up, pre-pad so output samples sit at the centre
    h = h * up
    n_pre_pad = down - half_len % down
    n_pre_remove = (half_len + n_pre_pad) // down
    # output y[m] = sum_i x[i] hp[(m + n_pre_remove)*down - i*up], hp[u] = h[u - n_pre_pad]
    bases = [(b + n_pre_remove) * down - n_pre_pad for b in range(up)]
    c_min = min(-((len(h) - 1 - base) // up) for base in bases)  # ceil((base - len + 1)/up)
    c_max = max(base // up for base in bases)
    k = np.arange(c_max - c_min + 1)
    u = np.array(bases)[:, None] - (k[None, :] + c_min) * up  # (up, K) filter indices
    valid = (u >= 0) & (u < len(h))
    w = np.where(valid, h[np.clip(u, 0, len(h) - 1)], 0.0)
    return up, down, c_min, w


def _band_edges() -> tuple[tuple[int, int], ...]:
    """pystoi utils.thirdoct(FS, NFFT, NUMBAND, MINFREQ) as (first, last + 1) FFT bins."""
    f = np.linspace(0, FS, NFFT + 1)[: NFFT // 2 + 1]
    k = np.arange(NUMBAND).astype(float)
    freq_low = MINFREQ * np.power(2.0, (2 * k - 1) / 6)
    freq_high = MINFREQ * np.power(2.0, (2 * k + 1) / 6)
    edges = []
    for i in range(NUMBAND):
        lo = int(np.argmin(np.square(f - freq_low[i])))
        hi = int(np.argmin(np.square(f - freq_high[i])))
        edges.append((lo, hi))
    return tuple(edges)


def _hanning() -> np.ndarray:
    """np.hanning(N_FRAME + 2)[1:-1] (= Matlab's hanning(N_FRAME))."""
    return np.hanning(N_FRAME + 2)[1:-1]


BAND_EDGES = _band_edges()
HANNING = _hanning()
_MAX_PHASE_LOOP = 32  # the FFT resampler is used up to this many input phases
_TABLES: dict[tuple, Tensor] = {}


# cache 2 (see the module docstring): constants of a compiled graph


@torch.compiler.assume_constant_result
def _resample_dims(sample_rate: int) -> tuple[int, int, int, int]:
    """(up, down, c_min, taps) of :func:`_resample_plan`."""
    up, down, c_min, w = _resample_plan(sample_rate)
    return up, down, c_min, w.shape[1]


@torch.compiler.assume_constant_result
def _table_values(name: str) -> tuple:
    """A constant table as nested tuples of floats.

    ``hanning``: hanning(258)[1:-1];
    ``resample_w:<rate>``: the polyphase filter W (up, 1, K);
    ``resample_v:<rate>``: W split into input phases, v[b, r, k'] = W[b, down k' + r],
    reversed along k' (up, down, K')."""
    kind, _, rate = name.partition(":")
    if kind == "hanning":
        array = HANNING
    else:
        up, down, _, w = _resample_plan(int(rate))
        if kind == "resample_w":
            array = w[:, None, :]
        else:
            taps_p = -(-w.shape[1] // down)
            w_pad = np.zeros((up, down * taps_p))
            w_pad[:, : w.shape[1]] = w
            array = w_pad.reshape(up, taps_p, down).transpose(0, 2, 1)[:, :, ::-1]
    return tuple(array.tolist())


def _table(name: str, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The table ``name`` (see :func:`_table_values`) on ``device`` / ``dtype``, cached."""
    key = (name, device, dtype)
    table = _TABLES.get(key)
    if table is None:
        with torch.inference_mode(False):  # never cache an inference tensor
            table = torch.tensor(_table_values(name), dtype=dtype, device=device)
        _TABLES[key] = table
    return table
