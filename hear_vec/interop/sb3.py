"""A Stable-Baselines3 ``VecEnv`` over the Gymnasium view of :class:`~hear_vec.env.DenoiseEnv`.

    from stable_baselines3 import PPO
    from hear_vec.interop.sb3 import DenoiseSB3VecEnv
    venv = DenoiseSB3VecEnv(num_envs=16, data="synthetic")     # DenoiseEnv's arguments
    PPO("MlpPolicy", venv, n_steps=64).learn(20_000)

SB3 does not consume ``gymnasium.vector.VectorEnv``: it has its own ``VecEnv`` protocol
(``reset() -> obs``; ``step_async`` / ``step_wait -> (obs, rewards, dones, infos)`` with
``infos`` a list of one dict per environment; seeds passed by ``seed()`` and applied at the
next ``reset``). Its own ``DummyVecEnv`` autoresets on the same step and stores the episode's
last observation as ``infos[i]["terminal_observation"]``, with
``infos[i]["TimeLimit.truncated"]`` telling a time-limit end from a true termination — which
is exactly DenoiseEnv's same-step autoreset, so this class only renames:
``final_obs[i] → terminal_observation`` for the rows that ended, and ``truncated and not
terminated → TimeLimit.truncated``. The per-environment info dicts (SB3's format) are the one
Python loop over rows here; they hold host scalars of the step info (``si_sdr``,
``si_sdr_start``, ``episode_return``, ``method``) so that callbacks can log them.

Actions are the Gymnasium view's ``Box`` layout (SB3 has no ``Dict`` action spaces). SB3's PPO
/ A2C clip their Gaussian samples to the ``Box`` bounds before ``step`` and SAC / TD3 rescale
their tanh output into them, so the view's default (raise on out-of-bounds actions) never
fires under SB3; it catches actions built by hand. ``seed(s)`` uses ``s`` for the one
DenoiseEnv (SB3 derives ``s + i`` per environment; the rows of one DenoiseEnv draw their
episodes from one counter-based key, so only the first is used).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from hear_vec.interop.gymnasium import DenoiseVectorEnv

__all__ = ["DenoiseSB3VecEnv"]

#: step-info keys copied into each environment's info dict (host scalars)
INFO_KEYS = ("si_sdr", "si_sdr_start", "episode_return", "method", "stoi", "estoi")


class DenoiseSB3VecEnv(VecEnv):
    """SB3 VecEnv over :class:`DenoiseVectorEnv` (numpy arrays, ``Box`` actions).

    Args:
        *args, **kwargs: DenoiseEnv's own arguments, with its defaults.
        clip_actions, validate_actions: as in :class:`DenoiseVectorEnv`.
    """

    def __init__(self, *args: Any, clip_actions: bool = False, validate_actions: bool = True,
                 **kwargs: Any) -> None:
        self._init_from(DenoiseVectorEnv(*args, action_layout="box", array_type="numpy",
                                         clip_actions=clip_actions,
                                         validate_actions=validate_actions, **kwargs))

    @classmethod
    def wrap(cls, vector_env: DenoiseVectorEnv) -> DenoiseSB3VecEnv:
        """SB3 view of an existing Gymnasium view (it must use the box / numpy settings)."""
        if vector_env.action_layout != "box" or vector_env.array_type != "numpy":
            raise ValueError("SB3 needs action_layout='box' and array_type='numpy', got "
                             f"{vector_env.action_layout!r} and {vector_env.array_type!r}")
        self = cls.__new__(cls)
        self._init_from(vector_env)
        return self

    def _init_from(self, vector_env: DenoiseVectorEnv) -> None:
        self.vector_env = vector_env
        super().__init__(vector_env.num_envs, vector_env.single_observation_space,
                         vector_env.single_action_space)
        self._actions: np.ndarray | None = None
        self._started = False

    @property
    def env(self) -> Any:
        """The DenoiseEnv underneath."""
        return self.vector_env.env

    def reset(self) -> np.ndarray:
        seed = self._seeds[0] if self._seeds else None
        obs, _ = self.vector_env.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._started = True
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions, self._actions = self._actions, None
        obs, reward, terminated, truncated, info = self.vector_env.step(actions)
        dones = terminated | truncated
        time_limit = truncated & ~terminated
        present = [k for k in INFO_KEYS if k in info]
        columns = {k: info[k].tolist() for k in present}
        final_obs = info["final_obs"]
        infos: list[dict[str, Any]] = []
        for i in range(self.num_envs):  # SB3's format: one dict per environment
            row = {k: columns[k][i] for k in present}
            row["TimeLimit.truncated"] = bool(time_limit[i])
            if dones[i]:
                row["terminal_observation"] = final_obs[i].copy()
            infos.append(row)
        return obs, reward.astype(np.float32, copy=False), dones, infos

    def episode_stats(self, reset: bool = True) -> dict[str, float]:
        """The env's episode accumulators (episodes, mean return, SI-SDR gain, ...)."""
        return self.vector_env.episode_stats(reset=reset)

    def close(self) -> None:
        self.vector_env.close()

    # the VecEnv attribute protocol: one batched env stands for all num_envs
    def _count(self, indices: VecEnvIndices) -> int:
        return len(list(self._get_indices(indices)))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.vector_env, attr_name)] * self._count(indices)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.vector_env, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        result = getattr(self.vector_env, method_name)(*method_args, **method_kwargs)
        return [result] * self._count(indices)

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False] * self._count(indices)

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None] * self.num_envs
