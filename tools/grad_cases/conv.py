"""Conv and ConvTranspose: gradients to X (weights and bias are initialisers), and to W and B
when they are graph inputs too (the weight-gradient kernels). 1-D to 3-D, strides, pads,
dilations, groups, auto_pad, output_padding, output_shape."""
from ._common import rng, single_op


def _conv(name, op, xshape, wshape, attrs, seed, bias=False, grad_w=False):
    r = rng(seed)
    x = r.standard_normal(xshape)
    w = r.standard_normal(wshape) * 0.5
    # output channels: Conv W[0]; ConvTranspose W[1] * group
    m = wshape[0] if op == "Conv" else wshape[1] * attrs.get("group", 1)
    b = r.standard_normal((m,))
    if grad_w:
        inputs = [("x", x), ("w", w)] + ([("b", b)] if bias else [])
        return single_op(name, op, inputs, attrs=attrs)
    consts = {"w": w}
    if bias:
        consts["b"] = b
    return single_op(name, op, [("x", x)], consts=consts, attrs=attrs)

def cases():
    c = []
    cv, ct = "Conv", "ConvTranspose"
    # ---- Conv, gradient to X -----------------------------------------------------------------
    c.append(_conv("grad_conv_1d", cv, (2, 3, 9), (4, 3, 3), {}, 1))
    c.append(_conv("grad_conv_1d_pads_stride_dil", cv, (1, 2, 13), (3, 2, 3),
                   {"pads": [2, 1], "strides": [2], "dilations": [2]}, 2, bias=True))
    c.append(_conv("grad_conv_2d", cv, (2, 3, 6, 7), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}, 3,
                   bias=True))
    c.append(_conv("grad_conv_2d_stride_asym_pads", cv, (1, 2, 9, 8), (3, 2, 3, 2),
                   {"pads": [0, 1, 2, 0], "strides": [2, 3]}, 4))
    c.append(_conv("grad_conv_2d_dilation", cv, (1, 2, 9, 9), (2, 2, 3, 3),
                   {"dilations": [2, 3], "pads": [1, 2, 1, 0]}, 5))
    c.append(_conv("grad_conv_2d_groups", cv, (2, 4, 6, 6), (6, 2, 3, 3),
                   {"group": 2, "pads": [1, 1, 1, 1], "strides": [2, 1]}, 6, bias=True))
    c.append(_conv("grad_conv_2d_depthwise", cv, (1, 4, 7, 7), (4, 1, 3, 3),
                   {"group": 4, "pads": [1, 1, 1, 1]}, 7))
    c.append(_conv("grad_conv_2d_1x1", cv, (2, 5, 4, 3), (6, 5, 1, 1), {}, 8))
    c.append(_conv("grad_conv_2d_same_upper", cv, (1, 2, 7, 8), (3, 2, 4, 3),
                   {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, 9))
    c.append(_conv("grad_conv_2d_same_lower", cv, (1, 2, 7, 8), (3, 2, 4, 3),
                   {"auto_pad": "SAME_LOWER", "strides": [2, 3]}, 10))
    c.append(_conv("grad_conv_2d_valid", cv, (1, 2, 7, 6), (2, 2, 3, 3),
                   {"auto_pad": "VALID", "strides": [2, 2]}, 11))
    c.append(_conv("grad_conv_2d_kernel_shape_attr", cv, (1, 2, 5, 5), (2, 2, 2, 3),
                   {"kernel_shape": [2, 3], "pads": [0, 1, 1, 1]}, 12))
    c.append(_conv("grad_conv_3d", cv, (1, 2, 4, 5, 5), (3, 2, 3, 3, 3),
                   {"pads": [1, 1, 1, 1, 1, 1], "strides": [1, 2, 2]}, 13, bias=True))
    c.append(_conv("grad_conv_3d_groups_dil", cv, (2, 4, 5, 6, 6), (4, 2, 2, 3, 2),
                   {"group": 2, "dilations": [2, 1, 2], "pads": [0, 1, 1, 1, 0, 1],
                    "strides": [1, 1, 2]}, 14))
    c.append(_conv("grad_conv_3d_t_kernel_1", cv, (1, 3, 3, 4, 4), (5, 3, 1, 3, 3),
                   {"pads": [0, 1, 1, 0, 1, 1]}, 15))
    # ---- Conv, gradients to W and B (weights as graph inputs) -----------------------------------
    c.append(_conv("grad_conv_1d_dw", cv, (2, 2, 10), (3, 2, 3),
                   {"pads": [1, 2], "strides": [2], "dilations": [2]}, 16, bias=True,
                   grad_w=True))
    c.append(_conv("grad_conv_2d_dw", cv, (2, 3, 6, 5), (4, 3, 3, 2),
                   {"pads": [1, 0, 1, 1], "strides": [1, 2]}, 17, bias=True, grad_w=True))
    c.append(_conv("grad_conv_2d_dw_groups", cv, (1, 4, 6, 6), (4, 2, 3, 3),
                   {"group": 2, "dilations": [1, 2], "pads": [1, 2, 1, 2]}, 18, grad_w=True))
    c.append(_conv("grad_conv_3d_dw", cv, (1, 2, 4, 4, 5), (2, 2, 2, 3, 3),
                   {"auto_pad": "SAME_UPPER", "strides": [2, 1, 2]}, 19, bias=True,
                   grad_w=True))
    # ---- ConvTranspose, gradient to X ----------------------------------------------------------
    c.append(_conv("grad_conv_t_1d", ct, (2, 3, 5), (3, 2, 3), {}, 21, bias=True))
    c.append(_conv("grad_conv_t_1d_stride_pads_dil", ct, (1, 2, 6), (2, 3, 3),
                   {"strides": [2], "pads": [1, 2], "dilations": [2]}, 22))
    c.append(_conv("grad_conv_t_2d_stride", ct, (2, 3, 4, 5), (3, 2, 3, 3),
                   {"strides": [2, 2], "pads": [1, 1, 1, 1]}, 23, bias=True))
    c.append(_conv("grad_conv_t_2d_output_padding", ct, (1, 2, 4, 4), (2, 3, 3, 2),
                   {"strides": [2, 3], "output_padding": [1, 2], "pads": [0, 1, 1, 0]}, 24))
    c.append(_conv("grad_conv_t_2d_output_shape", ct, (1, 2, 3, 4), (2, 2, 3, 3),
                   {"strides": [2, 2], "output_shape": [8, 9]}, 25))
    c.append(_conv("grad_conv_t_2d_output_shape_larger", ct, (1, 2, 3, 3), (2, 2, 2, 2),
                   {"strides": [2, 2], "output_shape": [8, 7]}, 26))
    c.append(_conv("grad_conv_t_2d_groups", ct, (1, 4, 4, 4), (4, 2, 3, 3),
                   {"group": 2, "strides": [2, 1], "pads": [1, 0, 0, 1]}, 27, bias=True))
    c.append(_conv("grad_conv_t_2d_dilation", ct, (1, 2, 4, 5), (2, 2, 3, 2),
                   {"dilations": [2, 3], "pads": [1, 1, 2, 0]}, 28))
    c.append(_conv("grad_conv_t_2d_same_upper", ct, (1, 2, 3, 4), (2, 2, 3, 4),
                   {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, 29))
    c.append(_conv("grad_conv_t_2d_same_lower", ct, (1, 2, 3, 4), (2, 2, 3, 4),
                   {"auto_pad": "SAME_LOWER", "strides": [2, 3]}, 30))
    c.append(_conv("grad_conv_t_2d_valid", ct, (1, 2, 3, 3), (2, 1, 2, 3),
                   {"auto_pad": "VALID", "strides": [2, 1]}, 31))
    c.append(_conv("grad_conv_t_3d", ct, (1, 2, 3, 3, 4), (2, 2, 2, 3, 3),
                   {"strides": [1, 2, 2], "pads": [0, 1, 1, 1, 0, 1],
                    "output_padding": [0, 1, 0]}, 32, bias=True))
    c.append(_conv("grad_conv_t_3d_groups_dil", ct, (1, 4, 3, 3, 3), (4, 1, 2, 2, 2),
                   {"group": 4, "dilations": [2, 1, 2], "strides": [1, 2, 1]}, 33))
    # ---- ConvTranspose, gradients to W and B ---------------------------------------------------
    c.append(_conv("grad_conv_t_1d_dw", ct, (2, 2, 5), (2, 3, 3),
                   {"strides": [2], "pads": [1, 0], "dilations": [2], "output_padding": [1]}, 34,
                   bias=True, grad_w=True))
    c.append(_conv("grad_conv_t_2d_dw_groups", ct, (1, 4, 3, 4), (4, 1, 3, 2),
                   {"group": 2, "strides": [2, 2], "pads": [1, 0, 0, 1]}, 35, bias=True,
                   grad_w=True))
    c.append(_conv("grad_conv_t_3d_dw", ct, (1, 2, 2, 3, 3), (2, 2, 2, 2, 3),
                   {"strides": [2, 1, 2], "output_shape": [5, 4, 8]}, 36, grad_w=True))
    return c
