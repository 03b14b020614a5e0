#!/usr/bin/python3
"""Explanation metrics (`stx evaluate`, src/metrics/) against published values and oracles.

  * torch-cam's exact cases (../shared/docs/peers.md §3.2 cases 6 and 7) on its test "model"
    y = [sum(x), 1 - sum(x)] built as ONNX (tools/metrics_oracle.py sum_model_onnx): deletion and
    insertion curves, fractions and AUC of a 2x2 and a 5-voxel input; average drop
    0.6 / (1 + 1e-7) and no increase in confidence for the CAM [[1,0],[0,0]].
  * Quantus' localisation fixtures (cases 14-16) extended to T x H x W cuboids (4 samples of
    4 x 224 x 224, the 100 x 100 ground-truth box on frames 1 and 2): pointing game, top-k
    intersection, relevance mass and rank accuracy, attribution localisation (our energy) give
    their published values.
  * Deletion / insertion on the zoo's 3-D CNN (NCTHW) and CNN-LSTM (NTCHW) against
    tools/metrics_oracle.py (PyTorch forwards of the same weights), with a continuous map and
    a map with ties, the three curve conventions, different deletion/insertion baselines, and
    coarse cells (uneven ones included), least-relevant-first order.
  * The other localisation, temporal and sparsity metrics on zoo test clips (their masks and
    decisive frames) against the numpy oracle; the pointing-game tolerance worked out by hand.
  * Batch invariance: --batch 1, 2, 5, 16 give the same bits (zoo model), and 1..4 on the sum model.
  * The library API without a model (tests/metrics_api.c): values worked out by hand, an
    evaluator run twice, errors, every allocation through the context's allocator.
  * Errors: a map of the wrong shape, a mask of the wrong shape, NaN in the map, an unknown
    metric, a missing mask: one line, non-zero exit, no JSON written.
"""
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'tools'))
sys.path.insert(0, os.path.join(ROOT, 'tools', 'zoo'))

import metrics_oracle as mo  # noqa: E402

import harness  # noqa: E402
from harness import check, stx, work  # noqa: E402

ZOO = os.path.join(ROOT, 'models', 'zoo')


def evaluate(model, x, sal, metrics, extra=(), name='e'):
    """Runs stx evaluate on arrays (saved here) and returns the JSON."""
    xp, sp, jp = work(name + '_x.npy'), work(name + '_s.npy'), work(name + '.json')
    np.save(xp, np.ascontiguousarray(x, np.float32))
    np.save(sp, np.ascontiguousarray(sal, np.float32))
    stx(['evaluate', model, xp, '--saliency', sp, '--metric', metrics, '--json', jp] + list(extra))
    with open(jp) as f:
        return json.load(f)


def close(a, b, tol):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= tol))


# ---- torch-cam (cases 6, 7) --------------------------------------------------------------------

def test_torchcam():
    m4, m5 = work('sum_2x2.onnx'), work('sum_1x5.onnx')
    mo.sum_model_onnx(m4, (1, 2, 2))
    mo.sum_model_onnx(m5, (1, 1, 5))
    x = np.array([0.4, 0.3, 0.2, 0.1], np.float32).reshape(1, 1, 1, 2, 2)
    cases = [(m4, x, 2, [0, 0.5, 1], [1.0, 0.3, 0.0], [0.0, 0.7, 1.0], 0.4, 0.6),
             (m5, np.array([0.3, 0.25, 0.2, 0.15, 0.1], np.float32).reshape(1, 1, 1, 1, 5), 3,
              [0, 0.4, 0.8, 1], [1, 0.45, 0.1, 0], [0, 0.55, 0.9, 1], 0.41, 0.59)]
    for model, xi, steps, fr, dc, ic, da, ia in cases:
        sal = xi.reshape((1,) + xi.shape[2:])  # the CAM equals the input
        res = []
        for b in ('1', '2', '3', '4'):
            r = evaluate(model, xi, sal, 'deletion,insertion',
                         ['--score', 'logit', '--steps', str(steps), '--baseline', 'zero',
                          '--batch', b], 'tc')
            res.append(r)
        r = res[0]
        d, i = r['deletion'], r['insertion']
        check(close(d['fractions'], fr, 1e-12) and close(d['curve'], dc, 1e-6) and
              close(i['curve'], ic, 1e-6) and abs(d['auc'] - da) <= 1e-6 and
              abs(i['auc'] - ia) <= 1e-6,
              'torch-cam deletion/insertion %d voxels, %d steps: fractions %s, deletion %s auc '
              '%.6f, insertion %s auc %.6f (published %s, %s, %s, %g, %g)'
              % (xi.size, steps, d['fractions'], d['curve'], d['auc'], i['curve'], i['auc'],
                 fr, dc, ic, da, ia))
        same = all(q['deletion'] == r['deletion'] and q['insertion'] == r['insertion']
                   for q in res[1:])
        check(same, 'torch-cam case, --batch 1, 2, 3, 4: identical curves and AUC')
    cam = np.array([[1, 0], [0, 0]], np.float32).reshape(1, 1, 2, 2)
    r = evaluate(m4, x, cam, 'avg_drop,conf_increase', ['--score', 'logit'], 'ad')
    want = 0.6 / (1 + 1e-7)
    check(abs(r['avg_drop']['value'] - want) <= 1e-6 and r['conf_increase']['value'] == 0,
          'torch-cam average drop %.9f (published 0.6/(1+1e-7) = %.9f), increase %g (0)'
          % (r['avg_drop']['value'], want, r['conf_increase']['value']))


