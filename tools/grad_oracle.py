#!/usr/bin/python3
"""PyTorch oracle for stx's gradient family, written from docs/gradient.md (Captum's
conventions), independent of stx's code.

    from grad_oracle import attribute
    a = attribute(model, x, 'ig', target=3, steps=32, schedule='gauss-legendre')

x: the model's float input (N, ...) as a numpy array; the result has x's shape (float64 numpy).
Methods: saliency (the gradient), gradxinput, ig, smoothgrad, smoothgrad-sq, vargrad,
guided-backprop, deconvnet. Scores: the target logit (or softmax probability over axis 1) of
output `output_index`, for per-frame outputs (N, K, T) at `frame` (None: summed over frames).
  ig: a = (x - x') * sum_k w_k grad(x' + alpha_k (x - x')), with Captum's approximation methods:
      gauss-legendre (numpy's leggauss on [0, 1]), left, right, middle, trapezoid; x' a baseline
      array of one sample's shape, or 0.
  smoothgrad family: noise (S, one sample's shape) of standard-normal draws, given; copy s of
      sample n is x_n + sigma_n e_s with sigma_n = level * (max x_n - min x_n); smoothgrad =
      mean of the gradients, smoothgrad-sq = mean of their squares, vargrad = mean of squares -
      square of the mean.
  guided-backprop / deconvnet: torch.nn.functional.relu replaced, for the call, by a function
      whose backward is grad * (x > 0) * (grad > 0) / max(grad, 0).
"""
import numpy as np
import torch
import torch.nn.functional as F

METHODS = ('saliency', 'gradxinput', 'ig', 'smoothgrad', 'smoothgrad-sq', 'vargrad',
           'guided-backprop', 'deconvnet')


def ig_points(n, schedule):
    """Captum's approximation_methods: (alphas, step sizes)."""
    if schedule == 'gauss-legendre':
        x, w = np.polynomial.legendre.leggauss(n)
        return 0.5 * (x + 1), 0.5 * w
    if schedule == 'trapezoid':
        a = np.linspace(0, 1, n)
        w = np.full(n, 1.0 / (n - 1))
        w[0] = w[-1] = 0.5 / (n - 1)
        return a, w
    lo, hi = {'left': (0, 1 - 1 / n), 'right': (1 / n, 1),
              'middle': (1 / (2 * n), 1 - 1 / (2 * n))}[schedule]
    return np.linspace(lo, hi, n), np.full(n, 1.0 / n)


class _Guided(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * (x > 0) * (g > 0)


class _Deconv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        return g.clamp(min=0)


def _scores(model, xb, targets, frame, score, output_index):
    y = model(xb)
    if isinstance(y, (tuple, list)):
        y = y[output_index]
    y = y.double()
    if score == 'prob':
        y = torch.softmax(y, dim=1)
    sel = y[torch.arange(y.shape[0]), torch.as_tensor(targets)]
    if sel.dim() > 1:
        sel = sel[:, frame] if frame is not None else sel.sum(dim=tuple(range(1, sel.dim())))
    return sel


def gradients(model, xs, targets, frame=None, score='logit', output_index=0, relu=None,
              batch=16):
    """d score / d input for each row of xs (numpy, float32), row i for class targets[i]."""
    out = []
    orig = F.relu
    if relu is not None:
        F.relu = lambda t, inplace=False: relu.apply(t)
    try:
        for i in range(0, len(xs), batch):
            xb = torch.from_numpy(np.ascontiguousarray(xs[i:i + batch], np.float32))
            xb.requires_grad_(True)
            s = _scores(model, xb, targets[i:i + batch], frame, score, output_index)
            g, = torch.autograd.grad(s.sum(), xb)
            out.append(g.double().numpy())
    finally:
        F.relu = orig
    return np.concatenate(out)


def attribute(model, x, method, target, frame=None, score='logit', output_index=0, steps=50,
              schedule='middle', baseline=None, noise=None, level=0.15, batch=16):
    x = np.asarray(x, np.float32)
    N = x.shape[0]
    targets = np.broadcast_to(np.asarray(target), (N,)).astype(np.int64)
    kw = dict(frame=frame, score=score, output_index=output_index, batch=batch)
    if method in ('saliency', 'gradxinput', 'guided-backprop', 'deconvnet'):
        relu = {'guided-backprop': _Guided, 'deconvnet': _Deconv}.get(method)
        g = gradients(model, x, targets, relu=relu, **kw)
        return g * x if method == 'gradxinput' else g
    res = np.zeros(x.shape)
    if method == 'ig':
        alphas, w = ig_points(steps, schedule)
        for n in range(N):
            b = np.zeros_like(x[n]) if baseline is None else np.asarray(baseline, np.float32)
            b = b.reshape(x[n].shape)
            b64, x64 = b.astype(np.float64), x[n].astype(np.float64)
            pts = np.stack([(b64 + a * (x64 - b64)).astype(np.float32) for a in alphas])
            g = gradients(model, pts, np.full(steps, targets[n]), **kw)
            res[n] = np.tensordot(w, g, axes=1) * (x64 - b64)
        return res
    noise = np.asarray(noise, np.float32)
    S = noise.shape[0]
    for n in range(N):
        sigma = level * (float(x[n].max()) - float(x[n].min()))
        pts = (x[n][None].astype(np.float64) + sigma * noise.astype(np.float64)).astype(
            np.float32)
        g = gradients(model, pts, np.full(S, targets[n]), **kw)
        m = g.mean(0)
        if method == 'smoothgrad':
            res[n] = m
        elif method == 'smoothgrad-sq':
            res[n] = (g * g).mean(0)
        else:
            res[n] = (g * g).mean(0) - m * m
    return res


def score_of(model, x, target, frame=None, score='logit', output_index=0):
    """The target scores of the rows of x (numpy float64)."""
    with torch.no_grad():
        xb = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        t = np.broadcast_to(np.asarray(target), (x.shape[0],)).astype(np.int64)
        return _scores(model, xb, t, frame, score, output_index).numpy()


def with_onnx_weights(model, onnx_path):
    """The torchvision-style model with the convolution and linear weights of its ONNX export
    (PyTorch's exporter folds every BatchNorm into the convolution before it, in float32): each
    BatchNorm becomes the identity and each Conv/Linear takes the folded weights and bias of the
    ONNX node at the same place in execution order. The oracle then computes with exactly the
    numbers stx reads, so float32 ReLUs that sit within rounding of zero cannot flip between
    the two only because the folding rounded differently."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(onnx_path)
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    nodes = [n for n in m.graph.node if n.op_type in ('Conv', 'Gemm')]
    layers = [mm for mm in model.modules() if isinstance(mm, (torch.nn.Conv1d, torch.nn.Conv2d,
                                                              torch.nn.Conv3d, torch.nn.Linear))]
    if len(nodes) != len(layers):
        raise ValueError('%d Conv/Gemm nodes for %d layers' % (len(nodes), len(layers)))
    for n, layer in zip(nodes, layers):
        w = torch.from_numpy(init[n.input[1]].copy())
        if n.op_type == 'Gemm' and any(a.name == 'transB' and a.i == 0 for a in n.attribute):
            w = w.t().contiguous()
        layer.weight = torch.nn.Parameter(w.reshape(layer.weight.shape))
        b = torch.from_numpy(init[n.input[2]].copy()) if len(n.input) > 2 else None
        layer.bias = torch.nn.Parameter(b) if b is not None else None
    for name, mm in list(model.named_modules()):
        for cname, child in list(mm.named_children()):
            if isinstance(child, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                setattr(mm, cname, torch.nn.Identity())
    return model.eval()
