#!/usr/bin/python3
"""Extremal perturbation (`stx explain --method extremal`) against an independent oracle.

  * Gradient: tools/extremal_oracle.py optimises the same objective in PyTorch (autograd through
    the zoo model's PyTorch twin, the mask generator, the blend and the sorts; torch.optim.SGD).
    One step from the initial mask p = 1: the change of the map, (map_1 - map_0), which is
    -0.05 times the objective's gradient pushed through the mask generator (clamped at p = 1),
    agrees within 1e-3 relative, for the clip's class and for a class it is not (whose reward
    gradient is large). Then 10 steps with two areas (the core term is on from the first
    step when steps < 20) on the 3-D CNN, and 4 steps on the CNN-LSTM (layout NTCHW) for a batch
    of two clips with their own targets: the maps agree within 1e-3 relative.
  * The same run twice (two threads) gives the same map.
  * Area: after 100 steps with the default area 0.1, the share of the clip's voxels whose mask
    exceeds 0.5 and the mask's mean lie within 30 % of the target (printed).
  * Localisation: on 8 held-out clips of the zoo's 3-D CNN (target: the true class), the map's
    maximum lies within 4 px of the disc's tube more often than a random point (printed).
  * Errors (bad --areas, --steps, bf16 precision) and Ctrl-C (a clean, cancelled stop).

usage: test_extremal.py --stx BUILD/stx --work DIR [--only oracle,area,loc,errors]
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'tools'))
sys.path.insert(0, os.path.join(ROOT, 'tools', 'zoo'))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cam_oracle  # noqa: E402
import extremal_oracle  # noqa: E402
import harness  # noqa: E402
from harness import check, work  # noqa: E402
from test_cam import tube_hits  # noqa: E402
from zoo_common import preprocess  # noqa: E402

ZOO = os.path.join(ROOT, 'models', 'zoo')
TOL = 1e-3


def stx(args, ok=True, threads=1):
    # one thread: the machine's two cores are often shared, and OpenMP threads then spin
    return harness.stx(args + ['--threads', str(threads)], ok)


def zoo_input(name, clips):
    model, facts = cam_oracle.load_model('zoo:' + name)
    frames = np.stack([np.load(os.path.join(ZOO, 'clips', c + '.npy')) for c in clips])
    return model, facts, preprocess(frames, facts['mean'], facts['std'], facts['layout'])


def explain_start(name, x, targets, steps, areas, out, threads=1):
    """The stx run started in the background (its own input file); finish() collects it."""
    path = work('in_%s_%s' % (name, os.path.basename(out)))
    np.save(path, x)
    return harness.stx_background(
        ['explain', os.path.join(ZOO, name + '.onnx'), path, '--method', 'extremal',
         '--target', ','.join(map(str, targets)), '--steps', str(steps), '--areas',
         ','.join(map(str, areas)), '-o', out, '--threads', str(threads)]), out


def finish(run):
    handle, out = run
    handle.result()
    return np.load(out)


def explain(name, x, targets, steps, areas, out, threads=1):
    return finish(explain_start(name, x, targets, steps, areas, out, threads))


def initial_map(x, layout, n_areas):
    """The map of p = 1 (every area's initial mask), from the oracle's generator."""
    import torch
    T, H, W = (x.shape[2], x.shape[3], x.shape[4]) if layout == 'NCTHW' else \
        (x.shape[1], x.shape[3], x.shape[4])
    g = extremal_oracle.geometry(T, H, W)
    M = g['M']
    m = extremal_oracle.MaskGen(H, W, g)(torch.ones(1, T, g['gh'], g['gw'],
                                                    dtype=torch.float64))
    return n_areas * m[0, :, M:M + H, M:M + W].numpy()


def rel_norm(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_oracle():
    import torch
    torch.set_num_threads(1)
    model, facts, x = zoo_input('action_r3d', ['blink'])
    # one step: the change of the map is the (mask-mapped) gradient step. Target 7 is the clip's
    # class (p_c near 1: the area term drives the step); target 0 is not (the reward's gradient,
    # through the model's backward and the blend, then carries a third of the step)
    m0 = initial_map(x, facts['layout'], 1)
    # (each stx run, one thread, works on one core while the oracle, one torch thread,
    # computes on the other)
    for target in (7, 0):
        run = explain_start('action_r3d', x, [target], 1, [0.1], work('one_%d.npy' % target))
        want = extremal_oracle.extremal(model, x, target, [0.1], 1)['map']
        got = finish(run)
        dg, dw = got[0] - m0, want[0] - m0
        r = rel_norm(dg, dw)
        rm = float(np.abs(dg - dw).max() / np.abs(dw).max())
        check(r <= TOL and rm <= TOL, 'one step from p = 1, action_r3d, target %d: map change vs '
              'PyTorch autograd + SGD: rel diff %.1e (norm), %.1e (max); largest change %.3f' % (
                  target, r, rm, np.abs(dw).max()))
    # ten steps, two areas, the core term on from the start
    run = explain_start('action_r3d', x, [7], 10, [0.05, 0.2], work('ten.npy'))
    t0 = time.time()
    ref = extremal_oracle.extremal(model, x, 7, [0.05, 0.2], 10, history=True)
    want = ref['map']
    got = finish(run)
    r = rel_norm(got, want)
    rm = float(np.abs(got - want).max() / np.abs(want).max())
    h = ref['hist'][0][-1]
    check(r <= TOL and rm <= TOL,
          '10 steps, areas 0.05,0.2, action_r3d: rel diff %.1e (norm), %.1e (max) (last step: '
          'reward %s, area %s, core %s; oracle %.0f s)' % (
              r, rm, np.round(h['reward'], 3).tolist(), np.round(h['area'], 3).tolist(),
              np.round(h['core'], 3).tolist(), time.time() - t0))
    # NTCHW, a batch of two clips with their own targets
    model, facts, x = zoo_input('action_cnn_lstm', ['blink', 'appear'])
    run = explain_start('action_cnn_lstm', x, [7, 6], 4, [0.1], work('lstm.npy'))
    want = extremal_oracle.extremal(model, x, [7, 6], [0.1], 4, layout=facts['layout'])['map']
    got = finish(run)
    m0 = initial_map(x, facts['layout'], 1)
    r = max(rel_norm(got[i] - m0, want[i] - m0) for i in range(2))
    check(r <= TOL, '4 steps, action_cnn_lstm (NTCHW), two clips: map change rel diff %.1e '
          '(norm)' % r)
    # deterministic, also with two threads
    a = explain('action_r3d', zoo_input('action_r3d', ['appear'])[2], [6], 5, [0.1],
                work('det_a.npy'), threads=2)
    b = explain('action_r3d', zoo_input('action_r3d', ['appear'])[2], [6], 5, [0.1],
                work('det_b.npy'), threads=2)
    check(np.array_equal(a, b), 'the same run twice (2 threads): the same map')


LOC = {}


def start_localisation():
    """The held-out clips' run (one thread), started once: by test_area, so that it works on
    the second core while the area run works on the first, or else by test_localisation."""
    if not LOC:
        n = 8
        frames, targets, mask, rand = harness.heldout(n)
        out = work('loc.npy')
        LOC.update(n=n, mask=mask, rand=rand, out=out, t0=time.time(), run=harness.stx_background(
            ['explain', os.path.join(ZOO, 'action_r3d.onnx'), frames, '--method', 'extremal',
             '--target', targets, '--areas', '0.03', '--steps', '40', '-o', out,
             '--threads', '1']))
    return LOC


def test_area():
    if not harness.ARGS.only or 'loc' in harness.ARGS.only.split(','):
        start_localisation()
    _, facts, x = zoo_input('action_r3d', ['blink'])
    t0 = time.time()
    m = explain('action_r3d', x, [7], 100, [0.1], work('area.npy'))[0]
    dt = time.time() - t0
    frac, mean = float((m > 0.5).mean()), float(m.mean())
    check(abs(frac - 0.1) <= 0.03 and abs(mean - 0.1) <= 0.03,
          'area 0.1 after 100 steps: %.3f of the voxels above 0.5, mean mask %.3f, largest %.3f '
          '(%.1f s)' % (frac, mean, m.max(), dt))


def test_localisation():
    loc = start_localisation()
    loc['run'].result()
    n, mask, rand, out = loc['n'], loc['mask'], loc['rand'], loc['out']
    dt = time.time() - loc['t0']
    hit, exact = tube_hits(np.load(out), mask)
    check(hit > rand, 'extremal (--areas 0.03 --steps 40) on %d held-out clips, action_r3d: '
          'maximum within 4 px of the tube in %.2f of clips (inside: %.2f; a random point: %.2f; '
          '%.1f s a clip)' % (n, hit, exact, rand, dt / n))


def test_errors():
    model = os.path.join(ZOO, 'action_r3d.onnx')
    clip = os.path.join(ZOO, 'clips', 'blink.npy')
    cases = [(['--areas', '0'], '--areas'), (['--areas', '0.1,0.2,0.3,0.4,0.5'], '--areas'),
             (['--areas', '1.5'], '--areas'), (['--areas', '1e-60'], 'area'),
             (['--steps', '0'], '--steps'), (['--steps', '100001'], '--steps'),
             (['--precision', 'bf16'], 'gradients')]
    for flags, word in cases:
        p = stx(['explain', model, clip, '--method', 'extremal', '-o', work('never.npy')] + flags,
                ok=False)
        line = p.stderr.strip()
        check(p.returncode != 0 and word in line and len(line.splitlines()) == 1 and
              not os.path.exists(work('never.npy')), 'error names %s: %s' % (word, line))
    # Ctrl-C during the optimisation: a clean stop, non-zero exit, no output
    out = work('cancelled.npy')
    proc = subprocess.Popen([harness.ARGS.stx, 'explain', model, clip, '--method', 'extremal', '--steps',
                             '100000', '-o', out, '--threads', '1'], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate()
    check(proc.returncode == 1 and 'cancelled' in err and not os.path.exists(out),
          'SIGINT stops the optimisation cleanly (exit %d, %s)' % (proc.returncode, err.strip()))


if __name__ == '__main__':
    harness.run([('oracle', test_oracle), ('area', test_area), ('loc', test_localisation),
                 ('errors', test_errors)])
