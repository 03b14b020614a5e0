#!/usr/bin/python3
"""Seeded synthetic "surgical procedure" videos for phase recognition (Cholec80-like).

Each video is one laparoscopic-cholecystectomy-like procedure seen through a low-resolution
endoscope (default 48x48 RGB, 300-2000 frames). It is meant to train per-frame CNNs whose
features feed causal temporal models (MS-TCN / TeCNO style), and CNN+LSTMs, and then to check
their explanations against per-frame tool masks. Only numpy is needed (PIL for --preview).

Ground truth per video
    phase     int64 (T,)     index into PHASES; every phase occurs once, always in that order
    tools     uint8 (T,H,W)  bit k set where tool k (TOOLS[k]) covers the pixel (tools overlap)
    presence  bool  (T,7)    tool k visible anywhere in frame t (exactly: its mask is non-empty)

Phases: durations come from Cholec80-like relative weights (calot triangle dissection and
gallbladder dissection long, packaging and retraction short) times a lognormal factor per video
and phase (sigma 0.5), with every phase at least ~3% of the video, so the position in the video
does not give the phase away.

Scene: a textured tissue background (smooth pink/red/yellow blobs, vessels, specular spots) with
the liver across the top and a greenish gallbladder hanging from it. The camera drifts slowly and
the texture cross-fades slowly between two variants. The anatomy changes with the procedure,
giving weak progress cues: a yellow fat pad over the neck (Calot's triangle) shrinks during the
calot dissection, revealing the cystic duct; three clips appear on the duct during clipping and
the duct is cut by the scissors; during gallbladder dissection a dark-red liver bed opens from
neck to fundus while the gallbladder sags away from the liver; in packaging the gallbladder is
moved into the specimen bag; during cleaning the bed gets pale coagulation spots; in retraction
the closed bag (gallbladder inside) is pulled out toward the border.

Tools are drawn as instruments entering through a trocar port outside the frame (a shaft from
the port to the tip, so it enters from the border) with a distinctive tip and colour family:
    grasper       silver shaft, dark two-jaw tip that opens and closes
    bipolar       blue shaft, two parallel light prongs (fork)
    hook          black insulated shaft, metal tip bent into an L
    scissors      green shaft, two crossing blades (X) that open and close
    clipper       purple shaft, C-shaped clip at the tip
    irrigator     thick white tube with a dark band near the tip
    specimen_bag  translucent light-blue blob (open: with a dark rim; closed: with a knot)
Per-phase tool use and motion:
    preparation               grasper holding the fundus, slow drift (first frames: no tool)
    calot_triangle_dissection grasper + hook at the neck; small fast in-out hook strokes
    clipping_cutting          grasper + clipper (three clips), then grasper + scissors (cut)
    gallbladder_dissection    grasper + hook along the liver bed; slow long sweeps along the bed
    gallbladder_packaging     open specimen bag + grasper moving the gallbladder into it
    cleaning_coagulation      irrigator (sweeps) and/or bipolar (dabbing); grasper in 1/2 videos
    gallbladder_retraction    grasper pulling the closed bag out toward the border
Tools also go missing for short stretches inside a phase (tool exchanges) and slide in/out of
view at the start and end of each use, so a frame's tools alone do not fix its phase.

Ambiguous frames (3-6% of each video, runs of 1-10 frames; labels keep the true phase):
    out_of_view   no tool in view
    smoke         frame blended towards grey and blurred (tool masks keep the tool geometry)
    neighbour     a tool of the neighbouring phase shows up briefly near a phase boundary

Rendering is vectorised over chunks of frames: every shape is a distance/ellipse test on
precomputed coordinate grids, evaluated only for the frames that show it. The tool masks are the
exact shape tests used to paint the tools (occlusion between tools is ignored in the masks).

usage: /usr/bin/python3 tools/zoo/procedure_data.py --videos 2 --seed 1 --out DIR [--preview]
       [--min-frames 300] [--max-frames 2000] [--height 48] [--width 48]
"""
import argparse
import os

import numpy as np

PHASES = ['preparation', 'calot_triangle_dissection', 'clipping_cutting',
          'gallbladder_dissection', 'gallbladder_packaging', 'cleaning_coagulation',
          'gallbladder_retraction']
TOOLS = ['grasper', 'bipolar', 'hook', 'scissors', 'clipper', 'irrigator', 'specimen_bag']

GRASPER, BIPOLAR, HOOK, SCISSORS, CLIPPER, IRRIGATOR, BAG = range(len(TOOLS))
PREP, CALOT, CLIPPING, DISSECTION, PACKAGING, CLEANING, RETRACTION = range(len(PHASES))

# Relative phase durations (Cholec80 medians, flattened a little) and their spread per video.
_PHASE_WEIGHTS = np.array([0.06, 0.30, 0.08, 0.27, 0.07, 0.13, 0.09])
_PHASE_SPREAD = 0.5
_MIN_PHASE_FRACTION = 0.03
_MIN_FRAMES = 60

_CHUNK = 128        # frames rendered at once
_BASE = 48.0        # all sizes below are in pixels of a 48x48 frame and scale with the frame

# Tools typical of each phase, used for "neighbouring phase" ambiguity events.
_SIGNATURE = {PREP: [], CALOT: [HOOK], CLIPPING: [CLIPPER, SCISSORS], DISSECTION: [HOOK],
              PACKAGING: [BAG], CLEANING: [IRRIGATOR, BIPOLAR], RETRACTION: [BAG]}
_PHASE_TOOLS = {PREP: {GRASPER}, CALOT: {GRASPER, HOOK}, CLIPPING: {GRASPER, CLIPPER, SCISSORS},
                DISSECTION: {GRASPER, HOOK}, PACKAGING: {GRASPER, BAG},
                CLEANING: {GRASPER, IRRIGATOR, BIPOLAR}, RETRACTION: {GRASPER, BAG}}

# Back-to-front painting order of the tools (the bag lies under the instruments).
_DRAW_ORDER = [BAG, IRRIGATOR, BIPOLAR, CLIPPER, SCISSORS, HOOK, GRASPER]

