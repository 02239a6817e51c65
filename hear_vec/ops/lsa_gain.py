"""The pure-torch core of the LSA-MMSE estimator (:mod:`hear_vec.ops.mmse_lsa`): the
exponential integral :func:`exp1`, the Ephraim-Malah gain :func:`lsa_gain` and the
decision-directed recursion over frames (``_recursion``), the reference that the fused Triton
kernel ``kernels.lsa_recursion`` is tested against.

A module of its own so that ``kernels`` can import the reference without importing
:mod:`hear_vec.ops.mmse_lsa` (which dispatches to ``kernels`` through ``hear_vec._kernels``):
the import graph of hear_vec + kernels stays acyclic (``tests/test_layers.py``). The formulas
are in :mod:`hear_vec.ops.mmse_lsa`'s docstring.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hear_vec.ops._common import cpu_pool

__all__ = ["exp1", "lsa_gain", "XI_MIN"]

_EULER = 0.57721566490153286061
_SERIES = tuple((-1.0) ** (k + 1) / (k * math.factorial(k)) for k in range(1, 14))
# Abramowitz & Stegun 5.1.56, 1 <= x < inf: x e^x E1(x) = num(x) / den(x)
_NUM = (8.5733287401, 18.0590169730, 8.6347608925, 0.2677737343)
_DEN = (9.5733223454, 25.6329561486, 21.0996530827, 3.9584969228)

XI_MIN = 10.0 ** (-25.0 / 10.0)
_LSA_CAP = 50.0  # v above this: exp(E1(v) / 2) == 1 exactly (see _exp1_positive)



def exp1(x: Tensor) -> Tensor:
    """Exponential integral E1(x) = int_x^inf e^-t / t dt, elementwise (inf at x <= 0).

    x <= 1: E1 = -gamma - ln x + sum_{k=1}^{13} (-1)^(k+1) x^k / (k k!)   (truncation < 1e-12)
    x > 1:  E1 = e^-x / x * (x^4 + a1 x^3 + ... + a4) / (x^4 + b1 x^3 + ... + b4)   (A&S 5.1.56)
    Relative error < 4e-8 in float64 (float32: a few ulp, < 1e-6).
    """
    out = _exp1_positive(x.clamp_min(torch.finfo(x.dtype).tiny))
    return torch.where(x > 0, out, torch.full_like(out, float("inf")))


def _exp1_positive(x: Tensor, cap: float = 800.0) -> Tensor:
    """:func:`exp1` for x > 0 (no check). Arguments above ``cap`` are evaluated at ``cap``:
    800 keeps E1 exact down to its underflow (E1 underflows to 0 well before 800 even in
    float64); the LSA gain passes 50, where E1 < 4e-24 and exp(E1 / 2) is 1 exactly in float32
    and float64 either way -- and exp(-x) stays a normal number, whose evaluation is ~10x
    faster on the CPU than the subnormal / underflowing results of exp(-800).

    Eager, grad-free calls update their fresh intermediates in place (the LSA recursion calls
    this once per frame on (B, F) slabs, where allocations weigh); the arithmetic is the same."""
    small = x.clamp_max(1.0)
    big = x.clamp(1.0, cap)
    if x.requires_grad or torch.compiler.is_compiling():
        acc = small * _SERIES[-1]
        for c in reversed(_SERIES[:-1]):  # Horner: sum_k c_k x^k = x (c_1 + x (c_2 + ...))
            acc = (acc + c) * small
        e_small = acc - torch.log(small) - _EULER
        num = (((big + _NUM[0]) * big + _NUM[1]) * big + _NUM[2]) * big + _NUM[3]
        den = (((big + _DEN[0]) * big + _DEN[1]) * big + _DEN[2]) * big + _DEN[3]
        e_big = torch.exp(-big) * num / (big * den)
        return torch.where(x <= 1.0, e_small, e_big)
    acc = small * _SERIES[-1]
    for c in reversed(_SERIES[:-1]):
        acc.add_(c).mul_(small)
    e_small = acc.sub_(torch.log(small)).sub_(_EULER)
    num = big + _NUM[0]
    den = big + _DEN[0]
    for a, b in zip(_NUM[1:], _DEN[1:]):
        num.mul_(big).add_(a)
        den.mul_(big).add_(b)
    e_big = torch.exp(big.neg()).mul_(num).div_(den.mul_(big))
    return torch.where(x <= 1.0, e_small, e_big)


def lsa_gain(xi: Tensor, gamma: Tensor) -> Tensor:
    """Ephraim-Malah LSA gain min(1, xi / (1 + xi) exp(E1(v) / 2)), v = xi gamma / (1 + xi)."""
    r = xi / (1.0 + xi)
    v = (r * gamma).clamp_min(1e-30)
    if xi.requires_grad or torch.compiler.is_compiling():
        return (r * torch.exp(0.5 * _exp1_positive(v, _LSA_CAP))).clamp_max(1.0)
    e = _exp1_positive(v, _LSA_CAP).mul_(0.5).exp_()  # fresh: in place, same arithmetic
    return e.mul_(r).clamp_max_(1.0)


def _step(prev: Tensor, gamma_n: Tensor, wet_n: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
    """One frame: xi = a prev + wet, gain, and the next prev = G^2 gamma (= A^2 / lambda)."""
    xi = torch.addcmul(wet_n, alpha, prev).clamp_min(XI_MIN)
    gain = lsa_gain(xi, gamma_n)
    return gain * gain * gamma_n, gain


def _recursion(gamma: Tensor, wet: Tensor, alpha: Tensor) -> Tensor:
    """Gains (N, B, F) of the decision-directed recursion over frames.

    Eager: a Python loop over the fixed frame count. Under torch.compile: ``torch.scan`` (the
    same step), so the graph holds one step instead of N unrolled ones -- an unrolled 126-frame
    loop took ~14 min to compile with inductor on the CPU, the scan ~20 s."""
    first = lsa_gain(gamma[0].sub(1.0).clamp_min(XI_MIN), gamma[0])  # xi_0 = max(g_0 - 1, min)
    prev = first * first * gamma[0]
    if gamma.shape[0] == 1:
        return first.unsqueeze(0)
    if torch.compiler.is_compiling():
        from torch._higher_order_ops.scan import scan

        def body(carry: Tensor, xs: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
            return _step(carry, xs[0], xs[1], alpha)

        _, rest = scan(body, prev, (gamma[1:], wet[1:]))
        return torch.cat([first.unsqueeze(0), rest])
    gains = torch.empty_like(gamma)
    gains[0] = first
    rows, bins = gamma.shape[1:]
    per = max(1, _GRAIN // max(bins, 1))  # rows whose (rows, F) slab stays under the grain
    if gamma.device.type == "cpu" and torch.get_num_threads() > 1 and rows > per:
        # With intra-op threads, a frame's (B, F) ops above torch's 32k-element grain are
        # split across threads for a few microseconds of work each, and the OpenMP
        # hand-offs cost more than they save (measured: 102 rows x 513 bins, 2 threads,
        # 476 ms in one piece). Row chunks under the grain run single-threaded ops instead,
        # two chunks at a time in two Python threads (torch releases the GIL inside ops):
        # 122 ms.
        inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

        def run(p: slice) -> None:  # grad / inference modes are per thread: carry them over
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                _frames(prev[p], gamma[:, p], wet[:, p], alpha[p], gains[:, p])

        list(cpu_pool().map(run, [slice(r, min(r + per, rows)) for r in range(0, rows, per)]))
        return gains
    _frames(prev, gamma, wet, alpha, gains)
    return gains


def _frames(prev: Tensor, gamma: Tensor, wet: Tensor, alpha: Tensor, gains: Tensor) -> None:
    """Frames 1 .. N-1 of the recursion into ``gains`` (frame 0 done), eager."""
    for n in range(1, gamma.shape[0]):  # fixed frame count: the decision-directed recursion
        prev, gains[n] = _step(prev, gamma[n], wet[n], alpha)


_GRAIN = 32768  # at::internal::GRAIN_SIZE: elementwise ops below it run on one thread
