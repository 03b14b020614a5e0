#!/usr/bin/python3
"""Writes matplotlib's colours for a set of float32 values, for tests/render_tests.c
(`stx_render_tests --colormaps FILE`) to compare with stx_colormap_rgb exactly.

usage: /usr/bin/python3 tools/colormap_oracle.py --out FILE

One line per (map, value): "<stx name> <float32 bits, hex> <r> <g> <b>", the colour being
matplotlib's cmap(np.float32(v), bytes=True)[:3]; a NaN value is expected as black (matplotlib's
"bad" colour is transparent black (0, 0, 0, 0)). Values: 0, 0.1, ..., 1; every k / 256 and its
float32 neighbours (the bin edges of the lookup); the centre of every bin; 300 seeded uniform
values in [-0.2, 1.2]; and -0.0, 1 - 2^-24, 2, 1e30, +-inf, NaN. Needs Debian's
python3-matplotlib, hence /usr/bin/python3."""
import argparse
import os

import numpy as np
from matplotlib import colormaps

MAPS = [("jet", "jet"), ("turbo", "turbo"), ("inferno", "inferno"), ("viridis", "viridis"),
        ("diverging", "bwr")]


def values():
    v = [np.float32(k) / np.float32(10) for k in range(11)]
    for k in range(257):
        e = np.float32(k) / np.float32(256)
        v += [e, np.nextafter(e, np.float32(-1)), np.nextafter(e, np.float32(2))]
    v += [(np.float32(k) + np.float32(0.5)) / np.float32(256) for k in range(256)]
    rng = np.random.default_rng(20240611)
    v += list(rng.uniform(-0.2, 1.2, 300).astype(np.float32))
    v += [np.float32(-0.0), np.float32(1 - 2.0**-24), np.float32(2), np.float32(1e30),
          np.float32(np.inf), np.float32(-np.inf), np.float32(np.nan)]
    return np.array(v, dtype=np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    v = values()
    bits = v.view(np.uint32)
    lines = []
    for name, mpl in MAPS:
        rgb = colormaps[mpl](v, bytes=True)[:, :3]
        rgb[np.isnan(v)] = 0
        for b, c in zip(bits, rgb):
            lines.append("%s %08x %d %d %d" % (name, b, c[0], c[1], c[2]))
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, a.out)
    print(f"{a.out}: {len(lines)} colours from matplotlib")


if __name__ == "__main__":
    main()
