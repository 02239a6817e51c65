"""Input validation shared by the public tensor functions.

Every check here reads only metadata (shape, dtype, device), except the range check of
``lengths``: on the CPU it reads the values (no device to sync with), on an accelerator it
queues a device-side assertion (``torch._assert_async``) so nothing waits on the device, and
inside ``torch.compile`` it is skipped.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_audio", "check_same_shape", "check_lengths", "check_batch_index"]


def check_audio(name: str, audio: object, *, min_dim: int = 1) -> Tensor:
    """Return ``audio`` if it is a floating-point tensor of at least ``min_dim`` dims."""
    if not isinstance(audio, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(audio).__name__}")
    if not audio.is_floating_point():
        raise ValueError(
            f"{name} must be floating point (float32 or float64), got {audio.dtype}; "
            "convert integer PCM with audio.float() / 32768"
        )
    if audio.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dim(s) (..., time), got shape "
                         f"{tuple(audio.shape)}")
    if audio.shape[-1] == 0:
        raise ValueError(f"{name} has an empty time axis (shape {tuple(audio.shape)})")
    return audio


def check_same_shape(a: Tensor, b: Tensor, names: tuple[str, str]) -> None:
    """Raise if two signals do not share shape, dtype and device."""
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    if a.dtype != b.dtype:
        raise ValueError(f"{names[0]} and {names[1]} must have the same dtype, got "
                         f"{a.dtype} and {b.dtype}")
    if a.device != b.device:
        raise ValueError(f"{names[0]} and {names[1]} must be on the same device, got "
                         f"{a.device} and {b.device}")


def check_lengths(lengths: object, audio: Tensor) -> Tensor | None:
    """Validate ``lengths`` (valid samples per row) against ``audio`` of shape (..., time).

    Returns the lengths on the audio's device as int64, or None when ``lengths`` is None.
    """
    if lengths is None:
        return None
    if not isinstance(lengths, Tensor):
        raise ValueError(f"lengths must be a torch.Tensor, got {type(lengths).__name__}")
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be an integer tensor, got {lengths.dtype}")
    batch_shape = audio.shape[:-1]
    if lengths.shape != batch_shape:
        raise ValueError(f"lengths must have the audio's batch shape {tuple(batch_shape)}, got "
                         f"{tuple(lengths.shape)}")
    lengths = lengths.to(device=audio.device, dtype=torch.long)
    time = audio.shape[-1]
    if torch.compiler.is_compiling() or lengths.numel() == 0:
        return lengths
    if lengths.device.type == "cpu":
        if bool((lengths < 0).any()) or bool((lengths > time).any()):
            raise ValueError(f"lengths must lie in [0, {time}] (the time axis), got values in "
                             f"[{int(lengths.min())}, {int(lengths.max())}]")
    else:
        torch._assert_async(((lengths >= 0) & (lengths <= time)).all(),
                            f"lengths must lie in [0, {time}]")
    return lengths


def check_batch_index(name: str, index: object, batch_shape: torch.Size, upper: int,
                      device: torch.device) -> Tensor:
    """Validate a per-row integer id tensor (e.g. method ids) with values in [0, upper)."""
    if not isinstance(index, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(index).__name__}")
    if index.is_floating_point() or index.is_complex() or index.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got {index.dtype}")
    if index.shape != batch_shape:
        raise ValueError(f"{name} must have shape {tuple(batch_shape)}, got {tuple(index.shape)}")
    index = index.to(device=device, dtype=torch.long)
    if torch.compiler.is_compiling() or index.numel() == 0:
        return index
    if index.device.type == "cpu":
        if bool((index < 0).any()) or bool((index >= upper).any()):
            raise ValueError(f"{name} must lie in [0, {upper - 1}], got values in "
                             f"[{int(index.min())}, {int(index.max())}]")
    else:
        torch._assert_async(((index >= 0) & (index < upper)).all(),
                            f"{name} must lie in [0, {upper - 1}]")
    return index
