/* lrp.c: layer-wise relevance propagation (definitions and choices: docs/lrp.md).
 *
 * LRP is a modified backward pass ("gradient trick"): a reverse-mode session planned from the
 * target output to the input whose backward rules replace the vector-Jacobian products by the
 * relevance rules. The "gradient" that flows is the relevance R itself:
 *   - linear layers (Conv 1-3-D with groups, ConvTranspose, Gemm, MatMul with a constant weight):
 *     R_i = sum_j c_ij / d_j R_j with the rule's contributions c_ij and stabilised denominator
 *     d_j (zero, epsilon, gamma, alpha-beta, z+, w^2, flat, z^B). For convolutions the sums are
 *     convolutions: Z = conv'(x') forward with modified weights, S = R / Z, C = conv'^T(S)
 *     (backward-data), R_in = x' * C; the modified weights (w+, w-, w + gamma w+, w^2, ones) are
 *     copies made at plan time with their own oneDNN primitives (the model is never written).
 *     Gemm and MatMul are small: their sums run directly in double.
 *   - Conv followed by BatchNormalization (the Conv's only consumer) is folded: the rules see
 *     w' = w s, b' = (b - mean) s + beta (s = scale / sqrt(var + eps)); the BN passes R on.
 *   - Add / Sub / Sum of activations, AveragePool, GlobalAveragePool, ReduceMean, ReduceSum:
 *     z-rule, R_a = a / stab(y) R (an operand that is a constant, e.g. a bias, absorbs its
 *     share); pools through the op's own backward applied to S = R / stab(y).
 *   - Relu and other element-wise activations, a lone BatchNormalization, Mul / Div by a
 *     constant, a Softmax producing the explained output: R passes unchanged. A Mul of a signal
 *     and a gate (a Sigmoid's output, maybe reshaped or transposed): all of R to the signal
 *     (signal-take-all, as in the LSTM).
 *   - MaxPool (winner takes all) and the data-movement ops (Reshape, Transpose, Concat, ...):
 *     their gradient moves R, so they keep the default backward.
 *   - LSTM (Arras et al. 2017): signal-take-all through the gates, epsilon on the cell update and
 *     on the linear map of the cell input.
 * Anything else on the path from the input to the output is refused at plan time.
 * The seed is the target logit: the output is seeded with one-hot * logit.
 */
#include "../exec/session.h"
#include "explain.h"

#include <math.h>
#include <string.h>

enum {
    RULE_ZERO,
    RULE_EPS,
    RULE_GAMMA,
    RULE_AB, /* alpha-beta with the bias split into its positive and negative parts */
    RULE_ZPLUS,
    RULE_WSQ,
    RULE_FLAT,
    RULE_ZBOX
};

enum {
    K_NONE = 0, /* default backward (or not on the path) */
    K_CONV,
    K_DENSE,
    K_ADD,  /* z-rule over the operands of Add / Sub / Sum */
    K_POOL, /* z-rule through the op's own backward */
    K_PASS, /* relevance passes unchanged */
    K_LSTM  /* Arras et al.: signal-take-all through gates, epsilon on the linear parts */
};

#define STAB 1e-6     /* stabiliser of every rule but epsilon (zennit's default) */
#define PAR_MIN 65536 /* element loops below this size stay single-threaded */

/* A copy of a convolution node with modified weights (no bias), with its own primitives. */
typedef struct conv_inst {
    stx_op_ctx c;
    stx_tensor *pin[3], *pout[1], *pdin[3], *pdout[1];
    stx_tensor x, y, dx, dy;
    stx_tensor *w;
    void *state;
} conv_inst;

typedef struct lnode {
    int kind, rule;
    double alpha, beta;
    bool nonneg; /* the layer's input is known to be >= 0 (e.g. after a Relu) */
    bool first;  /* first linear layer reading the input */
    int sign[8]; /* K_ADD: +1 / -1 per operand (Sub) */
    int pass_in; /* K_PASS: the operand that receives the relevance */
    /* convolutions */
    int64_t M;                /* output channels */
    double *fs, *ft, *bo;     /* z = y fs + ft (folded BN, else 1, 0); bo: the Conv's own bias */
    double *beff, *bg;        /* effective bias (w' bias); gamma: beff + gamma beff+ */
    conv_inst *P, *N, *G, *Q; /* w'+, w'-, w' + gamma w'+, w'^2 or ones */
    float *den;               /* wsquare / flat denominators (the output's shape) */
    /* dense layers: rows x K inputs -> M outputs, W K x M */
    int64_t K;
    double *W, *b;
    /* LSTM: hidden size, forward values (T x B x 4H gates i, o, f, g; T x B x H cells, hidden
     * states, pre-activations of g) and B x H relevance rows */
    int64_t H;
    double *gates, *cell, *hid, *zg, *rh, *rc, *rh2, *sg;
} lnode;

struct stx_lrp {
    stx_context *ctx;
    stx_model *m;
    stx_session *s;
    lnode *nodes; /* per graph node */
    stx_backward_rule rules[32];
    int n_rules;
    int out_index, logit_v; /* value index of the logits (the Softmax input), or -1 */
    double eps, gamma;
    int box; /* 0: given bounds, 1: per-channel valid-pixel box, 2: per-sample min/max */
    double lo, hi, boxlo[3], boxhi[3];
    float *xa, *cb;      /* input-shaped scratch (largest layer input) */
    float *z1, *z2, *z3; /* output-shaped scratch (largest layer output) */
    double *d1, *d2;     /* dense scratch (largest M) */
    int64_t max_in, max_out, max_m;
    stx_tensor *wts; /* seed weights */
    const char *keep[2];
};

/* ---- helpers ------------------------------------------------------------------------------ */

static inline double stab(double z, double e) {
    return z + (z >= 0 ? e : -e);
}

static const char *const rule_names[] = {"zero",  "epsilon", "gamma", "alpha1beta0", "alpha2beta1",
                                         "zplus", "wsquare", "flat",  "zbox",        NULL};

static bool is_linear_op(const char *op) {
    return !strcmp(op, "Conv") || !strcmp(op, "ConvTranspose") || !strcmp(op, "Gemm") ||
           !strcmp(op, "MatMul");
}
static bool in_list(const char *op, const char *const *list) {
    for (int k = 0; list[k]; k++)
        if (!strcmp(op, list[k])) return true;
    return false;
}
/* element-wise activations: relevance passes unchanged */
static const char *const pass_ops[] = {"Relu",
                                       "LeakyRelu",
                                       "Elu",
                                       "Selu",
                                       "Clip",
                                       "Sigmoid",
                                       "Tanh",
                                       "Softplus",
                                       "HardSigmoid",
                                       "Gelu",
                                       "BatchNormalization",
                                       NULL};
/* their gradient moves relevance */
static const char *const move_ops[] = {
    "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Concat",
    "Split",   "Slice",   "Identity",  "Dropout", "MaxPool",   "GlobalMaxPool",
    "Pad",     "Expand",  "Tile",      "Gather",  "Cast",      NULL};
static const char *const pool_ops[] = {"AveragePool", "GlobalAveragePool", "ReduceMean",
                                       "ReduceSum", NULL};
/* ops whose output is >= 0 when their (first) input is */
static const char *const keep_sign_ops[] = {"MaxPool",
                                            "AveragePool",
                                            "GlobalAveragePool",
                                            "GlobalMaxPool",
                                            "ReduceMean",
                                            "ReduceSum",
                                            "Reshape",
                                            "Flatten",
                                            "Transpose",
                                            "Squeeze",
                                            "Unsqueeze",
                                            "Identity",
                                            "Dropout",
                                            "Slice",
                                            "Split",
                                            "Gather",
                                            "Expand",
                                            "Tile",
                                            "Concat",
                                            "Add",
                                            "Sum",
                                            NULL};

#define SUPPORTED_MSG                                                                              \
    "LRP supports Conv, ConvTranspose, Gemm, MatMul (constant weight), LSTM, Add, Sub, Sum, Mul "  \
    "and Div by a constant, Mul by a sigmoid gate, BatchNormalization, Relu and other element-"    \
    "wise activations, MaxPool, AveragePool, GlobalAveragePool, ReduceMean, ReduceSum, a final "   \
    "Softmax and the data-movement ops (Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Concat, " \
    "Split, Slice, Pad, Expand, Tile, Gather, Identity, Dropout, Cast)"

