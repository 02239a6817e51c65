"""Device-resident audio storage: one int16 :class:`AudioBank` per corpus, the
:class:`Segments` a draw returns, :class:`CorpusError`, and SNR mixing (:func:`mix_at_snr`).
The corpora that draw from banks are in :mod:`hear_vec.data.bank`.

Storage. All audio of a corpus lives in ONE int16 tensor on the device (an :class:`AudioBank`):
item ``i`` occupies ``data[offsets[i] : offsets[i] + lengths[i]]`` and its float samples are
``data * scales[i]``. Each item is peak-normalised into int16 (``scale = peak / 32767``) so a
quiet file keeps 16-bit precision relative to its own peak (quantisation noise ~ -98 dB re peak).
A paired corpus keeps clean and noisy items in the same bank; a mixing corpus keeps its noise
in a second, "wrapped" bank (each item followed by its own cyclic continuation) so that crops
are strided windows even when they wrap around (see :class:`AudioBank`).

Mixing (:func:`mix_at_snr`): ``noisy = clean + g * noise`` over the valid part t < L with

    P_c = sum_t clean^2 / L + 1e-6 * P_c,item + 1e-20      (mean square, relative floor)
    P_n = sum_t noise^2 / L + 1e-6 * P_n,item + 1e-20
    g   = sqrt(P_c / (P_n * 10^(s / 10)))

so 10 log10(sum clean^2 / sum (g noise)^2) = s up to the floors (< 1e-4 dB unless the segment
is > 20 dB quieter than its item), and a silent clean segment gives a finite, near-silent mix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["CorpusError", "Segments", "AudioBank", "DEFAULT_TAIL", "mix_at_snr", "snr_gain"]

_INT16_MAX = 32767.0


class CorpusError(ValueError):
    """A corpus that cannot be built or used (one-line message)."""


@dataclass
class Segments:
    """One batch of episode starts, all on the corpus device."""

    clean: Tensor       #: [B, T] float32, zero beyond lengths
    noisy: Tensor       #: [B, T] float32, zero beyond lengths
    lengths: Tensor     #: [B] int64, 1 <= lengths <= T
    snr_db: Tensor      #: [B] float32 (mixing: the drawn SNR; paired: meta.csv snr_db or NaN)
    utterance: Tensor   #: [B] int64 index into corpus.names
    noise: Tensor | None = None  #: [B] int64 index into corpus.noise_names (-1: paired data)


#: default tail (samples) that lets segments up to this width be cut as strided windows
DEFAULT_TAIL = 1 << 18
#: at most this many samples of wrap tails in total for a wrapped bank (64 M = 128 MB int16)
_WRAP_BUDGET = 1 << 26


def _quantise(x: np.ndarray) -> tuple[np.ndarray, float, float]:
    """float 1-D -> (int16, scale, mean square of the dequantised item)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    peak = float(np.abs(x).max()) if x.size else 0.0
    scale = peak / _INT16_MAX
    if scale > 0:
        q = np.clip(np.rint(x / scale), -_INT16_MAX, _INT16_MAX).astype(np.int16)
    else:
        q = np.zeros(x.shape, dtype=np.int16)
    power = float(np.mean((q.astype(np.float64) * scale) ** 2)) if x.size else 0.0
    return q, scale, power


