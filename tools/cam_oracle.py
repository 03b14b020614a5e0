#!/usr/bin/python3
"""PyTorch oracle for stx's CAM family, written from docs/cam.md (and shared/docs/methods.md §1).

    /usr/bin/python3 tools/cam_oracle.py --model zoo:action_r3d --input X.npy --method gradcam \
        --layer layer4 -o OUT.npz

or, from Python (tools/ on sys.path):

    from cam_oracle import explain
    r = explain(model, x, 'layer4', 'gradcam')      # r['feature'] (N,T',H',W'), r['map'] (N,T,H,W)

How the oracle computes (everything the tests compare against):

- The target layer is a module path; a forward hook keeps that module's OUTPUT tensor A (and hands
  a clone downstream, so later in-place ops cannot change the kept values). G = dy/dA comes from
  torch.autograd.grad(sum_n y_n, A) (no backward hooks; samples are independent in eval mode, so
  the sum gives every sample its own gradient). The model runs in float32 (or float64 with
  double=True); A, G and everything after them are float64.
- y (per sample): out[n, c] (logit), or softmax(out, axis 1)[n, c] (prob, the softmax taken in
  float64 from the output); for per-frame outputs (N, K, T) at frame f, or summed over every
  frame when no frame is given. Default target: per sample the argmax over classes of the raw
  output (logits), at the chosen frame or summed over frames (what stx's backward seeds with;
  first index on ties), whatever the score kind.
- Activations are folded to N, K, T', H', W' (docs/cam.md "Layers"): 5-D as is; 4-D frame-batched
  (N*T, C, h, w) -> (N, C, T, h, w); tokens (N, 1+P, D) (class token dropped), (N, P, D),
  (N, T', H'W', D) -> (N, D, T', H', W') with token order t, then h, then w; and two extensions
  for the phase models: layout NCT, 3-D (N, C, T') -> (N, C, T', 1, 1); layout NCHW (single
  frames): the input counts as T = 1. A 4-D tensor is read as tokens when a token grid is known
  and its shape is (N, T', H'W', D), else as frame-batched.
- Maps: docs/cam.md's table, term for term (gradient_map, gradpp_weights, eigen_map and the
  score / ablation branches of explain); no eps anywhere except xgradcam's 1e-7. Eigen-CAM uses
  an exact eigendecomposition (stx: power iteration; same result once converged). Ablation
  zeroes channel k at every position of the folded A (a class token is not part of A and is
  left alone).
- Conditioning: hirescam at a layer whose output goes straight into a LayerNorm (e.g. the last
  transformer block before the final norm) is identically 0 in exact arithmetic (the LayerNorm
  gradient is orthogonal to both 1 and the centred input, so sum_k G_k A_k = 0 per token): such
  maps are rounding noise and cannot be compared relatively.
- Upsampling: trilinear = F.interpolate(mode='trilinear', align_corners=False) in float64;
  nearest: source index floor(d * in / out) in exact integer arithmetic (the same as
  F.interpolate(mode='nearest') for the sizes checked); none: map = feature.
- Masked inputs (scorecam, sscam, iscam): the mask (float64) is rounded to the model's dtype and
  multiplies x (already normalised), broadcast over the colour axis (axis 1 for NCTHW / NCHW /
  NCT, axis 2 for NTCHW). Masks per sample n multiply x[n] only.

Noise (given to reproduce stx's own draws; all values in final units, i.e. already times sigma):
- smooth-gradcam++: noise_tensors = n arrays shaped like x (or one array (n, *x.shape)); noisy
  pass i feeds x + noise[i] (added in the model's dtype).
- sscam: one array (K, n, T, H, W): noise[k, i] is delta_i added to the upsampled mask M_k (the
  same for every sample of the batch), or (N, K, n, T, H, W) per sample, or (n, T, H, W) shared by
  all channels and samples. T, H, W are the input's.
Given noise_tensors, n is their count (samples is ignored) and sigma is not used. Without them
the noise is drawn from torch.Generator().manual_seed(seed) (normal, times sigma; for sscam in
chunk order, so it depends on batch) and, for smooth-gradcam++, returned in result['noise'].
"""

