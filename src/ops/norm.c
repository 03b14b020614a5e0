/* norm.c: normalisation operators: BatchNormalization (inference), LayerNormalization,
 * InstanceNormalization, Softmax and LogSoftmax.
 *
 * Statistics (means, variances, softmax denominators) are accumulated in double, in a fixed
 * order per group, so the results are deterministic and independent of the thread count.
 */
#include "ops.h"

#include <math.h>
#include <string.h>

/* Work (elements) below which a kernel stays on one thread. */
#define NORM_PAR_MIN 32768

/* "#pragma omp parallel for" inside the type-generic kernel macros below. */
#define OMP_FOR_IF(cond) _Pragma(OMP_STR(omp parallel for schedule(static) if (cond)))
#define OMP_STR(x) #x

static bool is_fp(stx_dtype t) {
    return t == STX_DTYPE_FLOAT || t == STX_DTYPE_DOUBLE;
}

static stx_status need_fp(stx_op_ctx *c, const stx_tensor *t, const char *what) {
    if (is_fp(t->dtype)) return STX_OK;
    return stx__node_err(c, STX_E_UNSUPPORTED, "%s must be float32 or float64, got %s", what,
                         stx_dtype_name(t->dtype));
}

/* A parameter that must have X's element type (type T of the ONNX spec). */
static stx_status need_same(stx_op_ctx *c, const stx_tensor *t, const stx_tensor *x,
                            const char *what) {
    if (t->dtype == x->dtype) return STX_OK;
    return stx__node_err(c, STX_E_UNSUPPORTED, "%s must have the input's type %s, got %s", what,
                         stx_dtype_name(x->dtype), stx_dtype_name(t->dtype));
}

/* A forward value the backward reads (declared in bwd_in/bwd_out) must hold data. */
static stx_status need_data(stx_op_ctx *c, const stx_tensor *t, const char *what) {
    if (t && t->data) return STX_OK;
    return stx__node_err(c, STX_E_INTERNAL, "the forward %s is not available for backward", what);
}

/* Element i of a float32 or float64 tensor, as a double. */
static double ldd(const stx_tensor *t, int64_t i) {
    return t->dtype == STX_DTYPE_DOUBLE ? ((const double *)t->data)[i]
                                        : (double)((const float *)t->data)[i];
}

/* A per-channel parameter: 1-D with C elements. */
static stx_status need_channel_vec(stx_op_ctx *c, const stx_tensor *t, int64_t ch,
                                   const char *what) {
    stx_status st = need_fp(c, t, what);
    if (st != STX_OK) return st;
    if (t->rank != 1 || t->dims[0] != ch) {
        char s[128];
        return stx__node_err(c, STX_E_SHAPE, "%s must have shape [%lld] (channels), got %s", what,
                             (long long)ch, stx__shape_str(t->dims, t->rank, s, sizeof s));
    }
    return STX_OK;
}

/* ----- BatchNormalization ----------------------------------------------------------------------
 * Inference form only (ONNX opset 15, training_mode = 0):
 *     Y = (X - mean) / sqrt(var + epsilon) * scale + B,   per channel (axis 1).
 * Per channel this is the affine map Y = a X + b with a = scale / sqrt(var + eps) and
 * b = B - mean a, computed in double and applied in X's type (float32 or float64; the parameters
 * may be either, as the types T, T1, T2 of the spec allow).
 * Backward: the parameters are constants of the model (running statistics and affine weights), so
 * only X gets a gradient: dX = dY a. Asking for a parameter's gradient is refused.
 */
static stx_status bn_check(const stx_node *n, stx_err *e) {
    if (stx__attr_int(n, "training_mode", 0) != 0)
        return stx__node_err_n(n, e, STX_E_UNSUPPORTED,
                               "training_mode=1 is not supported (inference only); export the "
                               "model in eval mode");
    if (stx__attr_int(n, "spatial", 1) == 0)
        return stx__node_err_n(n, e, STX_E_UNSUPPORTED,
                               "spatial=0 (per-activation statistics) is not supported");
    for (int i = 1; i < n->n_out; i++)
        if (n->out[i] >= 0)
            return stx__node_err_n(n, e, STX_E_UNSUPPORTED,
                                   "%d outputs: only the inference form with the single output Y "
                                   "is supported (running/saved statistics are training outputs)",
                                   n->n_out);
    return STX_OK;
}

static stx_status bn_infer(stx_op_ctx *c) {
    const stx_tensor *x = c->in[0];
    stx_status st = need_fp(c, x, "X");
    if (st != STX_OK) return st;
    /* Before opset 7, is_test (default 0) selected training mode. */
    if (c->opset < 7 && stx__attr_int(c->node, "is_test", 0) == 0)
        return stx__node_err(c, STX_E_UNSUPPORTED,
                             "is_test=0 (training mode) is not supported; inference only");
    if (x->rank < 2) {
        char s[128];
        return stx__node_err(c, STX_E_SHAPE, "X must be (N, C, ...) of rank >= 2, got %s",
                             stx__shape_str(x->dims, x->rank, s, sizeof s));
    }
    static const char *const names[] = {"X", "scale", "B", "mean", "var"};
    for (int i = 1; i < 5; i++) {
        if (!c->in[i]) return stx__node_err(c, STX_E_INVALID, "input %s is missing", names[i]);
        st = need_channel_vec(c, c->in[i], x->dims[1], names[i]);
        if (st != STX_OK) return st;
    }
    stx__set_out(c, 0, x->dtype, x->dims, x->rank);
    return STX_OK;
}

