"""Adapter overhead: env-steps/s of DenoiseEnv stepped directly vs through its interop views.

    OMP_NUM_THREADS=1 python benchmarks/interop_overhead.py --num-envs 64 --segment-seconds 2 \
        --steps 30 --repeats 5 --json benchmarks/results/interop_overhead.json

Every variant steps its own DenoiseEnv built with the same arguments and seed (SI-SDR reward
only: DenoiseEnv's defaults) with the same precomputed valid actions, for ``--steps`` steps
after one warm-up episode; a repeat's rate is ``num_envs * steps / seconds``; the table gives
the median of ``--repeats`` (variants interleaved per repeat in a rotating order, so machine-load
drift hits them alike). The real-env rates differ by less than the shared machine's noise, so
the view's own cost is also measured apart: the same variants over a zero-cost env that
replays one recorded DenoiseEnv episode (:class:`ReplayEnv`), minus the direct replay.
Variants:

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
    p.add_argument("--adapter-steps", type=int, default=300,
                   help="timed steps per repeat over the zero-cost replay env")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/interop_overhead.json")
    return p.parse_args()


def make_actions(n: int, count: int, num_methods: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.cat([torch.randint(0, num_methods, (n, 1), generator=g).float(),
                       torch.rand(n, 3, generator=g)], 1) for _ in range(count)]


class ReplayEnv:
    """DenoiseEnv's public surface at (almost) zero cost: replays one recorded episode of a
    real DenoiseEnv (its exact outputs, info keys included), so timing a view over it gives
    the view's own per-step cost."""

    def __init__(self, env, actions: list[torch.Tensor]) -> None:
        self.num_envs, self.observation_dim = env.num_envs, env.observation_dim
        self.device, self.action_spec, self.max_steps = env.device, env.action_spec, env.max_steps
        self.first = env.reset(seed=0)
        self.record = [env.step(a) for a in actions[:env.max_steps]]
        self.t = 0

    def reset(self, draws=None, seed=None):
        self.t = 0
        return self.first

    def step(self, action):
        out = self.record[self.t % len(self.record)]
        self.t += 1
        return out

    def episode_stats(self, reset=True):
        return {}


def build_variants(make_env, actions: list[torch.Tensor], seed: int) -> dict:
    """name -> (reset, run(actions), actions) for the direct env and each view, each over its
    own env from ``make_env()``."""
    from hear_vec.interop.gymnasium import DenoiseVectorEnv
    from hear_vec.interop.sb3 import DenoiseSB3VecEnv
    from hear_vec.interop.torchrl import DenoiseTorchRLEnv

    np_actions = [a.numpy() for a in actions]
    direct = make_env()
    gym_np = DenoiseVectorEnv.wrap(make_env())
    gym_t = DenoiseVectorEnv.wrap(make_env(), array_type="torch")
    sb3 = DenoiseSB3VecEnv.wrap(DenoiseVectorEnv.wrap(make_env()))
    trl = DenoiseTorchRLEnv(denoise_env=make_env())
    state: dict = {}

    def stepper(step):
        def run(acts):
            for a in acts:
                step(a)
        return run

    def run_trl(acts):
        td = state["td"]
        for a in acts:
            td.set("action", a)
            _, td = trl.step_and_maybe_reset(td)
        state["td"] = td

    def reset_trl():
        trl.set_seed(seed)
        state["td"] = trl.reset()

    return {
        "DenoiseEnv (direct)": (lambda: direct.reset(seed=seed), stepper(direct.step), actions),
        "Gymnasium view, numpy": (lambda: gym_np.reset(seed=seed), stepper(gym_np.step),
                                  np_actions),
        "Gymnasium view, torch": (lambda: gym_t.reset(seed=seed), stepper(gym_t.step), actions),
        "SB3 VecEnv": (lambda: (sb3.seed(seed), sb3.reset()), stepper(sb3.step), np_actions),
        "TorchRL view": (reset_trl, run_trl, actions),
    }


def time_variants(variants: dict, warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per vectorized step, per repeat; the order rotates every repeat so that load
    drift does not favour one variant."""
    names = list(variants)
    per_step: dict[str, list[float]] = {name: [] for name in names}
    with torch.no_grad():
        for reset, run, acts in variants.values():
            reset()
            run(acts[:warmup])
        for r in range(repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                reset, run, acts = variants[name]
                reset()
                timed = acts[warmup:]
                start = time.perf_counter()
                run(timed)
                per_step[name].append((time.perf_counter() - start) / len(timed))
    return per_step


def main() -> int:
    args = parse_args()
    from hear_vec.env import DenoiseEnv

    kw = {"num_envs": args.num_envs, "segment_seconds": args.segment_seconds, "seed": args.seed}
    probe = DenoiseEnv(**kw)
    max_steps = probe.max_steps
    actions = make_actions(args.num_envs, args.steps + max_steps, probe.action_spec.num_methods,
                           args.seed)
    real = time_variants(build_variants(lambda: DenoiseEnv(**kw), actions, args.seed),
                         max_steps, args.repeats)
    replay_actions = make_actions(args.num_envs, args.adapter_steps + max_steps,
                                  probe.action_spec.num_methods, args.seed)
    source = ReplayEnv(probe, actions)
    adapter = time_variants(build_variants(lambda: source, replay_actions, args.seed),
                            max_steps, args.repeats)
    n = args.num_envs
    base = statistics.median(real["DenoiseEnv (direct)"])
    replay_base = statistics.median(adapter["DenoiseEnv (direct)"])
    rows = []
    for name in real:
        med = statistics.median(real[name])
        own = statistics.median(adapter[name]) - replay_base
        rows.append({"variant": name, "env_steps_per_s": n / med,
                     "all_repeats_env_steps_per_s": [n / v for v in real[name]],
                     "relative_to_direct": base / med,
                     "adapter_ms_per_step": own * 1e3,
                     "adapter_fraction_of_direct_step": own / base,
                     "adapter_all_repeats_ms": [(v - replay_base) * 1e3 for v in adapter[name]]})
    command = ("OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "?") + " python "
               + " ".join(["benchmarks/interop_overhead.py", *sys.argv[1:]]))
    result = {"command": command, "num_envs": n, "segment_seconds": args.segment_seconds,
              "steps": args.steps, "adapter_steps": args.adapter_steps,
              "repeats": args.repeats, "reward": "SI-SDR only (DenoiseEnv defaults)",
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "load_average_at_end": os.getloadavg(), "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.json)
    lines = [f"`{command}`", "",
             f"{n} envs, {args.segment_seconds:g}-s segments, SI-SDR reward only, CPU, "
             f"{torch.get_num_threads()} thread(s); medians of {args.repeats} repeats "
             f"(order rotated). env-steps/s: {args.steps} real steps per repeat. Adapter ms: "
             f"the view's own time per vectorized step, measured over {args.adapter_steps} "
             "steps of a zero-cost env replaying a recorded DenoiseEnv episode (minus the "
             "direct replay).", "",
             "| variant | env-steps/s | vs direct | adapter ms per step | adapter / direct step |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['env_steps_per_s']:.1f} | "
                     f"{r['relative_to_direct']:.3f} | {r['adapter_ms_per_step']:.3f} | "
                     f"{100 * r['adapter_fraction_of_direct_step']:.2f} % |")
    md = args.json.with_suffix(".md")
    md.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
