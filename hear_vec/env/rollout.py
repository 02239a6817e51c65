"""Whole episodes on given audio through the one transition: inference and fixed-clip evaluation.

:func:`run_episodes` starts one episode per row on the given segments (no autoreset), asks a
policy for an action on the normalized observation at every step and steps
:func:`hear_vec.env.transition.step` until every row has finished (``max_steps`` steps, or
earlier for rows that chose the stop action, which then stay as they are). It is what
:class:`~hear_vec.inference.DenoisingAgent` (infer.py, evaluate) and training's evaluation run,
so both see exactly the observations the training environment built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from hear_vec.data import Segments
from hear_vec.env import transition
from hear_vec.env.observation import RunningNormalizer
from hear_vec.env.transition import EnvParams, EnvState

__all__ = ["Rollout", "run_episodes"]


@dataclass
class Rollout:
    """What :func:`run_episodes` returns (B rows, S = max_steps)."""

    state: EnvState                   #: the final state (``state.current`` is the output)
    methods: Tensor                   #: [B, S] chosen id per step (STOP included; -1 once done)
    knobs: Tensor                     #: [B, S, 3] knobs per step (0 once done)
    rewards: Tensor                   #: [B, S] reward per step (0 once done or not scoring)
    observations: list[Tensor] | None = None  #: per step, the normalized obs [B, D] the
    #                                   policy saw (when asked for)
    outputs: list[Tensor] | None = None       #: per step, the audio after it [B, T]


@torch.no_grad()
def run_episodes(params: EnvParams, segments: Segments,
                 policy: Callable[[Tensor], Tensor], normalizer: RunningNormalizer,
                 record: bool = False, stop_early: bool = True) -> Rollout:
    """One episode per row of ``segments`` with ``policy(normalized obs [B, D]) -> action
    [B, 4]``; ``params`` gives max_steps, the stop action, scoring and the reward (its
    ``num_envs``, ``corpus`` and ``autoreset`` are replaced: B rows, no autoreset).

    ``record`` keeps the observation and the audio of every step. ``stop_early`` ends the loop
    once every row has finished (one host read per step; results are the same either way).
    """
    rows = segments.noisy.shape[0]
    params = dataclasses.replace(params, num_envs=rows, corpus=None, autoreset=False)
    state = transition.start(params, segments)
    device = state.current.device
    steps = params.max_steps
    methods = torch.full((rows, steps), -1, dtype=torch.long, device=device)
    knobs = torch.zeros(rows, steps, 3, dtype=state.current.dtype, device=device)
    rewards = torch.zeros(rows, steps, dtype=state.current.dtype, device=device)
    observations: list[Tensor] | None = [] if record else None
    outputs: list[Tensor] | None = [] if record else None
    for t in range(steps):
        obs = normalizer.normalize(transition.observe(params, state))
        action = policy(obs)
        active = ~state.done
        state, _, reward, _, _, info = transition.step(params, state, action)
        methods[:, t] = torch.where(active, info["method"], -1)
        knobs[:, t] = torch.where(active.unsqueeze(-1), info["knobs"], 0.0)
        rewards[:, t] = reward
        if record:
            observations.append(obs)
            outputs.append(state.current)
        if stop_early and t + 1 < steps and bool(state.done.all()):
            break
    return Rollout(state, methods, knobs, rewards, observations, outputs)
