"""Reward metrics: zero-mean SI-SDR and STOI / ESTOI (pystoi 0.4.1), batched with ``lengths``."""

from __future__ import annotations

from hear_vec.metrics.si_sdr import si_sdr
from hear_vec.metrics.stoi import stoi

__all__ = ["si_sdr", "stoi"]
