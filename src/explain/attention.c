/* attention.c: transformer methods over the attention maps found in the graph (definitions:
 * docs/transformers.md, shared/docs/methods.md §5):
 *
 *   rollout                  Abnar & Zuidema 2020: per attention map the head-fused attention
 *                            plus identity, rows renormalised, multiplied from start_layer on
 *   transformer-attribution  Chefer et al. CVPR 2021: the same product over
 *                            E_h[(grad A * R_A)^+] + I, R_A the LRP relevance at A
 *   generic-attention        Chefer et al. ICCV 2021: R = prod (I + E_h[(grad A * A)^+])
 *
 * An attention map is the output of a Softmax that is the first operand of a MatMul (the
 * attention applied to the values), of shape (L, n, n) or (..., n, n) with L the product of the
 * leading axes: n tokens mixed, L = N * groups * heads, batch-major and heads innermost (as
 * torch.nn.MultiheadAttention and timm's Attention lay them out). With the token grid T' x H' x
 * W' (P = T'H'W' tokens, S = H'W' per frame) a map is
 *
 *   joint     n = P (+1 class token first), 1 group per sample: all tokens (ViT, ViViT)
 *   temporal  n = T', S groups (n * S + s): the frames at patch location s (TimeSformer)
 *   spatial   n = S (+1 class token), T' groups (n * T' + t): the patches of frame t
 *
 * (temporal and spatial told apart by the node name when T' = S). Each map is a block-sparse
 * n_tok x n_tok matrix over the global tokens (class token 0 if any, then the grid row-major
 * t, h, w). The relevance is p^T M_B ... M_s with p the read-out of the model: the class token,
 * else the pooling weights of an attention pooling (a Softmax over the P tokens, (N, P), that is
 * no attention map), else the mean over tokens. The product is carried as a row vector from the
 * last map down, so nothing n_tok x n_tok is ever formed: O(n_tok * n) per map and sample. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../graph/ir.h"
#include "../ops/ops.h"
#include "explain.h"

enum { K_JOINT, K_TIME, K_SPACE };

typedef struct attn_map {
    int node;         /* the Softmax */
    const char *name; /* its output tensor */
    int kind, cls, block;
    int64_t n, heads, groups; /* tokens mixed, heads, groups per sample */
} attn_map;

struct stx_attn {
    stx_context *ctx;
    const stx_graph *g;
    int method;
    stx_session *sess;  /* forward values and gradients of the maps */
    stx_session *lsess; /* transformer attribution: the LRP relevance at the maps */
    double *work;       /* the LRP rules' scratch */
    int64_t nwork;
    const char **names; /* attention maps, NULL-terminated */
    const char **keep;  /* the other Softmax outputs (and for rollout the maps), NULL-terminated */
    attn_map *maps;
    int n_maps, n_blocks;
    int64_t N, grid[3], S, P, ntok, off; /* off: 1 with a class token */
    const char *pool;                    /* attention pooling weights (N, P), or NULL */
    stx_head_fusion fusion;
    double discard;
    int start_block, out_index;
    stx_score score;
    double *v, *vn; /* ntok each */
    double *F;      /* one fused group: max n^2 */
    int64_t *order; /* discard: max n^2 */
};

/* ---- the graph ---------------------------------------------------------------------------- */

static bool feeds_matmul(const stx_graph *g, int v) {
    for (int i = 0; i < g->n_nodes; i++) {
        const stx_node *n = &g->nodes[i];
        if (strcmp(n->op_type, "MatMul") == 0 && n->n_in >= 1 && n->in[0] == v) return true;
    }
    return false;
}

static bool name_has(const char *s, const char *a, const char *b) {
    return s && (strstr(s, a) || strstr(s, b));
}

/* Classifies one attention map from its planned shape; STX_E_UNSUPPORTED naming the node. */
static stx_status classify(stx_attn *a, const stx_node *nd, const int64_t *d, int rank, attn_map *m,
                           stx_err *err) {
    char buf[96];
    const char *nn = nd->name && nd->name[0] ? nd->name : m->name;
    int64_t ax = stx__attr_int(nd, "axis", -1);
    if (rank < 3 || (ax != -1 && ax != rank - 1) || d[rank - 1] != d[rank - 2])
        return stx__errf(err, STX_E_UNSUPPORTED,
                         "attention '%s': shape %s is not (..., n, n) with the softmax over the "
                         "keys (last axis)",
                         nn, stx__shape_str(d, rank, buf, sizeof buf));
    int64_t n = d[rank - 1], L = 1, T = a->grid[0], S = a->S, P = a->P, N = a->N;
    for (int j = 0; j < rank - 2; j++) L *= d[j];
    bool joint = (n == P || n == P + 1) && L % N == 0;
    bool time = n == T && T > 1 && L % (N * S) == 0 && S > 1;
    bool space = (n == S || n == S + 1) && S > 1 && L % (N * T) == 0 && T > 1;
    if (joint && (time || space)) time = space = false; /* T' = 1 or S = 1: joint is the same */
    if (time && space) {
        const char *s = nd->scope;
        bool t = name_has(s, "time", "tempor"), sp = name_has(s, "space", "spati");
        if (t == sp)
            return stx__errf(err, STX_E_UNSUPPORTED,
                             "attention '%s' over %lld tokens may be temporal or spatial (token "
                             "grid %lldx%lldx%lld); its node name says neither",
                             nn, (long long)n, (long long)T, (long long)a->grid[1],
                             (long long)a->grid[2]);
        time = t;
        space = sp;
    }
    if (joint) {
        m->kind = K_JOINT;
        m->groups = 1;
        m->cls = n == P + 1;
    } else if (time) {
        m->kind = K_TIME;
        m->groups = S;
        m->cls = 0;
    } else if (space) {
        m->kind = K_SPACE;
        m->groups = T;
        m->cls = n == S + 1;
    } else {
        return stx__errf(err, STX_E_UNSUPPORTED,
                         "attention '%s' of shape %s mixes %lld tokens: none of the patterns of "
                         "token grid %lldx%lldx%lld, batch %lld (joint %lld or %lld, temporal "
                         "%lld, spatial %lld or %lld tokens; see docs/transformers.md)",
                         nn, stx__shape_str(d, rank, buf, sizeof buf), (long long)n, (long long)T,
                         (long long)a->grid[1], (long long)a->grid[2], (long long)N, (long long)P,
                         (long long)P + 1, (long long)T, (long long)S, (long long)S + 1);
    }
    m->n = n;
    m->heads = L / (N * m->groups);
    return STX_OK;
}

