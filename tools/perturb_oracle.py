#!/usr/bin/python3
"""PyTorch oracle for stx's occlusion methods, written from docs/perturbation.md.

    from perturb_oracle import occlusion
    m = occlusion(model, x, target, window=(4, 16, 16), stride=(2, 8, 8), baseline='zero')

x: the model's float input (N, C, T, H, W) (layout NCTHW) or (N, T, C, H, W) (NTCHW), as a
numpy array. Windows start at k * stride along each axis for k = 0 .. ceil((D - w) / s), the last
clipped at the border (Captum's convention); window 0 = the whole axis, stride 0 = the window. A
window is replaced by the baseline on every channel; delta = score(x) - score(x occluded), the
logit of the target class (or its softmax probability); a voxel's value is the mean delta of the
windows covering it. Baselines: 'zero', 'mean' (the sample's per-channel mean over the clip), or
an array with one sample's shape. Every window runs in its own forward, in float64 arithmetic
for the accumulation.
"""
import math

import numpy as np
import torch


def _axis_windows(D, w, s):
    w = D if w <= 0 or w >= D else w
    s = w if s <= 0 else s
    n = 1 if w >= D else math.ceil((D - w) / s) + 1
    return [(k * s, min(k * s + w, D)) for k in range(n)]


def target_scores(model, xs, target, score='logit', batch=16):
    """The target class's logit (or softmax probability) of each row of xs, as float64, the
    model run on batches of `batch` rows without gradients (shared by the perturbation-style
    oracles: this one, aosa_oracle, metrics_oracle)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(xs), batch):
            y = model(torch.from_numpy(np.ascontiguousarray(xs[i:i + batch]))).double()
            if score == 'prob':
                y = torch.softmax(y, dim=1)
            out.append(y[:, int(target)].numpy())
    return np.concatenate(out)


def occlusion(model, x, target, window, stride, baseline='zero', layout='NCTHW', score='logit',
              batch=16):
    x = np.asarray(x, np.float32)
    N = x.shape[0]
    tax, cax = (2, 1) if layout == 'NCTHW' else (1, 2)
    T, H, W = x.shape[tax], x.shape[3], x.shape[4]
    wins = [(a, b, c) for a in _axis_windows(T, window[0], stride[0])
            for b in _axis_windows(H, window[1], stride[1])
            for c in _axis_windows(W, window[2], stride[2])]
    targets = np.broadcast_to(np.asarray(target), (N,))

    def scores(xs, n):
        return target_scores(model, xs, targets[n], score, batch)

    maps = np.zeros((N, T, H, W))
    for n in range(N):
        xn = x[n]
        if isinstance(baseline, str) and baseline == 'zero':
            base = np.zeros_like(xn)
        elif isinstance(baseline, str) and baseline == 'mean':
            axes = tuple(a for a in range(4) if a != cax - 1)
            base = np.broadcast_to(xn.astype(np.float64).mean(axis=axes, keepdims=True),
                                   xn.shape).astype(np.float32)
        else:
            base = np.asarray(baseline, np.float32).reshape(xn.shape)
        batch_x = []
        for (t0, t1), (h0, h1), (w0, w1) in wins:
            xo = xn.copy()
            if layout == 'NCTHW':
                xo[:, t0:t1, h0:h1, w0:w1] = base[:, t0:t1, h0:h1, w0:w1]
            else:
                xo[t0:t1, :, h0:h1, w0:w1] = base[t0:t1, :, h0:h1, w0:w1]
            batch_x.append(xo)
        s0 = scores(xn[None], n)[0]
        s = scores(np.stack(batch_x), n)
        acc = np.zeros((T, H, W))
        cnt = np.zeros((T, H, W))
        for d, ((t0, t1), (h0, h1), (w0, w1)) in zip(s0 - s, wins):
            acc[t0:t1, h0:h1, w0:w1] += d
            cnt[t0:t1, h0:h1, w0:w1] += 1
        maps[n] = acc / cnt
    return maps