static bool is_const(const stx_session *s, int v) {
    return v >= 0 && (s->kind[v] == STX_VK_MODEL_CONST || s->kind[v] == STX_VK_FOLDED) &&
           s->vals[v].data;
}

/* Index of input element for output element o under numpy broadcasting. */
static int64_t bcast_index(const stx_tensor *y, const stx_tensor *a, int64_t o) {
    int64_t idx = 0, mul = 1;
    for (int k = y->rank - 1, ka = a->rank - 1; k >= 0; k--, ka--) {
        int64_t c = o % y->dims[k];
        o /= y->dims[k];
        if (ka < 0) continue;
        if (a->dims[ka] != 1) idx += c * mul;
        mul *= a->dims[ka];
    }
    return idx;
}

static bool same_shape(const stx_tensor *a, const stx_tensor *b) {
    if (a->rank != b->rank) return false;
    for (int k = 0; k < a->rank; k++)
        if (a->dims[k] != b->dims[k]) return false;
    return true;
}

/* ---- convolution instances ---------------------------------------------------------------- */

static void inst_free(stx_context *ctx, conv_inst *q) {
    if (!q) return;
    if (q->state && q->c.node->def->release) q->c.node->def->release(q->state);
    stx_tensor_free(q->w);
    stx__free(ctx, q);
}

/* A copy of the convolution step c with weights w (float32 data, W's shape; taken over). */
static stx_status inst_new(stx_lrp *l, const stx_op_ctx *c, stx_tensor *w, conv_inst **out) {
    *out = NULL;
    conv_inst *q = stx__calloc(l->ctx, 1, sizeof *q);
    if (!q) {
        stx_tensor_free(w);
        return stx__errf(&l->ctx->err, STX_E_NOMEM, "lrp: out of memory");
    }
    q->w = w;
    q->x = *c->in[0];
    q->y = *c->out[0];
    q->x.data = q->y.data = NULL;
    q->x.owns = q->y.owns = false;
    q->dx = q->x;
    q->dy = q->y;
    q->pin[0] = &q->x;
    q->pin[1] = q->w;
    q->pout[0] = &q->y;
    q->pdin[0] = &q->dx;
    q->pdout[0] = &q->dy;
    q->c.ctx = l->ctx;
    q->c.node = c->node;
    q->c.n_in = 2;
    q->c.n_out = 1;
    q->c.in = q->pin;
    q->c.out = q->pout;
    q->c.din = q->pdin;
    q->c.dout = q->pdout;
    q->c.err = &l->ctx->err;
    q->c.opset = c->opset;
    q->c.need_backward = 1;
    stx_status st = STX_OK;
    if (c->node->def->prepare) st = c->node->def->prepare(&q->c, &q->state);
    q->c.state = q->state;
    if (st) {
        inst_free(l->ctx, q);
        return st;
    }
    *out = q;
    return STX_OK;
}

static stx_status inst_forward(conv_inst *q, const float *x, float *y, stx_err *err) {
    q->x.data = (void *)x;
    q->y.data = y;
    q->c.err = err;
    return q->c.node->def->forward(&q->c);
}

/* dx = conv^T(dy) (dx zeroed first). */
static stx_status inst_backward(conv_inst *q, const float *dy, float *dx, stx_err *err) {
    memset(dx, 0, sizeof(float) * (size_t)stx__numel(q->dx.dims, q->dx.rank));
    q->dy.data = (void *)dy;
    q->dx.data = dx;
    q->c.err = err;
    q->pdin[1] = q->pdin[2] = NULL;
    return q->c.node->def->backward(&q->c);
}

/* The node's own backward (original weights) applied to s instead of its output gradient, into
 * dx (the shape of input 0; zeroed first). */
static stx_status own_backward(stx_op_ctx *c, const float *s, float *dx) {
    if (c->n_in > 8) return stx__node_err(c, STX_E_INTERNAL, "lrp: too many inputs");
    stx_tensor ts = *c->dout[0], tx = *c->din[0];
    ts.data = (void *)s;
    tx.data = dx;
    ts.owns = tx.owns = false;
    memset(dx, 0, sizeof(float) * (size_t)stx__numel(tx.dims, tx.rank));
    stx_tensor *dout[1] = {&ts}, *din[8] = {&tx};
    stx_op_ctx lc = *c;
    lc.dout = dout;
    lc.din = din;
    lc.n_out = 1;
    return c->node->def->backward(&lc);
}

/* ---- rules -------------------------------------------------------------------------------- */

/* Bounds of z^B for input element i of a layer input X (rank >= 2, N first). */
typedef struct box_t {
    const stx_lrp *l;
    const stx_tensor *X;
    int64_t per_row, sp; /* elements per batch row, per channel */
    double *rlo, *rhi;   /* per-row min / max (box 2) */
} box_t;

static void box_bounds(const box_t *b, int64_t i, double *lo, double *hi) {
    const stx_lrp *l = b->l;
    if (l->box == 1 && b->X->rank >= 2 && b->X->dims[1] == 3) {
        int64_t ch = (i / b->sp) % 3;
        *lo = l->boxlo[ch];
        *hi = l->boxhi[ch];
    } else if (l->box == 0) {
        *lo = l->lo;
        *hi = l->hi;
    } else {
        int64_t r = i / b->per_row;
        *lo = b->rlo[r];
        *hi = b->rhi[r];
    }
}

/* Per-row min/max of X into l->d1 / l->d2 (rows <= max_m by construction at plan time). */
static void box_prepare(stx_lrp *l, const stx_tensor *X, box_t *b) {
    b->l = l;
    b->X = X;
    int64_t n = stx__numel(X->dims, X->rank), rows = X->dims[0];
    b->per_row = n / rows;
    b->sp = X->rank > 2 ? b->per_row / X->dims[1] : 1;
    b->rlo = l->d1;
    b->rhi = l->d2;
    if (l->box != 2 && !(l->box == 1 && !(X->rank >= 2 && X->dims[1] == 3))) return;
    const float *x = X->data;
    for (int64_t r = 0; r < rows; r++) {
        double mn = INFINITY, mx = -INFINITY;
        for (int64_t i = 0; i < b->per_row; i++) {
            double v = x[r * b->per_row + i];
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
        }
        b->rlo[r] = mn;
        b->rhi[r] = mx;
    }
}

