"""A one-episode-at-a-time CPU loop in the style of the seed (HEAR), for speed comparisons.

What one step costs in the seed's style (numpy / scipy / librosa / pywt / pystoi, one clip at
a time, a batch-1 torch MLP policy), doing the same work per step as :class:`hear_vec.DenoiseEnv`
so that the two rates compare like with like:

* reset: draw one segment (from the same corpus, batch 1), librosa features of the noisy clip,
  numpy SI-SDR, pystoi STOI / ESTOI of the noisy clip (when their weights are non-zero);
* step: act (batch-1 MLP, ``policy=True``; uniformly random otherwise, each method in turn
  from shuffled blocks so that a run's mix is exactly uniform), denoise with one of the
  seed's four methods (below), numpy SI-SDR, pystoi STOI / ESTOI on measuring steps, librosa
  features of the current audio (hear_vec's observation carries them; the seed's did not, so
  this is the same work as the engine, not less), observation + running normalization, the
  reward of DESIGN section 6.

The operators are the seed's (DESIGN section 5), on ``librosa.stft`` / ``librosa.istft``
(n_fft 1024, hop 256, periodic Hann, centered, zero padding, noisy phase kept):

* spectral_sub: floor = median_n |X|; w[f] = 1 + 2 b f / (F - 1);
  mask = clip(1 - s w floor / |X|, 0, 1) ** (1 + 2 m)
* wiener (as the seed had it, quirks included): noise = (1 - s) mean_n |X| (magnitude) against
  P = |X|^2 (power); G = P / (P + noise); output (1 - a) X + a G X, a = 0.3 + 0.7 m
* spectral_gate: thr = percentile_30(|X|) (1 + 4 m)(1 + b); gain 1 above, 1 - s below, then
  ``librosa.decompose.nn_filter(gain, aggregate=np.median, metric="cosine")``
* wavelet: ``pywt.wavedec(y, "db8", mode="periodization")``, sigma = median|cD1| / 0.6745,
  lambda = s sigma sqrt(2 ln n); detail j of the list (1 = coarsest) blended toward
  ``pywt.threshold(d, lambda, "soft")`` by m (j / J)(0.5 + b / 2); ``pywt.waverec``.

Per-phase wall times are accumulated with ``time.perf_counter`` (one clip at a time, nothing
to synchronize).
"""

from __future__ import annotations

import math
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field

import librosa
import numpy as np
import pywt
import torch
from pystoi import stoi as pystoi
from torch import nn

from hear_vec import rng
from hear_vec.data import Corpus

__all__ = ["SEED_METHODS", "SeedStyleLoop", "seed_denoise", "seed_features", "np_si_sdr",
           "ReferenceResult"]

SEED_METHODS = ("spectral_sub", "wiener", "spectral_gate", "wavelet")
N_FFT, HOP, N_MELS = 1024, 256, 64


# --------------------------------------------------------------------------------- operators
def _stft(y: np.ndarray) -> np.ndarray:
    return librosa.stft(y, n_fft=N_FFT, hop_length=HOP, window="hann", center=True,
                        pad_mode="constant")


def _istft(spec: np.ndarray, length: int) -> np.ndarray:
    return librosa.istft(spec, hop_length=HOP, n_fft=N_FFT, window="hann", center=True,
                         length=length)


def _tilt(b: float, bins: int) -> np.ndarray:
    return (1.0 + 2.0 * b * np.linspace(0.0, 1.0, bins))[:, None]


def spectral_sub(y: np.ndarray, s: float, m: float, b: float) -> np.ndarray:
    X = _stft(y)
    mag = np.abs(X)
    floor = np.median(mag, axis=1, keepdims=True)
    mask = np.clip(1.0 - s * _tilt(b, X.shape[0]) * floor / (mag + 1e-10), 0.0, 1.0)
    return _istft(X * mask ** (1.0 + 2.0 * m), len(y))


def wiener(y: np.ndarray, s: float, m: float, b: float) -> np.ndarray:
    X = _stft(y)
    mag = np.abs(X)
    power = mag ** 2
    noise = (1.0 - s) * mag.mean(axis=1, keepdims=True)  # the seed's magnitude estimate
    gain = power / (power + noise + 1e-10)
    alpha = 0.3 + 0.7 * m
    return _istft((1.0 - alpha) * X + alpha * gain * X, len(y))


