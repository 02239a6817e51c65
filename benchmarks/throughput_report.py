"""The report of ``benchmarks/throughput.py``: versions of the machine and libraries, the
markdown section (:func:`render`) and its replacement in RESULTS.md (:func:`update_markdown`)."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import machine_info, markdown_table


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


def result_cores(result: dict[str, Any]) -> int:
    """Cores an engine result used: its worker processes (one thread each), else its threads."""
    workers = int(result.get("workers", 1) or 1)
    return workers if workers > 1 else int(result.get("threads", 1) or 1)


def per_core_speedup(result: dict[str, Any], reference: dict[str, Any]) -> float:
    """(engine env-steps/s per core) / (seed-style env-steps/s per core). Older payloads
    without ``processes`` had one reference process."""
    ref_per_core = reference["steps_per_s"] / int(reference.get("processes", 1) or 1)
    return result["env_steps_per_s"] / result_cores(result) / ref_per_core


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
           if args.workers > 1 else "") + f". Measured {info.get('date')}"
        + (f" on a machine shared with other jobs (/proc/loadavg at start "
           f"`{info['loadavg_start']}`, at end `{info.get('loadavg_end', '?')}`)"
           if "loadavg_start" in info else "") + ".",
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
        row["cores"] = result_cores(r)
        row["env-steps/s per core"] = r["env_steps_per_s"] / result_cores(r)
        if ref_rate:
            row["speedup per core vs seed-style"] = f"{per_core_speedup(r, reference):.1f}x"
            row["(aggregate ratio)"] = f"{r['env_steps_per_s'] / ref_rate:.1f}x"
        rows.append(row)
    cols = ["num_envs", "env-steps/s", "(median)", "audio-s/s", "cores",
            "env-steps/s per core"]
    cols += ["speedup per core vs seed-style", "(aggregate ratio)"] if ref_rate else []
    cols += ["CPU ms/env-step", "MB/env", "load 1-min (before/after)"]
    lines.append(markdown_table(rows, cols))
    if reference:
        procs = int(reference.get("processes", 1) or 1)
        ok = [r for r in results if "error" not in r]
        if ok:
            best = max(ok, key=lambda r: r["env_steps_per_s"])
            lines += ["", f"**Headline: {per_core_speedup(best, reference):.1f}x env-steps/s "
                      f"per core** ({best['env_steps_per_s']:,.0f} env-steps/s on "
                      f"{result_cores(best)} core(s) at num_envs={best['num_envs']} against "
                      f"{reference['steps_per_s']:.1f} seed-style env-steps/s on {procs} "
                      f"single-threaded process(es); same clips, reward terms and max_steps)."]
        per_proc = reference.get("steps_per_s_per_process")
        lines += ["", f"Seed-style reference (one episode at a time per process, "
                  f"{reference['policy']}, {procs} single-threaded process(es) started "
                  f"together, same clips and reward terms): **{reference['steps_per_s']:.1f} "
                  f"env-steps/s aggregate** (best of {len(reference['steps_per_s_runs'])} runs "
                  f"of {reference['steps_per_run']} steps per process: "
                  + ", ".join(f"{v:.1f}" for v in reference["steps_per_s_runs"])
                  + ("; per process in the best run: "
                     + ", ".join(f"{v:.1f}" for v in per_proc) if per_proc else "")
                  + f"; load {reference['load'][0]:.2f}). Its time per step (ms, process 0):",
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


