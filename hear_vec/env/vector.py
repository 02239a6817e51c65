"""Vector layouts of DenoiseEnv: the CUDA-graphed step and the multi-process CPU layout.

Both keep DenoiseEnv's surface (``reset``, ``step``, ``num_envs``, ``observation_dim``,
``action_spec``, ``device``, ``normalizer``, ``episode_stats``, ``draw_counter``), so the
learners and train.py use them in its place.

:class:`GraphedEnv` (CUDA; ``train.py --cudagraphs``) replays CUDA graphs of the env's step
function (transition + normalizer), one graph per pair of host flags of the shared-clock fast
path. All graphs read ONE set of static state tensors and a static action; after a replay the
graph's output state is copied into the static state (tensors the step passed through
unchanged -- the clean audio, the STOI reference -- are the static ones and are not copied),
so the next replay of any graph reads it. The first ``warmup`` calls of each pair run the
env's own step (eager or compiled) on a side stream before capture. ``api``:
:class:`CudaGraphAPI` on CUDA; :class:`EmulatedGraphAPI` checks the plumbing on the CPU.

:class:`SubprocEnv` (CPU; ``train.py --env-workers N``) steps ``num_envs`` rows in N worker
processes with ONE intra-op thread each, in lockstep, as one env of ``num_envs`` rows: on a
multi-core CPU single-threaded workers beat torch's intra-op threads (OpenMP hand-offs on
mid-size ops, ops below its grain staying serial). Actions, raw observations, rewards and
flags travel through shared memory, one pipe per worker carries the commands. The parent owns
the observation normalizer (as one DenoiseEnv would: the statistics of all rows), the workers
return raw observations. Worker k steps rows ``[lo_k, hi_k)`` with seed ``seed + k`` -- the
same distribution of episodes as one DenoiseEnv, not the same draws.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from hear_vec.env.denoise_env import DenoiseEnv, summarize_episodes
from hear_vec.env.observation import RunningNormalizer
from hear_vec.env.transition import EnvState

__all__ = ["GraphedEnv", "CudaGraphAPI", "EmulatedGraphAPI", "SubprocEnv"]


# ----------------------------------------------------------------------------- graphs
def _state_tensors(state: EnvState) -> list[Tensor]:
    """The tensors of an EnvState, flattened in field order (tuples expanded)."""
    out: list[Tensor] = []
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        if value is None:
            continue
        out.extend(value if isinstance(value, tuple) else [value])
    return out


def _copy_state(dst: EnvState, src: EnvState) -> None:
    """dst <- src tensor by tensor (skipping tensors that are already the same memory)."""
    for d, s in zip(_state_tensors(dst), _state_tensors(src)):
        if d.data_ptr() != s.data_ptr():
            d.copy_(s)


def _clone_state(state: EnvState) -> EnvState:
    out = copy.copy(state)
    for f in dataclasses.fields(state):
        v = getattr(state, f.name)
        if isinstance(v, tuple):
            setattr(out, f.name, type(v)(*(t.clone() for t in v)))
        elif v is not None:
            setattr(out, f.name, v.clone())
    return out


def _flatten_out(out: Any) -> list[Tensor]:
    """Tensors of a step's output (state, obs, reward, terminated, truncated, info)."""
    state, *rest = out
    tensors = _state_tensors(state)
    for item in rest:
        if isinstance(item, dict):
            tensors.extend(item[k] for k in sorted(item))
        else:
            tensors.append(item)
    return tensors


class CudaGraphAPI:
    """What GraphedEnv needs from CUDA: warm-up calls on a side stream, capture, replay."""

    def __init__(self) -> None:
        self.pool = None

    def warmup(self, fn: Callable[[], Any]) -> Any:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            out = fn()
        torch.cuda.current_stream().wait_stream(stream)
        return out

    def capture(self, fn: Callable[[], Any]) -> tuple[Callable[[], None], Any]:
        graph = torch.cuda.CUDAGraph()
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        with torch.cuda.graph(graph, pool=self.pool):
            out = fn()
        return graph.replay, out


class EmulatedGraphAPI:
    """A CPU stand-in with CUDA-graph semantics for checking GraphedEnv's plumbing: "replay"
    re-runs the captured function on the same static inputs and writes the results into the
    captured output tensors (a graph's outputs are fixed buffers overwritten by each replay)."""

    def __init__(self) -> None:
        self.mutable: list[Tensor] = []  # buffers a capture must leave untouched

    def warmup(self, fn: Callable[[], Any]) -> Any:
        return fn()

    def capture(self, fn: Callable[[], Any]) -> tuple[Callable[[], None], Any]:
        saved = [t.clone() for t in self.mutable]  # a real capture executes nothing
        out = fn()
        for t, v in zip(self.mutable, saved):
            t.copy_(v)

        def replay() -> None:
            new = fn()
            for o, n in zip(_flatten_out(out), _flatten_out(new)):
                o.copy_(n)

        return replay, out


