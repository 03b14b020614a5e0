/* matmul.c: Gemm and MatMul on float32 through oneDNN's row-major dnnl_sgemm.
 *
 * oneDNN's gemm splits work over OpenMP threads with a partition that depends only on the shapes
 * and the thread count, so results are reproducible for a fixed thread count. Inside an OpenMP
 * parallel region it runs single-threaded, which the batched path below relies on.
 */
#include "ops.h"

#include <dnnl.h>
#include <string.h>

/* Products smaller than this (M*N*K) are run one per thread across the batch rather than one
 * after the other with a multi-threaded gemm each. */
#define SMALL_GEMM_MACS (64 * 64 * 64)

static stx_status gemm_call(stx_op_ctx *c, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                            float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                            float beta, float *y, int64_t ldc) {
    dnnl_status_t s =
        dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, y, ldc);
    if (s != dnnl_success)
        return stx__node_err(c, STX_E_INTERNAL,
                             "dnnl_sgemm failed (status %d) for M=%lld N=%lld K=%lld", (int)s,
                             (long long)m, (long long)n, (long long)k);
    return STX_OK;
}

static stx_status need_float(stx_op_ctx *c, const stx_tensor *t, const char *what) {
    if (t->dtype == STX_DTYPE_FLOAT) return STX_OK;
    return stx__node_err(c, STX_E_UNSUPPORTED,
                         "%s must be float32, got %s (only float32 matrix "
                         "products are supported)",
                         what, stx_dtype_name(t->dtype));
}

/* ----- Gemm ------------------------------------------------------------------------------------
 * Y = alpha * A' B' + beta * C, A' = transA ? A^T : A (M x K), B' = transB ? B^T : B (K x N), and
 * C (optional since opset 11) unidirectionally broadcast to (M, N): a scalar, a row (N) or (1, N),
 * a column (M, 1), or the full matrix. Y is pre-filled with beta * C and the product is
 * accumulated onto it (gemm with beta = 1).
 */
static stx_status gemm_dims(stx_op_ctx *c, int64_t *m, int64_t *n, int64_t *k) {
    const stx_tensor *a = c->in[0], *b = c->in[1];
    char sa[128], sb[128];
    if (a->rank != 2 || b->rank != 2)
        return stx__node_err(c, STX_E_SHAPE, "A and B must be 2-D, got %s and %s",
                             stx__shape_str(a->dims, a->rank, sa, sizeof sa),
                             stx__shape_str(b->dims, b->rank, sb, sizeof sb));
    bool ta = stx__attr_int(c->node, "transA", 0) != 0;
    bool tb = stx__attr_int(c->node, "transB", 0) != 0;
    *m = ta ? a->dims[1] : a->dims[0];
    *k = ta ? a->dims[0] : a->dims[1];
    int64_t kb = tb ? b->dims[1] : b->dims[0];
    *n = tb ? b->dims[0] : b->dims[1];
    if (*k != kb)
        return stx__node_err(c, STX_E_SHAPE,
                             "inner dimensions differ: A %s (transA=%d), B %s (transB=%d)",
                             stx__shape_str(a->dims, a->rank, sa, sizeof sa), ta,
                             stx__shape_str(b->dims, b->rank, sb, sizeof sb), tb);
    return STX_OK;
}

/* Strides of C broadcast to (M, N): element (i, j) of the broadcast C is C[i * s0 + j * s1]. */
static stx_status gemm_c_strides(stx_op_ctx *c, const stx_tensor *ct, int64_t m, int64_t n,
                                 int64_t *s0, int64_t *s1) {
    int64_t d0 = ct->rank >= 2 ? ct->dims[ct->rank - 2] : 1;
    int64_t d1 = ct->rank >= 1 ? ct->dims[ct->rank - 1] : 1;
    if (ct->rank > 2 || (d0 != m && d0 != 1) || (d1 != n && d1 != 1)) {
        char s[128];
        return stx__node_err(
            c, STX_E_SHAPE, "C of shape %s does not broadcast to (M, N) = (%lld, %lld)",
            stx__shape_str(ct->dims, ct->rank, s, sizeof s), (long long)m, (long long)n);
    }
    *s1 = d1 == 1 ? 0 : 1;
    *s0 = d0 == 1 ? 0 : d1;
    return STX_OK;
}

static const stx_tensor *gemm_c(const stx_op_ctx *c) {
    return c->n_in > 2 ? c->in[2] : NULL;
}

static stx_status gemm_infer(stx_op_ctx *c) {
    stx_status st = need_float(c, c->in[0], "A");
    if (st == STX_OK) st = need_float(c, c->in[1], "B");
    if (st != STX_OK) return st;
    int64_t m, n, k, s0, s1;
    if ((st = gemm_dims(c, &m, &n, &k)) != STX_OK) return st;
    const stx_tensor *ct = gemm_c(c);
    if (ct) {
        if ((st = need_float(c, ct, "C")) != STX_OK) return st;
        if ((st = gemm_c_strides(c, ct, m, n, &s0, &s1)) != STX_OK) return st;
    }
    int64_t od[2] = {m, n};
    stx__set_out(c, 0, STX_DTYPE_FLOAT, od, 2);
    return STX_OK;
}

