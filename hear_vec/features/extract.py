"""The seed's 133 observation features as batched torch ops on (..., time) with ``lengths``.

Why one module of ~420 lines: about 90 of them are this docstring, the formula sheet of all
133 features against librosa; the code is a dozen short functions, each one line of the sheet
(time features, the mel filterbank, mel statistics, the batched entry points), that share the
same flattening, masking and constants. Keeping sheet and code in one file is what makes the
parity with librosa reviewable; the noise-floor features are :mod:`hear_vec.features.floor`.

Per row y = audio[i, :lengths[i]] (the unpadded signal, sample rate sr):

    rms        = sqrt(mean(y^2))
    peak       = max |y|
    log_rms    = ln(rms + 1e-8)
    zcr        = mean over frames of librosa.feature.zero_crossing_rate(y, frame_length=2048,
                 hop_length=256, center=True)
    duration   = len(y) / sr                                            [s]
    S          = Slaney-mel(|STFT(y)|^2)  (n_fft 1024, hop 256, 64 bands, 0..sr/2 Hz,
                 periodic Hann, centered zero pad: librosa.feature.melspectrogram defaults)
    S_db       = 10 log10(max(S, 1e-10)), floored at max(S_db) - 80 dB      (power_to_db,
                 ref 1.0; the max is over the row's own valid frames and all bands)
    mel_mean_k = mean over frames of S_db[k],  mel_std_k = std (ddof 0) over frames of S_db[k]

Frames: a centered frame sequence over L samples with hop 256 has 1 + L // 256 frames, for both
the STFT and the zero-crossing frames; frames beyond that count in a padded batch are ignored.

librosa behaviours reproduced exactly (librosa 0.11):

* zero_crossing_rate pads the row by 1024 samples on each side with ``mode="edge"``
  (repeating the first / last sample, not zeros), frames it (2048 samples, hop 256) and
  returns, per frame, (number of sign changes between consecutive samples inside the frame)
  / 2048: the first sample of a frame is never a crossing (``pad=False``), yet the mean is over
  all 2048 positions. A sample with |x| <= 1e-10 counts as 0, and 0 counts as positive
  (``zero_pos=True``), so the sign used is ``x < -1e-10``.
* melspectrogram builds the Slaney filterbank (``htk=False, norm="slaney"``) as a float32
  table (``filters.mel``'s default dtype) even for float64 audio; ours is built with the
  same formula in float64 and rounded through float32, so it equals librosa's table exactly.
* power_to_db's ``top_db`` floor is relative to the maximum of the whole (bands x frames)
  array of that row.

Rows with ``lengths == 0``: every feature is that of a one-sample silent row except duration,
which is 0: rms = peak = zcr = 0, log_rms = ln(1e-8), mel_mean = -100 dB (the amin floor),
mel_std = 0. All values stay finite.

Sharing the STFT: :func:`extract_features` masks the audio beyond ``lengths``, takes
:func:`hear_vec.dsp.stft` and calls :func:`features_from_stft`. A caller that already has the
complex STFT ``X`` of the (masked) audio, e.g. the env after an operator step, calls
``features_from_stft(X, audio, lengths)`` and skips the STFT; ``X`` may also be given as the
power spectrogram |X|^2 (real).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from hear_vec._checks import check_audio, check_lengths
from hear_vec.dsp import (
    HOP_LENGTH,
    N_FFT,
    frame_mask,
    masked_mean,
    masked_std,
    stft,
    time_mask,
    zero_beyond,
)

__all__ = [
    "FEATURE_NAMES",
    "NUM_FEATURES",
    "N_MELS",
    "ZCR_FRAME_LENGTH",
    "mel_filterbank",
    "time_features",
    "mel_features",
    "features_from_stft",
    "extract_features",
    "FeatureExtractor",
]

N_MELS = 64
ZCR_FRAME_LENGTH = 2048
ZCR_THRESHOLD = 1e-10  # librosa.zero_crossings: |x| <= threshold counts as 0
LOG_EPS = 1e-8  # log_rms = ln(rms + LOG_EPS)
AMIN = 1e-10  # power_to_db floor (power units), -100 dB
TOP_DB = 80.0

FEATURE_NAMES: tuple[str, ...] = (
    ("rms", "peak", "log_rms", "zcr", "duration")
    + tuple(f"mel_mean_{k}" for k in range(N_MELS))
    + tuple(f"mel_std_{k}" for k in range(N_MELS))
)
NUM_FEATURES = len(FEATURE_NAMES)  # 133


# --------------------------------------------------------------------------- mel filterbank
def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale (librosa ``htk=False``): linear below 1 kHz, logarithmic above."""
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    hz = np.asarray(hz, dtype=np.float64)
    lin = hz / f_sp
    log = min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log, lin)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    lin = f_sp * mel
    log = min_log_hz * np.exp(logstep * (mel - min_log_mel))
    return np.where(mel >= min_log_mel, log, lin)