class GraphedEnv:
    """A DenoiseEnv stepped through CUDA graphs of its step function (module docstring)."""

    def __init__(self, env: DenoiseEnv, warmup: int = 2, api: Any = None) -> None:
        if env.params.stop_action:
            raise ValueError("GraphedEnv needs the shared clock (no stop action): with a stop "
                             "action every step draws, use the env (compiled) directly")
        self.env, self.warmup = env, warmup
        self.api = api if api is not None else CudaGraphAPI()
        if hasattr(self.api, "mutable"):  # in-place state the step updates (normalizer)
            self.api.mutable = list(env.normalizer.buffers())
        self.calls: dict[tuple[bool, bool], int] = {}
        self.captured: dict[tuple[bool, bool], tuple[Callable[[], None], Any]] = {}
        self.static_state: EnvState | None = None
        self.static_action: Tensor | None = None

    def __getattr__(self, name: str) -> Any:  # the env's surface (reset, normalizer, ...)
        return getattr(self.env, name)

    def _load(self, action: Tensor) -> None:
        """Current state and action into the static buffers."""
        if self.static_state is None:
            self.static_state = _clone_state(self.env.state)
            self.static_action = action.clone()
            return
        if self.env.state is not self.static_state:
            _copy_state(self.static_state, self.env.state)
        self.static_action.copy_(action)

    def step(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]:
        env = self.env
        flags = env._next_flags()
        if flags not in self.captured and self.calls.get(flags, 0) < self.warmup:
            self.calls[flags] = self.calls.get(flags, 0) + 1
            return self.api.warmup(lambda: env.step(action))
        self._load(action.to(env.device))
        if flags not in self.captured:
            fn = env._step_fn(*flags)

            def run() -> Any:
                return fn(self.static_state, self.static_action)

            self.captured[flags] = self.api.capture(run)
        replay, out = self.captured[flags]
        replay()
        _copy_state(self.static_state, out[0])
        env.state = self.static_state
        env._advance_clock(flags)
        return out[1:]


# --------------------------------------------------------------------- worker processes
def _subproc_worker(env_kwargs: dict[str, Any], rows: tuple[int, int], seed: int,
                    shared: dict[str, Tensor], conn: Any) -> None:
    """One CPU worker of SubprocEnv: a DenoiseEnv of its rows (raw observations: an identity
    normalizer that never updates), one intra-op thread, stepped on command."""
    torch.set_num_threads(1)
    rss0 = _peak_rss_bytes()
    lo, hi = rows
    dim = env_kwargs.pop("observation_dim")
    env = DenoiseEnv(**env_kwargs, num_envs=hi - lo, seed=seed, update_normalizer=False,
                     normalizer=RunningNormalizer(dim, 0))
    sl = slice(lo, hi)
    with torch.inference_mode():
        while True:
            cmd, arg = conn.recv()
            if cmd == "reset":
                shared["obs"][sl] = env.reset(**arg)
            elif cmd == "step":
                obs, reward, term, trunc, info = env.step(shared["action"][sl].clone())
                shared["obs"][sl] = obs
                shared["reward"][sl] = reward
                shared["terminated"][sl] = term
                shared["truncated"][sl] = trunc
                shared["final"][sl] = info["final_observation"]
                shared["si_sdr"][sl] = info["si_sdr"]
                shared["si_sdr_start"][sl] = info["si_sdr_start"]
            elif cmd == "peak_rss":
                conn.send(_peak_rss_bytes() - rss0)
                continue
            elif cmd == "stats":
                conn.send(env.state.stats.clone() if env.state is not None else None)
                if arg and env.state is not None:
                    env.state.stats.zero_()
                continue
            elif cmd == "counter":
                conn.send(env.draw_counter())
                continue
            elif cmd == "close":
                conn.send("closed")
                return
            shared["lengths"][sl] = env.state.lengths
            conn.send("ok")


