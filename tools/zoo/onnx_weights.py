#!/usr/bin/python3
"""Rebuild a zoo model in PyTorch with the weights stored in its ONNX file.

    from onnx_weights import load_zoo_model
    model = load_zoo_model('action_r3d')                 # models/zoo/action_r3d.onnx
    model = load_zoo_model('action_r3d', 'some/where/action_r3d.onnx')

The architecture comes from tools/zoo/models.py (constructors: train_zoo.ACTION_MODELS[name]
['ctor'] for the action models, the phase model classes for phase_*); BatchNorm is folded
(models.fold_batchnorm) so that the module's parameters are exactly the exported ones. Every
parameter and buffer of the folded model is then filled from the ONNX graph:

  1. an initializer, Constant node output or Identity of one (the exporter shares equal-valued
     weights through Identity nodes) whose name is the state_dict key (most weights);
  2. an nn.LSTM's weights from the ONNX LSTM node(s) whose scope is the module's path (the
     exporter names W, R, B onnx::LSTM_*): W (dirs, 4H, I) and R (dirs, 4H, H) hold the gates in
     ONNX order i, o, f, c; PyTorch wants i, f, g(=c), o; B (dirs, 8H) = [W bias, R bias];
     the k-th LSTM node of a scope is layer k, direction 1 the _reverse weights;
  3. any parameter still missing from a constant consumed by a node of its module: the node's
     name gives the scope (e.g. /blocks.0/time_attn/MatMul or /blocks.0/mlp/mlp.0/MatMul ->
     module blocks.0.time_attn or blocks.0.mlp.0), the constant goes to that module's (or its
     descendants') one unfilled parameter of that shape, of the right role where the op says
     (Conv/Gemm/LayerNormalization input 1 = weight, 2 = bias). MatMul's second input is the
     weight transposed (Linear weights, MultiheadAttention.in_proj_weight, stored as
     onnx::MatMul_* in order of use), as is Gemm's without transB.

Nothing is hard-coded per model: a retrained model with a changed architecture loads as long as
models.py builds it. Anything left unfilled (or filled twice) raises an error naming it.

The returned module is in eval mode and carries the ONNX metadata: model.stx_meta (dict of the
metadata_props), model.stx_output_names (graph outputs, in order), and model.stx_output_index
(the output holding the class scores for a model whose forward returns a tuple: stx.output, else
0).
"""

import os
import re
import sys

import numpy as np
import onnx
from onnx import numpy_helper
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
import models as M  # noqa: E402

ZOO_DIR = os.path.join(ROOT, 'models', 'zoo')

PHASE_CTORS = {'phase_cnn': M.PhaseCNN, 'phase_mstcn': M.CausalMSTCN,
               'phase_cnn_lstm': M.PhaseCNNLSTM}


def zoo_constructor(name):
    """The constructor of zoo model `name` (train_zoo's ACTION_MODELS, else the phase classes,
    else a function of that name in models.py)."""
    if name in PHASE_CTORS:
        return PHASE_CTORS[name]
    try:
        import train_zoo
        spec = train_zoo.ACTION_MODELS.get(name)
        if spec is not None:
            return spec['ctor']
    except Exception:                                  # train_zoo mid-edit: fall back below
        pass
    ctor = getattr(M, name, None)
    if ctor is None:
        raise KeyError('unknown zoo model %r' % name)
    return ctor


def _constants(graph):
    """name -> numpy array for every initializer, Constant node output and Identity of one."""
    out = {}
    for init in graph.initializer:
        out[init.name] = numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == 'Constant' and node.output:
            for a in node.attribute:
                if a.name == 'value':
                    out[node.output[0]] = numpy_helper.to_array(a.t)
        elif node.op_type == 'Identity' and node.input and node.input[0] in out:
            out[node.output[0]] = out[node.input[0]]     # the exporter's shared equal weights
    return out


def _scope(node_name):
    """'/blocks.0/mlp/mlp.0/MatMul' -> ['blocks.0', 'mlp', 'mlp.0'] (the op's own name dropped)."""
    parts = [p for p in node_name.split('/') if p]
    return parts[:-1]


