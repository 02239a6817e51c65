"""A fixed chain on a train.py run's validation clips, through training's own evaluation.

    python benchmarks/fixed_chain_on_validation.py runs/pretrained_sac \
        [--method mmse_lsa --knobs 1 0 0.5 --repeats 1] [--json out.json]

Rebuilds the run's split and evaluation env from its ``args.json`` (same clips, same seed as
the run's evaluations) and evaluates "``method`` with ``knobs`` ``repeats`` times, then stop"
(the run must have ``--stop-action``), so the number sits beside the run's ``eval/si_sdr_gain``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import Tensor

from hear_vec.env.transition import STOP
from hear_vec.ops import METHODS
from hear_vec.training import RunConfig, evaluate, load_split, make_envs


class FixedChain:
    """``method`` for ``repeats`` steps, then STOP. :func:`run_episodes` ends a batch once
    every row has stopped, i.e. after ``repeats + 1`` calls, so the call count gives the step."""

    def __init__(self, method: int, knobs: tuple[float, float, float], repeats: int) -> None:
        self.method, self.knobs, self.repeats, self.calls = method, knobs, repeats, 0

    def act(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        step = self.calls % (self.repeats + 1)
        self.calls += 1
        method = self.method if step < self.repeats else STOP
        return torch.tensor([float(method), *self.knobs]).expand(obs.shape[0], 4).clone()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--method", default="mmse_lsa", choices=list(METHODS))
    p.add_argument("--knobs", type=float, nargs=3, default=(1.0, 0.0, 0.5))
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    saved = json.loads((Path(args.run_dir) / "args.json").read_text())
    fields = RunConfig.__dataclass_fields__
    cfg = RunConfig(**{k: tuple(v) if isinstance(v, list) else v
                       for k, v in saved.items() if k in fields})
    if not cfg.stop_action or args.repeats >= cfg.max_steps:
        print("fixed_chain_on_validation: the run needs --stop-action and max_steps > repeats",
              file=sys.stderr)
        return 2
    device = torch.device("cpu")
    split = load_split(cfg, device)
    _, eval_env = make_envs(cfg, split.train, split.valid, device, 0)
    policy = FixedChain(list(METHODS).index(args.method), tuple(args.knobs), args.repeats)
    result = evaluate(policy, eval_env, cfg.eval_episodes)
    row = {"run": str(args.run_dir), "method": args.method, "knobs": list(args.knobs),
           "repeats": args.repeats, **result}
    print(json.dumps(row))
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
