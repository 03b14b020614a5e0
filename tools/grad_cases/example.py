"""Example family: kept small; each op family has its own module."""
from ._common import away_from, rng, single_op


def cases():
    r = rng(1)
    return [
        single_op("grad_example_relu", "Relu",
                  [("x", away_from(r.standard_normal((2, 3, 4)), [0.0]))]),
    ]
