#!/usr/bin/env python
"""Train a hear_vec denoising agent. See ``python train.py --help`` and the README."""

from hear_vec.cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())
