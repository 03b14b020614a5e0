/* reduce.c: Reduce* operators and the global pools (ONNX opsets 1-17).
 *
 * Every reduction is computed the same way: the input shape is split into kept and reduced
 * dimensions (adjacent dimensions of the same kind are merged, size-1 dimensions dropped), each
 * output element owns the set of input elements that share its kept coordinates, and that set is
 * visited in row-major order as a sequence of strided "runs" along the innermost reduced
 * dimension. Floating-point accumulation happens in double, in a fixed order per output element,
 * so results are deterministic and independent of the thread count.
 */
#include "ops.h"

#include <math.h>
#include <string.h>

typedef enum {
    RK_SUM,
    RK_MEAN,
    RK_MAX,
    RK_MIN,
    RK_PROD,
    RK_L1,
    RK_L2,
    RK_SUMSQ,
    RK_LOGSUM,
    RK_LOGSUMEXP
} rkind;

/* Kinds whose result is only meaningful for floating-point data. */
static bool kind_float_only(rkind k) {
    return k == RK_L2 || k == RK_LOGSUM || k == RK_LOGSUMEXP;
}

/* A reduction plan: merged kept and reduced dimensions with their input strides (elements). */
typedef struct {
    int nk, nr;
    int64_t kdim[STX_MAX_RANK], kstr[STX_MAX_RANK];
    int64_t rdim[STX_MAX_RANK], rstr[STX_MAX_RANK];
    int64_t n_out, n_red;
} rplan;

static void plan_build(const int64_t *dims, int rank, const bool *mask, rplan *p) {
    int64_t stride[STX_MAX_RANK];
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        stride[i] = s;
        s *= dims[i];
    }
    memset(p, 0, sizeof *p);
    p->n_out = 1;
    p->n_red = 1;
    int last = -1; /* kind of the previously appended dimension: 0 kept, 1 reduced */
    for (int i = 0; i < rank; i++) {
        if (dims[i] == 1) continue; /* contributes nothing to either side */
        int kind = mask[i] ? 1 : 0;
        int64_t *d = kind ? p->rdim : p->kdim;
        int64_t *st = kind ? p->rstr : p->kstr;
        int *n = kind ? &p->nr : &p->nk;
        if (kind)
            p->n_red *= dims[i];
        else
            p->n_out *= dims[i];
        /* Dimensions i-1 and i (ignoring size-1 ones) of the same kind form one dimension when
         * the outer stride is exactly the inner extent (always true for dense inputs). */
        if (last == kind && *n > 0 && st[*n - 1] == dims[i] * stride[i]) {
            d[*n - 1] *= dims[i];
            st[*n - 1] = stride[i];
        } else {
            d[*n] = dims[i];
            st[*n] = stride[i];
            (*n)++;
        }
        last = kind;
    }
}

/* Input offset of the first element reduced into output element o (row-major over kept dims). */
static int64_t kept_offset(const rplan *p, int64_t o) {
    int64_t off = 0;
    for (int d = p->nk - 1; d >= 0; d--) {
        off += (o % p->kdim[d]) * p->kstr[d];
        o /= p->kdim[d];
    }
    return off;
}

/* ----- floating point -------------------------------------------------------------------------
 * Accumulators are doubles. For LogSumExp the maximum m is found first and the runs add
 * exp(x - m), so that large inputs do not overflow: log(sum exp x) = m + log(sum exp(x - m)).
 */
static double fp_init(rkind k) {
    switch (k) {
    case RK_MAX:
        return -INFINITY;
    case RK_MIN:
        return INFINITY;
    case RK_PROD:
        return 1.0;
    default:
        return 0.0;
    }
}

/* Combines two partial accumulators (used by the chunked path); NaN propagates through max/min
 * like numpy's. */
static double fp_combine(rkind k, double a, double b) {
    switch (k) {
    case RK_MAX:
        if (isnan(a) || isnan(b)) return a + b;
        return b > a ? b : a;
    case RK_MIN:
        if (isnan(a) || isnan(b)) return a + b;
        return b < a ? b : a;
    case RK_PROD:
        return a * b;
    default:
        return a + b;
    }
}

static double fp_finish(rkind k, double a, int64_t n, double m) {
    switch (k) {
    case RK_MEAN:
        return a / (double)n; /* empty: 0/0 = NaN, like numpy */
    case RK_L2:
        return sqrt(a);
    case RK_LOGSUM:
        return log(a);
    case RK_LOGSUMEXP:
        return m + log(a);
    default:
        return a;
    }
}

/* Visits reduced elements [eb, ee) (row-major order over the reduced dims) of the set starting
 * at element base of x, as strided runs along the innermost reduced dimension; RUN folds a run. */
