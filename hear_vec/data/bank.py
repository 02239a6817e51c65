"""The corpora that draw episode segments from device-resident audio banks
(:mod:`hear_vec.data.storage`: :class:`AudioBank`, :class:`Segments`, :func:`mix_at_snr`,
re-exported here).

Drawing. :meth:`Corpus.draw` turns a key into a batch of segments with static shapes, on the
corpus device, with no host round trip (compiles with ``torch.compile(fullgraph=True)``). All
randomness comes from ONE call ``r = hear_vec.rng.randint(key, (B, 6), 2**62)`` (62 random
bits per entry; one call keeps the compiled graph small), column j feeding:

    j=0  utterance    u ~ U{0 .. U-1}                       (r mod U)
    j=1  length       L = min(len(u), min_samples + U{0 .. T - min_samples})
    j=2  crop offset  o ~ U{0 .. len(u) - L}
    j=3  noise item   n ~ U over noise_index (all K items unless held out; mixing corpora)
    j=4  noise offset p ~ U{0 .. len(n) - 1}; noise[t] = bank_n[(p + t) mod len(n)]
    j=5  SNR          s = lo + (hi - lo) * (r >> 38) / 2**24

Integers are ``r mod high`` (bias below high / 2**62, as in ``rng.randint``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from hear_vec import rng
from hear_vec.data.storage import (
    DEFAULT_TAIL,
    AudioBank,
    CorpusError,
    Segments,
    mix_at_snr,
    snr_gain,
)

__all__ = ["CorpusError", "Segments", "AudioBank", "DEFAULT_TAIL", "Corpus", "PairedCorpus",
           "MixingCorpus", "mix_at_snr", "snr_gain"]


def _random_bits(key: Tensor, num: int) -> Tensor:
    """[num, 6] int64 uniform in [0, 2**62): every random number one draw needs."""
    return rng.randint(key, (num, 6), 1 << 62)


def _check_key(key: object, device: torch.device) -> Tensor:
    if not isinstance(key, Tensor):
        raise ValueError(f"key must be an int64 tensor (hear_vec.rng.make_key), got "
                         f"{type(key).__name__}")
    if key.dtype != torch.long or key.dim() != 0:
        raise ValueError(f"key must be a scalar int64 tensor, got dtype {key.dtype} shape "
                         f"{tuple(key.shape)}")
    return key if key.device == device else key.to(device)


def _check_sizes(num: int, segment_samples: int, min_samples: int | None) -> tuple[int, int, int]:
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be a positive int, got {num!r}")
    if not isinstance(segment_samples, int) or segment_samples < 1:
        raise ValueError(f"segment_samples must be a positive int, got {segment_samples!r}")
    if min_samples is None:
        min_samples = segment_samples
    if not isinstance(min_samples, int) or not 1 <= min_samples <= segment_samples:
        raise ValueError(f"min_samples must be an int in [1, segment_samples={segment_samples}]"
                         f", got {min_samples!r}")
    return num, segment_samples, min_samples


class Corpus:
    """A set of utterances to draw episode segments from (abstract).

    Attributes: ``sample_rate`` (Hz), ``names`` (one per utterance), ``device``, ``skipped``
    (``(path, reason)`` of files left out while loading), ``source`` (a short description).
    Subclasses provide :meth:`_assemble` and :meth:`_tensors`.
    """

    sample_rate: int
    names: list[str]
    skipped: list[tuple[str, str]]
    source: str

    def __init__(self, bank: AudioBank, items: Tensor, names: list[str], sample_rate: int,
                 source: str = "", skipped: list[tuple[str, str]] | None = None):
        if len(names) == 0:
            raise CorpusError("the corpus has no utterances")
        if items.shape != (len(names),):
            raise ValueError("items must hold one bank item per name")
        self.bank = bank            #: clean (and, for paired corpora, noisy) audio
        self.items = items          #: [U] int64 bank item of each utterance's clean audio
        self.names = list(names)
        self.sample_rate = int(sample_rate)
        self.source = source
        self.skipped = list(skipped or [])

    # -- bookkeeping -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.items.device

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        seconds = float(self.bank.lengths[self.items].sum()) / self.sample_rate
        return (f"{type(self).__name__}({len(self)} utterances, {seconds:.1f} s, "
                f"{self.sample_rate} Hz, device={self.device}, source={self.source!r})")

    def utterance_lengths(self) -> Tensor:
        """[U] int64 samples of each utterance (on the device)."""
        return self.bank.lengths[self.items]

    def _tensors(self) -> dict[str, object]:
        """Attributes holding tensors or banks (moved by :meth:`to`)."""
        return {"bank": self.bank, "items": self.items}

    def _subset_tensors(self, index: Tensor) -> dict[str, Tensor]:
        """Per-utterance tensor attributes restricted to ``index``."""
        return {"items": self.items[index]}

    def to(self, device: torch.device | str) -> Corpus:
        """A copy with every tensor on ``device`` (the same object if already there)."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device == self.device:
            return self
        out = copy.copy(self)
        for name, value in self._tensors().items():
            setattr(out, name, value.to(device))
        return out

    def subset(self, indices: Sequence[int]) -> Corpus:
        """A corpus over the utterances ``indices`` (sharing the banks)."""
        idx = [int(i) for i in indices]
        if not idx:
            raise CorpusError("a corpus subset needs at least one utterance")
        index = torch.tensor(idx, dtype=torch.long, device=self.device)
        out = copy.copy(self)
        for name, value in self._subset_tensors(index).items():
            setattr(out, name, value)
        out.names = [self.names[i] for i in idx]
        self._subset_host(out, idx)
        return out

    def _subset_host(self, out: Corpus, idx: list[int]) -> None:
        """Restrict host-side per-utterance lists of ``out`` (hook for subclasses)."""

    def split(self, valid_fraction: float = 0.1, seed: int = 0, **holdout: object
              ) -> tuple[Corpus, Corpus]:
        """(train, valid) disjoint by utterance: a seeded permutation (hear_vec.rng) puts
        ``max(1, round(valid_fraction * U))`` utterances in valid; each part keeps the
        corpus order. Noise banks of mixing corpora are shared by both parts.

        ``holdout`` (speaker_pattern, speaker_column, holdout_speakers,
        holdout_noise_fraction, holdout_noises) holds out whole speakers and noise
        recordings instead: see :func:`hear_vec.data.splits.split_corpus`, which also
        reports which speakers and noises went where."""
        from hear_vec.data.splits import split_corpus

        parts = split_corpus(self, valid_fraction, seed, **holdout)  # type: ignore[arg-type]
        return parts.train, parts.valid

    def noise_subset(self, indices: Sequence[int]) -> Corpus:
        """A corpus that mixes only with the noise items ``indices`` (into ``noise_names``);
        corpora without on-the-fly noise raise :class:`CorpusError`."""
        raise CorpusError(f"{type(self).__name__} mixes no noise on the fly (its noise is "
                          "recorded), so its noises cannot be held out")

    # -- drawing -----------------------------------------------------------------------------
    def draw(self, key: Tensor, num: int, segment_samples: int,
             min_samples: int | None = None) -> Segments:
        """``num`` segments of at most ``segment_samples`` samples (see the module docstring).

        Each row: utterance uniform; length uniform in [min_samples, segment_samples] capped
        by the utterance's length (``min_samples`` None means ``segment_samples``); crop
        offset uniform within the utterance. Runs on the corpus device without host syncs;
        the same key gives the same segments.
        """
        num, seg, lo = _check_sizes(num, segment_samples, min_samples)
        bits = _random_bits(_check_key(key, self.device), num)
        u = torch.remainder(bits[:, 0], len(self))
        ulen = self.bank.lengths[self.items[u]]
        want = lo + torch.remainder(bits[:, 1], seg - lo + 1)
        lengths = torch.minimum(want, ulen)
        start = torch.remainder(bits[:, 2], ulen - lengths + 1)
        return self._assemble(bits, u, start, lengths, seg)

    def _assemble(self, bits: Tensor, u: Tensor, start: Tensor, lengths: Tensor,
                  width: int) -> Segments:
        """Segments for the chosen rows; ``bits`` [B, 6] are the draw's random integers."""
        raise NotImplementedError

    def utterance_audio(self, index: int) -> tuple[Tensor, Tensor]:
        """Whole (clean, noisy) float32 [length] of utterance ``index`` on the corpus device
        (host-side use, e.g. evaluation). Mixing corpora mix it deterministically: noise item,
        offset and SNR come from ``fold_in(make_key(seed), bank item)``, so an utterance is
        mixed alike in a corpus and in its split parts."""
        seg = self.utterance_segments(index)
        n = int(seg.lengths[0])
        return seg.clean[0, :n], seg.noisy[0, :n]

    def utterance_segments(self, index: int) -> Segments:
        """Utterance ``index`` whole, as a one-row :class:`Segments` (with snr and noise)."""
        if not 0 <= int(index) < len(self):
            raise IndexError(f"utterance index {index} out of range for {len(self)} utterances")
        u = torch.tensor([int(index)], dtype=torch.long, device=self.device)
        item = int(self.items[int(index)])
        n = int(self.bank.lengths[item])
        lengths = torch.tensor([n], dtype=torch.long, device=self.device)
        key = rng.fold_in(rng.make_key(getattr(self, "seed", 0), self.device), item)
        return self._assemble(_random_bits(key, 1), u, torch.zeros_like(lengths), lengths, n)

    def utterance_meta(self, index: int) -> dict[str, object]:
        """Host-side facts about utterance ``index`` (name, snr_db, sources, duration_sec)."""
        seg = self.utterance_segments(index)
        return {"utt_id": self.names[index], "snr_db": float(seg.snr_db[0]),
                "duration_sec": int(seg.lengths[0]) / self.sample_rate}