static stx_status gemm_forward(stx_op_ctx *c) {
    int64_t m, n, k;
    stx_status st = gemm_dims(c, &m, &n, &k);
    if (st != STX_OK) return st;
    const bool ta = stx__attr_int(c->node, "transA", 0) != 0;
    const bool tb = stx__attr_int(c->node, "transB", 0) != 0;
    const float alpha = stx__attr_float(c->node, "alpha", 1.0f);
    const float beta = stx__attr_float(c->node, "beta", 1.0f);
    const stx_tensor *ct = gemm_c(c);
    float *y = c->out[0]->data;
    if (m == 0 || n == 0) return STX_OK;
    bool acc = false; /* Y already holds beta * C */
    if (ct && beta != 0.0f) {
        int64_t s0, s1;
        if ((st = gemm_c_strides(c, ct, m, n, &s0, &s1)) != STX_OK) return st;
        const float *cv = ct->data;
#pragma omp parallel for schedule(static) if (m * n >= 65536)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) y[i * n + j] = beta * cv[i * s0 + j * s1];
        acc = true;
    }
    if (k == 0 || alpha == 0.0f) {
        if (!acc) memset(y, 0, (size_t)(m * n) * sizeof(float));
        return STX_OK;
    }
    const stx_tensor *a = c->in[0], *b = c->in[1];
    return gemm_call(c, ta, tb, m, n, k, alpha, a->data, a->dims[1], b->data, b->dims[1],
                     acc ? 1.0f : 0.0f, y, n);
}

static int64_t gemm_macs(const stx_op_ctx *c) {
    const stx_tensor *a = c->in[0], *y = c->out[0];
    if (a->rank != 2 || y->rank != 2) return 0;
    int64_t k = stx__attr_int(c->node, "transA", 0) ? a->dims[0] : a->dims[1];
    return y->dims[0] * y->dims[1] * k;
}

/* ----- MatMul ----------------------------------------------------------------------------------
 * numpy.matmul semantics: a 1-D A is promoted to (1, K) and a 1-D B to (K, 1), the promoted
 * dimension being removed from the result; the leading (batch) dimensions broadcast.
 */
typedef struct {
    int64_t m, n, k;
    int nbd;                  /* number of output batch dims */
    int64_t bd[STX_MAX_RANK]; /* output batch dims */
    int64_t sa[STX_MAX_RANK]; /* A's batch strides in elements (0 where broadcast) */
    int64_t sb[STX_MAX_RANK]; /* B's batch strides */
    int64_t nbatch;
    int64_t od[STX_MAX_RANK]; /* output shape */
    int orank;
} mm_geom;

static stx_status mm_geometry(stx_op_ctx *c, mm_geom *g) {
    const stx_tensor *a = c->in[0], *b = c->in[1];
    char s1[128], s2[128];
    if (a->rank < 1 || b->rank < 1)
        return stx__node_err(c, STX_E_SHAPE, "inputs must have rank >= 1, got %s and %s",
                             stx__shape_str(a->dims, a->rank, s1, sizeof s1),
                             stx__shape_str(b->dims, b->rank, s2, sizeof s2));
    g->m = a->rank >= 2 ? a->dims[a->rank - 2] : 1;
    g->k = a->dims[a->rank - 1];
    int64_t kb = b->rank >= 2 ? b->dims[b->rank - 2] : b->dims[0];
    g->n = b->rank >= 2 ? b->dims[b->rank - 1] : 1;
    if (g->k != kb)
        return stx__node_err(c, STX_E_SHAPE, "inner dimensions differ: %s x %s",
                             stx__shape_str(a->dims, a->rank, s1, sizeof s1),
                             stx__shape_str(b->dims, b->rank, s2, sizeof s2));
    int ra = a->rank > 2 ? a->rank - 2 : 0, rb = b->rank > 2 ? b->rank - 2 : 0;
    stx_status st = stx__broadcast_shape(c, a->dims, ra, b->dims, rb, g->bd, &g->nbd);
    if (st != STX_OK) return st;
    /* Batch strides, right-aligned against the output batch dims. */
    int64_t msa = g->m * g->k, msb = g->k * g->n;
    for (int i = g->nbd - 1; i >= 0; i--) {
        int ia = i - (g->nbd - ra), ib = i - (g->nbd - rb);
        bool ba = ia >= 0 && a->dims[ia] != 1, bb = ib >= 0 && b->dims[ib] != 1;
        g->sa[i] = ba ? msa : 0;
        g->sb[i] = bb ? msb : 0;
        if (ba) msa *= a->dims[ia];
        if (bb) msb *= b->dims[ib];
    }
    g->nbatch = stx__numel(g->bd, g->nbd);
    int r = 0;
    for (int i = 0; i < g->nbd; i++) g->od[r++] = g->bd[i];
    if (a->rank >= 2) g->od[r++] = g->m;
    if (b->rank >= 2) g->od[r++] = g->n;
    g->orank = r;
    return STX_OK;
}

