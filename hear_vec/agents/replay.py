"""The replay storage of SAC and TD3: a preallocated ring of transitions on the device."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["ReplayBuffer", "replay_capacity", "ensure_replay"]


class ReplayBuffer:
    """Preallocated ring of transitions on the device, written ``num_envs`` rows at a time.

    Stores ``obs[D]``, ``method`` (long), unit knobs ``x[C]``, ``reward``, the true next obs
    (the final obs on episode ends) and ``terminated`` (float; truncation bootstraps).
    The write pointer and size are host ints (deterministic, no syncs).
    """

    FIELDS = ("obs", "method", "knobs", "reward", "next_obs", "terminated")

    def __init__(
        self, capacity: int, num_envs: int, obs_dim: int, num_knobs: int, device: torch.device
    ) -> None:
        capacity = max(num_envs, (capacity // num_envs) * num_envs)
        self.capacity, self.num_envs = capacity, num_envs
        self.obs = torch.zeros(capacity, obs_dim, device=device)
        self.method = torch.zeros(capacity, dtype=torch.long, device=device)
        self.knobs = torch.zeros(capacity, num_knobs, device=device)
        self.reward = torch.zeros(capacity, device=device)
        self.next_obs = torch.zeros(capacity, obs_dim, device=device)
        self.terminated = torch.zeros(capacity, device=device)
        self.ptr = 0
        self.size = 0

    def add(
        self,
        obs: Tensor,
        method: Tensor,
        knobs: Tensor,
        reward: Tensor,
        next_obs: Tensor,
        terminated: Tensor,
    ) -> None:
        s = slice(self.ptr, self.ptr + self.num_envs)
        self.obs[s] = obs
        self.method[s] = method
        self.knobs[s] = knobs
        self.reward[s] = reward
        self.next_obs[s] = next_obs
        self.terminated[s] = terminated.to(self.terminated.dtype)
        self.ptr = (self.ptr + self.num_envs) % self.capacity
        self.size = min(self.size + self.num_envs, self.capacity)

    def grow(self, capacity: int) -> None:
        """Reallocate with a larger capacity, keeping the stored rows (oldest first)."""
        capacity = (capacity // self.num_envs) * self.num_envs
        if capacity <= self.capacity:
            return
        order = torch.arange(self.size, device=self.obs.device)
        if self.size == self.capacity:  # wrapped: the oldest row sits at ptr
            order = (order + self.ptr) % self.capacity
        for f in self.FIELDS:
            old = getattr(self, f)
            new = old.new_zeros((capacity, *old.shape[1:]))
            new[: self.size] = old[order]
            setattr(self, f, new)
        self.capacity, self.ptr = capacity, self.size % capacity

    def sample_idx(self, batch_size: int) -> Tensor:
        return torch.randint(0, self.size, (batch_size,), device=self.obs.device)

    def gather(self, idx: Tensor) -> tuple[Tensor, ...]:
        return tuple(getattr(self, f)[idx] for f in self.FIELDS)

    def state_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {f: getattr(self, f)[: self.size].clone() for f in self.FIELDS}
        d.update(ptr=self.ptr, size=self.size, capacity=self.capacity)
        return d

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        n = min(int(d["size"]), self.capacity)
        for f in self.FIELDS:
            getattr(self, f)[:n] = d[f][:n].to(getattr(self, f).device)
        self.size = n
        self.ptr = int(d["ptr"]) % self.capacity if n == self.capacity else n % self.capacity


def replay_capacity(replay_size: int, total_steps: int, world_size: int, num_envs: int) -> int:
    """The replay capacity a run of ``total_steps`` needs on one rank: ``min(replay_size,
    transitions per rank + num_envs)`` (short runs do not allocate ``replay_size``)."""
    per_rank_total = -(-max(total_steps, 1) // world_size)
    return min(replay_size, per_rank_total + num_envs)


def ensure_replay(
    replay: ReplayBuffer | None,
    capacity: int,
    num_envs: int,
    obs_dim: int,
    num_knobs: int,
    device: torch.device,
) -> tuple[ReplayBuffer, bool]:
    """``(replay, grown)``: a new buffer of ``capacity`` when there is none, the given one grown
    when ``capacity`` exceeds it by at least a row of envs (``grown`` True: captured graphs that
    read the old tensors must be rebuilt), else the given one unchanged."""
    if replay is None:
        return ReplayBuffer(capacity, num_envs, obs_dim, num_knobs, device), False
    if capacity >= replay.capacity + num_envs:
        replay.grow(capacity)
        return replay, True
    return replay, False