/* Global token of local token i in group g of map m. */
static inline int64_t glob(const stx_attn *a, const attn_map *m, int64_t g, int64_t i) {
    switch (m->kind) {
    case K_TIME:
        return a->off + i * a->S + g;
    case K_SPACE:
        if (m->cls) return i == 0 ? 0 : a->off + g * a->S + i - 1;
        return a->off + g * a->S + i;
    default:
        return i;
    }
}

/* ---- LRP rules of transformer attribution --------------------------------------------------
 *
 * Chefer et al.'s relevance propagation (Transformer-Explainability, baselines/ViT/ViT_LRP.py and
 * modules/layers_ours.py) as backward rules on the ONNX ops, in double precision:
 *   MatMul/Gemm with a constant weight   alpha1beta0 without the bias
 *   MatMul of two activations            z-rule, each operand's share halved (A v, q k^T)
 *   Add of two activations (residual)    z-rule shares renormalised: operand k keeps
 *                                        |sum R_k| / (|sum R_a| + |sum R_b|) of sum R (per sample)
 *   Add/Mul/Div with a constant operand  relevance passed unchanged to the other operand
 *   Mul gating one operand by a function of it (GELU, SiLU)  all to the gated operand
 *   Mul of two other activations         z-rule, each share halved (attention pooling w * x)
 *   ReduceSum/ReduceMean                 z-rule
 *   Softmax, LayerNormalization, Gelu    passed unchanged
 * safe_divide(a, b) = a / (b + 1e-9), 0 where b = 0. Other ops keep their gradient (data
 * movement: Reshape, Transpose, Slice, Gather, Concat move relevance as they move values). */

static inline double sdiv(double a, double b) {
    if (b == 0) return 0;
    double d = b + 1e-9;
    return a / (d == 0 ? 1e-9 : d);
}

static bool is_const(const stx_graph *g, int v, int depth) {
    if (v < 0) return true;
    const stx_value *val = &g->values[v];
    if (val->data) return true;
    if (val->producer < 0) {
        for (int i = 0; i < g->n_inputs; i++)
            if (g->inputs[i] == v) return false;
        return true;
    }
    const stx_node *p = &g->nodes[val->producer];
    if (strcmp(p->op_type, "Constant") == 0) return true;
    if (depth > 8 || strcmp(p->op_type, "Shape") == 0) return false;
    for (int i = 0; i < p->n_in; i++)
        if (!is_const(g, p->in[i], depth + 1)) return false;
    return true;
}

/* Whether value v is computed from value from by element-wise ops (each with one non-constant
 * operand), as the gate of GELU x * Phi(x) or SiLU x * sigmoid(x). */
static bool derived_from(const stx_graph *g, int v, int from, int depth) {
    static const char *const unary[] = {"Erf", "Add",  "Sub", "Mul", "Div", "Tanh", "Sigmoid",
                                        "Pow", "Sqrt", "Exp", "Neg", "Abs", "Relu", NULL};
    if (v == from) return true;
    if (v < 0 || depth > 8 || g->values[v].producer < 0) return false;
    const stx_node *p = &g->nodes[g->values[v].producer];
    bool ok = false;
    for (int k = 0; unary[k]; k++) ok |= strcmp(p->op_type, unary[k]) == 0;
    if (!ok) return false;
    int next = -1, n_var = 0;
    for (int i = 0; i < p->n_in; i++)
        if (!is_const(g, p->in[i], 0)) {
            next = p->in[i];
            n_var++;
        }
    return n_var == 1 && derived_from(g, next, from, depth + 1);
}

/* Offsets into an input broadcast to the output's shape: its strides, 0 on broadcast axes. */
static void bstrides(const stx_tensor *in, const stx_tensor *out, int64_t *st) {
    int r = out->rank, d = r - in->rank;
    int64_t s = 1;
    for (int j = r - 1; j >= 0; j--) {
        int64_t n = j >= d ? in->dims[j - d] : 1;
        st[j] = n == 1 ? 0 : s;
        s *= n;
    }
}

/* Advances the multi-index idx over dims (rank r) and the offsets o[k] with strides st[k]. */
static inline void bstep(int r, const int64_t *dims, int64_t *idx, int nk, int64_t (*st)[8],
                         int64_t *o) {
    for (int j = r - 1; j >= 0; j--) {
        for (int k = 0; k < nk; k++) o[k] += st[k][j];
        if (++idx[j] < dims[j]) return;
        for (int k = 0; k < nk; k++) o[k] -= st[k][j] * dims[j];
        idx[j] = 0;
    }
}

