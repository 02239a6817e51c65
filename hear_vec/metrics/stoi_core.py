"""The equations of the batched STOI / ESTOI (:mod:`hear_vec.metrics.stoi`), step by step as
pystoi 0.4.1 computes them (``pystoi.stoi.stoi``; Taal et al. 2011 for STOI, Jensen & Taal 2016
for ESTOI). Units: samples at FS = 10 kHz after step 1, frames of N_FRAME = 256 samples
(25.6 ms) every HOP = 128 (12.8 ms), NFFT = 512 bins over 0 .. 10 kHz (19.5 Hz each), 15
third-octave bands from MINFREQ = 150 Hz, segments of N = 30 frames (384 ms), energies in dB.

Steps (numbers as in the :mod:`hear_vec.metrics.stoi` docstring):

1. :func:`_resample` / :func:`_blocks_10k` -- pystoi ``resample_oct`` to 10 kHz, the signal in
   128-sample blocks;
2. silent-frame removal -- the frame decision is made on the clean signal
   (``hear_vec.metrics.stoi._reference``), its overlap-add here in :func:`_third_octave_bands`;
3. STFT, 512 points, hanning(258)[1:-1] window (:func:`_third_octave_bands`);
4. third-octave band envelopes X_j(m) = sqrt(sum_{k in band j} |X(k, m)|^2) (Taal eq. 1);
5. segments x_{j,m} of N frames (Taal eq. 2): STOI's normalization and clipping
   y' = min(y ||x|| / ||y||, (1 + 10^(-BETA/20)) x) (eq. 3) and the correlation
   d_{j,m} = <x - mean, y' - mean> / (||x - mean|| ||y' - mean||) (eq. 4), summed here and
   averaged over bands and segments by the caller (eq. 5) -- :func:`_clean_stoi`,
   :func:`_segment_stoi`; ESTOI's row (time) then column (band) normalization of each
   segment and the sum of x~ y~ -- :func:`_normalized`, :func:`_clean_unit`,
   :func:`_segment_estoi`.

Each function has one arithmetic. Where it says ``if _eager(x)``, the same arithmetic is
written with in-place updates of fresh intermediates (no autograd, no tracing: fewer
allocations on the CPU); the other branch is the out-of-place form that autograd and
``torch.compile`` need. Both give the same numbers.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from hear_vec.dsp import zero_beyond
from hear_vec.metrics.stoi_tables import (
    _MAX_PHASE_LOOP,
    BAND_EDGES,
    CLIP,
    EPS,
    FS,
    HOP,
    N_FRAME,
    NFFT,
    N,
    _resample_dims,
    _table,
)


class StoiReference(NamedTuple):
    """Everything STOI / ESTOI need from the clean signal, computed once and reused for any
    number of processed signals of the same rows (e.g. every step of an episode, whose clean
    reference is fixed). Rows are flattened (B = prod of the batch shape); all tensors are on
    the clean signal's device.

    lengths: (B,) valid samples at the input rate; first, second: (B, Fs + 1) block indices
    of the silent-frame overlap-add (which 128-sample blocks make each output block; the kept
    frames are decided by the clean signal alone); n_stft: (B,) STFT frames M = K - 1 left;
    tob: (B, 15, M') clean third-octave band magnitudes (M' >= 30 frames);
    STOI (empty along dim 1 when not built): norm, spread: (B, 15, J) per band and segment
    ||x|| and ||x - mean(x)|| + EPS; centered: (B, 15, J, 30) x - mean(x); bound:
    (B, 15, J, 30) the clipping bound (1 + 10^(-BETA/20)) x;
    ESTOI: unit (B, 15, J, 30) the clean segments normalized along time, then along the bands
    (x~ scaled by its column norm; empty along dim 1 when not built).
    Segment tensors are contiguous copies: the per-step arithmetic then runs on dense memory
    (~4x faster on the CPU than on overlapping ``unfold`` views), at 3 x 225 KB per 2-s row.
    """

    lengths: Tensor
    first: Tensor
    second: Tensor
    n_stft: Tensor
    tob: Tensor
    norm: Tensor
    spread: Tensor
    centered: Tensor
    bound: Tensor
    unit: Tensor


def _resample(x: Tensor, sample_rate: int, method: str | None = None) -> Tensor:
    """Resample rows of x (R, T) from ``sample_rate`` to FS -> (R, ceil(T*up/down)).

    Samples beyond a row's own length must be zero; outputs up to ceil(L*up/down) then equal
    the resampled unpadded row. ``method`` ("conv" or "fft") overrides the automatic choice.
    """
    up, down, c_min, taps = _resample_dims(sample_rate)
    rows, time = x.shape
    n_out = -(-time * up // down)
    n_blocks = -(-n_out // up)  # a: outputs per phase
    if method is None:
        cpu32 = x.device.type == "cpu" and x.dtype == torch.float32
        method = "conv" if (cpu32 or down > _MAX_PHASE_LOOP) else "fft"
    if method == "conv":
        need = down * (n_blocks - 1) + taps
        xp = F.pad(x, (-c_min, max(0, need - time + c_min)))
        if x.device.type != "cpu":  # GPU convolutions may run in TF32: use float64 there
            xp = xp.double()
        w = _table(f"resample_w:{sample_rate}", xp.device, xp.dtype)  # (up, 1, K)
        y = F.conv1d(xp.unsqueeze(1), w, stride=down)[..., :n_blocks].to(x.dtype)  # (R, up, A)
    elif method == "fft":
        # split the taps and the input into ``down`` phases, k = down k' + r: a sum over r of
        # correlations with v[b, r, k'] = W[b, down k' + r], done as FFT convolutions
        taps_p = -(-taps // down)
        length_in = n_blocks + taps_p - 1  # input samples per phase
        nfft = -(-length_in // 512) * 512  # no wrap-around on the outputs we keep
        xp = F.pad(x, (-c_min, down * length_in - time + c_min))
        phases = xp.reshape(rows, length_in, down).transpose(1, 2)  # (R, down, A + K' - 1)
        spec_x = torch.fft.rfft(phases, n=nfft)  # (R, down, nfft/2 + 1)
        spec_v = torch.fft.rfft(_table(f"resample_v:{sample_rate}", x.device, x.dtype), n=nfft)
        acc = spec_x[:, 0:1] * spec_v[:, 0]
        for r in range(1, down):  # static loop over the (at most _MAX_PHASE_LOOP) input phases
            acc = acc + spec_x[:, r:r + 1] * spec_v[:, r]
        y = torch.fft.irfft(acc, n=nfft)[..., taps_p - 1:taps_p - 1 + n_blocks]  # (R, up, A)
    else:
        raise ValueError(f"unknown resampling method {method!r}")
    return y.transpose(1, 2).reshape(rows, up * n_blocks)[:, :n_out]


def _layout(time: int, sample_rate: int) -> tuple[int, int, int]:
    """Static sizes for rows of ``time`` samples: (length at 10 kHz, silence frames Fs,
    128-sample blocks incl. one trailing zero block)."""
    if sample_rate != FS:
        up, down = _resample_dims(sample_rate)[:2]
        length10 = -(-time * up // down)
    else:
        length10 = time
    frames_static = max((length10 - (N_FRAME - HOP + 1)) // HOP, 1)
    n_blocks = max(-(-length10 // HOP), frames_static + 1) + 1  # the last block is all zero
    return length10, frames_static, n_blocks


def _blocks_10k(audio: Tensor, lengths: Tensor, sample_rate: int, ragged: bool,
                resample_method: str | None, zero_padded: bool = False) -> Tensor:
    """Step 1 for one signal: (B, T) -> the 10-kHz signal in blocks of HOP samples
    (B, n_blocks, 128), zero beyond each row's n10 = ceil(L up / down) samples.
    ``zero_padded``: the caller promises ``audio`` is already zero beyond ``lengths``."""
    batch, time = audio.shape
    device = audio.device
    if ragged and not zero_padded:
        audio = zero_beyond(audio, lengths)
    if sample_rate != FS:
        up, down = _resample_dims(sample_rate)[:2]
        audio = _resample(audio, sample_rate, resample_method)
        if ragged:
            n10 = (lengths * up + down - 1) // down
            audio = torch.where(torch.arange(audio.shape[-1], device=device) < n10.unsqueeze(-1),
                                audio, 0.0)
    length10, _, n_blocks = _layout(time, sample_rate)
    return F.pad(audio, (0, n_blocks * HOP - length10)).reshape(batch, n_blocks, HOP)


def _bands(blocks: Tensor, first: Tensor, second: Tensor, time: int, sample_rate: int
           ) -> Tensor:
    """Steps 2b-4 for one signal -> (B, 15, M'), at least N frames."""
    frames_static = _layout(time, sample_rate)[1]
    tob = _third_octave_bands(blocks, first, second, max(frames_static - 1, 1))
    if tob.shape[-1] < N:  # at least N frames so that segments exist
        tob = F.pad(tob, (0, N - tob.shape[-1]))
    return tob


def _segments(tob: Tensor) -> Tensor:
    """(..., 15, M) -> contiguous (..., 15, J, N): segment j = frames j .. j + N - 1."""
    return tob.unfold(-1, N, 1).contiguous()


def _window_sum(t: Tensor) -> Tensor:
    """Sums over every segment's N frames, (..., M) -> (..., J), on the ``unfold`` view."""
    return t.unfold(-1, N, 1).sum(-1)


def _eager(x: Tensor) -> bool:
    """In-place updates of fresh intermediates are safe (no autograd, no tracing)."""
    return not (x.requires_grad or torch.compiler.is_compiling())


def _clean_stoi(tob: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(norm, spread (B, 15, J), centered, bound (B, 15, J, N)) of the clean bands (B, 15, M)."""
    seg = _segments(tob)
    norm = _window_sum(tob.square()).sqrt()
    centered = seg - (_window_sum(tob) / N).unsqueeze(-1)
    spread = torch.linalg.vector_norm(centered, dim=-1) + EPS
    return norm, spread, centered, seg.mul_(CLIP) if _eager(seg) else seg * CLIP


def _segment_stoi(ref: StoiReference, tob: Tensor, chunks: list[slice]) -> Tensor:
    """STOI correlations of every segment, summed over the bands -> (B, J).

    tob: (B, 15, M) band magnitudes of the processed signal; the clean side comes from ref.
    Per band and segment: y' = min(y ||x|| / (||y|| + EPS), (1 + 10^(-BETA/20)) x),
    corr = <y' - mean, x - mean> / ((||y' - mean|| + EPS)(||x - mean|| + EPS)).
    Rows go through in ``chunks`` that bound the (rows, 15, J, N) intermediates."""
    parts = []
    norm_y = _window_sum(tob.square()).sqrt()  # ||y|| per band and segment
    alpha_all = (ref.norm / (norm_y + EPS)).unsqueeze(-1)
    for c in chunks:  # static loop over row chunks (stoi._row_chunks)
        y = _segments(tob[c])  # fresh, contiguous
        alpha = alpha_all[c]
        if _eager(y):
            dy = torch.minimum(y.mul_(alpha), ref.bound[c], out=y)
            dy.sub_(dy.sum(-1, keepdim=True) / N)
        else:
            clipped = torch.minimum(alpha * y, ref.bound[c])
            dy = clipped - clipped.sum(-1, keepdim=True) / N
        syy = torch.linalg.vector_norm(dy, dim=-1)
        sxy = (dy.mul_(ref.centered[c]) if _eager(dy) else dy * ref.centered[c]).sum(-1)
        corr = sxy / ((syy + EPS) * ref.spread[c])
        parts.append(corr.sum(-2))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _normalized(tob: Tensor) -> tuple[Tensor, Tensor]:
    """ESTOI's two normalizations of the segments of band magnitudes (R, 15, M): each band's
    N frames to zero mean and unit norm, then the band (column) mean removed. Returns (those
    rows (R, 15, J, N), inverse column norms (R, J, N)); a zero-variance row or column
    normalizes to 0 (pystoi's jitter would give random values)."""
    seg = _segments(tob)  # fresh, contiguous
    mean = (_window_sum(tob) / N).unsqueeze(-1)  # row means over the segment's frames
    rows = seg.sub_(mean) if _eager(seg) else seg - mean
    norm = torch.linalg.vector_norm(rows, dim=-1, keepdim=True)
    inv_row = torch.where(norm > 0, 1.0 / norm.masked_fill(norm == 0, 1.0),
                          torch.zeros_like(norm))
    rows = rows.mul_(inv_row) if _eager(rows) else rows * inv_row
    r = rows - rows.mean(dim=1, keepdim=True)  # column (band) mean removed
    cs = r.square().sum(dim=1).sqrt()  # (vector_norm over a middle dim is slow on the CPU)
    return r, torch.where(cs > 0, 1.0 / cs.masked_fill(cs == 0, 1.0), torch.zeros_like(cs))


def _clean_unit(tob: Tensor) -> Tensor:
    """ESTOI's doubly normalized clean segments x~ (B, 15, J, N)."""
    r, inv_col = _normalized(tob)
    return r.mul_(inv_col.unsqueeze(1)) if _eager(r) else r * inv_col.unsqueeze(1)


def _segment_estoi(ref: StoiReference, tob: Tensor, chunks: list[slice]) -> Tensor:
    """ESTOI sums sum_{k,n} x~ y~ of every segment -> (B, J); tob: (B, 15, M) processed."""
    parts = []
    for c in chunks:  # static loop over row chunks (stoi._row_chunks)
        r, inv_col = _normalized(tob[c])
        dot = (r.mul_(ref.unit[c]) if _eager(r) else r * ref.unit[c]).sum(dim=1)
        parts.append((dot * inv_col).sum(-1))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _third_octave_bands(blocks: Tensor, first: Tensor, second: Tensor, n_stft: int) -> Tensor:
    """Steps 2b-4 for one signal: overlap-add of the kept frames, STFT, band magnitudes.

    blocks: (B, n_blocks, 128) the 10-kHz signal in blocks of HOP samples (last block zero);
    first / second: (B, Fs + 1) block indices of the halves that make each output block;
    returns (B, 15, n_stft) third-octave band magnitudes.
    """
    window = _table("hanning", blocks.device, blocks.dtype)
    batch, n_blocks = blocks.shape[:2]
    flat = blocks.reshape(batch * n_blocks, HOP)
    offset = torch.arange(batch, device=blocks.device).unsqueeze(-1) * n_blocks

    def pick(index: Tensor) -> Tensor:  # blocks[b, index[b, s]] -> (B, Fs + 1, HOP)
        return flat.index_select(0, (index + offset).reshape(-1)).reshape(index.shape + (HOP,))

    # overlap-add with hop 128: output block s = w_lo * first half of kept frame s
    #                                        + w_hi * second half of kept frame s - 1
    sil = pick(first) * window[:HOP] + pick(second) * window[HOP:]
    sil = sil.reshape(batch, sil.shape[1] * HOP)  # 128 (K + 1) valid samples per row
    # STFT frames i = 0, 128, ... (K - 1 of them): 256 windowed samples, zero-padded to NFFT
    frames = sil.unfold(-1, N_FRAME, HOP)[:, :n_stft]
    if frames.shape[1] < n_stft:  # rows too short for any frame: all-zero frames
        frames = F.pad(frames, (0, 0, 0, n_stft - frames.shape[1]))
    if _eager(frames):  # window into a zero-padded buffer: rfft's own padding copies again
        padded = frames.new_zeros(frames.shape[:-1] + (NFFT,))
        torch.mul(frames, window, out=padded[..., :N_FRAME])
        spec = torch.fft.rfft(padded)  # (B, M, 257)
    else:
        spec = torch.fft.rfft(frames * window, n=NFFT)  # (B, M, 257)
    # X_k(m) = sqrt(sum_{f in band k} |X(f, m)|^2)
    spec = torch.view_as_real(spec)
    return torch.stack([spec[..., lo:hi, :].square().sum((-2, -1))
                        for lo, hi in BAND_EDGES], dim=-2).sqrt()
