#!/usr/bin/python3
"""Synthetic video action-recognition benchmark with spatio-temporal ground truth.

Every clip shows ONE target object, a filled disc, on a textured, slowly drifting background
together with 2-3 distractor objects of other shapes.  Only what the disc does decides the class;
the per-clip ground truth says where the disc is (``mask``) and when the decisive evidence
happens (``event``), so that explanations of video models (3D CNN, CNN+LSTM, video transformer)
trained on the data can be scored against it.

Conventions
-----------
* Image coordinates: ``y`` grows downwards, ``x`` grows to the right; pixel ``(y, x)`` has its
  centre at the integer coordinates ``(y, x)``.  "up" means ``y`` decreases.
* Lengths are given for 64 px clips and scaled by ``s = min(H, W) / 64``.

Scene
-----
* Background: mean colour plus three travelling 2-D sinusoids (0.3-2 cycles per frame width,
  random orientation and RGB amplitude), whose phases drift by 0.05-0.25 rad/frame, plus
  uniform pixel noise (standard deviation 2-5).  Values stay muted (roughly 0-230, mean
  50-140).  It and the distractors are drawn from the generator BEFORE anything that depends
  on the label, so for a given generator state they are identical for every label (handy for
  counterfactual tests).
* Objects are filled with a bright, saturated colour (random hue, HSV S 0.7-1, V 0.9-1,
  redrawn until it is >= 140 RGB units from the background mean) and carry a dark outline
  (``round(s)`` px), so each object contrasts with the background and with the others.
  Target and distractors use the same colour distribution: colour says nothing about which
  object is the target; only the shape does.
* Distractors (2 or 3, distinct shapes among square, triangle (4 orientations), cross and
  diamond, sizes chosen so their area is close to a disc of the same size parameter): 25 %
  stationary, 35 % moving along an axis at 1.5-3 px/frame (like the target), 40 % moving in a
  random direction at 0.5-3 px/frame; they bounce off the frame edges.  40 % keep their size,
  30 % grow and 30 % shrink by a factor 1.4-2.2 over the clip.  They are never absent.
  Distractors are drawn first (later ones occlude earlier ones), the target last, so the
  target mask is exactly its visible pixels (fill and outline).

Classes (``CLASSES``, in this order)
------------------------------------
0-3 ``move_left/right/up/down``: the disc (radius 5-8) moves at a constant 1.5-3 px/frame in
    that direction for the whole clip, constant size, fully inside the frame.  The speed is
    capped when the frame is too small for the travel (e.g. many frames).
4 ``grow`` / 5 ``shrink``: stationary disc (sub-pixel jitter, |dx|, |dy| <= 0.3 px) whose radius
    changes linearly between r_small (3.5-4.5) and r_small * (1.8-2.2) (the mask area grows
    about 4x; between consecutive frames it may wobble by a few pixels because of the jitter).
6 ``appear``: stationary disc (radius 5-8, jitter) absent in frames ``0..t0-1`` and present in
    ``t0..T-1``, ``t0`` uniform in ``[T//4, (3*T)//4]``.
7 ``blink``: stationary disc present in all frames except a window of 2 or 3 consecutive frames
    ``b..b+L-1`` with ``1 <= b`` and ``b+L-1 <= T-2`` (never the first or last frame).
    Outside the window a blink clip looks like a static disc; no other class ever shows a
    stationary, always-present disc of constant size, so the window is the only evidence.

Event ground truth (``event``, bool ``(T,)``)
---------------------------------------------
* classes 0-5: every frame;
* ``appear``: frames ``t0-1`` and ``t0`` (the last absent and the first present frame);
* ``blink``: the absent window plus one frame on each side, ``b-1 .. b+L``.

Determinism
-----------
``make_clip`` only uses the generator it is given.  ``make_dataset(n, seed)`` draws clip ``i``
with ``np.random.default_rng([seed, i])`` and its label from a per-block permutation: block
``k = i // 8`` holds clips ``8k..8k+7`` whose labels are a permutation of the 8 classes drawn from
``SeedSequence(seed, spawn_key=(1, k))``.  Clip ``i`` (pixels and label) is thus independent of
``n``; labels are exactly balanced when ``n`` is a multiple of 8 (otherwise within one).

CLI
---
``/usr/bin/python3 tools/zoo/action_data.py --n 16 --seed 1 --out FILE.npz [--preview FILE.png]``
writes ``video, label, mask, event`` with ``np.savez_compressed`` (atomically) and optionally a
contact sheet: two rows per clip (raw frames; frames darkened outside the target mask), one
column per frame, event frames framed in red.
"""

