"""The one STFT shared by every spectral operator.

n_fft 1024, hop 256, periodic Hann window, centered with zero padding (librosa / torch
``center=True, pad_mode="constant"``). A row of length L has ``1 + L // hop`` valid frames.

:func:`istft` is a masked overlap-add: it divides by the window envelope of the *valid*
frames of each row only, so a row padded to a longer tensor (with ``lengths``) reconstructs
exactly as its unpadded self. For full-length rows it equals ``torch.istft``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["N_FFT", "HOP_LENGTH", "stft", "istft", "num_frames", "frame_mask", "time_mask",
           "zero_beyond"]

N_FFT = 1024
HOP_LENGTH = 256


def time_mask(lengths: Tensor | None, time: int, like: Tensor) -> Tensor:
    """Boolean mask (..., time): True where sample index < lengths. All True if lengths is None."""
    if lengths is None:
        return torch.ones(like.shape[:-1] + (time,), dtype=torch.bool, device=like.device)
    idx = torch.arange(time, device=lengths.device)
    return idx < lengths.unsqueeze(-1)


def zero_beyond(x: Tensor, lengths: Tensor | None) -> Tensor:
    """x (B, T) with samples beyond ``lengths`` (B,) set to 0 (x itself when lengths is None).
    Functions that call it take ``zero_padded=True`` from callers whose audio already is."""
    if lengths is None:
        return x
    return torch.where(time_mask(lengths, x.shape[-1], x), x, 0.0)


def num_frames(num_samples: Tensor | int, hop_length: int = HOP_LENGTH) -> Tensor | int:
    """Frames of a centered STFT of ``num_samples`` samples: 1 + n // hop."""
    return 1 + num_samples // hop_length


