"""Long files for ``infer.py``: a plan of overlapping chunks and their crossfaded join.

A file longer than ``--chunk-seconds`` is cut into chunks of equal length (at most the chunk
length) that overlap by ``--overlap-seconds``; each chunk is denoised as its own episode and
the denoised chunks are joined with complementary linear ramps over each overlap (they sum to
one, so identical chunk outputs join to exactly the input). Memory per device call is then
bounded whatever the file length (the spectral-gate neighbour filter costs O(frames^2) per row).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["chunk_plan", "crossfade_join"]


def chunk_plan(n: int, chunk: int, overlap: int) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` covering ``n`` samples with chunks of equal length L <= chunk
    (the last may be shorter) where consecutive chunks overlap by exactly ``overlap`` samples.
    ``chunk <= 0`` or ``n <= chunk``: one chunk. Requires ``chunk > 2 * overlap``."""
    if chunk <= 0 or n <= chunk:
        return [(0, n)]
    if chunk <= 2 * overlap:
        raise ValueError(f"chunk ({chunk} samples) must be longer than twice the overlap "
                         f"({overlap} samples)")
    count = math.ceil((n - overlap) / (chunk - overlap))
    length = math.ceil((n + (count - 1) * overlap) / count)
    hop = length - overlap
    plan = []
    for i in range(count):
        start = i * hop
        end = n if i == count - 1 else start + length
        plan.append((start, end))
    return plan


def crossfade_join(pieces: list[Tensor], plan: list[tuple[int, int]], n: int,
                   overlap: int) -> Tensor:
    """Join processed chunks (``pieces[i]`` has ``end - start`` samples) into ``n`` samples.
    Over each overlap the earlier chunk fades out and the later fades in with linear ramps
    ``w_in(t) = (t + 0.5) / overlap``, ``w_out = 1 - w_in`` (they sum to one, so equal pieces
    join to exactly the input)."""
    if len(pieces) == 1:
        return pieces[0][..., :n]
    out = pieces[0].new_zeros(pieces[0].shape[:-1] + (n,))
    ramp = (torch.arange(overlap, device=out.device, dtype=out.dtype) + 0.5) / max(overlap, 1)
    last = len(pieces) - 1
    for i, ((start, end), piece) in enumerate(zip(plan, pieces)):
        w = torch.ones(end - start, device=out.device, dtype=out.dtype)
        if i > 0 and overlap > 0:
            w[:overlap] = ramp
        if i < last and overlap > 0:
            w[end - start - overlap:] = 1.0 - ramp
        out[..., start:end] += piece * w
    return out
