#!/usr/bin/python3
"""Makes the bundled demo video models/zoo/clips/blink.mp4 (the README's main command).

A `blink` clip of the zoo's synthetic action benchmark (tools/zoo/action_data.py), rendered at
128x128 (the generator scales its lengths with the frame size) from a seed no training set uses,
encoded by stx's own video writer (tools/npy2video.c, built as build/stx_npy2video):

    /usr/bin/python3 tools/make_demo_video.py --npy2video build/stx_npy2video

tests/cli/test_video.py regenerates the same frames with frames() below to compare the decoded
MP4, a PNG folder and .npy frames.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tools', 'zoo'))
SEED = 20261203   # not a training (1) or test (2) seed of the zoo
BLINK = 7


def frames():
    import action_data
    video, _, _ = action_data.make_clip(np.random.default_rng(SEED), BLINK, 16, 128, 128)
    return video


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--npy2video', required=True)
    ap.add_argument('--out', default=os.path.join(ROOT, 'models', 'zoo', 'clips', 'blink.mp4'))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, 'blink.npy')
        np.save(p, frames())
        subprocess.run([a.npy2video, p, a.out, '8'], check=True)
    print('wrote', a.out)


if __name__ == '__main__':
    main()
