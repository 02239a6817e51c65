"""The vectorized denoising environment, its observation and its action space.

Names are imported lazily, so ``import hear_vec.env.spaces`` (what the learners need) does not
load the operators, metrics and corpora behind :class:`DenoiseEnv`.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["DenoiseEnv", "EnvState", "EPISODE_STATS", "RunningNormalizer", "ActionSpec",
           "build_observation", "observation_dim"]

_LAZY = {
    "DenoiseEnv": "hear_vec.env.denoise_env",
    "EnvState": "hear_vec.env.denoise_env",
    "EPISODE_STATS": "hear_vec.env.denoise_env",
    "RunningNormalizer": "hear_vec.env.observation",
    "build_observation": "hear_vec.env.observation",
    "observation_dim": "hear_vec.env.observation",
    "ActionSpec": "hear_vec.env.spaces",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hear_vec.env' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
