"""Env-steps per second of hear_vec's DenoiseEnv, a per-phase time breakdown, memory per
environment, and (``--reference``) the speedup over a seed-style one-episode-at-a-time loop
timed in the same run.

    python benchmarks/throughput.py --mode env --num-envs 16 64 256 1024 \\
        --segment-seconds 2 --stoi-weight 1 --estoi-weight 1 --quality-interval 1 \\
        --reference --json benchmarks/out/cpu_env.json

Modes: ``env`` (uniformly random actions drawn on the device), ``act`` (a learner's policy
samples the actions: ``learner.act(obs, deterministic=False)``), ``train`` (``learner.train``,
PPO unless ``--algo``; env-steps/s counts env transitions of the whole train loop, updates
included). Each num_envs runs in a fresh worker process on the CPU (so that its peak RSS is
its own; ``--no-isolate`` runs them in this process), in this process on CUDA.

Timing: ``--warmup-steps`` untimed steps (whole episodes; compilation / graph capture happen
there), then ``--repeats`` timed runs of ``--steps`` steps, each ended by a device sync; the
best run is reported (the machine may be shared), the median beside it. CPU time of the process
is recorded too. Breakdown: every phase is timed alone on the shapes of the env's own state
(median of ``--breakdown-repeats``, device syncs around each call, eager functions): the
STFT of the current audio, the features, each operator with every row on that method, the
operator mix as stepped, SI-SDR, STOI, ESTOI, both from one processed pass, the reset (fresh
draw incl. the clean-side STOI work), the policy and (train) one update.

Memory per environment: CUDA: ``torch.cuda.max_memory_allocated`` during the timed steps
minus what was allocated before the env was built (the corpus), over num_envs. CPU: peak RSS
(``ru_maxrss``) of the worker during warm-up and timed steps minus its RSS before the env was
built, over num_envs -- it includes allocator-retained heap (hear_vec keeps freed CPU memory,
see ``hear_vec.runtime.tune_cpu_allocator``), so it is an upper bound of what the env holds.

Results go to ``--json`` and to a markdown section of ``--results-md`` (default
benchmarks/RESULTS.md) holding the exact command; a section with the same key (``--tag``, by
default derived from device / mode / flags) is replaced, others are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
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

from benchmarks.common import machine_info, markdown_table, sync, time_call  # noqa: E402
from hear_vec.env.vector import EmulatedGraphAPI, GraphedEnv, SubprocEnv  # noqa: E402
from hear_vec.runtime import tune_cpu_allocator  # noqa: E402

DEFAULT_RESULTS = ROOT / "benchmarks" / "RESULTS.md"


# ------------------------------------------------------------------------------------ args
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--num-envs", type=int, nargs="+", default=[64])
    p.add_argument("--segment-seconds", type=float, default=2.0)
    p.add_argument("--min-segment-seconds", type=float, default=None,
                   help="shortest segment (default: --segment-seconds, i.e. fixed-length clips)")
    p.add_argument("--stoi-weight", type=float, default=0.0)
    p.add_argument("--estoi-weight", type=float, default=0.0)
    p.add_argument("--quality-interval", type=int, default=0)
    p.add_argument("--diversity-weight", type=float, default=0.0)
    p.add_argument("--max-steps", type=int, default=3)
    p.add_argument("--mode", choices=("env", "act", "train"), default="env")
    p.add_argument("--algo", choices=("ppo", "sac", "td3"), default="ppo")
    p.add_argument("--methods", default=None, help="--mode env: draw the method uniformly "
                   "from these (comma-separated names; default: all five). The seed-style "
                   "reference always uses the seed's four")
    p.add_argument("--compile", action="store_true", help="torch.compile the env step (and "
                   "the learner's functions)")
    p.add_argument("--cudagraphs", action="store_true", help="CUDA graphs: the env step and "
                   "policy are captured (env/act), the learner's functions (train)")
    p.add_argument("--reference", action="store_true",
                   help="also time the seed-style loop (benchmarks/seed_reference.py)")
    p.add_argument("--reference-steps", type=int, default=30,
                   help="timed steps of the reference per repeat (whole episodes)")
    p.add_argument("--json", default=None)
    p.add_argument("--results-md", default=str(DEFAULT_RESULTS))
    p.add_argument("--no-md", action="store_true", help="do not touch the markdown file")
    p.add_argument("--tag", default=None, help="key of the markdown section")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--steps", type=int, default=None,
                   help="timed env steps per repeat (default: 2 episodes; train: 2 iterations)")
    p.add_argument("--warmup-steps", type=int, default=None,
                   help="untimed steps first (default: 1 episode; train: 1 iteration)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--breakdown-repeats", type=int, default=3)
    p.add_argument("--no-breakdown", action="store_true")
    p.add_argument("--rollout-steps", type=int, default=None, help="PPO rollout_steps")
    p.add_argument("--update-epochs", type=int, default=None, help="PPO update_epochs")
    p.add_argument("--batch-size", type=int, default=None, help="learner batch_size")
    p.add_argument("--data", default="synthetic", help="corpus (see hear_vec.data.load_corpus)")
    p.add_argument("--seed", type=int, default=0)
    isolate = p.add_mutually_exclusive_group()
    isolate.add_argument("--isolate", dest="isolate", action="store_true", default=None,
                         help="each num_envs in a fresh worker process (CPU default)")
    isolate.add_argument("--no-isolate", dest="isolate", action="store_false")
    p.add_argument("--emulate-graphs", action="store_true", help="with --cudagraphs on the "
                   "CPU: replay by re-running the captured step (checks the plumbing only)")
    p.add_argument("--sync-check", action="store_true", help="instead of timing: run env "
                   "steps and PPO iterations under torch.cuda.set_sync_debug_mode('error')")
    p.add_argument("--workers", type=int, default=1, help="CPU: step the num_envs rows in "
                   "this many single-threaded worker processes, in lockstep (SubprocEnv)")
    p.add_argument("--render-json", default=None, help="write the markdown section of a saved "
                   "--json result (its own command is quoted) instead of measuring")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p


def argv_of(args: argparse.Namespace) -> list[str]:
    """The command-line arguments that rebuild ``args`` (for worker processes)."""
    return list(getattr(args, "_argv", []))


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
                    from hear_vec.agents.common import CudaGraphFn

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


def _worker_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    args = build_parser().parse_args(spec["argv"])
    args._argv = spec["argv"]
    try:
        result = run_setting(args, spec["num_envs"])
    except torch.cuda.OutOfMemoryError as exc:  # pragma: no cover - GPU only
        result = {"num_envs": spec["num_envs"], "error": f"out of memory: {exc}"[:300]}
    Path(spec["out"]).write_text(json.dumps(result))
    return 0


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
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker",
                               str(spec)], cwd=str(ROOT))
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


# ---------------------------------------------------------------------------- reference
def run_reference(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.seed_reference import SeedStyleLoop
    from hear_vec.data import load_corpus

    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = load_corpus(args.data, device="cpu", seed=args.seed)
    seg = int(round(args.segment_seconds * corpus.sample_rate))
    min_seconds = (args.min_segment_seconds if args.min_segment_seconds is not None
                   else args.segment_seconds)
    loop = SeedStyleLoop(corpus, seg, int(round(min_seconds * corpus.sample_rate)),
                         args.max_steps, 5.0, args.stoi_weight, args.estoi_weight,
                         args.quality_interval, args.diversity_weight,
                         policy=args.mode != "env", seed=args.seed)
    loop.warm_up()
    runs = [loop.run(args.reference_steps, warmup_steps=0) for _ in range(args.repeats)]
    best = max(runs, key=lambda r: r.steps_per_s)
    return {"steps_per_s": best.steps_per_s,
            "steps_per_s_runs": [r.steps_per_s for r in runs],
            "audio_seconds_per_s": best.audio_seconds_per_s,
            "phase_ms_per_step": best.phase_ms_per_step,
            "method_ms_per_call": best.method_ms_per_call,
            "steps_per_run": best.steps, "load": os.getloadavg(),
            "policy": "batch-1 MLP" if args.mode != "env" else "uniform random"}


# -------------------------------------------------------------------------------- report
def versions(device: str) -> dict[str, Any]:
    info = machine_info(device)
    info["platform"] = platform.platform()
    try:
        import librosa
        import numpy
        import pystoi  # noqa: F401

        info.update(numpy=numpy.__version__, librosa=librosa.__version__)
    except ImportError:  # pragma: no cover
        pass
    if torch.device(device).type == "cuda":
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,name",
                                  "--format=csv,noheader"], capture_output=True, text=True,
                                 timeout=20)
            info["driver"] = out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            info["driver"] = "unknown (nvidia-smi unavailable)"
    else:
        info["driver"] = "n/a (CPU)"
        try:
            model = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                     .splitlines() if ln.startswith("model name")]
            info["cpu_model"] = model[0] if model else platform.processor()
            info["cpu_count"] = os.cpu_count()
        except OSError:  # pragma: no cover
            pass
    return info


def default_tag(args: argparse.Namespace) -> str:
    dev = torch.device(args.device).type
    mode = args.mode if args.mode != "train" else f"train-{args.algo}"
    terms = "si_sdr" + ("+stoi" if args.stoi_weight else "") + ("+estoi" if args.estoi_weight
                                                                 else "")
    extra = "".join(["-compile" if args.compile else "", "-cudagraphs" if args.cudagraphs
                     else "", f"-t{args.threads}" if args.threads else "",
                     f"-w{args.workers}" if args.workers > 1 else "",
                     "-seedmethods" if args.methods else ""])
    return (f"{dev}-{mode}-{args.segment_seconds:g}s-{terms}-qi{args.quality_interval}"
            f"{extra}")


def render(args: argparse.Namespace, command: str, info: dict[str, Any],
           results: list[dict[str, Any]], reference: dict[str, Any] | None) -> str:
    terms = ["SI-SDR"] + (["STOI"] if args.stoi_weight else []) + (
        ["ESTOI"] if args.estoi_weight else [])
    lines = [
        f"Command: `{command}`",
        "",
        f"Device: {info.get('device')} ({info.get('device_name')}"
        + (f", {info.get('cpu_model')}, {info.get('cpu_count')} cores" if 'cpu_model' in info
           else "") + f"), torch {info.get('torch')}, driver {info.get('driver')}, "
        f"threads {results[0].get('threads') if results else '?'}. Mode {args.mode}"
        + (f" ({args.algo})" if args.mode == "train" else "")
        + f"; {args.segment_seconds:g}-s clips; reward terms {' + '.join(terms)}, quality "
        f"interval {args.quality_interval}; max_steps {args.max_steps}; engine methods "
        f"{args.methods or 'all five'}; compile "
        f"{args.compile}; cudagraphs {args.cudagraphs}"
        + (f"; {args.workers} single-threaded env worker processes in lockstep (SubprocEnv)"
           if args.workers > 1 else "") + f". Measured {info.get('date')}.",
        "",
    ]
    ref_rate = reference["steps_per_s"] if reference else None
    rows = []
    for r in results:
        if "error" in r:
            rows.append({"num_envs": r["num_envs"], "env-steps/s": r["error"]})
            continue
        row = {"num_envs": r["num_envs"], "env-steps/s": r["env_steps_per_s"],
               "(median)": r["env_steps_per_s_median"],
               "audio-s/s": r["audio_seconds_per_s"],
               "CPU ms/env-step": (r["cpu_ms_per_env_step"]
                                   if r["cpu_ms_per_env_step"] == r["cpu_ms_per_env_step"]
                                   else "n/a (workers)"),  # NaN: not measured across workers
               "MB/env": r["memory_per_env_mb"],
               "load 1-min (before/after)": f"{r['load_before'][0]:.2f}/{r['load_after'][0]:.2f}"}
        if ref_rate:
            row["speedup vs seed-style"] = f"{r['env_steps_per_s'] / ref_rate:.1f}x"
        rows.append(row)
    cols = ["num_envs", "env-steps/s", "(median)", "audio-s/s"]
    cols += ["speedup vs seed-style"] if ref_rate else []
    cols += ["CPU ms/env-step", "MB/env", "load 1-min (before/after)"]
    lines.append(markdown_table(rows, cols))
    if reference:
        lines += ["", f"Seed-style reference (one episode at a time, {reference['policy']}, "
                  f"same clips and reward terms): **{reference['steps_per_s']:.1f} "
                  f"env-steps/s** (best of {len(reference['steps_per_s_runs'])} runs of "
                  f"{reference['steps_per_run']} steps: "
                  + ", ".join(f"{v:.1f}" for v in reference["steps_per_s_runs"])
                  + f"; load {reference['load'][0]:.2f}). Its time per step (ms):",
                  "",
                  markdown_table([{"phase": k, "ms/step": v}
                                  for k, v in reference["phase_ms_per_step"].items()],
                                 ["phase", "ms/step"])]
    with_bd = [r for r in results if r.get("breakdown")]
    if with_bd:
        big = with_bd[-1]
        step_ms = 1e3 / big["env_steps_per_s"]
        lines += ["", f"Breakdown at num_envs={big['num_envs']} (each phase alone, same shapes, "
                  f"median of {args.breakdown_repeats}; one env-step of the loop took "
                  f"{step_ms:.3f} ms):", "",
                  markdown_table(big["breakdown"], ["phase", "ms_per_call", "ms_per_env_step"])]
    return "\n".join(lines)


def update_markdown(path: Path, key: str, title: str, body: str) -> None:
    begin, end = f"<!-- throughput:{key} -->", f"<!-- /throughput:{key} -->"
    section = f"{begin}\n### {title}\n\n{body}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args._argv = argv
    if args.worker:
        return _worker_main(args.worker)
    if args.render_json:
        payload = json.loads(Path(args.render_json).read_text())
        saved = argparse.Namespace(**payload["args"])
        body = render(saved, payload["command"], payload["info"], payload["results"],
                      payload["reference"])
        key = args.tag or saved.tag or default_tag(saved)
        update_markdown(Path(args.results_md), key, key, body)
        print(body)
        return 0
    if args.cudagraphs and torch.device(args.device).type != "cuda" and not args.emulate_graphs:
        raise SystemExit("--cudagraphs needs a CUDA device (or --emulate-graphs)")
    if args.sync_check:
        return sync_check(args)
    command = "python benchmarks/throughput.py " + " ".join(shlex.quote(a) for a in argv)
    info = versions(args.device)
    info["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
    reference_runs = []
    if args.reference:
        print("timing the seed-style reference loop ...", flush=True)
        reference_runs.append(run_reference(args))
        print(f"  reference: {reference_runs[-1]['steps_per_s']:.1f} env-steps/s", flush=True)
    results = []
    for n in args.num_envs:
        print(f"num_envs={n} ...", flush=True)
        r = measure(args, argv, n)
        results.append(r)
        if "error" in r:
            print(f"  {r['error']}", flush=True)
        else:
            print(f"  {r['env_steps_per_s']:,.0f} env-steps/s (median "
                  f"{r['env_steps_per_s_median']:,.0f}), {r['audio_seconds_per_s']:,.0f} "
                  f"audio-s/s, {r['memory_per_env_mb']:.2f} MB/env, CPU "
                  f"{r['cpu_ms_per_env_step']:.3f} ms/env-step", flush=True)
    if args.reference:  # again after the engine: the best of both brackets the load
        reference_runs.append(run_reference(args))
        print(f"  reference (again): {reference_runs[-1]['steps_per_s']:.1f} env-steps/s",
              flush=True)
    reference = None
    if reference_runs:
        reference = max(reference_runs, key=lambda r: r["steps_per_s"])
        reference["steps_per_s_runs"] = [v for r in reference_runs
                                         for v in r["steps_per_s_runs"]]
    ok = [r for r in results if "error" not in r]
    if reference and ok:
        best = max(ok, key=lambda r: r["env_steps_per_s"])
        print(f"speedup: {best['env_steps_per_s'] / reference['steps_per_s']:.1f}x "
              f"({best['env_steps_per_s']:,.0f} env-steps/s at num_envs={best['num_envs']} vs "
              f"{reference['steps_per_s']:.1f} seed-style)", flush=True)
    body = render(args, command, info, results, reference)
    print()
    print(body)
    payload = {"command": command, "args": vars(args), "info": info, "results": results,
               "reference": reference}
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2, default=str))
    if not args.no_md:
        key = args.tag or default_tag(args)
        update_markdown(Path(args.results_md), key, key, body)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
