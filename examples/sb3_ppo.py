"""Stable-Baselines3 PPO training on DenoiseEnv through the Gymnasium view (hear_vec[interop]).

    python examples/sb3_ppo.py --total-steps 20000 --num-envs 16
    python examples/sb3_ppo.py --total-steps 64 --num-envs 4 --tiny      # CI smoke test

SB3 sees a plain ``VecEnv`` (:class:`hear_vec.interop.sb3.DenoiseSB3VecEnv`) with the seed's
4-vector ``Box`` action (SB3 has no hybrid action spaces, so its Gaussian also covers the method
coordinate, which the env rounds to a method id). Hyper-parameters follow hear_vec's PPO
defaults (16 steps per env per rollout, 10 epochs, minibatch = the rollout up to 4096, lr 3e-4,
256x256 Tanh networks, gamma 0.99, lambda 0.95, clip 0.2, entropy 0.01, grad-norm 0.5).
At the end the deterministic policy is evaluated on the fixed held-out episodes of
:func:`hear_vec.interop.evaluation.evaluate_on_fixed_episodes`; ``--json`` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--total-steps", type=int, default=20_000, help="env transitions (all envs)")
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--rollout-steps", type=int, default=16, help="steps per env per rollout")
    p.add_argument("--segment-seconds", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-episodes", type=int, default=256)
    p.add_argument("--tiny", action="store_true",
                   help="a tiny corpus and short segments (smoke tests)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.vec_env import VecMonitor
    except ImportError:
        print("error: this example needs the interop extra: pip install 'hear_vec[interop]'",
              file=sys.stderr)
        return 2
    from hear_vec.data import SyntheticCorpus
    from hear_vec.interop.evaluation import evaluate_on_fixed_episodes
    from hear_vec.interop.sb3 import DenoiseSB3VecEnv

    env_kwargs = {"segment_seconds": args.segment_seconds}
    data: object = "synthetic"
    if args.tiny:
        env_kwargs.update(segment_seconds=0.25, min_segment_seconds=0.125)
        data = SyntheticCorpus(num_utterances=8, noise_clips_per_family=1,
                               utterance_seconds=(1.0, 1.0), noise_seconds=1.0, seed=args.seed)
    venv = VecMonitor(DenoiseSB3VecEnv(data, num_envs=args.num_envs, seed=args.seed,
                                       **env_kwargs))
    rollout = args.rollout_steps * args.num_envs
    model = PPO("MlpPolicy", venv, n_steps=args.rollout_steps, batch_size=min(rollout, 4096),
                n_epochs=10, learning_rate=3e-4, gamma=0.99, gae_lambda=0.95, clip_range=0.2,
                ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5, seed=args.seed, device="cpu",
                policy_kwargs={"net_arch": {"pi": [256, 256], "vf": [256, 256]},
                               "activation_fn": torch.nn.Tanh}, verbose=0)
    start = time.perf_counter()
    model.learn(total_timesteps=args.total_steps)
    seconds = time.perf_counter() - start
    transitions = int(model.num_timesteps)
    train_stats = venv.venv.episode_stats(reset=True)  # episodes since the last read

    def act(obs: torch.Tensor) -> torch.Tensor:
        action, _ = model.predict(obs.cpu().numpy(), deterministic=True)
        return torch.as_tensor(action, dtype=torch.float32)

    eval_kwargs = dict(env_kwargs) if args.tiny else {}
    result = evaluate_on_fixed_episodes(
        act, venv.venv.env.normalizer, episodes=args.eval_episodes,
        num_utterances=8 if args.tiny else 64, **eval_kwargs)
    out = {"learner": "stable-baselines3 PPO (Gymnasium view, Box action)",
           "transitions": transitions, "train_seconds": seconds,
           "env_steps_per_s": transitions / seconds, "train_last_episodes": train_stats,
           "eval": result, "args": {k: str(v) for k, v in vars(args).items()}}
    print(f"SB3 PPO: {transitions} transitions in {seconds:.1f} s "
          f"({transitions / seconds:.0f} env-steps/s); eval return {result['return']:.3f}, "
          f"SI-SDR gain {result['si_sdr_gain']:+.2f} dB over {int(result['episodes'])} episodes")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
