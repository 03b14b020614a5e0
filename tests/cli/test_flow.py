#!/usr/bin/python3
"""stx's optical flow (src/video/flow.c, pyramidal Lucas-Kanade; AOSA's flow) against analytic
flows and OpenCV's Farneback (python3-opencv), through tests/flow_tool.c.

  * Analytic: a smooth texture (12 plane waves, wavelengths 10-40 px, 128 x 128) translated by
    sub-pixel and multi-pixel offsets (0.5, (0.3, -0.4), (3, 1), (-2.5, 3), (7, 0), (5, -5) px),
    and rotation/zoom fields about the centre (up to 7 px): the average endpoint error (EPE)
    inside a 16 px margin must be <= 0.02 px (translations) and <= 0.05 px (rotation/zoom).
    A single-level flow must fail the 7 px case (so the case exercises the pyramid).
  * The zoo's action clips (tools/zoo/action_data.py): in clips whose disc moves at a constant
    1.5-3 px/frame, the mean flow over the disc (mask eroded by 2 px) must match the shift of
    the disc's mask centroid to within 0.3 px on average.
  * A real video (Debian's vtest.avi, pedestrians, frames halved to 384 x 288), consecutive
    pairs: EPE between stx and Farneback (AOSA's default parameters: pyr_scale 0.5, levels 3,
    winsize 15, iterations 3, poly_n 5, poly_sigma 1.2), over all pixels and over the moving
    ones (|Farneback| > 1 px), next to the EPE between two OpenCV methods (DIS, medium preset,
    and Farneback) for scale. On moving pixels stx's EPE to Farneback must be <= 0.6 of
    Farneback's mean magnitude there (a zero or wrong-signed flow gives >= 1), the mean cosine
    between the two >= 0.8, and warping the second frame by stx's flow must explain the first
    better than no motion (mean photometric residual on moving pixels <= 0.7 of zero flow's).
  * Determinism: the same call twice gives identical bytes.

usage: test_flow.py --tool BUILD/tests/stx_flow_tool --work DIR
"""
import argparse
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'tools', 'zoo'))
VTEST = '/usr/share/doc/opencv-doc/examples/data/vtest.avi'
failures = []


def check(ok, what):
    print(('ok    ' if ok else 'FAIL  ') + what, flush=True)
    if not ok:
        failures.append(what)


def flow(i0, i1, params=()):
    a, b, o = (os.path.join(ARGS.work, n) for n in ('i0.npy', 'i1.npy', 'flow.npy'))
    np.save(a, np.asarray(i0, np.float32))
    np.save(b, np.asarray(i1, np.float32))
    subprocess.run([ARGS.tool, 'pair', a, b, o] + [str(p) for p in params], check=True)
    return np.load(o)


def epe(f, g, m=0):
    d = np.hypot(f[..., 0] - g[..., 0], f[..., 1] - g[..., 1])
    return d[m:d.shape[0] - m, m:d.shape[1] - m] if m else d


# ---- analytic flows ---------------------------------------------------------------------------

def texture(x, y):
    rng = np.random.default_rng(1)
    k = 12
    om = rng.uniform(2 * np.pi / 40, 2 * np.pi / 10, k)
    th = rng.uniform(0, 2 * np.pi, k)
    ph = rng.uniform(0, 2 * np.pi, k)
    am = rng.uniform(0.5, 1, k)
    v = np.zeros_like(x)
    for j in range(k):
        v += am[j] * np.sin(om[j] * (np.cos(th[j]) * x + np.sin(th[j]) * y) + ph[j])
    return v


def test_analytic():
    import cv2
    H = W = 128
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    i0 = texture(xx, yy)

    def u8(im):
        return np.clip((im - i0.min()) / (i0.max() - i0.min()) * 255, 0, 255).astype(np.uint8)

    for d in [(0.5, 0.0), (0.3, -0.4), (3, 1), (-2.5, 3), (7, 0), (5, -5)]:
        i1 = texture(xx - d[0], yy - d[1])          # I1(x + d) = I0(x): flow d everywhere
        gt = np.zeros((H, W, 2))
        gt[..., 0], gt[..., 1] = d
        e = epe(flow(i0, i1), gt, 16).mean()
        fb = cv2.calcOpticalFlowFarneback(u8(i0), u8(i1), None, 0.5, 3, 15, 3, 5, 1.2, 0)
        check(e <= 0.02, 'translation %s px: average EPE %.4f px (Farneback %.4f)'
              % (d, e, epe(fb, gt, 16).mean()))
        if d == (7, 0):
            e1 = epe(flow(i0, i1, (1,)), gt, 16).mean()
            check(e1 > 0.5, 'translation 7 px without a pyramid (levels 1): EPE %.2f px (the '
                  'case needs the coarse-to-fine levels)' % e1)
    c = np.array([(W - 1) / 2, (H - 1) / 2])
    for ang, z in [(3, 1.03), (-5, 0.97), (0, 1.05), (8, 1.0)]:
        a = np.deg2rad(ang)
        A = z * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        Ai = np.linalg.inv(A)
        px, py = xx - c[0], yy - c[1]
        # I1(A (p - c) + c) = I0(p): flow (A - 1)(p - c)
        i1 = texture(Ai[0, 0] * px + Ai[0, 1] * py + c[0], Ai[1, 0] * px + Ai[1, 1] * py + c[1])
        gt = np.stack([(A[0, 0] - 1) * px + A[0, 1] * py, A[1, 0] * px + (A[1, 1] - 1) * py], -1)
        e = epe(flow(i0, i1), gt, 16).mean()
        fb = cv2.calcOpticalFlowFarneback(u8(i0), u8(i1), None, 0.5, 3, 15, 3, 5, 1.2, 0)
        check(e <= 0.05, 'rotation %d deg, zoom %.2f (up to %.1f px): average EPE %.4f px '
              '(Farneback %.4f)' % (ang, z, np.hypot(*gt[16:-16, 16:-16].transpose(2, 0, 1)).max(),
                                    e, epe(fb, gt, 16).mean()))
    f1 = flow(i0, texture(xx - 3, yy - 1))
    f2 = flow(i0, texture(xx - 3, yy - 1))
    check(np.array_equal(f1, f2), 'the same frames twice: identical flows')


