#!/usr/bin/python3
"""The gradient family of `stx explain` (saliency, gradxinput, ig, smoothgrad, smoothgrad-sq,
vargrad, guided-backprop, deconvnet, guided-gradcam, swag) against independent oracles.

  * Captum's published Integrated Gradients case (../shared/docs/peers.md §3.2 case 3:
    BasicModel2, f = ReLU(ReLU(x1) - 1 - ReLU(x2)), x = (3, 1), baseline 0 -> IG (1.5, -0.5),
    completeness 1) and its identity "IG with one step (right Riemann) = gradient x (x - x')".
  * Every method against tools/grad_oracle.py (PyTorch autograd, Captum's quadratures, the same
    noise passed in) on the zoo's 3-D CNN, CNN-LSTM (NTCHW, through the LSTM), transformer, the
    per-frame phase CNN-LSTM with a (class, frame) target, and torchvision's R3D-18 (the oracle
    given the ONNX file's folded BatchNorm weights, grad_oracle.with_onnx_weights: with PyTorch's
    own unfolded BatchNorms, float32 ReLUs within rounding of zero flip and move R3D-18's input
    gradient by a few percent at a handful of voxels; see tests/models/test_grads.py): max
    difference <= 1e-3 of the oracle's largest magnitude.
  * IG's completeness gap at 128 steps below 1 % of |f(x) - f(x')| on every zoo action model.
  * Guided Grad-CAM = the oracle's guided backpropagation x tools/cam_oracle.py's Grad-CAM.
  * Two-stage phase models (phase_cnn -> causal phase_mstcn): the attribution over (feature,
    time), the frames that matter most and their pixel maps through both models = PyTorch.
  * SWAG-V on a model linear in its input: the mean of |w| (summed over colours) over each of
    scikit-image's SLIC supervoxels.
  * --batch 1, 5 and 16 give the same IG and SmoothGrad maps; channel reductions as documented.
  * Sanity on the zoo transformer's held-out clips: the maps' maxima fall in the target's tube
    more often than a random point, and their mass in the tube exceeds its volume share.
  * Errors: steps, schedule, noise file, reduce none with a report folder, bf16 with lrp
    (the gradient family's bf16 path: test_grad_bf16.py).

usage: test_gradient.py --stx build/stx --models build/models --work DIR [--only NAME,...]"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, 'tools'))
sys.path.insert(0, os.path.join(ROOT, 'tools', 'zoo'))
sys.path.insert(0, HERE)

import cam_oracle  # noqa: E402
import grad_oracle  # noqa: E402
import harness  # noqa: E402
from harness import check, stx, work  # noqa: E402
from test_cam import rel, tube_hits  # noqa: E402
from zoo_common import preprocess  # noqa: E402

ZOO = os.path.join(ROOT, 'models', 'zoo')


def explain(model, x, method, extra=(), target=None):
    np.save(work('in.npy'), x)
    out = work('out.npy')
    args = ['explain', model, work('in.npy'), '--method', method, '-o', out] + list(extra)
    if target is not None:
        args += ['--target', str(target)]
    p = stx(args)
    return np.load(out), p.stdout


def totals(stdout):
    """(sum, expected) per sample from the CLI's completeness lines."""
    res = []
    for line in stdout.splitlines():
        if 'completeness: sum' in line:
            part = line.split('completeness: sum ')[1]
            s = float(part.split(',')[0])
            e = float(part.split('expected ')[1].split(',')[0])
            res.append((s, e))
    return res


# ---- Captum's analytic case ------------------------------------------------------------------

def basic_model2(path):
    """f(x1, x2) = ReLU(ReLU(x1) - 1 - ReLU(x2)) on a 5-D input (N, 2, 1, 1, 1), output (N, 1)."""
    import onnx
    from onnx import TensorProto, helper
    nodes = [helper.make_node('Split', ['x', 'sp'], ['a', 'b'], axis=1),
             helper.make_node('Relu', ['a'], ['ra']),
             helper.make_node('Relu', ['b'], ['rb']),
             helper.make_node('Sub', ['ra', 'one'], ['s1']),
             helper.make_node('Sub', ['s1', 'rb'], ['s2']),
             helper.make_node('Relu', ['s2'], ['r']),
             helper.make_node('Reshape', ['r', 'shape'], ['y'])]
    g = helper.make_graph(nodes, 'basic2',
                          [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 2, 1, 1, 1])],
                          [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 1])],
                          [helper.make_tensor('sp', TensorProto.INT64, [2], [1, 1]),
                           helper.make_tensor('one', TensorProto.FLOAT, [], [1.0]),
                           helper.make_tensor('shape', TensorProto.INT64, [2], [1, 1])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid('', 17)]), path)


