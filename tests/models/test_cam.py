#!/usr/bin/python3
"""The CAM family (`stx explain`) against independent oracles.

  * Captum's analytic Grad-CAM case (shared/docs/peers.md §3.2 case 1), as a 5-D model: Grad-CAM
    at conv1 = [[11.25, 13.5], [20.25, 22.5]] and at relu1 = [[0, 4], [28, 32.5]].
  * Every method against tools/cam_oracle.py (PyTorch, hooks on the module, written from
    docs/cam.md), at the layer's resolution (--upsample none) and after trilinear upsampling:
    max|stx - oracle| <= 1e-3 * max|oracle|. Models: torchvision's R3D-18 and R(2+1)D-18 (random
    weights, tools/export_models.py) and the zoo's 3-D CNN, CNN-LSTM (frame-batched activations
    of its frame CNN, and its default layer: the LSTM's gated hidden states at every cell) and
    TimeSformer (token tensors at a block's output and at the final LayerNorm's, its default
    layer), two clips at once.
  * Batch invariance: Score-CAM with --batch 1, 3 and 64 gives the same map.
  * Localisation: on held-out action clips, the share whose Grad-CAM maximum falls within 4 px of
    the ground-truth tube (pointing game; >= 80 % for every zoo action model at its default
    layer; other methods are reported).
  * Bad input: one-line errors, non-zero exit, no output file.

usage: test_cam.py --stx BUILD/stx --models BUILD/models --work DIR [--quick]
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'tools'))
sys.path.insert(0, os.path.join(ROOT, 'tools', 'zoo'))

import cam_oracle  # noqa: E402
from zoo_common import preprocess  # noqa: E402

ZOO = os.path.join(ROOT, 'models', 'zoo')
TOL = 1e-3
GRAD = ['cam', 'gradcam', 'gradcam-frame', 'gradcam++', 'xgradcam', 'layercam', 'hirescam']
ACT = ['eigencam', 'ablationcam', 'scorecam', 'iscam']
failures = []


def check(ok, what):
    print(('ok    ' if ok else 'FAIL  ') + what, flush=True)
    if not ok:
        failures.append(what)


def stx(args, ok=True):
    p = subprocess.run([ARGS.stx] + args, capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise RuntimeError('stx %s failed (%d): %s' % (' '.join(args), p.returncode,
                                                        p.stderr.strip()))
    return p


def rel(a, b):
    scale = np.abs(b).max()
    return float(np.abs(a - b).max() / scale) if scale > 0 else float(np.abs(a - b).max())


# ---- Captum's analytic case ------------------------------------------------------------------

def captum_model(path):
    """BasicModel_ConvNet_One_Conv as a 5-D model: conv1 = Conv3d(1, 2, (1, 3, 3)) of ones with
    bias [-50, -75] -> ReLU -> flatten -> fc1 Linear(8, 4) rows [1 x5, -1 x3], bias 0 -> ReLU."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = np.ones((2, 1, 1, 3, 3), np.float32)
    b = np.array([-50, -75], np.float32)
    fw = np.tile(np.array([1, 1, 1, 1, 1, -1, -1, -1], np.float32), (4, 1))
    fb = np.zeros(4, np.float32)
    nodes = [
        helper.make_node('Conv', ['input', 'w', 'b'], ['c1'], name='/conv1/Conv',
                         kernel_shape=[1, 3, 3]),
        helper.make_node('Relu', ['c1'], ['r1'], name='/relu1/Relu'),
        helper.make_node('Flatten', ['r1'], ['f'], name='/Flatten', axis=1),
        helper.make_node('Gemm', ['f', 'fw', 'fb'], ['g'], name='/fc1/Gemm', transB=1),
        helper.make_node('Relu', ['g'], ['output'], name='/relu2/Relu'),
    ]
    graph = helper.make_graph(
        nodes, 'captum', [helper.make_tensor_value_info('input', TensorProto.FLOAT,
                                                        [1, 1, 1, 4, 4])],
        [helper.make_tensor_value_info('output', TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(w, 'w'), numpy_helper.from_array(b, 'b'),
         numpy_helper.from_array(fw, 'fw'), numpy_helper.from_array(fb, 'fb')])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    onnx.save(model, path)


def test_captum(work):
    path = os.path.join(work, 'captum.onnx')
    captum_model(path)
    x = os.path.join(work, 'captum_x.npy')
    np.save(x, np.arange(16, dtype=np.float32).reshape(1, 1, 1, 4, 4))
    for layer, want in (('conv1', [[11.25, 13.5], [20.25, 22.5]]), ('relu1', [[0, 4], [28, 32.5]])):
        out = os.path.join(work, 'captum_%s.npy' % layer)
        stx(['explain', path, x, '--method', 'gradcam', '--layer', layer, '--target', '0',
             '--upsample', 'none', '-o', out])
        got = np.load(out)
        check(got.shape == (1, 1, 2, 2) and np.allclose(got[0, 0], want, rtol=1e-6, atol=1e-5),
              'Captum Grad-CAM at %s = %s (got %s)' % (layer, want, got.reshape(-1).tolist()))


# ---- oracle comparisons ----------------------------------------------------------------------

def compare(label, spec, onnx_path, x, layer, methods, extra=None, token_grid=None):
    model, facts = cam_oracle.load_model(spec)
    xin = os.path.join(ARGS.work, label + '_x.npy')
    np.save(xin, x)
    # the oracle for every method at once: the single-pass gradient methods share one forward
    # and backward pass (their activations and gradients are the same)
    oracle = cam_oracle.explain_many(
        model, x, layer, methods, layout=facts['layout'],
        token_grid=token_grid or facts['token_grid'],
        per_method={m: {'samples': (extra or {}).get(m, {}).get('samples'),
                        'noise': (extra or {}).get(m, {}).get('noise')} for m in methods})
    for method in methods:
        opts = dict((extra or {}).get(method, {}))
        flags = []
        for k, v in opts.items():
            flags += ['--' + k, str(v)]
        res = oracle[method]
        for up, key in (('none', 'feature'), ('trilinear', 'map')):
            out = os.path.join(ARGS.work, '%s_%s_%s.npy' % (label, method, up))
            p = stx(['explain', onnx_path, xin, '--method', method, '--layer', layer,
                     '--upsample', up, '-o', out] + flags, ok=False)
            if p.returncode != 0:
                check(False, '%s %s %s: stx failed: %s' % (label, method, up, p.stderr.strip()))
                continue
            got, want = np.load(out), res[key]
            if got.shape != want.shape:
                check(False, '%s %s %s: shape %s, oracle %s' % (label, method, up, got.shape,
                                                                 want.shape))
                continue
            r = rel(got, want)
            check(r <= TOL and np.abs(want).max() > 0,
                  '%s %s at %s (%s): max rel diff %.2e (map max %.3g)' %
                  (label, method, layer, up, r, np.abs(want).max()))


def test_oracle():
    noise0 = {'smooth-gradcam++': {'samples': 2, 'noise': 0}, 'sscam': {'samples': 2, 'noise': 0},
              'iscam': {'samples': 3}}
    tv = [('r3d_18', GRAD + ['smooth-gradcam++', 'eigencam']),
          ('r2plus1d_18', ['gradcam', 'gradcam++', 'layercam', 'eigencam'])]
    for name, methods in tv[:1] if ARGS.quick else tv:
        path = os.path.join(ARGS.models, name + '.onnx')
        x = np.load(os.path.join(ARGS.models, name + '.input.npy'))
        compare(name, 'tv:' + name, path, x, 'layer4', methods, noise0)
    test = np.load(os.path.join(ZOO, 'action_test.npz'))
    every = GRAD + ['smooth-gradcam++'] + ACT + ['sscam']
    zoo = [('action_r3d', 'layer4', every), ('action_cnn_lstm', 'cnn.conv4', every),
           ('action_cnn_lstm', 'cells', ['gradcam', 'layercam', 'scorecam']),
           ('action_timesformer', 'blocks.1', every),
           ('action_timesformer', 'norm', ['gradcam', 'layercam', 'scorecam'])]
    for name, layer, methods in zoo:
        path = os.path.join(ZOO, name + '.onnx')
        model, facts = cam_oracle.load_model('zoo:' + name)
        x = preprocess(test['video'][:2], facts['mean'], facts['std'], facts['layout'])
        compare(name, 'zoo:' + name, path, x, layer, methods, noise0)


def test_batch_invariance():
    path = os.path.join(ZOO, 'action_r3d.onnx')
    clip = os.path.join(ZOO, 'clips', 'blink.npy')
    maps = []
    for b in (1, 3, 64):
        out = os.path.join(ARGS.work, 'scorecam_b%d.npy' % b)
        stx(['explain', path, clip, '--method', 'scorecam', '--batch', str(b), '-o', out])
        maps.append(np.load(out))
    r = max(rel(maps[1], maps[0]), rel(maps[2], maps[0]))
    check(r <= 1e-5, 'Score-CAM with --batch 1, 3, 64: max rel diff %.2e' % r)
    for b in (1, 5):
        out = os.path.join(ARGS.work, 'sscam_b%d.npy' % b)
        stx(['explain', path, clip, '--method', 'sscam', '--samples', '3', '--seed', '7',
             '--batch', str(b), '-o', out])
    a, b = (np.load(os.path.join(ARGS.work, 'sscam_b%d.npy' % k)) for k in (1, 5))
    check(rel(a, b) <= 1e-5, 'SS-CAM (seeded noise) with --batch 1 and 5: %.2e' % rel(a, b))


# ---- localisation on held-out clips -----------------------------------------------------------

def tube_hits(m, mask, tol=4):
    """Share of samples whose map maximum (t, y, x) lies within `tol` pixels of the target tube
    (the pointing game of Zhang et al., ECCV 2016: a hit within 15 px at 224 px, i.e. 4 px at
    64 px), and without tolerance. In frames where the disc is absent (appear's first frames,
    blink's window: the decisive evidence), the tube is the disc's place in the nearest frame
    where it is present: where it is missing from."""
    n, T = mask.shape[0], mask.shape[1]
    tube = mask.copy()
    present = mask.reshape(n, T, -1).any(2)
    for i in range(n):
        p = np.flatnonzero(present[i])
        for t in np.flatnonzero(~present[i]):
            tube[i, t] = mask[i, p[np.abs(p - t).argmin()]]
    t, y, x = np.unravel_index(m.reshape(n, -1).argmax(1), m.shape[1:])
    exact = tube[np.arange(n), t, y, x]
    near = np.array([np.hypot(*(np.argwhere(tube[i, t[i]]) - [y[i], x[i]]).T).min() <= tol
                     for i in range(n)])
    return float(near.mean()), float(exact.mean())


def test_localisation():
    import action_data
    n = 16 if ARGS.quick else 64
    data = action_data.make_dataset(n, 2)  # the zoo's test seed: never trained on
    frames = os.path.join(ARGS.work, 'heldout.npy')
    np.save(frames, data['video'])
    names = [m for m in json.load(open(os.path.join(ZOO, 'zoo.json')))['models']
             if m.startswith('action_')]
    methods = ['gradcam'] if ARGS.quick else ['gradcam', 'gradcam-frame', 'gradcam++',
                                               'layercam', 'eigencam']
    table = {}
    for name in sorted(names):
        for method in methods:
            out = os.path.join(ARGS.work, 'loc_%s_%s.npy' % (name, method))
            stx(['explain', os.path.join(ZOO, name + '.onnx'), frames, '--method', method,
                 '--target', ','.join(str(int(c)) for c in data['label']), '-o', out])
            table[(name, method)] = tube_hits(np.load(out), data['mask'])
    # a map that points at random: the share of voxels within 4 px of the tube
    rand = tube_hits(np.random.default_rng(0).random((n,) + data['mask'].shape[1:]),
                     data['mask'])[0]
    print('\nshare of %d held-out clips whose map maximum is within 4 px of the target tube '
          '(exactly inside, in brackets); target: the true class; default layers' % n)
    print('%-22s' % 'model' + ''.join('%16s' % m for m in methods))
    for name in sorted(names):
        print('%-22s' % name + ''.join('%16s' % ('%.2f (%.2f)' % table[(name, m)])
                                        for m in methods))
    print('a random point: %.2f' % rand)
    for name in sorted(names):
        hit = table[(name, 'gradcam')][0]
        check(hit >= 0.8, 'Grad-CAM localisation %s: %.2f >= 0.80 (a random point: %.2f)' %
              (name, hit, rand))


# ---- errors ------------------------------------------------------------------------------------

def test_errors():
    path = os.path.join(ZOO, 'action_r3d.onnx')
    clip = os.path.join(ZOO, 'clips', 'blink.npy')
    out = os.path.join(ARGS.work, 'never.npy')
    cases = [
        (['--method', 'nosuch'], "unknown method 'nosuch'"),
        (['--layer', 'nosuch'], "layer 'nosuch'"),
        (['--layer', 'fc'], 'maps to neither'),
        (['--target', '99'], 'out of range'),
        (['--upsample', 'cubic'], '--upsample'),
        (['--batch', '0'], '--batch'),
        (['--token-grid', '2,x,3'], '--token-grid'),
        (['--frame', '3'], 'frame 3 out of range'),
    ]
    for flags, want in cases:
        if os.path.exists(out):
            os.remove(out)
        p = stx(['explain', path, clip, '-o', out] + flags, ok=False)
        lines = p.stderr.strip().splitlines()
        check(p.returncode != 0 and len(lines) == 1 and want in lines[0] and
              not os.path.exists(out), 'error for %s: %s' % (' '.join(flags),
                                                              p.stderr.strip()[:150]))


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument('--stx', required=True)
    ap.add_argument('--models', required=True)
    ap.add_argument('--work', required=True)
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--only', default='', help='comma list: captum,errors,batch,oracle,loc')
    ARGS = ap.parse_args()
    only = [s for s in ARGS.only.split(',') if s]
    os.makedirs(ARGS.work, exist_ok=True)
    import torch
    torch.set_num_threads(2)
    tests = [('captum', lambda: test_captum(ARGS.work)), ('errors', test_errors),
             ('batch', test_batch_invariance), ('oracle', test_oracle),
             ('loc', test_localisation)]
    for name, fn in tests:
        if not only or name in only:
            fn()
    print('\n%d failure(s)' % len(failures))
    sys.exit(1 if failures else 0)


if __name__ == '__main__':
    main()