/* a = scale / sqrt(var + eps) of channel k. */
static double bn_gain(const stx_op_ctx *c, int64_t k, double eps) {
    return ldd(c->in[1], k) / sqrt(ldd(c->in[4], k) + eps);
}

static stx_status bn_forward(stx_op_ctx *c) {
    const stx_tensor *xt = c->in[0];
    const bool dbl = xt->dtype == STX_DTYPE_DOUBLE;
    const double eps = stx__attr_float(c->node, "epsilon", 1e-5f);
    const int64_t ch = xt->dims[1];
    const int64_t plane = stx__numel(xt->dims + 2, xt->rank - 2);
    const int64_t planes = xt->dims[0] * ch;
#pragma omp parallel for schedule(static) if (planes > 1 && planes * plane >= NORM_PAR_MIN)
    for (int64_t pc = 0; pc < planes; pc++) {
        int64_t k = pc % ch;
        double a = bn_gain(c, k, eps), b = ldd(c->in[2], k) - ldd(c->in[3], k) * a;
        if (dbl) {
            const double *xp = (const double *)xt->data + pc * plane;
            double *yp = (double *)c->out[0]->data + pc * plane;
            for (int64_t i = 0; i < plane; i++) yp[i] = xp[i] * a + b;
        } else {
            const float *xp = (const float *)xt->data + pc * plane;
            float *yp = (float *)c->out[0]->data + pc * plane;
            float af = (float)a, bf = (float)b;
            for (int64_t i = 0; i < plane; i++) yp[i] = xp[i] * af + bf;
        }
    }
    return STX_OK;
}

/* dX += dY a, with a rounded to X's type exactly as the forward applies it. */
static stx_status bn_backward(stx_op_ctx *c) {
    static const char *const names[] = {"X", "scale", "B", "mean", "var"};
    for (int i = 1; i < 5; i++)
        if (c->din[i])
            return stx__node_err(c, STX_E_UNSUPPORTED,
                                 "no gradient for input %s: inference BatchNormalization treats "
                                 "its parameters as constants",
                                 names[i]);
    const stx_tensor *xt = c->in[0], *dyt = c->dout[0];
    stx_tensor *dxt = c->din[0];
    if (!dxt || !dyt) return STX_OK;
    stx_status st = need_data(c, c->in[1], "scale");
    if (st == STX_OK) st = need_data(c, c->in[4], "var");
    if (st != STX_OK) return st;
    const bool dbl = xt->dtype == STX_DTYPE_DOUBLE;
    const double eps = stx__attr_float(c->node, "epsilon", 1e-5f);
    const int64_t ch = xt->dims[1];
    const int64_t plane = stx__numel(xt->dims + 2, xt->rank - 2);
    const int64_t planes = xt->dims[0] * ch;
#pragma omp parallel for schedule(static) if (planes > 1 && planes * plane >= NORM_PAR_MIN)
    for (int64_t pc = 0; pc < planes; pc++) {
        double a = bn_gain(c, pc % ch, eps);
        if (dbl) {
            const double *dy = (const double *)dyt->data + pc * plane;
            double *dx = (double *)dxt->data + pc * plane;
            for (int64_t i = 0; i < plane; i++) dx[i] += dy[i] * a;
        } else {
            const float *dy = (const float *)dyt->data + pc * plane;
            float *dx = (float *)dxt->data + pc * plane;
            float af = (float)a;
            for (int64_t i = 0; i < plane; i++) dx[i] += dy[i] * af;
        }
    }
    return STX_OK;
}

/* ----- shared normalisation maths ---------------------------------------------------------------
 * A group of n elements x is normalised as xhat = (x - mu) inv, mu = mean(x),
 * inv = 1 / sqrt(mean((x - mu)^2) + eps), then y = xhat * s + b (s, b per element). Its VJP, with
 * g = dy * s:  dx = inv (g - mean(g) - xhat mean(g xhat)),  ds = dy xhat,  db = dy.
 * (From d xhat_j / d x_i = inv (delta_ij - 1/n - xhat_i xhat_j / n).)
 */
#define DEF_MOMENTS(NAME, T)                                                                       \
    static void NAME(const T *x, int64_t n, double eps, double *mu, double *inv) {                 \
        double s = 0.0, ss = 0.0;                                                                  \
        for (int64_t j = 0; j < n; j++) s += x[j];                                                 \
        double m = s / (double)n;                                                                  \
        for (int64_t j = 0; j < n; j++) {                                                          \
            double d = x[j] - m;                                                                   \
            ss += d * d;                                                                           \
        }                                                                                          \
        *mu = m;                                                                                   \
        *inv = 1.0 / sqrt(ss / (double)n + eps);                                                   \
    }
DEF_MOMENTS(moments_f32, float)
DEF_MOMENTS(moments_f64, double)

/* ----- InstanceNormalization -------------------------------------------------------------------
 * Y = scale * (X - mean) / sqrt(var + epsilon) + B, with mean and (population) variance over the
 * spatial positions of each (n, c) plane; scale and B per channel. */
static stx_status in_infer(stx_op_ctx *c) {
    const stx_tensor *x = c->in[0];
    stx_status st = need_fp(c, x, "input");
    if (st != STX_OK) return st;
    if (x->rank < 2) {
        char s[128];
        return stx__node_err(c, STX_E_SHAPE, "input must be (N, C, ...) of rank >= 2, got %s",
                             stx__shape_str(x->dims, x->rank, s, sizeof s));
    }
    if (!c->in[1] || !c->in[2])
        return stx__node_err(c, STX_E_INVALID, "inputs scale and B are required");
    st = need_channel_vec(c, c->in[1], x->dims[1], "scale");
    if (st == STX_OK) st = need_channel_vec(c, c->in[2], x->dims[1], "B");
    if (st == STX_OK) st = need_same(c, c->in[1], x, "scale");
    if (st == STX_OK) st = need_same(c, c->in[2], x, "B");
    if (st != STX_OK) return st;
    stx__set_out(c, 0, x->dtype, x->dims, x->rank);
    return STX_OK;
}

