"""train.py's data flags: several weighted sources, domain randomization and held-out
speakers / noises reach the run (args.json, split.json), the split rebuilds from args.json as
benchmarks/agent_vs_baselines.py does, and bad data flags give one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from hear_vec.cli.train import build_parser, config_from_args
from hear_vec.cli.train import main as train_main
from hear_vec.data import MultiSourceCorpus
from hear_vec.training import RunConfig, load_corpora

SR = 16000


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("folders")
    g = np.random.default_rng(0)
    for s in ("ann", "bob", "cy"):
        for j in range(2):
            (root / "speech").mkdir(exist_ok=True)
            sf.write(str(root / "speech" / f"{s}_{j}.wav"),
                     (0.1 * g.standard_normal(SR)).astype(np.float32), SR)
    for k in range(4):
        (root / "noise").mkdir(exist_ok=True)
        sf.write(str(root / "noise" / f"n{k}.wav"),
                 (0.1 * g.standard_normal(SR)).astype(np.float32), SR)
    return root / "speech", root / "noise"


def test_data_flags_reach_the_run_and_rebuild_from_args_json(folders, tmp_path):
    speech, noise = folders
    log_dir = tmp_path / "run"
    argv = ["--data", f"{speech}:2", "--noise-dir", "synthetic", f"{noise}:1",
            "--speaker-pattern", "^([^_]+)_", "--holdout-speakers", "bob",
            "--holdout-noise-fraction", "0.25", "--augment", "domain", "--reverb-prob", "0.5",
            "--level-range", "off", "--noise-count", "1", "2",
            "--algo", "ppo", "--total-steps", "48", "--num-envs", "8", "--eval-interval", "0",
            "--eval-episodes", "8", "--hidden-dims", "16", "--segment-seconds", "0.5",
            "--rollout-steps", "3", "--batch-size", "24", "--update-epochs", "1",
            "--log-dir", str(log_dir), "--no-progress", "--seed", "1"]
    assert train_main(argv) == 0
    args = json.loads((log_dir / "args.json").read_text())
    assert args["data"] == f"{speech}:2" and args["noise_dir"] == ["synthetic", f"{noise}:1"]
    assert args["augment"] == "domain" and args["reverb_prob"] == 0.5
    assert args["level_range"] == "off" and args["noise_count"] == [1, 2]
    assert args["holdout_speakers"] == ["bob"] and args["holdout_noise_fraction"] == 0.25
    split = json.loads((log_dir / "split.json").read_text())
    assert split["valid"]["speakers"] == ["bob"]
    assert set(split["train"]["speakers"]) == {"ann", "cy"}
    held, kept = set(split["valid"]["noises"]), set(split["train"]["noises"])
    assert len(held) == round(0.25 * 36) and held.isdisjoint(kept) and len(held | kept) == 36
    # rebuilt from args.json the way benchmarks/agent_vs_baselines.py does
    cfg = RunConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in args.items()})
    train, valid = load_corpora(cfg, torch.device("cpu"))
    assert isinstance(valid, MultiSourceCorpus)
    assert sorted(valid.names) == ["bob_0.wav", "bob_1.wav"]
    assert {valid.noise_names[i] for i in valid.noise_index.tolist()} == held
    rand = valid.randomization
    assert rand.reverb_prob == 0.5 and rand.level_range is None and rand.noise_count == (1, 2)
    assert rand.babble_prob == 0.15  # the rest from the domain preset


def test_single_sources_keep_their_old_args_json_form():
    cfg = config_from_args(build_parser().parse_args(["--data", "train_data"]))
    assert cfg.data == "train_data" and cfg.noise_dir is None and cfg.level_range is None
    cfg = config_from_args(build_parser().parse_args(["--holdout-speakers", "a,b", "c"]))
    assert cfg.holdout_speakers == ("a", "b", "c")
    cfg = config_from_args(build_parser().parse_args(["--level-range", "-40", "-20"]))
    assert cfg.level_range == (-40.0, -20.0)
    assert cfg.randomization().level_range == (-40.0, -20.0)


@pytest.mark.parametrize("flags,needle", [
    (["--level-range", "-20"], "--level-range takes LO HI"),
    (["--level-range", "loud", "x"], "--level-range takes LO HI"),
    (["--level-range", "-20", "5"], "--level-range is in dBFS"),
    (["--reverb-prob", "2"], "--reverb-prob must lie in [0, 1]"),
    (["--noise-count", "0", "2"], "--noise-count must be two ints"),
    (["--augment", "loud"], "invalid choice"),
    (["--holdout-noise-fraction", "1"], "--holdout-noise-fraction"),
    (["--noise-dir", "/no/such/noise"], "no such folder"),
    (["--data", "synthetic", "/no/such/speech:2"], "no such file or folder"),
    (["--data", "synthetic", "--speaker-pattern", "("], "not a valid regular expression"),
    (["--data", "synthetic", "--holdout-speakers", "nobody"], "unknown speaker"),
])
def test_bad_data_flags_give_one_line_errors(tmp_path, capsys, flags, needle):
    try:
        code = train_main(["--log-dir", str(tmp_path / "x"), "--no-progress",
                           "--total-steps", "8", "--num-envs", "2", *flags])
    except SystemExit as exc:  # argparse-level errors
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("train.py: error:") and needle in err[0], err
    assert not (tmp_path / "x" / "model.pt").exists()
