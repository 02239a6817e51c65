"""Domain randomization of drawn segments: the knobs (:class:`Randomization`), how each row's
parameters are drawn from uniforms, and the linear filters they define (zero-phase gains and a
synthetic room response, all applied in the frequency domain by the corpus draw).

Signal model of one drawn row (used by :class:`~hear_vec.data.multi.MultiSourceCorpus`).
*Mixing rows* are clean speech mixed with noise on the fly; *paired rows* come from recorded
(clean, noisy) pairs (meta.csv, clean/ + noisy/ folders) and keep their recorded noise::

    s      clean crop, t < L                     y      recorded noisy crop (paired rows)
    n_j    noise crop j < J (mixing rows; J ~ U{noise_count}; the main noise n_0 is a crop of
           babble with probability babble_prob: clips of 3-6 utterances of the corpus, each
           scaled to unit mean square, summed; see :mod:`hear_vec.data.babble`)
    h      synthetic room response with probability reverb_prob (mixing rows), else delta
    C      channel filter = tilt x EQ bands x low-pass x high-pass (zero-phase, all rows)
    Q      noise-only tilt (mixing rows)

    target = C (h * s)                                   (reverberant: denoisers do not
                                                          dereverberate, the reference keeps it)
    noise  = C Q sum_j [j < J] 10^(g_j / 20) n_j / rms(n_j)    (mixing; g_0 = 0 dB)
           = C (y - s)                                   (paired)
    noisy  = target + G noise, G such that 10 log10(sum target^2 / sum (G noise)^2) over t < L
             is the drawn SNR (``mix_at_snr`` semantics, SNR of the TOTAL noise); paired: G = 1
    level: target and noisy x lambda, 20 log10 rms(noisy over t < L) = level (dBFS), lambda
           lowered where the peak would pass full scale (|noisy| <= 1)

so every knob is linear and applied alike to target and noise where it models the channel
(microphone response, band-limiting, gain), to the speech alone where it models the room
(reverb), and to the noise alone where it models the noise (count, gains, tilt, babble).
Paired rows get the channel filter and the level only.

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

Parameters come from a fixed layout of uniforms (:data:`NUM_UNIFORMS` columns, column j always
the same knob), so switching one knob off leaves every other draw of the same key unchanged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import Tensor

__all__ = ["Randomization", "RandomizationError", "RowParams", "PRESETS", "MAX_NOISES",
           "MAX_TALKERS", "MAX_EQ_BANDS", "NUM_UNIFORMS", "NUM_INTEGERS", "draw_parameters",
           "fft_size", "channel_gain", "tilt_gain", "synthetic_rir", "rir_length",
           "filter_rows", "log_grid", "to_bins", "GRID_POINTS", "resolve_randomization",
           "KNOBS"]

MAX_NOISES = 4      #: most overlapping noises per row
MAX_TALKERS = 8     #: most talkers in one babble noise
MAX_EQ_BANDS = 4    #: most random EQ bands
_LN10 = math.log(10.0)
_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))  # 2.3548: FWHM of a Gaussian in sigmas
_EDGE = 0.25        # octaves of the band-limit transitions
_TILT_FLOOR = 50.0  # Hz: the tilt is flat below
_TILT_REF = 1000.0  # Hz: the tilt's 0 dB point
GRID_POINTS = 512   #: log-frequency points of the zero-phase gains (53 per octave at 16 kHz)
_GRID_LOW = 10.0    # Hz: lowest grid point

# uniform columns (fixed layout)
_U_LEVEL, _U_REVERB, _U_RT60, _U_DRR, _U_TILT, _U_LP, _U_LP_FC, _U_HP, _U_HP_FC = range(9)
_U_NOISE_TILT, _U_COUNT, _U_BABBLE, _U_RESERVED = range(9, 13)
_U_GAIN = 13                       # MAX_NOISES - 1 columns: gains of noise slots 1..
_U_EQ = _U_GAIN + MAX_NOISES - 1   # MAX_EQ_BANDS x (centre, gain, width)
NUM_UNIFORMS = _U_EQ + 3 * MAX_EQ_BANDS
#: integer columns: (item, offset) of noise slots 1.., then (clip, offset) of the babble
NUM_INTEGERS = 2 * (MAX_NOISES - 1) + 2


class RandomizationError(ValueError):
    """A bad randomization setting; ``field`` names the :class:`Randomization` field."""

    def __init__(self, field: str, message: str):
        self.field, self.message = field, message
        super().__init__(f"{field} {message}")


@dataclass(frozen=True)
class Randomization:
    """Domain-randomization knobs of a corpus draw (see the module docstring for the model).

    The defaults switch every knob off (``Randomization()`` draws exactly what the plain
    corpora draw); each knob's range keeps a sane value for when its probability or switch
    turns it on; :data:`PRESETS` ``["domain"]`` turns them all on. Units: dB, dBFS, Hz, s.
    """

    level_range: tuple[float, float] | None = None   #: RMS of noisy, dBFS; None: item level
    reverb_prob: float = 0.0                  #: P(row is reverberant)
    rt60_range: tuple[float, float] = (0.2, 0.8)      #: s
    drr_range: tuple[float, float] = (0.0, 12.0)      #: direct-to-reverberant ratio, dB
    tilt_range: tuple[float, float] = (0.0, 0.0)      #: channel tilt, dB/octave around 1 kHz
    eq_bands: int = 0                         #: random EQ bands (0..4) of the channel
    eq_gain_db: float = 6.0                   #: band gains ~ U[-g, g] dB
    eq_freq_range: tuple[float, float] = (150.0, 6000.0)  #: band centres, Hz (log-uniform)
    eq_width_range: tuple[float, float] = (0.5, 2.0)      #: band widths (FWHM), octaves
    lowpass_prob: float = 0.0                 #: P(low-pass band limit)
    lowpass_range: tuple[float, float] = (3400.0, 8000.0)  #: cutoff, Hz (log-uniform)
    highpass_prob: float = 0.0                #: P(high-pass)
    highpass_range: tuple[float, float] = (20.0, 300.0)    #: cutoff, Hz (log-uniform)
    noise_count: tuple[int, int] = (1, 1)     #: overlapping noises per mixing row, U{lo..hi}
    noise_gain_range: tuple[float, float] = (-10.0, 0.0)   #: extra noises vs the main, dB
    noise_tilt_range: tuple[float, float] = (0.0, 0.0)     #: noise-only tilt, dB/octave
    babble_prob: float = 0.0                  #: P(main noise is babble of other utterances)
    babble_talkers: tuple[int, int] = (3, 6)  #: talkers per babble clip, U{lo..hi}

    def __post_init__(self) -> None:
        for f in fields(self):  # lists (e.g. read back from JSON) become tuples
            if isinstance(getattr(self, f.name), list):
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))

    # -- checks and views ----------------------------------------------------------------
    def validate(self) -> Randomization:
        """Raise :class:`RandomizationError` (one line) for an impossible setting; returns
        self."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_prob"):
                if not (isinstance(value, (int, float)) and 0.0 <= float(value) <= 1.0):
                    raise RandomizationError(f.name, f"must lie in [0, 1], got {value!r}")
            elif f.name.endswith("_range") or f.name in ("noise_count", "babble_talkers"):
                if value is None and f.name == "level_range":
                    continue
                _check_pair(f.name, value)
        positive = ("rt60_range", "eq_freq_range", "eq_width_range", "lowpass_range",
                    "highpass_range")
        for name in positive:
            if getattr(self, name)[0] <= 0:
                raise RandomizationError(name, f"must be positive, got {getattr(self, name)}")
        if self.rt60_range[1] > 3.0:
            raise RandomizationError("rt60_range", f"must stay within 3 s, got "
                                     f"{self.rt60_range}")
        if self.level_range is not None and self.level_range[1] > 0.0:
            raise RandomizationError("level_range", f"is in dBFS and must stay <= 0, got "
                                     f"{self.level_range}")
        if not (isinstance(self.eq_bands, int) and 0 <= self.eq_bands <= MAX_EQ_BANDS):
            raise RandomizationError("eq_bands", f"must be an int in 0..{MAX_EQ_BANDS}, got "
                                     f"{self.eq_bands!r}")
        if not (math.isfinite(self.eq_gain_db) and self.eq_gain_db >= 0):
            raise RandomizationError("eq_gain_db", f"must be >= 0, got {self.eq_gain_db!r}")
        for name, top in (("noise_count", MAX_NOISES), ("babble_talkers", MAX_TALKERS)):
            lo, hi = getattr(self, name)
            if not (float(lo).is_integer() and float(hi).is_integer() and 1 <= lo
                    and hi <= top):
                raise RandomizationError(name, f"must be two ints 1 <= LO <= HI <= {top}, "
                                         f"got {getattr(self, name)}")
        return self

    @property
    def max_noises(self) -> int:
        return int(self.noise_count[1])

    @property
    def uses_channel(self) -> bool:
        """Whether any channel filter (tilt, EQ, band limits) can be other than 1."""
        return (self.tilt_range != (0.0, 0.0) or (self.eq_bands > 0 and self.eq_gain_db > 0)
                or self.lowpass_prob > 0 or self.highpass_prob > 0)

    @property
    def uses_fft(self) -> bool:
        """Whether a draw needs the frequency-domain stage."""
        return self.uses_channel or self.reverb_prob > 0 or self.noise_tilt_range != (0.0, 0.0)

    def is_identity(self) -> bool:
        """True when no knob changes a draw (the plain corpora draw the same segments)."""
        return (self.level_range is None and not self.uses_fft and self.max_noises == 1
                and self.babble_prob == 0)

    def replace(self, **changes: object) -> Randomization:
        """A validated copy with ``changes``."""
        return replace(self, **changes).validate()

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _check_pair(name: str, value: object) -> None:
    ok = (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)
          and value[0] <= value[1])
    if not ok:
        raise RandomizationError(name, f"must be two finite numbers LO <= HI, got {value!r}")


