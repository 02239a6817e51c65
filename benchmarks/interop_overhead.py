"""Adapter overhead: env-steps/s of DenoiseEnv stepped directly vs through its interop views.

    OMP_NUM_THREADS=2 python benchmarks/interop_overhead.py --num-envs 64 --segment-seconds 2 \
        --steps 30 --repeats 3 --json benchmarks/results/interop_overhead.json

Every variant steps its own DenoiseEnv built with the same arguments and seed (SI-SDR reward
only: DenoiseEnv's defaults) with the same precomputed valid actions, for ``--steps`` steps
after one warm-up episode; a repeat's rate is ``num_envs * steps / seconds``; the table gives
the median of ``--repeats`` (variants interleaved per repeat, so machine-load drift hits them
alike) and the per-step time the view adds over the direct env. Variants:

- ``DenoiseEnv`` — ``env.step(action_tensor)``;
- ``Gymnasium view, numpy`` — ``DenoiseVectorEnv.step(np.ndarray)`` → numpy outputs and infos;
- ``Gymnasium view, torch`` — ``DenoiseVectorEnv(array_type="torch").step(tensor)``;
- ``SB3 VecEnv`` — ``DenoiseSB3VecEnv.step(np.ndarray)`` (per-env info dicts included);
- ``TorchRL view`` — ``DenoiseTorchRLEnv.step_and_maybe_reset(td)`` (what collectors call;
  partial resets included).
Writes JSON and a markdown table beside it (same stem, ``.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-envs", type=int, default=64)
    p.add_argument("--segment-seconds", type=float, default=2.0)
    p.add_argument("--steps", type=int, default=30, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/interop_overhead.json")
    return p.parse_args()


def make_actions(n: int, count: int, num_methods: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.cat([torch.randint(0, num_methods, (n, 1), generator=g).float(),
                       torch.rand(n, 3, generator=g)], 1) for _ in range(count)]


def main() -> int:
    args = parse_args()
    from tensordict import TensorDict

    from hear_vec.env import DenoiseEnv
    from hear_vec.interop.gymnasium import DenoiseVectorEnv
    from hear_vec.interop.sb3 import DenoiseSB3VecEnv
    from hear_vec.interop.torchrl import DenoiseTorchRLEnv

    kw = {"num_envs": args.num_envs, "segment_seconds": args.segment_seconds, "seed": args.seed}
    direct = DenoiseEnv(**kw)
    max_steps = direct.max_steps
    actions = make_actions(args.num_envs, args.steps + max_steps, direct.action_spec.num_methods,
                           args.seed)
    np_actions = [a.numpy() for a in actions]

    gym_np = DenoiseVectorEnv(**kw)
    gym_t = DenoiseVectorEnv(array_type="torch", **kw)
    sb3 = DenoiseSB3VecEnv(**kw)
    trl = DenoiseTorchRLEnv(**kw)
    trl_state: dict[str, TensorDict] = {}

    def run_direct(acts):
        for a in acts:
            direct.step(a)

    def run_gym_np(acts):
        for a in acts:
            gym_np.step(a)

    def run_gym_t(acts):
        for a in acts:
            gym_t.step(a)

    def run_sb3(acts):
        for a in acts:
            sb3.step(a)

    def run_trl(acts):
        td = trl_state["td"]
        for a in acts:
            td.set("action", a)
            _, td = trl.step_and_maybe_reset(td)
        trl_state["td"] = td

    variants = {
        "DenoiseEnv (direct)": (lambda: direct.reset(seed=args.seed), run_direct, actions),
        "Gymnasium view, numpy": (lambda: gym_np.reset(seed=args.seed), run_gym_np, np_actions),
        "Gymnasium view, torch": (lambda: gym_t.reset(seed=args.seed), run_gym_t, actions),
        "SB3 VecEnv": (lambda: (sb3.seed(args.seed), sb3.reset()), run_sb3, np_actions),
        "TorchRL view": (lambda: (trl.set_seed(args.seed),
                                  trl_state.__setitem__("td", trl.reset())), run_trl, actions),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    with torch.no_grad():
        for reset, run, acts in variants.values():  # warm-up: one episode each
            reset()
            run(acts[:max_steps])
        for _ in range(args.repeats):
            for name, (reset, run, acts) in variants.items():
                reset()
                start = time.perf_counter()
                run(acts[max_steps:])
                seconds = time.perf_counter() - start
                rates[name].append(args.num_envs * args.steps / seconds)
    base = statistics.median(rates["DenoiseEnv (direct)"])
    rows = []
    for name, values in rates.items():
        med = statistics.median(values)
        overhead_ms = (args.num_envs / med - args.num_envs / base) * 1e3
        rows.append({"variant": name, "env_steps_per_s": med, "all_repeats": values,
                     "relative_to_direct": med / base, "added_ms_per_step": overhead_ms})
    command = ("OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "?") + " python "
               + " ".join(["benchmarks/interop_overhead.py", *sys.argv[1:]]))
    result = {"command": command, "num_envs": args.num_envs,
              "segment_seconds": args.segment_seconds, "steps": args.steps,
              "repeats": args.repeats, "reward": "SI-SDR only (DenoiseEnv defaults)",
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.json)
    lines = [f"`{command}`", "",
             f"{args.num_envs} envs, {args.segment_seconds:g}-s segments, SI-SDR reward only, "
             f"CPU, {torch.get_num_threads()} threads; median of {args.repeats} repeats of "
             f"{args.steps} steps.", "",
             "| variant | env-steps/s | vs direct | added ms per step |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['env_steps_per_s']:.1f} | "
                     f"{r['relative_to_direct']:.3f} | {r['added_ms_per_step']:+.2f} |")
    md = args.json.with_suffix(".md")
    md.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