#define DEF_RANGE(NAME, T, ACC, RUN)                                                               \
    static ACC NAME(const rplan *p, rkind k, const void *xv, int64_t base, int64_t eb, int64_t ee, \
                    ACC a, double m) {                                                             \
        const T *x = (const T *)xv + base;                                                         \
        if (eb >= ee) return a;                                                                    \
        int nr = p->nr;                                                                            \
        int64_t L = nr ? p->rdim[nr - 1] : 1, s = nr ? p->rstr[nr - 1] : 1;                        \
        int64_t idx[STX_MAX_RANK], off = 0, q = eb / L, i0 = eb % L;                               \
        for (int d = nr - 2; d >= 0; d--) {                                                        \
            idx[d] = q % p->rdim[d];                                                               \
            q /= p->rdim[d];                                                                       \
            off += idx[d] * p->rstr[d];                                                            \
        }                                                                                          \
        for (int64_t e = eb; e < ee;) {                                                            \
            int64_t n = L - i0;                                                                    \
            if (n > ee - e) n = ee - e;                                                            \
            a = RUN(k, a, x + off + i0 * s, n, s, m);                                              \
            e += n;                                                                                \
            i0 = 0;                                                                                \
            for (int d = nr - 2; d >= 0; d--) {                                                    \
                off += p->rstr[d];                                                                 \
                if (++idx[d] < p->rdim[d]) break;                                                  \
                off -= p->rdim[d] * p->rstr[d];                                                    \
                idx[d] = 0;                                                                        \
            }                                                                                      \
        }                                                                                          \
        return a;                                                                                  \
    }

/* One strided run of n elements folded into accumulator a. The kind switch sits outside the
 * loops so each loop is tight. */
#define DEF_FP_RUN(NAME, T)                                                                        \
    static double NAME(rkind k, double a, const T *x, int64_t n, int64_t s, double m) {            \
        switch (k) {                                                                               \
        case RK_SUM:                                                                               \
        case RK_MEAN:                                                                              \
        case RK_LOGSUM:                                                                            \
            for (int64_t i = 0; i < n; i++) a += (double)x[i * s];                                 \
            break;                                                                                 \
        case RK_L1:                                                                                \
            for (int64_t i = 0; i < n; i++) a += fabs((double)x[i * s]);                           \
            break;                                                                                 \
        case RK_L2:                                                                                \
        case RK_SUMSQ:                                                                             \
            for (int64_t i = 0; i < n; i++) {                                                      \
                double v = (double)x[i * s];                                                       \
                a += v * v;                                                                        \
            }                                                                                      \
            break;                                                                                 \
        case RK_PROD:                                                                              \
            for (int64_t i = 0; i < n; i++) a *= (double)x[i * s];                                 \
            break;                                                                                 \
        case RK_MAX: /* once a is NaN it stays NaN: neither test below can replace it */           \
            for (int64_t i = 0; i < n; i++) {                                                      \
                double v = (double)x[i * s];                                                       \
                if (v > a || v != v) a = v;                                                        \
            }                                                                                      \
            break;                                                                                 \
        case RK_MIN:                                                                               \
            for (int64_t i = 0; i < n; i++) {                                                      \
                double v = (double)x[i * s];                                                       \
                if (v < a || v != v) a = v;                                                        \
            }                                                                                      \
            break;                                                                                 \
        case RK_LOGSUMEXP:                                                                         \
            for (int64_t i = 0; i < n; i++) a += exp((double)x[i * s] - m);                        \
            break;                                                                                 \
        }                                                                                          \
        return a;                                                                                  \
    }

DEF_FP_RUN(run_f32, float)
DEF_FP_RUN(run_f64, double)
DEF_RANGE(range_f32, float, double, run_f32)
DEF_RANGE(range_f64, double, double, run_f64)

typedef double (*fp_range_fn)(const rplan *p, rkind k, const void *x, int64_t base, int64_t eb,
                              int64_t ee, double a, double m);

/* Work (elements touched) below which a reduction runs on one thread. */
#define RED_PAR_MIN 32768
/* Few outputs with long reductions: each reduction is cut into this many chunks. The number is
 * fixed (not the thread count) so that the summation order never depends on the thread count. */
#define RED_CHUNKS 64

static void store_fp(void *y, bool dbl, int64_t o, double v) {
    if (dbl)
        ((double *)y)[o] = v;
    else
        ((float *)y)[o] = (float)v;
}

static void reduce_fp(const rplan *p, rkind k, bool dbl, const void *x, void *y) {
    const fp_range_fn range = dbl ? range_f64 : range_f32;
    const int64_t n_out = p->n_out, n_red = p->n_red;
    if (n_out < 8 && n_red >= 65536) {
        for (int64_t o = 0; o < n_out; o++) {
            const int64_t base = kept_offset(p, o);
            double part[RED_CHUNKS], m = 0.0;
            if (k == RK_LOGSUMEXP) {
#pragma omp parallel for schedule(static)
                for (int ch = 0; ch < RED_CHUNKS; ch++) {
                    int64_t eb = n_red * ch / RED_CHUNKS, ee = n_red * (ch + 1) / RED_CHUNKS;
                    part[ch] = range(p, RK_MAX, x, base, eb, ee, -INFINITY, 0.0);
                }
                m = -INFINITY;
                for (int ch = 0; ch < RED_CHUNKS; ch++) m = fp_combine(RK_MAX, m, part[ch]);
                if (!isfinite(m)) {
                    store_fp(y, dbl, o, m);
                    continue;
                }
            }
#pragma omp parallel for schedule(static)
            for (int ch = 0; ch < RED_CHUNKS; ch++) {
                int64_t eb = n_red * ch / RED_CHUNKS, ee = n_red * (ch + 1) / RED_CHUNKS;
                part[ch] = range(p, k, x, base, eb, ee, fp_init(k), m);
            }
            double a = fp_init(k);
            for (int ch = 0; ch < RED_CHUNKS; ch++) a = fp_combine(k, a, part[ch]);
            store_fp(y, dbl, o, fp_finish(k, a, n_red, m));
        }
        return;
    }
#pragma omp parallel for schedule(static) if (n_out > 1 && n_out * n_red >= RED_PAR_MIN)
    for (int64_t o = 0; o < n_out; o++) {
        const int64_t base = kept_offset(p, o);
        double m = 0.0;
        if (k == RK_LOGSUMEXP) {
            m = range(p, RK_MAX, x, base, 0, n_red, -INFINITY, 0.0);
            if (!isfinite(m)) { /* all -inf or empty: -inf; any +inf: +inf; NaN: NaN */
                store_fp(y, dbl, o, m);
                continue;
            }
        }
        double a = range(p, k, x, base, 0, n_red, fp_init(k), m);
        store_fp(y, dbl, o, fp_finish(k, a, n_red, m));
    }
}

