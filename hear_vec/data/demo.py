"""Write a small demo corpus in the seed's layout, so a new user sees the file format work.

    python -m hear_vec.data.demo --out train_data [--n 200] [--seed 0] [--snr-range -5 15]
                                 [--source auto|synthetic|espeak] [--overwrite]

Layout written (loads back with ``load_corpus("train_data")``)::

    train_data/clean/utt_0000.wav ...   16-bit PCM, mono, --sample-rate (16 kHz)
    train_data/noisy/utt_0000.wav ...
    train_data/meta.csv                 utt_id, clean_path, noisy_path, snr_db,
                                        clean_source, noise_source, duration_sec

Clean speech comes from the synthetic generator, or from espeak-ng (Harvard sentences,
varied voices, pitch and speed) when ``--source espeak`` or, with ``--source auto`` (the
default), when ``espeak-ng`` is on PATH. Synthetic audio comes from stream 1 of the
generator, so it never repeats the training corpus of the same seed (stream 0). Noise comes
from the synthetic noise families; each utterance is mixed whole at an SNR drawn uniformly
from ``--snr-range``, then clean and noisy are scaled together so the noisy peak stays below
0.95 (the SNR is unchanged). The folder is built beside the destination and renamed into
place, so an interrupted run leaves nothing under the final name; a non-empty destination is
refused unless ``--overwrite``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from hear_vec import rng
from hear_vec.audio_io import AudioReadError, write_audio_atomic
from hear_vec.data.bank import AudioBank, Corpus, CorpusError, MixingCorpus
from hear_vec.data.files import read_mono
from hear_vec.data.synthetic import SyntheticCorpus, synthetic_noise_bank

__all__ = ["write_demo_corpus", "espeak_utterances", "HARVARD_SENTENCES"]

#: Harvard sentences (IEEE 1969 recommended practice; public domain)
HARVARD_SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.",
    "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.",
    "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.",
    "Read verse out loud for pleasure.",
)
_VOICES = ("en-us", "en-us+f3", "en-us+m3", "en+f2", "en+m7", "en-gb+f4")
_PEAK = 0.95
_DEMO_STREAM = 1  # synthetic audio independent of the training corpus of the same seed


def espeak_utterances(n: int, sample_rate: int = 16000, seed: int = 0,
                      program: str = "espeak-ng") -> tuple[list[np.ndarray], list[str]]:
    """``n`` spoken Harvard sentences as float32 mono arrays at ``sample_rate`` and their
    source descriptions (``"espeak-ng:<voice>:<text>"``); voice, pitch and speed vary per
    utterance (drawn with hear_vec.rng from ``seed``)."""
    exe = shutil.which(program)
    if exe is None:
        raise CorpusError(f"{program} is not on PATH (install espeak-ng or use --source "
                          "synthetic)")
    u = rng.uniform(rng.fold_in(rng.make_key(seed), 7), (n, 4), dtype=torch.float64).numpy()
    arrays, sources = [], []
    with tempfile.TemporaryDirectory(prefix="hear_vec_espeak_") as tmp:
        for i in range(n):
            text = HARVARD_SENTENCES[(i + int(u[i, 0] * len(HARVARD_SENTENCES)))
                                     % len(HARVARD_SENTENCES)]
            voice = _VOICES[int(u[i, 1] * len(_VOICES)) % len(_VOICES)]
            pitch = 30 + int(u[i, 2] * 40)
            speed = 140 + int(u[i, 3] * 40)
            wav = Path(tmp) / f"utt_{i}.wav"
            cmd = [exe, "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(wav), text]
            try:
                subprocess.run(cmd, check=True, capture_output=True, timeout=60)
                audio = read_mono(wav, sample_rate)
            except (subprocess.SubprocessError, OSError, AudioReadError) as err:
                reason = " ".join(str(err).split())[:160]
                raise CorpusError(f"{program} failed on utterance {i} ({reason})") from err
            arrays.append(audio)
            sources.append(f"espeak-ng:{voice}:{text}")
    return arrays, sources


def _build_corpus(n: int, seed: int, snr_range: tuple[float, float], source: str,
                  sample_rate: int) -> tuple[Corpus, list[str], str]:
    if source == "auto":
        source = "espeak" if shutil.which("espeak-ng") else "synthetic"
    if source == "synthetic":
        corpus = SyntheticCorpus(num_utterances=n, noise_clips_per_family=2,
                                 snr_range=snr_range, sample_rate=sample_rate, seed=seed,
                                 stream=_DEMO_STREAM)
        return corpus, [f"synthetic:{name}" for name in corpus.names], source
    if source == "espeak":
        arrays, sources = espeak_utterances(n, sample_rate, seed)
        noise_bank, noise_names = synthetic_noise_bank(clips_per_family=2,
                                                       sample_rate=sample_rate, seed=seed,
                                                       stream=_DEMO_STREAM)
        corpus = MixingCorpus(AudioBank.from_arrays(arrays), noise_bank,
                              [f"espeak_{i:04d}" for i in range(n)], noise_names, sample_rate,
                              snr_range, seed, source="espeak-ng")
        return corpus, sources, source
    raise CorpusError(f"unknown source {source!r}; choose auto, synthetic or espeak")


def _is_nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def write_demo_corpus(out: str | os.PathLike, n: int = 200, seed: int = 0,
                      snr_range: tuple[float, float] = (-5.0, 15.0), source: str = "auto",
                      sample_rate: int = 16000, overwrite: bool = False) -> Path:
    """Write the demo corpus to ``out`` (see the module docstring); returns ``out``."""
    import pandas as pd

    dest = Path(out).resolve()
    if n < 1:
        raise CorpusError(f"--n must be at least 1, got {n}")
    if dest.exists() and not dest.is_dir():
        raise CorpusError(f"{dest} exists and is not a folder")
    if _is_nonempty_dir(dest) and not overwrite:
        raise CorpusError(f"{dest} is not empty; pass --overwrite to replace it")
    corpus, clean_sources, used = _build_corpus(n, seed, snr_range, source, sample_rate)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        rows = []
        for i in range(len(corpus)):
            seg = corpus.utterance_segments(i)
            clean, noisy = seg.clean[0].cpu().numpy(), seg.noisy[0].cpu().numpy()
            snr_db, noise_name = float(seg.snr_db[0]), corpus.noise_names[int(seg.noise[0])]
            peak = max(float(np.abs(noisy).max()), float(np.abs(clean).max()), 1e-12)
            gain = min(1.0, _PEAK / peak)
            name = f"utt_{i:04d}"
            write_audio_atomic(staging / "clean" / f"{name}.wav", clean * gain, sample_rate,
                               "PCM_16")
            write_audio_atomic(staging / "noisy" / f"{name}.wav", noisy * gain, sample_rate,
                               "PCM_16")
            rows.append({"utt_id": name, "clean_path": f"{name}.wav",
                         "noisy_path": f"{name}.wav", "snr_db": round(snr_db, 3),
                         "clean_source": clean_sources[i], "noise_source": noise_name,
                         "duration_sec": round(clean.size / sample_rate, 4)})
        pd.DataFrame(rows).to_csv(staging / "meta.csv", index=False)
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old",
                                        dir=dest.parent))
            os.replace(dest, old / "previous")
        os.replace(staging, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"hear_vec.data.demo: wrote {n} clean/noisy pairs "
          f"({sum(r['duration_sec'] for r in rows) / 60:.1f} min, source {used}, SNR "
          f"{snr_range[0]:g}..{snr_range[1]:g} dB) to {dest}")
    return dest


if __name__ == "__main__":  # ``python -m hear_vec.data.demo``: the command line is hear_vec.cli
    from hear_vec.cli.data_demo import main

    raise SystemExit(main())
