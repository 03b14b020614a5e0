/* rnn.c: recurrent layers, ONNX LSTM and GRU (semantics of opset 14, older forms accepted),
 * forward and reverse mode (backpropagation through time), float32 and float64.
 *
 * How a forward pass is organised:
 *   1. XW = X · Wᵀ for every time step, batch entry and direction with ONE GEMM. X is viewed as a
 *      [rows, input_size] matrix whatever the layout (rows are (t, b) for layout 0 and (b, t) for
 *      layout 1) and W as [num_directions * G * hidden, input_size], so XW is
 *      [rows, num_directions * G * hidden]. The biases Wb + Rb are folded in (C starts as the
 *      bias and the GEMM accumulates), except GRU's Rbh when linear_before_reset = 1 because
 *      there the reset gate multiplies it.
 *   2. For each direction, for each step s: HR = H_{s-1} · R_dᵀ (one GEMM over the batch), then
 *      the cell function combines, row by row, the XW row of the time step that batch entry is
 *      at, the HR row and the previous state.
 *
 * The cells (lstm_cell, gru_gates_zr, gru_update) are pure per-row functions of pre-activations
 * and the previous state. When the session will run backward through the node (need_backward at
 * prepare), the forward also records what the reverse pass needs, all in rows of X's order:
 *   - the gate activations, written over the XW row of the step once the cell has read it;
 *   - H_{t-1} (and C_{t-1} for LSTM) of the step;
 *   - GRU with linear_before_reset = 1: H_{t-1}·Rhᵀ + Rbh, which the reset gate multiplied;
 *   - where clip was active (only when clip is set): the clipped pre-activation has no gradient.
 * The reverse pass never modifies these, so it may run several times after one forward.
 *
 * Reverse pass (per direction, steps in the opposite order to the forward): the gradient dH of
 * the state is the incoming gradient (dY_h at the end, plus dY at each step) and the cell's
 * backward gives the gradients dA of the gate pre-activations and of the previous state; the
 * recurrence adds dA·R_d to dH_{t-1} (one GEMM per step). The dA of all steps are kept, so
 * dX = dA·W is one GEMM at the end, and so are the weight gradients when asked for
 * (dW = dAᵀ·X, dR = dAᵀ·H_{t-1}, dB = Σ dA, dP = Σ dA⊙C).
 *
 * sequence_lens: batch entry b runs only its first L_b steps (reverse direction: time steps
 * L_b-1 down to 0). Y is zero at t >= L_b (ONNX spec), Y_h/Y_c hold the state after L_b steps and
 * are zero when L_b = 0 (the choice onnxruntime makes; the spec is silent). None of these zeros
 * depends on the inputs, so no gradient flows through them.
 * clip bounds the gate pre-activations (inputs of f and g) to [-clip, clip], as onnxruntime does;
 * the gradient is zero where |pre-activation| > clip and passes at the bounds (PyTorch's clamp).
 * input_forget = 1 couples the gates as f = 1 - i (onnxruntime's reading of the spec).
 *
 * The element-type dependent code sits at the end of this file, in a section the file includes
 * twice (with `real` = float, then double); the float32 one uses oneDNN's sgemm, the float64 one
 * (for finite-difference tests) plain loops.
 */
#ifndef RNN_TYPED_SECTION

#include "ops.h"

#include <dnnl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef enum { RNN_LSTM, RNN_GRU } rnn_kind;

/* Attributes, read once and validated. */
typedef struct rnn_cfg {
    rnn_kind kind;
    int dirs;          /* num_directions: 1 or 2 */
    bool reverse;      /* direction == "reverse" (only meaningful when dirs == 1) */
    int layout;        /* 0: time-major, 1: batch-major */
    int64_t hidden;    /* hidden_size attribute, -1 when absent */
    float clip;        /* INFINITY when absent */
    bool input_forget; /* LSTM */
    bool lbr;          /* GRU linear_before_reset */
} rnn_cfg;

/* Sizes of one node, from its input shapes. */
typedef struct rnn_dims {
    int64_t T, N, I, H; /* seq_length, batch_size, input_size, hidden_size */
    int64_t G;          /* gates: 4 (LSTM iofc) or 3 (GRU zrh) */
    int64_t D;          /* num_directions */
    int layout;
} rnn_dims;

/* Scratch buffers, one block sized at prepare time. Buffers hold `real` elements (float or
 * double, as X). "rows" are X's rows: T*N of them, (t, b) or (b, t) per layout. */
typedef struct rnn_state {
    stx_context *ctx;
    rnn_cfg cfg;
    rnn_dims dm;
    stx_dtype dt;
    bool bwd;      /* the reverse-pass buffers below exist */
    bool saved;    /* the last forward succeeded and recorded what the reverse pass reads */
    int64_t *lens; /* [N] effective sequence length of each batch entry */
    void *xw;      /* [rows, D*G*H] X·Wᵀ + biases; with bwd, the gate activations afterwards */
    void *bias;    /* [D, G*H] biases folded into xw */
    void *hr; /* [N, G*H] H_{s-1}·R_dᵀ of the current step (GRU: z, r activations in place) */
    void *h;  /* [N, H] hidden state of the current direction */
    void *c;  /* [N, H] LSTM cell state */
    void *rh; /* [N, H] GRU (linear_before_reset = 0): r ⊙ H_{s-1} */
    /* Recorded by the forward when bwd (rows where a sequence has ended hold zeros): */
    void *hp;          /* [rows, D*H] H_{t-1} of each step */
    void *cp;          /* [rows, D*H] LSTM: C_{t-1} of each step */
    void *nh;          /* [rows, D*H] GRU, linear_before_reset = 1: H_{t-1}·Rhᵀ + Rbh */
    unsigned char *cm; /* [rows, D*G*H] 1 where clip was active (NULL when clip is unset) */
    /* Reverse-pass work buffers (bwd): */
    void *dg;  /* [rows, D*G*H] gradients of the gate pre-activations (X side: i o f c / z r h) */
    void *aux; /* [rows, D*H] GRU: r⊙H_{t-1} (lbr 0) or r⊙dA_h (lbr 1), for dR and dRbh */
    void *bg;  /* [N, G*H] the recurrent-side dA of the current step, batch-contiguous */
    void *bh;  /* [N, H] dH carried to the previous step */
    void *bc;  /* [N, H] LSTM: dC carried to the previous step */
    void *bt;  /* [N, H] GRU (lbr 0): d(r⊙H_{t-1}) of the current step */
} rnn_state;

static const char *const lstm_attrs[] = {
    "activation_alpha", "activation_beta", "activations",     "clip", "direction", "hidden_size",
    "input_forget",     "layout",          "output_sequence", NULL};
static const char *const gru_attrs[] = {
    "activation_alpha",    "activation_beta", "activations",     "clip", "direction", "hidden_size",
    "linear_before_reset", "layout",          "output_sequence", NULL};

/* ---------------------------------------------------------------------------------------------
 * Attributes
 */