/* ----- integers -------------------------------------------------------------------------------
 * int64 accumulators; sums and products wrap (computed unsigned, so no undefined behaviour).
 * Mean is the truncating integer quotient, as numpy's mean cast back to the integer type. */
static int64_t int_init(rkind k) {
    switch (k) {
    case RK_MAX:
        return INT64_MIN;
    case RK_MIN:
        return INT64_MAX;
    case RK_PROD:
        return 1;
    default:
        return 0;
    }
}

#define DEF_INT_RUN(NAME, T)                                                                       \
    static int64_t NAME(rkind k, int64_t a, const T *x, int64_t n, int64_t s, double m) {          \
        (void)m;                                                                                   \
        uint64_t u = (uint64_t)a;                                                                  \
        switch (k) {                                                                               \
        case RK_SUM:                                                                               \
        case RK_MEAN:                                                                              \
            for (int64_t i = 0; i < n; i++) u += (uint64_t)(int64_t)x[i * s];                      \
            return (int64_t)u;                                                                     \
        case RK_L1:                                                                                \
            for (int64_t i = 0; i < n; i++) {                                                      \
                int64_t v = (int64_t)x[i * s];                                                     \
                u += v < 0 ? 0 - (uint64_t)v : (uint64_t)v;                                        \
            }                                                                                      \
            return (int64_t)u;                                                                     \
        case RK_SUMSQ:                                                                             \
            for (int64_t i = 0; i < n; i++) {                                                      \
                uint64_t v = (uint64_t)(int64_t)x[i * s];                                          \
                u += v * v;                                                                        \
            }                                                                                      \
            return (int64_t)u;                                                                     \
        case RK_PROD:                                                                              \
            for (int64_t i = 0; i < n; i++) u *= (uint64_t)(int64_t)x[i * s];                      \
            return (int64_t)u;                                                                     \
        case RK_MAX:                                                                               \
            for (int64_t i = 0; i < n; i++)                                                        \
                if ((int64_t)x[i * s] > a) a = (int64_t)x[i * s];                                  \
            return a;                                                                              \
        case RK_MIN:                                                                               \
            for (int64_t i = 0; i < n; i++)                                                        \
                if ((int64_t)x[i * s] < a) a = (int64_t)x[i * s];                                  \
            return a;                                                                              \
        default:                                                                                   \
            return a; /* float-only kinds are refused in infer */                                  \
        }                                                                                          \
    }

DEF_INT_RUN(run_i64, int64_t)
DEF_INT_RUN(run_i32, int32_t)
DEF_RANGE(range_i64, int64_t, int64_t, run_i64)
DEF_RANGE(range_i32, int32_t, int64_t, run_i32)

static void reduce_int(const rplan *p, rkind k, bool i64, const void *x, void *y) {
    const int64_t n_out = p->n_out, n_red = p->n_red;
#pragma omp parallel for schedule(static) if (n_out > 1 && n_out * n_red >= RED_PAR_MIN)
    for (int64_t o = 0; o < n_out; o++) {
        const int64_t base = kept_offset(p, o);
        int64_t a = i64 ? range_i64(p, k, x, base, 0, n_red, int_init(k), 0.0)
                        : range_i32(p, k, x, base, 0, n_red, int_init(k), 0.0);
        if (k == RK_MEAN) a = n_red > 0 ? a / n_red : 0;
        if (i64)
            ((int64_t *)y)[o] = a;
        else
            ((int32_t *)y)[o] = (int32_t)a;
    }
}

static void run_reduce(const rplan *p, rkind k, const stx_tensor *x, stx_tensor *y) {
    if (p->n_out == 0) return;
    switch (x->dtype) {
    case STX_DTYPE_FLOAT:
        reduce_fp(p, k, false, x->data, y->data);
        break;
    case STX_DTYPE_DOUBLE:
        reduce_fp(p, k, true, x->data, y->data);
        break;
    case STX_DTYPE_INT64:
        reduce_int(p, k, true, x->data, y->data);
        break;
    case STX_DTYPE_INT32:
        reduce_int(p, k, false, x->data, y->data);
        break;
    default:
        break; /* refused in infer */
    }
}

