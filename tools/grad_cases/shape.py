"""Shape / data-movement family: Flatten, Reshape, Squeeze, Unsqueeze, Transpose, Concat, Split,
Slice, Gather, Pad, Expand, Tile.

Every op is linear in its float inputs (a 0/1 Jacobian), so no input value is special; the cases
vary the attributes and constant inputs that change which elements move where, and include a few
tensors big enough (> 256 KiB) to take the multi-threaded paths of the backward kernels."""
import numpy as np

from ._common import rng, single_op


def i64(v):
    return np.array(v, np.int64)


def _views(r):
    x = r.standard_normal((2, 3, 4))
    c = []
    for axis in (0, 1, 2, -1):
        c.append(single_op(f"grad_shape_flatten_axis{axis if axis >= 0 else 'm1'}", "Flatten",
                           [("x", x)], attrs={"axis": axis}))
    c.append(single_op("grad_shape_reshape_neg1_zero", "Reshape", [("x", x)],
                       consts={"shape": i64([0, -1, 2])}))
    c.append(single_op("grad_shape_reshape_flat", "Reshape", [("x", r.standard_normal((3, 5)))],
                       consts={"shape": i64([15])}))
    c.append(single_op("grad_shape_reshape_allowzero", "Reshape", [("x", x)],
                       consts={"shape": i64([4, 6])}, attrs={"allowzero": 1}))
    x1 = r.standard_normal((2, 1, 3, 1))
    c.append(single_op("grad_shape_squeeze_axes", "Squeeze", [("x", x1)],
                       consts={"axes": i64([1, -1])}))
    c.append(single_op("grad_shape_squeeze_all", "Squeeze", [("x", x1)]))
    c.append(single_op("grad_shape_unsqueeze", "Unsqueeze", [("x", x)],
                       consts={"axes": i64([0, -1])}))
    c.append(single_op("grad_shape_unsqueeze_mid", "Unsqueeze", [("x", x)],
                       consts={"axes": i64([2])}))
    return c


def _transpose(r):
    c = [
        single_op("grad_shape_transpose_default", "Transpose",
                  [("x", r.standard_normal((2, 3, 4)))]),
        single_op("grad_shape_transpose_nchw_nhwc", "Transpose",
                  [("x", r.standard_normal((2, 3, 4, 5)))], attrs={"perm": [0, 2, 3, 1]}),
        single_op("grad_shape_transpose_perm4", "Transpose",
                  [("x", r.standard_normal((2, 3, 4, 5)))], attrs={"perm": [3, 1, 0, 2]}),
        # axes of >= 8 elements on both sides: the blocked (tiled) transpose path
        single_op("grad_shape_transpose_blocked", "Transpose",
                  [("x", r.standard_normal((2, 9, 37)))], attrs={"perm": [0, 2, 1]}),
        # big enough for the parallel tiled path
        single_op("grad_shape_transpose_big", "Transpose",
                  [("x", r.standard_normal((4, 96, 130)))], attrs={"perm": [2, 0, 1]}),
    ]
    return c


