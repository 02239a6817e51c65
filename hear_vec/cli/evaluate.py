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
import sys
from pathlib import Path
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
from hear_vec.batching import length_batches, pad_rows
from hear_vec.cli.common import (
    OneLineParser,
    Progress,
    add_device_argument,
    first_line,
    load_agents,
    nonnegative_int,
    positive_float,
    positive_int,
)
from hear_vec.cli.infer import checkpoint_tags
from hear_vec.data import CorpusError, PairedCorpus, load_corpus
from hear_vec.evaluate import (
    COARSE_GRID,
    METRICS,
    PROG,
    _format_summary,
    _safe_relpath,
    _snr_sort_key,
    _utterance_facts,
    _write_csv_atomic,
    plot_metrics,
    plot_spectrograms,
    select_utterances,
    snr_groups,
    summarize,
)
from hear_vec.metrics import si_sdr, stoi
from hear_vec.ops import METHODS

__all__ = ["build_parser", "main"]


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
