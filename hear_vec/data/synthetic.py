"""The built-in synthetic corpus: speech-like utterances and noise families generated on the
device, deterministically from a seed (all randomness from :mod:`hear_vec.rng`, one key per
utterance / clip, so the audio does not depend on batching or chunking).

Speech (:func:`synthesize_speech`), a source-filter model driven at a 16 ms control rate:

- syllable clock ``theta(t) = cumsum(rate * (1 + 0.25 n(t))) dt`` with rate 3-6 Hz per
  utterance and a slow random wobble n(t); syllable ``s = floor(theta)``, phase
  ``phi = theta - s``; every syllable has random formant targets (F1 300-850, F2 850-2300,
  F3 2300-3300 Hz, scaled per speaker), a loudness, optional fricative onset / coda, and with
  probability 0.12 it is a pause (silent). Lead and trail silences of 0.1-0.3 s.
- voiced source: Rosenberg glottal pulses (opening 0.5(1 - cos(pi x / 0.4)), closing
  cos(pi (x - 0.4) / 0.32)) at a pitch ``f0(t)`` = speaker base (95-210 Hz) x declination x
  syllable accent x slow wobble x 1.5 % frame jitter, clamped to 80-250 Hz; then radiation
  (first difference).
- filter: in the STFT domain (n_fft 32 ms, hop 16 ms) the voiced spectrum is multiplied by
  ``H(f, t) = 0.03 + sum_i a_i / (1 + ((f - F_i(t)) / (B_i / 2))^2)`` with formants gliding
  between syllable targets (smoothstep), a_i = (1, 0.6, 0.3), B_i = (160, 200, 300) Hz, and
  by the voiced envelope ``sin(pi x)`` over the syllable nucleus (5 % gaps at syllable
  edges), plus -30 dB aspiration noise; fricatives are white noise high-passed by
  ``sigmoid((f - f_c) / 250 Hz)`` (f_c 2-5 kHz) under their own envelope. Inverse STFT,
  peak level -10..-1 dBFS.

Noise families (:data:`NOISE_FAMILIES`, :func:`synthesize_noise`): white; pink (1/f power);
brown (1/f^2), both rolled off below 20 Hz; babble (4-7 generated talkers, circularly
shifted, summed); hum (50 or 60 Hz and 12 harmonics, odd ones stronger, slow drift, -40 dB
hiss); band (Gaussian band in log-frequency, centre 200-4000 Hz, 0.3-1.5 octaves);
modulated (pink/white under a 0.5-4 Hz amplitude modulation and random gating); clicks
(3-12 /s decaying 1-4 kHz resonances with log-normal amplitudes over a -45 dB floor). Every
clip is normalised to unit RMS before it enters the bank.

Cost: the default corpus (256 utterances of 3-4 s, 8 x 4 clips of 6 s) takes ~3 s to build
on one CPU core (measured on an otherwise idle core).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hear_vec import rng
from hear_vec.data.bank import AudioBank, CorpusError, MixingCorpus

__all__ = ["NOISE_FAMILIES", "synthesize_speech", "synthesize_noise", "synthetic_noise_bank",
           "SyntheticCorpus"]

NOISE_FAMILIES = ("white", "pink", "brown", "babble", "hum", "band", "modulated", "clicks")

_CHUNK = 32  # utterances generated at once (bounds memory; results do not depend on it)


def _frame_params(sample_rate: int) -> tuple[int, int]:
    hop = max(1, round(sample_rate * 0.016))
    return 2 * hop, hop


def _interp_frames(values: Tensor, num_samples: int, hop: int) -> Tensor:
    """Linear interpolation of control values [n, F] at frame times k*hop to every sample."""
    frames = values.shape[1]
    pos = torch.arange(num_samples, device=values.device, dtype=torch.float32) / hop
    i0 = pos.floor().long().clamp_max(frames - 1)
    i1 = (i0 + 1).clamp_max(frames - 1)
    w = pos - i0.to(torch.float32)
    return values[:, i0] * (1 - w) + values[:, i1] * w


def _smooth_noise(keys: Tensor, frames: int, points: int) -> Tensor:
    """Smooth standard-normal-ish curves [n, frames] through ``points`` random knots."""
    knots = rng.normal(keys, (points,))
    return torch.nn.functional.interpolate(knots[:, None, :], size=frames, mode="linear",
                                           align_corners=True)[:, 0]


def _speech_chunk(keys: Tensor, num_samples: int, lengths: Tensor, sample_rate: int) -> Tensor:
    device = keys.device
    n_fft, hop = _frame_params(sample_rate)
    frames = 1 + num_samples // hop
    dt = hop / sample_rate
    t_frame = torch.arange(frames, device=device, dtype=torch.float32) * dt
    dur = lengths.to(torch.float32) / sample_rate  # [n] seconds

    # per-utterance parameters
    p = rng.uniform(rng.fold_in(keys, 1), (8,))
    f0_base = 95.0 * (210.0 / 95.0) ** p[:, 0]
    rate = 3.0 + 3.0 * p[:, 1]
    lead = 0.1 + 0.2 * p[:, 2]
    trail = 0.1 + 0.2 * p[:, 3]
    formant_scale = 0.9 + 0.25 * (f0_base - 95.0) / 115.0
    level = 10.0 ** ((-10.0 + 9.0 * p[:, 4]) / 20.0)

    # syllable clock (starts at the end of the lead silence)
    wobble = _smooth_noise(rng.fold_in(keys, 2), frames, max(2, int(frames * dt * 2)))
    inc = rate[:, None] * (1.0 + 0.25 * wobble).clamp_min(0.3) * dt
    inc = torch.where(t_frame[None, :] >= lead[:, None], inc, 0.0)
    theta = torch.cumsum(inc, dim=1)
    max_syll = int(math.ceil(num_samples / sample_rate * 6.0 * 1.25)) + 2
    syl = theta.floor().long().clamp_max(max_syll - 2)
    phase = (theta - syl.to(torch.float32)).clamp(0.0, 1.0)

    # per-syllable parameters [n, max_syll]
    q = rng.uniform(rng.fold_in(keys, 3), (max_syll, 10))
    pause = (q[..., 0] < 0.12) & (torch.arange(max_syll, device=device) > 0)
    f_targets = torch.stack([300.0 + 550.0 * q[..., 1], 850.0 + 1450.0 * q[..., 2],
                             2300.0 + 1000.0 * q[..., 3]], dim=-1) * formant_scale[:, None, None]
    onset = (q[..., 4] < 0.35).float()
    coda = (q[..., 5] < 0.25).float()
    f_cut = 2000.0 + 3000.0 * q[..., 6]
    loud = (0.5 + 0.5 * q[..., 7]) * (~pause).float()
    accent = 0.15 * (2.0 * q[..., 8] - 1.0)
    fric_gain = 0.05 + 0.1 * q[..., 9]

    def per_frame(table: Tensor, index: Tensor) -> Tensor:
        return torch.gather(table, 1, index)

    active = ((t_frame[None, :] >= lead[:, None])
              & (t_frame[None, :] <= (dur - trail)[:, None])).float()
    on, co = per_frame(onset, syl), per_frame(coda, syl)
    v_lo = 0.05 + 0.2 * on
    v_hi = 0.95 - 0.2 * co
    x = ((phase - v_lo) / (v_hi - v_lo)).clamp(0.0, 1.0)
    voiced_env = torch.sin(math.pi * x).clamp_min(0.0)
    onset_env = on * torch.sin(math.pi * (phase / 0.22).clamp(0.0, 1.0))
    coda_env = co * torch.sin(math.pi * ((phase - 0.78) / 0.22).clamp(0.0, 1.0))
    gate = per_frame(loud, syl) * active
    voiced_env = voiced_env * gate
    fric_env = (onset_env + coda_env) * gate * per_frame(fric_gain, syl)

    # formant trajectories: glide from this syllable's targets to the next one's
    smooth = phase * phase * (3.0 - 2.0 * phase)
    nxt = (syl + 1).clamp_max(max_syll - 1)
    formants = []
    for i in range(3):
        a = per_frame(f_targets[..., i], syl)
        b = per_frame(f_targets[..., i], nxt)
        formants.append(a + (b - a) * smooth)

    # pitch contour and voiced source
    declination = 1.0 - 0.15 * (t_frame[None, :] / dur[:, None]).clamp(0.0, 1.0)
    f0_wobble = _smooth_noise(rng.fold_in(keys, 4), frames, max(2, int(frames * dt * 3)))
    jitter = rng.normal(rng.fold_in(keys, 5), (frames,))
    f0 = (f0_base[:, None] * declination * (1.0 + per_frame(accent, syl) * torch.sin(
        math.pi * phase)) * (1.0 + 0.08 * f0_wobble) * (1.0 + 0.015 * jitter)).clamp(80.0, 250.0)
    f0_samples = _interp_frames(f0, num_samples, hop)
    start_phase = rng.uniform(rng.fold_in(keys, 6), (1,), dtype=torch.float64)
    cycles = torch.cumsum(f0_samples.double() / sample_rate, dim=1) + start_phase
    xg = (cycles - cycles.floor()).float()
    flow = torch.where(xg < 0.4, 0.5 * (1.0 - torch.cos(math.pi * xg / 0.4)),
                       torch.where(xg < 0.72, torch.cos(math.pi * (xg - 0.4) / 0.64), 0.0))
    source = torch.diff(flow, dim=1, prepend=flow[:, :1])
    source = source / source.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(1e-8)
    shimmer = 1.0 + 0.05 * rng.normal(rng.fold_in(keys, 7), (frames,))
    hiss = rng.uniform(rng.fold_in(keys, 8), (num_samples,)) - 0.5  # flat spectrum suffices

    window = torch.hann_window(n_fft, periodic=True, device=device)
    spec_v = torch.stft(source, n_fft, hop, window=window, center=True, pad_mode="constant",
                        return_complex=True)
    spec_n = torch.stft(hiss, n_fft, hop, window=window, center=True, pad_mode="constant",
                        return_complex=True)
    freqs = torch.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1, device=device)[None, :, None]
    env_h = torch.full_like(spec_v.real, 0.03)
    for f_i, a_i, b_i in zip(formants, (1.0, 0.6, 0.3), (160.0, 200.0, 300.0)):
        env_h = env_h + a_i / (1.0 + ((freqs - f_i[:, None, :]) / (0.5 * b_i)) ** 2)
    high_pass = torch.sigmoid((freqs - per_frame(f_cut, syl)[:, None, :]) / 250.0)
    gain_v = env_h * (voiced_env * shimmer)[:, None, :]
    gain_n = (env_h * (0.03 * 12**0.5) * voiced_env[:, None, :]
              + high_pass * (fric_env * 12**0.5)[:, None, :])  # 12**0.5: unit-variance hiss
    spec = torch.view_as_real(spec_v) * gain_v[..., None]
    spec += torch.view_as_real(spec_n) * gain_n[..., None]
    out = torch.istft(torch.view_as_complex(spec), n_fft, hop, window=window, center=True,
                      length=num_samples)
    mask = torch.arange(num_samples, device=device)[None, :] < lengths[:, None]
    out = torch.where(mask, out, 0.0)
    peak = out.abs().amax(dim=1, keepdim=True).clamp_min(1e-8)
    return out / peak * level[:, None]


def synthesize_speech(key: Tensor, num: int, num_samples: int, sample_rate: int = 16000,
                      lengths: Tensor | None = None) -> Tensor:
    """``num`` speech-like utterances [num, num_samples] float32 on ``key``'s device; row i
    is zero beyond ``lengths[i]`` (default: full) and depends only on (key, i)."""
    device = key.device
    if lengths is None:
        lengths = torch.full((num,), num_samples, dtype=torch.long, device=device)
    keys = rng.fold_in(key, torch.arange(num, device=device))
    parts = [_speech_chunk(keys[i:i + _CHUNK], num_samples, lengths[i:i + _CHUNK], sample_rate)
             for i in range(0, num, _CHUNK)]
    return torch.cat(parts, dim=0)


def _shape_spectrum(noise: Tensor, gain: Tensor) -> Tensor:
    """Filter rows of ``noise`` [n, N] by a real gain [n or 1, N//2+1] over rfft bins."""
    spec = torch.fft.rfft(noise, dim=1) * gain
    return torch.fft.irfft(spec, n=noise.shape[1], dim=1)


def _power_law(freqs: Tensor, exponent: float, corner: float = 20.0) -> Tensor:
    """Amplitude gain f^-exponent above ``corner`` Hz, rising as (f / corner) below it (no
    DC, no sub-audio drift)."""
    f = freqs.clamp_min(1e-3)
    return torch.where(f >= corner, f ** -exponent, corner ** -exponent * f / corner)


def synthesize_noise(family: str, key: Tensor, num: int, num_samples: int,
                     sample_rate: int = 16000) -> Tensor:
    """``num`` clips [num, num_samples] of a noise family (unit RMS), on ``key``'s device."""
    if family not in NOISE_FAMILIES:
        raise ValueError(f"unknown noise family {family!r}; choose from {NOISE_FAMILIES}")
    device = key.device
    keys = rng.fold_in(key, torch.arange(num, device=device))
    p = rng.uniform(rng.fold_in(keys, 1), (8,))
    base = rng.normal(rng.fold_in(keys, 2), (num_samples,))
    freqs = torch.fft.rfftfreq(num_samples, 1.0 / sample_rate).to(device)[None, :]
    t = torch.arange(num_samples, device=device, dtype=torch.float32)[None, :] / sample_rate
    if family == "white":
        out = base
    elif family == "pink":
        out = _shape_spectrum(base, _power_law(freqs, 0.5))
    elif family == "brown":
        out = _shape_spectrum(base, _power_law(freqs, 1.0))
    elif family == "babble":
        talkers = 7
        speech = synthesize_speech(rng.fold_in(key, 99), num * talkers, num_samples, sample_rate)
        speech = speech / speech.pow(2).mean(1, keepdim=True).sqrt().clamp_min(1e-8)
        shift = rng.randint(rng.fold_in(key, 98), (num * talkers, 1), num_samples)
        idx = torch.remainder(torch.arange(num_samples, device=device) + shift, num_samples)
        speech = torch.gather(speech, 1, idx)  # talkers start at different points
        count = 4 + (p[:, 0] * 4).long().clamp_max(3)  # 4..7 talkers per clip
        use = (torch.arange(talkers, device=device)[None, :] < count[:, None]).float()
        out = (speech.reshape(num, talkers, num_samples) * use[..., None]).sum(1)
    elif family == "hum":
        mains = torch.where(p[:, 0] < 0.5, 50.0, 60.0)[:, None]
        drift = 1.0 + 0.002 * _smooth_noise(rng.fold_in(keys, 3), num_samples, 8)
        cycles = torch.cumsum((mains * drift).double() / sample_rate, dim=1)
        amp = rng.uniform(rng.fold_in(keys, 4), (12,))
        phases = rng.uniform(rng.fold_in(keys, 5), (12,))
        out = 0.01 * base
        for k in range(1, 13):
            a = (0.3 + 0.7 * amp[:, k - 1]) * k ** -0.7 * (1.5 if k % 2 else 0.7)
            ph = (k * cycles + phases[:, k - 1:k].double()).remainder(1.0).float()
            out = out + a[:, None] * torch.sin(2.0 * math.pi * ph)
    elif family == "band":
        centre = 200.0 * 20.0 ** p[:, 0:1]
        width = 0.3 + 1.2 * p[:, 1:2]  # octaves (full width at half power ~ width)
        octaves = torch.log2(freqs.clamp_min(1.0) / centre)
        out = _shape_spectrum(base, torch.exp(-0.5 * (octaves / (0.42 * width)) ** 2))
    elif family == "modulated":
        pink = _shape_spectrum(base, _power_law(freqs, 0.5))
        pink = pink / pink.pow(2).mean(1, keepdim=True).sqrt()
        carrier = torch.where(p[:, 0:1] < 0.5, pink, base)
        rate = 0.5 + 3.5 * p[:, 1:2]
        depth = 0.5 + 0.45 * p[:, 2:3]
        env = 1.0 + depth * torch.sin(2.0 * math.pi * (rate * t + p[:, 3:4]))
        gate = torch.sigmoid(8.0 * _smooth_noise(rng.fold_in(keys, 3), num_samples,
                                                 max(2, int(num_samples / sample_rate * 2))))
        out = carrier * (env * (0.1 + 0.9 * gate)).clamp_min(0.02)
    else:  # clicks
        rate = 3.0 + 9.0 * p[:, 0:1]
        hits = rng.uniform(rng.fold_in(keys, 3), (num_samples,)) < rate / sample_rate
        amp = torch.exp(0.7 * rng.normal(rng.fold_in(keys, 4), (num_samples,)))
        sign = torch.where(rng.uniform(rng.fold_in(keys, 5), (num_samples,)) < 0.5, -1.0, 1.0)
        impulses = hits.float() * amp * sign
        ring = 1000.0 + 3000.0 * p[:, 1:2]
        decay = 0.001 + 0.003 * p[:, 2:3]
        kernel = torch.exp(-t / decay) * torch.sin(2.0 * math.pi * ring * t)
        kernel = kernel * (t < 8 * decay)
        spec = torch.fft.rfft(impulses, dim=1) * torch.fft.rfft(kernel, dim=1)
        clicks = torch.fft.irfft(spec, n=num_samples, dim=1)
        out = clicks + 0.0056 * clicks.pow(2).mean(1, keepdim=True).sqrt() * base
    out = out - out.mean(dim=1, keepdim=True)
    return out / out.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(1e-8)


def _base_key(seed: int, stream: int, device: torch.device) -> Tensor:
    key = rng.make_key(seed, device)
    return key if stream == 0 else rng.fold_in(key, 0x5EED0000 + int(stream))


def synthetic_noise_bank(families: tuple[str, ...] = NOISE_FAMILIES, clips_per_family: int = 4,
                         seconds: float = 6.0, sample_rate: int = 16000,
                         device: torch.device | str = "cpu", seed: int = 0, stream: int = 0
                         ) -> tuple[AudioBank, list[str]]:
    """A (wrapped) noise bank of ``clips_per_family`` clips of ``seconds`` per family, and its
    item names (``"<family>_<j>"``). Clips depend only on (seed, stream, family, j)."""
    device = torch.device(device)
    key = rng.fold_in(_base_key(seed, stream, device), 3)
    clip_len = max(1, round(sample_rate * float(seconds)))
    with torch.no_grad():
        noise = torch.cat([synthesize_noise(f, rng.fold_in(key, NOISE_FAMILIES.index(f)),
                                            clips_per_family, clip_len, sample_rate)
                           for f in families], dim=0)
        bank = AudioBank.from_padded(
            noise, torch.full((noise.shape[0],), clip_len, dtype=torch.long, device=device),
            wrap=True)
    names = [f"{f}_{j:02d}" for f in families for j in range(clips_per_family)]
    return bank, names


class SyntheticCorpus(MixingCorpus):
    """A :class:`MixingCorpus` over generated banks: ``num_utterances`` speech-like
    utterances of ``utterance_seconds`` (uniform range) and ``noise_clips_per_family`` clips of
    ``noise_seconds`` for each of ``families``, generated once on ``device`` from ``seed``.

    ``stream`` selects an independent family of corpora for the same seed: training uses
    stream 0, the demo writer stream 1, so a demo folder never repeats training audio.
    Utterance i depends only on (seed, stream, i), so a larger corpus extends a smaller one.
    """

    def __init__(self, num_utterances: int = 256,
                 utterance_seconds: tuple[float, float] = (3.0, 4.0),
                 noise_clips_per_family: int = 4, noise_seconds: float = 6.0,
                 families: tuple[str, ...] = NOISE_FAMILIES,
                 snr_range: tuple[float, float] = (-5.0, 15.0), sample_rate: int = 16000,
                 device: torch.device | str = "cpu", seed: int = 0, stream: int = 0):
        if num_utterances < 1 or noise_clips_per_family < 1 or not families:
            raise CorpusError("the synthetic corpus needs at least one utterance, one noise "
                              "family and one clip per family")
        lo_s, hi_s = (float(v) for v in utterance_seconds)
        if not 0.0 < lo_s <= hi_s:
            raise CorpusError(f"utterance_seconds must satisfy 0 < LO <= HI, got "
                              f"{utterance_seconds}")
        unknown = [f for f in families if f not in NOISE_FAMILIES]
        if unknown:
            raise CorpusError(f"unknown noise families {unknown}; choose from {NOISE_FAMILIES}")
        device = torch.device(device)
        key = _base_key(seed, stream, device)
        with torch.no_grad():
            u = rng.uniform(rng.fold_in(key, 1), (num_utterances,))
            lengths = (sample_rate * (lo_s + (hi_s - lo_s) * u)).round().long().clamp_min(1)
            max_len = max(1, round(sample_rate * hi_s))
            speech = synthesize_speech(rng.fold_in(key, 2), num_utterances, max_len,
                                       sample_rate, lengths)
            bank = AudioBank.from_padded(speech, lengths)
            del speech
        noise_bank, noise_names = synthetic_noise_bank(
            families, noise_clips_per_family, noise_seconds, sample_rate, device, seed, stream)
        names = [f"synth_{i:04d}" for i in range(num_utterances)]
        super().__init__(bank, noise_bank, names, noise_names, sample_rate, snr_range, seed,
                         source=f"synthetic(seed={seed})" if stream == 0
                         else f"synthetic(seed={seed}, stream={stream})")
        self.stream = int(stream)