# ---- Quantus (cases 14-16) on cuboids ----------------------------------------------------------

T, S, NQ = 4, 224, 4
FR = slice(1, 3)  # frames holding the ground truth


def cuboid(y0, y1, x0, x1):
    m = np.zeros((NQ, T, S, S), np.float32)
    m[:, FR, y0:y1, x0:x1] = 1
    return m


def quantus_maps(noise, y0, y1, x0, x1, seed):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 0.1, (NQ, T, S, S)).astype(np.float32) if noise else \
        np.zeros((NQ, T, S, S), np.float32)
    a[:, FR, y0:y1, x0:x1] = 1.0
    return a


def test_quantus():
    model = work('sum_q.onnx')
    mo.sum_model_onnx(model, (T, S, S))
    x = np.zeros((NQ, 1, T, S, S), np.float32)
    gt = cuboid(50, 150, 50, 150)
    ngt = int(gt[0].sum())
    np.save(work('q_gt.npy'), gt.astype(np.uint8))
    np.save(work('q_none_gt.npy'), cuboid(0, 100, 0, 100).astype(np.uint8))
    np.save(work('q_big_gt.npy'), cuboid(25, 175, 25, 175).astype(np.uint8))
    fixtures = {  # name: (noise background, hot box, mask file)
        'all_in': (True, (50, 150, 50, 150), 'q_gt.npy'),
        'none_in': (True, (100, 200, 100, 200), 'q_none_gt.npy'),
        'half_in': (True, (100, 200, 50, 150), 'q_gt.npy'),
        'all_in_zero': (False, (50, 150, 50, 150), 'q_gt.npy'),
        'none_in_zero': (False, (100, 200, 100, 200), 'q_none_gt.npy'),
        'half_in_zero': (False, (100, 200, 50, 150), 'q_gt.npy'),
        'gt_larger_zero': (False, (50, 150, 50, 150), 'q_big_gt.npy')}
    expect = {  # fixture, extra flags: {metric: published value (or a range)}
        ('all_in', str(ngt)): {'pointing': 1.0, 'topk': 1.0},
        ('all_in', str(4 * ngt)): {'topk': 0.25},
        ('none_in', str(ngt)): {'pointing': 0.0, 'topk': 0.0},
        ('half_in', str(ngt)): {'pointing': 1.0},
        ('all_in_zero', str(ngt)): {'mass': 1.0, 'rank': 1.0, 'energy': 1.0},
        ('none_in_zero', str(ngt)): {'mass': 0.0, 'rank': 0.0, 'energy': 0.0},
        ('half_in_zero', str(ngt)): {'mass': 0.5, 'rank': 0.5},
        ('gt_larger_zero', str(ngt)): {'mass': (0.5, 1.0)}}
    for seed, ((fx, k), wants) in enumerate(expect.items()):
        noise, box, mask = fixtures[fx]
        a = quantus_maps(noise, *box, seed=seed)
        r = evaluate(model, x, a, ','.join(wants), ['--mask', work(mask), '--score', 'logit',
                                                    '--top-k', k], 'q')
        for metric, want in wants.items():
            ps = np.asarray(r[metric]['per_sample'], np.float64)
            if isinstance(want, tuple):
                ok = bool(np.all((ps >= want[0] - 1e-9) & (ps <= want[1] + 1e-9)))
            else:
                ok = close(ps, [want] * NQ, 1e-9)
            check(ok and r[metric]['count'] == NQ,
                  'Quantus %s %s%s on %d samples of %dx%dx%d cuboids: %s (published %s)'
                  % (metric, fx, ' top-k %s' % k if metric == 'topk' else '', NQ, T, S, S,
                     sorted(set(ps.round(9).tolist())), want))