def test_captum():
    path = work('basic2.onnx')
    basic_model2(path)
    x = np.array([3, 1], np.float32).reshape(1, 2, 1, 1, 1)
    got, out = explain(path, x, 'ig', ['--reduce', 'none', '--schedule', 'gauss-legendre'],
                       target=0)
    tot = totals(out)
    check(np.allclose(got.ravel(), [1.5, -0.5], atol=1e-6) and len(tot) == 1 and
          abs(tot[0][0] - 1) < 1e-6 and abs(tot[0][1] - 1) < 1e-6,
          'Captum BasicModel2: IG (Gauss-Legendre, 50 steps) %s = (1.5, -0.5), sum %s and '
          'f(x) - f(0) = 1' % (got.ravel(), tot))
    for sched in ('left', 'right', 'middle', 'trapezoid'):   # the kink at alpha = 1/2
        got, _ = explain(path, x, 'ig', ['--reduce', 'none', '--steps', '500', '--schedule',
                                         sched], target=0)
        check(np.allclose(got.ravel(), [1.5, -0.5], atol=1e-2),
              'Captum BasicModel2: IG %s 500 steps %s ~ (1.5, -0.5)' % (sched, got.ravel()))
    # without multiplying by the inputs: the path-averaged gradient (0.5, -0.5)
    avg = got.ravel() / x.ravel()
    check(np.allclose(avg, [0.5, -0.5], atol=1e-2),
          'Captum BasicModel2: averaged gradient %s ~ (0.5, -0.5)' % avg)
    # one right-Riemann step = gradient at x times (x - 0)
    r3d = os.path.join(ZOO, 'action_r3d.onnx')
    model, facts = zoo_model('action_r3d')
    xz = preprocess(np.load(os.path.join(ZOO, 'clips', 'appear.npy'))[None], facts['mean'],
                    facts['std'], 'NCTHW')
    ig1, _ = explain(r3d, xz, 'ig', ['--reduce', 'none', '--steps', '1', '--schedule', 'right'],
                     target=6)
    gxi, _ = explain(r3d, xz, 'gradxinput', ['--reduce', 'none'], target=6)
    check(rel(ig1, gxi) <= 1e-6,
          'IG with one right-Riemann step = gradient x input (zero baseline): %.1e' %
          rel(ig1, gxi))


# ---- PyTorch oracles --------------------------------------------------------------------------

_ZOO_MODELS = {}


def zoo_model(name):
    """cam_oracle.load_model('zoo:' + name), read once per model (the oracles never change a
    model: hooks and the guided ReLU are removed after each call)."""
    if name not in _ZOO_MODELS:
        _ZOO_MODELS[name] = cam_oracle.load_model('zoo:' + name)
    return _ZOO_MODELS[name]


def zoo_case(name, clip='blink'):
    model, facts = zoo_model(name)
    frames = np.load(os.path.join(ZOO, 'clips', clip + '.npy'))
    return model, preprocess(frames[None], facts['mean'], facts['std'], facts['layout'])


def compare(label, path, model, x, method, target, extra=(), frame=None, tol=1e-3, **kw):
    args = ['--reduce', 'none'] + list(extra)
    if frame is not None:
        args += ['--frame', str(frame)]
    got, _ = explain(path, x, method, args, target=target)
    want = grad_oracle.attribute(model, x, method, target, frame=frame, **kw)
    r = rel(got, want)
    l2 = float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))
    check(got.shape == want.shape and r <= tol,
          '%s %s %s: max diff %.2e of the largest, relative L2 %.1e' %
          (label, method, ' '.join(extra), r, l2))


