#!/usr/bin/python3
"""NumPy oracle of the Cholec80 / M2CAI 2016 phase-recognition scores (docs/phase.md).

Written from the evaluation script the Cholec80 papers use (M2CAI 2016 challenge, `Evaluate.m`,
also shipped by TeCNO and TMRNet), phase by phase as that script loops, with 0-based phases:

    diff = pred - gt
    for every phase p, every connected run [s, e] of gt == p:
        t = min(relax_frames, e - s + 1)
        head = the first t frames, tail = the last t frames of the run
        p in {3, 4} (gallbladder dissection, packaging):   head: diff == -1 -> 0
                                                           tail: diff in (1, 2) -> 0
        p in {5, 6} (cleaning, retraction):                head: diff in (-1, -2) -> 0
                                                           tail: diff in (1, 2) -> 0
        otherwise:                                         head: diff == -1 -> 0
                                                           tail: diff == 1 -> 0
    per phase p absent from gt: NaN (precision, recall, Jaccard)
    union = frames with pred == p or gt == p; tp = frames of the union with diff == 0
    jaccard = tp / |union|, precision = tp / #(pred == p), recall = tp / #(gt == p), capped at 1
    accuracy = #(diff == 0) / #frames

The special cases apply only to the 7 Cholec80 phases; with another number of phases every phase
takes the general rule. relax_frames = 0 gives the strict scores. The script's tail test indexes
the run's first t frames with the tail's mask (a known slip, see Funke et al. 2023, "Metrics
matter in surgical phase recognition"); the oracle, like stx, applies it to the tail as intended.
"""
import numpy as np


def _runs(a):
    """(start, end, value) of the runs of equal values of a 1-D array."""
    edges = np.flatnonzero(np.diff(a)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges - 1, [len(a) - 1]])
    return [(int(s), int(e), int(a[s])) for s, e in zip(starts, ends)]


def cholec80_scores(gt, pred, n_phases, relax_frames=0):
    gt = np.asarray(gt, np.int64)
    pred = np.asarray(pred, np.int64)
    diff = pred - gt
    updated = diff.copy()
    if relax_frames > 0:
        for s, e, p in _runs(gt):
            cur = diff[s:e + 1].copy()
            t = min(relax_frames, len(cur))
            idx = np.arange(len(cur))
            head, tail = idx < t, idx >= len(cur) - t
            if n_phases == 7 and p in (3, 4):
                late, early = (-1,), (1, 2)
            elif n_phases == 7 and p in (5, 6):
                late, early = (-1, -2), (1, 2)
            else:
                late, early = (-1,), (1,)
            cur[head & np.isin(cur, late)] = 0   # late transition: still the previous phase
            cur[tail & np.isin(cur, early)] = 0  # early transition: already the next phase
            updated[s:e + 1] = cur
    prec, rec, jac = [], [], []
    for p in range(n_phases):
        in_gt, in_pred = gt == p, pred == p
        if not in_gt.any():
            prec.append(np.nan), rec.append(np.nan), jac.append(np.nan)
            continue
        union = in_gt | in_pred
        tp = np.count_nonzero(updated[union] == 0)
        jac.append(min(1.0, tp / np.count_nonzero(union)))
        prec.append(min(1.0, tp / np.count_nonzero(in_pred)) if in_pred.any() else np.nan)
        rec.append(min(1.0, tp / np.count_nonzero(in_gt)))
    acc = np.count_nonzero(updated == 0) / len(gt)
    return {'accuracy': acc, 'precision': np.array(prec), 'recall': np.array(rec),
            'jaccard': np.array(jac)}
