"""CLI smoke: ``python -m hear_vec.demo`` (``make demo``) denoises with the packaged agent first,
then trains its own and denoises the same folder with it; a second run reuses the agent."""

from __future__ import annotations

import pandas as pd

from hear_vec.cli.demo import main


def test_demo_uses_the_pretrained_agent_then_its_own(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["--out", str(out), "--steps", "256", "--num-envs", "8", "--files", "3",
            "--device", "cpu"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "[2/4] denoising with the packaged pretrained agent" in text
    assert "[3/4] training PPO" in text
    pretrained = pd.read_csv(out / "pretrained_metrics.csv")
    own = pd.read_csv(out / "metrics.csv")
    assert len(pretrained) == len(own) == 3
    assert sorted(p.name for p in (out / "pretrained").rglob("*.wav")) == sorted(
        p.name for p in (out / "data" / "noisy").rglob("*.wav"))
    # the two agents are different models: their outputs differ
    assert not pretrained["si_sdr_after"].equals(own["si_sdr_after"])
    assert main(argv + ["--no-pretrained"]) == 0
    text = capsys.readouterr().out
    assert "[2/4] skipped" in text and "[3/4] reusing the trained agent" in text