import argparse
import os
import sys

import numpy as np

CLASSES = ['move_left', 'move_right', 'move_up', 'move_down', 'grow', 'shrink', 'appear',
           'blink']
N_CLASSES = len(CLASSES)

DISTRACTOR_SHAPES = ('square', 'triangle', 'cross', 'diamond')

# Largest distance from the centre to a shape pixel, in units of the size parameter ``a``
# (the triangle's apex at 2/3 of its 2.2a height is the worst case).
_EXTENT = 1.5
# Scale factors that make square / diamond areas equal to the disc area pi a^2.
_SQUARE_HALF = np.sqrt(np.pi) / 2.0
_DIAMOND_HALF = np.sqrt(np.pi / 2.0)
# Direction (dy, dx) per move class.
_MOVE_DIRS = {0: (0.0, -1.0), 1: (0.0, 1.0), 2: (-1.0, 0.0), 3: (1.0, 0.0)}
# spawn_key tag of the label-permutation streams used by make_dataset.
_LABEL_STREAM = 1


# --------------------------------------------------------------------------------------------
# small helpers

def _hsv_to_rgb(h, s, v):
    """Single HSV colour (all in [0, 1]) -> float RGB array in [0, 255]."""
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb) * 255.0


def _object_colours(rng, bg_mean):
    """Bright saturated fill colour far enough from the background mean, and a dark outline.

    Hues are drawn until one is at least 140 (RGB distance) from the background mean (at most 8
    tries; else the farthest one is kept), so colours stay varied but always contrast.
    """
    best, best_d = None, -1.0
    for _ in range(8):
        c = _hsv_to_rgb(rng.random(), rng.uniform(0.7, 1.0), rng.uniform(0.9, 1.0))
        d = float(np.linalg.norm(c - bg_mean))
        if d > best_d:
            best, best_d = c, d
        if d >= 140.0:
            break
    outline = np.full(3, rng.uniform(0.0, 30.0))
    return best.round().astype(np.uint8), outline.round().astype(np.uint8)


def _bounce(p0, v, t, lo, hi):
    """Position p0 + v t reflected into [lo, hi] (elastic bounces off both walls)."""
    span = hi - lo
    if span <= 0:
        return np.full(t.shape, (lo + hi) / 2.0)
    q = np.mod(p0 - lo + v * t, 2.0 * span)
    return lo + np.where(q > span, 2.0 * span - q, q)


def _shape_fill(shape, dy, dx, a, orient):
    """Boolean shape mask from offsets to the centre (broadcast arrays) and size parameter a."""
    if shape == 'disc':
        return dy * dy + dx * dx <= a * a
    if shape == 'square':
        return np.maximum(np.abs(dy), np.abs(dx)) <= _SQUARE_HALF * a
    if shape == 'diamond':
        return np.abs(dy) + np.abs(dx) <= _DIAMOND_HALF * a
    if shape == 'cross':
        arm, half = 1.15 * a, np.maximum(0.4 * a, 1.0)
        ady, adx = np.abs(dy), np.abs(dx)
        return ((ady <= half) & (adx <= arm)) | ((adx <= half) & (ady <= arm))
    if shape == 'triangle':
        # u runs from the apex (-2h/3) to the base (+h/3); v is across; centroid at the origin.
        u, v = [(dy, dx), (-dy, dx), (dx, dy), (-dx, dy)][orient]
        h, b = 2.2 * a, 1.3 * a
        return (u <= h / 3.0) & (np.abs(v) * h <= b * (u + 2.0 * h / 3.0))
    raise ValueError(shape)


def _erode(m, steps):
    """4-neighbour binary erosion of a (T, S, S) mask; pixels outside the box count as empty."""
    for _ in range(steps):
        e = np.zeros_like(m)
        e[:, 1:-1, 1:-1] = (m[:, 1:-1, 1:-1] & m[:, :-2, 1:-1] & m[:, 2:, 1:-1]
                            & m[:, 1:-1, :-2] & m[:, 1:-1, 2:])
        m = e
    return m


class _Object:
    """Per-frame trajectory of one object: centre (cy, cx), size a, presence; shape, colours."""

    def __init__(self, shape, cy, cx, a, present, fill, outline, orient=0):
        self.shape, self.orient = shape, orient
        self.cy, self.cx, self.a, self.present = cy, cx, a, present
        self.fill, self.outline = fill, outline


