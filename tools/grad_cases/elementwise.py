"""Gradient cases for src/ops/elementwise.c: activations, maths, broadcasting arithmetic,
variadic Max/Min/Sum/Mean, Where, Cast/CastLike, Identity, Dropout.

Inputs stay away from the non-differentiable points (ReLU/Abs/LeakyRelu/PRelu at 0, Clip and
HardSigmoid/HardSwish kinks, Max/Min ties) and from the domains' edges (Log/Sqrt/Pow near 0,
Div/Reciprocal near 0). Broadcasting cases cover missing leading axes, size-1 axes on either
side, scalars and both operands broadcast at once; the big ones (>= 32768 output elements)
exercise the threaded reductions."""
import numpy as np

from ._common import away_from, rng, single_op

F = "grad_elementwise_"


def _n(r, *shape):
    return r.standard_normal(shape)


def _pos(r, *shape, lo=0.5, hi=2.0):
    return r.uniform(lo, hi, shape)


def _apart(r, n, shape):
    """n arrays of `shape` that differ pairwise by at least 0.2 everywhere (no Max/Min ties),
    with the winner varying from element to element."""
    rank = np.argsort(r.random((n,) + tuple(shape)), axis=0)
    return [rank[k] * 0.6 + r.uniform(-0.2, 0.2, shape) - 0.9 for k in range(n)]


def _unary(r):
    x = lambda *s: _n(r, *s)  # noqa: E731
    cs = [
        single_op(F + "relu", "Relu", [("x", away_from(x(2, 3, 4), [0.0]))]),
        single_op(F + "relu_scalar", "Relu", [("x", np.array(0.7))]),
        single_op(F + "leakyrelu", "LeakyRelu", [("x", away_from(x(3, 5), [0.0]))]),
        single_op(F + "leakyrelu_alpha", "LeakyRelu", [("x", away_from(x(2, 3, 4), [0.0]))],
                  attrs={"alpha": 0.2}),
        single_op(F + "sigmoid", "Sigmoid", [("x", 3 * x(2, 3, 4))]),
        single_op(F + "tanh", "Tanh", [("x", 2 * x(2, 3, 4))]),
        single_op(F + "erf", "Erf", [("x", x(2, 3, 4))]),
        single_op(F + "gelu", "Gelu", [("x", 2 * x(2, 3, 4))], opset=20),
        single_op(F + "gelu_tanh", "Gelu", [("x", 2 * x(2, 3, 4))],
                  attrs={"approximate": "tanh"}, opset=20),
        single_op(F + "softplus", "Softplus", [("x", 4 * x(2, 3, 4))]),
        single_op(F + "sqrt", "Sqrt", [("x", _pos(r, 2, 3, 4))]),
        single_op(F + "exp", "Exp", [("x", x(2, 3, 4))]),
        single_op(F + "log", "Log", [("x", _pos(r, 2, 3, 4))]),
        single_op(F + "neg", "Neg", [("x", x(2, 3, 4))]),
        single_op(F + "abs", "Abs", [("x", away_from(x(2, 3, 4), [0.0]))]),
        single_op(F + "reciprocal", "Reciprocal",
                  [("x", away_from(x(2, 3, 4), [0.0], margin=0.25))]),
        single_op(F + "elu", "Elu", [("x", away_from(2 * x(2, 3, 4), [0.0]))]),
        single_op(F + "elu_alpha", "Elu", [("x", away_from(2 * x(2, 3, 4), [0.0]))],
                  attrs={"alpha": 0.7}),
        single_op(F + "selu", "Selu", [("x", away_from(2 * x(2, 3, 4), [0.0]))]),
        single_op(F + "selu_attrs", "Selu", [("x", away_from(2 * x(2, 3, 4), [0.0]))],
                  attrs={"alpha": 1.5, "gamma": 1.2}),
        single_op(F + "celu", "Celu", [("x", 2 * x(2, 3, 4))]),
        single_op(F + "celu_alpha", "Celu", [("x", 2 * x(2, 3, 4))], attrs={"alpha": 0.5}),
        single_op(F + "hardsigmoid", "HardSigmoid",
                  [("x", away_from(4 * x(2, 3, 4), [-2.5, 2.5]))]),
        single_op(F + "hardsigmoid_attrs", "HardSigmoid",
                  [("x", away_from(3 * x(2, 3, 4), [-0.4 / 0.3, 0.6 / 0.3]))],
                  attrs={"alpha": -0.3, "beta": 0.4}),
        single_op(F + "hardswish", "HardSwish", [("x", away_from(3 * x(3, 8), [-3.0, 3.0]))]),
        single_op(F + "softsign", "Softsign", [("x", 3 * x(2, 3, 4))]),
        single_op(F + "identity", "Identity", [("x", x(2, 3, 4))]),
        single_op(F + "cast_double", "Cast", [("x", x(2, 3, 4))], attrs={"to": 11}),
        single_op(F + "castlike", "CastLike", [("x", x(2, 3, 4))],
                  consts={"like": np.zeros((1,), np.float64)}),
        single_op(F + "dropout", "Dropout", [("x", x(2, 3, 4))]),
        # ratio and training_mode as inputs (the bool mask output cannot be seeded by the
        # harness, so the cases have one output)
        single_op(F + "dropout_ratio", "Dropout", [("x", x(2, 3, 4))],
                  consts={"ratio": np.array(0.3), "training_mode": np.array(False)}),
        single_op(F + "dropout_opset11", "Dropout", [("x", x(2, 3, 4))], attrs={"ratio": 0.2},
                  opset=11),
    ]
    # Clip: bounds as constants (both, lower only, upper only, via attributes before opset 11),
    # and as differentiated inputs (the bound's gradient is the sum of dy where x lies beyond it)
    xc = away_from(2 * x(2, 3, 4), [-0.5, 0.8])
    lo, hi = np.array(-0.5), np.array(0.8)
    cs += [
        single_op(F + "clip", "Clip", [("x", xc)], consts={"lo": lo, "hi": hi}),
        single_op(F + "clip_min_only", "Clip", [("x", xc)], consts={"lo": lo},
                  input_order=["x", "lo"]),
        single_op(F + "clip_max_only", "Clip", [("x", xc)], consts={"hi": hi},
                  input_order=["x", "", "hi"]),
        single_op(F + "clip_none", "Clip", [("x", xc)]),
        single_op(F + "clip_attrs", "Clip", [("x", xc)], attrs={"min": -0.5, "max": 0.8},
                  opset=6),
        single_op(F + "clip_bounds", "Clip", [("x", xc), ("lo", lo), ("hi", hi)]),
        single_op(F + "clip_inverted", "Clip", [("x", xc), ("lo", hi), ("hi", lo)]),
    ]
    # a big unary op: the threaded path
    cs.append(single_op(F + "tanh_big", "Tanh", [("x", x(4, 16, 32, 32))]))
    return cs


