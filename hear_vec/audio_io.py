"""Audio file I/O shared by the corpora, the demo writer and ``infer.py``.

- :func:`read_audio` reads wav/flac (anything libsndfile reads) as float32 ``[channels, samples]``
  and raises :class:`AudioReadError` (a ``ValueError``) with a one-line reason when a file is
  missing, unreadable, empty or holds NaN/Inf samples.
- :func:`write_audio_atomic` writes to a temporary file in the destination folder and renames
  it over the destination (``os.replace``), so a killed writer never leaves a partial file
  under the final name.
- :func:`list_audio_files` walks a folder recursively for ``.wav`` / ``.flac`` files.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePath

import numpy as np
import soundfile as sf

__all__ = ["AudioReadError", "AUDIO_EXTENSIONS", "read_audio", "write_audio_atomic",
           "list_audio_files"]

#: file name endings (compared case-insensitively) that count as audio files
AUDIO_EXTENSIONS = (".wav", ".flac")


class AudioReadError(ValueError):
    """A file that cannot be used as audio. ``str(err)`` is ``"<path>: <reason>"`` on one line;
    ``err.path`` and ``err.reason`` hold the parts."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:200] if text else type(err).__name__


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file as ``(audio float32 [channels, samples], sample_rate)``.

    Integer PCM is scaled to [-1, 1) (soundfile's convention). Raises :class:`AudioReadError`
    when the file is missing, unreadable, has no samples, or holds non-finite samples.
    """
    p = Path(path)
    if not p.exists():
        raise AudioReadError(p, "not found")
    if p.is_dir():
        raise AudioReadError(p, "is a folder, not an audio file")
    try:
        data, sample_rate = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile raises several types (LibsndfileError, RuntimeError…)
        raise AudioReadError(p, f"unreadable ({_one_line(err)})") from err
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioReadError(p, "empty (no samples)")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise AudioReadError(p, f"non-finite samples ({bad} NaN/Inf values)")
    return np.ascontiguousarray(data.T), int(sample_rate)


def _format_for(path: Path) -> str:
    ext = path.suffix.lstrip(".").upper()
    formats = sf.available_formats()
    if ext not in formats:
        raise ValueError(f"cannot write {path}: unknown audio extension {path.suffix!r} "
                         f"(use .wav or .flac)")
    return ext


def write_audio_atomic(path: str | os.PathLike, audio, sample_rate: int,
                       subtype: str | None = None) -> Path:
    """Write ``audio`` ([channels, samples] or [samples]; numpy or torch, float) to ``path``.

    The data go to a hidden temporary file in the same folder (``.<name>.<random>.tmp``), which
    then replaces ``path`` with ``os.replace`` (atomic on POSIX and Windows within one file
    system). Parent folders are created. ``subtype`` is a soundfile subtype (``"PCM_16"``,
    ``"FLOAT"``, …); None takes the format's default (PCM_16 for wav and flac). For integer
    subtypes samples are clipped to [-1, 1] first. Non-finite samples raise ``ValueError``.
    Returns the destination path.
    """
    dest = Path(path)
    fmt = _format_for(dest)
    if hasattr(audio, "detach"):  # torch tensor
        audio = audio.detach().cpu().numpy()
    data = np.asarray(audio)
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim != 2 or data.shape[1] == 0:
        raise ValueError(f"audio must be [channels, samples] or [samples] with samples > 0, got "
                         f"shape {tuple(np.shape(audio))}")
    if not np.issubdtype(data.dtype, np.floating):
        raise ValueError(f"audio must be floating point, got {data.dtype}")
    if not np.isfinite(data).all():
        raise ValueError(f"refusing to write {dest}: audio holds NaN or Inf samples")
    if int(sample_rate) <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    chosen = subtype or sf.default_subtype(fmt)
    if chosen.startswith("PCM") or chosen in ("ULAW", "ALAW"):
        data = np.clip(data, -1.0, 1.0)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            sf.write(handle, np.ascontiguousarray(data.T), int(sample_rate), subtype=chosen,
                     format=fmt)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return dest


def list_audio_files(root: str | os.PathLike) -> list[PurePath]:
    """Audio files (``.wav``/``.flac``, any case) under ``root``, recursively, as paths relative
    to ``root`` sorted by their POSIX form. Hidden files and folders (name starting with ``.``,
    e.g. macOS ``._x.wav`` or our own temporary files) are left out; folder symlinks are
    followed once (cycles are cut)."""
    base = Path(root)
    if not base.is_dir():
        raise ValueError(f"{base} is not a folder")
    found: list[PurePath] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(base)
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(AUDIO_EXTENSIONS):
                continue
            found.append(rel_dir / name)
    found.sort(key=lambda p: p.as_posix())
    return found
