"""Batched STOI / ESTOI that reproduce pystoi 0.4.1 step by step.

Pipeline per row (pystoi's names and constants; every step is a batched tensor op, rows of
different lengths are handled with masks, nothing branches on tensor values):

1. Resample to FS = 10 kHz with pystoi's Octave-compatible resampler ``resample_oct``:
   ``scipy.signal.resample_poly(x, p, q, window=h / sum(h))`` with a Kaiser-windowed sinc
   ``h`` (60 dB rejection). Written as a polyphase filter: with up = p/g, down = q/g and the
   zero-padded, up-scaled filter g[t] of resample_poly,

       y[up*a + b] = sum_c x[down*a + c] * g[(b + n0)*down - c*up],   b = 0..up-1,

   i.e. a stride-``down`` correlation with ``up`` output phases. On the CPU in float32 it runs
   as a conv1d; elsewhere as an FFT convolution of the ``down`` input phases (GPU convolutions
   may run in TF32, which would cost ~1e-3 relative accuracy), and for rates with more than 32
   input phases (e.g. 44.1 kHz: up/down = 100/441) as a conv1d in float64. A row of L samples
   gives ceil(L*up/down) samples, exactly resample_poly's output length, and its samples
   equal those of the unpadded row (the input beyond L is zeroed first).
2. Silent-frame removal: frames of N_FRAME = 256 samples every 128 (i = 0, 128, ... while
   i < n - 256), windowed by hanning(258)[1:-1]; energy E = 20 log10(||frame|| + EPS) dB; a
   frame is kept when E > max(E) - 40 dB (max over the row's frames). The kept frames are
   compacted (cumsum of the mask + scatter) and overlap-added with hop 128.
3. STFT of that signal: frames i = 0, 128, ... while i < n_sil - 256 (K kept frames give
   K - 1 STFT frames), the same window, rfft of 512 points.
4. 15 third-octave bands from 150 Hz: X_k(m) = sqrt(sum_{f in band k} |X(f, m)|^2).
5. Segments of N = 30 frames (m - 30 .. m - 1 for every m = 30 .. M), J = M - 29 of them.
   STOI: y' = min(y * ||x|| / (||y|| + EPS), x * (1 + 10^(15/20))) per band and segment, then
   d = mean over bands and segments of corr(x, y') (mean removed, norms + EPS).
   ESTOI: each segment normalized to zero mean / unit norm along time (rows), then along the
   bands (columns); d = sum(x~ * y~) / (N J). pystoi adds EPS * randn jitter before each
   normalization; we do not (results agree to ~1e-14), and a zero-variance row or column
   normalizes to 0 instead of pystoi's random values.
6. Rows with M < 30 STFT frames return 1e-5, like pystoi.

Memory: the two signals go one at a time through the resampler and the STFT (the largest
intermediates: the 512-point frames and their spectrum, about 0.65 MB per 2-s row in float32),
and the 30-frame segment statistics run on ``unfold`` views in chunks of the 30 frames, sized
so that no intermediate exceeds 2^24 elements (one chunk for 64 rows, 1-2 frames at a time
for a few thousand).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hear_vec._checks import check_audio, check_lengths, check_same_shape

__all__ = ["stoi"]

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


# ---------------------------------------------------------------------------------------------
# constant tables (numpy, built once)


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
_CHUNK_ELEMENTS = 1 << 24  # bound on the elements of one segment-statistics intermediate
_TABLES: dict[tuple, Tensor] = {}


# Under torch.compile, the functions marked assume_constant_result run once at trace time and
# their (plain Python) results become constants of the graph: the numpy filter design is
# never traced into it.


@torch.compiler.assume_constant_result
def _resample_dims(sample_rate: int) -> tuple[int, int, int, int]:
    """(up, down, c_min, taps) of :func:`_resample_plan`."""
    up, down, c_min, w = _resample_plan(sample_rate)
    return up, down, c_min, w.shape[1]


@torch.compiler.assume_constant_result
def _table_values(name: str) -> tuple:
    """A constant table as nested tuples of floats.

    ``hanning``: hanning(258)[1:-1]; ``hanning_fft``: the same zero-padded to NFFT;
    ``resample_w:<rate>``: the polyphase filter W (up, 1, K);
    ``resample_v:<rate>``: W split into input phases, v[b, r, k'] = W[b, down k' + r],
    reversed along k' (up, down, K')."""
    kind, _, rate = name.partition(":")
    if kind == "hanning":
        array = HANNING
    elif kind == "hanning_fft":
        array = np.concatenate([HANNING, np.zeros(NFFT - N_FRAME)])
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
        table = torch.tensor(_table_values(name), dtype=dtype, device=device)
        _TABLES[key] = table
    return table


# ---------------------------------------------------------------------------------------------
# steps


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


def _group_size(elements_per_frame: int) -> int:
    """Frames per chunk of the 30 segment frames: the largest divisor of N whose
    (..., J, chunk) intermediates stay within _CHUNK_ELEMENTS elements."""
    for size in (30, 15, 10, 6, 5, 3, 2):
        if size * elements_per_frame <= _CHUNK_ELEMENTS:
            return size
    return 1


def _segment_stoi(tob: Tensor) -> Tensor:
    """STOI correlations of every segment, summed over the bands -> (B, J).

    tob: (2, B, 15, M) band magnitudes of clean (0) and processed (1)."""
    seg = tob.unfold(-1, N, 1)  # (2, B, 15, J, N): a view, segment j = frames j .. j + N - 1
    x, y = seg[0], seg[1]
    norms = tob.square().unfold(-1, N, 1).sum(-1).sqrt()  # ||x||, ||y|| per band and segment
    alpha = (norms[0] / (norms[1] + EPS)).unsqueeze(-1)
    bound = (tob[0] * CLIP).unfold(-1, N, 1)
    mean_x = (x.sum(-1) / N).unsqueeze(-1)
    group = _group_size(x[..., 0].numel())
    chunks = [slice(g, g + group) for g in range(0, N, group)]

    def clipped(c: slice) -> Tensor:  # y' = min(alpha y, (1 + 10^(-BETA/20)) x)
        return torch.minimum(alpha * y[..., c], bound[..., c])

    # one chunk (small batches): keep y'; several: recompute it in the second pass
    kept = [clipped(chunks[0])] if len(chunks) == 1 else None
    mean_y = (sum((kept[0] if kept else clipped(c)).sum(-1) for c in chunks) / N).unsqueeze(-1)
    syy = sxx = sxy = 0
    for c in chunks:  # static loop over chunks of the segment's frames
        dy = (kept[0] if kept else clipped(c)) - mean_y
        dx = x[..., c] - mean_x
        syy = syy + dy.square().sum(-1)
        sxx = sxx + dx.square().sum(-1)
        sxy = sxy + (dy * dx).sum(-1)
    # corr = <y' - mean, x - mean> / ((||y' - mean|| + EPS)(||x - mean|| + EPS))
    corr = sxy / ((syy.sqrt() + EPS) * (sxx.sqrt() + EPS))
    return corr.sum(-2)


def _segment_estoi(tob: Tensor) -> Tensor:
    """ESTOI sums sum_{k,n} x~ y~ of every segment -> (B, J); tob: (2, B, 15, M)."""
    seg = tob.unfold(-1, N, 1)  # (2, B, 15, J, N) view
    mean = (seg.sum(-1) / N).unsqueeze(-1)  # row means over the segment's frames
    group = _group_size(seg[..., 0].numel())
    chunks = [slice(g, g + group) for g in range(0, N, group)]
    # one chunk (small batches): keep the centred rows; several: recompute them
    kept = [seg - mean] if len(chunks) == 1 else None
    ss = sum((kept[0] if kept else seg[..., c] - mean).square().sum(-1) for c in chunks)
    inv_row = torch.where(ss > 0, ss.rsqrt(), torch.zeros_like(ss)).unsqueeze(-1)
    acc = 0
    for c in chunks:  # static loop over chunks of the segment's frames
        r = (kept[0] if kept else seg[..., c] - mean) * inv_row  # row-normalized (2,B,15,J,G)
        r = r - r.mean(dim=2, keepdim=True)  # column (band) mean removed
        cs = r.square().sum(dim=2)  # (2, B, J, G)
        inv_col = torch.where(cs > 0, cs.rsqrt(), torch.zeros_like(cs))
        acc = acc + ((r[0] * r[1]).sum(dim=1) * inv_col[0] * inv_col[1]).sum(-1)
    return acc


def stoi(clean: Tensor, processed: Tensor, sample_rate: int = 16000,
         lengths: Tensor | None = None, extended: bool = False) -> Tensor:
    """STOI (or ESTOI with ``extended=True``) of ``processed`` against ``clean``, as pystoi 0.4.1.

    Args:
        clean: float tensor (..., time), the clean reference speech.
        processed: float tensor of the same shape, dtype and device.
        sample_rate: sampling rate of both (Hz); resampled to 10 kHz as pystoi does.
        lengths: optional integer tensor (...,) of valid samples per row; samples beyond are
            ignored (a padded row scores exactly like its unpadded self).
        extended: ESTOI instead of STOI.

    Returns:
        Tensor (...,) with the score of each row (dtype of the inputs); 1e-5 for rows with
        fewer than 30 STFT frames left after silent-frame removal (pystoi's fallback).
    """
    return _stoi(clean, processed, sample_rate, lengths, extended)


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
    # STFT frames i = 0, 128, ... (K - 1 of them), zero-padded to NFFT by a window whose
    # second half is zero
    sil = F.pad(sil, (0, NFFT - N_FRAME))
    window_fft = _table("hanning_fft", sil.device, sil.dtype)
    spec = torch.fft.rfft(sil.unfold(-1, NFFT, HOP)[:, :n_stft] * window_fft)  # (B, M, 257)
    # X_k(m) = sqrt(sum_{f in band k} |X(f, m)|^2)
    spec = torch.view_as_real(spec)
    return torch.stack([spec[..., lo:hi, :].square().sum((-2, -1))
                        for lo, hi in BAND_EDGES], dim=-2).sqrt()


def _stoi(clean: Tensor, processed: Tensor, sample_rate: int, lengths: Tensor | None,
          extended: bool, resample_method: str | None = None) -> Tensor:
    clean = check_audio("clean", clean)
    processed = check_audio("processed", processed)
    check_same_shape(clean, processed, ("clean", "processed"))
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    lengths = check_lengths(lengths, clean)
    batch_shape = clean.shape[:-1]
    time = clean.shape[-1]
    device, dtype = clean.device, clean.dtype
    ragged = lengths is not None
    clean = clean.reshape(-1, time)
    batch = clean.shape[0]
    if batch == 0:  # an empty batch (a static shape, not a value)
        return clean.new_zeros(batch_shape)
    lengths = (lengths.reshape(-1) if ragged
               else torch.full((batch,), time, dtype=torch.long, device=device))

    # 1. resample to 10 kHz; a row of L samples has n10 = ceil(L * up / down)
    if sample_rate != FS:
        up, down = _resample_dims(sample_rate)[:2]
        n10 = (lengths * up + down - 1) // down
    else:
        n10 = lengths

    def to_10k(audio: Tensor) -> Tensor:  # (B, T) -> (B, T10), zero beyond each row's n10
        if ragged:
            audio = audio * (torch.arange(time, device=device) < lengths.unsqueeze(-1))
        if sample_rate != FS:
            audio = _resample(audio, sample_rate, resample_method)
            if ragged:
                audio = audio * (torch.arange(audio.shape[-1], device=device)
                                 < n10.unsqueeze(-1))
        return audio

    # one signal at a time through the big stages: half the peak memory of stacking them
    signals = [to_10k(clean), to_10k(processed.reshape(-1, time))]

    # 2. silent-frame removal. Frame i (i = 0, 128, ... while i < n10 - 256) is blocks i and
    # i + 1 of 128 samples, windowed by w = hanning(258)[1:-1]; energy 20 log10(||w x|| + EPS)
    n_frames = ((n10 - (N_FRAME - HOP + 1)) // HOP).clamp_min(0)  # (B,)
    length10 = signals[0].shape[-1]
    frames_static = max((length10 - (N_FRAME - HOP + 1)) // HOP, 1)
    n_blocks = max(-(-length10 // HOP), frames_static + 1) + 1  # the last block is all zero
    zero_block = n_blocks - 1
    signals = [F.pad(x, (0, n_blocks * HOP - length10)).reshape(batch, n_blocks, HOP)
               for x in signals]
    window = _table("hanning", device, dtype)
    clean_sq = signals[0].square()
    energy = (clean_sq[:, :frames_static] * window[:HOP].square()).sum(-1) + (
        clean_sq[:, 1:frames_static + 1] * window[HOP:].square()).sum(-1)
    energy = 20 * torch.log10(energy.sqrt() + EPS)  # (B, Fs) in dB
    frame_idx = torch.arange(frames_static, device=device)
    valid = frame_idx < n_frames.unsqueeze(-1)  # (B, Fs)
    energy_max = torch.where(valid, energy, -torch.inf).amax(dim=-1, keepdim=True)
    keep = valid & ((energy_max - DYN_RANGE - energy) < 0)  # within 40 dB of the loudest
    n_keep = keep.sum(-1)  # K kept frames per row
    # source[k] = index of the k-th kept frame (compaction by cumsum + scatter)
    dest = torch.where(keep, keep.cumsum(-1) - 1, frames_static)
    source = torch.zeros(batch, frames_static + 1, dtype=torch.long, device=device)
    source = source.scatter(1, dest, frame_idx.expand(batch, -1))  # (B, Fs + 1)
    # output block s of the overlap-add = first half of kept frame s (block source[s]) +
    # second half of kept frame s - 1 (block source[s - 1] + 1); absent frames: the zero block
    slot = torch.arange(frames_static + 1, device=device)
    first = torch.where(slot < n_keep.unsqueeze(-1), source, zero_block)
    second = torch.where((slot >= 1) & (slot <= n_keep.unsqueeze(-1)),
                         source.roll(1, dims=-1) + 1, zero_block)

    # 3-4. STFT of the OLA'd signal (K kept frames give M = K - 1 frames), band magnitudes
    n_stft = n_keep - 1  # (B,)
    m_static = max(frames_static - 1, 1)
    tob = torch.stack([_third_octave_bands(x, first, second, m_static) for x in signals])
    if tob.shape[-1] < N:  # (2, B, 15, M), at least N frames so that segments exist
        tob = F.pad(tob, (0, N - tob.shape[-1]))

    # 5. segments of N frames; J = M - N + 1 per row
    n_seg = tob.shape[-1] - N + 1
    if extended:
        per_segment = _segment_estoi(tob)
        scale = N
    else:
        per_segment = _segment_stoi(tob)
        scale = NUMBAND
    n_valid = n_stft - N + 1  # (B,)
    seg_valid = torch.arange(n_seg, device=device) < n_valid.unsqueeze(-1)
    total = torch.where(seg_valid, per_segment, torch.zeros_like(per_segment)).sum(-1)
    score = total / (n_valid.clamp_min(1) * scale).to(dtype)
    # 6. pystoi's fallback for too few frames
    score = torch.where(n_stft >= N, score, torch.full_like(score, 1e-5))
    return score.reshape(batch_shape)