#define DEF_IN_FWD(NAME, T, MOMENTS)                                                               \
    static void NAME(const stx_op_ctx *c, double eps) {                                            \
        const stx_tensor *xt = c->in[0];                                                           \
        const T *x = xt->data, *scale = c->in[1]->data, *bias = c->in[2]->data;                    \
        T *y = c->out[0]->data;                                                                    \
        const int64_t ch = xt->dims[1];                                                            \
        const int64_t plane = stx__numel(xt->dims + 2, xt->rank - 2);                              \
        const int64_t planes = xt->dims[0] * ch;                                                   \
        OMP_FOR_IF(planes > 1 && planes * plane >= NORM_PAR_MIN)                                   \
        for (int64_t pc = 0; pc < planes; pc++) {                                                  \
            const T *xp = x + pc * plane;                                                          \
            T *yp = y + pc * plane;                                                                \
            double mu, inv;                                                                        \
            MOMENTS(xp, plane, eps, &mu, &inv);                                                    \
            double a = (double)scale[pc % ch] * inv, b = (double)bias[pc % ch];                    \
            for (int64_t i = 0; i < plane; i++) yp[i] = (T)((xp[i] - mu) * a + b);                 \
        }                                                                                          \
    }
DEF_IN_FWD(in_fwd_f32, float, moments_f32)
DEF_IN_FWD(in_fwd_f64, double, moments_f64)

static stx_status in_forward(stx_op_ctx *c) {
    const double eps = stx__attr_float(c->node, "epsilon", 1e-5f);
    if (c->in[0]->dtype == STX_DTYPE_DOUBLE)
        in_fwd_f64(c, eps);
    else
        in_fwd_f32(c, eps);
    return STX_OK;
}

/* One (n, c) plane: dx += inv s (dy - mean(dy) - xhat mean(dy xhat)) (the rule above with
 * g = dy s, s the channel's scale), when dx is non-NULL; returns sum(dy) and sum(dy xhat) for
 * the parameter gradients. */
#define DEF_IN_PLANE_BWD(NAME, T, MOMENTS)                                                         \
    static void NAME(const T *x, const T *dy, T *dx, int64_t n, double s, double eps, double *sdy, \
                     double *sdyxh) {                                                              \
        double mu, inv, s1 = 0.0, s2 = 0.0;                                                        \
        MOMENTS(x, n, eps, &mu, &inv);                                                             \
        for (int64_t i = 0; i < n; i++) {                                                          \
            s1 += dy[i];                                                                           \
            s2 += dy[i] * ((x[i] - mu) * inv);                                                     \
        }                                                                                          \
        *sdy = s1;                                                                                 \
        *sdyxh = s2;                                                                               \
        if (!dx) return;                                                                           \
        const double a = s * inv, m1 = s1 / (double)n, m2 = s2 / (double)n;                        \
        for (int64_t i = 0; i < n; i++) dx[i] += (T)(a * (dy[i] - m1 - (x[i] - mu) * inv * m2));   \
    }
DEF_IN_PLANE_BWD(in_plane_bwd_f32, float, moments_f32)
DEF_IN_PLANE_BWD(in_plane_bwd_f64, double, moments_f64)

/* Parallel over planes when only dX is asked for; over channels (each thread owning a channel's
 * planes, and its scale/B gradient) when a parameter gradient is asked for too. */
static stx_status in_backward(stx_op_ctx *c) {
    const stx_tensor *xt = c->in[0], *st = c->in[1], *dyt = c->dout[0];
    stx_tensor *dxt = c->din[0], *dst = c->din[1], *dbt = c->din[2];
    if (!dyt || (!dxt && !dst && !dbt)) return STX_OK;
    stx_status stt = need_data(c, xt, "input");
    if (stt == STX_OK) stt = need_data(c, st, "scale");
    if (stt != STX_OK) return stt;
    const bool dbl = xt->dtype == STX_DTYPE_DOUBLE;
    const double eps = stx__attr_float(c->node, "epsilon", 1e-5f);
    const int64_t nb = xt->dims[0], ch = xt->dims[1];
    const int64_t plane = stx__numel(xt->dims + 2, xt->rank - 2);
    const int64_t planes = nb * ch;
    const size_t es = dbl ? sizeof(double) : sizeof(float);
    const char *x = xt->data, *dy = dyt->data;
    char *dx = dxt ? dxt->data : NULL;
    if (plane == 0) return STX_OK;
    if (!dst && !dbt) {
#pragma omp parallel for schedule(static) if (planes > 1 && planes * plane >= NORM_PAR_MIN)
        for (int64_t pc = 0; pc < planes; pc++) {
            size_t off = (size_t)(pc * plane) * es;
            double s1, s2;
            if (dbl)
                in_plane_bwd_f64((const double *)(x + off), (const double *)(dy + off),
                                 (double *)(dx + off), plane, ldd(st, pc % ch), eps, &s1, &s2);
            else
                in_plane_bwd_f32((const float *)(x + off), (const float *)(dy + off),
                                 (float *)(dx + off), plane, ldd(st, pc % ch), eps, &s1, &s2);
        }
        return STX_OK;
    }
#pragma omp parallel for schedule(static) if (ch > 1 && planes * plane >= NORM_PAR_MIN)
    for (int64_t k = 0; k < ch; k++) {
        double gs = 0.0, gb = 0.0;
        for (int64_t n = 0; n < nb; n++) {
            size_t off = (size_t)((n * ch + k) * plane) * es;
            double s1, s2;
            if (dbl)
                in_plane_bwd_f64((const double *)(x + off), (const double *)(dy + off),
                                 dx ? (double *)(dx + off) : NULL, plane, ldd(st, k), eps, &s1,
                                 &s2);
            else
                in_plane_bwd_f32((const float *)(x + off), (const float *)(dy + off),
                                 dx ? (float *)(dx + off) : NULL, plane, ldd(st, k), eps, &s1, &s2);
            gs += s2; /* d scale = sum dy xhat */
            gb += s1; /* d B = sum dy */
        }
        if (dst) {
            if (dbl)
                ((double *)dst->data)[k] += gs;
            else
                ((float *)dst->data)[k] += (float)gs;
        }
        if (dbt) {
            if (dbl)
                ((double *)dbt->data)[k] += gb;
            else
                ((float *)dbt->data)[k] += (float)gb;
        }
    }
    return STX_OK;
}

