"""Bit-exact resume through train.py (CPU): a run to N transitions, then ``--resume`` to 2N,
ends exactly where a run straight to 2N ends -- networks, optimizers, RNG, env state, the
learner's next observation and the policy's next actions; SIGTERM / SIGINT stop at an iteration
boundary with a checkpoint from which a resume again equals an uninterrupted run; a second
signal during the save leaves at once. Each comparison is shown able to fail (a resume without
the SAC/TD3 replay, or without the env state, differs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from hear_vec.agents import load_policy
from hear_vec.checkpoint import CHECKPOINT_FORMAT, MODEL_FORMAT, load_file
from hear_vec.cli.train import main as train_main
from hear_vec.data.demo import write_demo_corpus

REPO = Path(__file__).resolve().parents[1]

ALGO_FLAGS = {
    "ppo": ["--rollout-steps", "3", "--batch-size", "12", "--update-epochs", "2"],
    "sac": ["--random-steps", "16", "--warmup-steps", "16", "--batch-size", "16"],
    "td3": ["--random-steps", "16", "--warmup-steps", "16", "--batch-size", "16"],
}
N = 48  # transitions of the first part (a multiple of PPO's 3 x 8 per iteration)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "train_data"
    write_demo_corpus(out, n=8, seed=0)
    return out


def flags(corpus_dir: Path, log_dir: Path, algo: str, steps: int, *extra: str) -> list[str]:
    return ["--data", str(corpus_dir), "--algo", algo, "--total-steps", str(steps),
            "--num-envs", "8", "--eval-interval", "48", "--eval-episodes", "8",
            "--hidden-dims", "16", "--segment-seconds", "0.5", "--log-dir", str(log_dir),
            "--no-progress", "--seed", "3", *ALGO_FLAGS[algo], *extra]


def _tensors(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a nested container, by path."""
    out: dict[str, torch.Tensor] = {}
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_tensors(v, f"{prefix}/{k}"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(_tensors(v, f"{prefix}[{i}]"))
    return out


def training_state(log_dir: Path) -> dict[str, torch.Tensor]:
    """What must agree bit for bit: learner modules, optimizers, RNG, position (next obs and
    running episode sums), env state (without the logging accumulators), normalizer, and the
    deterministic actions of model.pt's policy on the next observation."""
    ckpt = load_file(log_dir / "checkpoint.pt", CHECKPOINT_FORMAT)
    learner = ckpt["learner"]
    env_state = dict(ckpt["env_state"]["state"])
    env_state.pop("stats")  # episode statistics are read back (and zeroed) by logging
    out = _tensors({"modules": learner["modules"], "optimizers": learner["optimizers"],
                    "rng": learner["rng"], "position": learner["position"],
                    "env": env_state, "normalizer": ckpt["normalizer"]})
    out["counters"] = torch.tensor(list(learner["counters"].values()))
    model = load_file(log_dir / "model.pt", MODEL_FORMAT)
    policy = load_policy(model["policy"])
    out["next_actions"] = policy(learner["position"]["obs"], True)
    return out


def assert_equal_states(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"differ: {differ[:8]}"


def differs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a if "modules" in k)


@pytest.fixture(scope="module")
def straight(corpus_dir, tmp_path_factory):
    """Runs straight to 2N, one per algorithm (shared by the tests below)."""
    cache: dict[str, dict[str, torch.Tensor]] = {}

    def get(algo: str) -> dict[str, torch.Tensor]:
        if algo not in cache:
            log_dir = tmp_path_factory.mktemp(f"straight_{algo}")
            assert train_main(flags(corpus_dir, log_dir, algo, 2 * N)) == 0
            cache[algo] = training_state(log_dir)
        return cache[algo]

    return get


@pytest.mark.parametrize("algo", ["ppo", "sac", "td3"])
def test_resume_is_bit_exact(corpus_dir, tmp_path, straight, algo):
    log_dir = tmp_path / "run"
    assert train_main(flags(corpus_dir, log_dir, algo, N)) == 0  # ends with eval + checkpoint
    if algo != "ppo":
        saved = torch.load(log_dir / "replay.pt", weights_only=True)
        assert saved["global_step"] == N and saved["replay"]["size"] == N
    assert train_main(flags(corpus_dir, log_dir, algo, 2 * N, "--resume")) == 0
    assert_equal_states(training_state(log_dir), straight(algo))


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_without_the_replay_a_resume_refills_and_differs(corpus_dir, tmp_path, straight, algo):
    log_dir = tmp_path / "run"
    assert train_main(flags(corpus_dir, log_dir, algo, N, "--no-save-replay")) == 0
    assert not (log_dir / "replay.pt").exists()
    assert train_main(flags(corpus_dir, log_dir, algo, 2 * N, "--resume",
                            "--no-save-replay")) == 0
    assert differs(training_state(log_dir), straight(algo))


def test_without_the_env_state_a_resume_differs(corpus_dir, tmp_path, straight):
    log_dir = tmp_path / "run"
    assert train_main(flags(corpus_dir, log_dir, "ppo", N)) == 0
    ckpt = torch.load(log_dir / "checkpoint.pt", weights_only=True)
    del ckpt["env_state"]  # as an older checkpoint / --env-workers: fresh episodes on resume
    torch.save(ckpt, log_dir / "checkpoint.pt")
    assert train_main(flags(corpus_dir, log_dir, "ppo", 2 * N, "--resume")) == 0
    assert differs(training_state(log_dir), straight("ppo"))


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_sigterm_stops_with_a_checkpoint_and_a_resume_equals_an_uninterrupted_run(
        corpus_dir, tmp_path, algo):
    """A real train.py process gets SIGTERM after its first checkpoint (step 48). It finishes
    the iteration it is in, writes checkpoint.pt at that boundary (step S) and exits 130 with
    one line. ``--resume --total-steps S+48`` then equals a run straight to S+48."""
    log_dir = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "train.py"),
           *flags(corpus_dir, log_dir, algo, 1_000_000)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 240
        while not (log_dir / "checkpoint.pt").exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "SIGTERM" in lines[0] and "checkpoint saved" in lines[0], err
    step = load_file(log_dir / "checkpoint.pt", CHECKPOINT_FORMAT)["learner"]["counters"][
        "global_step"]
    assert step >= 48 and step % (24 if algo == "ppo" else 8) == 0
    assert not (log_dir / "model.pt").exists()
    total = step + 48
    assert train_main(flags(corpus_dir, log_dir, algo, total, "--resume")) == 0
    fresh = tmp_path / "fresh"
    assert train_main(flags(corpus_dir, fresh, algo, total)) == 0
    assert_equal_states(training_state(log_dir), training_state(fresh))


