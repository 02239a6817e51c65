"""Learner configuration shared by PPO, SAC and TD3 (each learner's own config extends one of
these). Field names and defaults are public: train.py's flags are generated from them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LearnerConfig", "OffPolicyConfig"]


@dataclass
class LearnerConfig:
    """Fields every learner has.

    ``log_interval``: iterations between read-backs / ``on_log`` calls (an iteration is one
    rollout + update for PPO, one vectorized env step + its updates for SAC/TD3).
    ``eval_interval``: env transitions (all envs, all ranks) between ``on_eval`` calls; 0 = never.
    ``compile``: ``torch.compile`` the act / update functions (with ``compile_backend``;
    "aot_eager" traces without code generation, for quick checks). ``cudagraphs``: capture them in
    CUDA graphs after two eager warm-up calls (CUDA only; combines with ``compile``).
    """

    gamma: float = 0.99
    hidden_dims: tuple[int, ...] = (256, 256)
    log_interval: int = 10
    eval_interval: int = 0
    compile: bool = False
    compile_backend: str = "inductor"
    cudagraphs: bool = False

    def validate(self) -> None:
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if len(self.hidden_dims) == 0 or any(int(h) < 1 for h in self.hidden_dims):
            raise ValueError(f"hidden_dims must be positive ints, got {self.hidden_dims}")
        if self.log_interval < 1:
            raise ValueError(f"log_interval must be >= 1, got {self.log_interval}")
        if self.eval_interval < 0:
            raise ValueError(f"eval_interval must be >= 0, got {self.eval_interval}")


@dataclass
class OffPolicyConfig(LearnerConfig):
    """Replay-based learners (SAC, TD3). Step counts are env transitions over all envs/ranks.

    ``batch_size``: transitions sampled from the replay per gradient update.
    ``replay_size``: replay capacity in transitions per rank (rounded down to a multiple of
    ``num_envs``; never more than the run's ``total_steps`` needs). Memory is about
    ``replay_size * (2 * obs_dim + C + 4) * 4`` bytes (~2.3 GB at 1e6 x 280-dim obs).
    ``random_steps``: the first transitions use uniformly random actions.
    ``warmup_steps``: transitions collected before the first update (learning starts once the
    replay holds ``max(warmup_steps / world, batch_size)`` transitions; after a resume without
    the replay in the checkpoint, this refills before updating again).
    ``updates_per_step``: gradient updates per vectorized env step (replay ratio =
    updates_per_step * batch_size / num_envs samples per collected transition).
    ``max_grad_norm``: 0 disables gradient clipping (the CleanRL default for SAC/TD3).
    """

    log_interval: int = 100
    batch_size: int = 256
    replay_size: int = 1_000_000
    random_steps: int = 5_000
    warmup_steps: int = 5_000
    updates_per_step: int = 1
    tau: float = 0.005
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    max_grad_norm: float = 0.0

    def validate(self) -> None:
        super().validate()
        for name in ("batch_size", "replay_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("random_steps", "warmup_steps", "updates_per_step"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if self.max_grad_norm < 0:
            raise ValueError(f"max_grad_norm must be >= 0, got {self.max_grad_norm}")