static const stx_node *rule_node(stx_rule_ctx *c) {
    return ((stx_op_ctx *)c)->node;
}

/* din += dout summed over din's broadcast axes. */
static void pass_reduce(stx_tensor *din, const stx_tensor *dout) {
    int64_t st[2][8] = {{0}}, o[2] = {0, 0}, idx[8] = {0};
    bstrides(din, dout, st[0]);
    int64_t n = stx__numel(dout->dims, dout->rank);
    float *d = din->data;
    const float *r = dout->data;
    for (int64_t i = 0; i < n; i++) {
        d[o[0]] += r[i];
        bstep(dout->rank, dout->dims, idx, 1, st, o);
    }
}

static stx_status rule_pass(void *user, stx_rule_ctx *c) {
    (void)user;
    stx_tensor *din = stx_rule_grad_input(c, 0), *dout = stx_rule_grad_output(c, 0);
    if (din && dout) pass_reduce(din, dout);
    return STX_OK;
}

static stx_status rule_div(void *user, stx_rule_ctx *c) {
    return rule_pass(user, c); /* numerator only: Div by a constant or a normaliser */
}

static int64_t chunk_of(const stx_attn *a, const stx_tensor *t) {
    int64_t n = stx__numel(t->dims, t->rank);
    return t->rank > 0 && t->dims[0] % a->N == 0 ? n / a->N : n;
}

static stx_status rule_add(void *user, stx_rule_ctx *c) {
    stx_attn *a = user;
    const stx_graph *g = a->g;
    const stx_node *nd = rule_node(c);
    stx_tensor *dout = stx_rule_grad_output(c, 0);
    if (!dout) return STX_OK;
    bool c0 = is_const(g, nd->in[0], 0), c1 = is_const(g, nd->in[1], 0);
    if (c0 || c1) {
        stx_tensor *din = stx_rule_grad_input(c, c0 ? 1 : 0);
        if (din && !(c0 && c1)) pass_reduce(din, dout);
        return STX_OK;
    }
    const stx_tensor *x0 = stx_rule_input(c, 0), *x1 = stx_rule_input(c, 1);
    int64_t n = stx__numel(dout->dims, dout->rank);
    if (stx__numel(x0->dims, x0->rank) != n || stx__numel(x1->dims, x1->rank) != n)
        return stx__node_err((stx_op_ctx *)c, STX_E_UNSUPPORTED,
                             "transformer-attribution: the residual rule needs operands of the "
                             "output's shape (no broadcasting)");
    stx_tensor *d0 = stx_rule_grad_input(c, 0), *d1 = stx_rule_grad_input(c, 1);
    const float *p = x0->data, *q = x1->data, *r = dout->data;
    int64_t ch = chunk_of(a, dout);
    for (int64_t b = 0; b < n; b += ch) {
        double sa = 0, sb = 0, tot = 0;
        for (int64_t i = b; i < b + ch; i++) {
            double s = sdiv(r[i], (double)p[i] + (double)q[i]);
            sa += p[i] * s;
            sb += q[i] * s;
            tot += r[i];
        }
        double fa = sdiv(fabs(sa), fabs(sa) + fabs(sb)) * tot;
        double fb = sdiv(fabs(sb), fabs(sa) + fabs(sb)) * tot;
        double ka = sdiv(fa, sa), kb = sdiv(fb, sb);
        for (int64_t i = b; i < b + ch; i++) {
            double s = sdiv(r[i], (double)p[i] + (double)q[i]);
            if (d0) ((float *)d0->data)[i] += (float)(p[i] * s * ka);
            if (d1) ((float *)d1->data)[i] += (float)(q[i] * s * kb);
        }
    }
    return STX_OK;
}

static stx_status rule_mul(void *user, stx_rule_ctx *c) {
    stx_attn *a = user;
    const stx_graph *g = a->g;
    const stx_node *nd = rule_node(c);
    stx_tensor *dout = stx_rule_grad_output(c, 0);
    if (!dout) return STX_OK;
    bool c0 = is_const(g, nd->in[0], 0), c1 = is_const(g, nd->in[1], 0);
    int only = -1;
    if (c0 || c1)
        only = c0 ? 1 : 0;
    else if (derived_from(g, nd->in[1], nd->in[0], 0))
        only = 0;
    else if (derived_from(g, nd->in[0], nd->in[1], 0))
        only = 1;
    if (only >= 0) {
        stx_tensor *din = stx_rule_grad_input(c, only);
        if (din && !(c0 && c1)) pass_reduce(din, dout);
        return STX_OK;
    }
    /* two activations: z-rule, halves; a broadcast operand sums its shares (in a->work) */
    const stx_tensor *x[2] = {stx_rule_input(c, 0), stx_rule_input(c, 1)};
    int64_t st[2][8] = {{0}}, o[2] = {0, 0}, idx[8] = {0};
    bstrides(x[0], dout, st[0]);
    bstrides(x[1], dout, st[1]);
    int64_t n0 = stx__numel(x[0]->dims, x[0]->rank), n1 = stx__numel(x[1]->dims, x[1]->rank);
    if (n0 + n1 > a->nwork)
        return stx__node_err((stx_op_ctx *)c, STX_E_INTERNAL, "LRP scratch too small");
    double *w0 = a->work, *w1 = a->work + n0;
    memset(a->work, 0, sizeof(double) * (size_t)(n0 + n1));
    const float *p = x[0]->data, *q = x[1]->data, *r = dout->data;
    int64_t n = stx__numel(dout->dims, dout->rank);
    for (int64_t i = 0; i < n; i++) {
        double z = (double)p[o[0]] * (double)q[o[1]], h = z * sdiv(r[i], z) / 2;
        w0[o[0]] += h;
        w1[o[1]] += h;
        bstep(dout->rank, dout->dims, idx, 2, st, o);
    }
    for (int k = 0; k < 2; k++) {
        stx_tensor *din = stx_rule_grad_input(c, k);
        if (!din) continue;
        float *d = din->data;
        const double *w = k ? w1 : w0;
        for (int64_t i = 0, m = k ? n1 : n0; i < m; i++) d[i] += (float)w[i];
    }
    return STX_OK;
}

