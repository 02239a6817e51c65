"""TorchRL PPO training on DenoiseEnv through the TorchRL view (hear_vec[interop]).

    python examples/torchrl_ppo.py --total-steps 20000 --num-envs 16
    python examples/torchrl_ppo.py --total-steps 64 --num-envs 4 --tiny     # CI smoke test

The env is :class:`hear_vec.interop.torchrl.DenoiseTorchRLEnv` with the composite action
(``method``: categorical id, ``knobs``: bounded). The policy is TorchRL's own stack: an MLP
writes the parameters of a ``CompositeDistribution`` (``Categorical`` over methods,
``TanhNormal`` over the knobs, a state-independent log-std), a ``ProbabilisticActor`` samples
it, ``Collector`` collects ``rollout_steps x num_envs`` transitions per batch (the
env's same-step autoreset is handled by the view: see its docstring), ``GAE`` and
``ClipPPOLoss`` do the update. Hyper-parameters as hear_vec's PPO defaults (10 epochs,
minibatch = the rollout up to 4096, lr 3e-4, 256x256 Tanh networks, gamma 0.99, lambda 0.95,
clip 0.2, entropy 0.01, value 0.5, grad-norm 0.5). At the end the deterministic policy
(argmax method, tanh of the knob mean) is evaluated on the fixed held-out episodes of
:func:`hear_vec.interop.evaluation.evaluate_on_fixed_episodes`; ``--json`` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--total-steps", type=int, default=20_000, help="env transitions (all envs)")
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--rollout-steps", type=int, default=16, help="steps per env per batch")
    p.add_argument("--segment-seconds", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-episodes", type=int, default=256)
    p.add_argument("--tiny", action="store_true",
                   help="a tiny corpus and short segments (smoke tests)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    return p.parse_args(argv)


class HybridParams(nn.Module):
    """obs -> (method logits [B, M], knob loc [B, C], knob scale [B, C])."""

    def __init__(self, obs_dim: int, num_methods: int, num_knobs: int, hidden: int = 256):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(),
                                  nn.Linear(hidden, hidden), nn.Tanh())
        self.logits = nn.Linear(hidden, num_methods)
        self.loc = nn.Linear(hidden, num_knobs)
        self.log_std = nn.Parameter(torch.zeros(num_knobs))
        for layer in (self.logits, self.loc):
            nn.init.orthogonal_(layer.weight, 0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, obs: torch.Tensor):
        h = self.body(obs)
        loc = self.loc(h)
        return self.logits(h), loc, self.log_std.exp().expand_as(loc)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        from tensordict.nn import CompositeDistribution, TensorDictModule
        from torchrl.collectors import Collector
        from torchrl.envs.utils import ExplorationType, set_exploration_type
        from torchrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator
        from torchrl.objectives import ClipPPOLoss
        from torchrl.objectives.value import GAE
    except ImportError:
        print("error: this example needs the interop extra: pip install 'hear_vec[interop]'",
              file=sys.stderr)
        return 2
    from hear_vec.data import SyntheticCorpus
    from hear_vec.interop.evaluation import evaluate_on_fixed_episodes
    from hear_vec.interop.torchrl import DenoiseTorchRLEnv

    torch.manual_seed(args.seed)
    env_kwargs = {"segment_seconds": args.segment_seconds}
    data: object = "synthetic"
    if args.tiny:
        env_kwargs.update(segment_seconds=0.25, min_segment_seconds=0.125)
        data = SyntheticCorpus(num_utterances=8, noise_clips_per_family=1,
                               utterance_seconds=(1.0, 1.0), noise_seconds=1.0, seed=args.seed)
    env = DenoiseTorchRLEnv(data, num_envs=args.num_envs, seed=args.seed,
                            action_layout="composite", **env_kwargs)
    knob_spec = env.full_action_spec["knobs"]
    num_methods = env.full_action_spec["method"].space.n
    obs_dim = env.observation_spec["observation"].shape[-1]

    params = TensorDictModule(
        HybridParams(obs_dim, num_methods, knob_spec.shape[-1]), in_keys=["observation"],
        out_keys=[("params", "method", "logits"), ("params", "knobs", "loc"),
                  ("params", "knobs", "scale")])
    policy = ProbabilisticActor(
        params, in_keys=["params"], distribution_class=CompositeDistribution,
        distribution_kwargs={
            "distribution_map": {"method": torch.distributions.Categorical,
                                 "knobs": TanhNormal},
            "name_map": {"method": "method", "knobs": "knobs"},
            "extra_kwargs": {"knobs": {"low": knob_spec.space.low[0],
                                       "high": knob_spec.space.high[0]}},
        },
        return_log_prob=True, default_interaction_type=ExplorationType.RANDOM)
    value = ValueOperator(MLP(in_features=obs_dim, out_features=1, num_cells=[256, 256],
                              activation_class=nn.Tanh), in_keys=["observation"])

    rollout = args.rollout_steps * args.num_envs
    minibatch = min(rollout, 4096)
    advantage = GAE(gamma=0.99, lmbda=0.95, value_network=value, average_gae=False)
    loss_fn = ClipPPOLoss(policy, value, clip_epsilon=0.2, entropy_bonus=True,
                          entropy_coeff=0.01, critic_coeff=0.5, normalize_advantage=True)
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=3e-4)
    collector = Collector(env, policy, frames_per_batch=rollout,
                                  total_frames=args.total_steps,
                                  auto_register_policy_transforms=False)

    transitions = 0
    start = time.perf_counter()
    for batch in collector:  # [num_envs, rollout_steps]
        transitions += batch.numel()
        for _ in range(10):
            with torch.no_grad():
                advantage(batch)
            flat = batch.reshape(-1)
            for idx in torch.randperm(flat.numel()).split(minibatch):
                if idx.numel() < minibatch:
                    continue
                losses = loss_fn(flat[idx])
                loss = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(loss_fn.parameters(), 0.5)
                optimizer.step()
        collector.update_policy_weights_()
    seconds = time.perf_counter() - start
    collector.shutdown()
    train_stats = env.episode_stats(reset=True)

    @torch.no_grad()
    def act(obs: torch.Tensor) -> torch.Tensor:
        from tensordict import TensorDict
        td = TensorDict({"observation": obs}, batch_size=obs.shape[:1])
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            td = policy(td)
        return torch.cat([td["method"].to(torch.float32).unsqueeze(-1), td["knobs"]], -1)

    eval_kwargs = dict(env_kwargs) if args.tiny else {}
    result = evaluate_on_fixed_episodes(
        act, env.denoise_env.normalizer, episodes=args.eval_episodes,
        num_utterances=8 if args.tiny else 64, **eval_kwargs)
    out = {"learner": "TorchRL ClipPPOLoss (TorchRL view, composite action)",
           "transitions": transitions, "train_seconds": seconds,
           "env_steps_per_s": transitions / seconds, "train_last_episodes": train_stats,
           "eval": result, "args": {k: str(v) for k, v in vars(args).items()}}
    print(f"TorchRL PPO: {transitions} transitions in {seconds:.1f} s "
          f"({transitions / seconds:.0f} env-steps/s); eval return {result['return']:.3f}, "
          f"SI-SDR gain {result['si_sdr_gain']:+.2f} dB over {int(result['episodes'])} episodes")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