import argparse
import copy
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

METHODS = ('cam', 'gradcam', 'gradcam-frame', 'gradcam++', 'smooth-gradcam++', 'xgradcam',
           'layercam', 'hirescam', 'scorecam', 'sscam', 'iscam', 'eigencam', 'ablationcam')
GRADIENT_METHODS = ('cam', 'gradcam', 'gradcam-frame', 'gradcam++', 'smooth-gradcam++',
                    'xgradcam', 'layercam', 'hirescam')
DEFAULT_SAMPLES = {'smooth-gradcam++': 4, 'sscam': 35, 'iscam': 10}
DEFAULT_NOISE = {'smooth-gradcam++': 0.3, 'sscam': 2.0}


# ----------------------------------------------------------------------------------------------
# Input geometry
# ----------------------------------------------------------------------------------------------

def input_thw(shape, layout):
    """The input's (T, H, W) for a layout."""
    if layout == 'NCTHW':
        return shape[2], shape[3], shape[4]
    if layout == 'NTCHW':
        return shape[1], shape[3], shape[4]
    if layout == 'NCHW':
        return 1, shape[2], shape[3]
    if layout == 'NCT':
        return shape[2], 1, 1
    raise ValueError('unknown layout %r' % layout)


def mask_input(x, m, layout):
    """x (B, ...) times masks m (B, T, H, W) broadcast over the colour axis."""
    if layout == 'NCTHW':
        return x * m[:, None]
    if layout == 'NTCHW':
        return x * m[:, :, None]
    if layout == 'NCHW':
        return x * m[:, None, 0]
    if layout == 'NCT':
        return x * m[:, None, :, 0, 0]
    raise ValueError('unknown layout %r' % layout)


# ----------------------------------------------------------------------------------------------
# Activation folding
# ----------------------------------------------------------------------------------------------

class Folding:
    """How a layer's raw output maps to N, K, T', H', W' (and back, for ablation masks)."""

    def __init__(self, raw_shape, n, layout, token_grid):
        s = tuple(raw_shape)
        self.raw_tail = s[1:]
        self.grid = tuple(token_grid) if token_grid is not None else None
        if len(s) == 5:
            self.kind = '5d'
            if s[0] != n:
                raise ValueError('5-D activation %s for a batch of %d' % (s, n))
        elif len(s) == 4:
            g = self.grid
            if g is not None and s[0] == n and s[1] == g[0] and s[2] == g[1] * g[2]:
                self.kind = 'tokens4'
            elif s[0] % n == 0:
                self.kind = 'frames'
                self.t = s[0] // n
            else:
                raise ValueError('4-D activation %s: not N*T frames for N = %d' % (s, n))
        elif len(s) == 3:
            if s[0] != n:
                raise ValueError('3-D activation %s for a batch of %d' % (s, n))
            if layout == 'NCT':
                self.kind = 'nct'
            else:
                if self.grid is None:
                    raise ValueError('token tensor %s: give token_grid=(T,H,W)' % (s,))
                p = int(np.prod(self.grid))
                if s[1] == p + 1:
                    self.kind = 'tokens_cls'
                elif s[1] == p:
                    self.kind = 'tokens'
                else:
                    raise ValueError('token tensor %s does not fit the grid %s (%d or %d tokens)'
                                     % (s, self.grid, p, p + 1))
        else:
            raise ValueError('cannot fold a %d-D activation %s' % (len(s), s))

    def fold(self, a, n):
        k = self.kind
        if k == '5d':
            return a
        if k == 'frames':
            return a.reshape(n, self.t, *a.shape[1:]).permute(0, 2, 1, 3, 4)
        if k == 'nct':
            return a[:, :, :, None, None]
        if k == 'tokens_cls':
            a = a[:, 1:]
        tg, hg, wg = self.grid
        return a.reshape(n, tg, hg, wg, a.shape[-1]).permute(0, 4, 1, 2, 3)

    def unfold_keep(self, keep, n):
        """A boolean (n, K, T', H', W') keep-mask -> the raw layer shape (class token kept)."""
        k = self.kind
        if k == '5d':
            return keep
        if k == 'frames':
            return keep.permute(0, 2, 1, 3, 4).reshape(n * self.t, *keep.shape[1:2],
                                                       *keep.shape[3:])
        if k == 'nct':
            return keep[:, :, :, 0, 0]
        tok = keep.permute(0, 2, 3, 4, 1).reshape(n, -1, keep.shape[1])
        if k == 'tokens4':
            return tok.reshape(n, self.grid[0], -1, keep.shape[1])
        if k == 'tokens_cls':
            cls = torch.ones(n, 1, keep.shape[1], dtype=torch.bool)
            return torch.cat([cls, tok], dim=1)
        return tok


