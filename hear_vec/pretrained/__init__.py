"""The agent that ships with hear_vec: ``hear_vec/pretrained/model.pt``.

``infer.py --input noisy/ --output out/`` uses it when no ``--checkpoint`` is given, and
``make demo`` denoises with it before training its own small agent. It was trained on data
the project makes itself (the synthetic corpus) plus the development speech and noise beside
the project (weights only; no audio is shipped); ``TRAINING.md`` here records the exact command
that trained it and its held-out numbers (also in the README).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PRETRAINED_MODEL", "pretrained_model"]

#: where the packaged model.pt lives
PRETRAINED_MODEL = Path(__file__).resolve().parent / "model.pt"


def pretrained_model() -> Path:
    """Path of the packaged model.pt; FileNotFoundError (one line) if this install lacks it."""
    if not PRETRAINED_MODEL.is_file():
        raise FileNotFoundError(f"the packaged pretrained agent is missing ({PRETRAINED_MODEL});"
                                " reinstall hear_vec or pass --checkpoint")
    return PRETRAINED_MODEL
