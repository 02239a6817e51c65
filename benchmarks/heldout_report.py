"""Statistics and tables of a held-out evaluation (from per-clip scores of every system).

Gains are paired per clip: ``gain = metric(system output) - metric(noisy input)``. The primary
interval of every mean is the cluster bootstrap over source utterances
(``hear_vec.evaluation.stats``): each held-out utterance appears in (noises x SNRs) clips
whose gains are correlated, and the question asked is how a system does on *new
utterances*. It does not cover the variability across speakers or noise recordings (a
held-out split has too few of those to resample); the per-noise table shows that spread.
The clip bootstrap (clips as if independent) is kept in the JSON as ``interval_clips``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.common import markdown_table
from hear_vec.evaluation import Interval, paired_difference, summarize_gains

__all__ = ["METRICS", "WORSE_THRESHOLDS", "summarize_system", "compare", "main_table",
           "band_table", "noise_table", "difference_table"]

METRICS = ("si_sdr", "stoi", "estoi")
#: gain thresholds counted as "worse than the input" per metric (strictly below)
WORSE_THRESHOLDS = {"si_sdr": (0.0, -1.0), "stoi": (0.0, -0.01), "estoi": (0.0, -0.01)}


def summarize_system(scores: dict[str, np.ndarray], noisy: dict[str, np.ndarray],
                     records: list[dict[str, Any]], n_boot: int, seed: int) -> dict[str, Any]:
    """``{metric: summarize_gains(...)}`` plus ``by_noise`` (mean SI-SDR gain per noise)."""
    ids = [r["id"] for r in records]
    groups = [r["utterance"] for r in records]
    snr = np.array([r["snr_db"] for r in records])
    out: dict[str, Any] = {}
    for m in METRICS:
        gains = scores[m] - noisy[m]
        out[m] = summarize_gains(gains, ids, groups, band_values=snr,
                                 worse_thresholds=WORSE_THRESHOLDS[m], n_boot=n_boot, seed=seed)
        out[m]["mean_absolute"] = float(np.mean(scores[m]))
    gains = scores["si_sdr"] - noisy["si_sdr"]
    noise = np.array([r["noise"] for r in records])
    out["by_noise"] = {str(n): float(gains[noise == n].mean()) for n in np.unique(noise)}
    return out


def compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray], records: list[dict[str, Any]],
            n_boot: int, seed: int) -> dict[str, Any]:
    """Paired difference a - b per metric (cluster bootstrap over utterances), and the
    fraction of clips where a's SI-SDR is higher."""
    groups = [r["utterance"] for r in records]
    out: dict[str, Any] = {m: paired_difference(a[m], b[m], groups, n_boot=n_boot,
                                                seed=seed).as_dict() for m in METRICS}
    out["fraction_a_better_si_sdr"] = float(np.mean(a["si_sdr"] > b["si_sdr"]))
    return out


def _iv(d: dict[str, Any], digits: int) -> str:
    return Interval(**d).format(digits)


def main_table(names: Sequence[str], summaries: dict[str, dict[str, Any]]) -> str:
    rows = []
    for name in names:
        s = summaries[name]
        si, st, es = s["si_sdr"], s["stoi"], s["estoi"]
        worst = si["worst"]
        rows.append({
            "system": name,
            "SI-SDR gain dB [95% CI]": _iv(si["interval"], 2),
            "ΔSTOI [95% CI]": _iv(st["interval"], 3),
            "ΔESTOI [95% CI]": _iv(es["interval"], 3),
            "worse SI-SDR <0 / <−1 dB": f"{si['fraction_worse']['0']:.0%} / "
                                        f"{si['fraction_worse']['-1']:.0%}",
            "worse STOI <0": f"{st['fraction_worse']['0']:.0%}",
            "worst SI-SDR gain (clip)": f"{worst['value']:+.2f} ({worst['id']})",
        })
    return markdown_table(rows, list(rows[0]))


def band_table(names: Sequence[str], summaries: dict[str, dict[str, Any]],
               metric: str = "si_sdr", digits: int = 2) -> str:
    bands = [b["band"] for b in summaries[names[0]][metric]["by_band"]]
    rows = []
    for name in names:
        row = {"system": name}
        for b in summaries[name][metric]["by_band"]:
            row[f"{b['band']} dB"] = f"{b['mean']:+.{digits}f}"
        rows.append(row)
    return markdown_table(rows, ["system"] + [f"{b} dB" for b in bands])


def noise_table(names: Sequence[str], summaries: dict[str, dict[str, Any]]) -> str:
    noises = list(summaries[names[0]]["by_noise"])
    rows = [{"system": n, **{k: f"{v:+.2f}" for k, v in summaries[n]["by_noise"].items()}}
            for n in names]
    return markdown_table(rows, ["system"] + noises)


def difference_table(diffs: dict[str, dict[str, Any]]) -> str:
    rows = [{"comparison (a − b)": label,
             "ΔSI-SDR dB [95% CI]": _iv(d["si_sdr"], 2),
             "ΔSTOI [95% CI]": _iv(d["stoi"], 3),
             "ΔESTOI [95% CI]": _iv(d["estoi"], 3),
             "clips a better (SI-SDR)": f"{d['fraction_a_better_si_sdr']:.0%}"}
            for label, d in diffs.items()]
    return markdown_table(rows, list(rows[0])) if rows else ""