static bool ascii_ieq(const char *a, const char *b) {
    for (; *a && *b; a++, b++) {
        char x = *a, y = *b;
        if (x >= 'A' && x <= 'Z') x = (char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = (char)(y - 'A' + 'a');
        if (x != y) return false;
    }
    return *a == *b;
}

/* Reads and validates the attributes of an LSTM/GRU node. */
static stx_status rnn_read_cfg(const stx_node *n, stx_err *e, rnn_cfg *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = strcmp(n->op_type, "LSTM") == 0 ? RNN_LSTM : RNN_GRU;

    const char *dir = stx__attr_str(n, "direction", "forward");
    if (strcmp(dir, "forward") == 0)
        cfg->dirs = 1;
    else if (strcmp(dir, "reverse") == 0) {
        cfg->dirs = 1;
        cfg->reverse = true;
    } else if (strcmp(dir, "bidirectional") == 0)
        cfg->dirs = 2;
    else
        return stx__node_err_n(n, e, STX_E_INVALID,
                               "direction '%s' is invalid (forward, reverse or bidirectional)",
                               dir);

    int64_t layout = stx__attr_int(n, "layout", 0);
    if (layout != 0 && layout != 1)
        return stx__node_err_n(n, e, STX_E_INVALID, "layout %lld is invalid (0 or 1)",
                               (long long)layout);
    cfg->layout = (int)layout;

    cfg->hidden = -1;
    if (stx__attr(n, "hidden_size")) {
        cfg->hidden = stx__attr_int(n, "hidden_size", 0);
        if (cfg->hidden <= 0)
            return stx__node_err_n(n, e, STX_E_INVALID, "hidden_size %lld must be positive",
                                   (long long)cfg->hidden);
    }

    cfg->clip = INFINITY;
    if (stx__attr(n, "clip")) {
        cfg->clip = stx__attr_float(n, "clip", 0.0f);
        if (!(cfg->clip >= 0.0f)) /* also refuses NaN */
            return stx__node_err_n(n, e, STX_E_INVALID, "clip %g must be a non-negative threshold",
                                   (double)cfg->clip);
    }

    if (cfg->kind == RNN_LSTM) {
        int64_t f = stx__attr_int(n, "input_forget", 0);
        if (f != 0 && f != 1)
            return stx__node_err_n(n, e, STX_E_INVALID, "input_forget %lld is invalid (0 or 1)",
                                   (long long)f);
        cfg->input_forget = f == 1;
    } else {
        /* GRU-1 has no linear_before_reset: its default 0 is the GRU-1 behaviour. */
        cfg->lbr = stx__attr_int(n, "linear_before_reset", 0) != 0;
    }

    /* Only the default activation functions are implemented: LSTM f=Sigmoid, g=Tanh, h=Tanh;
     * GRU f=Sigmoid, g=Tanh, listed once per direction. activation_alpha/beta are consumed only
     * by activations other than these, so they are unused and may be present. */
    const stx_attr *acts = stx__attr(n, "activations");
    if (acts) {
        static const char *const lstm_def[] = {"Sigmoid", "Tanh", "Tanh"};
        static const char *const gru_def[] = {"Sigmoid", "Tanh"};
        const char *const *def = cfg->kind == RNN_LSTM ? lstm_def : gru_def;
        int per = cfg->kind == RNN_LSTM ? 3 : 2;
        bool ok = acts->type == STX_ATTR_STRINGS && acts->n == per * cfg->dirs;
        for (int i = 0; ok && i < acts->n; i++)
            ok = acts->strings[i] && ascii_ieq(acts->strings[i], def[i % per]);
        if (!ok) {
            char list[256] = "";
            size_t used = 0;
            for (int i = 0; acts->type == STX_ATTR_STRINGS && i < acts->n; i++) {
                int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                                 acts->strings[i] ? acts->strings[i] : "?");
                if (w < 0 || (size_t)w >= sizeof list - used) break;
                used += (size_t)w;
            }
            return stx__node_err_n(
                n, e, STX_E_UNSUPPORTED,
                "activations [%s] are not supported: only the default activation functions are "
                "implemented, i.e. %d names repeating (%s)",
                list, per * cfg->dirs,
                cfg->kind == RNN_LSTM ? "Sigmoid, Tanh, Tanh" : "Sigmoid, Tanh");
        }
    }
    return STX_OK;
}

static stx_status rnn_check(const stx_node *n, stx_err *e) {
    rnn_cfg cfg;
    return rnn_read_cfg(n, e, &cfg);
}

/* ---------------------------------------------------------------------------------------------
 * Shapes
 */

enum { IN_X, IN_W, IN_R, IN_B, IN_SEQ, IN_H0, IN_C0, IN_P };
enum { OUT_Y, OUT_YH, OUT_YC };

static stx_tensor *in_at(const stx_op_ctx *c, int i) {
    return i < c->n_in ? c->in[i] : NULL;
}
static stx_tensor *out_at(const stx_op_ctx *c, int i) {
    return i < c->n_out ? c->out[i] : NULL;
}
static stx_tensor *din_at(const stx_op_ctx *c, int i) {
    return c->din && i < c->n_in ? c->din[i] : NULL;
}
static stx_tensor *dout_at(const stx_op_ctx *c, int i) {
    return c->dout && i < c->n_out ? c->dout[i] : NULL;
}

static const char *const in_names[] = {"X",         "W",         "R", "B", "sequence_lens",
                                       "initial_h", "initial_c", "P"};

/* Checks that input i (if present) has X's dtype dt and the expected shape. */
static stx_status expect_shape(stx_op_ctx *c, int i, stx_dtype dt, const int64_t *dims, int rank) {
    const stx_tensor *t = in_at(c, i);
    if (!t) return STX_OK;
    if (t->dtype != dt)
        return stx__node_err(c, STX_E_UNSUPPORTED, "input %s has dtype %s; X is %s", in_names[i],
                             stx_dtype_name(t->dtype), stx_dtype_name(dt));
    bool ok = t->rank == rank;
    for (int k = 0; ok && k < rank; k++) ok = t->dims[k] == dims[k];
    if (!ok) {
        char got[128], want[128];
        return stx__node_err(c, STX_E_SHAPE, "input %s has shape %s, expected %s", in_names[i],
                             stx__shape_str(t->dims, t->rank, got, sizeof got),
                             stx__shape_str(dims, rank, want, sizeof want));
    }
    return STX_OK;
}

/* Derives the sizes from the input shapes and validates every input. */
static stx_status rnn_get_dims(stx_op_ctx *c, const rnn_cfg *cfg, rnn_dims *dm) {
    const stx_tensor *x = in_at(c, IN_X), *w = in_at(c, IN_W), *r = in_at(c, IN_R);
    char s1[128], s2[128], s3[128];
    if (!x || !w || !r) return stx__node_err(c, STX_E_INVALID, "inputs X, W and R are required");
    if (cfg->kind == RNN_GRU && c->n_in > IN_C0)
        return stx__node_err(c, STX_E_INVALID, "GRU takes at most 6 inputs, got %d", c->n_in);
    if ((x->dtype != STX_DTYPE_FLOAT && x->dtype != STX_DTYPE_DOUBLE) || w->dtype != x->dtype ||
        r->dtype != x->dtype)
        return stx__node_err(c, STX_E_UNSUPPORTED,
                             "X, W, R have dtypes %s, %s, %s; all float32 or all float64 expected",
                             stx_dtype_name(x->dtype), stx_dtype_name(w->dtype),
                             stx_dtype_name(r->dtype));
    if (x->rank != 3 || w->rank != 3 || r->rank != 3)
        return stx__node_err(c, STX_E_SHAPE, "X %s, W %s and R %s must all be 3-D",
                             stx__shape_str(x->dims, x->rank, s1, sizeof s1),
                             stx__shape_str(w->dims, w->rank, s2, sizeof s2),
                             stx__shape_str(r->dims, r->rank, s3, sizeof s3));
    for (int k = 0; k < 3; k++)
        if (x->dims[k] < 0 || w->dims[k] < 0 || r->dims[k] < 0)
            return stx__node_err(c, STX_E_SHAPE, "X %s, W %s or R %s has an unknown dimension",
                                 stx__shape_str(x->dims, x->rank, s1, sizeof s1),
                                 stx__shape_str(w->dims, w->rank, s2, sizeof s2),
                                 stx__shape_str(r->dims, r->rank, s3, sizeof s3));

    dm->layout = cfg->layout;
    dm->D = cfg->dirs;
    dm->G = cfg->kind == RNN_LSTM ? 4 : 3;
    dm->T = cfg->layout == 0 ? x->dims[0] : x->dims[1];
    dm->N = cfg->layout == 0 ? x->dims[1] : x->dims[0];
    dm->I = x->dims[2];
    dm->H = cfg->hidden > 0 ? cfg->hidden : r->dims[2];
    if (dm->H <= 0)
        return stx__node_err(c, STX_E_SHAPE, "hidden size (from R %s) must be positive",
                             stx__shape_str(r->dims, r->rank, s1, sizeof s1));

    if (cfg->hidden > 0 && r->dims[2] != cfg->hidden)
        return stx__node_err(c, STX_E_SHAPE, "hidden_size %lld does not match R %s",
                             (long long)cfg->hidden,
                             stx__shape_str(r->dims, r->rank, s1, sizeof s1));
    const int64_t D = dm->D, N = dm->N, H = dm->H, GH = dm->G * dm->H;
    const stx_dtype dt = x->dtype;
    stx_status st;
    const int64_t wd[3] = {D, GH, dm->I}, rd[3] = {D, GH, H}, bd[2] = {D, 2 * GH};
    const int64_t hd[3] = {cfg->layout == 0 ? D : N, cfg->layout == 0 ? N : D, H};
    const int64_t pd[2] = {D, 3 * H};
    if ((st = expect_shape(c, IN_W, dt, wd, 3)) || (st = expect_shape(c, IN_R, dt, rd, 3)) ||
        (st = expect_shape(c, IN_B, dt, bd, 2)) || (st = expect_shape(c, IN_H0, dt, hd, 3)))
        return st;
    if (cfg->kind == RNN_LSTM &&
        ((st = expect_shape(c, IN_C0, dt, hd, 3)) || (st = expect_shape(c, IN_P, dt, pd, 2))))
        return st;

    const stx_tensor *sl = in_at(c, IN_SEQ);
    if (sl) {
        if (sl->dtype != STX_DTYPE_INT32 && sl->dtype != STX_DTYPE_INT64)
            return stx__node_err(c, STX_E_UNSUPPORTED,
                                 "sequence_lens has dtype %s; int32 (or int64) expected",
                                 stx_dtype_name(sl->dtype));
        if (sl->rank != 1 || sl->dims[0] != N)
            return stx__node_err(c, STX_E_SHAPE, "sequence_lens has shape %s, expected [%lld]",
                                 stx__shape_str(sl->dims, sl->rank, s1, sizeof s1), (long long)N);
    }

    /* Keep all index arithmetic comfortably inside int64 and size_t. */
    int64_t rows, cols, tot;
    const int64_t xwd[2] = {dm->T * N, D * GH};
    if (!stx__numel_checked(x->dims, 3, &rows) || !stx__numel_checked(w->dims, 3, &cols) ||
        !stx__numel_checked(xwd, 2, &tot) || tot > ((int64_t)1 << 40))
        return stx__node_err(c, STX_E_SHAPE, "X %s with W %s is too large",
                             stx__shape_str(x->dims, 3, s1, sizeof s1),
                             stx__shape_str(w->dims, 3, s2, sizeof s2));
    return STX_OK;
}

