"""Domain-randomized draws (hear_vec.data.multi / randomize / sources): the identity setting
draws what the plain corpora draw; drawn SNR / level / probabilities / counts follow the flags;
the filters do what they say (band limits, tilt, RT60 and DRR of the room responses); rows
depend only on (key, row); eager equals compiled; source weights; the env resets from the
draw by a masked select; bad settings give one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from hear_vec import rng
from hear_vec.data import (
    BABBLE,
    PRESETS,
    AudioBank,
    CorpusError,
    MixingCorpus,
    MultiSourceCorpus,
    PairedCorpus,
    Randomization,
    RandomizationError,
    SyntheticCorpus,
    load_corpus,
    load_sources,
    parse_source,
    resolve_randomization,
)
from hear_vec.data.filters import synthetic_rir
from hear_vec.data.multi import item_ticks
from hear_vec.data.randomize import MAX_NOISES
from tests.conftest import DEVICES

SR = 16000
WIDTH = 8000
NOISE_HZ = (500.0, 1250.0, 2000.0, 3500.0)  # bin-centred at 8000 samples (2 Hz bins)


def _white_corpus(seed: int = 0, utterances: int = 6, seconds: float = 1.0) -> MixingCorpus:
    """White-noise 'speech' (never silent) and four pure-tone noises."""
    g = np.random.default_rng(seed)
    speech = [0.1 * g.standard_normal(int(seconds * SR)) for _ in range(utterances)]
    t = np.arange(2 * SR) / SR
    noise = [np.sin(2 * np.pi * f * t) for f in NOISE_HZ]
    return MixingCorpus(AudioBank.from_arrays(speech), AudioBank.from_arrays(noise, wrap=True),
                        [f"spk{i % 3}_{i}" for i in range(utterances)],
                        [f"tone{int(f)}" for f in NOISE_HZ], SR, snr_range=(-5.0, 15.0))


@pytest.fixture(scope="module")
def white() -> MixingCorpus:
    return _white_corpus()


@pytest.fixture(scope="module")
def synth() -> SyntheticCorpus:
    return SyntheticCorpus(num_utterances=10, utterance_seconds=(0.8, 1.2),
                           noise_clips_per_family=1, noise_seconds=0.5, seed=3)


def _paired(seed: int = 1, count: int = 4) -> PairedCorpus:
    g = np.random.default_rng(seed)
    clean = [0.1 * g.standard_normal(SR) for _ in range(count)]
    noisy = [c + 0.05 * g.standard_normal(SR) for c in clean]
    bank = AudioBank.from_arrays(clean + noisy)
    items = torch.arange(count)
    return PairedCorpus(bank, items, items + count, [f"pair{i}" for i in range(count)], SR,
                        snr=torch.arange(count, dtype=torch.float32),
                        meta=[{"speaker": f"p{i // 2}"} for i in range(count)])


def _multi(white, rand=None, weights=(1.0, 1.0)) -> MultiSourceCorpus:
    """White speech (mixed) + a paired source in one corpus."""
    paired = _paired()
    parts = [white.bank.items(), paired.bank.items()]
    n_white = len(white)
    items = parts[0] + parts[1]
    bank = AudioBank.pack(items, torch.cat([white.bank.scales, paired.bank.scales]),
                          torch.cat([white.bank.power, paired.bank.power]))
    k = len(paired)
    clean = list(range(n_white)) + list(range(n_white, n_white + k))
    noisy = [-1] * n_white + list(range(n_white + k, n_white + 2 * k))
    return MultiSourceCorpus(
        bank, torch.tensor(clean), torch.tensor(noisy), white.names + paired.names, SR,
        utt_source=[0] * n_white + [1] * k, speech_sources=["white", "paired"],
        speech_weights=list(weights), noise_bank=white.noise_bank,
        noise_names=white.noise_names, noise_source=[0] * len(white.noise_names),
        noise_sources=["tones"], noise_weights=[1.0],
        snr=torch.cat([torch.full((n_white,), math.nan), paired.snr]),
        meta=[{}] * n_white + paired.meta, randomization=rand, snr_range=(-5.0, 15.0))


def _ks_uniform(values: torch.Tensor, lo: float, hi: float) -> float:
    """Kolmogorov-Smirnov distance of ``values`` from U(lo, hi)."""
    x = np.sort((values.double().numpy() - lo) / (hi - lo))
    n = x.size
    return float(max(np.max(np.arange(1, n + 1) / n - x), np.max(x - np.arange(n) / n)))


def _band_energy(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Energy in [lo, hi) Hz of Hann-windowed rows (the window keeps the crop's edges from
    leaking energy across the spectrum)."""
    window = torch.hann_window(x.shape[-1], dtype=torch.float64)
    spec = torch.fft.rfft(x.double() * window, dim=-1).abs().square()
    f = torch.fft.rfftfreq(x.shape[-1], 1.0 / SR)
    return spec[..., (f >= lo) & (f < hi)].sum(-1)


