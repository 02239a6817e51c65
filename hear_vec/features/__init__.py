"""The seed's 133 observation features (rms, peak, log-rms, zero-crossing rate, duration and
64 log-mel means and stds) as batched torch ops with ``lengths``; librosa is the reference.
See :mod:`hear_vec.features.extract` for the formulas and the librosa behaviours matched."""

from __future__ import annotations

from hear_vec.features.extract import (
    FEATURE_NAMES,
    N_MELS,
    NUM_FEATURES,
    ZCR_FRAME_LENGTH,
    FeatureExtractor,
    extract_features,
    features_from_stft,
    mel_features,
    mel_filterbank,
    time_features,
)

__all__ = [
    "FEATURE_NAMES",
    "NUM_FEATURES",
    "N_MELS",
    "ZCR_FRAME_LENGTH",
    "extract_features",
    "features_from_stft",
    "time_features",
    "mel_features",
    "mel_filterbank",
    "FeatureExtractor",
]
