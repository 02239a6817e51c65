"""hear_vec.data and hear_vec.audio_io: every source loads and draws, draws honour their
contract (lengths, zeros beyond, exact SNR, keys, wrap-around), split, compile, bad corpora,
the demo writer round trip."""

from __future__ import annotations

import logging
import math
import os
import stat
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from hear_vec import rng
from hear_vec.audio_io import AudioReadError, list_audio_files, read_audio, write_audio_atomic
from hear_vec.cli.data_demo import main as demo_main
from hear_vec.data import (
    DEFAULT_TAIL,
    NOISE_FAMILIES,
    AudioBank,
    CorpusError,
    MixingCorpus,
    PairedCorpus,
    SyntheticCorpus,
    load_corpus,
    synthesize_speech,
)
from hear_vec.data.demo import write_demo_corpus
from tests.conftest import DEVICES

SR = 16000


def _write(path, audio, sr=SR, subtype="FLOAT"):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(audio, dtype=np.float32).T, sr, subtype=subtype)


def _tone(seconds, freq=220.0, sr=SR, seed=0):
    t = np.arange(int(seconds * sr)) / sr
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * noise).astype(np.float32)


def _snr(seg):
    noise = seg.noisy - seg.clean
    return 10 * torch.log10((seg.clean ** 2).sum(1) / (noise ** 2).sum(1))


@pytest.fixture(scope="module")
def synth():
    return SyntheticCorpus(num_utterances=12, utterance_seconds=(0.6, 1.2),
                           noise_clips_per_family=1, noise_seconds=0.5, seed=3)


@pytest.fixture
def pair_folder(tmp_path):
    """clean/ + noisy/ with a nested file and a 44.1 kHz stereo pair."""
    root = tmp_path / "pairs"
    for i, name in enumerate(["a.wav", "b.wav", "sub/c.flac"]):
        clean = _tone(0.5 + 0.1 * i, 200 + 50 * i, seed=i)
        _write(root / "clean" / name, clean, subtype="PCM_16" if name.endswith("flac") else "FLOAT")
        _write(root / "noisy" / name, clean + 0.05 * _tone(0.5 + 0.1 * i, 3000, seed=9 + i),
               subtype="PCM_16" if name.endswith("flac") else "FLOAT")
    stereo = np.stack([_tone(0.4, 300, 44100), _tone(0.4, 300, 44100, seed=5)])
    _write(root / "clean" / "st.wav", stereo, 44100)
    _write(root / "noisy" / "st.wav", stereo * 0.9, 44100)
    return root


def _meta_folder(tmp_path, rows=3, snr=True):
    root = tmp_path / "meta"
    lines = ["utt_id,clean_path,noisy_path" + (",snr_db,noise_source,extra" if snr else "")]
    for i in range(rows):
        clean = _tone(0.5, 250 + 20 * i, seed=i)
        _write(root / "clean" / f"u{i}.wav", clean)
        _write(root / "noisy" / f"u{i}.wav", clean + 0.1 * _tone(0.5, 1000, seed=i + 7))
        lines.append(f"u{i},u{i}.wav,u{i}.wav" + (f",{i * 5.0},white,x{i}" if snr else ""))
    (root / "meta.csv").write_text("\n".join(lines) + "\n")
    return root


# -- audio_io ----------------------------------------------------------------------------------

def test_read_audio_shapes_and_errors(tmp_path):
    _write(tmp_path / "st.wav", np.stack([_tone(0.1, sr=22050), _tone(0.1, sr=22050, seed=2)]),
           22050)
    audio, sr = read_audio(tmp_path / "st.wav")
    assert audio.shape == (2, 2205) and audio.dtype == np.float32 and sr == 22050
    _write(tmp_path / "nan.wav", np.array([0.1, np.nan, 0.2]))
    sf.write(str(tmp_path / "empty.wav"), np.zeros((0, 1), np.float32), SR)
    (tmp_path / "junk.wav").write_bytes(b"this is not audio")
    for name, reason in [("nan.wav", "non-finite"), ("empty.wav", "empty"),
                         ("junk.wav", "unreadable"), ("missing.wav", "not found")]:
        with pytest.raises(AudioReadError, match=reason) as info:
            read_audio(tmp_path / name)
        assert "\n" not in str(info.value) and isinstance(info.value, ValueError)


