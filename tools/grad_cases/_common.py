"""Helpers to build single-op float64 ONNX models for the gradient tests."""
import numpy as np
from onnx import TensorProto, helper, numpy_helper


class Case:
    def __init__(self, name, model, inputs):
        self.name = name      # unique, used as the file name: grad_<family>_<what>
        self.model = model    # onnx.ModelProto
        self.inputs = inputs  # list of float64 arrays, one per graph input, in order


def single_op(name, op, inputs, n_outputs=1, consts=None, attrs=None, input_order=None,
              opset=17):
    """A model with one node `op`.

    inputs: list of (name, float64 array) that become graph inputs (differentiated);
    consts: dict name -> array that become initializers (any dtype);
    input_order: the node's input names in order ("" for an omitted optional input); default:
                 graph inputs then consts in the order given.
    Returns a Case with the graph inputs' values."""
    consts = consts or {}
    attrs = attrs or {}
    gin = [helper.make_tensor_value_info(n, TensorProto.DOUBLE, list(np.shape(v)))
           for n, v in inputs]
    inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in consts.items()]
    order = input_order if input_order is not None else [n for n, _ in inputs] + list(consts)
    outs = [f"y{k}" for k in range(n_outputs)]
    node = helper.make_node(op, order, outs, name=f"{op}_under_test", **attrs)
    gout = [helper.make_tensor_value_info(o, TensorProto.DOUBLE, None) for o in outs]
    for vi in gout:  # rank unknown: an empty shape field would mean a scalar
        vi.type.tensor_type.ClearField("shape")
    g = helper.make_graph([node], name, gin, gout, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return Case(name, m, [np.asarray(v, np.float64) for _, v in inputs])


def rng(seed):
    return np.random.default_rng(seed)


def away_from(x, points, margin=0.05):
    """Moves entries of x that are within margin of any point away from it."""
    x = np.array(x, np.float64)
    for p in points:
        near = np.abs(x - p) < margin
        x[near] = p + np.where(x[near] >= p, margin, -margin) * 2
    return x
