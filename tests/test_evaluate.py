"""python -m hear_vec.evaluate (CSV columns, summaries, plots, baselines), hear_vec.baselines
(fixed chains and the grid search), and python -m hear_vec.features (the seed's feature CSV)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from hear_vec.baselines import (
    DEFAULT_KNOBS,
    KNOB_GRID,
    apply_fixed_chain,
    grid_search_fixed_chain,
    knob_grid,
)
from hear_vec.cli.evaluate import main as evaluate_main
from hear_vec.cli.features import main as features_main
from hear_vec.cli.features import seed_feature_names
from hear_vec.evaluate import select_utterances, snr_groups
from hear_vec.features import FEATURE_NAMES, extract_features
from hear_vec.metrics import si_sdr
from hear_vec.ops import METHODS, denoise
from tests import model_fixtures as mf
from tests.model_fixtures import clip_pair
from tests.signals import mix_at_snr, speechlike

#: session fixtures: small trained agents (built once per session, see model_fixtures)
model_path, model_paths = mf.model_path, mf.model_paths
SEED_COLUMNS = ["idx", "utt_id", "snr_db", "model", "si_sdr", "stoi", "estoi"]


@pytest.fixture(scope="module")
def meta_dir(tmp_path_factory) -> Path:
    """A seed-layout corpus: meta.csv + clean/ + noisy/, 6 utterances at 0 / 5 / 10 dB."""
    root = tmp_path_factory.mktemp("corpus")
    rows = ["utt_id,clean_path,noisy_path,snr_db,noise_source"]
    for i in range(6):
        snr = (0, 5, 10)[i % 3]
        clip_pair(root / "clean" / f"u{i}.wav", root / "noisy" / f"u{i}.wav", 0.5 + 0.1 * i,
                  seed=i, snr_db=snr)
        rows.append(f"u{i},u{i}.wav,u{i}.wav,{snr},white")
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    return root


def _evaluate(capsys, argv: list[str]) -> tuple[int, str, str]:
    try:
        rc = evaluate_main(["--no-progress", "--device", "cpu"] + argv)
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


# -- evaluate ------------------------------------------------------------------------------------

def test_evaluate_csv_has_seed_columns_and_plots_are_written(capsys, tmp_path, meta_dir,
                                                            model_path):
    csv, plots, audio = tmp_path / "eval.csv", tmp_path / "plots", tmp_path / "audio"
    rc, out, err = _evaluate(capsys, [
        "--checkpoint", str(model_path), "--meta", str(meta_dir / "meta.csv"),
        "--sample-size", "0", "--csv", str(csv), "--plot-dir", str(plots),
        "--output-dir", str(audio), "--baselines", "--grid", "coarse",
        "--num-spectrograms", "2"])
    assert rc == 0, err
    df = pd.read_csv(csv)
    assert [c for c in df.columns if c in SEED_COLUMNS] == SEED_COLUMNS
    assert "noise_source" in df.columns
    models = ["noisy", "ppo_a"] + [f"{m}@default" for m in METHODS] + ["best_fixed"]
    assert list(df["model"].unique()) == models
    assert len(df) == 6 * len(models)
    assert sorted(df["snr_db"].unique()) == [0, 5, 10]
    # the noisy rows are the inputs' own scores
    for _, row in df[df["model"] == "noisy"].iterrows():
        clean = torch.from_numpy(sf.read(str(meta_dir / "clean" / f"{row.utt_id}.wav"),
                                         dtype="float32")[0])
        noisy = torch.from_numpy(sf.read(str(meta_dir / "noisy" / f"{row.utt_id}.wav"),
                                         dtype="float32")[0])
        assert row["si_sdr"] == pytest.approx(float(si_sdr(noisy, clean)), abs=0.02)
    for metric in ("si_sdr", "stoi", "estoi"):
        assert (plots / f"{metric}_by_model.png").stat().st_size > 1000
        assert (plots / f"{metric}_by_model_snr.png").stat().st_size > 1000
    assert len(list(plots.glob("spectrogram_*.png"))) == 2
    assert (audio / "ppo_a" / "u0.wav").is_file() and (audio / "best_fixed" / "u5.wav").is_file()
    assert "summary by model" in out and "summary by SNR and model" in out
    assert "best fixed chain" in out


def test_evaluate_snr_filter_sample_and_pair_folder(capsys, tmp_path, meta_dir, model_paths):
    csv = tmp_path / "e.csv"
    rc, _, err = _evaluate(capsys, ["--checkpoint", str(model_paths[0]), "--checkpoint",
                                    str(model_paths[1]), "--meta", str(meta_dir / "meta.csv"),
                                    "--snr-db", "5", "--snr-db", "10", "--sample-size", "3",
                                    "--seed", "1", "--csv", str(csv)])
    assert rc == 0, err
    df = pd.read_csv(csv)
    assert set(df["model"]) == {"noisy", "ppo_a", "ppo_b"}
    assert set(df["snr_db"]) <= {5, 10} and df["utt_id"].nunique() == 3
    # a clean/ + noisy/ folder works too (no snr_db known)
    rc, out, err = _evaluate(capsys, ["--checkpoint", str(model_paths[0]), "--meta",
                                      str(meta_dir), "--sample-size", "2"])
    assert rc == 0, err
    assert "no snr_db known" in out or "summary by SNR" in out


def test_select_utterances_matches_the_seed_draw():
    snrs = [0.0, 5.0, 10.0, 5.0, 0.0, 5.0, float("nan")]
    assert select_utterances(snrs, [5.0], 0, 0) == [1, 3, 5]
    picked = select_utterances(snrs, None, 3, 7)
    assert picked == pd.Series(range(7)).sample(n=3, random_state=7).tolist()
    assert select_utterances(snrs, None, 100, 0) == list(range(7))
    groups = snr_groups(pd.Series(np.linspace(-5, 15, 40)))
    assert groups.iloc[0] == "[-5, 0)" and groups.nunique() == 5


def test_evaluate_bad_inputs_are_one_line_errors(capsys, tmp_path, meta_dir):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    for argv in (["--checkpoint", str(bad), "--meta", str(meta_dir)],
                 ["--meta", str(meta_dir)],
                 ["--baselines", "--meta", str(tmp_path / "nothing")]):
        rc, _, err = _evaluate(capsys, argv)
        assert rc == 2 and len(err.strip().splitlines()) == 1, err


# -- baselines -----------------------------------------------------------------------------------

def _clips(n: int = 3, samples: int = 6000) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [mix_at_snr(speechlike(samples, seed=i), np.random.default_rng(i).standard_normal(
        samples), 5.0) for i in range(n)]
    lengths = torch.tensor([samples - 1000 * i for i in range(n)])
    noisy = torch.tensor(np.stack(rows), dtype=torch.float32)
    return noisy * (torch.arange(samples) < lengths[:, None]), lengths


def test_apply_fixed_chain_is_the_method_repeated():
    noisy, lengths = _clips()
    m = torch.full((3,), METHODS.index("wiener"))
    k = torch.tensor([DEFAULT_KNOBS] * 3)
    want = denoise(denoise(noisy, m, k, lengths), m, k, lengths)
    torch.testing.assert_close(apply_fixed_chain(noisy, lengths, "wiener", DEFAULT_KNOBS, 2),
                               want)
    torch.testing.assert_close(apply_fixed_chain(noisy, lengths, 1, k, 2), want)
    with pytest.raises(ValueError, match="unknown method"):
        apply_fixed_chain(noisy, lengths, "nope", DEFAULT_KNOBS, 1)


def test_grid_search_finds_the_known_best_chain():
    """The clean target IS the output of one fixed chain, so that chain scores far above every
    other (SI-SDR of an exact match is huge): the search must return exactly it."""
    noisy, lengths = _clips()
    target = ("spectral_sub", (0.75, 0.0, 1.0), 2)
    clean = apply_fixed_chain(noisy, lengths, target[0], target[1], target[2])
    grid = {"strength": (0.25, 0.75), "smoothing": (0.0, 1.0), "band_mix": (0.0, 1.0)}
    best, table = grid_search_fixed_chain(clean, noisy, lengths, 3, grid=grid, batch_rows=48)
    assert (best["method"], best["knobs"], best["steps"]) == target
    assert best["method_id"] == METHODS.index("spectral_sub")
    assert len(table) == len(METHODS) * 8 * 3
    runner_up = table["mean_si_sdr_gain"].nlargest(2).iloc[1]
    assert best["mean_si_sdr_gain"] > runner_up + 20
    # batching does not change the scores
    _, table1 = grid_search_fixed_chain(clean, noisy, lengths, 3, grid=grid, batch_rows=7,
                                        methods=["spectral_sub", "wavelet"])
    merged = table1.merge(table, on=["method", "strength", "smoothing", "band_mix", "steps"])
    np.testing.assert_allclose(merged["mean_si_sdr_gain_x"], merged["mean_si_sdr_gain_y"],
                               rtol=1e-4, atol=1e-3)


def test_knob_grid_and_bad_arguments():
    assert len(knob_grid(KNOB_GRID)) == 4 * 3 * 3
    assert knob_grid([(0.1, 0.2, 0.3)]) == [(0.1, 0.2, 0.3)]
    noisy, lengths = _clips(2, 3000)
    with pytest.raises(ValueError, match="repeats"):
        grid_search_fixed_chain(noisy, noisy, lengths, 2, repeats=[3])
    with pytest.raises(ValueError, match="knob"):
        knob_grid([(0.5, 2.0, 0.0)])


# -- features CSV --------------------------------------------------------------------------------

def test_features_csv_columns_order_and_values(capsys, tmp_path, meta_dir):
    out = tmp_path / "features.csv"
    rc = features_main(["--meta-path", str(meta_dir / "meta.csv"), "--output-path", str(out),
                        "--limit", "4", "--no-progress", "--device", "cpu", "--batch-size", "3"])
    assert rc == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["utt_id", "snr_db", "clean_path", "noisy_path",
                                *FEATURE_NAMES]
    assert list(df["utt_id"]) == ["u0", "u1", "u2", "u3"]
    for i, row in df.iterrows():
        audio = torch.from_numpy(sf.read(str(meta_dir / "noisy" / f"u{i}.wav"),
                                         dtype="float32")[0])
        want = extract_features(audio[None], None, 16000)[0].double().numpy()
        np.testing.assert_allclose(row[list(FEATURE_NAMES)].to_numpy(float), want,
                                   rtol=1e-5, atol=1e-5)
    rc = features_main(["--meta-path", str(meta_dir / "meta.csv"), "--output-path", str(out),
                        "--no-progress", "--seed-names"])
    assert rc == 0
    seed_df = pd.read_csv(out)
    assert list(seed_df.columns)[4:] == list(seed_feature_names())
    assert seed_df.columns[4] == "signal_rms" and seed_df.columns[-1] == "mel_std_63"
    assert len(seed_df) == 6
    capsys.readouterr()


def test_features_skip_missing_files_with_one_line_each(capsys, tmp_path, meta_dir):
    meta = tmp_path / "meta.csv"
    text = (meta_dir / "meta.csv").read_text().splitlines()
    text.append("ghost,ghost.wav,ghost.wav,5,white")
    meta.write_text("\n".join(text).replace("u0.wav", str(meta_dir / "noisy" / "u0.wav")) + "\n")
    out = tmp_path / "f.csv"
    rc = features_main(["--meta-path", str(meta), "--output-path", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("ghost") == 1
    assert list(pd.read_csv(out)["utt_id"]) == ["u0"]  # the others are relative to tmp_path
