#!/usr/bin/python3
"""End-to-end check of `stx run` against PyTorch goldens.

    /usr/bin/python3 tests/models/test_models.py --stx build/stx --models build/models

Exports the models first (tools/export_models.py, cached) if any of their files is missing, then
for every model runs `STX run MODEL.onnx MODEL.input.npy -o OUT.npy` and checks
max|stx - torch| <= 1e-4 * max|torch|. Also runs r3d_18 on a batch of two clips (dynamic batch
axis) against PyTorch's batch output. Prints one PASS/FAIL line per case and a final line
`N passed, M failed`; the exit status is 1 if anything failed.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPORT = os.path.join(ROOT, 'tools', 'export_models.py')
TORCH_PYTHON = '/usr/bin/python3' if os.path.exists('/usr/bin/python3') else sys.executable
RTOL = 1e-4
MODELS = ['r3d_18', 'mc3_18', 'r2plus1d_18', 's3d', 'vivit_tiny', 'cnn_lstm', 'tcn']
# (case name, model, input file, golden file)
CASES = [(m, m, m + '.input.npy', m + '.output.npy') for m in MODELS] + [
    ('r3d_18[batch2]', 'r3d_18', 'r3d_18.input_b2.npy', 'r3d_18.output_b2.npy')]


def ensure_models(models_dir, models):
    """Run the exporter for the models with a missing file (it skips complete ones itself)."""
    missing = []
    for m in models:
        needed = [c[2] for c in CASES if c[1] == m] + [c[3] for c in CASES if c[1] == m]
        if not all(os.path.exists(os.path.join(models_dir, f)) for f in needed + [m + '.onnx']):
            missing.append(m)
    if not missing:
        return True
    print('exporting %s into %s ...' % (', '.join(missing), models_dir), flush=True)
    r = subprocess.run([TORCH_PYTHON, EXPORT, '--out', models_dir, '--only', ','.join(missing)])
    return r.returncode == 0


def run_case(stx, models_dir, model, input_file, golden_file, tmp, threads, timeout):
    """Returns (ok, message)."""
    onnx_path = os.path.join(models_dir, model + '.onnx')
    input_path = os.path.join(models_dir, input_file)
    golden_path = os.path.join(models_dir, golden_file)
    for p in (onnx_path, input_path, golden_path):
        if not os.path.exists(p):
            return False, 'missing ' + p
    out_path = os.path.join(tmp, input_file.replace('.npy', '.stx.npy'))
    cmd = [stx, 'run', onnx_path, input_path, '-o', out_path, '--topk', '0']
    if threads:
        cmd += ['--threads', str(threads)]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except FileNotFoundError:
        return False, 'cannot execute %s' % stx
    except subprocess.TimeoutExpired:
        return False, 'timed out after %d s' % timeout
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        err = (r.stderr.decode(errors='replace').strip() or r.stdout.decode(errors='replace')
               .strip()).splitlines()
        tail = ' | '.join(err[-3:]) if err else '(no output)'
        return False, 'stx exited with %d: %s' % (r.returncode, tail)
    if not os.path.exists(out_path):
        return False, 'stx wrote no output file'
    try:
        got = np.load(out_path, allow_pickle=False)
    except Exception as e:  # malformed .npy is a failure of stx, not of the test
        return False, 'cannot read stx output: %s' % e
    want = np.load(golden_path, allow_pickle=False)
    if got.shape != want.shape:
        return False, 'shape %s, expected %s' % (list(got.shape), list(want.shape))
    if got.dtype != np.float32:
        return False, 'dtype %s, expected float32' % got.dtype
    if not np.all(np.isfinite(got)):
        return False, '%d non-finite values' % int(np.size(got) - np.isfinite(got).sum())
    scale = float(np.abs(want).max())
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    err = float(diff.max())
    rel = err / scale if scale > 0 else err
    where = np.unravel_index(int(diff.argmax()), diff.shape)
    msg = 'rel_err=%.3e (max|d|=%.3g at %s, max|torch|=%.3g, %.2f s)' % (
        rel, err, list(map(int, where)), scale, dt)
    return rel <= RTOL, msg


def main():
    ap = argparse.ArgumentParser(description='Compare stx run with PyTorch goldens.')
    ap.add_argument('--stx', default=os.path.join(ROOT, 'build', 'stx'), help='stx executable')
    ap.add_argument('--models', default=os.path.join(ROOT, 'build', 'models'),
                    help='model directory (exported there if incomplete)')
    ap.add_argument('--only', default='', help='comma-separated model names')
    ap.add_argument('--threads', type=int, default=0, help='pass --threads N to stx')
    ap.add_argument('--timeout', type=int, default=600, help='seconds per stx run')
    args = ap.parse_args()

    only = [s.strip() for s in args.only.split(',') if s.strip()]
    unknown = [m for m in only if m not in MODELS]
    if unknown:
        ap.error('unknown model(s): %s' % ', '.join(unknown))
    models = only or MODELS
    cases = [c for c in CASES if c[1] in models]
    stx = os.path.abspath(args.stx)

    if not ensure_models(args.models, models):
        print('model export failed')
        print('0 passed, %d failed' % len(cases))
        return 1
    manifest = os.path.join(args.models, 'manifest.json')
    if os.path.exists(manifest):
        with open(manifest) as f:
            known = {m['name'] for m in json.load(f).get('models', [])}
        lost = [m for m in models if m not in known]
        if lost:
            print('note: not in manifest.json: %s' % ', '.join(lost))

    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix='stx-test-models-') as tmp:
        for name, model, input_file, golden_file in cases:
            ok, msg = run_case(stx, args.models, model, input_file, golden_file, tmp,
                               args.threads, args.timeout)
            print('%s %-16s %s' % ('PASS' if ok else 'FAIL', name, msg), flush=True)
            passed += ok
            failed += not ok
    print('%d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
