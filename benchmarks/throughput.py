"""Env-steps per second of hear_vec's DenoiseEnv, a per-phase time breakdown, memory per
environment, and (``--reference``) the speedup per core over a seed-style
one-episode-at-a-time loop timed in the same run, in as many single-threaded processes as the
engine uses cores (``benchmarks/throughput_reference.py``: like for like, the headline).

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

Modules: this file is the command line; ``throughput_env.py`` builds and times the engine
(and ``--sync-check``), ``throughput_reference.py`` the seed-style processes,
``throughput_report.py`` the markdown.

Results go to ``--json`` and to a markdown section of ``--results-md`` (default
benchmarks/RESULTS.md) holding the exact command; a section with the same key (``--tag``, by
default derived from device / mode / flags) is replaced, others are kept.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.throughput_env import (  # noqa: E402
    measure,
    random_actions,
    run_setting,
    sync_check,
)
from benchmarks.throughput_reference import reference_processes, run_reference  # noqa: E402
from benchmarks.throughput_report import (  # noqa: E402
    default_tag,
    per_core_speedup,
    render,
    result_cores,
    update_markdown,
    versions,
)

__all__ = ["build_parser", "main", "random_actions"]

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
                   help="also time the seed-style loop (benchmarks/seed_reference.py) in as "
                        "many single-threaded processes as the engine uses cores")
    p.add_argument("--reference-workers", type=int, default=None,
                   help="seed-style processes (default: the engine's cores: --workers, else "
                        "--threads, else torch's thread count)")
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
    p.add_argument("--workers", "--env-workers", dest="workers", type=int, default=1,
                   help="CPU: step the num_envs rows in "
                   "this many single-threaded worker processes, in lockstep (SubprocEnv)")
    p.add_argument("--render-json", default=None, help="write the markdown section of a saved "
                   "--json result (its own command is quoted) instead of measuring")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p


def argv_of(args: argparse.Namespace) -> list[str]:
    """The command-line arguments that rebuild ``args`` (for worker processes)."""
    return list(getattr(args, "_argv", []))


def _loadavg() -> str:
    """/proc/loadavg as it reads (the machine is shared: the load goes with every result)."""
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:  # pragma: no cover - non-Linux
        return "n/a"


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
    info["loadavg_start"] = _loadavg()
    reference_runs = []
    if args.reference:
        print(f"timing the seed-style reference loop in {reference_processes(args)} "
              f"single-threaded process(es) ...", flush=True)
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
        cores = result_cores(best)
        print(f"speedup per core: {per_core_speedup(best, reference):.1f}x "
              f"({best['env_steps_per_s']:,.0f} env-steps/s on {cores} core(s) at "
              f"num_envs={best['num_envs']} vs {reference['steps_per_s']:.1f} seed-style on "
              f"{reference['processes']} single-threaded process(es))", flush=True)
    info["loadavg_end"] = _loadavg()
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