/* ----- backward ------------------------------------------------------------------------------
 * Every input element feeds exactly one output element, so the VJP is computed per output element
 * (or, for a few long reductions, per fixed chunk of each reduction): every thread owns disjoint
 * gradient elements and the result does not depend on the thread count. With y = f(x_1..x_n) one
 * output element and g its gradient:
 *   Sum:        dx_i += g
 *   Mean:       dx_i += g / n
 *   LogSum:     y = log s, s = sum x:   dx_i += g / s = g exp(-y)
 *   SumSquare:  dx_i += 2 g x_i
 *   L1:         dx_i += g sign(x_i)     (sign(0) = 0, PyTorch's abs'(0))
 *   L2:         dx_i += g x_i / y       (0 when y = 0, as PyTorch's norm backward)
 *   LogSumExp:  dx_i += g exp(x_i - y)  (the softmax of the set)
 *   Prod:       dx_i += g prod_{j != i} x_j: with p the product of the non-zero x_j and z the
 *               number of zeros, g p / x_i when z = 0; when z = 1 only the zero gets g p;
 *               when z >= 2 nothing.
 *   Max/Min:    only the elements equal to y get a gradient. Ties: ReduceMax/ReduceMin share g
 *               evenly among them (PyTorch's amax/amin); GlobalMaxPool gives all of g to the first
 *               maximal element in row-major order (like MaxPool, the element its Indices would
 *               report). A NaN result gives no gradient.
 * A first pass per output element gathers what the rule needs (the number of extreme elements,
 * or p and z), a second pass adds the contributions.
 */
typedef struct {
    double cnt;  /* Max/Min: number of elements equal to y */
    double prod; /* Prod: product of the non-zero elements */
    int64_t zeros;
} bstat;

typedef struct {
    double g;     /* the per-element coefficient (see bwd_param) */
    double y;     /* the output value (Max/Min/LogSumExp) */
    int64_t left; /* Max/Min first-element mode: how many more elements take g (0 or 1);
                     Prod: number of zeros (0, 1, or 2 for "two or more") */
    bool first;
} bparam;

/* A strided run of n elements of the first pass: q is the bstat, y the output value. */
#define DEF_STAT_RUN(NAME, T)                                                                      \
    static void NAME(rkind k, void *qv, const T *x, T *dx, int64_t n, int64_t s, double y) {       \
        (void)dx;                                                                                  \
        bstat *q = qv;                                                                             \
        if (k == RK_PROD) {                                                                        \
            for (int64_t i = 0; i < n; i++) {                                                      \
                double v = (double)x[i * s];                                                       \
                if (v == 0.0)                                                                      \
                    q->zeros++;                                                                    \
                else                                                                               \
                    q->prod *= v;                                                                  \
            }                                                                                      \
        } else { /* Max/Min */                                                                     \
            for (int64_t i = 0; i < n; i++) q->cnt += (double)x[i * s] == y;                       \
        }                                                                                          \
    }

/* A strided run of n elements of the second pass: dx += the contributions of x. */
#define DEF_BWD_RUN(NAME, T)                                                                       \
    static void NAME(rkind k, void *qv, const T *x, T *dx, int64_t n, int64_t s, double unused) {  \
        (void)unused;                                                                              \
        bparam *q = qv;                                                                            \
        const T gt = (T)q->g;                                                                      \
        switch (k) {                                                                               \
        case RK_SUM:                                                                               \
        case RK_MEAN:                                                                              \
        case RK_LOGSUM:                                                                            \
            for (int64_t i = 0; i < n; i++) dx[i * s] += gt;                                       \
            break;                                                                                 \
        case RK_SUMSQ:                                                                             \
        case RK_L2:                                                                                \
            for (int64_t i = 0; i < n; i++) dx[i * s] += gt * x[i * s];                            \
            break;                                                                                 \
        case RK_L1:                                                                                \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T v = x[i * s];                                                                    \
                dx[i * s] += v > 0 ? gt : v < 0 ? -gt : (T)0;                                      \
            }                                                                                      \
            break;                                                                                 \
        case RK_LOGSUMEXP:                                                                         \
            for (int64_t i = 0; i < n; i++) dx[i * s] += (T)(q->g * exp((double)x[i * s] - q->y)); \
            break;                                                                                 \
        case RK_MAX:                                                                               \
        case RK_MIN:                                                                               \
            for (int64_t i = 0; i < n; i++) {                                                      \
                if ((double)x[i * s] != q->y) continue;                                            \
                if (q->first) {                                                                    \
                    if (q->left == 0) break;                                                       \
                    q->left--;                                                                     \
                }                                                                                  \
                dx[i * s] += gt;                                                                   \
            }                                                                                      \
            break;                                                                                 \
        case RK_PROD:                                                                              \
            if (q->left == 0) {                                                                    \
                for (int64_t i = 0; i < n; i++) dx[i * s] += (T)(q->g / (double)x[i * s]);         \
            } else if (q->left == 1) {                                                             \
                for (int64_t i = 0; i < n; i++)                                                    \
                    if (x[i * s] == 0) dx[i * s] += gt;                                            \
            }                                                                                      \
            break;                                                                                 \
        }                                                                                          \
    }

