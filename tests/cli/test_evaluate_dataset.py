"""`stx evaluate MODEL --dataset LIST` (cli/evaluate_dataset.c) on two held-out clips of the zoo
with Grad-CAM and the model-independent `intensity` map:
- every number of the table equals the single-clip `stx evaluate` of the same map (the map from
  `stx explain`, or computed here with NumPy for `intensity`);
- the metrics' batch size changes no number (--batch 1 against --batch 5);
- cascading randomisation: Grad-CAM's similarity to the original map falls as layers of
  action_r3d are re-initialised; the intensity map's stays exactly 1; the random-label check
  separates them too;
- the outputs (CSV, JSON, sanity CSV, PNGs) exist, and list errors are one line.
"""
import argparse
import csv
import json
import os
import subprocess
import sys

import numpy as np

failures = []
METRICS = 'deletion,insertion,pointing,energy,iou,temporal'


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


def work(*names):
    return os.path.join(ARGS.work, *names)


def make_dataset(n):
    d = np.load(os.path.join(ARGS.zoo, 'action_test.npz'))
    os.makedirs(work('ds'), exist_ok=True)
    with open(work('ds', 'list.csv'), 'w') as f:
        f.write('clip,mask,events,label\n# two held-out clips\n')
        for i in range(n):
            for key, name in (('video', 'clip'), ('mask', 'mask'), ('event', 'events')):
                np.save(work('ds', '%s%d.npy' % (name, i)), d[key][i])
            f.write('clip%d.npy,mask%d.npy,events%d.npy,%d\n' % (i, i, i, d['label'][i]))
    return d


def intensity_map(model, video):
    """The channel mean of the model's input, with stx's preprocessing (docs: x = (v / 255 -
    mean) / std in float32, as numpy computes it)."""
    import onnx
    meta = {p.key: p.value for p in onnx.load(model).metadata_props}
    mean = np.array([float(v) for v in meta['stx.mean'].split(',')], np.float32)
    std = np.array([float(v) for v in meta['stx.std'].split(',')], np.float32)
    x = (video.astype(np.float32) / np.float32(255) - mean) / std     # (T, H, W, 3)
    return (x.astype(np.float64).sum(axis=-1) / 3.0).astype(np.float32)[None]


def same(got, want):
    """Equal numbers, allowing for a single-clip JSON printed with 9 significant digits."""
    return got == want or float('%.9g' % got) == want


def run_dataset(out, batch, extra=()):
    return stx(['evaluate', ARGS.model, '--dataset', work('ds', 'list.csv'), '--methods',
                'gradcam,intensity', '--metric', METRICS, '--curve-steps', '10', '--batch',
                str(batch), '--out-dir', out] + list(extra))


def test_table(d):
    out = work('out1')
    p = run_dataset(out, 1, ['--randomize-layers', '3', '--random-label'])
    print(p.stdout.strip())
    res = json.load(open(os.path.join(out, 'results.json')))
    rows = list(csv.DictReader(open(os.path.join(out, 'results.csv'))))
    meth = {m['name']: m for m in res['methods']}
    check(set(meth) == {'gradcam', 'intensity'} and all(m['status'] == 'ok' for m in
                                                        meth.values()),
          'both methods ran: %s' % [(m['name'], m['status']) for m in res['methods']])
    for name in ('gradcam', 'intensity'):
        for i in range(2):
            clip = work('ds', 'clip%d.npy' % i)
            mp = work('map_%s_%d.npy' % (name, i))
            if name == 'gradcam':
                stx(['explain', ARGS.model, clip, '--method', 'gradcam', '--target',
                     str(int(d['label'][i])), '-o', mp])
            else:
                np.save(mp, intensity_map(ARGS.model, d['video'][i]))
            js = work('single_%s_%d.json' % (name, i))
            stx(['evaluate', ARGS.model, clip, '--saliency', mp, '--metric', METRICS,
                 '--steps', '10', '--mask', work('ds', 'mask%d.npy' % i), '--events',
                 work('ds', 'events%d.npy' % i), '--target', str(int(d['label'][i])),
                 '--batch', '1', '--json', js])
            single = json.load(open(js))
            table = meth[name]['clips'][i]
            row = [r for r in rows if r['method'] == name and r['clip'].endswith('clip%d.npy' % i)]
            bad = []
            for m in METRICS.split(','):
                want = single[m]['per_sample'][0]
                got = table[m]
                # the table's JSON has 17 significant digits, its CSV 9
                if want is None or got is None or not same(got, want) or \
                        float(row[0][m]) != float('%.9g' % want):
                    bad.append((m, got, row[0][m], want))
                if m in ('deletion', 'insertion'):
                    cw = single[m]['curves'][0]
                    cg = table[m + '_curve']
                    if len(cw) != len(cg) or not all(same(a, b) for a, b in zip(cg, cw)):
                        bad.append((m + ' curve', cg[:3], cw[:3]))
            check(not bad and table['target'] == int(d['label'][i]),
                  '%s clip %d: the table\'s numbers are the single-clip stx evaluate\'s %s' %
                  (name, i, bad if bad else ''))
    # means: over the clips
    for name in ('gradcam', 'intensity'):
        ok = all(abs(meth[name]['mean'][m] - np.mean([c[m] for c in meth[name]['clips']]))
                 < 1e-12 for m in METRICS.split(','))
        check(ok, '%s: the mean row is the mean over the clips' % name)
    # randomisation
    g = [s['spearman'] for s in meth['gradcam']['randomization']]
    gs = [s['ssim'] for s in meth['gradcam']['randomization']]
    it = [(s['spearman'], s['ssim']) for s in meth['intensity']['randomization']]
    check(len(g) == 4 and g[0] == 1 and g[1] < 0.9 and g[3] < g[1] and g[3] < 0.5 and
          gs[3] < gs[0],
          'Grad-CAM\'s similarity falls as the top layers are randomised: spearman %s, ssim %s' %
          (['%.3f' % v for v in g], ['%.3f' % v for v in gs]))
    check(len(it) == 4 and all(a == 1 and abs(b - 1) < 1e-12 for a, b in it),
          'the intensity map stays the same under randomisation: %s' % it)
    rl_g = [c['random_label']['spearman'] for c in meth['gradcam']['clips']]
    rl_i = [c['random_label']['spearman'] for c in meth['intensity']['clips']]
    others = [c['random_label']['class'] for c in meth['gradcam']['clips']]
    check(max(rl_g) < 0.9 and all(v == 1 for v in rl_i) and
          all(o != int(d['label'][i]) and 0 <= o < 8 for i, o in enumerate(others)),
          'random label: Grad-CAM changes with the class (%s, classes %s), intensity does not'
          % (['%.3f' % v for v in rl_g], others))
    srows = list(csv.DictReader(open(os.path.join(out, 'sanity.csv'))))
    check(len(srows) == 2 * (4 * 3 + 3), 'sanity.csv: %d rows' % len(srows))
    pngs = ['bar_deletion.png', 'bar_time_ms.png', 'curve_deletion_gradcam.png',
            'curve_insertion_intensity.png', 'sanity_gradcam.png']
    check(all(open(os.path.join(out, f), 'rb').read(8) == b'\x89PNG\r\n\x1a\n' for f in pngs),
          'plots written as PNG')
    return res


