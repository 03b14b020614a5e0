"""Preprocessing shared by the zoo's training script and the tests (numpy only, no torch)."""

import numpy as np


def channel_stats(videos):
    """Per-channel mean and std of uint8 RGB frames in [0, 1], rounded to 3 decimals."""
    s = np.zeros(3)
    s2 = np.zeros(3)
    n = 0
    for v in videos:
        x = v.reshape(-1, 3).astype(np.float64) / 255.0
        s += x.sum(0)
        s2 += (x * x).sum(0)
        n += x.shape[0]
    mean = s / n
    std = np.sqrt(s2 / n - mean * mean)
    return [round(float(m), 3) for m in mean], [round(float(d), 3) for d in std]


def preprocess(frames, mean, std, layout):
    """uint8 frames (..., T, H, W, 3) -> float32 model input: (v / 255 - mean) / std, channels
    moved to the layout's place (NCTHW: C before T; NTCHW: after T; NCHW for single frames).
    Exactly this arithmetic in float32 (stx's preprocessing does the same)."""
    x = frames.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    nd = x.ndim
    if layout == 'NCTHW':                   # (N, T, H, W, C) -> (N, C, T, H, W)
        x = np.moveaxis(x, nd - 1, nd - 4)
    else:                                   # NTCHW or NCHW: (..., H, W, C) -> (..., C, H, W)
        x = np.moveaxis(x, nd - 1, nd - 3)
    return np.ascontiguousarray(x, dtype=np.float32)
