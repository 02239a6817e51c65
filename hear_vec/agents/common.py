"""Compatibility re-exports: the learners' shared pieces now live in modules that each do one
thing -- :mod:`~hear_vec.agents.base` (env protocol, hooks, :class:`LearnerBase`),
:mod:`~hear_vec.agents.config`, :mod:`~hear_vec.agents.networks`,
:mod:`~hear_vec.agents.distributions`, :mod:`~hear_vec.agents.replay`,
:mod:`~hear_vec.agents.optim` and :mod:`~hear_vec.agents.tracking`. Import from those; this
module only keeps old imports working. (There is no shared off-policy loop any more: SAC and
TD3 each hold their own ``train``.)"""

from __future__ import annotations

from hear_vec.agents.base import LearnerBase, NonFiniteLossError, TrainHooks, VecEnv
from hear_vec.agents.config import LearnerConfig, OffPolicyConfig
from hear_vec.agents.distributions import (
    gather_method,
    gumbel_argmax,
    hybrid_log_prob_entropy,
    sample_hybrid,
    squashed_sample,
    tanh_log_det,
)
from hear_vec.agents.networks import (
    EnsembleLinear,
    EnsembleMLP,
    GaussianHybridPolicy,
    HybridGaussianActor,
    HybridQEnsemble,
    KnobScaler,
    build_gaussian_policy,
    copy_module,
    layer_init,
    mlp,
)
from hear_vec.agents.optim import (
    CudaGraphFn,
    average_gradients,
    broadcast_modules,
    load_optimizer_state,
    make_adam,
    optimizer_step,
    world_info,
)
from hear_vec.agents.replay import ReplayBuffer
from hear_vec.agents.tracking import EpisodeTracker, MetricAccumulator, evaluate_policy
from hear_vec.env.spaces import ActionSpec

__all__ = [
    "ActionSpec",
    "VecEnv",
    "TrainHooks",
    "NonFiniteLossError",
    "LearnerConfig",
    "OffPolicyConfig",
    "KnobScaler",
    "layer_init",
    "mlp",
    "EnsembleLinear",
    "EnsembleMLP",
    "HybridGaussianActor",
    "HybridQEnsemble",
    "gumbel_argmax",
    "gather_method",
    "tanh_log_det",
    "squashed_sample",
    "hybrid_log_prob_entropy",
    "sample_hybrid",
    "GaussianHybridPolicy",
    "build_gaussian_policy",
    "EpisodeTracker",
    "MetricAccumulator",
    "ReplayBuffer",
    "CudaGraphFn",
    "make_adam",
    "optimizer_step",
    "load_optimizer_state",
    "average_gradients",
    "broadcast_modules",
    "world_info",
    "evaluate_policy",
    "LearnerBase",
    "copy_module",
]