def _concat_split(r):
    a, b, d = (r.standard_normal((2, k, 3)) for k in (1, 4, 2))
    c = [
        single_op("grad_shape_concat_axis1", "Concat", [("a", a), ("b", b), ("d", d)],
                  attrs={"axis": 1}),
        single_op("grad_shape_concat_axis_last", "Concat",
                  [("a", r.standard_normal((2, 3, 2))), ("b", r.standard_normal((2, 3, 5)))],
                  attrs={"axis": -1}),
        single_op("grad_shape_concat_axis0", "Concat",
                  [("a", r.standard_normal((1, 3))), ("b", r.standard_normal((4, 3)))],
                  attrs={"axis": 0}),
        # the same input twice: both parts accumulate into one gradient
        single_op("grad_shape_concat_same_twice", "Concat", [("a", a)], attrs={"axis": 2},
                  input_order=["a", "a"]),
        # a constant part gets no gradient
        single_op("grad_shape_concat_with_const", "Concat", [("a", a)],
                  consts={"k": r.standard_normal((2, 3, 3))}, attrs={"axis": 1}),
        single_op("grad_shape_concat_big", "Concat",
                  [("a", r.standard_normal((8, 40, 64))), ("b", r.standard_normal((8, 24, 64)))],
                  attrs={"axis": 1}),
    ]
    x = r.standard_normal((2, 6, 3))
    c += [
        single_op("grad_shape_split_equal", "Split", [("x", x)], n_outputs=3, attrs={"axis": 1}),
        single_op("grad_shape_split_sizes", "Split", [("x", x)], n_outputs=3,
                  consts={"split": i64([1, 3, 2])}, attrs={"axis": 1}),
        single_op("grad_shape_split_last", "Split", [("x", x)], n_outputs=2,
                  consts={"split": i64([1, 2])}, attrs={"axis": -1}),
        single_op("grad_shape_split_axis0", "Split", [("x", r.standard_normal((4, 3)))],
                  n_outputs=2),
        single_op("grad_shape_split_num_outputs", "Split", [("x", r.standard_normal((2, 7)))],
                  n_outputs=3, attrs={"axis": 1, "num_outputs": 3}, opset=18),
        single_op("grad_shape_split_big", "Split", [("x", r.standard_normal((8, 64, 80)))],
                  n_outputs=2, consts={"split": i64([24, 40])}, attrs={"axis": 1}),
    ]
    return c


def _slice(r):
    x = r.standard_normal((4, 5, 6))
    c = []

    def sl(name, starts, ends, axes=None, steps=None, xx=None):
        consts = {"starts": i64(starts), "ends": i64(ends)}
        order = ["x", "starts", "ends"]
        if axes is not None:
            consts["axes"] = i64(axes)
            order.append("axes")
        if steps is not None:
            if axes is None:
                order.append("")
            consts["steps"] = i64(steps)
            order.append("steps")
        c.append(single_op(f"grad_shape_slice_{name}", "Slice", [("x", x if xx is None else xx)],
                           consts=consts, input_order=order))

    sl("basic", [1, 0], [3, 4])
    sl("axes_neg", [-4, 1], [100, -1], axes=[-1, 0])
    sl("steps2", [0, 1], [5, 6], axes=[1, 2], steps=[2, 3])
    sl("neg_step", [-1, 4], [-100, 0], axes=[0, 2], steps=[-1, -2])
    sl("neg_step_all", [3, 4, 5], [-100, -100, -100], steps=[-2, -1, -3])
    sl("steps_no_axes", [0, 0, 1], [4, 5, 6], steps=[3, 1, 2])
    sl("inner_contig", [1], [3], axes=[2])
    sl("big_neg_step", [0, 200, 3], [64, 0, 70], steps=[1, -1, 1],
       xx=r.standard_normal((64, 201, 72)))
    return c


def _gather(r):
    x = r.standard_normal((5, 4, 3))
    return [
        # repeated indices accumulate
        single_op("grad_shape_gather_axis0_repeat", "Gather", [("x", x)],
                  consts={"idx": i64([0, 3, 0, 4, 3, 0])}),
        single_op("grad_shape_gather_axis1_neg", "Gather", [("x", x)],
                  consts={"idx": i64([[-1, 0], [2, -1]])}, attrs={"axis": 1}),
        single_op("grad_shape_gather_last_scalar", "Gather", [("x", x)],
                  consts={"idx": i64(2)}, attrs={"axis": -1}),
        single_op("grad_shape_gather_int32", "Gather", [("x", x)],
                  consts={"idx": np.array([1, 1, 2], np.int32)}, attrs={"axis": 2}),
        # big: column-chunked tasks (outer = 1) and slice tasks (outer > threads)
        single_op("grad_shape_gather_big_axis0", "Gather",
                  [("x", r.standard_normal((6, 8, 1024)))],
                  consts={"idx": i64([5, 0, 5, 2, 2, 5])}),
        single_op("grad_shape_gather_big_inner", "Gather",
                  [("x", r.standard_normal((512, 7, 16)))],
                  consts={"idx": i64([6, 1, 6, 6, 0])}, attrs={"axis": 1}),
    ]


