/* matmul.c: Gemm and MatMul: float32 through oneDNN's row-major dnnl_sgemm, float64 through plain
 * reference loops (used by the finite-difference gradient tests).
 *
 * oneDNN's gemm splits work over OpenMP threads with a partition that depends only on the shapes
 * and the thread count, so results are reproducible for a fixed thread count. Inside an OpenMP
 * parallel region it runs single-threaded, which the batched paths below rely on (the float64
 * loops likewise: their own parallel loop is nested, hence inactive, there).
 *
 * Backward: with Y = op(A) op(B), dop(A) = dY op(B)^T and dop(B) = op(A)^T dY, each product again
 * a gemm accumulated (beta = 1) onto the gradient buffers; gradients of batch dimensions that
 * were broadcast are summed over the batches sharing the same matrix, in a fixed order.
 */
#include "ops.h"

#include <dnnl.h>
#include <string.h>

/* Products smaller than this (M*N*K) are run one per thread across the batch rather than one
 * after the other with a multi-threaded gemm each. */
#define SMALL_GEMM_MACS (64 * 64 * 64)

/* y (m x n, row stride ldc) = alpha op(a) op(b) + beta y in double, op(a) m x k, op(b) k x n. */
static void dgemm_ref(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                      const double *a, int64_t lda, const double *b, int64_t ldb, double beta,
                      double *y, int64_t ldc) {
#pragma omp parallel for schedule(static) if (m > 1 && m * n * k >= SMALL_GEMM_MACS)
    for (int64_t i = 0; i < m; i++) {
        double *yi = y + i * ldc;
        if (beta == 0.0) {
            for (int64_t j = 0; j < n; j++) yi[j] = 0.0;
        } else if (beta != 1.0) {
            for (int64_t j = 0; j < n; j++) yi[j] *= beta;
        }
        if (!tb) { /* row i of y += sum_p a(i, p) * row p of b */
            for (int64_t p = 0; p < k; p++) {
                const double av = alpha * (ta ? a[p * lda + i] : a[i * lda + p]);
                const double *bp = b + p * ldb;
                for (int64_t j = 0; j < n; j++) yi[j] += av * bp[j];
            }
        } else { /* b(p, j) = b[j * ldb + p]: dot products */
            for (int64_t j = 0; j < n; j++) {
                const double *bj = b + j * ldb;
                double s = 0.0;
                for (int64_t p = 0; p < k; p++) s += (ta ? a[p * lda + i] : a[i * lda + p]) * bj[p];
                yi[j] += alpha * s;
            }
        }
    }
}

/* y = alpha op(a) op(b) + beta y for float32 (dnnl_sgemm) or float64; returns the dnnl status
 * (dnnl_success = 0). Safe inside an OpenMP parallel region. */
static int gemm_raw(bool dbl, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                    const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *y,
                    int64_t ldc) {
    if (m == 0 || n == 0) return dnnl_success;
    if (dbl) {
        dgemm_ref(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, y, ldc);
        return dnnl_success;
    }
    if (k == 0) { /* nothing to multiply: y = beta y */
        float *yf = y;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                yf[i * ldc + j] = beta == 0.0 ? 0.0f : (float)beta * yf[i * ldc + j];
        return dnnl_success;
    }
    return (int)dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, (float)alpha, a, lda, b, ldb,
                           (float)beta, y, ldc);
}

static stx_status gemm_call(stx_op_ctx *c, bool dbl, bool ta, bool tb, int64_t m, int64_t n,
                            int64_t k, double alpha, const void *a, int64_t lda, const void *b,
                            int64_t ldb, double beta, void *y, int64_t ldc) {
    int s = gemm_raw(dbl, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, y, ldc);
    if (s != dnnl_success)
        return stx__node_err(c, STX_E_INTERNAL,
                             "dnnl_sgemm failed (status %d) for M=%lld N=%lld K=%lld", s,
                             (long long)m, (long long)n, (long long)k);
    return STX_OK;
}