# ----------------------------------------------------------------------------------------------
# Model plumbing
# ----------------------------------------------------------------------------------------------

class Tap:
    """Forward hook on the target module: keeps its output (handing a clone downstream) and can
    edit it (ablation)."""

    def __init__(self, module):
        self.outputs = []
        self.keep = True
        self.edit = None
        self.handle = module.register_forward_hook(self.hook)

    def hook(self, module, inputs, out):
        if not torch.is_tensor(out):
            raise ValueError('the target layer returns %s, not a tensor' % type(out).__name__)
        if self.edit is not None:
            return self.edit(out)
        if self.keep:
            self.outputs.append(out)
        return out.clone()

    def take(self):
        outs, self.outputs = self.outputs, []
        if len(outs) != 1:
            raise ValueError('the target layer ran %d times in one forward pass' % len(outs))
        return outs[0]

    def remove(self):
        self.handle.remove()


def select_output(out, output_index):
    if isinstance(out, (tuple, list)):
        out = out[output_index]
    return out


def per_sample(v, n, what):
    """None, an int or a sequence of n entries -> list of n."""
    if v is None or np.isscalar(v) or (torch.is_tensor(v) and v.dim() == 0):
        return [None if v is None else int(v)] * n
    v = [None if e is None else int(e) for e in v]
    if len(v) == 1:
        return v * n
    if len(v) != n:
        raise ValueError('%d %s for %d samples' % (len(v), what, n))
    return v


def pick_targets(out, frames):
    """Argmax over classes of the raw output at each sample's frame (or summed over frames)."""
    o = out.detach().double()
    o = o.reshape(o.shape[0], o.shape[1], -1)
    t = []
    for i in range(o.shape[0]):
        if frames[i] is not None and not 0 <= frames[i] < o.shape[2]:
            raise ValueError('frame %d out of range (the output has %d)' % (frames[i], o.shape[2]))
        s = o[i].sum(-1) if frames[i] is None else o[i, :, frames[i]]
        t.append(int(torch.argmax(s)))
    return t


def scores_of(out, targets, frames, score):
    """y per sample (float64, differentiable). out (B, K[, T...]); targets/frames lists of B."""
    o = out.double()
    o = o.reshape(o.shape[0], o.shape[1], -1)
    if score == 'prob':
        o = torch.softmax(o, dim=1)
    elif score != 'logit':
        raise ValueError('score must be logit or prob')
    ys = []
    for i in range(o.shape[0]):
        if frames[i] is None:
            ys.append(o[i, targets[i]].sum())
        else:
            if o.shape[2] == 1 and frames[i] > 0:
                raise ValueError('frame %d given but the output has no frames' % frames[i])
            ys.append(o[i, targets[i], frames[i]])
    return torch.stack(ys)


def infer_token_grid(model, x_shape, layout):
    meta = getattr(model, 'stx_meta', None) or {}
    if 'stx.token_grid' in meta:
        return tuple(int(v) for v in meta['stx.token_grid'].lower().split('x'))
    grid = getattr(model, 'grid', None)
    if isinstance(grid, (tuple, list)) and len(grid) == 3:
        return tuple(int(v) for v in grid)
    embed = getattr(model, 'embed', None)
    if isinstance(embed, torch.nn.Conv3d):
        t, h, w = input_thw(x_shape, layout)
        st, sh, sw = embed.stride
        return t // st, h // sh, w // sw
    return None