_COLOURS = {
    'tissue': (200, 112, 104), 'liver': (122, 38, 36), 'gallbladder': (118, 142, 72),
    'fat': (232, 202, 116), 'bed': (112, 30, 34), 'duct': (222, 192, 168),
    'clip': (232, 232, 240), 'coag': (214, 184, 158), 'vessel': (150, 32, 44),
    'grasper': (190, 190, 198), 'grasper_jaw': (62, 62, 72),
    'bipolar': (48, 82, 205), 'bipolar_tip': (196, 206, 232),
    'hook': (30, 30, 36), 'hook_tip': (228, 228, 234),
    'scissors': (36, 150, 118), 'scissors_tip': (214, 214, 220),
    'clipper': (148, 58, 172), 'clipper_tip': (242, 242, 246),
    'irrigator': (240, 240, 230), 'irrigator_band': (58, 58, 60),
    'bag': (172, 214, 242), 'bag_rim': (52, 104, 200),
}
_PALETTE = [(226, 142, 136), (168, 52, 52), (228, 196, 112), (214, 168, 150), (190, 86, 92)]
_SMOKE = (178, 172, 172)


# ----------------------------------------------------------------------------------------------
# small signal and geometry helpers

def _smooth(rng, n, period, parts=3):
    """A smooth zero-mean random signal within [-1, 1]: a few sinusoids near `period` frames."""
    t = np.arange(n, dtype=np.float64)
    out = np.zeros(n)
    total = 0.0
    for _ in range(parts):
        amp = rng.uniform(0.4, 1.0)
        freq = 1.0 / (period * rng.uniform(0.6, 1.6))
        out += amp * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
        total += amp
    return out / total


def _oscillation(rng, n, period):
    """sin of a phase advancing at a jittered rate of one cycle per `period` frames."""
    rate = 2 * np.pi / period * (1.0 + 0.3 * _smooth(rng, n, 4 * period))
    return np.sin(np.cumsum(rate) + rng.uniform(0, 2 * np.pi))


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _runs(flags):
    """(start, stop) of each run of True in a 1-D bool array."""
    d = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]))


def _box_blur(a, r, axes=(0, 1)):
    """Box blur of radius r along the given axes of a (edges replicated)."""
    for axis in axes:
        pad = [(0, 0)] * a.ndim
        pad[axis] = (r + 1, r)
        c = np.cumsum(np.pad(a, pad, mode='edge'), axis=axis)
        hi = np.take(c, np.arange(2 * r + 1, c.shape[axis]), axis=axis)
        lo = np.take(c, np.arange(0, c.shape[axis] - 2 * r - 1), axis=axis)
        a = (hi - lo) / (2 * r + 1)
    return a


def _seg_d2(X, Y, ax, ay, bx, by):
    """Squared distance of grid points (X, Y) to segments a-b (per-frame params (m,1,1))."""
    dx, dy = bx - ax, by - ay
    px, py = X - ax, Y - ay
    t = np.clip((px * dx + py * dy) / (dx * dx + dy * dy + 1e-6), 0.0, 1.0)
    ex, ey = px - t * dx, py - t * dy
    return ex * ex + ey * ey


def _ellipse_r2(X, Y, cx, cy, ra, rb, cos_a, sin_a):
    """Normalised squared radius of grid points in ellipses (<= 1 inside)."""
    dx, dy = X - cx, Y - cy
    p = (dx * cos_a + dy * sin_a) / ra
    q = (dy * cos_a - dx * sin_a) / rb
    return p * p + q * q


def _col(v):
    return np.asarray(v, dtype=np.float32).reshape(-1, 1, 1)


class _Layer:
    """Paints into the frames `sel` of a chunk, working on a copy only when sel is partial."""

    def __init__(self, img, sel):
        self.img, self.sel = img, sel
        self.full = bool(sel.all())
        self.sub = img if self.full else img[sel]

    def paint(self, mask, colour, shade=None, alpha=None):
        colour = np.asarray(colour, dtype=np.float32)
        if shade is None:
            val = colour
        else:
            val = shade[mask][:, None] * colour
        if alpha is None:
            self.sub[mask] = val
        else:
            a = alpha if np.isscalar(alpha) else alpha[mask][:, None]
            self.sub[mask] = self.sub[mask] * (1 - a) + a * val

    def done(self):
        if not self.full:
            self.img[self.sel] = self.sub


# ----------------------------------------------------------------------------------------------
# one procedure

