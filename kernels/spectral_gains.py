"""The per-bin gains of the spectral methods and their application, in one pass
(hear_vec.ops, masked dispatch).

Given the shared analysis of a batch -- X (B, F, N) complex, |X|, the per-bin median of |X|
(spectral_sub's floor) and mean power (Wiener's), and the two gains that are not elementwise
(spectral_gate's nearest-neighbour median, mmse_lsa's recursion) -- each element gets the
gain of its row's method and the residual spectrum (G - 1) X is written directly:

    spectral_sub  G = clip(1 - s w_f floor / |X|, 0, 1) ** (1 + 2 m)      (1 where |X| = 0)
    wiener        G = 1 - a (1 - P / (P + s w_f mean P)), a = 0.3 + 0.7 m (1 where no noise)
    spectral_gate G = gate;  mmse_lsa G = lsa;  wavelet G = 1 (its rows are time-domain)

with w_f = 1 + 2 b f / (F - 1) and knobs (s, m, b) per row. Method ids follow
hear_vec.ops.METHODS: 0 spectral_sub, 1 wiener, 2 spectral_gate, 3 wavelet, 4 mmse_lsa.

Torch (reference, CPU and fallback): :func:`spectral_delta_reference`, the formulas of
hear_vec.ops as torch ops -- about 40 elementwise passes over (B, F, N) plus four selects and
the product with X. Triton: one pass, each element's inputs read once, (G - 1) X written once.
Registered as the custom op ``hear_vec::spectral_delta``.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from kernels._dispatch import check_float, grid_1d, use_triton

__all__ = ["spectral_delta", "spectral_delta_reference", "triton_spectral_delta"]

BLOCK = 512


def _check(X: Tensor, mag: Tensor, method: Tensor, knobs: Tensor, floor: Tensor,
           mean_power: Tensor, gate: Tensor, lsa: Tensor) -> None:
    if not isinstance(X, Tensor) or not X.is_complex() or X.dim() != 3:
        raise ValueError("X must be a complex (B, F, N) tensor")
    check_float("mag", mag)
    b, f, _ = X.shape
    for name, t in (("mag", mag), ("gate", gate), ("lsa", lsa)):
        if t.shape != X.shape or t.dtype != mag.dtype:
            raise ValueError(f"{name} must be {tuple(X.shape)} {mag.dtype}, got "
                             f"{tuple(t.shape)} {t.dtype}")
    for name, t in (("floor", floor), ("mean_power", mean_power)):
        if t.shape != (b, f, 1) or t.dtype != mag.dtype:
            raise ValueError(f"{name} must be ({b}, {f}, 1), got {tuple(t.shape)}")
    if method.shape != (b,) or knobs.shape != (b, 3):
        raise ValueError(f"method must be ({b},) and knobs ({b}, 3), got "
                         f"{tuple(method.shape)} and {tuple(knobs.shape)}")


def spectral_delta_reference(X: Tensor, mag: Tensor, method: Tensor, knobs: Tensor,
                             floor: Tensor, mean_power: Tensor, gate: Tensor,
                             lsa: Tensor) -> Tensor:
    """Pure-torch reference: (G - 1) X (B, F, N) complex, G per row's method."""
    _check(X, mag, method, knobs, floor, mean_power, gate, lsa)
    knobs = knobs.to(mag.dtype)
    s, m, b = (knobs[:, i].reshape(-1, 1, 1) for i in range(3))
    ramp = torch.linspace(0.0, 1.0, mag.shape[-2], dtype=mag.dtype, device=mag.device)
    tilt = 1.0 + 2.0 * b * ramp.reshape(1, -1, 1)
    ratio = torch.where(mag > 0, s * tilt * floor / mag.masked_fill(mag == 0, 1.0),
                        torch.zeros_like(mag))
    g_sub = (1.0 - ratio).clamp(0.0, 1.0).pow(1.0 + 2.0 * m)
    power = mag.square()
    noise = s * tilt * mean_power
    denom = power + noise
    g_w = torch.where((noise > 0) & (denom > 0), power / denom.masked_fill(denom == 0, 1.0),
                      torch.ones_like(power))
    g_wiener = 1.0 - (0.3 + 0.7 * m) * (1.0 - g_w)
    sel = method.reshape(-1, 1, 1)
    gain = torch.where(sel == 0, g_sub, torch.where(sel == 1, g_wiener, torch.where(
        sel == 2, gate, torch.where(sel == 4, lsa, torch.ones_like(mag)))))
    return X * (gain - 1.0)


@functools.cache
def _kernel():
    from kernels._gains_triton import spectral_delta_kernel

    return spectral_delta_kernel


def triton_spectral_delta(X: Tensor, mag: Tensor, method: Tensor, knobs: Tensor,
                          floor: Tensor, mean_power: Tensor, gate: Tensor,
                          lsa: Tensor) -> Tensor:
    """Launch the Triton kernel (CUDA tensors, or CPU tensors under TRITON_INTERPRET=1)."""
    _check(X, mag, method, knobs, floor, mean_power, gate, lsa)
    batch, bins, frames = X.shape
    out = torch.empty_like(X)  # keeps X's layout
    total = batch * bins * frames
    if total == 0:
        return out
    xr, orr = torch.view_as_real(X), torch.view_as_real(out)
    method = method.to(torch.int64).contiguous()
    knobs = knobs.to(mag.dtype).contiguous()
    _kernel()[grid_1d(total, BLOCK)](
        xr, orr, mag, gate, lsa, floor, mean_power, method, knobs, total, frames, bins,
        xr.stride(0), xr.stride(1), xr.stride(2), orr.stride(0), orr.stride(1), orr.stride(2),
        mag.stride(0), mag.stride(1), mag.stride(2), gate.stride(0), gate.stride(1),
        gate.stride(2), lsa.stride(0), lsa.stride(1), lsa.stride(2), floor.stride(0),
        floor.stride(1), mean_power.stride(0), mean_power.stride(1), BLOCK=BLOCK,
        F32=mag.dtype == torch.float32)
    return out


@torch.library.custom_op("hear_vec::spectral_delta", mutates_args=())
def _delta_op(X: Tensor, mag: Tensor, method: Tensor, knobs: Tensor, floor: Tensor,
              mean_power: Tensor, gate: Tensor, lsa: Tensor) -> Tensor:
    return triton_spectral_delta(X, mag, method, knobs, floor, mean_power, gate, lsa)


@_delta_op.register_fake
def _(X: Tensor, mag: Tensor, method: Tensor, knobs: Tensor, floor: Tensor,
      mean_power: Tensor, gate: Tensor, lsa: Tensor) -> Tensor:
    return torch.empty_like(X)


def spectral_delta(X: Tensor, mag: Tensor, method: Tensor, knobs: Tensor, floor: Tensor,
                   mean_power: Tensor, gate: Tensor, lsa: Tensor) -> Tensor:
    """(G - 1) X: the Triton kernel on CUDA (custom op ``hear_vec::spectral_delta``),
    :func:`spectral_delta_reference` elsewhere."""
    if use_triton(mag):
        return torch.ops.hear_vec.spectral_delta(X, mag, method, knobs, floor, mean_power,
                                                 gate, lsa)
    return spectral_delta_reference(X, mag, method, knobs, floor, mean_power, gate, lsa)
