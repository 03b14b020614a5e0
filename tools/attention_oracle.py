#!/usr/bin/python3
"""PyTorch oracle for stx's transformer methods (rollout, transformer-attribution,
generic-attention), written from ../shared/docs/methods.md §5 and docs/transformers.md.

    from attention_oracle import load, explain
    model = load('zoo:action_timesformer')     # or 'tv:vivit_tiny', 'tiny:cls', 'tiny:mean'
    rel = explain(model, x, 'rollout', head_fusion='mean', discard_ratio=0.0, start_layer=0)

x: the model's input (N, 3, T, H, W) as numpy; rel: (N, T', H', W') token relevance in float64.

The model's forward is re-written here with every attention computed explicitly from the
nn.MultiheadAttention weights (softmax(q k^T / sqrt(d)) v), each attention map kept with its
gradient; the zoo TimeSformer's divided blocks (temporal attention over the T' frames at each of
the S = H'W' locations, then spatial over the S locations of each frame), ViViT's joint blocks
(a class token first; tools/export_models.py) and DividedTiny below (divided blocks with
TimeSformer's class token in the spatial attention, or without one and mean pooling). Everything
runs in float64.

Each attention becomes, per sample, a dense n_tok x n_tok matrix (zeros outside the tokens it
mixes; rows of tokens it does not touch: identity for rollout and transformer attribution) and the
methods multiply the dense matrices in forward order exactly as methods.md writes them:

  rollout                  A~ = (fuse_h A, lowest discard_ratio zeroed per attention group,
                           class-token entries kept) + I, rows / rowsum; R = A~_B ... A~_s
  generic-attention        R = I; R <- R + E_h[(dA * A)^+] R, forward order from start_layer
  transformer-attribution  A~ = (E_h[(dA * R_A)^+] + I) / rowsum, R = A~_B ... A~_s, R_A the
                           relevance of Chefer et al.'s LRP (lrp() below) at the attention map

and read the grid tokens out of R: the class token's row (ViViT, DividedTiny), or the pooling
weights w^T R (the TimeSformer's attention pooling), or the mean row (mean pooling). A spatial
attention with the class token (replicated into every frame) gives the class token's row the mean
over the frames of its rows. A block is a joint attention or a (temporal, spatial) pair;
start_layer counts blocks.

The LRP (Chefer et al. CVPR 2021, baselines/ViT/ViT_LRP.py, layers_ours.py, written again here):
seed one-hot at the target logit; Linear: alpha1beta0 without the bias; attention matmuls A v and
q k^T: z-rule, each operand's share halved; softmax, LayerNorm, GELU, the q scaling: relevance
passed unchanged; residual adds: z-rule shares renormalised so that each branch keeps |its sum|
share of the sum (per sample); fan-out: relevances summed; the TimeSformer's pooling: sum over
tokens by the z-rule, the product w * z halved between w and z (w's half through the softmax to
the `target` Linear and on to the tokens); means (mean pooling, the class token's average over the
frames) by the z-rule. safe_divide(a, b) = a / (b + 1e-9), 0 where b = 0.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))


class DividedTiny(torch.nn.Module):
    """A small TimeSformer-style model for the tests (random weights, seeded): Conv3d tubelets
    (2, 8, 8) on (N, 3, 8, 32, 32) -> 4 x 4 x 4 tokens, learned positions, `depth` divided blocks
    (temporal attention over the 4 frames of each location, then spatial attention over the 16
    locations of each frame, then an MLP; pre-norm), LayerNorm, linear head. cls=True: TimeSformer's
    class token (facebookresearch/TimeSformer vit.py): replicated into every frame's spatial
    attention, its outputs averaged over the frames, left out of the temporal attention; the
    head reads it. cls=False: no class token, the head reads the mean over the tokens."""

    def __init__(self, cls=True, dim=32, depth=2, heads=2, classes=5):
        super().__init__()
        nn = torch.nn
        self.use_cls = cls
        self.embed = nn.Conv3d(3, dim, (2, 8, 8), (2, 8, 8))
        self.cls_token = nn.Parameter(0.5 * torch.randn(1, 1, dim))
        self.pos = nn.Parameter(0.3 * torch.randn(1, 4, 16, dim))
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            b = nn.Module()
            b.norm_time = nn.LayerNorm(dim)
            b.time_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
            b.norm_space = nn.LayerNorm(dim)
            b.space_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
            b.norm_mlp = nn.LayerNorm(dim)
            b.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
            self.blocks.append(b)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)
        self.grid = (4, 4, 4)

    def forward(self, x):
        z = self.embed(x).flatten(3).permute(0, 2, 3, 1) + self.pos    # N, T', S, D
        N, T, S, D = z.shape
        c = self.cls_token.expand(N, -1, -1)
        for b in self.blocks:
            xt = z.transpose(1, 2).reshape(N * S, T, D)
            h = b.norm_time(xt)
            xt = xt + b.time_attn(h, h, h, need_weights=False)[0]
            xs = xt.reshape(N, S, T, D).transpose(1, 2).reshape(N * T, S, D)
            if self.use_cls:
                cr = c.unsqueeze(1).expand(N, T, 1, D).reshape(N * T, 1, D)
                xc = torch.cat([cr, xs], dim=1)
                h = b.norm_space(xc)
                a = b.space_attn(h, h, h, need_weights=False)[0]
                c = c + a[:, :1].reshape(N, T, 1, D).mean(dim=1)
                xs = xs + a[:, 1:]
                c = c + b.mlp(b.norm_mlp(c))
            else:
                h = b.norm_space(xs)
                xs = xs + b.space_attn(h, h, h, need_weights=False)[0]
            xs = xs + b.mlp(b.norm_mlp(xs))
            z = xs.reshape(N, T, S, D)
        if self.use_cls:
            return self.head(self.norm(c[:, 0]))
        return self.head(self.norm(z).reshape(N, T * S, D).mean(dim=1))


def divided_tiny(cls):
    torch.manual_seed(11 if cls else 12)
    return DividedTiny(cls).eval()


def export_divided_tiny(cls, path):
    """The ONNX file of divided_tiny(cls) (opset 17, batch axis N, stx.token_grid 4x4x4)."""
    import onnx
    model = divided_tiny(cls)
    x = torch.zeros(1, 3, 8, 32, 32)
    torch.onnx.export(model, (x,), path, opset_version=17, input_names=['input'],
                      output_names=['output'], dynamic_axes={'input': {0: 'N'}, 'output': {0: 'N'}})
    proto = onnx.load(path)
    onnx.helper.set_model_props(proto, {'stx.layout': 'NCTHW', 'stx.token_grid': '4x4x4'})
    onnx.save(proto, path)


def load(spec):
    """'zoo:NAME' (weights from models/zoo/NAME.onnx), 'tv:vivit_tiny' (tools/export_models.py,
    seeded) or 'tiny:cls' / 'tiny:mean' (DividedTiny) -> model in eval mode, float64."""
    if spec.startswith('tiny:'):
        model = divided_tiny(spec == 'tiny:cls')
        model.stx_kind = 'tiny'
    elif spec.startswith('tv:'):
        if HERE not in sys.path:
            sys.path.insert(0, HERE)
        import export_models
        model = export_models.build_model(spec[3:])
        model.stx_kind = 'vivit'
    else:
        zoo = os.path.join(HERE, 'zoo')
        if zoo not in sys.path:
            sys.path.insert(0, zoo)
        from onnx_weights import load_zoo_model
        model = load_zoo_model(spec.split(':', 1)[-1])
        model.stx_kind = 'timesformer'
    model.eval()
    model.requires_grad_(False)
    return model.double()


def sdiv(a, b):
    den = b.clamp(min=1e-9) + b.clamp(max=1e-9)
    den = den + den.eq(0).to(den.dtype) * 1e-9
    return a / den * b.ne(0).to(a.dtype)


# ---- forward with explicit attention --------------------------------------------------------

class Rec:
    """What the forward keeps for the methods and the LRP."""

    def __init__(self):
        self.maps = []     # per attention: dict(kind, A (B, h, n, n), groups, cls, ...)
        self.trace = []    # per block: the tensors the LRP needs


def mha(mod, x, rec, kind, groups, cls):
    """nn.MultiheadAttention(x, x, x) (batch_first) with the attention kept."""
    B, n, D = x.shape
    h = mod.num_heads
    d = D // h
    qkv = F.linear(x, mod.in_proj_weight, mod.in_proj_bias)
    q, k, v = qkv.split(D, dim=-1)
    q = q.reshape(B, n, h, d).transpose(1, 2)
    k = k.reshape(B, n, h, d).transpose(1, 2)
    v = v.reshape(B, n, h, d).transpose(1, 2)
    qs = q / math.sqrt(d)
    dots = qs @ k.transpose(-1, -2)
    A = torch.softmax(dots, dim=-1)
    if A.requires_grad:
        A.retain_grad()
    ctx = A @ v                                           # B, h, n, d
    o = ctx.transpose(1, 2).reshape(B, n, D)
    out = mod.out_proj(o)
    rec.maps.append(dict(kind=kind, A=A, groups=groups, cls=cls))
    return out, dict(x=x, qs=qs, k=k, v=v, A=A, o=o, mod=mod, h=h, d=d)


def forward(model, x, rec):
    """Logits of the re-written forward; rec gets the maps and the LRP trace."""
    if model.stx_kind == 'vivit':
        z = model.embed(x).flatten(2).transpose(1, 2).detach().requires_grad_()
        cls = model.cls_token.expand(z.shape[0], -1, -1)
        z = torch.cat([cls, z], dim=1) + model.pos_embed
        for blk in model.blocks:
            hn = blk.norm1(z)
            a, at = mha(blk.attn, hn, rec, 'joint', 1, True)
            z1 = z + a
            m_in = blk.norm2(z1)
            f1 = blk.mlp[0](m_in)
            g = blk.mlp[1](f1)
            f2 = blk.mlp[2](g)
            rec.trace.append(dict(subs=[(z, a, at)], z1=z1, m_in=m_in, g=g, f2=f2, blk=blk))
            z = z1 + f2
        zn = model.norm(z)
        rec.readout = dict(zn=zn)
        return model.head(zn[:, 0])
    if model.stx_kind == 'tiny':
        return forward_tiny(model, x, rec)
    n, t = x.shape[0], x.shape[2]
    frames = x.transpose(1, 2).flatten(0, 1)
    f = model.frame_features(frames).reshape(n, t, -1)
    z = f.reshape(n, t, 16, model.feat_hw, model.feat_hw).transpose(1, 2)
    z = model.embed(z).flatten(3).permute(0, 2, 3, 1)      # N, T', S, D
    z = z.detach().requires_grad_()     # gradients of the maps only: stop below the tokens
    z = z + model.time_embed + model.space_embed
    for blk in model.blocks:
        N, T, S, D = z.shape
        xt = z.transpose(1, 2).reshape(N * S, T, D)
        a, at = mha(blk.time_attn, blk.norm_time(xt), rec, 'time', S, False)
        xt1 = xt + a
        xs = xt1.reshape(N, S, T, D).transpose(1, 2).reshape(N * T, S, D)
        b, bt = mha(blk.space_attn, blk.norm_space(xs), rec, 'space', T, False)
        xs1 = xs + b
        m_in = blk.norm_mlp(xs1)
        f1 = blk.mlp[0](m_in)
        g = blk.mlp[1](f1)
        f2 = blk.mlp[2](g)
        rec.trace.append(dict(subs=[(xt, a, at), (xs, b, bt)], z1=xs1, m_in=m_in, g=g, f2=f2,
                              blk=blk, NTSD=(N, T, S, D)))
        z = (xs1 + f2).reshape(N, T, S, D)
    zn = model.norm(z)
    a = model.target(zn)
    w = torch.softmax(a.reshape(n, -1), dim=1)
    prod = w.unsqueeze(2) * zn.reshape(n, -1, zn.shape[-1])
    pooled = prod.sum(dim=1)
    rec.readout = dict(zn=zn, w=w, prod=prod, pooled=pooled)
    return model.head(pooled)


def forward_tiny(model, x, rec):
    z = (model.embed(x).flatten(3).permute(0, 2, 3, 1) + model.pos).detach().requires_grad_()
    N, T, S, D = z.shape
    cls = model.use_cls
    c = model.cls_token.expand(N, -1, -1).detach().requires_grad_()
    for b in model.blocks:
        tr = dict(blk=b, NTSD=(N, T, S, D))
        xt = z.transpose(1, 2).reshape(N * S, T, D)
        a, at = mha(b.time_attn, b.norm_time(xt), rec, 'time', S, False)
        tr['time'] = (xt, a, at)
        xt1 = xt + a
        xs = xt1.reshape(N, S, T, D).transpose(1, 2).reshape(N * T, S, D)
        if cls:
            cr = c.unsqueeze(1).expand(N, T, 1, D).reshape(N * T, 1, D)
            xc = torch.cat([cr, xs], dim=1)
            sa, st = mha(b.space_attn, b.norm_space(xc), rec, 'space', T, True)
            ca = sa[:, :1].reshape(N, T, 1, D)
            cm = ca.mean(dim=1)
            tr['space'] = (xs, sa, st)
            tr['cls'] = dict(c=c, ca=ca, cm=cm)
            c1 = c + cm
            xs1 = xs + sa[:, 1:]
            cn = b.norm_mlp(c1)
            cf1 = b.mlp[0](cn)
            cg = b.mlp[1](cf1)
            cf2 = b.mlp[2](cg)
            tr['cls'].update(c1=c1, cn=cn, cg=cg, cf2=cf2)
            c = c1 + cf2
        else:
            sa, st = mha(b.space_attn, b.norm_space(xs), rec, 'space', T, False)
            tr['space'] = (xs, sa, st)
            xs1 = xs + sa
        m_in = b.norm_mlp(xs1)
        g = b.mlp[1](b.mlp[0](m_in))
        f2 = b.mlp[2](g)
        tr.update(z1=xs1, m_in=m_in, g=g, f2=f2)
        rec.trace.append(tr)
        z = (xs1 + f2).reshape(N, T, S, D)
    if cls:
        cn = model.norm(c[:, 0])
        rec.readout = dict(cn=cn)
        return model.head(cn)
    zn = model.norm(z).reshape(N, T * S, D)
    pooled = zn.mean(dim=1)
    rec.readout = dict(zn=zn, pooled=pooled)
    return model.head(pooled)


# ---- LRP (one sample: batch 1) ----------------------------------------------------------------

def lin_rel(R, x, W):
    """alpha1beta0 of a Linear without bias: x (..., K), W (M, K)."""
    pw, nw = W.clamp(min=0), W.clamp(max=0)
    px, nx = x.clamp(min=0), x.clamp(max=0)
    S = sdiv(R, px @ pw.T + nx @ nw.T)
    return px * (S @ pw) + nx * (S @ nw)


def mm_rel(R, a, b):
    """z-rule through a @ b, each share halved."""
    S = sdiv(R, a @ b)
    return a * (S @ b.transpose(-1, -2)) / 2, b * (a.transpose(-1, -2) @ S) / 2


def add_rel(R, a, b):
    S = sdiv(R, a + b)
    ra, rb = a * S, b * S
    sa, sb, tot = ra.sum(), rb.sum(), R.sum()
    fa = sdiv(sa.abs(), sa.abs() + sb.abs()) * tot
    fb = sdiv(sb.abs(), sa.abs() + sb.abs()) * tot
    return ra * sdiv(fa, sa), rb * sdiv(fb, sb)


def attn_rel(R, at, RA_out):
    """Relevance at the attention's input (B, n, D) from R at its output; R_A appended."""
    mod, h, d = at['mod'], at['h'], at['d']
    B, n, D = at['o'].shape
    Ro = lin_rel(R, at['o'], mod.out_proj.weight)
    Rctx = Ro.reshape(B, n, h, d).transpose(1, 2)
    RA, Rv = mm_rel(Rctx, at['A'], at['v'])
    RA_out.append(RA)
    Rq, RkT = mm_rel(RA, at['qs'], at['k'].transpose(-1, -2))
    Rk = RkT.transpose(-1, -2)
    Rqkv = torch.cat([r.transpose(1, 2).reshape(B, n, D) for r in (Rq, Rk, Rv)], dim=-1)
    return lin_rel(Rqkv, at['x'], mod.in_proj_weight)


