"""One evaluation for agents trained by any library: a deterministic policy on fixed, seeded
episodes of a held-out synthetic corpus, through :class:`~hear_vec.env.DenoiseEnv` itself.

    result = evaluate_on_fixed_episodes(act, normalizer, episodes=256)
    # {"episodes": 256.0, "return": ..., "return_std": ..., "si_sdr_gain": ...}

``act(obs [B, D] float32 tensor) -> action [B, 1 + C]`` (the seed's vector layout) sees the
observation normalized by ``normalizer`` (the training env's, frozen; None: the evaluation
env's own, never updated — for policies that ignore the observation). The corpus is a
:class:`~hear_vec.data.SyntheticCorpus` built from ``corpus_seed`` (default 20_261, not a seed
any training default uses, so its utterances and noise clips are new to every agent), and the
env's RNG is keyed by ``seed`` and rewound: every call sees the same segments, crops, noises
and SNRs, whichever library trained the policy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["evaluate_on_fixed_episodes"]


@torch.no_grad()
def evaluate_on_fixed_episodes(act: Callable[[Tensor], Tensor], normalizer: Any, *,
                               episodes: int = 256, seed: int = 7, corpus_seed: int = 20_261,
                               num_utterances: int = 64, device: str | torch.device = "cpu",
                               **env_kwargs: Any) -> dict[str, float]:
    """Mean return and SI-SDR gain of ``act`` over the first episode of each of ``episodes``
    rows (one batch, fixed segments).
    ``env_kwargs`` go to DenoiseEnv (e.g. ``max_steps``, ``segment_seconds``, ``reward_scale``);
    they must match training for the return to mean the same."""
    from hear_vec.data import SyntheticCorpus
    from hear_vec.env import DenoiseEnv

    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    corpus = SyntheticCorpus(num_utterances=num_utterances, device=device, seed=corpus_seed)
    env = DenoiseEnv(corpus, num_envs=episodes, device=device, seed=seed,
                     normalizer=normalizer, update_normalizer=False, **env_kwargs)
    obs = env.reset(draws=0)
    dev = env.device
    ret = torch.zeros(episodes, dtype=torch.float64, device=dev)
    gain = torch.zeros(episodes, dtype=torch.float64, device=dev)
    finished = torch.zeros(episodes, dtype=torch.bool, device=dev)
    for _ in range(env.max_steps):  # every row's first episode ends within max_steps steps
        obs, reward, terminated, truncated, info = env.step(act(obs).to(dev))
        ret += torch.where(finished, 0.0, reward.to(torch.float64))
        ended = (terminated | truncated) & ~finished
        gain = torch.where(ended, (info["si_sdr"] - info["si_sdr_start"]).to(torch.float64),
                           gain)
        finished |= ended
    if not bool(finished.all()):
        raise RuntimeError("some evaluation episodes did not end within max_steps steps")
    return {"episodes": float(episodes), "return": float(ret.mean()),
            "return_std": float(ret.std(unbiased=False)), "si_sdr_gain": float(gain.mean())}