/* alpha1beta0 on rows x (rows x K) times W: W[k * wk + m * wm] (K x M). a->work holds the
 * weight's positive and negative parts (K x M each) and S (rows x M). Rows in parallel, each
 * computed by one thread alone: the same result for any thread count. */
static void ab_linear(stx_attn *a, const float *x, int64_t rows, int64_t K, const float *W,
                      int64_t wk, int64_t wm, int64_t M, const float *R, float *din) {
    double *Wp = a->work, *Wn = Wp + K * M, *S0 = Wn + K * M;
    for (int64_t k = 0; k < K; k++)
        for (int64_t m = 0; m < M; m++) {
            double w = W[k * wk + m * wm];
            Wp[k * M + m] = w > 0 ? w : 0;
            Wn[k * M + m] = w < 0 ? w : 0;
        }
#pragma omp parallel for schedule(static) num_threads(stx__threads())
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * K;
        double *S = S0 + r * M;
        for (int64_t m = 0; m < M; m++) S[m] = 0;
        for (int64_t k = 0; k < K; k++) { /* z = x+ w+ + x- w- */
            double v = xr[k];
            if (v == 0) continue;
            const double *wr = (v > 0 ? Wp : Wn) + k * M;
            for (int64_t m = 0; m < M; m++) S[m] += v * wr[m];
        }
        for (int64_t m = 0; m < M; m++) S[m] = sdiv(R[r * M + m], S[m]);
        for (int64_t k = 0; k < K; k++) {
            double v = xr[k], acc = 0;
            if (v == 0) continue;
            const double *wr = (v > 0 ? Wp : Wn) + k * M;
            for (int64_t m = 0; m < M; m++) acc += S[m] * wr[m];
            din[r * K + k] += (float)(v * acc);
        }
    }
}

static stx_status rule_matmul(void *user, stx_rule_ctx *c) {
    stx_attn *a = user;
    const stx_node *nd = rule_node(c);
    stx_tensor *dout = stx_rule_grad_output(c, 0);
    if (!dout) return STX_OK;
    const stx_tensor *x = stx_rule_input(c, 0), *y = stx_rule_input(c, 1);
    stx_tensor *d0 = stx_rule_grad_input(c, 0), *d1 = stx_rule_grad_input(c, 1);
    bool cw = is_const(a->g, nd->in[1], 0);
    if (cw) {
        if (y->rank != 2 || x->rank < 1 || x->dims[x->rank - 1] != y->dims[0])
            return stx__node_err((stx_op_ctx *)c, STX_E_UNSUPPORTED,
                                 "transformer-attribution: a MatMul with a constant weight must "
                                 "be (..., K) x (K, M)");
        int64_t K = y->dims[0], M = y->dims[1], rows = stx__numel(x->dims, x->rank) / K;
        if (2 * K * M + rows * M > a->nwork)
            return stx__node_err((stx_op_ctx *)c, STX_E_INTERNAL, "LRP scratch too small");
        if (d0)
            ab_linear(a, x->data, stx__numel(x->dims, x->rank) / K, K, y->data, M, 1, M, dout->data,
                      d0->data);
        return STX_OK;
    }
    int r = x->rank;
    bool same = r >= 2 && y->rank == r;
    for (int j = 0; same && j < r - 2; j++) same = x->dims[j] == y->dims[j];
    if (!same || x->dims[r - 1] != y->dims[r - 2])
        return stx__node_err((stx_op_ctx *)c, STX_E_UNSUPPORTED,
                             "transformer-attribution: a MatMul of two activations must be "
                             "batched (..., n, k) x (..., k, m) with equal batch axes");
    int64_t n = x->dims[r - 2], k = x->dims[r - 1], m = y->dims[r - 1];
    int64_t B = stx__numel(x->dims, r - 2);
    if (m + k * m > a->nwork)
        return stx__node_err((stx_op_ctx *)c, STX_E_INTERNAL, "LRP scratch too small");
    double *S = a->work, *Rb = a->work + m;
    for (int64_t b = 0; b < B; b++) {
        const float *A = (const float *)x->data + b * n * k,
                    *V = (const float *)y->data + b * k * m;
        const float *R = (const float *)dout->data + b * n * m;
        memset(Rb, 0, sizeof(double) * (size_t)(k * m));
        for (int64_t i = 0; i < n; i++) {
            for (int64_t j = 0; j < m; j++) {
                double z = 0;
                for (int64_t t = 0; t < k; t++) z += (double)A[i * k + t] * V[t * m + j];
                S[j] = sdiv(R[i * m + j], z);
            }
            for (int64_t t = 0; t < k; t++) {
                double acc = 0, at = A[i * k + t];
                for (int64_t j = 0; j < m; j++) {
                    acc += S[j] * V[t * m + j];
                    Rb[t * m + j] += at * S[j];
                }
                if (d0) ((float *)d0->data)[b * n * k + i * k + t] += (float)(at * acc / 2);
            }
        }
        if (d1)
            for (int64_t e = 0; e < k * m; e++)
                ((float *)d1->data)[b * k * m + e] += (float)(V[e] * Rb[e] / 2);
    }
    return STX_OK;
}