def test_oracle():
    rng = np.random.default_rng(5)
    for name, target in (('action_r3d', 7), ('action_cnn_lstm', 7), ('action_timesformer', 7)):
        model, x = zoo_case(name)
        path = os.path.join(ZOO, name + '.onnx')
        for method in ('saliency', 'gradxinput', 'guided-backprop', 'deconvnet'):
            if name != 'action_r3d' and method in ('gradxinput', 'deconvnet'):
                continue
            compare(name, path, model, x, method, target)
        compare(name, path, model, x, 'ig', target, ['--steps', '16'], steps=16)
        if name == 'action_r3d':
            for sched in ('gauss-legendre', 'left', 'right', 'trapezoid'):
                compare(name, path, model, x, 'ig', target,
                        ['--steps', '8', '--schedule', sched, '--batch', '3'], steps=8,
                        schedule=sched)
            base = rng.normal(size=x.shape[1:]).astype(np.float32)
            np.save(work('base.npy'), base)
            compare(name, path, model, x, 'ig', target, ['--steps', '8', '--baseline',
                                                         work('base.npy')],
                    steps=8, baseline=base)
        noise = rng.normal(size=(6,) + x.shape[1:]).astype(np.float32)
        np.save(work('noise.npy'), noise)
        methods = ('smoothgrad', 'smoothgrad-sq', 'vargrad') if name == 'action_r3d' else \
            ('smoothgrad',)
        for method in methods:
            compare(name, path, model, x, method, target,
                    ['--noise-file', work('noise.npy'), '--noise', '0.2'], noise=noise,
                    level=0.2)
    # per-frame: the phase CNN-LSTM, class 2 at frame 20 of a 24-frame window
    model, facts = zoo_model('phase_cnn_lstm')
    d = np.load(os.path.join(ZOO, 'procedure_test.npz'))
    x = preprocess(d['video'][100:124][None], facts['mean'], facts['std'], 'NTCHW')
    path = os.path.join(ZOO, 'phase_cnn_lstm.onnx')
    for method in ('saliency', 'ig'):
        compare('phase_cnn_lstm (class 2, frame 20)', path, model, x, method, 2,
                ['--steps', '8'] if method == 'ig' else [], frame=20, steps=8)
    r3d = os.path.join(harness.ARGS.models, 'r3d_18.onnx')
    if not os.path.exists(r3d):
        check(False, '%s missing (the models test exports it)' % r3d)
        return
    model, _ = cam_oracle.load_model('tv:r3d_18')
    model = grad_oracle.with_onnx_weights(model, r3d)   # the exporter's folded BatchNorms
    x = np.load(os.path.join(harness.ARGS.models, 'r3d_18.input.npy'))
    for method, extra, kw in (('saliency', [], {}), ('ig', ['--steps', '4'], {'steps': 4}),
                              ('guided-backprop', [], {})):
        compare('r3d_18', r3d, model, x, method, 3, extra, **kw)
    noise = rng.normal(size=(3,) + x.shape[1:]).astype(np.float32)
    np.save(work('noise.npy'), noise)
    compare('r3d_18', r3d, model, x, 'smoothgrad', 3, ['--noise-file', work('noise.npy')],
            noise=noise)


def test_completeness():
    for name in ('action_r3d', 'action_r2plus1d', 'action_cnn_lstm', 'action_cnn_lstm_attn',
                 'action_timesformer'):
        for clip in ('appear', 'blink', 'move_left'):
            _, x = zoo_case(name, clip)
            _, out = explain(os.path.join(ZOO, name + '.onnx'), x, 'ig', ['--steps', '128'])
            s, e = totals(out)[0]
            gap = abs(s - e) / abs(e)
            check(gap < 0.01, '%s %s: IG (midpoint, 128 steps) sums to %.5f, f(x) - f(0) = '
                  '%.5f: gap %.3f %%' % (name, clip, s, e, 100 * gap))


def test_guided_gradcam():
    model, x = zoo_case('action_r3d')
    path = os.path.join(ZOO, 'action_r3d.onnx')
    got, _ = explain(path, x, 'guided-gradcam', ['--reduce', 'none'], target=7)
    gb = grad_oracle.attribute(model, x, 'guided-backprop', 7)
    cam = cam_oracle.explain(model, x, 'layer4', 'gradcam', targets=[7])['map']
    want = gb * cam[:, None]
    check(rel(got, want) <= 1e-3, 'guided-gradcam = guided backprop x Grad-CAM (oracles): %.1e' %
          rel(got, want))
    # reductions of the raw attribution, as documented
    raw, _ = explain(path, x, 'saliency', ['--reduce', 'none'], target=7)
    for red, f in (('sum', lambda a: a.sum(1)), ('abs-sum', lambda a: np.abs(a).sum(1)),
                   ('max-abs', lambda a: np.abs(a).max(1)),
                   ('l2', lambda a: np.sqrt((a.astype(np.float64) ** 2).sum(1)))):
        m, _ = explain(path, x, 'saliency', ['--reduce', red], target=7)
        check(rel(m, f(raw.astype(np.float64))) <= 1e-6,
              'saliency --reduce %s = the raw gradient reduced over colours' % red)


