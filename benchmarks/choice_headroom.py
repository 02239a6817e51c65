"""How much can choosing the denoiser per clip gain on held-out audio, and does a learner that
sees the exact gain of every choice on its training clips find it? A full-information probe.

    OMP_NUM_THREADS=2 python benchmarks/choice_headroom.py \\
        --json benchmarks/results/choice_headroom.json -- \\
        --data synthetic ../shared/dev_audio/speech \\
        --noise-dir synthetic ../shared/dev_audio/noise \\
        --speaker-pattern '^([^_]+_[^_]+)' --holdout-speakers sbasr_spk1 \\
        --holdout-noises kitchen_dishes_speechcommands sb_noise5_babble_like \\
        --exclude-speakers arctic_axb sbasr_spk2 \\
        --exclude-noises cafe_noisereduce sb_noise4_machine --augment domain

Everything after ``--`` is train.py's data flags (:func:`benchmarks.common.load_data_split`): the
same training and validation parts train.py uses; the excluded (test) audio is never loaded.
Clips: ``--train-batches`` / ``--valid-batches`` batches of ``--batch`` segments drawn from each
part with a counter-based key (the domain randomization applies), 1 to ``--segment-seconds``
seconds long. For every clip the probe applies EVERY single-step choice of a grid (5 methods ×
strength {0.5, 1} × smoothing {0, 0.5, 1} × band_mix {0, 0.5, 1} = 90, plus "leave it alone")
and records its SI-SDR gain, and the features the agent observes at its first step
(``noisy_features`` of the env, with the noise-floor features).

Choosers, all scored on the validation clips:

- fixed: the single choice with the best mean gain on the training clips (what an agent that
  ignores its observation can reach in one step);
- oracle: the best choice per validation clip (sees the clean speech): the headroom;
- ridge / MLP: regress all 91 gains from the standardized features on the training clips
  (ridge: closed form, lambda in {1, 10, 100}; MLP: 2 x 128 ReLU, Huber loss, AdamW wd 0.01,
  300 epochs) and take the argmax -- a contextual bandit with full information, i.e. an upper
  bound on what an RL agent could learn from the same clips with these features in one step;
- gated ridge: ridge's choice only where it predicts more than ``margin`` dB over the fixed
  choice, else the fixed choice.

Intervals: 95 % percentile bootstrap over validation utterances (all clips of an utterance
together), 10 000 replicates. Numbers are written (JSON + a markdown table), not asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    load_data_split,
    machine_info,
    markdown_table,
    split_data_flags,
    write_results,
)
from hear_vec import rng  # noqa: E402
from hear_vec.env import DenoiseEnv  # noqa: E402
from hear_vec.evaluation.stats import fraction_below, mean_interval, paired_difference  # noqa: E402
from hear_vec.metrics import si_sdr  # noqa: E402
from hear_vec.ops import METHODS, denoise  # noqa: E402

GRID = [(m, (s, sm, b)) for m in range(len(METHODS)) for s in (0.5, 1.0)
        for sm in (0.0, 0.5, 1.0) for b in (0.0, 0.5, 1.0)]
IDENTITY = len(GRID)  # the last column: leave the clip as it is (gain 0)


def label(choice: int) -> str:
    if choice == IDENTITY:
        return "leave alone"
    m, k = GRID[choice]
    return f"{METHODS[m]} {k}"


@torch.inference_mode()
def collect(corpus, batches: int, batch: int, seconds: float, seed: int
            ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(features [n, F], gains [n, len(GRID) + 1], utterance index [n]) of drawn clips."""
    samples = int(seconds * 16000)
    env = DenoiseEnv(corpus, num_envs=batch, seed=seed, max_steps=1, stop_action=True,
                     floor_features=True, segment_seconds=seconds,
                     min_segment_seconds=min(1.0, seconds))
    key = rng.make_key(seed)
    feats, gains, utts = [], [], []
    for i in range(batches):
        seg = corpus.draw(rng.fold_in(key, i), batch, samples, min(16000, samples))
        env.start_from(seg)
        st = env.state
        base = si_sdr(st.noisy, st.clean, st.lengths)
        g = torch.zeros(batch, len(GRID) + 1)
        for j, (m, k) in enumerate(GRID):
            y = denoise(st.noisy, torch.full((batch,), m), torch.tensor(k).expand(batch, 3),
                        st.lengths)
            g[:, j] = si_sdr(y, st.clean, st.lengths) - base
        feats.append(st.noisy_features.clone())
        gains.append(g)
        utts.append(seg.utterance.numpy().copy())
    return torch.cat(feats), torch.cat(gains), np.concatenate(utts)