@functools.lru_cache(maxsize=16)
def _mel_filterbank_np(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa.filters.mel(sr, n_fft, n_mels, fmin=0, fmax=sr/2, htk=False, norm="slaney")
    transposed to (n_fft // 2 + 1, n_mels), float64 holding librosa's float32 values."""
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_pts = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2.0), n_mels + 2)
    f_pts = _mel_to_hz(mel_pts)  # band edges / centres [Hz]
    f_diff = np.diff(f_pts)
    ramps = f_pts[:, None] - fft_freqs[None, :]  # (n_mels + 2, n_freqs)
    lower = -ramps[:-2] / f_diff[:-1, None]
    upper = ramps[2:] / f_diff[1:, None]
    # librosa.filters.mel returns float32 by default and melspectrogram uses that table even
    # for float64 audio. It stores the triangles in a float32 array, then scales in place by
    # the float64 Slaney norm: round both steps the same way so the tables are identical.
    tri = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)  # (n_mels, n_freqs)
    enorm = 2.0 / (f_pts[2:] - f_pts[:-2])  # Slaney area normalization
    weights = (tri.astype(np.float64) * enorm[:, None]).astype(np.float32)
    return np.ascontiguousarray(weights.T.astype(np.float64))


_FBANK_CACHE: dict[tuple[int, int, int, str, torch.dtype], Tensor] = {}


@torch.compiler.assume_constant_result
def mel_filterbank(sample_rate: int = 16000, n_fft: int = N_FFT, n_mels: int = N_MELS, *,
                   device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32) -> Tensor:
    """Slaney mel filterbank (n_fft // 2 + 1, n_mels), equal to ``librosa.filters.mel(...).T``
    (its float32 values) and to ``torchaudio.functional.melscale_fbanks(norm="slaney",
    mel_scale="slaney")`` within 5e-8 (both build in float32). Cached per (sample_rate, n_fft,
    n_mels, device, dtype); under ``torch.compile`` the table is a graph constant
    (``assume_constant_result``), built once and never traced."""
    device = torch.device("cpu" if device is None else device)
    key = (int(sample_rate), int(n_fft), int(n_mels), str(device), dtype)
    fb = _FBANK_CACHE.get(key)
    if fb is None:
        table = _mel_filterbank_np(int(sample_rate), int(n_fft), int(n_mels))
        # a cached constant must not be an inference tensor (one made under infer.py's
        # inference_mode would break a later grad-mode caller that saves it for backward)
        with torch.inference_mode(False):
            fb = torch.tensor(table, dtype=dtype, device=device)
        _FBANK_CACHE[key] = fb
    return fb


# --------------------------------------------------------------------------- helpers
def _flatten(audio: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """(..., T) -> (B, T) and lengths (B,) (full length when None)."""
    time = audio.shape[-1]
    flat = audio.reshape(-1, time)
    if lengths is None:
        lens = torch.full((flat.shape[0],), time, dtype=torch.long, device=audio.device)
    else:
        lens = lengths.reshape(-1)
    return flat, lens


def _check_sample_rate(sample_rate: object) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) \
            or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    return int(sample_rate)