static stx_status rnn_infer(stx_op_ctx *c) {
    rnn_cfg cfg;
    rnn_dims dm;
    stx_status st = rnn_read_cfg(c->node, c->err, &cfg);
    if (st) return st;
    if ((st = rnn_get_dims(c, &cfg, &dm))) return st;
    if (cfg.kind == RNN_GRU && c->n_out > 2)
        return stx__node_err(c, STX_E_INVALID, "GRU has at most 2 outputs, got %d", c->n_out);

    const int64_t T = dm.T, N = dm.N, D = dm.D, H = dm.H;
    const int64_t yd0[4] = {T, D, N, H}, yd1[4] = {N, T, D, H};
    const int64_t hd0[3] = {D, N, H}, hd1[3] = {N, D, H};
    const stx_dtype dt = in_at(c, IN_X)->dtype;
    if (out_at(c, OUT_Y)) stx__set_out(c, OUT_Y, dt, dm.layout ? yd1 : yd0, 4);
    if (out_at(c, OUT_YH)) stx__set_out(c, OUT_YH, dt, dm.layout ? hd1 : hd0, 3);
    if (out_at(c, OUT_YC)) stx__set_out(c, OUT_YC, dt, dm.layout ? hd1 : hd0, 3);
    return STX_OK;
}

static int64_t rnn_macs(const stx_op_ctx *c) {
    const stx_tensor *x = in_at(c, IN_X), *w = in_at(c, IN_W), *r = in_at(c, IN_R);
    if (!x || !w || !r || x->rank != 3 || w->rank != 3 || r->rank != 3) return 0;
    /* rows(T*N) x (D*G*H) x (input_size + hidden_size) */
    return x->dims[0] * x->dims[1] * w->dims[0] * w->dims[1] * (w->dims[2] + r->dims[2]);
}

/* ---------------------------------------------------------------------------------------------
 * Scratch
 */

static void rnn_release(void *p) {
    rnn_state *s = p;
    if (s) stx__free(s->ctx, s);
}

/* Carves n elements of esz bytes, 64-byte aligned, at *off; false on size overflow. */
static bool carve(size_t *off, size_t n, size_t esz, size_t *at) {
    size_t b;
    if (!stx__mul_size(n, esz, &b) || b > SIZE_MAX - 64 || *off > SIZE_MAX - (b + 63)) return false;
    *at = *off;
    *off += (b + 63) / 64 * 64;
    return true;
}

/* One allocation: the header, then the int64 lengths, then the buffers. The reverse-pass buffers
 * exist only when the session will run backward through the node. */
static stx_status rnn_alloc(stx_op_ctx *c, const rnn_cfg *cfg, const rnn_dims *dm, stx_dtype dt,
                            bool bwd, rnn_state **out) {
    const size_t T = (size_t)dm->T, N = (size_t)dm->N, H = (size_t)dm->H;
    const size_t GH = (size_t)(dm->G * dm->H), D = (size_t)dm->D, rows = T * N;
    const size_t esz = dt == STX_DTYPE_DOUBLE ? sizeof(double) : sizeof(float);
    const bool lstm = cfg->kind == RNN_LSTM, clip = isfinite(cfg->clip);
    enum { LENS, XW, BIAS, HR, H_, C_, RH, HP, CP, NH, CM, DG, AUX, BG, BH, BC, BT, NBUF };
    size_t cnt[NBUF] = {0}, at[NBUF] = {0}, off = (sizeof(rnn_state) + 63) / 64 * 64;
    cnt[XW] = rows * D * GH, cnt[BIAS] = D * GH, cnt[HR] = N * GH, cnt[H_] = N * H;
    cnt[C_] = lstm ? N * H : 0;
    cnt[RH] = !lstm && !cfg->lbr ? N * H : 0;
    if (bwd) {
        cnt[HP] = rows * D * H;
        cnt[CP] = lstm ? rows * D * H : 0;
        cnt[NH] = !lstm && cfg->lbr ? rows * D * H : 0;
        cnt[CM] = clip ? rows * D * GH : 0;
        cnt[DG] = rows * D * GH;
        cnt[AUX] = lstm ? 0 : rows * D * H;
        cnt[BG] = N * GH, cnt[BH] = N * H, cnt[BC] = lstm ? N * H : 0;
        cnt[BT] = !lstm && !cfg->lbr ? N * H : 0;
    }
    bool ok = carve(&off, N, sizeof(int64_t), &at[LENS]);
    for (int k = XW; ok && k < NBUF; k++) ok = carve(&off, cnt[k], k == CM ? 1 : esz, &at[k]);
    if (!ok) return stx__node_err(c, STX_E_NOMEM, "scratch size overflows");
    char *mem = stx__malloc(c->ctx, off);
    if (!mem) return stx__node_err(c, STX_E_NOMEM, "cannot allocate %zu bytes of scratch", off);
    rnn_state *s = (rnn_state *)mem;
    memset(s, 0, sizeof *s);
    s->ctx = c->ctx;
    s->cfg = *cfg;
    s->dm = *dm;
    s->dt = dt;
    s->bwd = bwd;
    s->lens = (int64_t *)(mem + at[LENS]);
#define RNN_BUF(k) (cnt[k] ? (void *)(mem + at[k]) : NULL)
    s->xw = RNN_BUF(XW), s->bias = RNN_BUF(BIAS), s->hr = RNN_BUF(HR), s->h = RNN_BUF(H_);
    s->c = RNN_BUF(C_), s->rh = RNN_BUF(RH), s->hp = RNN_BUF(HP), s->cp = RNN_BUF(CP);
    s->nh = RNN_BUF(NH), s->cm = RNN_BUF(CM), s->dg = RNN_BUF(DG), s->aux = RNN_BUF(AUX);
    s->bg = RNN_BUF(BG), s->bh = RNN_BUF(BH), s->bc = RNN_BUF(BC), s->bt = RNN_BUF(BT);
#undef RNN_BUF
    *out = s;
    return STX_OK;
}