/* float32 or float64, and (other != NULL) the same type as other. */
static stx_status need_float(stx_op_ctx *c, const stx_tensor *t, const stx_tensor *other,
                             const char *what) {
    if (t->dtype != STX_DTYPE_FLOAT && t->dtype != STX_DTYPE_DOUBLE)
        return stx__node_err(c, STX_E_UNSUPPORTED,
                             "%s must be float32 or float64, got %s (only floating-point matrix "
                             "products are supported)",
                             what, stx_dtype_name(t->dtype));
    if (other && other->dtype != t->dtype)
        return stx__node_err(c, STX_E_UNSUPPORTED, "%s is %s but A is %s: the types must match",
                             what, stx_dtype_name(t->dtype), stx_dtype_name(other->dtype));
    return STX_OK;
}

/* The operands the requested gradients read (dA reads B, dB reads A) must hold data. */
static stx_status need_operands(stx_op_ctx *c) {
    if ((c->din[0] && !c->in[1]->data) || (c->din[1] && !c->in[0]->data))
        return stx__node_err(c, STX_E_INTERNAL, "the forward %s is not available for backward",
                             c->din[0] && !c->in[1]->data ? "B" : "A");
    return STX_OK;
}

static size_t esize(bool dbl) {
    return dbl ? sizeof(double) : sizeof(float);
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
    const stx_tensor *a = c->in[0];
    stx_status st = need_float(c, a, NULL, "A");
    if (st == STX_OK) st = need_float(c, c->in[1], a, "B");
    if (st != STX_OK) return st;
    int64_t m, n, k, s0, s1;
    if ((st = gemm_dims(c, &m, &n, &k)) != STX_OK) return st;
    const stx_tensor *ct = gemm_c(c);
    if (ct) {
        if ((st = need_float(c, ct, a, "C")) != STX_OK) return st;
        if ((st = gemm_c_strides(c, ct, m, n, &s0, &s1)) != STX_OK) return st;
    }
    int64_t od[2] = {m, n};
    stx__set_out(c, 0, a->dtype, od, 2);
    return STX_OK;
}

static stx_status gemm_forward(stx_op_ctx *c) {
    int64_t m, n, k;
    stx_status st = gemm_dims(c, &m, &n, &k);
    if (st != STX_OK) return st;
    const bool ta = stx__attr_int(c->node, "transA", 0) != 0;
    const bool tb = stx__attr_int(c->node, "transB", 0) != 0;
    const bool dbl = c->in[0]->dtype == STX_DTYPE_DOUBLE;
    /* the float attributes, applied in X's type (as before for float32) */
    const float alpha = stx__attr_float(c->node, "alpha", 1.0f);
    const float beta = stx__attr_float(c->node, "beta", 1.0f);
    const stx_tensor *ct = gemm_c(c);
    void *y = c->out[0]->data;
    if (m == 0 || n == 0) return STX_OK;
    bool acc = false; /* Y already holds beta * C */
    if (ct && beta != 0.0f) {
        int64_t s0, s1;
        if ((st = gemm_c_strides(c, ct, m, n, &s0, &s1)) != STX_OK) return st;
        if (dbl) {
            const double *cv = ct->data;
            double *yd = y;
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) yd[i * n + j] = (double)beta * cv[i * s0 + j * s1];
        } else {
            const float *cv = ct->data;
            float *yf = y;
#pragma omp parallel for schedule(static) if (m * n >= 65536)
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) yf[i * n + j] = beta * cv[i * s0 + j * s1];
        }
        acc = true;
    }
    if (k == 0 || alpha == 0.0f) {
        if (!acc) memset(y, 0, (size_t)(m * n) * esize(dbl));
        return STX_OK;
    }
    const stx_tensor *a = c->in[0], *b = c->in[1];
    return gemm_call(c, dbl, ta, tb, m, n, k, alpha, a->data, a->dims[1], b->data, b->dims[1],
                     acc ? 1.0 : 0.0, y, n);
}

