"""Hostile audio files, end to end: truncated, 8-bit, 24-bit, float64, many-channel, 1-sample,
NaN/Inf, odd-rate, absurd-rate, FIFO and hour-long files either load (with the right samples)
or are named and skipped in the corpus's one warning line -- and the same files given to
infer.py are denoised or get one error line each (exit 1). Reading an hour-long file keeps
the peak memory near the size of its result. Resampling in blocks equals one call."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from hear_vec.audio_io import AudioReadError, read_audio
from hear_vec.cli.infer import main as infer_main
from hear_vec.data import load_corpus
from hear_vec.data.files import read_mono
from hear_vec.env import DenoiseEnv
from hear_vec.resample import StreamResampler, resample, resample_ratio, resampled_length
from tests import model_fixtures as mf
from tests.model_fixtures import write_clip

#: session fixtures: small trained agents (built once per session, see model_fixtures)
model_path, model_paths = mf.model_path, mf.model_paths
REPO = Path(__file__).resolve().parents[1]
SR = 16000


def _signal(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)


#: name -> what reading it must give: ("load", frames at 16 kHz) or ("skip", reason phrase)
EXPECTED = {
    "trunc.wav": ("load", 3989),            # data cut half-way: libsndfile reads what is there
    "u8.wav": ("load", 8000),
    "p24.wav": ("load", 8000),
    "f64.wav": ("load", 8000),
    "ch8.wav": ("load", 8000),
    "one.wav": ("load", 1),
    "odd.wav": ("load", resampled_length(8000, 11127, SR)),
    "trunc.flac": ("skip", "truncated or corrupt"),
    "header.wav": ("skip", "unreadable"),
    "nan.wav": ("skip", "non-finite samples (2 NaN/Inf"),
    "huge64.wav": ("skip", "beyond the float32 range"),
    "rate1.wav": ("skip", "sample rate 1 Hz is outside"),
    "zero.wav": ("skip", "empty file (0 bytes)"),
    "noframes.wav": ("skip", "empty (no samples)"),
    "fifo.wav": ("skip", "not a regular file"),
}


@pytest.fixture()
def hostile(tmp_path: Path) -> Path:
    """One file of every kind in EXPECTED (base signal: 0.5 s at 16 kHz)."""
    root = tmp_path / "hostile"
    root.mkdir()
    x = _signal(8000)
    sf.write(str(root / "full.wav"), x, SR)               # a reference, also loaded
    data = (root / "full.wav").read_bytes()
    (root / "trunc.wav").write_bytes(data[: 44 + 2 * 3989])  # header + 3989 of 8000 frames
    sf.write(str(tmp_path / "full.flac"), x, SR)
    flac = (tmp_path / "full.flac").read_bytes()
    (root / "trunc.flac").write_bytes(flac[: len(flac) // 2])
    (root / "header.wav").write_bytes(data[:30])
    sf.write(str(root / "u8.wav"), x, SR, subtype="PCM_U8")
    sf.write(str(root / "p24.wav"), x, SR, subtype="PCM_24")
    sf.write(str(root / "f64.wav"), x.astype(np.float64), SR, subtype="DOUBLE")
    sf.write(str(root / "huge64.wav"), np.array([1e300, 0.1] * 100), SR, subtype="DOUBLE")
    sf.write(str(root / "ch8.wav"), np.stack([x * (c + 1) / 8 for c in range(8)], 1), SR)
    sf.write(str(root / "one.wav"), x[:1], SR)
    sf.write(str(root / "odd.wav"), x, 11127)
    sf.write(str(root / "rate1.wav"), x, 1)
    bad = x.copy()
    bad[100], bad[200] = np.nan, np.inf
    sf.write(str(root / "nan.wav"), bad, SR, subtype="FLOAT")
    (root / "zero.wav").write_bytes(b"")
    sf.write(str(root / "noframes.wav"), np.zeros((0, 1), np.float32), SR)
    os.mkfifo(root / "fifo.wav")
    return root


def test_each_hostile_file_loads_or_gives_its_reason(hostile):
    x = _signal(8000)
    for name, (what, detail) in EXPECTED.items():
        if what == "skip":
            with pytest.raises(AudioReadError) as info:
                read_mono(hostile / name, SR)
            assert detail in info.value.reason and "\n" not in str(info.value), name
            continue
        mono = read_mono(hostile / name, SR)
        assert mono.dtype == np.float32 and mono.shape == (detail,), name
        assert np.isfinite(mono).all()
        if name in ("u8.wav", "p24.wav", "f64.wav", "trunc.wav"):
            tol = {"u8.wav": 1 / 64, "p24.wav": 1e-6, "f64.wav": 1e-7, "trunc.wav": 1 / 32768}
            np.testing.assert_allclose(mono, x[:detail], atol=tol[name] + 1 / 32768, err_msg=name)
    # 8 channels: the mean of x * (c + 1) / 8 over c = x * 4.5 / 8
    np.testing.assert_allclose(read_mono(hostile / "ch8.wav", SR), x * 4.5 / 8, atol=1e-4)
    audio, rate = read_audio(hostile / "ch8.wav")
    assert audio.shape == (8, 8000) and rate == SR and audio.flags.c_contiguous


def test_hostile_corpus_loads_the_good_and_names_the_rest_in_one_line(hostile, tmp_path,
                                                                     caplog):
    noise = tmp_path / "noise"
    noise.mkdir()
    sf.write(str(noise / "n.wav"), _signal(4000, seed=3), SR)
    with caplog.at_level(logging.WARNING, logger="hear_vec.data"):
        corpus = load_corpus(clean_dir=hostile, noise_dir=noise)
    loaded = {n: int(corpus.bank.lengths[i]) for n, i in zip(corpus.names, corpus.items)}
    want = {n: d for n, (w, d) in EXPECTED.items() if w == "load"}
    assert loaded == {**want, "full.wav": 8000}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    skipped = {name for name, (w, _) in EXPECTED.items() if w == "skip"}
    assert f"skipped {len(skipped)} of {len(EXPECTED) + 1} files" in warnings[0]
    for name in skipped:
        assert f"{name} (" in warnings[0], name
    assert {Path(p).name for p, _ in corpus.skipped} == skipped
    # the env steps it, the 1-sample utterance included, with finite rewards
    env = DenoiseEnv(corpus, num_envs=16, segment_seconds=0.5, min_segment_seconds=0.1)
    env.reset()
    for _ in range(3):
        action = torch.rand(16, 4)
        action[:, 0] = torch.arange(16) % 5
        obs, reward, *_ = env.step(action)
        assert torch.isfinite(obs).all() and torch.isfinite(reward).all()


def test_hostile_files_through_infer(capsys, hostile, tmp_path, model_path):
    out = tmp_path / "out"
    try:
        rc = infer_main(["--no-progress", "--device", "cpu", "--checkpoint", str(model_path),
                         "--input", str(hostile), "--output", str(out)])
    except SystemExit as exc:
        rc = exc.code
    stdout, err = capsys.readouterr()
    assert rc == 1
    lines = err.strip().splitlines()
    skipped = [n for n, (w, _) in EXPECTED.items() if w == "skip"]
    for name in skipped:
        mine = [ln for ln in lines if ln.startswith("infer.py: error:") and f"/{name}:" in ln]
        assert len(mine) == 1 and EXPECTED[name][1] in mine[0], (name, lines)
        assert not (out / name).exists()
    assert len(lines) == len(skipped) + 1 and f"{len(skipped)} failed" in lines[-1]
    for name in [n for n, (w, _) in EXPECTED.items() if w == "load"] + ["full.wav"]:
        src, dst = sf.info(str(hostile / name)), sf.info(str(out / name))
        assert (dst.frames, dst.samplerate, dst.channels, dst.subtype) == \
            (src.frames, src.samplerate, src.channels, src.subtype), name
        assert np.isfinite(sf.read(str(out / name))[0]).all()


# -- resampling ------------------------------------------------------------------------------

@pytest.mark.parametrize("orig,new", [(44100, 16000), (8000, 16000), (16000, 22050),
                                      (48000, 16000)])
def test_block_resampling_equals_one_torchaudio_call(orig, new):
    import torchaudio.functional as AF

    n = 700_001  # longer than two blocks: resample() takes the block path
    x = torch.randn(2, n, generator=torch.Generator().manual_seed(0))
    want = AF.resample(x, orig, new)
    got = resample(x, orig, new)
    assert got.shape == want.shape == (2, math.ceil(n * new / orig))
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    stream = StreamResampler(orig, new, block_input=50_000)
    pieces, i = [], 0
    for size in [1, 999, 123_457, 7, 60_000] * 100:
        if i >= n:
            break
        pieces.append(stream.push(x[:, i: i + size]))
        i += size
    pieces.append(stream.finish())
    torch.testing.assert_close(torch.cat(pieces, -1), want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("orig", [11127, 44101, 8001, 999_983])
def test_odd_rates_use_a_bounded_kernel_and_round_trip(orig):
    q, p = resample_ratio(orig, SR)
    assert max(p, q) <= 1000
    assert abs(p / q - SR / orig) <= 6e-4 * SR / orig
    assert resample_ratio(SR, orig) == (p, q)  # back with the same fraction
    n = orig // 2
    x = torch.from_numpy(np.sin(np.arange(n) * 2 * np.pi * 300 / orig)).float()
    y = resample(x, orig, SR)
    assert y.shape[-1] == resampled_length(n, orig, SR) == math.ceil(n * p / q)
    back = resample(y, SR, orig)[:n]
    assert back.shape[-1] == n
    middle = slice(n // 10, -n // 10)  # a 300 Hz tone survives the round trip
    torch.testing.assert_close(back[middle], x[middle], atol=2e-3, rtol=0)


# -- hour-long files ---------------------------------------------------------------------------

_MEASURE = """
import resource, sys
import numpy as np
from hear_vec.data.files import read_mono
read_mono(sys.argv[2], 16000)  # imports and first-call allocations, on a short file
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
x = read_mono(sys.argv[1], 16000)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(x.size, x.nbytes, (peak - base) * 1024, float(np.abs(x[:: 16000]).max()))
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
def test_an_hour_long_file_loads_with_bounded_memory(tmp_path):
    rate, channels = 8000, 2  # one hour of stereo at 8 kHz: 115 MB of PCM_16
    block = (0.1 * np.random.default_rng(0).standard_normal((rate * 60, channels))
             ).astype(np.float32)
    with sf.SoundFile(str(tmp_path / "hour.wav"), "w", rate, channels, subtype="PCM_16") as f:
        for _ in range(60):
            f.write(block)
    sf.write(str(tmp_path / "short.wav"), block[:rate], rate, subtype="PCM_16")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_MEASURE),
                           str(tmp_path / "hour.wav"), str(tmp_path / "short.wav")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    size, nbytes, extra, peak_value = proc.stdout.split()
    assert int(size) == 3600 * SR and float(peak_value) > 0
    # the float32 result (220 MiB) plus blocks; reading whole then resampling took 2.6 GiB
    assert int(extra) < int(nbytes) + 128 * 2**20, (int(extra) / 2**20, int(nbytes) / 2**20)


def test_read_audio_of_a_three_channel_24_bit_flac(tmp_path):
    data = write_clip(tmp_path / "c.flac", 0.25, sample_rate=22050, channels=3, subtype="PCM_24")
    audio, rate = read_audio(tmp_path / "c.flac")
    assert rate == 22050 and audio.shape == (3, data.shape[0])
    np.testing.assert_allclose(audio, data.T, atol=2e-6)