def test_sigint_at_a_boundary_then_a_second_signal_during_the_save_exits_at_once(
        corpus_dir, tmp_path, monkeypatch, capsys):
    import hear_vec.training as training

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when CI runs the suite in the background
    calls = {"log": 0, "save": 0}
    on_log, save = training._Hooks.on_log, training._Run.save_checkpoint

    def on_log_then_ctrl_c(self, step, metrics):
        on_log(self, step, metrics)
        calls["log"] += 1
        if calls["log"] == 3:  # after the first evaluation + checkpoint (step 48)
            os.kill(os.getpid(), signal.SIGINT)

    def save_interrupted(self):
        calls["save"] += 1
        if calls["save"] == 2:  # the wind-down save: a second Ctrl-C lands in it
            os.kill(os.getpid(), signal.SIGINT)
        return save(self)

    monkeypatch.setattr(training._Hooks, "on_log", on_log_then_ctrl_c)
    monkeypatch.setattr(training._Run, "save_checkpoint", save_interrupted)
    log_dir = tmp_path / "run"
    assert train_main(flags(corpus_dir, log_dir, "ppo", 480)) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "without saving" in err[0] and "SIGINT" in err[0]
    ckpt = load_file(log_dir / "checkpoint.pt", CHECKPOINT_FORMAT)
    assert ckpt["learner"]["counters"]["global_step"] == 48  # the evaluation's, intact
    assert not list(log_dir.glob(".*.tmp")) and signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("algo", ["ppo", "sac", "td3"])
def test_same_seed_same_learner_state(algo):
    """Two learners trained with the same seed end bit-identical (what the module split of
    hear_vec.agents was checked against, before / after, with the same script)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from toy_envs import HybridContextEnv

    from hear_vec.agents import LEARNERS, make_config

    kw: dict[str, Any] = dict(hidden_dims=(16,), log_interval=2)
    kw.update(dict(rollout_steps=4, batch_size=8, update_epochs=2) if algo == "ppo" else
              dict(batch_size=16, random_steps=16, warmup_steps=16))
    states = []
    for _ in range(2):
        torch.manual_seed(3)
        learner = LEARNERS[algo](HybridContextEnv(8, seed=0), make_config(algo, kw))
        learner.train(256)
        states.append(_tensors(learner.state_dict(include_replay=True)))
    assert_equal_states(*states)
