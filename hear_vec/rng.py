"""Counter-based random numbers from explicit keys (JAX-style), as plain int64 tensor ops.

Why not ``torch.Generator``: the environment's randomness must be a pure function of
(seed, step, row) so that the same seed gives the same trajectory in eager mode, under
``torch.compile`` and on any device, and so that resets draw fresh randomness inside a
compiled step without host round trips. Each draw hashes (key, counter, element index)
with a 32-bit integer hash; every multiplication keeps operands below 2**31 * 2**32 so the
int64 arithmetic never overflows.

A key is an int64 tensor (any shape, usually scalar) with values in [0, 2**32).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["make_key", "fold_in", "uniform", "normal", "randint"]

_MASK32 = 0xFFFFFFFF
_M1 = 0x7FEB352D  # multipliers below 2**31: x < 2**32 times m < 2**31 stays below 2**63
_M2 = 0x5BD1E995
_WEYL = 0x61C88647


def _hash32(x: Tensor) -> Tensor:
    """A 32-bit avalanche hash of int64 values in [0, 2**32) (lowbias32 shape)."""
    x = x ^ (x >> 16)
    x = (x * _M1) & _MASK32
    x = x ^ (x >> 15)
    x = (x * _M2) & _MASK32
    x = x ^ (x >> 16)
    return x


def make_key(seed: int, device: torch.device | str | None = None) -> Tensor:
    """Scalar key for an integer seed."""
    value = _hash32(torch.tensor(int(seed) & _MASK32, dtype=torch.long, device=device))
    return value


def fold_in(key: Tensor, data: int | Tensor) -> Tensor:
    """A new key derived from ``key`` and an integer (or int64 tensor) ``data``."""
    data_t = torch.as_tensor(data, dtype=torch.long, device=key.device) & _MASK32
    return _hash32(key ^ _hash32((data_t * 0x27D4EB2F % (1 << 32) + 0x165667B1) & _MASK32))


def _bits(key: Tensor, shape: tuple[int, ...], stream: int) -> Tensor:
    """Uniform 32-bit integers (as int64) of ``key.shape + shape``."""
    n = math.prod(shape)
    idx = torch.arange(n, dtype=torch.long, device=key.device).reshape(shape)
    k = _hash32(key ^ stream).reshape(key.shape + (1,) * len(shape))
    return _hash32(_hash32((k + (idx & _MASK32) * _WEYL) & _MASK32) ^ k)


def uniform(key: Tensor, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> Tensor:
    """Uniform floats in [0, 1) of shape ``key.shape + shape`` (24 random bits)."""
    return (_bits(key, shape, 0x3C6EF372) >> 8).to(dtype) * (1.0 / (1 << 24))


def normal(key: Tensor, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal floats (Box–Muller) of shape ``key.shape + shape``."""
    u1 = ((_bits(key, shape, 0x1B873593) >> 8).to(dtype) + 0.5) * (1.0 / (1 << 24))
    u2 = (_bits(key, shape, 0x68E31DA4) >> 8).to(dtype) * (1.0 / (1 << 24))
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)


def randint(key: Tensor, shape: tuple[int, ...], high: Tensor | int) -> Tensor:
    """Integers uniform in [0, high) (``high`` broadcasts; int64 up to 2**62), from 62
    random bits; the modulo bias is below high / 2**62."""
    hi = _bits(key, shape, 0x2545F491) >> 1  # 31 bits
    lo = _bits(key, shape, 0x0B4E0EF3) >> 1  # 31 bits
    value = (hi << 31) | lo
    high_t = torch.as_tensor(high, dtype=torch.long, device=key.device).clamp_min(1)
    return torch.remainder(value, high_t)