static stx_status rule_gemm(void *user, stx_rule_ctx *c) {
    stx_attn *a = user;
    const stx_node *nd = rule_node(c);
    stx_tensor *dout = stx_rule_grad_output(c, 0), *d0 = stx_rule_grad_input(c, 0);
    if (!dout || !d0) return STX_OK;
    const stx_tensor *x = stx_rule_input(c, 0), *w = stx_rule_input(c, 1);
    bool tb = stx__attr_int(nd, "transB", 0) != 0;
    if (stx__attr_int(nd, "transA", 0) != 0 || !is_const(a->g, nd->in[1], 0) || x->rank != 2 ||
        w->rank != 2)
        return stx__node_err((stx_op_ctx *)c, STX_E_UNSUPPORTED,
                             "transformer-attribution: Gemm needs transA 0 and a constant B");
    int64_t K = x->dims[1], M = tb ? w->dims[0] : w->dims[1];
    if (2 * K * M + x->dims[0] * M > a->nwork)
        return stx__node_err((stx_op_ctx *)c, STX_E_INTERNAL, "LRP scratch too small");
    /* alpha scales z and R alike: it cancels */
    if (tb)
        ab_linear(a, x->data, x->dims[0], K, w->data, 1, K, M, dout->data, d0->data);
    else
        ab_linear(a, x->data, x->dims[0], K, w->data, M, 1, M, dout->data, d0->data);
    return STX_OK;
}

static stx_status rule_reduce(void *user, stx_rule_ctx *c) {
    stx_attn *a = user;
    const stx_node *nd = rule_node(c);
    stx_tensor *dout = stx_rule_grad_output(c, 0), *din = stx_rule_grad_input(c, 0);
    if (!dout || !din) return STX_OK;
    const stx_tensor *x = stx_rule_input(c, 0);
    int r = x->rank;
    bool red[8] = {false};
    int64_t ax[8];
    int na = 0;
    const stx_attr *at = stx__attr(nd, "axes");
    if (at) {
        for (int i = 0; i < at->n && i < 8; i++) ax[na++] = at->ints[i];
    } else if (stx_rule_num_inputs(c) > 1 && stx_rule_input(c, 1)) {
        if (!stx__const_ints(stx_rule_input(c, 1), ax, 8, &na))
            return stx__node_err((stx_op_ctx *)c, STX_E_UNSUPPORTED, "non-constant axes");
    }
    for (int i = 0; i < na; i++) red[ax[i] < 0 ? ax[i] + r : ax[i]] = true;
    if (na == 0)
        for (int j = 0; j < r; j++) red[j] = true;
    int64_t st[1][8], o[1] = {0}, idx[8] = {0}, s = 1, cnt = 1;
    for (int j = r - 1; j >= 0; j--) {
        st[0][j] = red[j] ? 0 : s;
        if (red[j])
            cnt *= x->dims[j];
        else
            s *= x->dims[j];
    }
    if (s > a->nwork)
        return stx__node_err((stx_op_ctx *)c, STX_E_INTERNAL, "LRP scratch too small");
    bool mean = strcmp(nd->op_type, "ReduceMean") == 0;
    double *Z = a->work;
    memset(Z, 0, sizeof(double) * (size_t)s);
    const float *xv = x->data, *R = dout->data;
    int64_t n = stx__numel(x->dims, r);
    for (int64_t i = 0; i < n; i++) {
        Z[o[0]] += xv[i];
        bstep(r, x->dims, idx, 1, st, o);
    }
    for (int64_t i = 0; i < s; i++) Z[i] = sdiv(R[i], mean ? Z[i] / (double)cnt : Z[i]);
    o[0] = 0;
    memset(idx, 0, sizeof idx);
    float *d = din->data;
    for (int64_t i = 0; i < n; i++) {
        d[i] += (float)((mean ? xv[i] / (double)cnt : (double)xv[i]) * Z[o[0]]);
        bstep(r, x->dims, idx, 1, st, o);
    }
    return STX_OK;
}

/* ---- plan ------------------------------------------------------------------------------------ */

static int64_t value_numel(const stx_session *s, const stx_graph *g, int v) {
    if (v < 0) return 0;
    int64_t d[STX_MAX_RANK];
    int r = 0;
    if (stx_session_tensor_shape(s, g->values[v].name, d, &r) == STX_OK) return stx__numel(d, r);
    const stx_tensor *t = g->values[v].data;
    return t ? stx__numel(t->dims, t->rank) : 0;
}

