"""Per-row dispatch of the five methods: one shared STFT, one iSTFT.

``masked`` (static shapes, no host syncs, compiles with ``torch.compile(fullgraph=True)``):
every spectral gain is computed for every row from the one STFT (and the one sort of |X|
their quantiles read), each row's gain is picked with ``torch.where`` on its method id, one
residual iSTFT synthesizes all rows; wavelet runs on every row in the time domain and is picked
the same way.

``gather`` (eager only: data-dependent shapes and one host sync per method): rows are grouped
by method with ``nonzero``; the STFT is taken once over the spectral rows, each spectral gain
is computed only on its own rows (``index_select``) and written back with ``index_copy``,
one iSTFT; wavelet only on its rows.

On CUDA (Triton available) ``masked`` computes spectral_sub's and wiener's gains, selects each
row's gain and forms the residual spectrum (G - 1) X in one fused kernel
(``kernels.spectral_delta``).

``auto`` picks ``gather`` in eager mode on the CPU (measured faster there, see the package
docstring) and ``masked`` under ``torch.compile`` and on accelerators (sync-free).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from hear_vec import _kernels, dsp
from hear_vec._checks import check_audio, check_batch_index
from hear_vec.ops._common import (
    Spec,
    analyze,
    finish,
    prepare,
    quantile,
    sort_valid,
    synthesize,
)
from hear_vec.ops.mmse_lsa import mmse_lsa_gain
from hear_vec.ops.spectral_gate import spectral_gate_gain
from hear_vec.ops.spectral_sub import spectral_sub_gain
from hear_vec.ops.wavelet import wavelet_flat
from hear_vec.ops.wiener import wiener_gain

__all__ = ["METHODS", "DISPATCH_MODES", "denoise"]

#: method names, index = method id (the seed's first four, in its order)
METHODS = ("spectral_sub", "wiener", "spectral_gate", "wavelet", "mmse_lsa")
DISPATCH_MODES = ("auto", "masked", "gather")
WAVELET = METHODS.index("wavelet")

# spectral method id -> (gain function, needs the sort of |X| for quantiles)
_SPECTRAL: dict[int, tuple[Callable[[Spec, Tensor], Tensor], bool]] = {
    METHODS.index("spectral_sub"): (spectral_sub_gain, True),
    METHODS.index("wiener"): (wiener_gain, False),
    METHODS.index("spectral_gate"): (spectral_gate_gain, True),
    METHODS.index("mmse_lsa"): (mmse_lsa_gain, True),
}


def denoise(audio: Tensor, method: Tensor, knobs: Tensor, lengths: Tensor | None = None,
            dispatch: str = "auto", spec: Tensor | None = None,
            power: Tensor | None = None, *, zero_padded: bool = False) -> Tensor:
    """Denoise each row with its own method and knobs.

    audio: (..., T) float; method: (...) integer ids into :data:`METHODS`; knobs: (..., 3)
    float = (strength, smoothing, band_mix), clamped to [0, 1]; lengths: optional (...)
    valid samples per row. Returns (..., T) in the audio's dtype, zero beyond lengths.
    dispatch: ``"auto"`` | ``"masked"`` | ``"gather"`` (see the module docstring).
    spec: optional (..., 513, 1 + T // 256) complex STFT of the audio (samples beyond lengths
    zeroed), as :func:`hear_vec.dsp.stft` gives it, when the caller already has it: the
    shared analysis then reuses it instead of taking the STFT again; power: optionally its
    ``spec.real ** 2 + spec.imag ** 2`` too (the features compute it anyway), same shape, real.
    zero_padded: the caller promises ``audio`` is already zero beyond ``lengths`` (the env's
    state always is); the masking pass is then skipped, with the same result for such input.
    """
    audio = check_audio("audio", audio)
    if dispatch not in DISPATCH_MODES:
        raise ValueError(f"dispatch must be one of {DISPATCH_MODES}, got {dispatch!r}")
    method = check_batch_index("method", method, audio.shape[:-1], len(METHODS), audio.device)
    flat, k, lens, batch_shape = prepare(audio, knobs, lengths, zero_padded)
    method = method.reshape(-1)
    spec_flat = None if spec is None else _check_spec(spec, audio)
    power_flat = None
    if power is not None:
        if spec is None or not isinstance(power, Tensor) or power.shape != spec.shape \
                or power.dtype != audio.dtype or power.device != audio.device:
            raise ValueError("power must come with spec: |spec|^2 of its shape, in the audio's "
                             "dtype and device")
        power_flat = power.reshape(spec_flat.shape)
    if dispatch == "auto":
        eager_cpu = not torch.compiler.is_compiling() and flat.device.type == "cpu"
        dispatch = "gather" if eager_cpu else "masked"
    if dispatch == "masked":
        out = _masked(flat, method, k, lens, spec_flat, power_flat)
    else:
        if torch.compiler.is_compiling():
            raise ValueError("dispatch='gather' has data-dependent shapes; use 'masked' "
                             "under torch.compile")
        out = _gather(flat, method, k, lens, spec_flat, power_flat)
    return finish(out, batch_shape)


def _check_spec(spec: object, audio: Tensor) -> Tensor:
    """The caller's STFT of the audio, flattened to (B, 513, N); a clear ValueError when it
    cannot be that STFT (shape, dtype or device)."""
    if not isinstance(spec, Tensor):
        raise ValueError(f"spec must be a torch.Tensor, got {type(spec).__name__}")
    expected = audio.shape[:-1] + (dsp.N_FFT // 2 + 1, 1 + audio.shape[-1] // dsp.HOP_LENGTH)
    if spec.shape != expected or not spec.is_complex():
        raise ValueError(f"spec must be the complex STFT of the audio, shape {tuple(expected)}, "
                         f"got {spec.dtype} {tuple(spec.shape)}")
    if spec.real.dtype != audio.dtype or spec.device != audio.device:
        raise ValueError(f"spec must match the audio's dtype and device, got {spec.dtype} on "
                         f"{spec.device}")
    return spec.reshape((-1,) + expected[-2:])


def _masked(x: Tensor, method: Tensor, knobs: Tensor, lengths: Tensor | None,
            spec_in: Tensor | None = None, power_in: Tensor | None = None) -> Tensor:
    spec = analyze(x, lengths, need_sorted=True, spec=spec_in, power=power_in)
    fused = _kernels.fused(spec.mag)
    if fused is not None:
        # CUDA: spectral_sub's and wiener's gains, the per-row select and (G - 1) X in one
        # Triton pass (kernels.spectral_delta); gate and lsa give their gains as tensors
        delta = fused.spectral_delta(
            spec.X, spec.mag, method, knobs, quantile(spec, 0.5),
            dsp.masked_mean(spec.mag.square(), spec.fmask, keepdim=True),
            spectral_gate_gain(spec, knobs), mmse_lsa_gain(spec, knobs))
        y_spec = x + dsp.istft(delta, x.shape[-1], lengths)
    else:
        sel = method.reshape(-1, 1, 1)
        gain = torch.ones_like(spec.mag)
        for mid, (fn, _) in _SPECTRAL.items():  # static loop over the four spectral methods
            gain = torch.where(sel == mid, fn(spec, knobs), gain)
        y_spec = synthesize(x, spec, gain, lengths)
    y_wav = wavelet_flat(x, knobs, lengths)
    return torch.where(method.unsqueeze(-1) == WAVELET, y_wav, y_spec)


def _take(t: Tensor, rows: Tensor, total: int) -> Tensor:
    """t[rows] along the batch axis, in t's memory layout; t itself when rows (sorted, from
    ``nonzero``) are all ``total`` rows (a host-side count, no copy).

    The STFT is stored frames-major ((B, N, F) memory viewed as (B, F, N)) and so is
    everything computed from it; a plain ``index_select`` would return a (B, F, N)-contiguous
    copy, and the iSTFT then transposes it back at a cost of ~1.5 ms per 2-s row (a strided
    complex copy) -- more than the whole rest of the synthesis. So (B, F, N) tensors whose
    frames are not the contiguous axis are selected in their (B, N, F) memory order."""
    if rows.numel() == total:
        return t
    if t.dim() == 3 and t.stride(-1) != 1 and t.stride(-2) == 1:
        return t.transpose(-1, -2).index_select(0, rows).transpose(-1, -2)
    return t.index_select(0, rows)


def _subset(spec: Spec, rows: Tensor, need_sorted: bool) -> Spec:
    """The analysis of some rows for a gain function. Gain functions read mag, fmask, count
    and ordered only, so the complex X (the largest tensor) is not copied."""
    total = spec.mag.shape[0]
    mag = _take(spec.mag, rows, total)
    fmask = _take(spec.fmask, rows, total)
    ordered = sort_valid(mag, fmask) if need_sorted else None
    return Spec(spec.X, mag, fmask, _take(spec.count, rows, total), ordered)


def _gather(x: Tensor, method: Tensor, knobs: Tensor, lengths: Tensor | None,
            spec_in: Tensor | None = None, power_in: Tensor | None = None) -> Tensor:
    batch = x.shape[0]
    spectral_rows = (method != WAVELET).nonzero().squeeze(-1)
    wavelet_rows = (method == WAVELET).nonzero().squeeze(-1)
    n_spectral = spectral_rows.numel()
    out = x if n_spectral == batch else x.clone()
    if n_spectral:
        xs = _take(x, spectral_rows, batch)
        ls = None if lengths is None else _take(lengths, spectral_rows, batch)
        ms = _take(method, spectral_rows, batch)
        ks = _take(knobs, spectral_rows, batch)
        given = None if spec_in is None else _take(spec_in, spectral_rows, batch)
        given_power = None if power_in is None else _take(power_in, spectral_rows, batch)
        spec = analyze(xs, ls, need_sorted=False, spec=given, power=given_power)
        gain = None
        for mid, (fn, need_sorted) in _SPECTRAL.items():
            rows = (ms == mid).nonzero().squeeze(-1)
            if rows.numel() == n_spectral:  # one method on every spectral row
                gain = fn(_subset(spec, rows, need_sorted), ks)
            elif rows.numel():
                if gain is None:
                    gain = torch.ones_like(spec.mag)
                gain.index_copy_(0, rows, fn(_subset(spec, rows, need_sorted),
                                             ks.index_select(0, rows)))
        assert gain is not None
        y = synthesize(xs, spec, gain, ls)
        if n_spectral == batch:
            return y
        out.index_copy_(0, spectral_rows, y)
    if wavelet_rows.numel():
        lw = None if lengths is None else _take(lengths, wavelet_rows, batch)
        y = wavelet_flat(_take(x, wavelet_rows, batch), _take(knobs, wavelet_rows, batch), lw)
        if wavelet_rows.numel() == batch:
            return y
        out.index_copy_(0, wavelet_rows, y)
    return out
