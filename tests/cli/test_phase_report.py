#!/usr/bin/python3
"""`stx phase`'s pictures and report (cli/phase_report.c) on synthetic procedures.

The data is made here (numpy, fixed seed) and handed to phase_write_report through
tests/phase_report_tool.c; every expected value is computed here from that data and the geometry
documented in cli/phase_report.c (and docs/phase.md), never read back from stx's output:
- timeline.png: the predicted and true ribbons at every frame's columns are the documented
  palette colour (Okabe-Ito) of pred[i] / truth[i] (light grey for unlabelled frames); the
  confidence bar is round(32 p) pixels tall; each moment's heat strip is matplotlib's inferno of
  the positive attribution over its maximum, brightest at the most attributed frame, grey after
  the moment, with ticks at the key frames; a 5,000-frame procedure is binned to 1,600 columns
  (each column the most frequent phase of its frames and their mean confidence);
- keyframes_<frame>.png: the documented size; frames enlarged by pixel repetition; the overlay
  is floor(0.5 frame + 0.5 jet(e) + 0.5) (matplotlib's jet) with e the positive evidence clipped
  at its 99th percentile, jet's hottest colour at the map's maximum;
- thumbs_0.png: the thumbnails tiled 16 per row;
- report.html: parses with html.parser, one list entry per moment, its JSON holds the phases per
  frame, the names (escaped), the moments and their attributions, and only local files that exist;
  headless Chromium opened at #f123 shows frame 123's phase and the nearest moment's grid;
- failures: a folder that cannot be written, a file that cannot be replaced half-way, a NaN map:
  exit 1, one line, no file left behind (neither half-written nor from earlier in the call).
"""
import argparse
import html
import html.parser
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image
import matplotlib

FAILS = []
# Okabe & Ito's palette in the documented order; unlabelled frames are light grey.
PALETTE = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
           (213, 94, 0), (204, 121, 167), (0, 0, 0)]
NONE = (221, 221, 221)
NAMES = ['Preparation', 'CalotTriangleDissection', 'ClippingCutting', 'GallbladderDissection',
         'GallbladderPackaging', 'CleaningCoagulation', 'Retraction <&"x">']
LEFT, TITLE, RIBBON, GAP, CONF, STRIP = 112, 16, 20, 4, 32, 12


def check(ok, what):
    print('%s %s' % ('ok  ' if ok else 'FAIL', what))
    if not ok:
        FAILS.append(what)


def colour(p, P):
    return PALETTE[p % 8] if 0 <= p < P else NONE


