"""Speech-presence noise tracking (hear_vec.ops.noise_tracker): reference parity with a numpy
transcription of the paper's algorithm, tracking a level step, invariants, compile."""

from __future__ import annotations

import math

import numpy as np
import torch

from hear_vec.ops.noise_tracker import SPEECH_FREE_FIXED_POINT, spp_noise_track


def np_spp_track(power, start, a=0.8):
    """Gerkmann & Hendriks 2012 (their MATLAB noisePowProposed), lambda_0 = start: (F, N)."""
    xi = 10 ** 1.5
    noise, pbar = start[:, 0].copy(), np.full(power.shape[0], 0.5)
    out = np.zeros_like(power)
    for n in range(power.shape[1]):
        glr = np.exp(np.log(1 / (1 + xi)) + xi / (1 + xi) * power[:, n] / noise)
        p = glr / (1 + glr)
        pbar = 0.9 * pbar + 0.1 * p
        p = np.where(pbar > 0.99, np.minimum(p, 0.99), p)
        noise = a * noise + (1 - a) * (p * noise + (1 - p) * power[:, n])
        out[:, n] = noise
    return out


def test_noise_track_matches_numpy_reference():
    power = np.random.default_rng(3).exponential(1.0, (7, 50)) * np.r_[[1.0] * 25, [30.0] * 25]
    start = np.full((7, 1), 0.5)
    got = spp_noise_track(torch.from_numpy(power)[None],
                                            torch.from_numpy(start)[None])[0]
    np.testing.assert_allclose(got.numpy(), np_spp_track(power, start), rtol=1e-10)


def test_noise_track_follows_a_level_step():
    # white noise of power 1 for 300 frames, then 4: before the step the track sits at the
    # estimator's speech-free fixed point (0.81 x the power, -0.9 dB, module docstring), and
    # 100 frames (1.6 s) after it at the same point of the new level, each within 1 dB
    gen = torch.Generator().manual_seed(0)
    level = torch.cat([torch.ones(300), torch.full((300,), 4.0)])
    uniform = torch.rand(1, 64, 600, generator=gen, dtype=torch.float64)
    power = -level * torch.log1p(-uniform)  # exponential periodogram of mean `level`, (1, F, N)
    start = torch.full((1, 64, 1), 0.3, dtype=torch.float64)
    track = spp_noise_track(power, start)
    db = lambda t: 10 * torch.log10(t.mean(1))  # noqa: E731 (mean over bins)
    bias = 10 * math.log10(SPEECH_FREE_FIXED_POINT)
    assert (db(track[..., 200:300]) - bias).abs().max() < 1.0
    assert (db(track[..., 400:]) - 10 * math.log10(4.0) - bias).abs().max() < 1.0
    # scale invariance and causality: c^2 P -> c^2 lambda; later frames never change earlier
    assert torch.allclose(spp_noise_track(9.0 * power, 9.0 * start),
                          9.0 * track, rtol=1e-5)
    head = spp_noise_track(power[..., :250], start)
    assert torch.equal(head, track[..., :250])


def test_noise_track_compiles_fullgraph_and_matches_eager():
    # under torch.compile the frame loop is torch.scan (its outputs may not alias the carry)
    gen = torch.Generator().manual_seed(1)
    power = torch.rand(3, 9, 40, generator=gen) * 2.0
    start = torch.full((3, 9, 1), 0.4)
    track = spp_noise_track
    compiled = torch.compile(track, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(power, start), track(power, start), rtol=1e-6, atol=0)
