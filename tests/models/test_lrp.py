"""LRP (stx explain --method lrp, docs/lrp.md) against independent references.

  rules      single Linear / Conv1d / Conv2d / Conv3d / ConvTranspose2d layers (channels 1 or 3,
             kernels 2 or 3, with and without bias, groups, stride, padding) behind a Reshape of
             the 5-D clip and a Flatten: every rule against tools/lrp_oracle.py, which applies
             the rule's explicit sums to the layer's Jacobian matrix (zennit's test_rules.py,
             peers.md case 11)
  bn         a Conv3d followed by a BatchNormalization node (built with onnx.helper, not fused by
             an exporter): the rules of the hand-folded layer
  layers     a lone BatchNormalization, Relu, AveragePool, Gemm and a final Softmax (skipped),
             composed by hand on each layer's matrix
  captum     Captum's SimpleLRPModel (peers.md case 4) and BasicModel_ConvNet_One_Conv (case 1):
             the published relevances, conservation gap 0
  gxi        LRP-0 / epsilon -> 0 on a bias-free 3-D CNN with ReLU, MaxPool, a residual Add and a
             global average pool equals gradient x input (PyTorch autograd)
  lstm       an LSTM -> Linear against an independent numpy implementation of Arras et al.'s rules
  gate       Linear(s) * sigmoid(Linear(g)) -> Linear: the signal takes the product's relevance
             (Arras et al.'s signal-take-all), against tools/lrp_oracle.gate_reference
  zoo        conservation on held-out clips of the zoo's action_r3d, action_r2plus1d and
             action_cnn_lstm (and on a copy of action_r3d with every bias zeroed, where epsilon
             and epsilon-gamma-box must conserve); the share of positive relevance in the tube
  determinism  two runs with the same thread count agree bit for bit
  errors     unknown rule, LayerNormalization on the path, a Softmax inside, score prob, a MatMul
             and an ungated Mul of two activations: one line, exit != 0, no file
"""
import os
import re
import sys
import warnings

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, 'tools'))
sys.path.insert(0, os.path.join(ROOT, 'tools', 'zoo'))

import lrp_oracle as oracle  # noqa: E402
from harness import check, run, stx, work  # noqa: E402
from zoo_common import preprocess  # noqa: E402

ZOO = os.path.join(ROOT, 'models', 'zoo')
warnings.filterwarnings('ignore')  # the ONNX exporter's notes on LSTM batch sizes
TOL = 1e-4  # float32 engine against a float64 reference: max error / max |reference|


def lrp(model, x, out, rule, extra=(), target=None):
    """Runs stx explain --method lrp --reduce none; returns (relevance, per-sample (sum,
    expected) from the conservation lines)."""
    inp = out.replace('.npy', '.in.npy')
    np.save(inp, np.ascontiguousarray(x, np.float32))
    args = ['explain', model, inp, '--method', 'lrp', '--rule', rule, '--reduce', 'none',
            '-o', out] + list(extra)
    if target is not None:
        args += ['--target', str(target)]
    p = stx(args)
    cons = [(float(a), float(b)) for a, b in
            re.findall(r'conservation: sum (\S+), expected (\S+),', p.stdout)]
    return np.load(out), cons


def rel_err(a, ref):
    return float(np.abs(a - ref).max() / max(np.abs(ref).max(), 1e-12))


# ---- single layers against the Jacobian reference ----------------------------------------------

