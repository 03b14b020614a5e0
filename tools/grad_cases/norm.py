"""Normalisation operators (src/ops/norm.c): BatchNormalization (inference: X only),
InstanceNormalization, LayerNormalization, Softmax, LogSoftmax (per-axis since opset 13, coerced
to 2-D before)."""
import numpy as np

from ._common import rng, single_op


def cases():
    r = rng(11)
    out = []

    def x(shape, scale=1.0):
        return scale * r.standard_normal(shape) + 0.3

    # BatchNormalization: scale/B/mean/var are constants
    def bn_consts(c, dt=np.float64):
        return {"scale": r.uniform(0.5, 1.5, c).astype(dt), "B": r.standard_normal(c).astype(dt),
                "mean": r.standard_normal(c).astype(dt), "var": r.uniform(0.2, 2.0, c).astype(dt)}

    out += [
        single_op("grad_norm_bn_4d", "BatchNormalization", [("x", x((2, 3, 4, 5)))],
                  consts=bn_consts(3)),
        single_op("grad_norm_bn_3d_eps", "BatchNormalization", [("x", x((2, 4, 6)))],
                  consts=bn_consts(4), attrs={"epsilon": 0.1}),
        single_op("grad_norm_bn_2d", "BatchNormalization", [("x", x((5, 3)))],
                  consts=bn_consts(3)),
        single_op("grad_norm_bn_5d_f32params", "BatchNormalization", [("x", x((1, 2, 3, 2, 4)))],
                  consts=bn_consts(2, np.float32)),
    ]
    # InstanceNormalization: scale and B constants, or differentiated too
    out += [
        single_op("grad_norm_in_4d", "InstanceNormalization", [("x", x((2, 3, 4, 5)))],
                  consts={"scale": r.uniform(0.5, 1.5, 3), "B": r.standard_normal(3)}),
        single_op("grad_norm_in_3d_eps", "InstanceNormalization", [("x", x((3, 2, 7)))],
                  consts={"scale": r.uniform(0.5, 1.5, 2), "B": r.standard_normal(2)},
                  attrs={"epsilon": 0.01}),
        single_op("grad_norm_in_params", "InstanceNormalization",
                  [("x", x((2, 3, 3, 4))), ("scale", r.uniform(0.5, 1.5, 3)),
                   ("B", r.standard_normal(3))]),
        single_op("grad_norm_in_big", "InstanceNormalization", [("x", x((2, 4, 64, 80)))],
                  consts={"scale": r.uniform(0.5, 1.5, 4), "B": r.standard_normal(4)}),
    ]
    # LayerNormalization
    out += [
        single_op("grad_norm_ln_last", "LayerNormalization", [("x", x((2, 3, 8)))],
                  consts={"scale": r.uniform(0.5, 1.5, 8), "B": r.standard_normal(8)}),
        single_op("grad_norm_ln_axis1", "LayerNormalization", [("x", x((2, 3, 4)))],
                  consts={"scale": r.uniform(0.5, 1.5, (3, 4)), "B": r.standard_normal((3, 4))},
                  attrs={"axis": 1, "epsilon": 0.01}),
        single_op("grad_norm_ln_noB", "LayerNormalization", [("x", x((4, 6)))],
                  consts={"scale": r.uniform(0.5, 1.5, 6)}),
        # Scale varying along axis 1 only, broadcast over the last dim: not row-dense
        single_op("grad_norm_ln_bcast_scale", "LayerNormalization", [("x", x((2, 3, 4)))],
                  consts={"scale": r.uniform(0.5, 1.5, (3, 1)), "B": r.standard_normal((1, 4))},
                  attrs={"axis": 1}),
        single_op("grad_norm_ln_params", "LayerNormalization",
                  [("x", x((3, 2, 5))), ("scale", r.uniform(0.5, 1.5, 5)),
                   ("B", r.standard_normal(5))]),
        single_op("grad_norm_ln_params_bcast", "LayerNormalization",
                  [("x", x((2, 3, 4))), ("scale", r.uniform(0.5, 1.5, (3, 1))),
                   ("B", r.standard_normal((1, 4)))], attrs={"axis": 1}),
        single_op("grad_norm_ln_params_wide", "LayerNormalization",
                  [("x", x((3, 150))), ("scale", r.uniform(0.5, 1.5, 150)),
                   ("B", r.standard_normal(150))]),
        # Mean and InvStdDev are float32 (stash type): only Y is checked, with them present
        single_op("grad_norm_ln_3out", "LayerNormalization", [("x", x((3, 7)))],
                  consts={"scale": r.uniform(0.5, 1.5, 7), "B": r.standard_normal(7)},
                  n_outputs=3),
        single_op("grad_norm_ln_big", "LayerNormalization", [("x", x((64, 4, 160)))],
                  consts={"scale": r.uniform(0.5, 1.5, 160), "B": r.standard_normal(160)}),
    ]
    # Softmax / LogSoftmax
    for op in ("Softmax", "LogSoftmax"):
        lo = op.lower()
        out += [
            single_op(f"grad_norm_{lo}_last", op, [("x", x((3, 7), 2.0))]),
            single_op(f"grad_norm_{lo}_axis1", op, [("x", x((2, 4, 3, 2), 2.0))],
                      attrs={"axis": 1}),
            single_op(f"grad_norm_{lo}_axis0", op, [("x", x((5, 3), 2.0))], attrs={"axis": 0}),
            # opset < 13: coerced to 2-D [prod(dims[:axis]), prod(dims[axis:])]
            single_op(f"grad_norm_{lo}_coerced", op, [("x", x((2, 3, 4), 2.0))],
                      attrs={"axis": 1}, opset=11),
            single_op(f"grad_norm_{lo}_coerced_default", op, [("x", x((2, 3, 2, 2), 2.0))],
                      opset=11),
            single_op(f"grad_norm_{lo}_big", op, [("x", x((40, 1000), 2.0))]),
        ]
    return out
