"""Milliseconds per corpus draw (one environment reset of every row) with and without domain
randomization: the plain mixing corpus, the multi-source corpus with no knob, each knob alone,
and the "domain" preset.

    OMP_NUM_THREADS=1 python benchmarks/data_draw.py --rows 256 --seconds 2 \\
        --json benchmarks/results/data_draw.json --markdown benchmarks/results/data_draw.md

Speech and noise are ../shared/dev_audio's when it exists, else the built-in synthetic corpus.
Every draw is the full ``corpus.draw(key, rows, T, T // 2)`` (segments of 1-2 s), timed eagerly
with a fresh key each call: the median wall time and the median CPU time of the process over
``--repeats`` draws each (the first CPU-timed draws warm up; on a shared machine the CPU time is
the steadier measure of the work). Numbers are written, never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, markdown_table, time_call, write_results  # noqa: E402
from hear_vec import rng  # noqa: E402
from hear_vec.data import PRESETS, MultiSourceCorpus, Randomization, load_corpus  # noqa: E402

DEV_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "dev_audio"

#: (name, randomization) timed on the multi-source corpus
SETTINGS = [
    ("no knob (identity)", Randomization()),
    ("level", Randomization(level_range=(-45.0, -15.0))),
    ("channel tilt + 2 EQ bands", Randomization(tilt_range=(-2.0, 2.0), eq_bands=2)),
    ("band limits (p = 0.25 each)", Randomization(lowpass_prob=0.25, highpass_prob=0.25)),
    ("reverb (p = 0.3, RT60 <= 0.8 s)", Randomization(reverb_prob=0.3)),
    ("1-3 noises", Randomization(noise_count=(1, 3))),
    ("babble (p = 0.15)", Randomization(babble_prob=0.15)),
    ("noise tilt", Randomization(noise_tilt_range=(-3.0, 3.0))),
    ("domain preset (all knobs)", PRESETS["domain"]),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None)
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if (DEV_AUDIO / "speech").is_dir():
        plain = load_corpus(clean_dir=DEV_AUDIO / "speech", noise_dir=DEV_AUDIO / "noise",
                            device=device)
        source = "dev_audio speech (20) + noise (7)"
    else:
        plain = load_corpus("synthetic", device=device)
        source = "synthetic corpus"
    width = int(args.seconds * plain.sample_rate)
    counter = iter(range(10**9))

    def timed(corpus) -> tuple[float, float]:
        """(median wall ms, median CPU ms of this process) per draw."""
        def draw():
            corpus.draw(rng.make_key(next(counter), device), args.rows, width, width // 2)
        cpu = []
        for _ in range(args.repeats):
            start = time.process_time()
            draw()
            cpu.append((time.process_time() - start) * 1e3)
        return time_call(draw, device, repeats=args.repeats, warmup=0), statistics.median(cpu)

    with torch.no_grad():
        base, base_cpu = timed(plain)
        rows = [{"setting": "plain MixingCorpus", "ms_per_draw": base, "cpu_ms_per_draw":
                 base_cpu}]
        multi = MultiSourceCorpus.from_corpus(plain)
        for name, rand in SETTINGS:
            ms, cpu_ms = timed(multi.with_randomization(rand))
            rows.append({"setting": name, "ms_per_draw": ms, "cpu_ms_per_draw": cpu_ms})
    for row in rows:
        row["cpu_us_per_row"] = row["cpu_ms_per_draw"] * 1e3 / args.rows
        row["cpu_vs_plain"] = row["cpu_ms_per_draw"] / base_cpu
    info = {**machine_info(device), "rows": args.rows, "seconds": args.seconds,
            "source": source, "repeats": args.repeats,
            "load_average_1min": round(os.getloadavg()[0], 2)}
    columns = ["setting", "ms_per_draw", "cpu_ms_per_draw", "cpu_us_per_row", "cpu_vs_plain"]
    table = markdown_table(rows, columns)
    print(table)
    write_results(args.json, {"info": info, "rows": rows, "table": table})
    if args.markdown:
        command = ("OMP_NUM_THREADS=1 python benchmarks/data_draw.py " + " ".join(
            sys.argv[1:] if argv is None else argv))
        text = (f"# data_draw: ms per corpus draw ({args.rows} rows x {args.seconds:g} s)\n\n"
                f"Command: `{command}`\n\n"
                f"Device {info['device']} ({info['device_name']}), {info['cpu_threads']} "
                f"thread(s), torch {info['torch']}, inputs: {source}; segments of "
                f"{args.seconds / 2:g}-{args.seconds:g} s, medians of {args.repeats} draws "
                f"(wall and process CPU time); 1-minute load average at the end "
                f"{info['load_average_1min']} on {os.cpu_count()} CPUs.\n\n"
                f"{table}\n")
        path = Path(args.markdown)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
