"""One source of configuration (hear_vec.config_flags): train.py's flags, sweep keys and
args.json come from the learner configs and RunConfig; unknown or misspelt keys and learner
fields of another algorithm are errors that name the nearest valid name."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hear_vec.agents import CONFIGS, make_config
from hear_vec.cli.train import build_parser, config_from_args
from hear_vec.cli.train import main as train_main
from hear_vec.config_flags import LEARNER_GROUP, flag_name, learner_fields
from hear_vec.sweep import load_sweep
from hear_vec.training import RUN_FIELDS, RunConfig

REPO = Path(__file__).resolve().parents[1]

LEARNER_NAMES = sorted({f.name for cls in CONFIGS.values() for f in dataclasses.fields(cls)})
RUN_NAMES = list(RUN_FIELDS)


def _options() -> dict[str, object]:
    return {s: a for a in build_parser()._actions for s in a.option_strings}


def _run_cli(argv, capsys):
    try:
        code = train_main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err.strip().splitlines()


# ------------------------------------------------------------------------ every field a flag
@pytest.mark.parametrize("name", sorted(set(LEARNER_NAMES) | set(RUN_NAMES)))
def test_every_field_has_a_flag(name):
    options = _options()
    assert flag_name(name) in options
    assert name in RUN_FIELDS  # RunConfig carries every learner field too (args.json, sweeps)
    hint = dataclasses.fields(RunConfig)[RUN_FIELDS.index(name)].type
    if "bool" in str(hint):
        assert "--no-" + name.replace("_", "-") in options


def test_help_lists_every_learner_field_in_the_learner_group():
    text = build_parser().format_help()
    for name in LEARNER_NAMES:
        assert flag_name(name) in text, name
    learner_part = text[text.index(LEARNER_GROUP):]
    assert "--clip-range" in learner_part and "(ppo)" in learner_part
    assert "(sac, td3)" in learner_part and "(td3)" in learner_part
    # the seed's flag names stay
    for flag in ("--algo", "--no-progress", "--no-tune-cpu-allocator", "--noise", "--noise-dir",
                 "--snr-range", "--hidden-dims", "--entropy-coef", "--target-kl"):
        assert flag in text


def test_help_from_the_command_line_lists_the_new_learner_flags():
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for flag in ("--anneal-lr", "--no-norm-adv", "--clip-vloss", "--autotune",
                 "--initial-alpha", "--epsilon", "--adam-eps"):
        assert flag in proc.stdout


def test_no_flags_give_the_dataclass_defaults():
    assert config_from_args(build_parser().parse_args([])) == RunConfig()
    assert all(v is None for k, v in dataclasses.asdict(RunConfig()).items()
               if k in learner_fields() and k not in ("eval_interval", "compile",
                                                      "compile_backend", "cudagraphs"))


# ------------------------------------------------------------------------ misspelt flags
def test_misspelt_flag_is_one_line_naming_the_nearest(capsys):
    code, err = _run_cli(["--entropy-coeff", "0.1"], capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("train.py: error:") and "--entropy-coef?" in err[0]


def test_misspelt_flag_from_the_command_line():
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), "--entropy-coeff", "0.1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "train.py: error: unknown flag --entropy-coeff; did you mean --entropy-coef?"]


def test_prefixes_are_not_accepted(capsys):
    code, err = _run_cli(["--total", "5"], capsys)
    assert code == 2 and len(err) == 1 and "--total-steps" in err[0]


# ------------------------------------------------------------------------ unknown keys
def test_make_config_rejects_an_unknown_key_naming_the_nearest():
    with pytest.raises(ValueError, match=r"unknown learner field 'entropy_coeff'; "
                                         r"did you mean 'entropy_coef'\?"):
        make_config("ppo", {"entropy_coeff": 0.1})
    with pytest.raises(ValueError, match="unknown learner field 'num_envs'"):
        make_config("ppo", {"num_envs": 8})  # a run field is not a learner field


def test_learner_field_for_the_wrong_algo_is_an_error(capsys, tmp_path):
    with pytest.raises(ValueError, match="'clip_range' is a ppo setting; sac does not use it"):
        make_config("sac", {"clip_range": 0.1})
    with pytest.raises(ValueError, match="td3 setting"):
        make_config("ppo", {"policy_delay": 3})
    assert make_config("sac", {"clip_range": None}).tau == 0.005  # unset is fine
    code, err = _run_cli(["--algo", "sac", "--clip-range", "0.1", "--log-dir",
                          str(tmp_path / "x"), "--no-progress"], capsys)
    assert code == 2 and err == [
        "train.py: error: --clip-range is a ppo setting; --algo sac does not use it"]
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="sac setting"):
        RunConfig(algo="td3", autotune=False).validate()


def test_sweep_keys_name_the_nearest_and_follow_the_algo(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"experiments": [
        {"name": "x", "algo": "ppo", "sweep_params": {"entropy-coeff": [0.0, 0.1]}}]}))
    with pytest.raises(ValueError, match="unknown train.py flag 'entropy_coeff'; did you mean "
                                         "'entropy_coef'"):
        load_sweep(path)
    path.write_text(json.dumps({"experiments": [
        {"name": "x", "algo": "sac", "base_args": {"clip_range": 0.1}}]}))
    with pytest.raises(ValueError, match="ppo setting; sac does not use it"):
        load_sweep(path)
    path.write_text(json.dumps({"experiments": [
        {"name": "x", "algo": "sac", "base_args": {"autotune": False},
         "sweep_params": {"initial_alpha": [0.1, 0.2]}}]}))
    assert load_sweep(path)[0]["name"] == "x"  # learner fields beyond the old list work


# ------------------------------------------------------------------------ args.json
def test_args_json_round_trip(tmp_path):
    cfg = config_from_args(build_parser().parse_args([
        "--algo", "sac", "--num-envs", "8", "--hidden-dims", "32", "16", "--no-autotune",
        "--initial-alpha", "0.05", "--snr-range", "0", "10", "--data", "synthetic", "synthetic:2",
        "--holdout-speakers", "a,b", "--noise-count", "1", "3", "--level-range", "off",
        "--no-progress", "--target-entropy", "-2"]))
    path = tmp_path / "args.json"
    path.write_text(json.dumps(dataclasses.asdict(cfg), indent=2))  # as run() writes it
    saved = json.loads(path.read_text())
    assert set(saved) == set(RUN_FIELDS)  # args.json keys = RunConfig fields = flags
    back = RunConfig.from_dict(saved)
    assert back == cfg
    assert back.hidden_dims == (32, 16) and back.data == ("synthetic", "synthetic:2")
    learner = back.learner_config()
    assert learner.autotune is False and learner.initial_alpha == 0.05
    assert learner.target_entropy == -2.0 and learner.hidden_dims == (32, 16)


def test_from_dict_rejects_unknown_keys_and_reads_legacy_extra():
    with pytest.raises(ValueError, match=r"unknown key 'num_env'; did you mean 'num_envs'\?"):
        RunConfig.from_dict({"num_env": 8})
    with pytest.raises(ValueError, match="in args.json: unknown key 'gama'; did you mean "
                                         "'gamma'"):
        RunConfig.from_dict({"gama": 0.9}, where="in args.json")
    cfg = RunConfig.from_dict({"--num-envs": 8, "extra": {"anneal_lr": True}})
    assert cfg.num_envs == 8 and cfg.learner_config().anneal_lr is True


# ------------------------------------------------------------------------ values reach learners
@pytest.mark.parametrize("argv,field,value", [
    (["--no-norm-adv"], "norm_adv", False),
    (["--anneal-lr"], "anneal_lr", True),
    (["--clip-vloss"], "clip_vloss", True),
    (["--target-kl", "0.02"], "target_kl", 0.02),
    (["--algo", "sac", "--no-autotune"], "autotune", False),
    (["--algo", "sac", "--initial-alpha", "0.5"], "initial_alpha", 0.5),
    (["--algo", "td3", "--epsilon", "0.3"], "epsilon", 0.3),
    (["--log-interval", "7"], "log_interval", 7),
])
def test_flags_reach_the_learner_config(argv, field, value):
    cfg = config_from_args(build_parser().parse_args(argv))
    cfg.validate()
    assert getattr(cfg.learner_config(), field) == value


def test_bool_flag_reaches_the_built_learner():
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from toy_envs import HybridContextEnv

    from hear_vec.training import build_learner

    cfg = config_from_args(build_parser().parse_args(["--no-norm-adv", "--hidden-dims", "8"]))
    learner = build_learner(cfg, HybridContextEnv(2, seed=0), "cpu")
    assert learner.config.norm_adv is False and learner.config.hidden_dims == (8,)


def test_learner_validation_runs_before_any_data(capsys, tmp_path):
    code, err = _run_cli(["--gamma", "2", "--log-dir", str(tmp_path / "x"), "--no-progress"],
                         capsys)
    assert code == 2 and len(err) == 1 and "gamma must be in [0, 1]" in err[0]