def lrp(model, rec, target):
    """Chefer-style relevance at every attention map (forward order) for one sample."""
    if model.stx_kind == 'tiny':
        return lrp_tiny(model, rec, target)
    ro = rec.readout
    y = model.head.weight.shape[0]
    R = torch.zeros(1, y, dtype=torch.float64)
    R[0, target] = 1
    if model.stx_kind == 'vivit':
        Rc = lin_rel(R, ro['zn'][:, 0], model.head.weight)
        Rz = torch.zeros_like(ro['zn'])
        Rz[:, 0] = Rc
    else:
        Rp = lin_rel(R, ro['pooled'], model.head.weight)
        Rprod = ro['prod'] * sdiv(Rp, ro['pooled']).unsqueeze(1)
        half = ro['prod'] * sdiv(Rprod, ro['prod']) / 2
        Rw = half.sum(dim=2)                               # softmax: unchanged
        zn = ro['zn']
        Rz = half.reshape(zn.shape) + lin_rel(Rw.reshape(zn.shape[:-1] + (1,)), zn,
                                              model.target.weight)
    RAs = []
    for tr in reversed(rec.trace):
        blk = tr['blk']
        R1 = Rz.reshape(tr['z1'].shape)
        Ra, Rf = add_rel(R1, tr['z1'], tr['f2'])
        Rg = lin_rel(Rf, tr['g'], blk.mlp[2].weight)        # GELU: unchanged
        Rm = lin_rel(Rg, tr['m_in'], blk.mlp[0].weight)     # LayerNorm: unchanged
        R = Ra + Rm
        sub_ra = []
        for k in reversed(range(len(tr['subs']))):
            xin, aout, at = tr['subs'][k]
            R = R.reshape(xin.shape) if k == len(tr['subs']) - 1 else R
            Rx, Rattn = add_rel(R, xin, aout)
            ras = []
            Rin = attn_rel(Rattn, at, ras)
            sub_ra.insert(0, ras[0])
            R = Rx + Rin
            if k > 0:   # spatial (N T', S, D) -> temporal layout (N S, T', D)
                N, T, S, D = tr['NTSD']
                R = R.reshape(N, T, S, D).transpose(1, 2).reshape(N * S, T, D)
        if 'NTSD' in tr:
            N, T, S, D = tr['NTSD']
            R = R.reshape(N, S, T, D).transpose(1, 2)
        Rz = R
        RAs = sub_ra + RAs
    return RAs