class PairedCorpus(Corpus):
    """Recorded (clean, noisy) pairs: both in one bank; ``noisy_items[u]`` is the bank item of
    utterance u's noisy audio, of the same length as its clean item. ``snr`` [U] float32 holds
    meta.csv's snr_db (NaN where unknown); ``meta`` a host-side dict per utterance (extra
    meta.csv columns such as clean_source / noise_source)."""

    def __init__(self, bank: AudioBank, items: Tensor, noisy_items: Tensor, names: list[str],
                 sample_rate: int, snr: Tensor | None = None,
                 meta: list[dict[str, object]] | None = None, source: str = "",
                 skipped: list[tuple[str, str]] | None = None):
        super().__init__(bank, items, names, sample_rate, source, skipped)
        self.noisy_items = noisy_items
        if snr is None:
            snr = torch.full((len(names),), math.nan, dtype=torch.float32, device=items.device)
        self.snr = snr.to(device=items.device, dtype=torch.float32)
        self.meta = list(meta) if meta is not None else [{} for _ in names]

    def _tensors(self) -> dict[str, object]:
        return {**super()._tensors(), "noisy_items": self.noisy_items, "snr": self.snr}

    def _subset_tensors(self, index: Tensor) -> dict[str, Tensor]:
        return {**super()._subset_tensors(index), "noisy_items": self.noisy_items[index],
                "snr": self.snr[index]}

    def _subset_host(self, out: Corpus, idx: list[int]) -> None:
        out.meta = [self.meta[i] for i in idx]

    def _assemble(self, bits: Tensor, u: Tensor, start: Tensor, lengths: Tensor,
                  width: int) -> Segments:
        beyond = torch.arange(width, device=u.device) >= lengths[:, None]
        clean = self.bank.gather(self.items[u], start, lengths, width, beyond)
        noisy = self.bank.gather(self.noisy_items[u], start, lengths, width, beyond)
        return Segments(clean, noisy, lengths, self.snr[u], u, torch.full_like(u, -1))

    def utterance_meta(self, index: int) -> dict[str, object]:
        out = dict(self.meta[index])
        out.update(super().utterance_meta(index))
        return out