def spectral_gate(y: np.ndarray, s: float, m: float, b: float) -> np.ndarray:
    X = _stft(y)
    mag = np.abs(X)
    thr = np.percentile(mag, 30, axis=1, keepdims=True) * (1.0 + 4.0 * m) * (1.0 + b)
    gain = np.where(mag > thr, 1.0, 1.0 - s).astype(mag.dtype)
    if gain.shape[1] >= 5:  # librosa's recurrence needs a few frames
        gain = librosa.decompose.nn_filter(gain, aggregate=np.median, metric="cosine")
    return _istft(X * gain, len(y))


def wavelet(y: np.ndarray, s: float, m: float, b: float) -> np.ndarray:
    coeffs = pywt.wavedec(y, "db8", mode="periodization")
    levels = len(coeffs) - 1
    if levels < 1:
        return y
    sigma = np.median(np.abs(coeffs[-1])) / 0.6745
    lam = s * sigma * math.sqrt(2.0 * math.log(max(len(y), 2)))
    for j in range(1, len(coeffs)):
        w = m * (j / levels) * (0.5 + b / 2.0)
        coeffs[j] = (1.0 - w) * coeffs[j] + w * pywt.threshold(coeffs[j], lam, "soft")
    return pywt.waverec(coeffs, "db8", mode="periodization")[: len(y)].astype(y.dtype)


_OPS = (spectral_sub, wiener, spectral_gate, wavelet)


def seed_denoise(y: np.ndarray, method: int, knobs: np.ndarray) -> np.ndarray:
    """One of the seed's four methods on one clip (knobs = strength, smoothing, band_mix)."""
    s, m, b = (float(v) for v in np.clip(knobs, 0.0, 1.0))
    return _OPS[int(method)](y, s, m, b).astype(np.float32)


# ---------------------------------------------------------------------- features and metrics
def seed_features(y: np.ndarray, sr: int) -> np.ndarray:
    """The seed's 133 features with librosa: rms, peak, log-rms, zcr, duration, 64 log-mel
    means and 64 stds."""
    rms = float(np.sqrt(np.mean(y.astype(np.float64) ** 2))) if len(y) else 0.0
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    zcr = float(librosa.feature.zero_crossing_rate(y, frame_length=2048, hop_length=HOP).mean())
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=N_FFT, hop_length=HOP,
                                         n_mels=N_MELS)
    db = librosa.power_to_db(mel)
    head = np.array([rms, peak, math.log(rms + 1e-8), zcr, len(y) / sr])
    return np.concatenate([head, db.mean(axis=1), db.std(axis=1)]).astype(np.float32)


