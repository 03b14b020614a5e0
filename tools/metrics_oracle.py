#!/usr/bin/python3
"""Oracle for stx's explanation metrics (`stx evaluate`), written from docs/metrics.md and
../shared/docs/methods.md §7 with PyTorch (the model's forwards) and numpy (everything else).

    from metrics_oracle import deletion_insertion, localisation, sum_model_onnx
    curves = deletion_insertion(model, x, saliency, target, steps=20, baseline='zero')

Deletion / insertion: the T*H*W voxels of each sample are ranked by decreasing saliency (ties by
position: a stable sort of the negated map), all channels of a voxel together. Schedules:
'torchcam' and 'rise' change ceil(P / steps) voxels per step (the last step takes the rest);
'linspace' cuts at floor(i * P / steps). Deletion replaces the first k ranked voxels of x by the
baseline, insertion starts from the insertion baseline and puts the first k voxels of x back.
The score is the target's logit or softmax probability. AUC: 'torchcam' trapezoid over the
fractions changed, 'rise' and 'linspace' (sum - first/2 - last/2) / n.

Localisation (one sample: map (T, H, W), mask (T, H, W) bool, events (T,) bool): pointing game
(any maximum within `tolerance` pixels of a ground-truth pixel of the same frame), per frame,
energy (positive mass inside), mass (signed mass inside, Quantus RelevanceMassAccuracy), rank
(top-|GT| voxels inside, Quantus RelevanceRankAccuracy), topk (top-k inside / k), iou (min-max
normalised map >= threshold), temporal (positive mass on decisive frames), temporal_pointing
(frame of largest positive mass decisive), sparsity (Quantus Sparseness: Gini of |a|/max + 1e-7),
complexity (entropy of |a| / sum |a|).
"""
import math

import numpy as np

from perturb_oracle import target_scores


def sum_model_onnx(path, thw=(1, 2, 2)):
    """torch-cam's test "model" (peers.md §3.2 case 6): y = [sum(x), 1 - sum(x)] of an input
    (N, 1, T, H, W) with a dynamic batch."""
    import onnx
    from onnx import TensorProto, helper
    axes = helper.make_tensor('axes', TensorProto.INT64, [4], [1, 2, 3, 4])
    shp = helper.make_tensor('shp', TensorProto.INT64, [2], [-1, 1])
    one = helper.make_tensor('one', TensorProto.FLOAT, [], [1.0])
    nodes = [helper.make_node('ReduceSum', ['x', 'axes'], ['s5'], keepdims=1),
             helper.make_node('Reshape', ['s5', 'shp'], ['s']),
             helper.make_node('Sub', ['one', 's'], ['d']),
             helper.make_node('Concat', ['s', 'd'], ['y'], axis=1)]
    g = helper.make_graph(nodes, 'sum_model',
                          [helper.make_tensor_value_info('x', TensorProto.FLOAT,
                                                         ['N', 1] + list(thw))],
                          [helper.make_tensor_value_info('y', TensorProto.FLOAT, ['N', 2])],
                          [axes, shp, one])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid('', 17)])
    onnx.save(m, path)


