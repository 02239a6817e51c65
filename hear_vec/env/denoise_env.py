"""DenoiseEnv: the stateful, gym-like surface over the pure transition.

``DenoiseEnv`` holds an :class:`~hear_vec.env.transition.EnvParams`, the current
:class:`~hear_vec.env.transition.EnvState` and a running observation normalizer, and steps
the state with :func:`hear_vec.env.transition.step` (the reward, episode and autoreset rules
are written there, once). ``reset() -> obs`` and ``step(action) -> (obs, reward, terminated,
truncated, info)`` return normalized observations; ``info["final_observation"]`` is the
normalized last observation of the rows that finished (same-step autoreset).

Shared-clock fast path: without the stop action every row starts together and runs exactly
``max_steps`` steps, so the host knows from its own count (``_phase``) whether any row
finishes or measures STOI at a step, without reading the device, and tells ``step`` to skip
the fresh draw / the STOI pass when none does (the transition's docstring says why the
numbers are the same). With the stop action rows finish at any step and every step draws.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hear_vec import rng
from hear_vec.data import Corpus, Segments, load_corpus
from hear_vec.env import transition
from hear_vec.env.observation import RunningNormalizer
from hear_vec.env.transition import (
    DERIVED,
    EPISODE_STATS,
    EnvParams,
    EnvState,
    derived_fields,
)
from hear_vec.metrics import SiSdrReference, StoiReference
from hear_vec.ops import METHODS

__all__ = ["EnvState", "EnvParams", "DenoiseEnv", "EPISODE_STATS", "summarize_episodes"]


class DenoiseEnv:
    """Vectorized denoising environment (reward and episodes: :mod:`hear_vec.env.transition`).

    Args:
        data: "synthetic", a meta.csv path, a clean/+noisy/ folder, or a Corpus.
        num_envs: episodes stepped together (B).
        device: where everything lives.
        max_steps: most denoisers per episode.
        stop_action: add a stop action (method id ``len(METHODS)``) that ends the episode
            and keeps the audio as it is (so episodes last 1..max_steps steps per row).
        floor_features: observe the 34 noise-floor features (per-band SNR proxies,
            :mod:`hear_vec.features.floor`) of both signals besides the seed's 133.
        reward_scale: divides the SI-SDR gain (dB).
        stoi_weight, estoi_weight: weights of the STOI / ESTOI gains.
        quality_interval: measure STOI/ESTOI every this many steps (and at the end);
            0 = only at the end.
        diversity_weight: w of the method-diversity term.
        worse_penalty: extra weight of a final SI-SDR below the input's (>= 0; see
            :mod:`hear_vec.env.transition`).
        segment_seconds: longest segment; lengths vary per reset in
            [min_segment_seconds, segment_seconds] (capped by the utterance).
        seed: seeds the counter-based RNG of all draws.
        track_quality: compute STOI and ESTOI on measuring steps even with zero weight
            (for evaluation statistics); default: only the terms that carry weight.
        normalizer: share a RunningNormalizer (e.g. an evaluation env uses the training
            env's); ``update_normalizer`` decides whether steps update it.
        compile: run reset and step under ``torch.compile(fullgraph=True)`` with
            ``compile_backend`` ("inductor"; "aot_eager" traces the same graph without code
            generation, for quick checks).
        corpus options: clean_dir, noise_dir, snr_range, sample_rate (see load_corpus).
    """

    def __init__(
        self,
        data: str | Path | Corpus = "synthetic",
        num_envs: int = 64,
        device: str | torch.device = "cpu",
        max_steps: int = 3,
        reward_scale: float = 5.0,
        stoi_weight: float = 0.0,
        estoi_weight: float = 0.0,
        quality_interval: int = 0,
        diversity_weight: float = 0.0,
        worse_penalty: float = 0.0,
        segment_seconds: float = 2.0,
        min_segment_seconds: float = 1.0,
        seed: int = 0,
        track_quality: bool = False,
        stop_action: bool = False,
        floor_features: bool = False,
        normalizer: RunningNormalizer | None = None,
        update_normalizer: bool = True,
        compile: bool = False,
        compile_backend: str = "inductor",
        clean_dir: str | Path | None = None,
        noise_dir: str | Path | None = None,
        snr_range: tuple[float, float] = (-5.0, 15.0),
        sample_rate: int = 16000,
    ) -> None:
        if not 0 < min_segment_seconds <= segment_seconds:
            raise ValueError("need 0 < min_segment_seconds <= segment_seconds, got "
                             f"{min_segment_seconds} and {segment_seconds}")
        for name, value in (("stoi_weight", stoi_weight), ("estoi_weight", estoi_weight),
                            ("diversity_weight", diversity_weight),
                            ("worse_penalty", worse_penalty)):
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
        self.device = torch.device(device)
        self.corpus = (data.to(self.device) if isinstance(data, Corpus) else
                       load_corpus(data, clean_dir=clean_dir, noise_dir=noise_dir,
                                   snr_range=snr_range, sample_rate=sample_rate,
                                   device=self.device, seed=seed))
        self.sample_rate = self.corpus.sample_rate
        segment_samples = int(round(segment_seconds * self.sample_rate))
        self.params = EnvParams(
            corpus=self.corpus, num_envs=int(num_envs), segment_samples=segment_samples,
            min_samples=min(segment_samples,
                            max(1, int(round(min_segment_seconds * self.sample_rate)))),
            max_steps=int(max_steps), stop_action=bool(stop_action),
            reward_scale=float(reward_scale), stoi_weight=float(stoi_weight),
            estoi_weight=float(estoi_weight), quality_interval=int(quality_interval),
            diversity_weight=float(diversity_weight), worse_penalty=float(worse_penalty),
            measure_stoi=bool(track_quality),
            measure_estoi=bool(track_quality), sample_rate=self.sample_rate,
            floor_features=bool(floor_features))
        self.methods = METHODS
        self.normalizer = (normalizer if normalizer is not None else
                           RunningNormalizer(self.observation_dim,
                                             2 * self.params.feature_dim)).to(
                               self.device)
        self.update_normalizer = update_normalizer
        self.key = rng.make_key(seed, self.device)
        self._compile = compile
        self._compile_backend = compile_backend
        self._step_fns: dict[tuple[bool, bool], Any] = {}
        self._reset_fn: Any = None
        self.state: EnvState | None = None
        self._phase = 0  # steps since every row started together (shared-clock fast path)

    # settings (num_envs, max_steps, reward_scale, ..., observation_dim, action_spec,
    # num_methods = denoisers without the stop action) are read from the params: _PARAMS below

    # -- compiled pieces -----------------------------------------------------------------
    def _maybe_compile(self, fn: Any) -> Any:
        if not self._compile:
            return fn
        return torch.compile(fn, fullgraph=True, backend=self._compile_backend)

    def _step_fn(self, may_finish: bool, may_measure: bool) -> Any:
        """``fn(state, action) -> (state, obs, reward, terminated, truncated, info)``: the
        transition's step plus the normalizer (update, normalized obs and final obs), possibly
        compiled; one per pair of host flags. The vector layouts capture these."""
        key = (may_finish, may_measure)
        if key not in self._step_fns:
            params, observe = self.params, self._observe

            def step_fn(state: EnvState, action: Tensor) -> Any:
                # a plain function (not a partial): torch.compile keys its cache on the code
                state, raw, reward, terminated, truncated, info = transition.step(
                    params, state, action, may_finish=may_finish, may_measure=may_measure)
                obs = observe(raw)
                info["final_observation"] = self.normalizer.normalize(info["final_observation"])
                return state, obs, reward, terminated, truncated, info

            self._step_fns[key] = self._maybe_compile(step_fn)
        return self._step_fns[key]

    def _observe(self, raw: Tensor) -> Tensor:
        if self.update_normalizer:
            self.normalizer.update(raw)
        return self.normalizer.normalize(raw)

    def _shared_clock(self) -> bool:
        """Whether every row is known (on the host) to be at step ``_phase``."""
        return not self.params.stop_action

    # -- the gym-style surface ------------------------------------------------------------
    def reset(self, draws: int | None = None, seed: int | None = None) -> Tensor:
        """Start a new episode in every row; returns the normalized observation [B, D].

        ``seed`` re-keys the counter-based RNG (and sets the counter to 0 unless ``draws`` is
        given): the same seed replays the same episodes. ``draws`` sets the RNG counter
        first (e.g. 0 to replay the same evaluation segments every time, or a saved counter
        on resume); by default the stream continues."""
        if seed is not None:
            self.key = rng.make_key(int(seed), self.device)
            draws = 0 if draws is None else draws
        if draws is not None:
            counter = torch.tensor(int(draws), dtype=torch.long, device=self.device)
        elif self.state is not None:
            counter = self.state.counter + 1
        else:
            counter = torch.zeros((), dtype=torch.long, device=self.device)
        stats = self.state.stats if self.state is not None else None
        if self._reset_fn is None:
            params = self.params

            def reset_fn(key: Tensor, counter: Tensor) -> EnvState:
                return transition.reset(params, key, counter)

            self._reset_fn = self._maybe_compile(reset_fn)
        state = self._reset_fn(self.key, counter)
        if stats is not None:
            state.stats = stats
        self.state = state
        self._phase = 0
        return self._observe(transition.observe(self.params, state))

    def start_from(self, segments: Segments) -> Tensor:
        """Start every row's episode on given segments (e.g. fixed evaluation clips) instead
        of a random draw; rows must number ``num_envs``. Later autoresets draw as usual."""
        if segments.noisy.shape[0] != self.num_envs:
            raise ValueError(f"segments must have {self.num_envs} rows, got "
                             f"{segments.noisy.shape[0]}")
        if segments.noisy.shape[-1] != self.segment_samples:
            raise ValueError(f"segments must be {self.segment_samples} samples wide (the env's "
                             f"segment_seconds), got {segments.noisy.shape[-1]}")
        counter = (self.state.counter if self.state is not None else
                   torch.zeros((), dtype=torch.long, device=self.device))
        stats = self.state.stats if self.state is not None else None
        state = transition.start(self.params, segments, self.key, counter)
        if stats is not None:
            state.stats = stats
        self.state = state
        self._phase = 0
        return self._observe(transition.observe(self.params, state))

    def step(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """Apply one denoiser per row. action: [num_envs, 4] float = (method id, strength,
        smoothing, band_mix). Returns (obs, reward, terminated, truncated, info) with
        same-step autoreset; info["final_observation"] is the observation before it."""
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        if not isinstance(action, Tensor) or action.shape != (self.num_envs, 4):
            shape = tuple(action.shape) if isinstance(action, Tensor) else type(action).__name__
            raise ValueError(f"action must be a tensor of shape ({self.num_envs}, 4), got {shape}")
        action = action.to(self.device)
        flags = self._next_flags()
        self.state, obs, reward, terminated, truncated, info = self._step_fn(*flags)(
            self.state, action)
        self._advance_clock(flags)
        return obs, reward, terminated, truncated, info

    def _next_flags(self) -> tuple[bool, bool]:
        """(may_finish, may_measure) of the next step: both True unless the shared clock
        proves that no row finishes / measures STOI at it."""
        if not self._shared_clock():
            return True, True
        phase = self._phase + 1
        finish = phase >= self.max_steps
        interval = self.params.quality_interval
        return finish, finish or (interval > 0 and phase % interval == 0)

    def _advance_clock(self, flags: tuple[bool, bool]) -> None:
        self._phase = 0 if (self._shared_clock() and flags[0]) else self._phase + 1

    def state_dict(self) -> dict[str, Any]:
        """The full episode state (every :class:`EnvState` field, the STOI / SI-SDR references
        as dicts of tensors) and the shared-clock phase, as tensors and plain containers
        (``torch.load(..., weights_only=True)``); with :meth:`load_state_dict` the env goes on
        bit for bit as if never stopped. The normalizer is saved apart (``normalizer.export()``).
        The fields that are functions of the others (``transition.DERIVED``: the STFT of the
        current audio, the clean-side SI-SDR / STOI work) are left out and recomputed on load.
        Size: the clean, noisy and current audio of every row, 0.39 MB per env at 2-s segments
        (with the STFT and references kept it was 1.29 MB, 1.77 MB with STOI measured).
        The recomputation is eager: with ``compile=True`` its last bits may differ from those
        the compiled step would have produced (eager CPU runs resume bit for bit)."""
        if self.state is None:
            raise RuntimeError("call reset() before state_dict()")
        fields: dict[str, Any] = {}
        for f in dataclasses.fields(self.state):
            if f.name in DERIVED:
                continue
            value = getattr(self.state, f.name)
            if isinstance(value, tuple):  # NamedTuple references
                value = {k: v.clone() if isinstance(v, Tensor) else v
                         for k, v in value._asdict().items()}
            elif isinstance(value, Tensor):
                value = value.clone()
            fields[f.name] = value
        return {"state": fields, "phase": self._phase}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (same settings and ``num_envs``); touches
        neither the normalizer nor the RNG key."""
        types = {"quality": StoiReference, "si_ref": SiSdrReference}
        out: dict[str, Any] = {}
        for f in dataclasses.fields(EnvState):
            if f.name in DERIVED and f.name not in saved["state"]:
                continue  # recomputed below
            value = saved["state"][f.name]
            if isinstance(value, dict):
                value = types[f.name](**{k: v.to(self.device) if isinstance(v, Tensor) else v
                                         for k, v in value.items()})
            elif isinstance(value, Tensor):
                value = value.to(self.device)
            out[f.name] = value
        if out["step"].shape != (self.num_envs,) or out["noisy"].shape[-1] != self.segment_samples:
            raise ValueError("the saved env state does not match this env (another --num-envs "
                             "or --segment-seconds?)")
        if any(name not in out for name in DERIVED):  # checkpoints since the compact format
            out.update(derived_fields(self.params, out["clean"], out["current"], out["lengths"]))
        self.state = EnvState(**out)
        self._phase = int(saved["phase"])

    def draw_counter(self) -> int:
        """The RNG counter (host read; for checkpoints)."""
        return 0 if self.state is None else int(self.state.counter)

    def episode_stats(self, reset: bool = True) -> dict[str, float]:
        """Read the episode accumulators back to the host (one sync; call every N steps):
        see :func:`summarize_episodes`."""
        if self.state is None:
            return {}
        sums = self.state.stats.tolist()
        if reset:
            self.state.stats = torch.zeros_like(self.state.stats)
        return summarize_episodes(self.params, sums)


def summarize_episodes(params: EnvParams, sums: list[float]) -> dict[str, float]:
    """Host-side summary of the ``EPISODE_STATS`` sums: episodes finished, mean return, return
    std, mean SI-SDR gain and episode length, and (when on) the fraction of episodes ended by
    the stop action and the mean STOI / ESTOI gains."""
    values = dict(zip(EPISODE_STATS, sums))
    n = values["episodes"]
    if n == 0:
        return {"episodes": 0.0}
    mean_return = values["return"] / n
    out = {"episodes": n, "return": mean_return,
           "return_std": math.sqrt(max(values["return_sq"] / n - mean_return**2, 0.0)),
           "si_sdr_gain": values["si_sdr_gain"] / n, "length": values["length"] / n}
    if params.stop_action:
        out["stopped"] = values["stopped"] / n
    if params.measure_stoi:
        out["stoi_gain"] = values["stoi_gain"] / n
    if params.measure_estoi:
        out["estoi_gain"] = values["estoi_gain"] / n
    return out

_PARAMS = ("num_envs", "max_steps", "stop_action", "reward_scale", "stoi_weight",
           "estoi_weight", "quality_interval", "diversity_weight", "worse_penalty", "measure_stoi",
           "measure_estoi", "segment_samples", "min_samples", "observation_dim", "action_spec",
           "num_methods", "floor_features", "feature_dim")
for _name in _PARAMS:  # read-only views of the transition's settings
    setattr(DenoiseEnv, _name, property(lambda self, _n=_name: getattr(self.params, _n),
                                        doc=f"``self.params.{_name}`` (read-only)"))
del _name
