"""What the model tests share: pass/fail lines, running stx, the work folder, the test loop.

A test module calls main(tests, extra) with its (name, function) list and any extra required
options; the parsed options are in harness.ARGS."""
import argparse
import os
import subprocess
import sys

ARGS = None
failures = []


def check(ok, what):
    print(('ok    ' if ok else 'FAIL  ') + what, flush=True)
    if not ok:
        failures.append(what)


def stx(args, ok=True, env=None):
    """Runs stx (env: variables added to the environment); raises with its stderr when it
    fails and ok is set."""
    p = subprocess.run([ARGS.stx] + args, capture_output=True, text=True,
                       env=dict(os.environ, **env) if env else None)
    if ok and p.returncode != 0:
        raise RuntimeError('stx %s failed (%d): %s' % (' '.join(args), p.returncode,
                                                        p.stderr.strip()))
    return p


class Background:
    """A command started now and collected later, so that the machine's second core runs it
    while the test does something else (an oracle, another single-threaded stx run):
    result() waits for it and returns a subprocess.CompletedProcess (text output), raising
    with its stderr when it failed and ok is set."""

    def __init__(self, argv, env=None):
        self.argv = [str(a) for a in argv]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=dict(os.environ, **env) if env else None)

    def result(self, ok=True):
        out, err = self.proc.communicate()
        p = subprocess.CompletedProcess(self.argv, self.proc.returncode, out, err)
        if ok and p.returncode != 0:
            raise RuntimeError('%s failed (%d): %s' % (' '.join(self.argv), p.returncode,
                                                        err.strip()))
        return p


def stx_background(args, env=None):
    """stx ARGS started in the background (Background)."""
    return Background([ARGS.stx] + args, env)


def work(name):
    return os.path.join(ARGS.work, name)


def heldout(n=8):
    """n held-out action clips (tools/zoo/action_data.py, test seed 2) for localisation checks:
    the uint8 frames saved in the work folder, their true classes as a --target list, their
    ground-truth tubes, and the share of clips in which a random point is within 4 px of the
    tube (the pointing game a method must beat; test_cam.tube_hits)."""
    import numpy as np
    import action_data
    from test_cam import tube_hits
    data = action_data.make_dataset(n, 2)
    frames = work('heldout.npy')
    np.save(frames, data['video'])
    rand = tube_hits(np.random.default_rng(0).random((n,) + data['mask'].shape[1:]),
                     data['mask'])[0]
    return frames, ','.join(str(int(c)) for c in data['label']), data['mask'], rand


def main(tests, extra=()):
    """Parses --stx, --work, --only and the extra required options, runs the tests selected."""
    global ARGS
    ap = argparse.ArgumentParser()
    for name in ('--stx', '--work') + tuple(extra):
        ap.add_argument(name, required=True)
    ap.add_argument('--only', default='')
    ARGS = ap.parse_args()
    os.makedirs(ARGS.work, exist_ok=True)
    for name, fn in tests:
        if ARGS.only and name not in ARGS.only.split(','):
            continue
        print('--', name, flush=True)
        fn()
    print('%d failure(s)' % len(failures))
    return 1 if failures else 0


def run(tests, extra=()):
    sys.exit(main(tests, extra))
