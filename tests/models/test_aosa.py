#!/usr/bin/python3
"""AOSA (`stx explain --method aosa`, src/explain/aosa.c) against independent oracles.

  * tools/aosa_oracle.py (PyTorch, written from methods.md §4.2 and docs/perturbation.md), given
    stx's own optical flow for the clip (tests/flow_tool.c `clip`: the grey frames and flows
    exactly as stx__aosa computes them), so the masks, tracking, stacking and estimator are
    checked: max |stx - oracle| <= 1e-4 of the map's largest magnitude on the zoo's 3-D CNN
    (defaults; single tubes with an odd stride and crop, the mean baseline and softmax scores; a
    camera pan whose border points leave the frame) and its CNN-LSTM (layout NTCHW).
  * Batch invariance: --batch 1, 3 and 16 give the same map (--aosa-stride 16: 16 tubes).
  * On 8 held-out clips of the zoo (tools/zoo/action_data.py, seed 2), action_r3d: the map's
    maximum lies within 4 px of the target's tube more often than a random point (the rate is
    printed).
  * Option errors: one line naming the option, non-zero exit.

usage: test_aosa.py --stx BUILD/stx --tool BUILD/tests/stx_flow_tool --work DIR
"""
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'tools'))
sys.path.insert(0, os.path.join(ROOT, 'tools', 'zoo'))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import aosa_oracle  # noqa: E402
import cam_oracle  # noqa: E402
import harness  # noqa: E402
from harness import check, stx, work  # noqa: E402
from test_cam import rel, tube_hits  # noqa: E402
from zoo_common import preprocess  # noqa: E402

ZOO = os.path.join(ROOT, 'models', 'zoo')


def zoo_input(name, clip):
    model, facts = cam_oracle.load_model('zoo:' + name)
    frames = np.load(os.path.join(ZOO, 'clips', clip + '.npy')) if isinstance(clip, str) else clip
    x = preprocess(frames[None], facts['mean'], facts['std'], facts['layout'])
    return model, facts, x


def pan_clip(T=16, H=64, W=64, speed=(2.5, -1.5)):
    """A textured scene panning at a constant speed (px/frame): border points leave the frame."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    out = np.zeros((T, H, W, 3))
    waves = [(rng.uniform(0.15, 0.6), rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi),
              rng.uniform(20, 50, 3)) for _ in range(8)]
    for t in range(T):
        sx, sy = xx - speed[0] * t, yy - speed[1] * t
        for om, th, ph, amp in waves:
            out[t] += np.sin(om * (np.cos(th) * sx + np.sin(th) * sy) + ph)[..., None] * amp
    return np.clip(out + 128, 0, 255).astype(np.uint8)


def compare(label, name, clip, target, flags, stride=8, crop=16, stack=3, baseline='zero',
            score='logit'):
    model, facts, x = zoo_input(name, clip)
    path, flows, out = work('in.npy'), work('flows.npy'), work('out.npy')
    np.save(path, x)
    subprocess.run([harness.ARGS.tool, 'clip', path, facts['layout'], flows], check=True)
    stx(['explain', os.path.join(ZOO, name + '.onnx'), path, '--method', 'aosa', '--target',
         str(target), '--batch', '8', '-o', out] + flags)
    got = np.load(out)[0]
    want, info = aosa_oracle.aosa(model, x, target, np.load(flows), stride, crop, stack,
                                  baseline, facts['layout'], score)
    r = rel(got, want)
    check(got.shape == want.shape and r <= 1e-4,
          '%s %s %s: max rel diff %.2e (%d seeds, %d left the frame, tracks up to %.0f px)'
          % (name, label, ' '.join(flags) or 'defaults', r, info['seeds'], info['left'],
             info['travelled']))
    return info


def test_oracle():
    info = compare('blink', 'action_r3d', 'blink', 7, [])
    info = compare('move_left', 'action_r3d', 'move_left', 0,
                   ['--aosa-stride', '7', '--aosa-crop', '11', '--aosa-stack', '1', '--baseline',
                    'mean', '--score', 'prob'], stride=7, crop=11, stack=1, baseline='mean',
                   score='prob')
    check(info['travelled'] >= 10, 'move_left: the tracks follow the motion (%.0f px)'
          % info['travelled'])
    info = compare('camera pan', 'action_r3d', pan_clip(), 0, ['--aosa-stack', '5'], stack=5)
    check(info['left'] > 0, 'camera pan: %d tracked points leave the frame' % info['left'])
    compare('appear', 'action_cnn_lstm', 'appear', 6, [])


def test_batch_invariance():
    model = os.path.join(ZOO, 'action_r3d.onnx')
    clip = os.path.join(ZOO, 'clips', 'move_left.npy')
    maps = []
    for b in ('1', '3', '16'):
        out = work('bi_%s.npy' % b)
        stx(['explain', model, clip, '--method', 'aosa', '--aosa-stride', '16', '--batch', b,
             '-o', out])
        maps.append(np.load(out))
    r = max(rel(maps[1], maps[0]), rel(maps[2], maps[0]))
    check(r <= 1e-5, 'aosa with --batch 1, 3, 16: max rel diff %.1e' % r)


def test_localisation():
    n = 8
    frames, targets, mask, rand = harness.heldout(n)
    out = work('loc.npy')
    stx(['explain', os.path.join(ZOO, 'action_r3d.onnx'), frames, '--method', 'aosa', '--target',
         targets, '-o', out])
    hit = tube_hits(np.load(out), mask)[0]
    check(hit > rand, 'aosa on %d held-out clips, action_r3d: maximum within 4 px of the tube in '
          '%.2f of clips (a random point: %.2f)' % (n, hit, rand))


def test_errors():
    model = os.path.join(ZOO, 'action_r3d.onnx')
    clip = os.path.join(ZOO, 'clips', 'blink.npy')
    cases = [(['--aosa-stride', '200'], 'stride 200'), (['--aosa-stack', '64'], 'stack 64'),
             (['--aosa-stride', '0'], '--aosa-stride'), (['--aosa-crop', '0'], '--aosa-crop'),
             (['--aosa-stack', '65'], '--aosa-stack')]
    for flags, word in cases:
        out = work('err.npy')
        if os.path.exists(out):
            os.remove(out)
        p = stx(['explain', model, clip, '--method', 'aosa', '-o', out] + flags, ok=False)
        line = p.stderr.strip()
        check(p.returncode != 0 and word in line and len(line.splitlines()) == 1 and
              not os.path.exists(out), 'error names %s: %s' % (word, line))


if __name__ == '__main__':
    harness.run([('oracle', test_oracle), ('batch', test_batch_invariance),
                 ('loc', test_localisation), ('errors', test_errors)], ('--tool',))
