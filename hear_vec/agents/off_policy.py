"""The two pieces of the SAC and TD3 loops that are the same for both: the replay a run needs,
and one vectorized env step collected into it. Each learner's ``train`` (sac.py, td3.py) reads
top to bottom and calls these; its updates stay in its own file."""

from __future__ import annotations

from typing import Any

import torch

from hear_vec.agents.replay import ReplayBuffer, ensure_replay, replay_capacity

__all__ = ["collect_step", "prepare_replay"]


def prepare_replay(learner: Any, total_steps: int) -> ReplayBuffer:
    """``learner.replay`` sized for a run to ``total_steps`` (kept, grown or made); rebuilds
    the learner's step functions when it grew (captured CUDA graphs read the old tensors)."""
    cfg = learner.config
    capacity = replay_capacity(cfg.replay_size, total_steps, learner.world_size,
                               learner.num_envs)
    learner.replay, grown = ensure_replay(learner.replay, capacity, learner.num_envs,
                                          learner.obs_dim, learner.num_knobs, learner.device)
    if grown:
        learner._build_step_fns()
    return learner.replay


def collect_step(learner: Any, replay: ReplayBuffer) -> None:
    """One vectorized step: uniformly random actions for the first ``random_steps``
    transitions, then the learner's exploration policy; the transitions go to ``replay`` (with
    the true next observation of finished rows) and ``global_step`` advances."""
    obs = learner._obs
    assert obs is not None
    if learner.global_step < learner.config.random_steps:
        n = learner.num_envs
        method = torch.randint(0, learner.num_methods, (n,), device=learner.device)
        x = torch.rand(n, learner.num_knobs, device=learner.device) * 2 - 1
    else:
        method, x = learner._explore_fn(obs)
        method, x = method.clone(), x.clone()  # graph outputs are overwritten
    next_obs, reward, term, _, true_next = learner._env_step(learner.knobs.action(method, x))
    replay.add(obs, method, x, reward, true_next, term)
    learner._obs = next_obs
    learner.global_step += learner.steps_per_iteration
