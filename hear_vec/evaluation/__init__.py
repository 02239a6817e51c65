"""Evaluation tools (host-side, numpy): paired per-clip statistics with bootstrap intervals,
held-out selection of whole speakers / noise recordings from names, and delay alignment of
outside denoisers' outputs."""

from __future__ import annotations

from hear_vec.evaluation.align import align_to_reference, estimate_lag, shift_to_length
from hear_vec.evaluation.split import (
    NOISE_STREAM,
    HoldoutSplit,
    choose_holdout,
    group_names,
    group_of,
    parse_name_list,
)
from hear_vec.evaluation.stats import (
    Interval,
    bootstrap_means,
    fraction_below,
    gain_by_band,
    mean_interval,
    paired_difference,
    summarize_gains,
    worst_clip,
)

__all__ = [
    "Interval", "bootstrap_means", "mean_interval", "paired_difference", "fraction_below",
    "worst_clip", "gain_by_band", "summarize_gains",
    "HoldoutSplit", "NOISE_STREAM", "group_of", "group_names", "choose_holdout", "parse_name_list",
    "estimate_lag", "shift_to_length", "align_to_reference",
]
