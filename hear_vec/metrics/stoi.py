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

Clean side once. Resampling, silent-frame detection, the clean band envelopes and the clean
segment statistics depend on the clean signal alone: :func:`stoi_reference` computes them once
(a :class:`StoiReference`) and :func:`stoi_from_reference` scores any processed signal of the
same rows against it, STOI and ESTOI from one pass of the processed side (the env scores every
step of an episode against one clean reference). :func:`stoi` is the two in sequence.

On CUDA the segment statistics of step 5 run as one fused Triton kernel
(``kernels.stoi_segments``: a program per (row, segment) reduces the (15, 30) tiles of both
signals in registers), and the reference then holds the clean band envelopes only.

Memory: the two signals go one at a time through the resampler and the STFT (the largest
intermediates: the 512-point frames and their spectrum, about 0.65 MB per 2-s row in float32).
The segment statistics run on contiguous (rows, 15, J, 30) copies of the segments, rows in
chunks so that no intermediate exceeds 2^24 elements (all rows at once up to ~300 rows of
2 s, then chunks); the reference keeps three such tensors per row (~0.7 MB per 2-s row).

Modules: this one holds the public API, the clean-side reference (step 2's frame decision and
the clean segment statistics) and the scoring of processed rows against it;
:mod:`hear_vec.metrics.stoi_core` the equations of each step; :mod:`hear_vec.metrics.stoi_tables`
the constants and cached tables.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hear_vec import _kernels
from hear_vec._checks import check_audio, check_lengths, check_same_shape
from hear_vec.metrics.stoi_core import (
    StoiReference,
    _bands,
    _blocks_10k,
    _clean_stoi,
    _clean_unit,
    _layout,
    _resample,  # noqa: F401  (tests and tools reach it as hear_vec.metrics.stoi._resample)
    _resample_dims,
    _segment_estoi,
    _segment_stoi,
    _table,
)
from hear_vec.metrics.stoi_tables import (
    DYN_RANGE,
    EPS,
    FS,
    HOP,
    N_FRAME,
    NUMBAND,
    N,
)

__all__ = ["stoi", "stoi_reference", "stoi_from_reference", "StoiReference"]

_CHUNK_ELEMENTS = 1 << 24  # bound on the elements of one segment-statistics intermediate