LAYERS = [  # kind, cin, cout, k, bias, extra
    ('linear', 3, 3, 0, True, {}),
    ('linear', 1, 3, 0, False, {}),
    ('conv1d', 3, 3, 2, True, {}),
    ('conv1d', 1, 3, 3, False, {'padding': 1}),
    ('conv2d', 3, 1, 3, True, {}),
    ('conv2d', 3, 3, 2, False, {'stride': 2, 'padding': 1}),
    ('conv3d', 1, 3, 3, True, {'padding': 1}),
    ('conv3d', 3, 3, 2, True, {'groups': 3}),
    ('convt2d', 3, 1, 3, True, {'stride': 2, 'padding': 1}),
]
RULES = [  # stx rule, flags, oracle rule, oracle args, zero the bias
    ('zero', [], 'zero', {}, False),
    ('epsilon', ['--epsilon', '1e-6'], 'epsilon', {'eps': 1e-6}, False),
    ('epsilon', ['--epsilon', '1'], 'epsilon', {'eps': 1.0}, True),
    ('zplus', [], 'zplus', {}, False),
    ('gamma', ['--gamma', '0.25'], 'gamma', {'gamma': 0.25}, False),
    ('gamma', ['--gamma', '0.5'], 'gamma', {'gamma': 0.5}, False),
    ('alpha2beta1', [], 'alpha2beta1', {}, False),
    ('alpha1beta0', [], 'alpha1beta0', {}, False),
    ('zbox', ['--zbox', '-3,3'], 'zbox', {'low': -3.0, 'high': 3.0}, False),
    ('wsquare', [], 'wsquare', {}, False),
    ('flat', [], 'flat', {}, False),
]


def f32_weights(layer):
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(p.float().double())


def test_rules():
    worst = {}
    for li, (kind, cin, cout, k, bias, extra) in enumerate(LAYERS):
        layer, shape, clip = oracle.make_layer(kind, cin, cout, k, bias, seed=li, **extra)
        f32_weights(layer)
        rng = np.random.default_rng(li)
        x = rng.normal(size=(2,) + clip).astype(np.float32)
        xs = x.astype(np.float64).reshape((2,) + shape)
        with torch.no_grad():
            K = oracle.Wrapped(layer, shape)(torch.from_numpy(x.astype(np.float64))).shape[1]
        target = int(rng.integers(K))
        for zero_bias in (False, True):
            if zero_bias and not bias:
                continue
            lay = layer
            if zero_bias:
                import copy
                lay = copy.deepcopy(layer)
                with torch.no_grad():
                    lay.bias.zero_()
            path = work('layer%d%s.onnx' % (li, '_nb' if zero_bias else ''))
            oracle.export(oracle.Wrapped(lay, shape), clip, path, 2)
            for name, flags, orule, kw, needs_zero in RULES:
                if needs_zero != zero_bias and bias:
                    continue
                if zero_bias and not needs_zero:
                    continue
                ref = oracle.layer_reference(lay, shape, xs, target, orule, **kw)
                got, cons = lrp(path, x, work('l%d_%s.npy' % (li, orule)), name, flags, target)
                e = rel_err(got.reshape(ref.shape), ref)
                key = '%s %s' % (name, ' '.join(flags))
                worst[key] = max(worst.get(key, 0.0), e)
                if e > TOL:
                    check(False, '%s %s(%d->%d, k%d, bias %s) %s: rel err %.2e' %
                          (name, kind, cin, cout, k, bias and not zero_bias, extra, e))
                # the reported total is the sum of the relevance, the expected the target logit
                with torch.no_grad():
                    logit = oracle.Wrapped(lay, shape)(torch.from_numpy(
                        x.astype(np.float64)))[:, target].numpy()
                ok = all(abs(c[0] - got[n].sum()) <= 1e-3 * max(1, abs(c[0])) and
                         abs(c[1] - logit[n]) <= 1e-4 * max(1, abs(logit[n]))
                         for n, c in enumerate(cons)) and len(cons) == 2
                if not ok:
                    check(False, '%s on %s: conservation line %s vs sum %s logit %s' %
                          (name, kind, cons, got.reshape(2, -1).sum(1), logit))
    for key, e in worst.items():
        check(e <= TOL, 'rule %-22s on %d layers (Linear, Conv1/2/3-D, ConvT): max rel err %.1e' %
              (key, len(LAYERS), e))


# ---- Conv + BatchNormalization folding ---------------------------------------------------------

