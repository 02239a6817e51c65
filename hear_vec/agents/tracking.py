"""Device-side bookkeeping of the learners (episode returns, metric sums) and the evaluation
loop of a policy on a VecEnv."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["EpisodeTracker", "MetricAccumulator", "evaluate_policy"]


class EpisodeTracker:
    """Running episodic return/length per env; finished-episode sums accumulated on the device."""

    def __init__(self, num_envs: int, device: torch.device) -> None:
        self.ret = torch.zeros(num_envs, device=device)
        self.len = torch.zeros(num_envs, device=device)
        self.stats = torch.zeros(3, device=device)  # sum return, sum length, count

    def update(self, reward: Tensor, done: Tensor) -> None:
        d = done.to(self.ret.dtype)
        self.ret += reward
        self.len += 1
        self.stats += torch.stack([(self.ret * d).sum(), (self.len * d).sum(), d.sum()])
        self.ret *= 1 - d
        self.len *= 1 - d

    def reset(self) -> None:
        self.ret.zero_()
        self.len.zero_()
        self.stats.zero_()


class MetricAccumulator:
    """Sums of metric vectors per group on the device; the host only counts calls."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.groups: dict[str, tuple[tuple[str, ...], Tensor]] = {}
        self.counts: dict[str, int] = {}

    def add(self, group: str, names: tuple[str, ...], values: Tensor) -> None:
        if group not in self.groups:
            self.groups[group] = (names, torch.zeros(len(names), device=self.device))
            self.counts[group] = 0
        self.groups[group][1].add_(values)
        self.counts[group] += 1

    def layout(self) -> list[tuple[str, tuple[str, ...], int]]:
        return [(g, names, self.counts[g]) for g, (names, _) in self.groups.items()]

    def sums(self) -> Tensor:
        if not self.groups:
            return torch.zeros(0, device=self.device)
        return torch.cat([s for _, s in self.groups.values()])

    def clear(self) -> None:
        for _, s in self.groups.values():
            s.zero_()
        for g in self.counts:
            self.counts[g] = 0


@torch.no_grad()
def evaluate_policy(
    policy: Callable[[Tensor], Tensor],
    env: Any,
    num_episodes: int,
    max_iterations: int = 1_000_000,
    check_every: int = 32,
) -> dict[str, float]:
    """Run ``policy(obs) -> action`` on ``env`` until every env row finished
    ``ceil(num_episodes / num_envs)`` episodes; returns the mean / std / min of those episodes'
    returns (``num_envs * ceil(num_episodes / num_envs)`` episodes) and their count.

    The host reads the completion count only every ``check_every`` steps.
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    n = env.num_envs
    per_env = -(-num_episodes // n)
    obs = env.reset()
    dev = obs.device
    ret = torch.zeros(n, device=dev)
    count = torch.zeros(n, dtype=torch.long, device=dev)
    total = torch.zeros(n, device=dev)
    total_sq = torch.zeros(n, device=dev)
    minimum = torch.full((n,), math.inf, device=dev)
    for it in range(max_iterations):
        obs, reward, term, trunc, _ = env.step(policy(obs))
        done = term | trunc
        ret += reward
        take = done & (count < per_env)
        total += torch.where(take, ret, 0.0)
        total_sq += torch.where(take, ret.square(), 0.0)
        minimum = torch.where(take, torch.minimum(minimum, ret), minimum)
        count += done.long()
        ret = torch.where(done, 0.0, ret)
        if (it + 1) % check_every == 0 and bool((count >= per_env).all()):
            break
    else:
        if not bool((count >= per_env).all()):
            raise RuntimeError(f"evaluation did not finish {per_env} episodes per env")
    m = n * per_env
    mean = float(total.sum()) / m
    var = max(float(total_sq.sum()) / m - mean * mean, 0.0)
    return {
        "mean_return": mean,
        "std_return": math.sqrt(var),
        "min_return": float(minimum.min()),
        "episodes": float(m),
    }
