"""Running and scoring the systems of a held-out evaluation on a :class:`ClipSet`.

- :class:`Scorer`: per-clip SI-SDR (``hear_vec.metrics.si_sdr``), STOI and ESTOI
  (``stoi_from_reference`` against the clean side computed once; equal to pystoi 0.4.1) of
  any [B, T] output of the clips.
- :func:`run_in_batches`: a batched denoiser ``fn(noisy [b, t], lengths [b]) -> [b, t]`` over
  the clips in batches of similar length (bounded rows and padded samples), reassembled
  into [B, T] in clip order, zero beyond each clip's length.
- :func:`per_clip_chain_gains`: the SI-SDR gain of every fixed chain of a grid (method,
  knobs, 1..max_steps repeats) on every clip, [B, E, S]; its mean over clips is what
  ``hear_vec.baselines.grid_search_fixed_chain`` ranks. The per-clip argmax is the *oracle*
  chain choice (it sees the clean speech), :func:`apply_per_clip_chains` renders it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from hear_vec.baselines import KNOB_GRID, knob_grid
from hear_vec.cli.common import length_batches
from hear_vec.metrics import si_sdr, stoi_from_reference, stoi_reference
from hear_vec.ops import METHODS, denoise

__all__ = ["Scorer", "run_in_batches", "per_clip_chain_gains", "apply_per_clip_chains"]

SAMPLE_RATE = 16000


class Scorer:
    """Scores outputs of the clips ``clean`` [B, T] with ``lengths`` [B]."""

    def __init__(self, clean: Tensor, lengths: Tensor) -> None:
        self.clean = clean
        self.lengths = lengths
        self.reference = stoi_reference(clean, SAMPLE_RATE, lengths)

    def __call__(self, audio: Tensor) -> dict[str, np.ndarray]:
        """{"si_sdr", "stoi", "estoi"}: float64 [B] each."""
        if audio.shape != self.clean.shape:
            raise ValueError(f"output shape {tuple(audio.shape)} != clips "
                             f"{tuple(self.clean.shape)}")
        audio = audio.to(self.clean.device, self.clean.dtype)
        st, es = stoi_from_reference(self.reference, audio, SAMPLE_RATE)
        si = si_sdr(audio, self.clean, self.lengths)
        return {"si_sdr": si.double().cpu().numpy(), "stoi": st.double().cpu().numpy(),
                "estoi": es.double().cpu().numpy()}


def run_in_batches(fn: Callable[[Tensor, Tensor], Tensor], noisy: Tensor, lengths: Tensor,
                   max_rows: int = 32, max_seconds: float = 96.0) -> Tensor:
    """``fn`` on batches of similar length; returns [B, T] in clip order."""
    out = torch.zeros_like(noisy)
    host = lengths.tolist()
    for batch in length_batches(host, max_rows, int(max_seconds * SAMPLE_RATE)):
        idx = torch.tensor(batch, dtype=torch.long, device=noisy.device)
        width = max(host[i] for i in batch)
        lens = lengths[idx]
        y = fn(noisy[idx, :width], lens).to(out.dtype)
        mask = torch.arange(width, device=y.device)[None, :] < lens[:, None].to(y.device)
        out[idx, :width] = torch.where(mask, y, 0.0).to(out.device)
    return out


def per_clip_chain_gains(clean: Tensor, noisy: Tensor, lengths: Tensor, max_steps: int,
                         grid: Mapping[str, Sequence[float]] | Iterable[Sequence[float]]
                         = KNOB_GRID, batch_rows: int = 64, batch_seconds: float = 128.0
                         ) -> tuple[np.ndarray, list[tuple[int, tuple[float, float, float]]]]:
    """(gains float64 [B, E, S]: SI-SDR(chain_e applied s+1 times) - SI-SDR(noisy) per clip,
    entries: [(method id, knobs)] for e, methods slowest, in ``grid_search_fixed_chain``'s
    order). Rows are (clip, entry) pairs in batches of similar length."""
    triples = knob_grid(grid)
    entries = [(m, t) for m in range(len(METHODS)) for t in triples]
    num, dev = clean.shape[0], clean.device
    knob_table = torch.tensor([t for _, t in entries], dtype=clean.dtype, device=dev)
    method_table = torch.tensor([m for m, _ in entries], dtype=torch.long, device=dev)
    base = si_sdr(noisy, clean, lengths)
    gains = torch.zeros(num, len(entries), int(max_steps), dtype=torch.float64, device=dev)
    host = lengths.tolist()
    row_clip = [c for c in range(num) for _ in range(len(entries))]
    row_entry = [e for _ in range(num) for e in range(len(entries))]
    row_len = [host[c] for c in row_clip]
    for batch in length_batches(row_len, batch_rows, int(batch_seconds * SAMPLE_RATE)):
        clips = torch.tensor([row_clip[r] for r in batch], device=dev)
        ents = torch.tensor([row_entry[r] for r in batch], device=dev)
        width = max(row_len[r] for r in batch)
        lens = lengths[clips]
        x, ref = noisy[clips, :width], clean[clips, :width]
        m, k = method_table[ents], knob_table[ents]
        for step in range(int(max_steps)):
            x = denoise(x, m, k, lens)
            gains[clips, ents, step] = (si_sdr(x, ref, lens) - base[clips]).double()
    return gains.cpu().numpy(), entries


def apply_per_clip_chains(noisy: Tensor, lengths: Tensor, methods: Tensor, knobs: Tensor,
                          steps: Tensor) -> Tensor:
    """Clip i: ``methods[i]`` with ``knobs[i]`` applied ``steps[i]`` (>= 1) times."""
    dev = noisy.device
    methods, knobs, steps = methods.to(dev), knobs.to(dev, noisy.dtype), steps.to(dev)
    out = noisy
    for step in range(int(steps.max())):
        y = denoise(out, methods, knobs, lengths)
        out = torch.where((steps > step)[:, None], y, out)
    return out
