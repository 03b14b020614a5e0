#!/usr/bin/python3
"""Writes docs/benchmark.md from the runs of tools/make_benchmark.sh.

usage: benchmark_table.py WORK OUT.md

WORK/<model>/<run>/results.json (and sanity.csv) come from `stx evaluate MODEL --dataset ...`;
WORK/<model>/<run>/settings.txt holds the run's flags (shown in the notes); WORK/info.txt the
machine and the date. Every number in the document comes from those files."""
import csv
import json
import os
import sys

MODELS = ['action_r3d', 'action_r2plus1d', 'action_cnn_lstm', 'action_cnn_lstm_attn',
          'action_timesformer']
FAMILIES = [
    ('CAM', ['cam', 'gradcam', 'gradcam-frame', 'gradcam++', 'smooth-gradcam++', 'xgradcam',
             'layercam', 'hirescam', 'scorecam', 'sscam', 'iscam', 'eigencam', 'ablationcam']),
    ('perturbation', ['occlusion', 'frame-occlusion', 'spatial-occlusion', 'rise', 'kernelshap',
                      'lime', 'loco', 'up', 'aosa', 'extremal']),
    ('gradient', ['saliency', 'gradxinput', 'ig', 'smoothgrad', 'smoothgrad-sq', 'vargrad',
                  'guided-backprop', 'deconvnet', 'guided-gradcam', 'swag']),
    ('reference (model-independent)', ['intensity', 'random']),
]
# metric, header, better
COLS = [('deletion', 'del. AUC ↓'), ('insertion', 'ins. AUC ↑'), ('pointing', 'pointing ↑'),
        ('energy', 'energy ↑'), ('iou', 'IoU ↑'), ('temporal', 'temporal mass ↑')]


def fmt(v, digits=3):
    if v is None:
        return '–'
    return '%.*f' % (digits, v)


def fmt_ms(v):
    if v is None:
        return '–'
    return '%.0f' % v if v >= 10 else '%.1f' % v


def load(work):
    """{model: {method: (entry, settings, clips)}}, {model: [sanity rows]}"""
    res, sanity = {}, {}
    for model in MODELS:
        mdir = os.path.join(work, model)
        if not os.path.isdir(mdir):
            continue
        for run in sorted(os.listdir(mdir)):
            rdir = os.path.join(mdir, run)
            path = os.path.join(rdir, 'results.json')
            if not os.path.exists(path):
                continue
            js = json.load(open(path))
            settings = open(os.path.join(rdir, 'settings.txt')).read().strip() \
                if os.path.exists(os.path.join(rdir, 'settings.txt')) else ''
            for m in js['methods']:
                if run.startswith('sanity'):
                    continue
                res.setdefault(model, {})[m['name']] = (m, settings, js['clips'])
            sp = os.path.join(rdir, 'sanity.csv')
            if run.startswith('sanity') and os.path.exists(sp):
                sanity.setdefault(model, []).extend(
                    dict(r, settings=settings, json=js) for r in csv.DictReader(open(sp)))
    return res, sanity


def method_table(model, entries):
    lines = ['| method | ' + ' | '.join(h for _, h in COLS) + ' | ms / clip | clips | notes |',
             '|---|' + '---:|' * (len(COLS) + 2) + '---|']
    for fam, methods in FAMILIES:
        lines.append('| **%s** |' % fam + ' |' * (len(COLS) + 3))
        for name in methods:
            if name not in entries:
                lines.append('| %s |' % name + ' |' * (len(COLS) + 2) +
                             ' not run in this regeneration (time) |')
                continue
            m, settings, clips = entries[name]
            if m['status'] != 'ok':
                why = m['status'].split(': ', 1)
                note = '%s: %s' % (why[0], why[1][:110] + ('…' if len(why[1]) > 110 else '')) \
                    if len(why) > 1 else m['status']
                lines.append('| %s |' % name + ' – |' * (len(COLS) + 1) + ' %d | %s |' %
                             (clips, note.replace('|', '/')))
                continue
            vals = [fmt(m['mean'].get(k)) for k, _ in COLS]
            lines.append('| %s | %s | %s | %d | %s |' % (name, ' | '.join(vals),
                                                          fmt_ms(m['time_ms']), clips, settings))
    return '\n'.join(lines)


