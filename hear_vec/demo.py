"""The main job on the built-in default (``make demo``): train a small PPO agent on the
synthetic corpus, then denoise a freshly generated noisy folder with it and print SI-SDR /
STOI / ESTOI before and after.

    python -m hear_vec.demo [--out demo_out] [--steps N] [--device auto]

Writes ``<out>/agent`` (train.py's log dir: model.pt, checkpoint.pt, metrics.json,
TensorBoard events), ``<out>/data`` (a generated corpus in the seed's layout: clean/, noisy/,
meta.csv — from a different random stream than the training corpus), ``<out>/denoised`` and
``<out>/metrics.csv``. A second run reuses the trained agent (``--retrain`` trains again).
"""

if __name__ == "__main__":  # the command line lives in hear_vec.cli.demo
    from hear_vec.cli.demo import main

    raise SystemExit(main())