def _binary(r):
    x = lambda *s: _n(r, *s)  # noqa: E731
    cs = []
    shapes = [  # (name, a shape, b shape)
        ("same", (2, 3, 4), (2, 3, 4)),
        ("bcast", (2, 1, 4), (3, 1)),        # both broadcast -> (2, 3, 4)
        ("row", (2, 3, 4), (4,)),           # missing leading axes
        ("col", (2, 3, 4), (3, 1)),
        ("scalar", (2, 3, 4), ()),
        ("one", (1,), (2, 3)),
        ("bias", (2, 5, 3, 3), (5, 1, 1)),  # a per-channel bias
        ("lead", (1, 3, 1), (2, 1, 4)),
    ]
    for name, sa, sb in shapes:
        a, b = x(*sa), x(*sb)
        cs.append(single_op(F + "add_" + name, "Add", [("a", a), ("b", b)]))
        cs.append(single_op(F + "sub_" + name, "Sub", [("a", a), ("b", b)]))
        cs.append(single_op(F + "mul_" + name, "Mul", [("a", a), ("b", b)]))
        cs.append(single_op(F + "div_" + name, "Div",
                            [("a", a), ("b", away_from(b, [0.0], margin=0.3))]))
        # Pow with a positive base: gradients to base and exponent
        cs.append(single_op(F + "pow_" + name, "Pow",
                            [("a", _pos(r, *sa)), ("b", 1.5 * x(*sb))]))
        # Max/Min without ties
        p = x(*sa)
        q = _no_ties(r, p, x(*sb))
        cs.append(single_op(F + "max_" + name, "Max", [("a", p), ("b", q)]))
        cs.append(single_op(F + "min_" + name, "Min", [("a", p), ("b", q)]))
    # one operand constant (its gradient is not asked for)
    cs.append(single_op(F + "mul_const", "Mul", [("a", x(2, 3, 4))], consts={"w": x(3, 1)}))
    cs.append(single_op(F + "add_self", "Add", [("a", x(2, 3))], input_order=["a", "a"]))
    cs.append(single_op(F + "mul_self", "Mul", [("a", x(2, 3))], input_order=["a", "a"]))
    # Pow variants: x^2 (the fast path), constant float exponent with a negative base, an int64
    # exponent (mixed types), a scalar base raised to a tensor
    cs.append(single_op(F + "pow_square", "Pow", [("a", x(2, 3, 4))],
                        consts={"e": np.array(2.0)}))
    cs.append(single_op(F + "pow_cube_neg", "Pow", [("a", x(2, 3, 4))],
                        consts={"e": np.array([3.0])}))
    cs.append(single_op(F + "pow_int_exp", "Pow", [("a", x(2, 3, 4))],
                        consts={"e": np.array(3, np.int64)}))
    cs.append(single_op(F + "pow_int_exp_neg", "Pow", [("a", _pos(r, 2, 3))],
                        consts={"e": np.array([-2], np.int32)}))
    cs.append(single_op(F + "pow_scalar_base", "Pow", [("a", np.array(1.7)), ("b", x(2, 3))]))
    # PRelu: slope per channel, scalar, full shape
    xp = away_from(x(2, 4, 3, 3), [0.0])
    cs.append(single_op(F + "prelu_channel", "PRelu", [("x", xp), ("slope", x(4, 1, 1))]))
    cs.append(single_op(F + "prelu_scalar", "PRelu", [("x", xp), ("slope", np.array([0.25]))]))
    cs.append(single_op(F + "prelu_full", "PRelu", [("x", xp), ("slope", x(2, 4, 3, 3))]))
    cs.append(single_op(F + "prelu_const", "PRelu", [("x", xp)],
                        consts={"slope": np.full((4, 1, 1), 0.1)}))
    # big broadcasting reductions (threaded, and per-thread partial sums for few targets)
    big = x(4, 16, 32, 32)
    cs.append(single_op(F + "add_big_bias", "Add", [("a", big), ("b", x(16, 1, 1))]))
    cs.append(single_op(F + "add_big_scalar", "Add", [("a", big), ("b", x(1))]))
    cs.append(single_op(F + "mul_big_row", "Mul", [("a", big), ("b", x(32))]))
    cs.append(single_op(F + "mul_big_mid", "Mul", [("a", big), ("b", x(4, 1, 32, 1))]))
    cs.append(single_op(F + "sub_big_both", "Sub", [("a", x(4, 1, 32, 32)), ("b", x(16, 1, 1))]))
    return cs