def summary_table(res, key, title):
    models = [m for m in MODELS if m in res]
    lines = ['| method | ' + ' | '.join(m.replace('action_', '') for m in models) + ' |',
             '|---|' + '---:|' * len(models)]
    for fam, methods in FAMILIES:
        for name in methods:
            row = []
            for model in models:
                e = res[model].get(name)
                if not e:
                    row.append('not run')
                elif e[0]['status'] != 'ok':
                    row.append('refused')
                else:
                    row.append(fmt(key(e[0]['mean'])))
            if any(r != 'not run' for r in row):
                lines.append('| %s | %s |' % (name, ' | '.join(row)))
    return '\n'.join(lines)


def sanity_tables(sanity):
    out = []
    for model, rows in sanity.items():
        rand = [r for r in rows if r['check'] == 'randomization' and r['clip'] == 'mean']
        rl = {r['method']: r for r in rows if r['check'] == 'random-label' and r['clip'] == 'mean'}
        methods = []
        for r in rand:
            if r['method'] not in methods:
                methods.append(r['method'])
        allk = sorted({int(r['layers']) for r in rand})
        n = allk[-1] if allk else 0
        # a readable subset of the steps: the first few, then quarters, and all layers
        ks = sorted({k for k in (0, 1, 2, 3, 5, n // 4, n // 2, 3 * n // 4, n) if k in allk})
        layer = {int(r['layers']): r['layer'] for r in rand}
        clips = rows[0]['json']['clips'] if rows else 0
        out.append('### %s (%s)\n' % (model, rows[0]['settings'] if rows else ''))
        out.append('Spearman rank correlation between the map of the original model and the map '
                   'after the top k of its %d layers were re-initialised (mean over %d clip%s); '
                   'k = 0 is the original model. The k-th layer from the output: ' %
                   (n, clips, '' if clips == 1 else 's') +
                   ', '.join('%d `%s`' % (k, layer[k]) for k in ks if k) +
                   ' (every step: `sanity.csv`).\n')
        out.append('| method | ' + ' | '.join('k=%d' % k for k in ks) +
                   ' | SSIM at k=%d | random label: Spearman | SSIM |' % ks[-1])
        out.append('|---|' + '---:|' * (len(ks) + 3))
        for m in methods:
            sp = {int(r['layers']): float(r['spearman']) for r in rand if r['method'] == m}
            ss = {int(r['layers']): float(r['ssim']) for r in rand if r['method'] == m}
            r = rl.get(m)
            out.append('| %s | %s | %s | %s | %s |' % (
                m, ' | '.join(fmt(sp.get(k), 2) for k in ks), fmt(ss.get(ks[-1]), 2),
                fmt(float(r['spearman']), 2) if r else '–', fmt(float(r['ssim']), 2) if r else '–'))
        out.append('')
    return '\n'.join(out)


def main():
    work, out = sys.argv[1], sys.argv[2]
    res, sanity = load(work)
    info = open(os.path.join(work, 'info.txt')).read().strip() \
        if os.path.exists(os.path.join(work, 'info.txt')) else ''
    doc = open(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            'benchmark_intro.md')).read()
    parts = [doc.replace('@INFO@', info)]
    parts.append('## Summary: localisation (energy-based pointing game, ↑)\n')
    parts.append('Share of the positive map inside the ground-truth tube of the target disc, mean '
                 'over the held-out clips (the tube covers 1–5 % of the voxels).\n')
    parts.append(summary_table(res, lambda m: m.get('energy'), 'energy') + '\n')
    parts.append('## Summary: faithfulness (insertion AUC − deletion AUC, ↑)\n')
    parts.append(summary_table(
        res, lambda m: None if m.get('insertion') is None or m.get('deletion') is None
        else m['insertion'] - m['deletion'], 'faith') + '\n')
    parts.append('## Per model\n')
    for model in MODELS:
        if model in res:
            parts.append('### %s\n' % model)
            parts.append(method_table(model, res[model]) + '\n')
    if sanity:
        parts.append('## Sanity checks (Adebayo et al. 2018)\n')
        parts.append(sanity_tables(sanity))
    text = '\n'.join(parts).rstrip() + '\n'
    tmp = out + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, out)
    print('wrote %s' % out)


if __name__ == '__main__':
    main()
