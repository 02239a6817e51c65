"""``python -m hear_vec.sweep``: the command line of :func:`hear_vec.sweep.run_sweep` (see
:mod:`hear_vec.sweep` for the config format, skipping / resuming and summary.csv)."""

from __future__ import annotations

import sys
from pathlib import Path

from hear_vec.cli.common import OneLineParser, first_line
from hear_vec.sweep import run_sweep
from hear_vec.training import TrainingInterrupted

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m hear_vec.sweep",
                           description="Run a grid of train.py configurations.")
    parser.add_argument("--config", required=True, help="the seed's experiments JSON")
    parser.add_argument("--output-root", default="runs/experiments")
    parser.add_argument("--dry-run", action="store_true", help="list the runs, train nothing")
    parser.add_argument("--progress", action="store_true", help="progress bar for each run")
    args = parser.parse_args(argv)
    try:
        table = run_sweep(args.config, args.output_root, args.dry_run, args.progress)
    except TrainingInterrupted as exc:
        print(f"sweep: {exc}; re-run the same command to continue", file=sys.stderr)
        return 130
    except ValueError as exc:
        print(f"{parser.prog}: error: {first_line(exc)}", file=sys.stderr)
        return 2
    if not table.empty:
        print(table.to_string(index=False))
    if not args.dry_run:
        print(f"summary: {Path(args.output_root) / 'summary.csv'}")
    failed = table["status"].astype(str).str.startswith("failed").sum() if len(table) else 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