def _pad(r):
    x = r.standard_normal((2, 3, 4))
    c = []

    def pad(name, pads, mode="constant", xx=None, axes=None, opset=17):
        consts = {"pads": i64(pads)}
        order = ["x", "pads"]
        if axes is not None:
            consts["axes"] = i64(axes)
            order += ["", "axes"]
        c.append(single_op(f"grad_shape_pad_{name}", "Pad", [("x", x if xx is None else xx)],
                           consts=consts, input_order=order, attrs={"mode": mode}, opset=opset))

    pad("constant", [0, 1, 2, 1, 0, 3])
    pad("constant_crop", [0, -1, 2, 1, 1, -2])
    pad("reflect", [1, 2, 3, 0, 1, 2], mode="reflect")
    pad("reflect_long", [0, 5, 7, 0, 4, 9], mode="reflect")  # longer than the axes: periodic
    pad("reflect_crop", [0, -1, 2, 0, 2, -1], mode="reflect")
    pad("edge", [1, 2, 3, 1, 0, 2], mode="edge")
    pad("edge_long", [3, 0, 6, 2, 5, 5], mode="edge")
    pad("edge_unit_axis", [0, 2, 1, 0, 3, 1], mode="edge", xx=r.standard_normal((2, 1, 4)))
    pad("reflect_unit_axis", [0, 2, 1, 0, 3, 1], mode="reflect",
        xx=r.standard_normal((2, 1, 4)))
    pad("axes", [1, 2, 0, 3], mode="reflect", axes=[-1, 1], opset=18)
    pad("reflect_big", [0, 0, 3, 4, 0, 0, 5, 2], mode="reflect",
        xx=r.standard_normal((2, 8, 60, 60)))
    pad("edge_big", [0, 1, 2, 3, 0, 2, 1, 0], mode="edge", xx=r.standard_normal((2, 8, 60, 60)))
    pad("constant_big", [0, 0, 2, -3, 0, 0, 1, 4], xx=r.standard_normal((2, 8, 60, 60)))
    # the constant value as a differentiated input: d value = sum of dy over the border
    c.append(single_op("grad_shape_pad_value_grad", "Pad",
                       [("x", x), ("v", np.array(0.7))], consts={"pads": i64([1, 0, 2, 0, 2, -1])},
                       input_order=["x", "pads", "v"]))
    return c


def _expand_tile(r):
    return [
        single_op("grad_shape_expand_bcast", "Expand", [("x", r.standard_normal((3, 1)))],
                  consts={"shape": i64([2, 3, 4])}),
        single_op("grad_shape_expand_shape_smaller", "Expand",
                  [("x", r.standard_normal((2, 1, 4)))], consts={"shape": i64([3, 1])}),
        single_op("grad_shape_expand_same", "Expand", [("x", r.standard_normal((2, 3)))],
                  consts={"shape": i64([2, 3])}),
        single_op("grad_shape_expand_scalar", "Expand", [("x", np.array(1.3))],
                  consts={"shape": i64([3, 2])}),
        single_op("grad_shape_expand_mid", "Expand", [("x", r.standard_normal((1, 3, 1, 5)))],
                  consts={"shape": i64([2, 3, 4, 5])}),
        # big: few kept outputs (column chunks) and summed inner rows
        single_op("grad_shape_expand_big_rows", "Expand", [("x", r.standard_normal((1, 256)))],
                  consts={"shape": i64([160, 256])}),
        single_op("grad_shape_expand_big_bias", "Expand", [("x", r.standard_normal((16, 1, 1)))],
                  consts={"shape": i64([4, 16, 24, 24])}),
        single_op("grad_shape_tile", "Tile", [("x", r.standard_normal((2, 3)))],
                  consts={"rep": i64([2, 3])}),
        single_op("grad_shape_tile_3d", "Tile", [("x", r.standard_normal((2, 1, 3)))],
                  consts={"rep": i64([1, 4, 2])}),
        single_op("grad_shape_tile_ones", "Tile", [("x", r.standard_normal((3, 2)))],
                  consts={"rep": i64([1, 1])}),
        single_op("grad_shape_tile_big", "Tile", [("x", r.standard_normal((4, 32, 32)))],
                  consts={"rep": i64([2, 3, 4])}),
    ]


def cases():
    r = rng(7)
    return _views(r) + _transpose(r) + _concat_split(r) + _slice(r) + _gather(r) + _pad(r) + \
        _expand_tile(r)
