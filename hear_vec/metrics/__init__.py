"""Reward metrics: zero-mean SI-SDR and STOI / ESTOI (pystoi 0.4.1), batched with ``lengths``."""

from __future__ import annotations

from hear_vec.metrics.si_sdr import (
    SiSdrReference,
    si_sdr,
    si_sdr_from_reference,
    si_sdr_reference,
)
from hear_vec.metrics.stoi import StoiReference, stoi, stoi_from_reference, stoi_reference

__all__ = ["si_sdr", "si_sdr_reference", "si_sdr_from_reference", "SiSdrReference", "stoi",
           "stoi_reference", "stoi_from_reference", "StoiReference"]
