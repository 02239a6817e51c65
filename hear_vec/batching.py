"""Host-side batch planning for ragged audio: :func:`length_batches` packs items of similar
length into batches under an item and a sample budget; :func:`pad_rows` pads 1-D rows into a
``[B, T]`` tensor with ``lengths``. Used by the baselines, the evaluation and the command-line
tools."""

from __future__ import annotations

import torch

__all__ = ["length_batches", "pad_rows"]


def length_batches(lengths: list[int] | tuple[int, ...], max_items: int,
                   max_samples: int) -> list[list[int]]:
    """Indices of ``lengths`` packed into batches of similar length: sorted longest first, a
    batch grows while it holds fewer than ``max_items`` items and its padded size
    (items x longest) stays within ``max_samples``; an item longer than ``max_samples`` gets
    a batch of its own. Host-side planning (plain ints)."""
    if max_items < 1 or max_samples < 1:
        raise ValueError(f"max_items and max_samples must be >= 1, got {max_items}, "
                         f"{max_samples}")
    order = sorted(range(len(lengths)), key=lambda i: (-int(lengths[i]), i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = max(int(lengths[i]), 1)
        if current and (len(current) >= max_items or (len(current) + 1) * longest > max_samples):
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    if current:
        batches.append(current)
    return batches


def pad_rows(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D tensors (same device and dtype) -> (zero-padded [B, T_max], lengths LongTensor[B])."""
    if not rows:
        raise ValueError("pad_rows needs at least one row")
    lengths = torch.tensor([int(r.shape[-1]) for r in rows], dtype=torch.long,
                           device=rows[0].device)
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True), lengths
