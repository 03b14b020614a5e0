#!/usr/bin/python3
"""PyTorch oracle for stx's AOSA (`stx explain --method aosa`), written from
../shared/docs/methods.md §4.2 (uchiyama33/AOSA, mask mode "flow_one", stacking "flow_vec_corr")
and the choices stated in docs/perturbation.md. It takes the optical flow as given (stx's own,
exported by tests/flow_tool.c, or an analytic one), so it checks the masks and the estimator.

    from aosa_oracle import aosa
    m, info = aosa(model, x, target, flows, stride=8, crop=16, stack=3, baseline='zero')

x: the model's float input of ONE sample, (1, C, T, H, W) (layout NCTHW) or (1, T, C, H, W)
(NTCHW); flows: (T - 1, H, W, 2) float32, (dx, dy) from frame t to t + 1.

  seeds      np.mgrid[s/2:H:s, s/2:W:s] cast to int (the reference's expression), row-major
  tracking   frame t: a live point occludes rows [y - c//2, y + c//2 + c%2) (same in x), clipped;
             (fx, fy) = flow[t][y, x]; the point dies when y + fy or x + fx leaves
             [0, H-1] x [0, W-1], and moves to np.round (half to even) of it, clipped
  stacking   stack > 1: trajectory vectors (fx_0, fy_0, fx_1, ...), cosine similarity
             <a, b> / (|b| + 1e-10) / (|a| + 1e-10) accumulated left to right in float64; each
             mask joins the `stack` other seeds of highest similarity (ties: lower index)
  scores     s_i: target logit (or softmax probability) of x with mask i's occluded voxels set
             to the baseline on every channel; s0 of x
  map        AOSA's M(v) = (1/N) sum_i (s_i - s0) m_i(v) / mean(m_i) (m = 1 kept) minus its
             constant S = (1/N) sum_i (s_i - s0) / mean(m_i) (masks keeping nothing skipped)

info: number of seeds, of points that left the frame, the largest distance a point travelled.
"""
import numpy as np

from perturb_oracle import target_scores


def _seeds(H, W, stride):
    y, x = np.mgrid[stride / 2:H:stride, stride / 2:W:stride].reshape(2, -1).astype(int)
    return y, x


def tubes(flows, T, H, W, stride, crop):
    """Occluded voxels of each seed's tube (N, T, H, W) bool, trajectory vectors (N, 2(T-1))
    float32, and tracking statistics."""
    y, x = _seeds(H, W, stride)
    y0, x0 = y.copy(), x.copy()
    N = len(y)
    occ = np.zeros((N, T, H, W), bool)
    alive = np.ones(N, bool)
    traj = []
    lo, hi = crop // 2, crop // 2 + crop % 2
    travelled = 0.0
    for t in range(T):
        for i in np.flatnonzero(alive):
            occ[i, t, max(0, y[i] - lo):min(H, y[i] + hi), max(0, x[i] - lo):min(W, x[i] + hi)] = True
        if t == T - 1:
            break
        fx, fy = flows[t][y, x].T
        traj += [fx, fy]
        ny, nx = y + fy.astype(np.float64), x + fx.astype(np.float64)
        alive &= ~((ny < 0) | (ny > H - 1) | (nx < 0) | (nx > W - 1))
        y = np.clip(np.round(ny), 0, H - 1).astype(int)
        x = np.clip(np.round(nx), 0, W - 1).astype(int)
        travelled = max(travelled, float(np.hypot(y - y0, x - x0).max()))
    V = np.stack(traj, 1).astype(np.float32) if traj else np.zeros((N, 0), np.float32)
    return occ, V, dict(seeds=N, left=int((~alive).sum()), travelled=travelled)


def partners(V, stack):
    """For each seed, the `stack` others of most similar trajectory (ties: the lower index)."""
    N = V.shape[0]
    W = V.astype(np.float64)
    dot = np.zeros((N, N))
    sq = np.zeros(N)
    for k in range(W.shape[1]):           # left to right, as documented
        dot = dot + np.outer(W[:, k], W[:, k])
        sq = sq + W[:, k] * W[:, k]
    norm = np.sqrt(sq)
    sim = dot / (norm[None, :] + 1e-10) / (norm[:, None] + 1e-10)
    out = []
    for i in range(N):
        j = np.array([j for j in range(N) if j != i])
        order = np.lexsort((j, -sim[i, j]))
        out.append(j[order[:stack]])
    return out


def aosa(model, x, target, flows, stride=8, crop=16, stack=3, baseline='zero', layout='NCTHW',
         score='logit', batch=16):
    x = np.asarray(x, np.float32)
    assert x.shape[0] == 1
    tax, cax = (2, 1) if layout == 'NCTHW' else (1, 2)
    T, H, W = x.shape[tax], x.shape[3], x.shape[4]
    occ, V, info = tubes(np.asarray(flows, np.float32), T, H, W, stride, crop)
    if stack > 1:
        part = partners(V, stack)
        occ = np.stack([occ[i] | occ[part[i]].any(0) for i in range(len(occ))])
    xs = x[0]
    if isinstance(baseline, str) and baseline == 'zero':
        base = np.zeros_like(xs)
    elif isinstance(baseline, str) and baseline == 'mean':
        axes = tuple(a for a in range(4) if a != cax - 1)
        base = np.broadcast_to(xs.astype(np.float64).mean(axis=axes, keepdims=True),
                               xs.shape).astype(np.float32)
    else:
        base = np.asarray(baseline, np.float32).reshape(xs.shape)

    def expand(o):  # (T, H, W) occluded -> the sample's axes
        return o[None] if layout == 'NCTHW' else o[:, None]

    def scores(batch_x):
        return target_scores(model, batch_x, target, score, batch)

    s0 = scores(xs[None])[0]
    s = scores(np.stack([np.where(expand(o), base, xs) for o in occ]))
    m = (~occ).astype(np.float64)                      # 1 = kept
    kept = m.reshape(len(m), -1).mean(1)
    use = kept > 0
    N = len(m)
    M = np.tensordot((s - s0)[use] / kept[use], m[use], axes=1) / N
    S = ((s - s0)[use] / kept[use]).sum() / N
    info['scores'] = s
    return M - S, info