static stx_status rnn_prepare(stx_op_ctx *c, void **state) {
    rnn_cfg cfg;
    rnn_dims dm;
    stx_status st = rnn_read_cfg(c->node, c->err, &cfg);
    if (st) return st;
    if ((st = rnn_get_dims(c, &cfg, &dm))) return st;
    rnn_state *s;
    if ((st = rnn_alloc(c, &cfg, &dm, in_at(c, IN_X)->dtype, c->need_backward != 0, &s))) return st;
    *state = s;
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Indexing shared by both element types
 */

/* Element offsets in Y for (t, direction, batch) and in initial_h / Y_h / Y_c for
 * (direction, batch), per layout. */
static inline int64_t y_off(const rnn_dims *d, int64_t t, int64_t dir, int64_t b) {
    return (d->layout == 0 ? (t * d->D + dir) * d->N + b : (b * d->T + t) * d->D + dir) * d->H;
}
static inline int64_t s_off(const rnn_dims *d, int64_t dir, int64_t b) {
    return (d->layout == 0 ? dir * d->N + b : b * d->D + dir) * d->H;
}
/* Row of X (and of xw and the recorded buffers) holding time step t of batch entry b. */
static inline int64_t x_row(const rnn_dims *d, int64_t t, int64_t b) {
    return d->layout == 0 ? t * d->N + b : b * d->T + t;
}

/* Work below this many elements per step stays on one thread (OpenMP start-up dominates). */
#define RNN_PAR_MIN 8192

/* ---------------------------------------------------------------------------------------------
 * The element-type dependent part, instantiated for float and double (see the end of the file).
 */
#define RNN_TYPED_SECTION
#define real float
#define RNN_F32 1
#define S(name) name##_f32
#define RNN_EXP expf
#define RNN_TANH tanhf
#include "rnn.c"
#undef real
#undef RNN_F32
#undef S
#undef RNN_EXP
#undef RNN_TANH

#define real double
#define RNN_F32 0
#define S(name) name##_f64
#define RNN_EXP exp
#define RNN_TANH tanh
#include "rnn.c"
#undef real
#undef RNN_F32
#undef S
#undef RNN_EXP
#undef RNN_TANH
#undef RNN_TYPED_SECTION

/* ---------------------------------------------------------------------------------------------
 * Entry points
 */

static stx_status rnn_forward(stx_op_ctx *c) {
    rnn_state *s = c->state, *tmp = NULL;
    stx_status st;
    if (!s) {
        /* Not prepared (e.g. constant folding at plan time): scratch just for this call. */
        rnn_cfg cfg;
        rnn_dims dm;
        if ((st = rnn_read_cfg(c->node, c->err, &cfg))) return st;
        if ((st = rnn_get_dims(c, &cfg, &dm))) return st;
        if ((st = rnn_alloc(c, &cfg, &dm, in_at(c, IN_X)->dtype, false, &tmp))) return st;
        s = tmp;
    }
    s->saved = false;
    const rnn_dims *dm = &s->dm;
    const int64_t T = dm->T, N = dm->N, I = dm->I;
    const stx_tensor *xt = in_at(c, IN_X), *sl = in_at(c, IN_SEQ);
    {
        const int64_t *xd = xt->dims;
        const bool same = xt->rank == 3 && xd[2] == I && xt->dtype == s->dt &&
                          (dm->layout == 0 ? xd[0] == T && xd[1] == N : xd[0] == N && xd[1] == T);
        if (!same) { /* the scratch was sized for other shapes */
            char sx[128];
            st = stx__node_err(c, STX_E_INTERNAL, "X is %s %s, not what it was planned for",
                               stx_dtype_name(xt->dtype),
                               stx__shape_str(xt->dims, xt->rank, sx, sizeof sx));
            goto done;
        }
    }

    /* Sequence lengths: all T unless given; each must lie in [0, T]. */
    int64_t max_len = 0;
    for (int64_t b = 0; b < N; b++) {
        int64_t L = T;
        if (sl)
            L = sl->dtype == STX_DTYPE_INT32 ? ((const int32_t *)sl->data)[b]
                                             : ((const int64_t *)sl->data)[b];
        if (L < 0 || L > T) {
            st = stx__node_err(c, STX_E_INVALID,
                               "sequence_lens[%lld] = %lld is outside [0, seq_length=%lld]",
                               (long long)b, (long long)L, (long long)T);
            goto done;
        }
        s->lens[b] = L;
        if (L > max_len) max_len = L;
    }

    st = s->dt == STX_DTYPE_DOUBLE ? rnn_run_f64(c, s, max_len) : rnn_run_f32(c, s, max_len);
    s->saved = st == STX_OK && s->bwd;
done:
    if (tmp) rnn_release(tmp);
    return st;
}

static stx_status rnn_backward(stx_op_ctx *c) {
    rnn_state *s = c->state;
    if (!s || !s->bwd)
        return stx__node_err(c, STX_E_INTERNAL,
                             "backward without reverse-pass state (planned without need_backward)");
    if (!s->saved)
        return stx__node_err(c, STX_E_INVALID, "backward needs a successful forward run first");
    return s->dt == STX_DTYPE_DOUBLE ? rnn_bwd_f64(c, s) : rnn_bwd_f32(c, s);
}

/* ---------------------------------------------------------------------------------------------
 * Registration
 */

/* The reverse pass reads X (for dW only), W (for dX), R and P; the states, gate activations and
 * sequence lengths it needs were recorded by the forward into the node's state. */
#define RNN_BWD_IN ((1u << IN_X) | (1u << IN_W) | (1u << IN_R) | (1u << IN_P))

static const stx_op_def op_lstm = {.name = "LSTM",
                                   .min_in = 3,
                                   .max_in = 8,
                                   .min_out = 0,
                                   .max_out = 3,
                                   .attrs = lstm_attrs,
                                   .check = rnn_check,
                                   .infer = rnn_infer,
                                   .forward = rnn_forward,
                                   .macs = rnn_macs,
                                   .prepare = rnn_prepare,
                                   .release = rnn_release,
                                   .backward = rnn_backward,
                                   .bwd_in = RNN_BWD_IN,
                                   .bwd_out = 0};

static const stx_op_def op_gru = {.name = "GRU",
                                  .min_in = 3,
                                  .max_in = 6,
                                  .min_out = 0,
                                  .max_out = 2,
                                  .attrs = gru_attrs,
                                  .check = rnn_check,
                                  .infer = rnn_infer,
                                  .forward = rnn_forward,
                                  .macs = rnn_macs,
                                  .prepare = rnn_prepare,
                                  .release = rnn_release,
                                  .backward = rnn_backward,
                                  .bwd_in = RNN_BWD_IN,
                                  .bwd_out = 0};

const stx_op_def *const stx__ops_rnn[] = {&op_lstm, &op_gru, NULL};

#else /* RNN_TYPED_SECTION: compiled once per element type `real`; names carry S()'s suffix */

/* Each function below is defined once per element type: name##_f32 / name##_f64. */
#define sigm S(sigm)
#define clampv S(clampv)
#define gemm S(gemm)
#define lstm_cell S(lstm_cell)
#define gru_gates_zr S(gru_gates_zr)
#define gru_update S(gru_update)
#define rnn_direction S(rnn_direction)
#define rnn_run S(rnn_run)
#define lstm_cell_bwd S(lstm_cell_bwd)
#define gru_lbr_bwd S(gru_lbr_bwd)
#define gru_bwd_1 S(gru_bwd_1)
#define gru_bwd_2 S(gru_bwd_2)
#define colsum S(colsum)
#define rnn_bwd S(rnn_bwd)

static inline real sigm(real x) {
    return (real)1 / ((real)1 + RNN_EXP(-x));
}

/* Clamp to [-lim, lim]; NaN passes through unchanged; lim = INFINITY is the identity. */
static inline real clampv(real x, real lim) {
    return x < -lim ? -lim : (x > lim ? lim : x);
}

/* C = op(A)·op(B) + beta·C, row-major, op(X) = Xᵀ when its flag is 'T'. float32: oneDNN;
 * float64 (and K = 0, which oneDNN may reject): plain loops, parallel over the rows of C. */
static stx_status gemm(stx_op_ctx *c, char ta, char tb, int64_t M, int64_t Nn, int64_t K,
                       const real *A, int64_t lda, const real *B, int64_t ldb, real beta, real *C,
                       int64_t ldc) {
    if (M == 0 || Nn == 0) return STX_OK;
#if RNN_F32
    if (K > 0) {
        dnnl_status_t ds = dnnl_sgemm(ta, tb, M, Nn, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
        if (ds != dnnl_success)
            return stx__node_err(c, STX_E_INTERNAL,
                                 "oneDNN sgemm failed (status %d) for M=%lld N=%lld K=%lld",
                                 (int)ds, (long long)M, (long long)Nn, (long long)K);
        return STX_OK;
    }
#else
    (void)c;
#endif
    const bool par = M > 1 && M * Nn * (K + 1) >= RNN_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t i = 0; i < M; i++) {
        real *ci = C + i * ldc;
        if (ta == 'N' && tb == 'T') { /* rows of A and B are both contiguous: dot products */
            const real *ai = A + i * lda;
            for (int64_t j = 0; j < Nn; j++) {
                const real *bj = B + j * ldb;
                real acc = 0;
                for (int64_t k = 0; k < K; k++) acc += ai[k] * bj[k];
                ci[j] = (beta == 0 ? (real)0 : ci[j] * beta) + acc;
            }
            continue;
        }
        for (int64_t j = 0; j < Nn; j++) ci[j] = beta == 0 ? (real)0 : ci[j] * beta;
        for (int64_t k = 0; k < K; k++) {
            const real a = ta == 'N' ? A[i * lda + k] : A[k * lda + i];
            if (tb == 'N') {
                const real *bk = B + k * ldb;
                for (int64_t j = 0; j < Nn; j++) ci[j] += a * bk[j];
            } else {
                for (int64_t j = 0; j < Nn; j++) ci[j] += a * B[j * ldb + k];
            }
        }
    }
    return STX_OK;
}

/* ---- cells, forward: one batch row, one time step. Pre-activations are xw (X_t·Wᵀ + folded
 * biases) plus hr (H_{t-1}·Rᵀ). cm (optional) receives 1 where clip changed a pre-activation. */

/* LSTM (ONNX gate order i, o, f, c):
 *   i = σ(xw_i + hr_i + Pi⊙C_{t-1}),  f = σ(xw_f + hr_f + Pf⊙C_{t-1})  (or 1 - i if coupled)
 *   g = tanh(xw_c + hr_c),  C_t = f⊙C_{t-1} + i⊙g
 *   o = σ(xw_o + hr_o + Po⊙C_t),  H_t = o⊙tanh(C_t)
 * p: peepholes [3H] in order i, o, f, or NULL. cst: C_{t-1} on entry, C_t on exit. h: H_t.
 * act (optional, [4H], may be xw itself): the activations i, o, f, g, for a reverse pass. */
static void lstm_cell(int64_t H, const real *xw, const real *hr, const real *p, real clip,
                      bool input_forget, real *cst, real *h, real *act, unsigned char *cm) {
    for (int64_t j = 0; j < H; j++) {
        const real cp = cst[j];
        real ai = xw[j] + hr[j];
        real ao = xw[H + j] + hr[H + j];
        real af = xw[2 * H + j] + hr[2 * H + j];
        const real ag = xw[3 * H + j] + hr[3 * H + j];
        if (p) {
            ai += p[j] * cp;
            af += p[2 * H + j] * cp;
        }
        const real ci = clampv(ai, clip), cf = clampv(af, clip), cg = clampv(ag, clip);
        const real gi = sigm(ci);
        const real gf = input_forget ? (real)1 - gi : sigm(cf);
        const real gg = RNN_TANH(cg);
        const real cn = gf * cp + gi * gg;
        if (p) ao += p[H + j] * cn;
        const real co = clampv(ao, clip);
        const real go = sigm(co);
        cst[j] = cn;
        h[j] = go * RNN_TANH(cn);
        if (act) {
            act[j] = gi;
            act[H + j] = go;
            act[2 * H + j] = gf;
            act[3 * H + j] = gg;
        }
        if (cm) {
            cm[j] = ci != ai;
            cm[H + j] = co != ao;
            cm[2 * H + j] = cf != af;
            cm[3 * H + j] = cg != ag;
        }
    }
}

/* GRU, first half (gate order z, r, h): z = σ(xw_z + hr_z), r = σ(xw_r + hr_r), written over
 * hr[0:2H] (these are the activations a reverse pass needs). When rh != NULL
 * (linear_before_reset = 0) also r⊙H_{t-1}, the left operand of the second recurrent GEMM. */
static void gru_gates_zr(int64_t H, const real *xw, real *hr, const real *hprev, real clip,
                         real *rh, unsigned char *cm) {
    for (int64_t j = 0; j < 2 * H; j++) {
        const real a = xw[j] + hr[j], ca = clampv(a, clip);
        hr[j] = sigm(ca);
        if (cm) cm[j] = ca != a;
    }
    if (rh)
        for (int64_t j = 0; j < H; j++) rh[j] = hr[H + j] * hprev[j];
}

/* GRU, second half. zr: z and r activations [2H]; hrh: the recurrent term of the candidate:
 *   linear_before_reset = 0: hrh = (r⊙H_{t-1})·Rhᵀ, bias Rbh already in xw:
 *       h~ = tanh(xw_h + hrh)
 *   linear_before_reset = 1: hrh = H_{t-1}·Rhᵀ, rbh = Rbh (or NULL when no B):
 *       n = hrh + Rbh,  h~ = tanh(xw_h + r⊙n)
 *   H_t = (1 - z)⊙h~ + z⊙H_{t-1}
 * h: H_{t-1} on entry, H_t on exit. For a reverse pass (each optional): act [H] (may be xw_h)
 * receives h~, nsave [H] receives n (linear_before_reset = 1), cm [H] the clip mask of h~. */
static void gru_update(int64_t H, const real *xw_h, const real *zr, const real *hrh,
                       const real *rbh, bool lbr, real clip, real *h, real *act, real *nsave,
                       unsigned char *cm) {
    for (int64_t j = 0; j < H; j++) {
        const real z = zr[j], r = zr[H + j];
        real a;
        if (lbr) {
            const real n = hrh[j] + (rbh ? rbh[j] : (real)0);
            a = xw_h[j] + r * n;
            if (nsave) nsave[j] = n;
        } else {
            a = xw_h[j] + hrh[j];
        }
        const real ca = clampv(a, clip);
        const real hh = RNN_TANH(ca);
        h[j] = ((real)1 - z) * hh + z * h[j];
        if (act) act[j] = hh;
        if (cm) cm[j] = ca != a;
    }
}

/* ---- forward ----------------------------------------------------------------------------- */

/* Runs one direction over all its steps; leaves the final state in s->h (and s->c). When the
 * state has reverse-pass buffers, records H_{t-1}, C_{t-1}, the activations (over xw), GRU's n and
 * the clip mask of every step it runs. */
static stx_status rnn_direction(stx_op_ctx *c, rnn_state *s, int64_t d, bool rev, int64_t max_len) {
    const rnn_cfg *cfg = &s->cfg;
    const rnn_dims *dm = &s->dm;
    const int64_t N = dm->N, H = dm->H, GH = dm->G * dm->H, ldxw = dm->D * GH, DH = dm->D * H;
    const real *R = (const real *)in_at(c, IN_R)->data + d * GH * H;
    const stx_tensor *h0 = in_at(c, IN_H0), *c0 = in_at(c, IN_C0), *pt = in_at(c, IN_P);
    const stx_tensor *bt = in_at(c, IN_B);
    const real *P = cfg->kind == RNN_LSTM && pt ? (const real *)pt->data + d * 3 * H : NULL;
    /* GRU linear_before_reset: Rbh stays out of xw (see header). */
    const real *rbh = bt ? (const real *)bt->data + d * 2 * GH + GH + 2 * H : NULL;
    real *Y = out_at(c, OUT_Y) ? (real *)out_at(c, OUT_Y)->data : NULL;
    real *xwb = s->xw, *hrb = s->hr, *hs = s->h, *cs = s->c, *rhb = s->rh;
    const bool rec = s->bwd;
    real *hp = rec ? (real *)s->hp : NULL, *cp = rec ? (real *)s->cp : NULL;
    real *nh = rec ? (real *)s->nh : NULL;
    unsigned char *cm = rec ? s->cm : NULL;
    const real clip = (real)cfg->clip;
    const int64_t *lens = s->lens;
    const bool par = N > 1 && N * GH >= RNN_PAR_MIN;
    const size_t hbytes = (size_t)H * sizeof(real);
    stx_status st;

    /* Initial state. */
    for (int64_t b = 0; b < N; b++) {
        real *hb = hs + b * H;
        if (h0)
            memcpy(hb, (const real *)h0->data + s_off(dm, d, b), hbytes);
        else
            memset(hb, 0, hbytes);
        if (cs) {
            real *cb = cs + b * H;
            if (c0)
                memcpy(cb, (const real *)c0->data + s_off(dm, d, b), hbytes);
            else
                memset(cb, 0, hbytes);
        }
    }

    for (int64_t step = 0; step < max_len; step++) {
        if (cfg->kind == RNN_LSTM || cfg->lbr) {
            /* hr = H_{t-1}·R_dᵀ for all gates. */
            if ((st = gemm(c, 'N', 'T', N, GH, H, hs, H, R, H, 0, hrb, GH))) return st;
        } else {
            /* GRU, reset before the linear map: z, r first, then (r⊙H)·Rhᵀ. */
            if ((st = gemm(c, 'N', 'T', N, 2 * H, H, hs, H, R, H, 0, hrb, GH))) return st;
#pragma omp parallel for schedule(static) if (par)
            for (int64_t b = 0; b < N; b++) {
                if (step >= lens[b]) { /* finished: keep rh defined, its GEMM row is unused */
                    memset(rhb + b * H, 0, hbytes);
                    continue;
                }
                const int64_t t = rev ? lens[b] - 1 - step : step, row = x_row(dm, t, b);
                const real *xw = xwb + row * ldxw + d * GH;
                gru_gates_zr(H, xw, hrb + b * GH, hs + b * H, clip, rhb + b * H,
                             cm ? cm + row * ldxw + d * GH : NULL);
            }
            if ((st = gemm(c, 'N', 'T', N, H, H, rhb, H, R + 2 * H * H, H, 0, hrb + 2 * H, GH)))
                return st;
        }

#pragma omp parallel for schedule(static) if (par)
        for (int64_t b = 0; b < N; b++) {
            if (step >= lens[b]) continue; /* this sequence has ended: state stays final */
            const int64_t t = rev ? lens[b] - 1 - step : step, row = x_row(dm, t, b);
            real *xw = xwb + row * ldxw + d * GH;
            real *hr = hrb + b * GH, *hb = hs + b * H;
            unsigned char *cmr = cm ? cm + row * ldxw + d * GH : NULL;
            if (rec) memcpy(hp + row * DH + d * H, hb, hbytes);
            if (cfg->kind == RNN_LSTM) {
                if (rec) memcpy(cp + row * DH + d * H, cs + b * H, hbytes);
                lstm_cell(H, xw, hr, P, clip, cfg->input_forget, cs + b * H, hb, rec ? xw : NULL,
                          cmr);
            } else {
                if (cfg->lbr) gru_gates_zr(H, xw, hr, hb, clip, NULL, cmr);
                gru_update(H, xw + 2 * H, hr, hr + 2 * H, rbh, cfg->lbr, clip, hb,
                           rec ? xw + 2 * H : NULL, nh ? nh + row * DH + d * H : NULL,
                           cmr ? cmr + 2 * H : NULL);
                if (rec) memcpy(xw, hr, 2 * hbytes); /* z, r */
            }
            if (Y) memcpy(Y + y_off(dm, t, d, b), hb, hbytes);
        }
    }
    return STX_OK;
}

/* The whole forward pass, sequence lengths already in s->lens. */
static stx_status rnn_run(stx_op_ctx *c, rnn_state *s, int64_t max_len) {
    const rnn_cfg *cfg = &s->cfg;
    const rnn_dims *dm = &s->dm;
    const int64_t T = dm->T, N = dm->N, I = dm->I, H = dm->H, D = dm->D, GH = dm->G * dm->H;
    const int64_t ldxw = D * GH, DH = D * H;
    const size_t hbytes = (size_t)H * sizeof(real);
    const stx_tensor *xt = in_at(c, IN_X), *bt = in_at(c, IN_B);
    stx_tensor *yt = out_at(c, OUT_Y), *yh = out_at(c, OUT_YH), *yc = out_at(c, OUT_YC);
    if (cfg->kind == RNN_GRU) yc = NULL;
    stx_status st;

    /* Folded biases: Wb + Rb per gate, except GRU's Rbh under linear_before_reset. */
    real *bias = s->bias;
    for (int64_t d = 0; d < D; d++)
        for (int64_t g = 0; g < GH; g++) {
            real v = 0;
            if (bt) {
                const real *B = (const real *)bt->data + d * 2 * GH;
                bool keep_rb = !(cfg->kind == RNN_GRU && cfg->lbr && g >= 2 * H);
                v = B[g] + (keep_rb ? B[GH + g] : (real)0);
            }
            bias[d * GH + g] = v;
        }

    /* xw = bias + X·Wᵀ, all time steps and directions in one GEMM. */
    const int64_t rows = T * N;
    {
        const bool par = rows > 1 && rows * ldxw >= RNN_PAR_MIN;
        real *xw = s->xw;
#pragma omp parallel for schedule(static) if (par)
        for (int64_t m = 0; m < rows; m++) memcpy(xw + m * ldxw, bias, (size_t)ldxw * sizeof(real));
    }
    if ((st = gemm(c, 'N', 'T', rows, ldxw, I, (const real *)xt->data, I,
                   (const real *)in_at(c, IN_W)->data, I, 1, s->xw, ldxw)))
        return st;

    for (int64_t d = 0; d < D; d++) {
        const bool rev = D == 2 ? d == 1 : cfg->reverse;
        if ((st = rnn_direction(c, s, d, rev, max_len))) return st;

        /* Outputs past each sequence's end are zero; final states, zero for empty sequences.
         * The recorded states of steps that never ran are zero too (finite for the reverse
         * pass's weight-gradient GEMMs, where their gradients are zero). */
        const real *hs = s->h, *cs = s->c;
        for (int64_t b = 0; b < N; b++) {
            const int64_t L = s->lens[b];
            for (int64_t t = L; t < T; t++) {
                const int64_t row = x_row(dm, t, b);
                if (yt) memset((real *)yt->data + y_off(dm, t, d, b), 0, hbytes);
                if (s->hp) memset((real *)s->hp + row * DH + d * H, 0, hbytes);
                if (s->cp) memset((real *)s->cp + row * DH + d * H, 0, hbytes);
                if (s->nh) memset((real *)s->nh + row * DH + d * H, 0, hbytes);
            }
            if (yh) {
                real *dst = (real *)yh->data + s_off(dm, d, b);
                if (L > 0)
                    memcpy(dst, hs + b * H, hbytes);
                else
                    memset(dst, 0, hbytes);
            }
            if (yc) {
                real *dst = (real *)yc->data + s_off(dm, d, b);
                if (L > 0)
                    memcpy(dst, cs + b * H, hbytes);
                else
                    memset(dst, 0, hbytes);
            }
        }
    }
    return STX_OK;
}

/* ---- reverse pass: cells --------------------------------------------------------------------
 * Each takes dH (the gradient of H_t: carried from the next step, plus dY_t) and writes the
 * gradients of the pre-activations, to dgr (the step's row of s->dg, the X side) and to g (the
 * batch-contiguous row that is multiplied by R_d to give dH_{t-1}). A gate whose pre-activation
 * was clipped (mask m) passes no gradient. */

/* LSTM, with a = (i, o, f, g) and C = f⊙C_{t-1} + i⊙g, H = o⊙tanh(C):
 *   dao = dH⊙tanh(C)⊙o(1-o)
 *   dC  = dC_carried + dH⊙o⊙(1 - tanh²C) + dao⊙Po            (Po⊙C feeds ao)
 *   dai = dC⊙g⊙i(1-i), daf = dC⊙C_{t-1}⊙f(1-f), dag = dC⊙i⊙(1-g²)
 *     (input_forget, f = 1 - i: dai = dC⊙(g - C_{t-1})⊙i(1-i), daf = 0)
 *   dC_{t-1} = dC⊙f + dai⊙Pi + daf⊙Pf
 * dh: dH in, 0 out (the caller adds g·R_d); dc: dC in, dC_{t-1} out. */
static void lstm_cell_bwd(int64_t H, const real *a, const real *cpv, const real *p,
                          bool input_forget, const unsigned char *m, const real *dy, real *dh,
                          real *dc, real *dgr, real *g) {
    for (int64_t j = 0; j < H; j++) {
        const real gi = a[j], go = a[H + j], gf = a[2 * H + j], gg = a[3 * H + j], cp = cpv[j];
        const real cn = gf * cp + gi * gg, tc = RNN_TANH(cn);
        const real dH = dh[j] + (dy ? dy[j] : (real)0);
        real dao = dH * tc * go * ((real)1 - go);
        if (m && m[H + j]) dao = 0;
        real dcn = dc[j] + dH * go * ((real)1 - tc * tc);
        if (p) dcn += dao * p[H + j];
        real di = dcn * gg;
        const real df = dcn * cp;
        real daf = 0;
        if (input_forget) {
            di -= df;
        } else {
            daf = df * gf * ((real)1 - gf);
            if (m && m[2 * H + j]) daf = 0;
        }
        real dai = di * gi * ((real)1 - gi);
        if (m && m[j]) dai = 0;
        real dag = dcn * gi * ((real)1 - gg * gg);
        if (m && m[3 * H + j]) dag = 0;
        real dcp = dcn * gf;
        if (p) dcp += dai * p[j] + daf * p[2 * H + j];
        dc[j] = dcp;
        dh[j] = 0;
        g[j] = dgr[j] = dai;
        g[H + j] = dgr[H + j] = dao;
        g[2 * H + j] = dgr[2 * H + j] = daf;
        g[3 * H + j] = dgr[3 * H + j] = dag;
    }
}

/* GRU, linear_before_reset = 1, with a = (z, r, h~), n = H_{t-1}·Rhᵀ + Rbh,
 * h~ = tanh(xw_h + r⊙n), H = (1-z)⊙h~ + z⊙H_{t-1}:
 *   daz = dH⊙(H_{t-1} - h~)⊙z(1-z),  dah = dH⊙(1-z)⊙(1-h~²)
 *   dar = dah⊙n⊙r(1-r),  dn = dah⊙r
 *   dH_{t-1} = dH⊙z + [daz, dar, dn]·R_d
 * g = (daz, dar, dn), dgr = (daz, dar, dah); dn also to dn_out (for dRh, dRbh) when asked.
 * dh: dH in, dH⊙z out. */
static void gru_lbr_bwd(int64_t H, const real *a, const real *hpv, const real *n,
                        const unsigned char *m, const real *dy, real *dh, real *dgr, real *g,
                        real *dn_out) {
    for (int64_t j = 0; j < H; j++) {
        const real z = a[j], r = a[H + j], hh = a[2 * H + j];
        const real dH = dh[j] + (dy ? dy[j] : (real)0);
        real daz = dH * (hpv[j] - hh) * z * ((real)1 - z);
        if (m && m[j]) daz = 0;
        real dah = dH * ((real)1 - z) * ((real)1 - hh * hh);
        if (m && m[2 * H + j]) dah = 0;
        real dar = dah * n[j] * r * ((real)1 - r);
        if (m && m[H + j]) dar = 0;
        const real dn = dah * r;
        dh[j] = dH * z;
        g[j] = dgr[j] = daz;
        g[H + j] = dgr[H + j] = dar;
        g[2 * H + j] = dn;
        dgr[2 * H + j] = dah;
        if (dn_out) dn_out[j] = dn;
    }
}

/* GRU, linear_before_reset = 0, h~ = tanh(xw_h + (r⊙H_{t-1})·Rhᵀ), in two halves around the GEMM
 * d(r⊙H_{t-1}) = dah·Rh. First half:
 *   daz = dH⊙(H_{t-1} - h~)⊙z(1-z),  dah = dH⊙(1-z)⊙(1-h~²),  dh = dH⊙z  (direct term)
 * g = (daz, ., dah), dgr = (daz, ., dah). */
static void gru_bwd_1(int64_t H, const real *a, const real *hpv, const unsigned char *m,
                      const real *dy, real *dh, real *dgr, real *g) {
    for (int64_t j = 0; j < H; j++) {
        const real z = a[j], hh = a[2 * H + j];
        const real dH = dh[j] + (dy ? dy[j] : (real)0);
        real daz = dH * (hpv[j] - hh) * z * ((real)1 - z);
        if (m && m[j]) daz = 0;
        real dah = dH * ((real)1 - z) * ((real)1 - hh * hh);
        if (m && m[2 * H + j]) dah = 0;
        dh[j] = dH * z;
        g[j] = dgr[j] = daz;
        g[2 * H + j] = dgr[2 * H + j] = dah;
    }
}

/* Second half, with drh = d(r⊙H_{t-1}):
 *   dar = drh⊙H_{t-1}⊙r(1-r),  dh += drh⊙r;  then the caller adds [daz, dar]·R_d[z, r].
 * rh_out (when asked): r⊙H_{t-1}, for dRh. */
static void gru_bwd_2(int64_t H, const real *a, const real *hpv, const unsigned char *m,
                      const real *drh, real *dh, real *dgr, real *g, real *rh_out) {
    for (int64_t j = 0; j < H; j++) {
        const real r = a[H + j];
        real dar = drh[j] * hpv[j] * r * ((real)1 - r);
        if (m && m[H + j]) dar = 0;
        dh[j] += drh[j] * r;
        g[H + j] = dgr[H + j] = dar;
        if (rh_out) rh_out[j] = r * hpv[j];
    }
}

/* out[j] += Σ_r A[r*lda + j] for j < cols; each thread owns a block of columns, rows summed in
 * order (deterministic). */
static void colsum(int64_t nrows, int64_t cols, const real *A, int64_t lda, real *out) {
    const bool par = cols > 64 && nrows * cols >= RNN_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t j0 = 0; j0 < cols; j0 += 64) {
        const int64_t nj = cols - j0 < 64 ? cols - j0 : 64;
        real acc[64] = {0};
        for (int64_t r = 0; r < nrows; r++) {
            const real *ar = A + r * lda + j0;
            for (int64_t j = 0; j < nj; j++) acc[j] += ar[j];
        }
        for (int64_t j = 0; j < nj; j++) out[j0 + j] += acc[j];
    }
}

