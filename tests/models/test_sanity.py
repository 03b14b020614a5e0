"""Sanity-check primitives (src/metrics/sanity.c) through tests/sanity_tool.c, against oracles:
Spearman against scipy.stats.spearmanr, SSIM against skimage.metrics.structural_similarity
(per frame, on maps min-max normalised over the clip, averaged), and the randomised copy of a
model: the initialisers that change are exactly those of the top k PyTorch modules, within
PyTorch's reset_parameters bounds, the same for every k (cascading), and its forward equals
PyTorch's with the same weights, while the original model still gives PyTorch's original output.
"""
import argparse
import os
import subprocess
import sys

import numpy as np

failures = []


def check(ok, what):
    print(('ok    ' if ok else 'FAIL  ') + what, flush=True)
    if not ok:
        failures.append(what)


def tool(args):
    p = subprocess.run([ARGS.tool] + args, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError('stx_sanity_tool %s: %s' % (' '.join(args), p.stderr.strip()))
    return {l.split()[0]: float(l.split()[1]) for l in p.stdout.splitlines()}


def work(name):
    return os.path.join(ARGS.work, name)


def test_spearman():
    from scipy.stats import spearmanr
    rng = np.random.default_rng(3)
    cases = {
        'continuous': (rng.standard_normal(500), rng.standard_normal(500)),
        'ties': (rng.integers(-3, 4, 600).astype(float), rng.integers(-2, 3, 600).astype(float)),
        'related': None,
    }
    a = rng.standard_normal(400)
    cases['related'] = (a, a + 0.5 * rng.standard_normal(400))
    for name, (x, y) in cases.items():
        x = x.astype(np.float32)
        y = y.astype(np.float32)
        np.save(work('sa.npy'), x)
        np.save(work('sb.npy'), y)
        got = tool(['spearman', work('sa.npy'), work('sb.npy')])
        want = spearmanr(x, y).correlation
        want_abs = spearmanr(np.abs(x), np.abs(y)).correlation
        check(abs(got['spearman'] - want) < 1e-12 and abs(got['spearman_abs'] - want_abs) < 1e-12,
              'spearman %s: %.15f %.15f vs scipy %.15f %.15f' %
              (name, got['spearman'], got['spearman_abs'], want, want_abs))


def ssim_oracle(a, b):
    from skimage.metrics import structural_similarity
    def norm(m):
        m = m.astype(np.float64)
        lo, hi = m.min(), m.max()
        return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    a, b = norm(a), norm(b)
    return float(np.mean([structural_similarity(a[t], b[t], gaussian_weights=True, sigma=1.5,
                                                use_sample_covariance=False, data_range=1.0)
                          for t in range(a.shape[0])]))


def test_ssim():
    from scipy.stats import spearmanr
    rng = np.random.default_rng(5)
    # a smooth map, a noisy copy, an unrelated map; odd sizes exercise the reflected borders
    t, h, w = 3, 17, 23
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.exp(-((yy - 6 - k) ** 2 + (xx - 9 + k) ** 2) / 20.0) for k in range(t)])
    pairs = {
        'noisy copy': (base, base + 0.1 * rng.standard_normal(base.shape)),
        'unrelated': (base, rng.random(base.shape)),
        'identical': (base, base),
        'scaled': (base, 3 * base + 1),
    }
    for name, (a, b) in pairs.items():
        a = a.astype(np.float32)
        b = b.astype(np.float32)
        np.save(work('ma.npy'), a)
        np.save(work('mb.npy'), b)
        got = tool(['similarity', work('ma.npy'), work('mb.npy')])
        want = ssim_oracle(a, b)
        rho = spearmanr(a.ravel(), b.ravel()).correlation
        check(abs(got['ssim'] - want) < 1e-9 and abs(got['spearman'] - rho) < 1e-12,
              'ssim %s: %.12f vs skimage %.12f; spearman %.6f vs %.6f' %
              (name, got['ssim'], want, got['spearman'], rho))
    # (N, T, H, W): per sample, averaged
    a = rng.random((2, 2, 12, 12)).astype(np.float32)
    b = (a + 0.3 * rng.random(a.shape)).astype(np.float32)
    np.save(work('ma.npy'), a)
    np.save(work('mb.npy'), b)
    got = tool(['similarity', work('ma.npy'), work('mb.npy')])
    want = np.mean([ssim_oracle(a[i], b[i]) for i in range(2)])
    check(abs(got['ssim'] - want) < 1e-9, 'ssim of a batch: mean of the samples\' (%.12f vs %.12f)'
          % (got['ssim'], want))