def _scope_matches(module_path, scope):
    """Does a module path (e.g. 'blocks.0.mlp.0') fit an exporter scope (e.g. ['blocks.0', 'mlp',
    'mlp.0'])? Each scope entry is the module's path relative to some enclosing scope, so the
    module path must end with the last entry and contain every entry, in order, as whole
    dotted segments (overlaps allowed: 'mlp' then 'mlp.0' both sit in '...mlp.0')."""
    if not scope:
        return module_path == ''
    segs = module_path.split('.') if module_path else []
    last = scope[-1].split('.')
    if segs[len(segs) - len(last):] != last:
        return False
    pos = 0
    for entry in scope:
        e = entry.split('.')
        found = -1
        for i in range(max(0, pos - len(e)), len(segs) - len(e) + 1):
            if segs[i:i + len(e)] == e and i + len(e) >= pos:
                found = i
                break
        if found < 0:
            return False
        pos = found + len(e)
    return pos == len(segs)


def _modules_for_scope(model, scope):
    """Modules whose path fits the scope, the longest paths first."""
    hits = [(p, m) for p, m in model.named_modules() if _scope_matches(p, scope)]
    hits.sort(key=lambda pm: -len(pm[0]))
    return hits


def _lstm_params(node, consts, hidden):
    """ONNX LSTM W, R, B -> per direction (w_ih, w_hh, b_ih, b_hh) in PyTorch gate order."""
    W = consts[node.input[1]]
    R = consts[node.input[2]]
    has_b = len(node.input) > 3 and node.input[3] != ''
    B = consts[node.input[3]] if has_b else np.zeros((W.shape[0], 8 * hidden), W.dtype)
    H = hidden
    # ONNX blocks i, o, f, c  ->  PyTorch i, f, g, o
    order = [0, 2, 3, 1]

    def reorder(a):                                   # a: (4H, ...) in ONNX order
        return np.concatenate([a[k * H:(k + 1) * H] for k in order], axis=0)

    out = []
    for d in range(W.shape[0]):
        out.append((reorder(W[d]), reorder(R[d]), reorder(B[d][:4 * H]), reorder(B[d][4 * H:])))
    return out


# ONNX op -> {input position: the PyTorch parameter name it holds}
_ROLES = {'Conv': {1: 'weight', 2: 'bias'}, 'ConvTranspose': {1: 'weight', 2: 'bias'},
          'LayerNormalization': {1: 'weight', 2: 'bias'},
          'BatchNormalization': {1: 'weight', 2: 'bias', 3: 'running_mean', 4: 'running_var'},
          'Gemm': {1: 'weight', 2: 'bias'}, 'MatMul': {1: 'weight'}}


def _as_parameter(node, j, value):
    """(value as the PyTorch parameter would hold it, parameter name or None) for constant input
    j of node; MatMul's second input is weight.T, Gemm's unless transB."""
    role = _ROLES.get(node.op_type, {}).get(j)
    if node.op_type == 'MatMul':
        if j != 1 or value.ndim != 2:
            return None, None
        return value.T, role
    if node.op_type == 'Gemm' and j == 1:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        return (value if attrs.get('transB', 0) else value.T), role
    return value, role


def _missing_param(scope_modules, filled, shape, role):
    """The one unfilled parameter/buffer of the innermost scope module (or its descendants) with
    this shape and, for a known role, a name ending in it (several: the module's own), else
    None (also when still ambiguous). Nodes outside every module (scope '') only fill the root
    module's own parameters."""
    for path, mod in scope_modules:
        prefix = path + '.' if path else ''
        deep = bool(path)                     # nodes outside any module: the root's own only
        entries = (list(mod.named_parameters(recurse=deep))
                   + list(mod.named_buffers(recurse=deep)))
        cands = [prefix + n for n, p in entries
                 if prefix + n not in filled and p.is_floating_point()
                 and tuple(p.shape) == tuple(shape)]
        if role:                                   # Conv/Gemm/LayerNorm input 2 is a bias...
            cands = [c for c in cands if c.split('.')[-1].endswith(role)]
        if len(cands) > 1:
            own = [c for c in cands if '.' not in c[len(prefix):]]
            if len(own) == 1:
                cands = own
        if len(cands) == 1:
            return cands[0]
        if len(cands) > 1:
            return None                       # ambiguous: left for the final missing check
    return None


