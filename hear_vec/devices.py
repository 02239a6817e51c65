"""Device strings -> ``torch.device``: :func:`resolve_device` (``"auto" | "cpu" | "cuda" |
"cuda:N"``), raising :class:`DeviceError` (a ``ValueError``) with one clear line when CUDA is
asked for but absent. Library code (training, benchmarks) and the command-line tools share it;
the ``--device`` flag itself is :func:`hear_vec.cli.common.add_device_argument`."""

from __future__ import annotations

import torch

__all__ = ["DeviceError", "resolve_device"]


class DeviceError(ValueError):
    """A device string that names no usable device on this machine."""


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None): the current CUDA device when one is available, else the CPU;
    ``"cpu"``; ``"cuda"`` / ``"cuda:N"``. Raises :class:`DeviceError` with one line when CUDA
    is asked for but not available, or the index is out of range; never falls back silently."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = "auto" if spec is None else str(spec).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        index_text = text[5:] if text.startswith("cuda:") else ""
        if index_text and not index_text.isdigit():
            raise DeviceError(f"invalid device {spec!r}; expected auto, cpu, cuda or cuda:N")
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r} asked for, but CUDA is not available on this "
                              f"machine (torch {torch.__version__}, "
                              f"CUDA build {torch.version.cuda or 'none'}); use --device cpu")
        count = torch.cuda.device_count()
        if index_text and int(index_text) >= count:
            raise DeviceError(f"device {spec!r} asked for, but this machine has {count} CUDA "
                              f"device(s) (cuda:0..cuda:{count - 1})")
        return torch.device(text)
    raise DeviceError(f"invalid device {spec!r}; expected auto, cpu, cuda or cuda:N")