def cuts(P, steps, convention='torchcam', step_voxels=0):
    if convention == 'linspace':
        n = math.ceil(P / step_voxels) if step_voxels > 0 else steps
        n = min(n, P)
        return [i * P // n for i in range(n + 1)]
    s = step_voxels if step_voxels > 0 else math.ceil(P / steps)
    n = math.ceil(P / s)
    return [min(i * s, P) for i in range(n + 1)]


def auc(curve, cut, P, convention='torchcam'):
    curve = np.asarray(curve, np.float64)
    n = len(curve) - 1
    if n == 0:
        return float(curve[0])
    if convention == 'torchcam':
        fr = np.asarray(cut, np.float64) / P
        return float(np.sum((fr[1:] - fr[:-1]) * (curve[1:] + curve[:-1]) / 2))
    return float((curve.sum() - curve[0] / 2 - curve[-1] / 2) / n)


def _baseline(xn, kind):
    if isinstance(kind, str) and kind == 'zero':
        return np.zeros_like(xn)
    if isinstance(kind, str) and kind == 'mean':  # per channel over the clip (NCTHW sample)
        return np.broadcast_to(xn.astype(np.float64).mean(axis=(1, 2, 3), keepdims=True),
                               xn.shape).astype(np.float32)
    return np.asarray(kind, np.float32).reshape(xn.shape)


def deletion_insertion(model, x, saliency, target, steps=20, baseline='zero',
                       insertion_baseline=None, score='prob', convention='torchcam',
                       step_voxels=0, batch=8, cells=None, least_first=False):
    """x: (N, C, T, H, W) numpy float32 (layout NCTHW); saliency (N, T, H, W). Returns per sample
    (deletion curve, insertion curve, fractions, deletion auc, insertion auc). cells (ct, ch, cw):
    the map averaged over a grid of cells (cell of voxel d on an axis of D: floor(d * c / D); 0:
    one per voxel), cells ranked by decreasing mean (stable), removed whole; the schedule counts
    cells. least_first: rank by increasing values (LeRF)."""
    x = np.asarray(x, np.float32)
    N, C, T, H, W = x.shape
    P = T * H * W
    cell = None
    if cells is not None and any(cells):
        c = [cv if cv > 0 else D for cv, D in zip(cells, (T, H, W))]
        it, ih, iw = np.meshgrid(np.arange(T) * c[0] // T, np.arange(H) * c[1] // H,
                                 np.arange(W) * c[2] // W, indexing='ij')
        cell = ((it * c[1] + ih) * c[2] + iw).reshape(P)
        U = c[0] * c[1] * c[2]
    else:
        U = P
    ib = baseline if insertion_baseline is None else insertion_baseline
    cut = cuts(U, steps, convention, step_voxels)
    targets = np.broadcast_to(np.asarray(target), (N,))

    def scores(xs, t):
        return target_scores(model, xs, t, score, batch)

    res = []
    for n in range(N):
        xn = x[n].reshape(C, P)
        flat = np.asarray(saliency[n], np.float64).reshape(P)
        if least_first:  # LeRF: increasing values, ties still by position
            flat = -flat
        if cell is None:
            order = np.argsort(-flat, kind='stable')
            vcut = cut
        else:
            mean = np.bincount(cell, flat, U) / np.bincount(cell, None, U)
            crank = np.empty(U, np.int64)
            corder = np.argsort(-mean, kind='stable')
            crank[corder] = np.arange(U)
            order = np.argsort(crank[cell], kind='stable')  # by cell rank, then position
            sizes = np.bincount(cell, None, U)[corder]
            vcut = [int(sizes[:k].sum()) for k in cut]
        bd = _baseline(x[n], baseline).reshape(C, P)
        bi = _baseline(x[n], ib).reshape(C, P)
        dels, inss = [], []
        for k in vcut:
            d = xn.copy()
            d[:, order[:k]] = bd[:, order[:k]]
            dels.append(d.reshape(C, T, H, W))
            s = bi.copy()
            s[:, order[:k]] = xn[:, order[:k]]
            inss.append(s.reshape(C, T, H, W))
        dc = scores(np.stack(dels), targets[n])
        ic = scores(np.stack(inss), targets[n])
        res.append((dc, ic, np.asarray(cut) / U, auc(dc, cut, U, convention),
                    auc(ic, cut, U, convention)))
    return res


def _near(mask_t, y, x, tol):
    if tol <= 0:
        return bool(mask_t[y, x])
    ys, xs = np.nonzero(mask_t)
    return bool(np.any((ys - y) ** 2 + (xs - x) ** 2 <= tol * tol))


def _pointing(m, g, tol):
    """m (T, H, W) (or one frame with T = 1), g the same shape."""
    pts = np.argwhere(m == m.max())
    return any(_near(g[t], y, x, tol) for t, y, x in pts)


def localisation(name, m, g=None, e=None, tolerance=0.0, top_k=1000, iou_threshold=0.5,
                 iou_top=0.0):
    m = np.asarray(m, np.float64)
    T, H, W = m.shape
    if g is not None:
        g = np.asarray(g) != 0
        if name in ('pointing', 'pointing_frame', 'energy', 'iou', 'mass', 'rank', 'topk') \
                and not g.any():
            return float('nan')
    if name == 'pointing':
        return 1.0 if _pointing(m, g, tolerance) else 0.0
    if name == 'pointing_frame':
        fr = [t for t in range(T) if g[t].any()]
        return float(np.mean([_pointing(m[t:t + 1], g[t:t + 1], tolerance) for t in fr]))
    if name in ('energy', 'mass'):
        a = np.maximum(m, 0) if name == 'energy' else m
        return float(a[g].sum() / a.sum()) if a.sum() != 0 else float('nan')
    flat = m.reshape(-1)
    order = np.argsort(-flat, kind='stable')
    if name in ('rank', 'topk'):
        k = int(g.sum()) if name == 'rank' else min(top_k, flat.size)
        return float(g.reshape(-1)[order[:k]].sum() / k)
    if name == 'iou':
        if iou_top > 0:
            b = np.zeros(flat.size, bool)
            b[order[:min(flat.size, math.ceil(iou_top * flat.size))]] = True
            b = b.reshape(m.shape)
        else:
            lo, hi = m.min(), m.max()
            nm = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
            b = nm >= iou_threshold
        u = (b | g).sum()
        return float((b & g).sum() / u) if u else float('nan')
    if name in ('temporal', 'temporal_pointing'):
        e = np.asarray(e) != 0
        if not e.any():
            return float('nan')
        fm = np.maximum(m, 0).sum(axis=(1, 2))
        if name == 'temporal_pointing':
            return 1.0 if e[int(np.argmax(fm))] else 0.0
        return float(fm[e].sum() / fm.sum()) if fm.sum() > 0 else float('nan')
    if name == 'sparsity':
        a = np.abs(flat)
        a = (a / a.max() if a.max() > 0 else a) + 1e-7
        a = np.sort(a)
        n = a.size
        i = np.arange(1, n + 1)
        return float(np.sum((2 * i - n - 1) * a) / (n * np.sum(a)))
    if name == 'complexity':
        a = np.abs(flat)
        if a.sum() == 0:
            return float('nan')
        q = a / a.sum()
        q = q[q > 0]
        return float(-np.sum(q * np.log(q)))
    raise ValueError(name)