# ----------------------------------------------------------------------------------------------
# Upsampling
# ----------------------------------------------------------------------------------------------

def nearest_index(n_out, n_in):
    return (torch.arange(n_out, dtype=torch.int64) * n_in) // n_out


def upsample_map(L, size, mode):
    """L (N, T', H', W') float64 -> (N, T, H, W)."""
    if mode == 'none':
        return L
    if mode == 'trilinear':
        return F.interpolate(L[:, None], size=tuple(size), mode='trilinear',
                             align_corners=False)[:, 0]
    if mode == 'nearest':
        it = nearest_index(size[0], L.shape[1])
        ih = nearest_index(size[1], L.shape[2])
        iw = nearest_index(size[2], L.shape[3])
        return L[:, it][:, :, ih][:, :, :, iw]
    raise ValueError('upsample must be trilinear, nearest or none')


def minmax_channels(a):
    """Per-channel min-max over positions of a (K, T', H', W'); constant channels give 0."""
    flat = a.reshape(a.shape[0], -1)
    lo = flat.min(dim=1).values
    hi = flat.max(dim=1).values
    span = hi - lo
    out = torch.zeros_like(flat)
    ok = span > 0
    out[ok] = (flat[ok] - lo[ok, None]) / span[ok, None]
    return out.reshape(a.shape)


# ----------------------------------------------------------------------------------------------
# The methods (per sample, float64; A and G are (K, T', H', W'))
# ----------------------------------------------------------------------------------------------

def _wsum(w, A):
    return (w[:, None, None, None] * A).sum(0)


def gradpp_weights(A, D1, D2, D3):
    """Grad-CAM++ paper weights from the first three (averaged) derivative terms."""
    S = A.sum(dim=(1, 2, 3))[:, None, None, None]
    den = 2 * D2 + S * D3
    ok = (D2 != 0) & (den != 0)
    alpha = torch.zeros_like(D2)
    alpha[ok] = D2[ok] / den[ok]
    return (alpha * torch.relu(D1)).sum(dim=(1, 2, 3))


def gradient_map(method, A, G):
    """(L, weights) for the single-pass gradient methods."""
    if method == 'cam':
        w = G.sum(dim=(1, 2, 3))
        return _wsum(w, A), w
    if method == 'gradcam':
        w = G.mean(dim=(1, 2, 3))
        return torch.relu(_wsum(w, A)), w
    if method == 'gradcam-frame':
        w = G.mean(dim=(2, 3))                                   # K, T'
        return torch.relu((w[:, :, None, None] * A).sum(0)), w
    if method == 'gradcam++':
        w = gradpp_weights(A, G, G * G, G * G * G)
        return torch.relu(_wsum(w, A)), w
    if method == 'xgradcam':
        w = (A * G).sum(dim=(1, 2, 3)) / (A.sum(dim=(1, 2, 3)) + 1e-7)
        return torch.relu(_wsum(w, A)), w
    if method == 'layercam':
        return torch.relu((torch.relu(G) * A).sum(0)), None
    if method == 'hirescam':
        return torch.relu((G * A).sum(0)), None
    raise ValueError(method)


def eigen_map(A):
    """Eigen-CAM of one sample: centred P x K rows projected on the leading right singular
    vector (exact symmetric eigendecomposition of the K x K Gram matrix), sign flipped when
    |min| > |max|, then relu. Returns (L, v, eigenvalues descending)."""
    K = A.shape[0]
    X = A.reshape(K, -1).T                                       # P x K
    Xc = X - X.mean(dim=0, keepdim=True)
    gram = Xc.T @ Xc
    evals, evecs = torch.linalg.eigh(gram)
    v = evecs[:, -1]
    L = Xc @ v
    if L.min().abs() > L.max().abs():
        L = -L
        v = -v
    return torch.relu(L).reshape(A.shape[1:]), v, evals.flip(0)


# ----------------------------------------------------------------------------------------------
# explain()
# ----------------------------------------------------------------------------------------------

