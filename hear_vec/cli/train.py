"""``train.py``: train a PPO / SAC / TD3 denoising agent (flags as the seed named them).

    python train.py --algo ppo --num-envs 4096 --device cuda --total-steps 5000000
    torchrun --nproc-per-node 2 train.py --algo ppo ...      (one process per GPU)

Counting with many environments: ``--total-steps`` counts env transitions over all
environments (and ranks); ``--rollout-steps`` is PPO's steps *per environment* per rollout;
``--batch-size`` is the minibatch in transitions; ``--eval-interval`` counts transitions.
See README "Flags with many environments".
"""

from __future__ import annotations

import argparse
import sys

from hear_vec.agents.common import NonFiniteLossError
from hear_vec.checkpoint import CheckpointError
from hear_vec.cli.common import OneLineParser, positive_int
from hear_vec.training import ALGOS, RunConfig, TrainingInterrupted, run

__all__ = ["build_parser", "config_from_args", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="train.py", description="Train a denoising agent (hear_vec).")
    g = p.add_argument_group("run")
    g.add_argument("--algo", default="ppo", help=f"one of {', '.join(ALGOS)} (default ppo)")
    g.add_argument("--total-steps", type=int, default=200_000,
                   help="env transitions over all environments (default 200000)")
    g.add_argument("--num-envs", type=int, default=64,
                   help="environments stepped together (e.g. 4096 on a GPU; default 64)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--log-dir", default="runs/rl_train")
    g.add_argument("--eval-interval", type=int, default=20_000,
                   help="transitions between evaluations + checkpoints (0: only at the end)")
    g.add_argument("--eval-episodes", type=int, default=256,
                   help="validation episodes per evaluation (deterministic policy)")
    g.add_argument("--log-interval", type=int, default=None,
                   help="learner iterations between log read-backs (learner default)")
    g.add_argument("--compile", action="store_true", help="torch.compile env step and updates")
    g.add_argument("--compile-backend", default="inductor",
                   help="torch.compile backend (default inductor; aot_eager for quick checks)")
    g.add_argument("--cudagraphs", action="store_true",
                   help="CUDA graphs for the env step (without --stop-action) and the updates")
    g.add_argument("--env-workers", type=int, default=1,
                   help="CPU: step the environments in this many single-threaded worker "
                        "processes (e.g. one per core; default 1 = in this process)")
    g.add_argument("--no-tune-cpu-allocator", dest="tune_cpu_allocator", action="store_false",
                   help="keep glibc's default malloc thresholds on the CPU (by default train.py "
                        "keeps freed memory in the process: ~1.4x faster env steps)")
    g.add_argument("--resume", action="store_true",
                   help="continue from <log-dir>/checkpoint.pt")
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")

    g = p.add_argument_group("environment and reward")
    g.add_argument("--max-steps", type=int, default=3,
                   help="most denoisers per episode (default 3)")
    g.add_argument("--stop-action", action="store_true",
                   help="add a stop action that ends the chain and keeps the audio as it is")
    g.add_argument("--reward-scale", type=float, default=5.0,
                   help="divides the SI-SDR gain in dB (default 5)")
    g.add_argument("--stoi-weight", type=float, default=0.0)
    g.add_argument("--estoi-weight", type=float, default=0.0)
    g.add_argument("--quality-interval", type=int, default=0,
                   help="measure STOI/ESTOI every N steps and at the last (0: last only)")
    g.add_argument("--diversity-weight", type=float, default=0.0)
    g.add_argument("--segment-seconds", type=float, default=2.0,
                   help="longest training segment; lengths vary per episode")

    g = p.add_argument_group("data")
    g.add_argument("--data", default="synthetic",
                   help="'synthetic' (default), a meta.csv, or a folder with clean/ + noisy/")
    g.add_argument("--clean-dir", default=None, help="clean speech folder (with --noise-dir)")
    g.add_argument("--noise-dir", default=None, help="noise folder mixed on the fly")
    g.add_argument("--snr-range", type=float, nargs=2, default=(-5.0, 15.0),
                   metavar=("LO", "HI"), help="SNR range in dB for mixed sources")
    g.add_argument("--valid-fraction", type=float, default=0.1,
                   help="utterances held out for evaluation (default 0.1)")

    g = p.add_argument_group("learner (unset: the learner's default)")
    for name, kind in [
        ("gamma", float), ("gae-lambda", float), ("clip-range", float),
        ("entropy-coef", float), ("value-coef", float), ("rollout-steps", int),
        ("update-epochs", int), ("batch-size", int), ("actor-lr", float),
        ("critic-lr", float), ("alpha-lr", float), ("max-grad-norm", float),
        ("replay-size", int), ("random-steps", int), ("warmup-steps", int),
        ("updates-per-step", int), ("tau", float), ("policy-noise", float),
        ("noise-clip", float), ("policy-delay", int), ("exploration-noise", float),
        ("target-kl", float),
    ]:
        g.add_argument(f"--{name}", type=kind, default=None)
    g.add_argument("--hidden-dims", type=positive_int, nargs="+", default=None,
                   help="hidden layer widths, e.g. --hidden-dims 256 256")
    return p


def config_from_args(args: argparse.Namespace) -> RunConfig:
    values = vars(args).copy()
    values["snr_range"] = tuple(values["snr_range"])
    if values.get("hidden_dims") is not None:
        values["hidden_dims"] = tuple(values["hidden_dims"])
    return RunConfig(**values)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        final = run(cfg)
    except TrainingInterrupted as exc:
        print(f"train.py: {exc}", file=sys.stderr)
        return 130
    except NonFiniteLossError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, CheckpointError) as exc:  # bad flags, bad corpus, bad checkpoint
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"train.py: error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:  # a read-only or full --log-dir; files written before are complete
        where = f" {exc.filename}" if exc.filename else f" into {args.log_dir}"
        print(f"train.py: error: cannot write{where}: {exc.strerror or exc} (files already "
              f"written are complete: every write is atomic)", file=sys.stderr)
        return 1
    if final:
        parts = [f"{k}={v:.3f}" for k, v in final.items() if isinstance(v, float)]
        print(f"final evaluation: {', '.join(parts)}")
        print(f"model: {cfg.log_dir}/model.pt  (logs, checkpoint.pt, metrics.json beside it)")
    return 0
