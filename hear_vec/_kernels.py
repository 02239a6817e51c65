"""Access to the fused Triton kernels of the top-level ``kernels`` package, for CUDA tensors.

``fused(x)`` returns ``kernels.fused_ops`` (the custom ops ``hear_vec::lsa_recursion``,
``hear_vec::stoi_segments``, ``hear_vec::spectral_delta``) when they serve tensors like ``x``
(a CUDA tensor, Triton installed, ``HEAR_VEC_TRITON`` not ``0``), else None -- then the caller
runs its own torch code. ``kernels`` is imported lazily and only for CUDA tensors, so the CPU
path never imports it (nor Triton). The decision depends on the device type and the
environment only; under ``torch.compile`` it is a constant of the graph.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["fused"]

_OPS: Any = None


@torch.compiler.assume_constant_result
def _enabled(device_type: str) -> bool:
    global _OPS
    if device_type != "cuda":
        return False
    try:
        import kernels
    except ImportError:  # an install without the kernels package: torch path
        return False
    if not kernels.triton_enabled(device_type):
        return False
    _OPS = kernels.fused_ops
    return True


def fused(x: Tensor) -> Any:
    if x.device.type != "cuda" or not _enabled(x.device.type):
        return None
    return _OPS