#: names of the knobs (the fields of :class:`Randomization`)
KNOBS = tuple(f.name for f in fields(Randomization))

#: named settings: "off" (identity) and "domain" (every knob on, at the values below)
PRESETS: dict[str, Randomization] = {
    "off": Randomization(),
    "domain": Randomization(level_range=(-45.0, -15.0), reverb_prob=0.3, tilt_range=(-2.0, 2.0),
                            eq_bands=2, lowpass_prob=0.25, highpass_prob=0.25,
                            noise_count=(1, 3), noise_tilt_range=(-3.0, 3.0), babble_prob=0.15),
}


def resolve_randomization(preset: str | None = "off", **overrides: object) -> Randomization:
    """``PRESETS[preset]`` (None: "off") with the ``overrides`` that are not None (lists become
    tuples; ``level_range="off"`` switches the level knob off), validated. Unknown names raise
    :class:`RandomizationError`."""
    name = "off" if preset is None else str(preset)
    if name not in PRESETS:
        raise RandomizationError("augment", f"must be one of {', '.join(PRESETS)}, got {name!r}")
    known = {f.name for f in fields(Randomization)}
    changes: dict[str, object] = {}
    for key, value in overrides.items():
        if key not in known:
            raise RandomizationError(key, "is not a randomization knob")
        if value is None:
            continue
        if key == "level_range" and isinstance(value, str):
            if value != "off":
                raise RandomizationError(key, f"must be LO HI (dBFS) or 'off', got {value!r}")
            value = None
        elif isinstance(value, list):
            value = tuple(value)
        changes[key] = value
    return PRESETS[name].replace(**changes)


