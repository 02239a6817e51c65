"""``train.py --env-workers 2`` beside one process, through train.py itself, same reward terms.

    python benchmarks/train_env_workers.py --workers 1 2 --total-steps 12288 \\
        --json benchmarks/results/train_env_workers.json

Runs ``train.py`` (PPO on the built-in synthetic corpus, SI-SDR + STOI + ESTOI every step,
2-s clips, 256 envs, no evaluation) once per ``--workers`` value in a fresh process and reads
the env-steps/s that train.py itself logs (``charts/SPS`` in ``metrics.json``: transitions of
the whole train loop, updates included, since the previous log). Reported: the median of the
logged SPS after the first log (the first holds warm-up), its maximum, and the wall time of
the whole command. ``--env-workers 1`` steps every row in this process with torch's intra-op
threads; ``--env-workers 2`` steps them in two single-threaded worker processes
(``hear_vec.env.vector.SubprocEnv``). Writes ``--json`` and a markdown table beside it
(``.md``), each with the exact commands and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_info, markdown_table  # noqa: E402


def train_command(args: argparse.Namespace, workers: int, log_dir: str,
                  seed: int = 0) -> list[str]:
    return [sys.executable, "train.py", "--algo", "ppo", "--num-envs", str(args.num_envs),
            "--total-steps", str(args.total_steps), "--stoi-weight", "1", "--estoi-weight", "1",
            "--quality-interval", "1", "--segment-seconds", str(args.segment_seconds),
            "--eval-interval", "0", "--eval-episodes", str(args.eval_episodes), "--seed",
            str(seed), "--log-interval",
            str(args.log_interval), "--env-workers", str(workers), "--device", "cpu",
            "--no-progress", "--log-dir", log_dir]


def run_one(args: argparse.Namespace, workers: int, seed: int = 0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = train_command(args, workers, str(Path(tmp) / "run"), seed)
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=str(ROOT), capture_output=True, text=True)
        wall = time.perf_counter() - t0
        shown = ["python"] + [shlex.quote(c) for c in cmd[1:]]
        shown[shown.index("--log-dir") + 1] = "<tmp>"
        out: dict[str, Any] = {"env_workers": workers, "seed": seed,
                               "command": " ".join(shown),
                               "wall_s": wall, "load_before": load0,
                               "load_after": os.getloadavg(), "returncode": proc.returncode}
        metrics = Path(tmp) / "run" / "metrics.json"
        if proc.returncode != 0 or not metrics.is_file():
            out["error"] = (proc.stderr or proc.stdout)[-600:]
            return out
        saved = json.loads(metrics.read_text())
        logs = saved.get("logs", [])
        final = saved.get("final_eval", {})
        out["final_eval"] = {k: final[k] for k in ("si_sdr_gain", "return", "stoi_gain",
                                                   "estoi_gain") if k in final}
        sps = [float(r["charts/SPS"]) for r in logs if "charts/SPS" in r]
        steady = sps[1:] or sps
        out.update(sps_logged=sps, sps_median=statistics.median(steady) if steady else None,
                   sps_max=max(steady) if steady else None,
                   steps_per_wall_s=args.total_steps / wall)
        return out


def render(payload: dict[str, Any]) -> str:
    rows = []
    for r in payload["results"]:
        if "error" in r:
            rows.append({"--env-workers": r["env_workers"], "median logged SPS": "error"})
            continue
        rows.append({"--env-workers": r["env_workers"], "seed": r.get("seed", 0),
                     "final SI-SDR gain dB": r.get("final_eval", {}).get("si_sdr_gain"),
                     "logs": len(r["sps_logged"]),
                     "median logged SPS": r["sps_median"], "max logged SPS": r["sps_max"],
                     "total steps / wall s": r["steps_per_wall_s"], "wall s": r["wall_s"],
                     "load 1-min (before/after)":
                         f"{r['load_before'][0]:.2f}/{r['load_after'][0]:.2f}"})
    info = payload["info"]
    lines = [f"Command: `{payload['command']}`", "",
             f"Machine: {info.get('cpu_model', '?')}, {info.get('cpu_count', '?')} cores, "
             f"torch {info.get('torch')}; shared with other jobs (load averages in the "
             f"table; /proc/loadavg at start {payload['loadavg_start']!r}, end "
             f"{payload['loadavg_end']!r}). Measured {payload['date']}.", "",
             "Each row is one train.py run:", ""]
    lines += [f"* `{r['command']}`" for r in payload["results"]]
    lines += ["", markdown_table(rows, ["--env-workers", "seed", "final SI-SDR gain dB", "logs",
                                        "median logged SPS",
                                        "max logged SPS",
                                        "total steps / wall s", "wall s",
                                        "load 1-min (before/after)"])]
    gains: dict[int, list[float]] = {}
    for r in payload["results"]:
        if "si_sdr_gain" in r.get("final_eval", {}):
            gains.setdefault(r["env_workers"], []).append(r["final_eval"]["si_sdr_gain"])
    if any(len(g) > 1 for g in gains.values()):
        lines += ["", "Final evaluation (the same validation clips for every run; "
                  f"{payload['args'].get('eval_episodes', 16)} episodes), over seeds:", ""]
        lines += [f"* --env-workers {w}: SI-SDR gain mean {statistics.mean(g):+.3f} dB, "
                  f"sd {statistics.stdev(g):.3f}, min {min(g):+.3f}, max {max(g):+.3f} "
                  f"({len(g)} seeds)" for w, g in sorted(gains.items()) if len(g) > 1]
    ok = {r["env_workers"]: r for r in payload["results"] if "error" not in r}
    if any(len(r["sps_logged"]) < 2 for r in ok.values()):
        lines += ["", "A run with one log has one SPS value: the whole run, warm-up included "
                  "(a longer --total-steps gives more logs)."]
    sps: dict[int, list[float]] = {}
    for r in payload["results"]:
        if "error" not in r and r["sps_median"]:
            sps.setdefault(r["env_workers"], []).append(r["sps_median"])
    if 1 in sps and 2 in sps:
        one, two = statistics.median(sps[1]), statistics.median(sps[2])
        lines += ["", f"--env-workers 2 / --env-workers 1 (median over runs of the median "
                  f"logged SPS): {two:.1f} / {one:.1f} = {two / one:.2f}x"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--num-envs", type=int, default=256)
    p.add_argument("--total-steps", type=int, default=12288)
    p.add_argument("--log-interval", type=int, default=4096)
    p.add_argument("--segment-seconds", type=float, default=2.0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="one run per (workers, seed): training results in distribution")
    p.add_argument("--eval-episodes", type=int, default=16)
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" /
                                         "train_env_workers.json"))
    p.add_argument("--render-json", default=None, help="rewrite the .md of a saved JSON")
    args = p.parse_args(argv)
    if args.render_json:
        saved = Path(args.render_json)
        body = render(json.loads(saved.read_text()))
        saved.with_suffix(".md").write_text("# train.py --env-workers\n\n" + body)
        print(body)
        return 0
    loadavg_start = Path("/proc/loadavg").read_text().strip()
    results = []
    for seed in args.seeds:
        for w in args.workers:
            print(f"train.py --env-workers {w} --seed {seed} ...", flush=True)
            r = run_one(args, w, seed)
            print(f"  {r.get('sps_median', r.get('error'))}", flush=True)
            results.append(r)
    payload = {"command": "python benchmarks/train_env_workers.py "
                          + " ".join(shlex.quote(a) for a in argv),
               "args": vars(args), "info": machine_info("cpu") | _cpu(),
               "date": time.strftime("%Y-%m-%d %H:%M:%S"), "loadavg_start": loadavg_start,
               "loadavg_end": Path("/proc/loadavg").read_text().strip(), "results": results}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    body = render(payload)
    path.with_suffix(".md").write_text("# train.py --env-workers\n\n" + body)
    print(body)
    return 0 if all("error" not in r for r in results) else 1


def _cpu() -> dict[str, Any]:
    try:
        model = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                 .splitlines() if ln.startswith("model name")]
        return {"cpu_model": model[0] if model else "?", "cpu_count": os.cpu_count()}
    except OSError:  # pragma: no cover
        return {}


if __name__ == "__main__":
    raise SystemExit(main())
