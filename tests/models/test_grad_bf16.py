#!/usr/bin/python3
"""`--precision bf16` for the gradient family: the forwards and the backward-data convolutions
between fused ones in bfloat16 (docs/gradient.md), against PyTorch autograd in float32
(tools/grad_oracle.py), the same oracle test_gradient.py holds the fp32 path to within 1e-3.

bfloat16 keeps 8 significant bits, so the bar is not 1e-3: on the zoo's trained action models
(the 3-D CNN, R(2+1)D and the attention CNN-LSTM, whose inner convolutions run in bfloat16)
the saliency and IG maps must correlate with the oracle's at Pearson >= 0.995 with a relative L2
error <= 0.08; on torchvision's R3D-18 with random weights, whose input gradient is a sum of
many cancelling terms, the saliency map at Pearson >= 0.93 (fp32 is within 1e-3 of the same
oracle). Also:
  * IG: the bf16 path really ran (the map is not bit-identical to stx's fp32 one), two runs
    give the same bits, and on the zoo models the completeness gap (16 steps) is at most one
    point of |f(x) - f(0)| above the fp32 run's (mostly the quadrature's, the same in both).
Methods that run in fp32 only (lrp, the transformer and CAM methods, extremal) refuse bf16
with one line.
Skipped, with a line saying so, on a CPU without AVX-512 BF16 / AMX.

usage: test_grad_bf16.py --stx build/stx --models build/models --work DIR"""
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
from test_gradient import totals  # noqa: E402
from zoo_common import preprocess  # noqa: E402

ZOO = os.path.join(ROOT, 'models', 'zoo')


def explain(path, x, method, target, precision, extra=()):
    np.save(work('in.npy'), x)
    out = work('out_%s.npy' % precision)
    p = stx(['explain', path, work('in.npy'), '--method', method, '--reduce', 'none',
             '--target', str(target), '--precision', precision, '-o', out] + list(extra))
    tot = totals(p.stdout)   # (attribution sum, f(x) - f(x')) per sample; one sample here
    gap = abs(tot[0][0] - tot[0][1]) / max(abs(tot[0][1]), 1e-30) if tot else None
    return np.load(out), gap


def agreement(got, want):
    a, b = got.ravel().astype(np.float64), want.ravel().astype(np.float64)
    return (float(np.corrcoef(a, b)[0, 1]),
            float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)))


def case(label, path, model, x, target, min_r, max_l2, ig_steps, gap_margin):
    for method, extra, kw in (('saliency', [], {}),
                              ('ig', ['--steps', str(ig_steps)], {'steps': ig_steps}))[
            :2 if ig_steps else 1]:
        got, gap = explain(path, x, method, target, 'bf16', extra)
        want = grad_oracle.attribute(model, x, method, target, **kw)
        r, l2 = agreement(got, want)
        check(got.shape == want.shape and r >= min_r and (max_l2 is None or l2 <= max_l2),
              '%s %s bf16 against PyTorch fp32: Pearson %.4f (>= %.3f), relative L2 %.3f%s' %
              (label, method, r, min_r, l2, '' if max_l2 is None else ' (<= %.2f)' % max_l2))
        if method != 'ig':
            continue
        again, _ = explain(path, x, method, target, 'bf16', extra)
        fp32, gap32 = explain(path, x, method, target, 'fp32', extra)
        check(not np.array_equal(got, fp32), '%s ig: the bf16 map differs from fp32 (bf16 ran)'
              % label)
        check(np.array_equal(got, again), '%s ig: two bf16 runs give the same bits' % label)
        if gap_margin is not None:
            check(gap is not None and gap32 is not None and gap <= gap32 + gap_margin,
                  '%s ig %d steps: completeness gap %.2f %% in bf16, %.2f %% in fp32 (at most '
                  '%.0f point more)' % (label, ig_steps, 100 * gap, 100 * gap32,
                                        100 * gap_margin))


def test_zoo():
    for name, clip, target in (('action_r3d', 'blink', 7), ('action_r2plus1d', 'move_left', 0),
                               ('action_cnn_lstm_attn', 'appear', 6)):
        model, facts = cam_oracle.load_model('zoo:' + name)
        frames = np.load(os.path.join(ZOO, 'clips', clip + '.npy'))
        x = preprocess(frames[None], facts['mean'], facts['std'], facts['layout'])
        case(name, os.path.join(ZOO, name + '.onnx'), model, x, target, 0.995, 0.08, 16, 0.01)


def test_r3d():
    path = os.path.join(harness.ARGS.models, 'r3d_18.onnx')
    if not os.path.exists(path):
        check(False, '%s missing (the models test exports it)' % path)
        return
    model, _ = cam_oracle.load_model('tv:r3d_18')
    model = grad_oracle.with_onnx_weights(model, path)
    x = np.load(os.path.join(harness.ARGS.models, 'r3d_18.input.npy'))
    case('r3d_18', path, model, x, 3, 0.93, None, 0, None)


def test_refused():
    x = np.load(os.path.join(ZOO, 'clips', 'blink.npy'))
    path = os.path.join(ZOO, 'action_r3d.onnx')
    out = work('err.npy')
    for method in ('lrp', 'extremal', 'gradcam', 'rollout'):
        if os.path.exists(out):
            os.remove(out)
        np.save(work('clip.npy'), x)
        p = stx(['explain', path, work('clip.npy'), '--method', method, '--precision', 'bf16',
                 '-o', out], ok=False)
        lines = p.stderr.strip().splitlines()
        check(p.returncode != 0 and len(lines) == 1 and 'bf16' in lines[0] and
              not os.path.exists(out), '%s --precision bf16: one-line refusal (%s)' %
              (method, p.stderr.strip()))


SKIP = []


def test_probe():
    probe = stx(['explain', os.path.join(ZOO, 'action_r3d.onnx'),
                 os.path.join(ZOO, 'clips', 'blink.npy'), '--method', 'saliency',
                 '--precision', 'bf16', '-o', work('probe.npy')], ok=False)
    if probe.returncode != 0 and 'AVX-512 BF16' in probe.stderr:
        print('skip  bf16 gradients: ' + probe.stderr.strip())
        SKIP.append(True)
    else:
        check(probe.returncode == 0, 'saliency --precision bf16 runs (%s)' % probe.stderr.strip())


def unless_skipped(fn):
    return lambda: None if SKIP else fn()


if __name__ == '__main__':
    harness.run([('probe', test_probe), ('zoo', unless_skipped(test_zoo)),
                 ('r3d', unless_skipped(test_r3d)), ('refused', test_refused)], ('--models',))