def np_si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Zero-mean SI-SDR in dB (numpy)."""
    eps = np.finfo(np.float32).eps
    s = reference - reference.mean()
    e = estimate - estimate.mean()
    alpha = (np.dot(e, s) + eps) / (np.dot(s, s) + eps)
    target = alpha * s
    return float(10.0 * np.log10((np.dot(target, target) + eps)
                                 / (np.dot(target - e, target - e) + eps)))


def _stoi(clean: np.ndarray, processed: np.ndarray, sr: int, extended: bool) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "Not enough STFT frames"
        return float(pystoi(clean, processed, sr, extended=extended))


# ------------------------------------------------------------------------------------- loop
class _Policy(nn.Module):
    """A batch-1 MLP in the seed's style: obs -> method logits + knob means (tanh)."""

    def __init__(self, obs_dim: int, num_methods: int, hidden: int = 256) -> None:
        super().__init__()
        self.num_methods = num_methods
        self.net = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden),
                                 nn.Tanh(), nn.Linear(hidden, num_methods + 3))

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Samples the method from softmax(logits) and the knobs from tanh(mean + noise), as
        a stochastic policy acts while collecting."""
        out = self.net(torch.from_numpy(obs).unsqueeze(0))[0]
        method = int(torch.multinomial(out[: self.num_methods].softmax(-1), 1))
        knobs = 0.5 * (torch.tanh(out[self.num_methods:] + torch.randn(3)) + 1.0)
        return np.concatenate([[float(method)], knobs.numpy()])


@dataclass
class ReferenceResult:
    steps: int
    seconds: float
    steps_per_s: float
    audio_seconds_per_s: float
    phase_ms_per_step: dict[str, float] = field(default_factory=dict)
    method_ms_per_call: dict[str, float] = field(default_factory=dict)


class SeedStyleLoop:
    """One episode at a time on the CPU, same reward terms and clip length as the engine."""

    def __init__(self, corpus: Corpus, segment_samples: int, min_samples: int,
                 max_steps: int = 3, reward_scale: float = 5.0, stoi_weight: float = 0.0,
                 estoi_weight: float = 0.0, quality_interval: int = 0,
                 diversity_weight: float = 0.0, policy: bool = True, seed: int = 0) -> None:
        self.corpus = corpus.to("cpu")
        self.sr = corpus.sample_rate
        self.segment_samples, self.min_samples = segment_samples, min_samples
        self.max_steps, self.reward_scale = max_steps, reward_scale
        self.stoi_weight, self.estoi_weight = stoi_weight, estoi_weight
        self.quality_interval, self.diversity_weight = quality_interval, diversity_weight
        self.key = rng.make_key(seed + 1_000_003, "cpu")
        self.seed = seed
        self.rs = np.random.default_rng(seed)
        self._schedule: list[int] = []
        self.obs_dim = 2 * 133 + len(SEED_METHODS) + 3 + 1
        self.policy = _Policy(self.obs_dim, len(SEED_METHODS)) if policy else None
        self.episodes = 0
        self.times: dict[str, float] = defaultdict(float)
        self.method_times: dict[str, list[float]] = defaultdict(list)
        # running observation normalizer (Welford, numpy)
        self.count, self.mean = 0, np.zeros(self.obs_dim)
        self.m2 = np.zeros(self.obs_dim)

    def _tick(self, name: str, start: float) -> float:
        now = time.perf_counter()
        self.times[name] += now - start
        return now

    def _normalize(self, obs: np.ndarray) -> np.ndarray:
        self.count += 1
        delta = obs - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (obs - self.mean)
        std = np.sqrt(self.m2 / max(self.count, 1)) if self.count > 1 else np.ones_like(obs)
        return np.clip((obs - self.mean) / np.maximum(std, 1e-2), -5, 5).astype(np.float32)

    def _observation(self, step: int, prev_method: int, prev_knobs: np.ndarray) -> np.ndarray:
        onehot = np.zeros(len(SEED_METHODS))
        if prev_method >= 0:
            onehot[prev_method] = 1.0
        return self._normalize(np.concatenate([self.noisy_features, self.current_features,
                                               onehot, prev_knobs, [step / self.max_steps]]))

    def reset(self) -> np.ndarray:
        t = time.perf_counter()
        seg = self.corpus.draw(rng.fold_in(self.key, self.episodes), 1, self.segment_samples,
                               self.min_samples)
        n = int(seg.lengths[0])
        self.clean = seg.clean[0, :n].numpy().astype(np.float32)
        self.noisy = seg.noisy[0, :n].numpy().astype(np.float32)
        self.current = self.noisy
        self.episodes += 1
        t = self._tick("reset: draw", t)
        self.noisy_features = seed_features(self.noisy, self.sr)
        self.current_features = self.noisy_features
        t = self._tick("reset: features", t)
        self.si = np_si_sdr(self.noisy, self.clean)
        t = self._tick("reset: si_sdr", t)
        self.stoi = (_stoi(self.clean, self.noisy, self.sr, False) if self.stoi_weight else 0.0)
        t = self._tick("reset: stoi", t)
        self.estoi = (_stoi(self.clean, self.noisy, self.sr, True) if self.estoi_weight else 0.0)
        t = self._tick("reset: estoi", t)
        self.step_index, self.prev_method, self.prev_knobs = 0, -1, np.zeros(3)
        return self._observation(0, -1, self.prev_knobs)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        method = int(np.clip(round(float(action[0])), 0, len(SEED_METHODS) - 1))
        knobs = np.clip(np.asarray(action[1:4], dtype=np.float64), 0.0, 1.0)
        t = time.perf_counter()
        self.current = seed_denoise(self.current, method, knobs)
        now = time.perf_counter()
        self.times[f"op: {SEED_METHODS[method]}"] += now - t
        self.method_times[SEED_METHODS[method]].append(now - t)
        t = now
        self.step_index += 1
        last = self.step_index >= self.max_steps
        si = np_si_sdr(self.current, self.clean)
        reward = (si - self.si) / self.reward_scale
        self.si = si
        t = self._tick("si_sdr", t)
        if self.diversity_weight and self.prev_method >= 0:
            w = self.diversity_weight
            reward += w if method != self.prev_method else -0.5 * w
        measuring = last or (self.quality_interval > 0
                             and self.step_index % self.quality_interval == 0)
        if measuring and self.stoi_weight:
            value = _stoi(self.clean, self.current, self.sr, False)
            reward += self.stoi_weight * (value - self.stoi)
            self.stoi = value
        t = self._tick("stoi", t)
        if measuring and self.estoi_weight:
            value = _stoi(self.clean, self.current, self.sr, True)
            reward += self.estoi_weight * (value - self.estoi)
            self.estoi = value
        t = self._tick("estoi", t)
        self.current_features = seed_features(self.current, self.sr)
        t = self._tick("features", t)
        self.prev_method, self.prev_knobs = method, knobs
        obs = self._observation(self.step_index, method, knobs)
        self._tick("observation", t)
        return obs, float(reward), last

    def act(self, obs: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        if self.policy is not None:
            action = self.policy.act(obs)
        else:
            if not self._schedule:  # a shuffled block with every method once
                self._schedule = list(self.rs.permutation(len(SEED_METHODS)))
            action = np.concatenate([[float(self._schedule.pop())], self.rs.random(3)])
        self._tick("policy", t)
        return action

    def warm_up(self) -> None:
        """First calls of librosa / pystoi / pywt build caches (hundreds of ms): make them all
        once, untimed, so that no timed step pays for them."""
        y = self.corpus.draw(rng.fold_in(self.key, 10**9), 1, self.segment_samples,
                             self.segment_samples).noisy[0].numpy().astype(np.float32)
        for m in range(len(SEED_METHODS)):
            seed_denoise(y, m, np.array([0.5, 0.5, 0.5]))
        seed_features(y, self.sr)
        _stoi(y, y, self.sr, False)
        _stoi(y, y, self.sr, True)
        if self.policy is not None:
            self.policy.act(np.zeros(self.obs_dim, dtype=np.float32))

    def run(self, num_steps: int, warmup_steps: int = 3) -> ReferenceResult:
        """Step ``warmup_steps`` untimed, then ``num_steps`` (rounded up to whole episodes).

        Random actions (no policy) restart from the same seed in every run and draw the
        method from shuffled blocks holding each of the four methods once: every run steps the
        same clips with the same, exactly uniform method mix (spectral_gate alone costs ~20x
        the others), so runs differ by machine noise only."""
        self.rs = np.random.default_rng(self.seed)
        self._schedule = []
        self.episodes = 0
        obs = self.reset()
        for _ in range(warmup_steps):
            obs, _, done = self.step(self.act(obs))
            if done:
                obs = self.reset()
        self.times.clear()
        self.method_times.clear()
        episodes = max(1, -(-num_steps // self.max_steps))
        start = time.perf_counter()
        steps = 0
        for _ in range(episodes):
            obs = self.reset()
            done = False
            while not done:
                obs, _, done = self.step(self.act(obs))
                steps += 1
        seconds = time.perf_counter() - start
        phases = {k: v * 1e3 / steps for k, v in sorted(self.times.items())}
        per_call = {k: 1e3 * float(np.mean(v)) for k, v in sorted(self.method_times.items())}
        return ReferenceResult(steps, seconds, steps / seconds,
                               steps * self.segment_samples / self.sr / seconds, phases, per_call)
