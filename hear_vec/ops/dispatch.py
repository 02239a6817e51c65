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

``auto`` picks ``gather`` in eager mode on the CPU (measured faster there, see the package
docstring) and ``masked`` under ``torch.compile`` and on accelerators (sync-free).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from hear_vec._checks import check_audio, check_batch_index
from hear_vec.ops._common import Spec, analyze, finish, prepare, sort_valid, synthesize
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
            dispatch: str = "auto") -> Tensor:
    """Denoise each row with its own method and knobs.

    audio: (..., T) float; method: (...) integer ids into :data:`METHODS`; knobs: (..., 3)
    float = (strength, smoothing, band_mix), clamped to [0, 1]; lengths: optional (...)
    valid samples per row. Returns (..., T) in the audio's dtype, zero beyond lengths.
    dispatch: ``"auto"`` | ``"masked"`` | ``"gather"`` (see the module docstring).
    """
    audio = check_audio("audio", audio)
    if dispatch not in DISPATCH_MODES:
        raise ValueError(f"dispatch must be one of {DISPATCH_MODES}, got {dispatch!r}")
    method = check_batch_index("method", method, audio.shape[:-1], len(METHODS), audio.device)
    flat, k, lens, batch_shape = prepare(audio, knobs, lengths)
    method = method.reshape(-1)
    if dispatch == "auto":
        eager_cpu = not torch.compiler.is_compiling() and flat.device.type == "cpu"
        dispatch = "gather" if eager_cpu else "masked"
    if dispatch == "masked":
        out = _masked(flat, method, k, lens)
    else:
        if torch.compiler.is_compiling():
            raise ValueError("dispatch='gather' has data-dependent shapes; use 'masked' "
                             "under torch.compile")
        out = _gather(flat, method, k, lens)
    return finish(out, batch_shape)


def _masked(x: Tensor, method: Tensor, knobs: Tensor, lengths: Tensor | None) -> Tensor:
    spec = analyze(x, lengths, need_sorted=True)
    sel = method.reshape(-1, 1, 1)
    gain = torch.ones_like(spec.mag)
    for mid, (fn, _) in _SPECTRAL.items():  # static loop over the four spectral methods
        gain = torch.where(sel == mid, fn(spec, knobs), gain)
    y_spec = synthesize(x, spec, gain, lengths)
    y_wav = wavelet_flat(x, knobs, lengths)
    return torch.where(method.unsqueeze(-1) == WAVELET, y_wav, y_spec)


def _subset(spec: Spec, rows: Tensor, need_sorted: bool) -> Spec:
    mag = spec.mag.index_select(0, rows)
    fmask = spec.fmask.index_select(0, rows)
    ordered = sort_valid(mag, fmask) if need_sorted else None
    return Spec(spec.X.index_select(0, rows), mag, fmask, spec.count.index_select(0, rows),
                ordered)


def _gather(x: Tensor, method: Tensor, knobs: Tensor, lengths: Tensor | None) -> Tensor:
    out = x.clone()
    spectral_rows = (method != WAVELET).nonzero().squeeze(-1)
    if spectral_rows.numel():
        xs = x.index_select(0, spectral_rows)
        ls = None if lengths is None else lengths.index_select(0, spectral_rows)
        ms = method.index_select(0, spectral_rows)
        ks = knobs.index_select(0, spectral_rows)
        spec = analyze(xs, ls, need_sorted=False)
        gain = torch.ones_like(spec.mag)
        for mid, (fn, need_sorted) in _SPECTRAL.items():
            rows = (ms == mid).nonzero().squeeze(-1)
            if rows.numel():
                gain.index_copy_(0, rows, fn(_subset(spec, rows, need_sorted),
                                             ks.index_select(0, rows)))
        out.index_copy_(0, spectral_rows, synthesize(xs, spec, gain, ls))
    wavelet_rows = (method == WAVELET).nonzero().squeeze(-1)
    if wavelet_rows.numel():
        lw = None if lengths is None else lengths.index_select(0, wavelet_rows)
        out.index_copy_(0, wavelet_rows, wavelet_flat(x.index_select(0, wavelet_rows),
                                                      knobs.index_select(0, wavelet_rows), lw))
    return out

