#!/usr/bin/python3
"""PyTorch oracle for stx's extremal perturbation, written from docs/perturbation.md
("Extremal perturbation"); the optimiser is torch.optim.SGD and every derivative is autograd's.

    from extremal_oracle import extremal
    r = extremal(model, x, target=7, areas=[0.1], steps=12)   # r['map'] (N, T, H, W)

x: the model's float32 input (N, C, T, H, W) (layout NCTHW) or (N, T, C, H, W) (NTCHW), as numpy.
Each sample is optimised on its own (all its areas in one batch, one row per area), in float64
except the model, which runs in its own dtype on the blended clip rounded to it.

How the oracle computes (the definition, term by term):

- Geometry for a T x H x W clip, S = min(H, W): step 7, sigma = max(7, 11 S / 112), r = 1 +
  ceil(sigma / 7); parameters on a ceil(H / 7) x ceil(W / 7) grid per frame, centre (7 i, 7 j).
  The mask covers the frame and a margin of M = round(sigma) pixels on every side (rows
  -M .. H + M - 1). Pixel (y, x) pools the parameters i0 - r .. i0 + r, j0 - r .. j0 + r with i0 = (y + 3) // 7,
  j0 = (x + 3) // 7, leaving out those outside the grid: v = k(d / sigma) p with
  k(z) = exp(-2 max(z - 1/2, 0)^2), d the distance to the centre, and
  m = sum v e^{20 v} / sum e^{20 v}.
- Blur pyramid: level l < 7 is every (channel, frame) plane blurred by a separable Gaussian of
  sigma_l = (1 - l / 7) max_blur, max_blur = 20 S / 112, radius ceil(3 sigma_l), edges
  replicated (rows, then columns), rounded to float32; level 7 is the clip. Phi(x, m): w = 7 m,
  l = min(floor(w), 7), (1 - (w - l)) Y_l + (w - l) Y_min(l + 1, 7).
- Reward: -log softmax(z)_c of the model's output on Phi (per-frame outputs (N, K, F): the mean
  over the frames, or the given frame), lambda_r = 1.
- Area: lambda_a * mean((sort(m) - ref)^2) over the n = T (H + 2M) (W + 2M) mask values of the
  padded volume, ref = 1 for the last ceil(a T H W) sorted positions (a fraction a of the clip;
  a as float32) and 0 for the rest, lambda_a = 300 g^t at step t, g = 1.0008668^(2000 / steps).
- Core (STEP): the padded mask volume correlated with a binary ellipsoid of n_kf = min(7, T) frames x
  ks x ks pixels (ks = 2 floor(11 S / 224) + 1, at most S; voxel (a, b, c) inside when
  sum ((2 i - (d - 1)) / (d - 1))^2 <= 1 over the axes with d > 1), stride (1, ks, ks), no
  padding, divided by the ellipsoid's voxel count; sorted, the top K = ceil(a T H W /
  floor(n_kf ks^2 0.5236)) (at least 1, at most the count) target 1 with weight 1 / K, the rest 0
  with weight 1 / (rest); lambda_c = 300 from step steps // 20 on (0 before).
- Sort ties: sorted values that differ by at most 1e-12 from their neighbour (chained) form a
  group, and each member's gradient uses the group's mean weight w and mean w * ref:
  d/dv = 2 (mean(w) v - mean(w ref)). Without ties this is exactly autograd's gradient of
  sum_j w_j (sort(v)_j - ref_j)^2 (torch.sort scatters the gradient back by the permutation).
- Optimiser: torch.optim.SGD(lr 0.05, momentum 0.9, dampening 0.9) on the parameters, starting
  from 1, clamped to [0, 1] after every step; the map is the sum over the areas of the masks of
  the final parameters.
"""
import hashlib
import math

import numpy as np
import torch
import torch.nn.functional as F

LEVELS = 8
COLD = 20.0
TIE = 1e-12


