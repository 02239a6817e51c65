"""Learners (PPO, SAC, TD3) that read and write device buffers, and the env protocol they use.

``LEARNERS[algo]`` / ``CONFIGS[algo]`` map ``"ppo" | "sac" | "td3"`` to the learner class and
its config dataclass; :func:`make_config` builds a config from a flat mapping of flag values
(train.py's learner flags), rejecting unknown keys and other algorithms' fields;
:func:`load_policy` rebuilds the inference policy of any learner from its ``inference_state()``.
"""

from __future__ import annotations

import dataclasses
import difflib
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
    """``CONFIGS[algo]`` filled from ``values`` (None values keep the default; ``hidden_dims``
    becomes a tuple) and validated. A key that no learner config has is a ValueError naming
    the nearest field; a field of another learner's config (``clip_range`` for sac) set to a
    value is a ValueError too."""
    if algo not in CONFIGS:
        raise ValueError(f"unknown algo {algo!r}; expected one of {sorted(CONFIGS)}")
    cls = CONFIGS[algo]
    names = {f.name for f in dataclasses.fields(cls)}
    known = {f.name: a for a, c in CONFIGS.items() for f in dataclasses.fields(c)}
    kw = {}
    for key, value in (values or {}).items():
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown learner field {key!r}{hint}")
        if value is None:
            continue
        if key not in names:
            owners = [a for a, c in CONFIGS.items() if key in {f.name for f in
                                                               dataclasses.fields(c)}]
            raise ValueError(f"{key!r} is a {', '.join(owners)} setting; {algo} does not use it")
        kw[key] = value
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
