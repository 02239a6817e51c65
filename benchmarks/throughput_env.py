"""The engine side of ``benchmarks/throughput.py``: building the env for the flags, random
actions, the per-phase breakdown, timing one num_envs (:func:`run_setting`, in a fresh worker
process on the CPU via :func:`measure`) and the ``--sync-check`` mode."""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import sync, time_call  # noqa: E402
from hear_vec.env.vector import EmulatedGraphAPI, GraphedEnv, SubprocEnv  # noqa: E402
from hear_vec.runtime import tune_cpu_allocator  # noqa: E402


def _episodes(steps: int, max_steps: int) -> int:
    return max(1, -(-steps // max_steps)) * max_steps


# --------------------------------------------------------------------------- environment
def env_kwargs(args: argparse.Namespace, corpus: Any) -> dict[str, Any]:
    """DenoiseEnv's arguments for these flags (all but num_envs)."""
    return dict(
        data=corpus, device=args.device, max_steps=args.max_steps,
        stoi_weight=args.stoi_weight, estoi_weight=args.estoi_weight,
        quality_interval=args.quality_interval, diversity_weight=args.diversity_weight,
        segment_seconds=args.segment_seconds,
        min_segment_seconds=(args.min_segment_seconds if args.min_segment_seconds is not None
                             else args.segment_seconds),
        seed=args.seed, compile=args.compile and args.mode != "train")


def make_env(args: argparse.Namespace, num_envs: int, corpus: Any) -> Any:
    from hear_vec import DenoiseEnv

    return DenoiseEnv(num_envs=num_envs, **env_kwargs(args, corpus))


def random_actions(env: Any, methods: str | None = None) -> Callable[[], torch.Tensor]:
    """Uniform knobs and method ids (uniform over ``methods``, comma-separated names; all by
    default), drawn on the env's device."""
    from hear_vec.ops import METHODS

    names = [m.strip() for m in methods.split(",")] if methods else list(METHODS)
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {METHODS}")
    ids = torch.tensor([METHODS.index(m) for m in names], dtype=torch.float32,
                       device=env.device)
    gen = torch.Generator(device=env.device).manual_seed(1234)

    def draw() -> torch.Tensor:
        a = torch.rand(env.num_envs, 4, device=env.device, generator=gen)
        pick = (a[:, 0] * len(ids)).floor().long().clamp_max(len(ids) - 1)
        a[:, 0] = ids[pick]
        return a

    return draw


# ----------------------------------------------------------------------------- memory
def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - non-Linux
        return 0


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---------------------------------------------------------------------------- breakdown
def breakdown(env: Any, policy_fn: Callable[[], Any] | None, update_fn: Callable[[], Any] | None,
              repeats: int) -> list[dict[str, Any]]:
    """Per-phase milliseconds per call (B rows) and per env-step, each phase timed alone on
    the env's current state shapes (eager)."""
    from hear_vec import dsp
    from hear_vec.features import features_from_stft
    from hear_vec.metrics import si_sdr, stoi_from_reference, stoi_reference
    from hear_vec.ops import METHODS, denoise

    st, dev, b = env.state, env.device, env.num_envs
    gen = torch.Generator(device=dev).manual_seed(7)
    knobs = torch.rand(b, 3, device=dev, generator=gen)
    mixed = torch.randint(0, len(METHODS), (b,), device=dev, generator=gen)
    ref = st.quality
    if ref is None:
        ref = stoi_reference(st.clean, env.sample_rate, st.lengths)
    phases: list[tuple[str, Callable[[], Any]]] = [
        ("stft (current audio)", lambda: dsp.stft(st.current)),
        ("features (from the STFT)", lambda: features_from_stft(st.spec, st.current, st.lengths,
                                                                 env.sample_rate)),
    ]
    for m, name in enumerate(METHODS):
        method = torch.full((b,), m, dtype=torch.long, device=dev)
        phases.append((f"op: {name} (all rows)", lambda method=method: denoise(
            st.current, method, knobs, st.lengths, spec=st.spec)))
    phases += [
        ("op: mix of methods (as stepped)", lambda: denoise(st.current, mixed, knobs,
                                                            st.lengths, spec=st.spec)),
        ("si_sdr", lambda: si_sdr(st.current, st.clean, st.lengths)),
        ("stoi (processed side)", lambda: stoi_from_reference(ref, st.current, env.sample_rate,
                                                              extended=False)),
        ("estoi (processed side)", lambda: stoi_from_reference(ref, st.current,
                                                               env.sample_rate,
                                                               standard=False)),
        ("stoi+estoi (one processed pass)", lambda: stoi_from_reference(ref, st.current,
                                                                        env.sample_rate)),
        ("stoi/estoi clean side (per reset)", lambda: stoi_reference(st.clean, env.sample_rate,
                                                                     st.lengths)),
        ("reset: fresh draw (all of it)", lambda: env._fresh(st.draws)),
    ]
    if policy_fn is not None:
        phases.append(("policy", policy_fn))
    if update_fn is not None:
        phases.append(("update (one learner update)", update_fn))
    rows = []
    for name, fn in phases:
        with torch.inference_mode(update_fn is None or "update" not in name):
            ms = time_call(fn, dev, repeats=repeats, warmup=1)
        rows.append({"phase": name, "ms_per_call": ms, "ms_per_env_step": ms / b})
    return rows


# ------------------------------------------------------------------------------- worker
def _learner(args: argparse.Namespace, env: Any) -> Any:
    from hear_vec.agents import LEARNERS, make_config

    values: dict[str, Any] = {"compile": args.compile,
                              "cudagraphs": args.cudagraphs and env.device.type == "cuda",
                              "log_interval": 1_000_000}
    for name in ("rollout_steps", "update_epochs", "batch_size"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.algo != "ppo":
        values.update(random_steps=0, warmup_steps=0)
    return LEARNERS[args.algo](env, make_config(args.algo, values), env.device)


def run_setting(args: argparse.Namespace, num_envs: int) -> dict[str, Any]:
    """Measure one num_envs in this process."""
    from hear_vec.data import load_corpus

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if not cuda:
        tune_cpu_allocator()  # as train.py does on the CPU (hear_vec.runtime)
    corpus = load_corpus(args.data, device=device, seed=args.seed)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        mem0 = torch.cuda.memory_allocated(device)
    rss0 = _rss_bytes()
    load0 = os.getloadavg()
    t_build = time.perf_counter()
    workers = args.workers if device.type == "cpu" else 1
    env = (SubprocEnv(num_envs, workers, **env_kwargs(args, corpus)) if workers > 1
           else make_env(args, num_envs, corpus))
    learner = _learner(args, env) if args.mode in ("act", "train") else None
    build_s = time.perf_counter() - t_build
    policy_fn = update_fn = None
    result: dict[str, Any] = {"num_envs": num_envs}
    max_steps = env.max_steps

    if args.mode == "train":
        if args.cudagraphs:  # the learner steps the env through graphs too
            graphed = GraphedEnv(env, api=EmulatedGraphAPI() if args.emulate_graphs else None)
            env.step = graphed.step
        per_iter = learner.config.rollout_steps * num_envs if args.algo == "ppo" else num_envs
        warm = args.warmup_steps if args.warmup_steps is not None else per_iter
        steps = args.steps if args.steps is not None else 2 * per_iter
        start = time.perf_counter()
        learner.train(max(warm, 1))
        sync(device)
        result["warmup_s"] = time.perf_counter() - start
        runs, cpu = [], []
        for _ in range(args.repeats):
            target = learner.global_step + steps
            before = learner.global_step
            c0, t0 = time.process_time(), time.perf_counter()
            learner.train(target)
            sync(device)
            dt = time.perf_counter() - t0
            runs.append((learner.global_step - before) / dt)
            cpu.append((time.process_time() - c0) * 1e3 / (learner.global_step - before))
        obs = learner._obs

        def policy_fn() -> Any:
            return learner.act(obs, False)

        if args.algo == "ppo":
            update_fn = learner._update
        else:
            replay, bs = learner.replay, learner.config.batch_size

            def update_fn() -> Any:
                return learner._update(replay.sample_idx(bs))
    else:
        with torch.inference_mode():
            draw = random_actions(env, args.methods)
            if learner is not None:
                policy = learner.policy

                def sample(o: torch.Tensor) -> torch.Tensor:
                    return policy(o, False)

                if args.cudagraphs and device.type == "cuda":
                    from hear_vec.agents.optim import CudaGraphFn

                    act: Callable[[torch.Tensor], torch.Tensor] = CudaGraphFn(sample)
                else:
                    act = sample
            else:
                def act(o: torch.Tensor) -> torch.Tensor:
                    return draw()
            stepper = (GraphedEnv(env, api=EmulatedGraphAPI() if args.emulate_graphs else None)
                       if args.cudagraphs else env)
            obs = env.reset()
            warm = _episodes(args.warmup_steps if args.warmup_steps is not None else max_steps,
                             max_steps)
            steps = _episodes(args.steps if args.steps is not None else 2 * max_steps,
                              max_steps)
            start = time.perf_counter()
            for _ in range(warm):
                obs = stepper.step(act(obs))[0]
            sync(device)
            result["warmup_s"] = time.perf_counter() - start
            runs, cpu = [], []
            for _ in range(args.repeats):
                c0, t0 = time.process_time(), time.perf_counter()
                for _ in range(steps):
                    obs = stepper.step(act(obs))[0]
                sync(device)
                dt = time.perf_counter() - t0
                runs.append(steps * num_envs / dt)
                cpu.append((time.process_time() - c0) * 1e3 / (steps * num_envs))
            last_obs = obs

            def policy_fn() -> Any:
                return learner.act(last_obs, False) if learner is not None else draw()
    if cuda:
        peak = torch.cuda.max_memory_allocated(device) - mem0
        result["memory_method"] = "cuda max_memory_allocated - allocated before the env"
    elif workers > 1:
        peak = env.worker_peak_rss() + max(0, _peak_rss_bytes() - rss0)
        env.close()
        result["memory_method"] = ("sum over the env worker processes of peak RSS - RSS "
                                   "before their env (CPU), plus the parent's growth")
    else:
        peak = _peak_rss_bytes() - rss0
        result["memory_method"] = "peak RSS (ru_maxrss) - RSS before the env (CPU, worker)"
    lengths = env.lengths() if workers > 1 else env.state.lengths
    seconds_per_step = float(lengths.float().mean()) / env.sample_rate
    result["workers"] = workers
    best = max(runs)
    result.update(
        env_steps_per_s=best, env_steps_per_s_median=statistics.median(runs),
        env_steps_per_s_runs=runs, audio_seconds_per_s=best * seconds_per_step,
        mean_clip_seconds=seconds_per_step, cpu_ms_per_env_step=min(cpu),
        memory_per_env_mb=peak / num_envs / 2**20, peak_memory_mb=peak / 2**20,
        build_s=build_s, load_before=load0, load_after=os.getloadavg(),
        threads=torch.get_num_threads(),
    )
    if workers > 1:  # the parent only coordinates: its CPU time says nothing; 1 per worker
        result.update(cpu_ms_per_env_step=float("nan"), threads=1)
    if not args.no_breakdown and workers == 1:
        result["breakdown"] = breakdown(env, policy_fn, update_fn, args.breakdown_repeats)
    return result


def measure(args: argparse.Namespace, argv: list[str], num_envs: int) -> dict[str, Any]:
    """One num_envs, isolated in a worker process or here."""
    isolate = args.isolate if args.isolate is not None else torch.device(args.device).type == "cpu"
    if not isolate:
        result = None
        try:
            result = run_setting(args, num_envs)
        except torch.cuda.OutOfMemoryError as exc:  # pragma: no cover - GPU only
            result = {"num_envs": num_envs, "error": f"out of memory: {exc}"[:300]}
        if torch.device(args.device).type == "cuda":  # free this setting before the next
            import gc

            gc.collect()
            torch.cuda.empty_cache()
        return result
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        out = Path(tmp) / "out.json"
        spec.write_text(json.dumps({"argv": argv, "num_envs": num_envs, "out": str(out)}))
        cli = ROOT / "benchmarks" / "throughput.py"  # its --worker flag runs run_setting
        proc = subprocess.run([sys.executable, str(cli), "--worker", str(spec)], cwd=str(ROOT))
        if proc.returncode != 0 or not out.exists():
            return {"num_envs": num_envs, "error": f"worker exited with {proc.returncode}"}
        return json.loads(out.read_text())


# --------------------------------------------------------------------------- sync check
def sync_check(args: argparse.Namespace) -> int:
    """Env steps and PPO iterations (rollout + GAE + update) with device syncs made errors.

    ``torch.cuda.set_sync_debug_mode("error")`` raises on any host-device synchronization
    (``.item()``, ``.cpu()``, ``nonzero`` ...). Covered: ``--steps`` env steps (eager ``denoise``
    on CUDA uses the masked dispatch) with random actions, then 2 PPO iterations through the
    learner's own functions (``_collect``, GAE, ``_update``; ``train()`` itself reads metrics
    back at its end, by design). On the CPU (no sync debug mode) the same loop just runs,
    which checks the code path. Writes ``--json`` with the outcome of each part."""
    from hear_vec.agents import PPO, make_config
    from hear_vec.data import load_corpus

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    corpus = load_corpus(args.data, device=device, seed=args.seed)
    num_envs = args.num_envs[0]
    env = make_env(args, num_envs, corpus)
    draw = random_actions(env, args.methods)
    report: dict[str, Any] = {"device": str(device), "num_envs": num_envs}

    def guarded(name: str, fn: Callable[[], Any]) -> None:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
        try:
            fn()
            report[name] = ("ok: no host-device sync" if cuda else
                            "ok: ran (CPU: no sync debug mode, code path only)")
        except RuntimeError as exc:
            report[name] = f"FAILED: {str(exc).splitlines()[0][:300]}"
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
                torch.cuda.synchronize()

    env.reset()

    def env_steps() -> None:
        with torch.inference_mode():
            for _ in range(args.steps or 2 * args.max_steps):
                env.step(draw())

    guarded("env_steps", env_steps)
    config = make_config("ppo", {"rollout_steps": args.rollout_steps or 4,
                                 "update_epochs": args.update_epochs or 2,
                                 "batch_size": args.batch_size or num_envs,
                                 "log_interval": 1_000_000})
    learner = PPO(env, config, device)
    learner._begin(10**9, None)
    learner._collect()  # first rollout outside: lazy optimizer state / allocations

    def ppo_iterations() -> None:
        for _ in range(2):
            learner._collect()
            learner._gae_fn(learner._obs)
            learner._update()

    guarded("ppo_iterations", ppo_iterations)
    ok = all(str(v).startswith("ok") for k, v in report.items()
             if k in ("env_steps", "ppo_iterations"))
    print(json.dumps(report, indent=2))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
    return 0 if ok else 1


