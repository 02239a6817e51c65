"""Command-line tools: ``train.py`` (:mod:`hear_vec.cli.train`), ``infer.py``
(:mod:`hear_vec.cli.infer`) and the helpers they share (:mod:`hear_vec.cli.common`).
``python -m hear_vec.evaluate`` and ``python -m hear_vec.features`` live beside the modules
they drive."""