static stx_status conv_rule(stx_lrp *l, lnode *ln, stx_op_ctx *c) {
    stx_tensor *X = c->in[0], *Y = c->out[0], *R = c->dout[0], *D = c->din[0];
    if (!R || !D) return STX_OK;
    stx_err *err = c->err;
    const int64_t nx = stx__numel(X->dims, X->rank), ny = stx__numel(Y->dims, Y->rank);
    const int64_t M = ln->M, sp = ny / (Y->dims[0] * M);
    const float *x = X->data, *y = Y->data, *r = R->data;
    float *d = D->data, *S = l->z1, *Z = l->z2, *Z3 = l->z3, *C = l->cb, *XA = l->xa;
    const double *fs = ln->fs, *ft = ln->ft;
    stx_status st = STX_OK;
    switch (ln->rule) {
    case RULE_ZERO:
    case RULE_EPS: {
        double e = ln->rule == RULE_EPS ? l->eps : 0;
#pragma omp parallel for if (ny > PAR_MIN)
        for (int64_t o = 0; o < ny; o++) {
            int64_t ch = (o / sp) % M;
            double z = y[o] * fs[ch] + ft[ch];
            S[o] = z == 0 && e == 0 ? 0.0f : (float)(r[o] * fs[ch] / stab(z, e));
        }
        if ((st = own_backward(c, S, C))) return st;
#pragma omp parallel for if (nx > PAR_MIN)
        for (int64_t i = 0; i < nx; i++) d[i] += x[i] * C[i];
        return STX_OK;
    }
    case RULE_GAMMA: {
        if ((st = inst_forward(ln->G, x, Z, err))) return st;
#pragma omp parallel for if (ny > PAR_MIN)
        for (int64_t o = 0; o < ny; o++)
            S[o] = (float)(r[o] / stab(Z[o] + ln->bg[(o / sp) % M], STAB));
        if ((st = inst_backward(ln->G, S, C, err))) return st;
#pragma omp parallel for if (nx > PAR_MIN)
        for (int64_t i = 0; i < nx; i++) d[i] += x[i] * C[i];
        return STX_OK;
    }
    case RULE_AB:
    case RULE_ZPLUS: {
        bool bias = ln->rule == RULE_AB;
        /* pass 0: activator (x+ w+, x- w-, b+); pass 1: inhibitor (x+ w-, x- w+, b-) */
        for (int pass = 0; pass < 2; pass++) {
            double coef = pass == 0 ? ln->alpha : -ln->beta;
            if (coef == 0) continue;
            conv_inst *qa = pass == 0 ? ln->P : ln->N, *qb = pass == 0 ? ln->N : ln->P;
            if (ln->nonneg) {
                if ((st = inst_forward(qa, x, Z, err))) return st;
            } else {
                for (int64_t i = 0; i < nx; i++) XA[i] = x[i] > 0 ? x[i] : 0;
                if ((st = inst_forward(qa, XA, Z, err))) return st;
                for (int64_t i = 0; i < nx; i++) XA[i] = x[i] < 0 ? x[i] : 0;
                if ((st = inst_forward(qb, XA, Z3, err))) return st;
                for (int64_t o = 0; o < ny; o++) Z[o] += Z3[o];
            }
#pragma omp parallel for if (ny > PAR_MIN)
            for (int64_t o = 0; o < ny; o++) {
                double be = bias ? ln->beff[(o / sp) % M] : 0;
                be = pass == 0 ? (be > 0 ? be : 0) : (be < 0 ? be : 0);
                S[o] = (float)(r[o] / stab(Z[o] + be, STAB));
            }
            if ((st = inst_backward(qa, S, C, err))) return st;
#pragma omp parallel for if (nx > PAR_MIN)
            for (int64_t i = 0; i < nx; i++)
                if (x[i] > 0) d[i] += (float)(coef * x[i] * C[i]);
            if (!ln->nonneg) {
                if ((st = inst_backward(qb, S, C, err))) return st;
                for (int64_t i = 0; i < nx; i++)
                    if (x[i] < 0) d[i] += (float)(coef * x[i] * C[i]);
            }
        }
        return STX_OK;
    }
    case RULE_WSQ:
    case RULE_FLAT: {
#pragma omp parallel for if (ny > PAR_MIN)
        for (int64_t o = 0; o < ny; o++) S[o] = (float)(r[o] / stab(ln->den[o], STAB));
        if ((st = inst_backward(ln->Q, S, C, err))) return st;
#pragma omp parallel for if (nx > PAR_MIN)
        for (int64_t i = 0; i < nx; i++) d[i] += C[i];
        return STX_OK;
    }
    case RULE_ZBOX: {
        box_t bx;
        box_prepare(l, X, &bx);
        for (int64_t i = 0; i < nx; i++) {
            double lo, hi;
            box_bounds(&bx, i, &lo, &hi);
            XA[i] = (float)lo;
        }
        if ((st = inst_forward(ln->P, XA, Z, err))) return st;
        for (int64_t i = 0; i < nx; i++) {
            double lo, hi;
            box_bounds(&bx, i, &lo, &hi);
            XA[i] = (float)hi;
        }
        if ((st = inst_forward(ln->N, XA, Z3, err))) return st;
        /* z = x w' - l w'+ - h w'-, x w' = (y - b) fs; S for the modified copies in z1, S fs
         * for the node's own weights in z3 */
        for (int64_t o = 0; o < ny; o++) {
            int64_t ch = (o / sp) % M;
            double z = (y[o] - ln->bo[ch]) * fs[ch] - Z[o] - Z3[o];
            double s = r[o] / stab(z, STAB);
            S[o] = (float)s;
            Z3[o] = (float)(s * fs[ch]);
        }
        if ((st = own_backward(c, Z3, C))) return st;
        for (int64_t i = 0; i < nx; i++) d[i] += x[i] * C[i];
        if ((st = inst_backward(ln->P, S, C, err))) return st;
        for (int64_t i = 0; i < nx; i++) {
            double lo, hi;
            box_bounds(&bx, i, &lo, &hi);
            d[i] -= (float)(lo * C[i]);
        }
        if ((st = inst_backward(ln->N, S, C, err))) return st;
        for (int64_t i = 0; i < nx; i++) {
            double lo, hi;
            box_bounds(&bx, i, &lo, &hi);
            d[i] -= (float)(hi * C[i]);
        }
        return STX_OK;
    }
    }
    return stx__node_err(c, STX_E_INTERNAL, "lrp: unknown rule %d", ln->rule);
}

/* Gemm / MatMul: rows x K -> M with W (K x M) and b (M), every sum in double. */
static stx_status dense_rule(stx_lrp *l, lnode *ln, stx_op_ctx *c) {
    stx_tensor *X = c->in[0], *R = c->dout[0], *D = c->din[0];
    if (!R || !D) return STX_OK;
    const int64_t K = ln->K, M = ln->M, rows = stx__numel(X->dims, X->rank) / K;
    const float *x = X->data, *r = R->data;
    float *d = D->data;
    const double *W = ln->W, *b = ln->b;
    double *sa = l->d1, *sb = l->d2, g = l->gamma;
    for (int64_t row = 0; row < rows; row++) {
        const float *xr = x + row * K;
        const float *rr = r + row * M;
        float *dr = d + row * K;
        double blo = l->lo, bhi = l->hi;
        if (ln->rule == RULE_ZBOX && l->box != 0) { /* per-row min and max */
            double mn = INFINITY, mx = -INFINITY;
            for (int64_t i = 0; i < K; i++) {
                mn = xr[i] < mn ? xr[i] : mn;
                mx = xr[i] > mx ? xr[i] : mx;
            }
            blo = mn;
            bhi = mx;
        }
        for (int64_t j = 0; j < M; j++) {
            double za = 0, zb = 0;
            for (int64_t i = 0; i < K; i++) {
                double w = W[i * M + j], xi = xr[i], p = xi * w;
                switch (ln->rule) {
                case RULE_ZERO:
                case RULE_EPS:
                    za += p;
                    break;
                case RULE_GAMMA:
                    za += xi * (w + g * (w > 0 ? w : 0));
                    break;
                case RULE_AB:
                case RULE_ZPLUS:
                    if (p > 0)
                        za += p;
                    else
                        zb += p;
                    break;
                case RULE_WSQ:
                    za += w * w;
                    break;
                case RULE_FLAT:
                    za += 1;
                    break;
                case RULE_ZBOX:
                    za += p - blo * (w > 0 ? w : 0) - bhi * (w < 0 ? w : 0);
                    break;
                }
            }
            double bj = b ? b[j] : 0;
            switch (ln->rule) {
            case RULE_ZERO:
                sa[j] = za + bj == 0 ? 0 : rr[j] / (za + bj);
                break;
            case RULE_EPS:
                sa[j] = za + bj == 0 && l->eps == 0 ? 0 : rr[j] / stab(za + bj, l->eps);
                break;
            case RULE_GAMMA:
                sa[j] = rr[j] / stab(za + bj + g * (bj > 0 ? bj : 0), STAB);
                break;
            case RULE_AB:
                sa[j] = ln->alpha * rr[j] / stab(za + (bj > 0 ? bj : 0), STAB);
                sb[j] = ln->beta * rr[j] / stab(zb + (bj < 0 ? bj : 0), STAB);
                break;
            case RULE_ZPLUS:
                sa[j] = rr[j] / stab(za, STAB);
                break;
            default:
                sa[j] = rr[j] / stab(za, STAB);
            }
        }
        for (int64_t i = 0; i < K; i++) {
            double acc = 0, xi = xr[i];
            const double *wr = W + i * M;
            for (int64_t j = 0; j < M; j++) {
                double w = wr[j], p = xi * w;
                switch (ln->rule) {
                case RULE_ZERO:
                case RULE_EPS:
                    acc += p * sa[j];
                    break;
                case RULE_GAMMA:
                    acc += xi * (w + g * (w > 0 ? w : 0)) * sa[j];
                    break;
                case RULE_AB:
                    acc += p > 0 ? p * sa[j] : -p * sb[j];
                    break;
                case RULE_ZPLUS:
                    acc += p > 0 ? p * sa[j] : 0;
                    break;
                case RULE_WSQ:
                    acc += w * w * sa[j];
                    break;
                case RULE_FLAT:
                    acc += sa[j];
                    break;
                case RULE_ZBOX:
                    acc += (p - blo * (w > 0 ? w : 0) - bhi * (w < 0 ? w : 0)) * sa[j];
                    break;
                }
            }
            dr[i] += (float)acc;
        }
    }
    return STX_OK;
}

