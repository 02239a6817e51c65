"""Babble noise made of a corpus's own utterances, built once per corpus (and per split part,
so a validation part's babble holds only validation speakers).

:func:`babble_bank` builds ``clips`` clips of ``seconds``: clip c sums m_c ~ U{talkers}
talkers; talker j is utterance v ~ U{0 .. U-1} of the corpus read cyclically from a random
offset o (``x_v[(o + t) mod len_v]``, so it talks for the whole clip) and scaled to unit mean
square over its item (``1 / sqrt(power_v)``); the clip is stored as a wrapped noise item.
Draws crop it like any noise recording (random offset, wrapping), so one babble row costs one
crop, not one per talker. All randomness from ``fold_in(make_key(seed), 0xBAB0)``: uniforms
``(clips,)`` for the counts and ``randint (clips, MAX_TALKERS, 2)`` for (utterance, offset);
the bank is a pure function of (bank, items, talkers, seed, clips, seconds, sample_rate).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hear_vec import rng
from hear_vec.data.bank import AudioBank
from hear_vec.data.randomize import MAX_TALKERS

__all__ = ["babble_bank", "BABBLE_CLIPS", "BABBLE_SECONDS"]

BABBLE_CLIPS = 32      #: babble clips per corpus
BABBLE_SECONDS = 6.0   #: length of each clip


@torch.no_grad()
def babble_bank(bank: AudioBank, items: Tensor, talkers: tuple[int, int], seed: int,
                sample_rate: int, clips: int = BABBLE_CLIPS, seconds: float = BABBLE_SECONDS
                ) -> tuple[AudioBank, Tensor]:
    """(wrapped bank of ``clips`` babble clips, talkers [clips, MAX_TALKERS] int64 utterance
    indices into ``items``, -1 where a clip has fewer talkers). See the module docstring."""
    dev = items.device
    key = rng.fold_in(rng.make_key(seed, dev), 0xBAB0)
    width = max(1, round(seconds * sample_rate))
    lo, hi = int(talkers[0]), int(talkers[1])
    count = (lo + (rng.uniform(rng.fold_in(key, 1), (clips,)) * (hi - lo + 1)).long()).clamp(
        lo, hi)
    picks = rng.randint(rng.fold_in(key, 2), (clips, MAX_TALKERS, 2), 1 << 62)
    utt = torch.remainder(picks[..., 0], items.shape[0])             # [C, M]
    item = items[utt]
    length = bank.lengths[item]
    offset = torch.remainder(picks[..., 1], length)
    t = torch.arange(width, device=dev)
    out = torch.zeros(clips, width, device=dev)
    for m in range(hi):
        idx = bank.offsets[item[:, m], None] + torch.remainder(offset[:, m, None] + t,
                                                               length[:, m, None])
        voice = bank.data[idx].to(torch.float32) * bank.scales[item[:, m], None]
        weight = torch.where(m < count, torch.rsqrt(bank.power[item[:, m]] + 1e-20), 0.0)
        out += voice * weight[:, None]
    used = torch.arange(MAX_TALKERS, device=dev) < count[:, None]
    lengths = torch.full((clips,), width, dtype=torch.long, device=dev)
    return AudioBank.from_padded(out, lengths, wrap=True), torch.where(used, utt, -1)
