#!/usr/bin/python3
"""ctest `phase`: `stx phase` on the zoo's held-out procedure (docs/phase.md).

Oracles: PyTorch's goldens committed with the zoo (phase_cnn's features of every frame, phase_mstcn's
output and the input gradient of its last frame, phase_cnn_lstm's output and gradient on every 8th
frame), the generator's ground truth (phase, tool masks), and tools/phase_oracle.py (NumPy, the
Cholec80/M2CAI scores written from the evaluation script).

Checks
  - predictions and probabilities = softmax of PyTorch's MS-TCN output; cached features = the
    features PyTorch fed it; gradient x feature at the last frame = PyTorch's gradient x features;
  - acceptance: the temporal attribution of frames in phase k puts more of its positive mass on
    frames showing phase k's tools than a random attribution does, and the key frames' maps point
    at those tools (pointing game against the tool masks) far more often than a random point;
  - causality: frames after t replaced, the prediction and every explanation at t are unchanged;
  - the feature cache: reused on a second run, a changed video is a new entry;
  - the Cholec80 scores (strict and relaxed, Cholec80 'Frame<TAB>Phase' files at 25 per second and
    'frame,phase' CSV) against the NumPy oracle;
  - one model on frames (phase_cnn_lstm) against PyTorch's golden;
  - one-line errors and a non-zero exit for bad input.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, 'tools'))
sys.path.insert(0, os.path.join(ROOT, 'tools', 'zoo'))
import phase_oracle  # noqa: E402
import procedure_data as pdata  # noqa: E402

ZOO = os.path.join(ROOT, 'models', 'zoo')
CNN, TCN, LSTM = (os.path.join(ZOO, n + '.onnx') for n in ('phase_cnn', 'phase_mstcn',
                                                            'phase_cnn_lstm'))
FAILS = []


def check(cond, msg):
    print(('ok   ' if cond else 'FAIL ') + msg, flush=True)
    if not cond:
        FAILS.append(msg)


def run(stx, args, ok=True):
    p = subprocess.run([stx, 'phase'] + [str(a) for a in args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        print(p.stdout, p.stderr)
        raise SystemExit('stx phase failed: %s' % ' '.join(map(str, args)))
    return p


def load_moments(d):
    mj = json.load(open(os.path.join(d, 'moments.json')))
    out = {}
    for m in mj['moments']:
        out[m['frame']] = dict(m, curves=np.load(os.path.join(d, m['temporal'])),
                               kf=np.load(os.path.join(d, m['keyframes'])),
                               maps=np.load(os.path.join(d, m['maps'])))
    return out


def rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-30))


def softmax(z, axis):
    e = np.exp(z - z.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def dilate(mask):
    mp = np.pad(mask, 1)
    out = mask.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out |= mp[1 + dy:1 + dy + mask.shape[0], 1 + dx:1 + dx + mask.shape[1]]
    return out


def acceptance(moms, truth, tools, presence):
    """Temporal share on phase-k tool frames vs random; pointing game vs random point."""
    rng = np.random.default_rng(0)
    share, rshare, hits, n_kf, rpoint = [], [], 0, 0, 0.0
    for t, m in moms.items():
        k = m['phase']
        sig = pdata._SIGNATURE[k]
        if m['why'] == 'transition' or k != truth[t] or not sig:
            continue
        vis = presence[:t + 1][:, sig].any(1)
        a = np.maximum(m['curves'][1], 0)  # IG, the ranking method
        if a.sum() <= 0 or not vis.any():
            continue
        share.append(a[vis].sum() / a.sum())
        r = np.abs(rng.standard_normal((200, t + 1)))  # random attributions
        rshare.append(float((r[:, vis].sum(1) / r.sum(1)).mean()))
        bits = sum(1 << q for q in sig)
        for j, f in enumerate(m['kf']):
            mask = (tools[f] & bits) != 0
            if not mask.any():
                continue
            mask = dilate(mask)
            y, x = np.unravel_index(np.argmax(m['maps'][j]), mask.shape)
            hits += int(mask[y, x])
            n_kf += 1
            rpoint += mask.mean()
    return np.mean(share), np.mean(rshare), len(share), hits, n_kf, rpoint / max(n_kf, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--stx', required=True)
    ap.add_argument('--work', required=True)
    ap.add_argument('--npy2video', help='stx_npy2video, to make an MP4 fixture')
    a = ap.parse_args()
    t_start = time.time()
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    W = lambda *p: os.path.join(a.work, *p)  # noqa: E731
    d = np.load(os.path.join(ZOO, 'procedure_test.npz'))
    video, truth, tools, presence = d['video'], d['phase'], d['tools'], d['presence']
    T = len(video)
    np.save(W('proc.npy'), video)
    gm = np.load(os.path.join(ZOO, 'goldens', 'phase_mstcn.npz'))
    names = pdata.PHASES
    cache = W('cache')
    fast = ['--steps', 16, '--windows', 16, '--threads', 1]

    # Cholec80 label file: every frame at 25 per second, phase names as Cholec80 writes them
    c80 = ['Preparation', 'CalotTriangleDissection', 'ClippingCutting', 'GallbladderDissection',
           'GallbladderPackaging', 'CleaningCoagulation', 'GallbladderRetraction']
    with open(W('video01-phase.txt'), 'w') as f:
        f.write('Frame\tPhase\n')
        for i in range(T * 25):
            f.write('%d\t%s\n' % (i, c80[truth[i // 25]]))

    # ---- the main run: 10 chosen moments inside phases, every segment, labels -------------------
    starts = np.flatnonzero(np.diff(truth)) + 1
    bounds = list(zip(np.concatenate([[0], starts]), np.concatenate([starts, [T]])))
    at = sorted({int(s + (e - s) * q) for s, e in bounds[1:] for q in (0.5, 0.85)})[:10]
    at_frames = at + [200, T - 1]
    at_str = ','.join('%d:%02d:%02d' % (f // 3600, f // 60 % 60, f % 60) for f in at_frames)
    main_dir = W('main')
    t0 = time.time()
    p = run(a.stx, [CNN, TCN, W('proc.npy'), '--out-dir', main_dir, '--cache-dir', cache,
                    '--at', at_str, '--moments', 'segment,user', '--labels',
                    W('video01-phase.txt'), '--labels-fps', 25, '--relaxed', 10] + fast)
    print('main run: %.1f s' % (time.time() - t0))
    check('cached in' in p.stdout, 'first run computes and caches the features')
    pj = json.load(open(os.path.join(main_dir, 'predictions.json')))
    prob = np.array(pj['prob'])
    gprob = softmax(gm['output'][0].astype(np.float64), 0).T
    check(np.abs(prob - gprob).max() < 1e-4,
          'probabilities = softmax of PyTorch MS-TCN (max diff %.2g)' % np.abs(prob - gprob).max())
    pred = np.array(pj['pred'])
    check((pred == gprob.argmax(1)).all(), 'predicted phases = PyTorch argmax')
    csv = np.genfromtxt(os.path.join(main_dir, 'predictions.csv'), delimiter=',', names=True,
                        dtype=None, encoding='utf-8')
    check(len(csv) == T and (csv['phase'] == pred).all() and (csv['truth'] == truth).all(),
          'predictions.csv: one row per frame, phases and truth')
    feats = [f for f in os.listdir(cache) if f.endswith('-features.npy')]
    check(len(feats) == 1, 'one cache entry')
    fc = np.load(os.path.join(cache, feats[0]))
    check(rel(fc.T, gm['input'][0]) < 1e-4, 'cached features = PyTorch phase_cnn features (%.2g)'
          % rel(fc.T, gm['input'][0]))
    moms = load_moments(main_dir)
    check(all(f in moms for f in at_frames), 'every --at moment explained')
    seg_mid = [(s + e) // 2 for s, e, _ in phase_oracle._runs(pred)]
    check(all(f in moms for f in seg_mid), 'every predicted segment explained (middle frame)')
    # gradient x feature at the last frame against PyTorch's gradient
    gf, gt = int(gm['grad_frame']), int(gm['grad_target'][0])
    m = moms[T - 1]
    if gf == T - 1 and m['phase'] == gt:
        want = (gm['grad'][0] * gm['input'][0]).sum(0)
        check(rel(m['curves'][0], want) < 1e-3, 'gradient x feature at the last frame = PyTorch '
              '(%.2g of the largest)' % rel(m['curves'][0], want))
    else:
        check(False, 'golden gradient frame/target match the last moment')
    for t, m in moms.items():
        L = t + 1
        ok = m['curves'].shape == (3, L) and len(m['kf']) <= 5 and (m['kf'] <= t).all()
        ok &= m['maps'].shape == (len(m['kf']), 48, 48) and np.isfinite(m['maps']).all()
        if not ok:
            break
    check(ok, 'moment files: (3, t+1) curves, key frames <= t, (k, 48, 48) maps')
    # acceptance figures
    s, rs, n, hits, nk, rp = acceptance(moms, truth, tools, presence)
    print('acceptance: IG share on phase-tool frames %.3f vs random %.3f over %d moments; pointing '
          'game %d/%d = %.3f vs random point %.3f' % (s, rs, n, hits, nk, hits / max(nk, 1), rp))
    check(n >= 8 and s >= 1.5 * rs, 'temporal attribution concentrates on phase-tool frames '
          '(%.3f vs random %.3f)' % (s, rs))
    check(nk >= 20 and hits / nk >= 0.5 and hits / nk >= 3 * rp,
          'maps point at the phase tools (%.3f vs random %.3f)' % (hits / max(nk, 1), rp))
    # scores against the NumPy oracle
    sj = json.load(open(os.path.join(main_dir, 'scores.json')))
    for kind, rf in (('strict', 0), ('relaxed', 10)):
        o = phase_oracle.cholec80_scores(truth, pred, 7, rf)
        got = sj[kind]
        err = abs(got['accuracy'] - o['accuracy'])
        for key in ('precision', 'recall', 'jaccard'):
            g = np.array([np.nan if v is None else v for v in got[key]])
            same_nan = (np.isnan(g) == np.isnan(o[key])).all()
            err = max(err, np.nanmax(np.abs(g - o[key])) if same_nan else 1)
        check(err < 1e-6, '%s Cholec80 scores = NumPy oracle (max diff %.2g; accuracy %.4f)'
              % (kind, err, o['accuracy']))

    # ---- cache reuse; a relaxed-boundary case where it matters ----------------------------------
    p = run(a.stx, [CNN, TCN, W('proc.npy'), '--out-dir', W('again'), '--cache-dir', cache,
                    '--moments', 'none'] + fast)
    check('reused from' in p.stdout and len(os.listdir(cache)) == 2,
          'second run reuses the cached features')
    pj2 = json.load(open(W('again', 'predictions.json')))
    check(pj2['pred'] == pj['pred'] and np.array_equal(np.array(pj2['prob']), prob),
          'same predictions from the cache')
    # shifted labels: late/early transitions within 10 s become correct only when relaxed
    shifted = truth.copy()
    for s0 in starts:
        shifted[s0:s0 + 3] = truth[s0 - 1]
    with open(W('simple.csv'), 'w') as f:
        f.write('frame,phase\n')
        for i in range(T):
            f.write('%d,%d\n' % (i, shifted[i]))
    run(a.stx, [CNN, TCN, W('proc.npy'), '--out-dir', W('simple'), '--cache-dir', cache,
                '--moments', 'none', '--labels', W('simple.csv'), '--relaxed', 10] + fast)
    sj = json.load(open(W('simple', 'scores.json')))
    for kind, rf in (('strict', 0), ('relaxed', 10)):
        o = phase_oracle.cholec80_scores(shifted, pred, 7, rf)
        g = sj[kind]
        err = max(abs(g['accuracy'] - o['accuracy']),
                  max(np.nanmax(np.abs(np.array([np.nan if v is None else v for v in g[key]])
                                       - o[key])) for key in ('precision', 'recall', 'jaccard')))
        check(err < 1e-6, 'frame,phase CSV, shifted labels, %s = oracle (%.2g; accuracy %.4f)'
              % (kind, err, o['accuracy']))
    check(sj['relaxed']['accuracy'] > sj['strict']['accuracy'], 'relaxed boundaries forgive '
          'transitions late by 3 s (%.4f > %.4f)' % (sj['relaxed']['accuracy'],
                                                     sj['strict']['accuracy']))

    # ---- causality: frames after t replaced ---------------------------------------------------
    tc = 200
    v2 = video.copy()
    v2[tc + 1:] = video[tc + 1:][::-1]  # the future reversed: other phases, other tools
    v2[-50:] = 0
    np.save(W('proc_future.npy'), v2)
    p = run(a.stx, [CNN, TCN, W('proc_future.npy'), '--out-dir', W('future'), '--cache-dir', cache,
                    '--at', '0:03:20', '--moments', 'user,transition'] + fast)
    check('cached in' in p.stdout, 'a changed video is a new cache entry')
    pf = json.load(open(W('future', 'predictions.json')))
    pfp = np.array(pf['prob'])
    check(pf['pred'][:tc + 1] == pj['pred'][:tc + 1] and np.array_equal(pfp[:tc + 1],
                                                                          prob[:tc + 1]),
          'predictions up to frame %d unchanged by later frames' % tc)
    check(pf['pred'][tc + 1:] != pj['pred'][tc + 1:], 'the later predictions did change')
    mf = load_moments(W('future'))
    m0, m1 = moms[tc], mf[tc]
    same = (np.array_equal(m0['curves'], m1['curves']) and np.array_equal(m0['kf'], m1['kf'])
            and np.array_equal(m0['maps'], m1['maps']))
    check(same, 'explanation at frame %d (3 curves, key frames, maps) unchanged' % tc)
    trans = [t for t, m in mf.items() if m['why'] == 'transition']
    check(len(trans) >= 3 and all(mf[t]['note'] and '->' in mf[t]['note'] for t in trans),
          'transitions explained with a note (%s)' % (mf[trans[0]]['note'] if trans else ''))

    # ---- a video file at 4 frames per second, sampled at 1; labels at the video's own rate --------
    if a.npy2video:
        np.save(W('rep4.npy'), np.repeat(video, 4, 0))
        subprocess.run([a.npy2video, W('rep4.npy'), W('rep4.mp4'), '4'], check=True,
                       capture_output=True)
        with open(W('rep4-phase.txt'), 'w') as f:
            f.write('Frame\tPhase\n' + ''.join('%d\t%s\n' % (i, c80[truth[i // 4]])
                                               for i in range(4 * T)))
        run(a.stx, [CNN, TCN, W('rep4.mp4'), '--fps', 1, '--out-dir', W('mp4'), '--cache-dir',
                    cache, '--moments', 'none', '--labels', W('rep4-phase.txt')] + fast)
        pv = np.array(json.load(open(W('mp4', 'predictions.json')))['pred'])
        acc = json.load(open(W('mp4', 'scores.json')))['strict']['accuracy']
        o = phase_oracle.cholec80_scores(truth, pv, 7)['accuracy'] if len(pv) == T else -1
        check(len(pv) == T and (pv == pred).mean() >= 0.97 and abs(acc - o) < 1e-9,
              'H.264 MP4 at 4 fps sampled at 1: %d frames, %.4f agree with the lossless frames, '
              'labels at 4 fps scored (%.4f)' % (len(pv), (pv == pred).mean() if len(pv) == T
                                                 else 0, acc))

    # ---- one model on frames: phase_cnn_lstm on every 8th frame (PyTorch golden) -----------------
    gl = np.load(os.path.join(ZOO, 'goldens', 'phase_cnn_lstm.npz'))
    np.save(W('every8.npy'), video[gl['frames']])
    n8 = len(gl['frames'])
    run(a.stx, [LSTM, W('every8.npy'), '--out-dir', W('lstm'), '--at', n8 - 1, '--moments', 'user',
                '--steps', 4, '--windows', 4, '--threads', 1])
    pl = json.load(open(W('lstm', 'predictions.json')))
    gp = softmax(gl['output'][0].astype(np.float64), 0).T
    check(np.abs(np.array(pl['prob']) - gp).max() < 1e-4, 'CNN-LSTM alone: probabilities = '
          'PyTorch (%.2g)' % np.abs(np.array(pl['prob']) - gp).max())
    ml = load_moments(W('lstm'))[n8 - 1]
    if ml['phase'] == int(gl['grad_target'][0]) and int(gl['grad_frame']) == n8 - 1:
        mean = np.array([0.557, 0.325, 0.283], np.float32)
        std = np.array([0.167, 0.181, 0.158], np.float32)
        x = ((video[gl['frames']].astype(np.float32) / np.float32(255) - mean) / std)
        x = x.transpose(0, 3, 1, 2)
        want = (gl['grad'][0] * x).reshape(n8, -1).sum(1)
        check(rel(ml['curves'][0], want) < 1e-3, 'CNN-LSTM gradient x input per frame = PyTorch '
              '(%.2g)' % rel(ml['curves'][0], want))
        wmap = (gl['grad'][0] * x).sum(1)
        j = int(ml['kf'][0])
        check(rel(ml['maps'][0], wmap[j]) < 1e-3, 'CNN-LSTM key-frame map = PyTorch gradient x '
              'pixels')
    else:
        check(False, 'CNN-LSTM golden target matches the prediction')

    # ---- errors: one line, non-zero exit, nothing half-written ------------------------------
    bad_labels = W('bad.csv')
    with open(bad_labels, 'w') as f:
        f.write('frame,phase\n0,preparation\n1,suturing\n')
    with open(W('order.csv'), 'w') as f:
        f.write('0,0\n5,1\n3,1\n')
    with open(W('short.csv'), 'w') as f:
        f.write('0,0\n100,1\n')
    # a non-causal temporal model: a centred convolution over time
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((7, 64, 3))
                                .astype(np.float32) * 0.1, 'w')
    g = helper.make_graph([helper.make_node('Conv', ['input', 'w'], ['output'], pads=[1, 1])],
                          'noncausal',
                          [helper.make_tensor_value_info('input', TensorProto.FLOAT,
                                                         ['N', 64, 'T'])],
                          [helper.make_tensor_value_info('output', TensorProto.FLOAT,
                                                         ['N', 7, 'T'])], [w])
    mo = helper.make_model(g, opset_imports=[helper.make_opsetid('', 17)])
    onnx.save(mo, W('noncausal.onnx'))
    out = W('err_out')
    cases = [
        ([CNN, TCN, W('missing.npy'), '--out-dir', out], 'missing.npy'),
        ([CNN, TCN, W('proc.npy')], '--out-dir'),
        ([TCN, W('proc.npy'), '--out-dir', out], 'frame model'),
        ([CNN, TCN, W('proc.npy'), '--out-dir', out, '--at', '0:07:00'], 'after the last frame'),
        ([CNN, TCN, W('proc.npy'), '--out-dir', out, '--at', '1:75'], 'not a time'),
        ([CNN, TCN, W('proc.npy'), '--out-dir', out, '--fps', '0'], '--fps'),
        ([CNN, TCN, W('proc.npy'), '--out-dir', out, '--labels', bad_labels], "'suturing'"),
        ([CNN, TCN, W('proc.npy'), '--out-dir', out, '--labels', W('order.csv')], 'increase'),
        ([CNN, TCN, W('proc.npy'), '--out-dir', out, '--labels', W('short.csv'), '--labels-fps',
          '0.5'], 'no label for frame'),
        ([CNN, TCN, W('proc.npy'), '--out-dir', out, '--rank', 'lrp'], '--rank'),
        ([CNN, TCN, W('proc.npy'), '--out-dir', out, '--moments', 'all'], '--moments'),
        ([CNN, W('noncausal.onnx'), W('proc.npy'), '--out-dir', out, '--cache-dir', cache],
         'not causal'),
        ([os.path.join(ZOO, 'action_r3d.onnx'), TCN, W('proc.npy'), '--out-dir', out],
         'action_r3d.onnx'),
    ]
    for args, want in cases:
        p = run(a.stx, args, ok=False)
        lines = p.stderr.strip().split('\n')
        check(p.returncode != 0 and len(lines) == 1 and want in lines[0],
              'error %-14s %s' % (want, lines[0][:110]))
    check(not os.path.exists(os.path.join(out, 'predictions.csv')), 'errors write no predictions')
    print('total %.1f s' % (time.time() - t_start))
    if FAILS:
        print('%d FAILED' % len(FAILS))
        sys.exit(1)


if __name__ == '__main__':
    main()