/* LSTM (ONNX gate order i, o, f, c; one direction, layout 0, default activations). The forward
 * is recomputed in double; then, from the last step back: the relevance of h_t goes entirely to
 * c_t (h_t = o_t tanh(c_t): the gate takes none), c_t = f_t c_t-1 + i_t g_t is split by the
 * epsilon rule between c_t-1 and i_t g_t, whose relevance goes entirely to g_t (signal-take-all)
 * and to its pre-activation, which the epsilon rule spreads over x_t and h_t-1 (the biases absorb
 * their share). Relevance reaching the initial states is dropped. */
static double lstm_prev(const lnode *ln, const stx_tensor *init, const double *seq, int64_t t,
                        int64_t NB, int64_t b, int64_t k) {
    if (t > 0) return seq[((t - 1) * NB + b) * ln->H + k];
    return init && init->data ? ((const float *)init->data)[b * ln->H + k] : 0;
}

static stx_status lstm_rule(stx_lrp *l, lnode *ln, stx_op_ctx *c) {
    stx_tensor *X = c->in[0], *D = c->din[0];
    if (!D) return STX_OK;
    const stx_tensor *dY = c->n_out > 0 ? c->dout[0] : NULL;
    const stx_tensor *dYh = c->n_out > 1 ? c->dout[1] : NULL;
    const stx_tensor *dYc = c->n_out > 2 ? c->dout[2] : NULL;
    const stx_tensor *Bt = c->n_in > 3 ? c->in[3] : NULL;
    const stx_tensor *h0 = c->n_in > 5 ? c->in[5] : NULL, *c0 = c->n_in > 6 ? c->in[6] : NULL;
    const int64_t T = X->dims[0], NB = X->dims[1], I = X->dims[2], H = ln->H, G = 4 * H;
    const float *x = X->data, *w = c->in[1]->data, *rw = c->in[2]->data;
    const float *bb = Bt && Bt->data ? Bt->data : NULL;
    const float *dy = dY ? dY->data : NULL;
    float *d = D->data;
    double e = l->eps;
    for (int64_t t = 0; t < T; t++)
        for (int64_t b = 0; b < NB; b++) {
            const float *xt = x + (t * NB + b) * I;
            double *gt = ln->gates + (t * NB + b) * G;
            for (int64_t r = 0; r < G; r++) {
                double z = bb ? (double)bb[r] + bb[G + r] : 0;
                for (int64_t k = 0; k < I; k++) z += (double)w[r * I + k] * xt[k];
                for (int64_t k = 0; k < H; k++)
                    z += (double)rw[r * H + k] * lstm_prev(ln, h0, ln->hid, t, NB, b, k);
                if (r >= 3 * H) ln->zg[(t * NB + b) * H + r - 3 * H] = z;
                gt[r] = r >= 3 * H ? tanh(z) : 1 / (1 + exp(-z));
            }
            for (int64_t k = 0; k < H; k++) {
                double ct = gt[2 * H + k] * lstm_prev(ln, c0, ln->cell, t, NB, b, k) +
                            gt[k] * gt[3 * H + k];
                ln->cell[(t * NB + b) * H + k] = ct;
                ln->hid[(t * NB + b) * H + k] = gt[H + k] * tanh(ct);
            }
        }
    for (int64_t i = 0; i < NB * H; i++) {
        ln->rh[i] = (dy ? dy[(T - 1) * NB * H + i] : 0) + (dYh ? ((const float *)dYh->data)[i] : 0);
        ln->rc[i] = dYc ? ((const float *)dYc->data)[i] : 0;
    }
    for (int64_t t = T - 1; t >= 0; t--) {
        for (int64_t b = 0; b < NB; b++) {
            const double *gt = ln->gates + (t * NB + b) * G;
            for (int64_t k = 0; k < H; k++) {
                int64_t i = b * H + k;
                double ct = ln->cell[(t * NB + b) * H + k], rct = ln->rc[i] + ln->rh[i];
                double den = stab(ct, e), zg = stab(ln->zg[(t * NB + b) * H + k], e);
                if (den == 0) den = INFINITY; /* epsilon 0 and c_t = 0: nothing passes */
                ln->rc[i] = gt[2 * H + k] * lstm_prev(ln, c0, ln->cell, t, NB, b, k) / den * rct;
                double rg = gt[k] * gt[3 * H + k] / den * rct;
                ln->sg[i] = zg == 0 ? 0 : rg / zg;
            }
            const float *xt = x + (t * NB + b) * I;
            float *dt = d + (t * NB + b) * I;
            const double *sv = ln->sg + b * H;
            for (int64_t k = 0; k < I; k++) {
                double acc = 0;
                for (int64_t j = 0; j < H; j++) acc += (double)w[(3 * H + j) * I + k] * sv[j];
                dt[k] += (float)(xt[k] * acc);
            }
            for (int64_t k = 0; k < H; k++) {
                double acc = 0;
                for (int64_t j = 0; j < H; j++) acc += (double)rw[(3 * H + j) * H + k] * sv[j];
                double hp = t > 0 ? ln->hid[((t - 1) * NB + b) * H + k] : 0;
                ln->rh2[b * H + k] = hp * acc + (t > 0 && dy ? dy[((t - 1) * NB + b) * H + k] : 0);
            }
        }
        memcpy(ln->rh, ln->rh2, sizeof(double) * (size_t)(NB * H));
    }
    return STX_OK;
}

/* z-rule over the operands of Add / Sub / Sum: R_k = sign_k a_k / stab(y) R. */
static stx_status add_rule(lnode *ln, stx_op_ctx *c) {
    stx_tensor *Y = c->out[0], *R = c->dout[0];
    if (!R) return STX_OK;
    const int64_t ny = stx__numel(Y->dims, Y->rank);
    const float *y = Y->data, *r = R->data;
    for (int k = 0; k < c->n_in && k < 8; k++) {
        stx_tensor *A = c->in[k], *D = c->din[k];
        if (!A || !D) continue;
        const float *a = A->data;
        float *d = D->data;
        double sg = ln->sign[k];
        if (same_shape(A, Y)) {
#pragma omp parallel for if (ny > PAR_MIN)
            for (int64_t o = 0; o < ny; o++) d[o] += (float)(sg * a[o] * r[o] / stab(y[o], STAB));
        } else {
            for (int64_t o = 0; o < ny; o++) {
                int64_t i = bcast_index(Y, A, o);
                d[i] += (float)(sg * a[i] * r[o] / stab(y[o], STAB));
            }
        }
    }
    return STX_OK;
}

static stx_status pool_rule(stx_lrp *l, stx_op_ctx *c) {
    stx_tensor *X = c->in[0], *Y = c->out[0], *R = c->dout[0], *D = c->din[0];
    if (!R || !D) return STX_OK;
    const int64_t nx = stx__numel(X->dims, X->rank), ny = stx__numel(Y->dims, Y->rank);
    const float *x = X->data, *y = Y->data, *r = R->data;
    float *d = D->data, *S = l->z1, *C = l->cb;
    for (int64_t o = 0; o < ny; o++) S[o] = (float)(r[o] / stab(y[o], STAB));
    stx_status st = own_backward(c, S, C);
    if (st) return st;
#pragma omp parallel for if (nx > PAR_MIN)
    for (int64_t i = 0; i < nx; i++) d[i] += x[i] * C[i];
    return STX_OK;
}

static stx_status pass_rule(lnode *ln, stx_op_ctx *c) {
    stx_tensor *Y = c->out[0], *R = c->dout[0];
    int k = ln->pass_in;
    stx_tensor *A = c->in[k], *D = c->din[k];
    if (!R || !D) return STX_OK;
    const int64_t ny = stx__numel(Y->dims, Y->rank);
    const float *r = R->data;
    float *d = D->data;
    if (same_shape(A, Y)) {
#pragma omp parallel for if (ny > PAR_MIN)
        for (int64_t o = 0; o < ny; o++) d[o] += r[o];
    } else {
        for (int64_t o = 0; o < ny; o++) d[bcast_index(Y, A, o)] += r[o];
    }
    return STX_OK;
}

