"""``train.py``: train a PPO / SAC / TD3 denoising agent (flags as the seed named them).

    python train.py --algo ppo --num-envs 4096 --device cuda --total-steps 5000000
    torchrun --nproc-per-node 2 train.py --algo ppo ...      (one process per GPU)

Counting with many environments: ``--total-steps`` counts env transitions over all
environments (and ranks); ``--rollout-steps`` is PPO's steps *per environment* per rollout;
``--batch-size`` is the minibatch in transitions; ``--eval-interval`` counts transitions.
See README "Flags with many environments".

Every flag is generated from a dataclass field (:class:`hear_vec.training.RunConfig` and the
learner configs, :mod:`hear_vec.config_flags`): ``--field-name``, ``--x/--no-x`` for bools.
"""

from __future__ import annotations

import argparse
import sys

from hear_vec.agents import NonFiniteLossError
from hear_vec.checkpoint import CheckpointError
from hear_vec.cli.common import OneLineParser
from hear_vec.config_flags import SuggestingParserMixin, add_dataclass_flags
from hear_vec.training import FLAG_GROUPS, RunConfig, TrainingInterrupted, run

__all__ = ["build_parser", "config_from_args", "main"]


class _Parser(SuggestingParserMixin, OneLineParser):
    """One-line errors; a misspelt flag names the nearest one."""


def build_parser() -> argparse.ArgumentParser:
    """train.py's flags, generated from :class:`~hear_vec.training.RunConfig` (run, env, data
    and randomization fields with their help) and every learner config's fields (the learner
    group; see :mod:`hear_vec.config_flags`). Flags left out are absent from the namespace."""
    p = _Parser(prog="train.py", description="Train a denoising agent (hear_vec).",
                allow_abbrev=False)
    add_dataclass_flags(p, RunConfig, groups=FLAG_GROUPS)
    return p


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The RunConfig of parsed flags: the flags given, the dataclass defaults for the rest."""
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
    return RunConfig.from_dict(values)


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
        log_dir = vars(args).get("log_dir", RunConfig().log_dir)
        where = f" {exc.filename}" if exc.filename else f" into {log_dir}"
        print(f"train.py: error: cannot write{where}: {exc.strerror or exc} (files already "
              f"written are complete: every write is atomic)", file=sys.stderr)
        return 1
    if final:
        parts = [f"{k}={v:.3f}" for k, v in final.items() if isinstance(v, float)]
        print(f"final evaluation: {', '.join(parts)}")
        print(f"model: {cfg.log_dir}/model.pt  (logs, checkpoint.pt, metrics.json beside it)")
    return 0