def test_swag():
    from test_slic import Case, oracle_labels
    case = Case(np.load(os.path.join(ZOO, 'clips', 'appear.npy')), seed=3)
    out = work('swag.npy')
    stx(['explain', case.model, case.input, '--method', 'swag', '--n-segments', '120',
         '--compactness', '10', '--target', '0', '-o', out])
    got = np.load(out)[0]
    labels = oracle_labels(case.pixels, 120, 10)
    sal = np.abs(case.w[0]).astype(np.float64).sum(0)   # |d y / d x| summed over colours
    want = (np.bincount(labels.ravel(), weights=sal.ravel()) /
            np.bincount(labels.ravel()))[labels]
    check(rel(got, want) <= 1e-5,
          'swag on a linear model = mean |w| over scikit-image\'s %d supervoxels: %.1e' %
          (labels.max() + 1, rel(got, want)))


def test_chain():
    """phase_cnn -> phase_mstcn: the temporal attribution over (feature, time) and the pixels x
    gradient maps of the top frames, against PyTorch through both models."""
    import torch
    cnn, fc = cam_oracle.load_model('zoo:phase_cnn')
    tcn, _ = cam_oracle.load_model('zoo:phase_mstcn')
    d = np.load(os.path.join(ZOO, 'procedure_test.npz'))
    frames = d['video'][100:140]
    np.save(work('frames.npy'), frames)
    x = torch.from_numpy(preprocess(frames, fc['mean'], fc['std'], 'NCHW')).requires_grad_(True)
    feats = cnn(x)[0]
    seq = feats.t()[None]                     # (1, F, T)
    target, frame = 1, 30
    for method, extra, kw in (('gradxinput', [], {}), ('ig', ['--steps', '8'], {'steps': 8})):
        out, tout = work('chain.npy'), work('chain_t.npy')
        p = stx(['explain', os.path.join(ZOO, 'phase_mstcn.onnx'), work('frames.npy'),
                 '--frame-model', os.path.join(ZOO, 'phase_cnn.onnx'), '--method', method,
                 '--target', str(target), '--frame', str(frame), '--top-frames', '4', '-o', out,
                 '--temporal-out', tout] + extra)
        want_t = grad_oracle.attribute(tcn, seq.detach().numpy(), method, target, frame=frame,
                                       **kw)[0]
        got_t = np.load(tout)
        curve = want_t.sum(0)
        check(rel(got_t, want_t) <= 1e-3 and np.abs(curve[frame + 1:]).max() == 0,
              'chain %s: attribution over (feature, time) = PyTorch on the CNN\'s features: '
              '%.1e; nothing after frame %d (causal)' % (method, rel(got_t, want_t), frame))
        top = [int(v.split(' ')[0]) for v in
               p.stdout.split('over features):')[1].splitlines()[0].strip().split(') ')]
        want_top = [int(t) for t in np.argsort(-np.abs(curve), kind='stable')[:4]]
        # pixels x d score / d pixels through both models at those frames
        x.grad = None
        score = tcn(feats.t()[None])[0, target, frame]
        w = torch.zeros_like(feats)
        g_seq, = torch.autograd.grad(score, feats, retain_graph=True)
        w[want_top] = g_seq[want_top]
        g_pix, = torch.autograd.grad(feats, x, grad_outputs=w, retain_graph=True)
        want = np.zeros((1,) + (len(frames),) + frames.shape[1:3])
        want[0] = (g_pix.double() * x.double()).sum(1).detach().numpy()
        got = np.load(out)
        check(top == want_top and rel(got, want) <= 1e-3,
              'chain %s: top frames %s (PyTorch %s), spatial maps = PyTorch through both '
              'models: %.1e' % (method, top, want_top, rel(got, want)))
    for model, extra, want in (('action_r3d', [], 'feature sequence'),
                               ('phase_mstcn', ['--method', 'gradcam'], 'clip input')):
        out = work('chain_err.npy')
        if os.path.exists(out):
            os.remove(out)
        p = stx(['explain', os.path.join(ZOO, model + '.onnx'), work('frames.npy'),
                 '--frame-model', os.path.join(ZOO, 'phase_cnn.onnx'), '-o', out] + extra,
                ok=False)
        lines = p.stderr.strip().splitlines()
        check(p.returncode != 0 and len(lines) == 1 and want in lines[0] and
              not os.path.exists(out), 'chain with %s %s: one-line error, no output (%s)' %
              (model, ' '.join(extra), p.stderr.strip()))


