"""Folder denoising throughput (audio-seconds per second): infer.py's batched path against the
seed's one-file-at-a-time loop, measured in the same run on the same folder and agent.

    python benchmarks/folder_throughput.py --files 64 --device cpu \\
        --json benchmarks/out/folder_throughput.json

The folder: ``--files`` mono 16 kHz 16-bit wav files of 1–6 s (uniform), noisy mixtures of
dev-audio speech and noise at 0–10 dB when ../shared/dev_audio exists (utterances concatenated
and cropped to each length), otherwise of the built-in synthetic corpus. The agent: a
``--checkpoint`` or, without one, a freshly initialised PPO agent (256x256, not trained:
throughput does not depend on the weights, only on the methods it picks, and both paths use
the same agent).

* batched: ``hear_vec.cli.infer.main`` (files sorted by length, packed into device batches with
  ``lengths``, reading and writing in background threads), end to end;
* loop (the seed's style): for each file, read it, run the agent on a batch of one, write it.

Both include reading and writing. Each path runs once untimed on a few files (warm-up: caches,
allocator) and then ``--repeats`` times over the whole folder; the best time is reported.
Numbers are written, never asserted.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, markdown_table, sync, write_results  # noqa: E402
from hear_vec.audio_io import list_audio_files, read_audio, write_audio_atomic  # noqa: E402
from hear_vec.cli.common import resolve_device  # noqa: E402
from hear_vec.inference import DenoisingAgent  # noqa: E402

DEV_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "dev_audio"


def make_folder(root: Path, files: int, lo: float, hi: float, seed: int) -> tuple[str, float]:
    """Write the benchmark folder; returns (source description, total audio seconds)."""
    import soundfile as sf

    from hear_vec.data import SyntheticCorpus, load_corpus

    rate = 16000
    gen = np.random.default_rng(seed)
    targets = [int(rate * gen.uniform(lo, hi)) for _ in range(files)]
    if (DEV_AUDIO / "speech").is_dir():
        corpus = load_corpus(None, clean_dir=DEV_AUDIO / "speech", noise_dir=DEV_AUDIO / "noise",
                             snr_range=(0.0, 10.0), seed=seed)
        source = "dev_audio speech + noise mixtures, 0-10 dB"
    else:
        corpus = SyntheticCorpus(num_utterances=max(files, 8), utterance_seconds=(lo, hi),
                                 seed=seed)
        source = "synthetic corpus"
    utts = len(corpus)
    k = 0
    total = 0
    for i, n in enumerate(targets):
        pieces, have = [], 0
        while have < n:
            _, noisy = corpus.utterance_audio(k % utts)
            k += 1
            pieces.append(noisy.numpy())
            have += pieces[-1].shape[-1]
        audio = np.concatenate(pieces)[:n]
        audio = audio / max(1.0, float(np.abs(audio).max()) / 0.99)
        sf.write(str(root / f"file_{i:03d}.wav"), audio.astype(np.float32), rate,
                 subtype="PCM_16")
        total += n
    return source, total / rate


def make_agent_file(path: Path) -> Path:
    """An untrained 256x256 PPO agent saved in train.py's model.pt format."""
    from hear_vec.agents.ppo import PPO, PPOConfig
    from hear_vec.checkpoint import model_payload, save_atomic
    from hear_vec.data import SyntheticCorpus
    from hear_vec.env import DenoiseEnv
    from hear_vec.features import NUM_FEATURES
    from hear_vec.ops import METHODS

    torch.manual_seed(0)
    env = DenoiseEnv(SyntheticCorpus(num_utterances=8, noise_clips_per_family=1,
                                     noise_seconds=2.0), num_envs=4, segment_seconds=1.0)
    learner = PPO(env, PPOConfig(hidden_dims=(256, 256)))
    env.reset()  # the normalizer sees one batch of observations
    payload = model_payload(algo="ppo", policy=learner.inference_state(),
                            normalizer=env.normalizer.export(), methods=METHODS,
                            num_features=NUM_FEATURES, max_steps=3, sample_rate=16000,
                            args={"note": "untrained benchmark agent"})
    return save_atomic(payload, path)


def seed_style_loop(agent: DenoisingAgent, src: Path, dst: Path, files: list) -> None:
    """The seed's way: one file at a time, read -> agent on a batch of one -> write."""
    for rel in files:
        audio, rate = read_audio(src / rel)
        mono = torch.from_numpy(audio.mean(0))
        out = agent.run(mono[None].to(agent.device)).audio[0]
        write_audio_atomic(dst / rel, out.cpu().numpy(), rate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--max-seconds", type=float, default=6.0)
    parser.add_argument("--checkpoint", default=None, help="model.pt (default: untrained)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from hear_vec.cli.infer import main as infer_main

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="hear_vec_bench_") as tmp:
        root = Path(tmp)
        src = root / "in"
        src.mkdir()
        source, total_seconds = make_folder(src, args.files, args.min_seconds,
                                            args.max_seconds, args.seed)
        ckpt = Path(args.checkpoint) if args.checkpoint else make_agent_file(root / "model.pt")
        agent = DenoisingAgent.from_file(ckpt, device)
        files = list_audio_files(src)

        def batched(out: Path, inp: Path = src) -> None:
            rc = infer_main(["--checkpoint", str(ckpt), "--input", str(inp), "--output",
                             str(out), "--device", str(device), "--batch-size",
                             str(args.batch_size), "--overwrite", "--no-progress"])
            if rc != 0:
                raise RuntimeError(f"infer.py exited with {rc}")

        # warm-up on a few files (both paths)
        warm = root / "warm"
        warm.mkdir()
        for rel in files[:4]:
            (warm / rel).write_bytes((src / rel).read_bytes())
        batched(root / "warm_out", warm)
        seed_style_loop(agent, src, root / "warm_loop", files[:4])

        times = {"batched": [], "loop": []}
        for _ in range(args.repeats):
            sync(device)
            t0 = time.perf_counter()
            batched(root / "out_batched")
            sync(device)
            times["batched"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            seed_style_loop(agent, src, root / "out_loop", files)
            sync(device)
            times["loop"].append(time.perf_counter() - t0)

    info = machine_info(device)
    rows = []
    for name, label in (("loop", "one file at a time (seed style)"),
                        ("batched", "infer.py batched")):
        best = min(times[name])
        rows.append({"path": label, "seconds": best,
                     "audio_s_per_s": total_seconds / best,
                     "files_per_s": args.files / best})
    speedup = rows[0]["seconds"] / rows[1]["seconds"]
    rows[1]["speedup"] = speedup
    rows[0]["speedup"] = 1.0
    payload = {"machine": info, "source": source, "files": args.files,
               "total_audio_seconds": total_seconds, "batch_size": args.batch_size,
               "repeats": args.repeats, "times": times, "results": rows,
               "speedup_batched_over_loop": speedup,
               "checkpoint": args.checkpoint or "untrained 256x256 PPO"}
    write_results(args.json, payload)
    print(f"device: {info['device']} ({info['device_name']}, {info['cpu_threads']} threads); "
          f"{args.files} files, {total_seconds:.1f} s of audio ({source})")
    print(markdown_table(rows, ["path", "seconds", "audio_s_per_s", "files_per_s",
                                "speedup"]))
    return 0 if math.isfinite(speedup) else 1


if __name__ == "__main__":
    raise SystemExit(main())