/* ---- reverse pass ------------------------------------------------------------------------ */

static stx_status rnn_bwd(stx_op_ctx *c, rnn_state *s) {
    const rnn_cfg *cfg = &s->cfg;
    const rnn_dims *dm = &s->dm;
    const bool lstm = cfg->kind == RNN_LSTM, lbr = cfg->lbr;
    const int64_t T = dm->T, N = dm->N, I = dm->I, H = dm->H, D = dm->D, GH = dm->G * dm->H;
    const int64_t ldg = D * GH, DH = D * H, rows = T * N;
    const size_t hbytes = (size_t)H * sizeof(real);
    const stx_tensor *dyt = dout_at(c, OUT_Y), *dyht = dout_at(c, OUT_YH);
    const stx_tensor *dyct = lstm ? dout_at(c, OUT_YC) : NULL;
    stx_tensor *dxt = din_at(c, IN_X), *dwt = din_at(c, IN_W), *drt = din_at(c, IN_R);
    stx_tensor *dbt = din_at(c, IN_B), *dh0t = din_at(c, IN_H0);
    stx_tensor *dc0t = lstm ? din_at(c, IN_C0) : NULL, *dpt = lstm ? din_at(c, IN_P) : NULL;
    if (!dxt && !dwt && !drt && !dbt && !dh0t && !dc0t && !dpt) return STX_OK;
    /* The forward inputs this pass reads (bwd_in): R always, W for dX, X for dW, P if given. */
    const int need[4] = {IN_R, dxt ? IN_W : -1, dwt ? IN_X : -1, lstm ? IN_P : -1};
    for (int k = 0; k < 4; k++) {
        const stx_tensor *t = need[k] >= 0 ? in_at(c, need[k]) : NULL;
        if (t && !t->data && stx__numel(t->dims, t->rank) > 0)
            return stx__node_err(c, STX_E_INTERNAL, "input %s is not available to the reverse pass",
                                 in_names[need[k]]);
    }

    const real *dY = dyt ? (const real *)dyt->data : NULL;
    const real *dYh = dyht ? (const real *)dyht->data : NULL;
    const real *dYc = dyct ? (const real *)dyct->data : NULL;
    const stx_tensor *pt = lstm ? in_at(c, IN_P) : NULL;
    const real *act = s->xw, *hp = s->hp, *cp = s->cp, *nh = s->nh;
    const unsigned char *cm = s->cm;
    real *dg = s->dg, *aux = s->aux, *bg = s->bg, *bh = s->bh, *bc = s->bc, *bt = s->bt;
    const int64_t *lens = s->lens;
    const bool want_aux = !lstm && (drt || dbt);
    const bool par = N > 1 && N * GH >= RNN_PAR_MIN;
    stx_status st;
    int64_t max_len = 0;
    for (int64_t b = 0; b < N; b++)
        if (lens[b] > max_len) max_len = lens[b];

    for (int64_t d = 0; d < D; d++) {
        const bool rev = D == 2 ? d == 1 : cfg->reverse;
        const real *R = (const real *)in_at(c, IN_R)->data + d * GH * H;
        const real *P = pt ? (const real *)pt->data + d * 3 * H : NULL;

        /* Steps that never ran have constant (zero) outputs: no gradient. */
        for (int64_t b = 0; b < N; b++)
            for (int64_t t = lens[b]; t < T; t++) {
                const int64_t row = x_row(dm, t, b);
                memset(dg + row * ldg + d * GH, 0, (size_t)GH * sizeof(real));
                if (want_aux) memset(aux + row * DH + d * H, 0, hbytes);
            }
        /* The final state's gradient, from Y_h / Y_c (constant zero for empty sequences). */
        for (int64_t b = 0; b < N; b++) {
            const bool ran = lens[b] > 0;
            if (dYh && ran)
                memcpy(bh + b * H, dYh + s_off(dm, d, b), hbytes);
            else
                memset(bh + b * H, 0, hbytes);
            if (lstm) {
                if (dYc && ran)
                    memcpy(bc + b * H, dYc + s_off(dm, d, b), hbytes);
                else
                    memset(bc + b * H, 0, hbytes);
            }
        }

        for (int64_t step = max_len - 1; step >= 0; step--) {
            /* Cell backward of every batch entry still running at this step (inactive entries:
             * zero g, so the GEMMs below leave their carried gradients unchanged). */
#pragma omp parallel for schedule(static) if (par)
            for (int64_t b = 0; b < N; b++) {
                real *g = bg + b * GH;
                if (step >= lens[b]) {
                    memset(g, 0, (size_t)GH * sizeof(real));
                    continue;
                }
                const int64_t t = rev ? lens[b] - 1 - step : step, row = x_row(dm, t, b);
                const real *a = act + row * ldg + d * GH;
                const unsigned char *m = cm ? cm + row * ldg + d * GH : NULL;
                const real *dy = dY ? dY + y_off(dm, t, d, b) : NULL;
                const real *hpv = hp + row * DH + d * H;
                real *dgr = dg + row * ldg + d * GH;
                real *dh = bh + b * H;
                if (lstm) {
                    lstm_cell_bwd(H, a, cp + row * DH + d * H, P, cfg->input_forget, m, dy, dh,
                                  bc + b * H, dgr, g);
                } else if (lbr) {
                    gru_lbr_bwd(H, a, hpv, nh + row * DH + d * H, m, dy, dh, dgr, g,
                                want_aux ? aux + row * DH + d * H : NULL);
                } else {
                    gru_bwd_1(H, a, hpv, m, dy, dh, dgr, g);
                }
            }
            if (!lstm && !lbr) {
                /* d(r⊙H_{t-1}) = dah·Rh, then the reset gate's half of the cell backward. */
                if ((st = gemm(c, 'N', 'N', N, H, H, bg + 2 * H, GH, R + 2 * H * H, H, 0, bt, H)))
                    return st;
#pragma omp parallel for schedule(static) if (par)
                for (int64_t b = 0; b < N; b++) {
                    if (step >= lens[b]) continue;
                    const int64_t t = rev ? lens[b] - 1 - step : step, row = x_row(dm, t, b);
                    gru_bwd_2(H, act + row * ldg + d * GH, hp + row * DH + d * H,
                              cm ? cm + row * ldg + d * GH : NULL, bt + b * H, bh + b * H,
                              dg + row * ldg + d * GH, bg + b * GH,
                              want_aux ? aux + row * DH + d * H : NULL);
                }
            }
            /* dH_{t-1} += g·R_d (GRU lbr 0: the z, r gates only, h~ went through r⊙H above). */
            const int64_t K = !lstm && !lbr ? 2 * H : GH;
            if ((st = gemm(c, 'N', 'N', N, H, K, bg, GH, R, H, 1, bh, H))) return st;
        }

        /* What reaches the initial state (nothing for empty sequences: their outputs are
         * constant). */
        for (int64_t b = 0; b < N; b++) {
            if (lens[b] == 0) continue;
            if (dh0t) {
                real *o = (real *)dh0t->data + s_off(dm, d, b);
                const real *v = bh + b * H;
                for (int64_t j = 0; j < H; j++) o[j] += v[j];
            }
            if (dc0t) {
                real *o = (real *)dc0t->data + s_off(dm, d, b);
                const real *v = bc + b * H;
                for (int64_t j = 0; j < H; j++) o[j] += v[j];
            }
        }
    }

    /* dX = dA·W over every row and both directions at once (W viewed as [D*G*H, I]). */
    if (dxt && (st = gemm(c, 'N', 'N', rows, I, ldg, dg, ldg, (const real *)in_at(c, IN_W)->data, I,
                          1, (real *)dxt->data, I)))
        return st;

    /* Weight gradients, only when asked for. */
    for (int64_t d = 0; d < D; d++) {
        const real *dgd = dg + d * GH;
        /* dW_d = dA_dᵀ·X */
        if (dwt &&
            (st = gemm(c, 'T', 'N', GH, I, rows, dgd, ldg, (const real *)in_at(c, IN_X)->data, I, 1,
                       (real *)dwt->data + d * GH * I, I)))
            return st;
        if (drt) {
            real *dR = (real *)drt->data + d * GH * H;
            const real *hpd = hp + d * H;
            if (lstm) { /* dR_d = dA_dᵀ·H_{t-1} */
                st = gemm(c, 'T', 'N', GH, H, rows, dgd, ldg, hpd, DH, 1, dR, H);
            } else { /* z, r as LSTM; h: dahᵀ·(r⊙H_{t-1}) (lbr 0) or dnᵀ·H_{t-1} (lbr 1) */
                st = gemm(c, 'T', 'N', 2 * H, H, rows, dgd, ldg, hpd, DH, 1, dR, H);
                if (!st && !lbr)
                    st = gemm(c, 'T', 'N', H, H, rows, dgd + 2 * H, ldg, aux + d * H, DH, 1,
                              dR + 2 * H * H, H);
                if (!st && lbr)
                    st = gemm(c, 'T', 'N', H, H, rows, aux + d * H, DH, hpd, DH, 1, dR + 2 * H * H,
                              H);
            }
            if (st) return st;
        }
        if (dbt) {
            /* dWb = Σ dA; dRb = Σ dA too, except GRU lbr 1's Rbh: Σ dn */
            real *dB = (real *)dbt->data + d * 2 * GH;
            colsum(rows, GH, dgd, ldg, dB);
            if (lstm || !lbr) {
                colsum(rows, GH, dgd, ldg, dB + GH);
            } else {
                colsum(rows, 2 * H, dgd, ldg, dB + GH);
                colsum(rows, H, aux + d * H, DH, dB + GH + 2 * H);
            }
        }
        if (dpt) {
            /* dPi = Σ dai⊙C_{t-1}, dPo = Σ dao⊙C_t, dPf = Σ daf⊙C_{t-1} (steps that ran) */
            real *dP = (real *)dpt->data + d * 3 * H;
            const bool ppar = H > 1 && rows * H >= RNN_PAR_MIN;
#pragma omp parallel for schedule(static) if (ppar)
            for (int64_t j = 0; j < H; j++) {
                real si = 0, so = 0, sf = 0;
                for (int64_t b = 0; b < N; b++)
                    for (int64_t t = 0; t < lens[b]; t++) {
                        const int64_t row = x_row(dm, t, b);
                        const real *a = act + row * ldg + d * GH, *dgr = dg + row * ldg + d * GH;
                        const real cpv = cp[row * DH + d * H + j];
                        const real cn = a[2 * H + j] * cpv + a[j] * a[3 * H + j];
                        si += dgr[j] * cpv;
                        so += dgr[H + j] * cn;
                        sf += dgr[2 * H + j] * cpv;
                    }
                dP[j] += si;
                dP[H + j] += so;
                dP[2 * H + j] += sf;
            }
        }
    }
    return STX_OK;
}

#undef sigm
#undef clampv
#undef gemm
#undef lstm_cell
#undef gru_gates_zr
#undef gru_update
#undef rnn_direction
#undef rnn_run
#undef lstm_cell_bwd
#undef gru_lbr_bwd
#undef gru_bwd_1
#undef gru_bwd_2
#undef colsum
#undef rnn_bwd

#endif /* RNN_TYPED_SECTION */