def load_state_from_onnx(model, proto):
    """Fill every entry of model.state_dict() from the ONNX graph (see the module docstring).
    Returns the list of (state key, source) pairs used."""
    graph = proto.graph
    consts = _constants(graph)
    state = model.state_dict()
    filled = {}

    def put(key, value, source):
        if key in filled:
            raise ValueError('%s filled twice (%s and %s)' % (key, filled[key][1], source))
        want = tuple(state[key].shape)
        value = np.asarray(value)
        if tuple(value.shape) != want:
            if value.size == int(np.prod(want)) and source.startswith('name'):
                value = value.reshape(want)
            else:
                raise ValueError('%s: shape %s in the model, %s from %s'
                                 % (key, want, tuple(value.shape), source))
        filled[key] = (torch.from_numpy(np.array(value, copy=True)).to(state[key].dtype),
                       source)

    # 1. by name
    for key in state:
        if key in consts:
            put(key, consts[key], 'name ' + key)

    lstm_inputs = set()

    # 2. LSTM nodes, by scope
    lstm_nodes = {}
    for node in graph.node:
        if node.op_type == 'LSTM':
            lstm_nodes.setdefault(tuple(_scope(node.name)), []).append(node)
    for scope, nodes in lstm_nodes.items():
        mods = [(p, m) for p, m in _modules_for_scope(model, list(scope))
                if isinstance(m, torch.nn.LSTM)]
        if len(mods) != 1:
            raise ValueError('LSTM node scope %s: %d matching nn.LSTM modules'
                             % ('/'.join(scope), len(mods)))
        path, lstm = mods[0]
        prefix = path + '.' if path else ''
        for layer, node in enumerate(nodes):
            hidden = lstm.hidden_size
            for d, (wih, whh, bih, bhh) in enumerate(_lstm_params(node, consts, hidden)):
                sfx = '_l%d%s' % (layer, '_reverse' if d else '')
                src = 'LSTM %s' % node.name
                put(prefix + 'weight_ih' + sfx, wih, src)
                put(prefix + 'weight_hh' + sfx, whh, src)
                if lstm.bias:
                    put(prefix + 'bias_ih' + sfx, bih, src)
                    put(prefix + 'bias_hh' + sfx, bhh, src)
            lstm_inputs.update(i for i in node.input[1:4] if i)

    # 3. anything still missing, from the constants the nodes of its module consume: MatMul
    #    weights stored transposed under generated names, and initializers the exporter shared
    #    between equal-valued parameters (e.g. two LayerNorms still at their initial ones).
    for node in graph.node:
        if len(filled) == len(state):
            break
        scope = None
        for j, wname in enumerate(node.input):
            if j == 0 or wname not in consts or wname in lstm_inputs:
                continue
            value, role = _as_parameter(node, j, consts[wname])
            if value is None or value.dtype.kind != 'f':
                continue
            if scope is None:
                scope = _modules_for_scope(model, _scope(node.name))
            target = _missing_param(scope, filled, value.shape, role)
            if target is not None:
                put(target, value, '%s input %d %s via %s' % (node.op_type, j, wname, node.name))

    missing = [k for k in state if k not in filled]
    if missing:
        # parameters of modules the forward pass never calls (trained, then unused: e.g. the
        # hybrid transformer's frame-CNN target head) are not in the graph; they keep their
        # values, which cannot change an output
        called = _called_modules(model, graph)
        missing = [k for k in missing if k.rpartition('.')[0] in called]
        if missing:
            raise ValueError('not found in the ONNX file: %s' % ', '.join(missing))
        for k in state:
            if k not in filled:
                filled[k] = (state[k].detach().clone(), 'unused by the forward pass')
    model.load_state_dict({k: v for k, (v, _) in filled.items()}, strict=True)
    return [(k, src) for k, (_, src) in filled.items()]