static stx_status matmul_infer(stx_op_ctx *c) {
    stx_status st = need_float(c, c->in[0], "A");
    if (st == STX_OK) st = need_float(c, c->in[1], "B");
    if (st != STX_OK) return st;
    mm_geom g;
    if ((st = mm_geometry(c, &g)) != STX_OK) return st;
    stx__set_out(c, 0, STX_DTYPE_FLOAT, g.od, g.orank);
    return STX_OK;
}

static stx_status matmul_forward(stx_op_ctx *c) {
    mm_geom g;
    stx_status st = mm_geometry(c, &g);
    if (st != STX_OK) return st;
    const float *a = c->in[0]->data, *b = c->in[1]->data;
    float *y = c->out[0]->data;
    const int64_t m = g.m, n = g.n, k = g.k, mn = m * n;
    if (g.nbatch == 0 || mn == 0) return STX_OK;
    if (k == 0) {
        memset(y, 0, (size_t)(g.nbatch * mn) * sizeof(float));
        return STX_OK;
    }
    /* B shared by every batch and A dense over the whole output batch: the batch folds into M,
     * one (nbatch * M) x K by K x N product (e.g. a Linear layer applied to [N, T, D]). */
    bool b_shared = true, a_dense = true;
    for (int i = 0; i < g.nbd; i++) {
        if (g.sb[i] != 0) b_shared = false;
        if (g.sa[i] == 0 && g.bd[i] != 1) a_dense = false;
    }
    if (b_shared && a_dense)
        return gemm_call(c, false, false, g.nbatch * m, n, k, 1.0f, a, k, b, n, 0.0f, y, n);

    const int64_t nb = g.nbatch;
    if (nb > 1 && m * n * k < SMALL_GEMM_MACS) {
        /* Many small products: one per thread; each gemm is single-threaded in the region. */
        int failed = 0;
#pragma omp parallel for schedule(static) reduction(| : failed)
        for (int64_t bi = 0; bi < nb; bi++) {
            int64_t oa = 0, ob = 0, q = bi;
            for (int d = g.nbd - 1; d >= 0; d--) {
                int64_t ix = q % g.bd[d];
                q /= g.bd[d];
                oa += ix * g.sa[d];
                ob += ix * g.sb[d];
            }
            if (dnnl_sgemm('N', 'N', m, n, k, 1.0f, a + oa, k, b + ob, n, 0.0f, y + bi * mn, n) !=
                dnnl_success)
                failed |= 1;
        }
        if (failed)
            return stx__node_err(c, STX_E_INTERNAL, "dnnl_sgemm failed for M=%lld N=%lld K=%lld",
                                 (long long)m, (long long)n, (long long)k);
        return STX_OK;
    }
    for (int64_t bi = 0; bi < nb; bi++) {
        int64_t oa = 0, ob = 0, q = bi;
        for (int d = g.nbd - 1; d >= 0; d--) {
            int64_t ix = q % g.bd[d];
            q /= g.bd[d];
            oa += ix * g.sa[d];
            ob += ix * g.sb[d];
        }
        st = gemm_call(c, false, false, m, n, k, 1.0f, a + oa, k, b + ob, n, 0.0f, y + bi * mn, n);
        if (st != STX_OK) return st;
    }
    return STX_OK;
}

static int64_t matmul_macs(const stx_op_ctx *c) {
    const stx_tensor *a = c->in[0], *y = c->out[0];
    if (a->rank < 1) return 0;
    return stx__numel(y->dims, y->rank) * a->dims[a->rank - 1];
}

/* ----- registration --------------------------------------------------------------------------- */

static const char *const gemm_attrs[] = {"alpha", "beta", "transA", "transB", "broadcast", NULL};
static const char *const matmul_attrs[] = {NULL};

static const stx_op_def op_gemm = {.name = "Gemm",
                                   .min_in = 2,
                                   .max_in = 3,
                                   .min_out = 1,
                                   .max_out = 1,
                                   .attrs = gemm_attrs,
                                   .infer = gemm_infer,
                                   .forward = gemm_forward,
                                   .macs = gemm_macs};
static const stx_op_def op_matmul = {.name = "MatMul",
                                     .min_in = 2,
                                     .max_in = 2,
                                     .min_out = 1,
                                     .max_out = 1,
                                     .attrs = matmul_attrs,
                                     .infer = matmul_infer,
                                     .forward = matmul_forward,
                                     .macs = matmul_macs};

const stx_op_def *const stx__ops_matmul[] = {&op_gemm, &op_matmul, NULL};