def geometry(T, H, W):
    S = min(H, W)
    g = {'step': 7, 'sigma': max(7.0, 11.0 * S / 112.0)}
    g['r'] = 1 + math.ceil(g['sigma'] / g['step'])
    g['M'] = int(round(g['sigma']))
    g['gh'] = -(-H // 7)
    g['gw'] = -(-W // 7)
    g['max_blur'] = 20.0 * S / 112.0
    g['nkf'] = min(7, T)
    g['ks'] = min(2 * math.floor(11.0 * S / 224.0) + 1, S)
    return g


def blur_plane(p, sigma):
    """Separable Gaussian of a (..., H, W) float64 array, edges replicated, rows then columns."""
    r = math.ceil(3 * sigma)
    j = np.arange(-r, r + 1)
    k = np.exp(-0.5 * j * j / (sigma * sigma))
    k /= k.sum()
    H, W = p.shape[-2:]
    cols = np.clip(np.arange(W)[:, None] + j[None, :], 0, W - 1)
    p = (p[..., cols] * k).sum(-1)                       # along x
    rows = np.clip(np.arange(H)[:, None] + j[None, :], 0, H - 1)
    p = np.moveaxis((np.moveaxis(p, -1, -2)[..., rows] * k).sum(-1), -1, -2)  # along y
    return p


_PYRAMIDS = {}


def pyramid(xc, g):
    """xc (C, T, H, W) float32 -> (8, C, T, H, W) float32 (a fresh copy of the one computed
    for the same clip and blur before, if any: the tests explain one clip several times)."""
    key = (xc.shape, xc.dtype.str, g['max_blur'],
           hashlib.sha256(np.ascontiguousarray(xc).tobytes()).digest())
    if key not in _PYRAMIDS:
        if len(_PYRAMIDS) >= 8:
            _PYRAMIDS.clear()
        _PYRAMIDS[key] = _pyramid(xc, g)
    return _PYRAMIDS[key].clone()


def _pyramid(xc, g):
    levels = []
    for l in range(LEVELS - 1):
        s = (1.0 - l / (LEVELS - 1)) * g['max_blur']
        levels.append(blur_plane(xc.astype(np.float64), s).astype(np.float32))
    levels.append(xc.astype(np.float32))
    return torch.from_numpy(np.stack(levels))


class MaskGen:
    """Masks on the frame plus the margin: pixel rows -M .. H + M - 1 (and columns)."""

    def __init__(self, H, W, g):
        st, r, sg, M = g['step'], g['r'], g['sigma'], g['M']
        off = np.arange(-r, r + 1)
        ys = np.arange(-M, H + M)
        xs = np.arange(-M, W + M)
        iy = (ys + st // 2) // st
        ix = (xs + st // 2) // st
        ii = iy[:, None] + off[None, :]                  # (H, nd)
        jj = ix[:, None] + off[None, :]                  # (W, nd)
        vi = (ii >= 0) & (ii < g['gh'])
        vj = (jj >= 0) & (jj < g['gw'])
        dy = ys[:, None] - st * ii                       # (Hp, nd)
        dx = xs[:, None] - st * jj
        d = np.sqrt(dy[:, None, :, None] ** 2 + dx[None, :, None, :] ** 2)  # (H, W, nd, nd)
        z = np.maximum(d / sg - 0.5, 0)
        self.k = torch.from_numpy(np.exp(-2 * z * z))
        self.valid = torch.from_numpy(vi[:, None, :, None] & vj[None, :, None, :])
        self.ii = torch.from_numpy(np.clip(ii, 0, g['gh'] - 1))
        self.jj = torch.from_numpy(np.clip(jj, 0, g['gw'] - 1))

    def __call__(self, p):
        """p (A, T, gh, gw) float64 -> masks (A, T, H + 2M, W + 2M)."""
        pg = p[:, :, self.ii, :]                         # (A, T, H, nd, gw)
        pg = pg[..., self.jj]                            # (A, T, H, nd, W, nd)
        pg = pg.permute(0, 1, 2, 4, 3, 5)                # (A, T, H, W, nd, nd)
        v = self.k * pg
        e = torch.exp(COLD * v) * self.valid
        return (v * e).sum((-1, -2)) / e.sum((-1, -2))


def blend(Y, m):
    """Y (8, C, T, H, W) float32, m (A, T, H, W) float64 -> (A, C, T, H, W) float64."""
    A = m.shape[0]
    w = (LEVELS - 1) * m
    l0 = torch.clamp(torch.floor(w.detach()), max=LEVELS - 1).long()
    f = w - l0
    l1 = torch.clamp(l0 + 1, max=LEVELS - 1)
    Yd = Y.double().unsqueeze(0).expand(A, *Y.shape)     # (A, 8, C, T, H, W)
    shp = (A, 1) + tuple(Y.shape[1:])
    y0 = torch.gather(Yd, 1, l0[:, None, None].expand(shp))[:, 0]
    y1 = torch.gather(Yd, 1, l1[:, None, None].expand(shp))[:, 0]
    return (1 - f)[:, None] * y0 + f[:, None] * y1


def sorted_surrogate(v, n1, w0, w1):
    """A function of v (1-D, float64) whose gradient is the tie-averaged gradient of
    sum_j w_j (sort(v)_j - ref_j)^2 (the last n1 sorted positions ref 1 and weight w1, the rest 0
    and w0), and that loss's value."""
    n = v.numel()
    vs, perm = torch.sort(v.detach(), stable=True)
    ref = (torch.arange(n) >= n - n1).double()
    w = torch.where(ref > 0, torch.tensor(w1, dtype=torch.float64),
                    torch.tensor(w0, dtype=torch.float64))
    brk = torch.ones(n, dtype=torch.bool)
    brk[1:] = (vs[1:] - vs[:-1]) > TIE
    gid = torch.cumsum(brk.long(), 0) - 1
    ng = int(gid[-1]) + 1
    cnt = torch.zeros(ng, dtype=torch.float64).index_add_(0, gid, torch.ones(n, dtype=torch.float64))
    aw = torch.zeros(ng, dtype=torch.float64).index_add_(0, gid, w) / cnt
    awr = torch.zeros(ng, dtype=torch.float64).index_add_(0, gid, w * ref) / cnt
    s = v[perm]
    value = float((w * (vs - ref) ** 2).sum())
    return (aw[gid] * s * s - 2 * awr[gid] * s).sum(), value


def ellipsoid(d):
    den = 1
    for a in d:
        den *= (a - 1) ** 2 if a > 1 else 1
    e = np.zeros(d, np.float64)
    for i in np.ndindex(*d):
        num = 0
        for a in range(3):
            if d[a] > 1:
                c = 2 * i[a] - (d[a] - 1)
                num += c * c * (den // ((d[a] - 1) ** 2))
        e[i] = num <= den
    return torch.from_numpy(e)


def extremal(model, x, target, areas=(0.1,), steps=300, layout='NCTHW', frame=None,
             history=False):
    x = np.asarray(x, np.float32)
    N = x.shape[0]
    targets = np.broadcast_to(np.asarray(target), (N,))
    areas = [float(np.float32(a)) for a in areas]
    A = len(areas)
    xs = x if layout == 'NCTHW' else np.swapaxes(x, 1, 2)        # (N, C, T, H, W)
    _, C, T, H, W = xs.shape
    g = geometry(T, H, W)
    gen = MaskGen(H, W, g)
    n = T * H * W
    M = g['M']
    npad = T * (H + 2 * M) * (W + 2 * M)
    ell = ellipsoid((g['nkf'], g['ks'], g['ks']))
    esum = float(ell.sum())
    vol = max(1, math.floor(g['nkf'] * g['ks'] * g['ks'] * 0.5236))
    growth = 1.0008668 ** (2000.0 / steps)
    core_from = steps // 20
    dtype = next(model.parameters()).dtype
    out = {'map': np.zeros((N, T, H, W)), 'masks': np.zeros((N, A, T, H, W)), 'hist': []}
    for s in range(N):
        Y = pyramid(xs[s], g)
        p = torch.ones(A, T, g['gh'], g['gw'], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.SGD([p], lr=0.05, momentum=0.9, dampening=0.9)
        lam_a = 300.0
        hist = []
        for t in range(steps):
            m = gen(p)
            xin = blend(Y, m[:, :, M:M + H, M:M + W]).to(dtype)
            if layout != 'NCTHW':
                xin = xin.transpose(1, 2)
            z = model(xin).double()
            logp = F.log_softmax(z, dim=1)[:, int(targets[s])]
            if logp.dim() > 1:
                logp = logp[:, frame] if frame is not None else logp.mean(1)
            energy = -logp.sum()
            lam_c = 300.0 if t >= core_from else 0.0
            rec = {'reward': (-logp).tolist(), 'area': [], 'core': []}
            for a in range(A):
                ones = math.ceil(areas[a] * n)
                sa, va = sorted_surrogate(m[a].reshape(-1), ones, 1.0 / npad, 1.0 / npad)
                energy = energy + lam_a * sa
                rec['area'].append(va)
                if lam_c > 0:
                    resp = F.conv3d(m[a][None, None], ell[None, None],
                                    stride=(1, g['ks'], g['ks'])).reshape(-1) / esum
                    nr = resp.numel()
                    K = min(max(math.ceil(areas[a] * n / vol), 1), nr)
                    sc, vc = sorted_surrogate(resp, K, 1.0 / (nr - K) if nr > K else 0.0,
                                              1.0 / K)
                    energy = energy + lam_c * sc
                    rec['core'].append(vc)
            opt.zero_grad()
            energy.backward()
            opt.step()
            with torch.no_grad():
                p.clamp_(0, 1)
            lam_a *= growth
            if history:
                hist.append(rec)
        with torch.no_grad():
            m = gen(p)[:, :, M:M + H, M:M + W]
        out['masks'][s] = m.numpy()
        out['map'][s] = m.sum(0).numpy()
        out['hist'].append(hist)
    return out
