"""Helpers shared by the command-line tools (``train.py``, ``infer.py``,
``python -m hear_vec.evaluate``, ``python -m hear_vec.features``).

- :class:`OneLineParser`: an ``argparse.ArgumentParser`` whose errors are ONE line,
  ``prog: error: <message>``, on stderr, with exit status 2 (no usage block, no traceback).
- Argument types: :func:`positive_int`, :func:`nonnegative_int`, :func:`positive_float`,
  :func:`nonnegative_float`.
- :func:`resolve_device`: ``"auto" | "cpu" | "cuda" | "cuda:N"`` -> ``torch.device``, raising
  :class:`DeviceError` (a ``ValueError``) with one clear line when CUDA is asked for but absent.
- :func:`first_line`: an exception as one short line, for ``prog: error: ...`` messages.
- :class:`Progress`: a tqdm bar counting items (files, utterances) that also shows the audio
  throughput in audio-seconds per second; it draws only on a terminal unless asked.
- :func:`load_agents`: ``--device`` and ``--checkpoint`` paths -> the device and the trained
  agents on it, every problem
  (missing / corrupt / foreign checkpoint, mixed sample rates) one ``parser.error`` line.
- :func:`length_batches` / :func:`pad_rows`: plan batches of similar length under an item and
  a sample budget, and pad rows into a ``[B, T]`` tensor with ``lengths``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, NoReturn, TextIO

import torch

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


def first_line(exc: BaseException | str, limit: int = 300) -> str:
    """``str(exc)`` squeezed onto one line (whitespace runs -> one space), at most ``limit``
    characters; the exception type's name when the message is empty."""
    text = " ".join(str(exc).split())
    if not text and isinstance(exc, BaseException):
        text = type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose ``error()`` prints ``prog: error: message`` on one line and exits 2.

    The standard parser prints the whole usage block first; with dozens of flags that buries
    the one line that matters. ``--help`` still prints the full usage.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {first_line(message)}\n")


class DeviceError(ValueError):
    """A device string that names no usable device on this machine."""


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None): the current CUDA device when one is available, else the CPU;
    ``"cpu"``; ``"cuda"`` / ``"cuda:N"``. Raises :class:`DeviceError` with one line when CUDA
    is asked for but not available, or the index is out of range; never falls back silently."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = "auto" if spec is None else str(spec).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        index_text = text[5:] if text.startswith("cuda:") else ""
        if index_text and not index_text.isdigit():
            raise DeviceError(f"invalid device {spec!r}; expected auto, cpu, cuda or cuda:N")
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r} asked for, but CUDA is not available on this "
                              f"machine (torch {torch.__version__}, "
                              f"CUDA build {torch.version.cuda or 'none'}); use --device cpu")
        count = torch.cuda.device_count()
        if index_text and int(index_text) >= count:
            raise DeviceError(f"device {spec!r} asked for, but this machine has {count} CUDA "
                              f"device(s) (cuda:0..cuda:{count - 1})")
        return torch.device(text)
    raise DeviceError(f"invalid device {spec!r}; expected auto, cpu, cuda or cuda:N")


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


def length_batches(lengths: list[int] | tuple[int, ...], max_items: int,
                   max_samples: int) -> list[list[int]]:
    """Indices of ``lengths`` packed into batches of similar length: sorted longest first, a
    batch grows while it holds fewer than ``max_items`` items and its padded size
    (items x longest) stays within ``max_samples``; an item longer than ``max_samples`` gets
    a batch of its own. Host-side planning (plain ints)."""
    if max_items < 1 or max_samples < 1:
        raise ValueError(f"max_items and max_samples must be >= 1, got {max_items}, "
                         f"{max_samples}")
    order = sorted(range(len(lengths)), key=lambda i: (-int(lengths[i]), i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = max(int(lengths[i]), 1)
        if current and (len(current) >= max_items or (len(current) + 1) * longest > max_samples):
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    if current:
        batches.append(current)
    return batches


def pad_rows(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D tensors (same device and dtype) -> (zero-padded [B, T_max], lengths LongTensor[B])."""
    if not rows:
        raise ValueError("pad_rows needs at least one row")
    lengths = torch.tensor([int(r.shape[-1]) for r in rows], dtype=torch.long,
                           device=rows[0].device)
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True), lengths