def _peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux ru_maxrss is in KiB; 0 elsewhere)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class SubprocEnv:
    """``workers`` single-threaded processes stepping one env of ``num_envs`` rows (module
    docstring). ``env_kwargs``: DenoiseEnv's arguments (``data`` may be a Corpus: its banks
    go to the workers through shared memory). Call :meth:`close` when done (also on exit)."""

    def __init__(self, num_envs: int, workers: int, seed: int = 0,
                 normalizer: RunningNormalizer | None = None, update_normalizer: bool = True,
                 **env_kwargs: Any) -> None:
        import torch.multiprocessing as mp

        if workers < 1 or workers > num_envs:
            raise ValueError(f"workers must be in [1, num_envs={num_envs}], got {workers}")
        device = torch.device(env_kwargs.get("device", "cpu"))
        if device.type != "cpu":
            raise ValueError(f"SubprocEnv runs CPU workers, got device {str(device)!r}")
        # one env in this process for the settings (params, spaces, corpus); it never steps
        self._local = DenoiseEnv(**env_kwargs, num_envs=num_envs, seed=seed)
        self.params, self.corpus = self._local.params, self._local.corpus
        self.num_envs, self.device, self.sample_rate = num_envs, device, self._local.sample_rate
        self.max_steps, self.methods = self.params.max_steps, self._local.methods
        self.observation_dim = self.params.observation_dim
        self.action_spec = self.params.action_spec
        self.normalizer = (normalizer if normalizer is not None else
                           RunningNormalizer(self.observation_dim, 2 * self.params.feature_dim))
        self.update_normalizer = update_normalizer
        dim = self.observation_dim
        self.shared = {
            "action": torch.zeros(num_envs, 4), "obs": torch.zeros(num_envs, dim),
            "final": torch.zeros(num_envs, dim), "reward": torch.zeros(num_envs),
            "terminated": torch.zeros(num_envs, dtype=torch.bool),
            "truncated": torch.zeros(num_envs, dtype=torch.bool),
            "si_sdr": torch.zeros(num_envs), "si_sdr_start": torch.zeros(num_envs),
            "lengths": torch.zeros(num_envs, dtype=torch.long)}
        for t in self.shared.values():
            t.share_memory_()
        kwargs = {**env_kwargs, "data": self.corpus, "observation_dim": dim}
        ctx = mp.get_context("spawn")
        bounds = [round(i * num_envs / workers) for i in range(workers + 1)]
        self.conns, self.procs = [], []
        for k in range(workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_subproc_worker, daemon=True, args=(
                dict(kwargs), (bounds[k], bounds[k + 1]), seed + k, self.shared, child))
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        self.state = None  # episode state lives in the workers

    def _all(self, cmd: str, arg: Any = None) -> list[Any]:
        for c in self.conns:
            c.send((cmd, arg))
        return [c.recv() for c in self.conns]

    def _observe(self, raw: Tensor) -> Tensor:
        if self.update_normalizer:
            self.normalizer.update(raw)
        return self.normalizer.normalize(raw)

    def reset(self, draws: int | None = None, seed: int | None = None) -> Tensor:
        """As DenoiseEnv.reset; a ``seed`` re-keys worker k with ``seed + k``."""
        if seed is not None:
            for k, c in enumerate(self.conns):
                c.send(("reset", {"draws": draws, "seed": seed + k}))
            for c in self.conns:
                c.recv()
        else:
            self._all("reset", {"draws": draws})
        return self._observe(self.shared["obs"].clone())

    def step(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]:
        if not isinstance(action, Tensor) or action.shape != (self.num_envs, 4):
            shape = tuple(action.shape) if isinstance(action, Tensor) else type(action).__name__
            raise ValueError(f"action must be a tensor of shape ({self.num_envs}, 4), got {shape}")
        self.shared["action"].copy_(action)
        self._all("step")
        s = self.shared
        obs = self._observe(s["obs"].clone())
        info = {"final_observation": self.normalizer.normalize(s["final"].clone()),
                "si_sdr": s["si_sdr"].clone(), "si_sdr_start": s["si_sdr_start"].clone()}
        return obs, s["reward"].clone(), s["terminated"].clone(), s["truncated"].clone(), info

    def draw_counter(self) -> int:
        return int(self._all("counter")[0])

    def lengths(self) -> Tensor:
        """[num_envs] valid samples of the rows' current segments."""
        return self.shared["lengths"].clone()

    def worker_peak_rss(self) -> int:
        """Sum over the workers of their peak RSS growth since they started (bytes)."""
        return int(sum(self._all("peak_rss")))

    def episode_stats(self, reset: bool = True) -> dict[str, float]:
        """The workers' episode accumulators summed (same keys as DenoiseEnv's)."""
        parts = [p for p in self._all("stats", reset) if p is not None]
        if not parts:
            return {}
        return summarize_episodes(self.params, torch.stack(parts).sum(0).tolist())

    def close(self) -> None:
        """Stops the workers (idempotent)."""
        if not self.procs:
            return
        try:
            self._all("close")
        except (BrokenPipeError, EOFError, OSError):
            pass
        for p in self.procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
        self.procs, self.conns = [], []

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
