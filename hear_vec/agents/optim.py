"""Device helpers of the updates: CUDA-graph wrapper, fused Adam with tensor learning rates,
optimizer state loading, and the distributed helpers (rank info, gradient averaging,
parameter broadcast).

Distributed runs: when ``torch.distributed`` is initialized with world size > 1, the learners
broadcast rank 0's parameters at construction and, after every backward pass, average the
gradients across ranks with one ``all_reduce`` of the flattened gradients of the parameters
that the optimizer is about to step (DDP's arithmetic without wrapping the modules, so the
twin critics, target networks and temperatures stay plain modules and the update stays
capturable).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "CudaGraphFn",
    "make_adam",
    "optimizer_step",
    "load_optimizer_state",
    "world_info",
    "average_gradients",
    "broadcast_modules",
]


class CudaGraphFn:
    """Wraps ``fn(*tensors) -> tensor | tuple[tensor, ...]`` into a CUDA graph.

    The first ``warmup`` calls run ``fn`` eagerly on a side stream (real calls, as in eager
    mode: they also create lazily allocated optimizer state); the next call captures ``fn``
    on static copies of its arguments and replays it; later calls copy the arguments into the
    static inputs and replay. Outputs are static tensors overwritten by the next call: consume
    them before calling again. Argument shapes must not change after capture.
    """

    def __init__(self, fn: Callable[..., Any], warmup: int = 2) -> None:
        self.fn, self.warmup = fn, warmup
        self.reset()

    def reset(self) -> None:
        self._graph: torch.cuda.CUDAGraph | None = None
        self._calls = 0
        self._static_in: list[Tensor] = []
        self._static_out: Any = None

    def __call__(self, *args: Tensor) -> Any:
        if self._graph is not None:
            for s, a in zip(self._static_in, args):
                s.copy_(a)
            self._graph.replay()
            return self._static_out
        if self._calls < self.warmup:
            self._calls += 1
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                out = self.fn(*args)
            torch.cuda.current_stream().wait_stream(stream)
            return out
        self._static_in = [a.clone() for a in args]
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._static_out = self.fn(*self._static_in)
        self._graph = graph
        graph.replay()
        return self._static_out


def make_adam(
    groups: Sequence[tuple[Iterable[nn.Parameter], float]], device: torch.device, eps: float = 1e-8
) -> torch.optim.Adam:
    """Fused Adam whose per-group learning rates are device tensors (so they can be masked or
    annealed inside compiled code / CUDA graphs); capturable on CUDA."""
    param_groups = [
        {"params": list(p), "lr": torch.tensor(float(lr), device=device)} for p, lr in groups
    ]
    return torch.optim.Adam(param_groups, eps=eps, fused=True, capturable=device.type == "cuda")


@torch.compiler.disable
def optimizer_step(opt: torch.optim.Optimizer) -> None:
    """``opt.step()`` kept out of ``torch.compile`` graphs: the fused Adam is already one kernel
    per parameter group, and tracing it multiplies CPU compile times (CUDA graphs still capture
    it)."""
    opt.step()


def load_optimizer_state(opt: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    """``opt.load_state_dict`` that keeps the optimizer's own lr tensors (values copied from the
    checkpoint) and its device flags, so a checkpoint moves between CPU and CUDA."""
    lrs = [g["lr"] for g in opt.param_groups]
    flags = [(g["fused"], g["capturable"]) for g in opt.param_groups]
    opt.load_state_dict(state)  # type: ignore[arg-type]
    for g, lr, (fused, capturable) in zip(opt.param_groups, lrs, flags):
        if isinstance(lr, Tensor):
            lr.copy_(torch.as_tensor(g["lr"], dtype=lr.dtype))
        g["lr"], g["fused"], g["capturable"] = lr, fused, capturable
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            if "step" in st and isinstance(st["step"], Tensor):
                st["step"] = st["step"].to(device=p.device, dtype=torch.float32)


def world_info() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when torch.distributed is not initialized."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def average_gradients(params: Sequence[Tensor], world_size: int) -> None:
    """Average ``.grad`` of ``params`` over ranks: one all_reduce of the flattened gradients
    (what DDP computes). No-op for world size 1. Missing grads count as zeros."""
    if world_size <= 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])  # type: ignore[union-attr]
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        n = g.numel()  # type: ignore[union-attr]
        g.copy_(flat[offset : offset + n].view_as(g))  # type: ignore[union-attr]
        offset += n


def broadcast_modules(modules: Iterable[nn.Module], world_size: int) -> None:
    """Copy rank 0's parameters and buffers to every rank (identical starting points)."""
    if world_size <= 1:
        return
    for m in modules:
        for t in [*m.parameters(), *m.buffers()]:
            dist.broadcast(t.data, src=0)