static stx_status lrp_rule(void *user, stx_rule_ctx *rc) {
    stx_lrp *l = user;
    stx_op_ctx *c = (stx_op_ctx *)rc;
    lnode *ln = &l->nodes[c->node - l->m->g.nodes];
    for (int k = 0; k < c->n_out; k++)
        if (c->dout[k] && c->dout[k]->dtype != STX_DTYPE_FLOAT)
            return stx__node_err(c, STX_E_UNSUPPORTED, "lrp: only float32 models are supported");
    switch (ln->kind) {
    case K_CONV:
        return conv_rule(l, ln, c);
    case K_DENSE:
        return dense_rule(l, ln, c);
    case K_ADD:
        return add_rule(ln, c);
    case K_POOL:
        return pool_rule(l, c);
    case K_PASS:
        return pass_rule(ln, c);
    case K_LSTM:
        return lstm_rule(l, ln, c);
    default:
        return stx_rule_default(rc);
    }
}

/* ---- planning ----------------------------------------------------------------------------- */

void stx__lrp_free(stx_lrp *l) {
    if (!l) return;
    stx_context *ctx = l->ctx;
    if (l->nodes) {
        for (int i = 0; i < l->m->g.n_nodes; i++) {
            lnode *ln = &l->nodes[i];
            inst_free(ctx, ln->P);
            inst_free(ctx, ln->N);
            inst_free(ctx, ln->G);
            inst_free(ctx, ln->Q);
            stx__free(ctx, ln->fs);
            stx__free(ctx, ln->ft);
            stx__free(ctx, ln->bo);
            stx__free(ctx, ln->beff);
            stx__free(ctx, ln->bg);
            stx__free(ctx, ln->den);
            stx__free(ctx, ln->W);
            stx__free(ctx, ln->b);
            double *lv[] = {ln->gates, ln->cell, ln->hid, ln->zg, ln->rh, ln->rc, ln->rh2, ln->sg};
            for (int k = 0; k < 8; k++) stx__free(ctx, lv[k]);
        }
    }
    stx__free(ctx, l->nodes);
    stx_session_free(l->s);
    stx__free(ctx, l->xa);
    stx__free(ctx, l->cb);
    stx__free(ctx, l->z1);
    stx__free(ctx, l->z2);
    stx__free(ctx, l->z3);
    stx__free(ctx, l->d1);
    stx__free(ctx, l->d2);
    stx_tensor_free(l->wts);
    stx__free(ctx, l);
}

/* Parses the rule option: every linear layer's rule (conv, dense, first layer; -1: none). */
static stx_status parse_rule(const char *name, int *conv, int *dense, int *first, double ab[2][2],
                             stx_err *e) {
    *first = -1;
    ab[0][0] = ab[1][0] = 1; /* conv, dense: alpha, beta */
    ab[0][1] = ab[1][1] = 0;
    if (!name || !strcmp(name, "epsilon-plus") || !strcmp(name, "epsilon-plus-flat") ||
        !strcmp(name, "epsilon-gamma-box")) {
        *dense = RULE_EPS;
        *conv = name && !strcmp(name, "epsilon-gamma-box") ? RULE_GAMMA : RULE_ZPLUS;
        if (name && !strcmp(name, "epsilon-plus-flat")) *first = RULE_FLAT;
        if (name && !strcmp(name, "epsilon-gamma-box")) *first = RULE_ZBOX;
        return STX_OK;
    }
    static const int ids[] = {RULE_ZERO,  RULE_EPS, RULE_GAMMA, RULE_AB,  RULE_AB,
                              RULE_ZPLUS, RULE_WSQ, RULE_FLAT,  RULE_ZBOX};
    for (int k = 0; rule_names[k]; k++)
        if (!strcmp(name, rule_names[k])) {
            *conv = *dense = ids[k];
            if (!strcmp(name, "alpha2beta1")) ab[0][0] = ab[1][0] = 2, ab[0][1] = ab[1][1] = 1;
            return STX_OK;
        }
    return stx__errf(e, STX_E_INVALID,
                     "lrp: unknown rule '%s' (rules: zero, epsilon, gamma, alpha1beta0, "
                     "alpha2beta1, zplus, wsquare, flat, zbox; composites: epsilon-plus, "
                     "epsilon-gamma-box, epsilon-plus-flat)",
                     name);
}

static stx_status nomem(stx_lrp *l) {
    return stx__errf(&l->ctx->err, STX_E_NOMEM, "lrp: out of memory");
}

static double *dvec(stx_lrp *l, int64_t n) {
    return stx__calloc(l->ctx, (size_t)(n > 0 ? n : 1), sizeof(double));
}

/* A modified copy of the convolution's (effective) weights: kind 0 w'+, 1 w'-, 2 w' + gamma
 * w'+, 3 w'^2, 4 ones. */
static stx_status conv_copy(stx_lrp *l, lnode *ln, const stx_op_ctx *c, int kind, conv_inst **out) {
    const stx_tensor *W = c->in[1];
    stx_tensor *w = stx__tensor_new(l->ctx, STX_DTYPE_FLOAT, W->dims, W->rank);
    if (!w) return nomem(l);
    int64_t n = stx__numel(W->dims, W->rank), per = n / W->dims[0];
    bool transpose = !strcmp(c->node->op_type, "ConvTranspose");
    const float *src = W->data;
    float *dst = w->data;
    for (int64_t i = 0; i < n; i++) {
        double v = src[i];
        if (!transpose) v *= ln->fs[i / per]; /* folded BN: output channel = axis 0 */
        double p = v > 0 ? v : 0, q = v < 0 ? v : 0;
        double out = kind == 0   ? p
                     : kind == 1 ? q
                     : kind == 2 ? v + l->gamma * p
                     : kind == 3 ? v * v
                                 : 1;
        dst[i] = (float)out;
    }
    return inst_new(l, c, w, out);
}

static stx_status plan_conv(stx_lrp *l, stx_session *s, stx_step *st, lnode *ln) {
    stx_op_ctx *c = &st->c;
    const stx_node *nd = c->node;
    const stx_graph *g = &l->m->g;
    bool transpose = !strcmp(nd->op_type, "ConvTranspose");
    const stx_tensor *B = c->n_in > 2 && nd->in[2] >= 0 ? c->in[2] : NULL, *Y = c->out[0];
    if (B && (!is_const(s, nd->in[2]) || B->dtype != STX_DTYPE_FLOAT))
        return stx__errf(&l->ctx->err, STX_E_UNSUPPORTED,
                         "lrp: node '%s' (%s): its bias is computed at run time; LRP needs "
                         "constant weights",
                         nd->name, nd->op_type);
    int64_t M = Y->dims[1];
    ln->kind = K_CONV;
    ln->M = M;
    ln->fs = dvec(l, M);
    ln->ft = dvec(l, M);
    ln->bo = dvec(l, M);
    ln->beff = dvec(l, M);
    ln->bg = dvec(l, M);
    if (!ln->fs || !ln->ft || !ln->bo || !ln->beff || !ln->bg) return nomem(l);
    for (int64_t m = 0; m < M; m++) {
        ln->fs[m] = 1;
        ln->bo[m] = B ? ((const float *)B->data)[m] : 0;
    }
    /* BatchNormalization as the only consumer of a Conv's output: fold it */
    int yv = nd->out[0], consumers = 0, bn = -1;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++)
            if (g->nodes[i].in[k] == yv) {
                consumers++;
                bn = i;
            }
    bool is_out = false;
    for (int k = 0; k < g->n_outputs; k++) is_out |= g->outputs[k] == yv;
    if (!transpose && consumers == 1 && !is_out &&
        !strcmp(g->nodes[bn].op_type, "BatchNormalization") && g->nodes[bn].in[0] == yv &&
        g->nodes[bn].n_in >= 5) {
        const stx_node *b = &g->nodes[bn];
        bool ok = true;
        for (int k = 1; k < 5; k++)
            ok &= is_const(s, b->in[k]) && s->vals[b->in[k]].dtype == STX_DTYPE_FLOAT &&
                  stx__numel(s->vals[b->in[k]].dims, s->vals[b->in[k]].rank) == M;
        if (ok) {
            const float *sc = s->vals[b->in[1]].data, *be = s->vals[b->in[2]].data;
            const float *mu = s->vals[b->in[3]].data, *va = s->vals[b->in[4]].data;
            double eps = stx__attr_float(b, "epsilon", 1e-5f);
            for (int64_t m = 0; m < M; m++) {
                ln->fs[m] = sc[m] / sqrt((double)va[m] + eps);
                ln->ft[m] = be[m] - mu[m] * ln->fs[m];
            }
        }
    }
    for (int64_t m = 0; m < M; m++) {
        ln->beff[m] = ln->bo[m] * ln->fs[m] + ln->ft[m];
        ln->bg[m] = ln->beff[m] + l->gamma * (ln->beff[m] > 0 ? ln->beff[m] : 0);
    }
    stx_status r = STX_OK;
    switch (ln->rule) {
    case RULE_GAMMA:
        r = conv_copy(l, ln, c, 2, &ln->G);
        break;
    case RULE_AB:
        if (!(r = conv_copy(l, ln, c, 0, &ln->P))) r = conv_copy(l, ln, c, 1, &ln->N);
        break;
    case RULE_ZPLUS:
        r = conv_copy(l, ln, c, 0, &ln->P);
        if (!r && !ln->nonneg) r = conv_copy(l, ln, c, 1, &ln->N);
        break;
    case RULE_ZBOX:
        if (!(r = conv_copy(l, ln, c, 0, &ln->P))) r = conv_copy(l, ln, c, 1, &ln->N);
        break;
    case RULE_WSQ:
    case RULE_FLAT:
        r = conv_copy(l, ln, c, ln->rule == RULE_WSQ ? 3 : 4, &ln->Q);
        if (!r) {
            int64_t ny = stx__numel(Y->dims, Y->rank);
            ln->den = stx__malloc(l->ctx, sizeof(float) * (size_t)ny);
            if (!ln->den) r = nomem(l);
        }
        break;
    default:
        break;
    }
    return r;
}

