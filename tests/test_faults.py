"""Faults end to end: atomic writes with the user's umask, ``kill -9`` during infer.py and
train.py (real subprocesses), a read-only or full output folder, and checkpoints that are
pickled code, of the wrong format or truncated -- each one clear line and a non-zero exit,
inputs untouched, no partial file under a final name."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from hear_vec import atomic
from hear_vec.audio_io import write_audio_atomic
from hear_vec.checkpoint import (
    CHECKPOINT_FORMAT,
    MODEL_FORMAT,
    CheckpointError,
    load_file,
    save_atomic,
)
from hear_vec.cli.evaluate import main as evaluate_main
from hear_vec.cli.infer import main as infer_main
from hear_vec.cli.train import main as train_main
from hear_vec.data.demo import write_demo_corpus
from tests import model_fixtures as mf
from tests.model_fixtures import write_clip

#: session fixtures: small trained agents (built once per session, see model_fixtures)
model_path, model_paths = mf.model_path, mf.model_paths
REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
TRAIN_FLAGS = ["--algo", "ppo", "--num-envs", "4", "--eval-episodes", "4",
               "--segment-seconds", "0.5", "--hidden-dims", "16", "16", "--rollout-steps", "2",
               "--batch-size", "8", "--update-epochs", "1", "--no-progress", "--seed", "1",
               "--device", "cpu"]


def _infer(capsys, argv: list[str]) -> tuple[int, str, str]:
    try:
        rc = infer_main(["--no-progress", "--device", "cpu"] + argv)
    except SystemExit as exc:  # argparse-level errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def _digest(folder: Path) -> dict[str, tuple[str, int]]:
    """{relative path: (sha1, mtime_ns)} of every file under ``folder``."""
    return {p.relative_to(folder).as_posix(): (hashlib.sha1(p.read_bytes()).hexdigest(),
                                               p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _complete(out: Path, src: Path) -> list[str]:
    """The final-name outputs under ``out``; asserts each is a complete copy of its input's
    shape (a partial file fails to open or has fewer frames)."""
    names = []
    for p in sorted(out.rglob("*.wav")):
        if p.name.startswith("."):
            continue
        got, want = sf.info(str(p)), sf.info(str(src / p.relative_to(out)))
        assert (got.frames, got.samplerate, got.channels) == \
            (want.frames, want.samplerate, want.channels), p
        assert np.isfinite(sf.read(str(p))[0]).all()
        names.append(p.name)
    return names


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp")]


@pytest.fixture()
def clips(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    for i in range(5):
        write_clip(src / f"c{i}.wav", 0.3 + 0.05 * i, seed=i)
    return src


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "train_data"
    write_demo_corpus(out, n=8, seed=0)
    return out


# -- atomic writes get the user's umask -------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_atomic_outputs_get_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        wav = write_audio_atomic(tmp_path / "a.wav", np.zeros(100), 16000)
        pt = save_atomic({"x": torch.zeros(2)}, tmp_path / "m.pt")
        with atomic.atomic_write(tmp_path / "t.json", "w") as handle:
            handle.write("{}")
    finally:
        os.umask(previous)
    for path in (wav, pt, tmp_path / "t.json"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path
    assert not _temps(tmp_path)


def test_infer_and_train_outputs_get_the_umask(capsys, tmp_path, clips, model_path,
                                                corpus_dir):
    previous = os.umask(0o027)
    try:
        rc, _, err = _infer(capsys, ["--checkpoint", str(model_path), "--input", str(clips),
                                     "--output", str(tmp_path / "out"), "--trace",
                                     str(tmp_path / "t.jsonl")])
        log_dir = tmp_path / "run"
        code = train_main(["--data", str(corpus_dir), "--total-steps", "16", "--eval-interval",
                           "8", "--log-dir", str(log_dir), *TRAIN_FLAGS])
    finally:
        os.umask(previous)
    assert rc == 0, err
    assert code == 0
    written = list((tmp_path / "out").glob("*.wav"))
    written += [log_dir / n for n in ("model.pt", "checkpoint.pt", "metrics.json", "args.json")]
    assert len(written) == 9
    for path in written:
        assert path.stat().st_mode & 0o777 == 0o640, path


def test_stale_temps_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dest = tmp_path / "x.wav"
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = tmp_path / f".x.wav.{proc.stdout.strip()}-abcd.tmp"
    legacy = tmp_path / ".x.wav.k3j4_9z.tmp"          # tempfile.mkstemp style, no pid
    live = tmp_path / f".x.wav.{os.getpid()}-beef.tmp"
    other = tmp_path / ".y.wav.1-abcd.tmp"
    for p in (dead, legacy, live, other):
        p.write_bytes(b"partial")
    removed = atomic.remove_stale_temps(dest)
    assert sorted(removed) == sorted([dead, legacy])
    assert live.exists() and other.exists() and not dead.exists()


def test_sweep_removes_dead_writers_temps_of_audio_names_only(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = proc.stdout.strip()
    gone = [tmp_path / f".a.wav.{dead}-00ff.tmp", tmp_path / f".B.FLAC.{dead}-1234.tmp",
            tmp_path / ".c.wav.k3j4_9z.tmp"]
    kept = [tmp_path / f".d.wav.{os.getpid()}-0001.tmp",   # this (live) process
            tmp_path / f".notes.txt.{dead}-00ff.tmp",      # not an audio destination
            tmp_path / ".e.wav.tmpx", tmp_path / "f.wav"]
    for p in gone + kept:
        p.write_bytes(b"x")
    assert sorted(atomic.sweep_stale_temps(tmp_path, (".wav", ".flac"))) == sorted(gone)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in gone)
    assert atomic.sweep_stale_temps(tmp_path / "missing", (".wav",)) == []


def test_an_empty_output_is_redone_on_rerun(capsys, tmp_path, clips, model_path):
    out = tmp_path / "out"
    argv = ["--checkpoint", str(model_path), "--input", str(clips), "--output", str(out)]
    assert _infer(capsys, argv)[0] == 0
    (out / "c1.wav").write_bytes(b"")  # what a power loss after a rename can leave
    rc, stdout, _ = _infer(capsys, argv)
    assert rc == 0 and "1 file(s) denoised" in stdout and "4 skipped" in stdout
    assert len(_complete(out, clips)) == 5


# -- kill -9 ----------------------------------------------------------------------------------

_STALL = """
import io, os, sys, time
import {module} as target

