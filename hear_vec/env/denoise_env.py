"""DenoiseEnv: thousands of denoising episodes stepped together on one device.

Each episode takes one noisy segment and applies exactly ``max_steps`` denoisers in a chain.
An action row is (method id, strength, smoothing, band_mix). The reward of a step is

    r = ΔSI-SDR / reward_scale + stoi_weight · ΔSTOI + estoi_weight · ΔESTOI + diversity

where ΔSI-SDR is against the previous step (so the SI-SDR part of an episode telescopes to
final − start), ΔSTOI/ΔESTOI are taken on measuring steps only (every ``quality_interval``
steps and the last; only the last when the interval is 0), each against the previous
measured value (the noisy segment's at the start), and diversity is +w when the method
changes, −w/2 when it repeats and 0 on the first step.

State is an explicit dataclass of batched tensors (gymnax style). ``step`` is a pure function
of (state, action) plus two host-side flags — *does any row finish now*, *does any row measure
STOI now* — that follow from the episode clock alone: every row starts together at
``reset()`` and episodes have a fixed length, so all rows share the same step index, known on
the host without reading the device. The flags only skip work no row needs (the fresh draw,
the STOI pass); which rows reset or measure is still decided by masks on the per-row step
counter, and a reset is a masked select of freshly drawn rows (new randomness from the
counter-based key), never a branch on tensor values. ``terminated`` is True at the last step;
``truncated`` stays a separate (all-False) tensor. Nothing in ``step`` reads the device.

Work shared across the steps of an episode (the clean reference is fixed per episode): the
clean side of STOI / ESTOI (a :class:`~hear_vec.metrics.StoiReference`) and of SI-SDR (the
zero-mean target and its energy) are computed once per reset, and the STFT taken for the
features of the current audio is kept in the state and reused by the next step's denoiser
(one STFT per step instead of two).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hear_vec import dsp, rng
from hear_vec.data import Corpus, Segments, load_corpus
from hear_vec.env.observation import (
    NUM_FEATURES,
    RunningNormalizer,
    build_observation,
    observation_dim,
)
from hear_vec.env.spaces import ActionSpec
from hear_vec.features import features_from_stft
from hear_vec.metrics import (
    SiSdrReference,
    StoiReference,
    si_sdr_from_reference,
    si_sdr_reference,
    stoi_from_reference,
    stoi_reference,
)
from hear_vec.ops import METHODS, denoise

__all__ = ["EnvState", "DenoiseEnv", "EPISODE_STATS", "tune_cpu_allocator"]

#: names of the on-device episode accumulators (see :meth:`DenoiseEnv.episode_stats`)
EPISODE_STATS = ("episodes", "return", "return_sq", "si_sdr_gain", "stoi_gain", "estoi_gain")


_ALLOCATOR_TUNED = False


def tune_cpu_allocator() -> bool:
    """Keep freed CPU memory in the process instead of returning it to the kernel (glibc).

    A CPU step allocates and frees many temporaries of several MB (the batch's spectra). By
    default glibc serves blocks above its mmap threshold (128 KB, adapting up to 32 MB) with
    fresh ``mmap`` pages and unmaps them on free, so every step page-faults its temporaries
    in again: measured on the 2-core dev machine (64 envs x 2 s, one thread), 216 ms of system
    time per step in page faults, 105,000 faults per step. ``mallopt(M_MMAP_THRESHOLD, 1 GB)``
    and ``mallopt(M_TRIM_THRESHOLD, 1 GB)`` make the heap keep and reuse them: 0.7 ms of system
    time, 200 faults, 1.43x more env-steps/s. Cost: the process keeps its peak heap
    (no trimming). Process-wide and idempotent; a no-op (False) without glibc. DenoiseEnv
    calls it for CPU devices unless ``HEAR_VEC_KEEP_MALLOC=1`` is set in the environment."""
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(
            libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False
    _ALLOCATOR_TUNED = ok
    return ok


@dataclass
class EnvState:
    """Batched state of ``num_envs`` episodes (all tensors on the env's device)."""

    clean: Tensor            # [B, T] reference speech of the segment
    noisy: Tensor            # [B, T] the episode's input
    current: Tensor          # [B, T] audio after the steps taken so far
    lengths: Tensor          # [B] valid samples
    step: Tensor             # [B] steps taken in the episode
    prev_method: Tensor      # [B] method of the last step (−1 before the first)
    prev_knobs: Tensor       # [B, 3] knobs of the last step (0 before the first)
    noisy_features: Tensor   # [B, 133] features of the noisy segment (computed once per reset)
    si_sdr_start: Tensor     # [B] SI-SDR of the noisy segment
    si_sdr: Tensor           # [B] SI-SDR of the current audio
    stoi_start: Tensor       # [B] STOI of the noisy segment (0 when STOI is not tracked)
    stoi: Tensor             # [B] last measured STOI
    estoi_start: Tensor      # [B]
    estoi: Tensor            # [B]
    episode_return: Tensor   # [B] reward summed over the episode so far
    draws: Tensor            # [] number of fresh draws so far (the RNG counter)
    stats: Tensor            # [len(EPISODE_STATS)] float64 accumulators over finished episodes
    spec: Tensor             # [B, 513, N] complex STFT of ``current`` (features and the next
    #                          denoise share it: one STFT per step instead of two)
    power: Tensor            # [B, 513, N] its re^2 + im^2 (the features' power spectrum; the
    #                          next denoise takes |X| from it)
    quality: StoiReference | None = None  # clean-side STOI/ESTOI work of the episode (fixed
    #                          clean reference: resampling, silent frames, clean envelopes)
    si_ref: SiSdrReference | None = None  # zero-mean clean target and its energy

    def where(self, mask: Tensor, other: EnvState) -> EnvState:
        """Rows of ``self`` where mask [B] is True, of ``other`` elsewhere; the unbatched
        ``draws`` and ``stats`` come from ``self``."""

        def pick(a: Tensor, b: Tensor) -> Tensor:
            return torch.where(mask.reshape(mask.shape + (1,) * (a.dim() - 1)), a, b)

        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            a, b = getattr(self, field.name), getattr(other, field.name)
            if field.name in ("draws", "stats") or a is None:
                out[field.name] = a
            elif isinstance(a, tuple):
                out[field.name] = type(a)(*(pick(x, y) for x, y in zip(a, b)))
            else:
                out[field.name] = pick(a, b)
        return EnvState(**out)


class DenoiseEnv:
    """Vectorized denoising environment (see the module docstring for the reward).

    Args:
        data: "synthetic", a meta.csv path, a clean/+noisy/ folder, or a Corpus.
        num_envs: episodes stepped together (B).
        device: where everything lives.
        max_steps: denoisers per episode (episode length).
        reward_scale: divides the SI-SDR gain (dB).
        stoi_weight, estoi_weight: weights of the STOI / ESTOI gains.
        quality_interval: measure STOI/ESTOI every this many steps (and at the last);
            0 = only at the last step.
        diversity_weight: w of the method-diversity term.
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
        segment_seconds: float = 2.0,
        min_segment_seconds: float = 1.0,
        seed: int = 0,
        track_quality: bool = False,
        normalizer: RunningNormalizer | None = None,
        update_normalizer: bool = True,
        compile: bool = False,
        compile_backend: str = "inductor",
        clean_dir: str | Path | None = None,
        noise_dir: str | Path | None = None,
        snr_range: tuple[float, float] = (-5.0, 15.0),
        sample_rate: int = 16000,
    ) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        if int(max_steps) < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        if not reward_scale > 0:
            raise ValueError(f"reward_scale must be positive, got {reward_scale}")
        if int(quality_interval) < 0:
            raise ValueError(f"quality_interval must be >= 0, got {quality_interval}")
        if not 0 < min_segment_seconds <= segment_seconds:
            raise ValueError("need 0 < min_segment_seconds <= segment_seconds, got "
                             f"{min_segment_seconds} and {segment_seconds}")
        for name, value in (("stoi_weight", stoi_weight), ("estoi_weight", estoi_weight),
                            ("diversity_weight", diversity_weight)):
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
        self.device = torch.device(device)
        if self.device.type == "cpu" and os.environ.get("HEAR_VEC_KEEP_MALLOC") != "1":
            tune_cpu_allocator()
        self.corpus = (data.to(self.device) if isinstance(data, Corpus) else
                       load_corpus(data, clean_dir=clean_dir, noise_dir=noise_dir,
                                   snr_range=snr_range, sample_rate=sample_rate,
                                   device=self.device, seed=seed))
        self.sample_rate = self.corpus.sample_rate
        self.num_envs = int(num_envs)
        self.max_steps = int(max_steps)
        self.reward_scale = float(reward_scale)
        self.stoi_weight = float(stoi_weight)
        self.estoi_weight = float(estoi_weight)
        self.quality_interval = int(quality_interval)
        self.diversity_weight = float(diversity_weight)
        self.segment_samples = int(round(segment_seconds * self.sample_rate))
        self.min_samples = max(1, int(round(min_segment_seconds * self.sample_rate)))
        self.measure_stoi = track_quality or self.stoi_weight != 0.0
        self.measure_estoi = track_quality or self.estoi_weight != 0.0
        self.methods = METHODS
        self.num_methods = len(METHODS)
        self.observation_dim = observation_dim(self.num_methods)
        self.action_spec = ActionSpec(num_methods=self.num_methods, knob_low=(0.0, 0.0, 0.0),
                                      knob_high=(1.0, 1.0, 1.0))
        self.normalizer = (normalizer if normalizer is not None else
                           RunningNormalizer(self.observation_dim, 2 * NUM_FEATURES)).to(
                               self.device)
        self.update_normalizer = update_normalizer
        self.key = rng.make_key(seed, self.device)
        self._compile = compile
        self._compile_backend = compile_backend
        self._step_fns: dict[tuple[bool, bool], Any] = {}
        self._reset_fn: Any = None
        self.state: EnvState | None = None
        self._phase = 0  # steps taken since the last reset, identical for every row

    # ----------------------------------------------------------------------------------
    # pure functions of the state
    def _fresh(self, draws: Tensor) -> tuple[EnvState, Tensor]:
        """Fresh episode starts for every row (key = fold_in(seed key, draws)) and their raw
        first observation."""
        seg = self.corpus.draw(rng.fold_in(self.key, draws), self.num_envs,
                               self.segment_samples, self.min_samples)
        return self._start(seg, draws + 1)

    def _start(self, seg: Segments, draws: Tensor) -> tuple[EnvState, Tensor]:
        """Episode starts on the given segments, and their raw first observation."""
        noisy = dsp.zero_beyond(seg.noisy, seg.lengths)  # a no-op for corpus draws
        spec = dsp.stft(noisy)
        power = spec.real.square() + spec.imag.square()
        features = features_from_stft(power, noisy, seg.lengths, self.sample_rate)
        si_ref = si_sdr_reference(seg.clean, seg.lengths)
        si0 = si_sdr_from_reference(si_ref, seg.noisy, seg.lengths)
        zeros = torch.zeros_like(si0)
        quality, stoi0, estoi0 = None, zeros, zeros
        if self.measure_stoi or self.measure_estoi:
            quality = stoi_reference(seg.clean, self.sample_rate, seg.lengths,
                                     standard=self.measure_stoi, extended=self.measure_estoi)
            stoi0, estoi0 = self._quality(quality, noisy, zeros)
        b = seg.noisy.shape[0]
        step = torch.zeros(b, dtype=torch.long, device=seg.noisy.device)
        prev_method = torch.full((b,), -1, dtype=torch.long, device=seg.noisy.device)
        prev_knobs = torch.zeros(b, 3, dtype=seg.noisy.dtype, device=seg.noisy.device)
        state = EnvState(
            clean=seg.clean, noisy=seg.noisy, current=seg.noisy, lengths=seg.lengths,
            step=step, prev_method=prev_method, prev_knobs=prev_knobs,
            noisy_features=features, si_sdr_start=si0, si_sdr=si0,
            stoi_start=stoi0, stoi=stoi0, estoi_start=estoi0, estoi=estoi0,
            episode_return=zeros, draws=draws,
            stats=torch.zeros(len(EPISODE_STATS), dtype=torch.float64, device=self.device),
            spec=spec, power=power, quality=quality, si_ref=si_ref)
        obs = build_observation(features, features, prev_method, prev_knobs, step,
                                self.max_steps, self.num_methods)
        return state, obs

    def _quality(self, quality: StoiReference, audio: Tensor, zeros: Tensor
                 ) -> tuple[Tensor, Tensor]:
        """(STOI, ESTOI) of audio against the episode's clean reference; the processed side
        is computed once for both; zeros for a score that is not measured."""
        value, extended = stoi_from_reference(quality, audio, self.sample_rate,
                                              standard=self.measure_stoi,
                                              extended=self.measure_estoi)
        return (zeros if value is None else value), (zeros if extended is None else extended)

    def _observe(self, raw: Tensor) -> Tensor:
        if self.update_normalizer:
            self.normalizer.update(raw)
        return self.normalizer.normalize(raw)

    def _reset_impl(self, draws: Tensor) -> tuple[EnvState, Tensor]:
        state, raw = self._fresh(draws)
        return state, self._observe(raw)

    def _step_impl(self, state: EnvState, action: Tensor, *, finish: bool, measure: bool):
        method = action[:, 0].round().clamp(0, self.num_methods - 1).long()
        knobs = action[:, 1:4].to(state.current.dtype).clamp(0.0, 1.0)
        current = denoise(state.current, method, knobs, state.lengths, spec=state.spec,
                          power=state.power)
        step = state.step + 1
        terminated = step >= self.max_steps
        si = si_sdr_from_reference(state.si_ref, current, state.lengths)
        reward = (si - state.si_sdr) / self.reward_scale
        if self.diversity_weight != 0.0:
            w = self.diversity_weight
            changed = (method != state.prev_method).to(reward.dtype)
            diversity = changed * w - (1.0 - changed) * (0.5 * w)
            reward = reward + torch.where(state.step == 0, torch.zeros_like(reward), diversity)
        stoi_now, estoi_now = state.stoi, state.estoi
        measuring = terminated
        if self.quality_interval > 0:
            measuring = measuring | (step % self.quality_interval == 0)
        nan = torch.full_like(reward, float("nan"))
        info: dict[str, Tensor] = {}
        if measure and state.quality is not None:
            values = self._quality(state.quality, current, torch.zeros_like(reward))
            now = {"stoi": state.stoi, "estoi": state.estoi}
            for name, value, on, weight in zip(
                    ("stoi", "estoi"), values, (self.measure_stoi, self.measure_estoi),
                    (self.stoi_weight, self.estoi_weight)):  # static: two scores
                if not on:
                    continue
                gain = torch.where(measuring, value - now[name], torch.zeros_like(value))
                if weight != 0.0:
                    reward = reward + weight * gain
                now[name] = torch.where(measuring, value, now[name])
                info[name] = torch.where(measuring, value, nan)
            stoi_now, estoi_now = now["stoi"], now["estoi"]
        episode_return = state.episode_return + reward
        done = terminated.to(torch.float64)
        stats = state.stats + torch.stack([
            done.sum(),
            (episode_return.to(torch.float64) * done).sum(),
            (episode_return.to(torch.float64).square() * done).sum(),
            ((si - state.si_sdr_start).to(torch.float64) * done).sum(),
            ((stoi_now - state.stoi_start).to(torch.float64) * done).sum(),
            ((estoi_now - state.estoi_start).to(torch.float64) * done).sum(),
        ])
        spec = dsp.stft(current)  # current is zero beyond lengths (denoise's output)
        power = spec.real.square() + spec.imag.square()
        features = features_from_stft(power, current, state.lengths, self.sample_rate)
        final_raw = build_observation(state.noisy_features, features, method, knobs, step,
                                      self.max_steps, self.num_methods)
        after = dataclasses.replace(
            state, current=current, step=step, prev_method=method, prev_knobs=knobs,
            si_sdr=si, stoi=stoi_now, estoi=estoi_now, episode_return=episode_return,
            stats=stats, spec=spec, power=power)
        info.update(si_sdr=si, si_sdr_start=state.si_sdr_start, episode_return=episode_return,
                    method=method, knobs=knobs)
        if finish:
            # same-step autoreset: the finished rows take the fresh draw (new randomness
            # from the counter-based key), the others keep theirs -- a masked select, no
            # branch on tensor values (with the shared episode clock every row finishes here)
            fresh, fresh_raw = self._fresh(state.draws)
            fresh.stats = stats
            new_state = fresh.where(terminated, after)
            raw = torch.where(terminated.unsqueeze(-1), fresh_raw, final_raw)
        else:
            new_state, raw = after, final_raw
        obs = self._observe(raw)
        info["final_observation"] = self.normalizer.normalize(final_raw)
        truncated = torch.zeros_like(terminated)
        return new_state, obs, reward, terminated, truncated, info

    # ----------------------------------------------------------------------------------
    # the gym-style surface
    def _fn(self, finish: bool, measure: bool):
        key = (finish, measure)
        if key not in self._step_fns:
            def fn(state, action, _finish=finish, _measure=measure):
                return self._step_impl(state, action, finish=_finish, measure=_measure)
            self._step_fns[key] = (torch.compile(fn, fullgraph=True,
                                                 backend=self._compile_backend)
                                   if self._compile else fn)
        return self._step_fns[key]

    def reset(self, draws: int | None = None, seed: int | None = None) -> Tensor:
        """Start a new episode in every row; returns the normalized observation [B, D].

        ``seed`` re-keys the counter-based RNG (and sets the counter to 0 unless ``draws`` is
        given): the same seed replays the same episodes. ``draws`` sets the RNG counter first
        (e.g. 0 to replay the same evaluation segments every time, or a saved counter on
        resume); by default the stream continues."""
        if seed is not None:
            self.key = rng.make_key(int(seed), self.device)
            draws = 0 if draws is None else draws
        if draws is not None:
            draws_t = torch.tensor(int(draws), dtype=torch.long, device=self.device)
        elif self.state is not None:
            draws_t = self.state.draws
        else:
            draws_t = torch.zeros((), dtype=torch.long, device=self.device)
        draws = draws_t
        stats = self.state.stats if self.state is not None else None
        if self._reset_fn is None:
            self._reset_fn = (torch.compile(self._reset_impl, fullgraph=True,
                                            backend=self._compile_backend)
                              if self._compile else self._reset_impl)
        with dsp.inputs_zero_beyond_lengths():
            state, obs = self._reset_fn(draws)
        if stats is not None:
            state.stats = stats
        self.state = state
        self._phase = 0
        return obs

    def start_from(self, segments: Segments) -> Tensor:
        """Start every row's episode on given segments (e.g. fixed evaluation clips) instead
        of a random draw; rows must number ``num_envs``. Later autoresets draw as usual."""
        if segments.noisy.shape[0] != self.num_envs:
            raise ValueError(f"segments must have {self.num_envs} rows, got "
                             f"{segments.noisy.shape[0]}")
        if segments.noisy.shape[-1] != self.segment_samples:
            raise ValueError(f"segments must be {self.segment_samples} samples wide (the env's "
                             f"segment_seconds), got {segments.noisy.shape[-1]}")
        draws = (self.state.draws if self.state is not None else
                 torch.zeros((), dtype=torch.long, device=self.device))
        stats = self.state.stats if self.state is not None else None
        state, raw = self._start(segments, draws)  # (given segments: masked as usual)
        if stats is not None:
            state.stats = stats
        self.state = state
        self._phase = 0
        return self._observe(raw)

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
        phase = self._phase + 1
        finish = phase >= self.max_steps
        measure = finish or (self.quality_interval > 0 and phase % self.quality_interval == 0)
        with dsp.inputs_zero_beyond_lengths():  # segments and denoised audio are
            self.state, obs, reward, terminated, truncated, info = self._fn(finish, measure)(
                self.state, action)
        self._phase = 0 if finish else phase
        return obs, reward, terminated, truncated, info

    def draw_counter(self) -> int:
        """The RNG counter (host read; for checkpoints)."""
        return 0 if self.state is None else int(self.state.draws)

    def episode_stats(self, reset: bool = True) -> dict[str, float]:
        """Read the episode accumulators back to the host (one sync; call every N steps):
        episodes finished, mean return, return std, mean SI-SDR / STOI / ESTOI gains."""
        if self.state is None:
            return {}
        values = self.state.stats.tolist()
        if reset:
            self.state.stats = torch.zeros_like(self.state.stats)
        n = values[0]
        if n == 0:
            return {"episodes": 0.0}
        mean_return = values[1] / n
        out = {"episodes": n, "return": mean_return,
               "return_std": math.sqrt(max(values[2] / n - mean_return**2, 0.0)),
               "si_sdr_gain": values[3] / n}
        if self.measure_stoi:
            out["stoi_gain"] = values[4] / n
        if self.measure_estoi:
            out["estoi_gain"] = values[5] / n
        return out
