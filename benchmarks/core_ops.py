"""Milliseconds per batch for the engine-core ops: each metric, each denoising method,
``denoise`` with a mix of methods, and the observation features — beside pystoi's
per-utterance time measured in the same run.

    python benchmarks/core_ops.py --batch 64 --seconds 2 --json benchmarks/out/core_ops.json

Inputs are dev-audio speech mixed with dev noise at 0–10 dB when ../shared/dev_audio exists,
otherwise the built-in synthetic corpus. Numbers are written, never asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, markdown_table, time_call, write_results  # noqa: E402
from hear_vec import rng  # noqa: E402
from hear_vec.data import load_corpus  # noqa: E402
from hear_vec.features import extract_features  # noqa: E402
from hear_vec.metrics import si_sdr, stoi  # noqa: E402
from hear_vec.ops import METHODS, denoise  # noqa: E402

DEV_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "dev_audio"


def make_batch(batch: int, samples: int, device: str, seed: int):
    if (DEV_AUDIO / "speech").is_dir():
        corpus = load_corpus(None, clean_dir=DEV_AUDIO / "speech", noise_dir=DEV_AUDIO / "noise",
                             snr_range=(0.0, 10.0), device=device, seed=seed)
        source = "dev_audio speech + noise, 0-10 dB"
    else:
        corpus = load_corpus("synthetic", device=device, seed=seed)
        source = "synthetic corpus"
    seg = corpus.draw(rng.make_key(seed, device), batch, samples, samples)
    return seg, source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pystoi-clips", type=int, default=16,
                        help="utterances timed with pystoi (per-utterance mean)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from pystoi import stoi as pystoi

    samples = int(args.seconds * 16000)
    seg, source = make_batch(args.batch, samples, args.device, 0)
    clean, noisy, lengths = seg.clean, seg.noisy, seg.lengths
    dev = args.device
    rows = []

    def add(name, fn, per_utt_ref=None):
        ms = time_call(fn, dev, repeats=args.repeats)
        row = {"op": name, "ms_per_batch": ms, "ms_per_utterance": ms / args.batch}
        if per_utt_ref is not None:
            row["pystoi_ms_per_utterance"] = per_utt_ref
            row["speedup_per_utterance"] = per_utt_ref / (ms / args.batch)
        rows.append(row)
        print(f"{name:28s} {ms:9.1f} ms/batch  {ms / args.batch:7.2f} ms/utt", flush=True)

    clean_np = clean.double().cpu().numpy()
    noisy_np = noisy.double().cpu().numpy()
    ref = {}
    for extended in (False, True):
        start = time.perf_counter()
        for i in range(args.pystoi_clips):
            pystoi(clean_np[i], noisy_np[i], 16000, extended=extended)
        ref[extended] = (time.perf_counter() - start) * 1e3 / args.pystoi_clips

    with torch.inference_mode():
        add("si_sdr", lambda: si_sdr(noisy, clean, lengths))
        add("stoi", lambda: stoi(clean, noisy, 16000, lengths), ref[False])
        add("estoi", lambda: stoi(clean, noisy, 16000, lengths, extended=True), ref[True])
        add("features", lambda: extract_features(noisy, lengths, 16000))
        knobs = torch.full((args.batch, 3), 0.5, device=dev)
        for m, name in enumerate(METHODS):
            method = torch.full((args.batch,), m, dtype=torch.long, device=dev)
            add(f"denoise[{name}]", lambda method=method: denoise(noisy, method, knobs, lengths))
        mixed = torch.arange(args.batch, device=dev) % len(METHODS)
        add("denoise[mixed methods]", lambda: denoise(noisy, mixed, knobs, lengths))

    info = machine_info(dev)
    info.update(batch=args.batch, clip_seconds=args.seconds, source=source)
    cols = ["op", "ms_per_batch", "ms_per_utterance", "pystoi_ms_per_utterance",
            "speedup_per_utterance"]
    table = markdown_table(rows, cols)
    print()
    print(f"device={info['device']} ({info['device_name']}), threads={info['cpu_threads']}, "
          f"batch={args.batch} x {args.seconds:g} s, torch {info['torch']}, inputs: {source}")
    print(table)
    write_results(args.json, {"info": info, "rows": rows, "table": table,
                              "numpy": np.__version__})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
