"""Hyper-parameter sweeps: ``python -m hear_vec.sweep --config experiments.json``.

The config is the seed's JSON::

    {"experiments": [
        {"name": "ppo_lr", "algo": "ppo",
         "base_args": {"total_steps": 20000, "num_envs": 64},
         "sweep_params": {"actor_lr": [1e-4, 3e-4], "entropy_coef": [0.0, 0.01]}}
    ]}

Keys are train.py flags (= :class:`~hear_vec.training.RunConfig` fields, learner fields
included), with underscores or dashes; an unknown key is an error naming the nearest flag,
and a learner field of another algorithm (``clip_range`` in a sac experiment) is an error.
The grid of an experiment is the product of its ``sweep_params`` lists (in the order given;
an empty dict is one run).
Combination ``idx`` runs into ``<output-root>/<name>/<idx>_<timestamp>/`` exactly as
``train.py`` would (args.json, checkpoint.pt, model.pt, metrics.json, TensorBoard events).

Re-running the same sweep skips every combination whose folder already holds a model.pt
with the same arguments, and resumes one that holds only a checkpoint.pt (an interrupted
run). A failed combination is recorded and the sweep goes on. ``<output-root>/summary.csv``
gets one row per combination: experiment, idx, algo, the swept values, status, run_dir and
the final evaluation (return, si_sdr_gain, stoi_gain, estoi_gain, train_seconds).
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from hear_vec._text import first_line
from hear_vec.agents import NonFiniteLossError
from hear_vec.checkpoint import CheckpointError
from hear_vec.config_flags import check_algo_keys, check_keys
from hear_vec.training import ALGOS, RUN_FIELDS, RunConfig, TrainingInterrupted, run

__all__ = ["Combination", "load_sweep", "plan", "run_sweep"]

_FIELDS = tuple(name for name in RUN_FIELDS if name not in ("log_dir", "resume"))


class Combination(dict):
    """One run of a sweep: experiment name, index, algo and the flag values."""


def _normalize_key(key: str) -> str:
    return key.strip().lstrip("-").replace("-", "_")


def _check_args(where: str, values: dict[str, Any], algo: str | None = None) -> dict[str, Any]:
    """Keys as RunConfig fields; an unknown key names the nearest one, and a learner field of
    another algorithm than ``algo`` is an error."""
    out = {}
    for key, value in values.items():
        name = _normalize_key(key)
        if name in ("log_dir", "resume"):
            raise ValueError(f"{where}: {key!r} is set by the sweep itself")
        check_keys([name], _FIELDS, where, what="train.py flag")
        out[name] = tuple(value) if isinstance(value, list) and name in (
            "snr_range", "hidden_dims") else value
    if algo is not None:
        try:
            check_algo_keys(algo, [k for k, v in out.items() if v is not None])
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return out


def load_sweep(path: str | Path) -> list[dict[str, Any]]:
    """Read and check the seed's sweep JSON; returns the list of experiments."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    experiments = config.get("experiments") if isinstance(config, dict) else None
    if not isinstance(experiments, list) or not experiments:
        raise ValueError(f"{path}: needs a non-empty 'experiments' list")
    names = set()
    for i, exp in enumerate(experiments):
        if not isinstance(exp, dict) or not isinstance(exp.get("name"), str) or not exp["name"]:
            raise ValueError(f"{path}: experiment {i} needs a 'name'")
        if exp["name"] in names:
            raise ValueError(f"{path}: experiment name {exp['name']!r} appears twice")
        names.add(exp["name"])
        algo = exp.get("algo", exp.get("base_args", {}).get("algo", "ppo"))
        if algo not in ALGOS:
            raise ValueError(f"{path}: experiment {exp['name']!r}: unknown algo {algo!r}")
        sweep = exp.get("sweep_params", {}) or {}
        if not isinstance(sweep, dict) or not all(
                isinstance(v, list) and v for v in sweep.values()):
            raise ValueError(f"{path}: experiment {exp['name']!r}: sweep_params must map flags "
                             "to non-empty lists")
        _check_args(f"{path}: {exp['name']}", exp.get("base_args", {}) or {}, algo)
        _check_args(f"{path}: {exp['name']}", {k: v[0] for k, v in sweep.items()}, algo)
    return experiments


