"""The library side of ``python -m hear_vec.evaluate`` (:mod:`hear_vec.cli.evaluate`): which
utterances are evaluated (:func:`select_utterances`, the seed's draw), the summaries by model
and by SNR (:func:`summarize`, :func:`snr_groups`) and the plots (:func:`plot_metrics`,
:func:`plot_spectrograms`). See :mod:`hear_vec.cli.evaluate` for the flags, the models
compared and the outputs."""

from __future__ import annotations

import math
import os
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch

__all__ = ["select_utterances", "summarize", "snr_groups",
           "plot_metrics", "plot_spectrograms", "METRICS", "COARSE_GRID"]

PROG = "python -m hear_vec.evaluate"
METRICS = ("si_sdr", "stoi", "estoi")
COARSE_GRID: dict[str, tuple[float, ...]] = {
    "strength": (0.5, 1.0), "smoothing": (0.5,), "band_mix": (0.5,)}
_SNR_EXACT_MAX = 12


# -- selection -------------------------------------------------------------------------------

def _utterance_facts(corpus: Any, index: int) -> dict[str, Any]:
    meta = corpus.utterance_meta(index)
    facts = {"utt_id": str(meta.get("utt_id", corpus.names[index])),
             "snr_db": float(meta.get("snr_db", math.nan))}
    for key in ("scene", "noise_source"):
        value = meta.get(key)
        if value is not None and str(value) != "":
            facts[key] = str(value)
    return facts


def select_utterances(snrs: list[float], snr_filter: list[float] | None, sample_size: int,
                      seed: int) -> list[int]:
    """Indices kept by the SNR filter (to 1e-3 dB), then ``sample_size`` of them drawn like
    the seed (``pandas.Series.sample(n, random_state=seed)``; 0 or more than available = all,
    in corpus order)."""
    import pandas as pd

    keep = list(range(len(snrs)))
    if snr_filter:
        wanted = np.asarray(snr_filter, dtype=float)
        keep = [i for i in keep if np.isfinite(snrs[i])
                and np.isclose(snrs[i], wanted, atol=1e-3, rtol=0).any()]
    if sample_size > 0 and len(keep) > sample_size:
        keep = pd.Series(keep).sample(n=sample_size, random_state=seed).tolist()
    return [int(i) for i in keep]


def snr_groups(snr: Any) -> Any:
    """SNR group labels for a pandas Series of snr_db: the value itself (as text) when the
    values are a few set levels (at most 12 distinct, all multiples of 0.5 dB, like a seed
    meta.csv), else 5-dB bins ``"[0, 5)"`` (SNRs drawn from a range); NaN stays NaN."""
    import pandas as pd

    values = pd.to_numeric(snr, errors="coerce")
    finite = values[np.isfinite(values)].to_numpy(dtype=float)
    on_grid = np.all(np.abs(finite * 2 - np.round(finite * 2)) < 2e-3)
    if on_grid and len(np.unique(finite)) <= _SNR_EXACT_MAX:
        return values.map(lambda v: f"{v:g}" if np.isfinite(v) else np.nan)
    lo = np.floor(values / 5.0) * 5.0
    return lo.map(lambda v: f"[{v:g}, {v + 5:g})" if np.isfinite(v) else np.nan)


def _snr_sort_key(label: Any) -> float:
    text = str(label).strip("[")
    try:
        return float(text.split(",")[0])
    except ValueError:
        return math.inf


# -- summaries and plots -----------------------------------------------------------------------

def summarize(df: Any, by: list[str]) -> Any:
    """mean and std of each metric and the mean SI-SDR gain over noisy, per group."""
    base = df[df["model"] == "noisy"].set_index("idx")["si_sdr"]
    df = df.assign(si_sdr_gain=df["si_sdr"] - df["idx"].map(base))
    agg = df.groupby(by, sort=False).agg(
        n=("si_sdr", "size"),
        **{f"{m}_{s}": (m, s) for m in METRICS for s in ("mean", "std")},
        si_sdr_gain=("si_sdr_gain", "mean"))
    return agg


