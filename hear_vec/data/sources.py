"""Several speech and noise sources as one corpus: source specs ``LOCATION[:WEIGHT]`` and
:func:`load_sources`, which packs them into a :class:`~hear_vec.data.multi.MultiSourceCorpus`.

Speech sources (``load_corpus(data=[...])``, ``train.py --data ...``):

- ``synthetic``: the built-in generator's utterances (mixed with noise on the fly);
- a meta.csv, a folder holding one, or a folder with ``clean/`` + ``noisy/``: recorded pairs
  (their rows keep the recorded noise, see :mod:`hear_vec.data.multi`);
- any other folder: clean speech (every .wav/.flac under it), mixed with noise on the fly.

Noise sources (``noise_dir=[...]``, ``--noise-dir ...``):

- ``synthetic``: the synthetic families (:data:`~hear_vec.data.synthetic.NOISE_FAMILIES`,
  4 clips of 6 s each, from the run's seed);
- a folder: every .wav/.flac under it.

``WEIGHT`` (default 1, finite, >= 0) is the share of draws of that source among its kind:
source s gets ``W_s / sum(W)`` of the rows, spread evenly over its items (so a big folder does
not drown a small one; give weights proportional to sizes for per-item uniformity). A trailing
``:NUMBER`` is always read as a weight. When no noise source is given and a speech source is
``synthetic``, the noise is ``synthetic``; clean folders without any noise source are an error.
Files are read with the loaders of :mod:`hear_vec.data.files` (same resampling, skip policy
and one warning line per folder).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from hear_vec.audio_io import list_audio_files
from hear_vec.data.bank import AudioBank, Corpus, CorpusError
from hear_vec.data.files import (
    _nothing_usable,
    _read_many,
    _report_skips,
    load_meta_csv,
    load_pair_folder,
)
from hear_vec.data.multi import MultiSourceCorpus
from hear_vec.data.randomize import Randomization
from hear_vec.data.synthetic import SyntheticCorpus, synthetic_noise_bank

__all__ = ["SourceSpec", "parse_source", "parse_sources", "load_sources", "SYNTHETIC"]

SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class SourceSpec:
    """One source: ``location`` ("synthetic" or a path) and its draw ``weight``."""

    location: str
    weight: float = 1.0

    def __str__(self) -> str:
        return self.location if self.weight == 1.0 else f"{self.location}:{self.weight:g}"


def parse_source(text: str | os.PathLike | SourceSpec) -> SourceSpec:
    """``"LOCATION[:WEIGHT]"`` -> :class:`SourceSpec` (a trailing ``:NUMBER`` is the weight)."""
    if isinstance(text, SourceSpec):
        return text
    s = os.fspath(text).strip()
    location, sep, tail = s.rpartition(":")
    if sep and location:
        try:
            weight = float(tail)
        except ValueError:
            return SourceSpec(s)
        if not (math.isfinite(weight) and weight >= 0):
            raise CorpusError(f"source {s!r}: the weight after ':' must be a finite number >= 0")
        return SourceSpec(location, weight)
    if not s:
        raise CorpusError("a source needs a location ('synthetic' or a path)")
    return SourceSpec(s)


def parse_sources(values: object) -> list[SourceSpec]:
    """None, one spec or a sequence of specs -> a list of :class:`SourceSpec`."""
    if values is None:
        return []
    if isinstance(values, (str, os.PathLike, SourceSpec)):
        return [parse_source(values)]
    if isinstance(values, Sequence):
        return [parse_source(v) for v in values]
    raise CorpusError(f"sources must be strings or paths, got {type(values).__name__}")


@dataclass
class _Part:
    """Speech of one source: int16 items of clean (and noisy) audio, names, per-utt data."""

    label: str
    clean: list[torch.Tensor]
    noisy: list[torch.Tensor] | None
    scales: list[float]      # clean items, then noisy items
    power: list[float]
    names: list[str]
    snr: list[float]
    meta: list[dict[str, object]]
    skipped: list[tuple[str, str]]


def _bank_part(label: str, bank: AudioBank, items: list[int], noisy: list[int] | None,
               names: list[str], snr: list[float] | None = None,
               meta: list[dict[str, object]] | None = None,
               skipped: list[tuple[str, str]] | None = None) -> _Part:
    views, scales, power = bank.items(), bank.scales.tolist(), bank.power.tolist()
    order = items + (noisy or [])
    return _Part(label, [views[i] for i in items],
                 [views[i] for i in noisy] if noisy is not None else None,
                 [scales[i] for i in order], [power[i] for i in order],
                 list(names), list(snr) if snr is not None else [math.nan] * len(items),
                 list(meta) if meta is not None else [{} for _ in items], list(skipped or []))


def _read_folder(folder: Path, sample_rate: int, device: torch.device | str, wrap: bool,
                 what: str) -> tuple[AudioBank, list[str], list[tuple[str, str]]]:
    files = list_audio_files(folder)
    if not files:
        raise CorpusError(f"no .wav/.flac files under {what} {folder}")
    arrays, names, skipped = _read_many((folder / f for f in files), folder, sample_rate)
    _report_skips(skipped, len(files), "files", folder)
    if not arrays:
        raise _nothing_usable(skipped, len(files), "audio files", folder)
    return (AudioBank.from_arrays(arrays, device, wrap=wrap), names,
            [(str(folder / p), r) for p, r in skipped])


def _speech_part(spec: SourceSpec, synth: SyntheticCorpus | None, sample_rate: int,
                 device: torch.device | str) -> _Part:
    if spec.location == SYNTHETIC:
        assert synth is not None
        return _bank_part(str(spec), synth.bank, synth.items.tolist(), None, synth.names)
    path = Path(spec.location)
    corpus: Corpus | None = None
    if not path.exists():
        raise CorpusError(f"speech source {spec.location!r} not found (give 'synthetic', a "
                          "meta.csv, a folder with meta.csv or clean/ + noisy/, or a folder of "
                          "clean speech)")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise CorpusError(f"speech source {spec.location!r} is a file but not a meta.csv")
        corpus = load_meta_csv(path, sample_rate, device)
    elif (path / "meta.csv").is_file():
        corpus = load_meta_csv(path / "meta.csv", sample_rate, device)
    elif (path / "clean").is_dir() and (path / "noisy").is_dir():
        corpus = load_pair_folder(path, sample_rate, device)
    elif (path / "clean").is_dir():
        raise CorpusError(f"{path} has clean/ but no noisy/ (and no meta.csv); give "
                          f"{path / 'clean'} as a clean speech source")
    if corpus is not None:
        return _bank_part(str(spec), corpus.bank, corpus.items.tolist(),
                          corpus.noisy_items.tolist(), corpus.names, corpus.snr.tolist(),
                          corpus.meta, corpus.skipped)
    bank, names, skipped = _read_folder(path, sample_rate, device, False, "speech source")
    return _bank_part(str(spec), bank, list(range(len(bank))), None, names, skipped=skipped)


def load_sources(speech: object, noise: object = None, *,
                 snr_range: tuple[float, float] = (-5.0, 15.0),
                 randomization: Randomization | None = None, sample_rate: int = 16000,
                 device: torch.device | str = "cpu", seed: int = 0) -> MultiSourceCorpus:
    """Speech and noise sources (specs, see the module docstring) as one
    :class:`MultiSourceCorpus` on ``device``. Raises :class:`CorpusError` (one line)."""
    speech_specs, noise_specs = parse_sources(speech), parse_sources(noise)
    if not speech_specs:
        raise CorpusError("give at least one speech source")
    randomization = (randomization or Randomization()).validate()
    wants_synth = any(s.location == SYNTHETIC for s in speech_specs)
    synth = (SyntheticCorpus(snr_range=snr_range, sample_rate=sample_rate, device=device,
                             seed=seed) if wants_synth else None)
    parts = [_speech_part(s, synth, sample_rate, device) for s in speech_specs]
    clean_only = [p.label for p in parts if p.noisy is None]
    if not noise_specs and wants_synth:
        noise_specs = [SourceSpec(SYNTHETIC)]
    if clean_only and not noise_specs and randomization.babble_prob < 1:
        raise CorpusError(f"speech source {clean_only[0]} is clean speech and needs a noise "
                          "source (noise_dir / --noise-dir FOLDER or synthetic)")
    if noise_specs and not clean_only:
        raise CorpusError("noise sources mix only with clean speech, but every speech source "
                          "is paired (its noise is recorded)")

    clean, noisy_items, scales, power, names, snr, meta, utt_source = [], [], [], [], [], [], [], []
    n_clean = sum(len(p.clean) for p in parts)
    noisy_store: list[torch.Tensor] = []
    noisy_scales: list[float] = []
    noisy_power: list[float] = []
    skipped: list[tuple[str, str]] = []
    for s, part in enumerate(parts):
        count = len(part.clean)
        clean += part.clean
        scales += part.scales[:count]
        power += part.power[:count]
        if part.noisy is not None:
            first = n_clean + len(noisy_store)
            noisy_items += list(range(first, first + count))
            noisy_store += part.noisy
            noisy_scales += part.scales[count:]
            noisy_power += part.power[count:]
        else:
            noisy_items += [-1] * count
        names += part.names
        snr += part.snr
        meta += part.meta
        utt_source += [s] * count
        skipped += part.skipped
    dev = clean[0].device
    bank = AudioBank.pack(clean + noisy_store, torch.tensor(scales + noisy_scales),
                          torch.tensor(power + noisy_power))
    noise_bank, noise_names, noise_source = None, [], []
    if noise_specs and clean_only:
        items, n_scales, n_power = [], [], []
        for s, spec in enumerate(noise_specs):
            if spec.location == SYNTHETIC:
                nb, found = ((synth.noise_bank, synth.noise_names) if synth is not None else
                             synthetic_noise_bank(sample_rate=sample_rate, device=device,
                                                  seed=seed))
            else:
                folder = Path(spec.location)
                if not folder.is_dir():
                    raise CorpusError(f"noise source {spec.location!r} is not a folder (give a "
                                      "folder of noise recordings or 'synthetic')")
                nb, found, bad = _read_folder(folder, sample_rate, device, True, "noise source")
                skipped += bad
            items += nb.items()
            n_scales += nb.scales.tolist()
            n_power += nb.power.tolist()
            noise_names += found
            noise_source += [s] * len(found)
        noise_bank = AudioBank.pack(items, torch.tensor(n_scales),
                                    torch.tensor(n_power), wrap=True)
    label = "+".join(str(s) for s in speech_specs)
    if noise_bank is not None:
        label += " | noise " + "+".join(str(s) for s in noise_specs)
    return MultiSourceCorpus(
        bank, torch.arange(n_clean, device=dev), torch.tensor(noisy_items, device=dev), names,
        sample_rate, utt_source=utt_source, speech_sources=[p.label for p in parts],
        speech_weights=[s.weight for s in speech_specs], noise_bank=noise_bank,
        noise_names=noise_names, noise_source=noise_source,
        noise_sources=[str(s) for s in noise_specs] if noise_bank is not None else [],
        noise_weights=[s.weight for s in noise_specs] if noise_bank is not None else [],
        snr=torch.tensor(snr, dtype=torch.float32), meta=meta, snr_range=snr_range,
        randomization=randomization, seed=seed, source=f"multi:{label}", skipped=skipped)