/* ----- LayerNormalization (opset 17) -----------------------------------------------------------
 * X is viewed as [outer, inner] with inner = prod(dims[axis:]). Per row:
 *     Mean = mean(x), InvStdDev = 1 / sqrt(mean((x - Mean)^2) + epsilon),
 *     Y = (x - Mean) * InvStdDev * Scale + B,
 * Scale and B (X's type) broadcast (numpy rules, unidirectionally) to X's shape. Mean and
 * InvStdDev have shape dims[:axis] + [1] * (rank - axis) and the stash type (float). The
 * statistics are computed in double, which is at least as precise as stash_type=1 (float) asks.
 */
static stx_status ln_check(const stx_node *n, stx_err *e) {
    int64_t st = stx__attr_int(n, "stash_type", 1);
    if (st != STX_DTYPE_FLOAT)
        return stx__node_err_n(n, e, STX_E_UNSUPPORTED,
                               "stash_type=%lld is not supported (only 1, float)", (long long)st);
    return STX_OK;
}

static stx_status ln_axis(stx_op_ctx *c, int *axis) {
    int r = c->in[0]->rank;
    int64_t a = stx__attr_int(c->node, "axis", -1);
    /* The spec allows [-r, r]; axis = r normalises groups of a single element. */
    if (a < -r || a > r)
        return stx__node_err(c, STX_E_INVALID, "axis %lld out of range for a rank-%d input",
                             (long long)a, r);
    *axis = (int)(a < 0 ? a + r : a);
    return STX_OK;
}

/* Element strides of a parameter broadcast to X's shape (0 along broadcast dimensions). */
static stx_status bcast_strides(stx_op_ctx *c, const stx_tensor *x, const stx_tensor *p,
                                const char *what, int64_t *str) {
    bool ok = p->rank <= x->rank;
    int64_t s = 1;
    for (int i = x->rank - 1; ok && i >= 0; i--) {
        int j = i - (x->rank - p->rank);
        if (j < 0) {
            str[i] = 0;
        } else if (p->dims[j] == x->dims[i]) {
            str[i] = p->dims[j] == 1 ? 0 : s;
            s *= p->dims[j];
        } else if (p->dims[j] == 1) {
            str[i] = 0;
        } else {
            ok = false;
        }
    }
    if (!ok) {
        char a[128], b[128];
        return stx__node_err(c, STX_E_SHAPE, "%s of shape %s does not broadcast to X of shape %s",
                             what, stx__shape_str(p->dims, p->rank, a, sizeof a),
                             stx__shape_str(x->dims, x->rank, b, sizeof b));
    }
    return STX_OK;
}

static stx_status ln_infer(stx_op_ctx *c) {
    const stx_tensor *x = c->in[0];
    stx_status st = need_fp(c, x, "X");
    if (st != STX_OK) return st;
    int axis;
    if ((st = ln_axis(c, &axis)) != STX_OK) return st;
    if (!c->in[1]) return stx__node_err(c, STX_E_INVALID, "input Scale is required");
    int64_t str[STX_MAX_RANK];
    for (int i = 1; i < 3 && i < c->n_in; i++) {
        if (!c->in[i]) continue;
        const char *what = i == 1 ? "Scale" : "B";
        if ((st = need_same(c, c->in[i], x, what)) != STX_OK) return st;
        if ((st = bcast_strides(c, x, c->in[i], what, str)) != STX_OK) return st;
    }
    stx__set_out(c, 0, x->dtype, x->dims, x->rank);
    int64_t sd[STX_MAX_RANK];
    for (int i = 0; i < x->rank; i++) sd[i] = i < axis ? x->dims[i] : 1;
    for (int i = 1; i < 3 && i < c->n_out; i++) stx__set_out(c, i, STX_DTYPE_FLOAT, sd, x->rank);
    return STX_OK;
}

/* True when a parameter varies only over dims[axis:] and is dense there, so element j of a row
 * reads p[j]. */
static bool row_dense(const stx_tensor *x, const int64_t *str, int axis) {
    int64_t s = 1;
    for (int i = x->rank - 1; i >= 0; i--) {
        if (i < axis) {
            if (str[i] != 0 && x->dims[i] != 1) return false;
        } else {
            if (x->dims[i] != 1 && str[i] != s) return false;
            s *= x->dims[i];
        }
    }
    return true;
}

