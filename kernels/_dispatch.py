"""When a fused Triton kernel runs, and how it is reached without importing Triton early.

A kernel runs when its tensors are on a CUDA device, Triton can be imported and
``HEAR_VEC_TRITON`` is not ``0``; everywhere else the pure-torch reference beside it runs.
Triton is imported lazily, on the first kernel launch, never at module import time, so the CPU
path works on machines without Triton or a GPU. Tests run the kernels on CPU tensors through
Triton's interpreter (``TRITON_INTERPRET=1`` set before Triton is imported) by calling the
``triton_*`` launchers directly.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch
from torch import Tensor

__all__ = ["use_triton", "triton_enabled", "triton_importable", "interpreting"]


@functools.cache
def triton_importable() -> bool:
    """Whether Triton is installed (checked without importing it)."""
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):
        return False


def interpreting() -> bool:
    """Triton's interpreter is on (kernels then run on CPU tensors, slowly: tests only)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def triton_enabled(device_type: str) -> bool:
    """Kernels run on this device type: CUDA, Triton installed, not disabled by
    ``HEAR_VEC_TRITON=0``."""
    return (device_type == "cuda" and os.environ.get("HEAR_VEC_TRITON", "1") != "0"
            and triton_importable())


def use_triton(x: Tensor) -> bool:
    """Run the Triton kernel for tensors like ``x`` (:func:`triton_enabled` for its device). A
    Python-level decision (device and environment only), constant under CUDA-graph capture."""
    return triton_enabled(x.device.type)


def grid_1d(n: int, block: int) -> tuple[int]:
    return (max(1, -(-n // block)),)


def check_float(name: str, x: object) -> Tensor:
    if not isinstance(x, Tensor) or x.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{name} must be a float32 / float64 tensor, got "
                         f"{getattr(x, 'dtype', type(x).__name__)}")
    return x