class _Procedure:
    """Random plan (phases, anatomy, camera, tool tracks, ambiguity events) of one video."""

    def __init__(self, rng, n_frames, height, width):
        if n_frames < _MIN_FRAMES:
            raise ValueError(f'n_frames must be >= {_MIN_FRAMES}')
        self.rng = rng
        self.n, self.h, self.w = int(n_frames), int(height), int(width)
        self.s = min(self.h, self.w) / _BASE
        self.margin = int(np.ceil(7 * self.s))
        self._plan_colours()
        self._plan_phases()
        self._plan_layout()
        self._plan_camera()
        self._plan_anatomy()
        self._plan_tools()
        self._plan_ambiguity()
        self._plan_entries()
        self._make_canvases()

    # -- planning ------------------------------------------------------------------------------

    def _plan_colours(self):
        rng = self.rng
        self.col = {k: np.clip(np.array(v, float) + rng.normal(0, 7, 3), 0, 255)
                    for k, v in _COLOURS.items()}
        self.gain = rng.uniform(0.9, 1.1, 3) * rng.uniform(0.88, 1.08)
        self.noise = rng.uniform(2.0, 4.0)

    def _plan_phases(self):
        rng, n = self.rng, self.n
        frac = _PHASE_WEIGHTS * rng.lognormal(0.0, _PHASE_SPREAD, len(PHASES))
        frac /= frac.sum()
        for _ in range(6):
            frac = np.maximum(frac, _MIN_PHASE_FRACTION)
            frac /= frac.sum()
        edges = np.round(np.concatenate([[0], np.cumsum(frac)]) * n).astype(np.int64)
        edges[-1] = n
        for p in range(1, len(PHASES)):
            edges[p] = max(edges[p], edges[p - 1] + 3)
        for p in range(len(PHASES) - 1, 0, -1):
            edges[p] = min(edges[p], edges[p + 1] - 3)
        self.edges = edges
        self.phase = np.repeat(np.arange(len(PHASES)), np.diff(edges)).astype(np.int64)
        t = np.arange(n)
        self.prog = (t - edges[self.phase]) / np.diff(edges)[self.phase]

    def _in(self, p):
        return slice(self.edges[p], self.edges[p + 1])

    def _plan_layout(self):
        rng, s, w, h = self.rng, self.s, self.w, self.h
        self.gb_c = np.array([w * rng.uniform(0.46, 0.6), h * rng.uniform(0.42, 0.52)])
        ang = np.deg2rad(rng.uniform(-42, -15))
        self.gb_ang = ang
        self.ax = np.array([np.cos(ang), np.sin(ang)])     # gallbladder axis, neck -> fundus
        self.up = np.array([np.sin(ang), -np.cos(ang)])    # towards the liver
        self.gb_a = rng.uniform(10.0, 12.5) * s
        self.gb_b = rng.uniform(5.5, 7.0) * s
        self.neck = self.gb_c - 0.85 * self.gb_a * self.ax
        self.duct_dir = _unit(-self.ax + np.array([0.0, 0.7]))
        self.duct_len = rng.uniform(8.0, 10.0) * s
        side = np.array([-self.duct_dir[1], self.duct_dir[0]])
        self.calot = self.neck + self.duct_dir * 3.0 * s + side * rng.uniform(-1.5, 1.5) * s
        self.bed0 = self.neck + self.up * self.gb_b * 0.7
        self.bed1 = self.gb_c + 0.8 * self.gb_a * self.ax + self.up * self.gb_b * 0.7
        self.liver_y0 = self.gb_c[1] - rng.uniform(1.0, 4.0) * s
        self.liver_slope = np.tan(ang) * rng.uniform(0.4, 0.8)
        self.liver_wave = (rng.uniform(1.0, 2.5) * s, rng.uniform(18, 34) * s,
                           rng.uniform(0, 2 * np.pi))
        self.bag_home = np.array([w * rng.uniform(0.2, 0.4), h * rng.uniform(0.7, 0.8)])
        self.n_spots = 7
        along = np.sort(rng.uniform(0.05, 0.95, self.n_spots))
        self.spots = (self.bed0[None] + along[:, None] * (self.bed1 - self.bed0)[None]
                      + rng.normal(0, 1.0 * s, (self.n_spots, 2)))
        # trocar ports (outside the frame), as angles from the frame centre
        main = rng.uniform(0, 45)
        angles = {GRASPER: rng.uniform(-80, -35), BIPOLAR: rng.uniform(140, 200),
                  HOOK: main + rng.uniform(-5, 5), SCISSORS: main + rng.uniform(-5, 5),
                  CLIPPER: main + rng.uniform(-5, 5), IRRIGATOR: rng.uniform(40, 100)}
        centre = np.array([w / 2.0, h / 2.0])
        radius = 0.5 * np.hypot(w, h) + 14 * s
        self.port = np.zeros((len(TOOLS), 2))
        for k, a in angles.items():
            self.port[k] = centre + radius * np.array([np.cos(np.deg2rad(a)),
                                                       np.sin(np.deg2rad(a))])

    def liver_edge(self, x):
        amp, per, ph = self.liver_wave
        return (self.liver_y0 + self.liver_slope * (x - self.gb_c[0])
                + amp * np.sin(2 * np.pi * x / per + ph))

    def _plan_camera(self):
        rng, n = self.rng, self.n
        amp = 3.5 * self.s
        cam = np.stack([amp * _smooth(rng, n, rng.uniform(250, 700)),
                        amp * _smooth(rng, n, rng.uniform(250, 700))], axis=1)
        self.cam = np.clip(np.round(cam), -self.margin, self.margin).astype(np.int64)
        self.mix = 0.5 + 0.5 * _smooth(rng, n, rng.uniform(400, 900))
        self.light = 1.0 + 0.05 * _smooth(rng, n, rng.uniform(150, 400))

    def _plan_anatomy(self):
        rng, n, s, ph, u = self.rng, self.n, self.s, self.phase, self.prog
        fat = np.zeros(n)
        fat[ph == PREP] = 1.0
        fat[ph == CALOT] = 1.0 - 0.7 * u[ph == CALOT]
        fat[ph == CLIPPING] = 0.3 - 0.15 * u[ph == CLIPPING]
        m = ph == DISSECTION
        fat[m] = np.clip(0.15 - 0.6 * u[m], 0.0, None)      # remnants gone early in dissection
        self.fat = fat
        detach = np.zeros(n)
        detach[m] = u[m] ** rng.uniform(0.8, 1.25)
        detach[ph > DISSECTION] = 1.0
        self.detach = detach
        self.gb_pos = self.gb_c[None] - detach[:, None] * 3.0 * s * self.up[None]
        self.gb_scale = np.ones(n)
        self.gb_visible = ph != CLEANING
        self.coag = np.where(ph == CLEANING, u, (ph > CLEANING).astype(float))
        # clipping: clipper for the first part of the phase, then scissors
        t0, d = self.edges[CLIPPING], self.edges[CLIPPING + 1] - self.edges[CLIPPING]
        self.clip_part = rng.uniform(0.45, 0.65)
        self.clip_times = [t0 + int((j + 0.75) / 3 * self.clip_part * d) for j in range(3)]
        self.cut_time = t0 + int((self.clip_part + (1 - self.clip_part) * 0.6) * d)
        self.clip_at = [0.2, 0.6, 0.78]

    def duct_point(self, f):
        return self.neck + self.duct_dir * self.duct_len * f

    def _plan_tools(self):
        rng, n, s, ph, u = self.rng, self.n, self.s, self.phase, self.prog
        nt = len(TOOLS)
        sched = np.zeros((n, nt), bool)
        tips = np.zeros((nt, n, 2))
        opening = np.stack([0.5 + 0.5 * _smooth(rng, n, rng.uniform(20, 60)) for _ in TOOLS])

        def wander(amp, period):
            return amp * s * np.stack([_smooth(rng, n, period), _smooth(rng, n, period)], 1)

        fundus = self.gb_pos + 0.75 * self.gb_a * self.ax[None]
        bed_mid = 0.5 * (self.bed0 + self.bed1)
        # default tracks, also used when a tool shows up outside its own phases
        tips[GRASPER] = fundus + wander(2.0, rng.uniform(150, 300))
        tips[HOOK] = self.calot[None] + wander(2.0, rng.uniform(80, 160))
        tips[CLIPPER] = self.duct_point(0.5)[None] + wander(1.5, 100)
        tips[SCISSORS] = self.duct_point(0.4)[None] + wander(1.5, 100)
        tips[IRRIGATOR] = bed_mid[None] + wander(4.0, rng.uniform(40, 80))
        tips[BIPOLAR] = bed_mid[None] + wander(3.0, rng.uniform(40, 80))
        self.bag_pos = self.bag_home[None] + wander(1.0, 200)
        self.bag_scale = np.full(n, 0.85)
        self.bag_open = np.ones(n, bool)

        # preparation: grasper only, after a short tool-free start
        a, b = self.edges[PREP], self.edges[PREP + 1]
        sched[a + int(rng.uniform(0.03, 0.1) * (b - a)):b, GRASPER] = True

        # calot triangle dissection: grasper on the fundus, hook with small fast strokes
        sl = self._in(CALOT)
        sched[sl, GRASPER] = sched[sl, HOOK] = True
        u_hook = _unit(self.port[HOOK] - self.calot)
        stroke = rng.uniform(1.5, 2.5) * s * _oscillation(rng, n, rng.uniform(5, 9))
        jitter = rng.normal(0, 0.3 * s, (n, 2))
        tips[HOOK][sl] = (self.calot[None] + wander(2.0, 120) + stroke[:, None] * u_hook
                          + jitter)[sl]

        # clipping and cutting: grasper on the infundibulum, clipper (3 clips) then scissors
        sl = self._in(CLIPPING)
        t0, t1 = self.edges[CLIPPING], self.edges[CLIPPING + 1]
        sched[sl, GRASPER] = True
        infund = self.gb_c - 0.3 * self.gb_a * self.ax
        tips[GRASPER][sl] = (infund[None] + wander(1.0, 120))[sl]
        t_switch = t0 + int(self.clip_part * (t1 - t0))
        sched[t0:t_switch, CLIPPER] = True
        sched[t_switch:t1, SCISSORS] = True
        u_clip = _unit(self.port[CLIPPER] - self.duct_point(0.5))
        starts = [t0] + self.clip_times[:-1]
        for j in range(3):
            a, b = starts[j], max(self.clip_times[j], starts[j] + 1)
            loc = (np.arange(a, b) - a) / max(b - a, 1)
            tips[CLIPPER][a:b] = (self.duct_point(self.clip_at[j])[None]
                                  + (1 - _smoothstep(1.4 * loc))[:, None] * 4 * s * u_clip)
            opening[CLIPPER][a:b] = 1.0 - _smoothstep(1.2 * loc)
        retreat = self.duct_point(self.clip_at[2]) + 4 * s * u_clip
        tips[CLIPPER][self.clip_times[2]:t_switch] = retreat
        u_sc = _unit(self.port[SCISSORS] - self.duct_point(0.4))
        loc = (np.arange(t_switch, t1) - t_switch) / max(t1 - t_switch, 1)
        tips[SCISSORS][t_switch:t1] = (self.duct_point(0.4)[None]
                                       + (1 - _smoothstep(2.0 * loc))[:, None] * 4 * s * u_sc)
        snip = 0.5 + 0.5 * _oscillation(rng, n, rng.uniform(8, 14))
        opening[SCISSORS][sl] = snip[sl]

        # gallbladder dissection: grasper on the fundus, hook in slow long sweeps along the bed
        sl = self._in(DISSECTION)
        sched[sl, GRASPER] = sched[sl, HOOK] = True
        sweep = _oscillation(rng, n, rng.uniform(40, 80))
        along = np.clip(self.detach - 0.05 + rng.uniform(0.16, 0.22) * sweep, 0.0, 1.0)
        bed_pt = self.bed0[None] + along[:, None] * (self.bed1 - self.bed0)[None]
        tips[HOOK][sl] = (bed_pt - self.up[None] * 1.0 * s + rng.normal(0, 0.3 * s, (n, 2)))[sl]

        # packaging: open bag, the grasper moves the gallbladder into it
        sl = self._in(PACKAGING)
        m = ph == PACKAGING
        sched[sl, GRASPER] = sched[sl, BAG] = True
        v = _smoothstep((u - 0.25) / 0.6)
        self.gb_pos[m] = ((1 - v[:, None]) * self.gb_pos + v[:, None] * self.bag_pos)[m]
        self.gb_scale[m] = 1.0 - 0.6 * v[m]
        self.bag_scale[m] = 0.6 + 0.4 * _smoothstep(u[m] / 0.2)
        fundus = self.gb_pos + 0.75 * self.gb_a * self.gb_scale[:, None] * self.ax[None]
        rim = self.bag_pos - np.array([0.0, 5.0 * s])[None]
        holding = m & (u < 0.85)
        tips[GRASPER][holding] = fundus[holding]
        tips[GRASPER][m & ~holding] = rim[m & ~holding]

        # cleaning and coagulation: irrigator and/or bipolar in alternating stretches
        a, b = self.edges[CLEANING], self.edges[CLEANING + 1]
        cuts = np.sort(rng.integers(a + 1, b, rng.integers(0, 3))) if b - a > 2 else []
        bounds = [a] + list(cuts) + [b]
        tool = rng.choice([IRRIGATOR, BIPOLAR])
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            sched[lo:hi, tool] = True
            if rng.random() < 0.3:
                sched[lo:hi, IRRIGATOR + BIPOLAR - tool] = True
            tool = IRRIGATOR + BIPOLAR - tool
        sl = self._in(CLEANING)
        bed_dir = _unit(self.bed1 - self.bed0)
        sweep = 5 * s * _oscillation(rng, n, rng.uniform(30, 50))
        tips[IRRIGATOR][sl] = (bed_mid[None] + sweep[:, None] * bed_dir + wander(1.0, 60))[sl]
        dwell = int(rng.integers(15, 30))                  # bipolar hops between bed spots
        hop = rng.integers(0, self.n_spots, n // dwell + 1)[np.arange(n) // dwell]
        spot_track = _box_blur(self.spots[hop], 3, axes=(0,))
        u_bi = _unit(self.port[BIPOLAR] - bed_mid)
        dab = 1.5 * s * _oscillation(rng, n, rng.uniform(10, 16))
        tips[BIPOLAR][sl] = (spot_track + dab[:, None] * u_bi)[sl]
        if rng.random() < 0.5:
            sched[sl, GRASPER] = True
            liver_pt = np.array([self.w * rng.uniform(0.2, 0.7), 0.0])
            liver_pt[1] = self.liver_edge(liver_pt[0]) - 3 * s
            tips[GRASPER][sl] = (liver_pt[None] + wander(1.5, 100))[sl]

        # retraction: the grasper pulls the closed bag out towards the grasper's port
        sl = self._in(RETRACTION)
        m = ph == RETRACTION
        sched[sl, GRASPER] = sched[sl, BAG] = True
        self.bag_open[m] = False
        self.bag_scale[m] = 0.8
        start = self.bag_home
        direction = _unit(self.port[GRASPER] - start)
        exit_pt = start + direction * self._to_border(start, direction)
        pull = _smoothstep(u[m] ** 1.5)[:, None]
        self.bag_pos[m] = start + pull * (exit_pt - start) + wander(0.6, 60)[m]
        self.gb_pos[m] = self.bag_pos[m]
        self.gb_scale[m] = 0.4
        knot = self.bag_pos + direction[None] * 6.0 * s
        tips[GRASPER][m] = knot[m]
        self.bag_dir = np.tile(direction, (n, 1))

        # tool exchanges: short gaps inside a phase
        for p, k, hi in ((CALOT, HOOK, 0.1), (DISSECTION, HOOK, 0.1), (CALOT, GRASPER, 0.05),
                         (DISSECTION, GRASPER, 0.05), (CLIPPING, GRASPER, 0.05)):
            self._gaps(sched, k, p, rng.uniform(0.0, hi))
        self.sched, self.tips, self.opening = sched, tips, opening

    def _to_border(self, p, d):
        """Distance from p along unit d to the frame border."""
        ts = []
        for i, size in ((0, self.w), (1, self.h)):
            if d[i] > 1e-9:
                ts.append((size - p[i]) / d[i])
            elif d[i] < -1e-9:
                ts.append(-p[i] / d[i])
        return min(ts)

    def _gaps(self, sched, k, p, frac):
        a, b = self.edges[p], self.edges[p + 1]
        want = int(frac * (b - a))
        for _ in range(50):
            if want <= 0 or b - a < 40:
                break
            length = int(self.rng.integers(4, 26))
            start = int(self.rng.integers(a + 5, max(a + 6, b - length - 5)))
            sched[start:start + length, k] = False
            want -= length

    def _plan_ambiguity(self):
        rng, n = self.rng, self.n
        self.ambiguous = np.zeros(n, bool)
        self.smoke = np.zeros(n)
        self.events = []
        target = rng.uniform(0.03, 0.06) * n
        for _ in range(1000):
            if self.ambiguous.sum() >= target:
                break
            length = int(rng.integers(1, 11))
            kind = rng.choice(['out_of_view', 'smoke', 'neighbour'], p=[0.35, 0.4, 0.25])
            tool = None
            if kind == 'neighbour':
                edge = int(rng.integers(1, len(PHASES)))
                before = rng.random() < 0.5
                p, q = (edge - 1, edge) if before else (edge, edge - 1)
                cands = [k for k in _SIGNATURE[q] if k not in _PHASE_TOOLS[p]]
                lo, hi = self.edges[p], self.edges[p + 1]
                if not cands or hi - lo < length + 2:
                    continue
                tool = int(rng.choice(cands))
                reach = min(40, hi - lo - length)
                off = int(rng.integers(0, reach + 1))
                start = hi - length - off if before else lo + off
            else:
                start = int(rng.integers(0, n - length + 1))
            stop = start + length
            if self.ambiguous[max(0, start - 1):stop + 1].any():
                continue
            self.ambiguous[start:stop] = True
            self.events.append((str(kind), start, length))
            if kind == 'out_of_view':
                self.sched[start:stop] = False
            elif kind == 'smoke':
                self.smoke[start:stop] = rng.uniform(0.45, 0.75)
            else:
                self.sched[start:stop, tool] = True
                if tool == BAG:
                    self.bag_open[start:stop] = True

    def _plan_entries(self):
        """Instruments slide in from (and back out to) their port at each use."""
        ramp = 5
        for k in range(len(TOOLS)):
            if k == BAG:
                continue
            for a, b in _runs(self.sched[:, k]):
                if b - a < 12:
                    continue
                pull = np.zeros(b - a)
                pull[:ramp] = 1.0 - np.arange(ramp) / ramp
                pull[-ramp:] = np.maximum(pull[-ramp:], (np.arange(ramp) + 1) / ramp)
                d = _unit(self.port[k][None] - self.tips[k][a:b])
                self.tips[k][a:b] += pull[:, None] * 16 * self.s * d

    # -- background --------------------------------------------------------------------------

    def _make_canvases(self):
        """Two tissue textures over the frame plus a margin for the camera drift."""
        rng, s, m = self.rng, self.s, self.margin
        hc, wc = self.h + 2 * m, self.w + 2 * m
        ys, xs = np.mgrid[0:hc, 0:wc].astype(np.float64) - m
        base = np.empty((hc, wc, 3))
        base[:] = self.col['tissue']

        def blobs(img, count):
            for _ in range(count):
                cx, cy = rng.uniform(-m, self.w + m), rng.uniform(-m, self.h + m)
                sig = rng.uniform(3.0, 8.0) * s
                c = np.array(_PALETTE[rng.integers(len(_PALETTE))]) + rng.normal(0, 8, 3)
                g = rng.uniform(0.35, 0.85) * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2)
                                                      / (2 * sig * sig))
                img += g[..., None] * (c - img)

        def grain(img, amp):
            g = _box_blur(rng.normal(0, 1, (hc, wc)), max(1, int(round(s))))
            img *= 1 + amp * (g / (g.std() + 1e-9))[..., None]

        blobs(base, int(14 * (hc * wc) / 3844) + 4)
        # vessels: thin dark-red random walks
        for _ in range(rng.integers(2, 5)):
            p = np.array([rng.uniform(-m, self.w + m), rng.uniform(self.h * 0.4, self.h + m)])
            heading = rng.uniform(0, 2 * np.pi)
            for _ in range(6):
                heading += rng.normal(0, 0.5)
                q = p + 4 * s * np.array([np.cos(heading), np.sin(heading)])
                d2 = _seg_d2(xs, ys, p[0], p[1], q[0], q[1])
                a = 0.55 * np.exp(-d2 / (2 * (0.6 * s) ** 2))
                base += a[..., None] * (self.col['vessel'] - base)
                p = q
        # the liver across the top
        liver = np.empty_like(base)
        liver[:] = self.col['liver']
        grain(liver, 0.08)
        lv = 1.0 / (1.0 + np.exp((ys - self.liver_edge(xs)) / (0.7 * s)))
        base = base * (1 - lv[..., None]) + liver * lv[..., None]
        canvases = []
        for _ in range(2):
            img = base.copy()
            blobs(img, 3)
            grain(img, 0.05)
            for _ in range(rng.integers(3, 7)):     # specular highlights on wet tissue
                cx, cy = rng.uniform(-m, self.w + m), rng.uniform(-m, self.h + m)
                g = 0.8 * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * (0.7 * s) ** 2))
                img += g[..., None] * (255.0 - img)
            canvases.append(np.clip(img, 0, 255).astype(np.float32))
        self.canvas = canvases
        yy, xx = np.mgrid[0:self.h, 0:self.w].astype(np.float32)
        r2 = ((xx - self.w / 2) / (self.w / 2)) ** 2 + ((yy - self.h / 2) / (self.h / 2)) ** 2
        self.vignette = (1.0 - 0.28 * np.clip(r2, 0, 2) / 2).astype(np.float32)

    # -- rendering ----------------------------------------------------------------------------

    def render(self):
        n, h, w = self.n, self.h, self.w
        video = np.empty((n, h, w, 3), np.uint8)
        masks = np.zeros((n, h, w), np.uint8)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        self.X, self.Y = xx[None], yy[None]
        for a in range(0, n, _CHUNK):
            idx = np.arange(a, min(n, a + _CHUNK))
            img = self._background(idx)
            self._draw_anatomy(img, idx)
            masks[idx] = self._draw_tools(img, idx)
            self._draw_smoke(img, idx)
            video[idx] = self._finish(img, idx)
        presence = np.stack([((masks >> k) & 1).any(axis=(1, 2)) for k in range(len(TOOLS))],
                            axis=1)
        return dict(video=video, phase=self.phase.copy(), tools=masks, presence=presence)

    def _background(self, idx):
        m = self.margin
        rows = (m + self.cam[idx, 1])[:, None] + np.arange(self.h)
        cols = (m + self.cam[idx, 0])[:, None] + np.arange(self.w)
        r, c = rows[:, :, None], cols[:, None, :]
        mix = self.mix[idx].astype(np.float32)[:, None, None, None]
        return self.canvas[0][r, c] * (1 - mix) + self.canvas[1][r, c] * mix

    def _frame_xy(self, pts, idx):
        """Scene points (m,2) of frames idx -> frame coordinates as (m,1,1) float32 arrays."""
        p = pts - self.cam[idx]
        return _col(p[:, 0]), _col(p[:, 1])

    def _draw_anatomy(self, img, idx):
        s, X, Y = self.s, self.X, self.Y
        cam = self.cam[idx]
        # liver bed opened by the dissection
        sel = self.detach[idx] > 0.01
        if sel.any():
            ii = idx[sel]
            ax, ay = self._frame_xy(np.repeat(self.bed0[None], len(ii), 0), ii)
            end = self.bed0[None] + self.detach[ii, None] * (self.bed1 - self.bed0)[None]
            bx, by = self._frame_xy(end, ii)
            d2 = _seg_d2(X, Y, ax, ay, bx, by)
            hw2 = (1.7 * s) ** 2
            lay = _Layer(img, sel)
            lay.paint(d2 <= hw2, self.col['bed'], shade=1.1 - 0.3 * d2 / hw2)
            for j in range(self.n_spots):      # coagulation spots on the bed
                on = self.coag[ii] > (j + 0.5) / self.n_spots
                if on.any():
                    sx, sy = (self.spots[j] - cam[sel]).T
                    d2 = (X - _col(sx)) ** 2 + (Y - _col(sy)) ** 2
                    lay.paint((d2 <= (1.2 * s) ** 2) & on[:, None, None], self.col['coag'])
            lay.done()
        # the gallbladder (also inside the bag late in the procedure)
        sel = self.gb_visible[idx]
        if sel.any():
            ii = idx[sel]
            cx, cy = self._frame_xy(self.gb_pos[ii], ii)
            sc = _col(self.gb_scale[ii])
            r2 = _ellipse_r2(X, Y, cx, cy, self.gb_a * sc, self.gb_b * sc,
                             np.float32(np.cos(self.gb_ang)), np.float32(np.sin(self.gb_ang)))
            lay = _Layer(img, sel)
            lay.paint(r2 <= 1.0, self.col['gallbladder'], shade=1.12 - 0.32 * r2)
            lay.done()
        # cystic duct (cut in two after the scissors), clips, and the fat pad over it
        cut = idx >= self.cut_time
        for lo, hi, which in ((0.0, 1.0, ~cut), (0.0, 0.32, cut), (0.48, 1.0, cut)):
            if which.any():
                (ax, ay), (bx, by) = (self.duct_point(lo) - cam).T, (self.duct_point(hi) - cam).T
                d2 = _seg_d2(X, Y, _col(ax), _col(ay), _col(bx), _col(by))
                mask = (d2 <= (1.1 * s) ** 2) & which[:, None, None]
                _Layer(img, np.ones(len(idx), bool)).paint(mask, self.col['duct'])
        normal = np.array([-self.duct_dir[1], self.duct_dir[0]]) * 1.7 * s
        for j in range(3):
            on = idx >= self.clip_times[j]
            if on.any():
                c = self.duct_point(self.clip_at[j])
                (ax, ay), (bx, by) = (c - normal - cam).T, (c + normal - cam).T
                d2 = _seg_d2(X, Y, _col(ax), _col(ay), _col(bx), _col(by))
                mask = (d2 <= (0.65 * s) ** 2) & on[:, None, None]
                _Layer(img, np.ones(len(idx), bool)).paint(mask, self.col['clip'])
        sel = self.fat[idx] > 0.02
        if sel.any():
            ii = idx[sel]
            c = self.neck + self.duct_dir * 2.5 * s
            cx, cy = self._frame_xy(np.repeat(c[None], len(ii), 0), ii)
            f = _col(np.sqrt(self.fat[ii]))
            da = np.arctan2(self.duct_dir[1], self.duct_dir[0])
            r2 = _ellipse_r2(X, Y, cx, cy, 7.5 * s * f, 5.5 * s * f,
                             np.float32(np.cos(da)), np.float32(np.sin(da)))
            alpha = np.clip((1.0 - r2) * 3.0, 0.0, 0.95)
            lay = _Layer(img, sel)
            lay.paint(r2 < 1.0, self.col['fat'], shade=1.05 - 0.15 * r2, alpha=alpha)
            lay.done()

    def _draw_tools(self, img, idx):
        masks = np.zeros((len(idx), self.h, self.w), np.uint8)
        for k in _DRAW_ORDER:
            sel = self.sched[idx, k]
            if not sel.any():
                continue
            ii = idx[sel]
            lay = _Layer(img, sel)
            if k == BAG:
                mask = self._paint_bag(lay, ii)
            else:
                mask = self._paint_instrument(lay, k, ii)
            lay.done()
            masks[sel] |= mask.astype(np.uint8) << k
        return masks

    def _paint_instrument(self, lay, k, ii):
        """Paints instrument k in frames ii; returns its mask."""
        s, X, Y, col = self.s, self.X, self.Y, self.col
        tx, ty = self._frame_xy(self.tips[k][ii], ii)
        px, py = self._frame_xy(np.repeat(self.port[k][None], len(ii), 0), ii)
        ln = np.sqrt((px - tx) ** 2 + (py - ty) ** 2) + 1e-6
        ux, uy = (px - tx) / ln, (py - ty) / ln          # tip -> port
        nx, ny = -uy, ux
        op = _col(self.opening[k][ii])
        total = np.zeros(X.shape[1:], bool)[None]

        def capsule(a, b, hw, colour, shaded=True):
            nonlocal total
            d2 = _seg_d2(X, Y, a[0], a[1], b[0], b[1])
            mask = d2 <= hw * hw
            lay.paint(mask, colour, shade=(1.1 - 0.45 * d2 / (hw * hw)) if shaded else None)
            total = total | mask

        def at(along, across=0.0):
            return (tx + ux * along * s + nx * across * s, ty + uy * along * s + ny * across * s)

        port = (px, py)
        if k == GRASPER:
            capsule(at(4.0), port, 1.7 * s, col['grasper'])
            for side in (-1, 1):
                capsule(at(4.5), at(0.0, side * (0.6 + 1.8 * op)), 0.9 * s, col['grasper_jaw'])
        elif k == BIPOLAR:
            capsule(at(5.0), port, 1.7 * s, col['bipolar'])
            for side in (-1, 1):
                off = side * 1.2 * (0.7 + 0.5 * op)
                capsule(at(5.5, off), at(0.0, off), 0.75 * s, col['bipolar_tip'], shaded=False)
        elif k == HOOK:
            capsule(at(5.0), port, 1.4 * s, col['hook'])
            capsule(at(5.5), at(0.0), 0.8 * s, col['hook_tip'])
            capsule(at(0.0), at(0.8, 3.5), 0.8 * s, col['hook_tip'])
        elif k == SCISSORS:
            capsule(at(7.0), port, 1.7 * s, col['scissors'])
            spread = 1.2 + 1.6 * op
            for side in (-1, 1):
                capsule(at(7.0, side * spread), at(0.0, -side * spread), 0.8 * s,
                        col['scissors_tip'])
        elif k == CLIPPER:
            capsule(at(5.0), port, 1.9 * s, col['clipper'])
            cx, cy = at(2.2)
            dx, dy = X - cx, Y - cy
            d = np.sqrt(dx * dx + dy * dy) + 1e-6
            front = -(dx * ux + dy * uy) / d                # cos of angle to the tip direction
            gap = np.cos(np.deg2rad(35 + 25 * op))
            mask = (np.abs(d - 2.4 * s) <= 0.8 * s) & (front < gap)
            lay.paint(mask, col['clipper_tip'])
            total = total | mask
        elif k == IRRIGATOR:
            capsule(at(0.0), port, 2.6 * s, col['irrigator'])
            capsule(at(2.5), at(4.5), 2.7 * s, col['irrigator_band'], shaded=False)
        return total

    def _paint_bag(self, lay, ii):
        s, X, Y = self.s, self.X, self.Y
        cx, cy = self._frame_xy(self.bag_pos[ii], ii)
        sc = _col(self.bag_scale[ii])
        opened = _col(self.bag_open[ii].astype(np.float32))
        ra = sc * s * (6.5 + 1.8 * opened)
        rb = sc * s * (6.5 - 0.8 * opened)
        r2 = _ellipse_r2(X, Y, cx, cy, ra, rb, np.float32(1.0), np.float32(0.0))
        body = r2 <= 1.0
        lay.paint(body, self.col['bag'], shade=1.1 - 0.2 * r2, alpha=0.72)
        # open bag: a dark rim across the top; closed bag: a neck and knot towards the grasper
        rim = body & (np.abs(Y - (cy - 0.55 * rb)) <= 0.9 * s) & (opened > 0.5)
        dx, dy = _col(self.bag_dir[ii, 0]), _col(self.bag_dir[ii, 1])
        kx, ky = cx + dx * (rb + 1.2 * s), cy + dy * (rb + 1.2 * s)
        neck = (_seg_d2(X, Y, cx + dx * 0.6 * rb, cy + dy * 0.6 * rb, kx, ky) <= (1.1 * s) ** 2)
        knot = ((X - kx) ** 2 + (Y - ky) ** 2 <= (1.6 * s) ** 2) | neck
        knot &= opened < 0.5
        lay.paint(rim | knot, self.col['bag_rim'])
        return body | knot

    def _draw_smoke(self, img, idx):
        sel = self.smoke[idx] > 0
        if not sel.any():
            return
        sub = img[sel]
        blurred = np.stack([_box_blur(f, max(1, int(round(self.s)))) for f in sub])
        a = self.smoke[idx][sel].astype(np.float32)[:, None, None, None]
        img[sel] = blurred * (1 - a) + np.asarray(_SMOKE, np.float32) * a

    def _finish(self, img, idx):
        gain = (self.gain[None, :] * self.light[idx, None]).astype(np.float32)
        img *= self.vignette[None, :, :, None]
        img *= gain[:, None, None, :]
        img += self.rng.standard_normal(img.shape, dtype=np.float32) * np.float32(self.noise)
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# public API