def test_bn():
    rng = np.random.default_rng(5)
    C, M = 3, 4
    w = rng.normal(size=(M, C, 3, 3, 3)).astype(np.float32)
    b = rng.normal(size=M).astype(np.float32)
    sc = rng.uniform(0.5, 2, M).astype(np.float32)
    be = rng.normal(size=M).astype(np.float32)
    mu = rng.normal(size=M).astype(np.float32)
    va = rng.uniform(0.5, 2, M).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(w, 'w'), (b, 'b'), (sc, 'sc'), (be, 'be'), (mu, 'mu'), (va, 'va')]]
    nodes = [helper.make_node('Conv', ['input', 'w', 'b'], ['c'], pads=[1] * 6, name='conv'),
             helper.make_node('BatchNormalization', ['c', 'sc', 'be', 'mu', 'va'], ['bn'],
                              epsilon=1e-3, name='bn'),
             helper.make_node('Flatten', ['bn'], ['output'], axis=1, name='flat')]
    g = helper.make_graph(nodes, 'convbn',
                          [helper.make_tensor_value_info('input', onnx.TensorProto.FLOAT,
                                                         [2, C, 4, 4, 4])],
                          [helper.make_tensor_value_info('output', onnx.TensorProto.FLOAT,
                                                         [2, M * 64])], inits)
    path = work('convbn.onnx')
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)]), path)
    # the folded layer in float64
    s = sc.astype(np.float64) / np.sqrt(va.astype(np.float64) + 1e-3)
    layer = torch.nn.Conv3d(C, M, 3, padding=1).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w.astype(np.float64) * s[:, None, None, None, None]))
        layer.bias.copy_(torch.from_numpy((b - mu) * s + be))
    x = rng.normal(size=(2, C, 4, 4, 4)).astype(np.float32)
    # the forward (the fused Conv+BN of stx run) against the hand-folded layer
    np.save(work('convbn_in.npy'), x)
    stx(['run', path, work('convbn_in.npy'), '-o', work('convbn_out.npy')])
    with torch.no_grad():
        y = torch.flatten(layer(torch.from_numpy(x.astype(np.float64))), 1).numpy()
    e = rel_err(np.load(work('convbn_out.npy')), y)
    check(e <= 1e-5, 'Conv3d + BatchNormalization forward (stx run, fused): rel err %.1e' % e)
    for name, flags, orule, kw in [('epsilon', [], 'epsilon', {'eps': 1e-6}),
                                   ('zplus', [], 'zplus', {}),
                                   ('alpha2beta1', [], 'alpha2beta1', {}),
                                   ('gamma', [], 'gamma', {'gamma': 0.25})]:
        ref = oracle.layer_reference(layer, (C, 4, 4, 4), x.astype(np.float64), 77, orule, **kw)
        got, _ = lrp(path, x, work('bn_%s.npy' % orule), name, flags, 77)
        e = rel_err(got, ref)
        check(e <= TOL, 'Conv3d + BatchNormalization folded, %s: rel err %.1e' % (name, e))


# ---- a lone BatchNormalization, AveragePool, a final Softmax -----------------------------------

