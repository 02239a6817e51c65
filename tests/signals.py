"""Small deterministic test signals (numpy, float64) and real dev-audio mixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["speechlike", "mix_at_snr", "read_mono", "dev_mixtures"]


def speechlike(n: int, sample_rate: int = 16000, seed: int = 0, pauses: bool = True) -> np.ndarray:
    """Voiced bursts (harmonics of a gliding pitch, syllable envelope) with silent gaps."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sample_rate
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = np.clip(np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6)), 0, None) ** 0.5
    if pauses:
        gate = (np.sin(2 * np.pi * 0.6 * t + rng.uniform(0, 6)) > -0.3).astype(float)
        env = env * gate
    x = voiced * env + 0.02 * rng.standard_normal(n) * env
    return 0.1 * x / (np.abs(x).max() + 1e-12)


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """clean + noise scaled so that 10 log10(P_clean / P_noise) = snr_db."""
    p_c = np.mean(clean**2) + 1e-20
    p_n = np.mean(noise**2) + 1e-20
    return clean + noise * np.sqrt(p_c / (p_n * 10 ** (snr_db / 10)))


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    data, sr = sf.read(str(path), dtype="float64", always_2d=True)
    return data.mean(axis=1), sr


def dev_mixtures(root: Path, count: int = 6, seed: int = 0, snr_range=(-5.0, 20.0)):
    """Yield (name, clean, noisy, snr) from dev-audio speech mixed with cropped dev noises."""
    rng = np.random.default_rng(seed)
    speech = sorted((root / "speech").glob("*.wav"))
    noises = sorted((root / "noise").glob("*.wav"))
    for i in range(count):
        clean, sr = read_mono(speech[(i * 7) % len(speech)])
        noise, nsr = read_mono(noises[i % len(noises)])
        assert sr == nsr == 16000
        if len(noise) < len(clean):
            noise = np.tile(noise, int(np.ceil(len(clean) / len(noise))))
        start = rng.integers(0, len(noise) - len(clean) + 1)
        snr = float(rng.uniform(*snr_range))
        noisy = mix_at_snr(clean, noise[start:start + len(clean)], snr)
        yield speech[(i * 7) % len(speech)].stem, clean, noisy, snr