def test_write_audio_atomic_round_trip(tmp_path):
    stereo = np.stack([_tone(0.2), -_tone(0.2)])
    out = write_audio_atomic(tmp_path / "deep" / "x.flac", torch.from_numpy(stereo), SR)
    back, sr = read_audio(out)
    assert sr == SR and back.shape == stereo.shape
    np.testing.assert_allclose(back, stereo, atol=1 / 32768 + 1e-6)
    write_audio_atomic(tmp_path / "m.wav", np.full(10, 2.0), SR, "PCM_16")  # clipped
    assert read_audio(tmp_path / "m.wav")[0].max() <= 1.0
    with pytest.raises(ValueError, match="NaN"):
        write_audio_atomic(tmp_path / "bad.wav", np.array([0.0, np.nan]), SR)
    assert not (tmp_path / "bad.wav").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "m.wav"]  # no temp files left


def test_list_audio_files(tmp_path):
    for rel in ["b.WAV", "a/x.flac", "a/y.txt", ".hidden.wav", ".git/z.wav", "c/d/e.wav"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert [p.as_posix() for p in list_audio_files(tmp_path)] == ["a/x.flac", "b.WAV",
                                                                   "c/d/e.wav"]


# -- synthetic generator -----------------------------------------------------------------------

def test_synthetic_is_deterministic_per_seed(synth):
    again = SyntheticCorpus(num_utterances=12, utterance_seconds=(0.6, 1.2),
                            noise_clips_per_family=1, noise_seconds=0.5, seed=3)
    other = SyntheticCorpus(num_utterances=12, utterance_seconds=(0.6, 1.2),
                            noise_clips_per_family=1, noise_seconds=0.5, seed=4)
    assert torch.equal(synth.bank.data, again.bank.data)
    assert torch.equal(synth.noise_bank.data, again.noise_bank.data)
    assert not torch.allclose(synth.bank.item(0)[:9000], other.bank.item(0)[:9000])
    demo = SyntheticCorpus(num_utterances=2, utterance_seconds=(0.6, 1.2),
                           noise_clips_per_family=1, noise_seconds=0.5, seed=3, stream=1)
    assert not torch.allclose(synth.bank.item(1)[:9000], demo.bank.item(1)[:9000])
    # a row depends only on (key, row), not on how many rows are generated at once
    key = rng.make_key(5)
    many = synthesize_speech(key, 40, 4000)
    assert torch.allclose(many[33], synthesize_speech(key, 34, 4000)[33], atol=1e-6)


def test_synthetic_speech_has_pauses_and_pitch(synth):
    assert synth.noise_names == [f"{f}_00" for f in NOISE_FAMILIES]
    speech = synthesize_speech(rng.make_key(1), 4, 188 * 256)
    assert torch.isfinite(speech).all()
    frames = speech.reshape(4, -1, 256).pow(2).mean(-1)  # 16 ms frames
    level_db = 10 * torch.log10(frames + 1e-20)
    silent = level_db < level_db.amax(1, keepdim=True) - 40  # pystoi's silent-frame range
    assert (silent.float().mean(1) > 0.08).all()   # real pauses (lead, trail, gaps)
    assert (silent.float().mean(1) < 0.6).all()    # ... but mostly speech
    spec = torch.fft.rfft(speech[0]).abs()
    freqs = torch.fft.rfftfreq(speech.shape[1], 1 / SR)
    assert (spec[(freqs > 80) & (freqs < 250)].max() > 10 * spec[freqs > 7000].mean())
    for name in synth.noise_names:  # every family is finite, non-silent audio
        x = synth.noise_bank.item(synth.noise_names.index(name))
        assert torch.isfinite(x).all() and x.pow(2).mean() > 0


def test_default_synthetic_source_loads_and_draws():
    corpus = load_corpus("synthetic", snr_range=(0.0, 5.0))
    assert isinstance(corpus, SyntheticCorpus) and len(corpus) == 256
    assert corpus.bank.data.dtype == torch.int16
    lens = corpus.utterance_lengths() / SR
    assert lens.min() >= 3.0 and lens.max() <= 4.0
    seg = corpus.draw(rng.make_key(0), 64, 2 * SR, SR // 2)
    assert torch.isfinite(seg.noisy).all()
    assert ((seg.snr_db >= 0) & (seg.snr_db < 5)).all()


# -- draw contract ------------------------------------------------------------------------------

def test_draw_lengths_zeros_and_exact_snr(synth):
    seg = synth.draw(rng.make_key(11), 256, 12000, 3000)
    assert seg.clean.shape == seg.noisy.shape == (256, 12000)
    assert seg.clean.dtype == torch.float32 and seg.lengths.dtype == torch.long
    ulen = synth.utterance_lengths()[seg.utterance]
    assert (seg.lengths <= torch.clamp(ulen, max=12000)).all()
    assert (seg.lengths >= torch.clamp(ulen, max=3000)).all()
    assert len(set(seg.lengths.tolist())) > 50  # lengths vary
    beyond = torch.arange(12000) >= seg.lengths[:, None]
    assert (seg.clean[beyond] == 0).all() and (seg.noisy[beyond] == 0).all()
    lo, hi = synth.snr_range
    assert ((seg.snr_db >= lo) & (seg.snr_db < hi)).all()
    assert seg.snr_db.std() > 3
    audible = seg.clean.pow(2).sum(1) / seg.lengths > 1e-3 * synth.bank.power[seg.utterance]
    torch.testing.assert_close(_snr(seg)[audible], seg.snr_db[audible], atol=0.01, rtol=0)
    assert torch.isfinite(seg.noisy).all()
    assert set(seg.noise.tolist()) <= set(range(len(synth.noise_names)))


def test_draw_keys(synth):
    a = synth.draw(rng.make_key(1), 8, 4000, 1000)
    b = synth.draw(rng.make_key(1), 8, 4000, 1000)
    c = synth.draw(rng.fold_in(rng.make_key(1), 1), 8, 4000, 1000)
    for field in ("clean", "noisy", "lengths", "snr_db", "utterance", "noise"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.noisy, c.noisy)
    fixed = synth.draw(rng.make_key(1), 8, 4000)  # min_samples defaults to segment_samples
    assert torch.equal(fixed.lengths, torch.clamp(synth.utterance_lengths()[fixed.utterance],
                                                  max=4000))


def _index_bank(lengths, wrap, tail):
    """Items whose samples are their own 1-based index (scale 1, no quantisation)."""
    items = [torch.arange(1, n + 1, dtype=torch.int16) for n in lengths]
    return AudioBank.pack(items, torch.ones(len(lengths)),
                          torch.tensor([n * n / 3.0 for n in lengths]), wrap, tail)


@pytest.mark.parametrize("tail", [0, DEFAULT_TAIL])  # per-sample indices / strided windows
def test_draw_crops_contiguously_and_wraps_noise(tail):
    corpus = MixingCorpus(_index_bank([5000, 3000], False, tail),
                          _index_bank([700], True, tail), ["long", "short"], ["ramp"], SR,
                          (0.0, 0.0))
    seg = corpus.draw(rng.make_key(2), 32, 4000, 1000)
    assert set(seg.utterance.tolist()) == {0, 1}
    assert len(set(seg.clean[:, 0].tolist())) > 20  # crop offsets vary
    for i in range(32):
        n, ulen = int(seg.lengths[i]), (5000, 3000)[int(seg.utterance[i])]
        idx = seg.clean[i, :n].round().long()
        assert torch.equal(torch.diff(idx), torch.ones(n - 1, dtype=torch.long))  # one crop
        assert idx[0] >= 1 and idx[-1] <= ulen
        noise = seg.noisy[i, :n] - seg.clean[i, :n]
        k = (noise / noise.min()).round().long()  # n >= 1000 > 700: the minimum is index 1
        assert torch.equal(k[1:], k[:-1] % 700 + 1)  # ramp that wraps modulo 700
    assert (seg.noisy[torch.arange(4000) >= seg.lengths[:, None]] == 0).all()


def test_silent_clean_gives_finite_segments():
    clean = AudioBank.from_arrays([np.zeros(3000), np.concatenate([np.zeros(2000),
                                                                    _tone(0.1)])])
    corpus = MixingCorpus(clean, AudioBank.from_arrays([_tone(0.2, 1000)]), ["z", "half"],
                          ["n"], SR)
    seg = corpus.draw(rng.make_key(0), 64, 1500, 100)
    assert torch.isfinite(seg.noisy).all() and torch.isfinite(seg.clean).all()
    assert (seg.noisy[seg.utterance == 0].abs().max() < 1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_draw_same_on_device(synth, device):
    moved = synth.to(device)
    assert moved.bank.data.device.type == device
    a = synth.draw(rng.make_key(7), 16, 4000, 500)
    b = moved.draw(rng.make_key(7, device), 16, 4000, 500)
    for field in ("lengths", "utterance", "noise"):
        assert torch.equal(getattr(a, field), getattr(b, field).cpu())
    torch.testing.assert_close(a.noisy, b.noisy.cpu(), atol=1e-5, rtol=1e-5)


def test_draw_compiles_fullgraph(synth):
    # aot_eager: full-graph capture through dynamo + AOT autograd (any host sync or
    # data-dependent branch fails here); inductor's C++ codegen adds minutes on a cold
    # 2-core CPU and no extra proof.
    torch._dynamo.reset()
    draw = torch.compile(synth.draw, fullgraph=True, backend="aot_eager")
    key = rng.make_key(9)
    got, want = draw(key, 4, 3000, 500), synth.draw(key, 4, 3000, 500)
    assert torch.equal(got.lengths, want.lengths) and torch.equal(got.utterance,
                                                                  want.utterance)
    torch.testing.assert_close(got.noisy, want.noisy)


def test_draw_rejects_bad_arguments(synth):
    with pytest.raises(ValueError, match="min_samples"):
        synth.draw(rng.make_key(0), 4, 100, 200)
    with pytest.raises(ValueError, match="key"):
        synth.draw(0, 4, 100, 50)
    with pytest.raises(ValueError, match="num"):
        synth.draw(rng.make_key(0), 0, 100, 50)


def test_split_disjoint_and_seeded(synth):
    train, valid = synth.split(0.25, seed=1)
    assert len(valid) == 3 and len(train) == 9
    assert set(train.names).isdisjoint(valid.names)
    assert sorted(train.names + valid.names) == sorted(synth.names)
    assert synth.split(0.25, seed=1)[1].names == valid.names
    assert any(synth.split(0.25, seed=s)[1].names != valid.names for s in range(2, 6))
    seg = valid.draw(rng.make_key(0), 64, 2000, 100)
    assert int(seg.utterance.max()) < len(valid)
    idx = int(seg.utterance[0])
    for part, whole in zip(valid.utterance_audio(idx),
                           synth.utterance_audio(synth.names.index(valid.names[idx]))):
        torch.testing.assert_close(part, whole)  # same audio, same fixed mixing
    with pytest.raises(ValueError, match="valid_fraction"):
        synth.split(1.0)


# -- file sources -------------------------------------------------------------------------------

def test_pair_folder_loads_with_resampling(pair_folder):
    corpus = load_corpus(pair_folder)
    assert isinstance(corpus, PairedCorpus)
    assert corpus.names == ["a", "b", "st", "sub/c"]
    st = corpus.names.index("st")
    clean, noisy = corpus.utterance_audio(st)
    assert clean.shape == (round(0.4 * SR),)  # 44.1 kHz stereo -> 16 kHz mono
    torch.testing.assert_close(noisy, 0.9 * clean, atol=2e-4, rtol=0)
    seg = corpus.draw(rng.make_key(0), 16, 6000, 1000)
    assert torch.isnan(seg.snr_db).all() and (seg.noise == -1).all()
    assert torch.isfinite(seg.noisy).all()


def test_meta_csv_file_and_folder(tmp_path):
    root = _meta_folder(tmp_path)
    for data in (root / "meta.csv", root, str(root)):
        corpus = load_corpus(data)
        assert corpus.names == ["u0", "u1", "u2"]
        torch.testing.assert_close(corpus.snr, torch.tensor([0.0, 5.0, 10.0]))
        assert corpus.meta[1]["noise_source"] == "white" and corpus.meta[1]["extra"] == "x1"
    seg = corpus.draw(rng.make_key(1), 8, 4000, 1000)
    assert torch.equal(seg.snr_db, corpus.snr[seg.utterance])
    bare = _meta_folder(tmp_path / "bare", snr=False)
    assert torch.isnan(load_corpus(bare).snr).all()


def test_clean_and_noise_dirs_mix_on_the_fly(tmp_path, pair_folder):
    noise_dir = tmp_path / "noise"
    _write(noise_dir / "hum.wav", 0.2 * _tone(0.05, 60))  # shorter than the segments
    _write(noise_dir / "st.wav", np.stack([_tone(0.3, 900, 44100), _tone(0.3, 700, 44100)]),
           44100)
    corpus = load_corpus(clean_dir=pair_folder / "clean", noise_dir=noise_dir,
                         snr_range=(3.0, 3.0))
    assert isinstance(corpus, MixingCorpus) and len(corpus) == 4
    assert corpus.noise_names == ["hum.wav", "st.wav"]
    assert int(corpus.noise_bank.lengths[1]) == round(0.3 * SR)
    seg = corpus.draw(rng.make_key(4), 32, 8000, 2000)
    torch.testing.assert_close(_snr(seg), torch.full((32,), 3.0), atol=0.01, rtol=0)
    with pytest.raises(CorpusError, match="together"):
        load_corpus(clean_dir=pair_folder / "clean")
    with pytest.raises(CorpusError, match="not both"):
        load_corpus(pair_folder, clean_dir=pair_folder / "clean", noise_dir=noise_dir)


def test_load_corpus_passes_corpus_objects(synth):
    assert load_corpus(synth) is synth


# -- bad corpora ---------------------------------------------------------------------------------

def _one_line(err):
    assert "\n" not in str(err.value)
    return str(err.value)


def test_meta_csv_missing_columns(tmp_path):
    root = _meta_folder(tmp_path)
    (root / "meta.csv").write_text("utt_id,clean_path,snr_db\nu0,u0.wav,3\n")
    with pytest.raises(CorpusError, match="noisy_path") as err:
        load_corpus(root)
    _one_line(err)
    (root / "meta.csv").write_text("")
    with pytest.raises(CorpusError, match="empty"):
        load_corpus(root)


def test_meta_csv_missing_files_skip_then_error(tmp_path, caplog):
    root = _meta_folder(tmp_path, rows=3)
    os.remove(root / "noisy" / "u1.wav")
    with caplog.at_level(logging.WARNING, logger="hear_vec.data"):
        corpus = load_corpus(root)
    assert corpus.names == ["u0", "u2"]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "u1.wav (not found)" in lines[0] and "\n" not in lines[0]
    assert corpus.skipped == [("noisy/u1.wav", "not found")]
    for i in (0, 2):
        os.remove(root / "clean" / f"u{i}.wav")
    with pytest.raises(CorpusError, match="no usable") as err:
        load_corpus(root)
    _one_line(err)


def test_bad_files_skipped_with_one_summary(pair_folder, caplog):
    _write(pair_folder / "clean" / "nan.wav", np.array([0.1, np.nan, 0.3] * 100))
    _write(pair_folder / "noisy" / "nan.wav", np.full(300, 0.1))
    sf.write(str(pair_folder / "clean" / "empty.wav"), np.zeros((0, 1), np.float32), SR)
    _write(pair_folder / "noisy" / "empty.wav", np.full(300, 0.1))
    _write(pair_folder / "clean" / "long.wav", _tone(1.0))
    _write(pair_folder / "noisy" / "long.wav", _tone(2.0))  # lengths differ beyond tolerance
    _write(pair_folder / "clean" / "rate.wav", _tone(0.5))
    _write(pair_folder / "noisy" / "rate.wav", _tone(0.5, sr=32000), 32000)  # resampled: fits
    _write(pair_folder / "noisy" / "orphan.wav", _tone(0.2))
    with caplog.at_level(logging.WARNING, logger="hear_vec.data"):
        corpus = load_corpus(pair_folder)
    assert corpus.names == ["a", "b", "rate", "st", "sub/c"]
    assert len(caplog.records) == 1
    line = caplog.records[0].getMessage()
    for part in ("clean/nan.wav (non-finite", "clean/empty.wav (empty", "noisy/long.wav (lengths",
                 "noisy/orphan.wav (no matching file in clean/)"):
        assert part in line


def test_all_bad_files_raise(tmp_path):
    root = tmp_path / "bad"
    _write(root / "clean" / "x.wav", np.array([np.inf, 0.0]))
    _write(root / "noisy" / "x.wav", np.array([0.0, 0.0]))
    with pytest.raises(CorpusError, match="no usable") as err:
        load_corpus(root)
    _one_line(err)
    with pytest.raises(CorpusError, match="no usable"):
        load_corpus(clean_dir=root / "clean", noise_dir=root / "noisy")


def test_folder_layout_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="clean/") as err:
        load_corpus(tmp_path / "empty")
    assert "meta.csv" in _one_line(err)
    _write(tmp_path / "only" / "clean" / "a.wav", _tone(0.1))
    with pytest.raises(CorpusError, match="clean_dir"):
        load_corpus(tmp_path / "only")
    with pytest.raises(CorpusError, match="not found"):
        load_corpus(tmp_path / "nowhere")
    with pytest.raises(CorpusError, match="not a .csv"):
        load_corpus(tmp_path / "only" / "clean" / "a.wav")


# -- demo writer ---------------------------------------------------------------------------------

def test_demo_writer_round_trip(tmp_path, capsys):
    out = tmp_path / "train_data"
    assert demo_main(["--out", str(out), "--n", "3", "--seed", "2", "--snr-range", "0", "10",
                      "--source", "synthetic"]) == 0
    corpus = load_corpus(out)
    assert isinstance(corpus, PairedCorpus) and corpus.names == ["utt_0000", "utt_0001",
                                                                 "utt_0002"]
    assert set(corpus.meta[0]) >= {"clean_source", "noise_source", "duration_sec", "snr_db"}
    for i in range(3):
        clean, noisy = corpus.utterance_audio(i)
        achieved = 10 * torch.log10(clean.pow(2).sum() / (noisy - clean).pow(2).sum())
        assert abs(float(achieved) - float(corpus.snr[i])) < 0.05
        assert 0.0 <= float(corpus.snr[i]) <= 10.0
    assert demo_main(["--out", str(out), "--n", "2"]) == 2  # non-empty: refused
    assert "overwrite" in capsys.readouterr().err
    assert demo_main(["--out", str(out), "--n", "2", "--source", "synthetic",
                      "--overwrite"]) == 0
    assert len(load_corpus(out)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_data"]  # no staging left


def test_demo_writer_uses_espeak_when_on_path(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "espeak-ng"
    fake.parent.mkdir()
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys, numpy as np, soundfile as sf\n"
        "a = sys.argv; out = a[a.index('-w') + 1]\n"
        "t = np.arange(int(0.05 * len(a[-1]) * 22050)) / 22050\n"
        "sf.write(out, 0.3 * np.sin(2 * np.pi * int(a[a.index('-p') + 1]) * 4 * t), 22050)\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    out = write_demo_corpus(tmp_path / "es", n=2, seed=1)
    corpus = load_corpus(out)
    assert str(corpus.meta[0]["clean_source"]).startswith("espeak-ng:")
    assert math.isfinite(float(corpus.snr[1]))


def test_real_dev_audio_mixes_at_the_drawn_snr(dev_audio):
    corpus = load_corpus(clean_dir=dev_audio / "speech", noise_dir=dev_audio / "noise",
                         snr_range=(-5.0, 15.0))
    seg = corpus.draw(rng.make_key(0), 16, 2 * SR, SR // 2)
    audible = seg.clean.pow(2).sum(1) / seg.lengths > 1e-3 * corpus.bank.power[seg.utterance]
    torch.testing.assert_close(_snr(seg)[audible], seg.snr_db[audible], atol=0.01, rtol=0)
