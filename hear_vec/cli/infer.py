"""``infer.py``: denoise a file or a whole folder with one or more trained agents.

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
otherwise the format's default, PCM_16).

Policies
--------
* Sample rate: each file is resampled to the model's rate (``torchaudio.functional.resample``,
  on the device), denoised, resampled back and cut to its original length.
* Channels: each channel is denoised as its own row, independently (the agent picks methods and
  knobs per channel); channels are never mixed. Metrics use the channel mean.
* Long files: a file longer than ``--chunk-seconds`` (default 20 s at the model rate) is cut
  into chunks of equal length (at most ``--chunk-seconds``) that overlap by
  ``--overlap-seconds`` (default 1 s); each chunk is an episode of its own (own features,
  own decisions) and the denoised chunks are joined with a linear crossfade over the overlap
  (complementary ramps that sum to one, so identical chunk outputs join seamlessly). Memory
  is then bounded whatever the file length: the spectral-gate neighbour filter costs
  O(frames^2) per row (a 60-s row alone takes ~1.5 GB on the CPU). ``--chunk-seconds 0``
  turns chunking off.
* Batching: files are sorted by length and packed so that a device call holds at most
  ``--batch-size`` rows (channels x chunks) and ``--batch-seconds`` of padded audio; rows carry
  their ``lengths``, so padding never changes a result. Reading the next batch and writing
  finished files run in background threads while the device works.
* Robustness: a file that cannot be used (missing, unreadable, not audio, empty, NaN/Inf
  samples) or that fails later is reported in one line (``infer.py: error: <file>: <why>``)
  and skipped; the rest still come out; the exit status is 1 when any file failed, with a
  summary at the end. A CUDA out-of-memory error halves the device batch and retries.
* Outputs are written to a hidden temporary file in the destination folder and renamed over
  the final name, so a killed run never leaves a partial output; stale temporary files of a
  killed run are removed when that output is redone. Existing outputs are skipped unless
  ``--overwrite``, so rerunning an interrupted command resumes it. An output path that would
  replace an input file, ``--output`` equal to ``--input`` and an output folder inside the
  input folder are refused.
* ``--trace PATH``: one JSON line per output file: input, output, checkpoint, tag, rates,
  channels, seconds, and ``segments`` (one per channel and chunk: channel, start / end in
  seconds, ``steps``: method, method_id, strength, smoothing, band_mix per step).
* ``--clean FILE|DIR``: the clean reference(s) (a folder matched by relative path, either
  extension); SI-SDR, STOI and ESTOI before and after are computed at the model's rate on the
  channel mean (lengths cropped to the shorter), printed as a table, and written to
  ``--metrics-csv`` (columns: file, output, model, checkpoint, seconds, si_sdr_before,
  si_sdr_after, si_sdr_gain, stoi_before, stoi_after, estoi_before, estoi_after) for the files
  denoised in this run (outputs skipped as existing are not re-scored).

Exit status: 0 all done, 1 some file failed, 2 bad arguments or checkpoint, 130 interrupted.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import signal
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, TextIO

import numpy as np
import torch
from torch import Tensor

from hear_vec.audio_io import (
    AUDIO_EXTENSIONS,
    AudioReadError,
    list_audio_files,
    read_audio,
    write_audio_atomic,
)
from hear_vec.cli.common import (
    OneLineParser,
    Progress,
    add_device_argument,
    first_line,
    length_batches,
    load_agents,
    nonnegative_float,
    pad_rows,
    positive_float,
    positive_int,
)
from hear_vec.inference import DenoisingAgent
from hear_vec.ops import METHODS

__all__ = [
    "build_parser",
    "main",
    "checkpoint_tags",
    "tagged_path",
    "chunk_plan",
    "crossfade_join",
    "DEFAULT_CHUNK_SECONDS",
    "DEFAULT_OVERLAP_SECONDS",
]

PROG = "infer.py"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_CHUNK_SECONDS = 20.0
DEFAULT_OVERLAP_SECONDS = 1.0
DEFAULT_BATCH_SIZE = 32
DEFAULT_BATCH_SECONDS = {"cpu": 160.0, "cuda": 1600.0}
_GENERIC_STEMS = {"model", "checkpoint", "best", "last", "final"}
_MAX_TABLE_FILES = 20


class UsageError(ValueError):
    """A problem with the arguments as a whole (exit 2)."""


# -- argument parsing ------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description="Denoise a file or a folder (recursively: .wav, "
                      ".flac) with one or more trained hear_vec agents (model.pt).")
    p.add_argument("--checkpoint", action="append", required=True, metavar="CKPT",
                   help="model.pt of a trained agent; repeat to compare several (outputs are "
                        "named <stem>__<tag><ext>)")
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


# -- naming ----------------------------------------------------------------------------------

def _sanitize(text: str) -> str:
    out = "".join(c if c.isalnum() or c in "-._" else "_" for c in text).strip("._")
    return out or "model"


def checkpoint_tags(paths: list[str | os.PathLike]) -> list[str]:
    """Output tags for several checkpoints: the parent folder names (the seed's rule,
    ``runs/ppo_a/model.pt`` -> ``ppo_a``) when they are all distinct; else the file stems when
    those are distinct; else ``<parent>_<stem>``; remaining repeats get ``-2``, ``-3``...
    A parent-less or generic name falls back to the other part. Characters other than
    letters, digits, ``-``, ``.``, ``_`` become ``_``."""
    ps = [Path(p) for p in paths]
    parents = [_sanitize(p.parent.name) if p.parent.name else _sanitize(p.stem) for p in ps]
    stems = [_sanitize(p.stem) for p in ps]
    if len(set(parents)) == len(parents):
        chosen = parents
    elif len(set(stems)) == len(stems) and not all(s in _GENERIC_STEMS for s in stems):
        chosen = stems
    else:
        chosen = [a if a == b or b in _GENERIC_STEMS else f"{a}_{b}"
                  for a, b in zip(parents, stems)]
    seen: dict[str, int] = {}
    tags = []
    for tag in chosen:
        seen[tag] = seen.get(tag, 0) + 1
        tags.append(tag if seen[tag] == 1 else f"{tag}-{seen[tag]}")
    # a numbered tag could collide with a real one ("a-2"); number until unique
    final: list[str] = []
    for tag in tags:
        candidate, k = tag, 2
        while candidate in final:
            candidate, k = f"{tag}-{k}", k + 1
        final.append(candidate)
    return final


def tagged_path(path: Path, tag: str | None) -> Path:
    """``dir/stem.ext`` -> ``dir/stem__tag.ext`` (unchanged when ``tag`` is None)."""
    return path if tag is None else path.with_name(f"{path.stem}__{tag}{path.suffix}")


# -- chunking --------------------------------------------------------------------------------

def chunk_plan(n: int, chunk: int, overlap: int) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` covering ``n`` samples with chunks of equal length L <= chunk
    (the last may be shorter) where consecutive chunks overlap by exactly ``overlap`` samples.
    ``chunk <= 0`` or ``n <= chunk``: one chunk. Requires ``chunk > 2 * overlap``."""
    if chunk <= 0 or n <= chunk:
        return [(0, n)]
    if chunk <= 2 * overlap:
        raise ValueError(f"chunk ({chunk} samples) must be longer than twice the overlap "
                         f"({overlap} samples)")
    count = math.ceil((n - overlap) / (chunk - overlap))
    length = math.ceil((n + (count - 1) * overlap) / count)
    hop = length - overlap
    plan = []
    for i in range(count):
        start = i * hop
        end = n if i == count - 1 else start + length
        plan.append((start, end))
    return plan


