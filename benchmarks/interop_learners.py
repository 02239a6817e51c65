"""Outside learners vs hear_vec's own PPO, same transitions, same evaluation.

    OMP_NUM_THREADS=2 python benchmarks/interop_learners.py --total-steps 20000 --num-envs 16 \
        --json benchmarks/results/interop_learners.json

Runs, one after the other (each in its own process, same seed, synthetic default data,
2-s segments, SI-SDR reward only):

1. ``train.py --algo ppo`` (hear_vec's hybrid-head PPO on DenoiseEnv directly);
2. ``examples/sb3_ppo.py`` (Stable-Baselines3 PPO through the Gymnasium view, Box action);
3. ``examples/torchrl_ppo.py`` (TorchRL ClipPPOLoss through the TorchRL view, composite action);

then evaluates every trained policy deterministically with
:func:`hear_vec.interop.evaluation.evaluate_on_fixed_episodes` (the same 256 seeded episodes of
a held-out synthetic corpus, each policy with its own training env's frozen normalizer).
env-steps/s: transitions / seconds of the training loop (the learners' updates included;
start-up and evaluation excluded; hear_vec's from ``train_seconds`` in its ``metrics.json``).
"process s" is each whole process (start-up, corpus, training, evaluation). Writes JSON +
markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--total-steps", type=int, default=20_000)
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-episodes", type=int, default=256)
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/hear_vec_interop_learners"))
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/interop_learners.json")
    p.add_argument("--references-only", action="store_true",
                   help="no training: evaluate fixed policies (each method at knobs 0.5 for "
                        "every step, and uniform random actions) on the same episodes")
    return p.parse_args()


def references(episodes: int) -> list[dict]:
    """Fixed policies on the same evaluation episodes (their own normalizer is irrelevant:
    they ignore the observation)."""
    import torch

    from hear_vec.interop.evaluation import evaluate_on_fixed_episodes
    from hear_vec.ops import METHODS

    rows = []
    dummy = None  # the policies ignore the observation; the env keeps its own normalizer
    for m, name in enumerate(METHODS):
        def fixed(obs, m=m):
            return torch.tensor([[float(m), 0.5, 0.5, 0.5]]).expand(obs.shape[0], 4)
        rows.append({"policy": f"{name} (0.5, 0.5, 0.5) every step",
                     "eval": evaluate_on_fixed_episodes(fixed, dummy, episodes=episodes)})
    g = torch.Generator().manual_seed(0)

    def uniform(obs):
        n = obs.shape[0]
        return torch.cat([torch.randint(0, len(METHODS), (n, 1), generator=g).float(),
                          torch.rand(n, 3, generator=g)], 1)
    rows.append({"policy": "uniform random method and knobs",
                 "eval": evaluate_on_fixed_episodes(uniform, dummy, episodes=episodes)})
    return rows


def write_references(args: argparse.Namespace) -> int:
    rows = references(args.eval_episodes)
    command = ("OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "?") + " python "
               + " ".join(["benchmarks/interop_learners.py", *sys.argv[1:]]))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    os.replace(tmp, args.json)
    lines = [f"`{command}`", "", f"Fixed policies on the same {args.eval_episodes} evaluation "
             "episodes as interop_learners.md.", "",
             "| policy | eval return | eval SI-SDR gain (dB) |", "|---|---|---|"]
    for r in rows:
        e = r["eval"]
        lines.append(f"| {r['policy']} | {e['return']:.3f} ± {e['return_std']:.3f} | "
                     f"{e['si_sdr_gain']:+.2f} |")
    args.json.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def run(cmd: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    print("+", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    return time.perf_counter() - start


def main() -> int:
    args = parse_args()
    if args.references_only:
        return write_references(args)
    import torch

    from hear_vec.inference import DenoisingAgent
    from hear_vec.interop.evaluation import evaluate_on_fixed_episodes

    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    common = ["--total-steps", str(args.total_steps), "--num-envs", str(args.num_envs),
              "--seed", str(args.seed)]
    rows = []

    log_dir = work / "hear_vec_ppo"
    seconds = run([py, "train.py", "--algo", "ppo", *common, "--log-dir", str(log_dir),
                   "--eval-interval", "0", "--eval-episodes", "64", "--no-progress"])
    metrics = json.loads((log_dir / "metrics.json").read_text())
    train_seconds = float(metrics["final_eval"]["train_seconds"])
    agent = DenoisingAgent.from_file(log_dir / "model.pt")
    result = evaluate_on_fixed_episodes(lambda obs: agent.policy(obs, True), agent.normalizer,
                                        episodes=args.eval_episodes)
    rows.append({"learner": "hear_vec PPO (train.py, hybrid head, DenoiseEnv direct)",
                 "transitions": args.total_steps, "process_seconds": seconds,
                 "env_steps_per_s": args.total_steps / train_seconds,
                 "env_steps_per_s_note": "transitions / train_seconds (metrics.json)",
                 "train_seconds": train_seconds, "eval": result,
                 "command": f"python train.py --algo ppo {' '.join(common)} --log-dir "
                            f"{log_dir} --eval-interval 0 --eval-episodes 64 --no-progress"})

    for script in ("examples/sb3_ppo.py", "examples/torchrl_ppo.py"):
        out = work / (Path(script).stem + ".json")
        cmd = [py, script, *common, "--eval-episodes", str(args.eval_episodes),
               "--json", str(out)]
        seconds = run(cmd)
        data = json.loads(out.read_text())
        rows.append({"learner": data["learner"], "transitions": data["transitions"],
                     "process_seconds": seconds, "env_steps_per_s": data["env_steps_per_s"],
                     "train_seconds": data["train_seconds"],
                     "env_steps_per_s_note": "transitions / training seconds",
                     "eval": data["eval"], "command": "python " + " ".join(cmd[1:])})

    command = ("OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "?") + " python "
               + " ".join(["benchmarks/interop_learners.py", *sys.argv[1:]]))
    result = {"command": command, "torch": torch.__version__, "rows": rows,
              "evaluation": f"{args.eval_episodes} fixed seeded episodes of a held-out "
                            "synthetic corpus (evaluate_on_fixed_episodes defaults), "
                            "deterministic policies"}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.json)
    lines = [f"`{command}`", "", result["evaluation"] + ".", "",
             "| learner | transitions | eval return | eval SI-SDR gain (dB) | env-steps/s | "
             "process s |", "|---|---|---|---|---|---|"]
    for r in rows:
        e = r["eval"]
        rate = "n/a" if r["env_steps_per_s"] is None else f"{r['env_steps_per_s']:.0f}"
        lines.append(f"| {r['learner']} | {r['transitions']} | {e['return']:.3f} ± "
                     f"{e['return_std']:.3f} | {e['si_sdr_gain']:+.2f} | {rate} | "
                     f"{r['process_seconds']:.0f} |")
    args.json.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