@dataclass
class RowParams:
    """Per-row parameters [B] drawn by :func:`draw_parameters` (before the corpus masks them
    for paired rows; see :class:`~hear_vec.data.multi.DrawInfo` for the applied ones)."""

    level_db: Tensor     #: float, NaN when the level knob is off
    reverb: Tensor       #: bool
    rt60: Tensor         #: float, s
    drr_db: Tensor       #: float, dB
    tilt: Tensor         #: float, dB/octave
    lowpass: Tensor      #: bool
    lowpass_hz: Tensor   #: float
    highpass: Tensor     #: bool
    highpass_hz: Tensor  #: float
    noise_tilt: Tensor   #: float, dB/octave
    count: Tensor        #: int64, noises in the mixture
    gains_db: Tensor     #: [B, MAX_NOISES] float, slot gains (slot 0: 0 dB; beyond count: -inf)
    babble: Tensor       #: bool, main noise is babble
    eq_hz: Tensor        #: [B, eq_bands] float
    eq_db: Tensor        #: [B, eq_bands] float
    eq_width: Tensor     #: [B, eq_bands] float, octaves


def _lin(u: Tensor, rng_: tuple[float, float]) -> Tensor:
    return rng_[0] + (rng_[1] - rng_[0]) * u


def _log(u: Tensor, rng_: tuple[float, float]) -> Tensor:
    return rng_[0] * (rng_[1] / rng_[0]) ** u


