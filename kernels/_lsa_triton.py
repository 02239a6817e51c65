"""Triton source of :mod:`kernels.lsa_recursion` (imported on the first launch only).

Constants are literals (jit functions read no Python globals): the series coefficients
(-1)^(k+1) / (k k!), k = 1..13, the A&S 5.1.56 coefficients, Euler's gamma, xi_min = -25 dB
(0.00316...) and the E1 argument cap 50 (see hear_vec.ops.mmse_lsa).
"""

import triton
import triton.language as tl


@triton.jit
def _lsa_gain(xi, g):
    r = xi / (1.0 + xi)
    v = tl.maximum(r * g, 1e-30)
    small = tl.minimum(v, 1.0)
    acc = small * 1.2353110643708935e-11
    acc = (acc - 1.7397297489890083e-10) * small
    acc = (acc + 2.27746439867652e-09) * small
    acc = (acc - 2.755731922398589e-08) * small
    acc = (acc + 3.0619243582206544e-07) * small
    acc = (acc - 3.1001984126984127e-06) * small
    acc = (acc + 2.834467120181406e-05) * small
    acc = (acc - 0.0002314814814814815) * small
    acc = (acc + 0.0016666666666666668) * small
    acc = (acc - 0.010416666666666666) * small
    acc = (acc + 0.05555555555555555) * small
    acc = (acc - 0.25) * small
    acc = (acc + 1.0) * small
    e_small = acc - tl.log(small) - 0.5772156649015329
    big = tl.minimum(tl.maximum(v, 1.0), 50.0)
    num = (((big + 8.5733287401) * big + 18.0590169730) * big + 8.6347608925) * big \
        + 0.2677737343
    den = (((big + 9.5733223454) * big + 25.6329561486) * big + 21.0996530827) * big \
        + 3.9584969228
    e_big = tl.exp(-big) * num / (big * den)
    e1 = tl.where(v <= 1.0, e_small, e_big)
    return tl.minimum(r * tl.exp(0.5 * e1), 1.0)

@triton.jit
def lsa_kernel(gamma_ptr, wet_ptr, alpha_ptr, out_ptr, n_frames, cols, bins,
               BLOCK_C: tl.constexpr):
    pid = tl.program_id(0)
    c = pid * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = c < cols
    a = tl.load(alpha_ptr + c // bins, mask=mask, other=0.0)
    g = tl.load(gamma_ptr + c, mask=mask, other=1.0)
    xi = tl.maximum(g - 1.0, 0.0031622776601683794)
    gain = _lsa_gain(xi, g)
    tl.store(out_ptr + c, gain, mask=mask)
    prev = gain * gain * g
    for n in range(1, n_frames):
        off = n * cols + c
        g = tl.load(gamma_ptr + off, mask=mask, other=1.0)
        w = tl.load(wet_ptr + off, mask=mask, other=0.0)
        xi = tl.maximum(w + a * prev, 0.0031622776601683794)
        gain = _lsa_gain(xi, g)
        tl.store(out_ptr + off, gain, mask=mask)
        prev = gain * gain * g