def small_model():
    import torch
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv3d(3, 4, 3, padding=1)
            self.conv2 = torch.nn.Conv3d(4, 6, (1, 3, 3), padding=(0, 1, 1))
            self.fc = torch.nn.Linear(6, 5)

        def forward(self, x):
            x = torch.relu(self.conv1(x))
            x = torch.relu(self.conv2(x))
            return self.fc(x.mean(dim=(2, 3, 4)))

    net = Net().eval()
    path = work('small.onnx')
    x = torch.randn(1, 3, 4, 8, 8)
    torch.onnx.export(net, x, path, input_names=['input'], output_names=['logits'],
                      opset_version=17)
    np.save(work('small_x.npy'), x.numpy())
    return net, x


def read_randomized(out, k):
    layers = [l.split() for l in open(os.path.join(out, 'layers.txt'))]
    params = {}
    for l in open(os.path.join(out, 'params.txt')):
        i, j, name, f = l.split()
        params[name] = (int(i), np.load(os.path.join(out, f)))
    return layers, params


def test_randomize():
    import torch
    net, x = small_model()
    sd = {k: v.detach().clone() for k, v in net.state_dict().items()}
    fan_in = {'fc': 6, 'conv2': 4 * 9, 'conv1': 3 * 27}
    outs = {}
    for k in (1, 2, 3):
        out = work('rand%d' % k)
        os.makedirs(out, exist_ok=True)
        subprocess.run([ARGS.tool, 'randomize', work('small.onnx'), str(k), '7', out,
                        work('small_x.npy')], check=True)
        layers, params = read_randomized(out, k)
        outs[k] = params
        # the modules from the output down, each with its weight and bias
        check([l[1] for l in layers] == ['fc', 'conv2', 'conv1'] and
              all(sorted(l[2:]) == sorted([l[1] + '.bias', l[1] + '.weight']) for l in layers),
              'k=%d: layers from the output down: %s' % (k, [' '.join(l[1:]) for l in layers]))
        top = ['fc', 'conv2', 'conv1'][:k]
        want_names = sorted(m + s for m in top for s in ('.weight', '.bias'))
        check(sorted(params) == want_names, 'k=%d: re-initialised %s' % (k, sorted(params)))
        ok = True
        for name, (_, w) in params.items():
            b = 1 / np.sqrt(fan_in[name.split('.')[0]])
            orig = sd[name].numpy()
            # U(-b, b): within the bound, spread over it, and new values
            ok &= w.shape == orig.shape and np.abs(w).max() <= b * (1 + 1e-6)
            ok &= np.abs(w).max() > 0.5 * b and not np.allclose(w, orig)
        check(ok, 'k=%d: new weights within PyTorch\'s U(+-1/sqrt(fan_in))' % k)
        # PyTorch with the same weights
        sd2 = dict(sd)
        for name, (_, w) in params.items():
            sd2[name] = torch.from_numpy(w)
        net2 = type(net)().eval()
        net2.load_state_dict(sd2)
        with torch.no_grad():
            want = net2(x).numpy()
            want0 = net(x).numpy()
        got = np.load(os.path.join(out, 'randomized.npy'))
        got0 = np.load(os.path.join(out, 'original.npy'))
        err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-6)
        err0 = np.abs(got0 - want0).max() / max(np.abs(want0).max(), 1e-6)
        check(err < 1e-5 and err0 < 1e-5 and np.abs(want - want0).max() > 1e-3,
              'k=%d: randomised forward = PyTorch with those weights (rel %.2g), original '
              'untouched (rel %.2g)' % (k, err, err0))
    # cascading: a layer's weights do not depend on k
    same = all(np.array_equal(outs[3][n][1], outs[k][n][1]) for k in (1, 2) for n in outs[k])
    check(same, 'cascading: the top layers get the same weights for k = 1, 2, 3')
    # another seed, other weights
    out = work('rand_seed')
    os.makedirs(out, exist_ok=True)
    subprocess.run([ARGS.tool, 'randomize', work('small.onnx'), '1', '8', out], check=True)
    _, p8 = read_randomized(out, 1)
    check(not np.array_equal(p8['fc.weight'][1], outs[1]['fc.weight'][1]),
          'another seed gives other weights')
    p = subprocess.run([ARGS.tool, 'randomize', work('small.onnx'), '4', '7', out],
                       capture_output=True, text=True)
    check(p.returncode != 0 and '3 parameterised layers' in p.stderr,
          'k beyond the layers is refused: %s' % p.stderr.strip())


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument('--tool', required=True)
    ap.add_argument('--work', required=True)
    ARGS = ap.parse_args()
    os.makedirs(ARGS.work, exist_ok=True)
    for fn in (test_spearman, test_ssim, test_randomize):
        print('--', fn.__name__, flush=True)
        fn()
    print('%d failure(s)' % len(failures))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