# ---- zoo: deletion / insertion against PyTorch -------------------------------------------------

def zoo_input(name, clip):
    import cam_oracle
    from zoo_common import preprocess
    model, facts = cam_oracle.load_model('zoo:' + name)
    frames = np.load(os.path.join(ZOO, 'clips', clip + '.npy'))
    x = preprocess(frames[None], facts['mean'], facts['std'], facts['layout'])
    return model, facts, np.ascontiguousarray(x, np.float32)


def smooth_map(shape, seed, levels=0):
    rng = np.random.default_rng(seed)
    m = rng.standard_normal(shape)
    for ax in range(1, 4):  # smooth a little along every axis (structure, no ties)
        m = (m + np.roll(m, 1, ax) + np.roll(m, -1, ax)) / 3
    if levels:  # quantised: many ties, ranked by position
        lo, hi = m.min(), m.max()
        m = np.floor((m - lo) / (hi - lo + 1e-12) * levels)
    return m.astype(np.float32)


def test_zoo_oracle():
    runs = [('action_r3d', 'blink', 10, 'zero', None, 'torchcam', 0, 'prob', 1, None),
            ('action_r3d', 'blink', 8, 'zero', 'mean', 'rise', 4, 'prob', 2, None),
            ('action_r3d', 'appear', 0, 'mean', None, 'linspace', 0, 'logit', 3, None),
            ('action_r3d', 'move_left', 6, 'zero', None, 'linspace', 0, 'prob', 5, (0, 5, 6)),
            ('action_r3d', 'move_left', 5, 'zero', None, 'torchcam', 3, 'prob', 6, 'lerf'),
            ('action_cnn_lstm', 'blink', 6, 'zero', None, 'torchcam', 0, 'prob', 4, (4, 7, 7))]
    for name, clip, steps, base, ibase, conv, levels, score, seed, cells in runs:
        model, facts, x = zoo_input(name, clip)
        tax = 2 if facts['layout'] == 'NCTHW' else 1
        shape = (1, x.shape[tax], x.shape[3], x.shape[4])
        sal = smooth_map(shape, seed, levels)
        extra = ['--curve', conv, '--score', score, '--baseline', base, '--target', '7',
                 '--batch', '8']
        if steps:
            extra += ['--steps', str(steps)]
        else:  # voxels per step instead: 16*64*64 / 10000 -> 7 steps, the last one short
            extra += ['--step-voxels', '10000']
        if ibase:
            extra += ['--insertion-baseline', ibase]
        lerf = cells == 'lerf'
        cells = None if lerf else cells
        if cells:
            extra += ['--cells', ','.join(map(str, cells))]
        if lerf:
            extra += ['--order', 'lerf']
        r = evaluate(os.path.join(ZOO, name + '.onnx'), x, sal, 'deletion,insertion', extra, 'z')
        xo = x if tax == 2 else np.ascontiguousarray(x.transpose(0, 2, 1, 3, 4))

        class Wrap:  # the oracle takes NCTHW
            def __call__(self, t):
                return model(t if tax == 2 else t.permute(0, 2, 1, 3, 4))
        want = mo.deletion_insertion(Wrap(), xo, sal, 7, steps=steps or 20, baseline=base,
                                     insertion_baseline=ibase, score=score, convention=conv,
                                     step_voxels=0 if steps else 10000, cells=cells,
                                     least_first=lerf)[0]
        tol = 2e-4 if score == 'prob' else 2e-3
        d, i = r['deletion'], r['insertion']
        ok = close(d['fractions'], want[2], 1e-12) and close(d['curve'], want[0], tol) and \
            close(i['curve'], want[1], tol) and abs(d['auc'] - want[3]) <= tol and \
            abs(i['auc'] - want[4]) <= tol
        err = max(np.abs(np.asarray(d['curve']) - want[0]).max(),
                  np.abs(np.asarray(i['curve']) - want[1]).max())
        check(ok, '%s %s %s, %d points, baseline %s/%s, %s%s%s: deletion auc %.5f (oracle %.5f), '
              'insertion auc %.5f (oracle %.5f), max curve diff %.1e'
              % (name, clip, conv, len(d['curve']), base, ibase or base, score,
                 ', map with ties' if levels else '',
                 ', cells %s' % (cells,) if cells else ', least relevant first' if lerf else '',
                 d['auc'], want[3], i['auc'], want[4], err))