/* Block of columns a thread owns when summing dY over the rows for a row-vector C. */
#define DC_COLS 64

/* dC += beta dY summed over the dimensions along which C was broadcast (strides s0, s1). */
static void gemm_dc(bool dbl, const void *dyv, void *dcv, int64_t m, int64_t n, int64_t s0,
                    int64_t s1, double beta) {
#define DY(i, j)                                                                                   \
    (dbl ? ((const double *)dyv)[(i)*n + (j)] : (double)((const float *)dyv)[(i)*n + (j)])
#define DC_ADD(o, v)                                                                               \
    do {                                                                                           \
        if (dbl)                                                                                   \
            ((double *)dcv)[o] += (v);                                                             \
        else                                                                                       \
            ((float *)dcv)[o] += (float)(v);                                                       \
    } while (0)
    if (s0 != 0 && s1 != 0) { /* full (M, N): dC = beta dY */
#pragma omp parallel for schedule(static) if (m * n >= 65536)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) DC_ADD(i * s0 + j * s1, beta * DY(i, j));
    } else if (s1 != 0) { /* row: dC_j = beta sum_i dY_ij, column blocks in parallel */
        const int64_t nblk = (n + DC_COLS - 1) / DC_COLS;
#pragma omp parallel for schedule(static) if (nblk > 1 && m * n >= 65536)
        for (int64_t bk = 0; bk < nblk; bk++) {
            const int64_t j0 = bk * DC_COLS, nj = n - j0 < DC_COLS ? n - j0 : DC_COLS;
            double acc[DC_COLS] = {0};
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < nj; j++) acc[j] += DY(i, j0 + j);
            for (int64_t j = 0; j < nj; j++) DC_ADD((j0 + j) * s1, beta * acc[j]);
        }
    } else if (s0 != 0) { /* column: dC_i = beta sum_j dY_ij */
#pragma omp parallel for schedule(static) if (m * n >= 65536)
        for (int64_t i = 0; i < m; i++) {
            double acc = 0.0;
            for (int64_t j = 0; j < n; j++) acc += DY(i, j);
            DC_ADD(i * s0, beta * acc);
        }
    } else { /* scalar: dC = beta sum dY */
        double acc = 0.0;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) acc += DY(i, j);
        DC_ADD(0, beta * acc);
    }
#undef DY
#undef DC_ADD
}

/* VJP of Y = alpha A' B' + beta C, each gradient only when asked for:
 *   dA' = alpha dY B'^T,  so  dA = alpha dY B'^T (transA = 0)  or  alpha B' dY^T (transA = 1)
 *   dB' = alpha A'^T dY,  so  dB = alpha A'^T dY (transB = 0)  or  alpha dY^T A' (transB = 1)
 *   dC  = beta dY, summed over the broadcast dimensions of C.
 * With B' = transB ? B^T : B, "B'^T" is B itself (no transpose) when transB = 1, and so on. */