/* Visits reduced elements [eb, ee) of the set starting at element base, as strided runs along
 * the innermost reduced dimension, for x and its gradient dx (same layout). */
#define DEF_BWD_RANGE(NAME, T, RUN)                                                                \
    static void NAME(const rplan *p, rkind k, void *q, const void *xv, void *dxv, int64_t base,    \
                     int64_t eb, int64_t ee, double y) {                                           \
        const T *x = (const T *)xv + base;                                                         \
        T *dx = (T *)dxv + base;                                                                   \
        if (eb >= ee) return;                                                                      \
        int nr = p->nr;                                                                            \
        int64_t L = nr ? p->rdim[nr - 1] : 1, s = nr ? p->rstr[nr - 1] : 1;                        \
        int64_t idx[STX_MAX_RANK], off = 0, qq = eb / L, i0 = eb % L;                              \
        for (int d = nr - 2; d >= 0; d--) {                                                        \
            idx[d] = qq % p->rdim[d];                                                              \
            qq /= p->rdim[d];                                                                      \
            off += idx[d] * p->rstr[d];                                                            \
        }                                                                                          \
        for (int64_t e = eb; e < ee;) {                                                            \
            int64_t n = L - i0;                                                                    \
            if (n > ee - e) n = ee - e;                                                            \
            RUN(k, q, x + off + i0 * s, dx + off + i0 * s, n, s, y);                               \
            e += n;                                                                                \
            i0 = 0;                                                                                \
            for (int d = nr - 2; d >= 0; d--) {                                                    \
                off += p->rstr[d];                                                                 \
                if (++idx[d] < p->rdim[d]) break;                                                  \
                off -= p->rdim[d] * p->rstr[d];                                                    \
                idx[d] = 0;                                                                        \
            }                                                                                      \
        }                                                                                          \
    }

DEF_STAT_RUN(stat_run_f32, float)
DEF_STAT_RUN(stat_run_f64, double)
DEF_BWD_RUN(bwd_run_f32, float)
DEF_BWD_RUN(bwd_run_f64, double)
DEF_BWD_RANGE(stat_range_f32, float, stat_run_f32)
DEF_BWD_RANGE(stat_range_f64, double, stat_run_f64)
DEF_BWD_RANGE(bwd_range_f32, float, bwd_run_f32)
DEF_BWD_RANGE(bwd_range_f64, double, bwd_run_f64)

typedef void (*bwd_range_fn)(const rplan *p, rkind k, void *q, const void *x, void *dx,
                             int64_t base, int64_t eb, int64_t ee, double y);

static double load_fp(const void *t, bool dbl, int64_t i) {
    return dbl ? ((const double *)t)[i] : (double)((const float *)t)[i];
}

static bool needs_stats(rkind k) {
    return k == RK_MAX || k == RK_MIN || k == RK_PROD;
}

static void stat_init(bstat *s) {
    s->cnt = 0.0;
    s->prod = 1.0;
    s->zeros = 0;
}

/* The second pass's coefficient for output element gradient g, value y, statistics st. */
static void bwd_param(rkind k, bool first, double g, double y, int64_t n_red, const bstat *st,
                      bparam *q) {
    q->g = g;
    q->y = y;
    q->left = 0;
    q->first = first;
    switch (k) {
    case RK_MEAN:
        q->g = g / (double)n_red;
        break;
    case RK_LOGSUM:
        q->g = g * exp(-y);
        break;
    case RK_SUMSQ:
        q->g = 2.0 * g;
        break;
    case RK_L2:
        q->g = y != 0.0 ? g / y : 0.0;
        break;
    case RK_MAX:
    case RK_MIN:
        if (first)
            q->left = 1;
        else
            q->g = st->cnt > 0 ? g / st->cnt : 0.0;
        break;
    case RK_PROD:
        q->g = g * st->prod;
        q->left = st->zeros > 2 ? 2 : st->zeros;
        break;
    default:
        break;
    }
}