def frame_mask(lengths: Tensor | None, n_frames: int, like: Tensor,
               hop_length: int = HOP_LENGTH) -> Tensor:
    """Boolean mask (..., n_frames): True for frames of a centered STFT that exist in the
    unpadded row (frame j is valid when j <= lengths // hop)."""
    if lengths is None:
        return torch.ones(like.shape[:-1] + (n_frames,), dtype=torch.bool, device=like.device)
    idx = torch.arange(n_frames, device=lengths.device)
    return idx <= (lengths // hop_length).unsqueeze(-1)


def _window(n_fft: int, like: Tensor) -> Tensor:
    dtype = like.real.dtype if like.is_complex() else like.dtype
    return torch.hann_window(n_fft, periodic=True, dtype=dtype, device=like.device)


def stft(audio: Tensor, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH) -> Tensor:
    """Complex STFT of ``audio`` (..., time) -> (..., n_fft // 2 + 1, 1 + time // hop).

    X[f, n] = sum_t x[t + n*hop - n_fft/2] w[t] exp(-2j*pi*f*t/n_fft), x zero outside [0, T).
    Samples beyond a row's length must already be zero (see :func:`time_mask`).
    """
    batch_shape = audio.shape[:-1]
    flat = audio.reshape(-1, audio.shape[-1])
    spec = torch.stft(flat, n_fft, hop_length=hop_length, window=_window(n_fft, flat),
                      center=True, pad_mode="constant", return_complex=True)
    return spec.reshape(batch_shape + spec.shape[-2:])


def _overlap_add(frames: Tensor, hop_length: int) -> Tensor:
    """Sum frames (B, N, n_fft) placed every ``hop_length`` samples -> (B, (N-1)*hop + n_fft)."""
    batch, n, n_fft = frames.shape
    if n_fft % hop_length:
        raise ValueError("n_fft must be a multiple of hop_length")
    r = n_fft // hop_length
    chunks = frames.reshape(batch, n, r, hop_length)
    if frames.requires_grad or torch.compiler.is_compiling():
        out = frames.new_zeros(batch, n + r - 1, hop_length)
        for k in range(r):  # r = 4: a static loop over overlap offsets, not over data
            out[:, k:k + n] += chunks[:, :, k]
        return out.reshape(batch, -1)
    out = frames.new_empty(batch, n + r - 1, hop_length)  # eager: one pass fewer
    out[:, :n].copy_(chunks[:, :, 0])
    out[:, n:].zero_()
    for k in range(1, r):  # static loop over overlap offsets
        out[:, k:k + n] += chunks[:, :, k]
    return out.reshape(batch, -1)


def _inverse_envelope(valid_frames: Tensor, n: int, window: Tensor, hop_length: int
                      ) -> Tensor:
    """1 / sum_n valid_n w[t - n*hop]^2 (0 where that sum is <= 1e-11) for rows whose valid
    frames are 0 .. V - 1: (B, N + r - 1, hop), r = n_fft / hop, from V (B,) alone.

    Block j of hop samples collects block k of w^2 from frame j - k, k = 0 .. r - 1, for the
    frames that exist and are valid: lo = max(0, j - V + 1) <= k <= hi = min(j, r - 1). The
    r^2 possible sums (lo, hi) are tabulated and inverted once, then picked per (row, block)."""
    r = window.shape[0] // hop_length
    w2 = window.square().reshape(r, hop_length)
    cum = torch.cat([torch.zeros_like(w2[:1]), w2.cumsum(0)])  # cum[m] = sum_{k < m} w2_k
    k = torch.arange(r, device=window.device)
    lo, hi = k.repeat_interleave(r), k.repeat(r)  # table row lo * r + hi
    table = torch.where((lo <= hi).unsqueeze(-1), cum[hi + 1] - cum[lo], 0.0)  # (r^2, hop)
    table = torch.cat([table, torch.zeros_like(w2[:1])])  # row r^2: no frame at all
    inverse = torch.where(table > 1e-11, 1.0 / table.clamp_min(1e-11), torch.zeros_like(table))
    j = torch.arange(n + r - 1, device=valid_frames.device)
    lo_j = (j - valid_frames.unsqueeze(-1) + 1).clamp_min(0)  # (B, N + r - 1)
    hi_j = j.clamp_max(r - 1)
    index = torch.where(lo_j <= hi_j, lo_j.clamp_max(r - 1) * r + hi_j, r * r)
    return inverse[index]


def istft(spec: Tensor, length: int, lengths: Tensor | None = None, n_fft: int = N_FFT,
          hop_length: int = HOP_LENGTH) -> Tensor:
    """Inverse of :func:`stft` by windowed overlap-add, normalized by the squared-window
    envelope of each row's valid frames:

        y[t] = sum_n w[t - n*hop] frame_n[t - n*hop] / sum_n valid_n w[t - n*hop]^2

    (0 where the envelope is <= 1e-11; the division is a product with the envelope's
    reciprocal, picked per block from a table of the 2 n_fft / hop possible blocks).

    spec: (..., F, N) complex; returns (..., length) with samples beyond ``lengths`` zeroed.
    """
    batch_shape = spec.shape[:-2]
    n = spec.shape[-1]
    flat = spec.reshape((-1,) + spec.shape[-2:])
    window = _window(n_fft, flat)
    frames = torch.fft.irfft(flat.transpose(-1, -2), n=n_fft)  # (B, N, n_fft), fresh
    if lengths is None:
        valid_frames = torch.full(flat.shape[:1], n, dtype=torch.long, device=flat.device)
    else:
        valid_frames = (lengths.reshape(-1) // hop_length + 1).clamp_max(n)
    valid = torch.arange(n, device=flat.device) < valid_frames.unsqueeze(-1)  # (B, N)
    if frames.requires_grad or torch.compiler.is_compiling():
        frames = frames * window * valid.unsqueeze(-1).to(window.dtype)
    else:  # in place on the fresh irfft output: two passes fewer over (B, N, n_fft)
        frames.mul_(window).mul_(valid.unsqueeze(-1))
    num = _overlap_add(frames, hop_length)  # (B, (N + r - 1) hop)
    inverse = _inverse_envelope(valid_frames, n, window, hop_length).reshape(num.shape)
    half = n_fft // 2
    out = (num * inverse)[:, half:half + length]
    if out.shape[-1] < length:  # only when length exceeds what the frames cover
        out = torch.nn.functional.pad(out, (0, length - out.shape[-1]))
    if lengths is not None:
        out = torch.where(time_mask(lengths.reshape(-1), length, out), out, 0.0)
    return out.reshape(batch_shape + (length,))