stx_status stx__attn_create(const stx_dense_spec *sp, int method, stx_attn **out) {
    stx_context *ctx = sp->ctx;
    stx_err *ce = &ctx->err;
    const stx_explain_options *o = sp->o;
    const stx_graph *g = &sp->m->g;
    *out = NULL;
    if (!(o->discard_ratio >= 0 && o->discard_ratio < 1))
        return stx__errf(ce, STX_E_INVALID, "discard_ratio %g is not in [0, 1)",
                         (double)o->discard_ratio);
    if (o->discard_ratio > 0 && method != STX_ATTN_ROLLOUT)
        return stx__errf(ce, STX_E_INVALID,
                         "discard_ratio applies to rollout only (not to the gradient-weighted "
                         "methods)");
    if (o->start_layer < 0)
        return stx__errf(ce, STX_E_INVALID, "start_layer %d is negative", o->start_layer);
    stx_attn *a = stx__calloc(ctx, 1, sizeof *a);
    if (!a) return stx__errf(ce, STX_E_NOMEM, "out of memory");
    a->ctx = ctx;
    a->g = g;
    a->method = method;
    a->N = sp->shape[0];
    for (int j = 0; j < 3; j++) a->grid[j] = sp->token_grid[j];
    a->S = a->grid[1] * a->grid[2];
    a->P = a->grid[0] * a->S;
    a->fusion = o->head_fusion;
    a->discard = o->discard_ratio;
    a->start_block = o->start_layer;
    a->out_index = sp->out_index;
    a->score = o->score;
    stx_status st = STX_OK;

    /* the Softmax nodes: attention maps (feeding a MatMul), the rest pooling candidates */
    int n_soft = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].op_type, "Softmax") == 0 && g->nodes[i].n_out >= 1 &&
            g->nodes[i].out[0] >= 0)
            n_soft++;
    a->maps = stx__calloc(ctx, (size_t)n_soft + 1, sizeof *a->maps);
    a->names = stx__calloc(ctx, (size_t)n_soft + 2, sizeof *a->names);
    a->keep = stx__calloc(ctx, (size_t)n_soft + 1, sizeof *a->keep);
    int *others = stx__calloc(ctx, (size_t)n_soft + 1, sizeof *others);
    if (!a->maps || !a->names || !a->keep || !others) {
        st = stx__errf(ce, STX_E_NOMEM, "out of memory");
        goto fail;
    }
    int n_other = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const stx_node *nd = &g->nodes[i];
        if (strcmp(nd->op_type, "Softmax") != 0 || nd->n_out < 1 || nd->out[0] < 0) continue;
        if (feeds_matmul(g, nd->out[0])) {
            attn_map *m = &a->maps[a->n_maps++];
            m->node = i;
            m->name = g->values[nd->out[0]].name;
            a->names[a->n_maps - 1] = m->name;
        } else {
            others[n_other++] = i;
        }
    }
    if (a->n_maps == 0) {
        st = stx__errf(ce, STX_E_UNSUPPORTED,
                       "the model has no attention map (no Softmax whose output is multiplied "
                       "with values by a MatMul): the transformer methods need a transformer");
        goto fail;
    }

    for (int j = 0; j < 3; j++)
        if (sp->token_grid[j] <= 0) {
            st = stx__errf(ce, STX_E_INVALID,
                           "transformer methods need the token grid: give --token-grid T,H,W "
                           "(token_grid), or stx.token_grid in the model's metadata");
            goto fail;
        }
    /* the session: forward values of the maps (rollout) or their gradients, and the other
     * Softmax outputs (pooling candidates) */
    for (int k = 0; k < n_other; k++) a->keep[k] = g->values[g->nodes[others[k]].out[0]].name;
    if (method == STX_ATTN_ROLLOUT)
        for (int k = 0; k < a->n_maps; k++) a->keep[n_other + k] = a->names[k];
    stx_session_options so = stx_session_options_default();
    so.num_threads = sp->num_threads;
    so.grad_output = sp->out_index;
    so.keep = a->keep;
    if (method != STX_ATTN_ROLLOUT) so.grad_wrt = a->names;
    st = stx_session_create(sp->m, &so, sp->shape, 5, &a->sess);
    if (st) goto fail;
    for (int k = 0; k < n_other; k++) {
        const stx_node *nd = &g->nodes[others[k]];
        int64_t d[STX_MAX_RANK];
        int r = 0;
        if (stx_session_tensor_shape(a->sess, a->keep[k], d, &r) != STX_OK) continue;
        int64_t ax = stx__attr_int(nd, "axis", -1);
        if (ax < 0) ax += r;
        bool is_out = false;
        for (int j = 0; j < g->n_outputs; j++) is_out |= g->outputs[j] == nd->out[0];
        if (!is_out && ax >= 0 && ax < r && d[0] == a->N && d[ax] == a->P &&
            stx__numel(d, r) == a->N * a->P)
            a->pool = a->keep[k]; /* the last one: the read-out */
    }
    for (int k = 0; k < a->n_maps; k++) {
        attn_map *m = &a->maps[k];
        int64_t d[STX_MAX_RANK];
        int r = 0;
        st = stx_session_tensor_shape(a->sess, m->name, d, &r);
        if (!st) st = classify(a, &g->nodes[m->node], d, r, m, ce);
        if (st) goto fail;
    }

    /* class token: every map that can see it must */
    bool cls = false;
    for (int k = 0; k < a->n_maps; k++) cls |= a->maps[k].cls != 0;
    for (int k = 0; k < a->n_maps && cls; k++) {
        const attn_map *m = &a->maps[k];
        if (m->kind == K_JOINT && !m->cls) {
            st = stx__errf(ce, STX_E_UNSUPPORTED,
                           "attention '%s' mixes the %lld grid tokens without the class token "
                           "that other attention maps have",
                           g->nodes[m->node].name, (long long)a->P);
            goto fail;
        }
    }
    a->off = cls ? 1 : 0;
    a->ntok = a->P + a->off;
    if (cls) a->pool = NULL;

    /* blocks: a joint map is one; a temporal and a spatial map in a row share one */
    int64_t maxn = 1;
    for (int k = 0; k < a->n_maps; k++) {
        attn_map *m = &a->maps[k];
        const attn_map *p = k ? &a->maps[k - 1] : NULL;
        bool pair = p && m->kind != K_JOINT && p->kind != K_JOINT && p->kind != m->kind &&
                    (k < 2 || a->maps[k - 2].block != p->block);
        m->block = p ? (pair ? p->block : p->block + 1) : 0;
        if (m->n > maxn) maxn = m->n;
    }
    a->n_blocks = a->maps[a->n_maps - 1].block + 1;
    if (a->start_block >= a->n_blocks) {
        st = stx__errf(ce, STX_E_INVALID,
                       "start_layer %d is past the last block: the model has %d attention blocks "
                       "(0 to %d)",
                       a->start_block, a->n_blocks, a->n_blocks - 1);
        goto fail;
    }

    if (method == STX_ATTN_TRANSFORMER_ATTRIBUTION) {
        static const char *const ops[] = {"MatMul",     "Gemm",    "Add",
                                          "Mul",        "Div",     "ReduceSum",
                                          "ReduceMean", "Softmax", "LayerNormalization",
                                          "Gelu"};
        stx_status (*const fns[])(void *, stx_rule_ctx *) = {
            rule_matmul, rule_gemm,   rule_add,  rule_mul,  rule_div,
            rule_reduce, rule_reduce, rule_pass, rule_pass, rule_pass};
        stx_backward_rule rules[10];
        for (int k = 0; k < 10; k++) rules[k] = (stx_backward_rule){ops[k], fns[k], a};
        stx_session_options lo = stx_session_options_default();
        lo.num_threads = sp->num_threads;
        lo.grad_output = sp->out_index;
        lo.grad_wrt = a->names;
        lo.rules = rules;
        lo.n_rules = 10;
        st = stx_session_create(sp->m, &lo, sp->shape, 5, &a->lsess);
        if (st) goto fail;
        /* scratch: the largest input 0 + 2 x input 1 + output of a node after the first map */
        for (int i = a->maps[0].node + 1; i < g->n_nodes; i++) {
            const stx_node *nd = &g->nodes[i];
            int64_t need = 0;
            for (int k = 0; k < nd->n_in && k < 2; k++)
                need += (k + 1) * value_numel(a->lsess, g, nd->in[k]);
            if (nd->n_out >= 1) need += value_numel(a->lsess, g, nd->out[0]);
            if (need > a->nwork) a->nwork = need;
        }
        a->work = stx__malloc(ctx, sizeof(double) * (size_t)(a->nwork + 1));
        if (!a->work) {
            st = stx__errf(ce, STX_E_NOMEM, "out of memory for the LRP scratch");
            goto fail;
        }
    }
    a->v = stx__malloc(ctx, sizeof(double) * (size_t)a->ntok);
    a->vn = stx__malloc(ctx, sizeof(double) * (size_t)a->ntok);
    a->F = stx__malloc(ctx, sizeof(double) * (size_t)(maxn * maxn));
    if (a->discard > 0) a->order = stx__malloc(ctx, sizeof(int64_t) * (size_t)(maxn * maxn));
    if (!a->v || !a->vn || !a->F || (a->discard > 0 && !a->order)) {
        st = stx__errf(ce, STX_E_NOMEM, "out of memory for the token relevance");
        goto fail;
    }
    stx__free(ctx, others);
    *out = a;
    return STX_OK;