/* dx += VJP of the reduction planned by p, for float32 or float64 x/y/dy/dx. */
static void reduce_bwd(const rplan *p, rkind k, bool first, bool dbl, const void *x, const void *y,
                       const void *dy, void *dx) {
    const bwd_range_fn stat = dbl ? stat_range_f64 : stat_range_f32;
    const bwd_range_fn apply = dbl ? bwd_range_f64 : bwd_range_f32;
    const bool uses_y =
        k == RK_MAX || k == RK_MIN || k == RK_L2 || k == RK_LOGSUM || k == RK_LOGSUMEXP;
    const int64_t n_out = p->n_out, n_red = p->n_red;
    if (n_out == 0 || n_red == 0) return;
    if (k == RK_SUM || k == RK_MEAN || k == RK_LOGSUM) x = dx; /* x is not read (nor kept) */
    if (n_out < 8 && n_red >= 65536) {
        for (int64_t o = 0; o < n_out; o++) {
            const int64_t base = kept_offset(p, o);
            const double g = load_fp(dy, dbl, o), yo = uses_y ? load_fp(y, dbl, o) : 0.0;
            bstat part[RED_CHUNKS], tot;
            stat_init(&tot);
            if (needs_stats(k)) {
#pragma omp parallel for schedule(static)
                for (int ch = 0; ch < RED_CHUNKS; ch++) {
                    int64_t eb = n_red * ch / RED_CHUNKS, ee = n_red * (ch + 1) / RED_CHUNKS;
                    stat_init(&part[ch]);
                    stat(p, k, &part[ch], x, dx, base, eb, ee, yo);
                }
                for (int ch = 0; ch < RED_CHUNKS; ch++) { /* fixed order */
                    tot.cnt += part[ch].cnt;
                    tot.prod *= part[ch].prod;
                    tot.zeros += part[ch].zeros;
                }
            }
            bparam q0;
            bwd_param(k, first, g, yo, n_red, &tot, &q0);
#pragma omp parallel for schedule(static)
            for (int ch = 0; ch < RED_CHUNKS; ch++) {
                int64_t eb = n_red * ch / RED_CHUNKS, ee = n_red * (ch + 1) / RED_CHUNKS;
                bparam q = q0;
                if (first) { /* the first extreme element: in the first chunk that has one */
                    for (int c2 = 0; c2 < ch && q.left; c2++)
                        if (part[c2].cnt > 0) q.left = 0;
                    if (part[ch].cnt == 0) q.left = 0;
                }
                apply(p, k, &q, x, dx, base, eb, ee, yo);
            }
        }
        return;
    }
#pragma omp parallel for schedule(static) if (n_out > 1 && n_out * n_red >= RED_PAR_MIN)
    for (int64_t o = 0; o < n_out; o++) {
        const int64_t base = kept_offset(p, o);
        const double g = load_fp(dy, dbl, o), yo = uses_y ? load_fp(y, dbl, o) : 0.0;
        bstat st;
        stat_init(&st);
        if (needs_stats(k) && !first) stat(p, k, &st, x, dx, base, 0, n_red, yo);
        bparam q;
        bwd_param(k, first, g, yo, n_red, &st, &q);
        apply(p, k, &q, x, dx, base, 0, n_red, yo);
    }
}

/* ----- Reduce* operators ---------------------------------------------------------------------- */

#define MAX_AXES (2 * STX_MAX_RANK)

/* Reduced-axes mask of the data input. Axes come from the "axes" attribute or (ReduceSum since
 * opset 13, every Reduce* since opset 18) from the optional second input; both at once is an
 * error (as in ONNX shape inference). Empty axes reduce everything unless noop_with_empty_axes,
 * in which case nothing is reduced (the op is then an element-wise identity for ReduceSum). */
static stx_status reduce_mask(stx_op_ctx *c, bool *mask) {
    const stx_tensor *x = c->in[0];
    int64_t axes[MAX_AXES];
    int na = 0;
    if (c->n_in > 1 && c->in[1]) {
        const stx_tensor *t = c->in[1];
        if (stx__attr(c->node, "axes"))
            return stx__node_err(c, STX_E_INVALID,
                                 "axes given both as an attribute and as an input");
        if (t->dtype != STX_DTYPE_INT64 && t->dtype != STX_DTYPE_INT32)
            return stx__node_err(c, STX_E_INVALID, "axes input must be int64, got %s",
                                 stx_dtype_name(t->dtype));
        if (t->rank > 1)
            return stx__node_err(c, STX_E_SHAPE, "axes input must be 1-D, got rank %d", t->rank);
        int64_t cnt = stx__numel(t->dims, t->rank);
        if (cnt > 0) {
            if (!t->data)
                return stx__node_err(c, STX_E_UNSUPPORTED,
                                     "the axes input must be a constant (initializer or "
                                     "Constant node) so that output shapes can be planned");
            if (!stx__const_ints(t, axes, MAX_AXES, &na))
                return stx__node_err(c, STX_E_INVALID,
                                     "axes input has %lld entries for a rank-%d input",
                                     (long long)cnt, x->rank);
        }
    } else {
        const int64_t *v = NULL;
        int n = stx__attr_ints(c->node, "axes", &v);
        if (n > MAX_AXES)
            return stx__node_err(c, STX_E_INVALID, "%d axes for a rank-%d input", n, x->rank);
        for (int i = 0; i < n; i++) axes[na++] = v[i];
    }
    if (na == 0) {
        bool noop = stx__attr_int(c->node, "noop_with_empty_axes", 0) != 0;
        for (int i = 0; i < x->rank; i++) mask[i] = !noop;
        return STX_OK;
    }
    for (int i = 0; i < x->rank; i++) mask[i] = false;
    for (int i = 0; i < na; i++) {
        int a;
        if (!stx__norm_axis(axes[i], x->rank, &a))
            return stx__node_err(c, STX_E_INVALID, "axis %lld out of range for a rank-%d input",
                                 (long long)axes[i], x->rank);
        mask[a] = true;
    }
    return STX_OK;
}