static stx_status plan_dense(stx_lrp *l, stx_session *s, stx_step *st, lnode *ln) {
    stx_op_ctx *c = &st->c;
    const stx_node *nd = c->node;
    stx_err *ce = &l->ctx->err;
    const stx_tensor *A = c->in[0], *B = c->in[1], *Cb = c->n_in > 2 ? c->in[2] : NULL;
    bool gemm = !strcmp(nd->op_type, "Gemm");
    if (!is_const(s, nd->in[1]) || B->rank != 2 || B->dtype != STX_DTYPE_FLOAT)
        return stx__errf(ce, STX_E_UNSUPPORTED,
                         "lrp: node '%s' (%s) multiplies two activations (or its weight is not a "
                         "constant 2-D float32 matrix); " SUPPORTED_MSG,
                         nd->name, nd->op_type);
    int tA = gemm ? (int)stx__attr_int(nd, "transA", 0) : 0;
    int tB = gemm ? (int)stx__attr_int(nd, "transB", 0) : 0;
    double alpha = gemm ? stx__attr_float(nd, "alpha", 1.0f) : 1;
    double beta = gemm ? stx__attr_float(nd, "beta", 1.0f) : 1;
    if (tA)
        return stx__errf(ce, STX_E_UNSUPPORTED, "lrp: node '%s' (Gemm) has transA = 1", nd->name);
    int64_t K = tB ? B->dims[1] : B->dims[0], M = tB ? B->dims[0] : B->dims[1];
    if (A->dims[A->rank - 1] != K)
        return stx__errf(ce, STX_E_SHAPE, "lrp: node '%s' (%s): inner sizes differ", nd->name,
                         nd->op_type);
    ln->kind = K_DENSE;
    ln->K = K;
    ln->M = M;
    ln->W = dvec(l, K * M);
    if (!ln->W) return nomem(l);
    const float *b = B->data;
    for (int64_t i = 0; i < K; i++)
        for (int64_t j = 0; j < M; j++)
            ln->W[i * M + j] = alpha * (tB ? b[j * K + i] : b[i * M + j]);
    if (Cb && nd->in[2] >= 0) {
        int64_t nc = stx__numel(Cb->dims, Cb->rank);
        if (!is_const(s, nd->in[2]) || Cb->dtype != STX_DTYPE_FLOAT || (nc != M && nc != 1))
            return stx__errf(ce, STX_E_UNSUPPORTED,
                             "lrp: node '%s' (Gemm): the bias C must be a constant of %lld or 1 "
                             "values",
                             nd->name, (long long)M);
        ln->b = dvec(l, M);
        if (!ln->b) return nomem(l);
        for (int64_t j = 0; j < M; j++)
            ln->b[j] = beta * ((const float *)Cb->data)[nc == 1 ? 0 : j];
    }
    if (M > l->max_m) l->max_m = M;
    return STX_OK;
}

static stx_status plan_lstm(stx_lrp *l, stx_session *s, stx_step *st, lnode *ln) {
    stx_op_ctx *c = &st->c;
    const stx_node *nd = c->node;
    const char *why = NULL;
    const stx_attr *acts = stx__attr(nd, "activations");
    if (strcmp(stx__attr_str(nd, "direction", "forward"), "forward"))
        why = "only direction forward is supported";
    else if (stx__attr_int(nd, "layout", 0) != 0)
        why = "only layout 0 is supported";
    else if (stx__attr_int(nd, "input_forget", 0) != 0 || stx__attr(nd, "clip"))
        why = "input_forget and clip are not supported";
    else if (acts && !(acts->n == 3 && !strcmp(acts->strings[0], "Sigmoid") &&
                       !strcmp(acts->strings[1], "Tanh") && !strcmp(acts->strings[2], "Tanh")))
        why = "only the default activations (Sigmoid, Tanh, Tanh) are supported";
    else if ((nd->n_in > 4 && nd->in[4] >= 0) || (nd->n_in > 7 && nd->in[7] >= 0))
        why = "sequence_lens and peepholes are not supported";
    else if (!is_const(s, nd->in[1]) || !is_const(s, nd->in[2]) ||
             (nd->n_in > 3 && nd->in[3] >= 0 && !is_const(s, nd->in[3])))
        why = "its weights must be constants";
    if (why)
        return stx__errf(&l->ctx->err, STX_E_UNSUPPORTED, "lrp: node '%s' (LSTM): %s", nd->name,
                         why);
    const stx_tensor *X = c->in[0];
    int64_t T = X->dims[0], NB = X->dims[1], H = stx__attr_int(nd, "hidden_size", 0);
    if (H <= 0 || c->in[1]->rank != 3 || c->in[1]->dims[1] != 4 * H ||
        c->in[1]->dtype != STX_DTYPE_FLOAT || c->in[2]->dtype != STX_DTYPE_FLOAT)
        return stx__errf(&l->ctx->err, STX_E_SHAPE,
                         "lrp: node '%s' (LSTM): weights do not match hidden_size %lld", nd->name,
                         (long long)H);
    ln->kind = K_LSTM;
    ln->H = H;
    ln->gates = dvec(l, T * NB * 4 * H);
    ln->cell = dvec(l, T * NB * H);
    ln->hid = dvec(l, T * NB * H);
    ln->zg = dvec(l, T * NB * H);
    ln->rh = dvec(l, NB * H);
    ln->rc = dvec(l, NB * H);
    ln->rh2 = dvec(l, NB * H);
    ln->sg = dvec(l, NB * H);
    if (!ln->gates || !ln->cell || !ln->hid || !ln->zg || !ln->rh || !ln->rc || !ln->rh2 || !ln->sg)
        return nomem(l);
    return STX_OK;
}

