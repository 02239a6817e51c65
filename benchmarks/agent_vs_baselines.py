"""A trained agent against fixed baselines on held-out clips.

    python benchmarks/agent_vs_baselines.py --run runs/dev_ppo --json benchmarks/out/agent.json

Rebuilds the run's corpus and train/validation split from its ``args.json`` (same data, seed
and validation fraction), then on ``--clips`` held-out segments (validation utterances, random
crops, noises and SNRs drawn with ``--seed``; lengths vary as in training) reports the mean
SI-SDR / STOI / ESTOI gains of

  (a) the noisy input (zero by definition),
  (b) every method at default knobs (0.5, 0.5, 0.5), applied for the run's max_steps,
  (c) the best single fixed (method, knobs, repeats) chain, found by a grid search on
      ``--grid-clips`` *training* segments (hear_vec.baselines.grid_search_fixed_chain),
  (d) the agent (deterministic policy, model.pt).

Numbers are written (JSON + markdown table), never asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, markdown_table, write_results  # noqa: E402
from hear_vec import rng  # noqa: E402
from hear_vec.baselines import (  # noqa: E402
    DEFAULT_KNOBS,
    apply_fixed_chain,
    grid_search_fixed_chain,
)
from hear_vec.inference import DenoisingAgent  # noqa: E402
from hear_vec.metrics import si_sdr, stoi  # noqa: E402
from hear_vec.ops import METHODS  # noqa: E402
from hear_vec.training import RunConfig, load_corpora  # noqa: E402


def _scores(audio, seg, base) -> dict[str, float]:
    si = si_sdr(audio, seg.clean, seg.lengths) - base["si_sdr"]
    st = stoi(seg.clean, audio, 16000, seg.lengths) - base["stoi"]
    es = stoi(seg.clean, audio, 16000, seg.lengths, extended=True) - base["estoi"]
    return {"si_sdr_gain": float(si.mean()), "si_sdr_gain_std": float(si.std()),
            "stoi_gain": float(st.mean()), "estoi_gain": float(es.mean())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="a train.py --log-dir holding model.pt")
    p.add_argument("--clips", type=int, default=512, help="held-out segments")
    p.add_argument("--grid-clips", type=int, default=128, help="training segments for (c)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    run_dir = Path(args.run)
    saved = json.loads((run_dir / "args.json").read_text())
    cfg = RunConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items()})
    device = torch.device(args.device)
    train, valid = load_corpora(cfg, device)
    samples = round(cfg.segment_seconds * train.sample_rate)
    min_samples = round(min(1.0, cfg.segment_seconds) * train.sample_rate)
    key = rng.make_key(args.seed, device)
    held = valid.draw(rng.fold_in(key, 1), args.clips, samples, min_samples)
    grid_set = train.draw(rng.fold_in(key, 2), args.grid_clips, samples, min_samples)

    base = {"si_sdr": si_sdr(held.noisy, held.clean, held.lengths),
            "stoi": stoi(held.clean, held.noisy, 16000, held.lengths),
            "estoi": stoi(held.clean, held.noisy, 16000, held.lengths, extended=True)}
    rows = [{"model": "(a) noisy input", "si_sdr_gain": 0.0, "stoi_gain": 0.0,
             "estoi_gain": 0.0,
             "noisy_si_sdr": float(base["si_sdr"].mean())}]
    with torch.inference_mode():
        for m, name in enumerate(METHODS):
            out = apply_fixed_chain(held.noisy, held.lengths, m, DEFAULT_KNOBS, cfg.max_steps)
            rows.append({"model": f"(b) {name} {DEFAULT_KNOBS} x{cfg.max_steps}",
                         **_scores(out, held, base)})
        start = time.perf_counter()
        best, table = grid_search_fixed_chain(grid_set.clean, grid_set.noisy, grid_set.lengths,
                                              cfg.max_steps)
        grid_seconds = time.perf_counter() - start
        out = apply_fixed_chain(held.noisy, held.lengths, best["method_id"], best["knobs"],
                                best["steps"])
        rows.append({"model": f"(c) best fixed: {best['method']} {best['knobs']} "
                              f"x{best['steps']} (train gain {best['mean_si_sdr_gain']:.2f})",
                     **_scores(out, held, base)})
        agent = DenoisingAgent.from_file(run_dir / "model.pt", device)
        result = agent.run(held.noisy, held.lengths)
        rows.append({"model": f"(d) agent {agent.algo} ({run_dir.name})",
                     **_scores(result.audio, held, base)})
        usage = torch.bincount(result.methods.reshape(-1), minlength=len(METHODS)).tolist()

    info = machine_info(device)
    info.update(run=str(run_dir), held_out_clips=args.clips, grid_clips=args.grid_clips,
                data=cfg.data if cfg.clean_dir is None else f"{cfg.clean_dir} + {cfg.noise_dir}",
                snr_range=list(cfg.snr_range), segment_seconds=cfg.segment_seconds,
                grid_seconds=grid_seconds, train_final_eval=agent.meta.get("final_eval", {}),
                agent_method_usage=dict(zip(METHODS, usage)))
    cols = ["model", "si_sdr_gain", "si_sdr_gain_std", "stoi_gain", "estoi_gain"]
    text = markdown_table(rows, cols)
    print(f"held-out clips: {args.clips} (validation utterances), noisy SI-SDR "
          f"{rows[0]['noisy_si_sdr']:.2f} dB; grid search on {args.grid_clips} training clips "
          f"took {grid_seconds:.0f} s")
    print(text)
    print("agent method usage over all steps:", info["agent_method_usage"])
    write_results(args.json, {"info": info, "rows": rows, "table": text,
                              "best_fixed": best, "grid_top": table.sort_values(
                                  "mean_si_sdr_gain", ascending=False).head(10).to_dict(
                                  "records")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