def _snr(seg) -> torch.Tensor:
    return 10 * torch.log10(seg.clean.double().square().sum(1)
                            / (seg.noisy - seg.clean).double().square().sum(1))


# -- identity / reference ------------------------------------------------------------------

def test_identity_draws_exactly_what_the_plain_corpora_draw(synth):
    multi = MultiSourceCorpus.from_corpus(synth)
    paired = _paired()
    for plain, wrapped in ((synth, multi), (paired, MultiSourceCorpus.from_corpus(paired))):
        key = rng.make_key(4)
        a, b = plain.draw(key, 32, 6000, 1000), wrapped.draw(key, 32, 6000, 1000)
        for field in ("clean", "noisy", "lengths", "utterance", "noise"):
            assert torch.equal(getattr(a, field), getattr(b, field)), field
        torch.testing.assert_close(a.snr_db, b.snr_db, equal_nan=True)


def test_single_folder_sources_load_as_plain_corpora(tmp_path):
    (tmp_path / "speech").mkdir()
    (tmp_path / "noise").mkdir()
    for i in range(3):
        sf.write(str(tmp_path / "speech" / f"s{i}.wav"),
                 0.1 * np.random.default_rng(i).standard_normal(SR), SR)
        sf.write(str(tmp_path / "noise" / f"n{i}.wav"),
                 np.sin(np.arange(SR) * 0.1 * (i + 1)), SR)
    plain = load_corpus(tmp_path / "speech", noise_dir=tmp_path / "noise")
    assert isinstance(plain, MixingCorpus) and not isinstance(plain, MultiSourceCorpus)
    multi = load_sources([tmp_path / "speech"], [tmp_path / "noise"])
    key = rng.make_key(1)
    a, b = plain.draw(key, 16, 4000, 1000), multi.draw(key, 16, 4000, 1000)
    assert torch.equal(a.noisy, b.noisy) and torch.equal(a.noise, b.noise)
    assert multi.names == plain.names and multi.noise_names == plain.noise_names
    # two noise folders, a weight, or a randomization make a MultiSourceCorpus
    assert isinstance(load_corpus([f"{tmp_path / 'speech'}:2"],
                                  noise_dir=[tmp_path / "noise"] * 2), MultiSourceCorpus)
    assert isinstance(load_corpus(tmp_path / "speech", noise_dir=tmp_path / "noise",
                                  randomization=Randomization(reverb_prob=0.5)),
                      MultiSourceCorpus)


def test_item_ticks_are_exact_integer_weights():
    assert item_ticks([0, 0, 0], [1.0]) == [1, 1, 1]
    assert item_ticks([0, 0, 1], [1.0, 1.0]) == [1, 1, 2]          # 1/2, 1/2 vs 1
    assert item_ticks([0, 1, 1, 1], [1.0, 3.0]) == [1, 1, 1, 1]    # 1 vs 3 over 3 items
    assert item_ticks([0, 1], [0.0, 2.5]) == [0, 1]
    with pytest.raises(CorpusError, match="weight 0"):
        item_ticks([0], [0.0])


# -- distributions follow the flags -----------------------------------------------------------

def test_drawn_snr_and_level_follow_their_ranges(white):
    rand = Randomization(level_range=(-40.0, -20.0), tilt_range=(-2.0, 2.0),
                         noise_count=(1, 3))
    corpus = MultiSourceCorpus.from_corpus(white, rand)
    seg, info = corpus.draw_with_info(rng.make_key(11), 2048, WIDTH, WIDTH)
    # measured over the valid part = drawn, row by row
    torch.testing.assert_close(_snr(seg).float(), seg.snr_db, atol=2e-3, rtol=0)
    level = 10 * torch.log10(seg.noisy.double().square().sum(1) / seg.lengths)
    assert not info.level_limited.any()
    torch.testing.assert_close(level.float(), info.params.level_db, atol=2e-3, rtol=0)
    # and the drawn values are uniform over the flags' ranges
    assert _ks_uniform(seg.snr_db, -5.0, 15.0) < 0.04
    assert _ks_uniform(info.params.level_db, -40.0, -20.0) < 0.04
    assert seg.snr_db.min() >= -5.0 and seg.snr_db.max() <= 15.0