def plan(experiments: list[dict[str, Any]]) -> list[Combination]:
    """Every combination of every experiment, in order."""
    out = []
    for exp in experiments:
        base = _check_args(exp["name"], exp.get("base_args", {}) or {})
        sweep = _check_args(exp["name"], {k: v for k, v in (exp.get("sweep_params") or {}).items()})
        algo = exp.get("algo", base.get("algo", "ppo"))
        keys = list(sweep)
        for idx, combo in enumerate(itertools.product(*(sweep[k] for k in keys))):
            swept = dict(zip(keys, combo))
            values = {**base, **swept, "algo": algo}
            out.append(Combination(name=exp["name"], idx=idx, algo=algo, swept=swept,
                                   values=values))
    return out


def _existing_run(exp_dir: Path, idx: int, values: dict[str, Any]) -> tuple[Path | None, str]:
    """A previous folder of this combination: ('done' | 'partial', path) or (None, 'new')."""
    for folder in sorted(exp_dir.glob(f"{idx}_*")):
        args_file = folder / "args.json"
        if not args_file.is_file():
            continue
        try:
            saved = json.loads(args_file.read_text())
        except json.JSONDecodeError:
            continue
        expected = asdict(RunConfig.from_dict(values))
        same = all(json.dumps(saved.get(k)) == json.dumps(_jsonable(expected[k]))
                   for k in expected if k not in ("log_dir", "resume", "progress"))
        if not same:
            continue
        if (folder / "model.pt").is_file():
            return folder, "done"
        if (folder / "checkpoint.pt").is_file():
            return folder, "partial"
    return None, "new"


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _final_eval(folder: Path) -> dict[str, Any]:
    metrics = folder / "metrics.json"
    if not metrics.is_file():
        return {}
    return json.loads(metrics.read_text()).get("final_eval", {})


def run_sweep(config: str | Path, output_root: str | Path = "runs/experiments",
              dry_run: bool = False, progress: bool = False) -> pd.DataFrame:
    """Run (or skip / resume) every combination; returns and writes the summary table."""
    combos = plan(load_sweep(config))
    root = Path(output_root)
    rows = []
    for combo in combos:
        exp_dir = root / combo["name"]
        folder, status = _existing_run(exp_dir, combo["idx"], combo["values"])
        label = f"{combo['name']}[{combo['idx']}] {combo['swept']}"
        if status == "done":
            print(f"skip   {label}: finished in {folder}")
        elif dry_run:
            print(f"plan   {label}")
        else:
            resume = status == "partial"
            if folder is None:
                folder = exp_dir / f"{combo['idx']}_{time.strftime('%Y%m%d-%H%M%S')}"
            print(f"{'resume' if resume else 'run':6s} {label} -> {folder}", flush=True)
            cfg = RunConfig.from_dict({**combo["values"], "log_dir": str(folder),
                                       "resume": resume, "progress": progress})
            try:
                run(cfg)
                status = "done"
            except TrainingInterrupted:
                raise
            except (ValueError, CheckpointError, NonFiniteLossError, RuntimeError) as exc:
                status = f"failed: {first_line(exc, 200)}"
                print(f"failed {label}: {first_line(exc, 200)}", file=sys.stderr)
        row = {"experiment": combo["name"], "idx": combo["idx"], "algo": combo["algo"],
               **{f"param.{k}": _jsonable(v) for k, v in combo["swept"].items()},
               "status": status if not dry_run or status == "done" else "planned",
               "run_dir": str(folder) if folder is not None else ""}
        if folder is not None:
            row.update({f"final.{k}": v for k, v in _final_eval(folder).items()})
        rows.append(row)
    table = pd.DataFrame(rows)
    if not dry_run:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / ".summary.csv.tmp"
        table.to_csv(tmp, index=False)
        tmp.replace(root / "summary.csv")
    return table


if __name__ == "__main__":  # ``python -m hear_vec.sweep``: the command line lives in hear_vec.cli
    from hear_vec.cli.sweep import main

    raise SystemExit(main())
