"""Reference relevances for stx's LRP (docs/lrp.md), computed independently of stx's rules.

Every linear layer is turned into its matrix: A = the Jacobian of the bias-free layer (torch.func
/ autograd in float64) and b = the layer applied to zeros, so that z = A x + b. The rules are then
the explicit sums of methods.md section 3.2 over the entries of A (no modified backward pass, no
convolution-transpose trick):

  zero       R_i = sum_j x_i A_ji / z_j R_j                       (z_j = 0: no contribution)
  epsilon    R_i = sum_j x_i A_ji / (z_j + eps sign z_j) R_j      (sign 0 = +1)
  gamma      A' = A + g A+, b' = b + g b+:  R_i = sum_j x_i A'_ji / stab(A' x + b')_j R_j
  alpha-beta p_ji = x_i A_ji:
             R_i = sum_j (a p+_ji / stab(sum p+ + b+) - b p-_ji / stab(sum p- + b-)) R_j
  zplus      alpha 1 beta 0 with no bias
  wsquare    R_i = sum_j A_ji^2 / stab(sum_i' A_ji'^2) R_j
  flat       the same with the matrix of the all-ones layer
  zbox       c_ji = x_i A_ji - l A+_ji - h A-_ji: R_i = sum_j c_ji / stab(sum_i' c_ji') R_j
with stab(z) = z + 1e-6 sign z (zennit's stabiliser) for every rule but epsilon.

Run as a script it prints the references of Captum's SimpleLRPModel case (peers.md case 4).
"""
import numpy as np
import torch

STAB = 1e-6


def stab(z, e):
    return z + np.where(z >= 0, e, -e)


def layer_matrix(fn, x_shape):
    """A (K_out x K_in) and b (K_out) of the affine map fn on one sample of shape x_shape
    (float64): b = fn(0), A = Jacobian of fn(x) - b."""
    x0 = torch.zeros((1,) + tuple(x_shape), dtype=torch.float64)
    with torch.no_grad():
        b = fn(x0).reshape(-1).numpy().copy()
    jac = torch.autograd.functional.jacobian(lambda v: fn(v.reshape((1,) + tuple(x_shape)))
                                             .reshape(-1), x0.reshape(-1))
    return jac.numpy(), b


def rule_relevance(rule, A, b, x, R, eps=1e-6, gamma=0.25, low=-3.0, high=3.0, A_ones=None):
    """Relevance of the inputs x (K_in) of the layer z = A x + b given R (K_out) at its output."""
    x = np.asarray(x, np.float64).reshape(-1)
    R = np.asarray(R, np.float64).reshape(-1)
    if rule in ('zero', 'epsilon'):
        z = A @ x + b
        if rule == 'zero':
            s = np.divide(R, z, out=np.zeros_like(R), where=z != 0)
        else:
            s = R / stab(z, eps)
        return x * (A.T @ s)
    if rule == 'gamma':
        Ag = A + gamma * np.maximum(A, 0)
        bg = b + gamma * np.maximum(b, 0)
        return x * (Ag.T @ (R / stab(Ag @ x + bg, STAB)))
    if rule in ('alpha1beta0', 'alpha2beta1', 'zplus'):
        alpha, beta = (2.0, 1.0) if rule == 'alpha2beta1' else (1.0, 0.0)
        use_bias = rule != 'zplus'
        p = A * x[None, :]                         # p_ji = x_i A_ji
        pp, pn = np.maximum(p, 0), np.minimum(p, 0)
        zp = pp.sum(1) + (np.maximum(b, 0) if use_bias else 0)
        zn = pn.sum(1) + (np.minimum(b, 0) if use_bias else 0)
        out = alpha * (pp.T @ (R / stab(zp, STAB)))
        if beta:
            out -= beta * (pn.T @ (R / stab(zn, STAB)))
        return out
    if rule in ('wsquare', 'flat'):
        Q = A ** 2 if rule == 'wsquare' else A_ones
        return Q.T @ (R / stab(Q.sum(1), STAB))
    if rule == 'zbox':
        c = A * x[None, :] - low * np.maximum(A, 0) - high * np.minimum(A, 0)
        return c.T @ (R / stab(c.sum(1), STAB))
    raise ValueError(rule)


class Wrapped(torch.nn.Module):
    """A single layer behind stx's 5-D clip input: Reshape to the layer's input, Flatten after."""

    def __init__(self, layer, in_shape):
        super().__init__()
        self.layer = layer
        self.in_shape = tuple(in_shape)

    def forward(self, x):
        return torch.flatten(self.layer(x.reshape((-1,) + self.in_shape)), 1)


