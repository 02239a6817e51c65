"""Atomic file writes: a killed writer never leaves a partial file under the final name.

:func:`atomic_write` opens a hidden temporary file beside the destination
(``.<name>.<pid>-<random>.tmp``), lets the caller write it, flushes it to the disk
(``fsync``) and renames it over the destination (``os.replace``, atomic within one file
system on POSIX and Windows). On any exception (a full disk, Ctrl-C) the temporary file is
removed and the destination is left as it was.

File mode. The temporary file is created with ``os.open(..., 0o666)``, so the kernel applies
the process umask (and any default ACL of the folder) exactly as for a plain ``open(path,
"w")``: with umask 022 the result is 0644. (``tempfile.mkstemp`` would create 0600 files,
which the rename would then carry over to the output.) The umask is never read or changed,
so this is safe in threads.

Stale temporary files. A process killed by ``kill -9`` cannot clean up; its temporary files
stay (hidden, never under a final name). :func:`remove_stale_temps` removes those of a
destination whose writing process is gone (same host); :func:`atomic_write` calls it before
each write (``clean_stale``), so a rerun cleans up after the killed run. A writer of many files
in one folder sweeps the folder once instead (:func:`sweep_stale_temps`): the per-destination
glob lists the whole folder, O(files) per write.

Durability. ``fsync`` (default on) flushes the data before the rename, so that not even a
power loss can leave an empty file under the final name; it cost about 4.5 ms per file on
the development machine's disk, so writers of many small files may turn it off (atomicity
against killed processes does not need it).

:data:`DISK_ERRNOS` are the ``errno`` values that mean the destination file system as a whole
cannot take the write (full, over quota, read-only); callers stop a batch job on them rather
than failing file after file.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "remove_stale_temps", "sweep_stale_temps", "temp_name",
           "DISK_ERRNOS", "is_disk_error", "check_writable_folder"]

#: errno values meaning "this file system cannot take the write" (not one file's problem)
DISK_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EROFS)
                        if e is not None)


def is_disk_error(exc: BaseException) -> bool:
    """True for an ``OSError`` whose errno is in :data:`DISK_ERRNOS`."""
    return isinstance(exc, OSError) and exc.errno in DISK_ERRNOS


def temp_name(dest: Path) -> Path:
    """A fresh hidden temporary path beside ``dest``: ``.<name>.<pid>-<random>.tmp``."""
    return dest.with_name(f".{dest.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _create_temp(dest: Path) -> tuple[int, Path]:
    """Create a new temporary file beside ``dest`` (mode 0666 minus the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = temp_name(dest)
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "could not create a unique temporary file", str(dest))


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None,
                 fsync: bool = True, clean_stale: bool = True) -> Iterator[IO]:
    """``with atomic_write(path) as handle: handle.write(...)`` -- see the module docstring.

    ``mode`` is ``"wb"`` or ``"w"`` (text, ``encoding`` default utf-8). Parent folders are
    created. ``fsync`` flushes the data to the disk before the rename; ``clean_stale``
    removes temporary files of ``path`` left by dead processes first."""
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if clean_stale:
        remove_stale_temps(dest)
    fd, tmp = _create_temp(dest)
    try:
        if mode == "w":
            handle = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline="")
        else:
            handle = os.fdopen(fd, "wb")
        with handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: keep its file
    return True


def _stale(middle: str) -> bool:
    """``middle`` of ``.<name>.<middle>.tmp``: ``<pid>-<random>`` of a dead process, or a
    name without a process id (older hear_vec versions, ``tempfile.mkstemp``)."""
    pid_text, dash, _ = middle.partition("-")
    return not (dash and pid_text.isdigit() and _pid_alive(int(pid_text)))


def _unlink(paths: list[Path]) -> list[Path]:
    removed = []
    for path in paths:
        try:
            os.unlink(path)
            removed.append(path)
        except OSError:
            pass
    return removed


def remove_stale_temps(dest: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of ``dest`` (``.<name>.*.tmp``) left by processes that no
    longer run; returns what was removed. Files of a live process (this one included) are
    kept; names without a process id (older hear_vec versions) count as stale."""
    dest = Path(dest)
    found = glob.glob(str(dest.parent / f".{glob.escape(dest.name)}.*.tmp"))
    return _unlink([Path(p) for p in found
                    if _stale(Path(p).name[len(dest.name) + 2: -len(".tmp")])])


def sweep_stale_temps(folder: str | os.PathLike, suffixes: tuple[str, ...]) -> list[Path]:
    """:func:`remove_stale_temps` for every destination in ``folder`` whose name ends with one
    of ``suffixes`` (case-insensitive, e.g. ``(".wav", ".flac")``), in one listing of the
    folder; returns what was removed. A missing folder has nothing to sweep."""
    try:
        names = [e.name for e in os.scandir(folder) if e.is_file(follow_symlinks=False)]
    except OSError:
        return []
    stale = []
    for name in names:
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        dest_name, dot, middle = name[1: -len(".tmp")].rpartition(".")
        if dot and dest_name.lower().endswith(suffixes) and _stale(middle):
            stale.append(Path(folder) / name)
    return _unlink(stale)


def check_writable_folder(folder: str | os.PathLike) -> None:
    """Create ``folder`` (and parents) if needed and check that a file can be created in it,
    by creating and removing a temporary file. Raises ``OSError`` (e.g. permission denied,
    read-only or full file system)."""
    base = Path(folder)
    base.mkdir(parents=True, exist_ok=True)
    probe = base / ".hear_vec-write-check"
    fd, tmp = _create_temp(probe)
    try:
        os.close(fd)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
