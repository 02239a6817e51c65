"""Paired per-clip statistics for comparing denoisers on the same clips (host-side, numpy).

Every system is scored on the same clips, so comparisons are *paired*: for clip i the gain
of system A over the noisy input is ``g_i = m(A(x_i)) - m(x_i)`` and the difference between
two systems is ``d_i = g^A_i - g^B_i`` (the noisy score cancels). Functions here take such
per-clip vectors.

Intervals are percentile bootstrap intervals (Efron & Tibshirani 1993, ch. 13). With
``R`` bootstrap replicates of the mean, ``theta*_1..R``, the ``1 - a`` interval is

    [ Q(theta*, a/2), Q(theta*, 1 - a/2) ]      (Q: numpy's linear-interpolation quantile)

- clip bootstrap (``groups=None``): a replicate draws n clips with replacement,
  ``theta* = (1/n) sum_{j=1..n} v_{I_j}``, I_j uniform on {1..n}. Right when clips are
  independent.
- cluster bootstrap (``groups`` given, one label per clip): a replicate draws G of the G
  groups with replacement and takes the mean over every clip of the drawn groups,
  ``theta* = sum_j S_{J_j} / sum_j C_{J_j}`` (S_g, C_g: sum and count of group g; J_j
  uniform on the groups). Clips that share a source utterance (or a noise) are correlated,
  so the clip bootstrap's interval is too narrow for the question "what would a new
  utterance give?"; resampling whole utterances keeps that correlation inside a replicate.
  With few groups (under ~10) the percentile interval still tends to be somewhat narrow.

Randomness comes from ``numpy.random.default_rng(seed)``: the same call gives the same
interval. Replicates are drawn in chunks so memory stays bounded (about 4M indices at once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "Interval",
    "bootstrap_means",
    "mean_interval",
    "paired_difference",
    "fraction_below",
    "worst_clip",
    "gain_by_band",
    "summarize_gains",
]

_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class Interval:
    """A mean with its percentile bootstrap interval.

    ``mean``: the sample mean of all clips (not the replicates' mean); ``low``/``high``: the
    interval; ``confidence``: e.g. 0.95; ``n``: clips; ``clusters``: groups resampled (None
    for the clip bootstrap); ``n_boot``, ``seed``: how the replicates were drawn."""

    mean: float
    low: float
    high: float
    confidence: float
    n: int
    clusters: int | None
    n_boot: int
    seed: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self, digits: int = 2) -> str:
        """``mean [low, high]`` with ``digits`` decimals, signed (e.g. ``+1.23 [+0.80, +1.61]``)."""
        f = f"{{:+.{digits}f}}"
        return f"{f.format(self.mean)} [{f.format(self.low)}, {f.format(self.high)}]"


def _values(values: Any, name: str = "values") -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"{name} must be one value per clip (1-D), got shape {v.shape}")
    if v.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(v).all():
        bad = int((~np.isfinite(v)).sum())
        raise ValueError(f"{name} holds {bad} non-finite value(s); drop or fix those clips first")
    return v


def _group_index(groups: Sequence[Any] | np.ndarray, n: int) -> tuple[np.ndarray, int]:
    labels = np.asarray(groups, dtype=object)
    if labels.shape != (n,):
        raise ValueError(f"groups must hold one label per clip ({n}), got shape {labels.shape}")
    _, index = np.unique(labels.astype(str), return_inverse=True)
    return index.reshape(-1), int(index.max()) + 1


def bootstrap_means(values: Any, groups: Sequence[Any] | np.ndarray | None = None,
                    n_boot: int = 10_000, seed: int = 0) -> np.ndarray:
    """``n_boot`` bootstrap replicates of the mean of ``values`` [n] (float64 [n_boot]).

    ``groups=None``: clip bootstrap, ``theta* = mean(v[I])`` with I n draws from {0..n-1}.
    ``groups`` (one hashable label per clip): cluster bootstrap, G group draws J,
    ``theta* = sum(S[J]) / sum(C[J])`` with S, C the per-group sums and counts.
    """
    v = _values(values)
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    n_boot = int(n_boot)
    rng = np.random.default_rng(seed)
    if groups is None:
        sums, counts = v, np.ones_like(v)
    else:
        index, num_groups = _group_index(groups, v.size)
        sums = np.bincount(index, weights=v, minlength=num_groups)
        counts = np.bincount(index, minlength=num_groups).astype(np.float64)
    units = sums.size
    out = np.empty(n_boot, dtype=np.float64)
    step = max(1, _CHUNK_ELEMENTS // units)
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        draw = rng.integers(0, units, size=(stop - start, units))
        out[start:stop] = sums[draw].sum(axis=1) / counts[draw].sum(axis=1)
    return out


def mean_interval(values: Any, groups: Sequence[Any] | np.ndarray | None = None,
                  confidence: float = 0.95, n_boot: int = 10_000, seed: int = 0) -> Interval:
    """Mean of ``values`` [n] with its percentile bootstrap interval (see the module doc).

    One clip (or one group) gives the degenerate interval [mean, mean]."""
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    v = _values(values)
    reps = bootstrap_means(v, groups, n_boot, seed)
    alpha = 1.0 - float(confidence)
    low, high = np.quantile(reps, [alpha / 2.0, 1.0 - alpha / 2.0])
    clusters = None if groups is None else _group_index(groups, v.size)[1]
    return Interval(float(v.mean()), float(low), float(high), float(confidence), int(v.size),
                    clusters, int(n_boot), int(seed))


def paired_difference(a: Any, b: Any, groups: Sequence[Any] | np.ndarray | None = None,
                      confidence: float = 0.95, n_boot: int = 10_000, seed: int = 0
                      ) -> Interval:
    """Mean paired difference ``d_i = a_i - b_i`` of two systems on the same clips, with its
    bootstrap interval. The interval excludes 0 when one system is better at ``confidence``
    (under the resampling scheme chosen by ``groups``)."""
    av, bv = _values(a, "a"), _values(b, "b")
    if av.shape != bv.shape:
        raise ValueError(f"a and b must score the same clips, got {av.size} and {bv.size}")
    return mean_interval(av - bv, groups, confidence, n_boot, seed)


def fraction_below(values: Any, threshold: float = 0.0) -> float:
    """Fraction of clips with ``value < threshold`` (e.g. gain < 0: made worse than the input;
    strict, so a system that returns its input unchanged scores 0)."""
    v = _values(values)
    return float(np.mean(v < float(threshold)))


def worst_clip(values: Any, ids: Sequence[Any]) -> dict[str, Any]:
    """The clip with the lowest value: ``{"value": min, "id": ids[argmin]}`` (first on ties)."""
    v = _values(values)
    if len(ids) != v.size:
        raise ValueError(f"ids must name every clip ({v.size}), got {len(ids)}")
    i = int(np.argmin(v))
    return {"value": float(v[i]), "id": ids[i]}


def _band_label(lo: float, hi: float) -> str:
    lo_s = "-inf" if np.isneginf(lo) else f"{lo:g}"
    hi_s = "inf" if np.isposinf(hi) else f"{hi:g}"
    return f"[{lo_s}, {hi_s})"


def gain_by_band(gains: Any, band_values: Any, edges: Sequence[float] | None = None,
                 groups: Sequence[Any] | np.ndarray | None = None, confidence: float = 0.95,
                 n_boot: int = 2_000, seed: int = 0,
                 worse_threshold: float = 0.0) -> list[dict[str, Any]]:
    """Gains split by a per-clip value such as the input SNR.

    ``edges`` (increasing): band k holds clips with ``edges[k] <= value < edges[k+1]``; clips
    outside all bands are left out. ``edges=None``: one band per distinct value (e.g. the SNR
    grid of a benchmark), labelled by the value. Each band: label, lo, hi, n, mean, low, high
    (bootstrap interval as in :func:`mean_interval`, cluster bootstrap within the band when
    ``groups`` is given), fraction_worse (``gain < worse_threshold``). Empty bands are skipped.
    """
    g = _values(gains, "gains")
    x = _values(band_values, "band_values")
    if x.shape != g.shape:
        raise ValueError(f"band_values must hold one value per clip ({g.size}), got {x.size}")
    labels = None if groups is None else np.asarray(groups, dtype=object)
    if labels is not None and labels.shape != g.shape:
        raise ValueError(f"groups must hold one label per clip ({g.size}), got {labels.shape}")
    if edges is None:
        bands = [(float(u), float(u), x == u, f"{float(u):g}") for u in np.unique(x)]
    else:
        e = np.asarray(edges, dtype=np.float64)
        if e.ndim != 1 or e.size < 2 or not np.all(np.diff(e) > 0):
            raise ValueError(f"edges must be at least 2 increasing values, got {list(edges)}")
        bands = [(float(lo), float(hi), (x >= lo) & (x < hi), _band_label(lo, hi))
                 for lo, hi in zip(e[:-1], e[1:])]
    out = []
    for lo, hi, mask, label in bands:
        if not mask.any():
            continue
        iv = mean_interval(g[mask], None if labels is None else labels[mask], confidence,
                           n_boot, seed)
        out.append({"band": label, "lo": lo, "hi": hi, "n": int(mask.sum()), "mean": iv.mean,
                    "low": iv.low, "high": iv.high,
                    "fraction_worse": float(np.mean(g[mask] < worse_threshold))})
    return out


def summarize_gains(gains: Any, ids: Sequence[Any],
                    groups: Sequence[Any] | np.ndarray | None = None,
                    band_values: Any = None, band_edges: Sequence[float] | None = None,
                    worse_thresholds: Sequence[float] = (0.0,), confidence: float = 0.95,
                    n_boot: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """Everything reported for one system's per-clip gains.

    Returns a dict: ``mean``; ``interval`` (primary: the cluster bootstrap over ``groups``
    when given, else the clip bootstrap) and ``interval_clips`` (always the clip bootstrap,
    for comparison), both :meth:`Interval.as_dict`; ``fraction_worse`` {threshold: fraction of
    clips with gain < threshold}; ``worst`` (:func:`worst_clip`); ``by_band``
    (:func:`gain_by_band`, when ``band_values`` is given).
    """
    g = _values(gains, "gains")
    primary = mean_interval(g, groups, confidence, n_boot, seed)
    clips = primary if groups is None else mean_interval(g, None, confidence, n_boot, seed)
    out: dict[str, Any] = {
        "mean": primary.mean,
        "interval": primary.as_dict(),
        "interval_clips": clips.as_dict(),
        "fraction_worse": {f"{t:g}": fraction_below(g, t) for t in worse_thresholds},
        "worst": worst_clip(g, ids),
    }
    if band_values is not None:
        out["by_band"] = gain_by_band(g, band_values, band_edges, groups, confidence,
                                      min(n_boot, 2_000), seed,
                                      worse_threshold=float(worse_thresholds[0]))
    return out