def test_level_is_lowered_instead_of_clipping(white):
    corpus = MultiSourceCorpus.from_corpus(white, Randomization(level_range=(-1.0, 0.0)))
    seg, info = corpus.draw_with_info(rng.make_key(3), 256, WIDTH, WIDTH)
    assert info.level_limited.any()
    assert seg.noisy.abs().amax(1).max() <= 1.0 + 1e-6
    torch.testing.assert_close(_snr(seg).float(), seg.snr_db, atol=2e-3, rtol=0)


@pytest.mark.parametrize("knob,flag", [("reverb_prob", "reverb"), ("lowpass_prob", "lowpass"),
                                       ("highpass_prob", "highpass"), ("babble_prob", "babble")])
def test_probability_knobs_act_at_their_rate_and_only_there(white, knob, flag):
    p = 0.3
    on = MultiSourceCorpus.from_corpus(white, Randomization(**{knob: p},
                                                            rt60_range=(0.1, 0.2)))
    off = MultiSourceCorpus.from_corpus(white, Randomization())
    key = rng.make_key(21)
    seg, info = on.draw_with_info(key, 1536, 4000, 4000)
    ref = off.draw(key, 1536, 4000, 4000)
    chosen = getattr(info.params, flag)
    assert abs(chosen.float().mean().item() - p) < 0.04
    # the rows the knob did not touch equal the plain draw (same key, same other draws)
    changed = ((seg.noisy - ref.noisy).abs().amax(1) > 1e-4)
    assert torch.equal(changed, chosen)
    assert torch.equal(seg.lengths, ref.lengths) and torch.equal(seg.utterance, ref.utterance)
    torch.testing.assert_close(seg.snr_db, ref.snr_db)
    if flag == "babble":
        assert torch.equal(seg.noise == BABBLE, chosen)


def test_noise_count_is_uniform_and_each_row_holds_that_many_noises(white):
    rand = Randomization(noise_count=(1, 3), noise_gain_range=(-6.0, 0.0))
    corpus = MultiSourceCorpus.from_corpus(white, rand)
    seg, info = corpus.draw_with_info(rng.make_key(5), 1536, WIDTH, WIDTH)
    count = info.params.count
    for c in (1, 2, 3):
        assert abs((count == c).float().mean().item() - 1 / 3) < 0.05
    slots = info.noise_items
    assert ((slots >= 0).sum(1) == count).all() and (slots[:, 3] == -1).all()
    # the tones in noisy - clean are exactly the drawn slots' items, at the drawn gains
    noise = (seg.noisy - seg.clean)[:200]
    spec = torch.fft.rfft(noise.double(), dim=-1).abs().square()
    bins = [round(f * WIDTH / SR) for f in NOISE_HZ]
    power = spec[:, bins]                                    # [rows, 4]
    for row in range(200):
        items = slots[row][slots[row] >= 0].tolist()
        present = set(torch.nonzero(power[row] > 1e-6 * power[row].max()).flatten().tolist())
        assert present == set(items)
        if len(set(items)) == len(items):  # distinct tones: relative powers = drawn gains
            gains = info.params.gains_db[row, :len(items)]
            got = 10 * torch.log10(power[row, items] / power[row, items[0]])
            torch.testing.assert_close(got.float(), gains - gains[0], atol=0.05, rtol=0)


# -- filters -----------------------------------------------------------------------------------