def lrp_tiny(model, rec, target):
    """The relevance at the maps of DividedTiny (forward order), same rules as lrp()."""
    ro = rec.readout
    R = torch.zeros(1, model.head.weight.shape[0], dtype=torch.float64)
    R[0, target] = 1
    N, T, S, D = rec.trace[0]['NTSD']
    if model.use_cls:
        Rc = lin_rel(R, ro['cn'], model.head.weight).reshape(N, 1, D)     # LayerNorm: unchanged
        Rz = torch.zeros(N, T, S, D, dtype=torch.float64)
    else:
        Rp = lin_rel(R, ro['pooled'], model.head.weight)
        zn = ro['zn']
        Rz = (zn / zn.shape[1] * sdiv(Rp, ro['pooled']).unsqueeze(1)).reshape(N, T, S, D)
        Rc = None
    RAs = []
    for tr in reversed(rec.trace):
        b = tr['blk']
        Rx1, Rf = add_rel(Rz.reshape(N * T, S, D), tr['z1'], tr['f2'])
        R = Rx1 + lin_rel(lin_rel(Rf, tr['g'], b.mlp[2].weight), tr['m_in'], b.mlp[0].weight)
        xs, sa, st = tr['space']
        ras = []
        if model.use_cls:
            k = tr['cls']
            Rc1, Rcf = add_rel(Rc, k['c1'], k['cf2'])
            Rc1 = Rc1 + lin_rel(lin_rel(Rcf, k['cg'], b.mlp[2].weight), k['cn'], b.mlp[0].weight)
            Rc0, Rcm = add_rel(Rc1, k['c'], k['cm'])
            Rca = k['ca'] / T * sdiv(Rcm, k['cm']).unsqueeze(1)             # ReduceMean
            Rxs, Rsp = add_rel(R, xs, sa[:, 1:])
            Rsa = torch.cat([Rca.reshape(N * T, 1, D), Rsp], dim=1)
            Rh = attn_rel(Rsa, st, ras)
            Rxs = Rxs + Rh[:, 1:]
            Rc = Rc0 + Rh[:, :1].reshape(N, T, 1, D).sum(dim=1)            # Expand: summed
        else:
            Rxs, Rsa = add_rel(R, xs, sa)
            Rxs = Rxs + attn_rel(Rsa, st, ras)
        R = Rxs.reshape(N, T, S, D).transpose(1, 2).reshape(N * S, T, D)
        xt, ta, tt = tr['time']
        Rxt, Rta = add_rel(R, xt, ta)
        rat = []
        R = Rxt + attn_rel(Rta, tt, rat)
        Rz = R.reshape(N, S, T, D).transpose(1, 2)
        RAs = rat + ras + RAs
    return RAs


