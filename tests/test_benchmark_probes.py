"""Smoke runs of the diagnostic benchmarks that back README claims: they run end to end on the
built-in synthetic corpus and their tables obey what must hold whatever the numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_choice_headroom_smoke(tmp_path):
    out = tmp_path / "headroom.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "choice_headroom.py"), "--train-batches", "1",
         "--valid-batches", "1", "--batch", "6", "--segment-seconds", "1", "--json", str(out),
         "--", "--data", "synthetic"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    gains = {k: np.asarray(v) for k, v in result["valid_clip_gains"].items()}
    oracle = gains["oracle (sees the clean speech)"]
    assert len(result["grid"]) == 91 and result["grid"][-1] == "leave alone"
    assert (oracle >= 0).all()  # "leave alone" (gain 0) is one of the choices
    for name, g in gains.items():
        assert g.shape == oracle.shape and (g <= oracle + 1e-6).all(), name
    fixed = next(k for k in gains if k.startswith("fixed: "))
    assert result["rows"][0]["chooser"] == fixed
    assert out.with_suffix(".md").read_text().startswith("`python benchmarks/choice_headroom.py")
