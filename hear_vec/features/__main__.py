"""``python -m hear_vec.features``: the command line is :mod:`hear_vec.cli.features` (the
seed's feature CSV computed with the batched feature ops)."""

if __name__ == "__main__":
    from hear_vec.cli.features import main

    raise SystemExit(main())
