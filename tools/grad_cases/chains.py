"""Multi-op graphs: the engine's plumbing (gradient accumulation over fan-out, residual adds,
chains of ops, values kept for later backward steps) rather than single VJPs."""
import numpy as np
from onnx import TensorProto, helper, numpy_helper

from ._common import Case, away_from, rng


def graph(name, nodes, inputs, consts, outputs=("y",)):
    gin = [helper.make_tensor_value_info(n, TensorProto.DOUBLE, list(v.shape)) for n, v in inputs]
    inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in consts.items()]
    gout = [helper.make_tensor_value_info(o, TensorProto.DOUBLE, None) for o in outputs]
    g = helper.make_graph(nodes, name, gin, gout, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return Case(name, m, [np.asarray(v, np.float64) for _, v in inputs])


def cases():
    r = rng(11)
    x = r.standard_normal((1, 4, 3, 6, 6))
    w1 = 0.3 * r.standard_normal((8, 4, 3, 3, 3))
    w2 = 0.3 * r.standard_normal((4, 8, 3, 3, 3))
    w3 = 0.3 * r.standard_normal((8, 4, 1, 1, 1))
    b1 = 0.1 * r.standard_normal(8)
    N = helper.make_node
    out = []
    out.append(graph("grad_chains_conv_relu_conv", [
        N("Conv", ["x", "w1", "b1"], ["a"], pads=[1] * 6, name="Conv_under_test"),
        N("Relu", ["a"], ["h"]),
        N("Conv", ["h", "w2"], ["y"], pads=[1] * 6)],
        [("x", x)], {"w1": w1, "b1": b1, "w2": w2}))
    # residual block: y = relu(conv2(relu(conv1(x))) + x)
    out.append(graph("grad_chains_residual", [
        N("Conv", ["x", "w1", "b1"], ["a"], pads=[1] * 6),
        N("Relu", ["a"], ["h"]),
        N("Conv", ["h", "w2"], ["c"], pads=[1] * 6),
        N("Add", ["c", "x"], ["s"]),
        N("Relu", ["s"], ["y"])],
        [("x", x)], {"w1": w1, "b1": b1, "w2": w2}))
    # downsampling block with a projection shortcut computed after the main branch
    out.append(graph("grad_chains_downsample", [
        N("Conv", ["x", "w1", "b1"], ["a"], pads=[1] * 6, strides=[2, 2, 2]),
        N("Relu", ["a"], ["h"]),
        N("Conv", ["h", "w1b"], ["c"], pads=[1] * 6),
        N("Conv", ["x", "w3"], ["d"], strides=[2, 2, 2]),
        N("Add", ["c", "d"], ["s"]),
        N("Relu", ["s"], ["y"])],
        [("x", r.standard_normal((1, 4, 4, 8, 8)))],
        {"w1": w1, "b1": b1, "w1b": 0.2 * r.standard_normal((8, 8, 3, 3, 3)), "w3": w3}))
    # fan-out into two branches and a global pool + linear head
    out.append(graph("grad_chains_head", [
        N("Conv", ["x", "w1"], ["a"], pads=[1] * 6),
        N("Relu", ["a"], ["h"]),
        N("GlobalAveragePool", ["h"], ["p"]),
        N("Flatten", ["p"], ["f"]),
        N("Gemm", ["f", "fw", "fb"], ["y"], transB=1)],
        [("x", x)], {"w1": w1, "fw": r.standard_normal((5, 8)), "fb": r.standard_normal(5)}))
    # two residual stages as in a video ResNet: a stride-2 block with a projection shortcut, then
    # an identity block reading the first block's output twice
    c1, c2 = 4, 8
    wa = 0.3 * r.standard_normal((c1, c1, 3, 3, 3))
    out.append(graph("grad_chains_two_blocks", [
        N("Conv", ["x", "wa"], ["s0"], pads=[1] * 6),
        N("Relu", ["s0"], ["x1"]),
        N("Conv", ["x1", "w1"], ["a"], pads=[1] * 6, strides=[2, 2, 2]),
        N("Relu", ["a"], ["h"]),
        N("Conv", ["h", "w1b"], ["c"], pads=[1] * 6),
        N("Conv", ["x1", "w3"], ["d"], strides=[2, 2, 2]),
        N("Add", ["c", "d"], ["s"]),
        N("Relu", ["s"], ["b1"]),
        N("Conv", ["b1", "w4"], ["e"], pads=[1] * 6),
        N("Relu", ["e"], ["e1"]),
        N("Conv", ["e1", "w5"], ["f"], pads=[1] * 6),
        N("Add", ["f", "b1"], ["g"]),
        N("Relu", ["g"], ["b2"]),
        N("GlobalAveragePool", ["b2"], ["p"]),
        N("Flatten", ["p"], ["q"]),
        N("Gemm", ["q", "fw"], ["y"], transB=1)],
        [("x", r.standard_normal((1, c1, 4, 8, 8)))],
        {"wa": wa, "w1": w1, "w1b": 0.2 * r.standard_normal((c2, c2, 3, 3, 3)), "w3": w3,
         "w4": 0.2 * r.standard_normal((c2, c2, 3, 3, 3)),
         "w5": 0.2 * r.standard_normal((c2, c2, 3, 3, 3)), "fw": r.standard_normal((5, c2))}))
    return out