real, calls, FILE = target.{name}, {{"n": 0}}, {file_arg}

def stalled(*args, **kwargs):
    calls["n"] += 1
    if calls["n"] != {stall_at}:
        return real(*args, **kwargs)
    buffer = io.BytesIO()  # the real bytes, half written to the file; then the process hangs
    real(*args[:FILE], buffer, *args[FILE + 1:], **kwargs)
    args[FILE].write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    args[FILE].flush()
    open(os.environ["STALL_MARKER"], "w").close()
    time.sleep(600)

target.{name} = stalled
from hear_vec.cli.{cli} import main
sys.exit(main(sys.argv[1:]))
"""
_FILE_ARG = {("soundfile", "write"): 0, ("torch", "save"): 1}


def _start_stalled(tmp_path: Path, cli: str, module: str, name: str, stall_at: int,
                   argv: list[str]) -> tuple[subprocess.Popen, Path]:
    """``hear_vec.cli.<cli>`` in a subprocess whose ``stall_at``-th call of ``module.name``
    (soundfile.write / torch.save) writes half its bytes and hangs -- a kill at that moment
    is a kill in the middle of writing a file."""
    marker = tmp_path / f"stalled-{cli}"
    code = _STALL.format(module=module, name=name, stall_at=stall_at, cli=cli,
                         file_arg=_FILE_ARG[module, name])
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *argv], cwd=tmp_path,
                            env={**ENV, "STALL_MARKER": str(marker)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return proc, marker


def _wait_then_kill(proc: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"exited ({proc.returncode}) before the kill point: {err[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the kill point was not reached in time")
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_kill_9_during_infer_leaves_no_partial_file_and_a_rerun_completes(
        capsys, tmp_path, clips, model_path):
    out = tmp_path / "out"
    argv = ["--checkpoint", str(model_path), "--input", str(clips), "--output", str(out),
            "--batch-size", "1", "--workers", "1", "--no-progress", "--device", "cpu"]
    proc, marker = _start_stalled(tmp_path, "infer", "soundfile", "write", 3, argv)
    _wait_then_kill(proc, lambda: marker.exists() and len(list(out.glob("c*.wav"))) >= 1)
    assert _temps(out), "the kill did not land in the middle of a write"
    done = _complete(out, clips)
    assert 1 <= len(done) < 5
    before = _digest(clips)
    rc, stdout, err = _infer(capsys, argv)
    assert rc == 0, err
    assert f"{len(done)} skipped" in stdout and f"{5 - len(done)} file(s) denoised" in stdout
    assert _complete(out, clips) == [f"c{i}.wav" for i in range(5)]
    assert not _temps(out)  # the killed run's temporary file was cleaned up
    assert _digest(clips) == before


@pytest.mark.slow
def test_kill_9_during_train_keeps_the_last_checkpoint_and_resume_runs(tmp_path, corpus_dir):
    log_dir = tmp_path / "run"
    argv = ["--data", str(corpus_dir), "--total-steps", "400", "--eval-interval", "8",
            "--log-dir", str(log_dir), *TRAIN_FLAGS]
    # the first checkpoint is written whole; the second is cut half-way by kill -9
    proc, marker = _start_stalled(tmp_path, "train", "torch", "save", 2, argv)
    _wait_then_kill(proc, marker.exists)
    assert _temps(log_dir), "the kill did not land in the middle of a checkpoint write"
    saved = load_file(log_dir / "checkpoint.pt", CHECKPOINT_FORMAT)
    assert saved["learner"]["counters"]["global_step"] == 8
    assert not (log_dir / "model.pt").exists()
    resumed = ["--data", str(corpus_dir), "--total-steps", "24", "--eval-interval", "8",
               "--log-dir", str(log_dir), "--resume", *TRAIN_FLAGS]
    assert train_main(resumed) == 0
    final = load_file(log_dir / "checkpoint.pt", CHECKPOINT_FORMAT)
    assert final["learner"]["counters"]["global_step"] >= 24
    assert load_file(log_dir / "model.pt", MODEL_FORMAT)["algo"] == "ppo"
    assert not _temps(log_dir)


# -- read-only and full output folders --------------------------------------------------------

def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("infer.py: error:")
    return lines[0]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes into read-only folders; the simulated test covers it")
def test_read_only_output_folder_is_one_line_real(capsys, tmp_path, clips, model_path):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        before = _digest(clips)
        rc, _, err = _infer(capsys, ["--checkpoint", str(model_path), "--input", str(clips),
                                     "--output", str(out)])
    finally:
        out.chmod(0o755)
    assert rc == 2 and "cannot write" in _one_error_line(err)
    assert not list(out.iterdir()) and _digest(clips) == before


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_unwritable_output_folder_is_one_line_before_any_work(capsys, tmp_path, clips,
                                                             model_path, monkeypatch, code):
    def refuse(dest):
        raise OSError(code, os.strerror(code), str(dest))

    monkeypatch.setattr(atomic, "_create_temp", refuse)
    before = _digest(clips)
    rc, stdout, err = _infer(capsys, ["--checkpoint", str(model_path), "--input", str(clips),
                                      "--output", str(tmp_path / "out")])
    line = _one_error_line(err)
    assert rc == 2 and "--output" in line and os.strerror(code) in line
    assert stdout == "" and not list((tmp_path / "out").rglob("*.wav"))
    assert _digest(clips) == before


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_disk_full_mid_run_stops_with_one_line_and_a_rerun_resumes(capsys, tmp_path, clips,
                                                                   model_path, monkeypatch,
                                                                   code):
    import hear_vec.audio_io as audio_io

    real_write = audio_io.sf.write
    calls = {"n": 0}

    def filling(file, data, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 3:  # the disk is full from the third file on
            file.write(b"RIFF\x00\x00partial")
            raise OSError(code, os.strerror(code))
        return real_write(file, data, *args, **kwargs)

    monkeypatch.setattr(audio_io.sf, "write", filling)
    out = tmp_path / "out"
    argv = ["--checkpoint", str(model_path), "--input", str(clips), "--output", str(out),
            "--batch-size", "1", "--workers", "1"]
    before = _digest(clips)
    rc, stdout, err = _infer(capsys, argv)
    line = _one_error_line(err)
    assert rc == 1 and os.strerror(code) in line and "stopped after 2 file(s)" in line
    assert calls["n"] <= 4  # stopped at the first failure (one write may be under way)
    assert _complete(out, clips) == ["c3.wav", "c4.wav"]  # longest first
    assert not _temps(out)
    assert _digest(clips) == before
    monkeypatch.setattr(audio_io.sf, "write", real_write)
    rc, stdout, _ = _infer(capsys, argv)
    assert rc == 0 and "2 skipped" in stdout
    assert len(_complete(out, clips)) == 5


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_trace_on_a_full_disk_stops_the_run_with_one_line(capsys, tmp_path, clips,
                                                           model_path, monkeypatch):
    from hear_vec.cli.infer_session import Session

    def full_trace(self):  # every flush of the trace fails with ENOSPC
        self.trace = open("/dev/full", "w", encoding="utf-8")  # noqa: SIM115

    monkeypatch.setattr(Session, "open_trace", full_trace)
    out = tmp_path / "out"
    rc, _, err = _infer(capsys, ["--checkpoint", str(model_path), "--input", str(clips),
                                 "--output", str(out), "--trace", str(tmp_path / "t.jsonl"),
                                 "--batch-size", "1", "--workers", "1"])
    line = _one_error_line(err)
    assert rc == 1 and os.strerror(errno.ENOSPC) in line and "stopped after" in line
    assert 1 <= len(_complete(out, clips)) < 5 and not _temps(out)


def test_disk_full_during_training_is_one_line_and_keeps_the_checkpoint(
        capsys, tmp_path, corpus_dir, monkeypatch):
    import hear_vec.checkpoint as checkpoint

    real_save = torch.save
    calls = {"n": 0}

    def filling(payload, file, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 2:
            file.write(b"PK\x03\x04partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(payload, file, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", filling)
    log_dir = tmp_path / "run"
    code = train_main(["--data", str(corpus_dir), "--total-steps", "48", "--eval-interval", "8",
                       "--log-dir", str(log_dir), *TRAIN_FLAGS])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("train.py: error:"), err
    assert os.strerror(errno.ENOSPC) in err[0]
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    saved = load_file(log_dir / "checkpoint.pt", CHECKPOINT_FORMAT)
    assert saved["learner"]["counters"]["global_step"] == 8 and not _temps(log_dir)


# -- checkpoints: pickled code, wrong format, truncated bytes ----------------------------------

class _Payload:  # a custom class: pickling it stores code references
    def __init__(self) -> None:
        self.weights = [1.0, 2.0]


def _bad_checkpoint(kind: str, folder: Path, good_model: Path, good_checkpoint: Path
                    ) -> tuple[Path, str]:
    """A bad file of ``kind`` and a phrase its one-line error must contain."""
    path = folder / f"{kind}.pt"
    if kind == "pickled":
        torch.save({"format": MODEL_FORMAT, "policy": _Payload()}, path)
        return path, "contains pickled Python objects"
    if kind == "numpy":
        torch.save({"format": MODEL_FORMAT, "policy": np.zeros(3)}, path)
        return path, "contains pickled Python objects"
    if kind == "foreign":
        torch.save({"weights": torch.zeros(3)}, path)
        return path, "not a hear_vec file"
    if kind == "text":
        path.write_text("model weights: 1 2 3\n")
        return path, "not a PyTorch file"
    if kind == "empty":
        path.write_bytes(b"")
        return path, "empty file"
    if kind == "truncated":
        data = good_model.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path, "truncated or corrupt"
    if kind == "swapped":  # a checkpoint.pt where a model.pt is needed, and vice versa
        path.write_bytes(good_checkpoint.read_bytes())
        return path, "training checkpoint (checkpoint.pt), but a hear_vec model"
    raise AssertionError(kind)


KINDS = ["pickled", "numpy", "foreign", "text", "empty", "truncated", "swapped"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, corpus_dir) -> Path:
    log_dir = tmp_path_factory.mktemp("trained") / "run"
    assert train_main(["--data", str(corpus_dir), "--total-steps", "16", "--eval-interval", "8",
                       "--log-dir", str(log_dir), *TRAIN_FLAGS]) == 0
    return log_dir


@pytest.mark.parametrize("kind", KINDS)
def test_load_file_gives_one_clear_line(tmp_path, trained_run, kind):
    path, phrase = _bad_checkpoint(kind, tmp_path, trained_run / "model.pt",
                                   trained_run / "checkpoint.pt")
    with pytest.raises(CheckpointError) as info:
        load_file(path, MODEL_FORMAT)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and phrase in message
    assert len(message) - len(str(path)) < 150 and "weights_only" not in message


def test_model_given_for_a_checkpoint_names_both(trained_run):
    with pytest.raises(CheckpointError, match=r"is a hear_vec model \(model.pt.*training "
                                              r"checkpoint \(checkpoint.pt\) is needed"):
        load_file(trained_run / "model.pt", CHECKPOINT_FORMAT)


@pytest.mark.parametrize("kind", KINDS)
def test_every_cli_prints_the_line_and_exits_non_zero(capsys, tmp_path, trained_run, clips,
                                                      kind):
    path, phrase = _bad_checkpoint(kind, tmp_path, trained_run / "model.pt",
                                   trained_run / "checkpoint.pt")
    rc, _, err = _infer(capsys, ["--checkpoint", str(path), "--input", str(clips), "--output",
                                 str(tmp_path / "out")])
    assert rc == 2 and phrase in _one_error_line(err) and not (tmp_path / "out").exists()
    try:
        rc = evaluate_main(["--checkpoint", str(path), "--meta", str(clips), "--no-progress",
                            "--device", "cpu"])
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and phrase in err[0], err
    # train.py --resume reads <log-dir>/checkpoint.pt
    log_dir = tmp_path / "resume"
    log_dir.mkdir()
    if kind == "swapped":  # here the other way round: a model.pt under the checkpoint's name
        (log_dir / "checkpoint.pt").write_bytes((trained_run / "model.pt").read_bytes())
        phrase = "hear_vec model (model.pt"
    else:
        (log_dir / "checkpoint.pt").write_bytes(path.read_bytes())
    code = train_main(["--data", "synthetic", "--total-steps", "16", "--log-dir", str(log_dir),
                       "--resume", *TRAIN_FLAGS])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("train.py: error:"), err
    assert phrase in err[0]


def test_pickled_checkpoint_refusal_is_exactly_one_line(capsys, tmp_path, clips):
    path, _ = _bad_checkpoint("pickled", tmp_path, Path(), Path())
    rc, stdout, err = _infer(capsys, ["--checkpoint", str(path), "--input", str(clips),
                                      "--output", str(tmp_path / "out")])
    assert rc == 2 and stdout == ""
    assert err.splitlines() == [
        f"infer.py: error: --checkpoint {path}: contains pickled Python objects "
        f"({_Payload.__module__}._Payload; not a tensors-only hear_vec file); refusing to load "
        f"it"]


def test_a_raw_pickle_is_refused_without_torch_warnings(tmp_path, recwarn):
    """torch warns (on stderr) about the protocol of a raw pickle; nothing may leak."""
    import pickle

    path = tmp_path / "raw.pt"
    path.write_bytes(pickle.dumps({"format": MODEL_FORMAT, "obj": _Payload()}, protocol=4))
    warnings.simplefilter("always")
    with pytest.raises(CheckpointError, match="a pickle, not a tensors-only PyTorch file"):
        load_file(path, MODEL_FORMAT)
    assert len(recwarn) == 0, [str(w.message) for w in recwarn]
