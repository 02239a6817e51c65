"""Helpers shared by the command-line tools (``train.py``, ``infer.py``,
``python -m hear_vec.evaluate`` / ``.sweep`` / ``.features`` / ``.demo`` / ``.data.demo``).

- :class:`OneLineParser`: an ``argparse.ArgumentParser`` whose errors are ONE line,
  ``prog: error: <message>``, on stderr, with exit status 2 (no usage block, no traceback).
- Argument types: :func:`positive_int`, :func:`nonnegative_int`, :func:`positive_float`,
  :func:`nonnegative_float`.
- :func:`resolve_device` / :class:`DeviceError`: re-exported from :mod:`hear_vec.devices`
  (library code imports them from there; hear_vec's library never imports ``hear_vec.cli``).
- :func:`first_line`: an exception as one short line, for ``prog: error: ...`` messages
  (re-exported from :mod:`hear_vec._text`).
- :class:`Progress`: a tqdm bar counting items (files, utterances) that also shows the audio
  throughput in audio-seconds per second; it draws only on a terminal unless asked.
- :func:`load_agents`: ``--device`` and ``--checkpoint`` paths -> the device and the trained
  agents on it, every problem
  (missing / corrupt / foreign checkpoint, mixed sample rates) one ``parser.error`` line.
- :func:`length_batches` / :func:`pad_rows`: re-exported from :mod:`hear_vec.batching`.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, NoReturn, TextIO

import torch

from hear_vec._text import first_line
from hear_vec.batching import length_batches, pad_rows
from hear_vec.devices import DeviceError, resolve_device

__all__ = [
    "OneLineParser",
    "DeviceError",
    "resolve_device",
    "add_device_argument",
    "positive_int",
    "nonnegative_int",
    "positive_float",
    "nonnegative_float",
    "first_line",
    "Progress",
    "load_agents",
    "length_batches",
    "pad_rows",
]


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose ``error()`` prints ``prog: error: message`` on one line and exits 2.

    The standard parser prints the whole usage block first; with dozens of flags that buries
    the one line that matters. ``--help`` still prints the full usage.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {first_line(message)}\n")


def add_device_argument(parser: argparse.ArgumentParser | Any, default: str = "auto") -> None:
    """Add the common ``--device`` flag (resolve it with :func:`resolve_device`)."""
    parser.add_argument("--device", default=default,
                        help=f"auto, cpu, cuda or cuda:N (default {default}: CUDA when "
                             f"available, else CPU)")


def _number(kind: type, text: str, ok, what: str) -> Any:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    return _number(int, text, lambda v: v >= 1, "a positive integer")


def nonnegative_int(text: str) -> int:
    """argparse type: an int >= 0."""
    return _number(int, text, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    return _number(float, text, lambda v: 0 < v < float("inf"), "a positive number")


def nonnegative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    return _number(float, text, lambda v: 0 <= v < float("inf"), "a number >= 0")


class Progress:
    """A tqdm bar over ``total`` items that also shows audio-seconds per second.

    ``update(items=1, audio_seconds=x)`` advances it; ``write(line)`` prints a line above the
    bar (use it for per-item errors so the bar is not torn); ``close()`` ends it. tqdm's own
    rate shows items/s; the postfix shows the audio rate since the start. ``enabled=None``
    draws only when ``file`` is a terminal.
    """

    def __init__(self, total: int, desc: str = "", unit: str = "file",
                 enabled: bool | None = None, file: TextIO | None = None) -> None:
        from tqdm.auto import tqdm

        self.file = file if file is not None else sys.stderr
        disable = (not self.file.isatty()) if enabled is None else (not enabled)
        self.bar = tqdm(total=total, desc=desc, unit=unit, disable=disable, file=self.file,
                        dynamic_ncols=True, smoothing=0.1)
        self.audio_seconds = 0.0
        self.items = 0
        self.start = time.perf_counter()

    def update(self, items: int = 1, audio_seconds: float = 0.0) -> None:
        self.items += items
        self.audio_seconds += audio_seconds
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix_str(f"{self.audio_seconds / elapsed:.1f} audio-s/s", refresh=False)
        self.bar.update(items)

    def write(self, line: str) -> None:
        self.bar.write(line, file=self.file)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_agents(parser: argparse.ArgumentParser, paths: list[str], device_spec: str
                ) -> tuple[torch.device, list[Any]]:
    """The ``--device`` and the ``DenoisingAgent`` s of the ``--checkpoint`` paths on it.

    An unavailable device, a checkpoint that cannot be loaded, or checkpoints trained at
    different sample rates end the program through ``parser.error`` (one line, exit 2)."""
    from hear_vec.checkpoint import CheckpointError
    from hear_vec.inference import DenoisingAgent

    try:
        device = resolve_device(device_spec)
    except DeviceError as exc:
        parser.error(str(exc))
    agents: list[DenoisingAgent] = []
    for path in paths:
        try:
            agents.append(DenoisingAgent.from_file(path, device))
        except CheckpointError as exc:
            parser.error(f"--checkpoint {first_line(exc)}")
    rates = {agent.sample_rate for agent in agents}
    if len(rates) > 1:
        parser.error(f"the checkpoints were trained at different sample rates "
                     f"{sorted(rates)}; run them separately")
    return device, agents
