""":func:`load_corpus`, the one entry point for every data source: synthetic, meta.csv,
clean/ + noisy/ folders, clean + noise folders mixed on the fly (:mod:`hear_vec.data.files`),
and several sources or domain randomization at once (:mod:`hear_vec.data.sources`). A module
of its own, above both, so that neither imports the other back (``tests/test_layers.py``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from hear_vec.data.bank import Corpus, CorpusError
from hear_vec.data.files import _LAYOUTS, load_meta_csv, load_mixing_folders, load_pair_folder
from hear_vec.data.multi import MultiSourceCorpus
from hear_vec.data.randomize import Randomization
from hear_vec.data.sources import SYNTHETIC, load_sources, parse_sources
from hear_vec.data.synthetic import SyntheticCorpus

__all__ = ["load_corpus"]


def _is_clean_folder(location: str) -> bool:
    """A folder of clean speech (neither a meta.csv corpus nor a clean/ + noisy/ layout)."""
    path = Path(location)
    return path.is_dir() and not (path / "meta.csv").is_file() and not (path / "clean").is_dir()


def load_corpus(data: str | os.PathLike | Corpus | Sequence[str | os.PathLike] | None
                = "synthetic", *,
                clean_dir: str | os.PathLike | None = None,
                noise_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
                snr_range: tuple[float, float] = (-5.0, 15.0), sample_rate: int = 16000,
                device: torch.device | str = "cpu", seed: int = 0,
                randomization: Randomization | None = None) -> Corpus:
    """Any data source as a device-resident :class:`Corpus` (see the module docstring).

    ``data``: ``"synthetic"`` (or None), a meta.csv path, a folder with meta.csv or clean/ +
    noisy/, or a Corpus (moved to ``device``). ``clean_dir`` + ``noise_dir`` select on-the-fly
    mixing instead. ``snr_range`` applies to mixing sources; ``seed`` to the synthetic
    generator and to the fixed mixing of ``utterance_audio``. Raises :class:`CorpusError`.

    Several sources at once (``data`` and/or ``noise_dir`` a list of ``LOCATION[:WEIGHT]``
    specs, synthetic speech with a noise folder, or a non-identity ``randomization``) give a
    :class:`~hear_vec.data.multi.MultiSourceCorpus` (:func:`hear_vec.data.sources.load_sources`);
    one plain source without randomization keeps the corpus classes above.
    """
    plain = randomization is None or randomization.is_identity()
    if isinstance(data, Corpus):
        if clean_dir is not None or noise_dir is not None:
            raise CorpusError("give either a corpus object or clean_dir + noise_dir, not both")
        corpus = data.to(device)
        if randomization is None or (plain and not isinstance(corpus, MultiSourceCorpus)):
            return corpus
        return MultiSourceCorpus.from_corpus(corpus, randomization)
    speech = parse_sources(data) or parse_sources(SYNTHETIC)
    noise = parse_sources(noise_dir)
    if clean_dir is not None:
        if [s.location for s in speech] != [SYNTHETIC]:
            raise CorpusError(f"give either data={str(data)!r} or clean_dir + noise_dir, not both")
        speech = parse_sources(clean_dir)
    location = speech[0].location
    clean_folder = clean_dir is not None or _is_clean_folder(location)
    one_folder = len(noise) == 1 and noise[0].location != SYNTHETIC and clean_folder
    if not (plain and len(speech) == 1 and (not noise or one_folder)):
        return load_sources(speech, noise, snr_range=snr_range, randomization=randomization,
                            sample_rate=sample_rate, device=device, seed=seed)
    if noise or clean_dir is not None:
        if not noise:
            raise CorpusError("clean_dir and noise_dir go together (clean speech mixed with "
                              "noise on the fly); give both")
        return load_mixing_folders(location, noise[0].location, snr_range, sample_rate, device,
                                   seed)
    data = location
    synthetic = data == SYNTHETIC
    if synthetic:
        return SyntheticCorpus(snr_range=snr_range, sample_rate=sample_rate, device=device,
                               seed=seed)
    if not isinstance(data, (str, os.PathLike)):
        raise CorpusError(f"data must be 'synthetic', a path or a Corpus, got "
                          f"{type(data).__name__}")
    path = Path(data)
    if not path.exists():
        raise CorpusError(f"data {str(data)!r} not found; {_LAYOUTS}")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise CorpusError(f"data {str(data)!r} is a file but not a .csv; {_LAYOUTS}")
        return load_meta_csv(path, sample_rate, device)
    if (path / "meta.csv").is_file():
        return load_meta_csv(path / "meta.csv", sample_rate, device)
    has_clean, has_noisy = (path / "clean").is_dir(), (path / "noisy").is_dir()
    if has_clean and has_noisy:
        return load_pair_folder(path, sample_rate, device)
    if has_clean:
        raise CorpusError(f"{path} has clean/ but no noisy/ (and no meta.csv); to mix clean "
                          f"speech with noise on the fly pass clean_dir={str(path / 'clean')!r} "
                          f"and noise_dir=... (train.py --clean-dir/--noise-dir)")
    raise CorpusError(f"{path} holds no meta.csv and no clean/ folder; {_LAYOUTS}")
