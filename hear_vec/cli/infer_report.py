"""What ``infer.py`` reports: metrics against clean references, the trace, the summary.

- :func:`group_metrics`: SI-SDR, STOI and ESTOI before and after, at the model's rate on the
  channel mean (lengths cropped to the shorter), for the jobs of a group that have a clean
  reference; :func:`print_metrics` prints them as a table (per file up to 20 files, then per
  model), :func:`write_csv_atomic` writes ``--metrics-csv``.
- :func:`trace_records`: the ``--trace`` JSON lines of a finished job.
- :func:`summary_line`: the last line of a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

import torch
from torch import Tensor

from hear_vec.atomic import atomic_write
from hear_vec.cli.common import pad_rows
from hear_vec.cli.infer_jobs import FileJob
from hear_vec.cli.infer_runner import Runner

__all__ = ["group_metrics", "print_metrics", "write_csv_atomic", "trace_records",
           "summary_line", "METRIC_COLUMNS"]

_MAX_TABLE_FILES = 20
#: the --metrics-csv columns
METRIC_COLUMNS = ("file", "output", "model", "checkpoint", "seconds", "si_sdr_before",
                  "si_sdr_after", "si_sdr_gain", "stoi_before", "stoi_after", "estoi_before",
                  "estoi_after")


@torch.inference_mode()
def group_metrics(jobs: list[FileJob], runner: Runner, tags: list[str],
                   ckpts: list[str]) -> list[dict[str, Any]]:
    """Metric rows for the jobs that have a clean reference and finished outputs."""
    from hear_vec.metrics import si_sdr, stoi

    todo = [job for job in jobs if job.error is None and job.clean_audio is not None
            and job.noisy_mono is not None]
    if not todo:
        return []
    rate = runner.rate
    cleans, noisys, lens = [], [], []
    for job in todo:
        c = torch.from_numpy(job.clean_audio).to(runner.device).mean(0)
        c = runner.resample(c, job.clean_rate, rate)
        noisy = job.noisy_mono
        n = min(c.shape[-1], noisy.shape[-1])
        cleans.append(c[:n])
        noisys.append(noisy[:n])
        lens.append(n)
    clean_b, lengths = pad_rows(cleans)
    noisy_b, _ = pad_rows(noisys)

    def scores(est: Tensor) -> dict[str, list[float]]:
        return {"si_sdr": si_sdr(est, clean_b, lengths).tolist(),
                "stoi": stoi(clean_b, est, rate, lengths).tolist(),
                "estoi": stoi(clean_b, est, rate, lengths, extended=True).tolist()}

    before = scores(noisy_b)
    rows: list[dict[str, Any]] = []
    for a, tag in enumerate(tags):
        have = [i for i, job in enumerate(todo) if a in job.results]
        if not have:
            continue
        est_rows = [todo[i].results[a]["model_mono"][: lens[i]] for i in have]
        est_b, _ = pad_rows(est_rows)
        sel = torch.tensor(have, device=clean_b.device)
        cb, lb = clean_b[sel], lengths[sel]
        after = {"si_sdr": si_sdr(est_b, cb, lb).tolist(),
                 "stoi": stoi(cb, est_b, rate, lb).tolist(),
                 "estoi": stoi(cb, est_b, rate, lb, extended=True).tolist()}
        for k, i in enumerate(have):
            job = todo[i]
            rows.append({
                "file": job.display, "output": str(job.outputs[a]), "model": tag,
                "checkpoint": ckpts[a], "seconds": round(lens[i] / rate, 4),
                "si_sdr_before": before["si_sdr"][i], "si_sdr_after": after["si_sdr"][k],
                "si_sdr_gain": after["si_sdr"][k] - before["si_sdr"][i],
                "stoi_before": before["stoi"][i], "stoi_after": after["stoi"][k],
                "estoi_before": before["estoi"][i], "estoi_after": after["estoi"][k],
            })
    return rows


def print_metrics(rows: list[dict[str, Any]], out: TextIO) -> None:
    import pandas as pd

    df = pd.DataFrame(rows)
    lines = []
    if len(df) <= _MAX_TABLE_FILES:
        lines.append(f"{'file':<40} {'model':<14} {'SI-SDR before':>13} {'after':>7} "
                     f"{'STOI before':>11} {'after':>6} {'ESTOI before':>12} {'after':>6}")
        for r in rows:
            name = r["file"] if len(r["file"]) <= 40 else "..." + r["file"][-37:]
            lines.append(f"{name:<40} {r['model'][:14]:<14} {r['si_sdr_before']:>13.2f} "
                         f"{r['si_sdr_after']:>7.2f} {r['stoi_before']:>11.3f} "
                         f"{r['stoi_after']:>6.3f} {r['estoi_before']:>12.3f} "
                         f"{r['estoi_after']:>6.3f}")
        lines.append("")
    lines.append(f"{'model':<14} {'files':>5}  {'SI-SDR before -> after (gain) dB':<34} "
                 f"{'STOI before -> after':<22} {'ESTOI before -> after':<22}")
    for model, g in df.groupby("model", sort=False):
        lines.append(f"{str(model)[:14]:<14} {len(g):>5}  "
                     f"{g.si_sdr_before.mean():>6.2f} -> {g.si_sdr_after.mean():>6.2f} "
                     f"({g.si_sdr_gain.mean():+.2f})".ljust(57)
                     + f"{g.stoi_before.mean():.3f} -> {g.stoi_after.mean():.3f}".ljust(23)
                     + f"{g.estoi_before.mean():.3f} -> {g.estoi_after.mean():.3f}")
    print("\n".join(lines), file=out)


def write_csv_atomic(rows: list[dict[str, Any]], path: Path) -> None:
    """The metric rows as a CSV, written atomically (:func:`hear_vec.atomic.atomic_write`)."""
    import pandas as pd

    with atomic_write(path, "w") as handle:
        pd.DataFrame(rows).to_csv(handle, index=False)


def trace_records(job: FileJob, checkpoints: list[int], paths: list[str], tags: list[str],
                  steps: list[int], model_rate: int) -> list[dict[str, Any]]:
    """One ``--trace`` record per written output of ``job`` (checkpoint indices)."""
    return [{"input": job.display, "output": str(job.outputs[a]), "checkpoint": str(paths[a]),
             "tag": tags[a], "sample_rate": job.sample_rate, "model_sample_rate": model_rate,
             "channels": job.channels, "seconds": round(job.seconds, 4), "max_steps": steps[a],
             "segments": job.results[a]["segments"]} for a in checkpoints]


def summary_line(prog: str, finished: int, outputs: int, audio_seconds: float, elapsed: float,
                 skipped: int, failed: int) -> str:
    """``infer.py: N file(s) denoised (...); K skipped (...); F failed (...)``."""
    parts = [f"{finished} file(s) denoised ({outputs} output(s), "
             f"{audio_seconds:.1f} audio-s in {elapsed:.1f} s, "
             f"{audio_seconds / max(elapsed, 1e-9):.1f} audio-s/s)"]
    if skipped:
        parts.append(f"{skipped} skipped (outputs exist; --overwrite redoes them)")
    if failed:
        parts.append(f"{failed} failed (see the error lines above)")
    return f"{prog}: " + "; ".join(parts)