static void reduced_shape(const stx_tensor *x, const bool *mask, bool keep, int64_t *od,
                          int *orank) {
    int r = 0;
    for (int i = 0; i < x->rank; i++) {
        if (!mask[i])
            od[r++] = x->dims[i];
        else if (keep)
            od[r++] = 1;
    }
    *orank = r;
}

static bool same_shape(const stx_tensor *t, const int64_t *d, int r) {
    if (t->rank != r) return false;
    for (int i = 0; i < r; i++)
        if (t->dims[i] != d[i]) return false;
    return true;
}

static stx_status reduce_infer_k(stx_op_ctx *c, rkind k) {
    const stx_tensor *x = c->in[0];
    stx_dtype dt = x->dtype;
    bool ok = dt == STX_DTYPE_FLOAT || dt == STX_DTYPE_DOUBLE ||
              (!kind_float_only(k) && (dt == STX_DTYPE_INT64 || dt == STX_DTYPE_INT32));
    if (!ok)
        return stx__node_err(c, STX_E_UNSUPPORTED, "unsupported input dtype %s",
                             stx_dtype_name(dt));
    bool mask[STX_MAX_RANK];
    stx_status st = reduce_mask(c, mask);
    if (st != STX_OK) return st;
    int64_t od[STX_MAX_RANK];
    int orank;
    reduced_shape(x, mask, stx__attr_int(c->node, "keepdims", 1) != 0, od, &orank);
    stx__set_out(c, 0, dt, od, orank);
    return STX_OK;
}

static stx_status reduce_forward_k(stx_op_ctx *c, rkind k) {
    const stx_tensor *x = c->in[0];
    stx_tensor *y = c->out[0];
    bool mask[STX_MAX_RANK];
    stx_status st = reduce_mask(c, mask);
    if (st != STX_OK) return st;
    /* The axes input is constant by construction; this guards against a caller changing it. */
    int64_t od[STX_MAX_RANK];
    int orank;
    reduced_shape(x, mask, stx__attr_int(c->node, "keepdims", 1) != 0, od, &orank);
    if (!same_shape(y, od, orank)) {
        char a[128], b[128];
        return stx__node_err(c, STX_E_SHAPE, "output shape %s differs from the planned %s",
                             stx__shape_str(od, orank, a, sizeof a),
                             stx__shape_str(y->dims, y->rank, b, sizeof b));
    }
    rplan p;
    plan_build(x->dims, x->rank, mask, &p);
    run_reduce(&p, k, x, y);
    return STX_OK;
}

/* Backward of a Reduce* (or global pool, first = GlobalMaxPool's tie rule) with mask. */
static stx_status reduce_backward_mask(stx_op_ctx *c, rkind k, bool first, const bool *mask) {
    const stx_tensor *x = c->in[0], *y = c->out[0], *dy = c->dout[0];
    stx_tensor *dx = c->din[0];
    if (!dx || !dy) return STX_OK;
    if (x->dtype != STX_DTYPE_FLOAT && x->dtype != STX_DTYPE_DOUBLE)
        return stx__node_err(c, STX_E_UNSUPPORTED, "no gradient for %s input",
                             stx_dtype_name(x->dtype));
    const bool uses_x = k != RK_SUM && k != RK_MEAN && k != RK_LOGSUM;
    const bool uses_y =
        k == RK_MAX || k == RK_MIN || k == RK_L2 || k == RK_LOGSUM || k == RK_LOGSUMEXP;
    if ((uses_x && !x->data) || (uses_y && !y->data))
        return stx__node_err(c, STX_E_INTERNAL, "the forward %s is not available for backward",
                             uses_x && !x->data ? "input" : "output");
    rplan p;
    plan_build(x->dims, x->rank, mask, &p);
    reduce_bwd(&p, k, first, x->dtype == STX_DTYPE_DOUBLE, x->data, y->data, dy->data, dx->data);
    return STX_OK;
}

static stx_status reduce_backward_k(stx_op_ctx *c, rkind k) {
    bool mask[STX_MAX_RANK];
    stx_status st = reduce_mask(c, mask);
    if (st != STX_OK) return st;
    return reduce_backward_mask(c, k, false, mask);
}

#define REDUCE_OP(VAR, ONNX, KIND, BIN, BOUT)                                                      \
    static stx_status VAR##_infer(stx_op_ctx *c) {                                                 \
        return reduce_infer_k(c, KIND);                                                            \
    }                                                                                              \
    static stx_status VAR##_forward(stx_op_ctx *c) {                                               \
        return reduce_forward_k(c, KIND);                                                          \
    }                                                                                              \
    static stx_status VAR##_backward(stx_op_ctx *c) {                                              \
        return reduce_backward_k(c, KIND);                                                         \
    }                                                                                              \
    static const stx_op_def VAR = {.name = ONNX,                                                   \
                                   .min_in = 1,                                                    \
                                   .max_in = 2,                                                    \
                                   .min_out = 1,                                                   \
                                   .max_out = 1,                                                   \
                                   .attrs = reduce_attrs,                                          \
                                   .infer = VAR##_infer,                                           \
                                   .forward = VAR##_forward,                                       \
                                   .backward = VAR##_backward,                                     \
                                   .bwd_in = BIN,                                                  \
                                   .bwd_out = BOUT};