def test_batch_invariance():
    model = os.path.join(ZOO, 'action_r3d.onnx')
    clip = os.path.join(ZOO, 'clips', 'move_left.npy')
    sal = smooth_map((1, 16, 64, 64), 11)
    np.save(work('bi_s.npy'), sal)  # 4 steps: 11 rows (5 + 5 + 1) in batches of 1, 2, 5 and 16
    got = []
    for b in ('1', '2', '5', '16'):
        jp = work('bi_%s.json' % b)
        stx(['evaluate', model, clip, '--saliency', work('bi_s.npy'), '--metric',
             'deletion,insertion,avg_drop,conf_increase', '--steps', '4', '--batch', b,
             '--json', jp])
        with open(jp) as f:
            got.append(json.load(f))
    keys = ('deletion', 'insertion', 'avg_drop', 'conf_increase')
    check(all(g[k] == got[0][k] for g in got[1:] for k in keys),
          'zoo 3-D CNN, --batch 1, 2, 5, 16: identical curves, AUCs and drops (deletion auc %.6f)'
          % got[0]['deletion']['auc'])


# ---- localisation, temporal, sparsity on zoo test clips ----------------------------------------

def test_localisation():
    data = np.load(os.path.join(ZOO, 'action_test.npz'))
    model = os.path.join(ZOO, 'action_r3d.onnx')
    idx = [1, 6, 7]
    frames, mask, event = data['video'][idx], data['mask'][idx], data['event'][idx]
    np.save(work('loc_x.npy'), frames)
    np.save(work('loc_mask.npy'), mask.astype(np.uint8))
    np.save(work('loc_ev.npy'), event.astype(np.uint8))
    N = len(idx)
    maps = smooth_map((N,) + mask.shape[1:], 5)
    maps[:, :, 20:30, 20:30] += 2.0  # a hot block somewhere
    maps[1] = np.maximum(maps[1], 0)  # a non-negative map too
    np.save(work('loc_s.npy'), maps)
    names = ['pointing', 'pointing_frame', 'energy', 'iou', 'mass', 'rank', 'topk', 'temporal',
             'temporal_pointing', 'sparsity', 'complexity']
    for extra, opts in (([], {}), (['--tolerance', '6', '--iou-top', '0.05', '--top-k', '777'],
                                   {'tolerance': 6.0, 'iou_top': 0.05, 'top_k': 777}),
                        (['--iou-threshold', '0.7'], {'iou_threshold': 0.7})):
        jp = work('loc.json')
        stx(['evaluate', model, work('loc_x.npy'), '--saliency', work('loc_s.npy'), '--mask',
             work('loc_mask.npy'), '--events', work('loc_ev.npy'), '--metric', ','.join(names),
             '--json', jp] + extra)
        with open(jp) as f:
            r = json.load(f)
        bad = []
        for k in names:
            want = [mo.localisation(k, maps[n], mask[n], event[n], **opts) for n in range(N)]
            got = [v if v is not None else float('nan') for v in r[k]['per_sample']]
            if not np.allclose(got, want, rtol=1e-6, atol=1e-9, equal_nan=True):
                bad.append('%s %s vs %s' % (k, got, want))
        check(not bad, 'localisation/temporal/sparsity metrics %s on 3 zoo test clips against '
              'the numpy oracle%s' % (' '.join(extra) or '(defaults)',
                                      ': ' + '; '.join(bad) if bad else ''))
    # the tolerance by hand: the maximum 3 px right of the box's edge
    m = np.zeros((1, 2, 16, 16), np.float32)
    g = np.zeros((1, 2, 16, 16), np.uint8)
    g[0, 1, 4:8, 4:8] = 1
    m[0, 1, 5, 10] = 1.0  # nearest truth pixel (5, 7): distance 3
    tiny = work('sum_16.onnx')
    mo.sum_model_onnx(tiny, (2, 16, 16))
    np.save(work('tol_g.npy'), g)
    res = []
    for tol in ('2.9', '3'):
        r = evaluate(tiny, np.zeros((1, 1, 2, 16, 16)), m, 'pointing,pointing_frame',
                     ['--mask', work('tol_g.npy'), '--tolerance', tol], 'tol')
        res.append((r['pointing']['value'], r['pointing_frame']['value']))
    check(res == [(0.0, 0.0), (1.0, 1.0)],
          'pointing game tolerance 2.9 px misses, 3 px hits a maximum 3 px from the box: %s'
          % res)