def _frame_crossings(d: Tensor, n_frames: int) -> Tensor:
    """Crossings per zero-crossing frame: (B, T - 1) bool -> (B, n_frames) int32.

    In edge-padded coordinates frame j spans samples j*hop - half .. j*hop + half - 1 of the
    row (half = 1024); its crossings are d[j*hop - half .. j*hop + half - 2] (2047 pairs; the
    edge padding has none). With d cut into blocks of hop = 256, that is the 8 blocks
    j - 4 .. j + 3 minus the last pair of block j + 3, d[j*hop + half - 1]: one pass over d
    for the block sums, then sums over 8 blocks of a (B, T / 256) table. Exact (integers)."""
    batch, m = d.shape
    hop, half = HOP_LENGTH, ZCR_FRAME_LENGTH // 2
    win, left = ZCR_FRAME_LENGTH // hop, half // hop  # 8 blocks, 4 of them before frame j
    full = m // hop
    bits = d.view(torch.uint8)  # (summing bytes is ~8x faster than summing bools on the CPU)
    sums = bits[:, : full * hop].reshape(batch, full, hop).sum(-1, dtype=torch.int32)
    if full * hop < m:
        tail = bits[:, full * hop:].sum(-1, keepdim=True, dtype=torch.int32)
        sums = torch.cat([sums, tail], dim=-1)
    blocks = sums.shape[-1]
    length = max(blocks + win, n_frames + win - 1)
    padded = torch.nn.functional.pad(sums, (left, length - blocks - left))
    cum = torch.nn.functional.pad(padded.cumsum(-1), (1, 0))
    counts = cum[:, win:win + n_frames] - cum[:, :n_frames]
    if m:
        last = torch.arange(n_frames, device=d.device) * hop + (half - 1)  # d index per frame
        extra = bits.gather(-1, last.clamp_max(m - 1).expand(batch, -1)) * (last < m)
        counts = counts - extra.to(counts.dtype)
    return counts


def _time_features_flat(flat: Tensor, lens: Tensor, sample_rate: int) -> Tensor:
    """(B, T) masked audio, lengths (B,) -> (B, 5): rms, peak, log_rms, zcr, duration."""
    time = flat.shape[-1]
    dtype = flat.dtype
    lens_f = lens.to(dtype)

    # rms = sqrt(sum y^2 / L); peak = max |y| (0 for an empty row); one pass each
    rms = torch.linalg.vector_norm(flat, dim=-1) / lens_f.clamp_min(1.0).sqrt()
    peak = flat.abs().amax(-1)
    log_rms = torch.log(rms + LOG_EPS)

    # zero-crossing rate, librosa semantics (see module docstring). neg[t] is the sign bit
    # after the threshold; d[k] marks a crossing between samples k and k+1 of the row.
    neg = flat < -ZCR_THRESHOLD
    d = neg[:, 1:] != neg[:, :-1]  # (B, T-1)
    k = torch.arange(time - 1, device=flat.device)
    d = d & (k < (lens - 1).unsqueeze(-1))  # only crossings inside [0, L)
    n_frames = 1 + time // HOP_LENGTH
    counts = _frame_crossings(d, n_frames)  # (B, n_frames)
    zcr_frames = counts.to(dtype) / ZCR_FRAME_LENGTH
    fmask = frame_mask(lens, n_frames, flat)
    zcr = masked_mean(zcr_frames, fmask)

    duration = lens_f / sample_rate
    return torch.stack([rms, peak, log_rms, zcr, duration], dim=-1)


@torch.compiler.assume_constant_result
def _mel_blocks(sample_rate: int, n_fft: int, n_mels: int) -> tuple[tuple[int, int, int, int],
                                                                    ...]:
    """(first band, last band + 1, first bin, last bin + 1) of groups of 8 adjacent Slaney
    bands and the FFT bins their triangles cover (everything else of the filterbank is 0)."""
    table = _mel_filterbank_np(sample_rate, n_fft, n_mels) > 0
    blocks = []
    for k0 in range(0, n_mels, 8):
        k1 = min(k0 + 8, n_mels)
        bins = np.nonzero(table[:, k0:k1].any(axis=1))[0]
        lo, hi = (int(bins[0]), int(bins[-1]) + 1) if bins.size else (0, 1)
        blocks.append((k0, k1, lo, hi))
    return tuple(blocks)


def _mel_power(power: Tensor, fbank: Tensor, blocks: tuple | None) -> Tensor:
    """fbank^T power: (F, M) x (B, F, N) -> (B, M, N). With ``blocks`` (the standard Slaney
    table), each group of 8 bands multiplies only the bins it covers: 3 % of the table is
    non-zero, and the blocks do ~1/7 of the dense product's work (the same sums)."""
    if blocks is None:
        return torch.matmul(fbank.transpose(0, 1), power)
    return torch.cat([torch.matmul(fbank[lo:hi, k0:k1].transpose(0, 1), power[:, lo:hi])
                      for k0, k1, lo, hi in blocks], dim=-2)


