"""Train the learned noise-PSD estimator (hear_vec.ops.noise_net) on a run's training split.

    OMP_NUM_THREADS=2 python benchmarks/train_noise_net.py --steps 2500 \\
        --out runs/noise_net/noise_net.pt -- \\
        --data synthetic ../shared/dev_audio/speech \\
        --noise-dir synthetic ../shared/dev_audio/noise \\
        --speaker-pattern '^([^_]+_[^_]+)' --holdout-speakers sbasr_spk1 \\
        --holdout-noises kitchen_dishes_speechcommands sb_noise5_babble_like \\
        --exclude-speakers arctic_axb sbasr_spk2 \\
        --exclude-noises cafe_noisereduce sb_noise4_machine --augment domain

Everything after ``--`` is train.py's data flags: the corpus, its split and its randomization
are exactly what ``train.py`` with those flags trains on
(:func:`benchmarks.common.load_data_split`), so the estimator never sees the validation part
nor the excluded (test) audio. Each step draws
``--batch`` fresh randomized segments of ``--segment-seconds`` from the training part with a
counter-based key, takes the shared STFT of the noisy mixture and of its noise
(noisy - target), and regresses log of the noise power smoothed over frames
(lambda_n = 0.9 lambda_{n-1} + 0.1 |N_n|^2, started at the row mean) with a mean squared
error over valid frames and bins. The validation part's loss on fixed segments is logged
(never used to pick a step: the last weights are saved). Writes the weights, the config and
the log (JSON next to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import load_data_split, split_data_flags  # noqa: E402
from hear_vec import dsp, rng  # noqa: E402
from hear_vec.atomic import atomic_write  # noqa: E402
from hear_vec.ops._common import analyze  # noqa: E402
from hear_vec.ops.mmse_lsa import quantile_noise  # noqa: E402
from hear_vec.ops.noise_net import NoiseNet, log_floor, smoothed_power  # noqa: E402


def batch_tensors(corpus, key: torch.Tensor, batch: int, samples: int):
    """(power, fmask, static, log target) of one drawn batch."""
    seg = corpus.draw(key, batch, samples, samples // 2)
    noisy = seg.noisy
    spec = analyze(noisy, seg.lengths, need_sorted=True)
    power = spec.mag.square()
    static = quantile_noise(spec)
    n_spec = dsp.stft(dsp.zero_beyond(noisy - seg.clean, seg.lengths))
    n_power = n_spec.real.square() + n_spec.imag.square()
    target = torch.log(smoothed_power(n_power, spec.fmask) + log_floor(power, spec.fmask))
    return power, spec.fmask, static, target


#: the loss compares log-PSDs clipped to [log P - 25 dB, log P + 10 dB]: outside it the LSA
#: gain hardly depends on lambda (a bin 25 dB above its noise passes, one 10 dB below is
#: floored), and unclipped, bins of near-silent noise (band-limited, gaps) dominate the error
CLIP_BELOW, CLIP_ABOVE = 25 * math.log(10) / 10, 10 * math.log(10) / 10


def masked_mse(pred: torch.Tensor, target: torch.Tensor, fmask: torch.Tensor,
               power: torch.Tensor) -> torch.Tensor:
    """Mean over valid frames and bins of (clip(pred) - clip(target))^2 (log domain)."""
    log_p = torch.log(power + 1e-30)
    lo, hi = log_p - CLIP_BELOW, log_p + CLIP_ABOVE
    err = torch.minimum(torch.maximum(pred, lo), hi) - torch.minimum(torch.maximum(target, lo), hi)
    fm = fmask.to(pred.dtype)
    return (err.square() * fm).sum() / (fm.sum() * pred.shape[-2]).clamp_min(1.0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own, data = split_data_flags(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--segment-seconds", type=float, default=2.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=96)
    p.add_argument("--dilations", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--bands", type=int, default=0, help="mel bands of the net (0: every bin)")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--out", required=True)
    args = p.parse_args(own)
    split = load_data_split(data)
    torch.manual_seed(args.seed)
    net = NoiseNet(hidden=args.hidden, dilations=tuple(args.dilations), bands=args.bands,
                   dropout=args.dropout)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    samples = int(args.segment_seconds * 16000)
    key = rng.make_key(args.seed)
    with torch.no_grad():
        valid = batch_tensors(split.valid, rng.fold_in(rng.make_key(args.seed + 1), 0), 64,
                              samples)
        valid_base = float(masked_mse(torch.log(valid[2] + 1e-30).expand_as(valid[3]),
                                      valid[3], valid[1], valid[0]))
    log: list[dict] = []
    start = time.perf_counter()
    running = 0.0
    for step in range(1, args.steps + 1):
        with torch.no_grad():
            power, fmask, static, target = batch_tensors(split.train, rng.fold_in(key, step),
                                                         args.batch, samples)
        loss = masked_mse(net.log_psd(power, fmask, static), target, fmask, power)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        running += float(loss.detach())  # off the hot path: a CPU training script
        if step % args.log_every == 0 or step == args.steps:
            net.eval()
            with torch.no_grad():
                v = float(masked_mse(net.log_psd(valid[0], valid[1], valid[2]), valid[3],
                                     valid[1], valid[0]))
            entry = {"step": step, "train_mse": running / args.log_every, "valid_mse": v,
                     "valid_mse_quantile": valid_base,
                     "seconds": time.perf_counter() - start}
            running = 0.0
            net.train()
            log.append(entry)
            print(json.dumps(entry), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as f:
        torch.save({"config": net.config(), "state_dict": net.state_dict()}, f)
    out.with_suffix(".json").write_text(json.dumps(
        {"command": "python benchmarks/train_noise_net.py " + " ".join(argv),
         "train_speakers": split.train_speakers, "train_noises": split.train_noises,
         "valid_speakers": split.valid_speakers, "valid_noises": split.valid_noises,
         "params": sum(t.numel() for t in net.parameters()), "log": log}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