def make_layer(kind, cin, cout, k, bias, seed, groups=1, stride=1, padding=0):
    """A float64 layer and the per-sample input shape it reads (and its 5-D clip shape)."""
    torch.manual_seed(seed)
    if kind == 'linear':
        layer, shape, clip = torch.nn.Linear(cin, cout, bias=bias), (cin,), (1, 1, 1, cin)
    elif kind == 'conv1d':
        layer = torch.nn.Conv1d(cin, cout, k, stride, padding, groups=groups, bias=bias)
        shape, clip = (cin, 6), (cin, 1, 1, 6)
    elif kind == 'convt2d':
        layer = torch.nn.ConvTranspose2d(cin, cout, k, stride, padding, groups=groups, bias=bias)
        shape, clip = (cin, 4, 4), (cin, 1, 4, 4)
    elif kind == 'conv2d':
        layer = torch.nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=bias)
        shape, clip = (cin, 5, 5), (cin, 1, 5, 5)
    else:
        layer = torch.nn.Conv3d(cin, cout, k, stride, padding, groups=groups, bias=bias)
        shape, clip = (cin, 4, 4, 4), (cin, 4, 4, 4)
    layer = layer.double().eval()
    return layer, shape, clip


def export(module, clip_shape, path, batch):
    """Exports module (float64 weights) in float32 with a fixed batch size."""
    m = module.float() if hasattr(module, 'float') else module
    x = torch.zeros((batch,) + tuple(clip_shape), dtype=torch.float32)
    torch.onnx.export(m, x, path, input_names=['input'], output_names=['output'],
                      opset_version=13, do_constant_folding=True)
    module.double()


def ones_like_layer(layer):
    """A copy of the layer with every weight 1 and no bias (the flat rule's matrix)."""
    import copy
    o = copy.deepcopy(layer)
    with torch.no_grad():
        o.weight.fill_(1.0)
        if o.bias is not None:
            o.bias.zero_()
    return o


def layer_reference(layer, shape, x, target, rule, **kw):
    """Relevance (x's shape) of every sample of x (N, *shape) for output element `target` seeded
    with its value (the logit)."""
    out = np.zeros(x.shape, np.float64)
    A1 = None
    if rule == 'flat':
        A1, _ = layer_matrix(lambda v: ones_like_layer(layer)(v), shape)
    A, b = layer_matrix(lambda v: layer(v), shape)
    for n in range(x.shape[0]):
        xs = x[n].reshape(-1).astype(np.float64)
        z = A @ xs + b
        R = np.zeros_like(z)
        R[target] = z[target]
        out[n] = rule_relevance(rule, A, b, xs, R, A_ones=A1, **kw).reshape(x.shape[1:])
    return out


def captum_simple(w00=None):
    """Captum's SimpleLRPModel (tests/attr/test_lrp.py): Linear(3,3) weights 2 -> ReLU ->
    Linear(3,1) weights 3, no bias; optionally w[0][0] of the first layer changed."""
    class Simple(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3, 3, bias=False)
            self.relu = torch.nn.ReLU()
            self.linear2 = torch.nn.Linear(3, 1, bias=False)
            with torch.no_grad():
                self.linear.weight.fill_(2.0)
                self.linear2.weight.fill_(3.0)
                if w00 is not None:
                    self.linear.weight[0, 0] = w00

        def forward(self, x):
            return self.linear2(self.relu(self.linear(x)))
    return Simple().double().eval()


def two_layer_reference(model, x, rule, **kw):
    """Relevance of Simple's input x (3,) with rule on both layers, composed by hand."""
    A1 = model.linear.weight.detach().numpy()
    A2 = model.linear2.weight.detach().numpy()
    h = np.maximum(A1 @ x, 0)
    y = A2 @ h
    Rh = rule_relevance(rule, A2, np.zeros(1), h, y, **kw)
    return rule_relevance(rule, A1, np.zeros(3), x, Rh, **kw), float(y[0])


class LstmNet(torch.nn.Module):
    """(N, 1, T, 1, I) clip -> (N, T, I) -> LSTM(I, H) -> last hidden state -> Linear(H, K)."""

    def __init__(self, T, I, H, K):
        super().__init__()
        self.T, self.I = T, I
        self.lstm = torch.nn.LSTM(I, H, batch_first=True)
        self.fc = torch.nn.Linear(H, K)

    def forward(self, x):
        y, _ = self.lstm(x.reshape(-1, self.T, self.I))
        return self.fc(y[:, -1])


