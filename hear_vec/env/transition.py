"""The one transition of the denoising environment, as pure functions (gymnax's shape).

Why one module of ~450 lines: it is the env's pure transition function (params, state) ->
state', in the order one step runs -- start / reset / observe / step -- over one state
dataclass; this docstring is its specification. DenoiseEnv, the rollout and the vector
wrappers are elsewhere (:mod:`hear_vec.env.denoise_env`, :mod:`hear_vec.env.rollout`,
:mod:`hear_vec.env.vector`).

    state = reset(params, key)                          fresh episodes drawn from the corpus
    state = start(params, segments, key)                episodes on given audio (inference)
    obs   = observe(params, state)                      raw observation [B, D]
    state, obs, reward, terminated, truncated, info = step(params, state, action)

``EnvParams`` holds the static settings (Python values, a corpus reference); ``EnvState`` the
batched tensors. :class:`~hear_vec.env.DenoiseEnv` (training, evaluation), the interop views
and :class:`~hear_vec.inference.DenoisingAgent` (infer.py, evaluate) all step through these
functions, so inference sees exactly the observations training saw. Observations are *raw*:
normalization (a running mean / std that training updates and ``model.pt`` stores) is the
caller's, applied to this output alike everywhere.

One step, per row b (method k = round(action[b, 0]), knobs = clamp(action[b, 1:4], 0, 1)):

    current' = denoise(current, k, knobs)                 (k = stop: current' = current)
    reward   = (SI-SDR(current') - SI-SDR(current)) / reward_scale
               + stoi_weight * dSTOI + estoi_weight * dESTOI + diversity
               - worse_penalty * max(0, SI-SDR(noisy) - SI-SDR(current')) / reward_scale
                 (that last term on the step that ends the episode only)
    diversity = +w if k != previous method, -w/2 if equal, 0 on the first step and on stop
    terminated = (step' >= max_steps) | (k == stop)

worse_penalty w makes an episode that ends below its input cost (1 + w) times its loss: the
SI-SDR terms telescope to (SI-SDR(final) - SI-SDR(noisy)) / reward_scale, and the final-step
term adds w times that difference where it is negative (the "best of {input, output}" shaping
of issue 10: stopping at once, i.e. the identity, is never penalized).

dSTOI / dESTOI are taken on measuring steps (every ``quality_interval`` steps and at the
episode's end; only at the end when the interval is 0), each against the previous measured
value (the noisy segment's at the start), so the quality terms of an episode also telescope.

Per-row episode clock: ``state.step`` counts each row's steps, so rows end at different steps
(the optional stop action, id ``len(METHODS)``, ends a row's episode and keeps its audio).
Autoreset is same-step and a masked select: the rows that terminate take the rows of one fresh
draw (key ``fold_in(state.key, state.counter)``), the others keep theirs bit for bit.
``state.counter`` advances by one every step whether or not a row finishes, so the fresh draw
of a step does not depend on which rows finished before.

Shared-clock fast path: ``step(..., may_finish=False)`` skips the fresh draw and
``may_measure=False`` the STOI pass. A caller may pass them only when it knows that no row
finishes / measures at this step (DenoiseEnv does, from a host-side phase, when every row
started together and no stop action exists); the results are then identical, because the
masked selects they skip would pick nothing.

Without autoreset (``EnvParams.autoreset=False``, inference and fixed-clip evaluation) rows
that terminated stay as they were (``state.done``) for the remaining steps.

Work shared across an episode's steps is kept in the state: the clean side of STOI / ESTOI and
of SI-SDR (fixed per episode), the features of the noisy and the current audio, and the STFT of
the current audio (taken once per step for the features and reused by the next denoiser).

Zero padding: every audio tensor of the state is zero beyond ``lengths`` (:func:`start` zeroes
the padding of the segments, the denoisers return zeros there), so the calls into ops, features
and metrics pass ``zero_padded=True`` and skip their masking passes (same results; an explicit
argument, not a process-wide switch).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hear_vec import dsp, rng
from hear_vec.data import Corpus, Segments
from hear_vec.env.observation import build_observation, observation_dim
from hear_vec.env.spaces import ActionSpec
from hear_vec.features import NUM_FEATURES, features_from_stft
from hear_vec.features.floor import NUM_FLOOR_FEATURES, floor_features
from hear_vec.metrics import (
    SiSdrReference,
    StoiReference,
    si_sdr_from_reference,
    si_sdr_reference,
    stoi_from_reference,
    stoi_reference,
)
from hear_vec.ops import METHODS, denoise

__all__ = ["EnvParams", "EnvState", "EPISODE_STATS", "reset", "start", "observe", "step",
           "decode_action", "derived_fields", "DERIVED", "STOP"]

#: names of the on-device accumulators over finished episodes (``EnvState.stats``)
EPISODE_STATS = ("episodes", "return", "return_sq", "si_sdr_gain", "stoi_gain", "estoi_gain",
                 "length", "stopped")
#: method id of the stop action (when ``EnvParams.stop_action``): one past the denoisers
STOP = len(METHODS)


@dataclass(frozen=True)
class EnvParams:
    """Static settings of the transition (a change of any of them means a new compile).

    corpus: what :func:`reset` and autoresets draw from (None: only :func:`start` works).
    num_envs: rows B. segment_samples / min_samples: widest and shortest drawn segment.
    max_steps: most denoisers per episode. stop_action: add the stop action (id ``STOP``).
    reward_scale, stoi_weight, estoi_weight, quality_interval, diversity_weight,
    worse_penalty: the reward.
    measure_stoi / measure_estoi: compute the scores on measuring steps (True whenever their
    weight is non-zero; also for evaluation statistics). score: False when there is no clean
    reference (inference): rewards and scores are zero. autoreset: same-step autoreset (else
    finished rows stay put). sample_rate: of the audio, in Hz. floor_features: add the 34
    noise-floor features (:mod:`hear_vec.features.floor`) to the seed's 133 per signal.
    """

    corpus: Corpus | None = None
    num_envs: int = 64
    segment_samples: int = 32000
    min_samples: int = 16000
    max_steps: int = 3
    stop_action: bool = False
    reward_scale: float = 5.0
    stoi_weight: float = 0.0
    estoi_weight: float = 0.0
    quality_interval: int = 0
    diversity_weight: float = 0.0
    worse_penalty: float = 0.0
    measure_stoi: bool = False
    measure_estoi: bool = False
    score: bool = True
    autoreset: bool = True
    sample_rate: int = 16000
    floor_features: bool = False

    def __post_init__(self) -> None:
        if self.num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {self.num_envs}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}")
        if not self.reward_scale > 0:
            raise ValueError(f"reward_scale must be positive, got {self.reward_scale}")
        if not self.worse_penalty >= 0:
            raise ValueError(f"worse_penalty must be >= 0, got {self.worse_penalty}")
        if self.quality_interval < 0:
            raise ValueError(f"quality_interval must be >= 0, got {self.quality_interval}")
        if not 1 <= self.min_samples <= self.segment_samples:
            raise ValueError("need 1 <= min_samples <= segment_samples, got "
                             f"{self.min_samples} and {self.segment_samples}")
        if self.stoi_weight != 0.0 and not self.measure_stoi:
            object.__setattr__(self, "measure_stoi", True)
        if self.estoi_weight != 0.0 and not self.measure_estoi:
            object.__setattr__(self, "measure_estoi", True)

    @property
    def num_methods(self) -> int:
        """Denoisers (the observation's one-hot width)."""
        return len(METHODS)

    @property
    def action_spec(self) -> ActionSpec:
        """Method ids 0..K-1 (denoisers) and K (stop, when enabled); three knobs in [0, 1]."""
        return ActionSpec(num_methods=len(METHODS) + int(self.stop_action),
                          knob_low=(0.0, 0.0, 0.0), knob_high=(1.0, 1.0, 1.0))

    @property
    def feature_dim(self) -> int:
        """Audio features per signal (F): 133, or 167 with the noise-floor features."""
        return NUM_FEATURES + (NUM_FLOOR_FEATURES if self.floor_features else 0)

    @property
    def observation_dim(self) -> int:
        return observation_dim(len(METHODS), self.feature_dim)

    @property
    def quality(self) -> bool:
        """Whether episodes carry the clean-side STOI / ESTOI work."""
        return self.score and (self.measure_stoi or self.measure_estoi)


@dataclass
class EnvState:
    """Batched state of B episodes (every tensor on one device)."""

    key: Tensor              # [] int64 RNG key of the episode stream
    counter: Tensor          # [] int64 steps since reset; the next fresh draw uses
    #                          fold_in(key, counter + 1)
    clean: Tensor            # [B, T] reference speech (zeros when not scoring)
    noisy: Tensor            # [B, T] the episode's input, zero beyond lengths
    current: Tensor          # [B, T] audio after the steps taken so far
    lengths: Tensor          # [B] int64 valid samples
    step: Tensor             # [B] int64 steps taken in the episode
    done: Tensor             # [B] bool episode over (stays False under autoreset)
    prev_method: Tensor      # [B] int64 method of the last step (-1 before the first)
    prev_knobs: Tensor       # [B, 3] knobs of the last step (0 before the first)
    noisy_features: Tensor   # [B, F] features of the noisy segment
    features: Tensor         # [B, F] features of the current audio
    si_sdr_start: Tensor     # [B] SI-SDR of the noisy segment (0 when not scoring)
    si_sdr: Tensor           # [B] SI-SDR of the current audio
    stoi_start: Tensor       # [B] STOI of the noisy segment (0 when not measured)
    stoi: Tensor             # [B] last measured STOI
    estoi_start: Tensor      # [B]
    estoi: Tensor            # [B]
    episode_return: Tensor   # [B] reward summed over the episode so far
    stats: Tensor            # [len(EPISODE_STATS)] float64 sums over finished episodes
    spec: Tensor             # [B, 513, N] complex STFT of ``current``
    power: Tensor            # [B, 513, N] |spec|^2
    quality: StoiReference | None = None  # clean-side STOI / ESTOI work of the episode
    si_ref: SiSdrReference | None = None  # zero-mean clean target and its energy

    #: fields that are not per-row (``where`` keeps them from ``self``)
    UNBATCHED = ("key", "counter", "stats")

    def where(self, mask: Tensor, other: EnvState) -> EnvState:
        """Rows of ``self`` where ``mask`` [B] is True, of ``other`` elsewhere; ``key``,
        ``counter`` and ``stats`` come from ``self``."""

        def pick(a: Tensor, b: Tensor) -> Tensor:
            return torch.where(mask.reshape(mask.shape + (1,) * (a.dim() - 1)), a, b)

        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            a, b = getattr(self, field.name), getattr(other, field.name)
            if field.name in self.UNBATCHED or a is None:
                out[field.name] = a
            elif isinstance(a, tuple):
                out[field.name] = type(a)(*(pick(x, y) for x, y in zip(a, b)))
            else:
                out[field.name] = pick(a, b)
        return EnvState(**out)


# ----------------------------------------------------------------------------------------------
def _quality_scores(params: EnvParams, quality: StoiReference, audio: Tensor, zeros: Tensor
                    ) -> tuple[Tensor, Tensor]:
    """(STOI, ESTOI) of ``audio`` against the episode's clean reference; zeros for a score that
    is not measured."""
    value, extended = stoi_from_reference(quality, audio, params.sample_rate,
                                          standard=params.measure_stoi,
                                          extended=params.measure_estoi, zero_padded=True)
    return (zeros if value is None else value), (zeros if extended is None else extended)


def _stft(audio: Tensor) -> tuple[Tensor, Tensor]:
    """The STFT of audio and its power re^2 + im^2 (what the next denoiser reuses)."""
    spec = dsp.stft(audio)
    return spec, spec.real.square() + spec.imag.square()


def _references(params: EnvParams, clean: Tensor, lengths: Tensor
                ) -> tuple[SiSdrReference, StoiReference | None]:
    """The clean-side SI-SDR and (when measured) STOI / ESTOI work of scored episodes."""
    si_ref = si_sdr_reference(clean, lengths, zero_padded=True)
    quality = None
    if params.quality:
        quality = stoi_reference(clean, params.sample_rate, lengths,
                                 standard=params.measure_stoi, extended=params.measure_estoi,
                                 zero_padded=True)
    return si_ref, quality


def _analysis(params: EnvParams, audio: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(STFT, power, F features) of audio that is zero beyond lengths."""
    spec, power = _stft(audio)
    features = features_from_stft(power, audio, lengths, params.sample_rate, zero_padded=True)
    if params.floor_features:
        features = torch.cat([features, floor_features(power, lengths, params.sample_rate)], -1)
    return spec, power, features


def start(params: EnvParams, segments: Segments, key: Tensor | None = None,
          counter: Tensor | int = 0) -> EnvState:
    """Episodes on the given segments (rows B = the segments'; any width T).

    ``segments.clean`` may be None when ``params.score`` is False. Samples beyond ``lengths``
    are zeroed here. ``key`` / ``counter`` seed later autoresets (default: key of seed 0)."""
    noisy = segments.noisy
    device = noisy.device
    lengths = segments.lengths.to(device=device, dtype=torch.long)
    valid = torch.arange(noisy.shape[-1], device=device) < lengths.unsqueeze(-1)
    noisy = torch.where(valid, noisy, 0.0)
    b = noisy.shape[0]
    zeros = noisy.new_zeros(b)
    spec, power, features = _analysis(params, noisy, lengths)
    si_ref, quality = None, None
    si0, stoi0, estoi0 = zeros, zeros, zeros
    clean = segments.clean
    if params.score:
        if clean is None:
            raise ValueError("scoring episodes (EnvParams.score) needs clean segments")
        clean = torch.where(valid, clean.to(noisy.dtype), 0.0)
        si_ref, quality = _references(params, clean, lengths)
        si0 = si_sdr_from_reference(si_ref, noisy, lengths, zero_padded=True)
        if quality is not None:
            stoi0, estoi0 = _quality_scores(params, quality, noisy, zeros)
    else:
        clean = torch.zeros_like(noisy)
    if key is None:
        key = rng.make_key(0, device)
    return EnvState(
        key=key, counter=torch.as_tensor(counter, dtype=torch.long, device=device),
        clean=clean, noisy=noisy, current=noisy, lengths=lengths,
        step=torch.zeros(b, dtype=torch.long, device=device),
        done=torch.zeros(b, dtype=torch.bool, device=device),
        prev_method=torch.full((b,), -1, dtype=torch.long, device=device),
        prev_knobs=noisy.new_zeros(b, 3),
        noisy_features=features, features=features,
        si_sdr_start=si0, si_sdr=si0, stoi_start=stoi0, stoi=stoi0,
        estoi_start=estoi0, estoi=estoi0, episode_return=zeros,
        stats=torch.zeros(len(EPISODE_STATS), dtype=torch.float64, device=device),
        spec=spec, power=power, quality=quality, si_ref=si_ref)


#: EnvState fields that are functions of the others (the STFT of ``current``, the clean-side
#: SI-SDR / STOI work): checkpoints leave them out and :func:`derived_fields` recomputes them
DERIVED = ("spec", "power", "si_ref", "quality")


def derived_fields(params: EnvParams, clean: Tensor, current: Tensor, lengths: Tensor
                   ) -> dict[str, Any]:
    """The :data:`DERIVED` fields of a state, by the functions :func:`start` and :func:`step`
    call (so, on one device in eager mode, the same values bit for bit)."""
    spec, power = _stft(current)
    si_ref, quality = _references(params, clean, lengths) if params.score else (None, None)
    return {"spec": spec, "power": power, "si_ref": si_ref, "quality": quality}


def _draw(params: EnvParams, key: Tensor, counter: Tensor) -> Segments:
    if params.corpus is None:
        raise ValueError("EnvParams.corpus is None: nothing to draw episodes from")
    return params.corpus.draw(rng.fold_in(key, counter), params.num_envs,
                              params.segment_samples, params.min_samples)


def reset(params: EnvParams, key: Tensor, counter: Tensor | int = 0) -> EnvState:
    """Fresh episodes in every row, drawn with ``fold_in(key, counter)`` (counter 0: the
    stream's start; a saved counter continues a stream)."""
    counter_t = torch.as_tensor(counter, dtype=torch.long, device=key.device)
    return start(params, _draw(params, key, counter_t), key, counter_t)


def observe(params: EnvParams, state: EnvState) -> Tensor:
    """Raw observation [B, D] of the state (see :mod:`hear_vec.env.observation`)."""
    return build_observation(state.noisy_features, state.features, state.prev_method,
                             state.prev_knobs, state.step, params.max_steps, params.num_methods)


def decode_action(params: EnvParams, action: Tensor, dtype: torch.dtype
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """(chosen [B] long, knobs [B, 3] in [0, 1], stop [B] bool) of an action [B, 4] =
    (method id as a float, strength, smoothing, band_mix). Method ids are rounded and clamped
    to the action space (0..K-1 denoisers, K = stop when enabled)."""
    top = params.action_spec.num_methods - 1
    chosen = action[:, 0].round().clamp(0, top).long()
    stop = chosen == STOP if params.stop_action else torch.zeros_like(chosen, dtype=torch.bool)
    return chosen, action[:, 1:4].to(dtype).clamp(0.0, 1.0), stop


def step(params: EnvParams, state: EnvState, action: Tensor, *, may_finish: bool = True,
         may_measure: bool = True) -> tuple[EnvState, Tensor, Tensor, Tensor, Tensor,
                                            dict[str, Tensor]]:
    """One step of every row (see the module docstring). Returns ``(state', obs, reward,
    terminated, truncated, info)``; ``obs`` is raw, and after an autoreset it is the fresh
    episode's first observation while ``info["final_observation"]`` is the finished one's last.
    ``info`` also holds ``si_sdr`` / ``si_sdr_start`` (after the step / of the noisy input),
    ``episode_return``, ``method`` (the chosen id, ``STOP`` included) / ``knobs``, ``stop``,
    ``step`` (the row's step count after this step, before any reset) and, on measuring
    steps, ``stoi`` / ``estoi`` (NaN on rows that did not measure)."""
    chosen, knobs, stop = decode_action(params, action, state.current.dtype)
    stop_col = stop.unsqueeze(-1)
    # a stopping row runs a denoiser at strength 0 (the identity) to keep shapes static
    method = chosen.clamp_max(len(METHODS) - 1)
    denoised = denoise(state.current, method, torch.where(stop_col, 0.0, knobs), state.lengths,
                       spec=state.spec, power=state.power, zero_padded=True)
    current = torch.where(stop_col, state.current, denoised)
    step_count = state.step + 1
    terminated = (step_count >= params.max_steps) | stop
    zeros = torch.zeros_like(state.si_sdr)
    if params.score:
        si = si_sdr_from_reference(state.si_ref, current, state.lengths, zero_padded=True)
        reward = (si - state.si_sdr) / params.reward_scale
    else:
        si, reward = zeros, zeros
    if params.diversity_weight != 0.0:
        w = params.diversity_weight
        changed = (method != state.prev_method).to(reward.dtype)
        diversity = changed * w - (1.0 - changed) * (0.5 * w)
        reward = reward + torch.where((state.step == 0) | stop, zeros, diversity)
    if params.score and params.worse_penalty != 0.0:
        loss = (state.si_sdr_start - si).clamp_min(0.0) / params.reward_scale
        reward = reward - params.worse_penalty * torch.where(terminated, loss, zeros)
    measuring = terminated
    if params.quality_interval > 0:
        measuring = measuring | (step_count % params.quality_interval == 0)
    info: dict[str, Tensor] = {}
    scores = {"stoi": state.stoi, "estoi": state.estoi}
    if may_measure and state.quality is not None:
        values = _quality_scores(params, state.quality, current, zeros)
        nan = torch.full_like(reward, float("nan"))
        for (name, previous), value, on, weight in zip(
                scores.items(), values, (params.measure_stoi, params.measure_estoi),
                (params.stoi_weight, params.estoi_weight)):  # static: two scores
            if not on:
                continue
            if weight != 0.0:
                reward = reward + weight * torch.where(measuring, value - previous, zeros)
            scores[name] = torch.where(measuring, value, previous)
            info[name] = torch.where(measuring, value, nan)
    spec, power, features = _analysis(params, current, state.lengths)
    episode_return = state.episode_return + reward
    after = dataclasses.replace(
        state, counter=state.counter + 1, current=current, step=step_count, done=terminated,
        prev_method=torch.where(stop, state.prev_method, method),
        prev_knobs=torch.where(stop_col, state.prev_knobs, knobs), features=features, si_sdr=si,
        stoi=scores["stoi"], estoi=scores["estoi"], episode_return=episode_return,
        spec=spec, power=power)
    if not params.autoreset:
        # finished rows keep their final state (their reward is 0 and they stay terminated)
        frozen = state.done
        after = state.where(frozen, after)
        after.counter, after.stats = state.counter + 1, state.stats
        reward = torch.where(frozen, zeros, reward)
        terminated = terminated | frozen
        episode_return = after.episode_return
    ended = (terminated & ~state.done).to(torch.float64)
    after.stats = state.stats + torch.stack([
        ended.sum(),
        (episode_return.to(torch.float64) * ended).sum(),
        (episode_return.to(torch.float64).square() * ended).sum(),
        ((after.si_sdr - after.si_sdr_start).to(torch.float64) * ended).sum(),
        ((after.stoi - after.stoi_start).to(torch.float64) * ended).sum(),
        ((after.estoi - after.estoi_start).to(torch.float64) * ended).sum(),
        (after.step.to(torch.float64) * ended).sum(),
        (stop.to(torch.float64) * ended).sum(),
    ])
    final_obs = observe(params, after)
    info.update(si_sdr=after.si_sdr, si_sdr_start=after.si_sdr_start,
                episode_return=episode_return, method=chosen, knobs=knobs, stop=stop,
                step=after.step, final_observation=final_obs)
    new_state, obs = after, final_obs
    if params.autoreset and may_finish:
        # same-step autoreset: finished rows take the rows of one fresh draw (new randomness
        # from the counter-based key), the others keep theirs -- a masked select
        fresh = start(params, _draw(params, state.key, after.counter), state.key, after.counter)
        new_state = fresh.where(terminated, after)
        new_state.key, new_state.counter, new_state.stats = state.key, after.counter, after.stats
        obs = torch.where(terminated.unsqueeze(-1), observe(params, fresh), final_obs)
    if params.autoreset:
        new_state.done = torch.zeros_like(terminated)
    truncated = torch.zeros_like(terminated)
    return new_state, obs, reward, terminated, truncated, info
