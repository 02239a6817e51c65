"""A trained agent as a batched denoiser: observation → policy → operator, ``max_steps`` times.

:class:`DenoisingAgent` is what ``infer.py`` and ``python -m hear_vec.evaluate`` use. It builds
exactly the observation the environment built in training (features of the original noisy
audio and of the current audio, previous method one-hot and knobs, step fraction), normalizes
it with the normalizer saved in ``model.pt`` and acts with the deterministic policy.
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
from hear_vec.env.observation import RunningNormalizer, build_observation
from hear_vec.features import NUM_FEATURES, extract_features
from hear_vec.ops import METHODS, denoise

__all__ = ["ChainResult", "DenoisingAgent"]


@dataclass
class ChainResult:
    audio: Tensor    # [B, T] denoised, zero beyond lengths
    methods: Tensor  # [B, S] method id chosen at each step
    knobs: Tensor    # [B, S, 3] knobs chosen at each step


class DenoisingAgent:
    """A policy with its observation normalizer and settings, loaded from ``model.pt``."""

    def __init__(self, policy: torch.nn.Module, normalizer: RunningNormalizer, max_steps: int,
                 sample_rate: int, algo: str, meta: dict[str, Any] | None = None) -> None:
        self.policy = policy
        self.normalizer = normalizer
        self.max_steps = int(max_steps)
        self.sample_rate = int(sample_rate)
        self.algo = algo
        self.meta = meta or {}
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
            if int(payload["num_features"]) != NUM_FEATURES:
                raise CheckpointError(f"{path}: trained with {payload['num_features']} features, "
                                      f"this hear_vec computes {NUM_FEATURES}")
            policy = load_policy(payload["policy"], device)
            normalizer = RunningNormalizer.from_export(payload["normalizer"], device)
            return cls(policy, normalizer, int(payload["max_steps"]),
                       int(payload["audio"]["sample_rate"]), str(payload["algo"]),
                       meta={"path": str(Path(path)), "args": payload.get("args", {}),
                             "final_eval": payload.get("final_eval", {})})
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: incomplete or incompatible model file "
                                  f"({type(exc).__name__}: {str(exc)[:160]})") from None

    @property
    def device(self) -> torch.device:
        return self.normalizer.mean.device

    @torch.no_grad()
    def run(self, noisy: Tensor, lengths: Tensor | None = None,
            max_steps: int | None = None) -> ChainResult:
        """Denoise a batch: noisy [B, T] float at ``self.sample_rate``, lengths [B] or None."""
        steps = self.max_steps if max_steps is None else int(max_steps)
        if steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {steps}")
        noisy = noisy.to(self.device, torch.float32)
        batch = noisy.shape[0]
        if lengths is None:
            lengths = torch.full((batch,), noisy.shape[-1], dtype=torch.long, device=self.device)
        lengths = lengths.to(self.device)
        noisy_features = extract_features(noisy, lengths, self.sample_rate)
        current, current_features = noisy, noisy_features
        prev_method = torch.full((batch,), -1, dtype=torch.long, device=self.device)
        prev_knobs = torch.zeros(batch, 3, device=self.device)
        methods, knobs_taken = [], []
        for t in range(steps):
            step = torch.full((batch,), t, dtype=torch.long, device=self.device)
            raw = build_observation(noisy_features, current_features, prev_method, prev_knobs,
                                    step, self.max_steps, self.num_methods)
            action = self.policy(self.normalizer.normalize(raw), True)
            method = action[:, 0].round().clamp(0, self.num_methods - 1).long()
            knobs = action[:, 1:4].clamp(0.0, 1.0)
            current = denoise(current, method, knobs, lengths)
            current_features = extract_features(current, lengths, self.sample_rate)
            prev_method, prev_knobs = method, knobs
            methods.append(method)
            knobs_taken.append(knobs)
        return ChainResult(current, torch.stack(methods, 1), torch.stack(knobs_taken, 1))
