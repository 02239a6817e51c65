"""Clips for a held-out evaluation: a split of clean speech and noise folders by whole
speakers and noise recordings, the held-out grid, and random training clips.

- :func:`read_folder`: every .wav/.flac under a folder, float32 mono at 16 kHz
  (``hear_vec.data.read_mono``), keyed by its path relative to the folder (sorted).
- :func:`split_folders`: held-out speakers (``hear_vec.evaluation.choose_holdout`` on the
  utterance names, groups from ``speaker_pattern``, stream 0) and held-out noise recordings
  (every recording its own group, stream ``NOISE_STREAM``).
- :func:`heldout_grid`: every (held-out utterance, held-out noise, SNR) once: the whole
  utterance mixed with a noise excerpt starting at a random offset (seeded, uniform over the
  recording, wrapping around its end) at exactly that SNR (``hear_vec.data.mix_at_snr``, the
  mixing the training corpus uses, with whole-recording power floors).
- :func:`training_clips`: ``num`` random clips from the training side only, drawn like the
  training corpus draws segments: utterance, length uniform in [min, max] seconds (capped by
  the utterance), crop, noise, offset, SNR uniform in ``snr_range``.

Clips come as :class:`ClipSet`: padded [B, T] float32 tensors with ``lengths`` and one
host-side record per clip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hear_vec.audio_io import AudioReadError, list_audio_files
from hear_vec.data import mix_at_snr, read_mono
from hear_vec.evaluation import NOISE_STREAM, HoldoutSplit, choose_holdout

__all__ = ["ClipSet", "read_folder", "split_folders", "heldout_grid", "training_clips"]

SAMPLE_RATE = 16000


@dataclass
class ClipSet:
    """clean, noisy [B, T] float32 (zero beyond ``lengths``), lengths [B]; ``records``: one
    dict per clip (id, utterance, speaker, noise, snr_db, noise_offset, start, samples)."""

    clean: Tensor
    noisy: Tensor
    lengths: Tensor
    records: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def column(self, key: str) -> list[Any]:
        return [r[key] for r in self.records]

    def to(self, device: torch.device | str) -> ClipSet:
        return ClipSet(self.clean.to(device), self.noisy.to(device), self.lengths.to(device),
                       self.records)


def read_folder(folder: str | Path, what: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """({relative name: float32 mono 16 kHz}, [skipped 'name (reason)']). Raises ValueError
    when the folder is missing or holds no readable audio."""
    base = Path(folder)
    if not base.is_dir():
        raise ValueError(f"{what} {base} is not a folder")
    audio, skipped = {}, []
    for rel in list_audio_files(base):
        name = rel.as_posix()
        try:
            x = read_mono(base / rel, SAMPLE_RATE)
        except AudioReadError as err:
            skipped.append(f"{name} ({err.reason})")
            continue
        if x.size == 0 or not np.isfinite(x).all() or not np.any(x):
            skipped.append(f"{name} (empty, silent or non-finite)")
            continue
        audio[name] = x
    if not audio:
        raise ValueError(f"no readable .wav/.flac files under {what} {base}")
    return audio, skipped


def split_folders(speech: Sequence[str], noises: Sequence[str], *,
                  speaker_pattern: str | None, holdout_speakers: Sequence[str] | None,
                  holdout_speaker_fraction: float | None, holdout_noises: Sequence[str] | None,
                  holdout_noise_fraction: float | None, seed: int
                  ) -> tuple[HoldoutSplit, HoldoutSplit]:
    """(speaker split of the utterance names, noise split of the noise names)."""
    speakers = choose_holdout(speech, pattern=speaker_pattern, holdout=holdout_speakers,
                              fraction=holdout_speaker_fraction, seed=seed, stream=0,
                              what="speaker")
    noise = choose_holdout(noises, pattern=None, holdout=holdout_noises,
                           fraction=holdout_noise_fraction, seed=seed, stream=NOISE_STREAM,
                           what="noise")
    return speakers, noise


def _pack(cleans: list[np.ndarray], noises: list[np.ndarray], snrs: list[float],
          noise_power: list[float], records: list[dict[str, Any]]) -> ClipSet:
    lengths = torch.tensor([c.size for c in cleans], dtype=torch.long)
    width = int(lengths.max())
    clean = torch.zeros(len(cleans), width)
    noise = torch.zeros(len(cleans), width)
    for i, (c, n) in enumerate(zip(cleans, noises)):
        clean[i, :c.size] = torch.from_numpy(c)
        noise[i, :n.size] = torch.from_numpy(n)
    clean_power = (clean.square().sum(-1) / lengths).to(torch.float32)
    noisy = mix_at_snr(clean, noise, torch.tensor(snrs, dtype=torch.float32), lengths,
                       clean_power, torch.tensor(noise_power, dtype=torch.float32))
    return ClipSet(clean, noisy, lengths, records)


def _excerpt(noise: np.ndarray, offset: int, length: int) -> np.ndarray:
    return np.take(noise, (offset + np.arange(length)) % noise.size).astype(np.float32)


def heldout_grid(utterances: Mapping[str, np.ndarray], noises: Mapping[str, np.ndarray],
                 speakers: Mapping[str, str], snrs: Sequence[float], seed: int) -> ClipSet:
    """Every (utterance, noise, SNR) once, in sorted utterance, noise, SNR order; noise
    offsets from ``numpy.random.default_rng(seed)`` in that order."""
    if not utterances or not noises or not snrs:
        raise ValueError("the held-out grid needs utterances, noises and SNRs")
    rng = np.random.default_rng(seed)
    cleans, excerpts, snr_list, powers, records = [], [], [], [], []
    for utt in sorted(utterances):
        clean = utterances[utt]
        for noise_name in sorted(noises):
            noise = noises[noise_name]
            for snr in snrs:
                offset = int(rng.integers(0, noise.size))
                cleans.append(clean)
                excerpts.append(_excerpt(noise, offset, clean.size))
                snr_list.append(float(snr))
                powers.append(float(np.mean(noise.astype(np.float64) ** 2)))
                records.append({"id": f"{Path(utt).stem}|{Path(noise_name).stem}|{snr:g}dB",
                                "utterance": utt, "speaker": speakers[utt],
                                "noise": noise_name, "snr_db": float(snr),
                                "noise_offset": offset, "start": 0, "samples": int(clean.size)})
    return _pack(cleans, excerpts, snr_list, powers, records)


def training_clips(utterances: Mapping[str, np.ndarray], noises: Mapping[str, np.ndarray],
                   num: int, max_seconds: float, min_seconds: float,
                   snr_range: tuple[float, float], seed: int) -> ClipSet:
    """``num`` random clips of the given (training) utterances and noises (module doc)."""
    if num < 1 or not utterances or not noises:
        raise ValueError("training clips need num >= 1, utterances and noises")
    rng = np.random.default_rng(seed)
    utt_names, noise_names = sorted(utterances), sorted(noises)
    hi = max(1, int(round(max_seconds * SAMPLE_RATE)))
    lo = min(hi, max(1, int(round(min_seconds * SAMPLE_RATE))))
    cleans, excerpts, snr_list, powers, records = [], [], [], [], []
    for i in range(int(num)):
        utt = utt_names[int(rng.integers(0, len(utt_names)))]
        full = utterances[utt]
        length = min(int(rng.integers(lo, hi + 1)), full.size)
        start = int(rng.integers(0, full.size - length + 1))
        noise_name = noise_names[int(rng.integers(0, len(noise_names)))]
        noise = noises[noise_name]
        offset = int(rng.integers(0, noise.size))
        snr = float(rng.uniform(*snr_range))
        cleans.append(full[start:start + length])
        excerpts.append(_excerpt(noise, offset, length))
        snr_list.append(snr)
        powers.append(float(np.mean(noise.astype(np.float64) ** 2)))
        records.append({"id": f"train{i}", "utterance": utt, "noise": noise_name,
                        "snr_db": snr, "noise_offset": offset, "start": start,
                        "samples": length})
    return _pack(cleans, excerpts, snr_list, powers, records)