def explain(model, x, layer, method, targets=None, frame=None, score='logit',
            upsample='trilinear', token_grid=None, layout='NCTHW', samples=None, noise=None,
            noise_tensors=None, batch=32, output_index=None, seed=0, double=False,
            keep_tensors=False):
    """Explain every sample of x (the model's normalised input, N first) at module path `layer`.

    Returns a dict of numpy arrays: 'feature' (N, T', H', W') float64, 'map' (N, T, H, W)
    float64 (upsample='none': the feature map), 'targets' (N,) int64, and where they exist
    'weights' (N, K) channel weights ((N, K, T') for gradcam-frame), 'scores' (N, K) the s_k
    of the score methods, 'baseline' (N,) y(x), 'ablated' (N, K) the y_k of ablationcam,
    'eigenvalues' (N, K) of eigencam's Gram matrix (descending), 'noise' (smooth-gradcam++
    noise drawn here); with keep_tensors also 'activation' (N, K, T', H', W') and, for the
    single-pass gradient methods, 'gradient' (the same shape), both float64."""
    if method not in METHODS:
        raise ValueError('unknown method %r (known: %s)' % (method, ', '.join(METHODS)))
    if double:
        model = copy.deepcopy(model).double()
    dtype = torch.float64 if double else torch.float32
    model.eval()
    xt = (x if torch.is_tensor(x) else torch.from_numpy(np.array(x))).to(dtype)
    N = xt.shape[0]
    size = input_thw(tuple(xt.shape), layout)
    if output_index is None:
        output_index = getattr(model, 'stx_output_index', 0)
    if token_grid is None:
        token_grid = infer_token_grid(model, tuple(xt.shape), layout)
    frames = per_sample(frame, N, 'frames')
    module = model.get_submodule(layer) if layer else model
    tap = Tap(module)
    res = {}
    try:
        need_grad = method in GRADIENT_METHODS
        with torch.set_grad_enabled(need_grad):
            out = select_output(model(xt), output_index)
        raw = tap.take()
        tgt = pick_targets(out, frames) if targets is None else per_sample(targets, N, 'targets')
        y = scores_of(out, tgt, frames, score)
        folding = Folding(raw.shape, N, layout, token_grid)
        A = folding.fold(raw.detach(), N).double()               # N, K, T', H', W'
        K = A.shape[1]
        res['baseline'] = y.detach().numpy()
        if keep_tensors:
            res['activation'] = A.numpy()

        def grads_at(inp):
            """(A, G) folded, float64, for input inp (targets fixed)."""
            with torch.enable_grad():
                o = select_output(model(inp), output_index)
                r = tap.take()
                yy = scores_of(o, tgt, frames, score)
                g, = torch.autograd.grad(yy.sum(), r)
            return folding.fold(r.detach(), N).double(), folding.fold(g, N).double()

        def forward_scores(inp, tg, fr):
            tap.keep = False
            try:
                with torch.no_grad():
                    o = select_output(model(inp), output_index)
                return scores_of(o, tg, fr, score).double()
            finally:
                tap.keep = True

        Ls = []
        if method in GRADIENT_METHODS and method != 'smooth-gradcam++':
            g, = torch.autograd.grad(y.sum(), raw)
            G = folding.fold(g, N).double()
            if keep_tensors:
                res['gradient'] = G.numpy()
            ws = []
            for n in range(N):
                L, w = gradient_map(method, A[n], G[n])
                Ls.append(L)
                ws.append(w)
            if ws[0] is not None:
                res['weights'] = torch.stack(ws).numpy()
        elif method == 'smooth-gradcam++':
            n_s = samples if samples is not None else DEFAULT_SAMPLES[method]
            sigma = noise if noise is not None else DEFAULT_NOISE[method]
            if noise_tensors is not None:
                eps = noise_tensors
                if not isinstance(eps, (list, tuple)):
                    eps = [eps[i] for i in range(len(eps))]
                n_s = len(eps)
            else:
                gen = torch.Generator().manual_seed(seed)
                eps = [sigma * torch.randn(tuple(xt.shape), generator=gen, dtype=torch.float64)
                       for _ in range(n_s)]
                res['noise'] = np.stack([e.to(dtype).numpy() for e in eps])
            D1 = torch.zeros_like(A)
            D2 = torch.zeros_like(A)
            D3 = torch.zeros_like(A)
            for e in eps:
                e = (e if torch.is_tensor(e) else torch.from_numpy(np.array(e))).to(dtype)
                if tuple(e.shape) != tuple(xt.shape):
                    raise ValueError('noise tensor %s, input %s' % (tuple(e.shape),
                                                                   tuple(xt.shape)))
                _, Gi = grads_at(xt + e)
                D1 += Gi
                D2 += Gi * Gi
                D3 += Gi * Gi * Gi
            D1 /= n_s
            D2 /= n_s
            D3 /= n_s
            ws = []
            for n in range(N):
                w = gradpp_weights(A[n], D1[n], D2[n], D3[n])
                ws.append(w)
                Ls.append(torch.relu(_wsum(w, A[n])))
            res['weights'] = torch.stack(ws).numpy()
        elif method in ('scorecam', 'sscam', 'iscam'):
            n_s = samples if samples is not None else DEFAULT_SAMPLES.get(method, 1)
            sigma = noise if noise is not None else DEFAULT_NOISE.get(method, 0.0)
            gen = torch.Generator().manual_seed(seed)
            delta = None
            if method == 'sscam' and noise_tensors is not None:
                delta = noise_tensors
                if isinstance(delta, (list, tuple)):
                    delta = np.stack([np.asarray(d) for d in delta])
                if delta.ndim == 4:
                    n_s = delta.shape[0]
                elif delta.ndim == 5:
                    n_s = delta.shape[1]
                elif delta.ndim == 6:
                    n_s = delta.shape[2]
                else:
                    raise ValueError('sscam noise: (K,n,T,H,W), (N,K,n,T,H,W) or (n,T,H,W)')
            if method == 'iscam':
                betas = np.cumsum(np.arange(1, n_s + 1, dtype=np.float64) / n_s)
            scores = torch.zeros(N, K, dtype=torch.float64)
            for n in range(N):
                mm = minmax_channels(A[n])                       # K, T', H', W'
                for k0 in range(0, K, batch):
                    ks = list(range(k0, min(K, k0 + batch)))
                    M = upsample_map(mm[ks], size, 'trilinear')  # U(mm(A_k)), float64
                    acc = torch.zeros(len(ks), dtype=torch.float64)
                    passes = 1 if method == 'scorecam' else n_s
                    for i in range(passes):
                        m = M
                        if method == 'sscam':
                            m = m + sscam_delta(delta, n, ks, i, m.shape, sigma, gen)
                        elif method == 'iscam':
                            m = betas[i] * m
                        inp = mask_input(xt[n:n + 1].expand(len(ks), *xt.shape[1:]),
                                         m.to(dtype), layout)
                        acc += forward_scores(inp, [tgt[n]] * len(ks), [frames[n]] * len(ks))
                    scores[n, ks] = acc / passes
            w = torch.softmax(scores - y.detach()[:, None], dim=1)
            for n in range(N):
                Ls.append(torch.relu(_wsum(w[n], A[n])))
            res['scores'] = scores.numpy()
            res['weights'] = w.numpy()
        elif method == 'eigencam':
            ev = []
            for n in range(N):
                L, v, e = eigen_map(A[n])
                Ls.append(L)
                ev.append(e)
            res['eigenvalues'] = torch.stack(ev).numpy()
        elif method == 'ablationcam':
            yk = torch.zeros(N, K, dtype=torch.float64)
            fshape = tuple(A.shape[1:])
            for k0 in range(0, K, batch):
                ks = list(range(k0, min(K, k0 + batch)))
                B = len(ks)
                keep = torch.ones((B * N,) + fshape, dtype=torch.bool)
                for j, k in enumerate(ks):
                    keep[j * N:(j + 1) * N, k] = False
                raw_keep = folding.unfold_keep(keep, B * N)
                tap.edit = lambda o, rk=raw_keep: o.masked_fill(~rk, 0)
                try:
                    inp = xt.repeat(B, *([1] * (xt.dim() - 1)))
                    s = forward_scores(inp, tgt * B, frames * B)
                finally:
                    tap.edit = None
                yk[:, ks] = s.reshape(B, N).T
            yd = y.detach()
            w = (yd[:, None] - yk) / yd[:, None]
            for n in range(N):
                Ls.append(torch.relu(_wsum(w[n], A[n])))
            res['ablated'] = yk.numpy()
            res['weights'] = w.numpy()
    finally:
        tap.remove()
    feat = torch.stack(Ls)                                       # N, T', H', W'
    res['feature'] = feat.numpy()
    res['map'] = upsample_map(feat, size, upsample).numpy()
    res['targets'] = np.asarray(tgt, np.int64)
    return res


