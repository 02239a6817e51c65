"""``python -m hear_vec.features``: the seed's feature CSV (``utils/extract_features.py``)
computed with the batched feature ops.

    python -m hear_vec.features --meta-path data/meta.csv --output-path data/features.csv

Reads the seed's meta.csv (``utt_id, clean_path, noisy_path[, snr_db, scene, ...]``; paths
relative to ``<meta dir>/noisy`` or ``<meta dir>``, as :func:`hear_vec.data.load_meta_csv`
resolves them), keeps the first ``--limit`` rows (0 = all), reads each noisy file as float32
mono at ``--sample-rate`` (channels averaged, resampled with torchaudio) and computes its
features with :func:`hear_vec.features.extract_features`, batched by similar length with
``lengths`` (so padding changes nothing).

Columns, in order (one row per readable noisy file, in meta.csv order):

* ``utt_id``, then those of ``scene``, ``macro_scene``, ``snr_db`` that the meta.csv has, then
  ``clean_path``, ``noisy_path`` — the seed's leading columns, values copied from meta.csv;
* the 133 features in :data:`hear_vec.features.FEATURE_NAMES` order: ``rms`` (root mean
  square), ``peak`` (max |x|), ``log_rms`` (ln(rms + 1e-8)), ``zcr`` (mean zero-crossing rate,
  2048-sample frames, hop 256), ``duration`` (seconds), ``mel_mean_0..63`` and
  ``mel_std_0..63`` (mean and std over frames of the 64-band Slaney log-mel spectrogram in dB,
  n_fft 1024, hop 256, top_db 80). See :mod:`hear_vec.features.extract` for the formulas.

``--seed-names`` writes the seed's names for the same features instead (``signal_rms``,
``signal_peak``, ``log_rms``, ``zcr``, ``duration_sec``, ``mel_mean_00..63``,
``mel_std_00..63``). The values are hear_vec's (which match librosa without the seed's 1e-10
offsets inside rms / peak / power_to_db). A noisy file that is missing or unusable is reported
in one line and left out (as the seed did); the exit status is then 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from hear_vec.audio_io import AudioReadError
from hear_vec.cli.common import (
    DeviceError,
    OneLineParser,
    Progress,
    add_device_argument,
    first_line,
    length_batches,
    nonnegative_int,
    pad_rows,
    positive_float,
    positive_int,
    resolve_device,
)
from hear_vec.features.extract import FEATURE_NAMES, N_MELS, extract_features

__all__ = ["build_parser", "main", "seed_feature_names", "META_COLUMNS"]

PROG = "python -m hear_vec.features"
#: meta.csv columns copied in front of the features, in the seed's order (when present)
META_COLUMNS = ("utt_id", "scene", "macro_scene", "snr_db", "clean_path", "noisy_path")


def seed_feature_names() -> tuple[str, ...]:
    """The seed's names of :data:`FEATURE_NAMES`, same order."""
    return (("signal_rms", "signal_peak", "log_rms", "zcr", "duration_sec")
            + tuple(f"mel_mean_{k:02d}" for k in range(N_MELS))
            + tuple(f"mel_std_{k:02d}" for k in range(N_MELS)))


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description="Export the seed's per-utterance feature CSV "
                      "(features of each noisy file), computed with the batched feature ops.")
    p.add_argument("--meta-path", required=True, help="the seed's meta.csv")
    p.add_argument("--output-path", required=True, help="CSV to write")
    p.add_argument("--limit", type=nonnegative_int, default=0,
                   help="only the first N rows of meta.csv (default 0 = all)")
    p.add_argument("--sample-rate", type=positive_int, default=16000,
                   help="rate the audio is resampled to (the seed's --target-sr; default 16000)")
    p.add_argument("--seed-names", action="store_true",
                   help="name the feature columns as the seed did (signal_rms, mel_mean_00...)")
    add_device_argument(p)
    p.add_argument("--batch-size", type=positive_int, default=64,
                   help="files per device batch (default 64)")
    p.add_argument("--batch-seconds", type=positive_float, default=600.0,
                   help="padded audio seconds per device batch (default 600)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    from hear_vec.data.files import _resolve, read_mono

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except DeviceError as exc:
        parser.error(str(exc))
    meta_path = Path(args.meta_path)
    if not meta_path.is_file():
        parser.error(f"--meta-path {meta_path}: no such file")
    try:
        table = pd.read_csv(meta_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        parser.error(f"--meta-path {meta_path}: not a readable CSV ({first_line(exc, 160)})")
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in ("utt_id", "noisy_path") if c not in table.columns]
    if missing:
        parser.error(f"--meta-path {meta_path} lacks column(s) {', '.join(missing)}")
    if args.limit > 0:
        table = table.head(args.limit)
    lead = [c for c in META_COLUMNS if c in table.columns]
    names = list(seed_feature_names() if args.seed_names else FEATURE_NAMES)

    root = meta_path.parent
    audio: list[np.ndarray | None] = []
    failed = 0
    progress = Progress(total=len(table), desc="features", unit="file",
                        enabled=None if args.progress else False)
    for rec in table.to_dict("records"):
        rel = str(rec["noisy_path"]).strip()
        path = _resolve(root, "noisy", rel) if rel else None
        try:
            if path is None:
                raise AudioReadError(f"utt_id {rec['utt_id']}", "empty noisy_path")
            audio.append(read_mono(path, args.sample_rate))
        except AudioReadError as err:
            progress.write(f"{PROG}: warning: skipped {err}")
            audio.append(None)
            failed += 1
    ok = [i for i, a in enumerate(audio) if a is not None]
    if not ok:
        progress.close()
        print(f"{PROG}: error: no features were extracted; check the paths in {meta_path}",
              file=sys.stderr)
        return 1
    features = np.zeros((len(audio), len(FEATURE_NAMES)), dtype=np.float64)
    budget = max(int(args.batch_seconds * args.sample_rate), 1)
    with torch.inference_mode():
        for batch in length_batches([audio[i].shape[-1] for i in ok], args.batch_size, budget):
            idx = [ok[b] for b in batch]
            rows = [torch.from_numpy(audio[i]).to(device) for i in idx]
            x, lengths = pad_rows(rows)
            feats = extract_features(x, lengths, args.sample_rate).double().cpu().numpy()
            features[idx] = feats
            progress.update(len(idx), float(lengths.sum()) / args.sample_rate)
    progress.close()

    out = table.iloc[ok][lead].reset_index(drop=True)
    if "snr_db" in out.columns:
        out["snr_db"] = pd.to_numeric(out["snr_db"], errors="coerce")
    feats_df = pd.DataFrame(features[ok], columns=names)
    result = pd.concat([out, feats_df], axis=1)
    dest = Path(args.output_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        result.to_csv(tmp, index=False)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    print(f"[features] wrote {len(result)} rows x {len(result.columns)} columns to {dest}"
          + (f"; {failed} file(s) skipped" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
