"""Corpora from audio files; :func:`hear_vec.data.loading.load_corpus`, the one entry point
for every source, picks among them.

Sources (``data=`` of ``load_corpus``):

- ``"synthetic"`` (default): :class:`~hear_vec.data.synthetic.SyntheticCorpus`, no files.
- a ``meta.csv`` file, or a folder holding one: the seed's format. Required columns
  ``utt_id, clean_path, noisy_path``; paths are relative to ``<csv dir>/clean`` and
  ``<csv dir>/noisy`` (a path that is not found there is tried relative to ``<csv dir>``;
  absolute paths are used as they are). Optional ``snr_db`` (kept per utterance, NaN where
  absent), ``clean_source``, ``noise_source``, ``duration_sec`` and any other columns (kept
  in ``corpus.meta``). A folder holding both meta.csv and clean/ + noisy/ is read through its
  meta.csv.
- a folder holding ``clean/`` and ``noisy/`` with matching relative names (VoiceBank-DEMAND
  layout; recursive; .wav/.flac; matched by relative path without extension).
- ``clean_dir=`` + ``noise_dir=``: clean speech mixed with noise on the fly
  (:class:`~hear_vec.data.bank.MixingCorpus`) at SNRs drawn from ``snr_range``.
- several sources (lists of ``LOCATION[:WEIGHT]`` for ``data`` / ``noise_dir``), synthetic
  speech with a noise folder, or a ``randomization``: a
  :class:`~hear_vec.data.multi.MultiSourceCorpus` (see :mod:`hear_vec.data.sources`).

File policy. Every file is read with :func:`hear_vec.audio_io.read_audio_mono`: block by
block, multi-channel audio averaged to mono, audio at another rate resampled to
``sample_rate`` (:mod:`hear_vec.resample`: torchaudio's filter, bounded memory for long files
and odd rates). Any subtype libsndfile reads (8-bit unsigned .. 32-bit, float, double) and any
channel count load; a truncated WAV loads up to where its data ends. Unreadable, empty,
truncated-FLAC, non-finite files or files at a rate outside 1 kHz .. 1 MHz (and pairs with a
missing side) are skipped and reported in ONE warning line on the ``hear_vec.data`` logger
(shown on stderr when logging is not configured; the full list is also kept in
``corpus.skipped`` as ``(path, reason)``); a corpus with nothing usable raises
:class:`CorpusError`. A clean/noisy pair is resampled side by side (so pairs recorded at
different rates still align); if the two lengths then differ by at most
``max(2 % of the longer, 50 ms)`` both are cropped to the shorter, otherwise the pair is
skipped ("lengths differ").
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from hear_vec.audio_io import AudioReadError, list_audio_files, read_audio_mono
from hear_vec.data.bank import AudioBank, CorpusError, MixingCorpus, PairedCorpus

__all__ = ["load_meta_csv", "load_pair_folder", "load_mixing_folders",
           "read_mono", "REQUIRED_META_COLUMNS", "OPTIONAL_META_COLUMNS"]

logger = logging.getLogger("hear_vec.data")

REQUIRED_META_COLUMNS = ("utt_id", "clean_path", "noisy_path")
OPTIONAL_META_COLUMNS = ("snr_db", "clean_source", "noise_source", "duration_sec")
_LAYOUTS = ("expected 'synthetic', a meta.csv (columns utt_id, clean_path, noisy_path), a folder "
            "holding meta.csv or clean/ + noisy/ with matching file names, or clean_dir + "
            "noise_dir to mix on the fly")
_MAX_NAMED = 20


def read_mono(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """A file as float32 mono at ``sample_rate`` (channels averaged, resampled if needed),
    read block by block so that memory stays near the size of the result
    (:func:`hear_vec.audio_io.read_audio_mono`). Raises
    :class:`~hear_vec.audio_io.AudioReadError` with the reason a file is skipped."""
    return read_audio_mono(path, sample_rate)


def _display(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _report_skips(skipped: list[tuple[str, str]], total: int, what: str, root: Path) -> None:
    """One warning line naming the skipped files (the first ``_MAX_NAMED``)."""
    if not skipped:
        return
    named = "; ".join(f"{p} ({r})" for p, r in skipped[:_MAX_NAMED])
    more = len(skipped) - _MAX_NAMED
    if more > 0:
        named += f"; ... and {more} more (see corpus.skipped)"
    logger.warning("hear_vec.data: skipped %d of %d %s under %s: %s", len(skipped), total, what,
                   root, named)


def _nothing_usable(skipped: list[tuple[str, str]], total: int, what: str,
                    root: Path) -> CorpusError:
    first = f"; first: {skipped[0][0]} ({skipped[0][1]})" if skipped else ""
    return CorpusError(f"no usable {what} under {root}: all {total} skipped{first}")


def _read_many(paths: Iterable[Path], root: Path, sample_rate: int
               ) -> tuple[list[np.ndarray], list[str], list[tuple[str, str]]]:
    arrays, names, skipped = [], [], []
    for p in paths:
        try:
            arrays.append(read_mono(p, sample_rate))
            names.append(_display(p, root))
        except AudioReadError as err:
            skipped.append((_display(p, root), err.reason))
    return arrays, names, skipped


def _pair_tolerance(n: int, sample_rate: int) -> int:
    return max(int(0.02 * n), int(0.05 * sample_rate))


def _build_paired(rows: list[dict], root: Path, sample_rate: int, device: torch.device | str,
                  source: str, skipped: list[tuple[str, str]], total: int) -> PairedCorpus:
    """rows: dicts with name, clean (Path), noisy (Path), snr (float), meta (dict)."""
    clean_arrays, noisy_arrays, names, snrs, metas = [], [], [], [], []
    for row in rows:
        sides = []
        for side in ("clean", "noisy"):
            try:
                sides.append(read_mono(row[side], sample_rate))
            except AudioReadError as err:
                skipped.append((_display(row[side], root), err.reason))
        if len(sides) != 2:
            continue
        c, n = sides
        if c.size != n.size:
            if abs(c.size - n.size) > _pair_tolerance(max(c.size, n.size), sample_rate):
                skipped.append((_display(row["noisy"], root),
                                f"lengths differ from its clean file ({n.size} vs {c.size} "
                                f"samples at {sample_rate} Hz)"))
                continue
            m = min(c.size, n.size)
            c, n = c[:m], n[:m]
        clean_arrays.append(c)
        noisy_arrays.append(n)
        names.append(row["name"])
        snrs.append(row["snr"])
        metas.append(row["meta"])
    _report_skips(skipped, total, "files", root)
    if not names:
        raise _nothing_usable(skipped, total, "clean/noisy pairs", root)
    count = len(names)
    bank = AudioBank.from_arrays(clean_arrays + noisy_arrays, device)
    items = torch.arange(count, dtype=torch.long, device=bank.offsets.device)
    snr = torch.tensor(snrs, dtype=torch.float32, device=bank.offsets.device)
    return PairedCorpus(bank, items, items + count, names, sample_rate, snr, metas, source,
                        skipped)


def _resolve(root: Path, side: str, rel: str) -> Path:
    p = Path(rel)
    if p.is_absolute():
        return p
    primary = root / side / p
    if primary.exists():
        return primary
    fallback = root / p
    return fallback if fallback.exists() else primary


def load_meta_csv(path: str | os.PathLike, sample_rate: int = 16000,
                  device: torch.device | str = "cpu") -> PairedCorpus:
    """A :class:`PairedCorpus` from a seed-format meta.csv (see the module docstring)."""
    import pandas as pd

    csv = Path(path)
    root = csv.parent
    try:
        table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as err:
        raise CorpusError(f"{csv} is empty; expected a header with columns "
                          f"{', '.join(REQUIRED_META_COLUMNS)}") from err
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as err:
        raise CorpusError(f"{csv} is not a readable CSV ({' '.join(str(err).split())[:160]})"
                          ) from err
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in REQUIRED_META_COLUMNS if c not in table.columns]
    if missing:
        raise CorpusError(f"{csv} lacks required column(s) {', '.join(missing)}; it has "
                          f"{', '.join(table.columns) or 'none'} (required: "
                          f"{', '.join(REQUIRED_META_COLUMNS)}; optional: "
                          f"{', '.join(OPTIONAL_META_COLUMNS)})")
    if len(table) == 0:
        raise CorpusError(f"{csv} has a header but no rows")
    rows, skipped = [], []
    extra = [c for c in table.columns if c not in ("utt_id", "clean_path", "noisy_path")]
    for rec in table.to_dict("records"):
        name = str(rec["utt_id"]).strip()
        clean_rel, noisy_rel = str(rec["clean_path"]).strip(), str(rec["noisy_path"]).strip()
        if not clean_rel or not noisy_rel:
            skipped.append((name or "?", "empty clean_path or noisy_path"))
            continue
        snr = math.nan
        if "snr_db" in rec:
            try:
                snr = float(rec["snr_db"])
            except ValueError:
                snr = math.nan
        rows.append({"name": name, "clean": _resolve(root, "clean", clean_rel),
                     "noisy": _resolve(root, "noisy", noisy_rel), "snr": snr,
                     "meta": {c: rec[c] for c in extra}})
    return _build_paired(rows, root, sample_rate, device, f"meta.csv:{csv}", skipped,
                         2 * len(table))


def load_pair_folder(root: str | os.PathLike, sample_rate: int = 16000,
                     device: torch.device | str = "cpu") -> PairedCorpus:
    """A :class:`PairedCorpus` from ``root/clean`` and ``root/noisy`` (matching names)."""
    base = Path(root)
    for side in ("clean", "noisy"):
        if not (base / side).is_dir():
            raise CorpusError(f"{base} has no {side}/ folder; {_LAYOUTS}")
    sides: dict[str, dict[str, Path]] = {}
    skipped: list[tuple[str, str]] = []
    for side in ("clean", "noisy"):
        table: dict[str, Path] = {}
        for rel in list_audio_files(base / side):
            key = rel.with_suffix("").as_posix()
            if key in table:
                skipped.append((f"{side}/{rel.as_posix()}",
                                "same name as another file with a different extension"))
                continue
            table[key] = base / side / rel
        sides[side] = table
    clean, noisy = sides["clean"], sides["noisy"]
    total = len(clean) + len(noisy) + len(skipped)
    if not clean:
        raise CorpusError(f"no .wav/.flac files under {base / 'clean'}")
    rows = []
    for key, path in clean.items():
        if key not in noisy:
            skipped.append((_display(path, base), "no matching file in noisy/"))
            continue
        rows.append({"name": key, "clean": path, "noisy": noisy[key], "snr": math.nan,
                     "meta": {}})
    for key, path in noisy.items():
        if key not in clean:
            skipped.append((_display(path, base), "no matching file in clean/"))
    return _build_paired(rows, base, sample_rate, device, f"pairs:{base}", skipped, total)


def load_mixing_folders(clean_dir: str | os.PathLike, noise_dir: str | os.PathLike,
                        snr_range: tuple[float, float] = (-5.0, 15.0), sample_rate: int = 16000,
                        device: torch.device | str = "cpu", seed: int = 0) -> MixingCorpus:
    """A :class:`MixingCorpus` of every audio file under ``clean_dir`` mixed on the fly with
    the files under ``noise_dir``."""
    banks, names, all_skipped = [], [], []
    for label, folder, wrap in (("clean_dir", clean_dir, False), ("noise_dir", noise_dir, True)):
        base = Path(folder)
        if not base.is_dir():
            raise CorpusError(f"{label} {base} is not a folder")
        files = list_audio_files(base)
        if not files:
            raise CorpusError(f"no .wav/.flac files under {label} {base}")
        arrays, found, skipped = _read_many((base / f for f in files), base, sample_rate)
        _report_skips(skipped, len(files), "files", base)
        if not arrays:
            raise _nothing_usable(skipped, len(files), "audio files", base)
        banks.append(AudioBank.from_arrays(arrays, device, wrap=wrap))
        names.append(found)
        all_skipped += [(str(base / p), r) for p, r in skipped]
    return MixingCorpus(banks[0], banks[1], names[0], names[1], sample_rate, snr_range, seed,
                        source=f"mix:{clean_dir}+{noise_dir}", skipped=all_skipped)