static stx_status gemm_backward(stx_op_ctx *c) {
    const stx_tensor *dyt = c->dout[0];
    if (!dyt) return STX_OK;
    int64_t m, n, k;
    stx_status st = gemm_dims(c, &m, &n, &k);
    if (st == STX_OK) st = need_operands(c);
    if (st != STX_OK) return st;
    const bool ta = stx__attr_int(c->node, "transA", 0) != 0;
    const bool tb = stx__attr_int(c->node, "transB", 0) != 0;
    const bool dbl = dyt->dtype == STX_DTYPE_DOUBLE;
    const double alpha = stx__attr_float(c->node, "alpha", 1.0f);
    const double beta = stx__attr_float(c->node, "beta", 1.0f);
    const stx_tensor *a = c->in[0], *b = c->in[1], *ct = gemm_c(c);
    stx_tensor *da = c->din[0], *db = c->din[1], *dc = c->n_in > 2 ? c->din[2] : NULL;
    if (m == 0 || n == 0) return STX_OK;
    const int64_t lda = a->dims[1], ldb = b->dims[1];
    if (da && k > 0 && alpha != 0.0) {
        if (!ta) /* (M x K) += dY (M x N) . op(B) (N x K) */
            st = gemm_call(c, dbl, false, !tb, m, k, n, alpha, dyt->data, n, b->data, ldb, 1.0,
                           da->data, k);
        else /* (K x M) += op(B) (K x N) . dY^T (N x M) */
            st = gemm_call(c, dbl, tb, true, k, m, n, alpha, b->data, ldb, dyt->data, n, 1.0,
                           da->data, m);
        if (st != STX_OK) return st;
    }
    if (db && k > 0 && alpha != 0.0) {
        if (!tb) /* (K x N) += op(A) (K x M) . dY (M x N) */
            st = gemm_call(c, dbl, !ta, false, k, n, m, alpha, a->data, lda, dyt->data, n, 1.0,
                           db->data, n);
        else /* (N x K) += dY^T (N x M) . op(A) (M x K) */
            st = gemm_call(c, dbl, true, ta, n, k, m, alpha, dyt->data, n, a->data, lda, 1.0,
                           db->data, k);
        if (st != STX_OK) return st;
    }
    if (dc && ct && beta != 0.0) {
        int64_t s0, s1;
        if ((st = gemm_c_strides(c, ct, m, n, &s0, &s1)) != STX_OK) return st;
        gemm_dc(dbl, dyt->data, dc->data, m, n, s0, s1, beta);
    }
    return STX_OK;
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

/* A's and B's element offsets for output batch bi (row-major over the output batch dims). */
static void mm_batch_offsets(const mm_geom *g, int64_t bi, int64_t *oa, int64_t *ob) {
    int64_t q = bi;
    *oa = *ob = 0;
    for (int d = g->nbd - 1; d >= 0; d--) {
        int64_t ix = q % g->bd[d];
        q /= g->bd[d];
        *oa += ix * g->sa[d];
        *ob += ix * g->sb[d];
    }
}

/* B shared by every batch and A dense over the whole output batch: the batch folds into M. */
static bool mm_folds(const mm_geom *g) {
    for (int i = 0; i < g->nbd; i++)
        if (g->sb[i] != 0 || (g->sa[i] == 0 && g->bd[i] != 1)) return false;
    return true;
}

static stx_status matmul_infer(stx_op_ctx *c) {
    stx_status st = need_float(c, c->in[0], NULL, "A");
    if (st == STX_OK) st = need_float(c, c->in[1], c->in[0], "B");
    if (st != STX_OK) return st;
    mm_geom g;
    if ((st = mm_geometry(c, &g)) != STX_OK) return st;
    stx__set_out(c, 0, c->in[0]->dtype, g.od, g.orank);
    return STX_OK;
}

static stx_status matmul_forward(stx_op_ctx *c) {
    mm_geom g;
    stx_status st = mm_geometry(c, &g);
    if (st != STX_OK) return st;
    const bool dbl = c->in[0]->dtype == STX_DTYPE_DOUBLE;
    const size_t es = esize(dbl);
    const char *a = c->in[0]->data, *b = c->in[1]->data;
    char *y = c->out[0]->data;
    const int64_t m = g.m, n = g.n, k = g.k, mn = m * n;
    if (g.nbatch == 0 || mn == 0) return STX_OK;
    if (k == 0) {
        memset(y, 0, (size_t)(g.nbatch * mn) * es);
        return STX_OK;
    }
    /* e.g. a Linear layer applied to [N, T, D]: one (nbatch * M) x K by K x N product */
    if (mm_folds(&g))
        return gemm_call(c, dbl, false, false, g.nbatch * m, n, k, 1.0, a, k, b, n, 0.0, y, n);

    const int64_t nb = g.nbatch;
    if (nb > 1 && m * n * k < SMALL_GEMM_MACS) {
        /* Many small products: one per thread; each gemm is single-threaded in the region. */
        int failed = 0;
#pragma omp parallel for schedule(static) reduction(| : failed)
        for (int64_t bi = 0; bi < nb; bi++) {
            int64_t oa, ob;
            mm_batch_offsets(&g, bi, &oa, &ob);
            if (gemm_raw(dbl, false, false, m, n, k, 1.0, a + (size_t)oa * es, k,
                         b + (size_t)ob * es, n, 0.0, y + (size_t)(bi * mn) * es,
                         n) != dnnl_success)
                failed |= 1;
        }
        if (failed)
            return stx__node_err(c, STX_E_INTERNAL, "dnnl_sgemm failed for M=%lld N=%lld K=%lld",
                                 (long long)m, (long long)n, (long long)k);
        return STX_OK;
    }
    for (int64_t bi = 0; bi < nb; bi++) {
        int64_t oa, ob;
        mm_batch_offsets(&g, bi, &oa, &ob);
        st = gemm_call(c, dbl, false, false, m, n, k, 1.0, a + (size_t)oa * es, k,
                       b + (size_t)ob * es, n, 0.0, y + (size_t)(bi * mn) * es, n);
        if (st != STX_OK) return st;
    }
    return STX_OK;
}

/* The gradient of one operand (side 0: A, 1: B) over the batch:
 *   dA_b += dY_b B_b^T  (M x K),   dB_b += A_b^T dY_b  (K x N),
 * where b runs over the output batches; a batch dimension along which the operand was broadcast
 * (stride 0, output extent > 1) maps several output batches onto one operand matrix, whose
 * gradient is then their sum. The operand's own batch positions are split among threads (each
 * owning its gradient matrices); the broadcast ones are summed in order inside. */
static stx_status mm_bwd_side(stx_op_ctx *c, const mm_geom *g, bool dbl, int side, const char *a,
                              const char *b, const char *dy, char *dt) {
    const size_t es = esize(dbl);
    const int64_t m = g->m, n = g->n, k = g->k;
    const int64_t *own = side ? g->sb : g->sa;
    int od[STX_MAX_RANK], rd[STX_MAX_RANK], nod = 0, nrd = 0;
    int64_t n_own = 1, n_red = 1;
    for (int d = 0; d < g->nbd; d++) {
        if (g->bd[d] == 1) continue;
        if (own[d] != 0) {
            od[nod++] = d;
            n_own *= g->bd[d];
        } else {
            rd[nrd++] = d;
            n_red *= g->bd[d];
        }
    }
    /* output batch strides (row-major) */
    int64_t ys[STX_MAX_RANK], s = 1;
    for (int d = g->nbd - 1; d >= 0; d--) {
        ys[d] = s;
        s *= g->bd[d];
    }
    const bool par = n_own > 1 && m * n * k < SMALL_GEMM_MACS;
    int failed = 0;
#pragma omp parallel for schedule(static) reduction(| : failed) if (par)
    for (int64_t io = 0; io < n_own; io++) {
        int64_t base_y = 0, base_a = 0, base_b = 0, q = io;
        for (int t = nod - 1; t >= 0; t--) {
            int d = od[t];
            int64_t ix = q % g->bd[d];
            q /= g->bd[d];
            base_y += ix * ys[d];
            base_a += ix * g->sa[d];
            base_b += ix * g->sb[d];
        }
        for (int64_t ir = 0; ir < n_red && !failed; ir++) {
            int64_t by = base_y, oa = base_a, ob = base_b, r = ir;
            for (int t = nrd - 1; t >= 0; t--) {
                int d = rd[t];
                int64_t ix = r % g->bd[d];
                r /= g->bd[d];
                by += ix * ys[d];
                oa += ix * g->sa[d];
                ob += ix * g->sb[d];
            }
            const char *dyb = dy + (size_t)(by * m * n) * es;
            int sc;
            if (side == 0) /* (M x K) += dY (M x N) . B^T (N x K) */
                sc = gemm_raw(dbl, false, true, m, k, n, 1.0, dyb, n, b + (size_t)ob * es, n, 1.0,
                              dt + (size_t)oa * es, k);
            else /* (K x N) += A^T (K x M) . dY (M x N) */
                sc = gemm_raw(dbl, true, false, k, n, m, 1.0, a + (size_t)oa * es, k, dyb, n, 1.0,
                              dt + (size_t)ob * es, n);
            if (sc != dnnl_success) failed |= 1;
        }
    }
    if (failed)
        return stx__node_err(c, STX_E_INTERNAL, "dnnl_sgemm failed for M=%lld N=%lld K=%lld",
                             (long long)m, (long long)n, (long long)k);
    return STX_OK;
}

/* VJP of Y = A B (batched, broadcast): dA = dY B^T, dB = A^T dY per batch, summed over the
 * batches an operand was broadcast across. The 1-D promotions need nothing special: a (K) A is a
 * (1, K) matrix and a (K) B a (K, 1) one with the same memory, and dY has the promoted layout. */
static stx_status matmul_backward(stx_op_ctx *c) {
    const stx_tensor *dyt = c->dout[0];
    stx_tensor *da = c->din[0], *db = c->din[1];
    if (!dyt || (!da && !db)) return STX_OK;
    mm_geom g;
    stx_status st = mm_geometry(c, &g);
    if (st == STX_OK) st = need_operands(c);
    if (st != STX_OK) return st;
    const bool dbl = dyt->dtype == STX_DTYPE_DOUBLE;
    const int64_t m = g.m, n = g.n, k = g.k;
    if (g.nbatch == 0 || m * n == 0 || k == 0) return STX_OK;
    const char *a = c->in[0]->data, *b = c->in[1]->data, *dy = dyt->data;
    if (mm_folds(&g)) { /* B shared, A dense: the batch folds into M, one product each */
        const int64_t rows = g.nbatch * m;
        if (da && (st = gemm_call(c, dbl, false, true, rows, k, n, 1.0, dy, n, b, n, 1.0, da->data,
                                  k)) != STX_OK)
            return st;
        if (db && (st = gemm_call(c, dbl, true, false, k, n, rows, 1.0, a, k, dy, n, 1.0, db->data,
                                  n)) != STX_OK)
            return st;
        return STX_OK;
    }
    if (da && (st = mm_bwd_side(c, &g, dbl, 0, a, b, dy, da->data)) != STX_OK) return st;
    if (db && (st = mm_bwd_side(c, &g, dbl, 1, a, b, dy, db->data)) != STX_OK) return st;
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

/* bwd_in: dA reads B and dB reads A (C's gradient needs neither). */
/* d A reads B, d B reads A, d C reads neither. */
static uint32_t mm_bwd_in_for(uint32_t din) {
    return ((din & 1u) ? 2u : 0u) | ((din & 2u) ? 1u : 0u);
}

static const stx_op_def op_gemm = {.name = "Gemm",
                                   .min_in = 2,
                                   .max_in = 3,
                                   .min_out = 1,
                                   .max_out = 1,
                                   .attrs = gemm_attrs,
                                   .infer = gemm_infer,
                                   .forward = gemm_forward,
                                   .macs = gemm_macs,
                                   .backward = gemm_backward,
                                   .bwd_in = 3u,
                                   .bwd_in_for = mm_bwd_in_for};
static const stx_op_def op_matmul = {.name = "MatMul",
                                     .min_in = 2,
                                     .max_in = 2,
                                     .min_out = 1,
                                     .max_out = 1,
                                     .attrs = matmul_attrs,
                                     .infer = matmul_infer,
                                     .forward = matmul_forward,
                                     .macs = matmul_macs,
                                     .backward = matmul_backward,
                                     .bwd_in = 3u,
                                     .bwd_in_for = mm_bwd_in_for};

const stx_op_def *const stx__ops_matmul[] = {&op_gemm, &op_matmul, NULL};