def make_video(rng, n_frames, height=48, width=48):
    """-> dict(video=uint8 (T,H,W,3), phase=int64 (T,), tools=uint8 (T,H,W), presence=bool (T,7))

    rng is a numpy.random.Generator; everything random in the video comes from it."""
    return _Procedure(rng, n_frames, height, width).render()


def _dataset_video(i, seed, min_frames, max_frames, height, width):
    rng = np.random.default_rng([seed, i])
    n_frames = int(rng.integers(min_frames, max_frames + 1))
    return make_video(rng, n_frames, height, width)


def make_dataset(n_videos, seed, min_frames=300, max_frames=2000, height=48, width=48):
    """-> list of dicts as make_video; video i drawn with np.random.default_rng([seed, i]) (its
    length too), so it is deterministic and video i does not depend on n_videos."""
    return [_dataset_video(i, seed, min_frames, max_frames, height, width)
            for i in range(n_videos)]


# ----------------------------------------------------------------------------------------------
# preview and command line

_TINT = np.array([(255, 60, 60), (60, 120, 255), (255, 230, 0), (0, 220, 100), (230, 0, 230),
                  (0, 230, 230), (255, 140, 0)], np.float32)
_PHASE_RGB = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
              (213, 94, 0), (204, 121, 167)]


def save_preview(sample, path, per_phase=4, zoom=2):
    """PNG: per phase a row of sampled frames (raw | tool-mask tint), then the phase timeline
    and a tool-presence raster."""
    from PIL import Image, ImageDraw

    video, phase, masks, presence = (sample['video'], sample['phase'], sample['tools'],
                                     sample['presence'])
    n, h, w = phase.shape[0], video.shape[1], video.shape[2]
    th, tw, gap, label_w = h * zoom, w * zoom, 4, 190
    width = label_w + per_phase * (2 * tw + 3 * gap)
    height = len(PHASES) * (th + gap) + 14 + 7 * 5 + 40
    canvas = Image.new('RGB', (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    for p, name in enumerate(PHASES):
        frames = np.nonzero(phase == p)[0]
        y = p * (th + gap)
        draw.text((4, y + th // 2 - 6), f'{p} {name}', fill=_PHASE_RGB[p])
        picks = frames[np.linspace(0, len(frames) - 1, per_phase).round().astype(int)]
        for j, t in enumerate(picks):
            raw = video[t].astype(np.float32)
            tint = raw.copy()
            for k in range(len(TOOLS)):
                on = ((masks[t] >> k) & 1).astype(bool)
                tint[on] = 0.45 * tint[on] + 0.55 * _TINT[k]
            x = label_w + j * (2 * tw + 3 * gap)
            for dx, im in ((0, raw), (tw + gap, tint)):
                tile = Image.fromarray(im.astype(np.uint8)).resize((tw, th), Image.NEAREST)
                canvas.paste(tile, (x + dx, y))
            draw.text((x + 2, y + 1), str(t), fill=(255, 255, 255))
    y0 = len(PHASES) * (th + gap) + 4
    cols = ((np.arange(width) / width) * n).astype(int)
    bar = np.array(_PHASE_RGB, np.uint8)[phase[cols]]
    canvas.paste(Image.fromarray(np.repeat(bar[None], 12, 0)), (0, y0))
    raster = np.full((7 * 5, width, 3), 24, np.uint8)
    for k in range(len(TOOLS)):
        raster[k * 5:k * 5 + 4][:, presence[cols, k]] = _TINT[k].astype(np.uint8)
    canvas.paste(Image.fromarray(raster), (0, y0 + 14))
    x = 4
    for k, name in enumerate(TOOLS):
        draw.text((x, y0 + 14 + 7 * 5 + 4), name, fill=tuple(int(c) for c in _TINT[k]))
        x += 8 * len(name) + 10
    canvas.save(path)


def _save_npz(sample, path):
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        np.savez_compressed(f, **sample)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--videos', type=int, default=2)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--min-frames', type=int, default=300)
    ap.add_argument('--max-frames', type=int, default=2000)
    ap.add_argument('--height', type=int, default=48)
    ap.add_argument('--width', type=int, default=48)
    ap.add_argument('--out', required=True)
    ap.add_argument('--preview', action='store_true', help='also write video_XXX.png')
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for i in range(args.videos):
        sample = _dataset_video(i, args.seed, args.min_frames, args.max_frames, args.height,
                                args.width)
        base = os.path.join(args.out, f'video_{i:03d}')
        _save_npz(sample, base + '.npz')
        if args.preview:
            save_preview(sample, base + '.png')
        edges = np.searchsorted(sample['phase'], np.arange(len(PHASES)))
        print(f'{base}.npz: {len(sample["phase"])} frames, phase starts {edges.tolist()}')


if __name__ == '__main__':
    main()
