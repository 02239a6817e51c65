"""The linear filters of domain randomization (:mod:`hear_vec.data.randomize`), applied to
batches of rows in the frequency domain.

Filters (f in Hz, gains real and non-negative, hence zero-phase):

- tilt a (dB/octave): ``20 log10 |C| += a log2(max(f, 50) / 1000)`` (flat below 50 Hz);
- EQ band b (``eq_bands`` of them): ``+= G_b exp(-(log2(f / f_b))^2 / (2 sigma_b^2))``,
  G_b ~ U[-eq_gain_db, eq_gain_db], f_b log-uniform in ``eq_freq_range``, full width at half
  maximum w_b ~ U(eq_width_range) octaves, sigma_b = w_b / 2.3548;
- low-pass at f_c (probability lowpass_prob, f_c log-uniform in ``lowpass_range``): 1 below
  f_c 2^(-1/4), then smoothstep ``1 - (3x^2 - 2x^3)`` in x = 4 log2(f 2^(1/4) / f_c) down to
  exactly 0 at f_c and above;
- high-pass at f_c (highpass_prob, ``highpass_range``): 0 up to f_c, smoothstep in
  x = 4 log2(f / f_c) up to 1 at f_c 2^(1/4);
- room response (:func:`synthetic_rir`): ``h[0] = 1``, ``h[t] = a w[t] exp(-3 ln(10) t /
  (RT60 fs))`` for 1 <= t < R (energy falls 60 dB in RT60), w uniform with unit variance,
  a set so that the direct-to-reverberant ratio ``10 log10(h[0]^2 / sum_{t>=1} h[t]^2)`` is
  the drawn DRR exactly; R = ceil(max RT60 * fs) (the longest tail is cut at -60 dB).
  RT60 ~ U(rt60_range) s, DRR ~ U(drr_range) dB. The crop starts mid-utterance, so the first
  RT60 of a reverberant row lacks the tail of the speech before the crop.

The zero-phase gains are evaluated on a log-frequency grid (:data:`GRID_POINTS` points from
10 Hz to Nyquist, 53 per octave at 16 kHz) and interpolated linearly in log-frequency onto the
FFT bins, so band edges are exact to within one grid step (1.3 % in frequency).
All filters of a row are multiplied in the frequency domain: one ``rfft`` per signal (speech,
summed noise, room response), one ``irfft`` per output (target, noise), with an FFT size
(:func:`fft_size`) of at least ``width + R + fs / 8``: linear convolution for the causal room
response, and 125 ms of guard against circular wrap of the zero-phase filters' ringing.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hear_vec.data.randomize import Randomization, RowParams

__all__ = ["fft_size", "rir_length", "tilt_gain", "channel_gain", "synthetic_rir", "log_grid",
           "to_bins", "filter_rows", "GRID_POINTS"]

GRID_POINTS = 512   #: log-frequency points of the zero-phase gains (53 per octave at 16 kHz)
_GRID_LOW = 10.0    # Hz: lowest grid point
_LN10 = math.log(10.0)
_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))  # 2.3548: FWHM of a Gaussian in sigmas
_EDGE = 0.25        # octaves of the band-limit transitions
_TILT_FLOOR = 50.0  # Hz: the tilt is flat below
_TILT_REF = 1000.0  # Hz: the tilt's 0 dB point


def _smooth_at_least(n: int) -> int:
    """The smallest 5-smooth integer (2^a 3^b 5^c) >= n."""
    best = 1 << (n - 1).bit_length()  # a power of two >= n
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def fft_size(n: int) -> int:
    """The smallest multiple of 16 that is 5-smooth (16 2^a 3^b 5^c) and >= n: fast real FFTs
    for pocketfft and cuFFT (odd sizes such as 3 5^6 run ~1.7x slower on the CPU)."""
    return 16 * _smooth_at_least(max(1, -(-int(n) // 16)))


def rir_length(r: Randomization, sample_rate: int) -> int:
    """Samples R of the room responses (0 when reverb is off)."""
    return int(math.ceil(r.rt60_range[1] * sample_rate)) if r.reverb_prob > 0 else 0


def tilt_gain(tilt_db_per_octave: Tensor, freqs: Tensor) -> Tensor:
    """Gain in dB [B, F] of a spectral tilt [B] over ``freqs`` [F] Hz (0 dB at 1 kHz, flat
    below 50 Hz)."""
    octaves = torch.log2(freqs.clamp_min(_TILT_FLOOR) / _TILT_REF)
    return tilt_db_per_octave[:, None] * octaves


def _smoothstep(x: Tensor) -> Tensor:
    """0 for x <= 0, 1 for x >= 1, 3x^2 - 2x^3 between (C1-smooth, like a raised cosine)."""
    x = x.clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def channel_gain(p: RowParams, freqs: Tensor, r: Randomization) -> Tensor:
    """Linear channel gain |C| [B, F] over ``freqs`` [F] Hz (see the module docstring)."""
    db = tilt_gain(p.tilt, freqs)
    if r.eq_bands > 0 and r.eq_gain_db > 0:
        log_f = torch.log2(freqs.clamp_min(1.0))
        dist = log_f[None, None, :] - torch.log2(p.eq_hz)[..., None]   # [B, bands, F]
        sigma = (p.eq_width / _FWHM)[..., None]
        db = db + (p.eq_db[..., None] * torch.exp(-0.5 * (dist / sigma).square())).sum(1)
    gain = torch.pow(10.0, db / 20.0)
    log_f = torch.log2(freqs.clamp_min(1e-3))[None, :]
    if r.lowpass_prob > 0:
        lp = _smoothstep((torch.log2(p.lowpass_hz)[:, None] - log_f) / _EDGE)
        gain = gain * torch.where(p.lowpass[:, None], lp, 1.0)
    if r.highpass_prob > 0:
        hp = _smoothstep((log_f - torch.log2(p.highpass_hz)[:, None]) / _EDGE)
        gain = gain * torch.where(p.highpass[:, None], hp, 1.0)
    return gain


def synthetic_rir(u: Tensor, rt60: Tensor, drr_db: Tensor, sample_rate: int) -> Tensor:
    """Room responses [B, R] from uniforms ``u`` [B, R] in [0, 1) (R = response length):
    ``h[0] = 1``, ``h[t] = a w[t] exp(-3 ln(10) t / (rt60 fs))``, w = sqrt(12) (u - 1/2),
    a such that the direct-to-reverberant ratio is ``drr_db`` exactly."""
    length = u.shape[-1]
    t = torch.arange(length, device=u.device, dtype=u.dtype)
    decay = torch.exp(-3.0 * _LN10 * t / (rt60[:, None] * sample_rate))
    tail = (math.sqrt(12.0) * (u - 0.5)) * decay
    tail = torch.where(t == 0, 0.0, tail)
    energy = tail.square().sum(1).clamp_min(1e-30)
    scale = torch.sqrt(torch.pow(10.0, -drr_db / 10.0) / energy)
    return torch.where(t == 0, 1.0, tail * scale[:, None])


def log_grid(sample_rate: int, device: torch.device | str | None = None) -> Tensor:
    """[GRID_POINTS] frequencies, log-spaced from 10 Hz to Nyquist, where the zero-phase gains
    are evaluated before :func:`to_bins` interpolates them onto the FFT bins."""
    steps = torch.arange(GRID_POINTS, device=device, dtype=torch.float32) / (GRID_POINTS - 1)
    return _GRID_LOW * (sample_rate / 2.0 / _GRID_LOW) ** steps


def to_bins(gain: Tensor, size: int, sample_rate: int) -> Tensor:
    """Gains [B, GRID_POINTS] on :func:`log_grid` -> [B, size // 2 + 1] on the rfft bins of
    ``size`` (linear interpolation in log-frequency; bins below 10 Hz take the 10 Hz value)."""
    bins = torch.arange(size // 2 + 1, device=gain.device, dtype=torch.float32) * (
        sample_rate / size)
    span = math.log(sample_rate / 2.0 / _GRID_LOW)
    pos = (torch.log(bins.clamp_min(_GRID_LOW) / _GRID_LOW) / span * (GRID_POINTS - 1)).clamp(
        0.0, GRID_POINTS - 1.0)
    lo = pos.floor().long().clamp_max(GRID_POINTS - 2)
    # index_select along the bins: ~9x faster than advanced indexing gain[:, lo] on the CPU
    return torch.lerp(gain.index_select(1, lo), gain.index_select(1, lo + 1),
                      pos - lo.to(pos.dtype))


def _scale_(spec: Tensor, gain: Tensor) -> Tensor:
    """``spec *= gain`` for complex ``spec`` and real ``gain`` [B, F], in place (a complex
    times real product would first make the gain complex)."""
    torch.view_as_real(spec).mul_(gain.unsqueeze(-1))
    return spec


def filter_rows(clean: Tensor, noise: Tensor, beyond: Tensor, p: RowParams, r: Randomization,
                sample_rate: int, rir_uniforms: Tensor | None) -> tuple[Tensor, Tensor]:
    """(target, noise) [B, T]: the room response (rows with ``p.reverb``; ``rir_uniforms``
    [B, R] feed :func:`synthetic_rir`), the channel filter on both and the noise tilt on the
    noise, in one frequency-domain pass each (module docstring); zero where ``beyond``.
    The zero-phase gains are evaluated on :func:`log_grid` and interpolated onto the bins."""
    width = clean.shape[-1]
    rir = 0 if rir_uniforms is None else rir_uniforms.shape[-1]
    zero_phase = r.uses_channel or r.noise_tilt_range != (0.0, 0.0)
    size = fft_size(width + rir + (sample_rate // 8 if zero_phase else 0))
    grid = log_grid(sample_rate, clean.device)
    channel = channel_gain(p, grid, r) if r.uses_channel else None
    spec = torch.fft.rfft(clean, n=size)
    if rir_uniforms is not None:
        h = synthetic_rir(rir_uniforms, p.rt60, p.drr_db, sample_rate)
        delta = (torch.arange(rir, device=clean.device) == 0).to(h.dtype)
        spec = spec * torch.fft.rfft(torch.where(p.reverb[:, None], h, delta), n=size)
    if channel is not None:
        spec = _scale_(spec, to_bins(channel, size, sample_rate))
    valid = (~beyond).to(clean.dtype)  # (a multiply is ~7x cheaper than masked_fill on CPUs)
    target = torch.fft.irfft(spec, n=size)[:, :width] * valid
    shape = channel
    if r.noise_tilt_range != (0.0, 0.0):
        tilt = torch.pow(10.0, tilt_gain(p.noise_tilt, grid) / 20.0)
        shape = tilt if shape is None else shape * tilt
    if shape is not None:
        spec = _scale_(torch.fft.rfft(noise, n=size), to_bins(shape, size, sample_rate))
        noise = torch.fft.irfft(spec, n=size)[:, :width] * valid
    return target, noise