def _mel_features_flat(power: Tensor, lens: Tensor, fbank: Tensor,
                       blocks: tuple | None = None) -> Tensor:
    """(B, F, N) power spectrogram, lengths (B,), filterbank (F, M) -> (B, 2M)."""
    mel = _mel_power(power, fbank, blocks)  # (B, M, N)
    db = 10.0 * torch.log10(mel.clamp_min(AMIN))  # ref = 1.0 -> no offset
    fmask = frame_mask(lens, power.shape[-1], power[:, 0, :]).unsqueeze(-2)  # (B, 1, N)
    neg_inf = torch.tensor(float("-inf"), dtype=db.dtype, device=db.device)
    top = torch.where(fmask, db, neg_inf).amax(dim=(-2, -1), keepdim=True)  # row max [dB]
    db = torch.maximum(db, top - TOP_DB)
    return torch.cat([masked_mean(db, fmask), masked_std(db, fmask)], dim=-1)


def _power(spec: Tensor) -> Tensor:
    if spec.is_complex():
        return spec.real.square() + spec.imag.square()  # |X|^2 without a sqrt
    return spec


# --------------------------------------------------------------------------- public API
def time_features(audio: Tensor, lengths: Tensor | None = None,
                  sample_rate: int = 16000) -> Tensor:
    """rms, peak, log_rms, zcr, duration of each row: (..., time) -> (..., 5).

    Samples beyond ``lengths`` are ignored (they need not be zero)."""
    audio = check_audio("audio", audio)
    lengths = check_lengths(lengths, audio)
    sample_rate = _check_sample_rate(sample_rate)
    flat, lens = _flatten(audio, lengths)
    flat = torch.where(time_mask(lens, flat.shape[-1], flat), flat, 0.0)
    out = _time_features_flat(flat, lens, sample_rate)
    return out.reshape(audio.shape[:-1] + (5,))


def mel_features(spec: Tensor, lengths: Tensor | None = None, sample_rate: int = 16000,
                 fbank: Tensor | None = None) -> Tensor:
    """64 log-mel means then 64 log-mel stds over time: (..., F, N) -> (..., 128).

    spec: complex STFT X of the audio with samples beyond ``lengths`` zeroed (as from
    :func:`hear_vec.dsp.stft`, F = 513), or its power |X|^2 (real). ``lengths`` are in
    *samples*; frame n is valid when n <= lengths // 256. ``fbank`` (F, 64) overrides the
    cached Slaney filterbank (e.g. a module buffer)."""
    if not isinstance(spec, Tensor):
        raise ValueError(f"spec must be a torch.Tensor, got {type(spec).__name__}")
    if not (spec.is_complex() or spec.is_floating_point()):
        raise ValueError(f"spec must be complex or floating point, got {spec.dtype}")
    if spec.dim() < 2 or spec.shape[-2] != N_FFT // 2 + 1:
        raise ValueError(f"spec must have shape (..., {N_FFT // 2 + 1}, frames), got "
                         f"{tuple(spec.shape)}")
    sample_rate = _check_sample_rate(sample_rate)
    power = _power(spec)
    n_freq, n_frames = power.shape[-2:]
    if lengths is not None:
        # a centered STFT of T samples has 1 + T // hop frames, so T <= n_frames * hop - 1;
        # validate against a zero-cost expanded view of that many "samples"
        like = power[..., 0, :1].expand(power.shape[:-2] + (n_frames * HOP_LENGTH - 1,))
        lengths = check_lengths(lengths, like)
    flat = power.reshape(-1, n_freq, n_frames)
    if lengths is None:
        lens = torch.full((flat.shape[0],), (n_frames - 1) * HOP_LENGTH, dtype=torch.long,
                          device=flat.device)
    else:
        lens = lengths.reshape(-1)
    blocks = None
    if fbank is None:
        fbank = mel_filterbank(sample_rate, N_FFT, N_MELS, device=flat.device, dtype=flat.dtype)
        blocks = _mel_blocks(sample_rate, N_FFT, N_MELS)
    out = _mel_features_flat(flat, lens, fbank.to(flat.dtype), blocks)
    return out.reshape(power.shape[:-2] + (2 * N_MELS,))


