"""infer.py: folder in -> folder out, tagged outputs, bad files, resume, atomic writes, traces,
metrics with clean references, and one-line errors. The CLI runs in-process via main(argv);
one test runs infer.py as a subprocess for the exit status and the one-line error."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from hear_vec.cli.common import OneLineParser, length_batches, resolve_device
from hear_vec.cli.infer import checkpoint_tags, chunk_plan, crossfade_join, main
from hear_vec.metrics import si_sdr, stoi
from hear_vec.ops import METHODS
from tests import model_fixtures as mf
from tests.model_fixtures import clip_pair, write_clip

#: session fixtures: small trained agents (built once per session, see model_fixtures)
model_path, model_paths = mf.model_path, mf.model_paths
REPO = Path(__file__).resolve().parents[1]


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    try:
        rc = main(["--no-progress", "--device", "cpu"] + argv)  # later flags win
    except SystemExit as exc:  # argparse-level errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def _info(path: Path) -> tuple[int, int, int, str]:
    i = sf.info(str(path))
    return i.frames, i.samplerate, i.channels, i.subtype


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    write_clip(src / "a.wav", 1.0, seed=0)
    write_clip(src / "sub" / "b.flac", 0.7, seed=1)
    write_clip(src / "sub" / "deeper" / "st.wav", 0.6, sample_rate=44100, channels=2, seed=2,
               subtype="PCM_24")
    return src


# -- folder in, folder out ---------------------------------------------------------------------

def test_folder_mirrors_structure_and_keeps_length_rate_channels(capsys, tmp_path, folder,
                                                                  model_path):
    out = tmp_path / "out"
    rc, stdout, stderr = _run(capsys, ["--checkpoint", str(model_path), "--input", str(folder),
                                       "--output", str(out)])
    assert rc == 0, stderr
    for rel in ("a.wav", "sub/b.flac", "sub/deeper/st.wav"):
        assert (out / rel).is_file(), rel
        assert _info(out / rel) == _info(folder / rel)  # frames, rate, channels, subtype
        x, _ = sf.read(str(folder / rel), always_2d=True)
        y, _ = sf.read(str(out / rel), always_2d=True)
        assert np.isfinite(y).all() and not np.allclose(x, y)
    assert _info(out / "sub/deeper/st.wav")[1:3] == (44100, 2)
    assert "3 file(s) denoised" in stdout
    assert not list(out.rglob(".*"))  # no temporary files left


def test_batched_equals_one_file_at_a_time(capsys, tmp_path, model_path):
    src = tmp_path / "in"
    for i, secs in enumerate((0.9, 0.5, 0.75, 0.3)):
        write_clip(src / f"f{i}.wav", secs, seed=i, subtype="FLOAT")
    outs = {}
    for bs in (1, 8):
        out = tmp_path / f"out{bs}"
        rc, _, err = _run(capsys, ["--checkpoint", str(model_path), "--input", str(src),
                                   "--output", str(out), "--batch-size", str(bs)])
        assert rc == 0, err
        outs[bs] = out
    for i in range(4):
        a, _ = sf.read(str(outs[1] / f"f{i}.wav"))
        b, _ = sf.read(str(outs[8] / f"f{i}.wav"))
        np.testing.assert_allclose(a, b, atol=2e-5)


def test_single_file_to_file_and_to_folder(capsys, tmp_path, model_path):
    src = tmp_path / "noisy.wav"
    write_clip(src, 0.8)
    rc, _, err = _run(capsys, ["--checkpoint", str(model_path), "--input", str(src),
                               "--output", str(tmp_path / "res" / "clean.flac")])
    assert rc == 0, err
    assert _info(tmp_path / "res" / "clean.flac")[:3] == _info(src)[:3]
    rc, _, err = _run(capsys, ["--checkpoint", str(model_path), "--input", str(src),
                               "--output", str(tmp_path / "dir")])
    assert rc == 0, err
    assert (tmp_path / "dir" / "noisy.wav").is_file()


# -- several checkpoints, trace -----------------------------------------------------------------

def test_checkpoint_tags_rules():
    assert checkpoint_tags(["runs/a/model.pt", "runs/b/model.pt"]) == ["a", "b"]
    assert checkpoint_tags(["models/x.pt", "models/y.pt"]) == ["x", "y"]
    assert checkpoint_tags(["r/model.pt", "r/model.pt"]) == ["r", "r-2"]
    assert checkpoint_tags(["a/model.pt", "b/a/model.pt", "c/a.pt"])[0] != \
        checkpoint_tags(["a/model.pt", "b/a/model.pt", "c/a.pt"])[1]
    assert checkpoint_tags(["x y/model.pt"]) == ["x_y"]


def test_several_checkpoints_give_tagged_outputs_and_trace(capsys, tmp_path, folder,
                                                           model_paths):
    out, trace = tmp_path / "out", tmp_path / "trace.jsonl"
    argv = ["--input", str(folder), "--output", str(out), "--trace", str(trace)]
    for p in model_paths:
        argv += ["--checkpoint", str(p)]
    rc, _, err = _run(capsys, argv)
    assert rc == 0, err
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == ["a__ppo_a.wav", "a__ppo_b.wav", "sub/b__ppo_a.flac", "sub/b__ppo_b.flac",
                     "sub/deeper/st__ppo_a.wav", "sub/deeper/st__ppo_b.wav"]
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert len(records) == 6
    by_output = {Path(r["output"]).name: r for r in records}
    st = by_output["st__ppo_b.wav"]
    assert st["input"].endswith("st.wav") and st["tag"] == "ppo_b"
    assert st["channels"] == 2 and st["sample_rate"] == 44100
    assert [s["channel"] for s in st["segments"]] == [0, 1]
    for r in records:
        want_steps = 3 if r["tag"] == "ppo_a" else 2   # ppo_b was saved with max_steps=2
        for seg in r["segments"]:
            assert len(seg["steps"]) == want_steps
            for step in seg["steps"]:
                assert step["method"] == METHODS[step["method_id"]]
                assert all(0.0 <= step[k] <= 1.0 for k in ("strength", "smoothing",
                                                           "band_mix"))


# -- long files: chunking -----------------------------------------------------------------------

@pytest.mark.parametrize("n,chunk,overlap", [(1000, 300, 50), (1001, 300, 0), (5000, 999, 77),
                                             (300, 300, 50), (301, 300, 100)])
def test_chunk_plan_and_crossfade_reassemble_exactly(n, chunk, overlap):
    plan = chunk_plan(n, chunk, overlap)
    assert plan[0][0] == 0 and plan[-1][1] == n
    assert all(e - s <= chunk for s, e in plan)
    for (_, e0), (s1, _) in zip(plan, plan[1:]):
        assert e0 - s1 == overlap
    x = torch.randn(2, n, dtype=torch.float64)
    joined = crossfade_join([x[:, s:e] for s, e in plan], plan, n, overlap)
    torch.testing.assert_close(joined, x)


def test_long_file_is_chunked_and_keeps_its_length(capsys, tmp_path, model_path):
    src = tmp_path / "in"
    write_clip(src / "long.wav", 2.05, seed=4)
    trace = tmp_path / "t.jsonl"
    rc, _, err = _run(capsys, ["--checkpoint", str(model_path), "--input", str(src),
                               "--output", str(tmp_path / "out"), "--chunk-seconds", "0.6",
                               "--overlap-seconds", "0.1", "--trace", str(trace)])
    assert rc == 0, err
    assert _info(tmp_path / "out" / "long.wav") == _info(src / "long.wav")
    (record,) = [json.loads(line) for line in trace.read_text().splitlines()]
    segs = record["segments"]
    assert len(segs) == math.ceil((2.05 - 0.1) / (0.6 - 0.1))
    assert segs[0]["start"] == 0.0 and segs[-1]["end"] == pytest.approx(2.05)


# -- robustness ---------------------------------------------------------------------------------

def test_bad_files_are_reported_once_and_the_rest_come_out(capsys, tmp_path, model_path):
    src = tmp_path / "in"
    write_clip(src / "good1.wav", 0.6, seed=1)
    write_clip(src / "nested" / "good2.flac", 0.4, seed=2)
    (src / "empty.wav").write_bytes(b"")
    (src / "text.wav").write_text("this is not audio\n")
    sf.write(str(src / "nan.wav"), np.array([0.1, np.nan, np.inf] * 200, dtype=np.float32),
             16000, subtype="FLOAT")
    sf.write(str(src / "zero.wav"), np.zeros((0, 1), dtype=np.float32), 16000)
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, ["--checkpoint", str(model_path), "--input", str(src),
                                    "--output", str(out)])
    assert rc == 1
    assert (out / "good1.wav").is_file() and (out / "nested" / "good2.flac").is_file()
    lines = err.strip().splitlines()
    for bad in ("empty.wav", "text.wav", "nan.wav", "zero.wav"):
        mine = [ln for ln in lines if ln.startswith("infer.py: error:") and bad in ln]
        assert len(mine) == 1, (bad, lines)
        assert not (out / bad).exists()
    assert "4 failed" in lines[-1] and "2 file(s) denoised" in lines[-1]
    assert "non-finite" in err and "empty" in err


def test_second_run_skips_finished_outputs_and_overwrite_redoes_them(capsys, tmp_path, folder,
                                                                     model_path):
    out = tmp_path / "out"
    argv = ["--checkpoint", str(model_path), "--input", str(folder), "--output", str(out)]
    assert _run(capsys, argv)[0] == 0
    (out / "sub" / "b.flac").unlink()
    stamp = (out / "a.wav").stat().st_mtime_ns
    rc, stdout, _ = _run(capsys, argv)
    assert rc == 0
    assert "1 file(s) denoised" in stdout and "2 skipped" in stdout
    assert (out / "sub" / "b.flac").is_file()
    assert (out / "a.wav").stat().st_mtime_ns == stamp
    rc, stdout, _ = _run(capsys, argv + ["--overwrite"])
    assert rc == 0 and "3 file(s) denoised" in stdout and "skipped" not in stdout


def test_interrupted_write_leaves_no_partial_output_and_rerun_resumes(capsys, tmp_path,
                                                                     model_path, monkeypatch):
    import hear_vec.audio_io as audio_io

    src = tmp_path / "in"
    for i in range(5):
        write_clip(src / f"c{i}.wav", 0.3 + 0.05 * i, seed=i)
    out = tmp_path / "out"
    real_write = audio_io.sf.write
    calls = {"n": 0}

    def dying_write(file, data, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:  # a partial file, then the process is "killed"
            file.write(b"RIFF\x00\x00partial")
            raise KeyboardInterrupt
        return real_write(file, data, *a, **kw)

    monkeypatch.setattr(audio_io.sf, "write", dying_write)
    argv = ["--checkpoint", str(model_path), "--input", str(src), "--output", str(out),
            "--batch-size", "1", "--workers", "1"]
    rc, _, err = _run(capsys, argv)
    assert rc == 130 and "interrupted" in err
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary files
    done = sorted(p.name for p in out.glob("*.wav"))
    assert 0 < len(done) < 5
    for name in done:  # every output that exists is complete
        assert _info(out / name) == _info(src / name)
    monkeypatch.setattr(audio_io.sf, "write", real_write)
    rc, stdout, _ = _run(capsys, argv)
    assert rc == 0 and f"{len(done)} skipped" in stdout
    assert sorted(p.name for p in out.glob("*.wav")) == [f"c{i}.wav" for i in range(5)]


def test_output_equal_to_or_inside_input_is_refused(capsys, tmp_path, folder, model_path):
    for target in (folder, folder / "sub" / "out"):
        rc, _, err = _run(capsys, ["--checkpoint", str(model_path), "--input", str(folder),
                                   "--output", str(target)])
        assert rc == 2
        assert len(err.strip().splitlines()) == 1 and err.startswith("infer.py: error:")
    single = folder / "a.wav"
    before = single.read_bytes()
    rc, _, err = _run(capsys, ["--checkpoint", str(model_path), "--input", str(single),
                               "--output", str(single)])
    assert rc == 2 and "input" in err and single.read_bytes() == before


@pytest.mark.parametrize("kind", ["missing", "corrupt", "foreign"])
def test_bad_checkpoint_is_one_line_exit_2(capsys, tmp_path, folder, kind):
    ckpt = tmp_path / "bad.pt"
    if kind == "corrupt":
        ckpt.write_bytes(b"\x00garbage" * 10)
    elif kind == "foreign":
        torch.save({"format": "something.else", "weights": torch.zeros(2)}, ckpt)
    rc, _, err = _run(capsys, ["--checkpoint", str(ckpt), "--input", str(folder),
                               "--output", str(tmp_path / "out")])
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and str(ckpt) in err
    assert not (tmp_path / "out").exists()


def test_subprocess_bad_checkpoint_exit_status_and_single_line(tmp_path):
    src = tmp_path / "in"
    write_clip(src / "a.wav", 0.2)
    ckpt = tmp_path / "runs" / "model.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_text("not a checkpoint")
    proc = subprocess.run([sys.executable, str(REPO / "infer.py"), "--checkpoint", str(ckpt),
                           "--input", str(src), "--output", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1",
                               "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("infer.py: error: --checkpoint") and str(ckpt) in lines[0]


def test_cuda_requested_without_cuda_is_one_line_error(capsys, tmp_path, folder, model_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    rc, _, err = _run(capsys, ["--checkpoint", str(model_path), "--input", str(folder),
                               "--output", str(tmp_path / "o"), "--device", "cuda"])
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "CUDA" in err
    with pytest.raises(ValueError, match="CUDA"):
        resolve_device("cuda:1")
    with pytest.raises(ValueError, match="invalid device"):
        resolve_device("tpu")
    assert resolve_device("auto") == torch.device("cpu")


def test_common_parser_errors_are_one_line(capsys):
    parser = OneLineParser(prog="tool")
    parser.add_argument("--n", type=int, required=True)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--n", "x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tool: error:")


def test_length_batches_respects_budgets():
    lengths = [5, 100, 7, 60, 99, 8, 1000]
    batches = length_batches(lengths, max_items=3, max_samples=250)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 250
    assert batches[0] == [6]  # the over-long item alone, first


# -- metrics with clean references ---------------------------------------------------------------

def test_clean_references_give_metrics_table_and_csv(capsys, tmp_path, model_path):
    root = tmp_path / "pairs"
    for i in range(3):
        clip_pair(root / "clean" / f"u{i}.wav", root / "noisy" / f"u{i}.wav", 1.2 + 0.2 * i,
                  seed=i, snr_db=5.0)
    csv = tmp_path / "m.csv"
    rc, stdout, err = _run(capsys, ["--checkpoint", str(model_path), "--input",
                                    str(root / "noisy"), "--output", str(tmp_path / "out"),
                                    "--clean", str(root / "clean"), "--metrics-csv", str(csv)])
    assert rc == 0, err
    assert "SI-SDR" in stdout and "STOI" in stdout
    df = pd.read_csv(csv)
    assert list(df.columns) == ["file", "output", "model", "checkpoint", "seconds",
                                "si_sdr_before", "si_sdr_after", "si_sdr_gain", "stoi_before",
                                "stoi_after", "estoi_before", "estoi_after"]
    assert len(df) == 3
    for _, row in df.iterrows():
        name = Path(row["file"]).name
        clean = torch.from_numpy(sf.read(str(root / "clean" / name), dtype="float32")[0])
        noisy = torch.from_numpy(sf.read(str(root / "noisy" / name), dtype="float32")[0])
        assert row["si_sdr_before"] == pytest.approx(float(si_sdr(noisy, clean)), abs=1e-3)
        assert row["stoi_before"] == pytest.approx(float(stoi(clean, noisy, 16000)), abs=1e-4)
        assert row["si_sdr_gain"] == pytest.approx(row["si_sdr_after"] - row["si_sdr_before"])
    assert (df["si_sdr_after"] != df["si_sdr_before"]).all()


def test_metrics_csv_without_clean_is_a_usage_error(capsys, tmp_path, folder, model_path):
    rc, _, err = _run(capsys, ["--checkpoint", str(model_path), "--input", str(folder),
                               "--output", str(tmp_path / "o"), "--metrics-csv", "x.csv"])
    assert rc == 2 and "--clean" in err


# -- stop action, the packaged agent -------------------------------------------------------------

def test_stop_action_agent_traces_chains_that_end_with_stop(capsys, tmp_path, folder):
    from hear_vec.inference import DenoisingAgent

    path = mf.make_model(tmp_path / "stop" / "model.pt", seed=3, train_steps=0, stop_action=True)
    agent = DenoisingAgent.from_file(path)
    # make the untrained policy choose the stop action at its first step on every row
    agent.policy.actor.net[-1].bias.data[len(METHODS)] = 50.0
    from hear_vec.checkpoint import load_file, save_atomic
    payload = load_file(path, "hear_vec.model")
    payload["policy"]["networks"]["actor"] = agent.policy.actor.state_dict()
    save_atomic(payload, path)
    out, trace = tmp_path / "out", tmp_path / "trace.jsonl"
    rc, _, err = _run(capsys, ["--checkpoint", str(path), "--input", str(folder),
                               "--output", str(out), "--trace", str(trace)])
    assert rc == 0, err
    for r in (json.loads(line) for line in trace.read_text().splitlines()):
        for seg in r["segments"]:
            assert seg["steps"] == [{"method": "stop", "method_id": len(METHODS)}]
    x, _ = sf.read(str(folder / "a.wav"))
    y, _ = sf.read(str(out / "a.wav"))
    np.testing.assert_allclose(y, x, atol=1e-4)  # stopped at once: the input, re-encoded


def test_no_checkpoint_uses_the_packaged_pretrained_agent(capsys, tmp_path, folder):
    from hear_vec.checkpoint import MODEL_FORMAT, load_file
    from hear_vec.pretrained import PRETRAINED_MODEL

    assert PRETRAINED_MODEL.is_file(), "hear_vec/pretrained/model.pt is not in the package"
    assert PRETRAINED_MODEL.stat().st_size <= 5 * 2**20
    assert load_file(PRETRAINED_MODEL, MODEL_FORMAT)["format"] == MODEL_FORMAT  # weights_only
    out, trace = tmp_path / "out", tmp_path / "trace.jsonl"
    rc, stdout, err = _run(capsys, ["--input", str(folder), "--output", str(out),
                                    "--trace", str(trace)])
    assert rc == 0, err
    assert "3 file(s) denoised" in stdout
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert {Path(r["checkpoint"]).resolve() for r in records} == {PRETRAINED_MODEL}
