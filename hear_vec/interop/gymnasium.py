"""A ``gymnasium.vector.VectorEnv`` view of :class:`~hear_vec.env.DenoiseEnv` (Gymnasium >= 1.0).

    from hear_vec.interop.gymnasium import DenoiseVectorEnv
    envs = DenoiseVectorEnv(num_envs=8, device="cpu", data="synthetic")   # DenoiseEnv's args
    obs, info = envs.reset(seed=0)
    obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())

The view owns one DenoiseEnv (built from the same arguments, defaults included; or
:meth:`DenoiseVectorEnv.wrap` an existing one) and converts arrays at the boundary only.

Spaces.
    ``single_observation_space = Box(-inf, inf, (D,), float32)`` (D = ``env.observation_dim``;
    the bounds are infinite because the normalizer's clip and the feature layout are the env's
    business, and an infinite Box is true for any of them). ``action_layout="box"`` (default):
    ``single_action_space = Box(low=(0, *knob_low), high=(M - 1, *knob_high), (1 + C,),
    float32)``, the seed's 4-vector with the method id as a float (rounded to the nearest id by
    the env). ``action_layout="dict"``: ``Dict(method=Discrete(M), knobs=Box(knob_low,
    knob_high))``; batched ``Dict(method=MultiDiscrete([M] * N), knobs=Box((N, C)))``. M is read
    from ``env.action_spec`` (it grows by one when the env offers a stop/keep action). See
    :mod:`hear_vec.interop.actions` for the checks (wrong shape / dtype, NaN / inf, out of
    bounds → one-line ``ValueError``; ``clip_actions=True`` clamps instead of raising).

Autoreset. ``metadata["autoreset_mode"] = AutoresetMode.SAME_STEP``, which is what DenoiseEnv
does: a row whose episode ends in ``step`` is reset inside that same call, and the returned
observation is the first of its next episode. As Gymnasium 1.x's own ``SyncVectorEnv`` does in
that mode, ``info["final_obs"]`` carries the last observation of the episode that ended and
``info["_final_obs"]`` marks the rows that ended; ``info["final_info"]`` (with
``info["_final_info"]``) carries those rows' step info. Unlike SyncVectorEnv's object array of
per-row arrays (``None`` where a row did not end), ``final_obs`` here is one dense ``[N, D]``
array — indexing it with the mask (``info["final_obs"][info["_final_obs"]]``) works the same;
rows that did not end hold their current observation. Rows may end at different steps. The
step info (``si_sdr``, ``si_sdr_start``, ``episode_return``, ``method``, ``knobs`` and, when
measured, ``stoi`` / ``estoi``) describes the transition just taken, for every row, each with
its all-True ``_key`` mask (Gymnasium's vector info convention).

Arrays. ``array_type="numpy"`` (default): observations, rewards, flags and infos come back as
numpy arrays (one device→host copy per step, at the boundary); actions may be numpy arrays,
lists or tensors. ``array_type="torch"``: everything comes back as tensors on the env's device
(no host copy), for learners that take tensors; actions may be tensors on that device (used as
they are) or numpy arrays (copied there).

Seeding. ``reset(seed=s)`` re-keys DenoiseEnv's counter-based RNG (``DenoiseEnv.reset(seed=s)``):
the same seed replays the same episodes. ``reset()`` without a seed starts fresh episodes from
the stream where it stands. ``render_mode`` is ``None`` (there is nothing to render).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from torch import Tensor

from hear_vec.interop.actions import ActionBounds, check_hybrid_action, check_vector_action

__all__ = ["DenoiseVectorEnv", "ACTION_LAYOUTS", "ARRAY_TYPES"]

ACTION_LAYOUTS = ("box", "dict")
ARRAY_TYPES = ("numpy", "torch")


class DenoiseVectorEnv(VectorEnv):
    """Gymnasium vector view of DenoiseEnv (see the module docstring).

    Args:
        *args, **kwargs: DenoiseEnv's own arguments (``data``, ``num_envs``, ``device``,
            ``max_steps``, ``seed``, ...), with DenoiseEnv's defaults.
        action_layout: "box" (the seed's 4-vector) or "dict" (Discrete method + Box knobs).
        array_type: "numpy" (host arrays) or "torch" (tensors on the env's device).
        clip_actions: clamp out-of-bounds values into the space instead of raising.
        validate_actions: check values (NaN / inf / bounds; one host read of one bool per
            step); shape and dtype are always checked.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}
    render_mode = None

    def __init__(self, *args: Any, action_layout: str = "box", array_type: str = "numpy",
                 clip_actions: bool = False, validate_actions: bool = True,
                 **kwargs: Any) -> None:
        from hear_vec.env import DenoiseEnv

        _check_choice("action_layout", action_layout, ACTION_LAYOUTS)
        _check_choice("array_type", array_type, ARRAY_TYPES)
        self._setup(DenoiseEnv(*args, **kwargs), action_layout, array_type, clip_actions,
                    validate_actions)

    @classmethod
    def wrap(cls, env: Any, *, action_layout: str = "box", array_type: str = "numpy",
             clip_actions: bool = False, validate_actions: bool = True) -> DenoiseVectorEnv:
        """The view of an existing DenoiseEnv (or any env with its public surface)."""
        _check_choice("action_layout", action_layout, ACTION_LAYOUTS)
        _check_choice("array_type", array_type, ARRAY_TYPES)
        self = cls.__new__(cls)
        self._setup(env, action_layout, array_type, clip_actions, validate_actions)
        return self

    def _setup(self, env: Any, action_layout: str, array_type: str, clip_actions: bool,
               validate_actions: bool) -> None:
        self.env = env
        self.num_envs = int(env.num_envs)
        self.device = torch.device(env.device)
        self.action_layout = action_layout
        self.array_type = array_type
        self.clip_actions = bool(clip_actions)
        self.validate_actions = bool(validate_actions)
        self.bounds = ActionBounds(env.action_spec, self.device)
        dim = int(env.observation_dim)
        self.single_observation_space = spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        low, high = self.bounds.low, self.bounds.high
        if action_layout == "box":
            self.single_action_space = spaces.Box(low, high, low.shape, np.float32)
        else:
            self.single_action_space = spaces.Dict({
                "method": spaces.Discrete(self.bounds.num_methods),
                "knobs": spaces.Box(low[1:], high[1:], low[1:].shape, np.float32),
            })
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = dict(type(self).metadata)
        self._started = False

    # ------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[Any, dict[str, Any]]:
        """Fresh episodes in every row: ``(obs [N, D], {})``. ``seed`` re-keys the env's RNG;
        ``options`` may hold ``draws`` (the env's RNG counter, e.g. 0 to replay)."""
        options = dict(options or {})
        draws = options.pop("draws", None)
        if options:
            raise ValueError(f"unknown reset options {sorted(options)}; only 'draws' is "
                             "understood (rows cannot be reset one by one: autoreset is same-step)")
        if seed is not None and (isinstance(seed, bool) or int(seed) != seed):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        super().reset(seed=None if seed is None else int(seed))  # seeds self.np_random
        obs = self.env.reset(draws=draws, seed=None if seed is None else int(seed))
        self._started = True
        return self._out(obs), {}

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """One denoiser per row; same-step autoreset (see the module docstring)."""
        if not self._started:
            raise RuntimeError("call reset() before step()")
        action = self.to_env_action(actions)
        obs, reward, terminated, truncated, info = self.env.step(action)
        done = terminated | truncated
        out_info = self._info(info, done)
        return (self._out(obs), self._out(reward), self._out(terminated),
                self._out(truncated), out_info)

    def to_env_action(self, actions: Any) -> Tensor:
        """The checked DenoiseEnv action ``[N, 1 + C]`` float32 for an action of this space."""
        if self.action_layout == "box":
            return check_vector_action(actions, self.bounds, self.num_envs,
                                       clip=self.clip_actions, validate=self.validate_actions)
        if not isinstance(actions, dict) or set(actions) != {"method", "knobs"}:
            got = sorted(actions) if isinstance(actions, dict) else type(actions).__name__
            raise ValueError(f"action must be a dict with keys 'method' and 'knobs', got {got}")
        return check_hybrid_action(actions["method"], actions["knobs"], self.bounds,
                                   self.num_envs, clip=self.clip_actions,
                                   validate=self.validate_actions)

    def episode_stats(self, reset: bool = True) -> dict[str, float]:
        """The env's episode accumulators (episodes, mean return, SI-SDR gain, ...)."""
        return self.env.episode_stats(reset=reset)

    def close_extras(self, **kwargs: Any) -> None:
        self._started = False

    # ------------------------------------------------------------------------------------
    def _out(self, x: Tensor) -> Any:
        if self.array_type == "torch":
            return x
        host = x.detach().cpu()
        # a fresh array every call: users keep what they are given (never a view of the
        # env's own CPU tensors)
        return host.numpy().copy() if host.data_ptr() == x.data_ptr() else host.numpy()

    def _info(self, info: dict[str, Tensor], done: Tensor) -> dict[str, Any]:
        """Gymnasium 1.x vector info: every key with its ``_key`` mask, plus ``final_obs`` /
        ``final_info`` for the rows that ended (masks ``_final_obs`` / ``_final_info``)."""
        final_obs = info["final_observation"]
        out: dict[str, Any] = {}
        step_info: dict[str, Any] = {}
        all_rows = self._out(torch.ones_like(done))
        for key, value in info.items():
            if key == "final_observation" or not isinstance(value, Tensor):
                continue
            step_info[key] = self._out(value)
            step_info[f"_{key}"] = all_rows
        out.update(step_info)
        mask = self._out(done)
        out["final_obs"] = self._out(final_obs)
        out["_final_obs"] = mask
        final_info: dict[str, Any] = {}
        for key, value in step_info.items():
            final_info[key] = value if not key.startswith("_") else mask
        out["final_info"] = final_info
        out["_final_info"] = mask
        return out

    def __repr__(self) -> str:
        return (f"DenoiseVectorEnv(num_envs={self.num_envs}, device={str(self.device)!r}, "
                f"action_layout={self.action_layout!r}, array_type={self.array_type!r})")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")

