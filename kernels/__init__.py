"""Fused Triton kernels for the engine hot spots, each beside its pure-torch reference.

=========================  ==========================================  ======================
module                     what it fuses                               custom op
=========================  ==========================================  ======================
:mod:`.lsa_recursion`      mmse_lsa's decision-directed recursion      hear_vec::lsa_recursion
                           over frames (per (row, bin) a sequential
                           loop; E1 evaluated in registers)
:mod:`.spectral_gains`     the per-bin gains of spectral_sub / wiener  hear_vec::spectral_delta
                           (+ gate / lsa selected per row) and the
                           residual spectrum (G - 1) X, in one pass
:mod:`.stoi_segments`      STOI's and ESTOI's 30-frame segment         hear_vec::stoi_segments
                           statistics from the band envelopes
=========================  ==========================================  ======================

Each module has ``<name>_reference`` (pure torch, the arithmetic of hear_vec's own code),
``triton_<name>`` (launches the kernel: CUDA tensors, or CPU tensors under
``TRITON_INTERPRET=1``) and ``<name>`` (the dispatcher: the Triton kernel through its custom
op when the tensors are on CUDA and Triton is importable, the reference elsewhere; set
``HEAR_VEC_TRITON=0`` to force the reference). The custom ops are registered with
``torch.library.custom_op`` plus a fake (meta) implementation, so ``torch.compile`` traces
through them as single graph nodes and CUDA graphs capture them.

Triton is imported only on the first launch (the ``_*_triton`` modules), never when this
package or hear_vec is imported: the CPU path needs neither Triton nor a GPU. hear_vec calls
the dispatchers on CUDA only (``hear_vec.ops`` masked dispatch and mmse_lsa,
``hear_vec.metrics.stoi``); its CPU path keeps its own eager torch code.
"""

import torch
from torch import Tensor

from kernels._dispatch import triton_enabled, triton_importable, use_triton
from kernels.lsa_recursion import lsa_recursion, lsa_recursion_reference, triton_lsa_recursion
from kernels.spectral_gains import (
    spectral_delta,
    spectral_delta_reference,
    triton_spectral_delta,
)
from kernels.stoi_segments import stoi_segments, stoi_segments_reference, triton_stoi_segments


class _FusedOps:
    """The custom ops themselves, for callers that already decided on the Triton path
    (hear_vec's CUDA branches): no per-call dispatch logic for torch.compile to trace."""

    @staticmethod
    def lsa_recursion(gamma: Tensor, wet: Tensor, alpha: Tensor) -> Tensor:
        return torch.ops.hear_vec.lsa_recursion(gamma, wet, alpha)

    @staticmethod
    def stoi_segments(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return torch.ops.hear_vec.stoi_segments(x, y)

    @staticmethod
    def spectral_delta(X: Tensor, mag: Tensor, method: Tensor, knobs: Tensor, floor: Tensor,
                       mean_power: Tensor, gate: Tensor, lsa: Tensor) -> Tensor:
        return torch.ops.hear_vec.spectral_delta(X, mag, method, knobs, floor, mean_power,
                                                 gate, lsa)


#: the three custom ops as attributes (see :class:`_FusedOps`)
fused_ops = _FusedOps()

__all__ = [
    "fused_ops",
    "use_triton",
    "triton_enabled",
    "triton_importable",
    "lsa_recursion",
    "lsa_recursion_reference",
    "triton_lsa_recursion",
    "spectral_delta",
    "spectral_delta_reference",
    "triton_spectral_delta",
    "stoi_segments",
    "stoi_segments_reference",
    "triton_stoi_segments",
]
