#!/usr/bin/python3
"""Forward-pass benchmark: stx vs PyTorch on the same model and input, side by side.

    /usr/bin/python3 bench/bench_forward.py [--model r3d_18] [--threads 2] [--repeat 5]

Every contender runs in its own child process, so that its peak memory (RSS high-water mark,
from the kernel's rusage of that one child via os.wait4: no /usr/bin/time needed) covers its
whole process: interpreter/library start-up, loading the model, planning and running.
  - stx:            `stx run --threads T --repeat R MODEL INPUT` (prints time_ms_best/mean)
  - torch eager:    the nn.Module in eval mode under torch.no_grad(), torch.set_num_threads(T)
  - torch jit:      the same module traced, frozen and torch.jit.optimize_for_inference'd
                    (BN folded, oneDNN convolutions): PyTorch's strongest CPU path
Each does 1 warm-up then R timed forwards (--warmup to change); best and mean are reported.
GFLOP/s = 2 * MACs / best time, MACs counted with forward hooks on Conv1d/2d/3d and Linear
(the layers that dominate; LSTM and attention matmuls are not counted).
The PyTorch model is rebuilt by tools/export_models.py's seeded constructor, i.e. it has exactly
the weights of the exported ONNX file; each PyTorch child checks its output against the golden.
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, 'tools')
TORCH_PYTHON = '/usr/bin/python3' if os.path.exists('/usr/bin/python3') else sys.executable


def run_child(cmd, env=None, timeout=None):
    """Run cmd; return (returncode, stdout, stderr, peak RSS in MiB of that child alone)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.monotonic() > deadline:
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.02)
        p.returncode = os.waitstatus_to_exitcode(status)   # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return (p.returncode, out.read().decode(errors='replace'),
                err.read().decode(errors='replace'), ru.ru_maxrss / 1024.0)


def ms(stdout):
    """The time_ms_best a child printed (NaN when it printed none)."""
    m = re.search(r"time_ms_best:\s*([0-9.]+)", stdout)
    return float(m.group(1)) if m else float("nan")


def ensure_model(models, name):
    """(ONNX path, golden input path) of an exported model, exporting it first when missing."""
    onnx_path = os.path.join(models, name + '.onnx')
    if not os.path.exists(onnx_path):
        run_child([TORCH_PYTHON, os.path.join(TOOLS, 'export_models.py'), '--out', models,
                   '--only', name])
    return onnx_path, os.path.join(models, name + '.input.npy')


# ----------------------------------------------------------------------------------------------
# PyTorch side (runs in the child: `bench_forward.py --torch-child MODE ...`)
# ----------------------------------------------------------------------------------------------

def count_macs(model, x):
    """Multiply-accumulates of Conv1d/2d/3d and Linear layers for input x (forward hooks)."""
    import torch
    import torch.nn as nn
    total = [0]

    def conv_hook(m, inp, out):
        k = 1
        for s in m.kernel_size:
            k *= s
        total[0] += out.numel() * (m.in_channels // m.groups) * k

    def linear_hook(m, inp, out):
        total[0] += out.numel() * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return total[0]


def torch_child(args):
    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    sys.path.insert(0, TOOLS)
    import export_models as E

    x = torch.from_numpy(np.load(args.input))
    model = E.build_model(args.model)
    result = {'torch': torch.__version__, 'threads': torch.get_num_threads()}
    if args.torch_child == 'macs':
        result['macs'] = count_macs(model, x)
        print('RESULT ' + json.dumps(result))
        return 0
    with torch.no_grad():
        if args.torch_child == 'jit':
            fn = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, (x,))))
        else:
            fn = model
        times = []
        for i in range(args.warmup + args.repeat):
            t0 = time.perf_counter()
            y = fn(x)
            dt = time.perf_counter() - t0
            if i >= args.warmup:
                times.append(dt * 1e3)
    golden = np.load(args.golden) if args.golden and os.path.exists(args.golden) else None
    if golden is not None and golden.shape == tuple(y.shape):
        result['rel_err_vs_golden'] = float(np.abs(y.numpy() - golden).max() /
                                            max(np.abs(golden).max(), 1e-30))
    result['best_ms'] = min(times)
    result['mean_ms'] = sum(times) / len(times)
    print('RESULT ' + json.dumps(result))
    return 0


def parse_result(stdout):
    for line in stdout.splitlines():
        if line.startswith('RESULT '):
            return json.loads(line[7:])
    return None


# ----------------------------------------------------------------------------------------------
# Parent
# ----------------------------------------------------------------------------------------------

def run_torch(mode, args, input_path, golden_path):
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    cmd = [TORCH_PYTHON, os.path.abspath(__file__), '--torch-child', mode, '--model', args.model,
           '--threads', str(args.threads), '--repeat', str(args.repeat), '--warmup',
           str(args.warmup), '--input', input_path, '--golden', golden_path]
    rc, out, err, rss = run_child(cmd, env=env, timeout=args.timeout)
    res = parse_result(out) if rc == 0 else None
    if res is None:
        tail = (err.strip() or out.strip()).splitlines()[-3:]
        return {'error': 'exit %d: %s' % (rc, ' | '.join(tail))}
    res['rss_mib'] = rss
    return res


