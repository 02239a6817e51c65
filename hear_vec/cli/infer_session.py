"""One ``infer.py`` run over its groups of files: the state it keeps and how it settles
every file (finished, failed with one error line, or left for a rerun when cut short).

:class:`RunState` holds the counts of the summary line and the metric rows;
:class:`Session` reads the next group in a worker thread while the device works on this one,
writes outputs in background threads (:func:`hear_vec.audio_io.write_audio_atomic`) and
settles the writes as they finish. A write cut short by Ctrl-C / SIGTERM re-raises the
interrupt; a write that fails for the disk as a whole (full, read-only:
:data:`hear_vec.atomic.DISK_ERRNOS`) raises :class:`Unwritable`, which stops the run; any
other write error fails that file only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from hear_vec.atomic import is_disk_error, sweep_stale_temps
from hear_vec.audio_io import AUDIO_EXTENSIONS, write_audio_atomic
from hear_vec.cli.common import Progress, first_line
from hear_vec.cli.infer_jobs import FileJob, load_job, output_subtype
from hear_vec.cli.infer_report import group_metrics, trace_records
from hear_vec.cli.infer_runner import Runner

__all__ = ["PROG", "RunState", "Settings", "Session", "Unwritable"]

PROG = "infer.py"


@dataclass
class Settings:
    """The agents and the sizes derived from the flags."""

    args: argparse.Namespace
    runner: Runner
    tags: list[str]                       # one per checkpoint (trace, metrics)
    output_tags: list[str | None]         # [None] with one checkpoint (names kept)
    rate: int                             # the model's sample rate
    steps: list[int]                      # denoising steps per checkpoint
    batch_samples: int


@dataclass
class RunState:
    """What a run has done so far: the counts of the summary line and the metric rows."""

    finished: int = 0                     # files whose outputs are all written
    outputs_written: int = 0
    audio_seconds: float = 0.0            # of the finished files
    failed: list[str] = field(default_factory=list)   # files reported as failed
    metric_rows: list[dict[str, Any]] = field(default_factory=list)


class Unwritable(Exception):
    """A write failed for the destination as a whole (disk full, read-only): stop the run."""

    def __init__(self, dest: Path | str, err: BaseException) -> None:
        reason = getattr(err, "strerror", None) or first_line(err, 160)
        super().__init__(f"cannot write {dest}: {reason}")


@dataclass
class _Pending:
    """A job whose outputs are being written (checkpoint index, future)."""

    job: FileJob
    writes: list[tuple[int, Future]]


_DONE, _FAILED, _CUT = "done", "failed", "cut"


class Session:
    """One run over the groups: reads the next group while the device works on this one,
    writes outputs in background threads, and settles every file exactly once -- finished,
    failed (one error line), or left for a rerun when a write is cut short."""

    def __init__(self, settings: Settings, progress: Progress) -> None:
        self.settings = settings
        self.args = settings.args
        self.progress = progress
        self.state = RunState()
        self.pending: list[_Pending] = []
        self.pool = ThreadPoolExecutor(max_workers=max(self.args.workers, 1),
                                       thread_name_prefix="infer-io")
        self.trace: TextIO | None = None
        self.trace_error: Unwritable | None = None
        self.swept: set[Path] = set()       # output folders cleared of stale temporary files

    def open_trace(self) -> None:
        """Open ``--trace`` (raises OSError)."""
        if self.args.trace is not None:
            self.trace = open(self.args.trace, "w", encoding="utf-8")  # noqa: SIM115

    def fail(self, job: FileJob, reason: str) -> None:
        if job.display in self.state.failed:
            return
        self.state.failed.append(job.display)
        self.progress.write(f"{PROG}: error: {job.display}: {reason}")
        self.progress.update(1)

    # reading and denoising
    def run(self, groups: list[list[FileJob]]) -> None:
        """All groups; raises KeyboardInterrupt (cut short) or Unwritable (disk)."""
        loading = self._read(groups[0]) if groups else []
        for g in range(len(groups)):
            loaded = [f.result() for f in loading]
            loading = self._read(groups[g + 1]) if g + 1 < len(groups) else []
            self._denoise(loaded)
            self.collect(block=False)
        self.collect(block=True)

    def _read(self, group: list[FileJob]) -> list[Future]:
        return [self.pool.submit(load_job, job) for job in group]

    def _report_loaded(self, job: FileJob) -> None:
        if job.error is not None:
            self.fail(job, job.error)
        elif job.clean_error is not None:
            self.progress.write(f"{PROG}: warning: no metrics for {job.display}: clean "
                                f"reference {job.clean} {job.clean_error}")
        elif self.args.clean is not None and job.clean is None:
            self.progress.write(f"{PROG}: warning: no metrics for {job.display}: no clean "
                                f"reference found under {self.args.clean}")

    def _denoise(self, loaded: list[FileJob]) -> None:
        for job in loaded:
            self._report_loaded(job)
        work = [job for job in loaded if job.error is None]
        to_write = self.settings.runner.process(work)
        if self.args.clean is not None:
            self.state.metric_rows += group_metrics(work, self.settings.runner,
                                                    self.settings.tags,
                                                    list(self.args.checkpoint))
        submitted = self._submit(to_write)
        for job in work:
            if job.error is not None:
                self.fail(job, job.error)
            elif id(job) not in submitted:
                self.fail(job, "nothing was produced")
        self.pending.extend(submitted.values())
        for job in work:  # drop input audio held only for processing
            job.audio = None

    def _submit(self, to_write: list[tuple[FileJob, int, np.ndarray]]) -> dict[int, _Pending]:
        submitted: dict[int, _Pending] = {}
        for job, a, audio in to_write:
            if job.error is not None:
                continue
            dest = job.outputs[a]
            assert dest is not None
            if dest.parent not in self.swept:  # temporary files of a killed run, once a folder
                self.swept.add(dest.parent)
                sweep_stale_temps(dest.parent, AUDIO_EXTENSIONS)
            fut = self.pool.submit(write_audio_atomic, dest, audio, job.sample_rate,
                                   output_subtype(job, dest), clean_stale=False)
            submitted.setdefault(id(job), _Pending(job, [])).writes.append((a, fut))
        return submitted

    # settling finished writes
    def collect(self, block: bool, interrupting: bool = False) -> None:
        """Settle the jobs whose writes are done (all of them when ``block``). A write cut
        short by an interrupt leaves its job unfinished (no error line) and re-raises the
        interrupt once the others are settled; a disk error raises :class:`Unwritable`
        likewise. With ``interrupting`` (already stopping) neither is raised."""
        keep: list[_Pending] = []
        cut, unwritable = False, None
        for item in self.pending:
            if not block and not all(f.done() for _, f in item.writes):
                keep.append(item)
                continue
            outcome = self._settle(item)
            if isinstance(outcome, Unwritable):
                unwritable = unwritable or outcome
            cut = cut or outcome == _CUT
        self.pending = keep
        unwritable = unwritable or self.trace_error
        if interrupting:
            return
        if unwritable is not None:
            raise unwritable
        if cut:
            raise KeyboardInterrupt("a write was interrupted")

    def _settle(self, item: _Pending) -> str | Unwritable:
        job, cut, unwritable = item.job, False, None
        for a, fut in item.writes:
            if fut.cancelled():
                cut = True
                continue
            err = fut.exception()
            if err is None:
                self.state.outputs_written += 1
            elif is_disk_error(err):
                unwritable = unwritable or Unwritable(job.outputs[a], err)
            elif isinstance(err, Exception):
                job.error = job.error or f"cannot write {job.outputs[a]} ({first_line(err, 160)})"
            else:  # KeyboardInterrupt / SystemExit inside the writer
                cut = True
        if cut or unwritable is not None:
            job.release()
            return unwritable if unwritable is not None else _CUT
        if job.error is not None:
            self.fail(job, job.error)
            return _FAILED
        self.state.finished += 1
        self.state.audio_seconds += job.seconds
        if self.trace is not None and self.trace_error is None:
            self._write_trace(job, [a for a, _ in item.writes])
        self.progress.update(1, job.seconds)
        job.release()
        return _DONE

    def _write_trace(self, job: FileJob, checkpoints: list[int]) -> None:
        """Append the job's records; a failed write stops the run (raised by collect)."""
        s = self.settings
        assert self.trace is not None
        try:
            for record in trace_records(job, checkpoints, list(self.args.checkpoint), s.tags,
                                        s.steps, s.rate):
                self.trace.write(json.dumps(record) + "\n")
            self.trace.flush()
        except OSError as err:
            self.trace_error = self.trace_error or Unwritable(self.args.trace, err)

    def stop(self) -> None:
        """Cancel what has not started, wait for running writes and settle them."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        with contextlib.suppress(Unwritable):
            self.collect(block=True, interrupting=True)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.trace is not None and not self.trace.closed:
            with contextlib.suppress(OSError):
                self.trace.close()
