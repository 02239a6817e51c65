"""hear_vec.evaluation.align: blind delay alignment of a denoiser's output to its input.

Guarantees: a known shift (late or early, of a filtered and noisy copy) is found exactly and
undone; the output is cut / zero-padded to the input length; the search stays within its
bound; bad input raises.
"""

from __future__ import annotations

import numpy as np
import pytest

from hear_vec.evaluation import align_to_reference, estimate_lag, shift_to_length
from tests.signals import speechlike


def _delayed(x: np.ndarray, lag: int, extra: int = 0) -> np.ndarray:
    """x late by ``lag`` samples (early when negative), ``extra`` more samples at the end."""
    out = np.zeros(x.size + extra, dtype=np.float64)
    if lag >= 0:
        out[lag:x.size] = x[:x.size - lag]
    else:
        out[:x.size + lag] = x[-lag:]
    return out


@pytest.mark.parametrize("lag", [0, 1, 37, 320, -12, -160])
def test_a_known_shift_is_found_and_undone(lag):
    x = speechlike(16000, seed=2)
    y = _delayed(x, lag)
    assert estimate_lag(y, x, 800) == lag
    aligned, found = align_to_reference(y, x, 800)
    assert found == lag and aligned.shape == x.shape and aligned.dtype == np.float32
    valid = slice(0, x.size - abs(lag))
    if lag < 0:
        valid = slice(-lag, x.size)
        np.testing.assert_array_equal(aligned[:-lag], 0.0)  # zero-padded where nothing exists
    else:
        np.testing.assert_array_equal(aligned[x.size - lag:], 0.0)
    np.testing.assert_allclose(aligned[valid], x[valid].astype(np.float32), atol=1e-6)


def test_a_filtered_noisy_delayed_copy_is_aligned_against_the_noisy_input():
    rng = np.random.default_rng(0)
    clean = speechlike(24000, seed=5)
    noisy = clean + np.sqrt(np.mean(clean ** 2)) * rng.standard_normal(clean.size)  # 0 dB
    smoothed = np.convolve(clean, np.ones(5) / 5, mode="same")   # a "denoised" output
    out = _delayed(smoothed, 213, extra=400)                        # late and longer
    aligned, lag = align_to_reference(out, noisy, 800)
    assert lag == 213 and aligned.size == noisy.size
    np.testing.assert_allclose(aligned[:clean.size - 213], smoothed[:clean.size - 213],
                               atol=1e-6)


def test_the_search_is_bounded():
    x = speechlike(8000, seed=1)
    y = _delayed(x, 600)
    assert abs(estimate_lag(y, x, 100)) <= 100
    assert estimate_lag(y, x, 0) == 0
    assert estimate_lag(y, x, 800) == 600


def test_shift_to_length_by_hand():
    out = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(shift_to_length(out, 1, 5), [2, 3, 4, 0, 0])
    np.testing.assert_array_equal(shift_to_length(out, -2, 3), [0, 0, 1])
    np.testing.assert_array_equal(shift_to_length(out, 0, 2), [1, 2])
    np.testing.assert_array_equal(shift_to_length(out, 9, 3), [0, 0, 0])


def test_bad_input_raises():
    with pytest.raises(ValueError, match="1-D"):
        estimate_lag(np.zeros((2, 3)), np.zeros(3), 1)
    with pytest.raises(ValueError, match="non-finite"):
        estimate_lag(np.array([1.0, np.nan]), np.ones(2), 1)
    with pytest.raises(ValueError, match="max_lag"):
        estimate_lag(np.ones(3), np.ones(3), -1)
