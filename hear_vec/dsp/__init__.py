"""Shared signal-processing building blocks: the STFT every spectral method uses, time masks
built from ``lengths``, and statistics over time that ignore padded frames."""

from hear_vec.dsp.masked import masked_mean, masked_median, masked_quantile, masked_std
from hear_vec.dsp.stft import (
    HOP_LENGTH,
    N_FFT,
    frame_mask,
    istft,
    num_frames,
    stft,
    time_mask,
    zero_beyond,
)

__all__ = [
    "N_FFT",
    "HOP_LENGTH",
    "stft",
    "istft",
    "num_frames",
    "frame_mask",
    "time_mask",
    "zero_beyond",
    "masked_mean",
    "masked_std",
    "masked_median",
    "masked_quantile",
]