def _int(u: Tensor, rng_: tuple[int, int]) -> Tensor:
    lo, hi = int(rng_[0]), int(rng_[1])
    return (lo + (u * (hi - lo + 1)).long()).clamp(lo, hi)


def draw_parameters(u: Tensor, r: Randomization) -> RowParams:
    """Row parameters from uniforms ``u`` [B, NUM_UNIFORMS] in [0, 1) (fixed column layout;
    knobs that are off give their identity value)."""
    count = _int(u[:, _U_COUNT], r.noise_count)
    slot = torch.arange(1, MAX_NOISES, device=u.device)
    extra = _lin(u[:, _U_GAIN:_U_GAIN + MAX_NOISES - 1], r.noise_gain_range)
    extra = torch.where(slot < count[:, None], extra, -math.inf)
    gains = torch.cat([torch.zeros_like(extra[:, :1]), extra], dim=1)
    eq = u[:, _U_EQ:_U_EQ + 3 * r.eq_bands].reshape(u.shape[0], r.eq_bands, 3)
    level = (_lin(u[:, _U_LEVEL], r.level_range) if r.level_range is not None
             else torch.full_like(u[:, 0], math.nan))
    return RowParams(
        level_db=level,
        reverb=u[:, _U_REVERB] < r.reverb_prob,
        rt60=_lin(u[:, _U_RT60], r.rt60_range),
        drr_db=_lin(u[:, _U_DRR], r.drr_range),
        tilt=_lin(u[:, _U_TILT], r.tilt_range),
        lowpass=u[:, _U_LP] < r.lowpass_prob,
        lowpass_hz=_log(u[:, _U_LP_FC], r.lowpass_range),
        highpass=u[:, _U_HP] < r.highpass_prob,
        highpass_hz=_log(u[:, _U_HP_FC], r.highpass_range),
        noise_tilt=_lin(u[:, _U_NOISE_TILT], r.noise_tilt_range),
        count=count,
        gains_db=gains,
        babble=u[:, _U_BABBLE] < r.babble_prob,
        eq_hz=_log(eq[..., 0], r.eq_freq_range),
        eq_db=r.eq_gain_db * (2.0 * eq[..., 1] - 1.0),
        eq_width=_lin(eq[..., 2], r.eq_width_range),
    )


def fft_size(n: int) -> int:
    """The smallest 5-smooth integer (2^a 3^b 5^c) >= n: fast for pocketfft and cuFFT."""
    n = max(1, int(n))
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
    return torch.lerp(gain[:, lo], gain[:, lo + 1], (pos - lo.to(pos.dtype)))


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
    target = torch.fft.irfft(spec, n=size)[:, :width].masked_fill(beyond, 0.0)
    shape = channel
    if r.noise_tilt_range != (0.0, 0.0):
        tilt = torch.pow(10.0, tilt_gain(p.noise_tilt, grid) / 20.0)
        shape = tilt if shape is None else shape * tilt
    if shape is not None:
        spec = _scale_(torch.fft.rfft(noise, n=size), to_bins(shape, size, sample_rate))
        noise = torch.fft.irfft(spec, n=size)[:, :width].masked_fill(beyond, 0.0)
    return target, noise