static const char *const reduce_attrs[] = {"axes", "keepdims", "noop_with_empty_axes", NULL};

/* bwd_in/bwd_out: which of x (input 0) and y (output 0) the VJP reads (see reduce_bwd); the axes
 * input is a plan-time constant and always holds data. */
REDUCE_OP(op_reduce_sum, "ReduceSum", RK_SUM, 0u, 0u)
REDUCE_OP(op_reduce_mean, "ReduceMean", RK_MEAN, 0u, 0u)
REDUCE_OP(op_reduce_max, "ReduceMax", RK_MAX, 1u, 1u)
REDUCE_OP(op_reduce_min, "ReduceMin", RK_MIN, 1u, 1u)
REDUCE_OP(op_reduce_prod, "ReduceProd", RK_PROD, 1u, 0u)
REDUCE_OP(op_reduce_l1, "ReduceL1", RK_L1, 1u, 0u)
REDUCE_OP(op_reduce_l2, "ReduceL2", RK_L2, 1u, 1u)
REDUCE_OP(op_reduce_sumsq, "ReduceSumSquare", RK_SUMSQ, 1u, 0u)
REDUCE_OP(op_reduce_logsum, "ReduceLogSum", RK_LOGSUM, 0u, 1u)
REDUCE_OP(op_reduce_logsumexp, "ReduceLogSumExp", RK_LOGSUMEXP, 1u, 1u)

/* ----- GlobalAveragePool / GlobalMaxPool ------------------------------------------------------
 * X is (N, C, D1, ..., Dn), n >= 1; Y is (N, C, 1, ..., 1): the mean/max over all spatial
 * positions of each (n, c) plane. */
static stx_status global_pool_infer(stx_op_ctx *c) {
    const stx_tensor *x = c->in[0];
    if (x->dtype != STX_DTYPE_FLOAT && x->dtype != STX_DTYPE_DOUBLE)
        return stx__node_err(c, STX_E_UNSUPPORTED, "unsupported input dtype %s",
                             stx_dtype_name(x->dtype));
    if (x->rank < 3) {
        char s[128];
        return stx__node_err(c, STX_E_SHAPE, "input must be (N, C, D1, ...) of rank >= 3, got %s",
                             stx__shape_str(x->dims, x->rank, s, sizeof s));
    }
    int64_t od[STX_MAX_RANK];
    for (int i = 0; i < x->rank; i++) od[i] = i < 2 ? x->dims[i] : 1;
    stx__set_out(c, 0, x->dtype, od, x->rank);
    return STX_OK;
}

static stx_status global_pool_forward_k(stx_op_ctx *c, rkind k) {
    const stx_tensor *x = c->in[0];
    bool mask[STX_MAX_RANK];
    for (int i = 0; i < x->rank; i++) mask[i] = i >= 2;
    rplan p;
    plan_build(x->dims, x->rank, mask, &p);
    run_reduce(&p, k, x, c->out[0]);
    return STX_OK;
}

static stx_status gap_forward(stx_op_ctx *c) {
    return global_pool_forward_k(c, RK_MEAN);
}
static stx_status gmp_forward(stx_op_ctx *c) {
    return global_pool_forward_k(c, RK_MAX);
}

/* dx = dy / (D1 ... Dn) everywhere (GlobalAveragePool); dy to the first maximal element of each
 * plane (GlobalMaxPool). */
static stx_status global_pool_backward_k(stx_op_ctx *c, rkind k) {
    bool mask[STX_MAX_RANK];
    for (int i = 0; i < c->in[0]->rank; i++) mask[i] = i >= 2;
    return reduce_backward_mask(c, k, k == RK_MAX, mask);
}
static stx_status gap_backward(stx_op_ctx *c) {
    return global_pool_backward_k(c, RK_MEAN);
}
static stx_status gmp_backward(stx_op_ctx *c) {
    return global_pool_backward_k(c, RK_MAX);
}

static const char *const no_attrs[] = {NULL};

static const stx_op_def op_global_avg = {.name = "GlobalAveragePool",
                                         .min_in = 1,
                                         .max_in = 1,
                                         .min_out = 1,
                                         .max_out = 1,
                                         .attrs = no_attrs,
                                         .infer = global_pool_infer,
                                         .forward = gap_forward,
                                         .backward = gap_backward};
static const stx_op_def op_global_max = {.name = "GlobalMaxPool",
                                         .min_in = 1,
                                         .max_in = 1,
                                         .min_out = 1,
                                         .max_out = 1,
                                         .attrs = no_attrs,
                                         .infer = global_pool_infer,
                                         .forward = gmp_forward,
                                         .backward = gmp_backward,
                                         .bwd_in = 1u,
                                         .bwd_out = 1u};

const stx_op_def *const stx__ops_reduce[] = {&op_reduce_sum,
                                             &op_reduce_mean,
                                             &op_reduce_max,
                                             &op_reduce_min,
                                             &op_reduce_prod,
                                             &op_reduce_l1,
                                             &op_reduce_l2,
                                             &op_reduce_sumsq,
                                             &op_reduce_logsum,
                                             &op_reduce_logsumexp,
                                             &op_global_avg,
                                             &op_global_max,
                                             NULL};