def features_from_stft(spec: Tensor, audio: Tensor, lengths: Tensor | None = None,
                       sample_rate: int = 16000, fbank: Tensor | None = None, *,
                       zero_padded: bool = False) -> Tensor:
    """All 133 features (order :data:`FEATURE_NAMES`) from audio and its existing STFT.

    spec:  (..., 513, 1 + time // 256) complex STFT of ``audio`` from :func:`hear_vec.dsp.stft`
           (n_fft 1024, hop 256, periodic Hann, centered zero pad) with samples beyond
           ``lengths`` zeroed before the transform, or its power |X|^2. Not recomputed.
    audio: (..., time) float; samples beyond ``lengths`` are ignored.
    zero_padded: the caller promises ``audio`` is already zero beyond ``lengths`` (a masking
           pass is skipped; the result is the same for such input).
    Returns (..., 133) in audio's dtype.
    """
    audio = check_audio("audio", audio)
    if not isinstance(spec, Tensor):
        raise ValueError(f"spec must be a torch.Tensor, got {type(spec).__name__}")
    if not (spec.is_complex() or spec.is_floating_point()):
        raise ValueError(f"spec must be complex (STFT) or floating point (power), got "
                         f"{spec.dtype}")
    if spec.device != audio.device:
        raise ValueError(f"spec and audio must be on the same device, got {spec.device} and "
                         f"{audio.device}")
    expected = audio.shape[:-1] + (N_FFT // 2 + 1, 1 + audio.shape[-1] // HOP_LENGTH)
    if spec.shape != expected:
        raise ValueError(f"spec must be the STFT of audio with shape {tuple(expected)}, got "
                         f"{tuple(spec.shape)}")
    lengths = check_lengths(lengths, audio)
    sample_rate = _check_sample_rate(sample_rate)
    return _features(spec, audio, lengths, sample_rate, fbank, zero_padded)


def _features(spec: Tensor | None, audio: Tensor, lengths: Tensor | None, sample_rate: int,
              fbank: Tensor | None, zero_padded: bool = False) -> Tensor:
    """Checked inputs -> (..., 133); takes the STFT of the masked audio when spec is None."""
    flat, lens = _flatten(audio, lengths)
    if lengths is not None and not zero_padded:
        flat = zero_beyond(flat, lens)
    if spec is None:
        spec = stft(flat)
    power = _power(spec).reshape(flat.shape[0], N_FFT // 2 + 1, -1).to(flat.dtype)
    blocks = None
    if fbank is None:
        fbank = mel_filterbank(sample_rate, N_FFT, N_MELS, device=flat.device, dtype=flat.dtype)
        blocks = _mel_blocks(sample_rate, N_FFT, N_MELS)
    out = torch.cat([_time_features_flat(flat, lens, sample_rate),
                     _mel_features_flat(power, lens, fbank.to(flat.dtype), blocks)], dim=-1)
    return out.reshape(audio.shape[:-1] + (NUM_FEATURES,))


def extract_features(audio: Tensor, lengths: Tensor | None = None,
                     sample_rate: int = 16000) -> Tensor:
    """The seed's 133 observation features of each row (formulas in the module docstring).

    audio: (..., time) float32/float64; lengths: LongTensor of audio's batch shape (valid
    samples per row, beyond which samples are ignored) or None. Returns (..., 133), columns
    named by :data:`FEATURE_NAMES`. Matches the librosa reference to ~1e-13 in float64 and
    ~1e-5 in float32 (dB columns). Cost: one :func:`hear_vec.dsp.stft` plus
    :func:`features_from_stft`.
    """
    audio = check_audio("audio", audio)
    lengths = check_lengths(lengths, audio)
    sample_rate = _check_sample_rate(sample_rate)
    return _features(None, audio, lengths, sample_rate, None)


class FeatureExtractor(torch.nn.Module):
    """Module form of :func:`extract_features` (torchaudio-style): holds the mel filterbank as
    a non-persistent buffer, so ``.to(device, dtype)`` moves it and checkpoints stay free of it.

    forward(audio (..., time), lengths=None) -> (..., 133);
    from_stft(spec, audio, lengths=None) -> (..., 133) reuses an existing STFT.
    """

    mel_fb: Tensor

    def __init__(self, sample_rate: int = 16000) -> None:
        super().__init__()
        self.sample_rate = _check_sample_rate(sample_rate)
        self.register_buffer(
            "mel_fb", torch.tensor(_mel_filterbank_np(self.sample_rate, N_FFT, N_MELS),
                                   dtype=torch.float32), persistent=False)

    def forward(self, audio: Tensor, lengths: Tensor | None = None) -> Tensor:
        audio = check_audio("audio", audio)
        lengths = check_lengths(lengths, audio)
        return _features(None, audio, lengths, self.sample_rate, self.mel_fb)

    def from_stft(self, spec: Tensor, audio: Tensor, lengths: Tensor | None = None) -> Tensor:
        return features_from_stft(spec, audio, lengths, self.sample_rate, self.mel_fb)