def test_layers():
    """input -> BatchNormalization (no Conv before it: passes relevance) -> Conv3d 1x1 -> Relu ->
    AveragePool (z-rule) -> Flatten -> Gemm -> Softmax (skipped: the logit is seeded), epsilon
    everywhere, against the rules composed by hand on each layer's matrix."""
    rng = np.random.default_rng(11)
    C, M, K = 2, 3, 4
    sc, be = rng.uniform(0.5, 2, C), rng.normal(size=C)
    mu, va = rng.normal(size=C), rng.uniform(0.5, 2, C)
    conv = torch.nn.Conv3d(C, M, 1, bias=True).double()
    fc = torch.nn.Linear(M * 2 * 2 * 2, K).double()
    f32_weights(conv)
    f32_weights(fc)
    f32 = [a.astype(np.float32) for a in (sc, be, mu, va)]
    sc, be, mu, va = [a.astype(np.float64) for a in f32]
    inits = [numpy_helper.from_array(a, n) for a, n in zip(f32, ['sc', 'be', 'mu', 'va'])]
    inits += [numpy_helper.from_array(conv.weight.detach().numpy().astype(np.float32), 'w'),
              numpy_helper.from_array(conv.bias.detach().numpy().astype(np.float32), 'b'),
              numpy_helper.from_array(fc.weight.detach().numpy().astype(np.float32), 'fw'),
              numpy_helper.from_array(fc.bias.detach().numpy().astype(np.float32), 'fb')]
    nodes = [helper.make_node('BatchNormalization', ['input', 'sc', 'be', 'mu', 'va'], ['u'],
                              epsilon=1e-5),
             helper.make_node('Conv', ['u', 'w', 'b'], ['c']),
             helper.make_node('Relu', ['c'], ['r']),
             helper.make_node('AveragePool', ['r'], ['p'], kernel_shape=[1, 2, 2],
                              strides=[1, 2, 2]),
             helper.make_node('Flatten', ['p'], ['f'], axis=1),
             helper.make_node('Gemm', ['f', 'fw', 'fb'], ['z'], transB=1),
             helper.make_node('Softmax', ['z'], ['output'], axis=1)]
    g = helper.make_graph(nodes, 'layers',
                          [helper.make_tensor_value_info('input', onnx.TensorProto.FLOAT,
                                                         [1, C, 2, 4, 4])],
                          [helper.make_tensor_value_info('output', onnx.TensorProto.FLOAT,
                                                         [1, K])], inits)
    path = work('layers.onnx')
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)]), path)
    x = rng.normal(size=(1, C, 2, 4, 4)).astype(np.float32)
    sh = (1, C, 1, 1, 1)
    u = (x - mu.reshape(sh)) / np.sqrt(va.reshape(sh) + 1e-5) * sc.reshape(sh) + be.reshape(sh)
    pool = torch.nn.AvgPool3d((1, 2, 2), (1, 2, 2))
    with torch.no_grad():
        ut = torch.from_numpy(u)
        r = torch.relu(conv(ut))
        p = pool(r)
        z = fc(torch.flatten(p, 1)).numpy()[0]
    t = 1
    R = np.zeros(K)
    R[t] = z[t]
    A, b = oracle.layer_matrix(lambda v: fc(v), (M * 8,))
    Rp = oracle.rule_relevance('epsilon', A, b, p.numpy().reshape(-1), R, eps=1e-6)
    A, b = oracle.layer_matrix(lambda v: pool(v), (M, 2, 4, 4))
    Rr = oracle.rule_relevance('epsilon', A, b, r.numpy().reshape(-1), Rp, eps=1e-6)
    A, b = oracle.layer_matrix(lambda v: conv(v), (C, 2, 4, 4))
    Ru = oracle.rule_relevance('epsilon', A, b, u.reshape(-1), Rr, eps=1e-6)  # Relu: unchanged
    got, cons = lrp(path, x, work('layers.npy'), 'epsilon', [], t)
    e = rel_err(got.reshape(-1), Ru)
    check(e <= TOL and abs(cons[0][1] - z[t]) <= 1e-5 * max(1, abs(z[t])),
          'BatchNormalization (alone) -> Conv -> Relu -> AveragePool -> Gemm -> Softmax: rel err '
          '%.1e; seeded %.6f = the logit %.6f (not the probability)' % (e, cons[0][1], z[t]))


# ---- Captum's cases ---------------------------------------------------------------------------

