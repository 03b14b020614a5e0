"""Reduce* operators and the global pools (src/ops/reduce.c).

Max/Min inputs are continuous random values (no ties); L1 inputs avoid 0; LogSum and L2 inputs
keep the reduced quantity away from 0. The large cases take the chunked path (few outputs, long
reductions)."""
import numpy as np

from ._common import away_from, rng, single_op


def _axes(v):
    return np.asarray(v, np.int64)


def cases():
    r = rng(7)
    out = []

    def x(shape):
        return r.standard_normal(shape)

    # ReduceSum: axes as an input since opset 13
    out += [
        single_op("grad_reduce_sum_axes_keep", "ReduceSum", [("x", x((2, 3, 4, 5)))],
                  consts={"axes": _axes([1, 3])}),
        single_op("grad_reduce_sum_axes_nokeep", "ReduceSum", [("x", x((2, 3, 4, 5)))],
                  consts={"axes": _axes([-1, 0])}, attrs={"keepdims": 0}),
        single_op("grad_reduce_sum_all", "ReduceSum", [("x", x((3, 4, 5)))],
                  attrs={"keepdims": 0}),
        single_op("grad_reduce_sum_noop", "ReduceSum", [("x", x((3, 4)))],
                  attrs={"noop_with_empty_axes": 1}),
        single_op("grad_reduce_sum_inner", "ReduceSum", [("x", x((4, 6, 7)))],
                  consts={"axes": _axes([2])}),
        single_op("grad_reduce_sum_big", "ReduceSum", [("x", x((3, 70000)))],
                  consts={"axes": _axes([1])}, attrs={"keepdims": 0}),
    ]
    # ReduceMean: attribute axes up to opset 17, input since 18
    out += [
        single_op("grad_reduce_mean_axes", "ReduceMean", [("x", x((2, 3, 4, 5)))],
                  attrs={"axes": [2, 3]}),
        single_op("grad_reduce_mean_middle_nokeep", "ReduceMean", [("x", x((2, 3, 4, 5)))],
                  attrs={"axes": [1, 2], "keepdims": 0}),
        single_op("grad_reduce_mean_all", "ReduceMean", [("x", x((3, 5)))]),
        single_op("grad_reduce_mean_opset18", "ReduceMean", [("x", x((2, 3, 4)))],
                  consts={"axes": _axes([0, 2])}, opset=18),
        single_op("grad_reduce_mean_big", "ReduceMean", [("x", x((2, 40000, 2)))],
                  attrs={"axes": [1]}),
    ]
    # ReduceMax / ReduceMin
    for op in ("Max", "Min"):
        lo = op.lower()
        out += [
            single_op(f"grad_reduce_{lo}_axis1", f"Reduce{op}", [("x", x((2, 5, 3)))],
                      attrs={"axes": [1]}),
            single_op(f"grad_reduce_{lo}_two_axes_nokeep", f"Reduce{op}",
                      [("x", x((3, 4, 2, 5)))], attrs={"axes": [0, -1], "keepdims": 0}),
            single_op(f"grad_reduce_{lo}_all", f"Reduce{op}", [("x", x((4, 6)))]),
            single_op(f"grad_reduce_{lo}_big", f"Reduce{op}", [("x", x((70000, 2)))],
                      attrs={"axes": [0], "keepdims": 0}),
        ]
    # the optional reductions
    pos = lambda s: r.uniform(0.5, 2.0, s)  # noqa: E731
    near1 = lambda s: r.uniform(0.995, 1.005, s)  # noqa: E731
    x_zero = near1((3, 4))
    x_zero[1, 2] = 0.0  # a single zero: the only element of its set with a gradient
    x_zeros = near1((3, 4))
    x_zeros[2, 0] = x_zeros[2, 3] = 0.0  # two zeros: no gradient in that set
    out += [
        single_op("grad_reduce_prod_axis", "ReduceProd", [("x", pos((2, 3, 4)))],
                  attrs={"axes": [1]}),
        single_op("grad_reduce_prod_neg", "ReduceProd", [("x", x((3, 4)))],
                  attrs={"axes": [1], "keepdims": 0}),
        single_op("grad_reduce_prod_zero", "ReduceProd", [("x", x_zero)], attrs={"axes": [1]}),
        single_op("grad_reduce_prod_two_zeros", "ReduceProd", [("x", x_zeros)],
                  attrs={"axes": [1]}),
        single_op("grad_reduce_prod_big", "ReduceProd", [("x", near1((1, 70000)))],
                  attrs={"axes": [1]}),
        single_op("grad_reduce_l1", "ReduceL1", [("x", away_from(x((2, 3, 4)), [0.0]))],
                  attrs={"axes": [0, 2]}),
        single_op("grad_reduce_l1_all", "ReduceL1", [("x", away_from(x((3, 4)), [0.0]))],
                  attrs={"keepdims": 0}),
        single_op("grad_reduce_l2", "ReduceL2", [("x", x((2, 3, 4)))], attrs={"axes": [2]}),
        single_op("grad_reduce_l2_nokeep", "ReduceL2", [("x", x((2, 3, 4)))],
                  attrs={"axes": [0, 1], "keepdims": 0}),
        single_op("grad_reduce_sumsquare", "ReduceSumSquare", [("x", x((2, 3, 4)))],
                  attrs={"axes": [1]}),
        single_op("grad_reduce_logsum", "ReduceLogSum", [("x", pos((2, 3, 4)))],
                  attrs={"axes": [1, 2]}),
        single_op("grad_reduce_logsum_all", "ReduceLogSum", [("x", pos((3, 4)))],
                  attrs={"keepdims": 0}),
        single_op("grad_reduce_logsumexp", "ReduceLogSumExp", [("x", 3 * x((2, 3, 4)))],
                  attrs={"axes": [1]}),
        single_op("grad_reduce_logsumexp_big", "ReduceLogSumExp", [("x", 3 * x((2, 70000)))],
                  attrs={"axes": [1], "keepdims": 0}),
    ]
    # global pools
    out += [
        single_op("grad_reduce_gap_2d", "GlobalAveragePool", [("x", x((2, 3, 4, 5)))]),
        single_op("grad_reduce_gap_1d", "GlobalAveragePool", [("x", x((2, 3, 7)))]),
        single_op("grad_reduce_gap_3d", "GlobalAveragePool", [("x", x((1, 2, 3, 4, 5)))]),
        single_op("grad_reduce_gap_big", "GlobalAveragePool", [("x", x((1, 2, 300, 300)))]),
        single_op("grad_reduce_gmp_2d", "GlobalMaxPool", [("x", x((2, 3, 4, 5)))]),
        single_op("grad_reduce_gmp_3d", "GlobalMaxPool", [("x", x((1, 2, 3, 4, 5)))]),
        single_op("grad_reduce_gmp_big", "GlobalMaxPool", [("x", x((1, 2, 300, 300)))]),
    ]
    return out