def _no_ties(r, p, q, gap=0.05):
    """q moved so that it differs from p by at least gap wherever they meet (broadcast)."""
    full = np.broadcast_shapes(np.shape(p), np.shape(q))
    q = np.array(q, np.float64)
    for _ in range(100):
        d = np.broadcast_to(p, full) - np.broadcast_to(q, full)
        bad = np.abs(d) < gap
        if not bad.any():
            return q
        q = q + r.uniform(0.1, 0.3, q.shape)
    raise SystemExit("could not separate Max/Min operands")


def _variadic(r):
    x = lambda *s: _n(r, *s)  # noqa: E731
    cs = []
    for op in ("Max", "Min", "Sum", "Mean"):
        lo = op.lower()
        cs.append(single_op(F + lo + "_1input", op, [("a", x(2, 3))]))
        shapes = [(2, 3, 4), (3, 1), (4,)]
        vals = [x(*s) for s in shapes]
        if op in ("Max", "Min"):
            full = np.broadcast_shapes(*shapes)
            for _ in range(1000):  # resample until no two inputs tie anywhere
                b = [np.broadcast_to(v, full) for v in vals]
                ok = all(np.abs(b[i] - b[j]).min() > 0.02 for i in range(3) for j in range(i))
                if ok:
                    break
                vals = [x(*s) for s in shapes]
        cs.append(single_op(F + lo + "_3inputs", op,
                            [("a", vals[0]), ("b", vals[1]), ("c", vals[2])]))
        cs.append(single_op(F + lo + "_4inputs", op,
                            [(f"i{k}", v) for k, v in enumerate(
                                _apart(r, 4, (3, 4)) if op in ("Max", "Min")
                                else [x(3, 4) for _ in range(4)])]))
    return cs


def _where(r):
    x = lambda *s: _n(r, *s)  # noqa: E731
    cond = r.random((2, 3, 4)) < 0.5
    return [
        single_op(F + "where", "Where", [("X", x(2, 3, 4)), ("Y", x(2, 3, 4))],
                  consts={"cond": cond}, input_order=["cond", "X", "Y"]),
        single_op(F + "where_bcast", "Where", [("X", x(3, 1)), ("Y", x(4))],
                  consts={"cond": cond}, input_order=["cond", "X", "Y"]),
        single_op(F + "where_cond_bcast", "Where", [("X", x(2, 3, 4)), ("Y", x(1, 3, 1))],
                  consts={"cond": r.random((4,)) < 0.5}, input_order=["cond", "X", "Y"]),
        single_op(F + "where_scalar_y", "Where", [("X", x(2, 3, 4)), ("Y", np.array(0.3))],
                  consts={"cond": cond}, input_order=["cond", "X", "Y"]),
    ]


def cases():
    r = rng(7)
    return _unary(r) + _binary(r) + _variadic(r) + _where(r)