def test_captum():
    x = np.array([1.0, 2.0, 3.0], np.float32).reshape(1, 1, 1, 1, 3)
    cases = [(None, 'epsilon', ['--epsilon', '1e-9'], [18, 36, 54]),
             (-2.0, 'gamma', ['--gamma', '1'], [28 / 3, 104 / 3, 52]),
             (-2.0, 'alpha1beta0', [], [12, 33.6, 50.4])]
    for w00, rule, flags, want in cases:
        m = oracle.captum_simple(w00)
        path = work('simple_%s.onnx' % rule)
        oracle.export(oracle.Wrapped(m, (3,)), (1, 1, 1, 3), path, 1)
        got, cons = lrp(path, x, work('simple_%s.npy' % rule), rule, flags, 0)
        e = float(np.abs(got.reshape(-1) - want).max())
        gap = cons[0][0] - cons[0][1]
        check(e <= 1e-4 and abs(gap) <= 1e-4,
              'Captum SimpleLRPModel %s: %s (Captum %s), max diff %.1e, conservation gap %.1e' %
              (rule, np.round(got.reshape(-1), 4).tolist(), np.round(want, 4).tolist(), e, gap))
    # the batch of three copies of 3x the input: [54, 108, 162] each
    m = oracle.captum_simple()
    path = work('simple_batch.onnx')
    oracle.export(oracle.Wrapped(m, (3,)), (1, 1, 1, 3), path, 3)
    got, _ = lrp(path, np.repeat(3 * x, 3, 0), work('simple_batch.npy'), 'epsilon',
                 ['--epsilon', '1e-9'], 0)
    e = float(np.abs(got.reshape(3, 3) - [54, 108, 162]).max())
    check(e <= 1e-3, 'Captum SimpleLRPModel epsilon, batch of 3 x 3x input: max diff %.1e' % e)

    # BasicModel_ConvNet_One_Conv, default epsilon rules: relevance of arange(16).view(4, 4)
    class One(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 2, 3, 1)
            self.fc1 = torch.nn.Linear(8, 4)
            with torch.no_grad():
                self.conv1.weight.fill_(1.0)
                self.conv1.bias.copy_(torch.tensor([-50.0, -75.0]))
                self.fc1.weight.copy_(torch.cat([torch.ones(4, 5), -torch.ones(4, 3)], 1))
                self.fc1.bias.zero_()

        def forward(self, x):
            x = x.reshape(-1, 1, 4, 4)
            return torch.relu(self.fc1(torch.relu(self.conv1(x)).reshape(-1, 8)))
    path = work('one_conv.onnx')
    oracle.export(One().double(), (1, 1, 4, 4), path, 1)
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 1, 4, 4)
    got, cons = lrp(path, x, work('one_conv.npy'), 'epsilon', ['--epsilon', '1e-9'], 0)
    want = np.array([[0, 1, 2, 3], [0, 5, 6, 7], [0, 9, 10, 11], [0, 0, 0, 0]], np.float64)
    e = float(np.abs(got.reshape(4, 4) - want).max())
    gap = cons[0][0] - cons[0][1]
    check(e <= 1e-4 and abs(gap) <= 1e-4,
          'Captum BasicModel_ConvNet_One_Conv epsilon: max diff %.1e to the published relevance,'
          ' conservation gap %.1e' % (e, gap))


# ---- epsilon -> 0 equals gradient x input on a bias-free ReLU network --------------------------

