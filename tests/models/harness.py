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


def work(name):
    return os.path.join(ARGS.work, name)


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
