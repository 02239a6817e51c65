"""The action space of the denoising environment (and of any env the learners consume).

An action row is ``(method id, knob_1 .. knob_C)``: ``action[:, 0]`` is the method id as a
float (integer valued, ``0 .. num_methods - 1``; the seed's layout), ``action[:, 1:]`` the C
continuous knobs inside ``[knob_low, knob_high]``. This module has no dependencies beyond the
standard library, so learners and adapters can import it without the environment machinery.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ActionSpec"]


@dataclass(frozen=True)
class ActionSpec:
    """Hybrid action space: one of ``num_methods`` methods plus C bounded knobs.

    ``knob_low[j] < knob_high[j]``, both finite; at least one knob; ``num_methods >= 1``
    (1 = plain continuous control).
    """

    num_methods: int
    knob_low: tuple[float, ...]
    knob_high: tuple[float, ...]

    def __post_init__(self) -> None:
        low = tuple(float(v) for v in self.knob_low)
        high = tuple(float(v) for v in self.knob_high)
        object.__setattr__(self, "knob_low", low)
        object.__setattr__(self, "knob_high", high)
        if isinstance(self.num_methods, bool) or int(self.num_methods) != self.num_methods:
            raise ValueError(f"num_methods must be an integer, got {self.num_methods!r}")
        object.__setattr__(self, "num_methods", int(self.num_methods))
        if self.num_methods < 1:
            raise ValueError(f"num_methods must be >= 1, got {self.num_methods}")
        if len(low) == 0 or len(low) != len(high):
            raise ValueError(
                f"knob_low and knob_high need the same non-zero length, got {len(low)} and "
                f"{len(high)}"
            )
        for j, (lo, hi) in enumerate(zip(low, high)):
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"knob {j}: need finite knob_low < knob_high, got {lo}, {hi}")

    @property
    def num_knobs(self) -> int:
        """C, the number of continuous knobs."""
        return len(self.knob_low)

    @property
    def action_dim(self) -> int:
        """1 + C: the width of the env action tensor."""
        return 1 + self.num_knobs

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_methods": self.num_methods,
            "knob_low": list(self.knob_low),
            "knob_high": list(self.knob_high),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ActionSpec:
        return cls(int(d["num_methods"]), tuple(d["knob_low"]), tuple(d["knob_high"]))