def test_batch():
    _, x = zoo_case('action_cnn_lstm')
    path = os.path.join(ZOO, 'action_cnn_lstm.onnx')
    for method, extra in (('ig', ['--steps', '10']), ('smoothgrad', ['--samples', '7'])):
        maps = [explain(path, x, method, extra + ['--batch', b])[0] for b in ('1', '5', '16')]
        r = max(rel(m, maps[0]) for m in maps[1:])
        check(r <= 1e-5, '%s --batch 1, 5, 16: the same map (max diff %.1e)' % (method, r))


def test_sanity():
    d = np.load(os.path.join(ZOO, 'action_test.npz'))
    _, facts = zoo_model('action_timesformer')
    x = preprocess(d['video'], facts['mean'], facts['std'], 'NCTHW')
    mask = d['mask']
    path = os.path.join(ZOO, 'action_timesformer.onnx')
    target = ','.join(str(int(v)) for v in d['label'])
    rng = np.random.default_rng(0)
    rand = rng.random(mask.shape)
    base_hit, _ = tube_hits(rand, mask)
    vol = float(mask.mean())
    for method, extra in (('saliency', ['--reduce', 'abs-sum']),
                          ('gradxinput', ['--reduce', 'abs-sum']),
                          ('ig', ['--steps', '16', '--reduce', 'abs-sum']),
                          ('smoothgrad', ['--samples', '8', '--reduce', 'abs-sum']),
                          ('guided-backprop', ['--reduce', 'abs-sum']),
                          ('guided-gradcam', ['--reduce', 'abs-sum'])):
        m, _ = explain(path, x, method, extra, target=target)
        hit, _ = tube_hits(m, mask)
        mass = float((np.abs(m) * mask).sum() / np.abs(m).sum())
        check(hit > base_hit and mass > vol,
              'timesformer %s on 8 held-out clips: map maximum in the tube %.2f (random %.2f), '
              'mass in the tube %.3f (its volume %.3f)' % (method, hit, base_hit, mass, vol))


def test_errors():
    _, x = zoo_case('action_r3d')
    np.save(work('in.npy'), x)
    path = os.path.join(ZOO, 'action_r3d.onnx')
    bad_noise = work('bad_noise.npy')
    np.save(bad_noise, np.zeros((2, 3, 4, 5, 6), np.float32))
    out = work('err.npy')
    for extra, want in ((['--method', 'ig', '--steps', '1', '--schedule', 'trapezoid'], 'steps'),
                        (['--method', 'ig', '--schedule', 'simpson'], '--schedule'),
                        (['--method', 'smoothgrad', '--noise-file', bad_noise], 'noise samples'),
                        (['--method', 'saliency', '--reduce', 'mean'], '--reduce'),
                        (['--method', 'lrp', '--precision', 'bf16'], 'bf16'),
                        (['--method', 'swag', '--reduce', 'none'], 'swag')):
        if os.path.exists(out):
            os.remove(out)
        p = stx(['explain', path, work('in.npy'), '-o', out] + extra, ok=False)
        lines = p.stderr.strip().splitlines()
        check(p.returncode != 0 and len(lines) == 1 and want in lines[0] and
              not os.path.exists(out),
              '%s: one-line error, no output (%s)' % (' '.join(extra), p.stderr.strip()))
    p = stx(['explain', path, os.path.join(ZOO, 'clips', 'appear.npy'), '--method', 'saliency',
             '--reduce', 'none', '--out-dir', work('rep')], ok=False)
    check(p.returncode != 0 and '--reduce none' in p.stderr and not os.path.exists(work('rep')),
          '--reduce none with --out-dir: refused (%s)' % p.stderr.strip())


if __name__ == '__main__':
    import torch
    torch.set_num_threads(2)
    harness.run([('captum', test_captum), ('oracle', test_oracle),
                 ('completeness', test_completeness), ('guided_gradcam', test_guided_gradcam),
                 ('swag', test_swag), ('chain', test_chain), ('batch', test_batch), ('sanity', test_sanity),
                 ('errors', test_errors)], extra=('--models',))
