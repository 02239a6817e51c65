"""Files a training run writes and inference reads, as tensors and plain containers only
(every file loads with ``torch.load(path, weights_only=True)``; no pickled code).

``model.pt`` (format "hear_vec.model") — everything inference needs:
    algo, policy (the learner's ``inference_state()``), normalizer (running mean/std),
    methods, num_features, max_steps, stop_action (whether the policy's last action id
    stops the chain), audio settings (sample_rate, n_fft, hop_length), args (training
    arguments), final_eval, hear_vec_version.
``checkpoint.pt`` (format "hear_vec.checkpoint") — what ``--resume`` needs:
    learner (``state_dict()``: networks, optimizers, counters, RNG states), normalizer,
    env_draws (the environment's RNG counter), args, history (evaluations so far).

Writes are atomic: a temporary file in the same folder, then ``os.replace``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from hear_vec._version import __version__
from hear_vec.dsp import HOP_LENGTH, N_FFT

__all__ = [
    "MODEL_FORMAT",
    "CHECKPOINT_FORMAT",
    "FORMAT_VERSION",
    "CheckpointError",
    "save_atomic",
    "load_file",
    "model_payload",
]

MODEL_FORMAT = "hear_vec.model"
CHECKPOINT_FORMAT = "hear_vec.checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A model or checkpoint file that is missing, unreadable, or of another format."""


def save_atomic(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """torch.save to a temporary file beside ``path``, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_file(path: str | os.PathLike, expected_format: str,
              map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a hear_vec file; raises :class:`CheckpointError` with one clear line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, pickled classes, not torch at all
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable hear_vec file ({first[:160]})") from None
    if not isinstance(payload, dict) or "format" not in payload:
        raise CheckpointError(f"{path}: not a hear_vec file (no 'format' field)")
    if payload["format"] != expected_format:
        raise CheckpointError(f"{path}: is a {payload['format']!r} file, expected "
                              f"{expected_format!r}")
    if int(payload.get("format_version", -1)) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {payload.get('format_version')} is newer "
                              f"than this hear_vec ({FORMAT_VERSION}); upgrade hear_vec")
    return payload


def model_payload(*, algo: str, policy: dict[str, Any], normalizer: dict[str, Any],
                  methods: tuple[str, ...] | list[str], num_features: int, max_steps: int,
                  sample_rate: int, args: dict[str, Any],
                  final_eval: dict[str, float] | None = None,
                  stop_action: bool = False) -> dict[str, Any]:
    """The ``model.pt`` dictionary."""
    return {
        "format": MODEL_FORMAT,
        "format_version": FORMAT_VERSION,
        "hear_vec_version": __version__,
        "algo": algo,
        "policy": policy,
        "normalizer": normalizer,
        "methods": list(methods),
        "num_features": int(num_features),
        "max_steps": int(max_steps),
        "stop_action": bool(stop_action),
        "audio": {"sample_rate": int(sample_rate), "n_fft": N_FFT, "hop_length": HOP_LENGTH},
        "args": args,
        "final_eval": dict(final_eval or {}),
    }
