"""Learners (PPO, SAC, TD3) that read and write device buffers, and the env protocol they use.

``LEARNERS[algo]`` / ``CONFIGS[algo]`` map ``"ppo" | "sac" | "td3"`` to the learner class and
its config dataclass; :func:`make_config` builds a config from a flat mapping of flag values
(train.py's argparse namespace), keeping the fields the algorithm has; :func:`load_policy`
rebuilds the inference policy of any learner from its ``inference_state()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from hear_vec.agents.base import NonFiniteLossError, TrainHooks, VecEnv
from hear_vec.agents.config import LearnerConfig
from hear_vec.agents.ppo import PPO, PPOConfig
from hear_vec.agents.ppo import load_policy as _load_ppo
from hear_vec.agents.sac import SAC, SACConfig
from hear_vec.agents.sac import load_policy as _load_sac
from hear_vec.agents.td3 import TD3, TD3Config
from hear_vec.agents.td3 import load_policy as _load_td3
from hear_vec.agents.tracking import evaluate_policy
from hear_vec.env.spaces import ActionSpec

__all__ = [
    "ActionSpec",
    "VecEnv",
    "TrainHooks",
    "NonFiniteLossError",
    "evaluate_policy",
    "PPO",
    "PPOConfig",
    "SAC",
    "SACConfig",
    "TD3",
    "TD3Config",
    "LEARNERS",
    "CONFIGS",
    "make_config",
    "load_policy",
]

LEARNERS: dict[str, type] = {"ppo": PPO, "sac": SAC, "td3": TD3}
CONFIGS: dict[str, type[LearnerConfig]] = {"ppo": PPOConfig, "sac": SACConfig, "td3": TD3Config}
_LOADERS = {"ppo": _load_ppo, "sac": _load_sac, "td3": _load_td3}


def make_config(algo: str, values: Mapping[str, Any] | None = None) -> LearnerConfig:
    """``CONFIGS[algo]`` filled from ``values`` (keys that are not fields of that config are
    ignored, None values keep the default; ``hidden_dims`` becomes a tuple) and validated."""
    if algo not in CONFIGS:
        raise ValueError(f"unknown algo {algo!r}; expected one of {sorted(CONFIGS)}")
    cls = CONFIGS[algo]
    names = {f.name for f in dataclasses.fields(cls)}
    kw = {k: v for k, v in (values or {}).items() if k in names and v is not None}
    if "hidden_dims" in kw:
        kw["hidden_dims"] = tuple(int(h) for h in kw["hidden_dims"])
    config = cls(**kw)
    config.validate()
    return config


def load_policy(state: Mapping[str, Any], device: Any = None) -> Any:
    """The inference policy (an ``nn.Module``, ``forward(obs, deterministic=True) -> action``)
    of any learner's ``inference_state()``."""
    algo = state.get("algo")
    if algo not in _LOADERS:
        raise ValueError(f"unknown algo {algo!r} in inference state")
    return _LOADERS[algo](dict(state), device)