def explain_many(model, x, layer, methods, upsample='trilinear', layout='NCTHW',
                 per_method=None, **kw):
    """explain() for each of `methods`: a dict method -> the result explain() returns for it.
    The single-pass gradient methods (GRADIENT_METHODS but smooth-gradcam++) all read the same
    A and G, so one forward and backward pass (explain with keep_tensors) serves every one of
    them, through the same gradient_map and upsample_map as explain(); every other method runs
    explain() on its own. per_method: method -> extra keyword arguments (samples, noise, ...);
    kw: the arguments common to every method (targets, frame, score, token_grid, ...)."""
    per_method = per_method or {}
    single = [m for m in methods if m in GRADIENT_METHODS and m != 'smooth-gradcam++']
    out = {}
    if single:
        first = explain(model, x, layer, single[0], upsample=upsample, layout=layout,
                        keep_tensors=True, **dict(kw, **per_method.get(single[0], {})))
        A = torch.from_numpy(first['activation'])
        G = torch.from_numpy(first['gradient'])
        size = input_thw(tuple(np.shape(x)), layout)
        for method in single:
            Ls, ws = [], []
            for n in range(A.shape[0]):
                L, w = gradient_map(method, A[n], G[n])
                Ls.append(L)
                ws.append(w)
            feat = torch.stack(Ls)
            r = {'feature': feat.numpy(), 'map': upsample_map(feat, size, upsample).numpy(),
                 'targets': first['targets'], 'baseline': first['baseline']}
            if ws[0] is not None:
                r['weights'] = torch.stack(ws).numpy()
            out[method] = r
    for method in methods:
        if method not in out:
            out[method] = explain(model, x, layer, method, upsample=upsample, layout=layout,
                                  **dict(kw, **per_method.get(method, {})))
    return out


