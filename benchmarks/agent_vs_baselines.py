"""Agents against fixed chains and outside denoisers on clips of held-out speakers AND noises.

    python benchmarks/agent_vs_baselines.py --clean-dir ../shared/dev_audio/speech \\
        --noise-dir ../shared/dev_audio/noise --speaker-pattern '^([^_]+_[^_]+)' \\
        --holdout-speakers arctic_axb,sbasr_spk2 \\
        --holdout-noises cafe_noisereduce,sb_noise4_machine \\
        --checkpoint runs/a/model.pt --oracle --json benchmarks/out/heldout.json
    python benchmarks/agent_vs_baselines.py --run runs/dev_ppo      # split from its args.json

Split. Speakers are groups of utterance file names (``--speaker-pattern``, group 1; without
it every file is its own speaker); held-out speakers are ``--holdout-speakers`` or a seeded
``--holdout-speaker-fraction``, held-out noise recordings ``--holdout-noises`` or
``--holdout-noise-fraction`` (``hear_vec.evaluation.choose_holdout``; ``--seed``). With
``--run DIR`` these settings (and the folders, seed and max_steps) come from DIR/args.json
unless given on the command line, and DIR/model.pt joins the agents.

Clips. Held out: every (held-out utterance, held-out noise, SNR of ``--snrs``) once, the whole
utterance, a random noise offset per clip (``--clip-seed``). Training: ``--grid-clips`` random
1..``--grid-seconds`` s clips of training speakers x training noises (SNR uniform over the
``--snrs`` range), used only for the grid search of (c).

Systems, all on the same held-out clips: (a) the noisy input; (b) each method at default
knobs (0.5, 0.5, 0.5) applied max_steps times; (c) the best single fixed chain of
``hear_vec.baselines.grid_search_fixed_chain`` on the TRAINING clips; (d) each agent
(``--checkpoint``, deterministic policy); (e) the outside denoisers that are installed
(``--outside``; benchmarks/outside_denoisers.py, delay-aligned); (f) with ``--oracle``, the
per-clip best chain of the same grid by SI-SDR (it sees the clean speech: the most that
choosing one grid chain per clip could reach; an agent that changes method and knobs from
step to step, with knobs off the grid, is not bound by it).

Scores per clip: SI-SDR, STOI, ESTOI (hear_vec.metrics) and their gains over the input; per
system: mean gain with a 95 % cluster-bootstrap interval over source utterances, gain by
input SNR, fraction of clips made worse, the worst clip; paired differences (each agent
minus (c) and minus NSNet2; (c) minus NSNet2; the oracle minus (c)). Writes JSON (every
per-clip score too) and markdown; numbers are written, never asserted.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import heldout_report as report  # noqa: E402
from benchmarks.common import machine_info, write_results  # noqa: E402
from benchmarks.heldout_clips import (  # noqa: E402
    heldout_grid,
    read_folder,
    split_folders,
    training_clips,
)
from benchmarks.heldout_systems import (  # noqa: E402
    Scorer,
    apply_per_clip_chains,
    per_clip_chain_gains,
    run_in_batches,
)
from benchmarks.outside_denoisers import OUTSIDE_DENOISERS, load_outside_denoisers  # noqa: E402
from hear_vec.baselines import (  # noqa: E402
    DEFAULT_KNOBS,
    KNOB_GRID,
    apply_fixed_chain,
    grid_search_fixed_chain,
)
from hear_vec.cli.common import OneLineParser, first_line, load_agents, positive_int  # noqa: E402
from hear_vec.evaluation import parse_name_list  # noqa: E402
from hear_vec.ops import METHODS  # noqa: E402

DEFAULT_SNRS = (-5.0, -1.0, 3.0, 7.0, 11.0, 15.0)
GRIDS = {"full": KNOB_GRID,
         "coarse": {"strength": (0.5, 1.0), "smoothing": (0.0, 1.0), "band_mix": (0.5,)}}
_RUN_KEYS = ("clean_dir", "noise_dir", "speaker_pattern", "holdout_speakers",
             "holdout_speaker_fraction", "holdout_noises", "holdout_noise_fraction", "seed")


def build_parser() -> OneLineParser:
    p = OneLineParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clean-dir", help="folder of clean utterances")
    p.add_argument("--noise-dir", help="folder of noise recordings")
    p.add_argument("--speaker-pattern", help="regex; group 1 of a file stem = its speaker")
    p.add_argument("--holdout-speakers", help="comma-separated speakers to hold out")
    p.add_argument("--holdout-speaker-fraction", type=float)
    p.add_argument("--holdout-noises", help="comma-separated noise recordings (stems) to hold out")
    p.add_argument("--holdout-noise-fraction", type=float)
    p.add_argument("--seed", type=int, help="split seed (default: the run's, else 0)")
    p.add_argument("--run", help="a train.py --log-dir: split settings from its args.json, "
                                 "its model.pt joins the agents")
    p.add_argument("--checkpoint", action="append", default=[], help="model.pt (repeatable)")
    p.add_argument("--snrs", type=float, nargs="+", default=list(DEFAULT_SNRS))
    p.add_argument("--clip-seed", type=int, default=1234,
                   help="noise offsets, training clips, bootstrap")
    p.add_argument("--grid-clips", type=positive_int, default=64)
    p.add_argument("--grid-seconds", type=float, default=2.0)
    p.add_argument("--grid", choices=sorted(GRIDS), default="full",
                   help="knob grid of (c) and (f): full = hear_vec.baselines.KNOB_GRID "
                        "(36 triples), coarse = 4 triples (quick checks)")
    p.add_argument("--max-steps", type=positive_int,
                   help="chain length of (b) and (c) (default: the agents' max_steps, else 3)")
    p.add_argument("--outside", default="all",
                   help=f"all, none, or a comma list of {','.join(OUTSIDE_DENOISERS)}")
    p.add_argument("--oracle", action="store_true", help="add (f), the per-clip oracle chain")
    p.add_argument("--n-boot", type=positive_int, default=10_000)
    p.add_argument("--batch-rows", type=positive_int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default="benchmarks/out/heldout.json")
    p.add_argument("--markdown", help="default: the --json path with .md")
    return p


def resolve_settings(p: OneLineParser, args: Any) -> dict[str, Any]:
    """Split settings: the command line first, then the run's args.json.

    A run's args.json is read as train.py's data split reads it: speakers (or utterances,
    without a speaker pattern) are held out by ``valid_fraction`` unless ``holdout_speakers``
    names them; noises by ``holdout_noises`` or ``holdout_noise_fraction`` > 0. A run that
    held out no noise recordings needs ``--holdout-noises`` here, with a warning: that agent
    has heard every noise."""
    saved: dict[str, Any] = {}
    if args.run:
        path = Path(args.run) / "args.json"
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            p.error(f"--run: cannot read {path}: {first_line(exc)}")
        if not isinstance(saved, dict):
            p.error(f"--run: {path} does not hold a JSON object")
        if not (Path(args.run) / "model.pt").is_file():
            p.error(f"--run: {Path(args.run) / 'model.pt'} not found")
        args.checkpoint = [str(Path(args.run) / "model.pt")] + args.checkpoint
        if not saved.get("holdout_speakers") and saved.get("holdout_speaker_fraction") is None:
            saved["holdout_speaker_fraction"] = saved.get("valid_fraction")
        if not saved.get("holdout_noises") and not saved.get("holdout_noise_fraction"):
            saved["holdout_noise_fraction"] = None
            if args.holdout_noises or args.holdout_noise_fraction:
                print(f"warning: {args.run} held out no noise recordings in training; the "
                      "agent has heard the noises held out here", file=sys.stderr)
    s = {k: getattr(args, k) if getattr(args, k) is not None else saved.get(k)
         for k in _RUN_KEYS}
    for k in ("holdout_speakers", "holdout_noises"):
        s[k] = parse_name_list(s[k])
    if s["seed"] is None:
        s["seed"] = 0
    if s["clean_dir"] is None or s["noise_dir"] is None:
        p.error("give --clean-dir and --noise-dir (or --run DIR with them in args.json)")
    if s["holdout_speakers"] is None and s["holdout_speaker_fraction"] is None:
        p.error("give --holdout-speakers or --holdout-speaker-fraction")
    if s["holdout_noises"] is None and s["holdout_noise_fraction"] is None:
        p.error("give --holdout-noises or --holdout-noise-fraction"
                + (f" ({args.run} held out no noise recordings)" if args.run else ""))
    return s


def timed(timings: dict[str, float], name: str, fn):
    start = time.perf_counter()
    value = fn()
    timings[name] = round(time.perf_counter() - start, 3)
    return value


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if not all(np.isfinite(args.snrs)) or not args.grid_seconds > 0:
        p.error("--snrs must be finite and --grid-seconds positive")
    settings = resolve_settings(p, args)
    wall = time.perf_counter()
    timings: dict[str, float] = {}
    device, agents = load_agents(p, args.checkpoint, args.device)
    if any(a.sample_rate != 16000 for a in agents):
        p.error("the agents must work at 16000 Hz")
    max_steps = args.max_steps or max([a.max_steps for a in agents], default=3)
    try:
        speech, speech_skipped = read_folder(settings["clean_dir"], "--clean-dir")
        noises, noise_skipped = read_folder(settings["noise_dir"], "--noise-dir")
        spk, nse = split_folders(
            list(speech), list(noises), speaker_pattern=settings["speaker_pattern"],
            holdout_speakers=settings["holdout_speakers"],
            holdout_speaker_fraction=settings["holdout_speaker_fraction"],
            holdout_noises=settings["holdout_noises"],
            holdout_noise_fraction=settings["holdout_noise_fraction"], seed=settings["seed"])
        outside = ([] if args.outside == "none" else
                   None if args.outside == "all" else parse_name_list(args.outside))
        denoisers, outside_skipped = (load_outside_denoisers(outside) if outside != []
                                      else ([], {}))
    except ValueError as exc:
        p.error(first_line(exc))
    for note in [f"{k}: {v}" for k, v in outside_skipped.items()]:
        print(note, file=sys.stderr)

    held = heldout_grid({u: speech[u] for u in spk.held_out},
                        {n: noises[n] for n in nse.held_out}, spk.groups, args.snrs,
                        args.clip_seed).to(device)
    lo, hi = min(args.snrs), max(args.snrs)
    train = training_clips({u: speech[u] for u in spk.train}, {n: noises[n] for n in nse.train},
                           args.grid_clips, args.grid_seconds, min(1.0, args.grid_seconds),
                           (lo, hi), args.clip_seed + 1).to(device)
    records = held.records
    scorer = Scorer(held.clean, held.lengths)
    noisy = scorer(held.noisy)
    systems: dict[str, dict[str, np.ndarray]] = {"(a) noisy input": noisy}
    kinds = {"(a) noisy input": "input"}
    extra: dict[str, Any] = {}

    def chain(method, knobs, steps):
        return lambda x, lens: apply_fixed_chain(x, lens, method, knobs, steps)

    with torch.inference_mode():
        for m, name in enumerate(METHODS):
            label = f"(b) {name} {DEFAULT_KNOBS} x{max_steps}"
            out = timed(timings, label, lambda m=m: run_in_batches(
                chain(m, DEFAULT_KNOBS, max_steps), held.noisy, held.lengths, args.batch_rows))
            systems[label], kinds[label] = scorer(out), "default_knobs"
        best, table = timed(timings, "grid search (training clips)", lambda: (
            grid_search_fixed_chain(train.clean, train.noisy, train.lengths, max_steps,
                                    GRIDS[args.grid])))
        label = (f"(c) best fixed chain: {best['method']} "
                 f"({', '.join(f'{k:g}' for k in best['knobs'])}) x{best['steps']}")
        out = timed(timings, label, lambda: run_in_batches(
            chain(best["method_id"], best["knobs"], best["steps"]), held.noisy, held.lengths,
            args.batch_rows))
        systems[label], kinds[label], best_label = scorer(out), "best_fixed", label
        extra["best_fixed"] = best
        extra["grid_top10_training"] = table.sort_values(
            "mean_si_sdr_gain", ascending=False).head(10).to_dict("records")

        agent_labels = []
        for agent, path in zip(agents, args.checkpoint):
            label = f"(d) agent {agent.algo}: {Path(path).parent.name or Path(path).stem}"
            if label in systems:
                label += f" #{len(agent_labels) + 1}"
            chains: dict[int, Any] = {}

            def run_agent(x, lens, agent=agent, chains=chains):
                result = agent.run(x, lens)
                chains[len(chains)] = (result.methods.cpu(), result.knobs.cpu())
                return result.audio
            out = timed(timings, label, lambda f=run_agent: run_in_batches(
                f, held.noisy, held.lengths, args.batch_rows))
            systems[label], kinds[label] = scorer(out), "agent"
            methods = torch.cat([c[0] for c in chains.values()]).reshape(-1)
            names = (*METHODS, "stop") if agent.stop_action else METHODS
            taken = methods[methods >= 0]  # -1: steps after a row's chain ended
            extra.setdefault("agent_method_usage", {})[label] = dict(zip(
                names, torch.bincount(taken, minlength=len(names)).tolist()))
            extra.setdefault("agent_checkpoints", {})[label] = {
                "path": str(path), "max_steps": agent.max_steps,
                "final_eval": agent.meta.get("final_eval", {})}
            agent_labels.append(label)

    lags: dict[str, list[int]] = {}
    for den in denoisers:
        label = f"(e) {den.name} ({den.package} {den.version})"

        def run_outside(den=den):
            noisy_host = held.noisy.cpu()
            rows, found = torch.zeros_like(noisy_host), []
            for i, n in enumerate(held.lengths.tolist()):
                y, lag = den.process(noisy_host[i, :n].numpy(), 16000)
                rows[i, :n] = torch.from_numpy(y)
                found.append(lag)
            return rows.to(held.noisy.device), found
        out, lags[label] = timed(timings, label, run_outside)
        systems[label], kinds[label] = scorer(out), "outside"

    if args.oracle:
        with torch.inference_mode():
            gains, entries = timed(timings, "oracle grid (held-out clips)", lambda: (
                per_clip_chain_gains(held.clean, held.noisy, held.lengths, max_steps,
                                     GRIDS[args.grid])))
            flat = gains.reshape(len(held), -1).argmax(axis=1)
            e_idx, s_idx = np.divmod(flat, max_steps)
            methods = torch.tensor([entries[e][0] for e in e_idx])
            knobs = torch.tensor([entries[e][1] for e in e_idx], dtype=torch.float32)
            out = apply_per_clip_chains(held.noisy, held.lengths, methods, knobs,
                                        torch.tensor(s_idx + 1))
        label = "(f) oracle: best grid chain per clip (sees clean)"
        systems[label], kinds[label] = scorer(out), "oracle"
        extra["oracle_choices"] = [
            {"id": r["id"], "method": METHODS[int(m)], "knobs": list(map(float, k)),
             "steps": int(s) + 1} for r, m, k, s in zip(records, methods, knobs.tolist(),
                                                          s_idx)]

    names = list(systems)
    summaries = {n: report.summarize_system(systems[n], noisy, records, args.n_boot,
                                            args.clip_seed) for n in names}
    nsnet = next((n for n in names if n.startswith("(e) nsnet2")), None)
    oracle = next((n for n in names if kinds[n] == "oracle"), None)
    pairs = [(a, best_label) for a in agent_labels] + [(a, nsnet) for a in agent_labels]
    pairs += [(best_label, nsnet), (oracle, best_label)]
    diffs = {f"{a} − {b}": report.compare(systems[a], systems[b], records, args.n_boot,
                                          args.clip_seed)
             for a, b in pairs if a is not None and b is not None}

    text = "\n\n".join(filter(None, [
        report.main_table(names, summaries),
        "Paired differences (cluster bootstrap over utterances):\n\n"
        + report.difference_table(diffs) if diffs else "",
        "SI-SDR gain (dB) by input SNR:\n\n" + report.band_table(names, summaries),
        "SI-SDR gain (dB) by held-out noise:\n\n" + report.noise_table(names, summaries)]))
    split = {"speaker_pattern": settings["speaker_pattern"], "seed": settings["seed"],
             "speakers": spk.as_dict(), "noises": nse.as_dict(),
             "holdout_speaker_fraction": settings["holdout_speaker_fraction"],
             "holdout_noise_fraction": settings["holdout_noise_fraction"]}
    timings["total"] = round(time.perf_counter() - wall, 3)
    info = machine_info(device)
    info.update(command=shlex.join(["python", "benchmarks/agent_vs_baselines.py"]
                                   + (sys.argv[1:] if argv is None else list(argv))),
                clean_dir=str(settings["clean_dir"]), noise_dir=str(settings["noise_dir"]),
                split=split, snrs=list(args.snrs), clip_seed=args.clip_seed,
                held_out_clips=len(held), training_clips=len(train), max_steps=max_steps,
                knob_grid=args.grid, n_boot=args.n_boot,
                primary_interval="cluster bootstrap over source utterances (percentile, 95 %)",
                skipped_files=speech_skipped + noise_skipped,
                outside_skipped=outside_skipped, timings_s=timings,
                noisy_mean={m: float(noisy[m].mean()) for m in report.METRICS},
                outside_lags={k: {"min": min(v), "median": float(np.median(v)), "max": max(v)}
                              for k, v in lags.items()})
    rows = []
    for i, r in enumerate(records):
        row = dict(r)
        row["scores"] = {n: {m: round(float(systems[n][m][i]), 5) for m in report.METRICS}
                         for n in names}
        row["lag"] = {k: v[i] for k, v in lags.items()}
        rows.append(row)
    header = (f"held out: speakers {', '.join(spk.held_out_groups)} ({len(spk.held_out)} "
              f"utterances) x noises {', '.join(nse.held_out_groups)} x SNRs "
              f"{', '.join(f'{s:g}' for s in args.snrs)} dB = {len(held)} clips; noisy input "
              f"SI-SDR {info['noisy_mean']['si_sdr']:.2f} dB, STOI "
              f"{info['noisy_mean']['stoi']:.3f}; (c) searched on {len(train)} training clips; "
              f"total {timings['total']:.0f} s.\n\nIntervals: 95 % percentile bootstrap "
              f"resampling the {len(spk.held_out)} held-out utterances (all clips of an "
              f"utterance together; {args.n_boot} replicates); they do not cover the spread "
              f"across speakers or noise recordings (see the per-noise table).")
    print(header + "\n\n" + text)
    extra["training_clips"] = train.records
    write_results(args.json, {"info": info, "kinds": kinds, "summaries": summaries,
                              "differences": diffs, **extra, "table": text, "rows": rows})
    if args.json:
        md = Path(args.markdown) if args.markdown else Path(args.json).with_suffix(".md")
        tmp = md.with_suffix(md.suffix + ".tmp")
        tmp.write_text(f"`{info['command']}`\n\n{header}\n\n{text}\n")
        tmp.replace(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
