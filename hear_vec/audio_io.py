"""Audio file I/O shared by the corpora, the demo writer, ``evaluate`` and ``infer.py``.

- :func:`probe_audio` reads a file's header (frames, rate, channels, subtype).
- :func:`read_audio` reads wav/flac (anything libsndfile reads) as float32
  ``[channels, samples]``; :func:`read_audio_mono` reads a file as float32 mono at a given rate.
- :func:`write_audio_atomic` writes to a temporary file in the destination folder and renames
  it over the destination (:func:`hear_vec.atomic.atomic_write`), so a killed writer never
  leaves a partial file under the final name; outputs get the user's umask.
- :func:`list_audio_files` walks a folder recursively for ``.wav`` / ``.flac`` files.

Reading policy (every reader raises :class:`AudioReadError` with a one-line reason):

- missing, a folder, not a regular file (a FIFO or a device), 0 bytes, not audio, no samples:
  refused; a file that stops decoding part-way (a truncated FLAC) is refused as "truncated or
  corrupt". A WAV whose data chunk is cut short is read up to where its data ends (libsndfile
  takes the length from the file size), so a truncated WAV loads, shorter.
- any integer or float subtype libsndfile reads (8-bit unsigned, 16/24/32-bit, float,
  double); integers are scaled to [-1, 1) (soundfile's convention); float64 is converted to
  float32 (values beyond the float32 range become Inf and the file is refused as
  non-finite); any channel count.
- NaN or Inf anywhere: refused ("non-finite samples").
- sample rates outside :data:`SAMPLE_RATE_RANGE` (1 kHz .. 1 MHz) are refused: a header
  claiming 1 Hz would turn a few kilobytes into hours of audio once resampled.
- Memory: files are read in blocks of :data:`BLOCK_FRAMES` frames into one preallocated
  output (no ``[samples, channels]`` copy plus transpose); :func:`read_audio_mono` averages
  the channels and resamples block by block (:class:`hear_vec.resample.StreamResampler`),
  so its peak memory is the float32 mono output plus a few blocks, whatever the file's
  length, rate or channel count. Measured on an hour of 8 kHz stereo PCM_16 read as 16 kHz
  mono (a 220 MiB result): the peak RSS rose by 268 MiB, against 2648 MiB for reading the
  file whole and resampling it in one call (the code before); ``read_audio`` of the same
  file rose by 224 MiB for its 220 MiB result.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np
import soundfile as sf

from hear_vec.atomic import atomic_write

__all__ = ["AudioReadError", "AUDIO_EXTENSIONS", "SAMPLE_RATE_RANGE", "BLOCK_FRAMES",
           "AudioInfo", "probe_audio", "read_audio", "read_audio_mono", "write_audio_atomic",
           "list_audio_files"]

#: file name endings (compared case-insensitively) that count as audio files
AUDIO_EXTENSIONS = (".wav", ".flac")
#: sample rates (Hz, inclusive) that files may have
SAMPLE_RATE_RANGE = (1000, 1_000_000)
#: frames read per block
BLOCK_FRAMES = 1 << 18
#: a header may claim at most this many samples per byte of file before the reader stops
#: trusting it for preallocation (FLAC of silence compresses far; PCM holds <= 1 per byte)
_TRUSTED_SAMPLES_PER_BYTE = 64


class AudioReadError(ValueError):
    """A file that cannot be used as audio. ``str(err)`` is ``"<path>: <reason>"`` on one line;
    ``err.path`` and ``err.reason`` hold the parts."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class AudioInfo:
    """A file's header facts."""

    frames: int
    sample_rate: int
    channels: int
    subtype: str
    size_bytes: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:200] if text else type(err).__name__


def _check_file(p: Path) -> int:
    """The file's size in bytes, or AudioReadError for what is not a readable regular file."""
    try:
        st = p.stat()
    except FileNotFoundError:
        raise AudioReadError(p, "not found") from None
    except OSError as err:
        raise AudioReadError(p, f"unreadable ({_one_line(err)})") from err
    if p.is_dir():
        raise AudioReadError(p, "is a folder, not an audio file")
    if not p.is_file():
        raise AudioReadError(p, "not a regular file")
    if st.st_size == 0:
        raise AudioReadError(p, "empty file (0 bytes)")
    return int(st.st_size)


def _check_header(p: Path, info: AudioInfo) -> None:
    lo, hi = SAMPLE_RATE_RANGE
    if not lo <= info.sample_rate <= hi:
        raise AudioReadError(p, f"sample rate {info.sample_rate} Hz is outside the supported "
                                f"{lo}..{hi} Hz")
    if info.channels <= 0 or info.frames <= 0:
        raise AudioReadError(p, "empty (no samples)")


def probe_audio(path: str | os.PathLike) -> AudioInfo:
    """Header facts of an audio file; raises :class:`AudioReadError` (see the module
    docstring) without decoding the samples."""
    p = Path(path)
    size = _check_file(p)
    try:
        raw = sf.info(str(p))
    except Exception as err:  # libsndfile raises several types (LibsndfileError, RuntimeError…)
        raise AudioReadError(p, f"unreadable ({_one_line(err)})") from err
    info = AudioInfo(int(raw.frames), int(raw.samplerate), int(raw.channels), str(raw.subtype),
                     size)
    _check_header(p, info)
    return info


