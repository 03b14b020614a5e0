#!/usr/bin/python3
"""The trained model zoo (models/zoo) in stx against PyTorch's goldens.

For every model in models/zoo/zoo.json:
  * forward: stx's output on the committed held-out test clips vs PyTorch's (goldens/NAME.npz,
    made by tools/zoo/train_zoo.py): max|stx - torch| / max|torch| <= 1e-4;
  * the same from raw uint8 frames, preprocessed by stx from the model's metadata (layout,
    mean/std): checks that stx reads the metadata as the training script meant it;
  * backward: the input gradient of the true class's logit (at the last frame for per-frame
    models) vs PyTorch autograd: max|stx - torch| / max|torch| <= 1e-3 (and relative L2 <= 1e-3);
  * the TeCNO-style chain: phase_cnn's features computed by stx on every frame of the test video
    equal the features PyTorch fed to phase_mstcn's golden.
The model facts in the metadata must also show in `stx info`.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'tools', 'zoo'))
from zoo_common import preprocess  # noqa: E402

FWD_TOL = 1e-4
GRAD_L2_TOL = 1e-3
GRAD_MAX_TOL = 1e-3

failures = []


def run(args):
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError('%s failed (%d): %s' % (' '.join(args), p.returncode,
                                                    p.stderr.strip()))
    return p.stdout


def rel_max(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def rel_l2(a, b):
    return float(np.linalg.norm((a - b).ravel()) / max(np.linalg.norm(b.ravel()), 1e-30))


def check(name, what, value, tol):
    ok = value <= tol
    print('%-22s %-28s %.3g %s' % (name, what, value, 'ok' if ok else 'FAIL (> %g)' % tol))
    if not ok:
        failures.append('%s %s' % (name, what))


def save(work, fname, arr):
    path = os.path.join(work, fname)
    np.save(path, arr)
    return path


class Zoo:
    def __init__(self, stx, zoo, work):
        self.stx, self.zoo, self.work = stx, zoo, work

    def path(self, name):
        return os.path.join(self.zoo, name + '.onnx')

    def golden(self, name):
        with np.load(os.path.join(self.zoo, 'goldens', name + '.npz')) as z:
            return {k: z[k] for k in z.files}

    def forward(self, name, x, tag, extra=()):
        inp = save(self.work, '%s.%s.in.npy' % (name, tag), x)
        out = os.path.join(self.work, '%s.%s.out.npy' % (name, tag))
        run([self.stx, 'run', self.path(name), inp, '-o', out, '--topk', '0'] + list(extra))
        return np.load(out)

    def grad(self, name, x, targets, extra=()):
        inp = save(self.work, '%s.gin.npy' % name, x)
        out = os.path.join(self.work, '%s.grad.npy' % name)
        run([self.stx, 'grad', self.path(name), inp, '--target',
             ','.join(str(int(t)) for t in np.atleast_1d(targets)), '-o', out] + list(extra))
        return np.load(out)

    def check_grad(self, name, g, ref):
        check(name, 'input grad rel L2', rel_l2(g, ref), GRAD_L2_TOL)
        check(name, 'input grad rel max', rel_max(g, ref), GRAD_MAX_TOL)

    def check_info(self, name, facts):
        out = run([self.stx, 'info', self.path(name)])
        missing = [v for v in facts if v not in out]
        print('%-22s %-28s %s' % (name, 'facts in stx info', 'ok' if not missing else
                                  'FAIL: missing %s' % missing))
        if missing:
            failures.append('%s info' % name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--stx', required=True)
    ap.add_argument('--zoo', default=os.path.join(ROOT, 'models', 'zoo'))
    ap.add_argument('--work', required=True)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    z = Zoo(args.stx, args.zoo, args.work)
    with open(os.path.join(args.zoo, 'zoo.json')) as f:
        doc = json.load(f)
    names = sorted(doc['models'])

    # ---- action models: 8 held-out clips, one per class ----
    with np.load(os.path.join(args.zoo, 'action_test.npz')) as f:
        clips = {k: f[k] for k in f.files}
    act = doc.get('action')
    for name in [n for n in names if n.startswith('action_')]:
        layout = 'NTCHW' if 'lstm' in name else 'NCTHW'
        z.check_info(name, [layout, act['classes'][7]])
        g = z.golden(name)
        x = preprocess(clips['video'], act['mean'], act['std'], layout)
        check(name, 'forward (8 clips)', rel_max(z.forward(name, x, 'f32'), g['output']),
              FWD_TOL)
        y8 = z.forward(name, clips['video'], 'u8')
        check(name, 'forward from uint8 frames', rel_max(y8, g['output']), FWD_TOL)
        pick = g['grad_clips']
        z.check_grad(name, z.grad(name, x[pick], g['grad_target']), g['grad'])

    # ---- procedure models ----
    with np.load(os.path.join(args.zoo, 'procedure_test.npz')) as f:
        video = {k: f[k] for k in f.files}
    proc = doc.get('procedure')
    if 'phase_cnn' in names:
        name = 'phase_cnn'
        z.check_info(name, ['NCHW', proc['phases'][3]])
        g = z.golden(name)
        x = preprocess(video['video'][g['frames']], proc['mean'], proc['std'], 'NCHW')
        for out in ('features', 'logits', 'tools'):
            y = z.forward(name, x, out, ['--output-name', out])
            check(name, 'forward %s' % out, rel_max(y, g[out]), FWD_TOL)
        gr = z.grad(name, x, g['grad_target'], ['--output-name', 'logits'])
        z.check_grad(name, gr, g['grad'])
    if 'phase_mstcn' in names:
        name = 'phase_mstcn'
        z.check_info(name, ['NCT', proc['phases'][6]])
        g = z.golden(name)
        check(name, 'forward (whole video)', rel_max(z.forward(name, g['input'], 'f'),
                                                     g['output']), FWD_TOL)
        gr = z.grad(name, g['input'], g['grad_target'], ['--frame', str(int(g['grad_frame']))])
        z.check_grad(name, gr, g['grad'])
        if 'phase_cnn' in names:
            # TeCNO chain: per-frame features by stx (from uint8 frames) -> the TCN's input.
            f = z.forward('phase_cnn', video['video'], 'chain', ['--output-name', 'features'])
            check(name, 'stx features vs torch', rel_max(f.T[None], g['input']), FWD_TOL)
    if 'phase_cnn_lstm' in names:
        name = 'phase_cnn_lstm'
        z.check_info(name, ['NTCHW', proc['phases'][0]])
        g = z.golden(name)
        x = preprocess(video['video'][g['frames']][None], proc['mean'], proc['std'], 'NTCHW')
        check(name, 'forward (segment)', rel_max(z.forward(name, x, 'f'), g['output']), FWD_TOL)
        y8 = z.forward(name, video['video'][g['frames']], 'u8')
        check(name, 'forward from uint8 frames', rel_max(y8, g['output']), FWD_TOL)
        gr = z.grad(name, x, g['grad_target'], ['--frame', str(int(g['grad_frame']))])
        z.check_grad(name, gr, g['grad'])

    expected = {'action_r3d', 'action_r2plus1d', 'action_cnn_lstm', 'action_cnn_lstm_attn',
                'action_timesformer', 'phase_cnn', 'phase_mstcn', 'phase_cnn_lstm'}
    if set(names) != expected:
        failures.append('zoo.json lists %s, expected %s' % (sorted(names), sorted(expected)))
    if failures:
        print('FAILED: %d check(s): %s' % (len(failures), '; '.join(failures)))
        return 1
    print('all zoo checks passed (%d models)' % len(names))
    return 0


if __name__ == '__main__':
    sys.exit(main())
