#!/usr/bin/env python
"""Denoise a file or a folder with trained hear_vec agents. See ``python infer.py --help``
and :mod:`hear_vec.cli.infer`."""

from hear_vec.cli.infer import main

if __name__ == "__main__":
    raise SystemExit(main())