# ---- the methods -----------------------------------------------------------------------------

def fuse(X, how):
    if how == 'mean':
        return X.mean(dim=1)
    if how == 'max':
        return X.max(dim=1).values
    return X.min(dim=1).values


def discard(F_, ratio, cls):
    """Zero the lowest floor(ratio * count) entries of each (n, n) matrix, class-token entries
    kept; ties broken by the lower flat index."""
    G, n, _ = F_.shape
    F_ = F_.clone()
    lo = 1 if cls else 0
    for g in range(G):
        sub = F_[g, lo:, lo:]
        flat = sub.reshape(-1)
        k = int(math.floor(ratio * flat.numel()))
        if k <= 0:
            continue
        order = np.lexsort((np.arange(flat.numel()), flat.numpy()))
        idx = torch.from_numpy(order[:k])
        rows, cols = idx // sub.shape[1], idx % sub.shape[1]
        F_[g, lo + rows, lo + cols] = 0
    return F_


def dense(m, F_g, grid, has_cls, residual_normalised):
    """(G, n, n) group matrices of one sample -> the (ntok, ntok) matrix."""
    T, Hh, Ww = grid
    S, off = Hh * Ww, (1 if has_cls else 0)
    ntok = T * S + off
    idx = torch.arange(T * S).reshape(T, S) + off
    M = torch.zeros(ntok, ntok, dtype=torch.float64)
    covered = torch.zeros(ntok, dtype=torch.bool)
    if residual_normalised:
        F_g = F_g + torch.eye(F_g.shape[-1], dtype=torch.float64)
        F_g = F_g / F_g.sum(dim=-1, keepdim=True)
    if m['kind'] == 'joint':
        M[:, :] = F_g[0]
        covered[:] = True
    elif m['kind'] == 'time':
        for s in range(S):
            tok = idx[:, s]
            M[tok[:, None], tok[None, :]] = F_g[s]
            covered[tok] = True
    elif m['cls']:      # TimeSformer's class token in every frame: its row averaged
        for t in range(T):
            tok = torch.cat([torch.zeros(1, dtype=torch.long), idx[t]])
            M[idx[t][:, None], tok[None, :]] = F_g[t][1:]
            M[0, tok] += F_g[t][0] / T
            covered[tok] = True
    else:
        for t in range(T):
            tok = idx[t]
            M[tok[:, None], tok[None, :]] = F_g[t]
            covered[tok] = True
    if residual_normalised:
        M[~covered, ~covered] = 1.0
    return M


