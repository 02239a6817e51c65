"""benchmarks/agent_vs_baselines.py and its helpers (heldout_clips, heldout_systems).

Guarantees: the held-out grid holds every (utterance, noise, SNR) once at exactly that SNR,
reproducibly; training clips come only from the training side; the per-clip chain scorer
agrees with hear_vec.baselines.grid_search_fixed_chain; batching does not change outputs;
the script runs end to end on a tiny generated folder (with an agent, the oracle, and the
outside denoisers that are installed, skipped with a note where not), keeps held-out
speakers and noises out of the training clips, honours --run's args.json, and answers bad
input with one line and exit status 2.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import tests.model_fixtures as mf
from benchmarks import agent_vs_baselines as bench
from benchmarks.heldout_clips import heldout_grid, read_folder, training_clips
from benchmarks.heldout_systems import (
    apply_per_clip_chains,
    per_clip_chain_gains,
    run_in_batches,
)
from benchmarks.outside_denoisers import OUTSIDE_DENOISERS
from hear_vec.baselines import apply_fixed_chain, grid_search_fixed_chain
from hear_vec.metrics import si_sdr
from tests.signals import speechlike

model_path, model_paths = mf.model_path, mf.model_paths

SPEAKERS = ("spkA", "spkB", "spkC")
NOISES = ("hum", "hiss", "rumble")
SMALL_GRID = [(0.5, 0.0, 0.5), (1.0, 1.0, 0.5)]


def _noise(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    if kind == "hum":
        return 0.1 * np.sin(2 * np.pi * 120 * t) + 0.01 * rng.standard_normal(n)
    if kind == "hiss":
        return 0.05 * rng.standard_normal(n)
    return 0.05 * np.cumsum(rng.standard_normal(n)) / np.sqrt(np.arange(1, n + 1))


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("heldout")
    speech, noise = root / "speech", root / "noise"
    speech.mkdir()
    noise.mkdir()
    for s, spk in enumerate(SPEAKERS):
        for u in range(2):
            n = int((0.9 + 0.2 * u + 0.1 * s) * 16000)
            x = 0.3 * speechlike(n, seed=10 * s + u) / 0.03
            sf.write(str(speech / f"{spk}_utt{u}.wav"), x.astype(np.float32), 16000)
    for k, kind in enumerate(NOISES):
        sf.write(str(noise / f"{kind}.wav"), _noise(kind, 24000, k).astype(np.float32), 16000)
    return speech, noise


def _args(folders, out: Path, *extra: str) -> list[str]:
    speech, noise = folders
    return ["--clean-dir", str(speech), "--noise-dir", str(noise),
            "--speaker-pattern", r"^(spk[A-Z])_", "--holdout-speakers", "spkA",
            "--holdout-noises", "hum", "--snrs", "0", "10", "--grid-clips", "2",
            "--grid-seconds", "1.0", "--grid", "coarse", "--n-boot", "200",
            "--json", str(out), *extra]


# --- clips --------------------------------------------------------------------------------


def test_heldout_grid_mixes_every_combination_once_at_its_snr(folders):
    speech, noise = (read_folder(f, "x")[0] for f in folders)
    utts = {k: v for k, v in speech.items() if k.startswith("spkA")}
    speakers = {k: "spkA" for k in utts}
    clips = heldout_grid(utts, noise, speakers, [-5.0, 0.0, 12.5], seed=3)
    combos = [(r["utterance"], r["noise"], r["snr_db"]) for r in clips.records]
    assert len(combos) == len(set(combos)) == 2 * 3 * 3
    for i, r in enumerate(clips.records):
        n = r["samples"]
        clean, noisy = clips.clean[i, :n].double(), clips.noisy[i, :n].double()
        assert torch.equal(clean.float(), torch.from_numpy(utts[r["utterance"]]))
        snr = 10 * torch.log10(clean.square().sum() / (noisy - clean).square().sum())
        assert float(snr) == pytest.approx(r["snr_db"], abs=1e-3)
        assert not clips.noisy[i, n:].any()
    again = heldout_grid(utts, noise, speakers, [-5.0, 0.0, 12.5], seed=3)
    assert torch.equal(again.noisy, clips.noisy)
    other = heldout_grid(utts, noise, speakers, [-5.0, 0.0, 12.5], seed=4)
    assert other.column("noise_offset") != clips.column("noise_offset")


def test_training_clips_use_only_the_given_side(folders):
    speech, noise = (read_folder(f, "x")[0] for f in folders)
    utts = {k: v for k, v in speech.items() if not k.startswith("spkA")}
    noises = {k: v for k, v in noise.items() if k != "hum.wav"}
    clips = training_clips(utts, noises, 20, 1.0, 0.5, (-5.0, 15.0), seed=0)
    assert {r["utterance"] for r in clips.records} <= set(utts)
    assert {r["noise"] for r in clips.records} <= set(noises)
    lengths = clips.lengths.tolist()
    assert all(8000 <= n <= 16000 for n in lengths) and len(set(lengths)) > 1
    assert all(-5.0 <= r["snr_db"] <= 15.0 for r in clips.records)


# --- systems ------------------------------------------------------------------------------


def _tiny_clips(folders):
    speech, noise = (read_folder(f, "x")[0] for f in folders)
    return training_clips(speech, noise, 3, 0.6, 0.4, (0.0, 10.0), seed=1)


def test_per_clip_chain_gains_agree_with_grid_search(folders):
    clips = _tiny_clips(folders)
    with torch.inference_mode():
        gains, entries = per_clip_chain_gains(clips.clean, clips.noisy, clips.lengths, 2,
                                              SMALL_GRID)
        _, table = grid_search_fixed_chain(clips.clean, clips.noisy, clips.lengths, 2,
                                           SMALL_GRID)
    assert gains.shape == (3, len(entries), 2) and len(entries) == 5 * len(SMALL_GRID)
    np.testing.assert_allclose(gains.mean(axis=0).reshape(-1),
                               table["mean_si_sdr_gain"].to_numpy(), atol=1e-4)
    assert [(m, t) for m, t in entries[:2]] == [(0, SMALL_GRID[0]), (0, SMALL_GRID[1])]


def test_per_clip_chains_and_batching_match_the_direct_call(folders):
    clips = _tiny_clips(folders)
    with torch.inference_mode():
        direct = apply_fixed_chain(clips.noisy, clips.lengths, 4, (0.5, 0.5, 0.5), 2)
        batched = run_in_batches(
            lambda x, lens: apply_fixed_chain(x, lens, 4, (0.5, 0.5, 0.5), 2),
            clips.noisy, clips.lengths, max_rows=1)
        per_clip = apply_per_clip_chains(
            clips.noisy, clips.lengths, torch.tensor([4, 4, 1]),
            torch.tensor([[0.5, 0.5, 0.5]] * 3), torch.tensor([2, 2, 1]))
        wiener = apply_fixed_chain(clips.noisy[2:], clips.lengths[2:], 1, (0.5, 0.5, 0.5), 1)
    torch.testing.assert_close(batched, direct, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(per_clip[:2], direct[:2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(per_clip[2:], wiener, atol=1e-5, rtol=1e-5)


# --- the script end to end ----------------------------------------------------------------


def test_end_to_end_with_an_agent_and_the_oracle(folders, model_path, tmp_path, capsys):
    out = tmp_path / "res.json"
    assert bench.main(_args(folders, out, "--checkpoint", str(model_path), "--outside",
                            "none", "--oracle")) == 0
    data = json.loads(out.read_text())
    assert "| system |" in capsys.readouterr().out
    assert out.with_suffix(".md").read_text().startswith("`python benchmarks/")
    rows, kinds = data["rows"], data["kinds"]
    assert len(rows) == 2 * 1 * 2                       # spkA's 2 utterances x hum x 2 SNRs
    assert {r["speaker"] for r in rows} == {"spkA"} and {r["noise"] for r in rows} == {
        "hum.wav"}
    split = data["info"]["split"]
    assert split["speakers"]["held_out_groups"] == ["spkA"]
    assert split["noises"]["held_out"] == ["hum.wav"]
    train = data["training_clips"]
    assert train and all(not r["utterance"].startswith("spkA") for r in train)
    assert all(r["noise"] != "hum.wav" for r in train)
    assert sorted(set(kinds.values())) == ["agent", "best_fixed", "default_knobs", "input",
                                           "oracle"]
    names = {k: [n for n, v in kinds.items() if v == k] for k in set(kinds.values())}
    noisy, best, oracle = names["input"][0], names["best_fixed"][0], names["oracle"][0]
    for r in rows:
        assert set(r["scores"]) == set(kinds)
        # the oracle picks per clip from the grid that holds (c): never below (c)
        assert r["scores"][oracle]["si_sdr"] >= r["scores"][best]["si_sdr"] - 1e-3
    s = data["summaries"][noisy]["si_sdr"]
    assert s["mean"] == 0.0 and s["fraction_worse"]["0"] == 0.0
    agent = names["agent"][0]
    sa = data["summaries"][agent]["si_sdr"]
    assert sa["interval"]["clusters"] == 2 and sa["interval"]["n"] == 4
    gains = [r["scores"][agent]["si_sdr"] - r["scores"][noisy]["si_sdr"] for r in rows]
    assert sa["mean"] == pytest.approx(np.mean(gains), abs=1e-4)
    assert [b["band"] for b in sa["by_band"]] == ["0", "10"]
    assert f"{agent} − {best}" in data["differences"]
    assert f"{oracle} − {best}" in data["differences"]
    assert sum(data["agent_method_usage"][agent].values()) == 4 * 3
    assert data["info"]["timings_s"]["total"] > 0


def test_outside_denoisers_run_where_installed_and_are_skipped_otherwise(folders, tmp_path):
    out = tmp_path / "res.json"
    assert bench.main(_args(folders, out, "--outside", "all")) == 0
    data = json.loads(out.read_text())
    outside = [n for n, k in data["kinds"].items() if k == "outside"]
    skipped = data["info"]["outside_skipped"]
    assert len(outside) + len(skipped) == len(OUTSIDE_DENOISERS)
    assert all("pip install" in note for note in skipped.values())
    for name in outside:
        assert all(name in r["lag"] and abs(r["lag"][name]) <= 800 for r in data["rows"])
        assert name in data["info"]["outside_lags"]
    if any(n.startswith("(e) nsnet2") for n in outside):
        assert any("nsnet2" in label for label in data["differences"])


def test_run_dir_supplies_the_split(folders, model_path, tmp_path):
    speech, noise = folders
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(model_path, run / "model.pt")
    (run / "args.json").write_text(json.dumps({
        "clean_dir": str(speech), "noise_dir": str(noise), "speaker_pattern": r"^(spk[A-Z])_",
        "holdout_speakers": ["spkC"], "holdout_noises": ["hiss"], "seed": 0, "max_steps": 3}))
    out = tmp_path / "res.json"
    assert bench.main(["--run", str(run), "--snrs", "5", "--grid-clips", "2", "--grid-seconds",
                       "1.0", "--grid", "coarse", "--outside", "none", "--n-boot", "100",
                       "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["info"]["split"]["speakers"]["held_out_groups"] == ["spkC"]
    assert data["info"]["split"]["noises"]["held_out_groups"] == ["hiss"]
    assert "agent" in data["kinds"].values() and len(data["rows"]) == 2


def test_an_utterance_level_run_holds_out_its_validation_utterances(folders, model_path,
                                                                   tmp_path, capsys):
    from hear_vec.data import load_corpus

    speech, noise = folders
    run = tmp_path / "old_run"
    run.mkdir()
    shutil.copy(model_path, run / "model.pt")
    (run / "args.json").write_text(json.dumps({
        "clean_dir": str(speech), "noise_dir": str(noise), "valid_fraction": 0.34, "seed": 2,
        "holdout_noise_fraction": 0.0}))
    common = ["--run", str(run), "--snrs", "5", "--grid-clips", "2", "--grid-seconds", "1.0",
              "--grid", "coarse", "--outside", "none", "--n-boot", "100"]
    with pytest.raises(SystemExit):       # it held out no noise: say which to hold out here
        bench.main(common + ["--json", str(tmp_path / "x.json")])
    assert "held out no noise recordings" in capsys.readouterr().err
    out = tmp_path / "res.json"
    assert bench.main(common + ["--holdout-noises", "hiss", "--json", str(out)]) == 0
    assert "has heard the noises" in capsys.readouterr().err
    _, valid = load_corpus(clean_dir=speech, noise_dir=noise).split(0.34, seed=2)
    held = json.loads(out.read_text())["info"]["split"]["speakers"]["held_out"]
    assert held == list(valid.names)


@pytest.mark.parametrize("extra, match", [
    (["--holdout-speakers", "nobody"], "unknown speaker"),
    (["--speaker-pattern", r"^(x\d)"], "does not match"),
    (["--outside", "dfn3"], "unknown outside denoiser"),
    (["--checkpoint", "missing/model.pt"], "--checkpoint"),
])
def test_bad_input_is_one_line_and_exit_2(folders, tmp_path, capsys, extra, match):
    with pytest.raises(SystemExit) as exc:
        bench.main(_args(folders, tmp_path / "r.json", "--outside", "none") + extra)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r.json").exists()


def test_missing_holdout_settings_are_an_error(folders, tmp_path, capsys):
    speech, noise = folders
    with pytest.raises(SystemExit) as exc:
        bench.main(["--clean-dir", str(speech), "--noise-dir", str(noise), "--json",
                    str(tmp_path / "r.json")])
    assert exc.value.code == 2
    assert "--holdout-speakers" in capsys.readouterr().err


def test_scores_are_the_library_metrics(folders):
    from benchmarks.heldout_systems import Scorer
    from hear_vec.metrics import stoi

    clips = _tiny_clips(folders)
    got = Scorer(clips.clean, clips.lengths)(clips.noisy)
    np.testing.assert_allclose(got["si_sdr"],
                               si_sdr(clips.noisy, clips.clean, clips.lengths).numpy(),
                               atol=1e-5)
    np.testing.assert_allclose(got["estoi"], stoi(clips.clean, clips.noisy, 16000,
                                                  clips.lengths, extended=True).numpy(),
                               atol=1e-6)
