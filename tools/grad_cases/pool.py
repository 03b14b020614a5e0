"""MaxPool and AveragePool, 1-D to 3-D: strides, pads, dilations, ceil_mode, auto_pad,
count_include_pad, storage_order and the Indices output."""
import numpy as np

from ._common import rng, single_op


def _distinct(shape, seed):
    """Values with every pair at least 0.01 apart: no ties in any max window."""
    r = rng(seed)
    n = int(np.prod(shape))
    v = (r.permutation(n) - n / 2) * 0.01 + r.uniform(0, 0.002, n)
    return v.reshape(shape)


def _max(name, shape, attrs, seed, n_outputs=1):
    return single_op(name, "MaxPool", [("x", _distinct(shape, seed))], n_outputs=n_outputs,
                     attrs=attrs)


def _max_with_indices(name, shape, attrs, seed):
    """MaxPool with its Indices output computed by the node but not a graph output (an integer
    graph output cannot be seeded): the backward must ignore the unused second output."""
    case = _max(name, shape, attrs, seed, n_outputs=2)
    g = case.model.graph
    kept = [o for o in g.output if o.name == "y0"]
    del g.output[:]
    g.output.extend(kept)
    return case


def _avg(name, shape, attrs, seed):
    return single_op(name, "AveragePool", [("x", rng(seed).standard_normal(shape))],
                     attrs=attrs)


def cases():
    c = []
    # ---- MaxPool -------------------------------------------------------------------------------
    c.append(_max("grad_pool_max_1d", (2, 3, 10), {"kernel_shape": [3], "strides": [2]}, 1))
    c.append(_max("grad_pool_max_1d_pads_dil_ceil", (1, 2, 11),
                  {"kernel_shape": [3], "strides": [2], "pads": [1, 1], "dilations": [2],
                   "ceil_mode": 1}, 2))
    c.append(_max("grad_pool_max_2d", (2, 2, 6, 6), {"kernel_shape": [2, 2], "strides": [2, 2]},
                  3))
    c.append(_max("grad_pool_max_2d_overlap_pads", (1, 3, 7, 8),
                  {"kernel_shape": [3, 3], "strides": [1, 2], "pads": [1, 1, 1, 0]}, 4))
    c.append(_max("grad_pool_max_2d_ceil", (1, 2, 7, 6),
                  {"kernel_shape": [3, 2], "strides": [2, 2], "ceil_mode": 1}, 5))
    c.append(_max("grad_pool_max_2d_dilation", (1, 2, 9, 9),
                  {"kernel_shape": [2, 3], "dilations": [3, 2], "strides": [1, 2],
                   "pads": [1, 1, 0, 2]}, 6))
    c.append(_max("grad_pool_max_2d_same_upper", (1, 2, 7, 5),
                  {"kernel_shape": [3, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"}, 7))
    c.append(_max("grad_pool_max_2d_same_lower", (1, 2, 7, 5),
                  {"kernel_shape": [3, 4], "strides": [2, 1], "auto_pad": "SAME_LOWER"}, 8))
    c.append(_max("grad_pool_max_2d_valid", (1, 2, 7, 6),
                  {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID"}, 9))
    c.append(_max_with_indices("grad_pool_max_2d_indices", (2, 2, 5, 6),
                               {"kernel_shape": [3, 3], "strides": [2, 1], "pads": [1, 1, 1, 1],
                                "storage_order": 1}, 10))
    c.append(_max("grad_pool_max_3d", (1, 2, 4, 6, 6),
                  {"kernel_shape": [2, 3, 3], "strides": [1, 2, 2], "pads": [0, 1, 1, 1, 1, 1]},
                  11))
    c.append(_max("grad_pool_max_3d_ceil_dil", (1, 2, 5, 7, 6),
                  {"kernel_shape": [2, 2, 2], "strides": [2, 2, 2], "dilations": [2, 1, 2],
                   "ceil_mode": 1}, 12))
    # ---- AveragePool ---------------------------------------------------------------------------
    c.append(_avg("grad_pool_avg_1d", (2, 3, 10), {"kernel_shape": [3], "strides": [2]}, 21))
    c.append(_avg("grad_pool_avg_1d_pads_include", (1, 2, 9),
                  {"kernel_shape": [4], "strides": [2], "pads": [2, 1],
                   "count_include_pad": 1}, 22))
    c.append(_avg("grad_pool_avg_2d", (2, 2, 6, 6), {"kernel_shape": [2, 2], "strides": [2, 2]},
                  23))
    c.append(_avg("grad_pool_avg_2d_pads_exclude", (1, 3, 7, 8),
                  {"kernel_shape": [3, 3], "strides": [1, 2], "pads": [1, 1, 1, 0]}, 24))
    c.append(_avg("grad_pool_avg_2d_pads_include", (1, 3, 7, 8),
                  {"kernel_shape": [3, 3], "strides": [1, 2], "pads": [1, 1, 1, 0],
                   "count_include_pad": 1}, 25))
    c.append(_avg("grad_pool_avg_2d_ceil_exclude", (1, 2, 7, 6),
                  {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 0, 1],
                   "ceil_mode": 1}, 26))
    c.append(_avg("grad_pool_avg_2d_ceil_include", (1, 2, 7, 6),
                  {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 0, 1],
                   "ceil_mode": 1, "count_include_pad": 1}, 27))
    c.append(_avg("grad_pool_avg_2d_same_upper", (1, 2, 7, 5),
                  {"kernel_shape": [3, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"}, 28))
    c.append(_avg("grad_pool_avg_2d_same_lower_include", (1, 2, 7, 5),
                  {"kernel_shape": [3, 4], "strides": [2, 1], "auto_pad": "SAME_LOWER",
                   "count_include_pad": 1}, 29))
    c.append(_avg("grad_pool_avg_2d_valid", (1, 2, 7, 6),
                  {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID"}, 30))
    c.append(_avg("grad_pool_avg_3d", (1, 2, 4, 6, 6),
                  {"kernel_shape": [2, 3, 3], "strides": [1, 2, 2], "pads": [0, 1, 1, 1, 1, 1]},
                  31))
    c.append(_avg("grad_pool_avg_3d_ceil_include", (1, 2, 5, 7, 6),
                  {"kernel_shape": [2, 3, 2], "strides": [2, 2, 2], "pads": [1, 1, 0, 0, 0, 1],
                   "ceil_mode": 1, "count_include_pad": 1}, 32))
    return c
