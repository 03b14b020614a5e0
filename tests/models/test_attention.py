#!/usr/bin/python3
"""Transformer methods of `stx explain` (rollout, transformer-attribution, generic-attention)
against tools/attention_oracle.py, an independent PyTorch implementation of
../shared/docs/methods.md §5 (the model's forward re-written with explicit attention, dense
n x n matrices multiplied as the paper writes them, Chefer et al.'s LRP written by hand).

  * oracle: the zoo's TimeSformer (divided space-time attention, attention pooling) on three
    held-out clips in one batch, --upsample none: rollout with mean, max and min head fusion, a
    discard ratio and start layer 1, generic attention (also from block 1) and transformer
    attribution (also from block 1) agree within 1e-4 relative (max |stx - oracle| / max
    |oracle|); the oracle's re-written forward gives the PyTorch module's logits. ViViT-tiny of
    tools/export_models.py (joint attention with a class token, random weights, exported into
    the work folder): rollout and generic attention within 1e-4; its transformer attribution
    within 1e-3 (7.7e-5 measured), because the z-rule through random attention layers can be
    ill-conditioned: on other random inputs a 1e-7 change of the input moved the oracle's own
    map by 3e-3 (this input's figure is printed), and stx's forward is float32.
  * class token inside divided attention and mean pooling: DividedTiny of the oracle (random
    weights, exported into the work folder), once with TimeSformer's class token (replicated into
    every frame's spatial attention, averaged after; read by the head) and once without (mean
    pooling): all three methods within 1e-4, and the maps' variation about their mean within
    1e-4 too, except transformer attribution with mean pooling (1e-2: that map is 1/64 plus
    variations of 1e-5, near float32's resolution; 3e-3 measured).
  * localisation: on the 8 held-out clips (target: the true class), each method's map
    (upsampled to the clip) puts more of its mass inside the target's tube than the tube's
    share of the clip (what a uniform or random map gets), on average; the pointing game of
    tests/models/test_cam.py (the map's maximum within 4 px of the tube) is printed too.
  * errors: a model without attention (the zoo's 3-D CNN), a discard ratio out of [0, 1) or
    given to a gradient method, a start layer past the last block: a one-line message, a
    non-zero exit and no output file.

usage: test_attention.py --stx BUILD/stx --work DIR [--only oracle,vivit,tiny,loc,errors]
"""
import os
import subprocess
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'tools'))
sys.path.insert(0, os.path.join(ROOT, 'tools', 'zoo'))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import attention_oracle as ao  # noqa: E402
import harness  # noqa: E402
from harness import check, work  # noqa: E402
from test_cam import tube_hits  # noqa: E402
from zoo_common import preprocess  # noqa: E402

ZOO = os.path.join(ROOT, 'models', 'zoo')
TSF = os.path.join(ZOO, 'action_timesformer.onnx')
TOL = 1e-4
METHODS = ('rollout', 'generic-attention', 'transformer-attribution')

# (method, stx flags, oracle keywords)
CASES = [
    ('rollout', [], {}),
    ('rollout', ['--head-fusion', 'max'], {'head_fusion': 'max'}),
    ('rollout', ['--head-fusion', 'min', '--discard-ratio', '0.2', '--start-layer', '1'],
     {'head_fusion': 'min', 'discard_ratio': 0.2, 'start_layer': 1}),
    ('rollout', ['--discard-ratio', '0.5'], {'discard_ratio': 0.5}),
    ('generic-attention', [], {}),
    ('generic-attention', ['--start-layer', '1'], {'start_layer': 1}),
    ('transformer-attribution', [], {}),
    ('transformer-attribution', ['--start-layer', '1'], {'start_layer': 1}),
]


def stx(args, ok=True):
    return harness.stx(args + ['--threads', '1'], ok)


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def held_out():
    d = np.load(os.path.join(ZOO, 'action_test.npz'))
    model = ao.load('zoo:action_timesformer')
    m = model.stx_meta
    mean = [float(v) for v in m['stx.mean'].split(',')]
    std = [float(v) for v in m['stx.std'].split(',')]
    return model, preprocess(d['video'], mean, std, 'NCTHW'), d['label'], d['mask']


def explain(model_path, x, method, flags, name, extra=()):
    inp = work(name + '_in.npy')
    out = work(name + '.npy')
    np.save(inp, x)
    stx(['explain', model_path, inp, '--method', method, '-o', out] + list(flags) + list(extra))
    return np.load(out)


def test_oracle():
    model, x, labels, _ = held_out()
    x = x[:3]
    with torch.no_grad():
        xt = torch.from_numpy(x.astype(np.float64))
        e = float((ao.forward(model, xt, ao.Rec()) - model(xt)).abs().max())
    check(e < 1e-9, 'the oracle\'s forward gives the module\'s logits (max diff %.1e)' % e)
    for method, flags, kw in CASES:
        s = explain(TSF, x, method, flags + ['--upsample', 'none'], 'tsf')
        o = ao.explain(model, x, method, **kw)
        e = rel(s, o)
        check(s.shape == o.shape == (3,) + tuple(model.grid) and e <= TOL,
              'timesformer %s %s: rel. difference %.2e (<= %g), shape %s'
              % (method, ' '.join(flags) or '(defaults)', e, TOL, s.shape))