def explain(model, x, method, targets=None, head_fusion='mean', discard_ratio=0.0, start_layer=0,
            grid=None):
    """(N, T', H', W') token relevance of every sample of x (numpy float32 input)."""
    x = torch.from_numpy(np.asarray(x, np.float64))
    if grid is None:
        grid = tuple(model.grid) if hasattr(model, 'grid') else None
    out = []
    for i in range(x.shape[0]):
        rec = Rec()
        with torch.enable_grad():
            logits = forward(model, x[i:i + 1], rec)
            tgt = int(logits.argmax()) if targets is None else int(targets[i])
            if method != 'rollout':
                model.zero_grad()
                logits[0, tgt].backward()
        if grid is None:   # vivit: (T/2, H/8, W/8)
            grid = (x.shape[2] // 2, x.shape[3] // 8, x.shape[4] // 8)
        with torch.no_grad():
            RAs = lrp(model, rec, tgt) if method == 'transformer-attribution' else None
            has_cls = model.stx_kind == 'vivit' or getattr(model, 'use_cls', False)
            maps = rec.maps
            per_block = 1 if model.stx_kind == 'vivit' else 2
            P = grid[0] * grid[1] * grid[2]
            ntok = P + (1 if has_cls else 0)
            R = torch.eye(ntok, dtype=torch.float64)
            for j, m in enumerate(maps):
                if j // per_block < start_layer:
                    continue
                A = m['A'].detach()
                G = A.shape[0]
                if method == 'rollout':
                    Fg = fuse(A, head_fusion)
                    if discard_ratio > 0:
                        Fg = discard(Fg, discard_ratio, m['cls'])
                    R = dense(m, Fg, grid, has_cls, True) @ R
                elif method == 'generic-attention':
                    Fg = fuse((m['A'].grad * A).clamp(min=0), head_fusion)
                    R = R + dense(m, Fg, grid, has_cls, False) @ R
                else:
                    Fg = fuse((m['A'].grad * RAs[j]).clamp(min=0), head_fusion)
                    R = dense(m, Fg, grid, has_cls, True) @ R
                assert G == Fg.shape[0]
            if has_cls:
                r = R[0, 1:]
            elif 'w' in rec.readout:
                r = rec.readout['w'][0].detach() @ R
            else:
                r = R.mean(dim=0)
        out.append(r.reshape(grid).numpy())
    return np.stack(out)


def main():
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument('model')
    ap.add_argument('input')
    ap.add_argument('--method', default='rollout')
    ap.add_argument('--head-fusion', default='mean')
    ap.add_argument('--discard-ratio', type=float, default=0.0)
    ap.add_argument('--start-layer', type=int, default=0)
    ap.add_argument('-o', '--out', required=True)
    a = ap.parse_args()
    torch.set_num_threads(2)
    model = load(a.model)
    r = explain(model, np.load(a.input), a.method, head_fusion=a.head_fusion,
                discard_ratio=a.discard_ratio, start_layer=a.start_layer)
    np.save(a.out, r.astype(np.float32))


if __name__ == '__main__':
    main()