stx_status stx__lrp_create(const stx_dense_spec *sp, stx_lrp **out) {
    *out = NULL;
    stx_context *ctx = sp->ctx;
    stx_err *ce = &ctx->err;
    const stx_explain_options *o = sp->o;
    int r_conv = RULE_EPS, r_dense = RULE_EPS, r_first = -1;
    double ab[2][2];
    stx_status st = parse_rule(o->rule, &r_conv, &r_dense, &r_first, ab, ce);
    if (st) return st;
    if (o->score == STX_SCORE_PROB)
        return stx__errf(ce, STX_E_INVALID,
                         "lrp: relevance starts at the target logit; score prob is not supported "
                         "(LRP does not propagate through a softmax)");
    double eps = o->epsilon < 0 ? 1e-6 : o->epsilon, gam = o->gamma < 0 ? 0.25 : o->gamma;
    if (!isfinite(eps) || !isfinite(gam))
        return stx__errf(ce, STX_E_INVALID, "lrp: epsilon %g and gamma %g must be finite", eps,
                         gam);
    if (!isfinite(o->zbox_low) || !isfinite(o->zbox_high) ||
        ((o->zbox_low != 0 || o->zbox_high != 0) && !(o->zbox_low < o->zbox_high)))
        return stx__errf(ce, STX_E_INVALID, "lrp: zbox bounds %g,%g: need low < high",
                         (double)o->zbox_low, (double)o->zbox_high);

    stx_lrp *l = stx__calloc(ctx, 1, sizeof *l);
    if (!l) return stx__errf(ce, STX_E_NOMEM, "lrp: out of memory");
    l->ctx = ctx;
    l->m = sp->m;
    l->out_index = sp->out_index;
    l->eps = eps;
    l->gamma = gam;
    l->logit_v = -1;
    if (o->zbox_low != 0 || o->zbox_high != 0) {
        l->box = 0;
        l->lo = o->zbox_low;
        l->hi = o->zbox_high;
    } else {
        stx_model_facts f;
        stx_model_facts_get(sp->m, &f);
        l->box = f.has_normalization && sp->shape[sp->cax] == 3 ? 1 : 2;
        for (int k = 0; k < 3; k++) {
            l->boxlo[k] = (0.0 - f.mean[k]) / (f.std[k] ? f.std[k] : 1);
            l->boxhi[k] = (1.0 - f.mean[k]) / (f.std[k] ? f.std[k] : 1);
        }
    }
    const stx_graph *g = &sp->m->g;
    l->nodes = stx__calloc(ctx, (size_t)g->n_nodes + 1, sizeof(lnode));
    if (!l->nodes) {
        stx__lrp_free(l);
        return stx__errf(ce, STX_E_NOMEM, "lrp: out of memory");
    }
    /* the explained output: a Softmax's input when the output is a Softmax */
    int yv = sp->out_index < g->n_outputs ? g->outputs[sp->out_index] : -1;
    if (yv >= 0 && g->values[yv].producer >= 0) {
        const stx_node *pn = &g->nodes[g->values[yv].producer];
        if (!strcmp(pn->op_type, "Softmax") || !strcmp(pn->op_type, "LogSoftmax")) {
            l->keep[0] = g->values[pn->in[0]].name;
            l->logit_v = pn->in[0];
        }
    }
    /* rules for every op type we handle (the dispatcher looks the node up): the linear and
     * proportional ones, the pools, the activations that pass relevance, and LSTM */
    static const char *const rule_ops[] = {
        "Conv", "ConvTranspose", "Gemm",    "MatMul",     "Add",  "Sub", "Sum",
        "Mul",  "Div",           "Softmax", "LogSoftmax", "LSTM", NULL};
    const char *const *lists[3] = {rule_ops, pool_ops, pass_ops};
    for (int j = 0; j < 3; j++)
        for (int k = 0; lists[j][k]; k++)
            l->rules[l->n_rules++] = (stx_backward_rule){lists[j][k], lrp_rule, l};
    const char *wrt[2] = {"input", NULL};
    stx_session_options so = stx_session_options_default();
    so.num_threads = sp->num_threads;
    so.grad_wrt = wrt;
    so.grad_output = sp->out_index;
    so.fuse = 0;
    so.rules = l->rules;
    so.n_rules = l->n_rules;
    so.keep = l->keep[0] ? l->keep : NULL;
    st = stx_session_create(sp->m, &so, sp->shape, 5, &l->s);
    if (st) {
        stx__lrp_free(l);
        return st;
    }
    stx_session *s = l->s;
    int nv = s->nv;
    uint8_t *fr = stx__calloc(ctx, (size_t)nv + 1, 1), *br = stx__calloc(ctx, (size_t)nv + 1, 1);
    uint8_t *pre = stx__calloc(ctx, (size_t)nv + 1, 1), *nn = stx__calloc(ctx, (size_t)nv + 1, 1);
    uint8_t *gate = stx__calloc(ctx, (size_t)nv + 1, 1); /* a Sigmoid's output, maybe moved */
    if (!fr || !br || !pre || !nn || !gate) {
        st = nomem(l);
        goto done;
    }
    fr[s->inputs[0]] = pre[s->inputs[0]] = 1;
    for (int i = 0; i < s->n_fwd; i++) {
        stx_step *stp = &s->steps[i];
        const stx_node *nd = stp->c.node;
        bool any = false, anypre = false, allnn = true;
        for (int k = 0; k < stp->n_vin; k++) {
            int v = stp->vin[k];
            if (v < 0) continue;
            any |= fr[v];
            anypre |= pre[v];
            if (fr[v]) allnn &= nn[v];
        }
        bool lin = is_linear_op(nd->op_type);
        if (lin && stp->vin[0] >= 0 && pre[stp->vin[0]]) l->nodes[stp->node].first = true;
        if (lin && stp->vin[0] >= 0) l->nodes[stp->node].nonneg = nn[stp->vin[0]];
        bool outnn = !strcmp(nd->op_type, "Relu") || !strcmp(nd->op_type, "Sigmoid") ||
                     !strcmp(nd->op_type, "Softmax") ||
                     (in_list(nd->op_type, keep_sign_ops) && allnn);
        bool isgate = !strcmp(nd->op_type, "Sigmoid") ||
                      (in_list(nd->op_type, move_ops) && stp->vin[0] >= 0 && gate[stp->vin[0]]);
        for (int k = 0; k < stp->n_vout; k++) {
            int v = stp->vout[k];
            if (v < 0 || !any || s->vals[v].dtype != STX_DTYPE_FLOAT) continue;
            gate[v] = isgate;
            fr[v] = 1;
            pre[v] = anypre && !lin;
            nn[v] = outnn;
        }
    }
    br[s->seed_out] = 1;
    for (int i = s->n_fwd - 1; i >= 0; i--) {
        stx_step *stp = &s->steps[i];
        bool any = false;
        for (int k = 0; k < stp->n_vout; k++) any |= stp->vout[k] >= 0 && br[stp->vout[k]];
        if (!any) continue;
        for (int k = 0; k < stp->n_vin; k++)
            if (stp->vin[k] >= 0) br[stp->vin[k]] = 1;
    }
    int64_t ninput = stx__numel(sp->shape, 5);
    l->max_in = ninput;
    l->max_out = 1;
    l->max_m = sp->shape[0];
    for (int i = 0; i < s->n_fwd && !st; i++) {
        stx_step *stp = &s->steps[i];
        stx_op_ctx *c = &stp->c;
        const stx_node *nd = c->node;
        bool in_any = false, out_any = false;
        for (int k = 0; k < stp->n_vin; k++) in_any |= stp->vin[k] >= 0 && fr[stp->vin[k]];
        for (int k = 0; k < stp->n_vout; k++) out_any |= stp->vout[k] >= 0 && br[stp->vout[k]];
        if (!in_any || !out_any) continue;
        lnode *ln = &l->nodes[stp->node];
        const char *op = nd->op_type;
        for (int k = 0; k < c->n_in; k++)
            if (c->in[k] && nd->in[k] >= 0 && fr[nd->in[k]] && c->in[k]->dtype != STX_DTYPE_FLOAT) {
                st = stx__errf(ce, STX_E_UNSUPPORTED,
                               "lrp: node '%s' (%s) reads %s data: only float32 models are "
                               "supported",
                               nd->name, op, stx_dtype_name(c->in[k]->dtype));
                break;
            }
        if (st) break;
        for (int k = 0; k < c->n_in; k++) {
            int64_t n = c->in[k] ? stx__numel(c->in[k]->dims, c->in[k]->rank) : 0;
            if (n > l->max_in) l->max_in = n;
            if (c->in[k] && c->in[k]->rank > 0 && c->in[k]->dims[0] > l->max_m)
                l->max_m = c->in[k]->dims[0]; /* rows of the z^B bounds */
        }
        for (int k = 0; k < c->n_out; k++) {
            int64_t n = c->out[k] ? stx__numel(c->out[k]->dims, c->out[k]->rank) : 0;
            if (n > l->max_out) l->max_out = n;
        }
        if (is_linear_op(op)) {
            bool dense = !strcmp(op, "Gemm") || !strcmp(op, "MatMul");
            int ri = dense ? 1 : 0;
            ln->rule = ln->first && r_first >= 0 ? r_first : dense ? r_dense : r_conv;
            ln->alpha = ab[ri][0];
            ln->beta = ab[ri][1];
            if (dense) {
                st = plan_dense(l, s, stp, ln);
            } else if (!is_const(s, nd->in[1]) || c->in[1]->dtype != STX_DTYPE_FLOAT ||
                       nd->in[0] < 0 || !fr[nd->in[0]]) {
                st = stx__errf(ce, STX_E_UNSUPPORTED,
                               "lrp: node '%s' (%s): its weights are computed at run time; LRP "
                               "needs constant weights",
                               nd->name, op);
            } else {
                st = plan_conv(l, s, stp, ln);
            }
        } else if (!strcmp(op, "Add") || !strcmp(op, "Sub") || !strcmp(op, "Sum")) {
            ln->kind = K_ADD;
            for (int k = 0; k < c->n_in && k < 8; k++)
                ln->sign[k] = !strcmp(op, "Sub") && k == 1 ? -1 : 1;
            if (c->n_in > 8)
                st = stx__errf(ce, STX_E_UNSUPPORTED, "lrp: node '%s' (Sum) has more than 8 inputs",
                               nd->name);
        } else if (!strcmp(op, "Mul") || !strcmp(op, "Div")) {
            bool a0 = nd->in[0] >= 0 && fr[nd->in[0]], a1 = nd->in[1] >= 0 && fr[nd->in[1]];
            ln->kind = K_PASS;
            ln->pass_in = a0 ? 0 : 1;
            /* signal * gate, exactly one operand a Sigmoid's output: the signal takes all
             * (Arras et al.'s rule for the LSTM's gates), when it has the product's shape */
            bool gated = a0 && a1 && !strcmp(op, "Mul") && gate[nd->in[0]] != gate[nd->in[1]];
            int sig = gate[nd->in[0]] ? 1 : 0;
            if (gated && same_shape(c->in[sig], c->out[0])) {
                ln->pass_in = sig;
            } else if ((a0 && a1) || (!strcmp(op, "Div") && a1)) {
                st = stx__errf(ce, STX_E_UNSUPPORTED,
                               "lrp: node '%s' (%s) %s two activations; LRP passes relevance "
                               "through %s by a constant, or to the signal of a signal * "
                               "sigmoid gate, only",
                               nd->name, op, a0 && a1 ? "combines" : "divides by", op);
            }
        } else if (!strcmp(op, "LSTM")) {
            st = plan_lstm(l, s, stp, ln);
        } else if (in_list(op, pool_ops)) {
            ln->kind = K_POOL;
        } else if (in_list(op, pass_ops)) {
            ln->kind = K_PASS;
        } else if (!strcmp(op, "Softmax") || !strcmp(op, "LogSoftmax")) {
            bool last = false;
            for (int k = 0; k < nd->n_out; k++) last |= nd->out[k] == s->seed_out;
            if (!last)
                st = stx__errf(ce, STX_E_UNSUPPORTED,
                               "lrp: node '%s' (%s) is inside the network; LRP only skips a "
                               "softmax that produces the explained output",
                               nd->name, op);
            ln->kind = K_PASS;
        } else if (!in_list(op, move_ops)) {
            st = stx__errf(ce, STX_E_UNSUPPORTED,
                           "lrp: node '%s' (%s) is on the path from the input to the output "
                           "and has no relevance rule; " SUPPORTED_MSG,
                           nd->name, op);
        }
    }
    if (st) goto done;
    l->xa = stx__malloc(ctx, sizeof(float) * (size_t)l->max_in);
    l->cb = stx__malloc(ctx, sizeof(float) * (size_t)l->max_in);
    l->z1 = stx__malloc(ctx, sizeof(float) * (size_t)l->max_out);
    l->z2 = stx__malloc(ctx, sizeof(float) * (size_t)l->max_out);
    l->z3 = stx__malloc(ctx, sizeof(float) * (size_t)l->max_out);
    l->d1 = dvec(l, l->max_m + 1);
    l->d2 = dvec(l, l->max_m + 1);
    if (!l->xa || !l->cb || !l->z1 || !l->z2 || !l->z3 || !l->d1 || !l->d2) {
        st = nomem(l);
        goto done;
    }
    /* wsquare / flat denominators: the modified layer applied to ones */
    for (int i = 0; i < s->n_fwd && !st; i++) {
        lnode *ln = &l->nodes[s->steps[i].node];
        if (ln->kind != K_CONV || !ln->Q) continue;
        int64_t nx = stx__numel(ln->Q->x.dims, ln->Q->x.rank);
        for (int64_t k = 0; k < nx; k++) l->xa[k] = 1;
        st = inst_forward(ln->Q, l->xa, ln->den, ce);
    }
    if (st) goto done;
    {
        const stx_tensor *y = &s->vals[s->seed_out];
        l->wts = stx__tensor_new(ctx, STX_DTYPE_FLOAT, y->dims, y->rank);
        if (!l->wts) st = nomem(l);
    }
done:
    stx__free(ctx, fr);
    stx__free(ctx, br);
    stx__free(ctx, pre);
    stx__free(ctx, nn);
    stx__free(ctx, gate);
    if (st) {
        stx__lrp_free(l);
        return st;
    }
    *out = l;
    return STX_OK;
}

