"""hear_vec: GPU-vectorized reinforcement-learned speech denoising.

Public entry points are imported lazily so that ``import hear_vec`` stays cheap and a
sub-package can be used on its own.
"""

from __future__ import annotations

import importlib
from typing import Any

from hear_vec._version import __version__

__all__ = ["__version__", "METHODS", "denoise", "si_sdr", "stoi", "DenoiseEnv"]

_LAZY = {
    "METHODS": "hear_vec.ops",
    "denoise": "hear_vec.ops",
    "si_sdr": "hear_vec.metrics",
    "stoi": "hear_vec.metrics",
    "DenoiseEnv": "hear_vec.env",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hear_vec' has no attribute {name!r}")
