"""The vectorized denoising environment and its observation."""

from hear_vec.env.denoise_env import EPISODE_STATS, DenoiseEnv, EnvState
from hear_vec.env.observation import RunningNormalizer, build_observation, observation_dim

__all__ = ["DenoiseEnv", "EnvState", "EPISODE_STATS", "RunningNormalizer",
           "build_observation", "observation_dim"]
