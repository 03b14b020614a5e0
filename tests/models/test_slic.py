#!/usr/bin/python3
"""3-D SLIC supervoxels (`stx explain --segments slic`) against scikit-image.

The oracle is skimage.segmentation.slic (Debian's python3-skimage, 0.19) with REVEX's settings
(Xavi3398/revex_framework SlicSegmenter: spacing [0.2, 1, 1], start_label 0) on the clip as
pixels (the model's normalisation undone), n_segments and compactness as given to stx.

stx's segmentation is read through the segment-level methods on a model linear in its input,
y = sum_v w_v x_v (random w, zero baseline): LOCO and UP give supervoxel k the value
sum_{v in k} w_v x_v, and Kernel SHAP with every coalition enumerated gives the same (the exact
Shapley values of a linear model). So the map must be constant over every skimage supervoxel
and equal that supervoxel's sum of contributions computed here; a supervoxel split or merged
differently breaks one or the other. Agreement is exact on these clips; it can only break where
a voxel is exactly as far from two seeds in exact arithmetic, where the last bit of the Lab
values (numpy's vectorised pow against glibc's) picks the winner (docs/perturbation.md).

  * zoo clips (16 x 64 x 64, the action models' normalisation in the metadata): default
    n_segments 200 and compactness 20, and other values; layout NTCHW; no normalisation
    metadata; a one-channel clip (no Lab conversion); odd sizes, a single frame, more segments
    than voxels
  * the same map with 1, 2 and 3 threads
  * Kernel SHAP (enumerated) and UP on slic supervoxels: the exact per-supervoxel contributions
  * LIME with slic supervoxels on the zoo's 3-D CNN points into the target's tube on held-out
    clips more often than a random point
  * errors: a regression with more than 4096 supervoxels, n_segments and compactness out of range
"""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'tools'))
sys.path.insert(0, os.path.join(ROOT, 'tools', 'zoo'))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import check, stx, work  # noqa: E402

ZOO = os.path.join(ROOT, 'models', 'zoo')
MEAN = np.array([0.369, 0.373, 0.362], np.float32)   # the zoo action models' stx.mean, stx.std
STD = np.array([0.158, 0.159, 0.16], np.float32)


