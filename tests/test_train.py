"""train.py and sweeps: every algorithm runs from the CLI and writes loadable files; resume,
Ctrl-C and non-finite losses keep a good checkpoint; bad flags give one-line errors; eager and
compiled runs agree; two gloo ranks train together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hear_vec.checkpoint import CHECKPOINT_FORMAT, MODEL_FORMAT, load_file
from hear_vec.cli.sweep import main as sweep_main
from hear_vec.cli.train import main as train_main
from hear_vec.data.demo import write_demo_corpus
from hear_vec.inference import DenoisingAgent

REPO = Path(__file__).resolve().parents[1]

ALGO_FLAGS = {
    "ppo": ["--rollout-steps", "3", "--batch-size", "24", "--update-epochs", "1"],
    "sac": ["--random-steps", "16", "--warmup-steps", "16", "--batch-size", "32"],
    "td3": ["--random-steps", "16", "--warmup-steps", "16", "--batch-size", "32"],
}


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "train_data"
    write_demo_corpus(out, n=12, seed=0)
    return out


def tiny(corpus_dir: Path, log_dir: Path, algo: str = "ppo", steps: int = 96,
         *extra: str) -> list[str]:
    return ["--data", str(corpus_dir), "--algo", algo, "--total-steps", str(steps),
            "--num-envs", "8", "--eval-interval", "48", "--eval-episodes", "8",
            "--hidden-dims", "16", "16", "--segment-seconds", "1", "--log-dir", str(log_dir),
            "--no-progress", "--seed", "1", *ALGO_FLAGS[algo], *extra]


# ------------------------------------------------------------------------------ CLI smoke
@pytest.mark.parametrize("algo", ["ppo", "sac", "td3"])
def test_every_algorithm_trains_and_writes_loadable_files(corpus_dir, tmp_path, algo):
    log_dir = tmp_path / algo
    assert train_main(tiny(corpus_dir, log_dir, algo)) == 0
    model = torch.load(log_dir / "model.pt", weights_only=True)
    assert model["format"] == MODEL_FORMAT and model["algo"] == algo
    assert model["methods"] == ["spectral_sub", "wiener", "spectral_gate", "wavelet",
                                "mmse_lsa"]
    assert {"sample_rate", "n_fft", "hop_length"} <= set(model["audio"])
    assert model["args"]["num_envs"] == 8 and "si_sdr_gain" in model["final_eval"]
    assert {"count", "mean", "m2"} <= set(model["normalizer"])
    checkpoint = load_file(log_dir / "checkpoint.pt", CHECKPOINT_FORMAT)
    assert checkpoint["learner"]["optimizers"] and checkpoint["learner"]["rng"]["cpu"].numel()
    args = json.loads((log_dir / "args.json").read_text())
    assert args["algo"] == algo and args["total_steps"] == 96
    metrics = json.loads((log_dir / "metrics.json").read_text())
    assert metrics["evals"] and "si_sdr_gain" in metrics["final_eval"]
    assert any(k.startswith("losses/") for row in metrics["logs"] for k in row)
    assert list(log_dir.glob("events.out.tfevents.*"))
    # the model denoises a batch
    agent = DenoisingAgent.from_file(log_dir / "model.pt")
    noisy = 0.1 * torch.randn(2, 8000)
    result = agent.run(noisy, torch.tensor([8000, 5000]))
    assert result.audio.shape == noisy.shape and torch.isfinite(result.audio).all()
    assert result.methods.shape == (2, 3) and (result.audio[1, 5000:] == 0).all()


def test_tensorboard_events_use_cleanrl_names(corpus_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log_dir = tmp_path / "tb"
    assert train_main(tiny(corpus_dir, log_dir)) == 0
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"charts/episodic_return", "charts/SPS", "losses/policy_loss",
            "eval/si_sdr_gain", "eval/stoi_gain", "eval/estoi_gain"} <= tags


# ----------------------------------------------------------------------------- bad flags
@pytest.mark.parametrize("flags,needle", [
    (["--algo", "dqn"], "unknown algo"),
    (["--total-steps", "-5"], "--total-steps"),
    (["--num-envs", "0"], "--num-envs"),
    (["--data", "/no/such/corpus"], "no such file"),
    (["--clean-dir", "/no/such/dir", "--noise-dir", "/no/such/noise"], "no such folder"),
    (["--device", "cuda:7"], "device"),
    (["--hidden-dims", "0"], "positive integer"),
])
def test_bad_arguments_give_one_line_errors(tmp_path, capsys, flags, needle):
    if "cuda" in flags[-1] and torch.cuda.device_count() > 7:
        pytest.skip("this machine has cuda:7")
    try:
        code = train_main(["--log-dir", str(tmp_path / "x"), "--no-progress", *flags])
    except SystemExit as exc:  # argparse-level errors
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("train.py: error:") and needle in err[0]
    assert not (tmp_path / "x" / "model.pt").exists()


def test_bad_arguments_exit_cleanly_from_the_command_line(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), "--num-envs", "0",
                           "--log-dir", str(tmp_path)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "train.py: error: --num-envs must be at least 1, got 0"]


# ------------------------------------------------------------------ resume and interrupts
def test_resume_continues_to_the_new_total(corpus_dir, tmp_path):
    log_dir = tmp_path / "run"
    assert train_main(tiny(corpus_dir, log_dir, "ppo", 48)) == 0
    first = load_file(log_dir / "checkpoint.pt", CHECKPOINT_FORMAT)
    assert first["learner"]["counters"]["global_step"] == 48
    assert train_main(tiny(corpus_dir, log_dir, "ppo", 144, "--resume")) == 0
    second = load_file(log_dir / "checkpoint.pt", CHECKPOINT_FORMAT)
    assert second["learner"]["counters"]["global_step"] == 144
    assert second["env_draws"] > first["env_draws"]
    assert len(second["history"]["evals"]) > len(first["history"]["evals"])


def test_a_finished_log_dir_is_not_overwritten(corpus_dir, tmp_path, capsys):
    log_dir = tmp_path / "run"
    assert train_main(tiny(corpus_dir, log_dir, "ppo", 48)) == 0
    before = (log_dir / "model.pt").read_bytes()
    assert train_main(tiny(corpus_dir, log_dir, "ppo", 48)) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert (log_dir / "model.pt").read_bytes() == before


def test_ctrl_c_writes_a_checkpoint_that_resumes(corpus_dir, tmp_path, monkeypatch, capsys):
    import hear_vec.training as training

    calls = {"n": 0}
    original = training._Hooks.on_log

    def interrupting(self, step, metrics):
        original(self, step, metrics)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(training._Hooks, "on_log", interrupting)
    log_dir = tmp_path / "run"
    assert train_main(tiny(corpus_dir, log_dir, "ppo", 480)) == 130
    assert "checkpoint saved" in capsys.readouterr().err
    saved = load_file(log_dir / "checkpoint.pt", CHECKPOINT_FORMAT)
    step = saved["learner"]["counters"]["global_step"]
    assert 0 < step < 480 and not (log_dir / "model.pt").exists()
    monkeypatch.setattr(training._Hooks, "on_log", original)
    assert train_main(tiny(corpus_dir, log_dir, "ppo", 480, "--resume")) == 0
    assert load_file(log_dir / "model.pt", MODEL_FORMAT)["algo"] == "ppo"


def test_non_finite_loss_stops_with_a_message_and_keeps_the_checkpoint(
        corpus_dir, tmp_path, monkeypatch, capsys):
    from hear_vec.env import DenoiseEnv

    original = DenoiseEnv.step
    count = {"n": 0}

    def poisoned(self, action):
        obs, reward, term, trunc, info = original(self, action)
        if self.update_normalizer:  # the training env, not the evaluation env
            count["n"] += 1
            if count["n"] > 9:  # after the first evaluation at 48 transitions (6 steps)
                reward = reward * float("nan")
        return obs, reward, term, trunc, info

    monkeypatch.setattr(DenoiseEnv, "step", poisoned)
    log_dir = tmp_path / "run"
    code = train_main(tiny(corpus_dir, log_dir, "ppo", 480))
    err = capsys.readouterr().err
    assert code == 1 and "non-finite" in err and len(err.strip().splitlines()) == 1
    saved = load_file(log_dir / "checkpoint.pt", CHECKPOINT_FORMAT)
    for tensor in saved["learner"]["modules"]["actor"].values():
        assert torch.isfinite(tensor).all()
    assert not (log_dir / "model.pt").exists()


# ------------------------------------------------------------------------- compile, DDP
def test_eager_and_compiled_runs_agree(corpus_dir, tmp_path):
    torch._dynamo.reset()
    results = []
    for name, extra in (("eager", []), ("compiled", ["--compile", "--compile-backend",
                                                      "aot_eager"])):
        log_dir = tmp_path / name
        assert train_main(tiny(corpus_dir, log_dir, "ppo", 48, *extra)) == 0
        results.append(json.loads((log_dir / "metrics.json").read_text()))
    eager, compiled = results
    for key in ("return", "si_sdr_gain"):
        assert compiled["final_eval"][key] == pytest.approx(eager["final_eval"][key],
                                                            rel=0.05, abs=0.05)
    loss_e = [r["losses/value_loss"] for r in eager["logs"] if "losses/value_loss" in r]
    loss_c = [r["losses/value_loss"] for r in compiled["logs"] if "losses/value_loss" in r]
    assert loss_e and loss_c == pytest.approx(loss_e, rel=0.05, abs=1e-3)


@pytest.mark.slow
def test_two_gloo_ranks_train_with_torchrun(corpus_dir, tmp_path):
    log_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", "29531", str(REPO / "train.py"),
         *tiny(corpus_dir, log_dir, "ppo", 96), "--device", "cpu"],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    model = load_file(log_dir / "model.pt", MODEL_FORMAT)
    saved = load_file(log_dir / "checkpoint.pt", CHECKPOINT_FORMAT)
    # two ranks of 8 envs: each iteration counts 16 transitions
    assert saved["learner"]["counters"]["global_step"] >= 96
    assert model["args"]["num_envs"] == 8


# --------------------------------------------------------------------------------- sweep
def test_sweep_runs_the_grid_skips_finished_runs_and_writes_a_summary(corpus_dir, tmp_path,
                                                                     capsys):
    config = {"experiments": [{
        "name": "lr", "algo": "ppo",
        "base_args": {"data": str(corpus_dir), "total_steps": 48, "num_envs": 8,
                      "eval_interval": 48, "eval_episodes": 8, "hidden_dims": [16, 16],
                      "segment_seconds": 1, "rollout_steps": 3, "batch_size": 24,
                      "update_epochs": 1},
        "sweep_params": {"actor_lr": [1e-4, 1e-3]},
    }]}
    path = tmp_path / "experiments.json"
    path.write_text(json.dumps(config))
    root = tmp_path / "out"
    assert sweep_main(["--config", str(path), "--output-root", str(root)]) == 0
    import pandas as pd

    summary = pd.read_csv(root / "summary.csv")
    assert list(summary["idx"]) == [0, 1] and set(summary["status"]) == {"done"}
    assert list(summary["param.actor_lr"]) == [1e-4, 1e-3]
    assert "final.si_sdr_gain" in summary.columns
    runs = sorted((root / "lr").iterdir())
    assert [p.name.split("_")[0] for p in runs] == ["0", "1"]
    capsys.readouterr()
    assert sweep_main(["--config", str(path), "--output-root", str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("skip ") for line in out) == 2
    assert sorted((root / "lr").iterdir()) == runs


def test_sweep_rejects_bad_configs(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"experiments": [{"name": "x", "sweep_params": {"lr": [1]}}]}))
    assert sweep_main(["--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown train.py flag 'lr'" in err[0]