class AudioBank:
    """Items of mono audio packed into one int16 tensor (see the module docstring).

    Attributes: ``data`` int16 [total], ``offsets`` / ``lengths`` int64 [n], ``scales``
    float32 [n] (sample = data * scale), ``power`` float32 [n] (mean square of each item),
    ``wrap`` and ``tail``.

    Layout. Plain banks (``wrap=False``, speech) hold the items back to back followed by
    ``tail`` zeros; wrapped banks (``wrap=True``, noise) follow every item with ``tail``
    samples that continue it cyclically (``item[j mod len]``). Either way a crop of width
    ``W <= tail`` starting inside an item is one strided window ``data[first : first + W]``
    (a row gather of ``data.as_strided((total - W + 1, W), (1, 1))``, no per-sample index
    tensor); wider crops fall back to per-sample indices (``(p + t) mod len`` when wrapped).
    A wrapped bank's tails are shortened so that they total at most 64 M samples.
    """

    def __init__(self, data: Tensor, offsets: Tensor, lengths: Tensor, scales: Tensor,
                 power: Tensor, wrap: bool = False, tail: int = 0):
        self.data = data
        self.offsets = offsets
        self.lengths = lengths
        self.scales = scales
        self.power = power
        self.wrap = bool(wrap)
        self.tail = int(tail)

    @classmethod
    def pack(cls, items: list[Tensor], scales: Tensor, power: Tensor, wrap: bool = False,
             tail: int = DEFAULT_TAIL) -> AudioBank:
        """Lay out int16 1-D tensors (each non-empty; sample = value * scale, mean square
        ``power``) as described in the class docstring."""
        device = items[0].device
        if wrap:
            tail = min(int(tail), _WRAP_BUDGET // len(items))
        parts = []
        for q in items:
            parts.append(q)
            if wrap and tail > 0:
                parts.append(q.repeat(-(-tail // q.numel()))[:tail])
        if not wrap and tail > 0:
            parts.append(torch.zeros(tail, dtype=torch.int16, device=device))
        lengths = torch.tensor([q.numel() for q in items], dtype=torch.long, device=device)
        stored = lengths + (tail if wrap else 0)
        offsets = torch.cumsum(stored, 0) - stored
        return cls(torch.cat(parts), offsets, lengths, scales.to(device, torch.float32),
                   power.to(device, torch.float32), wrap, tail)

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray], device: torch.device | str = "cpu",
                    wrap: bool = False, tail: int = DEFAULT_TAIL) -> AudioBank:
        """Pack 1-D float arrays (each at least one sample long), peak-normalised to int16."""
        if len(arrays) == 0:
            raise CorpusError("an audio bank needs at least one item")
        items, scales, powers = [], [], []
        for a in arrays:
            q, s, p = _quantise(a)
            if q.size == 0:
                raise CorpusError("an audio bank item has no samples")
            items.append(torch.from_numpy(q))
            scales.append(s)
            powers.append(p)
        bank = cls.pack(items, torch.tensor(scales), torch.tensor(powers), wrap, tail)
        return bank.to(device)  # packed on the host, moved in one copy

    @classmethod
    def from_padded(cls, audio: Tensor, lengths: Tensor, wrap: bool = False,
                    tail: int = DEFAULT_TAIL) -> AudioBank:
        """Pack the rows of ``audio`` [n, N] (valid part ``t < lengths[i]``), on its device."""
        if audio.dim() != 2 or lengths.shape != audio.shape[:1]:
            raise ValueError("from_padded expects audio [n, N] and lengths [n]")
        lengths = lengths.to(device=audio.device, dtype=torch.long)
        mask = torch.arange(audio.shape[1], device=audio.device) < lengths[:, None]
        x = torch.where(mask, audio.to(torch.float32), 0.0)
        scale = x.abs().amax(dim=1) / _INT16_MAX
        q = torch.where(scale[:, None] > 0, x / scale.clamp_min(1e-30)[:, None], 0.0)
        q = q.round().clamp(-_INT16_MAX, _INT16_MAX)
        power = ((q * scale[:, None]) ** 2).sum(1) / lengths.clamp_min(1)
        q16 = q.to(torch.int16)
        items = [q16[i, :n] for i, n in enumerate(lengths.tolist())]
        return cls.pack(items, scale, power, wrap, tail)

    def __len__(self) -> int:
        return int(self.offsets.shape[0])

    def items(self) -> list[Tensor]:
        """The int16 items (views into ``data``; host-side helper)."""
        return [self.data[o:o + n] for o, n in zip(self.offsets.tolist(), self.lengths.tolist())]

    def relayout(self, wrap: bool, tail: int = DEFAULT_TAIL) -> AudioBank:
        """The same items in another layout (e.g. a plain bank made wrapped for noise)."""
        return AudioBank.pack([q.clone() for q in self.items()], self.scales, self.power, wrap,
                              tail)

    def to(self, device: torch.device | str) -> AudioBank:
        return AudioBank(*(t.to(device) for t in (self.data, self.offsets, self.lengths,
                                                   self.scales, self.power)),
                         wrap=self.wrap, tail=self.tail)

    def item(self, index: int) -> Tensor:
        """Whole item ``index`` as float32 [length] (host-side helper)."""
        off = int(self.offsets[index])
        n = int(self.lengths[index])
        return self.data[off:off + n].to(torch.float32) * self.scales[index]

    def gather(self, items: Tensor, starts: Tensor, lengths: Tensor, width: int,
               beyond: Tensor | None = None) -> Tensor:
        """float32 [B, width]: row b holds ``item[starts + t]`` (wrapped banks: modulo the
        item length) for ``t < lengths[b]`` and zeros beyond. ``starts`` must lie inside the
        item; ``beyond`` (optional) is the precomputed mask ``t >= lengths``. Static shapes,
        no host sync."""
        first = self.offsets[items] + starts
        if width <= self.tail:
            windows = self.data.as_strided((self.data.shape[0] - width + 1, width), (1, 1))
            rows = windows[first]
        else:
            t = torch.arange(width, device=starts.device)
            if self.wrap:
                n = self.lengths[items][:, None]
                idx = self.offsets[items][:, None] + torch.remainder(starts[:, None] + t, n)
            else:
                idx = (first[:, None] + t).clamp_max(self.data.shape[0] - 1)
            rows = self.data[idx]
        if beyond is None:
            beyond = torch.arange(width, device=starts.device) >= lengths[:, None]
        out = rows.masked_fill(beyond, 0).to(torch.float32)
        return out.mul_(self.scales[items][:, None])


def mix_at_snr(clean: Tensor, noise: Tensor, snr_db: Tensor, lengths: Tensor,
               clean_ref: Tensor | None = None, noise_ref: Tensor | None = None
               ) -> Tensor:
    """``clean + g * noise`` [B, T] with g chosen so the SNR over t < lengths is ``snr_db``.

    ``clean_ref`` / ``noise_ref`` [B] are reference mean squares (e.g. of the whole items) for
    the relative floors ``1e-6 * ref`` (see the module docstring). Both inputs must already be
    zero beyond ``lengths``.
    """
    gain = snr_gain(clean, noise, snr_db, lengths, clean_ref, noise_ref)
    return torch.addcmul(clean, noise, gain[:, None])


def snr_gain(clean: Tensor, noise: Tensor, snr_db: Tensor, lengths: Tensor,
             clean_ref: Tensor | None = None, noise_ref: Tensor | None = None) -> Tensor:
    """The gain g [B] of :func:`mix_at_snr` (``noisy = clean + g * noise``)."""
    n = lengths.clamp_min(1).to(clean.dtype)
    pc = torch.linalg.vector_norm(clean, dim=-1) ** 2 / n + 1e-20
    pn = torch.linalg.vector_norm(noise, dim=-1) ** 2 / n + 1e-20
    if clean_ref is not None:
        pc = pc + 1e-6 * clean_ref
    if noise_ref is not None:
        pn = pn + 1e-6 * noise_ref
    return torch.sqrt(pc / (pn * torch.pow(10.0, snr_db / 10.0)))
