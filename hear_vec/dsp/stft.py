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

__all__ = ["N_FFT", "HOP_LENGTH", "stft", "istft", "num_frames", "frame_mask", "time_mask"]

N_FFT = 1024
HOP_LENGTH = 256


def time_mask(lengths: Tensor | None, time: int, like: Tensor) -> Tensor:
    """Boolean mask (..., time): True where sample index < lengths. All True if lengths is None."""
    if lengths is None:
        return torch.ones(like.shape[:-1] + (time,), dtype=torch.bool, device=like.device)
    idx = torch.arange(time, device=lengths.device)
    return idx < lengths.unsqueeze(-1)


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
    out = frames.new_zeros(batch, n + r - 1, hop_length)
    for k in range(r):  # r = 4: a static loop over overlap offsets, not over data
        out[:, k:k + n] += chunks[:, :, k]
    return out.reshape(batch, -1)


def istft(spec: Tensor, length: int, lengths: Tensor | None = None, n_fft: int = N_FFT,
          hop_length: int = HOP_LENGTH) -> Tensor:
    """Inverse of :func:`stft` by windowed overlap-add, normalized by the squared-window
    envelope of each row's valid frames:

        y[t] = sum_n w[t - n*hop] frame_n[t - n*hop] / sum_n valid_n w[t - n*hop]^2

    spec: (..., F, N) complex; returns (..., length) with samples beyond ``lengths`` zeroed.
    """
    batch_shape = spec.shape[:-2]
    n = spec.shape[-1]
    flat = spec.reshape((-1,) + spec.shape[-2:])
    window = _window(n_fft, flat)
    frames = torch.fft.irfft(flat.transpose(-1, -2), n=n_fft)  # (B, N, n_fft)
    valid = frame_mask(None if lengths is None else lengths.reshape(-1), n, flat[..., 0, :],
                       hop_length)
    validf = valid.to(window.dtype)
    frames = frames * window * validf.unsqueeze(-1)
    num = _overlap_add(frames, hop_length)
    env = _overlap_add(validf.unsqueeze(-1) * window.square(), hop_length)
    half = n_fft // 2
    num = num[:, half:half + length]
    env = env[:, half:half + length]
    out = torch.where(env > 1e-11, num / env.clamp_min(1e-11), torch.zeros_like(num))
    if out.shape[-1] < length:  # only when length exceeds what the frames cover
        out = torch.nn.functional.pad(out, (0, length - out.shape[-1]))
    out = out.reshape(batch_shape + (length,))
    if lengths is not None:
        out = out * time_mask(lengths, length, out)
    return out