def test_band_limits_remove_energy_beyond_the_cutoff(white):
    lp = MultiSourceCorpus.from_corpus(white, Randomization(lowpass_prob=1.0,
                                                            lowpass_range=(3000.0, 3000.0)))
    seg = lp.draw(rng.make_key(2), 64, WIDTH, WIDTH)
    for x in (seg.clean, seg.noisy):
        total = _band_energy(x, 0, SR / 2)
        assert (_band_energy(x, 3000 * 1.02, SR / 2) / total).max() < 1e-6     # -60 dB
        assert (_band_energy(x, 100, 2500) / total).min() > 0.5
    hp = MultiSourceCorpus.from_corpus(white, Randomization(highpass_prob=1.0,
                                                            highpass_range=(300.0, 300.0)))
    seg = hp.draw(rng.make_key(2), 64, WIDTH, WIDTH)
    total = _band_energy(seg.clean, 0, SR / 2)
    assert (_band_energy(seg.clean, 0, 300 / 1.02) / total).max() < 1e-6
    # the pass band is untouched: the same rows unfiltered carry the same energy there
    plain = MultiSourceCorpus.from_corpus(white).draw(rng.make_key(2), 64, WIDTH, WIDTH)
    ratio = _band_energy(seg.clean, 500, 7000) / _band_energy(plain.clean, 500, 7000)
    torch.testing.assert_close(ratio, torch.ones_like(ratio), atol=0.02, rtol=0)


def test_tilt_gives_the_requested_slope(white):
    corpus = MultiSourceCorpus.from_corpus(white, Randomization(tilt_range=(3.0, 3.0)))
    seg = corpus.draw(rng.make_key(8), 256, WIDTH, WIDTH)
    plain = MultiSourceCorpus.from_corpus(white).draw(rng.make_key(8), 256, WIDTH, WIDTH)
    for lo, octaves in ((250.0, -2.0), (4000.0, 2.0)):
        gain = (_band_energy(seg.clean, lo / 1.1, lo * 1.1).sum()
                / _band_energy(plain.clean, lo / 1.1, lo * 1.1).sum())
        assert abs(10 * math.log10(gain) - 3.0 * octaves) < 0.3


def _rt60_schroeder(h: torch.Tensor) -> float:
    """T20 (fit of the energy decay curve between -5 and -25 dB) x 3, seconds."""
    edc = torch.flip(torch.cumsum(torch.flip(h.double()[1:].square(), [0]), 0), [0])
    db = 10 * torch.log10(edc / edc[0])
    t = torch.arange(db.numel(), dtype=torch.float64) / SR
    sel = (db <= -5) & (db >= -25)
    slope = np.polyfit(t[sel].numpy(), db[sel].numpy(), 1)[0]
    return -60.0 / slope


def test_room_responses_have_the_requested_rt60_and_drr():
    rt60 = torch.tensor([0.3, 0.6, 1.0])
    drr = torch.tensor([0.0, 6.0, 12.0])
    u = rng.uniform(rng.make_key(1), (3, SR))
    h = synthetic_rir(u, rt60, drr, SR)
    assert (h[:, 0] == 1).all()
    got = 10 * torch.log10(1.0 / h[:, 1:].double().square().sum(1))
    torch.testing.assert_close(got.float(), drr, atol=1e-3, rtol=0)
    for row in range(3):
        assert abs(_rt60_schroeder(h[row]) / float(rt60[row]) - 1) < 0.1


def test_reverberant_target_is_the_dry_crop_convolved_with_a_causal_response(white):
    rand = Randomization(reverb_prob=1.0, rt60_range=(0.3, 0.3), drr_range=(5.0, 5.0))
    seg = MultiSourceCorpus.from_corpus(white, rand).draw(rng.make_key(6), 8, WIDTH, WIDTH)
    dry = MultiSourceCorpus.from_corpus(white).draw(rng.make_key(6), 8, WIDTH, WIDTH)
    # causal: the first sample is the direct path of the first dry sample
    torch.testing.assert_close(seg.clean[:, 0], dry.clean[:, 0], atol=1e-5, rtol=0)
    # and the reverberant energy is direct + reverberant (DRR 5 dB: x (1 + 10^-0.5))
    ratio = seg.clean.square().sum(1) / dry.clean.square().sum(1)
    assert ((ratio > 1.15) & (ratio < 1.5)).all()
    torch.testing.assert_close(_snr(seg).float(), seg.snr_db, atol=2e-3, rtol=0)


