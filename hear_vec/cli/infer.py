"""``infer.py``: denoise a file or a whole folder with one or more trained agents.

    python infer.py --input noisy/ --output denoised/        (the packaged pretrained agent)
    python infer.py --checkpoint runs/rl_train/model.pt --input noisy/ --output denoised/
    python infer.py --checkpoint runs/a/model.pt --checkpoint runs/b/model.pt \\
        --input noisy/ --output out/ --clean clean/ --metrics-csv out/metrics.csv \\
        --trace out/trace.jsonl

Inputs and outputs
------------------
``--input`` is a file or a folder; a folder is walked recursively for ``.wav`` / ``.flac``
files (hidden files and folders are left out) and ``--output`` (a folder) mirrors its
structure. For a file input, ``--output`` is the output file (``.wav``/``.flac``) or a folder
to put it in. With several ``--checkpoint`` s each output is named ``<stem>__<tag><ext>``; the
tag is each checkpoint's parent folder name (``runs/ppo_a/model.pt`` -> ``ppo_a``), or its
file stem when parent names repeat, made unique with ``-2``, ``-3``... (see
:func:`checkpoint_tags`). With one checkpoint the name is kept as it is.

Every output keeps its input's sample rate, channel count, exact length (samples) and, where
soundfile can write it in the output's format, its sample subtype (PCM_16, PCM_24, FLOAT...;
otherwise the format's default, PCM_16). Outputs get the user's umask (0644 under umask 022).

Policies
--------
* Sample rate: each file is resampled to the model's rate (:func:`hear_vec.resample.resample`:
  torchaudio's filter on the device, bounded memory; odd rates such as 44101 Hz use the
  nearest ratio with terms <= 1000), denoised, resampled back and cut to its original length.
* Channels: each channel is denoised as its own row, independently (the agent picks methods and
  knobs per channel); channels are never mixed. Metrics use the channel mean.
* Long files: a file longer than ``--chunk-seconds`` (default 20 s at the model rate) is cut
  into chunks of equal length (at most ``--chunk-seconds``) that overlap by
  ``--overlap-seconds`` (default 1 s); each chunk is an episode of its own (own features,
  own decisions) and the denoised chunks are joined with a linear crossfade over the overlap
  (complementary ramps that sum to one, so identical chunk outputs join seamlessly). Memory
  per device call is then bounded whatever the file length: the spectral-gate neighbour
  filter costs O(frames^2) per row (a 60-s row alone takes ~1.5 GB on the CPU). A file's own
  samples are held whole (host memory grows with its length). ``--chunk-seconds 0`` turns
  chunking off.
* Batching: files are sorted by length and packed so that a device call holds at most
  ``--batch-size`` rows (channels x chunks) and ``--batch-seconds`` of padded audio; rows carry
  their ``lengths``, so padding never changes a result. Reading the next batch and writing
  finished files run in background threads while the device works.
* Robustness: a file that cannot be used (missing, unreadable, not audio, truncated FLAC,
  empty, NaN/Inf samples, a rate outside 1 kHz .. 1 MHz; see :mod:`hear_vec.audio_io`) or
  that fails later is reported in one line (``infer.py: error: <file>: <why>``) and skipped;
  the rest still come out; the exit status is 1 when any file failed, with a summary at the
  end. A CUDA out-of-memory error halves the device batch and retries.
* Outputs are written to a hidden temporary file in the destination folder and renamed over
  the final name (:mod:`hear_vec.atomic`), so a killed run (even ``kill -9``) never leaves a
  partial output; temporary files of a killed run are removed when their folder is written
  again. Existing outputs are skipped unless ``--overwrite``, so rerunning an interrupted
  command resumes it. Outputs are not fsynced one by one (4.5 ms a file on the development
  disk); what a power loss right after a rename can leave is an empty file, and empty
  outputs are redone. An output path that would replace an input file, ``--output`` equal to
  ``--input`` and an output folder inside the input folder are refused.
* An output folder that cannot be written (read-only, permission denied) is refused before
  any work, in one line (exit 2). A disk that fills up (or turns read-only) during the run
  stops it at once with one line naming the file and the reason (exit 1): outputs finished
  before are complete, no partial file is left, and rerunning the same command once there is
  space resumes it. Inputs are only ever read.
* ``--trace PATH``: one JSON line per output file: input, output, checkpoint, tag, rates,
  channels, seconds, and ``segments`` (one per channel and chunk: channel, start / end in
  seconds, ``steps``: method, method_id, strength, smoothing, band_mix per step; an agent's
  stop action ends the list with ``{"method": "stop", "method_id": 5}``).
* ``--clean FILE|DIR``: the clean reference(s) (a folder matched by relative path, either
  extension); SI-SDR, STOI and ESTOI before and after are computed at the model's rate on the
  channel mean (lengths cropped to the shorter), printed as a table, and written to
  ``--metrics-csv`` (columns: file, output, model, checkpoint, seconds, si_sdr_before,
  si_sdr_after, si_sdr_gain, stoi_before, stoi_after, estoi_before, estoi_after) for the files
  denoised in this run (outputs skipped as existing are not re-scored).

Exit status: 0 all done, 1 some file failed (or the disk filled up), 2 bad arguments,
checkpoint or output folder, 130 interrupted.

Code: this module parses the flags and runs the session (:class:`RunState` holds its
counters); :mod:`~hear_vec.cli.infer_jobs` plans and reads the files,
:mod:`~hear_vec.cli.infer_chunks` cuts and joins long files, :mod:`~hear_vec.cli.infer_runner`
is the batched denoiser (``DenoisingAgent.run``) and :mod:`~hear_vec.cli.infer_report` the
metrics, trace and summary.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hear_vec.atomic import check_writable_folder
from hear_vec.cli.common import (
    OneLineParser,
    Progress,
    add_device_argument,
    first_line,
    load_agents,
    nonnegative_float,
    positive_float,
    positive_int,
)
from hear_vec.cli.infer_chunks import chunk_plan, crossfade_join
from hear_vec.cli.infer_jobs import (
    FileJob,
    UsageError,
    checkpoint_tags,
    pack_groups,
    plan_jobs,
    probe_job,
    tagged_path,
)
from hear_vec.cli.infer_report import print_metrics, summary_line, write_csv_atomic
from hear_vec.cli.infer_runner import Runner
from hear_vec.cli.infer_session import PROG, RunState, Session, Settings, Unwritable
from hear_vec.pretrained import pretrained_model

__all__ = [
    "build_parser",
    "main",
    "RunState",
    "checkpoint_tags",
    "tagged_path",
    "chunk_plan",
    "crossfade_join",
    "DEFAULT_CHUNK_SECONDS",
    "DEFAULT_OVERLAP_SECONDS",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_CHUNK_SECONDS = 20.0
DEFAULT_OVERLAP_SECONDS = 1.0
DEFAULT_BATCH_SIZE = 32
DEFAULT_BATCH_SECONDS = {"cpu": 160.0, "cuda": 1600.0}


# -- argument parsing ------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description="Denoise a file or a folder (recursively: .wav, "
                      ".flac) with one or more trained hear_vec agents (model.pt).")
    p.add_argument("--checkpoint", action="append", default=None, metavar="CKPT",
                   help="model.pt of a trained agent; repeat to compare several (outputs are "
                        "named <stem>__<tag><ext>); default: the packaged pretrained agent "
                        "(hear_vec/pretrained/model.pt)")
    p.add_argument("--input", required=True, metavar="FILE|DIR", help="noisy file or folder")
    p.add_argument("--output", required=True, metavar="FILE|DIR",
                   help="output file (for a file input) or folder (mirrors the input folder)")
    p.add_argument("--clean", default=None, metavar="FILE|DIR",
                   help="clean reference file or folder (same relative names) for metrics")
    p.add_argument("--metrics-csv", default=None, metavar="PATH",
                   help="write per-file SI-SDR/STOI/ESTOI before and after (needs --clean)")
    p.add_argument("--trace", default=None, metavar="PATH",
                   help="write the methods and knobs chosen per file and step (JSON lines)")
    add_device_argument(p)
    p.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                   help=f"rows (channels x chunks) per device call (default "
                        f"{DEFAULT_BATCH_SIZE})")
    p.add_argument("--batch-seconds", type=positive_float, default=None,
                   help="padded audio seconds per device call at the model rate (default "
                        "160 on the CPU, 1600 on CUDA)")
    p.add_argument("--max-steps", type=positive_int, default=None,
                   help="denoising steps per file (default: the checkpoint's max_steps)")
    p.add_argument("--chunk-seconds", type=nonnegative_float, default=DEFAULT_CHUNK_SECONDS,
                   help=f"split longer files into overlapping chunks of at most this length "
                        f"(default {DEFAULT_CHUNK_SECONDS:g}; 0 = never)")
    p.add_argument("--overlap-seconds", type=nonnegative_float,
                   default=DEFAULT_OVERLAP_SECONDS,
                   help=f"chunk overlap, crossfaded (default {DEFAULT_OVERLAP_SECONDS:g})")
    p.add_argument("--overwrite", action="store_true",
                   help="redo outputs that exist (default: skip them, so a rerun resumes)")
    p.add_argument("--workers", type=positive_int, default=2,
                   help="background threads for reading and writing files (default 2)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    return p


def _settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Settings:
    """Check the flags and load the agents; problems end through ``parser.error``."""
    if args.metrics_csv is not None and args.clean is None:
        parser.error("--metrics-csv needs --clean (the clean references to score against)")
    if not args.checkpoint:
        try:
            args.checkpoint = [str(pretrained_model())]
        except FileNotFoundError as exc:
            parser.error(str(exc))
    device, agents = load_agents(parser, args.checkpoint, args.device)
    tags = checkpoint_tags(args.checkpoint)
    rate = agents[0].sample_rate
    chunk = int(round(args.chunk_seconds * rate))
    overlap = int(round(args.overlap_seconds * rate))
    if chunk > 0 and chunk <= 2 * overlap:
        parser.error(f"--chunk-seconds ({args.chunk_seconds:g}) must be more than twice "
                     f"--overlap-seconds ({args.overlap_seconds:g})")
    batch_seconds = args.batch_seconds
    if batch_seconds is None:
        batch_seconds = DEFAULT_BATCH_SECONDS["cuda" if device.type == "cuda" else "cpu"]
    batch_samples = max(int(batch_seconds * rate), 1)
    steps = [args.max_steps or a.max_steps for a in agents]
    runner = Runner(agents, device, steps, args.batch_size, batch_samples, chunk, overlap)
    return Settings(args, runner, tags, [None] if len(agents) == 1 else list(tags), rate,
                    steps, batch_samples)


def _check_writable(args: argparse.Namespace, jobs: list[FileJob]) -> None:
    """The output folder (and the trace / metrics folders) accept files; else UsageError."""
    if Path(args.input).is_dir():
        folders = [("--output", Path(args.output))]
    else:
        first = next(o for job in jobs for o in job.outputs if o is not None)
        folders = [("--output", first.parent)]
    for flag in ("trace", "metrics_csv"):
        if getattr(args, flag) is not None:
            folders.append((f"--{flag.replace('_', '-')}", Path(getattr(args, flag)).parent))
    for flag, folder in folders:
        try:
            check_writable_folder(folder)
        except OSError as err:
            raise UsageError(f"{flag}: cannot write to {folder} "
                             f"({err.strerror or first_line(err, 120)})") from None


# -- main ------------------------------------------------------------------------------------

def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a polite kill) ends the run like Ctrl-C: finished outputs kept, exit 130."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with _sigterm_interrupts():
        return _main(parser, args)


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    settings = _settings(parser, args)
    try:
        jobs, skipped = plan_jobs(args, settings.output_tags)
        if jobs:
            _check_writable(args, jobs)
    except UsageError as exc:
        parser.error(str(exc))
    start = time.perf_counter()
    progress = Progress(total=len(jobs) + skipped, desc="denoise", unit="file",
                        enabled=None if args.progress else False)
    progress.update(skipped)
    session = Session(settings, progress)
    try:
        session.open_trace()
    except OSError as err:
        session.close()
        progress.close()
        parser.error(f"--trace {args.trace}: cannot write it ({err.strerror or err})")
    for job in jobs:
        probe_job(job)
    for job in jobs:
        if job.error is not None:
            session.fail(job, job.error)
    runner = settings.runner
    groups = pack_groups([job for job in jobs if job.error is None], settings.rate,
                         runner.chunk, runner.overlap, args.batch_size, settings.batch_samples)
    stopped = _run(session, groups)
    progress.close()
    if stopped is not None:
        return stopped
    return _finish(args, settings, session.state, skipped, time.perf_counter() - start)


def _run(session: Session, groups: list[list[FileJob]]) -> int | None:
    """Run the session; the exit status when it stopped early (interrupt, disk), else None."""
    try:
        session.run(groups)
    except KeyboardInterrupt:
        session.stop()
        session.progress.close()
        print(f"{PROG}: interrupted after {session.state.finished} file(s); finished outputs "
              f"are complete and no partial file was left; rerun the same command to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except Unwritable as exc:
        session.stop()
        session.progress.close()
        print(f"{PROG}: error: {exc}; stopped after {session.state.finished} file(s) "
              f"(finished outputs are complete, no partial file was left; make room or fix the "
              f"folder, then rerun the same command to resume)", file=sys.stderr)
        return EXIT_FAILED
    finally:
        session.close()
    return None


def _finish(args: argparse.Namespace, settings: Settings, state: RunState, skipped: int,
            elapsed: float) -> int:
    """Metrics table and CSV, then the summary line; the exit status."""
    code = EXIT_FAILED if state.failed else EXIT_OK
    rows = state.metric_rows
    if rows:
        rows.sort(key=lambda r: (settings.tags.index(r["model"]), r["file"]))
        print_metrics(rows, sys.stdout)
        if args.metrics_csv is not None:
            try:
                write_csv_atomic(rows, Path(args.metrics_csv))
                print(f"metrics: {args.metrics_csv}")
            except OSError as err:
                print(f"{PROG}: error: cannot write --metrics-csv {args.metrics_csv}: "
                      f"{err.strerror or first_line(err, 160)}", file=sys.stderr)
                code = EXIT_FAILED
    elif args.metrics_csv is not None:
        print(f"{PROG}: warning: no file had a usable clean reference; {args.metrics_csv} "
              f"not written", file=sys.stderr)
    line = summary_line(PROG, state.finished, state.outputs_written, state.audio_seconds,
                        elapsed, skipped, len(state.failed))
    print(line, file=sys.stderr if state.failed else sys.stdout)
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

