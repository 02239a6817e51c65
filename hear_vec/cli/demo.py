"""The main job on the built-in default (``make demo``): generate a noisy folder, denoise it
with the packaged pretrained agent (``hear_vec/pretrained/model.pt``), then train a small PPO
agent of its own on the synthetic corpus, denoise the same folder with it and print SI-SDR /
STOI / ESTOI before and after for both.

    python -m hear_vec.demo [--out demo_out] [--steps N] [--device auto] [--no-pretrained]

Writes ``<out>/data`` (a generated corpus in the seed's layout: clean/, noisy/, meta.csv — from
a different random stream than the training corpus), ``<out>/pretrained`` and
``<out>/pretrained_metrics.csv`` (the packaged agent's output), ``<out>/agent`` (train.py's log
dir: model.pt, checkpoint.pt, metrics.json, TensorBoard events), ``<out>/denoised`` and
``<out>/metrics.csv``. A second run reuses the trained agent (``--retrain`` trains again).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from hear_vec.cli.common import OneLineParser, first_line, resolve_device
from hear_vec.cli.infer import main as infer_main
from hear_vec.data.demo import write_demo_corpus
from hear_vec.pretrained import PRETRAINED_MODEL
from hear_vec.training import RunConfig, TrainingInterrupted, run

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m hear_vec.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--steps", type=int, default=None,
                   help="training transitions (default 20000 on CPU, 400000 on CUDA)")
    p.add_argument("--num-envs", type=int, default=None,
                   help="environments (default 32 on CPU, 1024 on CUDA)")
    p.add_argument("--files", type=int, default=24, help="noisy files to denoise (default 24)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retrain", action="store_true", help="train again even if a model exists")
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                   help="skip denoising with the packaged pretrained agent")
    return p


def _denoise(model: Path, data: Path, output: Path, metrics_csv: Path, device: str) -> int:
    """infer.py on ``data/noisy`` scored against ``data/clean`` (it prints the means)."""
    code = infer_main(["--checkpoint", str(model), "--input", str(data / "noisy"),
                       "--output", str(output), "--clean", str(data / "clean"),
                       "--metrics-csv", str(metrics_csv), "--device", device, "--overwrite"])
    return code if code != 0 or metrics_csv.is_file() else 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        parser.error(first_line(exc))
    cuda = device.type == "cuda"
    steps = args.steps or (400_000 if cuda else 20_000)
    num_envs = args.num_envs or (1024 if cuda else 32)
    out = Path(args.out)
    agent_dir = out / "agent"
    model = agent_dir / "model.pt"
    if args.retrain and agent_dir.exists():
        shutil.rmtree(agent_dir)
    data = out / "data"
    print(f"[1/4] generating {args.files} noisy/clean pairs -> {data}", flush=True)
    write_demo_corpus(data, n=args.files, seed=args.seed + 1, overwrite=True)
    if args.pretrained:
        print(f"[2/4] denoising with the packaged pretrained agent -> {out / 'pretrained'}",
              flush=True)
        code = _denoise(PRETRAINED_MODEL, data, out / "pretrained",
                        out / "pretrained_metrics.csv", str(device))
        if code != 0:
            return code
    else:
        print("[2/4] skipped (--no-pretrained)")
    if not model.is_file():
        print(f"[3/4] training PPO on the built-in synthetic corpus: {steps} transitions, "
              f"{num_envs} environments on {device} -> {agent_dir}", flush=True)
        cfg = RunConfig(algo="ppo", total_steps=steps, num_envs=num_envs, device=str(device),
                        seed=args.seed, log_dir=str(agent_dir), eval_interval=steps // 2,
                        eval_episodes=min(256, 4 * num_envs), batch_size=512,
                        resume=(agent_dir / "checkpoint.pt").is_file())
        try:
            final = run(cfg)
        except TrainingInterrupted as exc:
            print(f"demo: {exc}; run `make demo` again to continue", file=sys.stderr)
            return 130
        print(f"      validation: SI-SDR gain {final['si_sdr_gain']:+.2f} dB, "
              f"STOI gain {final.get('stoi_gain', float('nan')):+.3f}")
    else:
        print(f"[3/4] reusing the trained agent {model} (--retrain to train again)")
    print(f"[4/4] denoising with it -> {out / 'denoised'}", flush=True)
    metrics_csv = out / "metrics.csv"
    code = _denoise(model, data, out / "denoised", metrics_csv, str(device))
    if code != 0:
        return code
    print(f"denoised audio in {out / 'pretrained'} and {out / 'denoised'}; per-file metrics in "
          f"{out / 'pretrained_metrics.csv'} and {metrics_csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