def sscam_delta(delta, n, ks, i, shape, sigma, gen):
    """The noise added to the masks M_k (k in ks) in SS-CAM pass i of sample n."""
    if delta is None:
        return sigma * torch.randn(tuple(shape), generator=gen, dtype=torch.float64)
    if delta.ndim == 4:                                          # n, T, H, W
        d = torch.from_numpy(np.array(delta[i], dtype=np.float64))
        return d[None].expand(tuple(shape))
    if delta.ndim == 5:                                          # K, n, T, H, W
        return torch.stack([torch.from_numpy(np.array(delta[k, i], dtype=np.float64))
                            for k in ks])
    return torch.stack([torch.from_numpy(np.array(delta[n, k, i], dtype=np.float64))
                        for k in ks])


# ----------------------------------------------------------------------------------------------
# Models by name, CLI
# ----------------------------------------------------------------------------------------------

def load_model(spec):
    """'tv:NAME' (tools/export_models.py build_model), 'zoo:NAME' or a zoo ONNX path ->
    (model, facts) with facts: layout, token_grid, target_layer, mean, std."""
    facts = {'layout': 'NCTHW', 'token_grid': None, 'target_layer': None, 'mean': None,
             'std': None}
    if spec.startswith('tv:'):
        if HERE not in sys.path:
            sys.path.insert(0, HERE)
        import export_models
        name = spec[3:]
        model = export_models.build_model(name)
        facts['layout'] = export_models.MODELS[name].layout
        return model, facts
    zoo_dir = os.path.join(HERE, 'zoo')
    if zoo_dir not in sys.path:
        sys.path.insert(0, zoo_dir)
    from onnx_weights import load_zoo_model
    if spec.startswith('zoo:'):
        model = load_zoo_model(spec[4:])
    else:
        model = load_zoo_model(None, spec)
    meta = model.stx_meta
    facts['layout'] = meta.get('stx.layout', 'NCTHW')
    facts['target_layer'] = meta.get('stx.target_layer')
    if 'stx.token_grid' in meta:
        facts['token_grid'] = tuple(int(v) for v in meta['stx.token_grid'].lower().split('x'))
    if 'stx.mean' in meta:
        facts['mean'] = [float(v) for v in meta['stx.mean'].split(',')]
        facts['std'] = [float(v) for v in meta['stx.std'].split(',')]
    return model, facts