def crossfade_join(pieces: list[Tensor], plan: list[tuple[int, int]], n: int,
                   overlap: int) -> Tensor:
    """Join processed chunks (``pieces[i]`` has ``end - start`` samples) into ``n`` samples.
    Over each overlap the earlier chunk fades out and the later fades in with linear ramps
    ``w_in(t) = (t + 0.5) / overlap``, ``w_out = 1 - w_in`` (they sum to one, so equal pieces
    join to exactly the input)."""
    if len(pieces) == 1:
        return pieces[0][..., :n]
    out = pieces[0].new_zeros(pieces[0].shape[:-1] + (n,))
    ramp = (torch.arange(overlap, device=out.device, dtype=out.dtype) + 0.5) / max(overlap, 1)
    last = len(pieces) - 1
    for i, ((start, end), piece) in enumerate(zip(plan, pieces)):
        w = torch.ones(end - start, device=out.device, dtype=out.dtype)
        if i > 0 and overlap > 0:
            w[:overlap] = ramp
        if i < last and overlap > 0:
            w[end - start - overlap:] = 1.0 - ramp
        out[..., start:end] += piece * w
    return out


# -- planning --------------------------------------------------------------------------------

@dataclass
class FileJob:
    """One input file and what to do with it."""

    src: Path
    display: str
    outputs: list[Path | None]      # per checkpoint; None = already there (skipped)
    clean: Path | None = None
    frames: int = 0
    sample_rate: int = 0
    channels: int = 0
    subtype: str | None = None
    error: str | None = None
    # filled while processing
    audio: np.ndarray | None = None
    clean_audio: np.ndarray | None = None
    clean_rate: int = 0
    clean_error: str | None = None
    noisy_mono: Tensor | None = None                # model-rate channel mean, for metrics
    results: dict[int, dict[str, Any]] = field(default_factory=dict)  # per checkpoint

    def release(self) -> None:
        self.audio = self.clean_audio = self.noisy_mono = None
        self.results.clear()

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _is_audio_name(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


def _find_clean(clean_root: Path, rel: PurePath) -> Path | None:
    candidate = clean_root / rel
    if candidate.is_file():
        return candidate
    for ext in AUDIO_EXTENSIONS + tuple(e.upper() for e in AUDIO_EXTENSIONS):
        alt = candidate.with_suffix(ext)
        if alt.is_file():
            return alt
    return None


def plan_jobs(args: argparse.Namespace, tags: list[str | None]) -> tuple[list[FileJob], int]:
    """The file jobs (outputs per checkpoint; None where the output exists and is kept) and
    the number of files skipped because all their outputs exist. Raises UsageError."""
    src = Path(args.input)
    out = Path(args.output)
    clean = Path(args.clean) if args.clean is not None else None
    if not src.exists():
        raise UsageError(f"--input {src}: no such file or folder")
    if clean is not None and not clean.exists():
        raise UsageError(f"--clean {clean}: no such file or folder")
    src_real = src.resolve()
    out_real = out.resolve()
    pairs: list[tuple[Path, str, Path, Path | None]] = []  # (input, display, base output, clean)
    if src.is_dir():
        if out.exists() and not out.is_dir():
            raise UsageError(f"--output {out} is a file; a folder --input needs a folder "
                             f"--output")
        if _is_audio_name(out) and not out.exists():
            raise UsageError(f"--output {out} looks like a file name; a folder --input needs "
                             f"a folder --output")
        if out_real == src_real:
            raise UsageError(f"--output {out} is the --input folder; inputs are never "
                             f"overwritten, choose another folder")
        if _inside(out_real, src_real):
            raise UsageError(f"--output {out} is inside the --input folder {src}; a later run "
                             f"would take the outputs for inputs, choose a folder outside it")
        if clean is not None and not clean.is_dir():
            raise UsageError(f"--clean {clean} is a file; a folder --input needs a folder "
                             f"--clean")
        files = list_audio_files(src)
        if not files:
            raise UsageError(f"no .wav/.flac files under --input {src}")
        for rel in files:
            p = src / rel
            pairs.append((p, str(p), out / rel,
                          _find_clean(clean, rel) if clean is not None else None))
    else:
        if out.is_dir() or not _is_audio_name(out):
            name = src.name if _is_audio_name(src) else src.stem + ".wav"
            base = out / name
        else:
            base = out
        if clean is not None and clean.is_dir():
            clean_file = _find_clean(clean, PurePath(src.name))
        else:
            clean_file = clean
        pairs.append((src, str(src), base, clean_file))

    inputs_real = {p.resolve() for p, _, _, _ in pairs}
    jobs: list[FileJob] = []
    skipped = 0
    for path, display, base, clean_file in pairs:
        outputs: list[Path | None] = []
        job = FileJob(src=path, display=display, outputs=outputs, clean=clean_file)
        for tag in tags:
            dest = tagged_path(base, tag)
            if dest.resolve() in inputs_real:
                if not src.is_dir():
                    raise UsageError(f"--output {dest} is the input file; inputs are never "
                                     f"overwritten")
                job.error = f"output {dest} would replace an input file; not written"
            if dest.exists() and not args.overwrite:
                outputs.append(None)
            else:
                outputs.append(dest)
        if all(o is None for o in outputs):
            skipped += 1
            continue
        jobs.append(job)
    return jobs, skipped


def _probe(job: FileJob) -> None:
    """Header facts (frames, rate, channels, subtype) or ``job.error``."""
    import soundfile as sf

    if job.error is not None:
        return
    if not job.src.is_file():
        job.error = "not found" if not job.src.exists() else "not a regular file"
        return
    if job.src.stat().st_size == 0:
        job.error = "empty file (0 bytes)"
        return
    try:
        info = sf.info(str(job.src))
    except Exception as err:  # libsndfile raises several types
        job.error = f"unreadable ({first_line(err, 160)})"
        return
    if info.frames <= 0 or info.channels <= 0:
        job.error = "empty (no samples)"
        return
    job.frames, job.sample_rate, job.channels = int(info.frames), int(info.samplerate), \
        int(info.channels)
    job.subtype = info.subtype


def _output_subtype(job: FileJob, dest: Path) -> str | None:
    import soundfile as sf

    fmt = dest.suffix.lstrip(".").upper()
    if job.subtype and sf.check_format(fmt, job.subtype):
        return job.subtype
    return None


def _remove_stale_temps(dest: Path) -> None:
    pattern = str(dest.parent / f".{glob.escape(dest.name)}.*.tmp")
    for stale in glob.glob(pattern):
        try:
            os.unlink(stale)
        except OSError:
            pass


# -- the batched denoiser ----------------------------------------------------------------------

@dataclass
class _Row:
    job: int        # index into the group's job list
    channel: int
    chunk: int
    start: int
    end: int


class _Runner:
    """Runs the agents on groups of loaded files (rows = channels x chunks)."""

    def __init__(self, agents: list[DenoisingAgent], device: torch.device, steps: list[int],
                 batch_size: int, batch_samples: int, chunk: int, overlap: int) -> None:
        self.agents = agents
        self.device = device
        self.steps = steps
        self.batch_size = batch_size
        self.batch_samples = batch_samples
        self.chunk = chunk
        self.overlap = overlap
        self.rate = agents[0].sample_rate

    def _resample(self, x: Tensor, orig: int, new: int) -> Tensor:
        if orig == new:
            return x
        import torchaudio.functional as AF

        return AF.resample(x, orig, new)

    def _run_rows(self, agent: DenoisingAgent, steps: int, rows: list[Tensor]
                  ) -> list[tuple[Tensor, Tensor, Tensor]]:
        """(audio, methods [S], knobs [S, 3]) per row; OOM halves the batch and retries."""
        try:
            batch, lengths = pad_rows(rows)
            res = agent.run(batch, lengths, steps)
        except torch.OutOfMemoryError:
            if len(rows) == 1:
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            half = len(rows) // 2
            return (self._run_rows(agent, steps, rows[:half])
                    + self._run_rows(agent, steps, rows[half:]))
        methods, knobs = res.methods.cpu(), res.knobs.cpu()
        return [(res.audio[i, : rows[i].shape[-1]], methods[i], knobs[i])
                for i in range(len(rows))]

    @torch.inference_mode()
    def process(self, jobs: list[FileJob]) -> list[tuple[FileJob, int, np.ndarray]]:
        """Denoise the loaded ``jobs`` (errors go to ``job.error``); returns (job, checkpoint,
        audio [C, n] float32 at the input's rate) to write, and fills ``job.results``."""
        rows: list[_Row] = []
        tensors: list[Tensor] = []
        plans: dict[int, list[tuple[int, int]]] = {}
        model_audio: dict[int, Tensor] = {}
        for j, job in enumerate(jobs):
            if job.error is not None or job.audio is None:
                continue
            try:
                x = torch.from_numpy(job.audio).to(self.device)
                x = self._resample(x, job.sample_rate, self.rate)
                plan = chunk_plan(x.shape[-1], self.chunk, self.overlap)
            except Exception as err:  # resampling a pathological file
                job.error = f"cannot prepare ({first_line(err, 160)})"
                continue
            model_audio[j] = x
            plans[j] = plan
            for c in range(x.shape[0]):
                for k, (s, e) in enumerate(plan):
                    rows.append(_Row(j, c, k, s, e))
                    tensors.append(x[c, s:e])
        outputs: list[tuple[FileJob, int, np.ndarray]] = []
        for a, agent in enumerate(self.agents):
            mine = [i for i, r in enumerate(rows) if jobs[r.job].outputs[a] is not None
                    and jobs[r.job].error is None]
            done: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
            lengths = [tensors[i].shape[-1] for i in mine]
            for batch in length_batches(lengths, self.batch_size, self.batch_samples):
                idx = [mine[b] for b in batch]
                try:
                    results = self._run_rows(agent, self.steps[a], [tensors[i] for i in idx])
                except Exception as err:
                    reason = ("out of memory (try a smaller --chunk-seconds or --batch-size)"
                              if isinstance(err, torch.OutOfMemoryError)
                              else f"denoising failed ({first_line(err, 160)})")
                    for i in idx:
                        jobs[rows[i].job].error = jobs[rows[i].job].error or reason
                    continue
                done.update(zip(idx, results))
            by_job: dict[int, list[int]] = {}
            for i in mine:
                by_job.setdefault(rows[i].job, []).append(i)
            for j, idx in by_job.items():
                job = jobs[j]
                if job.error is not None:
                    continue
                channels = []
                segments = []
                for c in range(model_audio[j].shape[0]):
                    mine_c = sorted((i for i in idx if rows[i].channel == c),
                                    key=lambda i: rows[i].chunk)
                    pieces = [done[i][0] for i in mine_c]
                    channels.append(crossfade_join(pieces, plans[j], model_audio[j].shape[-1],
                                                   self.overlap))
                    for i in mine_c:
                        segments.append(_segment(rows[i], done[i][1], done[i][2], self.rate))
                denoised = torch.stack(channels)
                back = self._resample(denoised, self.rate, job.sample_rate)
                n = job.audio.shape[-1]
                if back.shape[-1] < n:
                    back = torch.nn.functional.pad(back, (0, n - back.shape[-1]))
                back = back[..., :n]
                job.results[a] = {"segments": segments, "model_mono": denoised.mean(0)}
                outputs.append((job, a, back.float().cpu().numpy()))
        for j, x in model_audio.items():  # model-rate mono of the inputs, for metrics
            jobs[j].noisy_mono = x.mean(0)
        return outputs


def _segment(row: _Row, methods: Tensor, knobs: Tensor, rate: int) -> dict[str, Any]:
    steps = []
    for m, (s, sm, b) in zip(methods.tolist(), knobs.tolist()):
        steps.append({"method": METHODS[m], "method_id": m, "strength": round(s, 4),
                      "smoothing": round(sm, 4), "band_mix": round(b, 4)})
    return {"channel": row.channel, "start": round(row.start / rate, 4),
            "end": round(row.end / rate, 4), "steps": steps}


# -- metrics ---------------------------------------------------------------------------------

@torch.inference_mode()
def _group_metrics(jobs: list[FileJob], runner: _Runner, tags: list[str],
                   ckpts: list[str]) -> list[dict[str, Any]]:
    """Metric rows for the jobs that have a clean reference and finished outputs."""
    from hear_vec.metrics import si_sdr, stoi

    todo = [job for job in jobs if job.error is None and job.clean_audio is not None
            and job.noisy_mono is not None]
    if not todo:
        return []
    rate = runner.rate
    cleans, noisys, lens = [], [], []
    for job in todo:
        c = torch.from_numpy(job.clean_audio).to(runner.device).mean(0)
        c = runner._resample(c, job.clean_rate, rate)
        noisy = job.noisy_mono
        n = min(c.shape[-1], noisy.shape[-1])
        cleans.append(c[:n])
        noisys.append(noisy[:n])
        lens.append(n)
    clean_b, lengths = pad_rows(cleans)
    noisy_b, _ = pad_rows(noisys)

    def scores(est: Tensor) -> dict[str, list[float]]:
        return {"si_sdr": si_sdr(est, clean_b, lengths).tolist(),
                "stoi": stoi(clean_b, est, rate, lengths).tolist(),
                "estoi": stoi(clean_b, est, rate, lengths, extended=True).tolist()}

    before = scores(noisy_b)
    rows: list[dict[str, Any]] = []
    for a, tag in enumerate(tags):
        have = [i for i, job in enumerate(todo) if a in job.results]
        if not have:
            continue
        est_rows = [todo[i].results[a]["model_mono"][: lens[i]] for i in have]
        est_b, _ = pad_rows(est_rows)
        sel = torch.tensor(have, device=clean_b.device)
        cb, lb = clean_b[sel], lengths[sel]
        after = {"si_sdr": si_sdr(est_b, cb, lb).tolist(),
                 "stoi": stoi(cb, est_b, rate, lb).tolist(),
                 "estoi": stoi(cb, est_b, rate, lb, extended=True).tolist()}
        for k, i in enumerate(have):
            job = todo[i]
            rows.append({
                "file": job.display, "output": str(job.outputs[a]), "model": tag,
                "checkpoint": ckpts[a], "seconds": round(lens[i] / rate, 4),
                "si_sdr_before": before["si_sdr"][i], "si_sdr_after": after["si_sdr"][k],
                "si_sdr_gain": after["si_sdr"][k] - before["si_sdr"][i],
                "stoi_before": before["stoi"][i], "stoi_after": after["stoi"][k],
                "estoi_before": before["estoi"][i], "estoi_after": after["estoi"][k],
            })
    return rows


def _print_metrics(rows: list[dict[str, Any]], out: TextIO) -> None:
    import pandas as pd

    df = pd.DataFrame(rows)
    lines = []
    if len(df) <= _MAX_TABLE_FILES:
        lines.append(f"{'file':<40} {'model':<14} {'SI-SDR before':>13} {'after':>7} "
                     f"{'STOI before':>11} {'after':>6} {'ESTOI before':>12} {'after':>6}")
        for r in rows:
            name = r["file"] if len(r["file"]) <= 40 else "..." + r["file"][-37:]
            lines.append(f"{name:<40} {r['model'][:14]:<14} {r['si_sdr_before']:>13.2f} "
                         f"{r['si_sdr_after']:>7.2f} {r['stoi_before']:>11.3f} "
                         f"{r['stoi_after']:>6.3f} {r['estoi_before']:>12.3f} "
                         f"{r['estoi_after']:>6.3f}")
        lines.append("")
    lines.append(f"{'model':<14} {'files':>5}  {'SI-SDR before -> after (gain) dB':<34} "
                 f"{'STOI before -> after':<22} {'ESTOI before -> after':<22}")
    for model, g in df.groupby("model", sort=False):
        lines.append(f"{str(model)[:14]:<14} {len(g):>5}  "
                     f"{g.si_sdr_before.mean():>6.2f} -> {g.si_sdr_after.mean():>6.2f} "
                     f"({g.si_sdr_gain.mean():+.2f})".ljust(57)
                     + f"{g.stoi_before.mean():.3f} -> {g.stoi_after.mean():.3f}".ljust(23)
                     + f"{g.estoi_before.mean():.3f} -> {g.estoi_after.mean():.3f}")
    print("\n".join(lines), file=out)


def _write_csv_atomic(rows: list[dict[str, Any]], path: Path) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pd.DataFrame(rows).to_csv(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -- main ------------------------------------------------------------------------------------

def _load(job: FileJob) -> FileJob:
    """Read the file (and its clean reference) in a worker thread; errors -> job.error."""
    if job.error is not None:
        return job
    try:
        audio, rate = read_audio(job.src)
    except AudioReadError as err:
        job.error = err.reason
        return job
    job.audio, job.sample_rate, job.channels = audio, rate, audio.shape[0]
    job.frames = audio.shape[1]
    if job.clean is not None:
        try:
            job.clean_audio, job.clean_rate = read_audio(job.clean)
        except AudioReadError as err:
            job.clean_audio = None
            job.clean_error = err.reason
    return job


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return _main(parser, args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.metrics_csv is not None and args.clean is None:
        parser.error("--metrics-csv needs --clean (the clean references to score against)")
    device, agents = load_agents(parser, args.checkpoint, args.device)
    tags = checkpoint_tags(args.checkpoint)
    tags_or_none: list[str | None] = [None] if len(agents) == 1 else list(tags)
    try:
        jobs, skipped = plan_jobs(args, tags_or_none)
    except UsageError as exc:
        parser.error(str(exc))
    rate = agents[0].sample_rate
    chunk = int(round(args.chunk_seconds * rate))
    overlap = int(round(args.overlap_seconds * rate))
    if chunk > 0 and chunk <= 2 * overlap:
        parser.error(f"--chunk-seconds ({args.chunk_seconds:g}) must be more than twice "
                     f"--overlap-seconds ({args.overlap_seconds:g})")
    if args.batch_seconds is None:
        batch_seconds = DEFAULT_BATCH_SECONDS["cuda" if device.type == "cuda" else "cpu"]
    else:
        batch_seconds = args.batch_seconds
    batch_samples = max(int(batch_seconds * rate), 1)
    steps = [args.max_steps or a.max_steps for a in agents]
    runner = _Runner(agents, device, steps, args.batch_size, batch_samples, chunk, overlap)

    start = time.perf_counter()
    failed: list[str] = []
    finished = 0
    outputs_written = 0
    audio_seconds = 0.0
    metric_rows: list[dict[str, Any]] = []
    trace = None
    progress = Progress(total=len(jobs) + skipped, desc="denoise", unit="file",
                        enabled=None if args.progress else False)
    progress.update(skipped)

    def fail(job: FileJob, reason: str) -> None:
        if job.display in failed:
            return
        failed.append(job.display)
        progress.write(f"{PROG}: error: {job.display}: {reason}")
        progress.update(1)

    for job in jobs:
        _probe(job)
    ready = [job for job in jobs if job.error is None]
    for job in jobs:
        if job.error is not None:
            fail(job, job.error)

    # groups of similar length: rows (channels x chunks) within --batch-size and the budget
    def rows_of(job: FileJob) -> int:
        n = math.ceil(job.frames * rate / job.sample_rate)
        return job.channels * len(chunk_plan(n, chunk, overlap))

    model_len = [min(math.ceil(j.frames * rate / j.sample_rate), chunk or 1 << 62)
                 for j in ready]
    groups: list[list[FileJob]] = []
    current: list[FileJob] = []
    cur_rows = cur_samples = 0
    for i in sorted(range(len(ready)), key=lambda i: -model_len[i]):
        job = ready[i]
        r = rows_of(job)
        s = r * model_len[i]
        if current and (cur_rows + r > args.batch_size or cur_samples + s > batch_samples):
            groups.append(current)
            current, cur_rows, cur_samples = [], 0, 0
        current.append(job)
        cur_rows += r
        cur_samples += s
    if current:
        groups.append(current)

    pool = ThreadPoolExecutor(max_workers=max(args.workers, 1), thread_name_prefix="infer-io")
    pending: list[tuple[FileJob, list[tuple[int, Future]]]] = []

    def collect(block: bool, interrupting: bool = False) -> None:
        """Account for finished writes (all of them when ``block``). A write cut short by an
        interrupt leaves its job unfinished (no error line) and re-raises the interrupt once
        the other jobs are accounted for, unless ``interrupting``."""
        nonlocal finished, outputs_written, audio_seconds
        keep = []
        interrupted = False
        for job, futures in pending:
            if not block and not all(f.done() for _, f in futures):
                keep.append((job, futures))
                continue
            cut = False
            for a, fut in futures:
                if fut.cancelled():
                    cut = True
                    continue
                err = fut.exception()
                if err is None:
                    outputs_written += 1
                elif isinstance(err, Exception):
                    job.error = job.error or (f"cannot write {job.outputs[a]} "
                                              f"({first_line(err, 160)})")
                else:  # KeyboardInterrupt / SystemExit inside the writer
                    cut = True
            if cut:
                interrupted = True
                job.release()
                continue
            if job.error is not None:
                fail(job, job.error)
                continue
            finished += 1
            audio_seconds += job.seconds
            if trace is not None:
                for a, _ in futures:
                    record = {"input": job.display, "output": str(job.outputs[a]),
                              "checkpoint": str(args.checkpoint[a]), "tag": tags[a],
                              "sample_rate": job.sample_rate, "model_sample_rate": rate,
                              "channels": job.channels, "seconds": round(job.seconds, 4),
                              "max_steps": steps[a],
                              "segments": job.results[a]["segments"]}
                    trace.write(json.dumps(record) + "\n")
                trace.flush()
            progress.update(1, job.seconds)
            job.release()
        pending[:] = keep
        if interrupted and not interrupting:
            raise KeyboardInterrupt("a write was interrupted")

    def submit_group(group: list[FileJob]) -> list[Future]:
        return [pool.submit(_load, job) for job in group]

    try:
        if args.trace is not None:
            Path(args.trace).parent.mkdir(parents=True, exist_ok=True)
            trace = open(args.trace, "w", encoding="utf-8")  # noqa: SIM115
        loading = submit_group(groups[0]) if groups else []
        for g in range(len(groups)):
            loaded = [f.result() for f in loading]
            loading = submit_group(groups[g + 1]) if g + 1 < len(groups) else []
            for job in loaded:
                if job.error is not None:
                    fail(job, job.error)
                elif job.clean_error is not None:
                    progress.write(f"{PROG}: warning: no metrics for {job.display}: clean "
                                   f"reference {job.clean} {job.clean_error}")
                elif args.clean is not None and job.clean is None:
                    progress.write(f"{PROG}: warning: no metrics for {job.display}: no clean "
                                   f"reference found under {args.clean}")
            work = [job for job in loaded if job.error is None]
            to_write = runner.process(work)
            if args.clean is not None:
                metric_rows += _group_metrics(work, runner, tags, list(args.checkpoint))
            by_job: dict[int, tuple[FileJob, list[tuple[int, Future]]]] = {}
            for job, a, audio in to_write:
                if job.error is not None:
                    continue
                dest = job.outputs[a]
                assert dest is not None
                _remove_stale_temps(dest)
                fut = pool.submit(write_audio_atomic, dest, audio, job.sample_rate,
                                  _output_subtype(job, dest))
                by_job.setdefault(id(job), (job, []))[1].append((a, fut))
            for job in work:
                if job.error is not None:
                    fail(job, job.error)
                elif id(job) not in by_job:
                    fail(job, "nothing was produced")
            pending.extend(by_job.values())
            for job in work:  # drop input audio held only for processing
                job.audio = None
            collect(block=False)
        collect(block=True)
    except KeyboardInterrupt:
        pool.shutdown(wait=True, cancel_futures=True)
        collect(block=True, interrupting=True)
        progress.close()
        if trace is not None:
            trace.close()
        print(f"{PROG}: interrupted after {finished} file(s); finished outputs are complete "
              f"and no partial file was left; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if trace is not None and not trace.closed:
            trace.close()
    progress.close()
    elapsed = time.perf_counter() - start

    if metric_rows:
        metric_rows.sort(key=lambda r: (tags.index(r["model"]), r["file"]))
        _print_metrics(metric_rows, sys.stdout)
        if args.metrics_csv is not None:
            _write_csv_atomic(metric_rows, Path(args.metrics_csv))
            print(f"metrics: {args.metrics_csv}")
    elif args.metrics_csv is not None:
        print(f"{PROG}: warning: no file had a usable clean reference; {args.metrics_csv} "
              f"not written", file=sys.stderr)
    parts = [f"{finished} file(s) denoised ({outputs_written} output(s), "
             f"{audio_seconds:.1f} audio-s in {elapsed:.1f} s, "
             f"{audio_seconds / max(elapsed, 1e-9):.1f} audio-s/s)"]
    if skipped:
        parts.append(f"{skipped} skipped (outputs exist; --overwrite redoes them)")
    if failed:
        parts.append(f"{len(failed)} failed (see the error lines above)")
    print(f"{PROG}: " + "; ".join(parts), file=sys.stderr if failed else sys.stdout)
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