def linear_model(path, w, layout, mean=None, std=None):
    """y = sum(w * x) as ONNX, with stx.layout (and stx.mean, stx.std when given)."""
    import onnx
    from onnx import TensorProto, helper
    shape = list(w.shape)
    nodes = [helper.make_node('Mul', ['x', 'w'], ['m']),
             helper.make_node('ReduceSum', ['m', 'axes'], ['s'], keepdims=0),
             helper.make_node('Unsqueeze', ['s', 'one'], ['y'])]
    g = helper.make_graph(nodes, 'linear',
                          [helper.make_tensor_value_info('x', TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 1])],
                          [helper.make_tensor('w', TensorProto.FLOAT, shape, w.ravel()),
                           helper.make_tensor('axes', TensorProto.INT64, [4], [1, 2, 3, 4]),
                           helper.make_tensor('one', TensorProto.INT64, [1], [1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid('', 17)])
    meta = {'stx.layout': layout}
    if mean is not None:
        meta['stx.mean'] = ','.join(repr(float(v)) for v in mean)
        meta['stx.std'] = ','.join(repr(float(v)) for v in std)
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(m, path)


def oracle_labels(pixels, n_segments, compactness):
    """skimage's slic as REVEX calls it; pixels (T, H, W, C) float64."""
    from skimage.segmentation import slic
    return slic(pixels, n_segments=n_segments, compactness=float(np.float32(compactness)),
                spacing=[0.2, 1, 1], start_label=0, channel_axis=-1)


class Case:
    """A clip (uint8 frames T, H, W, C), its model input and a linear model over it."""

    def __init__(self, frames, layout='NCTHW', normalised=True, seed=0):
        C = frames.shape[-1]
        self.layout = layout
        x = frames.astype(np.float32) / np.float32(255)
        if normalised:
            x = (x - MEAN[:C]) / STD[:C]
        # the pixels SLIC sees: the normalisation undone (for RGB), in float64
        self.pixels = x.astype(np.float64)
        if normalised and C == 3:
            self.pixels = self.pixels * STD.astype(np.float64) + MEAN.astype(np.float64)
        xin = np.moveaxis(x, -1, 0) if layout == 'NCTHW' else np.moveaxis(x, -1, 1)
        self.x = np.ascontiguousarray(xin[None], dtype=np.float32)
        self.w = np.random.default_rng(seed).normal(size=self.x.shape).astype(np.float32)
        # contribution of every voxel (colours summed), (T, H, W)
        self.contrib = (self.w[0] * self.x[0]).astype(np.float64).sum(0 if layout == 'NCTHW'
                                                                       else 1)
        self.model, self.input = work('lin_%d.onnx' % seed), work('lin_%d_x.npy' % seed)
        linear_model(self.model, self.w, layout, MEAN if normalised else None,
                     STD if normalised else None)
        np.save(self.input, self.x)

    def explain(self, method, n_segments, compactness, extra=(), env=None):
        out = work('slic_map.npy')
        stx(['explain', self.model, self.input, '--method', method, '--segments', 'slic',
             '--n-segments', str(n_segments), '--compactness', str(compactness), '--target', '0',
             '-o', out] + list(extra), env=env)
        return np.load(out)[0]


def compare(got, labels, contrib):
    """Whether got is constant on every supervoxel, its largest difference from the supervoxel
    sums of contrib relative to their largest magnitude, and the share of voxels within 1e-5 of
    them."""
    flat, lab = got.ravel(), labels.ravel()
    order = np.argsort(lab, kind='stable')
    bounds = np.flatnonzero(np.diff(lab[order])) + 1
    constant = all(np.ptp(g) == 0 for g in np.split(flat[order], bounds))
    sums = np.bincount(lab, weights=contrib.ravel())
    want = sums[labels]
    err = np.abs(got - want) / np.abs(want).max()
    return constant, float(err.max()), float((err <= 1e-5).mean())


def test_partition():
    clips = {name: np.load(os.path.join(ZOO, 'clips', name + '.npy'))
             for name in ('blink', 'appear', 'move_left')}
    rng = np.random.default_rng(7)
    from scipy import ndimage
    smooth = ndimage.gaussian_filter(rng.normal(size=(5, 23, 37, 3)), (1, 2, 3, 0))
    odd = ((smooth - smooth.min()) / np.ptp(smooth) * 255).astype(np.uint8)
    cases = [('blink', clips['blink'], 'NCTHW', True, 200, 20),
             ('appear', clips['appear'], 'NCTHW', True, 200, 20),
             ('move_left', clips['move_left'], 'NCTHW', True, 200, 20),
             ('blink', clips['blink'], 'NCTHW', True, 50, 1),
             ('appear', clips['appear'], 'NCTHW', True, 700, 5),
             ('move_left', clips['move_left'], 'NCTHW', True, 30, 0.1),
             ('appear NTCHW', clips['appear'], 'NTCHW', True, 60, 10),
             ('appear, no normalisation', clips['appear'], 'NCTHW', False, 60, 10),
             ('appear, one channel', clips['appear'][..., :1], 'NCTHW', False, 60, 10),
             ('smooth noise 5x23x37', odd, 'NCTHW', True, 40, 3),
             ('one frame 1x23x37', odd[:1], 'NCTHW', True, 25, 5),
             ('2x3x4, more segments than voxels', odd[:2, :3, :4], 'NCTHW', True, 100, 20)]
    for i, (what, frames, layout, normalised, n, c) in enumerate(cases):
        case = Case(frames, layout, normalised, seed=i)
        labels = oracle_labels(case.pixels, n, c)
        got = case.explain('loco', n, c)
        constant, r, share = compare(got, labels, case.contrib)
        check(constant and r <= 1e-5,
              'loco on slic supervoxels = skimage slic (%s, n_segments %d, compactness %g: %d '
              'supervoxels): constant on each %s, max rel diff %.1e, voxels agreeing %.4f' %
              (what, n, c, labels.max() + 1, constant, r, share))


def test_threads():
    case = Case(np.load(os.path.join(ZOO, 'clips', 'blink.npy')), seed=20)
    maps = [case.explain('loco', 200, 20, env={'STX_NUM_THREADS': t}) for t in ('1', '2', '3')]
    check(all(np.array_equal(m, maps[0]) for m in maps[1:]),
          'slic supervoxels with 1, 2 and 3 threads: the same map')


def test_methods():
    frames = np.load(os.path.join(ZOO, 'clips', 'appear.npy'))
    case = Case(frames, seed=30)
    n, c = 8, 20
    labels = oracle_labels(case.pixels, n, c)
    K = labels.max() + 1
    for method, extra in (('kernelshap', ['--samples', '2000']), ('up', [])):
        got = case.explain(method, n, c, extra)
        constant, r, _ = compare(got, labels, case.contrib)
        check(constant and r <= 1e-4,
              '%s on %d slic supervoxels%s: the exact contributions (constant %s, max rel diff '
              '%.1e)' % (method, K, ' (all %d coalitions)' % (2 ** K - 2)
                         if method == 'kernelshap' else '', constant, r))


def test_localisation():
    from test_cam import tube_hits
    n = 8
    frames, targets, mask, rand = harness.heldout(n)
    out = work('loc_lime_slic.npy')
    stx(['explain', os.path.join(ZOO, 'action_r3d.onnx'), frames, '--method', 'lime',
         '--segments', 'slic', '--samples', '120',
         '--target', targets, '-o', out])
    hit = tube_hits(np.load(out), mask)[0]
    check(hit > rand, 'lime on slic supervoxels (120 samples) on %d held-out clips, action_r3d: '
          'maximum within 4 px of the tube in %.2f of clips (a random point: %.2f)' %
          (n, hit, rand))


def test_errors():
    # 16 x 61 x 61 voxels for 4096 segments: seed step round(14.5^(1/3)) = 2, so 7200 seeds; a
    # compactness of 1e6 keeps them all as cubes
    frames = np.random.default_rng(1).integers(0, 256, (16, 61, 61, 3)).astype(np.uint8)
    case = Case(frames, seed=40)
    p = stx(['explain', case.model, case.input, '--method', 'lime', '--segments', 'slic',
             '--n-segments', '4096', '--compactness', '1e6', '--samples', '10', '-o',
             work('e.npy')], ok=False)
    line = p.stderr.strip()
    check(p.returncode != 0 and '4096' in line and 'slic' in line and len(line.splitlines()) == 1,
          'more than 4096 supervoxels for a regression: %s' % line)
    for flags, word in ((['--n-segments', '0'], '--n-segments'),
                        (['--n-segments', '5000'], '--n-segments'),
                        (['--compactness', '0'], '--compactness'),
                        (['--compactness', 'nan'], '--compactness'),
                        (['--segments', 'felzenszwalb'], '--segments')):
        p = stx(['explain', case.model, case.input, '--method', 'loco', '--segments', 'slic',
                 '-o', work('e.npy')] + flags, ok=False)
        line = p.stderr.strip()
        check(p.returncode != 0 and word in line and len(line.splitlines()) == 1,
              'error names %s: %s' % (word, line))


if __name__ == '__main__':
    harness.run([('partition', test_partition), ('threads', test_threads), ('methods', test_methods),
                 ('loc', test_localisation), ('errors', test_errors)])
