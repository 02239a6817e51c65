"""Sample-rate conversion with bounded memory, for file audio (corpora and ``infer.py``).

The filter is ``torchaudio.functional.resample``'s (windowed sinc, Hann window, 6 zero
crossings, rolloff 0.99); two things are added around it:

- **Bounded kernel.** torchaudio builds a ``[p, 2 w + q]`` kernel for the reduced ratio
  ``new / orig = p / q``: a few thousand values for common rates (44100 -> 16000 is
  160 / 441), but 16000 x 44135 values (2.8 GB) for an odd rate such as 44101 Hz. When
  ``max(p, q) > MAX_RATIO_TERM`` (1000) the ratio is replaced by the nearest fraction whose
  terms are at most 1000 (:func:`resample_ratio`). The ratio error is below 6e-4 (a speed
  change under 0.06 %) for every pair of rates in 1 kHz .. 1 MHz against 8, 16, 24, 44.1
  or 48 kHz, and 3e-7 .. 1.3e-4 for odd rates such as 11127, 22254, 44101 or 8001 Hz to
  16 kHz. The output then has ``ceil(n * p / q)`` samples for the ratio used (all of the
  input, time-scaled by that tiny error; converting back with the swapped rates uses the
  same fraction, so a round trip keeps the timing).
- **Blocks.** Long inputs are converted in blocks of about ``2**18`` input samples, each
  with the context the filter needs on both sides, so the temporaries are bounded whatever
  the length. The blocks give the same samples as one call (up to float rounding).
  :class:`StreamResampler` does the same for audio arriving in pieces (a file read block
  by block).

Output lengths follow torchaudio: ``ceil(n * p / q)`` samples for ``n`` input samples
(:func:`resampled_length`), which is ``ceil(n * new / orig)`` whenever the ratio is exact.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import Tensor

__all__ = ["MAX_RATIO_TERM", "resample_ratio", "resampled_length", "resample",
           "StreamResampler"]

#: largest numerator / denominator of the (reduced) rate ratio used as it is
MAX_RATIO_TERM = 1000
_BLOCK_INPUT = 1 << 18           # input samples (per channel) converted per block
_LOWPASS_WIDTH, _ROLLOFF = 6, 0.99  # torchaudio's defaults


def resample_ratio(orig: int, new: int) -> tuple[int, int]:
    """``(q, p)`` with ``p / q`` = ``new / orig`` reduced, or its nearest fraction with both
    terms at most :data:`MAX_RATIO_TERM` when the reduced terms are larger."""
    orig, new = int(orig), int(new)
    if orig <= 0 or new <= 0:
        raise ValueError(f"sample rates must be positive, got {orig} and {new}")
    g = math.gcd(orig, new)
    q, p = orig // g, new // g
    if max(p, q) <= MAX_RATIO_TERM:
        return q, p
    if new <= orig:
        f = Fraction(new, orig).limit_denominator(MAX_RATIO_TERM)
        return f.denominator, max(f.numerator, 1)
    f = Fraction(orig, new).limit_denominator(MAX_RATIO_TERM)
    return max(f.numerator, 1), f.denominator


def resampled_length(n: int, orig: int, new: int) -> int:
    """``ceil(n * p / q)`` for ``(q, p) = resample_ratio(orig, new)``: the samples that ``n``
    samples at ``orig`` Hz become (``n`` when the rates are equal)."""
    if int(orig) == int(new):
        return int(n)
    q, p = resample_ratio(orig, new)
    return -(-int(n) * p // q)


def _sinc(x: Tensor, q: int, p: int) -> Tensor:
    import torchaudio.functional as AF

    return AF.resample(x, q, p, lowpass_filter_width=_LOWPASS_WIDTH, rolloff=_ROLLOFF)


class StreamResampler:
    """Resample audio that arrives in pieces along the last axis.

    ``push(x)`` takes the next samples (``[..., t]``, same leading shape every time) and
    returns the output samples that are complete; ``finish()`` returns the rest. The pieces
    joined are :func:`resample` of the whole input (the same samples up to float rounding,
    the same length). Memory: the pending input is at most about one block plus the filter context.
    """

    def __init__(self, orig: int, new: int, block_input: int = _BLOCK_INPUT) -> None:
        self.orig, self.new = int(orig), int(new)
        self.q, self.p = resample_ratio(orig, new)
        q, p = self.q, self.p
        self.width = math.ceil(_LOWPASS_WIDTH * q / (min(p, q) * _ROLLOFF))
        self.context = q * math.ceil(self.width / q)   # left context, a whole number of strides
        self.block = max(1, int(block_input) // q)      # strides per output block
        self._pending: Tensor | None = None             # input from self._start on
        self._start = 0                                 # global index of _pending[..., 0]
        self._next = 0                                  # first stride of the next block
        self._seen = 0                                  # input samples pushed so far

    def _block_out(self, final: bool) -> Tensor:
        assert self._pending is not None
        q, p = self.q, self.p
        m0 = self._next
        s0 = max(0, m0 * q - self.context)
        local = self._pending[..., s0 - self._start:]
        if final:
            seg, take = local, None
        else:
            end = (m0 + self.block) * q + self.width
            seg, take = local[..., : end - s0], self.block * p
        out = _sinc(seg, q, p)
        off = ((m0 * q - s0) // q) * p
        out = out[..., off:] if take is None else out[..., off: off + take]
        self._next = m0 + self.block
        keep_from = max(0, self._next * q - self.context)
        if not final and keep_from > self._start:
            self._pending = self._pending[..., keep_from - self._start:]
            self._start = keep_from
        return out

    def push(self, x: Tensor) -> Tensor:
        if self._pending is None:
            self._pending = x
        else:
            self._pending = torch.cat([self._pending, x], dim=-1)
        self._seen += x.shape[-1]
        outs = []
        while (self._next + self.block) * self.q + self.width <= self._seen:
            outs.append(self._block_out(final=False))
        if not outs:
            return x.new_zeros(x.shape[:-1] + (0,))
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)

    def finish(self) -> Tensor:
        """The remaining output (in all ``resampled_length(n, orig, new)`` samples)."""
        if self._pending is None:
            return torch.zeros(0)
        if self._next * self.q < self._seen:
            tail = self._block_out(final=True)
        else:
            tail = self._pending.new_zeros(self._pending.shape[:-1] + (0,))
        self._pending = None
        return tail


def resample(x: Tensor, orig: int, new: int) -> Tensor:
    """``x`` (``[..., time]``, float) from ``orig`` Hz to ``new`` Hz:
    ``resampled_length(n, orig, new)`` samples; torchaudio's filter, a bounded kernel and
    bounded temporaries (see the module docstring). Equal rates return ``x`` itself."""
    orig, new = int(orig), int(new)
    if orig == new:
        return x
    n = x.shape[-1]
    q, p = resample_ratio(orig, new)
    if n <= 2 * _BLOCK_INPUT:
        return _sinc(x, q, p)
    stream = StreamResampler(orig, new)
    pieces = [stream.push(x[..., i: i + _BLOCK_INPUT]) for i in range(0, n, _BLOCK_INPUT)]
    pieces.append(stream.finish())
    return torch.cat(pieces, dim=-1)
