"""What ``infer.py`` will do: output names, the file jobs, their headers and audio, and the
groups of files that go to the device together.

- :func:`checkpoint_tags` / :func:`tagged_path`: output names for several checkpoints.
- :func:`plan_jobs`: ``--input`` / ``--output`` / ``--clean`` -> :class:`FileJob` s (outputs
  that exist are skipped unless ``--overwrite``, empty ones are redone; inputs are never
  overwritten), or :class:`UsageError`.
- :func:`probe_job` (header), :func:`load_job` (samples, in a worker thread): problems go to
  ``job.error`` as one-line reasons (:mod:`hear_vec.audio_io`'s reading policy).
- :func:`pack_groups`: jobs sorted by length and packed under ``--batch-size`` rows and the
  padded-sample budget.
"""

from __future__ import annotations

import argparse
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import numpy as np
from torch import Tensor

from hear_vec.audio_io import (
    AUDIO_EXTENSIONS,
    AudioReadError,
    list_audio_files,
    probe_audio,
    read_audio,
)
from hear_vec.cli.infer_chunks import chunk_plan
from hear_vec.resample import resampled_length

__all__ = ["UsageError", "FileJob", "checkpoint_tags", "tagged_path", "plan_jobs", "probe_job",
           "load_job", "output_subtype", "pack_groups"]

_GENERIC_STEMS = {"model", "checkpoint", "best", "last", "final"}


class UsageError(ValueError):
    """A problem with the arguments as a whole (exit 2)."""


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


# -- jobs ------------------------------------------------------------------------------------

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


def _folder_pairs(src: Path, out: Path, clean: Path | None
                  ) -> list[tuple[Path, str, Path, Path | None]]:
    """(input, display, base output, clean) for a folder ``--input``; raises UsageError."""
    src_real, out_real = src.resolve(), out.resolve()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output {out} is a file; a folder --input needs a folder --output")
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
        raise UsageError(f"--clean {clean} is a file; a folder --input needs a folder --clean")
    files = list_audio_files(src)
    if not files:
        raise UsageError(f"no .wav/.flac files under --input {src}")
    return [(src / rel, str(src / rel), out / rel,
             _find_clean(clean, rel) if clean is not None else None) for rel in files]


def _already_done(dest: Path) -> bool:
    """An existing output counts as done -- unless it is an empty file, which is what a power
    loss right after a rename can leave (outputs are not fsynced one by one)."""
    try:
        st = dest.stat()
    except OSError:
        return False
    return not (stat.S_ISREG(st.st_mode) and st.st_size == 0)


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
    if src.is_dir():
        pairs = _folder_pairs(src, out, clean)
    else:
        if out.is_dir() or not _is_audio_name(out):
            base = out / (src.name if _is_audio_name(src) else src.stem + ".wav")
        else:
            base = out
        if clean is not None and clean.is_dir():
            clean_file = _find_clean(clean, PurePath(src.name))
        else:
            clean_file = clean
        pairs = [(src, str(src), base, clean_file)]

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
            outputs.append(None if _already_done(dest) and not args.overwrite else dest)
        if all(o is None for o in outputs):
            skipped += 1
            continue
        jobs.append(job)
    return jobs, skipped


def probe_job(job: FileJob) -> None:
    """Header facts (frames, rate, channels, subtype) or ``job.error``."""
    if job.error is not None:
        return
    try:
        info = probe_audio(job.src)
    except AudioReadError as err:
        job.error = err.reason
        return
    job.frames, job.sample_rate, job.channels = info.frames, info.sample_rate, info.channels
    job.subtype = info.subtype


def load_job(job: FileJob) -> FileJob:
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


def output_subtype(job: FileJob, dest: Path) -> str | None:
    """The input's sample subtype when the output's format can hold it, else None (the
    format's default)."""
    import soundfile as sf

    fmt = dest.suffix.lstrip(".").upper()
    if job.subtype and sf.check_format(fmt, job.subtype):
        return job.subtype
    return None


def pack_groups(jobs: list[FileJob], rate: int, chunk: int, overlap: int, max_rows: int,
                max_samples: int) -> list[list[FileJob]]:
    """Probed jobs packed into groups read and denoised together: sorted by length at the
    model rate (longest first), a group grows while its rows (channels x chunks) stay within
    ``max_rows`` and its samples within ``max_samples``; a job too big for either gets a
    group of its own."""
    model_len = [resampled_length(j.frames, j.sample_rate, rate) for j in jobs]
    groups: list[list[FileJob]] = []
    current: list[FileJob] = []
    rows = samples = 0
    for i in sorted(range(len(jobs)), key=lambda i: -min(model_len[i], chunk or 1 << 62)):
        r = jobs[i].channels * len(chunk_plan(model_len[i], chunk, overlap))
        s = r * min(model_len[i], chunk or 1 << 62)
        if current and (rows + r > max_rows or samples + s > max_samples):
            groups.append(current)
            current, rows, samples = [], 0, 0
        current.append(jobs[i])
        rows += r
        samples += s
    if current:
        groups.append(current)
    return groups