class Net3d(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv3d(3, 4, 3, padding=1, bias=False)
        self.pool = torch.nn.MaxPool3d(2)
        self.c2 = torch.nn.Conv3d(4, 4, 3, padding=1, bias=False)
        self.c3 = torch.nn.Conv3d(4, 4, 3, padding=1, bias=False)
        self.fc = torch.nn.Linear(4, 5, bias=False)

    def forward(self, x):
        a = self.pool(torch.relu(self.c1(x)))
        h = torch.relu(self.c2(a))
        h = torch.relu(self.c3(h) + a)              # residual Add
        return self.fc(h.mean((2, 3, 4)))            # ReduceMean


def test_gxi():
    torch.manual_seed(3)
    net = Net3d().double().eval()
    f32_weights(net)
    x = np.random.default_rng(3).normal(size=(2, 3, 4, 8, 8)).astype(np.float32)
    path = work('net3d.onnx')
    oracle.export(net, x.shape[1:], path, 2)
    xt = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    y = net(xt)
    target = 2
    y[:, target].sum().backward()
    gxi = (xt.grad * xt).detach().numpy()
    for rule, flags in [('zero', []), ('epsilon', ['--epsilon', '1e-9'])]:
        got, cons = lrp(path, x, work('net3d_%s.npy' % rule), rule, flags, target)
        e = rel_err(got, gxi)
        gaps = [abs(a - b) / max(abs(b), 1e-12) for a, b in cons]
        check(e <= 1e-3 and max(gaps) <= 1e-3,
              'bias-free 3-D CNN (ReLU, MaxPool, residual Add, mean), %s: rel err to gradient x '
              'input (PyTorch) %.1e, conservation gap %.1e' % (rule, e, max(gaps)))


# ---- LSTM (Arras et al.) -----------------------------------------------------------------------

def test_lstm():
    T, I, H, K = 5, 4, 6, 3
    torch.manual_seed(8)
    net = oracle.LstmNet(T, I, H, K).double().eval()
    f32_weights(net)
    path = work('lstm.onnx')
    oracle.export(net, (1, T, 1, I), path, 2)
    x = np.random.default_rng(8).normal(size=(2, 1, T, 1, I)).astype(np.float32)
    for eps in (1e-3, 0.5):
        ref = oracle.lstm_reference(net, x.astype(np.float64).reshape(2, T, I), 1, eps)
        got, _ = lrp(path, x, work('lstm_%g.npy' % eps), 'epsilon', ['--epsilon', str(eps)], 1)
        e = rel_err(got.reshape(ref.shape), ref)
        check(e <= TOL, 'LSTM -> Linear, epsilon %g (signal-take-all gates): rel err %.1e to the '
              'reference' % (eps, e))


def test_gate():
    I, H, K = 5, 7, 3
    torch.manual_seed(9)
    net = oracle.GateNet(I, H, K).double().eval()
    f32_weights(net)
    path = work('gate.onnx')
    oracle.export(net, (1, 1, 1, I), path, 2)
    x = np.random.default_rng(9).normal(size=(2, 1, 1, 1, I)).astype(np.float32)
    for eps in (1e-3, 0.5):
        ref = oracle.gate_reference(net, x.astype(np.float64).reshape(2, I), 2, eps)
        got, _ = lrp(path, x, work('gate_%g.npy' % eps), 'epsilon', ['--epsilon', str(eps)], 2)
        e = rel_err(got.reshape(ref.shape), ref)
        check(e <= TOL, 'signal * sigmoid gate -> Linear, epsilon %g (the signal takes all): '
              'rel err %.1e to the reference' % (eps, e))


# ---- the zoo -----------------------------------------------------------------------------------

def zoo_input(n=4):
    m = onnx.load(os.path.join(ZOO, 'action_r3d.onnx'))
    meta = {p.key: p.value for p in m.metadata_props}
    mean = [float(v) for v in meta['stx.mean'].split(',')]
    std = [float(v) for v in meta['stx.std'].split(',')]
    d = np.load(os.path.join(ZOO, 'action_test.npz'))
    return preprocess(d['video'][:n], mean, std, 'NCTHW'), d['mask'][:n], d['label'][:n]


def zero_biases(src, dst):
    m = onnx.load(src)
    conv_bias = {n.input[2] for n in m.graph.node if n.op_type in ('Conv', 'Gemm')
                 and len(n.input) > 2}
    for t in m.graph.initializer:
        if t.name in conv_bias:
            t.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(t)), t.name))
    onnx.save(m, dst)


def test_zoo():
    x, mask, label = zoo_input()
    nb = work('action_r3d_nobias.onnx')
    zero_biases(os.path.join(ZOO, 'action_r3d.onnx'), nb)
    for name, path in [('action_r3d', os.path.join(ZOO, 'action_r3d.onnx')),
                       ('action_r2plus1d', os.path.join(ZOO, 'action_r2plus1d.onnx')),
                       ('action_cnn_lstm', os.path.join(ZOO, 'action_cnn_lstm.onnx')),
                       ('action_r3d, biases zeroed', nb)]:
        lstm = 'lstm' in name
        for rule in ('epsilon', 'epsilon-plus') + (() if lstm else ('epsilon-gamma-box',)):
            out = work('zoo_%s_%s.npy' % (os.path.basename(path)[:-5], rule))
            got, cons = lrp(path, x.transpose(0, 2, 1, 3, 4) if lstm else x, out, rule)
            if lstm:
                got = got.transpose(0, 2, 1, 3, 4)
            gaps = [(a - b) / abs(b) for a, b in cons]
            ok = np.isfinite(got).all() and len(cons) == len(x)
            if 'zeroed' in name and rule == 'epsilon':
                ok &= max(abs(g) for g in gaps) <= 0.01    # no bias: the epsilon rule conserves
            check(ok, '%s %s: relative conservation gaps %s' %
                  (name, rule, ' '.join('%+.3f' % g for g in gaps)))
            if 'zeroed' in name and rule == 'epsilon-gamma-box':
                ok &= max(abs(g) for g in gaps) <= 0.01
            if rule == 'epsilon-plus' and 'zeroed' not in name:
                # share of the positive relevance inside the target's tube (the disc's region)
                m = np.maximum(got.sum(1), 0)
                share = [(m[i] * mask[i]).sum() / max(m[i].sum(), 1e-12) for i in range(len(x))]
                frac = [mask[i].mean() for i in range(len(x))]
                check(np.mean(share) > 2 * np.mean(frac),
                      '%s epsilon-plus: positive relevance in the tube %.2f (tube volume %.3f)'
                      % (name, np.mean(share), np.mean(frac)))