stx_status stx__lrp_run(stx_lrp *l, const stx_tensor *x, const int64_t *targets,
                        const int64_t *frames, stx_err *err, float *rel, double *seeded,
                        double *total) {
    stx_session *s = l->s;
    stx_status st = stx_session_run(s, x, NULL);
    if (st) return stx__errf(err, st, "lrp: %s", stx_session_last_error(s));
    const stx_tensor *y = &s->vals[s->seed_out];
    const stx_tensor *z = l->logit_v >= 0 ? &s->vals[l->logit_v] : y;
    if (y->rank < 2 || !same_shape(y, z))
        return stx__errf(err, STX_E_SHAPE, "lrp: the output needs shape (N, K[, T])");
    const int64_t N = y->dims[0], K = y->dims[1], inner = stx__numel(y->dims, y->rank) / (N * K);
    const float *zv = z->data;
    float *w = l->wts->data;
    memset(w, 0, l->wts->nbytes);
    for (int64_t n = 0; n < N; n++) {
        int64_t f = frames ? frames[n] : -1, c = targets ? targets[n] : -1;
        int64_t t0 = f >= 0 ? f : 0, t1 = f >= 0 ? f + 1 : inner;
        if (c < 0) { /* top class */
            double best = -INFINITY;
            for (int64_t k = 0; k < K; k++) {
                double acc = 0;
                for (int64_t t = t0; t < t1; t++) acc += zv[(n * K + k) * inner + t];
                if (acc > best) best = acc, c = k;
            }
        }
        double sum = 0;
        for (int64_t t = t0; t < t1; t++) {
            int64_t i = (n * K + c) * inner + t;
            w[i] = zv[i];
            sum += zv[i];
        }
        seeded[n] = sum;
    }
    stx_seed sd = stx_seed_default();
    sd.weights = l->wts;
    st = stx_session_backward(s, &sd);
    if (st) return stx__errf(err, st, "%s", stx_session_last_error(s));
    const stx_tensor *gi = stx_session_grad(s, "input");
    if (!gi || gi->dtype != STX_DTYPE_FLOAT)
        return stx__errf(err, STX_E_INTERNAL, "lrp: no relevance at the input");
    int64_t numel = stx__numel(gi->dims, gi->rank), per = numel / N;
    memcpy(rel, gi->data, sizeof(float) * (size_t)numel);
    for (int64_t n = 0; n < N; n++) {
        double acc = 0;
        for (int64_t i = 0; i < per; i++) acc += rel[n * per + i];
        total[n] = acc;
    }
    return STX_OK;
}
