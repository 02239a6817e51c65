"""Command-line tools -- every ``main`` of hear_vec lives here: ``train.py``
(:mod:`hear_vec.cli.train`), ``infer.py`` (:mod:`hear_vec.cli.infer`),
``python -m hear_vec.evaluate`` (:mod:`hear_vec.cli.evaluate`), ``python -m hear_vec.sweep``
(:mod:`hear_vec.cli.sweep`), ``python -m hear_vec.features`` (:mod:`hear_vec.cli.features`),
``python -m hear_vec.demo`` (:mod:`hear_vec.cli.demo`), ``python -m hear_vec.data.demo``
(:mod:`hear_vec.cli.data_demo`) and the helpers they share (:mod:`hear_vec.cli.common`).

Layers point one way: this package imports the library, the library never imports this
package (``tests/test_layers.py``). The ``python -m`` names users type stay where they were, as
shims whose only code is an ``if __name__ == "__main__":`` call into this package."""
