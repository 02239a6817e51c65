"""A small learned noise-PSD estimator: a dilated 1-D convolution over STFT frames that
corrects the quantile estimate of :mod:`hear_vec.ops.mmse_lsa` frame by frame.

Input, per row: the power spectrum P[f, n] = |X[f, n]|^2 (B, F, N) of the shared analysis,
its valid-frame mask (B, 1, N) and the static quantile estimate lambda_q[f] (B, F, 1). With
the row's log-level mu = mean over valid (f, n) of log(P + eps) and eps = 1e-10 x the row's
mean power,

    x = [log(P + eps) - mu ; log(lambda_q + eps) - mu]           (2F channels, N frames)
    h_0 = relu(W_in x),  h_k = h_{k-1} + relu(conv_k(h_{k-1}))   (kernel 3, dilation d_k)
    log lambda[f, n] = log(lambda_q[f] + eps) + (W_out h_K)[f, n]

Every hidden frame beyond the row's valid frames is set to 0 after each layer, so a row's
estimate over its valid frames does not depend on its padding (batch = one by one). The
output layer starts at zero (the untrained net returns lambda_q + eps). Scaling the
audio by c scales P, eps and lambda_q by c^2 and shifts mu by log c^2: x is unchanged and the
estimate scales by c^2 (the operators' scale invariance holds).

With ``bands = K > 0`` the net reads and corrects K mel bands instead of every bin: the
inputs are the logs of the band powers (triangular filters normalized to unit area), and the
band corrections are spread back over the bins with the filters normalized per bin.

Receptive field: 1 + 2 sum(d_k) frames (63 for the default dilations 1, 2, 4, 8, 16: about
1 s at hop 256 / 16 kHz), non-causal. Trained by ``benchmarks/train_noise_net.py`` to regress
log of the true noise power smoothed over frames (lambda_n = 0.9 lambda_{n-1} + 0.1 |N_n|^2)
on a run's training split only.

Status: an experiment, used by ``benchmarks/noise_psd_ceiling.py --noise-net`` and by no
operator. Trained on the pretrained recipe's training split it raised LSA's SI-SDR gain on
the training clips (+3.06 -> +3.87 dB) but lowered it on the validation split (+4.01 ->
+3.65 dB): three real noise recordings plus synthetic families are too few for it to carry
over (``benchmarks/results/noise_net_trial.md``).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["NoiseNet", "noise_net_psd", "load_noise_net", "mel_filterbank", "log_floor",
           "smoothed_power"]


class NoiseNet(nn.Module):
    """Noise PSD (B, F, N) from power (B, F, N), fmask (B, 1, N) and a static estimate
    (B, F, 1); see the module docstring for the formula."""

    def __init__(self, bins: int = 513, hidden: int = 96,
                 dilations: tuple[int, ...] = (1, 2, 4, 8, 16), bands: int = 0,
                 dropout: float = 0.0):
        super().__init__()
        self.bins, self.hidden, self.dilations = bins, hidden, tuple(dilations)
        self.bands, self.dropout = bands, dropout
        width = bands if bands else bins
        if bands:
            fb = mel_filterbank(bins, bands)  # (F, K)
            self.register_buffer("pool", fb / fb.sum(0, keepdim=True).clamp_min(1e-8))
            self.register_buffer("spread", fb / fb.sum(1, keepdim=True).clamp_min(1e-8))
        self.inp = nn.Conv1d(2 * width, hidden, 1)
        self.blocks = nn.ModuleList(nn.Conv1d(hidden, hidden, 3, padding=d, dilation=d)
                                    for d in self.dilations)
        self.out = nn.Conv1d(hidden, width, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def config(self) -> dict[str, object]:
        return {"bins": self.bins, "hidden": self.hidden, "dilations": list(self.dilations),
                "bands": self.bands, "dropout": self.dropout}

    def log_psd(self, power: Tensor, fmask: Tensor, static: Tensor) -> Tensor:
        """log lambda (B, F, N); frames beyond fmask hold the static estimate's log."""
        fm = fmask.to(power.dtype)
        count = (fm.sum(-1, keepdim=True) * power.shape[-2]).clamp_min(1.0)  # (B, 1, 1)
        eps = log_floor(power, fmask)
        log_p = torch.log(power + eps)
        mu = (log_p * fm).sum((-2, -1), keepdim=True) / count
        log_q = torch.log(static + eps)
        x_p, x_q = log_p - mu, (log_q - mu).expand_as(log_p)
        if self.bands:  # log of the band powers, relative to the row level
            pool = self.pool.to(power.dtype)
            x_p = torch.log(torch.einsum("fk,bfn->bkn", pool, power) + eps) - mu
            x_q = torch.log(torch.einsum("fk,bfn->bkn", pool, static) + eps) - mu
            x_q = x_q.expand_as(x_p)
        x = torch.cat([x_p * fm, x_q * fm], dim=-2)
        h = torch.relu(self.inp(x)) * fm
        for conv in self.blocks:
            h = h + nn.functional.dropout(torch.relu(conv(h)), self.dropout, self.training) * fm
        out = self.out(h)
        if self.bands:  # band corrections spread back over bins
            out = torch.einsum("fk,bkn->bfn", self.spread.to(power.dtype), out)
        return log_q + out * fm

    def forward(self, power: Tensor, fmask: Tensor, static: Tensor) -> Tensor:
        return torch.exp(self.log_psd(power, fmask, static))


