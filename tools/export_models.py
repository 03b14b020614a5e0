#!/usr/bin/python3
"""Export the stx test models (random weights) to ONNX, with golden inputs and outputs.

For every model NAME this writes, into --out (default build/models):
    NAME.onnx          opset 17, constant-folded, input 'input', output 'output', dynamic batch
                       axis 'N' (dim 0 of both), metadata_props {'stx.layout': 'NCTHW' | 'NCT'}
    NAME.input.npy     a seeded random float32 input (see random_clip)
    NAME.output.npy    PyTorch's float32 output for that input (the golden)
and for r3d_18 also NAME.input_b2.npy / NAME.output_b2.npy (a batch of two: the input above
followed by a second random clip, and PyTorch's output on that batch).
manifest.json lists every model present in the directory, with shapes and the ONNX op types
(rebuilt from the files themselves, so it is the same whether models were exported now or
earlier).

Models: torchvision's r3d_18, mc3_18, r2plus1d_18 (1x3x16x112x112 -> 400) and s3d (1x3x16x209x209
-> 400: it does not accept 112x112, see MODELS), plus vivit_tiny, cnn_lstm and tcn defined below.
Weights are random (weights=None, never downloaded); BatchNorm statistics are calibrated then
perturbed (see _randomize) so that activations stay O(1) and BN folding matters.

Everything is seeded per model (from the model's name), so `--only X` produces exactly the files
a full run produces; the output is byte-identical from run to run. Models whose files all exist
are skipped unless --force. About 35 s for everything on 2 cores (PyTorch's batch-1 Conv3d is
slow here: see export_one).

Run with Debian's interpreter: /usr/bin/python3 tools/export_models.py [--out DIR] [--only a,b]
"""

import argparse
import collections
import json
import os
import sys
import tempfile
import time
import warnings
import zlib

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

OPSET = 17
BASE_SEED = 1234
DYNAMIC_AXES = {'input': {0: 'N'}, 'output': {0: 'N'}}


# ----------------------------------------------------------------------------------------------
# Models written here
# ----------------------------------------------------------------------------------------------

