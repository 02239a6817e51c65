"""hear_vec.metrics: SI-SDR against torchmetrics, STOI / ESTOI against pystoi 0.4.1.

Groups: reference parity, batch consistency, invariants, bad input.
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np
import pytest
import torch
import torch._inductor.config
from conftest import DEVICES
from pystoi import stoi as pystoi
from pystoi.utils import _resample_window_oct
from scipy.signal import resample_poly
from signals import dev_mixtures, mix_at_snr, speechlike
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

from hear_vec.metrics import (
    si_sdr,
    si_sdr_from_reference,
    si_sdr_reference,
    stoi,
    stoi_from_reference,
    stoi_reference,
)

stoi_module = sys.modules["hear_vec.metrics.stoi"]

TOL = {torch.float64: 1e-6, torch.float32: 1e-4}


def reference_stoi(clean: np.ndarray, processed: np.ndarray, sample_rate: int,
                   extended: bool) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pystoi's "Not enough STFT frames"
        return float(pystoi(clean, processed, sample_rate, extended=extended))


def pad_batch(rows: list[np.ndarray], fill: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Stack ragged rows, padding with ``fill`` (non-zero garbage proves it is ignored)."""
    total = max(len(r) for r in rows)
    out = np.full((len(rows), total), fill)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out, np.array([len(r) for r in rows])


