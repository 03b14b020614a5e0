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

static stx_status need_float(stx_op_ctx *c, const stx_tensor *t, const char *what) {
    if (t->dtype == STX_DTYPE_FLOAT) return STX_OK;
    return stx__node_err(c, STX_E_UNSUPPORTED, "%s must be float32, got %s", what,
                         stx_dtype_name(t->dtype));
}

/* A per-channel parameter: 1-D with C elements. */
static stx_status need_channel_vec(stx_op_ctx *c, const stx_tensor *t, int64_t ch,
                                   const char *what) {
    stx_status st = need_float(c, t, what);
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
 * b = B - mean a, computed in double and applied in float.
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
    stx_status st = need_float(c, x, "X");
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

static stx_status bn_forward(stx_op_ctx *c) {
    const stx_tensor *xt = c->in[0];
    const float *x = xt->data, *scale = c->in[1]->data, *bias = c->in[2]->data;
    const float *mean = c->in[3]->data, *var = c->in[4]->data;
    float *y = c->out[0]->data;
    const double eps = stx__attr_float(c->node, "epsilon", 1e-5f);
    const int64_t nb = xt->dims[0], ch = xt->dims[1];
    const int64_t plane = stx__numel(xt->dims + 2, xt->rank - 2);
    const int64_t planes = nb * ch;
#pragma omp parallel for schedule(static) if (planes > 1 && planes * plane >= NORM_PAR_MIN)
    for (int64_t pc = 0; pc < planes; pc++) {
        int64_t k = pc % ch;
        double a = (double)scale[k] / sqrt((double)var[k] + eps);
        float af = (float)a, bf = (float)((double)bias[k] - (double)mean[k] * a);
        const float *xp = x + pc * plane;
        float *yp = y + pc * plane;
        for (int64_t i = 0; i < plane; i++) yp[i] = xp[i] * af + bf;
    }
    return STX_OK;
}

/* ----- InstanceNormalization -------------------------------------------------------------------
 * Y = scale * (X - mean) / sqrt(var + epsilon) + B, with mean and (population) variance over the
 * spatial positions of each (n, c) plane. */
static stx_status in_infer(stx_op_ctx *c) {
    const stx_tensor *x = c->in[0];
    stx_status st = need_float(c, x, "input");
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
    if (st != STX_OK) return st;
    stx__set_out(c, 0, x->dtype, x->dims, x->rank);
    return STX_OK;
}

static stx_status in_forward(stx_op_ctx *c) {
    const stx_tensor *xt = c->in[0];
    const float *x = xt->data, *scale = c->in[1]->data, *bias = c->in[2]->data;
    float *y = c->out[0]->data;
    const double eps = stx__attr_float(c->node, "epsilon", 1e-5f);
    const int64_t ch = xt->dims[1];
    const int64_t plane = stx__numel(xt->dims + 2, xt->rank - 2);
    const int64_t planes = xt->dims[0] * ch;
#pragma omp parallel for schedule(static) if (planes > 1 && planes * plane >= NORM_PAR_MIN)
    for (int64_t pc = 0; pc < planes; pc++) {
        const float *xp = x + pc * plane;
        float *yp = y + pc * plane;
        double s = 0.0, ss = 0.0;
        for (int64_t i = 0; i < plane; i++) s += xp[i];
        double mu = s / (double)plane;
        for (int64_t i = 0; i < plane; i++) {
            double d = xp[i] - mu;
            ss += d * d;
        }
        double a = (double)scale[pc % ch] / sqrt(ss / (double)plane + eps);
        double b = (double)bias[pc % ch];
        for (int64_t i = 0; i < plane; i++) yp[i] = (float)((xp[i] - mu) * a + b);
    }
    return STX_OK;
}

/* ----- LayerNormalization (opset 17) -----------------------------------------------------------
 * X is viewed as [outer, inner] with inner = prod(dims[axis:]). Per row:
 *     Mean = mean(x), InvStdDev = 1 / sqrt(mean((x - Mean)^2) + epsilon),
 *     Y = (x - Mean) * InvStdDev * Scale + B,
 * Scale and B broadcast (numpy rules, unidirectionally) to X's shape. Mean and InvStdDev have
 * shape dims[:axis] + [1] * (rank - axis) and the stash type (float). The statistics are computed
 * in double, which is at least as precise as stash_type=1 (float) asks for.
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
    stx_status st = need_float(c, x, "X");
    if (st != STX_OK) return st;
    int axis;
    if ((st = ln_axis(c, &axis)) != STX_OK) return st;
    if (!c->in[1]) return stx__node_err(c, STX_E_INVALID, "input Scale is required");
    int64_t str[STX_MAX_RANK];
    for (int i = 1; i < 3 && i < c->n_in; i++) {
        if (!c->in[i]) continue;
        const char *what = i == 1 ? "Scale" : "B";
        if ((st = need_float(c, c->in[i], what)) != STX_OK) return st;
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

static stx_status ln_forward(stx_op_ctx *c) {
    const stx_tensor *xt = c->in[0];
    const stx_tensor *sct = c->in[1];
    const stx_tensor *bt = c->n_in > 2 ? c->in[2] : NULL;
    int axis;
    stx_status st = ln_axis(c, &axis);
    if (st != STX_OK) return st;
    int64_t sstr[STX_MAX_RANK], bstr[STX_MAX_RANK];
    if ((st = bcast_strides(c, xt, sct, "Scale", sstr)) != STX_OK) return st;
    if (bt && (st = bcast_strides(c, xt, bt, "B", bstr)) != STX_OK) return st;
    const bool fast = row_dense(xt, sstr, axis) && (!bt || row_dense(xt, bstr, axis));
    const float *x = xt->data, *scale = sct->data, *bias = bt ? bt->data : NULL;
    float *y = c->out[0]->data;
    float *mean_out = c->n_out > 1 && c->out[1] ? c->out[1]->data : NULL;
    float *inv_out = c->n_out > 2 && c->out[2] ? c->out[2]->data : NULL;
    const double eps = stx__attr_float(c->node, "epsilon", 1e-5f);
    const int64_t outer = stx__numel(xt->dims, axis);
    const int64_t inner = stx__numel(xt->dims + axis, xt->rank - axis);
#pragma omp parallel for schedule(static) if (outer > 1 && outer * inner >= NORM_PAR_MIN)
    for (int64_t r = 0; r < outer; r++) {
        const float *xr = x + r * inner;
        float *yr = y + r * inner;
        double s = 0.0, ss = 0.0;
        for (int64_t j = 0; j < inner; j++) s += xr[j];
        double mu = s / (double)inner;
        for (int64_t j = 0; j < inner; j++) {
            double d = xr[j] - mu;
            ss += d * d;
        }
        double inv = 1.0 / sqrt(ss / (double)inner + eps);
        if (mean_out) mean_out[r] = (float)mu;
        if (inv_out) inv_out[r] = (float)inv;
        if (fast) {
            for (int64_t j = 0; j < inner; j++) {
                float v = (float)((xr[j] - mu) * inv) * scale[j];
                yr[j] = bias ? v + bias[j] : v;
            }
        } else {
            for (int64_t j = 0; j < inner; j++) {
                int64_t lin = r * inner + j;
                float v = (float)((xr[j] - mu) * inv) * scale[bcast_offset(xt, sstr, lin)];
                yr[j] = bias ? v + bias[bcast_offset(xt, bstr, lin)] : v;
            }
        }
    }
    return STX_OK;
}

/* ----- Softmax / LogSoftmax --------------------------------------------------------------------
 * Opset >= 13: along one axis (default -1); X is viewed as [outer, n, inner] with n = dims[axis].
 * Opset < 13: X is coerced to 2-D [prod(dims[:axis]), prod(dims[axis:])] (default axis 1) and
 * normalised along the second dimension, i.e. n = prod(dims[axis:]), inner = 1.
 * softmax(x)_k = exp(x_k - m) / sum_j exp(x_j - m) with m = max_j x_j (stable for large inputs);
 * logsoftmax(x)_k = x_k - m - log(sum_j exp(x_j - m)).
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
    stx_status st = need_float(c, x, "input");
    if (st != STX_OK) return st;
    int64_t o, n, i;
    if ((st = softmax_geometry(c, &o, &n, &i)) != STX_OK) return st;
    stx__set_out(c, 0, x->dtype, x->dims, x->rank);
    return STX_OK;
}

static stx_status softmax_forward_k(stx_op_ctx *c, bool logarithm) {
    int64_t outer, n, inner;
    stx_status st = softmax_geometry(c, &outer, &n, &inner);
    if (st != STX_OK) return st;
    const float *x = c->in[0]->data;
    float *y = c->out[0]->data;
    const int64_t lanes = outer * inner;
#pragma omp parallel for schedule(static) if (lanes > 1 && lanes * n >= NORM_PAR_MIN)
    for (int64_t l = 0; l < lanes; l++) {
        const int64_t base = (l / inner) * n * inner + l % inner;
        const float *xl = x + base;
        float *yl = y + base;
        float m = -INFINITY;
        for (int64_t k = 0; k < n; k++) {
            float v = xl[k * inner];
            if (v > m || v != v) m = v;
        }
        double s = 0.0;
        if (logarithm) {
            for (int64_t k = 0; k < n; k++) s += exp((double)xl[k * inner] - m);
            double shift = (double)m + log(s);
            for (int64_t k = 0; k < n; k++) yl[k * inner] = (float)((double)xl[k * inner] - shift);
        } else {
            for (int64_t k = 0; k < n; k++) {
                double e = exp((double)xl[k * inner] - m);
                yl[k * inner] = (float)e;
                s += e;
            }
            double r = 1.0 / s;
            for (int64_t k = 0; k < n; k++) yl[k * inner] = (float)(yl[k * inner] * r);
        }
    }
    return STX_OK;
}

static stx_status softmax_forward(stx_op_ctx *c) {
    return softmax_forward_k(c, false);
}
static stx_status logsoftmax_forward(stx_op_ctx *c) {
    return softmax_forward_k(c, true);
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
                                        .forward = bn_forward};
static const stx_op_def op_instancenorm = {.name = "InstanceNormalization",
                                           .min_in = 3,
                                           .max_in = 3,
                                           .min_out = 1,
                                           .max_out = 1,
                                           .attrs = in_attrs,
                                           .infer = in_infer,
                                           .forward = in_forward};
static const stx_op_def op_layernorm = {.name = "LayerNormalization",
                                        .min_in = 2,
                                        .max_in = 3,
                                        .min_out = 1,
                                        .max_out = 3,
                                        .attrs = ln_attrs,
                                        .check = ln_check,
                                        .infer = ln_infer,
                                        .forward = ln_forward};
static const stx_op_def op_softmax = {.name = "Softmax",
                                      .min_in = 1,
                                      .max_in = 1,
                                      .min_out = 1,
                                      .max_out = 1,
                                      .attrs = softmax_attrs,
                                      .infer = softmax_infer,
                                      .forward = softmax_forward};
static const stx_op_def op_logsoftmax = {.name = "LogSoftmax",
                                         .min_in = 1,
                                         .max_in = 1,
                                         .min_out = 1,
                                         .max_out = 1,
                                         .attrs = softmax_attrs,
                                         .infer = softmax_infer,
                                         .forward = logsoftmax_forward};

const stx_op_def *const stx__ops_norm[] = {&op_batchnorm, &op_instancenorm, &op_layernorm,
                                           &op_softmax,   &op_logsoftmax,   NULL};
