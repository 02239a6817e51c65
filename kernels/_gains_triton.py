"""Triton source of :mod:`kernels.spectral_gains` (imported on the first launch only).

Element i of the flat (B, N, F) order (F fastest: the memory order of hear_vec's STFT) is
(b, f, n); every input is read through its own strides. Divisions that decide the
strength-0 identity use IEEE division (div_rn); x^p = exp2(p log2 x) for 0 < x <= 1.
"""

import triton
import triton.language as tl


@triton.jit
def _div(a, b, F32: tl.constexpr):
    """IEEE division: div_rn for float32 (plain / is approximate there), / for float64."""
    if F32:
        return tl.div_rn(a, b)
    else:
        return a / b


@triton.jit
def spectral_delta_kernel(xr_ptr, out_ptr, mag_ptr, gate_ptr, lsa_ptr, floor_ptr, mp_ptr,
                          method_ptr, knobs_ptr, total, n_frames, n_bins,
                          sxb, sxf, sxn, sob, sof, son, smb, smf, smn, sgb, sgf, sgn,
                          slb, slf, sln, sfb, sff, spb, spf,
                          BLOCK: tl.constexpr, F32: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = i < total
    per_row = n_frames * n_bins
    b = i // per_row
    rem = i % per_row
    n = rem // n_bins
    f = rem % n_bins
    m = tl.load(method_ptr + b, mask=valid, other=3)
    s = tl.load(knobs_ptr + 3 * b, mask=valid, other=0.0)
    sm = tl.load(knobs_ptr + 3 * b + 1, mask=valid, other=0.0)
    band = tl.load(knobs_ptr + 3 * b + 2, mask=valid, other=0.0)
    mag = tl.load(mag_ptr + b * smb + f * smf + n * smn, mask=valid, other=0.0)
    tilt = 1.0 + 2.0 * band * (f.to(mag.dtype) / (n_bins - 1))
    # spectral subtraction: clip(1 - s w floor / |X|, 0, 1) ** (1 + 2 m), 1 where |X| = 0
    floor = tl.load(floor_ptr + b * sfb + f * sff, mask=valid, other=0.0)
    over = s * tilt * floor
    ratio = tl.where(mag > 0, _div(over, tl.where(mag > 0, mag, 1.0), F32), 0.0)
    base = tl.minimum(tl.maximum(1.0 - ratio, 0.0), 1.0)
    expo = 1.0 + 2.0 * sm
    g_sub = tl.where(base > 0, tl.exp2(expo * tl.log2(tl.where(base > 0, base, 1.0))), 0.0)
    g_sub = tl.where(base == 1.0, 1.0, g_sub)
    # wiener: P / (P + s w mean P), dry/wet a = 0.3 + 0.7 m; 1 where no noise is estimated
    power = mag * mag
    mean_power = tl.load(mp_ptr + b * spb + f * spf, mask=valid, other=0.0)
    noise = s * tilt * mean_power
    denom = power + noise
    g_w = tl.where((noise > 0) & (denom > 0),
                   _div(power, tl.where(denom > 0, denom, 1.0), F32), 1.0)
    g_wiener = 1.0 - (0.3 + 0.7 * sm) * (1.0 - g_w)
    g_gate = tl.load(gate_ptr + b * sgb + f * sgf + n * sgn, mask=valid, other=1.0)
    g_lsa = tl.load(lsa_ptr + b * slb + f * slf + n * sln, mask=valid, other=1.0)
    gain = tl.where(m == 0, g_sub, tl.where(m == 1, g_wiener, tl.where(
        m == 2, g_gate, tl.where(m == 4, g_lsa, 1.0))))
    delta = gain - 1.0
    x_off = b * sxb + f * sxf + n * sxn
    o_off = b * sob + f * sof + n * son
    re = tl.load(xr_ptr + x_off, mask=valid, other=0.0)
    im = tl.load(xr_ptr + x_off + 1, mask=valid, other=0.0)
    tl.store(out_ptr + o_off, delta * re, mask=valid)
    tl.store(out_ptr + o_off + 1, delta * im, mask=valid)
