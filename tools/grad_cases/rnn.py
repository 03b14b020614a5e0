"""Gradient cases for the recurrent layers: LSTM and GRU (backpropagation through time).

Graph inputs (differentiated) are X, initial_h, initial_c and, in the "weights" cases, W, R, B
and P too; everything else is an initializer. Each case covers an attribute variant that changes
the maths: direction (forward / reverse / bidirectional), layout 0/1, sequence_lens (including an
empty and a short sequence), clip, input_forget, peepholes, GRU linear_before_reset 0/1, omitted
optional inputs and omitted outputs. Clip cases pick values whose gate pre-activations stay away
from +-clip (checked with a numpy forward below), where the gradient is not defined."""
import numpy as np

from ._common import rng, single_op


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _preacts(kind, x, w, r, b, h0, c0, p, lens, dirs, attrs):
    """All gate pre-activations the forward clips (numpy, layout 0 inputs), for margin checks."""
    T, N, _ = x.shape
    H = r.shape[2]
    clip = attrs.get("clip", np.inf)
    lbr = attrs.get("linear_before_reset", 0)
    fgt = attrs.get("input_forget", 0)
    out = []
    for d in range(dirs):
        rev = d == 1 or attrs.get("direction") == "reverse"
        for n in range(N):
            L = T if lens is None else int(lens[n])
            h = h0[d, n].copy() if h0 is not None else np.zeros(H)
            c = c0[d, n].copy() if c0 is not None else np.zeros(H)
            for s in range(L):
                t = L - 1 - s if rev else s
                wb = b[d, : b.shape[1] // 2] if b is not None else 0
                rb = b[d, b.shape[1] // 2:] if b is not None else np.zeros(r.shape[1])
                xw = w[d] @ x[t, n] + wb
                if kind == "LSTM":
                    a = xw + r[d] @ h + rb
                    ai, ao, af, ag = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
                    if p is not None:
                        ai = ai + p[d, :H] * c
                        af = af + p[d, 2 * H:] * c
                    i = _sig(np.clip(ai, -clip, clip))
                    f = 1 - i if fgt else _sig(np.clip(af, -clip, clip))
                    g = np.tanh(np.clip(ag, -clip, clip))
                    c = f * c + i * g
                    if p is not None:
                        ao = ao + p[d, H:2 * H] * c
                    o = _sig(np.clip(ao, -clip, clip))
                    h = o * np.tanh(c)
                    out += [ai, ao, ag] + ([] if fgt else [af])
                else:
                    hr = r[d] @ h
                    azr = xw[:2 * H] + hr[:2 * H] + rb[:2 * H]
                    z = _sig(np.clip(azr[:H], -clip, clip))
                    rr = _sig(np.clip(azr[H:], -clip, clip))
                    if lbr:
                        ah = xw[2 * H:] + rr * (hr[2 * H:] + rb[2 * H:])
                    else:
                        ah = xw[2 * H:] + r[d, 2 * H:] @ (rr * h) + rb[2 * H:]
                    hh = np.tanh(np.clip(ah, -clip, clip))
                    h = (1 - z) * hh + z * h
                    out += [azr, ah]
    return np.concatenate(out) if out else np.zeros(0)


def _rnn_case(name, kind, seed, T=4, N=3, I=3, H=4, dirs=1, layout=0, attrs=None, lens=None,
              bias=True, h0=True, c0=True, peep=False, weights_in=False, outputs=None,
              scale=0.6):
    """Builds one LSTM/GRU case. outputs: which of (Y, Y_h[, Y_c]) are produced (default all)."""
    attrs = dict(attrs or {})
    if dirs == 2:
        attrs["direction"] = "bidirectional"
    if layout:
        attrs["layout"] = layout
    attrs["hidden_size"] = H
    G = 4 if kind == "LSTM" else 3
    clip = attrs.get("clip")
    n_out_all = 3 if kind == "LSTM" else 2
    outputs = list(outputs) if outputs is not None else [True] * n_out_all
    outputs += [False] * (n_out_all - len(outputs))
    # with clip: find values whose pre-activations are clear of the bounds (and some clipped)
    for attempt in range(200):
        r = rng(seed * 1000 + attempt)
        x = r.standard_normal((T, N, I))
        w = scale * r.standard_normal((dirs, G * H, I))
        rr = scale * r.standard_normal((dirs, G * H, H))
        b = 0.3 * r.standard_normal((dirs, 2 * G * H)) if bias else None
        hi = 0.5 * r.standard_normal((dirs, N, H)) if h0 else None
        ci = 0.5 * r.standard_normal((dirs, N, H)) if (c0 and kind == "LSTM") else None
        p = 0.5 * r.standard_normal((dirs, 3 * H)) if (peep and kind == "LSTM") else None
        if clip is None:
            break
        a = np.abs(_preacts(kind, x, w, rr, b, hi, ci, p, lens, dirs, attrs))
        if np.min(np.abs(a - clip)) > 2e-3 and np.sum(a > clip) >= 3:
            break
    else:
        raise SystemExit(f"{name}: no seed keeps the pre-activations away from clip")
    if layout:  # X [N,T,I], states [N,D,H]
        x = x.transpose(1, 0, 2)
        hi = hi.transpose(1, 0, 2) if hi is not None else None
        ci = ci.transpose(1, 0, 2) if ci is not None else None

    names = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
    vals = {"X": x, "W": w, "R": rr, "B": b, "initial_h": hi, "initial_c": ci, "P": p,
            "sequence_lens": None if lens is None else np.asarray(lens, np.int32)}
    if kind == "GRU":
        names = names[:6]
    graph_in = ["X", "initial_h", "initial_c"] + (["W", "R", "B", "P"] if weights_in else [])
    inputs, consts = [], {}
    for nm in names:
        v = vals[nm]
        if v is None:
            continue
        if nm in graph_in:
            inputs.append((nm, v))
        else:
            consts[nm] = v
    order = [nm if vals[nm] is not None else "" for nm in names]
    while order and order[-1] == "":
        order.pop()
    case = single_op(name, kind, inputs, n_outputs=n_out_all, consts=consts, attrs=attrs,
                     input_order=order)
    g = case.model.graph
    # drop the outputs not asked for (node output "" and no graph output)
    for k in range(n_out_all - 1, -1, -1):
        if not outputs[k]:
            oname = g.node[0].output[k]
            if k == len(g.node[0].output) - 1:
                del g.node[0].output[k]
            else:
                g.node[0].output[k] = ""
            for j, vi in enumerate(g.output):
                if vi.name == oname:
                    del g.output[j]
                    break
    return case


def cases():
    L, G = "LSTM", "GRU"
    return [
        # LSTM
        _rnn_case("grad_rnn_lstm_basic", L, 1),
        _rnn_case("grad_rnn_lstm_weights_peep", L, 2, peep=True, weights_in=True),
        _rnn_case("grad_rnn_lstm_reverse_layout1", L, 3, attrs={"direction": "reverse"},
                  layout=1, peep=True),
        _rnn_case("grad_rnn_lstm_bidir_seqlens", L, 4, dirs=2, lens=[4, 0, 2], peep=True,
                  weights_in=True),
        _rnn_case("grad_rnn_lstm_bidir_layout1_seqlens", L, 5, dirs=2, layout=1,
                  lens=[1, 4, 3]),
        _rnn_case("grad_rnn_lstm_reverse_seqlens", L, 6, attrs={"direction": "reverse"},
                  lens=[3, 4, 0], weights_in=True),
        _rnn_case("grad_rnn_lstm_clip", L, 7, attrs={"clip": 0.9}, peep=True, weights_in=True,
                  scale=1.0),
        _rnn_case("grad_rnn_lstm_clip_bidir", L, 8, dirs=2, attrs={"clip": 0.7}, lens=[2, 4, 3],
                  scale=1.0),
        _rnn_case("grad_rnn_lstm_input_forget", L, 9, attrs={"input_forget": 1}, peep=True,
                  weights_in=True),
        _rnn_case("grad_rnn_lstm_input_forget_clip", L, 10,
                  attrs={"input_forget": 1, "clip": 0.8}, dirs=2, scale=1.0),
        _rnn_case("grad_rnn_lstm_no_bias_no_state", L, 11, bias=False, h0=False, c0=False),
        _rnn_case("grad_rnn_lstm_only_yh", L, 12, dirs=2, outputs=[False, True, False],
                  lens=[4, 2, 3]),
        _rnn_case("grad_rnn_lstm_only_y", L, 13, outputs=[True], layout=1, weights_in=True),
        _rnn_case("grad_rnn_lstm_only_yc", L, 14, outputs=[False, False, True], peep=True),
        _rnn_case("grad_rnn_lstm_batch1_long", L, 15, T=9, N=1, I=2, H=3, weights_in=True),
        # GRU
        _rnn_case("grad_rnn_gru_basic", G, 21),
        _rnn_case("grad_rnn_gru_lbr", G, 22, attrs={"linear_before_reset": 1}),
        _rnn_case("grad_rnn_gru_weights", G, 23, weights_in=True),
        _rnn_case("grad_rnn_gru_lbr_weights", G, 24, attrs={"linear_before_reset": 1},
                  weights_in=True),
        _rnn_case("grad_rnn_gru_reverse_layout1_seqlens", G, 25,
                  attrs={"direction": "reverse"}, layout=1, lens=[2, 0, 4], weights_in=True),
        _rnn_case("grad_rnn_gru_lbr_bidir_seqlens", G, 26, dirs=2,
                  attrs={"linear_before_reset": 1}, lens=[4, 1, 0], weights_in=True),
        _rnn_case("grad_rnn_gru_bidir_layout1", G, 27, dirs=2, layout=1, lens=[3, 4, 2],
                  weights_in=True),
        _rnn_case("grad_rnn_gru_clip", G, 28, attrs={"clip": 0.8}, weights_in=True, scale=1.0),
        _rnn_case("grad_rnn_gru_lbr_clip_bidir", G, 29, dirs=2,
                  attrs={"linear_before_reset": 1, "clip": 0.7}, lens=[4, 3, 2], scale=1.0,
                  weights_in=True),
        _rnn_case("grad_rnn_gru_no_bias_no_state", G, 30, bias=False, h0=False,
                  attrs={"linear_before_reset": 1}),
        _rnn_case("grad_rnn_gru_only_yh", G, 31, outputs=[False, True], dirs=2, layout=1),
        _rnn_case("grad_rnn_gru_only_y_lbr", G, 32, outputs=[True], weights_in=True,
                  attrs={"linear_before_reset": 1, "direction": "reverse"}),
    ]