fail:
    stx__free(ctx, others);
    stx__attn_free(a);
    return st;
}

void stx__attn_free(stx_attn *a) {
    if (!a) return;
    stx_context *ctx = a->ctx;
    stx_session_free(a->sess);
    stx_session_free(a->lsess);
    stx__free(ctx, a->work);
    stx__free(ctx, a->names);
    stx__free(ctx, a->keep);
    stx__free(ctx, a->maps);
    stx__free(ctx, a->v);
    stx__free(ctx, a->vn);
    stx__free(ctx, a->F);
    stx__free(ctx, a->order);
    stx__free(ctx, a);
}

void stx__attn_grid(const stx_attn *a, int64_t grid[3]) {
    for (int j = 0; j < 3; j++) grid[j] = a->grid[j];
}

/* ---- run --------------------------------------------------------------------------------- */

/* (value, index) ascending: a total order, so that the discarded entries are deterministic. */
static inline bool before(const double *key, int64_t i, int64_t j) {
    return key[i] < key[j] || (key[i] == key[j] && i < j);
}

static void sift(const double *key, int64_t *idx, int64_t p, int64_t end) {
    for (;;) {
        int64_t l = 2 * p + 1, b = p;
        if (l < end && before(key, idx[b], idx[l])) b = l;
        if (l + 1 < end && before(key, idx[b], idx[l + 1])) b = l + 1;
        if (b == p) return;
        int64_t t = idx[p];
        idx[p] = idx[b];
        idx[b] = t;
        p = b;
    }
}

/* Heap sort of the indices idx[0..c) by before(). */
static void sort_idx(const double *key, int64_t *idx, int64_t c) {
    for (int64_t r = c / 2 - 1; r >= 0; r--) sift(key, idx, r, c);
    for (int64_t end = c - 1; end > 0; end--) {
        int64_t t = idx[0];
        idx[0] = idx[end];
        idx[end] = t;
        sift(key, idx, 0, end);
    }
}

/* Fuses the heads of group gi of sample s of map m into a->F (n x n): X itself (G NULL: the
 * attention) or (G * X)^+ per head (X the attention or its relevance). */