class MixingCorpus(Corpus):
    """Clean utterances mixed on the fly with items of a noise bank at SNRs drawn uniformly
    from ``snr_range`` (dB). ``noise_names`` names the noise items; ``seed`` fixes the
    mixing of :meth:`utterance_audio`."""

    def __init__(self, bank: AudioBank, noise_bank: AudioBank, names: list[str],
                 noise_names: list[str], sample_rate: int,
                 snr_range: tuple[float, float] = (-5.0, 15.0), seed: int = 0,
                 items: Tensor | None = None, source: str = "",
                 skipped: list[tuple[str, str]] | None = None):
        if items is None:
            items = torch.arange(len(names), dtype=torch.long, device=bank.offsets.device)
        super().__init__(bank, items, names, sample_rate, source, skipped)
        lo, hi = (float(v) for v in snr_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise CorpusError(f"snr_range must be two finite numbers LO <= HI, got {snr_range}")
        if len(noise_bank) == 0 or len(noise_names) != len(noise_bank):
            raise CorpusError("a mixing corpus needs a non-empty noise bank with one name per item")
        if not noise_bank.wrap:
            noise_bank = noise_bank.relayout(wrap=True, tail=max(noise_bank.tail, DEFAULT_TAIL))
        self.noise_bank = noise_bank
        self.noise_names = list(noise_names)
        #: [K'] noise items this corpus mixes with (all by default; see noise_subset)
        self.noise_index = torch.arange(len(noise_bank), dtype=torch.long,
                                        device=noise_bank.offsets.device)
        self.snr_range = (lo, hi)
        self.seed = int(seed)

    def _tensors(self) -> dict[str, object]:
        return {**super()._tensors(), "noise_bank": self.noise_bank,
                "noise_index": self.noise_index}

    def noise_subset(self, indices: Sequence[int]) -> MixingCorpus:
        """A corpus that mixes only with noise items ``indices`` (sharing the banks);
        ``Segments.noise`` keeps indexing the full ``noise_names``."""
        idx = sorted({int(i) for i in indices})
        if not idx or idx[0] < 0 or idx[-1] >= len(self.noise_names):
            raise CorpusError(f"a noise subset needs indices in 0..{len(self.noise_names) - 1},"
                              f" got {list(indices)}")
        out = copy.copy(self)
        out.noise_index = torch.tensor(idx, dtype=torch.long, device=self.device)
        return out

    def _assemble(self, bits: Tensor, u: Tensor, start: Tensor, lengths: Tensor,
                  width: int) -> Segments:
        item = self.items[u]
        beyond = torch.arange(width, device=u.device) >= lengths[:, None]
        clean = self.bank.gather(item, start, lengths, width, beyond)
        k = self.noise_index[torch.remainder(bits[:, 3], self.noise_index.shape[0])]
        offset = torch.remainder(bits[:, 4], self.noise_bank.lengths[k])
        noise = self.noise_bank.gather(k, offset, lengths, width, beyond)
        lo, hi = self.snr_range
        snr = lo + (hi - lo) * ((bits[:, 5] >> 38).to(torch.float32) * (1.0 / (1 << 24)))
        noisy = mix_at_snr(clean, noise, snr, lengths, self.bank.power[item],
                           self.noise_bank.power[k])
        return Segments(clean, noisy, lengths, snr, u, k)

    def utterance_meta(self, index: int) -> dict[str, object]:
        seg = self.utterance_segments(index)
        return {"utt_id": self.names[index], "snr_db": float(seg.snr_db[0]),
                "clean_source": self.names[index],
                "noise_source": self.noise_names[int(seg.noise[0])],
                "duration_sec": int(seg.lengths[0]) / self.sample_rate}