def _draw(video, obj, outline_px, mask_out=None):
    """Paint obj into video (T, H, W, 3) uint8 in place; optionally OR its pixels into mask_out.

    Each frame is rasterised inside a fixed S x S box around the rounded centre, vectorised over
    frames, so the cost does not depend on the image size.
    """
    frames, height, width = video.shape[:3]
    size = 2 * int(np.ceil(_EXTENT * obj.a.max() + outline_px)) + 3
    y0 = np.round(obj.cy).astype(np.int64) - size // 2
    x0 = np.round(obj.cx).astype(np.int64) - size // 2
    ar = np.arange(size)
    gy = y0[:, None, None] + ar[None, :, None]          # (T, S, 1) global rows
    gx = x0[:, None, None] + ar[None, None, :]          # (T, 1, S) global columns
    dy = gy - obj.cy[:, None, None]
    dx = gx - obj.cx[:, None, None]
    shape = _shape_fill(obj.shape, dy, dx, obj.a[:, None, None], obj.orient)
    inner = _erode(shape, outline_px)
    keep = (obj.present[:, None, None] & (gy >= 0) & (gy < height) & (gx >= 0) & (gx < width))
    for part, colour in ((shape & ~inner & keep, obj.outline), (inner & keep, obj.fill)):
        ti, si, sj = np.nonzero(part)
        yy, xx = y0[ti] + si, x0[ti] + sj
        video[ti, yy, xx] = colour
        if mask_out is not None:
            mask_out[ti, yy, xx] = True


# --------------------------------------------------------------------------------------------
# scene parts

def _background(rng, video):
    """Fill video (T, H, W, 3) uint8 with the muted textured background; return its mean colour.

    Computed channel-first as a (3, K) x (K, T*H*W) product (fast BLAS path); the pixel noise is
    uniform with the drawn standard deviation, made from random bytes (much cheaper than
    Gaussian samples).
    """
    frames, height, width = video.shape[:3]
    mean = rng.uniform(50.0, 140.0, size=3)
    n_waves = 3
    cycles = rng.uniform(0.3, 2.0, size=n_waves)
    angle = rng.uniform(0.0, 2.0 * np.pi, size=n_waves)
    phase = rng.uniform(0.0, 2.0 * np.pi, size=n_waves)
    drift = rng.uniform(0.05, 0.25, size=n_waves) * rng.choice([-1.0, 1.0], size=n_waves)
    amp = rng.uniform(10.0, 30.0, size=(n_waves, 1)) * rng.uniform(-1.0, 1.0, size=(n_waves, 3))
    sigma = rng.uniform(2.0, 5.0)
    n_px = frames * height * width
    noise = np.frombuffer(rng.bytes(3 * n_px), dtype=np.uint8).reshape(3, n_px)

    side = float(min(height, width))
    yy = np.arange(height, dtype=np.float32)[:, None]
    xx = np.arange(width, dtype=np.float32)[None, :]
    t = np.arange(frames, dtype=np.float32)
    waves = np.empty((n_waves, frames, height, width), dtype=np.float32)
    for k in range(n_waves):
        k_y = np.float32(2.0 * np.pi * cycles[k] * np.sin(angle[k]) / side)
        k_x = np.float32(2.0 * np.pi * cycles[k] * np.cos(angle[k]) / side)
        spatial = k_y * yy + k_x * xx                          # (H, W)
        temporal = (phase[k] + drift[k] * t).astype(np.float32)
        np.sin(spatial[None] + temporal[:, None, None], out=waves[k])
    img = amp.T.astype(np.float32) @ waves.reshape(n_waves, n_px)      # (3, T*H*W)
    step = np.float32(2.0 * np.sqrt(3.0) * sigma / 256.0)           # uniform noise, std sigma
    img += noise * step
    img += (mean - 127.5 * step).astype(np.float32)[:, None]
    np.maximum(img, 0.0, out=img)
    np.minimum(img, 255.0, out=img)
    video[...] = img.astype(np.uint8).reshape(3, frames, height, width).transpose(1, 2, 3, 0)
    return mean


