"""``python -m hear_vec.data.demo``: the command line of
:func:`hear_vec.data.demo.write_demo_corpus` (a small corpus in the seed's layout; see
:mod:`hear_vec.data.demo` for what it writes)."""

from __future__ import annotations

import argparse
import sys
import time

from hear_vec.data.bank import CorpusError
from hear_vec.data.demo import write_demo_corpus

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hear_vec.data.demo",
                                     description="Write a demo corpus in the seed's layout "
                                                 "(clean/, noisy/, meta.csv).")
    parser.add_argument("--out", required=True, help="destination folder")
    parser.add_argument("--n", type=int, default=200, help="number of utterances (200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--snr-range", type=float, nargs=2, default=(-5.0, 15.0),
                        metavar=("LO", "HI"), help="SNR range in dB (-5 15)")
    parser.add_argument("--source", choices=("auto", "synthetic", "espeak"), default="auto",
                        help="clean speech: espeak-ng if installed (auto), or the generator")
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a non-empty destination")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        write_demo_corpus(args.out, args.n, args.seed, tuple(args.snr_range), args.source,
                          args.sample_rate, args.overwrite)
    except CorpusError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