# ---- the zoo's moving discs ---------------------------------------------------------------------

def erode(m, r):
    """Binary erosion by a (2r + 1)^2 square (outside the frame counts as set)."""
    p = np.pad(m, r, mode='edge')
    out = np.ones_like(m)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out &= p[dy:dy + m.shape[0], dx:dx + m.shape[1]]
    return out


def test_zoo():
    import action_data
    data = action_data.make_dataset(16, 2)
    errs, mags = [], []
    for i in np.flatnonzero(data['label'] <= 3)[:4]:
        v = data['video'][i].astype(np.float32).mean(-1)
        m = data['mask'][i]
        for t in range(0, v.shape[0] - 1, 3):
            f = flow(v[t], v[t + 1])
            c0 = np.argwhere(m[t]).mean(0)
            c1 = np.argwhere(m[t + 1]).mean(0)
            inner = erode(m[t], 2)
            got = f[inner].mean(0)                       # (u, v) = (dx, dy)
            want = (c1 - c0)[::-1]
            errs.append(np.hypot(*(got - want)))
            mags.append(np.hypot(*want))
    e = float(np.mean(errs))
    check(e <= 0.3, 'zoo action clips, moving discs (%d frame pairs, mean speed %.2f px/frame): '
          'mean flow over the disc vs its centroid shift: error %.3f px (max %.3f)'
          % (len(errs), np.mean(mags), e, np.max(errs)))


# ---- a real video against Farneback ------------------------------------------------------------

def test_real():
    import cv2
    if not os.path.exists(VTEST):
        check(False, '%s missing (Debian package opencv-doc, tools/setup.sh)' % VTEST)
        return
    cap = cv2.VideoCapture(VTEST)
    frames = []
    while len(frames) < 60:
        ok, f = cap.read()
        if not ok:
            break
        g = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
        frames.append(cv2.resize(g, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    m = 8
    rows = []
    for i in range(0, 56, 7):
        a, b = frames[i], frames[i + 1]
        fb = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        st = flow(a, b)
        di = dis.calc(a, b, None)
        crop = (slice(m, -m), slice(m, -m))
        fbc, stc, dic = fb[crop], st[crop], di[crop]
        mag = np.hypot(fbc[..., 0], fbc[..., 1])
        mov = mag > 1
        H, W = a.shape
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)

        def resid(f):
            w = cv2.remap(b.astype(np.float32), xx + f[..., 0], yy + f[..., 1], cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
            return np.abs(w - a)[crop][mov].mean()

        smag = np.hypot(stc[..., 0], stc[..., 1])
        cos = ((stc * fbc).sum(-1) / (smag * mag + 1e-9))[mov].mean()
        rows.append([epe(stc, fbc).mean(), epe(dic, fbc).mean(), epe(stc, fbc)[mov].mean(),
                     epe(dic, fbc)[mov].mean(), mag[mov].mean(), cos, resid(st),
                     resid(np.zeros_like(st)), resid(fb), mov.mean()])
    r = np.array(rows).mean(0)
    print('       vtest.avi at 384x288, %d consecutive pairs: EPE(stx, Farneback) %.3f px over all '
          'pixels (DIS vs Farneback %.3f); moving pixels (%.1f%%): EPE %.3f px (DIS vs '
          'Farneback %.3f), Farneback magnitude %.3f px' % (len(rows), r[0], r[1], 100 * r[9],
                                                            r[2], r[3], r[4]))
    check(r[2] <= 0.6 * r[4], 'vtest.avi, moving pixels: EPE(stx, Farneback) %.3f px <= 0.6 x '
          'their mean Farneback magnitude %.3f px' % (r[2], r[4]))
    check(r[5] >= 0.8, 'vtest.avi, moving pixels: mean cosine between stx and Farneback %.3f'
          % r[5])
    check(r[6] <= 0.7 * r[7], 'vtest.avi, moving pixels: photometric residual |I1(x + u) - I0| '
          'stx %.2f, no motion %.2f, Farneback %.2f' % (r[6], r[7], r[8]))


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument('--tool', required=True)
    ap.add_argument('--work', required=True)
    ARGS = ap.parse_args()
    os.makedirs(ARGS.work, exist_ok=True)
    for name, fn in (('analytic', test_analytic), ('zoo', test_zoo), ('real', test_real)):
        print('--', name, flush=True)
        fn()
    print('%d failure(s)' % len(failures))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
