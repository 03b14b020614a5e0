/* rnn.c: recurrent layers, ONNX LSTM and GRU (semantics of opset 14, older forms accepted).
 *
 * How a forward pass is organised (float32 only):
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
 * and the previous state, and can leave their gate activations behind (`act` / in place), so the
 * reverse-mode engine can record or recompute exactly what each step did.
 *
 * sequence_lens: batch entry b runs only its first L_b steps (reverse direction: time steps
 * L_b-1 down to 0). Y is zero at t >= L_b (ONNX spec), Y_h/Y_c hold the state after L_b steps and
 * are zero when L_b = 0 (the choice onnxruntime makes; the spec is silent).
 * clip bounds the gate pre-activations (inputs of f and g) to [-clip, clip], as onnxruntime does.
 * input_forget = 1 couples the gates as f = 1 - i (onnxruntime's reading of the spec).
 */
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

/* Scratch buffers, one block sized at prepare time. */
typedef struct rnn_state {
    stx_context *ctx;
    rnn_cfg cfg;
    rnn_dims dm;
    int64_t *lens; /* [N] effective sequence length of each batch entry */
    float *xw;     /* [T*N, D*G*H] X·Wᵀ + biases, rows in X's own order */
    float *bias;   /* [D, G*H] biases folded into xw */
    float *hr; /* [N, G*H] H_{s-1}·R_dᵀ of the current step (GRU: z, r activations in place) */
    float *h;  /* [N, H] hidden state of the current direction */
    float *c;  /* [N, H] LSTM cell state */
    float *rh; /* [N, H] GRU (linear_before_reset = 0): r ⊙ H_{s-1} */
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

static const char *const in_names[] = {"X",         "W",         "R", "B", "sequence_lens",
                                       "initial_h", "initial_c", "P"};

/* Checks that input i (if present) is float32 with the expected shape. */
static stx_status expect_shape(stx_op_ctx *c, int i, const int64_t *dims, int rank) {
    const stx_tensor *t = in_at(c, i);
    if (!t) return STX_OK;
    if (t->dtype != STX_DTYPE_FLOAT)
        return stx__node_err(c, STX_E_UNSUPPORTED,
                             "input %s has dtype %s; only float32 is supported", in_names[i],
                             stx_dtype_name(t->dtype));
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
    if (x->dtype != STX_DTYPE_FLOAT || w->dtype != STX_DTYPE_FLOAT || r->dtype != STX_DTYPE_FLOAT)
        return stx__node_err(
            c, STX_E_UNSUPPORTED, "X, W, R have dtypes %s, %s, %s; only float32 is supported",
            stx_dtype_name(x->dtype), stx_dtype_name(w->dtype), stx_dtype_name(r->dtype));
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
    stx_status st;
    const int64_t wd[3] = {D, GH, dm->I}, rd[3] = {D, GH, H}, bd[2] = {D, 2 * GH};
    const int64_t hd[3] = {cfg->layout == 0 ? D : N, cfg->layout == 0 ? N : D, H};
    const int64_t pd[2] = {D, 3 * H};
    if ((st = expect_shape(c, IN_W, wd, 3)) || (st = expect_shape(c, IN_R, rd, 3)) ||
        (st = expect_shape(c, IN_B, bd, 2)) || (st = expect_shape(c, IN_H0, hd, 3)))
        return st;
    if (cfg->kind == RNN_LSTM &&
        ((st = expect_shape(c, IN_C0, hd, 3)) || (st = expect_shape(c, IN_P, pd, 2))))
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
    if (out_at(c, OUT_Y)) stx__set_out(c, OUT_Y, STX_DTYPE_FLOAT, dm.layout ? yd1 : yd0, 4);
    if (out_at(c, OUT_YH)) stx__set_out(c, OUT_YH, STX_DTYPE_FLOAT, dm.layout ? hd1 : hd0, 3);
    if (out_at(c, OUT_YC)) stx__set_out(c, OUT_YC, STX_DTYPE_FLOAT, dm.layout ? hd1 : hd0, 3);
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

/* One allocation: the header, then the int64 lengths, then the float buffers. */
static stx_status rnn_alloc(stx_op_ctx *c, const rnn_cfg *cfg, const rnn_dims *dm,
                            rnn_state **out) {
    const size_t T = (size_t)dm->T, N = (size_t)dm->N, H = (size_t)dm->H;
    const size_t GH = (size_t)(dm->G * dm->H), D = (size_t)dm->D;
    size_t hdr = (sizeof(rnn_state) + 63) / 64 * 64;
    size_t lens = (N * sizeof(int64_t) + 63) / 64 * 64;
    /* float counts, each rounded to 16 floats (64 bytes) */
#define RND(x) (((x) + 15) / 16 * 16)
    size_t n_xw = RND(T * N * D * GH), n_bias = RND(D * GH), n_hr = RND(N * GH);
    size_t n_h = RND(N * H), n_c = cfg->kind == RNN_LSTM ? RND(N * H) : 0;
    size_t n_rh = cfg->kind == RNN_GRU && !cfg->lbr ? RND(N * H) : 0;
#undef RND
    size_t nf = n_xw + n_bias + n_hr + n_h + n_c + n_rh, bytes;
    if (!stx__mul_size(nf, sizeof(float), &bytes) || bytes > SIZE_MAX - hdr - lens)
        return stx__node_err(c, STX_E_NOMEM, "scratch size overflows");
    char *mem = stx__malloc(c->ctx, hdr + lens + bytes);
    if (!mem)
        return stx__node_err(c, STX_E_NOMEM, "cannot allocate %zu bytes of scratch",
                             hdr + lens + bytes);
    rnn_state *s = (rnn_state *)mem;
    memset(s, 0, sizeof *s);
    s->ctx = c->ctx;
    s->cfg = *cfg;
    s->dm = *dm;
    s->lens = (int64_t *)(mem + hdr);
    float *f = (float *)(mem + hdr + lens);
    s->xw = f, f += n_xw;
    s->bias = f, f += n_bias;
    s->hr = f, f += n_hr;
    s->h = f, f += n_h;
    s->c = n_c ? f : NULL, f += n_c;
    s->rh = n_rh ? f : NULL;
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
    if ((st = rnn_alloc(c, &cfg, &dm, &s))) return st;
    *state = s;
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Cells: one batch row, one time step. Pre-activations are xw (X_t·Wᵀ + folded biases) plus hr
 * (H_{t-1}·Rᵀ).
 */

static inline float sigmoidf(float x) {
    return 1.0f / (1.0f + expf(-x));
}

/* Clamp to [-lim, lim]; NaN passes through unchanged; lim = INFINITY is the identity. */
static inline float clampf(float x, float lim) {
    return x < -lim ? -lim : (x > lim ? lim : x);
}

/* LSTM (ONNX gate order i, o, f, c):
 *   i = σ(xw_i + hr_i + Pi⊙C_{t-1}),  f = σ(xw_f + hr_f + Pf⊙C_{t-1})  (or 1 - i if coupled)
 *   g = tanh(xw_c + hr_c),  C_t = f⊙C_{t-1} + i⊙g
 *   o = σ(xw_o + hr_o + Po⊙C_t),  H_t = o⊙tanh(C_t)
 * p: peepholes [3H] in order i, o, f, or NULL. cst: C_{t-1} on entry, C_t on exit. h: H_t.
 * act (optional, [4H]): the activations i, o, f, g, for a reverse pass. */
static void lstm_cell(int64_t H, const float *xw, const float *hr, const float *p, float clip,
                      bool input_forget, float *cst, float *h, float *act) {
    for (int64_t j = 0; j < H; j++) {
        const float cp = cst[j];
        float ai = xw[j] + hr[j];
        float ao = xw[H + j] + hr[H + j];
        float af = xw[2 * H + j] + hr[2 * H + j];
        float ag = xw[3 * H + j] + hr[3 * H + j];
        if (p) {
            ai += p[j] * cp;
            af += p[2 * H + j] * cp;
        }
        const float gi = sigmoidf(clampf(ai, clip));
        const float gf = input_forget ? 1.0f - gi : sigmoidf(clampf(af, clip));
        const float gg = tanhf(clampf(ag, clip));
        const float cn = gf * cp + gi * gg;
        if (p) ao += p[H + j] * cn;
        const float go = sigmoidf(clampf(ao, clip));
        cst[j] = cn;
        h[j] = go * tanhf(cn);
        if (act) {
            act[j] = gi;
            act[H + j] = go;
            act[2 * H + j] = gf;
            act[3 * H + j] = gg;
        }
    }
}

/* GRU, first half (gate order z, r, h): z = σ(xw_z + hr_z), r = σ(xw_r + hr_r), written over
 * hr[0:2H] (these are the activations a reverse pass needs). When rh != NULL
 * (linear_before_reset = 0) also r⊙H_{t-1}, the left operand of the second recurrent GEMM. */
static void gru_gates_zr(int64_t H, const float *xw, float *hr, const float *hprev, float clip,
                         float *rh) {
    for (int64_t j = 0; j < 2 * H; j++) hr[j] = sigmoidf(clampf(xw[j] + hr[j], clip));
    if (rh)
        for (int64_t j = 0; j < H; j++) rh[j] = hr[H + j] * hprev[j];
}

/* GRU, second half. zr: z and r activations [2H]; hrh: the recurrent term of the candidate:
 *   linear_before_reset = 0: hrh = (r⊙H_{t-1})·Rhᵀ, bias Rbh already in xw:
 *       h~ = tanh(xw_h + hrh)
 *   linear_before_reset = 1: hrh = H_{t-1}·Rhᵀ, rbh = Rbh (or NULL when no B):
 *       h~ = tanh(xw_h + r⊙(hrh + Rbh))
 *   H_t = (1 - z)⊙h~ + z⊙H_{t-1}
 * h: H_{t-1} on entry, H_t on exit. act (optional, [H]): h~ for a reverse pass. */
static void gru_update(int64_t H, const float *xw_h, const float *zr, const float *hrh,
                       const float *rbh, bool lbr, float clip, float *h, float *act) {
    for (int64_t j = 0; j < H; j++) {
        const float z = zr[j], r = zr[H + j];
        float a;
        if (lbr)
            a = xw_h[j] + r * (hrh[j] + (rbh ? rbh[j] : 0.0f));
        else
            a = xw_h[j] + hrh[j];
        const float hh = tanhf(clampf(a, clip));
        h[j] = (1.0f - z) * hh + z * h[j];
        if (act) act[j] = hh;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Forward
 */

/* Element offsets in Y for (t, direction, batch) and in initial_h / Y_h / Y_c for
 * (direction, batch), per layout. */
static inline int64_t y_off(const rnn_dims *d, int64_t t, int64_t dir, int64_t b) {
    return (d->layout == 0 ? (t * d->D + dir) * d->N + b : (b * d->T + t) * d->D + dir) * d->H;
}
static inline int64_t s_off(const rnn_dims *d, int64_t dir, int64_t b) {
    return (d->layout == 0 ? dir * d->N + b : b * d->D + dir) * d->H;
}
/* Row of X (and of xw) holding time step t of batch entry b. */
static inline int64_t x_row(const rnn_dims *d, int64_t t, int64_t b) {
    return d->layout == 0 ? t * d->N + b : b * d->T + t;
}

static stx_status sgemm_nt(stx_op_ctx *c, int64_t M, int64_t Nn, int64_t K, const float *A,
                           int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                           int64_t ldc) {
    if (M == 0 || Nn == 0) return STX_OK;
    if (K == 0) { /* C = beta*C; oneDNN may reject K = 0 */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < Nn; j++)
                C[i * ldc + j] = beta == 0.0f ? 0.0f : C[i * ldc + j] * beta;
        return STX_OK;
    }
    dnnl_status_t ds = dnnl_sgemm('N', 'T', M, Nn, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
    if (ds != dnnl_success)
        return stx__node_err(c, STX_E_INTERNAL,
                             "oneDNN sgemm failed (status %d) for M=%lld N=%lld K=%lld", (int)ds,
                             (long long)M, (long long)Nn, (long long)K);
    return STX_OK;
}

/* Work below this many floats per step stays on one thread (OpenMP start-up dominates). */
#define RNN_PAR_MIN 8192

/* Runs one direction over all its steps; leaves the final state in s->h (and s->c). */
static stx_status rnn_direction(stx_op_ctx *c, rnn_state *s, int64_t d, bool rev, int64_t max_len) {
    const rnn_cfg *cfg = &s->cfg;
    const rnn_dims *dm = &s->dm;
    const int64_t N = dm->N, H = dm->H, GH = dm->G * dm->H, ldxw = dm->D * GH;
    const float *R = (const float *)in_at(c, IN_R)->data + d * GH * H;
    const stx_tensor *h0 = in_at(c, IN_H0), *c0 = in_at(c, IN_C0), *pt = in_at(c, IN_P);
    const stx_tensor *bt = in_at(c, IN_B);
    const float *P = cfg->kind == RNN_LSTM && pt ? (const float *)pt->data + d * 3 * H : NULL;
    /* GRU linear_before_reset: Rbh stays out of xw (see header). */
    const float *rbh = bt ? (const float *)bt->data + d * 2 * GH + GH + 2 * H : NULL;
    float *Y = out_at(c, OUT_Y) ? (float *)out_at(c, OUT_Y)->data : NULL;
    const int64_t *lens = s->lens;
    const bool par = N > 1 && N * GH >= RNN_PAR_MIN;
    stx_status st;

    /* Initial state. */
    for (int64_t b = 0; b < N; b++) {
        float *hb = s->h + b * H;
        if (h0)
            memcpy(hb, (const float *)h0->data + s_off(dm, d, b), (size_t)H * sizeof(float));
        else
            memset(hb, 0, (size_t)H * sizeof(float));
        if (s->c) {
            float *cb = s->c + b * H;
            if (c0)
                memcpy(cb, (const float *)c0->data + s_off(dm, d, b), (size_t)H * sizeof(float));
            else
                memset(cb, 0, (size_t)H * sizeof(float));
        }
    }

    for (int64_t step = 0; step < max_len; step++) {
        if (cfg->kind == RNN_LSTM || cfg->lbr) {
            /* hr = H_{t-1}·R_dᵀ for all gates. */
            if ((st = sgemm_nt(c, N, GH, H, s->h, H, R, H, 0.0f, s->hr, GH))) return st;
        } else {
            /* GRU, reset before the linear map: z, r first, then (r⊙H)·Rhᵀ. */
            if ((st = sgemm_nt(c, N, 2 * H, H, s->h, H, R, H, 0.0f, s->hr, GH))) return st;
#pragma omp parallel for schedule(static) if (par)
            for (int64_t b = 0; b < N; b++) {
                if (step >= lens[b]) { /* finished: keep rh defined, its GEMM row is unused */
                    memset(s->rh + b * H, 0, (size_t)H * sizeof(float));
                    continue;
                }
                const int64_t t = rev ? lens[b] - 1 - step : step;
                const float *xw = s->xw + x_row(dm, t, b) * ldxw + d * GH;
                gru_gates_zr(H, xw, s->hr + b * GH, s->h + b * H, cfg->clip, s->rh + b * H);
            }
            if ((st = sgemm_nt(c, N, H, H, s->rh, H, R + 2 * H * H, H, 0.0f, s->hr + 2 * H, GH)))
                return st;
        }

#pragma omp parallel for schedule(static) if (par)
        for (int64_t b = 0; b < N; b++) {
            if (step >= lens[b]) continue; /* this sequence has ended: state stays final */
            const int64_t t = rev ? lens[b] - 1 - step : step;
            const float *xw = s->xw + x_row(dm, t, b) * ldxw + d * GH;
            float *hr = s->hr + b * GH, *hb = s->h + b * H;
            if (cfg->kind == RNN_LSTM) {
                lstm_cell(H, xw, hr, P, cfg->clip, cfg->input_forget, s->c + b * H, hb, NULL);
            } else {
                if (cfg->lbr) gru_gates_zr(H, xw, hr, hb, cfg->clip, NULL);
                gru_update(H, xw + 2 * H, hr, hr + 2 * H, rbh, cfg->lbr, cfg->clip, hb, NULL);
            }
            if (Y) memcpy(Y + y_off(dm, t, d, b), hb, (size_t)H * sizeof(float));
        }
    }
    return STX_OK;
}

static stx_status rnn_forward(stx_op_ctx *c) {
    rnn_state *s = c->state, *tmp = NULL;
    stx_status st;
    if (!s) {
        /* Not prepared (e.g. constant folding at plan time): scratch just for this call. */
        rnn_cfg cfg;
        rnn_dims dm;
        if ((st = rnn_read_cfg(c->node, c->err, &cfg))) return st;
        if ((st = rnn_get_dims(c, &cfg, &dm))) return st;
        if ((st = rnn_alloc(c, &cfg, &dm, &tmp))) return st;
        s = tmp;
    }
    const rnn_cfg *cfg = &s->cfg;
    const rnn_dims *dm = &s->dm;
    const int64_t T = dm->T, N = dm->N, I = dm->I, H = dm->H, D = dm->D, GH = dm->G * dm->H;
    const int64_t ldxw = D * GH;
    const stx_tensor *xt = in_at(c, IN_X), *bt = in_at(c, IN_B), *sl = in_at(c, IN_SEQ);
    stx_tensor *yt = out_at(c, OUT_Y), *yh = out_at(c, OUT_YH), *yc = out_at(c, OUT_YC);
    if (cfg->kind == RNN_GRU) yc = NULL;
    {
        const int64_t *xd = xt->dims;
        const bool same = xt->rank == 3 && xd[2] == I &&
                          (dm->layout == 0 ? xd[0] == T && xd[1] == N : xd[0] == N && xd[1] == T);
        if (!same) { /* the scratch was sized for other shapes */
            char sx[128];
            st =
                stx__node_err(c, STX_E_INTERNAL, "X has shape %s, not the shape it was planned for",
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

    /* Folded biases: Wb + Rb per gate, except GRU's Rbh under linear_before_reset. */
    for (int64_t d = 0; d < D; d++)
        for (int64_t g = 0; g < GH; g++) {
            float v = 0.0f;
            if (bt) {
                const float *B = (const float *)bt->data + d * 2 * GH;
                bool keep_rb = !(cfg->kind == RNN_GRU && cfg->lbr && g >= 2 * H);
                v = B[g] + (keep_rb ? B[GH + g] : 0.0f);
            }
            s->bias[d * GH + g] = v;
        }

    /* xw = bias + X·Wᵀ, all time steps and directions in one GEMM. */
    const int64_t rows = T * N;
    {
        const bool par = rows > 1 && rows * ldxw >= RNN_PAR_MIN;
        float *xw = s->xw;
        const float *bias = s->bias;
#pragma omp parallel for schedule(static) if (par)
        for (int64_t m = 0; m < rows; m++)
            memcpy(xw + m * ldxw, bias, (size_t)ldxw * sizeof(float));
    }
    if ((st = sgemm_nt(c, rows, ldxw, I, (const float *)xt->data, I,
                       (const float *)in_at(c, IN_W)->data, I, 1.0f, s->xw, ldxw)))
        goto done;

    for (int64_t d = 0; d < D; d++) {
        const bool rev = D == 2 ? d == 1 : cfg->reverse;
        if ((st = rnn_direction(c, s, d, rev, max_len))) goto done;

        /* Outputs past each sequence's end are zero; final states, zero for empty sequences. */
        for (int64_t b = 0; b < N; b++) {
            const int64_t L = s->lens[b];
            if (yt)
                for (int64_t t = L; t < T; t++)
                    memset((float *)yt->data + y_off(dm, t, d, b), 0, (size_t)H * sizeof(float));
            if (yh) {
                float *dst = (float *)yh->data + s_off(dm, d, b);
                if (L > 0)
                    memcpy(dst, s->h + b * H, (size_t)H * sizeof(float));
                else
                    memset(dst, 0, (size_t)H * sizeof(float));
            }
            if (yc) {
                float *dst = (float *)yc->data + s_off(dm, d, b);
                if (L > 0)
                    memcpy(dst, s->c + b * H, (size_t)H * sizeof(float));
                else
                    memset(dst, 0, (size_t)H * sizeof(float));
            }
        }
    }
    st = STX_OK;
done:
    if (tmp) rnn_release(tmp);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Registration
 */

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
                                   .release = rnn_release};

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
                                  .release = rnn_release};

const stx_op_def *const stx__ops_rnn[] = {&op_lstm, &op_gru, NULL};
