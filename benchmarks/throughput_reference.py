"""The seed-style reference of ``benchmarks/throughput.py --reference``, like for like.

:class:`benchmarks.seed_reference.SeedStyleLoop` steps one episode at a time on one core (the
seed's numpy / librosa / pywt / pystoi code). The engine it is compared with may use several
cores: ``--workers N`` (``--env-workers N``) steps the rows in N single-threaded processes, and
one process uses ``--threads`` (torch's default: every core) intra-op threads. So the
reference runs as many single-threaded processes as the engine uses cores (``--reference-workers``
overrides it), each on its own stream of clips (seed + i), started together behind a barrier
for every timed run; its rate is the aggregate: the sum of the processes' env-steps/s in
that run (they overlap in time), best of the runs. Same clips, segment length, reward terms,
quality interval and max_steps as the engine.

The headline is the ratio per core: (engine env-steps/s / engine cores) over (reference
aggregate env-steps/s / reference processes); with as many reference processes as engine
cores it is the ratio of the two aggregates.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
from typing import Any

import torch


def engine_cores(args: argparse.Namespace) -> int:
    """Cores the engine setting uses on the CPU: its worker processes (one thread each), else
    its intra-op threads (``--threads``, default torch's: all cores)."""
    if args.workers > 1:
        return int(args.workers)
    return int(args.threads or torch.get_num_threads())


def reference_processes(args: argparse.Namespace) -> int:
    given = getattr(args, "reference_workers", None)
    return int(given) if given else engine_cores(args)


def _loop_worker(spec: dict[str, Any], index: int, barrier: Any, queue: Any) -> None:
    """One single-threaded reference process: build, warm up, then ``repeats`` timed runs,
    each started at the barrier with the other processes."""
    torch.set_num_threads(1)
    from benchmarks.seed_reference import SeedStyleLoop
    from hear_vec.data import load_corpus

    try:
        corpus = load_corpus(spec["data"], device="cpu", seed=spec["seed"])
        rate = corpus.sample_rate
        loop = SeedStyleLoop(corpus, int(round(spec["segment_seconds"] * rate)),
                             int(round(spec["min_segment_seconds"] * rate)), spec["max_steps"],
                             5.0, spec["stoi_weight"], spec["estoi_weight"],
                             spec["quality_interval"], spec["diversity_weight"],
                             policy=spec["policy"], seed=spec["seed"] + index)
        loop.warm_up()
    except BaseException as exc:  # let the others go on: the barrier breaks for all
        barrier.abort()
        queue.put((index, None, f"{type(exc).__name__}: {exc}"))
        raise
    runs = []
    for _ in range(spec["repeats"]):
        barrier.wait()
        r = loop.run(spec["steps"], warmup_steps=0)
        runs.append({"steps_per_s": r.steps_per_s, "audio_seconds_per_s": r.audio_seconds_per_s,
                     "phase_ms_per_step": r.phase_ms_per_step,
                     "method_ms_per_call": r.method_ms_per_call, "steps": r.steps})
    queue.put((index, runs, None))


def run_reference(args: argparse.Namespace) -> dict[str, Any]:
    """Aggregate env-steps/s of :func:`reference_processes` concurrent single-threaded
    seed-style loops (see the module docstring)."""
    procs = reference_processes(args)
    spec = {"data": args.data, "seed": args.seed, "segment_seconds": args.segment_seconds,
            "min_segment_seconds": (args.min_segment_seconds
                                    if args.min_segment_seconds is not None
                                    else args.segment_seconds),
            "max_steps": args.max_steps, "stoi_weight": args.stoi_weight,
            "estoi_weight": args.estoi_weight, "quality_interval": args.quality_interval,
            "diversity_weight": args.diversity_weight, "policy": args.mode != "env",
            "repeats": args.repeats, "steps": args.reference_steps}
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(procs), ctx.Queue()
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # one core per process
    load0 = os.getloadavg()
    try:
        workers = [ctx.Process(target=_loop_worker, args=(spec, i, barrier, queue))
                   for i in range(procs)]
        for w in workers:
            w.start()
        results = [queue.get() for _ in range(procs)]
        for w in workers:
            w.join()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    errors = [e for _, _, e in results if e]
    if errors:
        raise RuntimeError(f"seed-style reference process failed: {errors[0]}")
    per_proc = [runs for _, runs in sorted((i, r) for i, r, _ in results)]
    aggregate = [sum(p[k]["steps_per_s"] for p in per_proc) for k in range(args.repeats)]
    best = max(range(args.repeats), key=lambda k: aggregate[k])
    first = per_proc[0][best]
    return {"steps_per_s": aggregate[best],
            "steps_per_s_runs": aggregate,
            "processes": procs,
            "threads_per_process": 1,
            "steps_per_s_per_process": [p[best]["steps_per_s"] for p in per_proc],
            "steps_per_s_per_core": aggregate[best] / procs,
            "audio_seconds_per_s": sum(p[best]["audio_seconds_per_s"] for p in per_proc),
            "phase_ms_per_step": first["phase_ms_per_step"],
            "method_ms_per_call": first["method_ms_per_call"],
            "steps_per_run": first["steps"], "load": load0, "load_after": os.getloadavg(),
            "policy": "batch-1 MLP" if args.mode != "env" else "uniform random"}
