"""Batched classical denoisers, one method and three knobs per row.

``denoise(audio, method, knobs, lengths=None, dispatch="auto")`` processes row i of
``audio`` (..., T) with method ``METHODS[method[i]]`` and ``knobs[i]`` = (strength s,
smoothing m, band_mix b), each clamped to [0, 1]. The four spectral methods share one STFT
(n_fft 1024, hop 256, periodic Hann, centered, zero padding) and one residual iSTFT;
wavelet works in the time domain. Statistics over time ignore frames beyond ``lengths``.
Every method: s = 0 returns the input; ``denoise(c x) == c denoise(x)``; silent, all-zero
and very short rows stay finite. Formulas are in each method's module.

Dispatch (see :mod:`hear_vec.ops.dispatch`). ``masked`` computes every method on every row
and selects per row (static shapes, no host sync, compiles with ``fullgraph=True``);
``gather`` computes each method only on its rows (``nonzero`` + ``index_select`` /
``index_copy``, eager only). Measured on the CPU, batch 64 x 2 s float32, 1 thread
(``OMP_NUM_THREADS=1``), CPU time per call (min of 5; wall time on the shared, loaded 2-core
machine was about 2x):

    per method alone:  spectral_sub 261 ms, wiener 186, spectral_gate 330, wavelet 233,
                       mmse_lsa 390
    denoise, mix of all five methods:   masked 803 ms   gather 284 ms
    denoise, all rows one method (masked / gather): spectral_sub 827 / 236,
        wiener 918 / 350, spectral_gate 946 / 298, wavelet 809 / 244, mmse_lsa 716 / 395

``masked`` costs the sum of all methods whatever the mix; ``gather`` costs each row's own
method, ~2.8x faster for a mix. Default ``dispatch="auto"``: ``gather`` in eager mode on the
CPU, ``masked`` under ``torch.compile`` and on accelerators (where host syncs stall the
stream; not measured here, no GPU). Compile cost: inductor on the CPU compiled ``denoise``
for 8 x 2 s clips in ~170 s on the loaded machine (the LSA recursion runs as ``torch.scan``
under compile; unrolled it took ~14 min).
"""

from hear_vec.ops.dispatch import DISPATCH_MODES, METHODS, denoise
from hear_vec.ops.mmse_lsa import exp1, mmse_lsa
from hear_vec.ops.spectral_gate import nn_filter, spectral_gate
from hear_vec.ops.spectral_sub import spectral_sub
from hear_vec.ops.wavelet import wavedec, wavelet, waverec
from hear_vec.ops.wiener import wiener

__all__ = [
    "METHODS",
    "DISPATCH_MODES",
    "denoise",
    "spectral_sub",
    "wiener",
    "spectral_gate",
    "wavelet",
    "mmse_lsa",
    "nn_filter",
    "exp1",
    "wavedec",
    "waverec",
]
