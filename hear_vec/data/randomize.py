"""Domain randomization of drawn segments: the knobs (:class:`Randomization`), presets, and how
each row's parameters are drawn from uniforms (the filters they define:
:mod:`hear_vec.data.filters`).

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

The filters and their formulas: :mod:`hear_vec.data.filters`.

Parameters come from a fixed layout of uniforms (:data:`NUM_UNIFORMS` columns, column j always
the same knob), so switching one knob off leaves every other draw of the same key unchanged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import Tensor

__all__ = ["Randomization", "RandomizationError", "RowParams", "PRESETS", "KNOBS",
           "MAX_NOISES", "MAX_TALKERS", "MAX_EQ_BANDS", "NUM_UNIFORMS", "NUM_INTEGERS",
           "draw_parameters", "resolve_randomization"]

MAX_NOISES = 4      #: most overlapping noises per row
MAX_TALKERS = 8     #: most talkers in one babble noise
MAX_EQ_BANDS = 4    #: most random EQ bands

# uniform columns (fixed layout)
_U_LEVEL, _U_REVERB, _U_RT60, _U_DRR, _U_TILT, _U_LP, _U_LP_FC, _U_HP, _U_HP_FC = range(9)
_U_NOISE_TILT, _U_COUNT, _U_BABBLE, _U_RESERVED = range(9, 13)
_U_GAIN = 13                       # MAX_NOISES - 1 columns: gains of noise slots 1..
_U_EQ = _U_GAIN + MAX_NOISES - 1   # MAX_EQ_BANDS x (centre, gain, width)
NUM_UNIFORMS = _U_EQ + 3 * MAX_EQ_BANDS
#: integer columns: (item, offset) of noise slots 1.., (clip, offset) of the babble, then the
#: offset of the room response's noise in the corpus's noise buffer
NUM_INTEGERS = 2 * (MAX_NOISES - 1) + 3


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
