"""The polynomial toy problem of Section 5 (Figure 2), batched and exact.

Modules, top to bottom: ``data`` (problem generation, Legendre basis on [−δ, δ]),
``solvers`` (batched exact Newton and full-batch gradient descent), ``grid`` (the batched
grid over noise × scale × seed × α × learning rate), ``theory`` (the asymptotically optimal
α per noise family), ``analysis`` (optimal α with its spread, linear fits), ``plots``
(Figure 2) and ``run`` (``run_toy``, the library entry point of ``huberkl toy``).
"""

__all__ = ["run_toy"]


def __getattr__(name: str):
    """Import ``run_toy`` lazily, so ``huberkl.toy.data`` etc. import without matplotlib."""
    if name == "run_toy":
        from huberkl.toy.run import run_toy

        return run_toy
    raise AttributeError(name)
