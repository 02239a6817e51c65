"""hear_vec.ops.noise_net: the learned noise-PSD estimator's invariants (the untrained net is
the quantile estimate, scale equivariance, batch = one by one over padded frames), its file
round trip (weights_only), and a smoke run of benchmarks/train_noise_net.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hear_vec.ops.noise_net import NoiseNet, load_noise_net, mel_filterbank, noise_net_psd

ROOT = Path(__file__).resolve().parents[1]


def _inputs(batch: int = 3, frames: int = 40, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    power = torch.rand(batch, 513, frames, generator=g, dtype=torch.float64) ** 4 * 3.0
    static = power.quantile(0.2, dim=-1, keepdim=True)
    fmask = torch.ones(batch, 1, frames, dtype=torch.bool)
    return power, fmask, static


def _random_net(bands: int) -> NoiseNet:
    torch.manual_seed(1)
    net = NoiseNet(hidden=16, dilations=(1, 2, 4), bands=bands).double().eval()
    with torch.no_grad():  # the output layer starts at zero: give it weights to test
        net.out.weight.normal_(0.0, 0.3)
        net.out.bias.normal_(0.0, 0.3)
    return net


def test_untrained_net_returns_the_static_estimate():
    power, fmask, static = _inputs()
    net = NoiseNet(hidden=16, dilations=(1, 2)).double()
    eps = 1e-10 * power.mean((-2, -1), keepdim=True) + 1e-30  # the log's floor
    torch.testing.assert_close(net(power, fmask, static), (static + eps).expand_as(power),
                               rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("bands", [0, 8])
def test_scale_equivariance(bands):
    power, fmask, static = _inputs()
    net = _random_net(bands)
    out = net(power, fmask, static)
    assert not torch.allclose(out, static.expand_as(out))  # the net does change the estimate
    for c2 in (1e-6, 37.0):
        torch.testing.assert_close(net(c2 * power, fmask, c2 * static), c2 * out,
                                   rtol=1e-9, atol=0.0)


@pytest.mark.parametrize("bands", [0, 8])
def test_padding_does_not_change_the_valid_frames(bands):
    power, _, static = _inputs(batch=1, frames=30)
    net = _random_net(bands)
    alone = net(power, torch.ones(1, 1, 30, dtype=torch.bool), static)
    padded_power = torch.cat([power, torch.rand(1, 513, 17, dtype=torch.float64)], -1)
    fmask = (torch.arange(47) < 30).reshape(1, 1, -1)
    padded = net(padded_power, fmask, static)
    torch.testing.assert_close(padded[..., :30], alone, rtol=1e-12, atol=0.0)


def test_mel_filterbank_covers_every_bin():
    fb = mel_filterbank(513, 32)
    assert fb.shape == (513, 32) and (fb.sum(1) > 0).all() and (fb >= 0).all()


def test_file_round_trip_loads_with_weights_only(tmp_path):
    net = _random_net(8).float()
    path = tmp_path / "net.pt"
    torch.save({"config": net.config(), "state_dict": net.state_dict()}, path)
    back = load_noise_net(path)
    power, fmask, static = (t.float() if t.is_floating_point() else t for t in _inputs())
    torch.testing.assert_close(noise_net_psd(power, fmask, static, back),
                               net(power, fmask, static))


def test_training_script_smoke(tmp_path):
    out = tmp_path / "net.pt"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_noise_net.py"), "--steps", "2",
         "--batch", "2", "--segment-seconds", "0.5", "--log-every", "1", "--hidden", "8",
         "--bands", "8", "--out", str(out), "--", "--data", "synthetic"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    log = json.loads(out.with_suffix(".json").read_text())
    assert [e["step"] for e in log["log"]] == [1, 2]
    assert all(e["train_mse"] > 0 and e["valid_mse"] > 0 for e in log["log"])
    assert load_noise_net(out).bands == 8