def _called_modules(model, graph):
    """Names of the modules a forward pass on zeros (the graph input's shape, symbolic axes 2)
    calls."""
    dims = [d.dim_value if d.dim_value > 0 else 2
            for d in graph.input[0].type.tensor_type.shape.dim]
    names = {id(m): n for n, m in model.named_modules()}
    called = set()
    hooks = [m.register_forward_hook(lambda mod, i, o: called.add(names[id(mod)]))
             for m in model.modules()]
    try:
        with torch.no_grad():
            model(torch.zeros(dims))
    finally:
        for h in hooks:
            h.remove()
    return called


def load_zoo_model(name, onnx_path=None):
    """The zoo model `name` (eval mode, BatchNorm folded) with the weights of its ONNX file
    (default models/zoo/NAME.onnx). name None: taken from the file's stx.name metadata."""
    if onnx_path is None:
        if name is None:
            raise ValueError('give a name or an ONNX path')
        onnx_path = os.path.join(ZOO_DIR, name + '.onnx')
    proto = onnx.load(onnx_path)
    meta = {p.key: p.value for p in proto.metadata_props}
    if name is None:
        name = meta.get('stx.name') or re.sub(r'\.onnx$', '', os.path.basename(onnx_path))
    model = zoo_constructor(name)()
    M.fold_batchnorm(model)
    model.eval()
    load_state_from_onnx(model, proto)
    model.eval()
    outputs = [o.name for o in proto.graph.output]
    model.stx_meta = meta
    model.stx_name = name
    model.stx_output_names = outputs
    want = meta.get('stx.output')
    model.stx_output_index = outputs.index(want) if want in outputs else 0
    return model


def _check(names=None):
    """Compare every zoo model's PyTorch output (ONNX weights) with its goldens."""
    from zoo_common import preprocess
    torch.set_num_threads(2)
    names = names or sorted(f[:-5] for f in os.listdir(ZOO_DIR) if f.endswith('.onnx'))
    worst = 0.0
    clips = np.load(os.path.join(ZOO_DIR, 'action_test.npz'))
    proc = np.load(os.path.join(ZOO_DIR, 'procedure_test.npz'))

    def rel(a, b):
        return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))

    for name in names:
        try:
            model = load_zoo_model(name)
        except (ValueError, KeyError) as e:
            print('%-22s FAIL: %s' % (name, e))
            worst = float('inf')
            continue
        meta = model.stx_meta
        gold = np.load(os.path.join(ZOO_DIR, 'goldens', name + '.npz'))
        mean = std = None
        if 'stx.mean' in meta:
            mean = [float(v) for v in meta['stx.mean'].split(',')]
            std = [float(v) for v in meta['stx.std'].split(',')]
        with torch.no_grad():
            if name.startswith('action_'):
                x = preprocess(clips['video'], mean, std, meta['stx.layout'])
                errs = {'output': rel(model(torch.from_numpy(x)).numpy(), gold['output'])}
            elif name == 'phase_cnn':
                x = preprocess(proc['video'][gold['frames']], mean, std, 'NCHW')
                outs = model(torch.from_numpy(x))
                errs = {k: rel(o.numpy(), gold[k])
                        for k, o in zip(('features', 'logits', 'tools'), outs)}
            elif name == 'phase_mstcn':
                errs = {'output': rel(model(torch.from_numpy(gold['input'])).numpy(),
                                      gold['output'])}
            else:
                x = preprocess(proc['video'][gold['frames']][None], mean, std,
                               meta['stx.layout'])
                errs = {'output': rel(model(torch.from_numpy(x)).numpy(), gold['output'])}
        e = max(errs.values())
        worst = max(worst, e)
        print('%-22s %s  %s' % (name, ' '.join('%s %.2e' % kv for kv in errs.items()),
                                'ok' if e <= 1e-5 else 'FAIL'))
    return worst


if __name__ == '__main__':
    w = _check(sys.argv[1:])
    sys.exit(0 if w <= 1e-5 else 1)