class _Growing:
    """A float32 ``[rows, n]`` buffer filled left to right; preallocated to the expected size
    when that is plausible, grown by 1.5x otherwise."""

    def __init__(self, rows: int, expected: int, trusted: bool) -> None:
        self.data = np.empty((rows, expected if trusted else min(expected, BLOCK_FRAMES)),
                             dtype=np.float32)
        self.n = 0

    def append(self, block: np.ndarray) -> None:  # block [rows, m]
        m = block.shape[-1]
        if self.n + m > self.data.shape[1]:
            bigger = np.empty((self.data.shape[0], max(self.n + m, int(self.data.shape[1] * 1.5))),
                              dtype=np.float32)
            bigger[:, : self.n] = self.data[:, : self.n]
            self.data = bigger
        self.data[:, self.n: self.n + m] = block
        self.n += m

    def result(self) -> np.ndarray:
        if self.n == self.data.shape[1]:
            return self.data
        return np.ascontiguousarray(self.data[:, : self.n])


def _blocks(p: Path, handle: sf.SoundFile):
    """Blocks ``[m, channels]`` float32; AudioReadError when decoding stops part-way."""
    while True:
        try:
            block = handle.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
        except Exception as err:
            raise AudioReadError(p, f"truncated or corrupt: decoding stopped part-way "
                                    f"({_one_line(err)})") from err
        if block.shape[0] == 0:
            return
        yield block


def _non_finite(p: Path, bad: int, subtype: str) -> AudioReadError:
    why = "; float64 values beyond the float32 range count as Inf" if subtype == "DOUBLE" else ""
    return AudioReadError(p, f"non-finite samples ({bad} NaN/Inf values{why})")


def _open(p: Path) -> tuple[sf.SoundFile, AudioInfo]:
    size = _check_file(p)
    try:
        handle = sf.SoundFile(str(p))
    except Exception as err:
        raise AudioReadError(p, f"unreadable ({_one_line(err)})") from err
    info = AudioInfo(int(handle.frames), int(handle.samplerate), int(handle.channels),
                     str(handle.subtype), size)
    try:
        _check_header(p, info)
    except AudioReadError:
        handle.close()
        raise
    return handle, info


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file as ``(audio float32 [channels, samples], sample_rate)``.

    Integer PCM is scaled to [-1, 1) (soundfile's convention). Raises :class:`AudioReadError`
    for the files the module docstring lists (missing, unreadable, truncated FLAC, no
    samples, non-finite samples, unsupported rate). Memory: the output plus one block.
    """
    p = Path(path)
    handle, info = _open(p)
    with handle:
        trusted = info.frames * info.channels <= _TRUSTED_SAMPLES_PER_BYTE * info.size_bytes
        out = _Growing(info.channels, info.frames, trusted)
        bad = 0
        for block in _blocks(p, handle):
            bad += int(block.size - np.count_nonzero(np.isfinite(block)))
            out.append(block.T)
    if out.n == 0:
        raise AudioReadError(p, "empty (no samples)")
    if bad:
        raise _non_finite(p, bad, info.subtype)
    return out.result(), info.sample_rate


def read_audio_mono(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """A file as float32 mono at ``sample_rate``: channels averaged, then resampled with
    :func:`hear_vec.resample.resample` (block by block, see the module docstring).
    Raises :class:`AudioReadError`."""
    import torch

    from hear_vec.resample import StreamResampler, resampled_length

    p = Path(path)
    handle, info = _open(p)
    with handle:
        expected = resampled_length(info.frames, info.sample_rate, sample_rate)
        trusted = info.frames * info.channels <= _TRUSTED_SAMPLES_PER_BYTE * info.size_bytes
        out = _Growing(1, expected, trusted)
        stream = (StreamResampler(info.sample_rate, sample_rate)
                  if info.sample_rate != sample_rate else None)
        bad = read = 0
        for block in _blocks(p, handle):
            read += block.shape[0]
            bad += int(block.size - np.count_nonzero(np.isfinite(block)))
            if bad:
                continue  # refused below; read on only to count
            mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)
            if stream is None:
                out.append(mono[None, :])
            else:
                out.append(stream.push(torch.from_numpy(np.ascontiguousarray(mono))).numpy()
                           [None, :])
        if bad:
            raise _non_finite(p, bad, info.subtype)
        if read == 0:
            raise AudioReadError(p, "empty (no samples)")
        if stream is not None:
            out.append(stream.finish().numpy()[None, :])
    if out.n == 0:
        raise AudioReadError(p, f"empty after resampling {info.sample_rate} -> {sample_rate} Hz")
    return out.result()[0]


def _format_for(path: Path) -> str:
    ext = path.suffix.lstrip(".").upper()
    formats = sf.available_formats()
    if ext not in formats:
        raise ValueError(f"cannot write {path}: unknown audio extension {path.suffix!r} "
                         f"(use .wav or .flac)")
    return ext


def write_audio_atomic(path: str | os.PathLike, audio, sample_rate: int,
                       subtype: str | None = None, *, fsync: bool = False,
                       clean_stale: bool = True) -> Path:
    """Write ``audio`` ([channels, samples] or [samples]; numpy or torch, float) to ``path``.

    The data go to a hidden temporary file in the same folder, which then replaces ``path``
    (:func:`hear_vec.atomic.atomic_write`: ``os.replace``, mode 0666 minus the umask; a
    failed or interrupted write leaves ``path`` as it was and no temporary file; ``fsync``
    and ``clean_stale`` as there; no fsync by default, as audio outputs come by the
    thousand and a killed process cannot leave a partial file without it). Parent folders
    are created. ``subtype`` is a soundfile subtype (``"PCM_16"``,
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
    with atomic_write(dest, "wb", fsync=fsync, clean_stale=clean_stale) as handle:
        sf.write(handle, np.ascontiguousarray(data.T), int(sample_rate), subtype=chosen,
                 format=fmt)
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