def main(argv=None):
    ap = argparse.ArgumentParser(description='PyTorch oracle for stx explain (CAM family)')
    ap.add_argument('--model', required=True, help='tv:NAME, zoo:NAME or a zoo ONNX path')
    ap.add_argument('--input', required=True,
                    help='.npy: the normalised float input (N first), or uint8 frames '
                         '(N,)T,H,W,3 preprocessed with the model\'s mean/std')
    ap.add_argument('--method', required=True, choices=METHODS)
    ap.add_argument('--layer', default=None, help='module path (default: stx.target_layer)')
    ap.add_argument('--target', default=None, help='class index, or a comma list per sample')
    ap.add_argument('--frame', default=None, type=int)
    ap.add_argument('--score', default='logit', choices=('logit', 'prob'))
    ap.add_argument('--upsample', default='trilinear', choices=('trilinear', 'nearest', 'none'))
    ap.add_argument('--token-grid', default=None, help='T,H,W (or TxHxW)')
    ap.add_argument('--layout', default=None, choices=('NCTHW', 'NTCHW', 'NCHW', 'NCT'))
    ap.add_argument('--samples', default=None, type=int)
    ap.add_argument('--noise', default=None, type=float)
    ap.add_argument('--noise-file', default=None,
                    help='.npy noise: smooth-gradcam++ (n, *x.shape); sscam (K, n, T, H, W), '
                         '(N, K, n, T, H, W) or (n, T, H, W)')
    ap.add_argument('--batch', default=32, type=int)
    ap.add_argument('--seed', default=0, type=int)
    ap.add_argument('--double', action='store_true', help='run the model in float64')
    ap.add_argument('-o', '--output', required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    model, facts = load_model(a.model)
    layout = a.layout or facts['layout']
    x = np.load(a.input)
    if x.dtype == np.uint8:
        if facts['mean'] is None:
            ap.error('uint8 frames need a model with stx.mean / stx.std')
        sys.path.insert(0, os.path.join(HERE, 'zoo'))
        from zoo_common import preprocess
        if layout != 'NCHW' and x.ndim == 4:
            x = x[None]
        x = preprocess(x, facts['mean'], facts['std'], layout)
    grid = facts['token_grid']
    if a.token_grid:
        grid = tuple(int(v) for v in a.token_grid.replace('x', ',').split(','))
    layer = a.layer or facts['target_layer']
    if not layer:
        ap.error('give --layer (the model has no stx.target_layer)')
    targets = None
    if a.target is not None:
        targets = [int(v) for v in a.target.split(',')]
    noise_tensors = None
    if a.noise_file:
        noise_tensors = np.load(a.noise_file, mmap_mode='r')
    r = explain(model, x, layer, a.method, targets=targets, frame=a.frame, score=a.score,
                upsample=a.upsample, token_grid=grid, layout=layout, samples=a.samples,
                noise=a.noise, noise_tensors=noise_tensors, batch=a.batch, seed=a.seed,
                double=a.double)
    np.savez(a.output, **r)
    print('%s %s at %s: feature %s, map %s, targets %s' % (
        a.model, a.method, layer, r['feature'].shape, r['map'].shape, r['targets'].tolist()))


if __name__ == '__main__':
    main()
