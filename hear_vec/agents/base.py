"""What the three learners share besides their algorithm: the env protocol (:class:`VecEnv`),
the hooks (:class:`TrainHooks`), :class:`NonFiniteLossError` and :class:`LearnerBase`
(construction checks, counters, the env step with episode bookkeeping, read-backs, hook calls,
state dicts). Each learner's own file holds its training loop; the helpers here are called by
those loops, they do not call into them.

Hooks (what ``train(total_steps, hooks)`` calls; every method is optional)
-------------------------------------------------------------------------
- ``hooks.on_log(step: int, metrics: dict[str, float])`` every ``config.log_interval``
  iterations and once at the end of ``train``. Keys: ``charts/episodic_return``,
  ``charts/episodic_length`` (means over episodes finished since the last read-back; absent when
  none finished), ``charts/SPS``, ``charts/global_step``, ``losses/*`` (means since the last
  read-back).
- ``hooks.on_eval(step: int) -> bool | None`` each time ``global_step`` crosses a multiple of
  ``config.eval_interval`` (env transitions): evaluate / checkpoint here; return True to stop
  training after this iteration (early stopping). A read-back (and the non-finite check)
  always happens first, so a checkpoint written from ``on_eval`` is finite.
- ``hooks.should_stop() -> bool`` after every iteration (a host flag, e.g. set by a signal
  handler): True ends ``train`` at this iteration boundary, so the learner state is whole
  (PPO: between rollouts; SAC/TD3: between vectorized steps).

Non-finite losses are detected at each read-back (the sums of the losses since the previous
read-back, and every network parameter) and raise :class:`NonFiniteLossError`.

Step counters and the ``*_steps`` config fields count transitions of all ranks together;
read-backs are averaged across ranks (see :mod:`hear_vec.agents.optim` for the gradients).

Why one module (~420 lines): :class:`LearnerBase`'s helpers (env step, read-back, state dicts)
share its counters, trackers and accumulators; the protocols beside it are what it checks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any, Protocol, runtime_checkable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from hear_vec.agents.config import LearnerConfig
from hear_vec.agents.networks import KnobScaler
from hear_vec.agents.optim import (
    CudaGraphFn,
    average_gradients,
    broadcast_modules,
    load_optimizer_state,
    optimizer_step,
    world_info,
)
from hear_vec.agents.replay import ReplayBuffer
from hear_vec.agents.tracking import EpisodeTracker, MetricAccumulator, evaluate_policy
from hear_vec.env.spaces import ActionSpec

__all__ = ["VecEnv", "TrainHooks", "NonFiniteLossError", "LearnerBase"]


@runtime_checkable
class VecEnv(Protocol):
    """What the learners consume: a batch of ``num_envs`` environments on ``device``.

    ``reset() -> obs[num_envs, observation_dim]`` (float32, already normalized).
    ``step(action[num_envs, 1 + C]) -> (obs, reward[num_envs], terminated[num_envs] bool,
    truncated[num_envs] bool, info)`` with same-step autoreset: the obs of a finished row is
    the first obs of its next episode and ``info["final_observation"]`` holds the last obs of
    the finished episode (rows that did not finish may hold anything).
    """

    num_envs: int
    observation_dim: int
    device: torch.device
    action_spec: ActionSpec

    def reset(self) -> Tensor: ...

    def step(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]: ...


class TrainHooks(Protocol):
    """Callbacks of ``train``; every method is optional (looked up with ``getattr``)."""

    def on_log(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_eval(self, step: int) -> bool | None: ...

    def should_stop(self) -> bool: ...


class NonFiniteLossError(RuntimeError):
    """A loss or a network parameter became NaN/inf; the learner state is no longer usable.

    Raised at a read-back (every ``log_interval`` iterations and before every ``on_eval``), so
    anything saved from ``on_eval`` before it was finite.
    """


def _check_env(env: Any) -> None:
    for name in ("num_envs", "observation_dim", "action_spec", "reset", "step"):
        if not hasattr(env, name):
            raise TypeError(f"env does not follow the VecEnv protocol: no attribute {name!r}")
    if not isinstance(env.action_spec, ActionSpec):
        raise TypeError(
            f"env.action_spec must be a hear_vec.agents.ActionSpec, got {type(env.action_spec)}"
        )
    for name in ("num_envs", "observation_dim"):
        v = getattr(env, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"env.{name} must be a positive int, got {v!r}")


class LearnerBase:
    """Everything the three learners share except the algorithm itself.

    Subclasses set ``algo``, build networks/optimizers in ``__init__`` and implement
    ``_modules()`` (name -> module saved in ``state_dict``), ``_optimizers()``,
    ``_build_step_fns()`` (creates the possibly compiled / graphed functions; called again
    after ``load_state_dict``), ``policy`` (an ``nn.Module`` with
    ``forward(obs, deterministic) -> action``), ``inference_state()`` and ``train()``.
    """

    algo = ""
    config: LearnerConfig
    policy: nn.Module

    def __init__(self, env: VecEnv, config: LearnerConfig, device: Any = None) -> None:
        _check_env(env)
        config.validate()
        self.env, self.config = env, config
        self.device = torch.device(device if device is not None else env.device)
        env_device = torch.device(getattr(env, "device", self.device))
        if env_device.type != self.device.type:
            raise ValueError(
                f"the env lives on {str(env_device)!r} but the learner on {str(self.device)!r}; "
                "they must share the device"
            )
        if config.cudagraphs and self.device.type != "cuda":
            raise ValueError(
                f"cudagraphs=True needs a CUDA device, got device {str(self.device)!r}"
            )
        self.spec: ActionSpec = env.action_spec
        self.num_envs, self.obs_dim = env.num_envs, env.observation_dim
        self.num_methods, self.num_knobs = self.spec.num_methods, self.spec.num_knobs
        self.rank, self.world_size = world_info()
        self.steps_per_iteration = self.num_envs * self.world_size
        self.knobs = KnobScaler(self.spec).to(self.device)
        self.global_step = 0
        self.iteration = 0
        self.num_updates = 0
        self.metrics = MetricAccumulator(self.device)
        self.episodes = EpisodeTracker(self.num_envs, self.device)
        self.last_metrics: dict[str, float] = {}
        self._obs: Tensor | None = None
        self._hooks: Any = None
        self._mark = (time.perf_counter(), 0)
        self._pending = False

    # -- subclass interface ----------------------------------------------------------------
    def _modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def _build_step_fns(self) -> None:
        raise NotImplementedError

    def inference_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def train(self, total_steps: int, hooks: Any = None) -> dict[str, float]:
        raise NotImplementedError

    # -- shared helpers --------------------------------------------------------------------
    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` compiled and/or captured in a CUDA graph, as the config asks."""
        if self.config.compile:
            fn = torch.compile(fn, backend=self.config.compile_backend)
        if self.config.cudagraphs:
            fn = CudaGraphFn(fn)
        return fn

    def _optimize(
        self,
        opt: torch.optim.Optimizer,
        loss: Tensor,
        params: Sequence[nn.Parameter],
        max_grad_norm: float = 0.0,
    ) -> Tensor:
        """zero_grad -> backward -> average over ranks -> optional clip -> step. Returns the
        (pre-clip) gradient norm when clipping, else a zero tensor."""
        opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(params, self.world_size)
        norm = torch.zeros((), device=loss.device)
        if max_grad_norm > 0:
            norm = nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer_step(opt)
        return norm

    def _init_distributed(self, *modules: nn.Module) -> None:
        """Rank 0's initial weights everywhere (call before copying target networks)."""
        broadcast_modules(modules, self.world_size)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        """The policy's env action ``[B, 1 + C]`` for ``obs[B, D]`` (``deterministic``: mode)."""
        if obs.dim() != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"obs must be [batch, {self.obs_dim}], got {tuple(obs.shape)}")
        return self.policy(obs.to(self.device), deterministic)

    def evaluate(self, env: Any, num_episodes: int) -> dict[str, float]:
        """Mean return of the deterministic policy on ``env`` (see :func:`evaluate_policy`)."""
        return evaluate_policy(lambda o: self.act(o, True), env, num_episodes)

    def _begin(self, total_steps: int, hooks: Any) -> None:
        if isinstance(total_steps, bool) or int(total_steps) != total_steps or total_steps < 0:
            raise ValueError(f"total_steps must be a non-negative int, got {total_steps!r}")
        self._hooks = hooks
        if self._obs is None:
            obs = self.env.reset()
            if obs.shape != (self.num_envs, self.obs_dim):
                raise ValueError(
                    f"env.reset() returned {tuple(obs.shape)}, expected "
                    f"({self.num_envs}, {self.obs_dim})"
                )
            self._obs = obs.to(self.device)
            self.episodes.reset()
        self._mark = (time.perf_counter(), self.global_step)

    def _env_step(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Steps the env; returns ``(next_obs, reward, terminated, truncated, true_next_obs)``
        where ``true_next_obs`` is the final obs on rows that finished. Updates episode stats."""
        obs, reward, term, trunc, info = self.env.step(action)
        done = term | trunc
        final = info.get("final_observation")
        true_next = obs if final is None else torch.where(done.unsqueeze(-1), final, obs)
        self.episodes.update(reward, done)
        return obs, reward, term, trunc, true_next

    def _end_iteration(self, prev_step: int) -> bool:
        """Counts an iteration and runs the read-back / hooks that are due; returns True when
        training should go on (``on_eval`` returned nothing truthy)."""
        cfg = self.config
        self.iteration += 1
        self._pending = True
        log_now = self.iteration % cfg.log_interval == 0
        eval_now = (
            cfg.eval_interval > 0
            and self.global_step // cfg.eval_interval > prev_step // cfg.eval_interval
        )
        if log_now or eval_now:
            metrics = self._read_back()  # every read-back is logged, none is dropped
            if hasattr(self._hooks, "on_log"):
                self._hooks.on_log(self.global_step, metrics)
            if eval_now and hasattr(self._hooks, "on_eval"):
                if self._hooks.on_eval(self.global_step):
                    return False
        if hasattr(self._hooks, "should_stop") and self._hooks.should_stop():
            return False
        return True

    def _finish(self) -> dict[str, float]:
        if self._pending:
            metrics = self._read_back()
            if hasattr(self._hooks, "on_log"):
                self._hooks.on_log(self.global_step, metrics)
        self._hooks = None
        return self.last_metrics

    def _read_back(self) -> dict[str, float]:
        """One device->host copy of the accumulated metrics; raises on non-finite values."""
        params = [p for m in self._modules().values() for p in m.parameters()]
        norms = torch._foreach_norm([p.detach() for p in params])
        bad = (~torch.isfinite(torch.stack(norms))).sum().to(torch.float32).reshape(1)
        vec = torch.cat([self.metrics.sums(), self.episodes.stats, bad])
        if self.world_size > 1:
            dist.all_reduce(vec)
        values = vec.tolist()
        now = time.perf_counter()
        t0, s0 = self._mark
        self._mark = (now, self.global_step)
        out: dict[str, float] = {
            "charts/global_step": float(self.global_step),
            "charts/SPS": (self.global_step - s0) / max(now - t0, 1e-9),
        }
        i = 0
        for _, names, count in self.metrics.layout():
            for name in names:
                if count:
                    out[name] = values[i] / (count * self.world_size)
                i += 1
        ret_sum, len_sum, n_ep, n_bad = values[i : i + 4]
        if n_ep > 0:
            out["charts/episodic_return"] = ret_sum / n_ep
            out["charts/episodic_length"] = len_sum / n_ep
        self.metrics.clear()
        self.episodes.stats.zero_()
        self._pending = False
        bad_names = [k for k, v in out.items() if k.startswith("losses/") and not math.isfinite(v)]
        if bad_names or n_bad > 0:
            detail = ", ".join(f"{k}={out[k]}" for k in bad_names) or "network parameters"
            raise NonFiniteLossError(
                f"{self.algo}: non-finite loss at global step {self.global_step} ({detail}); "
                "training stopped, the last checkpoint written before this point is intact"
            )
        self.last_metrics = out
        return out

    # -- state -----------------------------------------------------------------------------
    def state_dict(self, include_replay: bool = False) -> dict[str, Any]:
        """Everything ``--resume`` needs, as tensors and plain containers (loads with
        ``torch.load(..., weights_only=True)``). Keys: ``algo``, ``format_version``, ``config``,
        ``observation_dim``, ``num_envs``, ``action_spec``, ``counters`` (global_step,
        iteration, num_updates), ``modules`` (name -> state_dict), ``optimizers``,
        ``rng`` (``cpu`` and, on CUDA, ``cuda`` generator states), ``position`` (the current
        observation and the running episode returns / lengths: where the loop stands in the
        env, for a bit-exact resume together with the env's own state) and, if asked,
        ``replay`` (SAC/TD3; train.py saves it in its own file, ``replay.pt``)."""
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        state: dict[str, Any] = {
            "algo": self.algo,
            "format_version": 1,
            "config": _plain(asdict(self.config)),
            "observation_dim": self.obs_dim,
            "num_envs": self.num_envs,
            "action_spec": self.spec.to_dict(),
            "counters": {
                "global_step": self.global_step,
                "iteration": self.iteration,
                "num_updates": self.num_updates,
            },
            "modules": {k: m.state_dict() for k, m in self._modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self._optimizers().items()},
            "rng": rng,
        }
        if self._obs is not None:
            state["position"] = {
                "obs": self._obs.clone(),
                "episode_return": self.episodes.ret.clone(),
                "episode_length": self.episodes.len.clone(),
            }
        replay = getattr(self, "replay", None)
        if include_replay and replay is not None:
            state["replay"] = replay.state_dict()
        return state

    def load_state_dict(
        self, state: Mapping[str, Any], restore_rng: bool = True, restore_position: bool = False
    ) -> None:
        """Restores networks, optimizers, counters, RNG states (and the replay if saved).

        The learner keeps its constructor config (the saved one is informational). The env is
        reset at the next ``train`` call unless ``restore_position`` (the caller restored the
        env's state as it was when ``state`` was taken): then the loop goes on from the saved
        observation and running episode statistics. ``restore_rng`` sets the global torch
        (and CUDA) RNG to the saved state; with several ranks each rank then reseeds to a
        distinct stream derived from it (the checkpoint holds rank 0's state)."""
        if state.get("algo") != self.algo:
            raise ValueError(f"checkpoint is for algo {state.get('algo')!r}, not {self.algo!r}")
        if int(state["observation_dim"]) != self.obs_dim:
            raise ValueError(
                f"checkpoint observation_dim {state['observation_dim']} != env's {self.obs_dim}"
            )
        if ActionSpec.from_dict(state["action_spec"]) != self.spec:
            raise ValueError(
                f"checkpoint action_spec {state['action_spec']} != env's {self.spec.to_dict()}"
            )
        for k, m in self._modules().items():
            m.load_state_dict(state["modules"][k])
        for k, o in self._optimizers().items():
            load_optimizer_state(o, state["optimizers"][k])
        c = state["counters"]
        self.global_step = int(c["global_step"])
        self.iteration = int(c["iteration"])
        self.num_updates = int(c["num_updates"])
        if restore_rng:
            torch.set_rng_state(state["rng"]["cpu"].cpu())
            if self.device.type == "cuda" and "cuda" in state["rng"]:
                torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), self.device)
            if self.world_size > 1:
                # one checkpoint (rank 0's) for all ranks: derive distinct per-rank streams
                seed = int(torch.randint(0, 2**62, (1,)))
                torch.manual_seed(seed + 1_000_003 * self.rank)
        if "replay" in state and hasattr(self, "replay"):
            saved = state["replay"]
            cap = min(self.config.replay_size, int(saved["capacity"]))  # type: ignore[attr-defined]
            if self.replay is None:
                self.replay = ReplayBuffer(
                    cap, self.num_envs, self.obs_dim, self.num_knobs, self.device
                )
            else:
                self.replay.grow(cap)
            self.replay.load_state_dict(saved)
        self._obs = None
        position = state.get("position")
        if restore_position and position is not None:
            self._obs = position["obs"].to(self.device).clone()
            self.episodes.ret.copy_(position["episode_return"])
            self.episodes.len.copy_(position["episode_length"])
        self.metrics = MetricAccumulator(self.device)
        self._build_step_fns()

    def _inference_header(self) -> dict[str, Any]:
        return {
            "algo": self.algo,
            "format_version": 1,
            "observation_dim": self.obs_dim,
            "action_spec": self.spec.to_dict(),
            "hidden_dims": [int(h) for h in self.config.hidden_dims],
        }


def _plain(obj: Any) -> Any:
    """Config values as plain containers (tuples -> lists)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