def _distractors(rng, frames, height, width, s, bg_mean):
    """2-3 distractor objects with bouncing linear motion and optional growth/shrinkage."""
    t = np.arange(frames, dtype=np.float64)
    n = int(rng.integers(2, 4))
    shapes = rng.choice(len(DISTRACTOR_SHAPES), size=n, replace=False)
    objs = []
    for idx in shapes:
        shape = DISTRACTOR_SHAPES[int(idx)]
        orient = int(rng.integers(4))
        kind = rng.random()
        factor = rng.uniform(1.4, 2.2)
        if kind < 0.4:
            a = np.full(frames, rng.uniform(4.5, 8.0) * s)
        else:
            small = rng.uniform(3.5, 4.5) * s
            ends = (small, small * factor) if kind < 0.7 else (small * factor, small)
            a = np.linspace(ends[0], ends[1], frames)
        ext = _EXTENT * a.max() + 1.0
        lo_y, hi_y = ext, height - 1 - ext
        lo_x, hi_x = ext, width - 1 - ext
        p_y = rng.uniform(lo_y, max(lo_y, hi_y))
        p_x = rng.uniform(lo_x, max(lo_x, hi_x))
        motion = rng.random()
        if motion < 0.25:
            v_y = v_x = 0.0
        elif motion < 0.6:
            v_y, v_x = _MOVE_DIRS[int(rng.integers(4))]
            speed = rng.uniform(1.5, 3.0) * s
            v_y, v_x = v_y * speed, v_x * speed
        else:
            ang, speed = rng.uniform(0.0, 2.0 * np.pi), rng.uniform(0.5, 3.0) * s
            v_y, v_x = speed * np.sin(ang), speed * np.cos(ang)
        cy = _bounce(p_y, v_y, t, lo_y, hi_y)
        cx = _bounce(p_x, v_x, t, lo_x, hi_x)
        fill, outline = _object_colours(rng, bg_mean)
        objs.append(_Object(shape, cy, cx, a, np.ones(frames, bool), fill, outline, orient))
    return objs