def length_hitting_multiple(frames: int, sample_rate: int = 16000, offset: int = 0) -> int:
    """A length at ``sample_rate`` whose 10-kHz resampled length n10 = ceil(n up / down) (the
    output length of resample_poly) has n10 - 256 = 128 k + offset for some k >= ``frames``."""
    g = math.gcd(10000, sample_rate)
    up, down = 10000 // g, sample_rate // g
    for k in range(frames, frames + 10):
        n10 = 256 + 128 * k + offset
        for n in range(n10 * down // up - 2, n10 * down // up + 3):
            if -(-n * up // down) == n10:
                return n
    raise AssertionError("no such length")


def generated_cases(sample_rate: int = 16000) -> list[tuple[np.ndarray, np.ndarray]]:
    """(clean, processed) pairs: speech-like signals in white noise at several SNRs, a length
    hitting pystoi's frame-count edge, long silences, a clean copy and a too-short clip.

    Some clean signals carry a recording noise floor (-25 dB): then every frame, the last ones
    included, survives silent-frame removal, so frame counting and row ends are checked."""
    rng = np.random.default_rng(0)
    sec = sample_rate

    def with_floor(x: np.ndarray) -> np.ndarray:
        return x + 0.003 * rng.standard_normal(len(x))

    cases = []
    for i, snr in enumerate([-5.0, 0.0, 5.0, 20.0]):
        clean = speechlike(2 * sec, sample_rate, seed=i)  # digital silence between syllables
        clean = with_floor(clean) if i % 2 else clean
        cases.append((clean, mix_at_snr(clean, rng.standard_normal(2 * sec), snr)))
    n = length_hitting_multiple(150, sample_rate)
    clean = with_floor(speechlike(n, sample_rate, seed=7))
    cases.append((clean, mix_at_snr(clean, rng.standard_normal(n), 3.0)))
    clean = speechlike(3 * sec, sample_rate, seed=8)
    clean[sec // 2: 2 * sec] = 0.0  # 1.5 s of digital silence, then speech again
    cases.append((clean, mix_at_snr(clean, rng.standard_normal(3 * sec), 5.0)))
    cases.append((clean, clean.copy()))
    short = speechlike(sec // 2, sample_rate, seed=9, pauses=False)  # < 30 frames: 1e-5
    cases.append((short, short + 0.01 * rng.standard_normal(len(short))))
    return cases


def run_batched(cases, sample_rate, dtype, device, extended, garbage=0.0, method=None):
    clean, lengths = pad_batch([c for c, _ in cases], garbage)
    processed, _ = pad_batch([p for _, p in cases], -garbage)
    to = dict(dtype=dtype, device=device)
    got = stoi_module._stoi(torch.tensor(clean, **to), torch.tensor(processed, **to),
                            sample_rate, torch.tensor(lengths, device=device), extended,
                            method)
    return got.cpu().double().numpy()


def references(cases, sample_rate, dtype, extended):
    """pystoi on the same samples our function sees (float32-rounded for float32)."""
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    return np.array([
        reference_stoi(c.astype(np_dtype).astype(np.float64),
                       p.astype(np_dtype).astype(np.float64), sample_rate, extended)
        for c, p in cases])


# ---------------------------------------------------------------------------------------------
# reference parity


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("extended", [False, True])
def test_stoi_matches_pystoi_on_generated_signals(device, dtype, extended):
    cases = generated_cases()
    ref = references(cases, 16000, dtype, extended)
    got = run_batched(cases, 16000, dtype, device, extended)
    assert ref[-1] == 1e-5 and ref[-2] > 0.99  # the too-short and the identical cases
    np.testing.assert_allclose(got, ref, rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("method", ["conv", "fft"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_both_resamplers_match_pystoi(method, dtype):
    """The CPU-float32 path (conv1d) and the FFT path (CUDA, float64) both reproduce pystoi."""
    cases = generated_cases()[:5]
    ref = references(cases, 16000, dtype, False)
    got = run_batched(cases, 16000, dtype, "cpu", False, method=method)
    np.testing.assert_allclose(got, ref, rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("sample_rate", [10000, 8000, 22050])
def test_stoi_matches_pystoi_at_other_rates(sample_rate):
    cases = generated_cases(sample_rate)
    cases = [cases[0], cases[4], cases[5], cases[-1]]
    if sample_rate == 10000:  # n - 256 a multiple of 128 without resampling
        rng = np.random.default_rng(1)
        clean = speechlike(256 + 128 * 40, 10000, seed=3) + 0.003 * rng.standard_normal(5376)
        cases.append((clean, clean + 0.05 * rng.standard_normal(len(clean))))
    for extended in (False, True):
        ref = references(cases, sample_rate, torch.float64, extended)
        got = run_batched(cases, sample_rate, torch.float64, "cpu", extended)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_stoi_matches_pystoi_on_dev_audio(dev_audio, dtype):
    cases = [(clean, noisy) for _, clean, noisy, _ in dev_mixtures(dev_audio, count=5)]
    for extended in (False, True):
        ref = references(cases, 16000, dtype, extended)
        got = run_batched(cases, 16000, dtype, "cpu", extended)
        np.testing.assert_allclose(got, ref, rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("length", [1, 2, 7, 8, 13, 1001, 16001])
@pytest.mark.parametrize("method", ["conv", "fft"])
def test_resampler_matches_resample_poly(length, method):
    x = np.random.default_rng(length).standard_normal((2, length))
    h = _resample_window_oct(10000, 16000)  # pystoi's resample_oct(x, 10000, 16000)
    ref = np.stack([resample_poly(r, 5, 8, window=h / h.sum()) for r in x])
    got = stoi_module._resample(torch.tensor(x), 16000, method).numpy()
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_si_sdr_matches_torchmetrics(device, dtype):
    rng = np.random.default_rng(0)
    ref = np.stack([speechlike(16000, seed=i) for i in range(4)] + [rng.standard_normal(16000)])
    est = ref + rng.standard_normal(ref.shape) * np.array([0.001, 0.01, 0.1, 1.0, 3.0])[:, None]
    est[1] *= -0.5  # a flipped, scaled estimate
    est += 0.3  # a DC offset (zero_mean removes it)
    to = dict(dtype=dtype, device=device)
    got = si_sdr(torch.tensor(est, **to), torch.tensor(ref, **to)).cpu().double()
    expected = scale_invariant_signal_distortion_ratio(
        torch.tensor(est, dtype=torch.float64), torch.tensor(ref, dtype=torch.float64),
        zero_mean=True)
    atol = 1e-5 if dtype == torch.float64 else 2e-3
    torch.testing.assert_close(got, expected, rtol=0, atol=atol)
    if dtype == torch.float32:  # and against torchmetrics' own float32 computation
        expected32 = scale_invariant_signal_distortion_ratio(
            torch.tensor(est, **to), torch.tensor(ref, **to), zero_mean=True).cpu().double()
        torch.testing.assert_close(got, expected32, rtol=0, atol=2e-3)


# ---------------------------------------------------------------------------------------------
# batch consistency


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_stoi_ragged_batch_equals_rows_alone(device, dtype):
    rng = np.random.default_rng(3)
    cases = generated_cases()[3:]  # 2 s, the edge length, silences, too short
    # a row whose last silence frame ends one 10-kHz sample before the row's end
    n = length_hitting_multiple(120, offset=1)
    cases.insert(0, (cases[0][0][:n], cases[0][1][:n]))
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for extended in (False, True):
        batch = run_batched(cases, 16000, dtype, device, extended, garbage=0.7)
        alone = [run_batched([case], 16000, dtype, device, extended)[0] for case in cases]
        np.testing.assert_allclose(batch, alone, rtol=0, atol=tol)
    # any leading batch shape, lengths of that shape
    clean, lengths = pad_batch([c for c, _ in cases[:4]] * 2, 0.3)
    noisy = clean + 0.05 * rng.standard_normal(clean.shape)
    to = dict(dtype=dtype, device=device)
    flat = stoi(torch.tensor(clean, **to), torch.tensor(noisy, **to),
                lengths=torch.tensor(lengths, device=device))
    shaped = stoi(torch.tensor(clean, **to).reshape(2, 4, -1),
                  torch.tensor(noisy, **to).reshape(2, 4, -1),
                  lengths=torch.tensor(lengths, device=device).reshape(2, 4))
    assert shaped.shape == (2, 4) and shaped.dtype == dtype
    torch.testing.assert_close(shaped.reshape(-1), flat, rtol=0, atol=tol)


@pytest.mark.parametrize("extended", [False, True])
def test_stoi_segment_chunking_does_not_change_results(monkeypatch, extended):
    """Large batches accumulate the 30-frame segment statistics in chunks of frames."""
    cases = generated_cases()[:3]
    whole = run_batched(cases, 16000, torch.float64, "cpu", extended)
    for budget in (1, 20000):  # one frame per chunk; a few frames per chunk
        monkeypatch.setattr(stoi_module, "_CHUNK_ELEMENTS", budget)
        chunked = run_batched(cases, 16000, torch.float64, "cpu", extended)
        np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_si_sdr_ragged_batch_equals_rows_alone(device):
    rng = np.random.default_rng(4)
    lengths = [16000, 9001, 123, 1]
    refs = [speechlike(n, seed=i) for i, n in enumerate(lengths)]
    ests = [r + 0.05 * rng.standard_normal(len(r)) for r in refs]
    ref, _ = pad_batch(refs, 0.9)
    est, _ = pad_batch(ests, -0.4)
    to = dict(dtype=torch.float64, device=device)
    got = si_sdr(torch.tensor(est, **to), torch.tensor(ref, **to),
                 torch.tensor(lengths, device=device)).cpu()
    alone = torch.cat([si_sdr(torch.tensor(e, **to)[None], torch.tensor(r, **to)[None]).cpu()
                       for e, r in zip(ests, refs)])
    torch.testing.assert_close(got, alone, rtol=0, atol=1e-9)
    shaped = si_sdr(torch.tensor(est, **to).reshape(2, 2, -1),
                    torch.tensor(ref, **to).reshape(2, 2, -1),
                    torch.tensor(lengths, device=device).reshape(2, 2)).cpu()
    torch.testing.assert_close(shaped.reshape(-1), got, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cached_clean_side_equals_direct_scores(dtype):
    """stoi_reference / stoi_from_reference and si_sdr_reference / si_sdr_from_reference (the
    env's per-episode caches) give the scores of stoi / si_sdr on ragged, garbage-padded rows;
    several processed signals against one reference."""
    cases = generated_cases()[3:]
    clean_np, lengths_np = pad_batch([c for c, _ in cases], 0.0)
    to = dict(dtype=dtype)
    clean = torch.tensor(clean_np, **to)
    lengths = torch.tensor(lengths_np)
    mask = torch.arange(clean.shape[-1]) < lengths[:, None]
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    quality = stoi_reference(clean, 16000, lengths)
    target = si_sdr_reference(clean, lengths)
    for k, scale in enumerate((0.02, 0.3)):
        noise = torch.tensor(np.random.default_rng(k).standard_normal(clean.shape), **to)
        processed = torch.where(mask, clean + scale * noise, 0.0)
        value, extended = stoi_from_reference(quality, processed, 16000)
        torch.testing.assert_close(value, stoi(clean, processed, 16000, lengths),
                                   rtol=0, atol=tol)
        torch.testing.assert_close(extended, stoi(clean, processed, 16000, lengths, True),
                                   rtol=0, atol=tol)
        garbage = torch.where(mask, processed, 0.5)  # si_sdr masks what is beyond lengths
        torch.testing.assert_close(si_sdr_from_reference(target, garbage, lengths),
                                   si_sdr(garbage, clean, lengths), rtol=0,
                                   atol=1e-9 if dtype == torch.float64 else 1e-4)
    only_stoi = stoi_reference(clean, 16000, lengths, extended=False)
    with pytest.raises(ValueError, match="ESTOI"):
        stoi_from_reference(only_stoi, processed, 16000)
    with pytest.raises(ValueError, match="rows"):
        stoi_from_reference(quality, processed[:2], 16000)


@pytest.mark.filterwarnings("ignore:Torchinductor does not support code generation for complex")
def test_stoi_compiles_fullgraph_and_matches_eager():
    clean = torch.tensor(np.stack([speechlike(16000, seed=i, pauses=False) for i in range(2)]),
                         dtype=torch.float32)
    noisy = clean + 0.02 * torch.randn_like(clean)
    lengths = torch.tensor([16000, 14000])
    eager = stoi(clean, noisy, lengths=lengths)
    # scalar (non-vectorized) C++ kernels: the same graph and lowering, but a cold compile
    # takes a third of the time on a 2-core CI machine
    with torch._inductor.config.patch({"cpp.vec_isa_ok": False}):
        compiled = torch.compile(stoi, fullgraph=True)(clean, noisy, lengths=lengths)
    assert (eager > 0.5).all()  # real scores, not the 1e-5 fallback
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# invariants


def test_stoi_invariants():
    rng = np.random.default_rng(5)
    clean = torch.tensor(np.stack([speechlike(32000, seed=i) for i in range(2)]))
    noisy = clean + 0.02 * torch.tensor(rng.standard_normal(clean.shape))
    for extended in (False, True):
        base = stoi(clean, noisy, extended=extended)
        perfect = stoi(clean, clean, extended=extended)
        torch.testing.assert_close(perfect, torch.ones_like(perfect), rtol=0, atol=1e-9)
        # invariant to the gain of the processed signal and of both signals
        torch.testing.assert_close(stoi(clean, 3.0 * noisy, extended=extended), base,
                                   rtol=0, atol=1e-9)
        torch.testing.assert_close(stoi(0.1 * clean, 0.1 * noisy, extended=extended), base,
                                   rtol=0, atol=1e-9)
        # silent / all-zero rows stay finite; a zero-length row gives the 1e-5 fallback
        zeros = torch.zeros_like(clean)
        for a, b in [(clean, zeros), (zeros, noisy), (zeros, zeros)]:
            assert torch.isfinite(stoi(a, b, extended=extended)).all()
        out = stoi(clean, noisy, lengths=torch.tensor([0, 32000]), extended=extended)
        assert out[0] == 1e-5 and torch.isclose(out[1], base[1])
        # clips far too short for one frame (pystoi itself fails on them), an empty batch
        for time in (1, 300):
            tiny = stoi(clean[:, :time], noisy[:, :time], extended=extended)
            assert (tiny == 1e-5).all()
        assert stoi(clean[:0], noisy[:0], extended=extended).shape == (0,)


def test_si_sdr_invariants():
    rng = np.random.default_rng(6)
    ref = torch.tensor(np.stack([speechlike(8000, seed=i) for i in range(3)]))
    est = ref + 0.1 * torch.tensor(rng.standard_normal(ref.shape))
    base = si_sdr(est, ref)
    torch.testing.assert_close(si_sdr(4.0 * est + 0.5, ref), base, rtol=0, atol=1e-9)
    assert (si_sdr(ref, ref) > 100).all()  # a perfect estimate scores very high
    zeros = torch.zeros_like(ref)
    for a, b in [(zeros, ref), (est, zeros), (zeros, zeros)]:
        assert torch.isfinite(si_sdr(a, b)).all()
    assert torch.isfinite(si_sdr(est, ref, torch.tensor([0, 1, 8000]))).all()


# ---------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("metric", ["si_sdr", "stoi"])
def test_bad_input_raises_value_error(metric):
    fn = si_sdr if metric == "si_sdr" else stoi
    x = torch.randn(2, 8000)
    with pytest.raises(ValueError, match="same shape"):
        fn(x, torch.randn(2, 7999))
    with pytest.raises(ValueError, match="same dtype"):
        fn(x, x.double())
    with pytest.raises(ValueError, match="floating point"):
        fn((x * 1000).to(torch.int16), (x * 1000).to(torch.int16))
    with pytest.raises(ValueError, match="torch.Tensor"):
        fn(x.numpy(), x)
    with pytest.raises(ValueError, match="lengths must lie"):
        fn(x, x, lengths=torch.tensor([8000, 8001]))
    with pytest.raises(ValueError, match="batch shape"):
        fn(x, x, lengths=torch.tensor([8000]))
    with pytest.raises(ValueError, match="integer"):
        fn(x, x, lengths=torch.tensor([8000.0, 1.0]))
    if metric == "stoi":
        for rate in (0, -16000, 16000.0, True):
            with pytest.raises(ValueError, match="sample_rate"):
                stoi(x, x, sample_rate=rate)