def test_batching(first):
    out = work('out5')
    run_dataset(out, 5)
    res = json.load(open(os.path.join(out, 'results.json')))
    bad = []
    for a, b in zip(first['methods'], res['methods']):
        for ca, cb in zip(a['clips'], b['clips']):
            for k in ca:
                if k in ('time_ms', 'random_label'):
                    continue
                if ca[k] != cb[k]:
                    bad.append((a['name'], k))
    check(not bad and len(first['methods']) == len(res['methods']),
          'the metrics\' batch size (1 and 5) changes no number %s' % (bad if bad else ''))


def test_errors():
    with open(work('bad.csv'), 'w') as f:
        f.write('clip,mask,events,label\nmissing.npy,,,0\n')
    p = stx(['evaluate', ARGS.model, '--dataset', work('bad.csv'), '--out-dir', work('e')],
            ok=False)
    check(p.returncode != 0 and 'missing.npy' in p.stderr and p.stderr.count('\n') == 1,
          'a missing clip: one line naming it: %s' % p.stderr.strip())
    with open(work('bad2.csv'), 'w') as f:
        f.write('ds/clip0.npy,ds/mask0.npy,,0,extra\n')
    p = stx(['evaluate', ARGS.model, '--dataset', work('bad2.csv'), '--out-dir', work('e')],
            ok=False)
    check(p.returncode != 0 and 'bad2.csv:1' in p.stderr,
          'a malformed line: named: %s' % p.stderr.strip())
    for name, text, want in (('bad3.csv', b'clip\n' + b'a' * 9000 + b'.npy\n', 'bad3.csv:2'),
                             ('bad4.csv', b'ds/clip0.npy,,,0\nds/cl\0ip1.npy\n', 'bad4.csv:2')):
        with open(work(name), 'wb') as f:
            f.write(text)
        p = stx(['evaluate', ARGS.model, '--dataset', work(name), '--out-dir', work('e')],
                ok=False)
        check(p.returncode != 0 and want in p.stderr and p.stderr.count('\n') == 1 and
              not os.path.exists(work('e')),
              'a line over 8 KiB / a NUL byte: one line naming the line: %s' % p.stderr.strip())
    p = stx(['evaluate', ARGS.model, '--dataset', work('ds', 'list.csv'), '--metric', 'pointing',
             '--methods', 'nosuch', '--out-dir', work('e2')], ok=False)
    rows = list(csv.DictReader(open(work('e2', 'results.csv')))) if p.returncode == 0 else []
    check(p.returncode == 0 and rows and rows[0]['status'].startswith('refused'),
          'an unknown method is a refused row, not a crash: %s' %
          (rows[0]['status'] if rows else p.stderr.strip()))


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument('--stx', required=True)
    ap.add_argument('--zoo', required=True)
    ap.add_argument('--work', required=True)
    ARGS = ap.parse_args()
    ARGS.model = os.path.join(ARGS.zoo, 'action_r3d.onnx')
    os.makedirs(ARGS.work, exist_ok=True)
    d = make_dataset(2)
    print('-- table', flush=True)
    res = test_table(d)
    print('-- batching', flush=True)
    test_batching(res)
    print('-- errors', flush=True)
    test_errors()
    print('%d failure(s)' % len(failures))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