def ridge(x: torch.Tensor, y: torch.Tensor, lam: float):
    a = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1).double()
    w = torch.linalg.solve(a.T @ a + lam * torch.eye(a.shape[1], dtype=a.dtype), a.T @ y.double())
    return lambda z: (torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], 1).double() @ w
                      ).float()


def mlp(x: torch.Tensor, y: torch.Tensor, seed: int, hidden: int = 128, epochs: int = 300):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(),
                              torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                              torch.nn.Linear(hidden, y.shape[1]))
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=0.01)
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            loss = torch.nn.functional.huber_loss(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()
    return lambda z: net(z).detach()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own, data = split_data_flags(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-batches", type=int, default=16)
    p.add_argument("--valid-batches", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--segment-seconds", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(own)
    split = load_data_split(data)
    start = time.perf_counter()
    x_tr, g_tr, _ = collect(split.train, args.train_batches, args.batch, args.segment_seconds,
                            args.seed)
    x_va, g_va, utt = collect(split.valid, args.valid_batches, args.batch,
                              args.segment_seconds, args.seed + 104_729)
    mu, sd = x_tr.mean(0), x_tr.std(0).clamp_min(1e-6)
    z_tr, z_va = (x_tr - mu) / sd, (x_va - mu) / sd
    fixed = int(g_tr.mean(0).argmax())
    n_va = len(g_va)
    choices: dict[str, torch.Tensor] = {
        f"fixed: {label(fixed)}": torch.full((n_va,), fixed),
        "oracle (sees the clean speech)": g_va.argmax(1)}
    for lam in (1.0, 10.0, 100.0):
        choices[f"ridge, lambda {lam:g}"] = ridge(z_tr, g_tr, lam)(z_va).argmax(1)
    choices["MLP 2 x 128"] = mlp(z_tr, g_tr, args.seed)(z_va).argmax(1)
    pred = ridge(z_tr, g_tr, 100.0)(z_va)
    best = pred.argmax(1)
    advantage = pred.gather(1, best[:, None])[:, 0] - pred[:, fixed]
    for margin in (0.5, 1.0):
        choices[f"gated ridge (lambda 100), margin {margin:g} dB"] = torch.where(
            advantage > margin, best, torch.full_like(best, fixed))
    seconds = time.perf_counter() - start
    fixed_gain = g_va[:, fixed].numpy()
    rows, per_clip = [], {}
    for name, choice in choices.items():
        gain = g_va.gather(1, choice[:, None])[:, 0].numpy()
        per_clip[name] = gain.tolist()
        ci = mean_interval(gain, utt)
        diff = paired_difference(gain, fixed_gain, utt)
        rows.append({"chooser": name,
                     "SI-SDR gain dB [95% CI]": f"{ci.mean:+.2f} [{ci.low:+.2f}, {ci.high:+.2f}]",
                     "minus fixed dB [95% CI]":
                         f"{diff.mean:+.2f} [{diff.low:+.2f}, {diff.high:+.2f}]",
                     "clips worse": f"{fraction_below(gain):.1%}",
                     "distinct choices": int(choice.unique().numel())})
    train_fixed = float(g_tr[:, fixed].mean())
    train_oracle = float(g_tr.max(1).values.mean())
    text = markdown_table(rows, list(rows[0]))
    head = (f"{len(g_tr)} training clips (fixed {train_fixed:+.2f} dB, oracle "
            f"{train_oracle:+.2f}), {n_va} validation clips of {len(np.unique(utt))} "
            f"utterances; {len(GRID) + 1} choices; {seconds:.0f} s")
    print(head)
    print(text)
    info = machine_info(torch.device("cpu"))
    info.update(seconds=seconds, train_speakers=split.train_speakers,
                train_noises=split.train_noises, valid_speakers=split.valid_speakers,
                valid_noises=split.valid_noises, train_clips=len(g_tr), valid_clips=n_va,
                train_fixed_gain=train_fixed, train_oracle_gain=train_oracle,
                command="python benchmarks/choice_headroom.py " + " ".join(argv))
    write_results(args.json, {"info": info, "table": text, "rows": rows,
                              "grid": [label(i) for i in range(len(GRID) + 1)],
                              "valid_clip_gains": per_clip})
    if args.json:
        Path(args.json).with_suffix(".md").write_text(
            f"`{info['command']}`\n\n{head}\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