# ---- the library API without a model (tests/metrics_api.c) ----------------------------------

def test_api():
    p = subprocess.run([harness.ARGS.api], capture_output=True, text=True)
    for line in p.stdout.splitlines():
        print(line)
    check(p.returncode == 0 and 'FAIL' not in p.stdout and p.stdout.count('ok') >= 14,
          'metrics library API without a model (stx_metrics_api): exit %d%s'
          % (p.returncode, (', ' + p.stderr.strip()) if p.stderr.strip() else ''))


# ---- errors ------------------------------------------------------------------------------------

def test_errors():
    model = os.path.join(ZOO, 'action_r3d.onnx')
    clip = os.path.join(ZOO, 'clips', 'blink.npy')
    good = smooth_map((1, 16, 64, 64), 3)
    np.save(work('err_good.npy'), good)
    np.save(work('err_shape.npy'), good[:, :8])
    nan = good.copy()
    nan[0, 3, 10, 12] = np.nan
    np.save(work('err_nan.npy'), nan)
    np.save(work('err_mask.npy'), np.ones((1, 16, 32, 32), np.uint8))
    cases = [(['--saliency', work('err_shape.npy')], 'map', 'shape'),
             (['--saliency', work('err_good.npy'), '--metric', 'pointing', '--mask',
               work('err_mask.npy')], 'mask', 'shape'),
             (['--saliency', work('err_nan.npy')], 'non-finite', 'frame 3'),
             (['--saliency', work('err_good.npy'), '--metric', 'deletion,bogus'],
              "unknown metric 'bogus'", 'known'),
             (['--saliency', work('err_good.npy'), '--metric', 'iou'], "metric 'iou' needs",
              'mask'),
             (['--saliency', work('err_good.npy'), '--steps', '0'], '--steps', ''),
             (['--saliency', work('err_good.npy'), '--cells', '0,100,0'], 'cells 0,100,0',
              '16 x 64 x 64'),
             (['--saliency', work('err_good.npy'), '--baseline', work('nothere.npy')],
              'nothere', '')]
    for extra, w1, w2 in cases:
        jp = work('err.json')
        if os.path.exists(jp):
            os.remove(jp)
        p = stx(['evaluate', model, clip, '--json', jp] + extra, ok=False)
        msg = p.stderr.strip()
        check(p.returncode != 0 and len(msg.splitlines()) == 1 and w1 in msg and w2 in msg and
              not os.path.exists(jp),
              'error %s: exit %d, "%s", no JSON' % (' '.join(os.path.basename(e) for e in extra),
                                                    p.returncode, msg))


def main():
    harness.run([('torchcam', test_torchcam), ('quantus', test_quantus),
                 ('oracle', test_zoo_oracle), ('batch', test_batch_invariance),
                 ('localisation', test_localisation), ('api', test_api), ('errors', test_errors)],
                extra=('--api',))


if __name__ == '__main__':
    main()
