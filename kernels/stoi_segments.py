"""STOI / ESTOI segment statistics from the third-octave band envelopes, fused
(hear_vec.metrics.stoi, step 5).

For band envelopes x (clean) and y (processed), (B, 15, M) with M >= 30, and every segment
j = 0 .. J-1 of frames j .. j + 29 (J = M - 29):

    STOI  s_j = sum_k corr(x_kj, y'_kj),  y' = min(y ||x|| / (||y|| + EPS), (1 + 10^(15/20)) x)
          corr(a, b) = <a - mean a, b - mean b> / ((||b - mean b|| + EPS)(||a - mean a|| + EPS))
    ESTOI e_j = sum_{k,n} x~ y~, each segment normalized to zero mean / unit norm along the
          frames (rows), then along the bands (columns); a zero row or column becomes 0

(norms and means over the 30 frames of band k, EPS = float64 eps as pystoi). Returns (s, e),
each (B, J); the metric then averages over valid segments and bands.

Torch (reference, CPU and fallback): :func:`stoi_segments_reference`, on ``unfold`` views
(B, 15, J, 30): a dozen passes over J x 30 values per band. Triton: one program per (row, j)
reads the (15, 30) tiles of x and y once and reduces everything in registers; the clean-side
statistics are recomputed per call (cheaper on the GPU than storing (B, 15, J, 30) tensors).
Registered as the custom op ``hear_vec::stoi_segments``.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from kernels._dispatch import check_float, use_triton

__all__ = ["stoi_segments", "stoi_segments_reference", "triton_stoi_segments"]

N, NUMBAND = 30, 15
EPS = 2.220446049250313e-16  # float64 eps, pystoi's EPS
CLIP = 1.0 + 10 ** (15.0 / 20.0)


def _check(x: Tensor, y: Tensor) -> None:
    check_float("x", x)
    if x.dim() != 3 or x.shape[1] != NUMBAND or x.shape[2] < N:
        raise ValueError(f"band envelopes must be (B, {NUMBAND}, M >= {N}), got "
                         f"{tuple(x.shape)}")
    if y.shape != x.shape or y.dtype != x.dtype or y.device != x.device:
        raise ValueError("x and y must have one shape, dtype and device")


def stoi_segments_reference(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Pure-torch reference: (STOI, ESTOI) segment sums (B, J) of band envelopes (B, 15, M)."""
    _check(x, y)
    xs, ys = x.unfold(-1, N, 1), y.unfold(-1, N, 1)  # (B, 15, J, N)
    norm_x = xs.square().sum(-1, keepdim=True).sqrt()
    norm_y = ys.square().sum(-1, keepdim=True).sqrt()
    yp = torch.minimum(ys * (norm_x / (norm_y + EPS)), xs * CLIP)
    dx = xs - xs.mean(-1, keepdim=True)
    dy = yp - yp.mean(-1, keepdim=True)
    corr = (dx * dy).sum(-1) / ((dy.square().sum(-1).sqrt() + EPS)
                                * (dx.square().sum(-1).sqrt() + EPS))

    def normalized(t: Tensor) -> Tensor:
        t = t - t.mean(-1, keepdim=True)
        norm = t.square().sum(-1, keepdim=True).sqrt()
        t = torch.where(norm > 0, t / norm.masked_fill(norm == 0, 1.0), torch.zeros_like(t))
        t = t - t.mean(1, keepdim=True)
        col = t.square().sum(1, keepdim=True).sqrt()
        return torch.where(col > 0, t / col.masked_fill(col == 0, 1.0), torch.zeros_like(t))

    return corr.sum(1), (normalized(xs) * normalized(ys)).sum((1, 3))


@functools.cache
def _kernel():
    from kernels._stoi_triton import stoi_segments_kernel

    return stoi_segments_kernel


def triton_stoi_segments(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Launch the Triton kernel (CUDA tensors, or CPU tensors under TRITON_INTERPRET=1)."""
    _check(x, y)
    x, y = x.contiguous(), y.contiguous()
    batch, _, frames = x.shape
    n_seg = frames - N + 1
    out_stoi = x.new_empty(batch, n_seg)
    out_estoi = x.new_empty(batch, n_seg)
    if batch == 0:
        return out_stoi, out_estoi
    _kernel()[(batch * n_seg,)](x, y, out_stoi, out_estoi, n_seg, x.stride(0), x.stride(1),
                                BLOCK_K=16, BLOCK_N=32)
    return out_stoi, out_estoi


@torch.library.custom_op("hear_vec::stoi_segments", mutates_args=())
def _stoi_op(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    return triton_stoi_segments(x, y)


@_stoi_op.register_fake
def _(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    n_seg = x.shape[-1] - N + 1
    return x.new_empty(x.shape[0], n_seg), x.new_empty(x.shape[0], n_seg)


def stoi_segments(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(STOI, ESTOI) segment sums (B, J): the Triton kernel on CUDA (custom op
    ``hear_vec::stoi_segments``), :func:`stoi_segments_reference` elsewhere."""
    if use_triton(x):
        return torch.ops.hear_vec.stoi_segments(x, y)
    return stoi_segments_reference(x, y)