def lstm_reference(net, x, target, eps):
    """Arras et al. (2017) LSTM relevance of x (N, T, I) for class target: the epsilon rule on the
    Linear layer and on the cell update c_t = f c_t-1 + i g and g's pre-activation (biases in
    the denominators), all relevance of h_t to c_t and of i g to g (signal-take-all: gates get
    none). PyTorch's gate order i, f, g, o."""
    L = net.lstm
    Wi, Wh = L.weight_ih_l0.detach().numpy(), L.weight_hh_l0.detach().numpy()
    bsum = (L.bias_ih_l0 + L.bias_hh_l0).detach().numpy()
    H = Wh.shape[1]
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    out = np.zeros(x.shape)
    for n in range(x.shape[0]):
        T = x.shape[1]
        h, c = np.zeros(H), np.zeros(H)
        hs, cs, gs = [h], [c], []
        for t in range(T):
            z = Wi @ x[n, t] + Wh @ h + bsum
            i, f, g, o = sig(z[:H]), sig(z[H:2 * H]), np.tanh(z[2 * H:3 * H]), sig(z[3 * H:])
            c = f * c + i * g
            h = o * np.tanh(c)
            hs.append(h)
            cs.append(c)
            gs.append((i, f, g, z[2 * H:3 * H]))
        A, b = net.fc.weight.detach().numpy(), net.fc.bias.detach().numpy()
        y = A @ h + b
        R = np.zeros_like(y)
        R[target] = y[target]
        Rh = rule_relevance('epsilon', A, b, h, R, eps=eps)
        Rc = np.zeros(H)
        for t in range(T - 1, -1, -1):
            i, f, g, zg = gs[t]
            Rct = Rc + Rh
            den = stab(cs[t + 1], eps)
            Rc = f * cs[t] / den * Rct
            Rg = i * g / den * Rct
            # g's pre-activation zg = Wi_g x_t + Wh_g h_t-1 + b_g: the epsilon rule
            Ag = np.concatenate([Wi[2 * H:3 * H], Wh[2 * H:3 * H]], 1)
            v = np.concatenate([x[n, t], hs[t]])
            Rv = rule_relevance('epsilon', Ag, bsum[2 * H:3 * H], v, Rg, eps=eps)
            out[n, t] = Rv[:x.shape[2]]
            Rh = Rv[x.shape[2]:]
    return out


class GateNet(torch.nn.Module):
    """(N, 1, 1, 1, I) clip -> signal s = Linear(I, H) x and gate g = sigmoid(Linear(I, H) x) ->
    Linear(H, K) on s * g (the gated product of the zoo's CNN+LSTMs and of GRU-/LSTM-style
    cells)."""

    def __init__(self, I, H, K):
        super().__init__()
        self.I = I
        self.signal = torch.nn.Linear(I, H)
        self.gate = torch.nn.Linear(I, H)
        self.fc = torch.nn.Linear(H, K)

    def forward(self, x):
        v = x.reshape(-1, self.I)
        return self.fc(self.signal(v) * torch.sigmoid(self.gate(v)))


def gate_reference(net, x, target, eps):
    """Relevance of x (N, I) for class target: the epsilon rule on fc, all of the product's
    relevance to the signal (signal-take-all, Arras et al. 2017: the gate gets none), the
    epsilon rule on the signal's Linear."""
    W = lambda m: (m.weight.detach().numpy(), m.bias.detach().numpy())  # noqa: E731
    (Ws, bs), (Wg, bg), (A, b) = W(net.signal), W(net.gate), W(net.fc)
    out = np.zeros(x.shape)
    for n in range(x.shape[0]):
        s = Ws @ x[n] + bs
        p = s / (1 + np.exp(-(Wg @ x[n] + bg)))
        y = A @ p + b
        R = np.zeros_like(y)
        R[target] = y[target]
        Rp = rule_relevance('epsilon', A, b, p, R, eps=eps)
        out[n] = rule_relevance('epsilon', Ws, bs, x[n], Rp, eps=eps)
    return out


if __name__ == '__main__':
    x = np.array([1.0, 2.0, 3.0])
    print('epsilon', two_layer_reference(captum_simple(), x, 'epsilon', eps=1e-9))
    print('gamma 1', two_layer_reference(captum_simple(-2.0), x, 'gamma', gamma=1.0))
    print('alpha1beta0', two_layer_reference(captum_simple(-2.0), x, 'alpha1beta0'))
