"""The decision-directed recursion of the LSA-MMSE estimator, fused (hear_vec.ops.mmse_lsa).

For every column c = (row, bin), independently, over frames n = 0 .. N-1:

    xi_0 = max(gamma_0 - 1, xi_min)
    xi_n = max(wet_n + a_row * prev_{n-1}, xi_min)                    (n >= 1)
    r    = xi / (1 + xi),  v = max(r gamma_n, 1e-30)
    G_n  = min(1, r exp(E1(min(v, 50)) / 2)),  prev_n = G_n^2 gamma_n

with E1 the power series (v <= 1) or Abramowitz & Stegun 5.1.56 (v > 1), as
:func:`hear_vec.ops.lsa_gain.exp1`. Inputs gamma, wet (N, R, F) contiguous, alpha (R, 1);
output gains (N, R, F).

Torch (reference, CPU and fallback): :func:`lsa_recursion_reference` -- the engine's own
recursion, a loop over frames of batched elementwise ops (~60 small ops per frame, each a pass
over (R, F)). Triton: one program per BLOCK columns keeps prev in registers and loops over
the frames, reading gamma / wet once and writing the gains once: no intermediate ever goes to
memory. Registered as the custom op ``hear_vec::lsa_recursion`` (with a fake implementation),
so ``torch.compile`` sees one node instead of tracing a ``torch.scan``.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from kernels._dispatch import check_float, grid_1d, use_triton

__all__ = ["lsa_recursion", "lsa_recursion_reference", "triton_lsa_recursion"]

BLOCK = 256


def _check(gamma: Tensor, wet: Tensor, alpha: Tensor) -> None:
    check_float("gamma", gamma)
    if gamma.dim() != 3 or wet.shape != gamma.shape or wet.dtype != gamma.dtype:
        raise ValueError(f"gamma and wet must be (N, R, F) of one dtype, got "
                         f"{tuple(gamma.shape)} and {tuple(wet.shape)}")
    if alpha.shape != (gamma.shape[1], 1) or alpha.dtype != gamma.dtype:
        raise ValueError(f"alpha must be ({gamma.shape[1]}, 1) in {gamma.dtype}, got "
                         f"{tuple(alpha.shape)} {alpha.dtype}")


def lsa_recursion_reference(gamma: Tensor, wet: Tensor, alpha: Tensor) -> Tensor:
    """Pure-torch reference: ``hear_vec.ops.lsa_gain._recursion`` (the engine's own loop)."""
    from hear_vec.ops.lsa_gain import _recursion

    _check(gamma, wet, alpha)
    return _recursion(gamma, wet, alpha)


@functools.cache
def _kernel():
    """The Triton kernel, imported on first use (Triton is not imported with this module)."""
    from kernels._lsa_triton import lsa_kernel

    return lsa_kernel


def triton_lsa_recursion(gamma: Tensor, wet: Tensor, alpha: Tensor) -> Tensor:
    """Launch the Triton kernel (CUDA tensors, or CPU tensors under TRITON_INTERPRET=1)."""
    _check(gamma, wet, alpha)
    gamma, wet, alpha = gamma.contiguous(), wet.contiguous(), alpha.contiguous()
    out = torch.empty_like(gamma)
    n, rows, bins = gamma.shape
    cols = rows * bins
    if n == 0 or cols == 0:
        return out
    _kernel()[grid_1d(cols, BLOCK)](gamma, wet, alpha, out, n, cols, bins, BLOCK_C=BLOCK)
    return out


@torch.library.custom_op("hear_vec::lsa_recursion", mutates_args=())
def _lsa_op(gamma: Tensor, wet: Tensor, alpha: Tensor) -> Tensor:
    return triton_lsa_recursion(gamma, wet, alpha)


@_lsa_op.register_fake
def _(gamma: Tensor, wet: Tensor, alpha: Tensor) -> Tensor:
    return torch.empty_like(gamma)


def lsa_recursion(gamma: Tensor, wet: Tensor, alpha: Tensor) -> Tensor:
    """Gains (N, R, F) of the recursion: the Triton kernel on CUDA (custom op
    ``hear_vec::lsa_recursion``), :func:`lsa_recursion_reference` elsewhere."""
    if use_triton(gamma):
        return torch.ops.hear_vec.lsa_recursion(gamma, wet, alpha)
    return lsa_recursion_reference(gamma, wet, alpha)
