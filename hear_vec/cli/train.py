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
from hear_vec.data import PRESETS
from hear_vec.training import ALGOS, RunConfig, TrainingInterrupted, run

__all__ = ["build_parser", "config_from_args", "main"]

#: (flag, type, takes LO HI, help) of the randomization knobs (fields of RunConfig)
_KNOB_FLAGS = [
    ("reverb-prob", float, False, "probability of a synthetic room response on the speech"),
    ("rt60-range", float, True, "RT60 of the room responses, s"),
    ("drr-range", float, True, "direct-to-reverberant ratio, dB"),
    ("tilt-range", float, True, "channel tilt in dB/octave (speech and noise alike)"),
    ("eq-bands", int, False, "random peaking EQ bands of the channel (0-4)"),
    ("eq-gain-db", float, False, "EQ band gains drawn in [-G, G] dB"),
    ("eq-freq-range", float, True, "EQ band centres, Hz"),
    ("eq-width-range", float, True, "EQ band widths, octaves"),
    ("lowpass-prob", float, False, "probability of a low-pass band limit"),
    ("lowpass-range", float, True, "low-pass cutoff, Hz"),
    ("highpass-prob", float, False, "probability of a high-pass"),
    ("highpass-range", float, True, "high-pass cutoff, Hz"),
    ("noise-count", int, True, "overlapping noises per row (1-4)"),
    ("noise-gain-range", float, True, "extra noises relative to the main one, dB"),
    ("noise-tilt-range", float, True, "noise-only tilt, dB/octave"),
    ("babble-prob", float, False, "probability that the main noise is babble of the corpus's "
                                  "own utterances"),
    ("babble-talkers", int, True, "talkers per babble clip"),
]


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
    g.add_argument("--no-save-replay", dest="save_replay", action="store_false", help="SAC/TD3: no replay.pt beside checkpoint.pt (huge replays); a resume refills the replay and is not bit-exact")  # noqa: E501
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")

    g = p.add_argument_group("environment and reward")
    g.add_argument("--max-steps", type=int, default=3,
                   help="most denoisers per episode (default 3)")
    g.add_argument("--stop-action", action="store_true",
                   help="add a stop action that ends the chain and keeps the audio as it is")
    g.add_argument("--floor-features", action="store_true",
                   help="observe 34 noise-floor features per signal (per-band SNR proxies)")
    g.add_argument("--reward-scale", type=float, default=5.0,
                   help="divides the SI-SDR gain in dB (default 5)")
    g.add_argument("--stoi-weight", type=float, default=0.0)
    g.add_argument("--estoi-weight", type=float, default=0.0)
    g.add_argument("--quality-interval", type=int, default=0,
                   help="measure STOI/ESTOI every N steps and at the last (0: last only)")
    g.add_argument("--diversity-weight", type=float, default=0.0)
    g.add_argument("--segment-seconds", type=float, default=2.0,
                   help="longest training segment; lengths vary per episode")

    g = p.add_argument_group("data (README: Data sources)")
    g.add_argument("--data", nargs="+", default=["synthetic"], metavar="SRC[:W]",
                   help="speech sources, each with an optional weight: 'synthetic' (default), "
                        "a meta.csv, a folder with meta.csv or clean/ + noisy/, or a folder of "
                        "clean speech (e.g. --data synthetic:1 VB/train:2)")
    g.add_argument("--clean-dir", default=None, help="clean speech folder (with --noise-dir)")
    g.add_argument("--noise-dir", "--noise", dest="noise_dir", nargs="+", default=None,
                   metavar="SRC[:W]", help="noise sources mixed on the fly: folders or "
                                           "'synthetic' (the synthetic families), with weights")
    g.add_argument("--snr-range", type=float, nargs=2, default=(-5.0, 15.0),
                   metavar=("LO", "HI"), help="SNR range in dB for mixed sources")
    g.add_argument("--valid-fraction", type=float, default=0.1,
                   help="speakers (by default: utterances) held out for evaluation (0.1)")
    g.add_argument("--speaker-pattern", default=None, metavar="REGEX",
                   help="speaker = group 1 of REGEX on the utterance name, e.g. "
                        "'^([^_]+_[^_]+)'; whole speakers go to one side")
    g.add_argument("--speaker-column", default=None, metavar="NAME",
                   help="speaker = this meta.csv column (utterances without it: the pattern)")
    g.add_argument("--holdout-speakers", nargs="+", default=None, metavar="NAME",
                   help="validation speakers by name, e.g. 'a b' or 'a,b' (instead of "
                        "--valid-fraction)")
    g.add_argument("--holdout-noise-fraction", type=float, default=0.0,
                   help="noise recordings held out: validation mixes only with them, "
                        "training only with the rest (default 0: shared)")
    g.add_argument("--holdout-noises", nargs="+", default=None, metavar="NAME",
                   help="validation noise recordings by name (as in split.json; the "
                        ".wav/.flac extension may be left out)")
    g.add_argument("--exclude-speakers", nargs="+", default=None, metavar="LABEL",
                   help="speakers reserved for a final test: never loaded into training or "
                        "validation (labels as --holdout-speakers)")
    g.add_argument("--exclude-noises", nargs="+", default=None, metavar="NAME",
                   help="noise recordings reserved for a final test: never mixed into "
                        "training or validation")

    g = p.add_argument_group("domain randomization (unset: the --augment preset's value)")
    g.add_argument("--augment", default="off", choices=sorted(PRESETS),
                   help="preset of every knob below: off (default) or domain")
    g.add_argument("--level-range", nargs="+", default=None, metavar="LEVEL",
                   help="LO HI: RMS level of the noisy mixture in dBFS; off: keep item levels")
    for name, kind, pair, text in _KNOB_FLAGS:
        g.add_argument(f"--{name}", type=kind, nargs=2 if pair else None, default=None,
                       metavar=("LO", "HI") if pair else None, help=text)

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
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items()}
    for name in ("holdout_speakers", "holdout_noises", "exclude_speakers",
                 "exclude_noises"):  # "a b" or "a,b"
        if values.get(name) is not None:
            values[name] = tuple(n for v in values[name] for n in v.split(",") if n)
    for name in ("data", "noise_dir"):  # one source stays a plain string (as before)
        if isinstance(values.get(name), tuple) and len(values[name]) == 1:
            values[name] = values[name][0]
    level = values.get("level_range")
    if level is not None:
        if level == ("off",):
            values["level_range"] = "off"
        else:
            try:
                values["level_range"] = tuple(float(v) for v in level)
            except ValueError:
                level = ()
            if len(level) != 2:
                raise ValueError("--level-range takes LO HI (dBFS) or off")
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
