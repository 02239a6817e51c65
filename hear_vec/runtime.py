"""Process-wide runtime tuning, opt-in: importing hear_vec (or any of its modules) changes
no process-wide setting, and no library function calls this implicitly.

:func:`tune_cpu_allocator` is called in exactly two places: :func:`hear_vec.training.run` on
a CPU device when ``RunConfig.tune_cpu_allocator`` is True (the default; so ``train.py``,
``python -m hear_vec.sweep`` and ``python -m hear_vec.demo`` on the CPU;
``--no-tune-cpu-allocator`` turns it off), and ``benchmarks/throughput.py`` (CPU runs, as
train.py does). It changes glibc malloc thresholds only -- no result, only speed.
"""

from __future__ import annotations

__all__ = ["tune_cpu_allocator"]

_ALLOCATOR_TUNED = False


def tune_cpu_allocator() -> bool:
    """Keep freed CPU memory in the process instead of returning it to the kernel (glibc).

    A CPU step allocates and frees many temporaries of several MB (the batch's spectra). By
    default glibc serves blocks above its mmap threshold (128 KB, adapting up to 32 MB) with
    fresh ``mmap`` pages and unmaps them on free, so every step page-faults its temporaries
    in again: measured on the 2-core dev machine (64 envs x 2 s, one thread), 216 ms of system
    time per step in page faults, 105,000 faults per step. ``mallopt(M_MMAP_THRESHOLD, 1 GB)``
    and ``mallopt(M_TRIM_THRESHOLD, 1 GB)`` make the heap keep and reuse them: 0.7 ms of system
    time, 200 faults, 1.43x more env-steps/s. Cost: the process keeps its peak heap
    (no trimming). Process-wide and idempotent; a no-op (False) without glibc."""
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(
            libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False
    _ALLOCATOR_TUNED = ok
    return ok