def _format_summary(agg: Any, by: list[str]) -> str:
    head = [*(b if b != "snr_group" else "SNR dB" for b in by), "n", "SI-SDR dB", "gain dB",
            "STOI", "ESTOI"]
    def pm(r: Any, m: str, digits: int) -> str:
        std = r[f"{m}_std"]
        std_text = f"{std:.{digits}f}" if np.isfinite(std) else "-"
        return f"{r[f'{m}_mean']:.{digits}f} ± {std_text}"

    rows = []
    for key, r in agg.iterrows():
        keys = key if isinstance(key, tuple) else (key,)
        rows.append([*(str(k) for k in keys), str(int(r["n"])), pm(r, "si_sdr", 2),
                     f"{r['si_sdr_gain']:+.2f}", pm(r, "stoi", 3), pm(r, "estoi", 3)])
    widths = [max(len(head[i]), *(len(row[i]) for row in rows)) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(df: Any, plot_dir: Path, models: list[str]) -> list[Path]:
    """Box plots of each metric by model, and by model within each SNR group."""
    plt = _pyplot()
    plot_dir.mkdir(parents=True, exist_ok=True)
    written = []
    width = max(6.0, 0.9 * len(models) + 2)
    for metric in METRICS:
        fig, ax = plt.subplots(figsize=(width, 4))
        data = [df.loc[df["model"] == name, metric].dropna().to_numpy() for name in models]
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(models) + 1), models, rotation=30, ha="right")
        ax.set_title(f"{metric.upper()} by model")
        ax.set_ylabel(metric.upper())
        fig.tight_layout()
        path = plot_dir / f"{metric}_by_model.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    groups = sorted(df["snr_group"].dropna().unique(), key=_snr_sort_key)
    if len(groups) > 1:
        for metric in METRICS:
            fig, axes = plt.subplots(len(groups), 1, figsize=(width, 2.6 * len(groups)),
                                     sharex=True, squeeze=False)
            for ax, group in zip(axes[:, 0], groups):
                sub = df[df["snr_group"] == group]
                data = [sub.loc[sub["model"] == name, metric].dropna().to_numpy()
                        for name in models]
                ax.boxplot(data, showfliers=False)
                ax.set_title(f"{metric.upper()} @ SNR {group} dB")
                ax.set_ylabel(metric.upper())
            axes[-1, 0].set_xticks(range(1, len(models) + 1), models, rotation=30, ha="right")
            fig.tight_layout()
            path = plot_dir / f"{metric}_by_model_snr.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
    return written


def plot_spectrograms(examples: list[dict[str, Any]], plot_dir: Path, sample_rate: int
                      ) -> list[Path]:
    """One figure per example: log-magnitude spectrograms (n_fft 1024, hop 256) of the clean,
    noisy and each model's audio, stacked."""
    plt = _pyplot()
    plot_dir.mkdir(parents=True, exist_ok=True)
    written = []
    window = torch.hann_window(1024)
    for ex in examples:
        panels = ex["audio"]  # list of (label, np.ndarray)
        fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.9 * len(panels)), sharex=True,
                                 squeeze=False)
        for ax, (label, audio) in zip(axes[:, 0], panels):
            x = torch.as_tensor(audio, dtype=torch.float32)
            spec = torch.stft(x, 1024, 256, window=window, return_complex=True).abs()
            db = 20 * torch.log10(spec.clamp_min(1e-5))
            db = db.clamp_min(db.max() - 80.0).numpy()
            ax.imshow(db, origin="lower", aspect="auto", cmap="magma",
                      extent=(0, len(audio) / sample_rate, 0, sample_rate / 2000))
            ax.set_ylabel("kHz")
            ax.set_title(label, fontsize=9)
        axes[-1, 0].set_xlabel("seconds")
        fig.suptitle(f"utterance {ex['utt_id']} (snr {ex['snr_db']:.1f} dB)", fontsize=10)
        fig.tight_layout()
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in ex["utt_id"])[:60]
        path = plot_dir / f"spectrogram_{ex['idx']:03d}_{safe}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def _safe_relpath(name: str) -> PurePath:
    parts = [p for p in PurePath(name.replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
    parts = ["".join(c if c.isalnum() or c in "-_. " else "_" for c in p) for p in parts]
    return PurePath(*parts) if parts else PurePath("utterance")


def _write_csv_atomic(df: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        df.to_csv(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


if __name__ == "__main__":  # ``python -m hear_vec.evaluate``: the command line is hear_vec.cli
    from hear_vec.cli.evaluate import main

    raise SystemExit(main())