/* Offset into a broadcast parameter of X's element with linear index lin. */
static int64_t bcast_offset(const stx_tensor *x, const int64_t *str, int64_t lin) {
    int64_t off = 0;
    for (int i = x->rank - 1; i >= 0; i--) {
        off += (lin % x->dims[i]) * str[i];
        lin /= x->dims[i];
    }
    return off;
}

/* Geometry shared by LayerNormalization's forward and backward. */
typedef struct {
    int axis;
    int64_t outer, inner;
    int64_t sstr[STX_MAX_RANK], bstr[STX_MAX_RANK];
    bool fast; /* Scale (and B) read element j of a row at offset j */
    double eps;
} ln_geom;

static stx_status ln_geometry(stx_op_ctx *c, ln_geom *g) {
    const stx_tensor *xt = c->in[0], *bt = c->n_in > 2 ? c->in[2] : NULL;
    stx_status st = ln_axis(c, &g->axis);
    if (st != STX_OK) return st;
    if ((st = bcast_strides(c, xt, c->in[1], "Scale", g->sstr)) != STX_OK) return st;
    if (bt && (st = bcast_strides(c, xt, bt, "B", g->bstr)) != STX_OK) return st;
    g->fast = row_dense(xt, g->sstr, g->axis) && (!bt || row_dense(xt, g->bstr, g->axis));
    g->eps = stx__attr_float(c->node, "epsilon", 1e-5f);
    g->outer = stx__numel(xt->dims, g->axis);
    g->inner = stx__numel(xt->dims + g->axis, xt->rank - g->axis);
    return STX_OK;
}

