"""How much of the classical chain's limit is its noise estimate? LSA with an oracle noise PSD.

    python benchmarks/noise_psd_ceiling.py --clean-dir ../shared/dev_audio/speech \\
        --noise-dir ../shared/dev_audio/noise --exclude-speakers arctic_axb,sbasr_spk2 \\
        --exclude-noises cafe_noisereduce,sb_noise4_machine \\
        --json benchmarks/results/noise_psd_ceiling.json

Every (utterance, noise) pair of the given folders (excluded speakers / noises left out, e.g.
a final test split) is mixed at a grid of SNRs (whole utterances, at most --max-seconds, a
seeded noise offset). Each clip is denoised once by the mmse_lsa estimator
(hear_vec.ops.mmse_lsa; strength 1, textbook decision-directed smoothing 0.98) with these
noise-PSD estimates lambda[f, n]:

  estimated    what hear_vec.ops.mmse_lsa uses: the bias-corrected 20th percentile of |X|
               over the clip's frames, per bin (no clean speech needed);
  over S P     (``--over-grid``) that estimate times clip(1 + S (P - snr_dB), 1, 4), snr the
               clip's a-posteriori SNR estimate: SNR-dependent over-estimation, tried in
               mmse_lsa and not adopted (benchmarks/results/snr_overestimation.md; in its
               tables, made at the trial commit, "estimated" is the trial operator and
               "quantile" this estimate);
  spp weighted the mean of |X|^2 over frames weighted by the speech-absence probability
               under the quantile estimate (two passes, :func:`spp_weighted`);
  spp tracking the quantile estimate tracked over frames by speech presence probability
               (hear_vec.ops.noise_tracker, Gerkmann & Hendriks 2012; not adopted by
               mmse_lsa, see benchmarks/results/noise_track_trial.md);
  learned      the quantile estimate corrected frame by frame by the small learned estimator
               (hear_vec.ops.noise_net; weights from benchmarks/train_noise_net.py given
               by ``--noise-net``; not adopted, see benchmarks/results/noise_net_trial.md);
  oracle static      the mean over frames of the true noise's |N|^2, per bin;
  oracle tracking    the true noise's |N|^2 recursively smoothed over frames
                     (lambda_n = 0.9 lambda_{n-1} + 0.1 |N_n|^2);
  oracle tracking x2 the same, doubled (an over-estimate).

The oracles see the noise, so they are upper bounds of what a better noise estimator could
give the same gain rule; the gap to "estimated" says how much the operators (and every chain
and agent built from them) lose to their noise estimate. Numbers are written, not asserted.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, markdown_table, write_results  # noqa: E402
from hear_vec import dsp  # noqa: E402
from hear_vec.audio_io import list_audio_files  # noqa: E402
from hear_vec.data import read_mono  # noqa: E402
from hear_vec.data.bank import mix_at_snr  # noqa: E402
from hear_vec.metrics import si_sdr  # noqa: E402
from hear_vec.ops._common import analyze, synthesize  # noqa: E402
from hear_vec.ops.mmse_lsa import XI_MIN, lsa_gain, quantile_noise  # noqa: E402
from hear_vec.ops.noise_net import load_noise_net, noise_net_psd, smoothed_power  # noqa: E402
from hear_vec.ops.noise_tracker import spp_noise_track  # noqa: E402

SMOOTHING = 0.98  # decision-directed a (m = 8/9 in hear_vec's knob)
ESTIMATORS = ("estimated", "spp weighted", "spp tracking", "learned",
              "oracle static", "oracle tracking", "oracle tracking x2")


def lsa_with_noise(spec, noise: torch.Tensor, smoothing: float = SMOOTHING) -> torch.Tensor:
    """Decision-directed LSA gain (B, F, N) of the analysis ``spec`` for a noise PSD (B, F, N)
    or (B, F, 1): the recursion of hear_vec.ops.mmse_lsa with a = ``smoothing``, strength 1."""
    power = spec.mag.square()
    noise = noise.expand_as(power).clamp_min(1e-10 * float(power.mean()) + 1e-30)
    gamma = (power / noise).clamp_max(1e12)
    gains = torch.empty_like(gamma)
    prev = None
    for n in range(gamma.shape[-1]):
        g_n = gamma[..., n]
        if prev is None:
            xi = (g_n - 1.0).clamp_min(XI_MIN)
        else:
            xi = (smoothing * prev + (1 - smoothing) * (g_n - 1.0).clamp_min(0.0)).clamp_min(
                XI_MIN)
        gain = lsa_gain(xi, g_n)
        gains[..., n] = gain
        prev = gain * gain * g_n
    return gains


def noise_estimate(name: str, spec, static: torch.Tensor, n_power: torch.Tensor,
                   net=None) -> torch.Tensor:
    """The noise PSD named ``name`` (module docstring) for one clip."""
    if name == "estimated":
        return static
    if name.startswith("over "):  # "over SLOPE PIVOT": c = clip(1 + SLOPE (PIVOT - snr), 1, 4)
        slope, pivot = (float(v) for v in name.split()[1:])
        noise_mean = static.mean(-2, keepdim=True)
        excess = torch.maximum(_row_mean(spec) - noise_mean, 1e-3 * noise_mean)
        snr_db = 10.0 * torch.log10(excess / noise_mean)
        return static * (1.0 + slope * (pivot - snr_db)).clamp(1.0, 4.0)
    if name == "learned":
        return noise_net_psd(spec.mag.square(), spec.fmask, static, net)
    if name == "spp weighted":
        return spp_weighted(spec.mag.square(), spec.fmask, static)
    if name == "spp tracking":
        return spp_noise_track(spec.mag.square(), static)
    if name == "oracle static":
        return n_power.mean(-1, keepdim=True)
    return (2.0 if name == "oracle tracking x2" else 1.0) * smoothed_power(n_power)


def _row_mean(spec) -> torch.Tensor:
    power = spec.mag.square()
    fm = spec.fmask.to(power.dtype)
    return (power * fm).sum((-2, -1), keepdim=True) / (spec.count * power.shape[-2])


def spp_weighted(power: torch.Tensor, fmask: torch.Tensor, static: torch.Tensor,
                 iterations: int = 2, xi_h1_db: float = 15.0) -> torch.Tensor:
    """Two-pass static noise PSD (B, F, 1): the mean of |X|^2 over the valid frames weighted by
    the speech-absence probability 1 - p of each (bin, frame) under the current estimate,
    p = 1 / (1 + (1 + xi) exp(-gamma xi / (1 + xi))) (Gerkmann & Hendriks 2012 eq. 8, fixed
    a-priori SNR xi = 15 dB, P(H1) = 1/2), gamma = |X|^2 / lambda; ``iterations`` passes from
    the quantile estimate."""
    xi = 10.0 ** (xi_h1_db / 10.0)
    fm = fmask.to(power.dtype)
    lam = static
    for _ in range(iterations):
        gamma = power / lam.clamp_min(1e-30)
        p = torch.sigmoid(gamma * xi / (1.0 + xi) - math.log1p(xi))  # eq. 8 as a logistic
        w = (1.0 - p) * fm
        lam = torch.where(w.sum(-1, keepdim=True) > 1e-3,
                          (w * power).sum(-1, keepdim=True) / w.sum(-1, keepdim=True).clamp_min(
                              1e-3), lam)
    return lam


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clean-dir", required=True)
    p.add_argument("--noise-dir", required=True)
    p.add_argument("--speakers", default="", help="comma-separated file-name prefixes to keep "
                   "(default: all)")
    p.add_argument("--noises", default="", help="comma-separated noise file stems to keep")
    p.add_argument("--smoothing", type=float, default=SMOOTHING,
                   help="decision-directed a of the LSA recursion (0.98 textbook; hear_vec's "
                   "knob m gives a = 0.9 + 0.09 m)")
    p.add_argument("--exclude-speakers", default="", help="comma-separated file-name prefixes")
    p.add_argument("--exclude-noises", default="", help="comma-separated noise file stems")
    p.add_argument("--snrs", type=float, nargs="+", default=[-5.0, 0.0, 5.0, 10.0, 15.0])
    p.add_argument("--max-seconds", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--estimators", nargs="+", choices=ESTIMATORS,
                   default=[e for e in ESTIMATORS if e != "learned"])
    p.add_argument("--over-grid", type=float, nargs="*", default=None, metavar="SLOPE,PIVOT",
                   help="also rows 'over SLOPE PIVOT' for slopes x pivots given as SLOPES... "
                   "then PIVOTS... split in half, e.g. 0.1 0.2 0.3 5 10 15 (3 x 3)")
    p.add_argument("--noise-net", default=None,
                   help="weights of the 'learned' estimator (benchmarks/train_noise_net.py)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    drop_spk = tuple(s for s in args.exclude_speakers.split(",") if s)
    drop_noise = {s for s in args.exclude_noises.split(",") if s}
    keep_spk = tuple(s for s in args.speakers.split(",") if s)
    keep_noise = {s for s in args.noises.split(",") if s}
    speech = [Path(args.clean_dir) / f for f in list_audio_files(args.clean_dir)
              if not (drop_spk and f.stem.startswith(drop_spk))
              and (not keep_spk or f.stem.startswith(keep_spk))]
    noises = [Path(args.noise_dir) / f for f in list_audio_files(args.noise_dir)
              if f.stem not in drop_noise and (not keep_noise or f.stem in keep_noise)]
    rng = np.random.default_rng(args.seed)
    limit = int(args.max_seconds * 16000)
    estimators = tuple(args.estimators)
    if args.over_grid:
        half = len(args.over_grid) // 2
        estimators += tuple(f"over {a:g} {b:g}" for a in args.over_grid[:half]
                            for b in args.over_grid[half:])
    if ("learned" in estimators) != (args.noise_net is not None):
        p.error("the 'learned' estimator and --noise-net go together")
    net = load_noise_net(args.noise_net) if args.noise_net else None
    rows: list[dict] = []
    start = time.perf_counter()
    with torch.inference_mode():
        clean_audio = {f: read_mono(f, 16000)[:limit] for f in speech}
        noise_audio = {f: read_mono(f, 16000) for f in noises}
        for u, c in clean_audio.items():
            for z, nz in noise_audio.items():
                for snr in args.snrs:
                    off = int(rng.integers(0, max(1, len(nz) - len(c))))
                    seg = np.resize(nz[off:], len(c)).astype(np.float32)
                    clean = torch.from_numpy(c)[None]
                    noisy = mix_at_snr(clean, torch.from_numpy(seg)[None],
                                       torch.tensor([snr]), torch.tensor([len(c)]))
                    noise = noisy - clean
                    spec = analyze(noisy, None, need_sorted=True)
                    n_spec = dsp.stft(noise)
                    n_power = n_spec.real.square() + n_spec.imag.square()
                    static = quantile_noise(spec)
                    base = float(si_sdr(noisy, clean))
                    row = {"utterance": u.stem, "noise": z.stem, "snr_db": snr}
                    for name in estimators:
                        noise_psd = noise_estimate(name, spec, static, n_power, net)
                        gain = lsa_with_noise(spec, noise_psd, args.smoothing)
                        y = synthesize(noisy, spec, gain, None)
                        row[name] = float(si_sdr(y, clean)) - base
                    rows.append(row)
    seconds = time.perf_counter() - start
    table = []
    for name in estimators:
        gains = np.array([r[name] for r in rows])
        entry = {"noise PSD": name, "mean SI-SDR gain (dB)": round(float(gains.mean()), 2)}
        for snr in args.snrs:
            sel = np.array([r["snr_db"] == snr for r in rows])
            entry[f"{snr:+g} dB"] = round(float(gains[sel].mean()), 2)
        table.append(entry)
    text = markdown_table(table, list(table[0]))
    print(f"{len(rows)} clips ({len(speech)} utterances x {len(noises)} noises x "
          f"{len(args.snrs)} SNRs), {seconds:.0f} s")
    print(text)
    info = machine_info(torch.device("cpu"))
    info.update(clips=len(rows), utterances=[f.stem for f in speech],
                noises=[f.stem for f in noises], snrs=args.snrs, seconds=seconds,
                command="python benchmarks/noise_psd_ceiling.py " + " ".join(
                    argv if argv is not None else sys.argv[1:]))
    write_results(args.json, {"info": info, "table": text, "rows": table, "clips": rows})
    if args.json:
        Path(args.json).with_suffix(".md").write_text(f"`{info['command']}`\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
