"""Triton source of :mod:`kernels.stoi_segments` (imported on the first launch only).

One program per (row, segment j): a (16, 32) tile holds the 15 bands x 30 frames of the clean
(x) and processed (y) segments, masked to the valid (15, 30); every statistic is reduced in
registers. Constants: EPS = float64 eps (pystoi's, also for float32), the clipping bound
1 + 10^(15/20) = 6.62341325190349.
"""

import triton
import triton.language as tl


@triton.jit
def stoi_segments_kernel(x_ptr, y_ptr, stoi_ptr, estoi_ptr, n_seg, stride_b, stride_k,
                         BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    pid = tl.program_id(0)
    b = pid // n_seg
    j = pid % n_seg
    k = tl.arange(0, BLOCK_K)[:, None]
    n = tl.arange(0, BLOCK_N)[None, :]
    mask = (k < 15) & (n < 30)
    off = b * stride_b + k * stride_k + j + n
    x = tl.load(x_ptr + off, mask=mask, other=0.0)
    y = tl.load(y_ptr + off, mask=mask, other=0.0)
    eps = 2.220446049250313e-16
    # STOI: y' = min(y ||x|| / (||y|| + EPS), (1 + 10^(15/20)) x); correlation per band
    norm_x = tl.sqrt(tl.sum(x * x, axis=1))[:, None]
    norm_y = tl.sqrt(tl.sum(y * y, axis=1))[:, None]
    yp = tl.minimum(y * (norm_x / (norm_y + eps)), x * 6.62341325190349)
    dx = tl.where(mask, x - tl.sum(x, axis=1)[:, None] / 30.0, 0.0)
    dy = tl.where(mask, yp - tl.sum(yp, axis=1)[:, None] / 30.0, 0.0)
    num = tl.sum(dx * dy, axis=1)
    den = (tl.sqrt(tl.sum(dy * dy, axis=1)) + eps) * (tl.sqrt(tl.sum(dx * dx, axis=1)) + eps)
    corr = tl.where(tl.arange(0, BLOCK_K) < 15, num / den, 0.0)
    tl.store(stoi_ptr + pid, tl.sum(corr, axis=0))
    # ESTOI: rows to zero mean / unit norm over the frames, then columns over the bands
    xr = dx  # x - row mean, masked
    yr = tl.where(mask, y - tl.sum(y, axis=1)[:, None] / 30.0, 0.0)
    nxr = tl.sqrt(tl.sum(xr * xr, axis=1))[:, None]
    nyr = tl.sqrt(tl.sum(yr * yr, axis=1))[:, None]
    xr = tl.where(nxr > 0, xr / tl.where(nxr > 0, nxr, 1.0), 0.0)
    yr = tl.where(nyr > 0, yr / tl.where(nyr > 0, nyr, 1.0), 0.0)
    xc = tl.where(mask, xr - tl.sum(xr, axis=0)[None, :] / 15.0, 0.0)
    yc = tl.where(mask, yr - tl.sum(yr, axis=0)[None, :] / 15.0, 0.0)
    ncx = tl.sqrt(tl.sum(xc * xc, axis=0))[None, :]
    ncy = tl.sqrt(tl.sum(yc * yc, axis=0))[None, :]
    xn = tl.where(ncx > 0, xc / tl.where(ncx > 0, ncx, 1.0), 0.0)
    yn = tl.where(ncy > 0, yc / tl.where(ncy > 0, ncy, 1.0), 0.0)
    tl.store(estoi_ptr + pid, tl.sum(tl.sum(xn * yn, axis=1), axis=0))
