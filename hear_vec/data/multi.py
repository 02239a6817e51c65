"""One corpus over several speech and noise sources, drawn with domain randomization.

Why one module of ~420 lines: it is one class, :class:`MultiSourceCorpus`, whose draw is a
single static-shape function over state its constructor lays out (the banks, the tick tables,
the per-source ids); the weighted choice and the randomization hooks are a few lines each and
exist only for it. Split, the draw's invariants (which random column feeds what, row b depends
only on (key, b)) would span files; the per-source loaders live in
:mod:`hear_vec.data.sources` and the randomization in :mod:`hear_vec.data.randomize`.

:class:`MultiSourceCorpus` keeps ALL speech of every speech source in one plain bank (clean
items; paired sources also their recorded noisy items) and ALL noise of every noise source in
one wrapped bank, with a source id per utterance and per noise item. A draw keeps the contract
``Corpus.draw(key, num, segment_samples, min_samples) -> Segments`` (static shapes, no host
sync, compiles with ``torch.compile(fullgraph=True)``), and row b depends only on (key, b).

Weighted choice. Source s of weight W_s spreads it evenly over its n_s items: item weight
W_s / n_s, made exact integers ``ticks`` (rationals scaled by the lcm of their denominators and
divided by their gcd; equal weights give one tick per item). ``x = r mod sum(ticks)``, item =
``searchsorted(cumsum(ticks), x, right=True)``. With equal weights this is ``r mod U``, the
plain corpora's choice, so a single source with ``Randomization()`` draws EXACTLY what
:class:`~hear_vec.data.bank.MixingCorpus` draws for the same key.

Random numbers of one draw (columns always mean the same thing, whatever is switched on):

- ``rng.randint(key, (B, 6), 2**62)``: utterance, length, crop, main noise item, its offset,
  SNR (as in :mod:`hear_vec.data.bank`);
- ``rng.uniform(fold_in(key, 0xA0), (B, NUM_UNIFORMS))``: the knobs
  (:func:`~hear_vec.data.randomize.draw_parameters`);
- ``rng.randint(fold_in(key, 0xA1), (B, NUM_INTEGERS), 2**62)``: items and offsets of the
  extra noises, clip and offset of the babble, offset of the room response's noise: a window
  of R samples of one buffer of 2**20 uniforms made once per corpus from its seed
  (``rng.uniform(fold_in(make_key(seed), 0xA2), (2**20,))``; one gather instead of hashing
  B x R fresh numbers, which cost 7x the response itself on the CPU).

What applies to which row (model and formulas: :mod:`hear_vec.data.randomize`): mixing rows
get everything; paired rows keep their recorded noise ``y - s`` and recorded SNR and get only
the channel filter and the level. Babble is a crop of a babble clip built from the corpus's
own utterances (:mod:`hear_vec.data.babble`; rebuilt for each split part, so a part's babble
holds only its own speakers). ``Segments.snr_db`` is the SNR
of the target against the TOTAL noise (paired: meta.csv's snr_db or NaN); ``Segments.noise``
is the main noise item (index into ``noise_names``), -2 for babble, -1 for paired rows;
:meth:`MultiSourceCorpus.draw_with_info` returns every applied parameter per row.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

import torch
from torch import Tensor

from hear_vec import rng
from hear_vec.data import filters
from hear_vec.data import randomize as rz
from hear_vec.data.babble import babble_bank
from hear_vec.data.bank import (
    AudioBank,
    Corpus,
    CorpusError,
    MixingCorpus,
    PairedCorpus,
    Segments,
    _check_key,
    _check_sizes,
    _random_bits,
    snr_gain,
)
from hear_vec.data.randomize import Randomization, RowParams

__all__ = ["MultiSourceCorpus", "DrawInfo", "item_ticks", "BABBLE", "PAIRED"]

PAIRED = -1   #: ``Segments.noise`` of a paired row
BABBLE = -2   #: ``Segments.noise`` of a row whose main noise is babble
_STREAM_UNIFORM, _STREAM_INT, _STREAM_RIR = 0xA0, 0xA1, 0xA2
_RIR_NOISE = 1 << 20  # uniforms in the room-response noise buffer
_TICKS_LIMIT = 1 << 40


def item_ticks(groups: Sequence[int], weights: Sequence[float]) -> list[int]:
    """Integer weights of entries whose group g has weight ``weights[g]``, spread evenly over
    the group's entries (see the module docstring)."""
    counts = Counter(groups)
    fracs = [Fraction(float(weights[g])).limit_denominator(1_000_000) / counts[g]
             for g in groups]
    if not any(fracs):
        raise CorpusError("every source that has items has weight 0")
    denom = math.lcm(*(f.denominator for f in fracs))
    ticks = [int(f * denom) for f in fracs]
    common = math.gcd(*ticks)
    ticks = [t // common for t in ticks]
    if sum(ticks) > _TICKS_LIMIT:  # rounded instead (relative error < 2**-40 per unit)
        total = sum(fracs)
        ticks = [max(1, round(float(f / total) * _TICKS_LIMIT)) if f else 0 for f in fracs]
    return ticks


def _weighted(bits: Tensor, cdf: Tensor, total: int) -> Tensor:
    """Index drawn with probability ticks[i] / total from 62 random bits."""
    return torch.searchsorted(cdf, torch.remainder(bits, total), right=True)


@dataclass
class DrawInfo:
    """Applied per-row parameters of one draw (all [B] on the corpus device)."""

    params: RowParams          #: knobs as applied (paired rows: reverb/babble off, count 1)
    source: Tensor             #: int64 speech source of the row (index into speech_sources)
    paired: Tensor             #: bool, row drawn from a paired source
    noise_items: Tensor        #: [B, MAX_NOISES] int64 noise item per slot (-1 unused, -2 babble)
    babble_utterances: Tensor  #: [B, MAX_TALKERS] int64 talkers of the babble (-1 unused)
    level_limited: Tensor      #: bool, the level was lowered to keep |noisy| <= 1


class MultiSourceCorpus(Corpus):
    """Speech from several sources mixed with noise from several sources (module docstring).

    Args: ``bank`` (speech), ``items`` [U] clean item per utterance, ``noisy_items`` [U]
    recorded noisy item (-1: mixed on the fly), ``names``, ``sample_rate``; ``utt_source``
    (host list, source id per utterance), ``speech_sources`` labels and ``speech_weights``;
    ``noise_bank`` (or None when every row is paired or babble), ``noise_names``,
    ``noise_source``, ``noise_sources``, ``noise_weights`` likewise; ``snr`` [U] recorded
    SNRs, ``meta`` host dicts per utterance, ``snr_range`` (dB), ``randomization``, ``seed``.
    """

    def __init__(self, bank: AudioBank, items: Tensor, noisy_items: Tensor, names: list[str],
                 sample_rate: int, *, utt_source: Sequence[int], speech_sources: Sequence[str],
                 speech_weights: Sequence[float], noise_bank: AudioBank | None = None,
                 noise_names: Sequence[str] = (), noise_source: Sequence[int] = (),
                 noise_sources: Sequence[str] = (), noise_weights: Sequence[float] = (),
                 noise_index: Sequence[int] | None = None, snr: Tensor | None = None,
                 meta: list[dict[str, object]] | None = None,
                 snr_range: tuple[float, float] = (-5.0, 15.0),
                 randomization: Randomization | None = None, seed: int = 0,
                 source: str = "", skipped: list[tuple[str, str]] | None = None):
        super().__init__(bank, items, names, sample_rate, source, skipped)
        dev = items.device
        lo, hi = (float(v) for v in snr_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise CorpusError(f"snr_range must be two finite numbers LO <= HI, got {snr_range}")
        self.snr_range = (lo, hi)
        self.seed = int(seed)
        self.noisy_items = noisy_items.to(dev, torch.long)
        self.snr = (torch.full((len(names),), math.nan, device=dev) if snr is None
                    else snr.to(dev, torch.float32))
        self.meta = list(meta) if meta is not None else [{} for _ in names]
        self.utt_source = [int(s) for s in utt_source]
        self.speech_sources, self.speech_weights = list(speech_sources), list(speech_weights)
        if noise_bank is not None and not noise_bank.wrap:
            noise_bank = noise_bank.relayout(wrap=True, tail=max(noise_bank.tail, 1 << 18))
        self.noise_bank = noise_bank
        self.noise_names = list(noise_names)
        self.noise_source = [int(s) for s in noise_source]
        self.noise_sources, self.noise_weights = list(noise_sources), list(noise_weights)
        if noise_bank is not None and not (len(noise_bank) == len(self.noise_names)
                                           == len(self.noise_source)):
            raise CorpusError("a noise bank needs one name and one source id per item")
        for label, weights in (("speech", self.speech_weights), ("noise", self.noise_weights)):
            bad = [w for w in weights if not (math.isfinite(float(w)) and float(w) >= 0)]
            if bad:
                raise CorpusError(f"{label} source weights must be finite and >= 0, got {bad[0]}")
        self._allowed = (list(range(len(self.noise_names))) if noise_index is None
                         else sorted({int(i) for i in noise_index}))
        self.randomization = (randomization or Randomization()).validate()
        self.babble_bank: AudioBank | None = None
        self.babble_talkers: Tensor | None = None  #: [clips, MAX_TALKERS] utterance indices
        self._babble_talkers_range: tuple[int, int] | None = None
        self.rir_noise: Tensor | None = None  #: [2**20] uniforms for the room responses
        self._refresh()

    # -- host-side bookkeeping ---------------------------------------------------------------
    def _refresh(self, babble: bool = False) -> None:
        """Recompute the weighted-choice tables and the static flags from the host lists
        (and the babble bank when ``babble`` or when it is needed but missing)."""
        dev = self.device
        r = self.randomization
        if r.babble_prob > 0 and (babble or getattr(self, "babble_bank", None) is None
                                  or self._babble_talkers_range != r.babble_talkers):
            self.babble_bank, self.babble_talkers = babble_bank(
                self.bank, self.items, r.babble_talkers, self.seed, self.sample_rate)
            self._babble_talkers_range = r.babble_talkers
        elif r.babble_prob == 0:
            self.babble_bank, self.babble_talkers = None, None
            self._babble_talkers_range = None
        if r.reverb_prob > 0 and self.rir_noise is None:
            self.rir_noise = rng.uniform(rng.fold_in(rng.make_key(self.seed, dev), _STREAM_RIR),
                                         (_RIR_NOISE,))
        paired = [int(v) >= 0 for v in self.noisy_items.tolist()]
        self.has_paired, self.has_mixing = any(paired), not all(paired)
        ticks = torch.tensor(item_ticks(self.utt_source, self.speech_weights), device=dev)
        self.speech_cdf, self.speech_total = torch.cumsum(ticks, 0), int(ticks.sum())
        self.utt_source_t = torch.tensor(self.utt_source, dtype=torch.long, device=dev)
        if self.has_mixing and self.noise_bank is None and (r.babble_prob < 1
                                                            or r.max_noises > 1):
            raise CorpusError("speech mixed on the fly needs a noise source (babble alone "
                              "needs babble_prob 1 and one noise per row)")
        if self.noise_bank is not None:
            if not self._allowed:
                raise CorpusError("the corpus has no noise items left to mix with")
            groups = [self.noise_source[i] for i in self._allowed]
            ticks = torch.tensor(item_ticks(groups, self.noise_weights), device=dev)
            self.noise_index = torch.tensor(self._allowed, dtype=torch.long, device=dev)
            self.noise_cdf, self.noise_total = torch.cumsum(ticks, 0), int(ticks.sum())

    def _tensors(self) -> dict[str, object]:
        out = {**super()._tensors(), "noisy_items": self.noisy_items, "snr": self.snr,
               "speech_cdf": self.speech_cdf, "utt_source_t": self.utt_source_t}
        if self.noise_bank is not None:
            out.update(noise_bank=self.noise_bank, noise_index=self.noise_index,
                       noise_cdf=self.noise_cdf)
        if self.babble_bank is not None:
            out.update(babble_bank=self.babble_bank, babble_talkers=self.babble_talkers)
        if self.rir_noise is not None:
            out["rir_noise"] = self.rir_noise
        return out

    def _subset_tensors(self, index: Tensor) -> dict[str, Tensor]:
        return {**super()._subset_tensors(index), "noisy_items": self.noisy_items[index],
                "snr": self.snr[index]}

    def _subset_host(self, out: Corpus, idx: list[int]) -> None:
        assert isinstance(out, MultiSourceCorpus)
        out.meta = [self.meta[i] for i in idx]
        out.utt_source = [self.utt_source[i] for i in idx]
        out._refresh(babble=True)

    def noise_subset(self, indices: Sequence[int]) -> MultiSourceCorpus:
        """A corpus that mixes only with noise items ``indices`` (into ``noise_names``); each
        noise source keeps its weight, spread over its remaining items."""
        idx = sorted({int(i) for i in indices})
        if self.noise_bank is None or not idx or idx[0] < 0 or idx[-1] >= len(self.noise_names):
            raise CorpusError(f"a noise subset needs indices in 0..{len(self.noise_names) - 1}, "
                              f"got {list(indices)}")
        out = copy.copy(self)
        out._allowed = idx
        out._refresh()
        return out

    def with_randomization(self, randomization: Randomization) -> MultiSourceCorpus:
        """The same corpus drawn with other knobs (banks shared)."""
        out = copy.copy(self)
        out.randomization = randomization.validate()
        out._refresh()
        return out

    @classmethod
    def from_corpus(cls, corpus: Corpus, randomization: Randomization | None = None
                    ) -> MultiSourceCorpus:
        """A plain corpus (mixing, synthetic or paired) as a one-source MultiSourceCorpus
        sharing its banks; with ``Randomization()`` it draws the same segments."""
        if isinstance(corpus, MultiSourceCorpus):
            return corpus.with_randomization(randomization or corpus.randomization)
        common = dict(utt_source=[0] * len(corpus), speech_sources=[corpus.source],
                      speech_weights=[1.0], randomization=randomization, source=corpus.source,
                      skipped=corpus.skipped, seed=getattr(corpus, "seed", 0))
        if isinstance(corpus, MixingCorpus):
            k = len(corpus.noise_names)
            return cls(corpus.bank, corpus.items, torch.full_like(corpus.items, -1),
                       corpus.names, corpus.sample_rate, noise_bank=corpus.noise_bank,
                       noise_names=corpus.noise_names, noise_source=[0] * k,
                       noise_sources=[corpus.source], noise_weights=[1.0],
                       noise_index=corpus.noise_index.tolist(), snr_range=corpus.snr_range,
                       **common)
        if isinstance(corpus, PairedCorpus):
            return cls(corpus.bank, corpus.items, corpus.noisy_items, corpus.names,
                       corpus.sample_rate, snr=corpus.snr, meta=corpus.meta, **common)
        raise CorpusError(f"cannot randomize a {type(corpus).__name__}")

    # -- drawing -----------------------------------------------------------------------------
    def draw(self, key: Tensor, num: int, segment_samples: int,
             min_samples: int | None = None) -> Segments:
        """``num`` randomized segments (see the module docstring); utterances drawn by
        source weight, length and crop as :meth:`Corpus.draw`."""
        return self.draw_with_info(key, num, segment_samples, min_samples)[0]

    def draw_with_info(self, key: Tensor, num: int, segment_samples: int,
                       min_samples: int | None = None) -> tuple[Segments, DrawInfo]:
        """:meth:`draw` and the parameters applied to each row."""
        num, seg, lo = _check_sizes(num, segment_samples, min_samples)
        key = _check_key(key, self.device)
        bits = _random_bits(key, num)
        u = _weighted(bits[:, 0], self.speech_cdf, self.speech_total)
        ulen = self.bank.lengths[self.items[u]]
        lengths = torch.minimum(lo + torch.remainder(bits[:, 1], seg - lo + 1), ulen)
        start = torch.remainder(bits[:, 2], ulen - lengths + 1)
        return self._compose(key, bits, u, start, lengths, seg)

    def utterance_segments(self, index: int) -> Segments:
        """Utterance ``index`` whole, randomized from ``fold_in(make_key(seed), item)`` (the
        same in a corpus and in its split parts)."""
        if not 0 <= int(index) < len(self):
            raise IndexError(f"utterance index {index} out of range for {len(self)} utterances")
        u = torch.tensor([int(index)], dtype=torch.long, device=self.device)
        item = int(self.items[int(index)])
        n = int(self.bank.lengths[item])
        lengths = torch.tensor([n], dtype=torch.long, device=self.device)
        key = rng.fold_in(rng.make_key(self.seed, self.device), item)
        return self._compose(key, _random_bits(key, 1), u, torch.zeros_like(lengths), lengths,
                             n)[0]

    def utterance_meta(self, index: int) -> dict[str, object]:
        seg = self.utterance_segments(index)
        k = int(seg.noise[0])
        noise = ("babble" if k == BABBLE else self.noise_names[k] if k >= 0
                 else self.meta[index].get("noise_source", "recorded"))
        out = dict(self.meta[index])
        out.update(utt_id=self.names[index], snr_db=float(seg.snr_db[0]),
                   clean_source=self.names[index], noise_source=noise,
                   source=self.speech_sources[self.utt_source[index]],
                   duration_sec=int(seg.lengths[0]) / self.sample_rate)
        return out

    def _compose(self, key: Tensor, bits: Tensor, u: Tensor, start: Tensor, lengths: Tensor,
                 width: int) -> tuple[Segments, DrawInfo]:
        r, sr, b = self.randomization, self.sample_rate, u.shape[0]
        dev = u.device
        beyond = torch.arange(width, device=dev) >= lengths[:, None]
        item = self.items[u]
        clean = self.bank.gather(item, start, lengths, width, beyond)
        p = rz.draw_parameters(rng.uniform(rng.fold_in(key, _STREAM_UNIFORM),
                                           (b, rz.NUM_UNIFORMS)), r)
        paired = (self.noisy_items[u] >= 0 if self.has_paired
                  else torch.zeros(b, dtype=torch.bool, device=dev))
        p = replace(p, reverb=p.reverb & ~paired, babble=p.babble & ~paired,
                    count=torch.where(paired, 1, p.count),
                    noise_tilt=torch.where(paired, 0.0, p.noise_tilt),
                    gains_db=torch.where(paired[:, None] & (torch.arange(
                        rz.MAX_NOISES, device=dev) > 0), -math.inf, p.gains_db))
        ints = (rng.randint(rng.fold_in(key, _STREAM_INT), (b, rz.NUM_INTEGERS), 1 << 62)
                if r.max_noises > 1 or r.babble_prob > 0 or r.reverb_prob > 0 else None)
        slots = torch.full((b, rz.MAX_NOISES), -1, dtype=torch.long, device=dev)
        talkers = torch.full((b, rz.MAX_TALKERS), -1, dtype=torch.long, device=dev)
        noise_ref = None
        if self.has_mixing:
            noise, noise_ref, slots, talkers = self._noise(bits, ints, u, lengths, width, beyond,
                                                           p)
        else:
            noise = torch.zeros_like(clean)
        if self.has_paired:
            recorded = self.bank.gather(self.noisy_items[u].clamp_min(0), start, lengths, width,
                                        beyond)
            noise = torch.where(paired[:, None], recorded - clean, noise)
        clean_ref = self.bank.power[item]
        target = clean
        if r.uses_fft:
            rir, uniforms = filters.rir_length(r, sr), None
            if rir > 0:
                assert ints is not None and self.rir_noise is not None
                span = self.rir_noise.shape[0] - rir + 1
                offset = torch.remainder(ints[:, rz.NUM_INTEGERS - 1], span)
                uniforms = self.rir_noise.as_strided((span, rir), (1, 1))[offset]
            target, noise = filters.filter_rows(clean, noise, beyond, p, r, sr, uniforms)
        snr = self.snr_range[0] + (self.snr_range[1] - self.snr_range[0]) * (
            (bits[:, 5] >> 38).to(torch.float32) * (1.0 / (1 << 24)))
        gain = snr_gain(target, noise, snr, lengths, clean_ref, noise_ref)
        noisy = torch.addcmul(target, noise, torch.where(paired, 1.0, gain)[:, None])
        if self.has_paired and not r.uses_fft:
            noisy = torch.where(paired[:, None], recorded, noisy)
        limited = torch.zeros_like(paired)
        if r.level_range is not None:
            rms = torch.linalg.vector_norm(noisy, dim=1) / lengths.clamp_min(1).sqrt()
            want = torch.pow(10.0, p.level_db / 20.0) / rms.clamp_min(1e-8)
            cap = 1.0 / torch.linalg.vector_norm(noisy, ord=math.inf, dim=1).clamp_min(1e-8)
            limited = want > cap
            scale = torch.minimum(want, cap)[:, None]
            target, noisy = target * scale, noisy.mul_(scale)
        main = torch.where(paired, PAIRED, slots[:, 0])
        seg = Segments(target, noisy, lengths, torch.where(paired, self.snr[u], snr), u, main)
        return seg, DrawInfo(p, self.utt_source_t[u], paired, torch.where(
            paired[:, None], -1, slots), talkers, limited)

    def _noise(self, bits: Tensor, ints: Tensor | None, u: Tensor, lengths: Tensor,
               width: int, beyond: Tensor, p: RowParams
               ) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
        """Noise mixture of the mixing rows: (noise [B, T], its floor reference or None, slot
        items [B, MAX_NOISES], babble talkers [B, MAX_TALKERS])."""
        r, bank = self.randomization, self.noise_bank
        b, dev = u.shape[0], u.device
        slots = torch.full((b, rz.MAX_NOISES), -1, dtype=torch.long, device=dev)
        talkers = torch.full((b, rz.MAX_TALKERS), -1, dtype=torch.long, device=dev)
        if bank is not None:
            k = self.noise_index[_weighted(bits[:, 3], self.noise_cdf, self.noise_total)]
            main = bank.gather(k, torch.remainder(bits[:, 4], bank.lengths[k]), lengths, width,
                               beyond)
            ref = bank.power[k]
        if r.babble_prob > 0:
            assert ints is not None and self.babble_bank is not None
            col, crowd = 2 * (rz.MAX_NOISES - 1), self.babble_bank
            clip = torch.remainder(ints[:, col], len(crowd))
            babble = crowd.gather(clip, torch.remainder(ints[:, col + 1], crowd.lengths[clip]),
                                  lengths, width, beyond)
            use = p.babble if bank is not None else torch.ones_like(p.babble)
            talkers = torch.where(use[:, None], self.babble_talkers[clip], -1)
            if bank is None:
                main, ref, k = babble, crowd.power[clip], torch.full_like(u, BABBLE)
            else:
                main = torch.where(use[:, None], babble, main)
                ref = torch.where(use, crowd.power[clip], ref)
                k = torch.where(use, BABBLE, k)
        slots[:, 0] = k
        if r.max_noises == 1:
            return main, ref, slots, talkers
        assert ints is not None and bank is not None
        n = lengths.clamp_min(1).to(main.dtype)

        def unit(x: Tensor, x_ref: Tensor) -> Tensor:  # mix_at_snr's floors
            power = torch.linalg.vector_norm(x, dim=-1) ** 2 / n + 1e-6 * x_ref + 1e-20
            return torch.rsqrt(power)

        total = main * unit(main, ref)[:, None]
        for s in range(1, r.max_noises):
            ks = self.noise_index[_weighted(ints[:, 2 * s - 2], self.noise_cdf,
                                            self.noise_total)]
            crop = bank.gather(ks, torch.remainder(ints[:, 2 * s - 1], bank.lengths[ks]),
                               lengths, width, beyond)
            weight = torch.pow(10.0, p.gains_db[:, s] / 20.0)  # 0 beyond the row's count
            total = torch.addcmul(total, crop, (weight * unit(crop, bank.power[ks]))[:, None])
            slots[:, s] = torch.where(s < p.count, ks, -1)
        return total, None, slots, talkers