def test_vivit():
    mdir = work('models')
    path = os.path.join(mdir, 'vivit_tiny.onnx')
    if not os.path.exists(path):
        subprocess.run(['/usr/bin/python3', os.path.join(ROOT, 'tools', 'export_models.py'),
                        '--out', mdir, '--only', 'vivit_tiny'], check=True, capture_output=True)
    model = ao.load('tv:vivit_tiny')
    x = np.random.default_rng(7).standard_normal((2, 3, 8, 32, 32)).astype(np.float32)
    for method, flags, kw, tol in [
            ('rollout', ['--discard-ratio', '0.3', '--head-fusion', 'max'],
             {'discard_ratio': 0.3, 'head_fusion': 'max'}, TOL),
            ('generic-attention', [], {}, TOL),
            ('transformer-attribution', [], {}, 1e-3)]:
        s = explain(path, x, method, flags + ['--upsample', 'none'], 'vivit')
        o = ao.explain(model, x, method, **kw)
        e = rel(s, o)
        check(s.shape == o.shape == (2, 4, 4, 4) and e <= tol,
              'vivit_tiny %s: rel. difference %.2e (<= %g)' % (method, e, tol))
    # the conditioning that explains the looser bound: the oracle against itself
    o = ao.explain(model, x.astype(np.float64), 'transformer-attribution')
    xp = x + 1e-7 * np.random.default_rng(8).standard_normal(x.shape)
    o2 = ao.explain(model, xp, 'transformer-attribution')
    print('      vivit_tiny transformer attribution: a 1e-7 input change moves the oracle by '
          '%.1e relative' % rel(o2, o))


def test_tiny():
    x = np.random.default_rng(5).standard_normal((2, 3, 8, 32, 32)).astype(np.float32)
    for kind in ('cls', 'mean'):
        path = work('divided_tiny_%s.onnx' % kind)
        if not os.path.exists(path):
            ao.export_divided_tiny(kind == 'cls', path)
        model = ao.load('tiny:' + kind)
        for method, flags, kw in [
                ('rollout', [], {}),
                ('rollout', ['--head-fusion', 'max', '--discard-ratio', '0.3', '--start-layer',
                             '1'], {'head_fusion': 'max', 'discard_ratio': 0.3, 'start_layer': 1}),
                ('generic-attention', [], {}),
                ('transformer-attribution', [], {})]:
            s = explain(path, x, method, flags + ['--upsample', 'none'], 'tiny')
            o = ao.explain(model, x, method, **kw)
            # the maps' variation too: mean pooling's gradient maps are 1/64 + O(1e-5)
            c = rel(s - s.mean(axis=(1, 2, 3), keepdims=True),
                    o - o.mean(axis=(1, 2, 3), keepdims=True))
            tol_c = 1e-2 if (kind, method) == ('mean', 'transformer-attribution') else TOL
            e = rel(s, o)
            check(s.shape == o.shape == (2, 4, 4, 4) and e <= TOL and c <= tol_c,
                  'divided_tiny_%s %s %s: rel. difference %.2e (<= %g), of the variation '
                  '%.2e (<= %g)' % (kind, method, ' '.join(flags), e, TOL, c, tol_c))


def test_loc():
    _, x, labels, mask = held_out()
    vol = mask.reshape(len(mask), -1).mean(1)
    for method in METHODS:
        m = explain(TSF, x, method, ['--target', ','.join(map(str, labels))], 'loc')
        mp = np.clip(m, 0, None).reshape(len(m), -1)
        inside = (mp * mask.reshape(len(m), -1)).sum(1) / mp.sum(1)
        hits, exact = tube_hits(m, mask)
        print('      %-24s mass in tube %.3f (tube volume %.3f, ratio %.2f); pointing game %.2f '
              '(exact %.2f)' % (method, inside.mean(), vol.mean(), inside.mean() / vol.mean(),
                                hits, exact))
        check(inside.mean() > vol.mean(),
              '%s: mass inside the tube %.3f > the tube volume %.3f' % (method, inside.mean(),
                                                                        vol.mean()))
    # a random map, for scale
    rng = np.random.default_rng(3)
    r = rng.random(m.shape)
    hits, _ = tube_hits(r, mask)
    print('      random map: mass in tube %.3f; pointing game %.2f'
          % (((r * mask).reshape(len(r), -1).sum(1) / r.reshape(len(r), -1).sum(1)).mean(),
             hits))


def test_errors():
    _, x, _, _ = held_out()
    inp = work('err_in.npy')
    np.save(inp, x[:1])
    r3d = os.path.join(ZOO, 'action_r3d.onnx')
    for model, flags, what in [
            (r3d, ['--method', 'rollout'], 'no attention'),
            (r3d, ['--method', 'transformer-attribution', '--token-grid', '4,8,8'],
             'no attention'),
            (TSF, ['--method', 'rollout', '--discard-ratio', '1.5'], 'discard'),
            (TSF, ['--method', 'generic-attention', '--discard-ratio', '0.2'], 'discard'),
            (TSF, ['--method', 'rollout', '--start-layer', '3'], 'start'),
            (TSF, ['--method', 'rollout', '--token-grid', '4,8,4'], 'attention')]:
        out = work('err_out.npy')
        if os.path.exists(out):
            os.remove(out)
        p = stx(['explain', model, inp, '-o', out] + flags, ok=False)
        msg = p.stderr.strip()
        check(p.returncode != 0 and '\n' not in msg and what in msg and not os.path.exists(out),
              '%s: exit %d, one line naming "%s": %s' % (' '.join(flags), p.returncode, what,
                                                         msg))


if __name__ == '__main__':
    torch.set_num_threads(2)
    harness.run([('oracle', test_oracle), ('vivit', test_vivit), ('tiny', test_tiny),
                 ('loc', test_loc),
                 ('errors', test_errors)])