#define DEF_LN_FWD(NAME, T, MOMENTS)                                                               \
    static void NAME(stx_op_ctx *c, const ln_geom *g) {                                            \
        const stx_tensor *xt = c->in[0];                                                           \
        const stx_tensor *bt = c->n_in > 2 ? c->in[2] : NULL;                                      \
        const T *x = xt->data, *scale = c->in[1]->data, *bias = bt ? bt->data : NULL;              \
        T *y = c->out[0]->data;                                                                    \
        float *mean_out = c->n_out > 1 && c->out[1] ? c->out[1]->data : NULL;                      \
        float *inv_out = c->n_out > 2 && c->out[2] ? c->out[2]->data : NULL;                       \
        const int64_t outer = g->outer, inner = g->inner;                                          \
        const bool fast = g->fast;                                                                 \
        OMP_FOR_IF(outer > 1 && outer * inner >= NORM_PAR_MIN)                                     \
        for (int64_t r = 0; r < outer; r++) {                                                      \
            const T *xr = x + r * inner;                                                           \
            T *yr = y + r * inner;                                                                 \
            double mu, inv;                                                                        \
            MOMENTS(xr, inner, g->eps, &mu, &inv);                                                 \
            if (mean_out) mean_out[r] = (float)mu;                                                 \
            if (inv_out) inv_out[r] = (float)inv;                                                  \
            if (fast) {                                                                            \
                for (int64_t j = 0; j < inner; j++) {                                              \
                    T v = (T)((xr[j] - mu) * inv) * scale[j];                                      \
                    yr[j] = bias ? v + bias[j] : v;                                                \
                }                                                                                  \
            } else {                                                                               \
                for (int64_t j = 0; j < inner; j++) {                                              \
                    int64_t lin = r * inner + j;                                                   \
                    T v = (T)((xr[j] - mu) * inv) * scale[bcast_offset(xt, g->sstr, lin)];         \
                    yr[j] = bias ? v + bias[bcast_offset(xt, g->bstr, lin)] : v;                   \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }
DEF_LN_FWD(ln_fwd_f32, float, moments_f32)
DEF_LN_FWD(ln_fwd_f64, double, moments_f64)

static stx_status ln_forward(stx_op_ctx *c) {
    ln_geom g;
    stx_status st = ln_geometry(c, &g);
    if (st != STX_OK) return st;
    if (c->in[0]->dtype == STX_DTYPE_DOUBLE)
        ln_fwd_f64(c, &g);
    else
        ln_fwd_f32(c, &g);
    return STX_OK;
}

/* dX, per row (parallel over rows), from the three outputs' gradients (each may be absent):
 *   Y:          g = dY Scale, dx = inv (g - mean(g) - xhat mean(g xhat))
 *   Mean:       dx += dMean / n
 *   InvStdDev:  inv = (var + eps)^-1/2, d var / d x_j = 2 (x_j - mu) / n, so
 *               dx += dInv (-inv^3 (x_j - mu) / n) = -dInv inv^2 xhat_j / n
 */
#define DEF_LN_BWD_X(NAME, T, MOMENTS)                                                             \
    static void NAME(stx_op_ctx *c, const ln_geom *g) {                                            \
        const stx_tensor *xt = c->in[0];                                                           \
        const T *x = xt->data, *scale = c->in[1]->data;                                            \
        const T *dy = c->dout[0] ? c->dout[0]->data : NULL;                                        \
        const float *dmean = c->n_out > 1 && c->dout[1] ? c->dout[1]->data : NULL;                 \
        const float *dinv = c->n_out > 2 && c->dout[2] ? c->dout[2]->data : NULL;                  \
        T *dx = c->din[0]->data;                                                                   \
        const int64_t outer = g->outer, inner = g->inner;                                          \
        const double rn = 1.0 / (double)inner;                                                     \
        const bool fast = g->fast;                                                                 \
        OMP_FOR_IF(outer > 1 && outer * inner >= NORM_PAR_MIN)                                     \
        for (int64_t r = 0; r < outer; r++) {                                                      \
            const T *xr = x + r * inner;                                                           \
            T *dxr = dx + r * inner;                                                               \
            double mu, inv;                                                                        \
            MOMENTS(xr, inner, g->eps, &mu, &inv);                                                 \
            double m1 = 0.0, m2 = 0.0; /* mean(g), mean(g xhat) */                                 \
            const T *dyr = dy ? dy + r * inner : NULL;                                             \
            if (dyr) {                                                                             \
                for (int64_t j = 0; j < inner; j++) {                                              \
                    double s = fast ? scale[j] : scale[bcast_offset(xt, g->sstr, r * inner + j)];  \
                    double gj = dyr[j] * s;                                                        \
                    m1 += gj;                                                                      \
                    m2 += gj * ((xr[j] - mu) * inv);                                               \
                }                                                                                  \
                m1 *= rn;                                                                          \
                m2 *= rn;                                                                          \
            }                                                                                      \
            /* dx_j = inv g_j + c0 + c1 xhat_j, g_j = 0 without dY */                              \
            double c0 = -inv * m1 + (dmean ? dmean[r] * rn : 0.0);                                 \
            double c1 = -inv * m2 - (dinv ? dinv[r] * inv * inv * rn : 0.0);                       \
            for (int64_t j = 0; j < inner; j++) {                                                  \
                double xh = (xr[j] - mu) * inv, gj = 0.0;                                          \
                if (dyr)                                                                           \
                    gj = dyr[j] *                                                                  \
                         (fast ? scale[j] : scale[bcast_offset(xt, g->sstr, r * inner + j)]);      \
                dxr[j] += (T)(inv * gj + c0 + c1 * xh);                                            \
            }                                                                                      \
        }                                                                                          \
    }
DEF_LN_BWD_X(ln_bwd_x_f32, float, moments_f32)
DEF_LN_BWD_X(ln_bwd_x_f64, double, moments_f64)

/* Block of columns each thread owns when reducing the Scale/B gradients over rows. */
#define LN_COLS 64

/* dScale = sum over broadcast positions of dY xhat, dB = sum of dY (only Y carries them).
 * Row-dense parameters: parallel over blocks of columns, rows accumulated in double in order;
 * other broadcasts: one thread, in row-major order. mi holds each row's (mu, inv). */
#define DEF_LN_BWD_P(NAME, T)                                                                      \
    static void NAME(stx_op_ctx *c, const ln_geom *g, const double *mi) {                          \
        const stx_tensor *xt = c->in[0];                                                           \
        const T *x = xt->data, *dy = c->dout[0]->data;                                             \
        T *ds = c->din[1] ? c->din[1]->data : NULL;                                                \
        T *db = c->n_in > 2 && c->din[2] ? c->din[2]->data : NULL;                                 \
        const int64_t outer = g->outer, inner = g->inner;                                          \
        if (g->fast) {                                                                             \
            const int64_t nblk = (inner + LN_COLS - 1) / LN_COLS;                                  \
            OMP_FOR_IF(nblk > 1 && outer * inner >= NORM_PAR_MIN)                                  \
            for (int64_t bk = 0; bk < nblk; bk++) {                                                \
                const int64_t j0 = bk * LN_COLS;                                                   \
                const int64_t nj = inner - j0 < LN_COLS ? inner - j0 : LN_COLS;                    \
                double as[LN_COLS] = {0}, ab[LN_COLS] = {0};                                       \
                for (int64_t r = 0; r < outer; r++) {                                              \
                    const T *xr = x + r * inner + j0, *dyr = dy + r * inner + j0;                  \
                    const double mu = mi[2 * r], inv = mi[2 * r + 1];                              \
                    for (int64_t j = 0; j < nj; j++) {                                             \
                        as[j] += dyr[j] * ((xr[j] - mu) * inv);                                    \
                        ab[j] += dyr[j];                                                           \
                    }                                                                              \
                }                                                                                  \
                for (int64_t j = 0; j < nj; j++) {                                                 \
                    if (ds) ds[j0 + j] += (T)as[j];                                                \
                    if (db) db[j0 + j] += (T)ab[j];                                                \
                }                                                                                  \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        for (int64_t r = 0; r < outer; r++) {                                                      \
            const double mu = mi[2 * r], inv = mi[2 * r + 1];                                      \
            for (int64_t j = 0; j < inner; j++) {                                                  \
                const int64_t lin = r * inner + j;                                                 \
                if (ds)                                                                            \
                    ds[bcast_offset(xt, g->sstr, lin)] += (T)(dy[lin] * ((x[lin] - mu) * inv));    \
                if (db) db[bcast_offset(xt, g->bstr, lin)] += dy[lin];                             \
            }                                                                                      \
        }                                                                                          \
    }
DEF_LN_BWD_P(ln_bwd_p_f32, float)
DEF_LN_BWD_P(ln_bwd_p_f64, double)

static stx_status ln_backward(stx_op_ctx *c) {
    const stx_tensor *xt = c->in[0];
    const bool dbl = xt->dtype == STX_DTYPE_DOUBLE;
    bool any_dout = false;
    for (int k = 0; k < c->n_out; k++) any_dout |= c->dout[k] != NULL;
    if (!any_dout) return STX_OK;
    ln_geom g;
    stx_status st = ln_geometry(c, &g);
    if (st == STX_OK) st = need_data(c, xt, "X");
    if (st == STX_OK) st = need_data(c, c->in[1], "Scale");
    if (st != STX_OK) return st;
    if (g.outer == 0 || g.inner == 0) return STX_OK;
    if (c->din[0]) {
        if (dbl)
            ln_bwd_x_f64(c, &g);
        else
            ln_bwd_x_f32(c, &g);
    }
    bool want_p = c->din[1] || (c->n_in > 2 && c->din[2]);
    if (!want_p || !c->dout[0]) return STX_OK;
    /* the parameter gradients are rarely asked for (Scale and B are weights): the rows'
     * statistics go to a temporary buffer rather than to planned state */
    double *mi = stx__malloc(c->ctx, sizeof(double) * 2 * (size_t)g.outer);
    if (!mi) return stx__node_err(c, STX_E_NOMEM, "out of memory");
    const int64_t outer = g.outer, inner = g.inner;
#pragma omp parallel for schedule(static) if (outer > 1 && outer * inner >= NORM_PAR_MIN)
    for (int64_t r = 0; r < outer; r++) {
        if (dbl)
            moments_f64((const double *)xt->data + r * inner, inner, g.eps, &mi[2 * r],
                        &mi[2 * r + 1]);
        else
            moments_f32((const float *)xt->data + r * inner, inner, g.eps, &mi[2 * r],
                        &mi[2 * r + 1]);
    }
    if (dbl)
        ln_bwd_p_f64(c, &g, mi);
    else
        ln_bwd_p_f32(c, &g, mi);
    stx__free(c->ctx, mi);
    return STX_OK;
}

/* ----- Softmax / LogSoftmax --------------------------------------------------------------------
 * Opset >= 13: along one axis (default -1); X is viewed as [outer, n, inner] with n = dims[axis].
 * Opset < 13: X is coerced to 2-D [prod(dims[:axis]), prod(dims[axis:])] (default axis 1) and
 * normalised along the second dimension, i.e. n = prod(dims[axis:]), inner = 1.
 * softmax(x)_k = exp(x_k - m) / sum_j exp(x_j - m) with m = max_j x_j (stable for large inputs);
 * logsoftmax(x)_k = x_k - m - log(sum_j exp(x_j - m)).
 * Backward, from the output y alone, per lane:
 *   softmax:    dx_k = y_k (dy_k - sum_j dy_j y_j)
 *   logsoftmax: dx_k = dy_k - exp(y_k) sum_j dy_j
 */
static stx_status softmax_geometry(stx_op_ctx *c, int64_t *outer, int64_t *n, int64_t *inner) {
    const stx_tensor *x = c->in[0];
    bool modern = c->opset >= 13;
    int64_t a = stx__attr_int(c->node, "axis", modern ? -1 : 1);
    int axis;
    if (!stx__norm_axis(a, x->rank, &axis))
        return stx__node_err(c, STX_E_INVALID, "axis %lld out of range for a rank-%d input",
                             (long long)a, x->rank);
    *outer = stx__numel(x->dims, axis);
    if (modern) {
        *n = x->dims[axis];
        *inner = stx__numel(x->dims + axis + 1, x->rank - axis - 1);
    } else {
        *n = stx__numel(x->dims + axis, x->rank - axis);
        *inner = 1;
    }
    return STX_OK;
}

static stx_status softmax_infer(stx_op_ctx *c) {
    const stx_tensor *x = c->in[0];
    stx_status st = need_fp(c, x, "input");
    if (st != STX_OK) return st;
    int64_t o, n, i;
    if ((st = softmax_geometry(c, &o, &n, &i)) != STX_OK) return st;
    stx__set_out(c, 0, x->dtype, x->dims, x->rank);
    return STX_OK;
}

#define DEF_SOFTMAX_FWD(NAME, T)                                                                   \
    static void NAME(const T *x, T *y, int64_t outer, int64_t n, int64_t inner, bool logarithm) {  \
        const int64_t lanes = outer * inner;                                                       \
        OMP_FOR_IF(lanes > 1 && lanes * n >= NORM_PAR_MIN) for (int64_t l = 0; l < lanes; l++) {   \
            const int64_t base = (l / inner) * n * inner + l % inner;                              \
            const T *xl = x + base;                                                                \
            T *yl = y + base;                                                                      \
            T m = -INFINITY;                                                                       \
            for (int64_t k = 0; k < n; k++) {                                                      \
                T v = xl[k * inner];                                                               \
                if (v > m || v != v) m = v;                                                        \
            }                                                                                      \
            double s = 0.0;                                                                        \
            if (logarithm) {                                                                       \
                for (int64_t k = 0; k < n; k++) s += exp((double)xl[k * inner] - m);               \
                double shift = (double)m + log(s);                                                 \
                for (int64_t k = 0; k < n; k++)                                                    \
                    yl[k * inner] = (T)((double)xl[k * inner] - shift);                            \
            } else {                                                                               \
                for (int64_t k = 0; k < n; k++) {                                                  \
                    double e = exp((double)xl[k * inner] - m);                                     \
                    yl[k * inner] = (T)e;                                                          \
                    s += e;                                                                        \
                }                                                                                  \
                double r = 1.0 / s;                                                                \
                for (int64_t k = 0; k < n; k++) yl[k * inner] = (T)(yl[k * inner] * r);            \
            }                                                                                      \
        }                                                                                          \
    }
DEF_SOFTMAX_FWD(softmax_fwd_f32, float)
DEF_SOFTMAX_FWD(softmax_fwd_f64, double)

static stx_status softmax_forward_k(stx_op_ctx *c, bool logarithm) {
    int64_t outer, n, inner;
    stx_status st = softmax_geometry(c, &outer, &n, &inner);
    if (st != STX_OK) return st;
    if (c->in[0]->dtype == STX_DTYPE_DOUBLE)
        softmax_fwd_f64(c->in[0]->data, c->out[0]->data, outer, n, inner, logarithm);
    else
        softmax_fwd_f32(c->in[0]->data, c->out[0]->data, outer, n, inner, logarithm);
    return STX_OK;
}

static stx_status softmax_forward(stx_op_ctx *c) {
    return softmax_forward_k(c, false);
}
static stx_status logsoftmax_forward(stx_op_ctx *c) {
    return softmax_forward_k(c, true);
}

#define DEF_SOFTMAX_BWD(NAME, T)                                                                   \
    static void NAME(const T *y, const T *dy, T *dx, int64_t outer, int64_t n, int64_t inner,      \
                     bool logarithm) {                                                             \
        const int64_t lanes = outer * inner;                                                       \
        OMP_FOR_IF(lanes > 1 && lanes * n >= NORM_PAR_MIN) for (int64_t l = 0; l < lanes; l++) {   \
            const int64_t base = (l / inner) * n * inner + l % inner;                              \
            const T *yl = y + base, *dyl = dy + base;                                              \
            T *dxl = dx + base;                                                                    \
            double s = 0.0;                                                                        \
            if (logarithm) {                                                                       \
                for (int64_t k = 0; k < n; k++) s += dyl[k * inner];                               \
                for (int64_t k = 0; k < n; k++)                                                    \
                    dxl[k * inner] += (T)(dyl[k * inner] - exp((double)yl[k * inner]) * s);        \
            } else {                                                                               \
                for (int64_t k = 0; k < n; k++) s += (double)dyl[k * inner] * yl[k * inner];       \
                for (int64_t k = 0; k < n; k++)                                                    \
                    dxl[k * inner] += (T)(yl[k * inner] * (dyl[k * inner] - s));                   \
            }                                                                                      \
        }                                                                                          \
    }
DEF_SOFTMAX_BWD(softmax_bwd_f32, float)
DEF_SOFTMAX_BWD(softmax_bwd_f64, double)

static stx_status softmax_backward_k(stx_op_ctx *c, bool logarithm) {
    const stx_tensor *y = c->out[0], *dy = c->dout[0];
    stx_tensor *dx = c->din[0];
    if (!dx || !dy) return STX_OK;
    int64_t outer, n, inner;
    stx_status st = softmax_geometry(c, &outer, &n, &inner);
    if (st == STX_OK) st = need_data(c, y, "output");
    if (st != STX_OK) return st;
    if (y->dtype == STX_DTYPE_DOUBLE)
        softmax_bwd_f64(y->data, dy->data, dx->data, outer, n, inner, logarithm);
    else
        softmax_bwd_f32(y->data, dy->data, dx->data, outer, n, inner, logarithm);
    return STX_OK;
}

static stx_status softmax_backward(stx_op_ctx *c) {
    return softmax_backward_k(c, false);
}
static stx_status logsoftmax_backward(stx_op_ctx *c) {
    return softmax_backward_k(c, true);
}

/* ----- registration --------------------------------------------------------------------------- */

static const char *const bn_attrs[] = {
    "epsilon", "momentum", "training_mode", "spatial", "is_test", "consumed_inputs", NULL};
static const char *const in_attrs[] = {"epsilon", NULL};
static const char *const ln_attrs[] = {"axis", "epsilon", "stash_type", NULL};
static const char *const softmax_attrs[] = {"axis", NULL};

static const stx_op_def op_batchnorm = {.name = "BatchNormalization",
                                        .min_in = 5,
                                        .max_in = 5,
                                        .min_out = 1,
                                        .max_out = 5,
                                        .attrs = bn_attrs,
                                        .check = bn_check,
                                        .infer = bn_infer,
                                        .forward = bn_forward,
                                        .backward = bn_backward,
                                        .bwd_in = (1u << 1) | (1u << 4)}; /* scale, var */
static const stx_op_def op_instancenorm = {.name = "InstanceNormalization",
                                           .min_in = 3,
                                           .max_in = 3,
                                           .min_out = 1,
                                           .max_out = 1,
                                           .attrs = in_attrs,
                                           .infer = in_infer,
                                           .forward = in_forward,
                                           .backward = in_backward,
                                           .bwd_in = 3u}; /* X, scale */
static const stx_op_def op_layernorm = {.name = "LayerNormalization",
                                        .min_in = 2,
                                        .max_in = 3,
                                        .min_out = 1,
                                        .max_out = 3,
                                        .attrs = ln_attrs,
                                        .check = ln_check,
                                        .infer = ln_infer,
                                        .forward = ln_forward,
                                        .backward = ln_backward,
                                        .bwd_in = 3u}; /* X, Scale */
static const stx_op_def op_softmax = {.name = "Softmax",
                                      .min_in = 1,
                                      .max_in = 1,
                                      .min_out = 1,
                                      .max_out = 1,
                                      .attrs = softmax_attrs,
                                      .infer = softmax_infer,
                                      .forward = softmax_forward,
                                      .backward = softmax_backward,
                                      .bwd_out = 1u};
static const stx_op_def op_logsoftmax = {.name = "LogSoftmax",
                                         .min_in = 1,
                                         .max_in = 1,
                                         .min_out = 1,
                                         .max_out = 1,
                                         .attrs = softmax_attrs,
                                         .infer = softmax_infer,
                                         .forward = logsoftmax_forward,
                                         .backward = logsoftmax_backward,
                                         .bwd_out = 1u};

const stx_op_def *const stx__ops_norm[] = {&op_batchnorm, &op_instancenorm, &op_layernorm,
                                           &op_softmax,   &op_logsoftmax,   NULL};
