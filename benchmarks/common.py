"""Shared helpers for the benchmark scripts: timing, environment facts, result writing."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["sync", "time_call", "machine_info", "write_results", "markdown_table"]


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_call(fn: Callable[[], Any], device: torch.device | str, repeats: int = 5,
              warmup: int = 1) -> float:
    """Median wall time of fn() in milliseconds, after warm-up, synchronizing the device."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def machine_info(device: torch.device | str) -> dict[str, Any]:
    device = torch.device(device)
    info = {
        "device": device.type,
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
        try:
            info["driver"] = torch.cuda.get_device_properties(device).name
        except Exception:  # pragma: no cover - informational only
            pass
    return info


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
        return str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_results(path: str | Path | None, payload: dict[str, Any]) -> None:
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)


def split_data_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the script's own flags, train.py's data flags): ``argv`` split at its first ``--``."""
    if "--" not in argv:
        return list(argv), []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


def load_data_split(data_flags: list[str]):
    """The training / validation :class:`~hear_vec.data.splits.CorpusSplit` that train.py with
    ``data_flags`` trains on (same corpus, randomization and split), on the CPU."""
    from hear_vec.cli.train import build_parser, config_from_args
    from hear_vec.training import load_split

    return load_split(config_from_args(build_parser().parse_args(data_flags)),
                      torch.device("cpu"))