def _target(rng, label, frames, height, width, s, bg_mean):
    """The disc for the given class, and the event vector."""
    t = np.arange(frames, dtype=np.float64)
    present = np.ones(frames, bool)
    event = np.zeros(frames, bool)
    fill, outline = _object_colours(rng, bg_mean)
    if label in _MOVE_DIRS:
        r = rng.uniform(5.0, 8.0) * s
        d_y, d_x = _MOVE_DIRS[label]
        along = width if d_x else height
        across = height if d_x else width
        lo, hi = r + 1.0, along - 2.0 - r                       # centre range along the motion
        speed = min(rng.uniform(1.5, 3.0) * s, (hi - lo) / max(frames - 1, 1))
        travel = speed * (frames - 1)
        low_end = lo + rng.uniform(0.0, max(hi - lo - travel, 0.0))   # smallest coordinate
        start = low_end + travel if d_y + d_x < 0 else low_end
        side = rng.uniform(r + 1.0, across - 2.0 - r)
        pos = start + (d_y + d_x) * speed * t
        cy, cx = (np.full(frames, side), pos) if d_x else (pos, np.full(frames, side))
        a = np.full(frames, r)
        event[:] = True
    else:
        if label in (4, 5):
            small = rng.uniform(3.5, 4.5) * s
            big = small * rng.uniform(1.8, 2.2)
            a = np.linspace(small, big, frames) if label == 4 else np.linspace(big, small, frames)
            event[:] = True
        elif label in (6, 7):
            a = np.full(frames, rng.uniform(5.0, 8.0) * s)
            if label == 6:
                t0 = int(rng.integers(frames // 4, (3 * frames) // 4 + 1))
                present[:t0] = False
                event[max(t0 - 1, 0):t0 + 1] = True
            else:
                length = int(rng.integers(2, 4))
                b = int(rng.integers(1, frames - length))       # b .. b+length-1 <= T-2
                present[b:b + length] = False
                event[b - 1:b + length + 1] = True
        else:
            raise ValueError('label must be in [0, %d), got %r' % (N_CLASSES, label))
        r_max = a.max()
        cy0 = rng.uniform(r_max + 1.0, height - 2.0 - r_max)
        cx0 = rng.uniform(r_max + 1.0, width - 2.0 - r_max)
        jitter = rng.uniform(-0.3, 0.3, size=(2, frames))
        cy, cx = cy0 + jitter[0], cx0 + jitter[1]
    return _Object('disc', cy, cx, a, present, fill, outline), event


# --------------------------------------------------------------------------------------------
# public API

def make_clip(rng, label, frames=16, height=64, width=64):
    """Render one clip of class ``label`` using generator ``rng``.

    Returns (video uint8 (T,H,W,3), mask bool (T,H,W), event bool (T,)); ``mask`` holds the
    target disc's visible pixels per frame (empty where absent), ``event`` the decisive frames.
    """
    video = np.empty((frames, height, width, 3), np.uint8)
    mask = np.empty((frames, height, width), bool)
    event = _render(rng, label, video, mask)
    return video, mask, event


def _render(rng, label, video, mask):
    """make_clip into preallocated video (T,H,W,3) uint8 and mask (T,H,W) bool; returns event."""
    frames, height, width = video.shape[:3]
    label = int(label)
    if not 0 <= label < N_CLASSES:
        raise ValueError('label must be in [0, %d), got %r' % (N_CLASSES, label))
    if frames < 5 or min(height, width) < 24:
        raise ValueError('need frames >= 5 and height, width >= 24')
    s = min(height, width) / 64.0
    outline_px = max(1, int(round(s)))
    bg_mean = _background(rng, video)
    for obj in _distractors(rng, frames, height, width, s, bg_mean):
        _draw(video, obj, outline_px)
    target, event = _target(rng, label, frames, height, width, s, bg_mean)
    mask[...] = False
    _draw(video, target, outline_px, mask)
    return event


def dataset_labels(n, seed):
    """Labels of clips 0..n-1: each block of 8 consecutive clips is a seeded class permutation."""
    labels = np.empty(n, dtype=np.int64)
    for k in range((n + N_CLASSES - 1) // N_CLASSES):
        ss = np.random.SeedSequence(seed, spawn_key=(_LABEL_STREAM, k))
        perm = np.random.default_rng(ss).permutation(N_CLASSES)
        chunk = labels[k * N_CLASSES:(k + 1) * N_CLASSES]
        chunk[:] = perm[:len(chunk)]
    return labels


def make_dataset(n, seed, frames=16, height=64, width=64, start=0):
    """Deterministic dataset of n clips: clips start .. start+n-1 of the seed's sequence.

    Returns dict(video=uint8 (n,T,H,W,3), label=int64 (n,), mask=bool (n,T,H,W), event=bool
    (n,T)).  Clip i uses np.random.default_rng([seed, i]) and label dataset_labels(...)[i], so
    it does not depend on n (or on how the sequence is cut into pieces).
    """
    labels = dataset_labels(start + n, seed)[start:]
    out = dict(video=np.empty((n, frames, height, width, 3), np.uint8), label=labels,
               mask=np.empty((n, frames, height, width), bool),
               event=np.empty((n, frames), bool))
    for j in range(n):
        rng = np.random.default_rng([seed, start + j])
        out['event'][j] = _render(rng, labels[j], out['video'][j], out['mask'][j])
    return out


# --------------------------------------------------------------------------------------------
# preview + CLI

def save_preview(data, path, scale=2, max_clips=32):
    """Contact sheet PNG: per clip a raw row and a row darkened outside the mask; events red."""
    from PIL import Image, ImageDraw

    video, mask, event, label = data['video'], data['mask'], data['event'], data['label']
    n = min(len(video), max_clips)
    frames, height, width = video.shape[1:4]
    border, label_w, gap = 2, 90, 6
    cell_h, cell_w = height * scale + 2 * border, width * scale + 2 * border
    sheet = Image.new('RGB', (label_w + frames * cell_w, n * (2 * cell_h + gap)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        top = i * (2 * cell_h + gap)
        draw.text((4, top + 4), '%d: %s' % (i, CLASSES[int(label[i])]), fill=(230, 230, 230))
        for t in range(frames):
            raw = video[i, t]
            over = (raw * 0.3).astype(np.uint8)
            over[mask[i, t]] = raw[mask[i, t]]
            colour = (230, 40, 40) if event[i, t] else (70, 70, 70)
            for row, img in enumerate((raw, over)):
                x, y = label_w + t * cell_w, top + row * cell_h
                draw.rectangle([x, y, x + cell_w - 1, y + cell_h - 1], fill=colour)
                tile = Image.fromarray(img).resize((width * scale, height * scale),
                                                   Image.NEAREST)
                sheet.paste(tile, (x + border, y + border))
    tmp = '%s.tmp%d' % (path, os.getpid())
    sheet.save(tmp, format='PNG')
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n', type=int, default=16, help='number of clips')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--frames', type=int, default=16)
    p.add_argument('--height', type=int, default=64)
    p.add_argument('--width', type=int, default=64)
    p.add_argument('--out', required=True, help='output .npz')
    p.add_argument('--preview', help='optional contact-sheet PNG')
    p.add_argument('--preview-scale', type=int, default=2)
    args = p.parse_args(argv)
    data = make_dataset(args.n, args.seed, args.frames, args.height, args.width)
    tmp = '%s.tmp%d' % (args.out, os.getpid())
    with open(tmp, 'wb') as f:
        np.savez_compressed(f, **data)
    os.replace(tmp, args.out)
    if args.preview:
        save_preview(data, args.preview, scale=args.preview_scale)
    return 0


if __name__ == '__main__':
    sys.exit(main())
