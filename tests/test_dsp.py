"""Invariants of the shared STFT and the masked statistics."""

import numpy as np
import pytest
import torch
from conftest import DEVICES

from hear_vec.dsp import istft, masked_median, masked_quantile, stft


@pytest.mark.parametrize("device", DEVICES)
def test_istft_matches_torch_and_inverts(device):
    x = torch.randn(3, 16000, dtype=torch.float64, device=device)
    spec = stft(x)
    window = torch.hann_window(1024, periodic=True, dtype=torch.float64, device=device)
    ref = torch.istft(spec, 1024, 256, window=window, center=True, length=16000)
    torch.testing.assert_close(istft(spec, 16000), ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(istft(spec, 16000), x, rtol=0, atol=1e-12)


def test_padded_row_reconstructs_like_unpadded():
    torch.manual_seed(1)
    length, total = 12345, 16000
    x = torch.randn(1, length, dtype=torch.float64)
    gain = torch.rand(513, 1 + total // 256, dtype=torch.float64)
    spec = stft(x)
    alone = istft(spec * gain[:, : spec.shape[-1]], length)
    padded = torch.nn.functional.pad(x, (0, total - length))
    batch = istft(stft(padded) * gain, total, torch.tensor([length]))
    torch.testing.assert_close(batch[:, :length], alone, rtol=0, atol=1e-12)
    assert batch[:, length:].abs().max() == 0


@pytest.mark.parametrize("q", [0.0, 0.3, 0.5, 0.9, 1.0])
def test_masked_quantile_matches_numpy(q):
    x = torch.randn(6, 11, dtype=torch.float64)
    mask = torch.rand(6, 11) > 0.4
    mask[0] = False
    mask[1] = True
    got = masked_quantile(x, mask, q)
    for i in range(6):
        want = np.percentile(x[i][mask[i]].numpy(), 100 * q) if mask[i].any() else 0.0
        assert got[i].item() == pytest.approx(want, abs=1e-12)
    assert torch.equal(masked_median(x, mask), masked_quantile(x, mask, 0.5))
