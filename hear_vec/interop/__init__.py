"""Views of :class:`~hear_vec.env.DenoiseEnv` for outside RL libraries (``pip install
hear_vec[interop]``).

- :class:`hear_vec.interop.gymnasium.DenoiseVectorEnv` — a ``gymnasium.vector.VectorEnv``;
- :class:`hear_vec.interop.sb3.DenoiseSB3VecEnv` — a Stable-Baselines3 ``VecEnv``;
- :class:`hear_vec.interop.torchrl.DenoiseTorchRLEnv` — a TorchRL ``EnvBase``.

Each takes DenoiseEnv's own arguments. The submodules import their library (gymnasium,
stable_baselines3, torchrl) only when imported, so the core install never needs them; names
here are resolved lazily for the same reason.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["DenoiseVectorEnv", "DenoiseSB3VecEnv", "DenoiseTorchRLEnv"]

_LAZY = {
    "DenoiseVectorEnv": "hear_vec.interop.gymnasium",
    "DenoiseSB3VecEnv": "hear_vec.interop.sb3",
    "DenoiseTorchRLEnv": "hear_vec.interop.torchrl",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hear_vec.interop' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
