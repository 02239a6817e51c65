"""A trained agent as a batched denoiser: observation → policy → operator, up to ``max_steps``
times.

:class:`DenoisingAgent` is what ``infer.py`` and ``python -m hear_vec.evaluate`` use. It runs
the environment's own transition (:func:`hear_vec.env.rollout.run_episodes` over
:mod:`hear_vec.env.transition`) on the given audio without a clean reference, so it builds
exactly the observations the environment built in training, normalizes them with the
normalizer saved in ``model.pt`` and acts with the deterministic policy. A stop action (when
the agent was trained with one) ends a row's chain and keeps its audio.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hear_vec.agents import load_policy
from hear_vec.checkpoint import MODEL_FORMAT, CheckpointError, load_file
from hear_vec.data import Segments
from hear_vec.env.observation import RunningNormalizer
from hear_vec.env.rollout import Rollout, run_episodes
from hear_vec.env.transition import EnvParams
from hear_vec.features import NUM_FEATURES
from hear_vec.features.floor import NUM_FLOOR_FEATURES
from hear_vec.ops import METHODS

__all__ = ["ChainResult", "DenoisingAgent"]


@dataclass
class ChainResult:
    audio: Tensor    # [B, T] denoised, zero beyond lengths
    methods: Tensor  # [B, S] method id chosen at each step (len(METHODS) = stop; -1 after it)
    knobs: Tensor    # [B, S, 3] knobs chosen at each step (0 after the row finished)
    rollout: Rollout | None = None  # the whole rollout (observations per step when traced)


class DenoisingAgent:
    """A policy with its observation normalizer and settings, loaded from ``model.pt``."""

    def __init__(self, policy: torch.nn.Module, normalizer: RunningNormalizer, max_steps: int,
                 sample_rate: int, algo: str, meta: dict[str, Any] | None = None,
                 stop_action: bool = False, floor_features: bool = False) -> None:
        self.policy = policy
        self.normalizer = normalizer
        self.max_steps = int(max_steps)
        self.sample_rate = int(sample_rate)
        self.algo = algo
        self.meta = meta or {}
        self.stop_action = bool(stop_action)
        self.floor_features = bool(floor_features)
        self.num_methods = len(METHODS)

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device = "cpu"
                  ) -> DenoisingAgent:
        """Load ``model.pt``; raises CheckpointError for a missing, corrupt or foreign file."""
        payload = load_file(path, MODEL_FORMAT)
        try:
            if tuple(payload["methods"]) != METHODS:
                raise CheckpointError(f"{path}: trained with methods {payload['methods']}, this "
                                      f"hear_vec has {list(METHODS)}")
            floor = bool(payload.get("floor_features", False))
            expected = NUM_FEATURES + (NUM_FLOOR_FEATURES if floor else 0)
            if int(payload["num_features"]) != expected:
                raise CheckpointError(f"{path}: trained with {payload['num_features']} features, "
                                      f"this hear_vec computes {expected}")
            stop_action = bool(payload.get("stop_action", False))
            actions = int(payload["policy"]["action_spec"]["num_methods"])
            if actions != len(METHODS) + int(stop_action):
                raise CheckpointError(f"{path}: its policy chooses among {actions} actions, "
                                      f"expected {len(METHODS) + int(stop_action)}")
            policy = load_policy(payload["policy"], device)
            normalizer = RunningNormalizer.from_export(payload["normalizer"], device)
            return cls(policy, normalizer, int(payload["max_steps"]),
                       int(payload["audio"]["sample_rate"]), str(payload["algo"]),
                       meta={"path": str(Path(path)), "args": payload.get("args", {}),
                             "final_eval": payload.get("final_eval", {})},
                       stop_action=stop_action, floor_features=floor)
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: incomplete or incompatible model file "
                                  f"({type(exc).__name__}: {str(exc)[:160]})") from None

    @property
    def device(self) -> torch.device:
        return self.normalizer.mean.device

    def params(self, max_steps: int | None = None, rows: int = 1) -> EnvParams:
        """The transition settings inference runs with (no clean reference, no autoreset)."""
        steps = self.max_steps if max_steps is None else int(max_steps)
        if steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {steps}")
        return EnvParams(num_envs=rows, max_steps=steps, stop_action=self.stop_action,
                         score=False, autoreset=False, sample_rate=self.sample_rate,
                         floor_features=self.floor_features)

    @torch.no_grad()
    def run(self, noisy: Tensor, lengths: Tensor | None = None,
            max_steps: int | None = None, trace: bool = False) -> ChainResult:
        """Denoise a batch: noisy [B, T] float at ``self.sample_rate``, lengths [B] or None.
        ``trace`` keeps the observation and audio of every step (``result.rollout``)."""
        noisy = noisy.to(self.device, torch.float32)
        batch = noisy.shape[0]
        if lengths is None:
            lengths = torch.full((batch,), noisy.shape[-1], dtype=torch.long, device=self.device)
        lengths = lengths.to(self.device)
        segments = Segments(clean=None, noisy=noisy, lengths=lengths,  # type: ignore[arg-type]
                            snr_db=torch.full((batch,), float("nan"), device=self.device),
                            utterance=torch.full((batch,), -1, dtype=torch.long,
                                                 device=self.device))
        rollout = run_episodes(self.params(max_steps, batch), segments,
                               lambda obs: self.policy(obs, True), self.normalizer,
                               record=trace)
        return ChainResult(rollout.state.current, rollout.methods, rollout.knobs, rollout)