def segments(rng, n, P, mean_len):
    out = np.zeros(n, np.int32)
    f = 0
    while f < n:
        ln = int(rng.integers(mean_len // 2, mean_len * 3 // 2 + 1))
        out[f:f + ln] = rng.integers(0, P)
        f += ln
    return out


def make_case(d, n, P, moments, truth=True, thumbs_every=10, size=24, seed=0):
    """Writes the tool's inputs; returns the data as a dict."""
    rng = np.random.default_rng(seed)
    os.makedirs(d, exist_ok=True)
    pred = segments(rng, n, P, max(4, n // 12))
    prob = rng.dirichlet(np.ones(P), size=n).astype(np.float32)
    for f in range(n):  # the predicted phase holds the largest probability
        j = int(np.argmax(prob[f]))
        prob[f, j], prob[f, pred[f]] = prob[f, pred[f]], prob[f, j]
    data = {'n': n, 'P': P, 'pred': pred, 'prob': prob, 'h': size, 'w': size, 'moments': []}
    np.save(os.path.join(d, 'pred.npy'), pred)
    np.save(os.path.join(d, 'prob.npy'), prob)
    if truth:
        tr = pred.copy()
        flip = rng.random(n) < 0.1
        tr[flip] = rng.integers(0, P, flip.sum())
        tr[-5:] = -1  # unlabelled
        data['truth'] = tr
        np.save(os.path.join(d, 'truth.npy'), tr)
    lines = ['video /data/proc <01>.mp4', 'fps 25'] + ['phase ' + NAMES[p % len(NAMES)]
                                                       for p in range(P)]
    lines += ['size %d %d' % (size, size)]
    if thumbs_every:
        nt = (n + thumbs_every - 1) // thumbs_every
        th = rng.integers(0, 256, (nt, size, size, 3), dtype=np.uint8)
        np.save(os.path.join(d, 'thumbs.npy'), th)
        lines.append('thumb_every %d' % thumbs_every)
        data['thumbs'] = th
    if truth:
        lines.append('accuracy %.6f' % float(np.mean(data['truth'] == pred)))
        lines += ['score 0.5 0.25 %s' % ('nan' if p == 3 else '0.125') for p in range(P)]
    for m, (frame, why, peak, kf_frames, note) in enumerate(moments):
        lines.append('moment %d %d %s' % (frame, pred[frame], why))
        if note:
            lines.append('note ' + note)
        t = rng.normal(0, 1, frame + 1).astype(np.float32)
        t[peak] = 5.0
        np.save(os.path.join(d, 'm%d_temporal.npy' % m), t)
        mo = {'frame': frame, 'why': why, 'temporal': t, 'kf': kf_frames, 'note': note}
        if kf_frames:
            k = len(kf_frames)
            rgb = rng.integers(0, 256, (k, size, size, 3), dtype=np.uint8)
            mp = rng.normal(0, 1, (k, size, size)).astype(np.float32)
            for i in range(k):  # a unique maximum somewhere different in each key frame
                mp[i, (5 * i + 3) % size, (7 * i + 11) % size] = 10.0
            w = np.linspace(1, 0.2, k).astype(np.float32)
            np.save(os.path.join(d, 'm%d_kf_frame.npy' % m), np.array(kf_frames, np.int32))
            np.save(os.path.join(d, 'm%d_kf_weight.npy' % m), w)
            np.save(os.path.join(d, 'm%d_kf_rgb.npy' % m), rgb)
            np.save(os.path.join(d, 'm%d_kf_map.npy' % m), mp)
            mo.update(rgb=rgb, map=mp, weight=w)
        data['moments'].append(mo)
    with open(os.path.join(d, 'info.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return data


def run_tool(inp, out, user=None):
    kw = {'user': user} if user else {}
    return subprocess.run([ARGS.tool, inp, out], capture_output=True, text=True, **kw)


def png(path):
    return np.asarray(Image.open(path).convert('RGB'))


def columns(n):
    """The documented binning: data width and each column's frames."""
    wd = (1600 // n) * n if n <= 1600 else 1600
    return wd, [(x * n // wd, max((x + 1) * n // wd, x * n // wd + 1)) for x in range(wd)]


def check_timeline(path, data, label):
    img = png(path)
    n, P = data['n'], data['P']
    wd, cols = columns(n)
    has_truth = 'truth' in data
    y_conf = TITLE + (RIBBON + GAP) * (2 if has_truth else 1)
    y_strip = y_conf + CONF + GAP
    check(img.shape[1] == LEFT + wd + 8, '%s: width %d = 112 + %d + 8' % (label, img.shape[1], wd))
    pred, prob = data['pred'], data['prob']
    bad = {'pred': 0, 'truth': 0, 'conf': 0}
    for x, (a, b) in enumerate(cols):
        X = LEFT + x
        for key, y0 in (('pred', TITLE), ('truth', TITLE + RIBBON + GAP)):
            if key == 'truth' and not has_truth:
                continue
            ph = data[key][a:b]
            vals, counts = np.unique(np.where((ph >= 0) & (ph < P), ph, P), return_counts=True)
            best = int(vals[np.argmax(counts)])  # np.unique sorts: ties go to the smaller index
            want = colour(best, P)
            if not np.all(img[y0:y0 + RIBBON, X] == want):
                bad[key] += 1
        c = float(np.mean(prob[np.arange(a, b), pred[a:b]].astype(np.float64)))
        hb = int(np.floor(c * CONF + 0.5))
        col = img[y_conf:y_conf + CONF, X]
        dark = np.all(col == (80, 80, 80), axis=1)
        light = np.all(col == (240, 240, 240), axis=1)
        if not (dark[CONF - hb:].all() and light[:CONF - hb].all()):
            bad['conf'] += 1
    check(bad['pred'] == 0, '%s: predicted ribbon = palette[pred] at all %d columns (%d wrong)'
          % (label, wd, bad['pred']))
    if has_truth:
        check(bad['truth'] == 0, '%s: true ribbon = palette[truth] (grey unlabelled) (%d wrong)'
              % (label, bad['truth']))
    check(bad['conf'] == 0, '%s: confidence bars round(32 p) tall (%d wrong)'
          % (label, bad['conf']))
    inferno = matplotlib.colormaps['inferno']
    for m, mo in enumerate(data['moments']):
        y = y_strip + m * (STRIP + GAP)
        t = mo['temporal']
        pos = np.maximum(t, 0).astype(np.float32)
        mx = pos.max()
        row = img[y + STRIP // 2, LEFT:LEFT + wd].astype(np.int64)
        wrong = 0
        for x, (a, b) in enumerate(cols):
            if a > mo['frame']:
                want = (230, 230, 230)
            else:
                v = pos[a:min(b, mo['frame'] + 1)].max() / mx
                want = tuple(int(q) for q in inferno(np.float32(v), bytes=True)[:3])
            if tuple(row[x]) != want or not np.all(img[y:y + STRIP, LEFT + x] == want):
                wrong += 1
        check(wrong == 0, '%s: moment %d heat strip = inferno(positive attribution / max) '
              '(%d columns wrong)' % (label, mo['frame'], wrong))
        past = [x for x, (a, b) in enumerate(cols) if a <= mo['frame']]
        lum = row[past] @ np.array([299, 587, 114])
        a, b = cols[past[int(np.argmax(lum))]]
        check(a <= int(np.argmax(t)) < b, '%s: moment %d strip brightest at frames %d..%d '
              '(max attribution at %d)' % (label, mo['frame'], a, b - 1, int(np.argmax(t))))
        ticks = [int(LEFT + ((2 * f + 1) * wd) // (2 * n)) for f in mo['kf']]
        check(all(np.all(img[y + STRIP:y + STRIP + 3, x] == 0) for x in ticks),
              '%s: moment %d key frames ticked under the strip' % (label, mo['frame']))


def wrapped_lines(note, cols, max_lines=3):
    """The documented greedy wrap: break at the last space that fits, else inside the word."""
    n, s = 0, note or ''
    while s and n < max_lines:
        s = s.lstrip(' ')
        if not s:
            break
        if len(s) > cols:
            k = s.rfind(' ', 0, cols + 1)
            s = s[k:] if k > 0 else s[cols:]
        else:
            s = ''
        n += 1
    return n


def check_grid(path, mo, h, w):
    img = png(path)
    k = len(mo['kf'])
    s = max(1, 160 // max(h, w))
    cw, ch = s * w, s * h
    C, R = min(k, 8), (k + 7) // 8
    W = max(240, 4 + C * (cw + 4))
    head = 16 + 12 * max(1, wrapped_lines(mo['note'], (W - 8 + 1) // 6))
    H = head + R * (2 * ch + 20)
    check(img.shape[:2] == (H, W), 'grid of moment %d: %dx%d (expected %dx%d, a %d-pixel header)'
          % (mo['frame'], img.shape[1], img.shape[0], W, H, head))
    if img.shape[:2] != (H, W):
        return
    jet = matplotlib.colormaps['jet']
    for i in range(k):
        x0, y0 = 4 + (i % 8) * (cw + 4), head + (i // 8) * (2 * ch + 20)
        rgb, mp = mo['rgb'][i], mo['map'][i]
        big = np.repeat(np.repeat(rgb, s, 0), s, 1)
        fr = img[y0 + 12:y0 + 12 + ch, x0:x0 + cw]
        pos = np.maximum(mp, np.float32(0))
        srt = np.sort(pos.ravel())
        q = srt[int(0.99 * (srt.size - 1))]
        q = q if q > 0 else srt[-1]
        norm = np.minimum(pos / q, np.float32(1)) if q > 0 else np.zeros_like(pos)
        hot = jet(norm, bytes=True)[..., :3].astype(np.float64)
        want = np.floor(0.5 * rgb + 0.5 * hot + 0.5).astype(np.uint8)
        ov = img[y0 + 16 + ch:y0 + 16 + 2 * ch, x0:x0 + cw]
        got = ov[s // 2::s, s // 2::s]
        same = np.mean(np.all(got == want, axis=-1))
        yy, xx = np.unravel_index(int(np.argmax(mp)), mp.shape)
        top = np.floor(0.5 * rgb[yy, xx] + 0.5 * np.array(jet(1.0, bytes=True)[:3]) + 0.5)
        check(np.array_equal(fr, big) and same > 0.99 and np.array_equal(got[yy, xx], top) and
              np.array_equal(ov, np.repeat(np.repeat(got, s, 0), s, 1)),
              'grid of moment %d, key frame %d: frame x%d, overlay = jet blend on %.1f%% of '
              'pixels, hottest jet colour at the map maximum (%d,%d)' %
              (mo['frame'], mo['kf'][i], s, 100 * same, yy, xx))


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.moments, self.refs, self.stack, self.data, self.scripts = [], [], [], None, []
        self.in_data = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == 'li' and 'moment' in (a.get('class') or '').split():
            self.moments.append(a)
        for key in ('src', 'href'):
            if a.get(key):
                self.refs.append(a[key])
        if tag == 'script':
            self.scripts.append(a)
            self.in_data = a.get('id') == 'data'
            if self.in_data:
                self.data = ''

    def handle_endtag(self, tag):
        if tag == 'script':
            self.in_data = False

    def handle_data(self, d):
        if self.in_data:
            self.data += d

    @staticmethod
    def data_of(path):
        p = Page()
        p.feed(open(path, encoding='utf-8').read())
        p.close()
        return p.data


def check_html(out, data):
    text = open(os.path.join(out, 'report.html'), encoding='utf-8').read()
    p = Page()
    p.feed(text)
    p.close()
    check(len(p.moments) == len(data['moments']), 'report.html: %d moment entries for %d moments'
          % (len(p.moments), len(data['moments'])))
    check(all(s.get('src') is None for s in p.scripts), 'report.html: no external script')
    local = [r for r in p.refs if not r.startswith('#')]
    check(all('://' not in r and not r.startswith('//') and os.path.isfile(os.path.join(out, r))
              for r in local), 'report.html: every reference is a file beside it: %s' % local)
    try:
        D = json.loads(p.data)
    except (TypeError, ValueError) as e:
        check(False, 'report.html: JSON data block parses: %s' % e)
        return
    check(D['pred'] == data['pred'].tolist(), 'JSON: predicted phase of every frame')
    if 'truth' in data:
        check(D['truth'] == data['truth'].tolist(), 'JSON: true phase of every frame')
    check(D['phases'] == [NAMES[q % len(NAMES)] for q in range(data['P'])],
          'JSON: phase names, "<&" and quotes intact')
    check(D['colors'] == ['#%02X%02X%02X' % c for c in PALETTE], 'JSON: the palette of the PNGs')
    prob = np.array(D['prob'], np.float64).reshape(data['n'], data['P'])
    check(np.abs(prob - data['prob']).max() <= 5e-4, 'JSON: probabilities to 3 decimals')
    ok = len(D['moments']) == len(data['moments'])
    for m, mo in zip(D['moments'], data['moments']):
        ok &= m['frame'] == mo['frame'] and m['why'] == mo['why'] and m['note'] == mo['note']
        ok &= [k['frame'] for k in m['keyframes']] == list(mo['kf'])
        ok &= bool(np.allclose(m['temporal'], mo['temporal'], rtol=1e-3, atol=1e-6))
        ok &= (m['grid'] is None) == (not mo['kf'])
    check(ok, 'JSON: moments, notes, key frames and attributions')
    th = D['thumbs']
    if 'thumbs' in data:
        stride = -(-len(data['thumbs']) // 1600)
        every = data['n'] // len(data['thumbs']) * stride
        check(th and th['count'] == -(-len(data['thumbs']) // stride) and th['every'] == every,
              'JSON: %s thumbnails, every %d frames' % (th and th['count'], every))


def check_chromium(out, data):
    exe = shutil.which('chromium')
    if not exe:
        check(False, 'chromium missing (tools/setup.sh installs it)')
        return
    f = 123
    base = [exe, '--headless', '--no-sandbox', '--disable-gpu', '--virtual-time-budget=4000',
            '--user-data-dir=' + os.path.join(ARGS.work, 'chromium-profile')]
    p = subprocess.run(base + ['--dump-dom', 'file://%s/report.html#f%d' % (out, f)],
                       capture_output=True, text=True, timeout=120)
    dom = p.stdout
    now = dom[dom.find('id="now"'):][:400]
    name = html.escape(NAMES[int(data['pred'][f])], quote=False)
    nearest = min(data['moments'], key=lambda m: (abs(m['frame'] - f), m['frame']))['frame']
    check('frame %d</b>' % f in now and name in now,
          'Chromium at #f%d: the cursor shows phase %s: %s' % (f, name, now[:160]))
    check('src="keyframes_%d.png"' % nearest in dom,
          'Chromium at #f%d: the nearest moment\'s grid (frame %d) is shown' % (f, nearest))
    # a key frame's link (#f<frame>m<moment>) keeps its moment although another one is nearer
    m0 = data['moments'][0]
    kf = m0['kf'][1]
    p = subprocess.run(base + ['--dump-dom', 'file://%s/report.html#f%dm0' % (out, kf)],
                       capture_output=True, text=True, timeout=120)
    cap = p.stdout[p.stdout.find('id="mcap"'):][:300]
    now = p.stdout[p.stdout.find('id="now"'):][:1000]
    check('a key frame of <a href="#f%dm0"' % m0['frame'] in now,
          'Chromium at #f%dm0: the frame is named a key frame of moment %d' % (kf, m0['frame']))
    check('selected moment' in cap and 'frame %d</a>' % m0['frame'] in cap and
          'src="keyframes_%d.png"' % m0['frame'] in p.stdout,
          'Chromium at #f%dm0: key frame %d shown with its moment %d: %s' %
          (kf, kf, m0['frame'], cap[:120]))


def leftovers(out, allowed=()):
    return sorted(x for x in os.listdir(out) if x not in allowed) if os.path.isdir(out) else []


def test_main():
    inp, out = os.path.join(ARGS.work, 'in300'), os.path.join(ARGS.work, 'out300')
    shutil.rmtree(out, ignore_errors=True)
    moments = [(150, 'segment', 97, [97, 40, 120, 10], None),
               (260, 'transition', 255, [255, 250, 200], 'instrument: clipper <appears> & "stays"'),
               (20, 'user', 3, [], None)]
    data = make_case(inp, 300, 7, moments)
    p = run_tool(inp, out)
    check(p.returncode == 0 and p.stderr == '', 'report of 300 frames: exit %d %s' %
          (p.returncode, p.stderr.strip()))
    if p.returncode:
        return
    want = {'timeline.png', 'keyframes_150.png', 'keyframes_260.png', 'thumbs_0.png',
            'report.html'}
    check(set(os.listdir(out)) == want, 'files: %s' % sorted(os.listdir(out)))
    check_timeline(os.path.join(out, 'timeline.png'), data, '300 frames')
    for mo in data['moments']:
        if mo['kf']:
            check_grid(os.path.join(out, 'keyframes_%d.png' % mo['frame']), mo, 24, 24)
    th = png(os.path.join(out, 'thumbs_0.png'))
    tiles = data['thumbs']
    ok = th.shape == (48, 384, 3)
    for i in range(len(tiles)):
        y, x = (i // 16) * 24, (i % 16) * 24
        ok = ok and np.array_equal(th[y:y + 24, x:x + 24], tiles[i])
    check(ok, 'thumbnails tiled 16 per row: %s' % (th.shape,))
    check_html(out, data)
    check_chromium(out, data)


def test_long():
    inp, out = os.path.join(ARGS.work, 'in5000'), os.path.join(ARGS.work, 'out5000')
    shutil.rmtree(out, ignore_errors=True)
    long_note = ('grasper -> clipper: P(clipping) 0.02 -> 0.97; tools +clipper -grasper; the '
                 'change comes most from frames 3990-3999 (the clipper entering from the left '
                 'border), '
                 'and a word longer than any line: ' + 'x' * 60 + ' then more text that is dropped '
                 'because only three lines are drawn')
    data = make_case(inp, 5000, 9, [(4000, 'segment', 123, [123, 3999], long_note)], truth=False,
                     thumbs_every=1, size=24, seed=1)
    # mixed bins: every frame a random phase with probability 0.3
    rng = np.random.default_rng(7)
    mix = rng.random(5000) < 0.3
    data['pred'][mix] = rng.integers(0, 9, mix.sum())
    np.save(os.path.join(inp, 'pred.npy'), data['pred'])
    p = run_tool(inp, out)
    check(p.returncode == 0, 'report of 5000 frames, 9 phases: exit %d %s' %
          (p.returncode, p.stderr.strip()))
    if p.returncode == 0:
        check_timeline(os.path.join(out, 'timeline.png'), data, '5000 frames')
        check_grid(os.path.join(out, 'keyframes_4000.png'), data['moments'][0], 24, 24)
        check_html(out, data)
        # 5000 thumbnails: every 4th kept (at most 1600), 256 per sheet
        keep = data['thumbs'][::4]
        ok = True
        for k in range((len(keep) + 255) // 256):
            sheet = png(os.path.join(out, 'thumbs_%d.png' % k))
            part = keep[256 * k:256 * (k + 1)]
            for i in range(len(part)):
                y, x = (i // 16) * 24, (i % 16) * 24
                ok = ok and np.array_equal(sheet[y:y + 24, x:x + 24], part[i])
        n_sheets = len([f for f in os.listdir(out) if f.startswith('thumbs_')])
        check(ok and n_sheets == 5, '5000 thumbnails: every 4th of them in %d sheets' % n_sheets)


def test_edge():
    """One frame, one phase, no frame rate, no positive attribution, a constant map."""
    inp, out = os.path.join(ARGS.work, 'in1'), os.path.join(ARGS.work, 'out1')
    shutil.rmtree(out, ignore_errors=True)
    data = make_case(inp, 1, 1, [(0, 'user', 0, [0], None)], truth=False, thumbs_every=1,
                     size=8, seed=4)
    info = open(os.path.join(inp, 'info.txt')).read().replace('fps 25', 'fps 0')
    open(os.path.join(inp, 'info.txt'), 'w').write(info)
    np.save(os.path.join(inp, 'm0_temporal.npy'), np.array([-2.0], np.float32))
    np.save(os.path.join(inp, 'm0_kf_map.npy'), np.full((1, 8, 8), -3.0, np.float32))
    p = run_tool(inp, out)
    check(p.returncode == 0, 'one frame: exit %d %s' % (p.returncode, p.stderr.strip()))
    if p.returncode:
        return
    img = png(os.path.join(out, 'timeline.png'))
    y_strip = TITLE + RIBBON + GAP + CONF + GAP
    check(img.shape[1] == LEFT + 1600 + 8 and np.all(img[TITLE:TITLE + RIBBON, LEFT:LEFT + 1600]
                                                     == PALETTE[0]),
          'one frame: 1600 columns of phase 0\'s colour')
    black = tuple(int(q) for q in matplotlib.colormaps['inferno'](0.0, bytes=True)[:3])
    check(np.all(img[y_strip:y_strip + STRIP, LEFT:LEFT + 1600] == black),
          'one frame: no positive attribution: the strip is inferno(0)')
    g = png(os.path.join(out, 'keyframes_0.png'))
    s = 160 // 8
    ov = g[28 + 16 + 8 * s:28 + 16 + 16 * s, 4:4 + 8 * s]
    rgb = np.repeat(np.repeat(data['moments'][0]['rgb'][0], s, 0), s, 1)
    cold = np.array(matplotlib.colormaps['jet'](0.0, bytes=True)[:3], np.float64)
    check(np.array_equal(ov, np.floor(0.5 * rgb + 0.5 * cold + 0.5).astype(np.uint8)),
          'one frame: a map without positive values is jet(0) everywhere')
    D = json.loads(Page.data_of(os.path.join(out, 'report.html')))
    check(D['fps'] is None or D['fps'] == 0, 'one frame: no frame rate in the JSON')


def one_line(err):
    lines = err.strip().split('\n')
    return len(lines) == 1 and lines[0].startswith('stx: ')


def test_errors():
    inp = os.path.join(ARGS.work, 'in_err')
    make_case(inp, 60, 7, [(50, 'segment', 7, [7, 8], None)], seed=3)
    # a folder that cannot be written (as an unprivileged user when we are root)
    ro = os.path.join(ARGS.work, 'readonly')
    shutil.rmtree(ro, ignore_errors=True)
    os.makedirs(ro)
    os.chmod(ro, 0o555)
    try:
        p = run_tool(inp, ro, user='nobody' if os.geteuid() == 0 else None)
        check(p.returncode == 1 and one_line(p.stderr) and leftovers(ro) == [],
              'unwritable folder: exit %d, one line (%s), nothing left: %s'
              % (p.returncode, p.stderr.strip(), leftovers(ro)))
    except (PermissionError, KeyError, OSError) as e:
        check(False, 'cannot run the tool as nobody: %s' % e)
    # a failure half-way: report.html cannot replace a folder of that name
    out = os.path.join(ARGS.work, 'halfway')
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.join(out, 'report.html', 'x'))
    p = run_tool(inp, out)
    check(p.returncode == 1 and one_line(p.stderr) and 'report.html' in p.stderr and
          leftovers(out) == ['report.html'],
          'report.html cannot be written: exit %d, one line (%s), the earlier files removed: %s'
          % (p.returncode, p.stderr.strip(), leftovers(out)))
    # a NaN in a key frame's map: named, nothing left, a folder the call made is removed
    mp = np.load(os.path.join(inp, 'm0_kf_map.npy'))
    mp[1, 2, 3] = np.nan
    np.save(os.path.join(inp, 'm0_kf_map.npy'), mp)
    out = os.path.join(ARGS.work, 'nan_map')
    shutil.rmtree(out, ignore_errors=True)
    p = run_tool(inp, out)
    check(p.returncode == 1 and one_line(p.stderr) and 'key frame 8' in p.stderr and
          not os.path.exists(out), 'NaN map: exit %d, one line (%s), no folder left'
          % (p.returncode, p.stderr.strip()))


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument('--tool', required=True)
    ap.add_argument('--work', required=True)
    ARGS = ap.parse_args()
    os.makedirs(ARGS.work, exist_ok=True)
    os.chmod(ARGS.work, 0o755)
    for t in (test_main, test_long, test_edge, test_errors):
        t()
    print('%d failure(s)' % len(FAILS))
    sys.exit(1 if FAILS else 0)


if __name__ == '__main__':
    main()