def run_stx(args, onnx_path, input_path):
    if not os.path.exists(args.stx):
        return {'error': 'not found: %s' % args.stx}
    # `stx run --repeat R` times R runs with no warm-up: best-of-R is comparable, the mean
    # includes the first (cold) run.
    cmd = [args.stx, 'run', '--threads', str(args.threads), '--repeat', str(args.repeat),
           '--topk', '0', onnx_path, input_path]
    rc, out, err, rss = run_child(cmd, timeout=args.timeout)
    if rc != 0:
        tail = (err.strip() or out.strip()).splitlines()[-3:]
        return {'error': 'exit %d: %s' % (rc, ' | '.join(tail))}
    res = {'rss_mib': rss}
    for key in ('best', 'mean'):
        m = re.search(r'time_ms_%s:\s*([0-9.eE+-]+)' % key, out + '\n' + err)
        if m:
            res['%s_ms' % key] = float(m.group(1))
    m = re.search(r'time_ms:\s*([0-9.eE+-]+)', out + '\n' + err)   # --repeat 1 prints this
    if m and 'best_ms' not in res:
        res['best_ms'] = res['mean_ms'] = float(m.group(1))
    if 'best_ms' not in res:
        return {'error': 'no "time_ms_best:" line in stx output (is --repeat implemented?)',
                'rss_mib': rss}
    res.setdefault('mean_ms', res['best_ms'])
    return res


def fmt(v, spec):
    return (spec % v) if isinstance(v, (int, float)) else '-'


def main():
    ap = argparse.ArgumentParser(description='stx vs PyTorch forward benchmark')
    ap.add_argument('--model', default='r3d_18', help='model name from tools/export_models.py')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--repeat', type=int, default=5, help='timed forwards (best and mean)')
    ap.add_argument('--warmup', type=int, default=1, help='untimed forwards first (PyTorch)')
    ap.add_argument('--stx', default=os.path.join(ROOT, 'build', 'stx'))
    ap.add_argument('--models', default=os.path.join(ROOT, 'build', 'models'))
    ap.add_argument('--input', default='', help='input .npy (default: the model\'s golden input)')
    ap.add_argument('--skip', default='', help='comma-separated: stx,eager,jit')
    ap.add_argument('--timeout', type=int, default=1800, help='seconds per contender')
    ap.add_argument('--json', default='', help='also write the results to this file')
    ap.add_argument('--torch-child', default='', help=argparse.SUPPRESS)
    ap.add_argument('--golden', default='', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_child:
        return torch_child(args)
    args.stx = os.path.abspath(args.stx)
    skip = {s.strip() for s in args.skip.split(',') if s.strip()}

    onnx_path = os.path.join(args.models, args.model + '.onnx')
    input_path = args.input or os.path.join(args.models, args.model + '.input.npy')
    golden_path = '' if args.input else os.path.join(args.models, args.model + '.output.npy')
    if not (os.path.exists(onnx_path) and os.path.exists(input_path)):
        print('exporting %s ...' % args.model, flush=True)
        r = subprocess.run([TORCH_PYTHON, os.path.join(TOOLS, 'export_models.py'), '--out',
                            args.models, '--only', args.model])
        if r.returncode != 0:
            return 1
    import numpy as np
    shape = np.load(input_path, mmap_mode='r').shape

    macs_res = run_torch('macs', args, input_path, '')
    macs = macs_res.get('macs')
    rows = []
    if 'eager' not in skip:
        rows.append(('PyTorch eager', run_torch('eager', args, input_path, golden_path)))
    if 'jit' not in skip:
        rows.append(('PyTorch jit+oneDNN', run_torch('jit', args, input_path, golden_path)))
    if 'stx' not in skip:
        rows.append(('stx', run_stx(args, onnx_path, input_path)))

    torch_ver = next((r.get('torch') for _, r in rows if r.get('torch')), '?')
    print()
    print('%s, input %s, %d thread(s), best/mean of %d timed runs after %d warm-up (PyTorch)'
          % (args.model, 'x'.join(map(str, shape)), args.threads, args.repeat, args.warmup))
    print('MACs (Conv+Linear): %s; torch %s; %s, %d CPUs'
          % ('%.3f G' % (macs / 1e9) if macs else 'n/a (%s)' % macs_res.get('error'),
             torch_ver, platform.processor() or platform.machine(), os.cpu_count() or 0))
    hdr = '%-20s %10s %10s %9s %11s %9s' % ('', 'best ms', 'mean ms', 'GFLOP/s', 'peak RSS',
                                            'stx/this')
    print(hdr)
    print('-' * len(hdr))
    stx_best = next((r.get('best_ms') for n, r in rows if n == 'stx'), None)
    for name, r in rows:
        if 'best_ms' not in r:
            print('%-20s %s' % (name, r.get('error', 'failed')))
            continue
        gflops = 2.0 * macs / (r['best_ms'] * 1e-3) / 1e9 if macs else None
        ratio = stx_best / r['best_ms'] if stx_best else None
        print('%-20s %10s %10s %9s %8s MiB %9s' % (
            name, fmt(r['best_ms'], '%.1f'), fmt(r['mean_ms'], '%.1f'), fmt(gflops, '%.1f'),
            fmt(r.get('rss_mib'), '%.0f'), fmt(ratio, '%.2f') if name != 'stx' else '-'))
    notes = ['%s: output vs golden rel_err %.2e' % (n, r['rel_err_vs_golden'])
             for n, r in rows if 'rel_err_vs_golden' in r]
    if notes:
        print('(' + '; '.join(notes) + ')')
    print('stx/this = stx best time / this row\'s best time (< 1: stx is faster); '
          'stx has no warm-up run, its mean includes the first run')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'model': args.model, 'input_shape': list(shape), 'threads': args.threads,
                       'repeat': args.repeat, 'macs': macs, 'results': dict(rows)}, f, indent=2)
    return 0 if all('best_ms' in r for _, r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
