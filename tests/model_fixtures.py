"""Tiny trained-agent files (model.pt) and audio folders for the inference / evaluation tests.

``make_model(path, seed)`` trains a 32x32 PPO agent for a few dozen transitions on a tiny
synthetic corpus and saves it in the exact model.pt format train.py writes; the session
fixtures ``model_path`` / ``model_paths`` build them once per test session. ``write_clip``
writes a speech-like clip (optionally noisy, at any rate and channel count).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.signals import mix_at_snr, speechlike

__all__ = ["make_model", "write_clip", "model_path", "model_paths", "clip_pair"]


def make_model(path: Path, seed: int = 0, train_steps: int = 24, max_steps: int = 3,
               stop_action: bool = False, floor_features: bool = False) -> Path:
    """A small PPO agent saved as model.pt (same payload as train.py writes)."""
    from hear_vec.agents.ppo import PPO, PPOConfig
    from hear_vec.checkpoint import model_payload, save_atomic
    from hear_vec.data import SyntheticCorpus
    from hear_vec.env import DenoiseEnv
    from hear_vec.ops import METHODS

    torch.manual_seed(seed)
    corpus = SyntheticCorpus(num_utterances=8, noise_clips_per_family=1, noise_seconds=2.0,
                             seed=seed)
    env = DenoiseEnv(corpus, num_envs=4, segment_seconds=1.0, max_steps=max_steps, seed=seed,
                     stop_action=stop_action, floor_features=floor_features)
    config = PPOConfig(hidden_dims=(32, 32), rollout_steps=3, update_epochs=1, batch_size=12)
    learner = PPO(env, config)
    if train_steps:
        learner.train(train_steps)
    args = {"algo": "ppo", "hidden_dims": [32, 32], "max_steps": max_steps, "seed": seed,
            "segment_seconds": 1.0, "total_steps": train_steps}
    payload = model_payload(algo="ppo", policy=learner.inference_state(),
                            normalizer=env.normalizer.export(), methods=METHODS,
                            num_features=env.params.feature_dim, max_steps=max_steps,
                            sample_rate=16000,
                            args=args, stop_action=stop_action,
                            floor_features=floor_features)
    save_atomic(payload, path)
    return path


def write_clip(path: Path, seconds: float, sample_rate: int = 16000, channels: int = 1,
               seed: int = 0, snr_db: float | None = 5.0, subtype: str = "PCM_16"
               ) -> np.ndarray:
    """Write a speech-like clip (mixed with white noise at ``snr_db`` unless None); returns
    the written float data [samples, channels] (before quantization)."""
    n = max(int(round(seconds * sample_rate)), 1)
    cols = []
    for c in range(channels):
        x = speechlike(n, sample_rate, seed=seed * 7 + c)
        if snr_db is not None:
            noise = np.random.default_rng(seed * 13 + c + 1).standard_normal(n)
            x = mix_at_snr(x, noise, snr_db)
        cols.append(x)
    data = np.stack(cols, axis=1).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sample_rate, subtype=subtype)
    return data


def clip_pair(clean_path: Path, noisy_path: Path, seconds: float, seed: int = 0,
              snr_db: float = 5.0, sample_rate: int = 16000) -> None:
    """A clean clip and its noisy version (white noise at ``snr_db``), mono, 16-bit."""
    n = int(round(seconds * sample_rate))
    clean = speechlike(n, sample_rate, seed=seed)
    noise = np.random.default_rng(seed + 100).standard_normal(n)
    noisy = mix_at_snr(clean, noise, snr_db)
    for path, data in ((clean_path, clean), (noisy_path, noisy)):
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), data.astype(np.float32), sample_rate, subtype="PCM_16")


_BUILT: dict[int, list[Path]] = {}


@pytest.fixture(scope="session")
def model_paths(tmp_path_factory) -> list[Path]:
    """Two small agents: <tmp>/ppo_a/model.pt (trained 24 transitions, max_steps 3) and
    <tmp>/ppo_b/model.pt (untrained, max_steps 2). Test modules re-export this fixture
    (``model_path, model_paths = mf.model_path, mf.model_paths``); the files are built once
    per session even so."""
    key = id(tmp_path_factory)
    if key not in _BUILT:
        root = tmp_path_factory.mktemp("models")
        _BUILT[key] = [
            make_model(root / "ppo_a" / "model.pt", seed=0),
            make_model(root / "ppo_b" / "model.pt", seed=1, train_steps=0, max_steps=2)]
    return _BUILT[key]


@pytest.fixture(scope="session")
def model_path(model_paths) -> Path:
    return model_paths[0]
