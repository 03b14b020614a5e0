#!/usr/bin/python3
"""`stx explain` on real video, end to end: decode -> explain -> render -> report.

Checks (oracles are independent of stx's rendering code: numpy/PIL arithmetic written here from
the documented geometry, Chromium for the report):
- the bundled demo clip (models/zoo/clips/blink.mp4): the report folder holds every file; the
  manifest's prediction is the model's (stx run on the same frames); the raw map has the model's
  shape;
- carry-back: a video whose model input is a resized and cropped view; the hottest voxel of the
  raw map, taken through the documented resize/crop geometry to the source frame, is where the
  overlay GIF is hottest (red in jet), and the strips outside the crop are dimmed;
- resize (short side), centre crop, normalisation and BGR against torchvision;
- .npy frames, a PNG folder and the MP4 of the same frames give the same prediction;
- a real video from Debian's opencv-doc (vtest.avi) renders end to end, one clip and windows;
- several methods on one page; a folder that is not an stx report is never replaced; errors;
- headless Chromium loads report.html, every video and image loads; a screenshot is saved;
- a 10,000-frame video explained with sliding windows: peak memory (RSS of the stx process,
  measured by the kernel) under 1 GiB; Ctrl-C part-way stops cleanly and writes nothing.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZOO = os.path.join(ROOT, 'models', 'zoo')
VTEST = '/usr/share/doc/opencv-doc/examples/data/vtest.avi'
FAILS = []


def check(ok, what):
    print('%s %s' % ('ok  ' if ok else 'FAIL', what))
    if not ok:
        FAILS.append(what)


def run(args, env=None):
    p = subprocess.run(args, capture_output=True, text=True, env=env)
    return p


def stx(args, expect=0):
    p = run([ARGS.stx] + args)
    if p.returncode != expect:
        print(p.stdout, p.stderr)
    check(p.returncode == expect, 'stx %s -> exit %d' % (' '.join(args[:4]), p.returncode))
    return p


def report_files(d, method_dirs=('.',)):
    need = ['manifest.json', 'report.html', 'original.mp4']
    for m in method_dirs:
        need += [os.path.join(m, f) for f in ('saliency.npy', 'overlay.mp4', 'overlay.gif',
                                              'frames.png', 'temporal.png')]
    missing = [f for f in need if not os.path.isfile(os.path.join(d, f))
               or os.path.getsize(os.path.join(d, f)) == 0]
    check(not missing, '%s holds every file (missing: %s)' % (d, missing))


def test_demo():
    clip = os.path.join(ZOO, 'clips', 'blink.mp4')
    out = os.path.join(ARGS.work, 'demo')
    p = stx(['explain', os.path.join(ZOO, 'action_r3d.onnx'), clip, '--out-dir', out])
    check('report: %s/report.html' % out in p.stdout, 'prints where the report is')
    report_files(out)
    man = json.load(open(os.path.join(out, 'manifest.json')))
    sal = np.load(os.path.join(out, 'saliency.npy'))
    check(sal.shape == (1, 16, 64, 64) and sal.dtype == np.float32,
          'raw map (1,16,64,64) float32: %s %s' % (sal.shape, sal.dtype))
    check(man['input']['frames'] == 16 and man['sampling']['frames'] == list(range(16)),
          'manifest: 16 frames, all sampled')
    pred = man['predictions'][0]
    check(pred['top_name'] == 'blink', 'demo clip predicted blink: %s' % pred['top_name'])
    for key in ('stx_version', 'input', 'sampling', 'preprocessing', 'model', 'predictions',
                'methods', 'render', 'timings_ms'):
        check(key in man, 'manifest has %s' % key)
    check(man['methods'][0]['layer'] == 'layer4', 'layer recorded: %s' % man['methods'][0]['layer'])


def jet_red(rgb):
    r, g, b = [rgb[..., k].astype(int) for k in range(3)]
    return (r > 150) & (b < 80) & (g < 120)


def test_carry_back():
    """A 96x128 (HxW) clip; --size 80 --crop 64 (the zoo model takes 64x64): resized 80x106,
    crop 64x64 at (8, 21)."""
    rng = np.random.default_rng(0)
    T, H, W = 16, 96, 128
    v = (rng.random((T, H, W, 3)) * 60 + 60).astype(np.uint8)
    # a bright moving disc, so the map has a clear maximum somewhere inside the crop
    yy, xx = np.mgrid[0:H, 0:W]
    for t in range(T):
        cy, cx = 40 + t, 50 + 2 * t
        v[t][(yy - cy) ** 2 + (xx - cx) ** 2 < 100] = (250, 250, 250)
    src = os.path.join(ARGS.work, 'carry.npy')
    np.save(src, v)
    out = os.path.join(ARGS.work, 'carry')
    stx(['explain', os.path.join(ZOO, 'action_r3d.onnx'), src, '--out-dir', out,
         '--size', '80', '--crop', '64', '--alpha', '1'])
    man = json.load(open(os.path.join(out, 'manifest.json')))
    pre = man['preprocessing']
    # torchvision: Resize(80) on 96x128 -> 80 x int(80*128/96) = 80x106; CenterCrop(64):
    # top = round((80-64)/2) = 8, left = round((106-64)/2) = 21
    check(pre['resize'] == [80, 106] and pre['crop'] == {'y': 8, 'x': 21, 'height': 64,
                                                            'width': 64},
          'geometry as torchvision: %s %s' % (pre['resize'], pre['crop']))
    sal = np.load(os.path.join(out, 'saliency.npy'))[0]          # (16, 64, 64)
    check(sal.shape == (16, 64, 64), 'map at the crop resolution: %s' % (sal.shape,))
    gif = Image.open(os.path.join(out, 'overlay.gif'))
    frames = []
    for i in range(gif.n_frames):
        gif.seek(i)
        frames.append(np.asarray(gif.convert('RGB')))
    frames = np.stack(frames)
    check(frames.shape == (16, H, W, 3), 'overlay GIF at the source size: %s' % (frames.shape,))
    t, cy, cx = np.unravel_index(sal.argmax(), sal.shape)
    # the source pixel whose centre maps onto crop pixel (cy, cx): half-pixel centres through
    # the resize (scales 96/80 and 128/106) and the crop offset
    sy = (cy + 8 + 0.5) * 96 / 80 - 0.5
    sx = (cx + 21 + 0.5) * 128 / 106 - 0.5
    red = jet_red(frames[t])
    ys, xs = np.nonzero(red)
    near = np.hypot(ys - sy, xs - sx).min() if len(ys) else 1e9
    check(near <= 3, 'hottest map voxel (t=%d, crop %d,%d) -> source (%.1f,%.1f): red overlay '
          'pixel within %.1f px' % (t, cy, cx, sy, sx, near))
    # and the overlay's hottest pixels sit where the map's are, not mirrored or shifted: the
    # centroid of the red pixels is within a few pixels of the mapped maximum
    if len(ys):
        d = np.hypot(ys.mean() - sy, xs.mean() - sx)
        check(d <= 8, 'red region centred on the mapped maximum: %.1f px off' % d)
    # outside the crop: source columns whose centres fall left of resized column 21, i.e.
    # x <= 24, are dimmed frames (no colour): brightness 0.35 of the frame
    ratio = frames[:, :, :24].astype(float).mean() / v[:, :, :24].astype(float).mean()
    check(0.3 < ratio < 0.4, 'outside the crop dimmed: brightness ratio %.3f' % ratio)
    inside = np.abs(frames[:, 12:84, 30:100].astype(float) - v[:, 12:84, 30:100]).mean()
    check(inside > 20, 'inside the crop coloured (alpha 1): mean change %.1f' % inside)


def test_preprocess_torchvision():
    """Resize(short side) + CenterCrop + Normalize (+ BGR) against torchvision on the same uint8
    frames (resize without antialiasing: F.interpolate bilinear, align_corners=False)."""
    import torch
    import torchvision.transforms.functional as TF
    rng = np.random.default_rng(1)
    for (h, w), short, crop, bgr in (((60, 80), 32, 28, 0), ((81, 50), 40, 33, 1),
                                     ((45, 45), 45, 45, 0), ((90, 70), 20, 17, 0)):
        v = rng.integers(0, 256, (3, h, w, 3), dtype=np.uint8)
        src, out = os.path.join(ARGS.work, 'pre_in.npy'), os.path.join(ARGS.work, 'pre_out.npy')
        np.save(src, v)
        p = run([ARGS.unit, '--preprocess', src, out, str(short), str(crop), str(bgr)])
        check(p.returncode == 0, 'preprocess %dx%d: %s' % (h, w, p.stderr.strip()))
        got = np.load(out)                                   # (1, 3, T, crop, crop)
        x = torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255   # T,3,H,W
        x = TF.resize(x, short, interpolation=TF.InterpolationMode.BILINEAR, antialias=False)
        x = TF.center_crop(x, [crop, crop])
        mean = torch.tensor([0.43216, 0.394666, 0.37645])
        std = torch.tensor([0.22803, 0.22145, 0.216989])
        if bgr:
            x = x.flip(1)
        x = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
        want = x.permute(1, 0, 2, 3).unsqueeze(0).numpy()
        err = np.abs(got - want).max() if got.shape == want.shape else float('inf')
        check(err < 1e-5, 'short side %d, crop %d, bgr %d on %dx%d = torchvision: %s, max err %.1e'
              % (short, crop, bgr, h, w, got.shape, err))


def test_sources_agree():
    """The demo clip decoded as MP4, the same decoded frames as .npy and as a PNG folder."""
    out = os.path.join(ARGS.work, 'src_mp4')
    stx(['explain', os.path.join(ZOO, 'action_r3d.onnx'), os.path.join(ZOO, 'clips', 'blink.mp4'),
         '--out-dir', out])
    a = np.load(os.path.join(out, 'saliency.npy'))
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    import make_demo_video
    clip = make_demo_video.frames()
    folder = os.path.join(ARGS.work, 'blink_png')
    os.makedirs(folder, exist_ok=True)
    for t in range(clip.shape[0]):
        Image.fromarray(clip[t]).save(os.path.join(folder, 'f%03d.png' % t))
    b_out, c_out = os.path.join(ARGS.work, 'src_png'), os.path.join(ARGS.work, 'src_npy')
    stx(['explain', os.path.join(ZOO, 'action_r3d.onnx'), folder, '--out-dir', b_out])
    npy = os.path.join(ARGS.work, 'blink_video.npy')
    np.save(npy, clip)
    stx(['explain', os.path.join(ZOO, 'action_r3d.onnx'), npy, '--out-dir', c_out])
    b = np.load(os.path.join(b_out, 'saliency.npy'))
    c = np.load(os.path.join(c_out, 'saliency.npy'))
    check(np.array_equal(b, c), 'PNG folder and .npy frames: identical maps')
    ma = json.load(open(os.path.join(out, 'manifest.json')))['predictions'][0]['top']
    mb = json.load(open(os.path.join(b_out, 'manifest.json')))['predictions'][0]['top']
    check(ma == mb, 'MP4 and its lossless source frames: same prediction (%s, %s)' % (ma, mb))
    rel = np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)
    print('  MP4 vs lossless frames: map max rel diff %.3f (codec loss)' % rel)


def test_vtest():
    if not os.path.exists(VTEST):
        check(False, '%s missing (tools/setup.sh installs opencv-doc)' % VTEST)
        return
    out = os.path.join(ARGS.work, 'vtest')
    p = stx(['explain', os.path.join(ZOO, 'action_r3d.onnx'), VTEST, '--out-dir', out,
             '--uniform', '--colormap', 'turbo'])
    report_files(out)
    man = json.load(open(os.path.join(out, 'manifest.json')))
    check(man['input']['width'] == 768 and man['input']['height'] == 576,
          'vtest.avi 768x576: %dx%d, %d frames' % (man['input']['width'], man['input']['height'],
                                                  man['input']['frames']))
    print('  ' + p.stdout.strip().replace('\n', '\n  '))
    out2 = os.path.join(ARGS.work, 'vtest_windows')
    # from frame 740 of 795: 55 frames, 6 windows (the last one ragged, ending at the end); the
    # report's rendering (two methods' overlays at 768x576) costs in proportion to the frames
    start = 740
    stx(['explain', os.path.join(ZOO, 'action_r3d.onnx'), VTEST, '--out-dir', out2, '--windows',
         '--start', str(start), '--window-stride', '8', '--method', 'gradcam,eigencam'])
    report_files(out2, ('gradcam', 'eigencam'))
    man = json.load(open(os.path.join(out2, 'manifest.json')))
    n = man['input']['frames']
    sal = np.load(os.path.join(out2, 'gradcam', 'saliency.npy'))
    check(sal.shape == (1, n - start, 64, 64),
          'windows: one map frame per video frame from --start %d on %s' % (start, sal.shape))
    k = len(man['predictions'])
    # starts 740, 748, ..., while start + 16 <= n, then one ending at the last frame
    want = (n - start - 16) // 8 + 1 + (1 if (n - start - 16) % 8 else 0)
    check(k == want and (n - start - 16) % 8,
          'windows every 8 frames, the last ending at the end: %d (%d)' % (k, want))
    check(man['predictions'][0]['first_frame'] == start, 'first window at --start')
    check(man['predictions'][-1]['last_frame'] == n - 1, 'last window ends at the last frame')


def test_errors():
    model = os.path.join(ZOO, 'action_r3d.onnx')
    bad = os.path.join(ARGS.work, 'bad.mp4')
    open(bad, 'w').write('not a video')
    cases = [
        ([model, bad, '--out-dir', os.path.join(ARGS.work, 'e1')], 'bad.mp4'),
        ([model, os.path.join(ARGS.work, 'missing.mp4'), '--out-dir',
          os.path.join(ARGS.work, 'e2')], 'missing.mp4'),
        ([model, os.path.join(ZOO, 'clips', 'blink.mp4')], '--out-dir'),
        ([model, os.path.join(ZOO, 'clips', 'blink.mp4'), '--out-dir',
          os.path.join(ARGS.work, 'e3'), '--clip-len', '40'], 'too short'),
        ([model, os.path.join(ZOO, 'clips', 'blink.mp4'), '--out-dir',
          os.path.join(ARGS.work, 'e4'), '--colormap', 'rainbow'], '--colormap'),
        ([model, os.path.join(ZOO, 'clips', 'blink.mp4'), '--out-dir',
          os.path.join(ARGS.work, 'e5'), '--crop', '500'], 'crop'),
    ]
    for args, word in cases:
        p = run([ARGS.stx, 'explain'] + args)
        line = p.stderr.strip()
        check(p.returncode != 0 and word in line and len(line.splitlines()) == 1,
              'error names %s: %s' % (word, line))
        d = args[args.index('--out-dir') + 1] if '--out-dir' in args else None
        if d:
            left = [f for f in os.listdir(ARGS.work) if f.startswith(os.path.basename(d))]
            check(not left, 'no output left behind for %s: %s' % (word, left))
    # an existing folder that is not an stx report is never replaced
    keep = os.path.join(ARGS.work, 'keep')
    os.makedirs(keep, exist_ok=True)
    open(os.path.join(keep, 'thesis.tex'), 'w').write('x')
    p = run([ARGS.stx, 'explain', model, os.path.join(ZOO, 'clips', 'blink.mp4'), '--out-dir', keep])
    check(p.returncode != 0 and os.path.exists(os.path.join(keep, 'thesis.tex')),
          'a foreign folder is kept: %s' % p.stderr.strip())


def test_chromium():
    exe = shutil.which('chromium')
    if not exe:
        check(False, 'chromium missing (tools/setup.sh installs it)')
        return
    for name, sub in (('demo', 'demo'), ('several methods', 'vtest_windows')):
        report = os.path.join(ARGS.work, sub, 'report.html')
        shot = os.path.join(ARGS.work, 'report_%s.png' % sub)
        base = [exe, '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars',
                '--autoplay-policy=no-user-gesture-required', '--virtual-time-budget=8000',
                '--user-data-dir=' + os.path.join(ARGS.work, 'chromium-profile')]
        p = run(base + ['--dump-dom', 'file://' + report])
        ok = 'data-ok="1"' in p.stdout
        status = p.stdout[p.stdout.find('id="status"'):][:120]
        check(ok, 'Chromium loads the %s report, every video and image: %s' % (name, status))
        p = run(base + ['--window-size=1200,1400', '--screenshot=' + shot, 'file://' + report])
        check(os.path.exists(shot) and os.path.getsize(shot) > 10000,
              'screenshot saved: %s' % shot)


def test_long_video():
    n = 10000
    path = os.path.join(ARGS.work, 'long.mp4')
    if not os.path.exists(path):
        p = run([ARGS.npy2video, '--synthetic', str(n), '120x160', path, '25'])
        check(p.returncode == 0, 'made a %d-frame 160x120 video: %s' % (n, p.stderr.strip()))
    # Ctrl-C part-way: a clean stop, a non-zero exit, nothing written
    cut = os.path.join(ARGS.work, 'long_cancelled')
    proc = subprocess.Popen([ARGS.stx, 'explain', os.path.join(ZOO, 'action_r3d.onnx'), path,
                             '--out-dir', cut, '--windows'], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate()
    left = [f for f in os.listdir(ARGS.work) if f.startswith('long_cancelled')]
    check(proc.returncode == 1 and 'cancelled' in err and not left,
          'SIGINT stops the windows cleanly (exit %d, %s, left: %s)' % (proc.returncode,
                                                                        err.strip(), left))
    out = os.path.join(ARGS.work, 'long')
    t0 = time.time()
    # the kernel's high-water mark of this one process (wait4), not of every child so far
    proc = subprocess.Popen([ARGS.stx, 'explain', os.path.join(ZOO, 'action_r3d.onnx'), path,
                             '--out-dir', out, '--windows'], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    check(proc.returncode == 0, 'stx explain --windows on %d frames: %s' % (n, err.strip()))
    peak = usage.ru_maxrss  # KiB
    print('  %d frames, %d windows: %.1f s, peak RSS %.0f MiB' % (
        n, len(json.load(open(os.path.join(out, 'manifest.json')))['predictions']),
        time.time() - t0, peak / 1024))
    check(peak < 1024 * 1024, 'peak memory of stx on %d frames < 1 GiB: %.0f MiB' %
          (n, peak / 1024))
    sal = np.load(os.path.join(out, 'saliency.npy'), mmap_mode='r')
    check(sal.shape == (1, n, 64, 64), 'stitched map over every frame: %s' % (sal.shape,))


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument('--stx', required=True)
    ap.add_argument('--npy2video', required=True)
    ap.add_argument('--unit', required=True, help='stx_unit_tests (its --preprocess mode)')
    ap.add_argument('--work', required=True)
    ap.add_argument('--only', default='')
    ARGS = ap.parse_args()
    os.makedirs(ARGS.work, exist_ok=True)
    tests = [('demo', test_demo), ('carry', test_carry_back),
             ('preprocess', test_preprocess_torchvision), ('sources', test_sources_agree),
             ('vtest', test_vtest), ('errors', test_errors), ('chromium', test_chromium),
             ('long', test_long_video)]
    for name, fn in tests:
        if ARGS.only and name not in ARGS.only.split(','):
            continue
        print('--', name)
        t0 = time.time()
        fn()
        print('   (%.1f s)' % (time.time() - t0))
    print('%d failure(s)' % len(FAILS))
    return 1 if FAILS else 0


if __name__ == '__main__':
    sys.exit(main())
