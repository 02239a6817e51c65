"""``python -m hear_vec.evaluate``: SI-SDR / STOI / ESTOI before and after denoising on a sampled
set of utterances (the seed's ``denoise_metrics``), batched on the device.

    python -m hear_vec.evaluate --checkpoint runs/a/model.pt --checkpoint runs/b/model.pt \\
        --meta data/meta.csv --sample-size 200 --snr-db 0 --snr-db 5 --csv eval.csv \\
        --plot-dir plots/ --baselines

Data (``--meta``): a seed-format meta.csv (or a folder holding one), a folder with clean/ +
noisy/ pairs, or ``synthetic`` (the built-in corpus), read by :func:`hear_vec.data.load_corpus`
at the checkpoint's sample rate (audio resampled, channels averaged). ``--snr-db`` (repeatable)
keeps utterances whose snr_db equals one of the values (to 1e-3 dB); ``--sample-size N``
(default 100, 0 = all) then draws N of them with ``pandas.Series.sample(random_state=seed)``,
the seed's draw, so a seed meta.csv gives the seed's subset.

Models (``model`` column): ``noisy`` (the input), one per ``--checkpoint`` (tagged like
infer.py: parent folder name, else stem), and with ``--baselines``: ``<method>@default`` — each
method at :data:`hear_vec.baselines.DEFAULT_KNOBS` applied for the agent's max_steps (3
without a checkpoint) — and ``best_fixed``, the single (method, knobs, steps) chain with the
best mean SI-SDR gain found by :func:`hear_vec.baselines.grid_search_fixed_chain` on (up to
``--search-size`` of) the evaluated clips themselves: an optimistic, oracle-tuned baseline.

Outputs: per-utterance rows ``idx, utt_id, [scene], snr_db, [noise_source], model, si_sdr,
stoi, estoi`` (the seed's columns; scene / noise_source where the data know them) in ``--csv``;
summaries (mean ± std and the SI-SDR gain over noisy) by model and by (SNR, model) printed as
tables (SNR grouped by value when the values are at most 12 set levels on a 0.5-dB grid, else
in 5-dB bins);
with ``--plot-dir``: ``<metric>_by_model.png`` and ``<metric>_by_model_snr.png`` box plots and
``spectrogram_<idx>_<utt>.png`` (clean, noisy and each model) for the first
``--num-spectrograms`` utterances; with ``--output-dir``: ``<dir>/<model>/<utt_id>.wav``.
Metrics are computed at the corpus rate with :func:`hear_vec.metrics.si_sdr` and
:func:`hear_vec.metrics.stoi` (pystoi 0.4.1 semantics).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hear_vec.audio_io import write_audio_atomic
from hear_vec.baselines import (
    DEFAULT_KNOBS,
    KNOB_GRID,
    apply_fixed_chain,
    grid_search_fixed_chain,
)
from hear_vec.cli.common import (
    OneLineParser,
    Progress,
    add_device_argument,
    first_line,
    length_batches,
    load_agents,
    nonnegative_int,
    pad_rows,
    positive_float,
    positive_int,
)
from hear_vec.data import CorpusError, PairedCorpus, load_corpus
from hear_vec.metrics import si_sdr, stoi
from hear_vec.ops import METHODS

__all__ = ["build_parser", "main", "select_utterances", "summarize", "snr_groups",
           "plot_metrics", "plot_spectrograms", "METRICS", "COARSE_GRID"]

PROG = "python -m hear_vec.evaluate"
METRICS = ("si_sdr", "stoi", "estoi")
COARSE_GRID: dict[str, tuple[float, ...]] = {
    "strength": (0.5, 1.0), "smoothing": (0.5,), "band_mix": (0.5,)}
_SNR_EXACT_MAX = 12


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description="Compare SI-SDR / STOI / ESTOI before and after "
                      "denoising on a sampled subset (the seed's denoise_metrics).")
    p.add_argument("--checkpoint", action="append", default=[], metavar="CKPT",
                   help="model.pt; repeat to compare several")
    p.add_argument("--meta", required=True,
                   help="meta.csv (or its folder), a clean/ + noisy/ pair folder, or synthetic")
    p.add_argument("--sample-size", type=nonnegative_int, default=100,
                   help="utterances to evaluate (default 100; 0 = all)")
    p.add_argument("--snr-db", type=float, action="append", default=None,
                   help="keep only utterances at this snr_db (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--max-steps", type=positive_int, default=None,
                   help="denoising steps (default: each checkpoint's max_steps)")
    p.add_argument("--csv", default=None, help="write the per-utterance rows here")
    p.add_argument("--plot-dir", default=None, help="write box plots and spectrograms here")
    p.add_argument("--num-spectrograms", type=nonnegative_int, default=3,
                   help="utterances shown as before/after spectrograms (default 3)")
    p.add_argument("--output-dir", default=None,
                   help="write denoised audio as <dir>/<model>/<utt_id>.wav")
    add_device_argument(p)
    p.add_argument("--baselines", action="store_true",
                   help="add each method at default knobs and the best fixed chain")
    p.add_argument("--grid", choices=("full", "coarse"), default="full",
                   help="knob grid of the best-fixed-chain search (default full: "
                        "baselines.KNOB_GRID; coarse: strength 0.5/1, others 0.5)")
    p.add_argument("--search-size", type=positive_int, default=64,
                   help="clips (drawn from the evaluated ones) for the fixed-chain search "
                        "(default 64)")
    p.add_argument("--batch-size", type=positive_int, default=32,
                   help="utterances per device batch (default 32)")
    p.add_argument("--batch-seconds", type=positive_float, default=None,
                   help="padded audio seconds per batch (default 160 CPU, 1600 CUDA)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    return p


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


# -- main ------------------------------------------------------------------------------------

def _scores(est: Tensor, clean: Tensor, lengths: Tensor, rate: int) -> dict[str, list[float]]:
    return {"si_sdr": si_sdr(est, clean, lengths).tolist(),
            "stoi": stoi(clean, est, rate, lengths).tolist(),
            "estoi": stoi(clean, est, rate, lengths, extended=True).tolist()}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.checkpoint and not args.baselines:
        parser.error("nothing to evaluate: give --checkpoint (one or more) and/or --baselines")
    device, agents = load_agents(parser, args.checkpoint, args.device)
    rate = agents[0].sample_rate if agents else 16000
    from hear_vec.cli.infer import checkpoint_tags

    tags = checkpoint_tags(args.checkpoint) if agents else []
    reserved = {"noisy", "best_fixed", *(f"{m}@default" for m in METHODS)}
    tags = [f"{t}-model" if t in reserved else t for t in tags]
    steps = [args.max_steps or a.max_steps for a in agents]
    base_steps = args.max_steps or (agents[0].max_steps if agents else 3)
    try:
        corpus = load_corpus(args.meta, sample_rate=rate, device=device, seed=args.seed)
    except (CorpusError, ValueError, OSError) as exc:
        parser.error(f"--meta {first_line(exc)}")
    if isinstance(corpus, PairedCorpus) and not args.snr_db:
        snrs = corpus.snr.cpu().tolist()
    else:
        snrs = [float(corpus.utterance_meta(i)["snr_db"]) for i in range(len(corpus))]
    chosen = select_utterances(snrs, args.snr_db, args.sample_size, args.seed)
    if not chosen:
        parser.error(f"no utterance of {args.meta} matches --snr-db "
                     f"{', '.join(f'{v:g}' for v in args.snr_db or [])}")
    facts = [_utterance_facts(corpus, i) for i in chosen]
    clips = [corpus.utterance_audio(i) for i in chosen]   # (clean, noisy) on the device
    print(f"[evaluate] {len(chosen)} utterances from {corpus.source or args.meta} "
          f"({sum(c.shape[-1] for c, _ in clips) / rate:.1f} s at {rate} Hz), "
          f"models: {', '.join(tags) or '-'}" + (" + baselines" if args.baselines else ""))

    models: list[str] = ["noisy", *tags]
    best: dict[str, Any] | None = None
    if args.baselines:
        models += [f"{m}@default" for m in METHODS] + ["best_fixed"]
        search = list(range(len(clips)))
        if len(search) > args.search_size:
            search = sorted(np.random.default_rng(args.seed).choice(
                len(search), args.search_size, replace=False).tolist())
        clean_s, lens_s = pad_rows([clips[i][0] for i in search])
        noisy_s, _ = pad_rows([clips[i][1] for i in search])
        grid = KNOB_GRID if args.grid == "full" else COARSE_GRID
        best, _ = grid_search_fixed_chain(clean_s, noisy_s, lens_s, base_steps, grid=grid,
                                          sample_rate=rate)
        del clean_s, noisy_s
        print(f"[evaluate] best fixed chain on {len(search)} evaluated clips: {best['method']} "
              f"knobs (strength, smoothing, band_mix) = {best['knobs']} x {best['steps']} "
              f"steps, mean SI-SDR gain {best['mean_si_sdr_gain']:+.2f} dB")

    batch_seconds = args.batch_seconds or (1600.0 if device.type == "cuda" else 160.0)
    batches = length_batches([c.shape[-1] for c, _ in clips], args.batch_size,
                             max(int(batch_seconds * rate), 1))
    n_spec = min(args.num_spectrograms, len(chosen)) if args.plot_dir else 0
    examples: dict[int, dict[str, Any]] = {}
    results: dict[tuple[int, str], dict[str, float]] = {}
    out_dir = Path(args.output_dir) if args.output_dir else None
    progress = Progress(total=len(chosen), desc="evaluate", unit="utt",
                        enabled=None if args.progress else False)
    with torch.inference_mode():
        for batch in batches:
            clean, lengths = pad_rows([clips[i][0] for i in batch])
            noisy, _ = pad_rows([clips[i][1] for i in batch])
            outputs: dict[str, Tensor] = {"noisy": noisy}
            for tag, agent, s in zip(tags, agents, steps):
                outputs[tag] = agent.run(noisy, lengths, s).audio
            if args.baselines:
                for m, name in enumerate(METHODS):
                    outputs[f"{name}@default"] = apply_fixed_chain(noisy, lengths, m,
                                                                   DEFAULT_KNOBS, base_steps)
                assert best is not None
                outputs["best_fixed"] = apply_fixed_chain(noisy, lengths, best["method_id"],
                                                          best["knobs"], best["steps"])
            host_lengths = lengths.tolist()
            for model, est in outputs.items():
                sc = _scores(est, clean, lengths, rate)
                for k, i in enumerate(batch):
                    results[(i, model)] = {m: sc[m][k] for m in METRICS}
                if out_dir is not None and model != "noisy":
                    cpu = est.cpu().numpy()
                    for k, i in enumerate(batch):
                        rel = _safe_relpath(facts[i]["utt_id"])
                        write_audio_atomic(out_dir / model / rel.with_name(rel.name + ".wav"),
                                           cpu[k, : host_lengths[k]], rate)
            for k, i in enumerate(batch):
                if i < n_spec:
                    shown = ["noisy", *tags] + (["best_fixed"] if args.baselines else [])
                    examples[i] = {
                        "idx": i + 1, "utt_id": facts[i]["utt_id"], "snr_db": facts[i]["snr_db"],
                        "audio": [("clean", clean[k, : host_lengths[k]].cpu().numpy())] + [
                            (name, outputs[name][k, : host_lengths[k]].cpu().numpy())
                            for name in shown]}
            progress.update(len(batch), sum(host_lengths) / rate)
    progress.close()

    import pandas as pd

    extra = [k for k in ("scene", "noise_source") if any(k in f for f in facts)]
    rows = []
    for i, f in enumerate(facts):
        for model in models:
            row: dict[str, Any] = {"idx": i + 1, "utt_id": f["utt_id"]}
            if "scene" in extra:
                row["scene"] = f.get("scene", "")
            row["snr_db"] = f["snr_db"]
            if "noise_source" in extra:
                row["noise_source"] = f.get("noise_source", "")
            row["model"] = model
            row.update(results[(i, model)])
            rows.append(row)
    df = pd.DataFrame(rows)
    df_groups = df.assign(snr_group=snr_groups(df["snr_db"]))
    print("\n[evaluate] summary by model (mean ± std):")
    print(_format_summary(summarize(df_groups, ["model"]), ["model"]))
    if df_groups["snr_group"].notna().any():
        by = df_groups.dropna(subset=["snr_group"])
        order = sorted(by["snr_group"].unique(), key=_snr_sort_key)
        by = by.assign(snr_group=pd.Categorical(by["snr_group"], categories=order,
                                                ordered=True)).sort_values(["snr_group"],
                                                                           kind="stable")
        print("\n[evaluate] summary by SNR and model (mean ± std):")
        print(_format_summary(summarize(by, ["snr_group", "model"]), ["snr_group", "model"]))
    else:
        print("\n[evaluate] no snr_db known for these utterances; no by-SNR summary")
    if args.csv:
        _write_csv_atomic(df, Path(args.csv))
        print(f"[evaluate] wrote per-utterance metrics to {args.csv}")
    if args.plot_dir:
        plot_dir = Path(args.plot_dir)
        written = plot_metrics(df_groups, plot_dir, models)
        written += plot_spectrograms([examples[i] for i in sorted(examples)], plot_dir, rate)
        print(f"[evaluate] saved {len(written)} plots to {plot_dir}")
    if out_dir is not None:
        print(f"[evaluate] wrote denoised audio to {out_dir}/<model>/")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