def log_floor(power: Tensor, fmask: Tensor) -> Tensor:
    """eps (B, 1, 1) = 1e-10 x the row's mean power over valid frames and bins (+ 1e-30): the
    floor inside every log of the estimator and of its training target."""
    fm = fmask.to(power.dtype)
    count = (fm.sum(-1, keepdim=True) * power.shape[-2]).clamp_min(1.0)
    return 1e-10 * (power * fm).sum((-2, -1), keepdim=True) / count + 1e-30


def smoothed_power(power: Tensor, fmask: Tensor | None = None, a: float = 0.9) -> Tensor:
    """lambda_n = a lambda_{n-1} + (1 - a) power_n over frames (B, F, N), lambda_{-1} the mean
    over the valid frames (all frames without ``fmask``): the estimator's training target
    (of the true noise power) and the "oracle tracking" PSD of the ceiling benchmark."""
    if fmask is None:
        acc = power.mean(-1)
    else:
        fm = fmask.to(power.dtype)
        acc = (power * fm).sum(-1) / fm.sum(-1).clamp_min(1.0)
    out = torch.empty_like(power)
    for n in range(power.shape[-1]):
        acc = a * acc + (1 - a) * power[..., n]
        out[..., n] = acc
    return out


def mel_filterbank(bins: int, bands: int, sample_rate: int = 16000) -> Tensor:
    """Triangular HTK-mel filters (F, K) over 0 .. sample_rate / 2, peak 1 (no area norm);
    every bin belongs to some band."""
    mel = torch.linspace(0.0, 2595.0 * math.log10(1.0 + sample_rate / 2 / 700.0), bands + 2,
                         dtype=torch.float64)
    hz = 700.0 * (torch.pow(10.0, mel / 2595.0) - 1.0)
    f = torch.linspace(0.0, sample_rate / 2, bins, dtype=torch.float64)[:, None]
    lo, mid, hi = hz[:-2], hz[1:-1], hz[2:]
    up = (f - lo) / (mid - lo)
    down = (hi - f) / (hi - mid)
    fb = torch.minimum(up, down).clamp_min(0.0)
    fb[0, 0] = fb[-1, -1] = 1.0  # the edge bins (0 Hz, Nyquist) join the edge bands
    return fb.to(torch.float32)


def load_noise_net(path: str | Path, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> NoiseNet:
    """A :class:`NoiseNet` from a file saved by ``benchmarks/train_noise_net.py`` (weights and
    its config only; loads with ``weights_only=True``)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    cfg = blob["config"]
    net = NoiseNet(int(cfg["bins"]), int(cfg["hidden"]), tuple(int(d) for d in cfg["dilations"]),
                   int(cfg.get("bands", 0)), float(cfg.get("dropout", 0.0)))
    net.load_state_dict(blob["state_dict"])
    return net.to(device=device, dtype=dtype).eval().requires_grad_(False)


def noise_net_psd(power: Tensor, fmask: Tensor, static: Tensor, net: NoiseNet) -> Tensor:
    """Noise PSD (B, F, N) of ``net`` in the dtype and on the device of ``power``."""
    return net.to(device=power.device, dtype=power.dtype)(power, fmask, static)
