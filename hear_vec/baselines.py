"""Fixed-chain baselines for a trained agent: each method at default knobs, and the best single
fixed chain found by a grid search.

A *fixed chain* is one (method, knobs) applied ``steps`` times in a row to every clip, whatever
the clip: ``x_0 = noisy``, ``x_t = denoise(x_{t-1}, method, knobs)``. It is what an agent that
ignores its observation could at best do, so a trained agent should beat the best one.

- :data:`DEFAULT_KNOBS` = (0.5, 0.5, 0.5): (strength, smoothing, band_mix) of the
  "method at default knobs" baselines, applied for the agent's ``max_steps`` (3 by default).
- :data:`KNOB_GRID`: the knob values searched, per knob: strength {0.25, 0.5, 0.75, 1},
  smoothing {0, 0.5, 1}, band_mix {0, 0.5, 1} (36 knob triples x 5 methods = 180 chains,
  each scored after every repeat count).
- :func:`apply_fixed_chain` — batched over clips with ``lengths``.
- :func:`grid_search_fixed_chain` — scores every (method, knobs, steps) by the mean SI-SDR
  gain over the given clips (search on training clips; report on held-out ones):

      gain(method, knobs, steps) = mean_i [ SI-SDR(x_steps_i, clean_i) - SI-SDR(noisy_i, clean_i) ]

  Every (grid entry, clip) pair is a row; rows are packed in batches of similar length under
  a row and a sample budget (memory stays bounded), each batch runs the chain once up to the
  largest repeat count and is scored after each step in ``repeats``. Host-side tool: the loop
  over batches is in Python; every batch is one ``denoise`` call per step.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hear_vec._checks import check_audio, check_lengths, check_same_shape
from hear_vec.batching import length_batches
from hear_vec.metrics import si_sdr
from hear_vec.ops import METHODS, denoise

__all__ = [
    "DEFAULT_KNOBS",
    "KNOB_GRID",
    "KNOB_NAMES",
    "knob_grid",
    "method_id",
    "apply_fixed_chain",
    "grid_search_fixed_chain",
]

DEFAULT_KNOBS: tuple[float, float, float] = (0.5, 0.5, 0.5)
KNOB_NAMES = ("strength", "smoothing", "band_mix")
KNOB_GRID: dict[str, tuple[float, ...]] = {
    "strength": (0.25, 0.5, 0.75, 1.0),
    "smoothing": (0.0, 0.5, 1.0),
    "band_mix": (0.0, 0.5, 1.0),
}


def knob_grid(grid: Mapping[str, Sequence[float]] | Iterable[Sequence[float]] = KNOB_GRID
              ) -> list[tuple[float, float, float]]:
    """Knob triples of a grid: a mapping of the three knob names to their values (the
    product, strength slowest) or an explicit sequence of (strength, smoothing, band_mix)."""
    if isinstance(grid, Mapping):
        missing = [k for k in KNOB_NAMES if k not in grid]
        if missing:
            raise ValueError(f"knob grid lacks {missing}; expected keys {KNOB_NAMES}")
        axes = [tuple(float(v) for v in grid[k]) for k in KNOB_NAMES]
        triples = list(itertools.product(*axes))
    else:
        triples = [tuple(float(v) for v in t) for t in grid]
    if not triples:
        raise ValueError("the knob grid is empty")
    for t in triples:
        if len(t) != 3 or not all(0.0 <= v <= 1.0 for v in t):
            raise ValueError(f"knob triples must be 3 values in [0, 1], got {t}")
    return triples  # type: ignore[return-value]


def method_id(method: int | str) -> int:
    """A method id from an id or a name in :data:`hear_vec.ops.METHODS`."""
    if isinstance(method, str):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
        return METHODS.index(method)
    m = int(method)
    if not 0 <= m < len(METHODS):
        raise ValueError(f"method id must be in [0, {len(METHODS) - 1}], got {method}")
    return m


def apply_fixed_chain(noisy: Tensor, lengths: Tensor | None, method: int | str,
                      knobs: Sequence[float] | Tensor, steps: int) -> Tensor:
    """Apply one (method, knobs) ``steps`` times to every row of ``noisy`` [B, T].

    ``method``: id or name; ``knobs``: (strength, smoothing, band_mix) shared by all rows, or
    [B, 3]; ``lengths``: LongTensor[B] or None. Returns [B, T], zero beyond lengths.
    """
    noisy = check_audio("noisy", noisy)
    if int(steps) < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    batch = noisy.shape[:-1]
    k = torch.as_tensor(knobs, dtype=noisy.dtype, device=noisy.device)
    if k.shape == (3,):
        k = k.expand(*batch, 3)
    m = torch.full(batch, method_id(method), dtype=torch.long, device=noisy.device)
    out = noisy
    for _ in range(int(steps)):
        out = denoise(out, m, k, lengths)
    return out


def grid_search_fixed_chain(clean: Tensor, noisy: Tensor, lengths: Tensor | None,
                            max_steps: int,
                            grid: Mapping[str, Sequence[float]] | Iterable[Sequence[float]]
                            = KNOB_GRID,
                            repeats: Iterable[int] | None = None,
                            methods: Iterable[int | str] | None = None,
                            batch_rows: int = 64, batch_seconds: float = 128.0,
                            sample_rate: int = 16000) -> tuple[dict[str, Any], Any]:
    """Find the single fixed chain with the best mean SI-SDR gain on the given clips.

    clean, noisy: [B, T] (same device); lengths: LongTensor[B] or None; ``max_steps``: the
    longest chain; ``repeats``: the chain lengths scored (default ``range(1, max_steps + 1)``);
    ``methods``: ids or names (default all of METHODS); ``grid``: see :func:`knob_grid`.
    ``batch_rows`` / ``batch_seconds`` bound one ``denoise`` call (rows x padded seconds at
    ``sample_rate``).

    Returns ``(best, table)``: ``best`` = dict(method (name), method_id, knobs (s, m, b),
    steps, mean_si_sdr_gain); ``table`` a pandas DataFrame with one row per (method, knobs,
    steps): method, method_id, strength, smoothing, band_mix, steps, mean_si_sdr_gain,
    std_si_sdr_gain, in grid order. Ties go to the first in that order (method id, then
    knobs, then fewer steps).
    """
    import pandas as pd

    clean = check_audio("clean", clean)
    noisy = check_audio("noisy", noisy)
    check_same_shape(clean, noisy, ("clean", "noisy"))
    if clean.dim() != 2:
        raise ValueError(f"clean and noisy must be [B, T], got {tuple(clean.shape)}")
    num, width = clean.shape
    if num == 0:
        raise ValueError("grid_search_fixed_chain needs at least one clip")
    if lengths is None:
        lengths = torch.full((num,), width, dtype=torch.long, device=clean.device)
    lengths = check_lengths(lengths, clean)
    repeats = sorted({int(r) for r in (repeats if repeats is not None
                                       else range(1, int(max_steps) + 1))})
    if not repeats or repeats[0] < 1 or repeats[-1] > int(max_steps):
        raise ValueError(f"repeats must be in [1, max_steps={max_steps}], got {repeats}")
    method_ids = [method_id(m) for m in (methods if methods is not None else range(len(METHODS)))]
    triples = knob_grid(grid)
    entries = [(m, t) for m in method_ids for t in triples]
    knob_table = torch.tensor([t for _, t in entries], dtype=clean.dtype, device=clean.device)
    method_table = torch.tensor([m for m, _ in entries], dtype=torch.long, device=clean.device)
    base = si_sdr(noisy, clean, lengths)                                   # [B]
    steps_last = repeats[-1]
    sums = torch.zeros(len(entries), len(repeats), dtype=torch.float64, device=clean.device)
    sq = torch.zeros_like(sums)

    host_lengths = lengths.tolist()
    # rows = (clip, entry) pairs, clip-major so a batch holds few distinct clip lengths
    row_clip = [c for c in range(num) for _ in range(len(entries))]
    row_entry = [e for _ in range(num) for e in range(len(entries))]
    row_len = [host_lengths[c] for c in row_clip]
    budget = max(int(batch_seconds * sample_rate), 1)
    for batch in length_batches(row_len, batch_rows, budget):
        clips = torch.tensor([row_clip[r] for r in batch], device=clean.device)
        ents = torch.tensor([row_entry[r] for r in batch], device=clean.device)
        t_max = max(row_len[r] for r in batch)
        lens = lengths[clips]
        x, ref = noisy[clips, :t_max], clean[clips, :t_max]
        m, k = method_table[ents], knob_table[ents]
        for step in range(1, steps_last + 1):
            x = denoise(x, m, k, lens)
            if step in repeats:
                gain = (si_sdr(x, ref, lens) - base[clips]).to(torch.float64)
                col = repeats.index(step)
                sums[:, col].index_add_(0, ents, gain)
                sq[:, col].index_add_(0, ents, gain * gain)
    mean = (sums / num).cpu()
    var = (sq / num).cpu() - mean * mean
    std = var.clamp_min(0.0).sqrt() * (num / max(num - 1, 1)) ** 0.5
    records = []
    for e, (m, t) in enumerate(entries):
        for c, r in enumerate(repeats):
            records.append({"method": METHODS[m], "method_id": m, "strength": t[0],
                            "smoothing": t[1], "band_mix": t[2], "steps": r,
                            "mean_si_sdr_gain": float(mean[e, c]),
                            "std_si_sdr_gain": float(std[e, c])})
    table = pd.DataFrame.from_records(records)
    gains = table["mean_si_sdr_gain"].to_numpy()
    if np.isnan(gains).all():
        raise ValueError("every fixed chain scored NaN; check the clips")
    best_row = table.iloc[int(np.nanargmax(gains))]
    best = {"method": str(best_row["method"]), "method_id": int(best_row["method_id"]),
            "knobs": (float(best_row["strength"]), float(best_row["smoothing"]),
                      float(best_row["band_mix"])),
            "steps": int(best_row["steps"]),
            "mean_si_sdr_gain": float(best_row["mean_si_sdr_gain"])}
    return best, table