class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + MHA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim, heads, mlp_dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ViViTTiny(nn.Module):
    """ViViT-style video transformer: tubelet embedding (Conv3d), class token, learned positional
    embedding, pre-norm encoder blocks, linear head on the class token. Input N,3,8,32,32."""

    def __init__(self, frames=8, size=32, tubelet=(2, 8, 8), dim=64, depth=2, heads=4,
                 mlp_dim=128, num_classes=10):
        super().__init__()
        self.embed = nn.Conv3d(3, dim, kernel_size=tubelet, stride=tubelet)
        tokens = (frames // tubelet[0]) * (size // tubelet[1]) * (size // tubelet[2])
        self.cls_token = nn.Parameter(0.1 * torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(0.1 * torch.randn(1, tokens + 1, dim))
        self.blocks = nn.ModuleList([EncoderBlock(dim, heads, mlp_dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.embed(x)                      # N, D, T', H', W'
        x = x.flatten(2).transpose(1, 2)       # N, L, D
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return self.head(x[:, 0])


class CNNLSTM(nn.Module):
    """Per-frame 2-D CNN + LSTM over time. Input N,C,T,H,W (permuted to N·T frames inside)."""

    def __init__(self, num_classes=10, hidden=64):
        super().__init__()

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True), nn.MaxPool2d(2)]

        # 32x32 -> 16 -> 8 -> 4, then global average pool over the 4x4 map
        self.cnn = nn.Sequential(*block(3, 16), *block(16, 32), *block(32, 64),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.lstm = nn.LSTM(64, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        n, c, t, h, w = x.shape
        frames = x.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
        feats = self.cnn(frames).reshape(n, t, -1)
        out, _ = self.lstm(feats)
        return self.fc(out[:, -1])


class DilatedResidual(nn.Module):
    def __init__(self, dilation, channels):
        super().__init__()
        self.conv_dilated = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.conv_1x1 = nn.Conv1d(channels, channels, 1)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x):
        return x + self.dropout(self.conv_1x1(F.relu(self.conv_dilated(x))))


class TCNStage(nn.Module):
    def __init__(self, in_dim, maps, num_classes, dilations):
        super().__init__()
        self.conv_in = nn.Conv1d(in_dim, maps, 1)
        self.layers = nn.ModuleList([DilatedResidual(d, maps) for d in dilations])
        self.conv_out = nn.Conv1d(maps, num_classes, 1)

    def forward(self, x):
        x = self.conv_in(x)
        for layer in self.layers:
            x = layer(x)
        return self.conv_out(x)


class MSTCN(nn.Module):
    """MS-TCN-style action segmentation on per-frame features. Input N,64,T -> N,7,T logits of
    the last stage; stage 2 refines softmax(stage 1)."""

    def __init__(self, in_dim=64, maps=32, num_classes=7, dilations=(1, 2, 4, 8)):
        super().__init__()
        self.stage1 = TCNStage(in_dim, maps, num_classes, dilations)
        self.stage2 = TCNStage(num_classes, maps, num_classes, dilations)

    def forward(self, x):
        out = self.stage1(x)
        return self.stage2(F.softmax(out, dim=1))


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------

def _tv(name):
    return lambda: getattr(torchvision.models.video, name)(weights=None)


class Spec(collections.namedtuple('Spec', 'ctor shape layout batches calib_shape')):
    """ctor: builds the module; shape: the golden input's shape; layout: stx.layout metadata;
    batches: extra batch sizes that get goldens too; calib_shape: the clip on which BatchNorm
    statistics are measured (smaller than `shape` where that is much cheaper)."""


# s3d: torchvision's S3D ends with AvgPool3d(kernel=(2,7,7)), so it needs H,W >= 209 (and T >= 13);
# 16x112x112 fails ("input image (T: 2 H: 3 W: 3) smaller than kernel size"). 209 is the smallest
# spatial size it accepts at T=16.
MODELS = collections.OrderedDict([
    ('r3d_18', Spec(_tv('r3d_18'), (1, 3, 16, 112, 112), 'NCTHW', (2,), (1, 3, 8, 56, 56))),
    ('mc3_18', Spec(_tv('mc3_18'), (1, 3, 16, 112, 112), 'NCTHW', (), (1, 3, 8, 56, 56))),
    ('r2plus1d_18', Spec(_tv('r2plus1d_18'), (1, 3, 16, 112, 112), 'NCTHW', (), (1, 3, 8, 56, 56))),
    ('s3d', Spec(_tv('s3d'), (1, 3, 16, 209, 209), 'NCTHW', (), (1, 3, 13, 209, 209))),
    ('vivit_tiny', Spec(ViViTTiny, (1, 3, 8, 32, 32), 'NCTHW', (), (1, 3, 8, 32, 32))),
    ('cnn_lstm', Spec(CNNLSTM, (1, 3, 8, 32, 32), 'NCTHW', (), (2, 3, 8, 32, 32))),
    ('tcn', Spec(MSTCN, (1, 64, 100), 'NCT', (), (1, 64, 100))),
])


def model_seed(name):
    """Stable per-model seed (independent of which other models are exported)."""
    return BASE_SEED + zlib.crc32(name.encode()) % 100000


def _randomize(model, calib_input, gen):
    """Make the model numerically meaningful with random weights.

    BatchNorm: running statistics are first measured on a random calibration clip (one train-mode
    forward with cumulative averaging) so that activations stay O(1) through deep nets (with
    PyTorch's default init and arbitrary statistics they vanish or explode, e.g. S3D's output then
    does not depend on its input at all), then perturbed: mean += N(0, 0.1)*std, var *= U(0.5, 1.5),
    weight ~ U(0.5, 1.5), bias ~ N(0, 0.1). So the statistics are far from identity and a wrong BN
    fold shows. LayerNorm gets weight ~ U(0.5, 1.5), bias ~ N(0, 0.1); every all-zero bias
    (MultiheadAttention projections, torchvision's fc) gets N(0, 0.1)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        if bns:
            momenta = [m.momentum for m in bns]
            for m in bns:
                m.reset_running_stats()
                m.momentum = None          # cumulative average: stats of this one batch
            model.train()
            model(torch.from_numpy(calib_input))
            model.eval()
            for m, mom in zip(bns, momenta):
                m.momentum = mom
                shape = m.running_mean.shape
                std = m.running_var.sqrt()
                m.running_mean.add_(0.1 * std * torch.randn(shape, generator=gen))
                m.running_var.mul_(0.5 + torch.rand(shape, generator=gen))
                if m.affine:
                    m.weight.copy_(0.5 + torch.rand(shape, generator=gen))
                    m.bias.copy_(0.1 * torch.randn(shape, generator=gen))
        for m in model.modules():
            if isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
        for name, p in model.named_parameters():
            if name.endswith('bias') and p.dim() == 1 and not p.any():
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


def build_model(name):
    """The seeded, randomised model in eval mode (identical on every call)."""
    spec = MODELS[name]
    seed = model_seed(name)
    torch.manual_seed(seed)
    model = spec.ctor()
    calib = random_clip(spec.calib_shape, seed + 7)
    _randomize(model, calib, torch.Generator().manual_seed(seed + 1))
    model.eval()
    return model


def random_clip(shape, seed):
    """Seeded float32 test signal: 0.5 * N(0,1) noise plus a coarse N(0,1) field (blocks of
    ~1/8 of each temporal/spatial extent, per channel). Like a blocky video: unlike pure noise it
    survives global average pooling, so the models' outputs depend strongly on the input."""
    rng = np.random.RandomState(seed)
    shape = tuple(shape)
    x = 0.5 * rng.standard_normal(shape)
    blocks = [max(1, d // 8) for d in shape[2:]]
    field = rng.standard_normal(shape[:2] + tuple(-(-d // k) for d, k in zip(shape[2:], blocks)))
    for axis, k in enumerate(blocks):
        field = np.repeat(field, k, axis=2 + axis)
    x += field[(slice(None), slice(None)) + tuple(slice(0, d) for d in shape[2:])]
    return np.ascontiguousarray(x, dtype=np.float32)


def make_input(name, batch=1):
    """The test input (see random_clip); sample 0 of any batch is the batch-1 input."""
    shape = (1,) + tuple(MODELS[name].shape[1:])
    seed = model_seed(name)
    return np.concatenate([random_clip(shape, seed + 100 + i) for i in range(batch)], axis=0)


def file_names(name):
    files = {'onnx': name + '.onnx', 'input': name + '.input.npy', 'output': name + '.output.npy'}
    for b in MODELS[name].batches:
        files['input_b%d' % b] = '%s.input_b%d.npy' % (name, b)
        files['output_b%d' % b] = '%s.output_b%d.npy' % (name, b)
    return files


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------

def _umask_mode():
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic_write(path, write):
    """Write via a temporary file + rename, so an interrupted run leaves no partial file."""
    d = os.path.dirname(path) or '.'
    fd, tmp = tempfile.mkstemp(dir=d, prefix='.tmp-', suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
        os.chmod(tmp, _umask_mode())          # mkstemp creates files 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _save_npy(path, arr):
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    _atomic_write(path, lambda f: np.save(f, arr, allow_pickle=False))


def _forward(model, x):
    with torch.no_grad():
        y = model(torch.from_numpy(x))
    return y.detach().numpy().astype(np.float32)


def export_one(name, out_dir, check=False):
    """Export one model and write its goldens. The batch-1 golden is the output of the forward
    pass that torch.onnx.export traces (captured by a forward hook; tracing computes with the
    ordinary eager kernels, so it is bit-identical to model(x) -- `--check` verifies that), which
    saves one full forward per model: this Debian PyTorch runs batch-1 Conv3d of the deep layers
    through slow_conv3d on a generic BLAS (several seconds per forward)."""
    spec = MODELS[name]
    files = file_names(name)
    steps = {}
    t = time.perf_counter()
    model = build_model(name)
    steps['build'] = time.perf_counter() - t
    x = make_input(name)
    assert x.shape == tuple(spec.shape)

    captured = []
    hook = model.register_forward_hook(lambda mod, inp, out: captured.append(out.detach().clone()))
    onnx_path = os.path.join(out_dir, files['onnx'])
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix='.tmp-', suffix='.onnx')
    os.close(fd)
    t = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            torch.onnx.export(model, (torch.from_numpy(x),), tmp, export_params=True,
                              opset_version=OPSET, do_constant_folding=True,
                              input_names=['input'], output_names=['output'],
                              dynamic_axes=DYNAMIC_AXES)
        hook.remove()
        proto = onnx.load(tmp)
        onnx.helper.set_model_props(proto, {'stx.layout': spec.layout})
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, onnx_path)
    finally:
        hook.remove()
        if os.path.exists(tmp):
            os.unlink(tmp)
    steps['export'] = time.perf_counter() - t
    msgs = sorted({str(w.message).split('\n')[0][:120] for w in caught})
    if len(captured) == 1:
        y = captured[0].numpy().astype(np.float32)
    else:                                   # the exporter ran the model other than once
        y = _forward(model, x)

    info = {'max_abs_output': float(np.abs(y).max()), 'warnings': msgs, 'steps': steps}
    need_b2 = check or 2 in spec.batches
    if need_b2:
        t = time.perf_counter()
        x2 = make_input(name, 2)
        y2 = _forward(model, x2)
        steps['batch2'] = time.perf_counter() - t
        scale = max(np.abs(y).max(), 1e-30)
        # How much the output depends on the input (a golden dominated by biases would test
        # little): max|f(x') - f(x)| / max|f(x)| for a second random input x'.
        info['input_sensitivity'] = float(np.abs(y2[1] - y[0]).max() / scale)
        info['batch2_vs_batch1'] = float(np.abs(y2[0] - y[0]).max() / scale)
    if check:
        t = time.perf_counter()
        info['golden_is_eager'] = bool(np.array_equal(_forward(model, x), y))
        steps['check'] = time.perf_counter() - t
    for b in spec.batches:
        xb = x2 if b == 2 else make_input(name, b)
        yb = y2 if b == 2 else _forward(model, xb)
        _save_npy(os.path.join(out_dir, files['input_b%d' % b]), xb)
        _save_npy(os.path.join(out_dir, files['output_b%d' % b]), yb)
    # Golden files last: their presence marks the model as complete.
    _save_npy(os.path.join(out_dir, files['input']), x)
    _save_npy(os.path.join(out_dir, files['output']), y)
    return info


# ----------------------------------------------------------------------------------------------
# Manifest (rebuilt from the files on disk)
# ----------------------------------------------------------------------------------------------

def _npy_shape(path):
    return list(np.load(path, mmap_mode='r').shape)


def _dims(value_info):
    dims = []
    for d in value_info.type.tensor_type.shape.dim:
        dims.append(d.dim_param if d.HasField('dim_param') else d.dim_value)
    return dims


def onnx_summary(path):
    proto = onnx.load(path)
    ops = {}
    for node in proto.graph.node:
        key = node.op_type if node.domain in ('', 'ai.onnx') else node.domain + '.' + node.op_type
        ops[key] = ops.get(key, 0) + 1
    params = sum(int(np.prod(t.dims)) for t in proto.graph.initializer)
    return {
        'opset': max((o.version for o in proto.opset_import if o.domain in ('', 'ai.onnx')),
                     default=0),
        'metadata': {p.key: p.value for p in proto.metadata_props},
        'graph_input': _dims(proto.graph.input[0]),
        'graph_output': _dims(proto.graph.output[0]),
        'nodes': len(proto.graph.node),
        'ops': dict(sorted(ops.items())),
        'initializer_elements': params,
    }


def complete(name, out_dir):
    return all(os.path.exists(os.path.join(out_dir, f)) for f in file_names(name).values())


def write_manifest(out_dir):
    entries = []
    for name in MODELS:
        if not complete(name, out_dir):
            continue
        files = file_names(name)
        path = os.path.join(out_dir, files['onnx'])
        summary = onnx_summary(path)
        entry = {
            'name': name,
            'onnx': files['onnx'],
            'onnx_bytes': os.path.getsize(path),
            'layout': MODELS[name].layout,
            'input': files['input'],
            'output': files['output'],
            'input_shape': _npy_shape(os.path.join(out_dir, files['input'])),
            'output_shape': _npy_shape(os.path.join(out_dir, files['output'])),
            'dynamic_axes': DYNAMIC_AXES,
        }
        entry.update(summary)
        extra = []
        for b in MODELS[name].batches:
            fi, fo = files['input_b%d' % b], files['output_b%d' % b]
            extra.append({'batch': b, 'input': fi, 'output': fo,
                          'input_shape': _npy_shape(os.path.join(out_dir, fi)),
                          'output_shape': _npy_shape(os.path.join(out_dir, fo))})
        entry['extra_batches'] = extra
        entries.append(entry)
    doc = {'generator': 'tools/export_models.py', 'opset': OPSET, 'seed': BASE_SEED,
           'torch': torch.__version__.split('+')[0], 'torchvision':
           torchvision.__version__.split('+')[0], 'onnx': onnx.__version__, 'models': entries}
    text = json.dumps(doc, indent=2) + '\n'
    _atomic_write(os.path.join(out_dir, 'manifest.json'), lambda f: f.write(text.encode()))
    return entries


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default='build/models', help='output directory (default build/models)')
    ap.add_argument('--only', default='', help='comma-separated model names (default: all)')
    ap.add_argument('--force', action='store_true', help='re-export even if files exist')
    ap.add_argument('--check', action='store_true',
                    help='also measure input sensitivity and verify the golden against eager')
    ap.add_argument('--list', action='store_true', help='list the model names and exit')
    ap.add_argument('--threads', type=int, default=os.cpu_count() or 1,
                    help='PyTorch intra-op threads (default: all cores)')
    args = ap.parse_args(argv)

    if args.list:
        for name, spec in MODELS.items():
            print('%-12s %-6s %s' % (name, spec.layout, 'x'.join(map(str, spec.shape))))
        return 0
    names = [n.strip() for n in args.only.split(',') if n.strip()] or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error('unknown model(s): %s (known: %s)' % (', '.join(unknown), ', '.join(MODELS)))
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(max(1, args.threads))

    t_all = time.perf_counter()
    for name in names:
        if complete(name, args.out) and not args.force:
            print('%-12s cached' % name, flush=True)
            continue
        t0 = time.perf_counter()
        info = export_one(name, args.out, args.check)
        extra = ''.join('  %s=%.3g' % (k, info[k]) for k in
                        ('input_sensitivity', 'batch2_vs_batch1') if k in info)
        if 'golden_is_eager' in info:
            extra += '  golden_is_eager=%s' % info['golden_is_eager']
        print('%-12s exported in %5.1f s (%s)  max|y|=%.3g%s'
              % (name, time.perf_counter() - t0,
                 ', '.join('%s %.1f' % kv for kv in info['steps'].items()),
                 info['max_abs_output'], extra), flush=True)
        for w in info['warnings']:
            print('    torch warning: ' + w)
    entries = write_manifest(args.out)
    print('manifest: %d models in %s; total %.1f s'
          % (len(entries), os.path.join(args.out, 'manifest.json'), time.perf_counter() - t_all))
    return 0


if __name__ == '__main__':
    sys.exit(main())