def test_determinism():
    x, _, _ = zoo_input(1)
    path = os.path.join(ZOO, 'action_r3d.onnx')
    a, _ = lrp(path, x, work('det1.npy'), 'epsilon-plus', ['--threads', '2'])
    b, _ = lrp(path, x, work('det2.npy'), 'epsilon-plus', ['--threads', '2'])
    check(np.array_equal(a, b), 'two runs with 2 threads give the same relevance bit for bit')


# ---- errors ------------------------------------------------------------------------------------

def test_errors():
    nodes = [helper.make_node('Reshape', ['input', 's1'], ['a']),
             helper.make_node('Reshape', ['input', 's2'], ['b']),
             helper.make_node('MatMul', ['a', 'b'], ['output'])]
    g = helper.make_graph(nodes, 'mm',
                          [helper.make_tensor_value_info('input', onnx.TensorProto.FLOAT,
                                                         [1, 3, 16, 64, 64])],
                          [helper.make_tensor_value_info('output', onnx.TensorProto.FLOAT,
                                                         [1, 1])],
                          [numpy_helper.from_array(np.array([1, -1], np.int64), 's1'),
                           numpy_helper.from_array(np.array([-1, 1], np.int64), 's2')])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)]),
              work('matmul2.onnx'))
    # a Mul of two activations, neither a sigmoid's output: no gate, refused
    nodes = [helper.make_node('Relu', ['input'], ['a']),
             helper.make_node('Mul', ['input', 'a'], ['b']),
             helper.make_node('ReduceSum', ['b', 'ax'], ['output'], keepdims=0)]
    g = helper.make_graph(nodes, 'mul2',
                          [helper.make_tensor_value_info('input', onnx.TensorProto.FLOAT,
                                                         [1, 3, 16, 64, 64])],
                          [helper.make_tensor_value_info('output', onnx.TensorProto.FLOAT,
                                                         [1, 3])],
                          [numpy_helper.from_array(np.array([2, 3, 4], np.int64), 'ax')])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)]),
              work('mul2.onnx'))
    x, _, _ = zoo_input(1)
    inp = work('err_in.npy')
    np.save(inp, x)
    np.save(work('err_in_ntchw.npy'), np.ascontiguousarray(x.transpose(0, 2, 1, 3, 4)))
    for what, model, args, pat in [
            ('unknown rule', 'action_r3d.onnx', ['--rule', 'epsilonn'], 'unknown rule'),
            ('LayerNormalization on the path', 'action_timesformer.onnx', [],
             '(LayerNormalization) is on the path'),
            ('Softmax inside', 'action_cnn_lstm_attn.onnx', [], '(Softmax) is inside'),
            ('score prob', 'action_r3d.onnx', ['--score', 'prob'], 'logit'),
            ('MatMul of two activations', work('matmul2.onnx'), [], '(MatMul)'),
            ('Mul of two activations, no gate', work('mul2.onnx'), [], '(Mul) combines')]:
        out = work('err_%s.npy' % what.replace(' ', '_'))
        if os.path.exists(out):
            os.remove(out)
        xin = work('err_in_ntchw.npy') if 'lstm' in model else inp
        p = stx(['explain', os.path.join(ZOO, model), xin, '--method', 'lrp', '-o', out] + args,
                ok=False)
        lines = p.stderr.strip().splitlines()
        check(p.returncode != 0 and len(lines) == 1 and pat in lines[0] and
              not os.path.exists(out), '%s: exit %d, %s' % (what, p.returncode, lines))


if __name__ == '__main__':
    run([('rules', test_rules), ('bn', test_bn), ('layers', test_layers), ('captum', test_captum),
         ('gxi', test_gxi), ('lstm', test_lstm), ('gate', test_gate),
         ('zoo', test_zoo), ('determinism', test_determinism), ('errors', test_errors)])