static void fuse(stx_attn *a, const attn_map *m, const float *X, const float *G, int64_t s,
                 int64_t gi) {
    int64_t n = m->n, nn = n * n, h = m->heads;
    const int64_t base = (s * m->groups + gi) * h * nn;
    for (int64_t e = 0; e < nn; e++) {
        double acc = 0;
        for (int64_t k = 0; k < h; k++) {
            double x = X[base + k * nn + e];
            if (G) {
                x *= G[base + k * nn + e];
                if (x < 0) x = 0;
            }
            if (k == 0 || a->fusion == STX_HEADS_MEAN)
                acc = k == 0 ? x : acc + x;
            else if (a->fusion == STX_HEADS_MAX)
                acc = x > acc ? x : acc;
            else
                acc = x < acc ? x : acc;
        }
        a->F[e] = a->fusion == STX_HEADS_MEAN ? acc / (double)h : acc;
    }
}

/* Zeroes the lowest fraction a->discard of F's entries that involve no class token. */
static void discard(stx_attn *a, const attn_map *m) {
    int64_t n = m->n, c = 0, lo = m->cls ? 1 : 0;
    for (int64_t i = lo; i < n; i++)
        for (int64_t j = lo; j < n; j++) a->order[c++] = i * n + j;
    int64_t k = (int64_t)floor(a->discard * (double)c);
    if (k <= 0) return;
    sort_idx(a->F, a->order, c);
    for (int64_t i = 0; i < k; i++) a->F[a->order[i]] = 0;
}

/* v <- v M for map m of sample s (M: the group matrices; rows it does not cover: identity). X is
 * the attention (rollout, generic) or its LRP relevance (transformer attribution), G the gradient
 * of the score (NULL for rollout). */
static void propagate(stx_attn *a, const attn_map *m, const float *X, const float *G, int64_t s) {
    const int64_t n = m->n;
    bool generic = a->method == STX_ATTN_GENERIC;
    bool cls_covered = m->cls != 0;
    if (generic) {
        memcpy(a->vn, a->v, sizeof(double) * (size_t)a->ntok);
    } else {
        memset(a->vn, 0, sizeof(double) * (size_t)a->ntok);
        if (a->off && !cls_covered) a->vn[0] = a->v[0];
    }
    double ccls = m->kind == K_SPACE && m->cls ? 1.0 / (double)m->groups : 1.0;
    for (int64_t gi = 0; gi < m->groups; gi++) {
        fuse(a, m, X, G, s, gi);
        if (!generic) {
            if (a->method == STX_ATTN_ROLLOUT && a->discard > 0) discard(a, m);
            for (int64_t i = 0; i < n; i++) {
                double *row = a->F + i * n, sum = 0;
                row[i] += 1.0;
                for (int64_t j = 0; j < n; j++) sum += row[j];
                if (sum > 0)
                    for (int64_t j = 0; j < n; j++) row[j] /= sum;
            }
        }
        for (int64_t i = 0; i < n; i++) {
            int64_t gq = glob(a, m, gi, i);
            double w = a->v[gq] * (gq == 0 && a->off ? ccls : 1.0);
            if (w == 0) continue;
            const double *row = a->F + i * n;
            for (int64_t j = 0; j < n; j++) a->vn[glob(a, m, gi, j)] += w * row[j];
        }
    }
    double *t = a->v;
    a->v = a->vn;
    a->vn = t;
}

stx_status stx__attn_run(stx_attn *a, const stx_tensor *x, const int64_t *targets,
                         const int64_t *frames, stx_err *err, double *rel) {
    stx_status st = stx_session_run(a->sess, x, NULL);
    if (st) return stx__errf(err, st, "%s", stx_session_last_error(a->sess));
    if (a->method != STX_ATTN_ROLLOUT) {
        stx_seed sd = stx_seed_default();
        sd.targets = targets;
        sd.frames = frames;
        sd.score = a->score;
        st = stx_session_backward(a->sess, &sd);
        if (st) return stx__errf(err, st, "%s", stx_session_last_error(a->sess));
    }
    if (a->lsess) {
        /* the relevance: seeded one-hot at the target logit whatever the score (Chefer et al.) */
        st = stx_session_run(a->lsess, x, NULL);
        stx_seed sd = stx_seed_default();
        sd.targets = targets;
        sd.frames = frames;
        if (!st) st = stx_session_backward(a->lsess, &sd);
        if (st) return stx__errf(err, st, "%s", stx_session_last_error(a->lsess));
    }
    const float *pw = NULL;
    if (a->pool) {
        const stx_tensor *t = stx_session_value(a->sess, a->pool);
        if (!t || !t->data)
            return stx__errf(err, STX_E_INTERNAL, "pooling weights '%s' not kept", a->pool);
        pw = t->data;
    }
    for (int64_t s = 0; s < a->N; s++) {
        /* the read-out p */
        if (a->off) {
            memset(a->v, 0, sizeof(double) * (size_t)a->ntok);
            a->v[0] = 1;
        } else {
            for (int64_t j = 0; j < a->P; j++)
                a->v[j] = pw ? (double)pw[s * a->P + j] : 1.0 / (double)a->P;
        }
        for (int k = a->n_maps - 1; k >= 0; k--) {
            const attn_map *m = &a->maps[k];
            if (m->block < a->start_block) break;
            const stx_tensor *A = a->lsess ? stx_session_grad(a->lsess, m->name)
                                           : stx_session_value(a->sess, m->name);
            const stx_tensor *G =
                a->method == STX_ATTN_ROLLOUT ? NULL : stx_session_grad(a->sess, m->name);
            if (!A || !A->data || (a->method != STX_ATTN_ROLLOUT && (!G || !G->data)))
                return stx__errf(err, STX_E_INTERNAL, "attention map '%s' not observable", m->name);
            propagate(a, m, A->data, G ? G->data : NULL, s);
        }
        for (int64_t j = 0; j < a->P; j++) rel[s * a->P + j] = a->v[a->off + j];
    }
    return STX_OK;
}