def test_switching_one_knob_off_keeps_every_other_draw(white):
    domain = MultiSourceCorpus.from_corpus(white, PRESETS["domain"])
    no_reverb = domain.with_randomization(PRESETS["domain"].replace(reverb_prob=0.0))
    key = rng.make_key(9)
    a, ia = domain.draw_with_info(key, 256, WIDTH, 4000)
    b, ib = no_reverb.draw_with_info(key, 256, WIDTH, 4000)
    keep = ~ia.params.reverb
    assert ia.params.reverb.any() and keep.any() and not ib.params.reverb.any()
    # (equal up to the FFT size, which the room response changes: < 1e-3 relative)
    error = (a.noisy[keep] - b.noisy[keep]).norm(dim=1) / b.noisy[keep].norm(dim=1)
    assert error.max() < 1e-3
    for field in ("lengths", "utterance", "noise", "snr_db"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert torch.equal(ia.noise_items, ib.noise_items)


# -- batches, devices, compile --------------------------------------------------------------

def test_row_depends_only_on_key_and_row(white):
    corpus = _multi(white, PRESETS["domain"])
    key = rng.make_key(13)
    big = corpus.draw(key, 24, WIDTH, 2000)
    small = corpus.draw(key, 5, WIDTH, 2000)
    for field in ("lengths", "utterance", "noise"):
        assert torch.equal(getattr(big, field)[:5], getattr(small, field))
    torch.testing.assert_close(big.noisy[:5], small.noisy, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(big.clean[:5], small.clean, atol=1e-6, rtol=1e-5)
    again = corpus.draw(key, 24, WIDTH, 2000)
    assert torch.equal(again.noisy, big.noisy)
    other = corpus.draw(rng.make_key(14), 24, WIDTH, 2000)
    assert not torch.equal(other.noisy, big.noisy)
    # zero beyond lengths, finite everywhere
    beyond = torch.arange(WIDTH) >= big.lengths[:, None]
    assert (big.noisy[beyond] == 0).all() and (big.clean[beyond] == 0).all()
    assert torch.isfinite(big.noisy).all()


def test_draw_compiles_fullgraph_and_matches_eager(white):
    corpus = _multi(white, PRESETS["domain"])
    torch._dynamo.reset()
    draw = torch.compile(corpus.draw, fullgraph=True, backend="aot_eager")
    key = rng.make_key(17)
    got, want = draw(key, 6, 3000, 1000), corpus.draw(key, 6, 3000, 1000)
    for field in ("lengths", "utterance", "noise"):
        assert torch.equal(getattr(got, field), getattr(want, field))
    torch.testing.assert_close(got.noisy, want.noisy)
    torch.testing.assert_close(got.clean, want.clean)
    torch.testing.assert_close(got.snr_db, want.snr_db, equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
def test_same_draws_on_every_device(white, device):
    corpus = _multi(white, PRESETS["domain"])
    moved = corpus.to(device)
    a = corpus.draw(rng.make_key(7), 16, 4000, 1000)
    b = moved.draw(rng.make_key(7, device), 16, 4000, 1000)
    assert torch.equal(a.utterance, b.utterance.cpu()) and torch.equal(a.noise, b.noise.cpu())
    torch.testing.assert_close(a.noisy, b.noisy.cpu(), atol=1e-4, rtol=1e-4)


# -- sources, weights, paired rows -------------------------------------------------------------

def test_source_weights_set_the_share_of_rows(white):
    corpus = _multi(white, weights=(1.0, 3.0))
    seg, info = corpus.draw_with_info(rng.make_key(3), 4000, 2000, 1000)
    share = info.source.float().mean().item()
    assert abs(share - 0.75) < 0.03
    assert torch.equal(info.paired, info.source == 1)
    assert torch.equal(seg.noise[info.paired], torch.full_like(seg.noise[info.paired], -1))


def test_paired_rows_keep_their_recording_and_only_get_channel_and_level(white):
    corpus = _multi(white, Randomization(level_range=(-30.0, -30.0), reverb_prob=1.0,
                                         noise_count=(3, 3), babble_prob=1.0))
    plain = _multi(white)
    key = rng.make_key(2)
    seg, info = corpus.draw_with_info(key, 256, 6000, 6000)
    ref = plain.draw(key, 256, 6000, 6000)
    rows = info.paired
    assert rows.any() and not info.params.reverb[rows].any()
    assert (info.params.count[rows] == 1).all() and not info.params.babble[rows].any()
    # paired: noisy = lambda * recorded noisy, target = lambda * clean (same lambda)
    scale = seg.noisy[rows].norm(dim=1) / ref.noisy[rows].norm(dim=1)
    torch.testing.assert_close(seg.noisy[rows], ref.noisy[rows] * scale[:, None], atol=1e-5,
                               rtol=1e-4)
    torch.testing.assert_close(seg.clean[rows], ref.clean[rows] * scale[:, None], atol=1e-5,
                               rtol=1e-4)
    torch.testing.assert_close(seg.snr_db[rows], ref.snr_db[rows])  # meta.csv's snr_db
    assert info.params.reverb[~rows].all() and (seg.noise[~rows] == BABBLE).all()


def test_load_sources_mixes_synthetic_and_folders(tmp_path, synth):
    for i in range(3):
        (tmp_path / "clean").mkdir(exist_ok=True)
        sf.write(str(tmp_path / "clean" / f"c{i}.wav"),
                 0.1 * np.random.default_rng(i).standard_normal(SR), SR)
    (tmp_path / "noise").mkdir()
    sf.write(str(tmp_path / "noise" / "hum.wav"), np.sin(np.arange(2 * SR) * 0.05), SR)
    corpus = load_sources(["synthetic:1", f"{tmp_path / 'clean'}:1"],
                          ["synthetic:1", f"{tmp_path / 'noise'}:1"],
                          randomization=Randomization(noise_count=(1, 2), babble_prob=0.2))
    assert len(corpus) == 256 + 3 and corpus.noise_names[-1] == "hum.wav"
    assert corpus.speech_sources == ["synthetic", str(tmp_path / "clean")]
    seg, info = corpus.draw_with_info(rng.make_key(0), 2000, 2000, 1000)
    main = seg.noise[seg.noise >= 0]
    hum = (main == len(corpus.noise_names) - 1).float().mean().item()
    assert abs(hum - 0.5) < 0.05  # noise source weights 1:1, one item vs 32
    assert abs(info.source.float().mean().item() - 0.5) < 0.05
    meta = corpus.utterance_meta(256)  # the first clean-folder utterance
    assert meta["source"] == str(tmp_path / "clean") and "noise_source" in meta


def test_env_resets_from_the_randomized_draw_by_masked_select(white):
    from hear_vec.env import DenoiseEnv

    corpus = _multi(white, PRESETS["domain"])
    env = DenoiseEnv(corpus, num_envs=4, max_steps=2, segment_seconds=0.25,
                     min_segment_seconds=0.125, seed=5)
    env.reset()
    first = corpus.draw(rng.fold_in(env.key, 0), 4, 4000, 2000)
    assert torch.equal(env.state.noisy, first.noisy)
    action = torch.tensor([[4.0, 0.5, 0.5, 0.5]]).repeat(4, 1)
    env.step(action)
    _, reward, terminated, _, _ = env.step(action)
    assert terminated.all() and torch.isfinite(reward).all()
    # the autoreset of step 2 drew with the step counter (hear_vec.env.transition)
    assert int(env.state.counter) == 2
    fresh = corpus.draw(rng.fold_in(env.key, env.state.counter), 4, 4000, 2000)
    assert torch.equal(env.state.noisy, fresh.noisy)
    assert torch.equal(env.state.clean, fresh.clean)


# -- bad settings ----------------------------------------------------------------------------

@pytest.mark.parametrize("changes,needle", [
    ({"reverb_prob": 1.5}, "reverb_prob must lie in [0, 1]"),
    ({"noise_count": (0, 2)}, "noise_count must be two ints"),
    ({"noise_count": (1, MAX_NOISES + 1)}, "noise_count"),
    ({"level_range": (-10.0, 5.0)}, "level_range is in dBFS"),
    ({"tilt_range": (3.0, -3.0)}, "LO <= HI"),
    ({"rt60_range": (0.0, 0.5)}, "rt60_range must be positive"),
    ({"eq_bands": 9}, "eq_bands"),
    ({"babble_talkers": (2, 20)}, "babble_talkers"),
    ({"lowpass_range": (math.nan, 4000.0)}, "finite"),
])
def test_bad_randomization_gives_one_line_errors(changes, needle):
    with pytest.raises(RandomizationError) as err:
        Randomization(**changes).validate()
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert err.value.field == next(iter(changes))


def test_bad_sources_give_one_line_errors(tmp_path, white):
    (tmp_path / "speech").mkdir()
    sf.write(str(tmp_path / "speech" / "a.wav"), 0.1 * np.ones(SR), SR)
    cases = [
        (lambda: parse_source("x:-1"), "weight"),
        (lambda: load_sources([tmp_path / "speech"]), "needs a noise source"),
        (lambda: load_sources([tmp_path / "nothing"]), "not found"),
        (lambda: load_sources([tmp_path / "speech"], [tmp_path / "speech" / "a.wav"]),
         "not a folder"),
        (lambda: resolve_randomization("loud"), "augment must be one of"),
        (lambda: resolve_randomization(level_range="on"), "level_range"),
        (lambda: MultiSourceCorpus.from_corpus(
            _paired(), Randomization()).noise_subset([0]), "noise subset"),
    ]
    for call, needle in cases:
        with pytest.raises((CorpusError, RandomizationError)) as err:
            call()
        assert needle in str(err.value) and "\n" not in str(err.value)
    # a paired source with a noise source: the noise would never be used
    paired = tmp_path / "pairs"
    for side in ("clean", "noisy"):
        (paired / side).mkdir(parents=True)
        sf.write(str(paired / side / "p.wav"), 0.1 * np.ones(SR), SR)
    with pytest.raises(CorpusError, match="every speech source is paired"):
        load_sources([paired], ["synthetic"])


def test_real_dev_audio_domain_draws_keep_snr_level_and_zeros(dev_audio):
    corpus = load_corpus(clean_dir=dev_audio / "speech", noise_dir=dev_audio / "noise",
                         randomization=PRESETS["domain"].replace(level_range=(-40.0, -25.0)))
    seg, info = corpus.draw_with_info(rng.make_key(0), 64, 2 * SR, SR)
    assert torch.isfinite(seg.noisy).all() and torch.isfinite(seg.clean).all()
    beyond = torch.arange(2 * SR) >= seg.lengths[:, None]
    assert (seg.noisy[beyond] == 0).all() and (seg.clean[beyond] == 0).all()
    torch.testing.assert_close(_snr(seg).float(), seg.snr_db, atol=5e-3, rtol=0)
    level = 10 * torch.log10(seg.noisy.double().square().sum(1) / seg.lengths)
    free = ~info.level_limited
    torch.testing.assert_close(level.float()[free], info.params.level_db[free], atol=5e-3,
                               rtol=0)
    assert (info.params.count > 1).any() and info.params.reverb.any()


def test_fft_size_is_the_smallest_5_smooth_multiple_of_16():
    from hear_vec.data.filters import fft_size

    def fast(m: int) -> bool:
        if m % 16:
            return False
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    for n in (1, 7, 1000, 32001, 46800, 48001, 52001):
        size = fft_size(n)
        assert size >= n and fast(size) and not any(fast(k) for k in range(n, size))
    assert fft_size(46800) == 48000


def test_presets_and_overrides_resolve_to_validated_settings():
    assert PRESETS["off"].is_identity() and not PRESETS["domain"].is_identity()
    rand = resolve_randomization("domain", reverb_prob=0.0, noise_count=[1, 2], tilt_range=None,
                                 level_range="off")
    assert rand.reverb_prob == 0.0 and rand.noise_count == (1, 2)  # lists (JSON) -> tuples
    assert rand.tilt_range == PRESETS["domain"].tilt_range and rand.level_range is None
    assert Randomization(**{**rand.as_dict(), "eq_freq_range": [100, 200]}).eq_freq_range == (
        100, 200)
    with pytest.raises(RandomizationError, match="not a randomization knob"):
        resolve_randomization(loudness=3)


def test_whole_utterances_are_randomized_deterministically(white):
    corpus = _multi(white, PRESETS["domain"])
    for index in (0, len(corpus) - 1):  # a mixed and a paired utterance
        clean, noisy = corpus.utterance_audio(index)
        n = int(corpus.utterance_lengths()[index])
        assert clean.shape == noisy.shape == (n,) and torch.isfinite(noisy).all()
        again = corpus.utterance_audio(index)
        assert torch.equal(again[1], noisy)
        meta = corpus.utterance_meta(index)
        assert meta["utt_id"] == corpus.names[index] and meta["duration_sec"] == n / SR
    assert corpus.utterance_meta(len(corpus) - 1)["source"] == "paired"
