"""hear_vec.evaluation.stats: paired per-clip statistics and bootstrap intervals.

Guarantees: hand-computed cases (exact bootstrap distributions of tiny samples, fractions,
worst clip, bands), coverage of the 95 % interval on known distributions (clip bootstrap on
independent normal data; cluster bootstrap on grouped data, where the clip bootstrap is
shown to be too narrow), reproducibility from the seed, and bad input.
"""

from __future__ import annotations

import numpy as np
import pytest

from hear_vec.evaluation import (
    Interval,
    bootstrap_means,
    fraction_below,
    gain_by_band,
    mean_interval,
    paired_difference,
    summarize_gains,
    worst_clip,
)

# --- hand-computed cases ------------------------------------------------------------------


def test_constant_values_give_a_degenerate_interval():
    iv = mean_interval([1.5] * 7, n_boot=500)
    assert (iv.mean, iv.low, iv.high, iv.n, iv.clusters) == (1.5, 1.5, 1.5, 7, None)


def test_two_clip_bootstrap_distribution_is_the_exact_one():
    # resampling {0, 1} twice: mean 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4
    reps = bootstrap_means([0.0, 1.0], n_boot=40_000, seed=3)
    values, counts = np.unique(reps, return_counts=True)
    np.testing.assert_allclose(values, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(counts / reps.size, [0.25, 0.5, 0.25], atol=0.01)
    iv = mean_interval([0.0, 1.0], n_boot=40_000)
    assert (iv.mean, iv.low, iv.high) == (0.5, 0.0, 1.0)


def test_cluster_bootstrap_resamples_whole_groups():
    # group A: three clips of 0, group B: one clip of 1. Drawing 2 groups: AA -> 0,
    # AB / BA -> 1/4, BB -> 1 with probabilities 1/4, 1/2, 1/4.
    values, groups = [0.0, 0.0, 0.0, 1.0], ["A", "A", "A", "B"]
    reps = bootstrap_means(values, groups, n_boot=40_000, seed=1)
    uniq, counts = np.unique(reps, return_counts=True)
    np.testing.assert_allclose(uniq, [0.0, 0.25, 1.0])
    np.testing.assert_allclose(counts / reps.size, [0.25, 0.5, 0.25], atol=0.01)
    # the clip bootstrap of the same values is another distribution: P(mean = 0) = (3/4)^4
    clip_reps = bootstrap_means(values, None, n_boot=40_000, seed=1)
    assert np.mean(clip_reps == 0.0) == pytest.approx(0.75 ** 4, abs=0.01)
    iv = mean_interval(values, groups, n_boot=2000)
    assert iv.clusters == 2 and iv.n == 4 and iv.mean == 0.25


def test_group_labels_need_not_be_contiguous_or_strings():
    values = np.array([1.0, 5.0, 1.0, 5.0])
    a = bootstrap_means(values, [7, 3, 7, 3], n_boot=3000, seed=0)
    b = bootstrap_means(values, ["x", "y", "x", "y"], n_boot=3000, seed=0)
    assert set(np.unique(a)) <= {1.0, 3.0, 5.0}
    assert np.mean(a == 3.0) == pytest.approx(0.5, abs=0.04)
    assert np.mean(b == 3.0) == pytest.approx(0.5, abs=0.04)


def test_paired_difference_is_the_interval_of_the_differences():
    rng = np.random.default_rng(0)
    a, b = rng.normal(2, 1, 30), rng.normal(1, 1, 30)
    groups = np.repeat(np.arange(10), 3)
    d = paired_difference(a, b, groups, n_boot=2000, seed=5)
    m = mean_interval(a - b, groups, n_boot=2000, seed=5)
    assert d == m
    assert d.mean == pytest.approx(float(np.mean(a - b)))
    assert d.low < d.mean < d.high


def test_fraction_below_is_strict():
    v = [-2.0, -0.5, 0.0, 1.0]
    assert fraction_below(v) == 0.5
    assert fraction_below(v, -1.0) == 0.25
    assert fraction_below([0.0, 0.0]) == 0.0


def test_worst_clip_names_the_lowest_first_on_ties():
    assert worst_clip([0.5, -3.0, 2.0, -3.0], ["a", "b", "c", "d"]) == {"value": -3.0, "id": "b"}
    with pytest.raises(ValueError, match="ids"):
        worst_clip([1.0, 2.0], ["a"])


def test_gain_by_band_with_edges_and_by_value():
    gains = np.array([1.0, 2.0, 3.0, -1.0, 5.0, 7.0])
    snr = np.array([-5.0, -5.0, 0.0, 0.0, 5.0, 20.0])
    bands = gain_by_band(gains, snr, edges=[-10, -2.5, 2.5, 10], n_boot=500)
    assert [b["band"] for b in bands] == ["[-10, -2.5)", "[-2.5, 2.5)", "[2.5, 10)"]
    assert [b["n"] for b in bands] == [2, 2, 1]             # 20 dB lies outside every band
    assert [b["mean"] for b in bands] == [1.5, 1.0, 5.0]
    assert [b["fraction_worse"] for b in bands] == [0.0, 0.5, 0.0]
    for b in bands:
        assert b["low"] <= b["mean"] <= b["high"]
    by_value = gain_by_band(gains, snr, n_boot=500)
    assert [b["band"] for b in by_value] == ["-5", "0", "5", "20"]
    assert [b["mean"] for b in by_value] == [1.5, 1.0, 5.0, 7.0]
    # an empty band is skipped
    assert [b["n"] for b in gain_by_band(gains, snr, edges=[30, 40, 50])] == []


def test_summarize_gains_reports_everything_and_uses_the_cluster_interval():
    rng = np.random.default_rng(2)
    groups = np.repeat(["u1", "u2", "u3", "u4", "u5"], 4)
    gains = rng.normal(0.5, 1.0, 20) + np.repeat(rng.normal(0, 2, 5), 4)
    ids = [f"c{i}" for i in range(20)]
    s = summarize_gains(gains, ids, groups, band_values=np.tile([0.0, 5.0], 10),
                        worse_thresholds=(0.0, -1.0), n_boot=2000, seed=0)
    assert s["mean"] == pytest.approx(gains.mean())
    assert s["interval"]["clusters"] == 5 and s["interval_clips"]["clusters"] is None
    assert s["interval"] == mean_interval(gains, groups, n_boot=2000, seed=0).as_dict()
    assert s["fraction_worse"] == {"0": fraction_below(gains), "-1": fraction_below(gains, -1)}
    assert s["worst"]["id"] == ids[int(np.argmin(gains))]
    assert [b["n"] for b in s["by_band"]] == [10, 10]


def test_interval_format():
    iv = Interval(1.234, 0.5, 2.0, 0.95, 10, None, 100, 0)
    assert iv.format() == "+1.23 [+0.50, +2.00]"
    assert iv.format(3) == "+1.234 [+0.500, +2.000]"


# --- reproducibility ----------------------------------------------------------------------


def test_the_seed_fixes_the_interval():
    v = np.random.default_rng(0).normal(size=50)
    assert mean_interval(v, seed=4) == mean_interval(v, seed=4)
    assert mean_interval(v, seed=4).low != mean_interval(v, seed=5).low
    # chunked drawing gives the same replicates as one draw would for any n_boot split
    assert np.array_equal(bootstrap_means(v, n_boot=300, seed=1),
                          bootstrap_means(v, n_boot=300, seed=1))


# --- coverage on known distributions ------------------------------------------------------


def _coverage(draw, truth: float, reps: int, groups=None, n_boot: int = 1000) -> float:
    hits = 0
    for r in range(reps):
        values = draw(r)
        iv = mean_interval(values, groups, n_boot=n_boot, seed=r)
        hits += iv.low <= truth <= iv.high
    return hits / reps


def test_clip_bootstrap_covers_the_mean_of_normal_data_about_95_percent():
    rng = np.random.default_rng(123)
    cov = _coverage(lambda r: rng.normal(1.0, 2.0, 40), 1.0, reps=400)
    assert 0.90 <= cov <= 0.98, cov


def test_cluster_bootstrap_covers_grouped_data_where_the_clip_bootstrap_does_not():
    # 20 utterances x 10 clips; a per-utterance effect (sd 1) dominates the clip noise
    # (sd 0.3): the clips of an utterance are strongly correlated.
    rng = np.random.default_rng(7)
    groups = np.repeat(np.arange(20), 10)
    data = [np.repeat(rng.normal(0, 1, 20), 10) + rng.normal(0, 0.3, 200) for _ in range(300)]
    cluster = _coverage(lambda r: data[r], 0.0, reps=300, groups=groups)
    clips = _coverage(lambda r: data[r], 0.0, reps=300)
    assert cluster >= 0.86, cluster
    assert clips <= 0.65, clips          # theory: P(|Z| < 1.96 * 0.074 / 0.225) ~ 0.48


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize("values, match", [
    ([], "empty"),
    ([[1.0, 2.0]], "1-D"),
    ([1.0, float("nan")], "non-finite"),
])
def test_bad_values_raise(values, match):
    with pytest.raises(ValueError, match=match):
        mean_interval(values)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="confidence"):
        mean_interval([1.0, 2.0], confidence=1.0)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_means([1.0, 2.0], n_boot=0)
    with pytest.raises(ValueError, match="one label per clip"):
        bootstrap_means([1.0, 2.0], ["a"])
    with pytest.raises(ValueError, match="same clips"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="increasing"):
        gain_by_band([1.0], [0.0], edges=[1.0, 0.0])