def _row_chunks(rows: int, elements_per_row: int) -> list[slice]:
    """Slices of rows such that a (rows, ...) segment intermediate of ``elements_per_row``
    elements per row stays within _CHUNK_ELEMENTS (at least one row per chunk)."""
    size = max(1, _CHUNK_ELEMENTS // max(elements_per_row, 1))
    return [slice(r, r + size) for r in range(0, rows, size)]


def _reference(clean: Tensor, lengths: Tensor, sample_rate: int, ragged: bool,
               resample_method: str | None, standard: bool, extended: bool,
               zero_padded: bool = False) -> StoiReference:
    """The clean side of steps 1-5 for flat rows (B, T) and lengths (B,)."""
    batch, time = clean.shape
    device, dtype = clean.device, clean.dtype
    if sample_rate != FS:
        up, down = _resample_dims(sample_rate)[:2]
        n10 = (lengths * up + down - 1) // down
    else:
        n10 = lengths
    blocks = _blocks_10k(clean, lengths, sample_rate, ragged, resample_method, zero_padded)

    # 2. silent-frame removal. Frame i (i = 0, 128, ... while i < n10 - 256) is blocks i and
    # i + 1 of 128 samples, windowed by w = hanning(258)[1:-1]; energy 20 log10(||w x|| + EPS)
    n_frames = ((n10 - (N_FRAME - HOP + 1)) // HOP).clamp_min(0)  # (B,)
    _, frames_static, n_blocks = _layout(time, sample_rate)
    zero_block = n_blocks - 1
    window = _table("hanning", device, dtype)
    clean_sq = blocks.square()
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
    tob = _bands(blocks, first, second, time, sample_rate)
    norm = spread = tob.new_zeros(batch, 0, 0)
    centered = bound = unit = tob.new_zeros(batch, 0, 0, 0)
    if _kernels.fused(tob) is not None:
        # the fused kernel (CUDA) recomputes the clean statistics from tob: keep only markers
        # of what was asked for (dim 1 = 15), not the (B, 15, J, N) tensors
        marker = tob.new_zeros(batch, NUMBAND, 0, 0)
        norm = tob.new_zeros(batch, NUMBAND, 0) if standard else norm
        unit = marker if extended else unit
    else:
        if standard:
            norm, spread, centered, bound = _clean_stoi(tob)
        if extended:
            unit = _clean_unit(tob)
    return StoiReference(lengths, first, second, n_keep - 1, tob, norm, spread, centered, bound,
                         unit)


def _scores(ref: StoiReference, processed: Tensor, sample_rate: int, ragged: bool,
            resample_method: str | None, standard: bool, extended: bool,
            zero_padded: bool = False) -> tuple[Tensor | None, Tensor | None]:
    """Steps 1-6 of the processed rows (B, T) against a reference: (STOI, ESTOI) (B,) each,
    None for the one not asked for."""
    time = processed.shape[-1]
    blocks = _blocks_10k(processed, ref.lengths, sample_rate, ragged, resample_method,
                         zero_padded)
    tob = _bands(blocks, ref.first, ref.second, time, sample_rate)

    # 5. segments of N frames; J = M - N + 1 per row
    n_seg = tob.shape[-1] - N + 1
    n_valid = ref.n_stft - N + 1  # (B,)
    seg_valid = torch.arange(n_seg, device=tob.device) < n_valid.unsqueeze(-1)

    def score(per_segment: Tensor, scale: int) -> Tensor:
        total = torch.where(seg_valid, per_segment, torch.zeros_like(per_segment)).sum(-1)
        value = total / (n_valid.clamp_min(1) * scale).to(tob.dtype)
        # 6. pystoi's fallback for too few frames
        return torch.where(ref.n_stft >= N, value, torch.full_like(value, 1e-5))

    fused = _kernels.fused(tob)
    if fused is not None:  # CUDA: one Triton kernel for both (kernels.stoi_segments)
        per_stoi, per_estoi = fused.stoi_segments(ref.tob, tob)
        return (score(per_stoi, NUMBAND) if standard else None,
                score(per_estoi, N) if extended else None)
    chunks = _row_chunks(tob.shape[0], NUMBAND * n_seg * N)
    out_stoi = score(_segment_stoi(ref, tob, chunks), NUMBAND) if standard else None
    out_estoi = score(_segment_estoi(ref, tob, chunks), N) if extended else None
    return out_stoi, out_estoi


def _check_rate(sample_rate: object) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    return sample_rate


def stoi_reference(clean: Tensor, sample_rate: int = 16000, lengths: Tensor | None = None,
                   standard: bool = True, extended: bool = True, *,
                   zero_padded: bool = False) -> StoiReference:
    """The clean-side work of STOI (``standard``) and / or ESTOI (``extended``), done once.

    clean: float tensor (..., time); lengths: optional (...,) valid samples. Resampling,
    silent-frame detection, the clean band envelopes and the clean segment statistics depend
    on the clean signal alone; :func:`stoi_from_reference` then scores any processed signal of
    the same rows with only the processed side left to compute. Rows are flattened.
    ``zero_padded=True``: the caller promises ``clean`` is already zero beyond ``lengths``,
    and the masking pass is skipped (the results are the same for such input).
    """
    clean = check_audio("clean", clean)
    sample_rate = _check_rate(sample_rate)
    lengths = check_lengths(lengths, clean)
    time = clean.shape[-1]
    flat = clean.reshape(-1, time)
    lens = (lengths.reshape(-1) if lengths is not None
            else torch.full(flat.shape[:1], time, dtype=torch.long, device=flat.device))
    return _reference(flat, lens, sample_rate, lengths is not None, None, standard, extended,
                      zero_padded)


def stoi_from_reference(reference: StoiReference, processed: Tensor, sample_rate: int = 16000,
                        standard: bool = True, extended: bool = True, *,
                        zero_padded: bool = False) -> tuple[Tensor | None, Tensor | None]:
    """(STOI, ESTOI) of ``processed`` against a :func:`stoi_reference`; each (...,) in the
    batch shape of ``processed`` (B rows in all), or None where not asked for. The
    processed side (resampling, band envelopes) is computed once for both scores. Equal to
    :func:`stoi` with the same clean signal, lengths and rate (the same arithmetic).
    ``zero_padded=True``: ``processed`` is already zero beyond the reference's lengths (its
    masking pass is skipped)."""
    processed = check_audio("processed", processed)
    sample_rate = _check_rate(sample_rate)
    batch_shape, time = processed.shape[:-1], processed.shape[-1]
    flat = processed.reshape(-1, time)
    if flat.shape[0] != reference.lengths.shape[0]:
        raise ValueError(f"processed has {flat.shape[0]} rows, the reference "
                         f"{reference.lengths.shape[0]}")
    if flat.dtype != reference.tob.dtype or flat.device != reference.tob.device:
        raise ValueError("processed must have the reference's dtype and device, got "
                         f"{flat.dtype} on {flat.device}")
    if time != _layout_time(reference, sample_rate, time):
        raise ValueError("processed must have as many samples as the reference's clean rows")
    if standard and reference.norm.shape[1] == 0:
        raise ValueError("the reference was built without standard=True (STOI)")
    if extended and reference.unit.shape[1] == 0:
        raise ValueError("the reference was built without extended=True (ESTOI)")
    if flat.shape[0] == 0:
        empty = flat.new_zeros(batch_shape)
        return (empty if standard else None), (empty if extended else None)
    out = _scores(reference, flat, sample_rate, True, None, standard, extended, zero_padded)
    return tuple(None if o is None else o.reshape(batch_shape) for o in out)  # type: ignore


def _layout_time(reference: StoiReference, sample_rate: int, time: int) -> int:
    """``time`` when the reference's block layout fits rows of that many samples, else -1."""
    frames_static = _layout(time, sample_rate)[1]
    return time if reference.first.shape[-1] == frames_static + 1 else -1


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

    Scoring several processed signals against one clean signal (the steps of an episode):
    :func:`stoi_reference` once, then :func:`stoi_from_reference` per signal.
    """
    return _stoi(clean, processed, sample_rate, lengths, extended)


def _stoi(clean: Tensor, processed: Tensor, sample_rate: int, lengths: Tensor | None,
          extended: bool, resample_method: str | None = None) -> Tensor:
    clean = check_audio("clean", clean)
    processed = check_audio("processed", processed)
    check_same_shape(clean, processed, ("clean", "processed"))
    sample_rate = _check_rate(sample_rate)
    lengths = check_lengths(lengths, clean)
    batch_shape = clean.shape[:-1]
    time = clean.shape[-1]
    ragged = lengths is not None
    clean = clean.reshape(-1, time)
    batch = clean.shape[0]
    if batch == 0:  # an empty batch (a static shape, not a value)
        return clean.new_zeros(batch_shape)
    lengths = (lengths.reshape(-1) if ragged
               else torch.full((batch,), time, dtype=torch.long, device=clean.device))
    # the clean side once, then the processed side (one signal at a time through the big
    # stages: half the peak memory of stacking them)
    ref = _reference(clean, lengths, sample_rate, ragged, resample_method,
                     standard=not extended, extended=extended)
    out_stoi, out_estoi = _scores(ref, processed.reshape(-1, time), sample_rate, ragged,
                                  resample_method, not extended, extended)
    score = out_estoi if extended else out_stoi
    assert score is not None
    return score.reshape(batch_shape)
