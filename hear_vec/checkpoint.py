"""Files a training run writes and inference reads, as tensors and plain containers only
(every file loads with ``torch.load(path, weights_only=True)``; no pickled code).

``model.pt`` (format "hear_vec.model") — everything inference needs:
    algo, policy (the learner's ``inference_state()``), normalizer (running mean/std),
    methods, num_features, max_steps, stop_action (whether the policy's last action id
    stops the chain), floor_features (whether observations carry the noise-floor features),
    audio settings (sample_rate, n_fft, hop_length), args (training arguments), final_eval,
    hear_vec_version.
``checkpoint.pt`` (format "hear_vec.checkpoint") — what ``--resume`` needs:
    learner (``state_dict()``: networks, optimizers, counters, RNG states), normalizer,
    env_draws (the environment's RNG counter), args, history (evaluations so far).

Writes are atomic (:func:`hear_vec.atomic.atomic_write`: a temporary file in the same folder,
fsync, ``os.replace``; the file gets the user's umask, e.g. 0644), so a run killed at any
moment leaves the previous complete file under the final name.

Loading (:func:`load_file`) never runs pickled code (``torch.load(weights_only=True)``) and
turns every problem into ONE line (:class:`CheckpointError`): no such file; empty; not a
PyTorch file; truncated or corrupt; pickled Python objects (a file saved with custom
classes or numpy arrays is refused, naming the first such object); not a hear_vec file; a
model.pt where a checkpoint.pt is expected or the reverse; a newer format version; fields
missing.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from hear_vec._version import __version__
from hear_vec.atomic import atomic_write
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
    """torch.save to a temporary file beside ``path``, then rename over it (see the module
    docstring)."""
    path = Path(path)
    with atomic_write(path, "wb") as handle:
        torch.save(payload, handle)
    return path


_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80
_KIND = {MODEL_FORMAT: "a hear_vec model (model.pt, written at the end of training)",
         CHECKPOINT_FORMAT: "a hear_vec training checkpoint (checkpoint.pt)"}
_REQUIRED = {
    MODEL_FORMAT: ("algo", "policy", "normalizer", "methods", "num_features", "max_steps",
                   "audio"),
    CHECKPOINT_FORMAT: ("learner", "normalizer", "env_draws", "args"),
}
_DICTS = {MODEL_FORMAT: ("policy", "normalizer", "audio"),
          CHECKPOINT_FORMAT: ("learner", "normalizer", "args")}


def _load_error(path: Path, exc: BaseException, head: bytes, size: int) -> CheckpointError:
    """One line for a failed ``torch.load(weights_only=True)``."""
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return CheckpointError(f"{path}: contains pickled Python objects ({found.group(1)}; not "
                               f"a tensors-only hear_vec file); refusing to load it")
    if head.startswith(_ZIP_MAGIC):
        return CheckpointError(f"{path}: truncated or corrupt PyTorch file ({size} bytes; was it "
                               f"copied completely?)")
    if head[:1] == bytes([_PICKLE_PROTO]):
        if isinstance(exc, EOFError) or "truncated" in text.lower():
            return CheckpointError(f"{path}: truncated or corrupt PyTorch file ({size} bytes)")
        return CheckpointError(f"{path}: a pickle, not a tensors-only PyTorch file; refusing to "
                               f"load it")
    return CheckpointError(f"{path}: not a PyTorch file (hear_vec writes model.pt and "
                           f"checkpoint.pt with torch.save)")


def load_file(path: str | os.PathLike, expected_format: str,
              map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a hear_vec file; raises :class:`CheckpointError` with one clear line
    (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, pickled classes, not torch at all
        raise _load_error(path, exc, head, size) from None
    if not isinstance(payload, dict) or "format" not in payload:
        raise CheckpointError(f"{path}: not a hear_vec file (a PyTorch file without hear_vec's "
                              f"'format' field)")
    found = payload["format"]
    if found != expected_format:
        if found in _KIND and expected_format in _KIND:
            raise CheckpointError(f"{path}: is {_KIND[found]}, but {_KIND[expected_format]} is "
                                  f"needed here")
        raise CheckpointError(f"{path}: is a {found!r} file, expected {expected_format!r}")
    try:
        version = int(payload.get("format_version", -1))
    except (TypeError, ValueError):
        raise CheckpointError(f"{path}: format_version "
                              f"{payload.get('format_version')!r} is not a number") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {version} is newer "
                              f"than this hear_vec ({FORMAT_VERSION}); upgrade hear_vec")
    missing = [k for k in _REQUIRED.get(expected_format, ()) if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: incomplete {expected_format} file (no "
                              f"{', '.join(missing)})")
    wrong = [k for k in _DICTS.get(expected_format, ()) if not isinstance(payload[k], dict)]
    if wrong:
        raise CheckpointError(f"{path}: malformed {expected_format} file ({', '.join(wrong)} "
                              f"not a dictionary)")
    return payload


def model_payload(*, algo: str, policy: dict[str, Any], normalizer: dict[str, Any],
                  methods: tuple[str, ...] | list[str], num_features: int, max_steps: int,
                  sample_rate: int, args: dict[str, Any],
                  final_eval: dict[str, float] | None = None,
                  stop_action: bool = False, floor_features: bool = False) -> dict[str, Any]:
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
        "floor_features": bool(floor_features),
        "audio": {"sample_rate": int(sample_rate), "n_fft": N_FFT, "hop_length": HOP_LENGTH},
        "args": args,
        "final_eval": dict(final_eval or {}),
    }
