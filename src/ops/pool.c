/* pool.c: MaxPool and AveragePool with 1 to 3 spatial dimensions (ONNX opsets 1 to 12 for
 * MaxPool, 1 to 11 for AveragePool; GlobalAveragePool/GlobalMaxPool live in reduce.c).
 *
 * Two implementations: a reference kernel in plain C (all dtypes, the Indices output of MaxPool,
 * odd geometries, constant folding, tests) and, for float32, a oneDNN pooling primitive built in
 * prepare that works directly on the dense row-major tensors.
 *
 * Geometry, per spatial axis with effective kernel ek = (k - 1) * d + 1 (d = 1 for AveragePool):
 *   NOTSET/VALID  out = floor((in + pad_begin + pad_end - ek) / s) + 1   (VALID: no pads)
 *                 ceil_mode = 1 rounds up instead, and then drops a last window that would
 *                 start inside the end padding (the rule PyTorch and later ONNX versions use,
 *                 so that every window sees at least one input element);
 *   SAME_UPPER/   out = ceil(in / s), total pad = max(0, (out - 1) * s + ek - in), the odd
 *   SAME_LOWER    element at the end (UPPER) or at the beginning (LOWER); ceil_mode is moot.
 * Padded positions never win a max. AveragePool divides by the number of input elements in the
 * window (count_include_pad = 0) or by the number of window positions inside the padded input
 * [-pad_begin, in + pad_end) (count_include_pad = 1), so that positions a ceil_mode window hangs
 * past the end padding are never counted (onnxruntime and PyTorch agree on this).
 *
 * MaxPool's Indices output holds, for each output element, the flattened index of the selected
 * input element in X, batch and channel included: (n * C + c) * prod(spatial) + spatial offset,
 * the spatial offset being row-major (storage_order = 0) or column-major (storage_order = 1).
 * The first maximum in window order wins ties.
 *
 * Backward: MaxPool routes d y to the selected element (the Indices one: first maximum, so a tie
 * gives everything to the first), AveragePool spreads d y / count over the window's input
 * elements; overlapping windows add. Reference kernels for float32/float64, and a oneDNN
 * backward primitive for float32 when windows overlap (MaxPool then keeps the forward's
 * workspace of selected taps).
 */
#include "dnnl_util.h"
#include "spatial.h"

#include <float.h>
#include <stdio.h>
#include <string.h>

/* Test-only toggle, defined in conv.c (see dnnl_util.h). */
extern int stx__ops_force_reference;

#define POOL_ATTR_MAX ((int64_t)1 << 31)
#define POOL_PAR_MIN 16384 /* below this many window taps in total, stay single-threaded */

/* ---------------------------------------------------------------------------------------------
 * Attributes and geometry
 */
static const char *const maxpool_attrs[] = {
    "auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides", NULL};
static const char *const avgpool_attrs[] = {
    "auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides", NULL};

static stx_status pool_check(const stx_node *n, stx_err *e) {
    const char *ap = stx__attr_str(n, "auto_pad", "NOTSET");
    if (parse_auto_pad(ap) < 0)
        return stx__node_err_n(n, e, STX_E_INVALID,
                               "auto_pad '%s' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID",
                               ap);
    static const char *const flags[] = {"ceil_mode", "count_include_pad", "storage_order"};
    for (int a = 0; a < 3; a++) {
        int64_t v = stx__attr_int(n, flags[a], 0);
        if (v != 0 && v != 1)
            return stx__node_err_n(n, e, STX_E_INVALID, "%s must be 0 or 1, got %lld", flags[a],
                                   (long long)v);
    }
    const int64_t *v;
    if (stx__attr_ints(n, "kernel_shape", &v) <= 0)
        return stx__node_err_n(n, e, STX_E_INVALID, "attribute kernel_shape is required");
    static const char *const positive[] = {"kernel_shape", "strides", "dilations"};
    for (int a = 0; a < 3; a++) {
        int cnt = stx__attr_ints(n, positive[a], &v);
        for (int i = 0; i < cnt; i++)
            if (v[i] < 1 || v[i] > POOL_ATTR_MAX)
                return stx__node_err_n(n, e, STX_E_INVALID, "%s[%d] = %lld must be in [1, 2^31]",
                                       positive[a], i, (long long)v[i]);
    }
    int cnt = stx__attr_ints(n, "pads", &v);
    for (int i = 0; i < cnt; i++)
        if (v[i] < 0 || v[i] > POOL_ATTR_MAX)
            return stx__node_err_n(n, e, STX_E_INVALID, "pads[%d] = %lld must be in [0, 2^31]", i,
                                   (long long)v[i]);
    return STX_OK;
}

/* Spatial arrays normalised to 3 axes (D, H, W) as in conv.c: a 1-D pool uses index 2 only. */
typedef struct pool_geom {
    int nsp;
    int is_max;
    int64_t N, C;
    int64_t in[3], out[3], k[3], s[3], d[3];
    int64_t pb[3], pe[3]; /* pads (explicit or from auto_pad) */
    int include_pad;      /* AveragePool count_include_pad */
    int col_major;        /* MaxPool storage_order = 1 */
} pool_geom;

static stx_status read_ints(stx_op_ctx *c, const char *name, int want, int64_t def, int64_t *out) {
    const int64_t *v;
    int cnt = stx__attr_ints(c->node, name, &v);
    if (cnt <= 0) {
        for (int i = 0; i < want; i++) out[i] = def;
        return STX_OK;
    }
    if (cnt != want)
        return stx__node_err(c, STX_E_INVALID, "attribute %s has %d values, expected %d", name, cnt,
                             want);
    for (int i = 0; i < want; i++) out[i] = v[i];
    return STX_OK;
}

static stx_status pool_geom_get(stx_op_ctx *c, int is_max, pool_geom *g) {
    const stx_tensor *X = c->in[0];
    char sx[128];
    memset(g, 0, sizeof *g);
    g->is_max = is_max;
    if (!X) return stx__node_err(c, STX_E_INVALID, "input X is required");
    stx_dtype dt = X->dtype;
    bool ok = dt == STX_DTYPE_FLOAT || dt == STX_DTYPE_DOUBLE ||
              (is_max && (dt == STX_DTYPE_UINT8 || dt == STX_DTYPE_INT8));
    if (!ok)
        return stx__node_err(c, STX_E_UNSUPPORTED, "input X has dtype %s; supported: %s",
                             stx_dtype_name(dt),
                             is_max ? "float32, float64, uint8, int8" : "float32, float64");
    stx__shape_str(X->dims, X->rank, sx, sizeof sx);
    if (X->rank < 3 || X->rank > 5)
        return stx__node_err(c, STX_E_UNSUPPORTED,
                             "input X %s must have rank 3 to 5 (1 to 3 spatial axes)", sx);
    int nsp = X->rank - 2, off = 3 - nsp;
    g->nsp = nsp;
    g->N = X->dims[0];
    g->C = X->dims[1];
    int64_t ks[3], st[3], dl[3], pads[6];
    stx_status r;
    const int64_t *kv;
    if (stx__attr_ints(c->node, "kernel_shape", &kv) <= 0)
        return stx__node_err(c, STX_E_INVALID, "attribute kernel_shape is required");
    if ((r = read_ints(c, "kernel_shape", nsp, 1, ks)) != STX_OK) return r;
    if ((r = read_ints(c, "strides", nsp, 1, st)) != STX_OK) return r;
    if ((r = read_ints(c, "dilations", nsp, 1, dl)) != STX_OK) return r;
    if ((r = read_ints(c, "pads", 2 * nsp, 0, pads)) != STX_OK) return r;
    int mode = parse_auto_pad(stx__attr_str(c->node, "auto_pad", "NOTSET"));
    if (mode < 0) return stx__node_err(c, STX_E_INVALID, "bad auto_pad value");
    int ceil_mode = stx__attr_int(c->node, "ceil_mode", 0) != 0;
    g->include_pad = !is_max && stx__attr_int(c->node, "count_include_pad", 0) != 0;
    g->col_major = is_max && stx__attr_int(c->node, "storage_order", 0) != 0;

    for (int i = 0; i < 3; i++) {
        g->in[i] = g->out[i] = g->k[i] = g->s[i] = g->d[i] = 1;
        g->pb[i] = g->pe[i] = 0;
    }
    for (int i = 0; i < nsp; i++) {
        int a = off + i;
        if (ks[i] < 1 || ks[i] > POOL_ATTR_MAX || st[i] < 1 || st[i] > POOL_ATTR_MAX || dl[i] < 1 ||
            dl[i] > POOL_ATTR_MAX || pads[i] < 0 || pads[nsp + i] < 0 || pads[i] > POOL_ATTR_MAX ||
            pads[nsp + i] > POOL_ATTR_MAX)
            return stx__node_err(c, STX_E_INVALID,
                                 "kernel_shape/strides/dilations must be >= 1 and pads >= 0 "
                                 "(axis %d)",
                                 i);
        int64_t in = X->dims[2 + i], k = ks[i], s = st[i], d = dl[i], ek = (k - 1) * d + 1;
        int64_t pb = pads[i], pe = pads[nsp + i], out;
        if (mode == PAD_SAME_UPPER || mode == PAD_SAME_LOWER) {
            out = div_ceil(in, s);
            int64_t total = (out - 1) * s + ek - in;
            if (total < 0) total = 0;
            pb = mode == PAD_SAME_UPPER ? total / 2 : total - total / 2;
            pe = total - pb;
        } else {
            if (mode == PAD_VALID) pb = pe = 0;
            int64_t span = in + pb + pe - ek;
            if (span < 0)
                return stx__node_err(c, STX_E_SHAPE,
                                     "input %s with pads %lld+%lld is smaller than the kernel "
                                     "extent %lld on spatial axis %d",
                                     sx, (long long)pb, (long long)pe, (long long)ek, i);
            out = (ceil_mode ? div_ceil(span, s) : span / s) + 1;
            /* A window must start inside the input or the begin padding. */
            if (ceil_mode && out > 1 && (out - 1) * s >= in + pb) out--;
        }
        if (in < 1 || out < 1)
            return stx__node_err(c, STX_E_SHAPE, "input %s gives an empty output on axis %d", sx,
                                 i);
        g->in[a] = in;
        g->out[a] = out;
        g->k[a] = k;
        g->s[a] = s;
        g->d[a] = d;
        g->pb[a] = pb;
        g->pe[a] = pe;
    }
    return STX_OK;
}

static stx_status pool_infer_common(stx_op_ctx *c, int is_max) {
    pool_geom g;
    stx_status r = pool_geom_get(c, is_max, &g);
    if (r != STX_OK) return r;
    int64_t dims[5] = {g.N, g.C};
    for (int i = 0; i < g.nsp; i++) dims[2 + i] = g.out[3 - g.nsp + i];
    stx__set_out(c, 0, c->in[0]->dtype, dims, g.nsp + 2);
    if (c->n_out > 1) stx__set_out(c, 1, STX_DTYPE_INT64, dims, g.nsp + 2);
    return STX_OK;
}

static stx_status maxpool_infer(stx_op_ctx *c) {
    return pool_infer_common(c, 1);
}
static stx_status avgpool_infer(stx_op_ctx *c) {
    return pool_infer_common(c, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Reference kernels: one task per (n, c) plane; taps of a window are visited in row-major order.
 * For each output position, the tap range along an axis is the set of j with
 * 0 <= o * s - pad_begin + j * d < in, computed in closed form.
 */
static inline void tap_range(int64_t start, int64_t k, int64_t d, int64_t in, int64_t *lo,
                             int64_t *hi) {
    int64_t l = div_ceil(-start, d), h = div_floor(in - 1 - start, d) + 1;
    *lo = l < 0 ? 0 : l;
    *hi = h > k ? k : h;
}

#define DEFINE_MAXPOOL_REF(NAME, T, LOWEST)                                                        \
    static void NAME(const pool_geom *g, const T *x, T *y, int64_t *ind) {                         \
        const int64_t ID = g->in[0], IH = g->in[1], IW = g->in[2];                                 \
        const int64_t OD = g->out[0], OH = g->out[1], OW = g->out[2];                              \
        const int64_t in_sp = ID * IH * IW, out_sp = OD * OH * OW;                                 \
        const int64_t planes = g->N * g->C;                                                        \
        const int par = planes * out_sp * g->k[0] * g->k[1] * g->k[2] >= POOL_PAR_MIN;             \
        _Pragma("omp parallel for schedule(static) if (par)") for (int64_t p = 0; p < planes;      \
                                                                   p++) {                          \
            const T *xp = x + p * in_sp;                                                           \
            int64_t o = p * out_sp;                                                                \
            for (int64_t od = 0; od < OD; od++) {                                                  \
                int64_t sd = od * g->s[0] - g->pb[0], d0, d1;                                      \
                tap_range(sd, g->k[0], g->d[0], ID, &d0, &d1);                                     \
                for (int64_t oh = 0; oh < OH; oh++) {                                              \
                    int64_t sh = oh * g->s[1] - g->pb[1], h0, h1;                                  \
                    tap_range(sh, g->k[1], g->d[1], IH, &h0, &h1);                                 \
                    for (int64_t ow = 0; ow < OW; ow++, o++) {                                     \
                        int64_t sw = ow * g->s[2] - g->pb[2], w0, w1;                              \
                        tap_range(sw, g->k[2], g->d[2], IW, &w0, &w1);                             \
                        T best = LOWEST;                                                           \
                        int64_t bd = -1, bh = 0, bw = 0;                                           \
                        for (int64_t jd = d0; jd < d1; jd++) {                                     \
                            int64_t id = sd + jd * g->d[0];                                        \
                            for (int64_t jh = h0; jh < h1; jh++) {                                 \
                                int64_t ih = sh + jh * g->d[1];                                    \
                                const T *xr = xp + (id * IH + ih) * IW;                            \
                                for (int64_t jw = w0; jw < w1; jw++) {                             \
                                    int64_t iw = sw + jw * g->d[2];                                \
                                    T v = xr[iw];                                                  \
                                    if (bd < 0 || v > best) {                                      \
                                        best = v;                                                  \
                                        bd = id;                                                   \
                                        bh = ih;                                                   \
                                        bw = iw;                                                   \
                                    }                                                              \
                                }                                                                  \
                            }                                                                      \
                        }                                                                          \
                        y[o] = best;                                                               \
                        if (ind) {                                                                 \
                            int64_t sp = g->col_major ? bd + ID * (bh + IH * bw)                   \
                                                      : (bd * IH + bh) * IW + bw;                  \
                            ind[o] = bd < 0 ? -1 : p * in_sp + sp;                                 \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_MAXPOOL_REF(maxpool_ref_f32, float, -FLT_MAX)
DEFINE_MAXPOOL_REF(maxpool_ref_f64, double, -DBL_MAX)
DEFINE_MAXPOOL_REF(maxpool_ref_u8, uint8_t, 0)
DEFINE_MAXPOOL_REF(maxpool_ref_i8, int8_t, INT8_MIN)

/* Average: the sum over the taps inside the input, divided by their count or, with
 * count_include_pad, by the number of taps inside [-pad_begin, in + pad_end). */
#define DEFINE_AVGPOOL_REF(NAME, T)                                                                \
    static void NAME(const pool_geom *g, const T *x, T *y) {                                       \
        const int64_t ID = g->in[0], IH = g->in[1], IW = g->in[2];                                 \
        const int64_t OD = g->out[0], OH = g->out[1], OW = g->out[2];                              \
        const int64_t in_sp = ID * IH * IW, out_sp = OD * OH * OW;                                 \
        const int64_t planes = g->N * g->C;                                                        \
        const int par = planes * out_sp * g->k[0] * g->k[1] * g->k[2] >= POOL_PAR_MIN;             \
        _Pragma("omp parallel for schedule(static) if (par)") for (int64_t p = 0; p < planes;      \
                                                                   p++) {                          \
            const T *xp = x + p * in_sp;                                                           \
            int64_t o = p * out_sp;                                                                \
            for (int64_t od = 0; od < OD; od++) {                                                  \
                int64_t sd = od * g->s[0] - g->pb[0], d0, d1, pd0, pd1;                            \
                tap_range(sd, g->k[0], 1, ID, &d0, &d1);                                           \
                tap_range(sd + g->pb[0], g->k[0], 1, ID + g->pb[0] + g->pe[0], &pd0, &pd1);        \
                for (int64_t oh = 0; oh < OH; oh++) {                                              \
                    int64_t sh = oh * g->s[1] - g->pb[1], h0, h1, ph0, ph1;                        \
                    tap_range(sh, g->k[1], 1, IH, &h0, &h1);                                       \
                    tap_range(sh + g->pb[1], g->k[1], 1, IH + g->pb[1] + g->pe[1], &ph0, &ph1);    \
                    for (int64_t ow = 0; ow < OW; ow++, o++) {                                     \
                        int64_t sw = ow * g->s[2] - g->pb[2], w0, w1, pw0, pw1;                    \
                        tap_range(sw, g->k[2], 1, IW, &w0, &w1);                                   \
                        tap_range(sw + g->pb[2], g->k[2], 1, IW + g->pb[2] + g->pe[2], &pw0,       \
                                  &pw1);                                                           \
                        T sum = 0;                                                                 \
                        for (int64_t jd = d0; jd < d1; jd++)                                       \
                            for (int64_t jh = h0; jh < h1; jh++) {                                 \
                                const T *xr = xp + ((sd + jd) * IH + sh + jh) * IW;                \
                                for (int64_t jw = w0; jw < w1; jw++) sum += xr[sw + jw];           \
                            }                                                                      \
                        int64_t cnt = g->include_pad ? (pd1 - pd0) * (ph1 - ph0) * (pw1 - pw0)     \
                                                     : (d1 - d0) * (h1 - h0) * (w1 - w0);          \
                        /* An all-padding window (pads >= kernel) has no element: output 0. */     \
                        y[o] = cnt > 0 ? sum / (T)cnt : (T)0;                                      \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_AVGPOOL_REF(avgpool_ref_f32, float)
DEFINE_AVGPOOL_REF(avgpool_ref_f64, double)

static stx_status pool_forward_ref(stx_op_ctx *c, int is_max) {
    pool_geom g;
    stx_status r = pool_geom_get(c, is_max, &g);
    if (r != STX_OK) return r;
    const stx_tensor *X = c->in[0];
    stx_tensor *Y = c->out[0];
    if (stx__numel(Y->dims, Y->rank) == 0) return STX_OK;
    if (is_max) {
        int64_t *ind = c->n_out > 1 && c->out[1] ? (int64_t *)c->out[1]->data : NULL;
        switch (X->dtype) {
        case STX_DTYPE_FLOAT:
            maxpool_ref_f32(&g, X->data, Y->data, ind);
            break;
        case STX_DTYPE_DOUBLE:
            maxpool_ref_f64(&g, X->data, Y->data, ind);
            break;
        case STX_DTYPE_UINT8:
            maxpool_ref_u8(&g, X->data, Y->data, ind);
            break;
        case STX_DTYPE_INT8:
            maxpool_ref_i8(&g, X->data, Y->data, ind);
            break;
        default:
            return stx__node_err(c, STX_E_UNSUPPORTED, "unsupported dtype");
        }
    } else {
        if (X->dtype == STX_DTYPE_FLOAT)
            avgpool_ref_f32(&g, X->data, Y->data);
        else
            avgpool_ref_f64(&g, X->data, Y->data);
    }
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Backward, reference kernels. One task per (n, c) plane as in the forward: a plane's windows
 * only touch that plane of d x, so tasks write disjoint memory and every element receives its
 * contributions in output order (deterministic for any thread count); overlapping windows add.
 *
 * MaxPool  y[o] = x[a(o)], a(o) the selected element: d x[a(o)] += d y[o]. The selection is the
 * forward's (recomputed from x): the first maximum in row-major window order, padding never
 * selected, i.e. the element the Indices output reports; ties (a non-differentiable point) thus
 * give the whole gradient to that first element, as PyTorch does. A window made only of
 * padding selects nothing and passes no gradient.
 */
#define DEFINE_MAXPOOL_BWD(NAME, T, LOWEST)                                                        \
    static void NAME(const pool_geom *g, const T *x, const T *dy, T *dx) {                         \
        const int64_t ID = g->in[0], IH = g->in[1], IW = g->in[2];                                 \
        const int64_t OD = g->out[0], OH = g->out[1], OW = g->out[2];                              \
        const int64_t in_sp = ID * IH * IW, out_sp = OD * OH * OW;                                 \
        const int64_t planes = g->N * g->C;                                                        \
        const int par = planes * out_sp * g->k[0] * g->k[1] * g->k[2] >= POOL_PAR_MIN;             \
        _Pragma("omp parallel for schedule(static) if (par)") for (int64_t p = 0; p < planes;      \
                                                                   p++) {                          \
            const T *xp = x + p * in_sp;                                                           \
            T *dxp = dx + p * in_sp;                                                               \
            int64_t o = p * out_sp;                                                                \
            for (int64_t od = 0; od < OD; od++) {                                                  \
                int64_t sd = od * g->s[0] - g->pb[0], d0, d1;                                      \
                tap_range(sd, g->k[0], g->d[0], ID, &d0, &d1);                                     \
                for (int64_t oh = 0; oh < OH; oh++) {                                              \
                    int64_t sh = oh * g->s[1] - g->pb[1], h0, h1;                                  \
                    tap_range(sh, g->k[1], g->d[1], IH, &h0, &h1);                                 \
                    for (int64_t ow = 0; ow < OW; ow++, o++) {                                     \
                        int64_t sw = ow * g->s[2] - g->pb[2], w0, w1;                              \
                        tap_range(sw, g->k[2], g->d[2], IW, &w0, &w1);                             \
                        T best = LOWEST;                                                           \
                        int64_t at = -1;                                                           \
                        for (int64_t jd = d0; jd < d1; jd++) {                                     \
                            int64_t id = sd + jd * g->d[0];                                        \
                            for (int64_t jh = h0; jh < h1; jh++) {                                 \
                                int64_t ih = sh + jh * g->d[1];                                    \
                                const int64_t row = (id * IH + ih) * IW;                           \
                                for (int64_t jw = w0; jw < w1; jw++) {                             \
                                    int64_t iw = sw + jw * g->d[2];                                \
                                    T v = xp[row + iw];                                            \
                                    if (at < 0 || v > best) {                                      \
                                        best = v;                                                  \
                                        at = row + iw;                                             \
                                    }                                                              \
                                }                                                                  \
                            }                                                                      \
                        }                                                                          \
                        if (at >= 0) dxp[at] += dy[o];                                             \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_MAXPOOL_BWD(maxpool_bwd_f32, float, -FLT_MAX)
DEFINE_MAXPOOL_BWD(maxpool_bwd_f64, double, -DBL_MAX)

/* AveragePool  y[o] = (sum of x over the window's taps inside the input) / cnt(o), cnt as in the
 * forward (count_include_pad, ceil_mode): d x[i] += d y[o] / cnt(o) for every tap i of window o
 * inside the input. An all-padding window (y = 0) passes nothing. */
#define DEFINE_AVGPOOL_BWD(NAME, T)                                                                \
    static void NAME(const pool_geom *g, const T *dy, T *dx) {                                     \
        const int64_t ID = g->in[0], IH = g->in[1], IW = g->in[2];                                 \
        const int64_t OD = g->out[0], OH = g->out[1], OW = g->out[2];                              \
        const int64_t in_sp = ID * IH * IW, out_sp = OD * OH * OW;                                 \
        const int64_t planes = g->N * g->C;                                                        \
        const int par = planes * out_sp * g->k[0] * g->k[1] * g->k[2] >= POOL_PAR_MIN;             \
        _Pragma("omp parallel for schedule(static) if (par)") for (int64_t p = 0; p < planes;      \
                                                                   p++) {                          \
            T *dxp = dx + p * in_sp;                                                               \
            int64_t o = p * out_sp;                                                                \
            for (int64_t od = 0; od < OD; od++) {                                                  \
                int64_t sd = od * g->s[0] - g->pb[0], d0, d1, pd0, pd1;                            \
                tap_range(sd, g->k[0], 1, ID, &d0, &d1);                                           \
                tap_range(sd + g->pb[0], g->k[0], 1, ID + g->pb[0] + g->pe[0], &pd0, &pd1);        \
                for (int64_t oh = 0; oh < OH; oh++) {                                              \
                    int64_t sh = oh * g->s[1] - g->pb[1], h0, h1, ph0, ph1;                        \
                    tap_range(sh, g->k[1], 1, IH, &h0, &h1);                                       \
                    tap_range(sh + g->pb[1], g->k[1], 1, IH + g->pb[1] + g->pe[1], &ph0, &ph1);    \
                    for (int64_t ow = 0; ow < OW; ow++, o++) {                                     \
                        int64_t sw = ow * g->s[2] - g->pb[2], w0, w1, pw0, pw1;                    \
                        tap_range(sw, g->k[2], 1, IW, &w0, &w1);                                   \
                        tap_range(sw + g->pb[2], g->k[2], 1, IW + g->pb[2] + g->pe[2], &pw0,       \
                                  &pw1);                                                           \
                        int64_t cnt = g->include_pad ? (pd1 - pd0) * (ph1 - ph0) * (pw1 - pw0)     \
                                                     : (d1 - d0) * (h1 - h0) * (w1 - w0);          \
                        if (cnt <= 0) continue;                                                    \
                        const T v = dy[o] / (T)cnt;                                                \
                        for (int64_t jd = d0; jd < d1; jd++)                                       \
                            for (int64_t jh = h0; jh < h1; jh++) {                                 \
                                T *dr = dxp + ((sd + jd) * IH + sh + jh) * IW + sw;                \
                                for (int64_t jw = w0; jw < w1; jw++) dr[jw] += v;                  \
                            }                                                                      \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_AVGPOOL_BWD(avgpool_bwd_f32, float)
DEFINE_AVGPOOL_BWD(avgpool_bwd_f64, double)

/* d x += VJP(d y) with the reference kernels; MaxPool reads X (bwd_in bit 0) to find each
 * window's selected element. */
static stx_status pool_backward_ref(stx_op_ctx *c, int is_max) {
    const stx_tensor *X = c->in[0], *dY = c->dout[0];
    stx_tensor *dX = c->din[0];
    if (!dY || !dX) return STX_OK; /* Indices (output 1) is integer: never has a gradient */
    pool_geom g;
    stx_status r = pool_geom_get(c, is_max, &g);
    if (r != STX_OK) return r;
    if (stx__numel(dY->dims, dY->rank) == 0 || stx__numel(X->dims, X->rank) == 0) return STX_OK;
    bool dbl = X->dtype == STX_DTYPE_DOUBLE;
    if ((X->dtype != STX_DTYPE_FLOAT && !dbl) || dY->dtype != X->dtype || dX->dtype != X->dtype)
        return stx__node_err(c, STX_E_UNSUPPORTED, "backward needs float32 or float64 tensors");
    if (is_max) {
        if (!X->data) return stx__node_err(c, STX_E_INTERNAL, "input X holds no data in backward");
        if (dbl)
            maxpool_bwd_f64(&g, X->data, dY->data, dX->data);
        else
            maxpool_bwd_f32(&g, X->data, dY->data, dX->data);
    } else {
        if (dbl)
            avgpool_bwd_f64(&g, dY->data, dX->data);
        else
            avgpool_bwd_f32(&g, dY->data, dX->data);
    }
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * oneDNN path: float32, no Indices output, and a geometry oneDNN reproduces exactly.
 *
 * oneDNN's fast (jit) pooling kernels want channel-blocked layouts (nCdhw16c / nCdhw8c); on the
 * dense layout it only offers generic loops that are no faster than our reference kernel. So
 * the primitive runs on a blocked copy: the input is reordered into it and the result reordered
 * back, through buffers allocated here. When no jit kernel accepts the geometry, the node keeps
 * the reference kernel.
 */
typedef struct pool_state {
    stx_context *ctx;
    dnnl_stream_t stream;
    dnnl_primitive_t prim;
    dnnl_memory_t m_src, m_dst, m_scratch;
    stx_dnnl_reorder re_src, re_dst;
    void *buf_src, *buf_dst, *buf_scratch;
    char impl[64]; /* oneDNN implementation name, for diagnostics */
    /* Backward (when the session runs backward through the node): the forward then runs as
     * forward_training, MaxPool recording the selected taps in a workspace; the backward
     * primitive reads d y in the forward's blocked output layout (reordered into buf_dst) and
     * writes diff_src in the blocked input layout (into buf_src, free once the forward is done),
     * which a summing reorder adds to d x. */
    dnnl_primitive_t bprim; /* NULL: the reference kernel computes d x */
    dnnl_memory_t m_ws, m_ddst, m_dsrc, m_bscratch;
    stx_dnnl_reorder re_ddst, re_acc;
    void *buf_ws, *buf_bscratch;
    int ws_valid; /* the workspace holds the last forward run's selection */
    char bimpl[64];
} pool_state;

static void pool_release(void *p) {
    pool_state *s = p;
    if (!s) return;
    if (s->bprim) dnnl_primitive_destroy(s->bprim);
    dnnl_memory_t bm[] = {s->m_ws, s->m_ddst, s->m_dsrc, s->m_bscratch};
    for (size_t i = 0; i < sizeof bm / sizeof bm[0]; i++)
        if (bm[i]) dnnl_memory_destroy(bm[i]);
    stx__dnnl_reorder_free(&s->re_ddst);
    stx__dnnl_reorder_free(&s->re_acc);
    stx__free(s->ctx, s->buf_ws);
    stx__free(s->ctx, s->buf_bscratch);
    if (s->prim) dnnl_primitive_destroy(s->prim);
    if (s->m_src) dnnl_memory_destroy(s->m_src);
    if (s->m_dst) dnnl_memory_destroy(s->m_dst);
    if (s->m_scratch) dnnl_memory_destroy(s->m_scratch);
    stx__dnnl_reorder_free(&s->re_src);
    stx__dnnl_reorder_free(&s->re_dst);
    if (s->stream) dnnl_stream_destroy(s->stream);
    stx__free(s->ctx, s->buf_src);
    stx__free(s->ctx, s->buf_dst);
    stx__free(s->ctx, s->buf_scratch);
    stx__free(s->ctx, s);
}

/* Channel-blocked tags by rank (3, 4, 5) and block size (16, 8). */
static const dnnl_format_tag_t blocked_tags[3][2] = {
    {dnnl_aBc16b, dnnl_aBc8b}, {dnnl_aBcd16b, dnnl_aBcd8b}, {dnnl_aBcde16b, dnnl_aBcde8b}};

/* Builds the pooling backward primitive of the forward descriptor fd (primitive descriptor
 * fpd, the hint), in the forward's layouts; a jit implementation only, else s->bprim stays NULL
 * and the reference kernel computes d x. Returns dnnl_out_of_memory only for allocation failures;
 * other failures just leave the backward to the reference kernel. */
static dnnl_status_t
pool_bwd_build(pool_state *s, const_dnnl_primitive_desc_t fpd, const dnnl_pooling_v2_desc_t *fd,
               const dnnl_memory_desc_t *src_blk, const dnnl_memory_desc_t *dst_md,
               const dnnl_memory_desc_t *src_user, const dnnl_memory_desc_t *dst_user,
               size_t src_size, size_t dst_size, size_t sp_size) {
    dnnl_pooling_v2_desc_t bd;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_pooling_v2_backward_desc_init(&bd, fd->alg_kind, src_blk, dst_md,
                                                          fd->strides, fd->kernel, fd->dilation,
                                                          fd->padding[0], fd->padding[1]);
    if (st == dnnl_success) st = stx__dnnl_pd_create_hint(&pd, &bd, fpd);
    if (st != dnnl_success) goto fail;
    snprintf(s->bimpl, sizeof s->bimpl, "%s", stx__dnnl_impl_name(pd));
    const dnnl_memory_desc_t *dsrc = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_src_md, 0);
    const dnnl_memory_desc_t *ddst = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0);
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (strncmp(s->bimpl, "jit", 3) != 0 || !dsrc || !ddst || !sp ||
        dnnl_memory_desc_get_size(dsrc) > src_size || dnnl_memory_desc_get_size(ddst) > dst_size) {
        st = dnnl_unimplemented;
        goto fail;
    }
    size_t bsp = dnnl_memory_desc_get_size(sp);
    void *sbuf = s->buf_scratch;
    if (bsp > sp_size) {
        if (!(sbuf = s->buf_bscratch = stx__calloc(s->ctx, 1, bsp))) {
            st = dnnl_out_of_memory;
            goto fail;
        }
    }
    if ((st = stx__dnnl_memory(&s->m_ddst, ddst, s->buf_dst)) != dnnl_success ||
        (st = stx__dnnl_memory(&s->m_dsrc, dsrc, s->buf_src)) != dnnl_success ||
        (bsp > 0 && (st = stx__dnnl_memory(&s->m_bscratch, sp, sbuf)) != dnnl_success) ||
        (st = stx__dnnl_reorder_init(&s->re_ddst, dst_user, ddst)) != dnnl_success ||
        (st = stx__dnnl_reorder_init_acc(&s->re_acc, dsrc, src_user)) != dnnl_success ||
        (st = dnnl_primitive_create(&s->bprim, pd)) != dnnl_success)
        goto fail;
    dnnl_primitive_desc_destroy(pd);
    return dnnl_success;
fail:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (s->bprim) dnnl_primitive_destroy(s->bprim);
    dnnl_memory_t bm[] = {s->m_ddst, s->m_dsrc, s->m_bscratch};
    for (size_t i = 0; i < sizeof bm / sizeof bm[0]; i++)
        if (bm[i]) dnnl_memory_destroy(bm[i]);
    stx__dnnl_reorder_free(&s->re_ddst);
    stx__dnnl_reorder_free(&s->re_acc);
    stx__free(s->ctx, s->buf_bscratch);
    s->bprim = NULL;
    s->m_ddst = s->m_dsrc = s->m_bscratch = NULL;
    s->buf_bscratch = NULL;
    return st;
}

static stx_status pool_prepare_common(stx_op_ctx *c, void **state, int is_max) {
    *state = NULL;
    const stx_tensor *X = c->in[0], *Y = c->out[0];
    if (c->no_dnnl || !X || !Y || X->dtype != STX_DTYPE_FLOAT) return STX_OK;
    if (c->n_out > 1 && c->out[1]) return STX_OK; /* Indices: reference kernel only */
    pool_geom g;
    stx_status r = pool_geom_get(c, is_max, &g);
    if (r != STX_OK) return r;
    if (stx__numel(X->dims, X->rank) == 0 || stx__numel(Y->dims, Y->rank) == 0) return STX_OK;
    int nsp = g.nsp, off = 3 - nsp;
    int overlap = 0; /* windows overlap along some axis */
    dnnl_dims_t strides, kernel, dil, pl, pr;
    for (int i = 0; i < nsp; i++) {
        int a = off + i;
        int64_t ek = (g.k[a] - 1) * g.d[a] + 1;
        overlap |= g.s[a] < ek;
        /* The right padding oneDNN needs for `out` windows; more than the ONNX end pad when
         * ceil_mode lets the last window hang past it. */
        int64_t need = (g.out[a] - 1) * g.s[a] + ek - g.in[a] - g.pb[a];
        strides[i] = g.s[a];
        kernel[i] = g.k[a];
        dil[i] = g.d[a] - 1; /* oneDNN: holes between taps */
        pl[i] = g.pb[a];
        pr[i] = need > g.pe[a] ? need : g.pe[a];
        /* avg_include_padding would count the positions past the end padding. */
        if (g.include_pad && need > g.pe[a]) return STX_OK;
        /* Windows made only of padding: leave those to the reference kernel. */
        if (g.pb[a] >= ek || (g.out[a] - 1) * g.s[a] - g.pb[a] >= g.in[a]) return STX_OK;
    }

    pool_state *s = stx__calloc(c->ctx, 1, sizeof *s);
    if (!s) return stx__node_err(c, STX_E_NOMEM, "out of memory for the oneDNN state");
    s->ctx = c->ctx;
    stx_dnnl_fail f = {dnnl_success, NULL};
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t src_user, dst_user, src_blk, dst_any;
    dnnl_pooling_v2_desc_t desc;
    dnnl_alg_kind_t alg = is_max          ? dnnl_pooling_max
                          : g.include_pad ? dnnl_pooling_avg_include_padding
                                          : dnnl_pooling_avg_exclude_padding;
    /* oneDNN's backward pays two reorders of d x and one of d y: it only beats the reference
     * kernel when windows overlap (several contributions per element of d x). */
    int bwd = c->need_backward && overlap;
    dnnl_prop_kind_t prop = bwd ? dnnl_forward_training : dnnl_forward_inference;
    STX_DNNL_TRY(&f, "stream creation", stx__dnnl_stream_create(&s->stream));
    STX_DNNL_TRY(&f, "memory descriptor",
                 stx__dnnl_md_plain(&src_user, X->dims, X->rank, dnnl_f32));
    STX_DNNL_TRY(&f, "memory descriptor",
                 stx__dnnl_md_plain(&dst_user, Y->dims, Y->rank, dnnl_f32));
    STX_DNNL_TRY(&f, "memory descriptor", stx__dnnl_md_any(&dst_any, Y->dims, Y->rank, dnnl_f32));
    for (int b = 0; b < 2 && !pd; b++) {
        dnnl_dims_t xd;
        for (int i = 0; i < X->rank; i++) xd[i] = X->dims[i];
        if (dnnl_memory_desc_init_by_tag(&src_blk, X->rank, xd, dnnl_f32,
                                         blocked_tags[nsp - 1][b]) != dnnl_success ||
            dnnl_pooling_v2_forward_desc_init(&desc, prop, alg, &src_blk, &dst_any, strides, kernel,
                                              dil, pl, pr) != dnnl_success ||
            stx__dnnl_pd_create(&pd, &desc) != dnnl_success)
            continue;
        if (strncmp(stx__dnnl_impl_name(pd), "jit", 3) != 0) {
            dnnl_primitive_desc_destroy(pd);
            pd = NULL;
        }
    }
    if (!pd) {
        f.status = dnnl_unimplemented;
        f.what = "pooling primitive descriptor";
        goto dnnl_fail;
    }
    snprintf(s->impl, sizeof s->impl, "%s", stx__dnnl_impl_name(pd));
    const dnnl_memory_desc_t *dst_md = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    const dnnl_memory_desc_t *sp_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (!dst_md || !sp_md) {
        f.status = dnnl_runtime_error;
        f.what = "memory descriptor query";
        goto dnnl_fail;
    }
    STX_DNNL_TRY(&f, "input reorder", stx__dnnl_reorder_init(&s->re_src, &src_user, &src_blk));
    STX_DNNL_TRY(&f, "output reorder", stx__dnnl_reorder_init(&s->re_dst, dst_md, &dst_user));
    size_t src_size = dnnl_memory_desc_get_size(&src_blk);
    size_t dst_size = dnnl_memory_desc_get_size(dst_md);
    size_t sp_size = dnnl_memory_desc_get_size(sp_md);
    if (!(s->buf_src = stx__calloc(s->ctx, 1, src_size ? src_size : 1)) ||
        !(s->buf_dst = stx__calloc(s->ctx, 1, dst_size ? dst_size : 1)) ||
        (sp_size > 0 && !(s->buf_scratch = stx__calloc(s->ctx, 1, sp_size)))) {
        dnnl_primitive_desc_destroy(pd);
        pool_release(s);
        return stx__node_err(c, STX_E_NOMEM, "out of memory for oneDNN buffers");
    }
    STX_DNNL_TRY(&f, "memory creation", stx__dnnl_memory(&s->m_src, &src_blk, s->buf_src));
    STX_DNNL_TRY(&f, "memory creation", stx__dnnl_memory(&s->m_dst, dst_md, s->buf_dst));
    if (sp_size > 0)
        STX_DNNL_TRY(&f, "memory creation", stx__dnnl_memory(&s->m_scratch, sp_md, s->buf_scratch));
    STX_DNNL_TRY(&f, "primitive creation", dnnl_primitive_create(&s->prim, pd));
    if (bwd) {
        const dnnl_memory_desc_t *ws_md =
            dnnl_primitive_desc_query_md(pd, dnnl_query_workspace_md, 0);
        size_t ws_size = ws_md ? dnnl_memory_desc_get_size(ws_md) : 0;
        if (ws_size > 0) {
            if (!(s->buf_ws = stx__calloc(s->ctx, 1, ws_size))) {
                f.status = dnnl_out_of_memory;
                f.what = "pooling workspace";
                goto dnnl_fail;
            }
            STX_DNNL_TRY(&f, "memory creation", stx__dnnl_memory(&s->m_ws, ws_md, s->buf_ws));
        }
        dnnl_status_t bs = pool_bwd_build(s, pd, &desc, &src_blk, dst_md, &src_user, &dst_user,
                                          src_size, dst_size, sp_size);
        if (bs == dnnl_out_of_memory) {
            f.status = bs;
            f.what = "pooling backward primitive";
            goto dnnl_fail;
        }
    }
    dnnl_primitive_desc_destroy(pd);
    *state = s;
    return STX_OK;

dnnl_fail:
    if (pd) dnnl_primitive_desc_destroy(pd);
    pool_release(s);
    /* oneDNN has no fast kernel for this geometry: the reference kernel runs instead. */
    if (f.status == dnnl_out_of_memory) return stx__dnnl_err(c, f.status, f.what);
    return STX_OK;
}

static stx_status maxpool_prepare(stx_op_ctx *c, void **state) {
    return pool_prepare_common(c, state, 1);
}
static stx_status avgpool_prepare(stx_op_ctx *c, void **state) {
    return pool_prepare_common(c, state, 0);
}

static stx_status pool_forward_dnnl(stx_op_ctx *c, pool_state *s) {
    stx_dnnl_fail f = {dnnl_success, NULL};
    STX_DNNL_TRY(&f, "input reorder",
                 stx__dnnl_reorder_run(&s->re_src, s->stream, c->in[0]->data, s->buf_src));
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, s->m_src}, {DNNL_ARG_DST, s->m_dst}};
    int na = 2;
    if (s->m_scratch) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, s->m_scratch};
    if (s->m_ws) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, s->m_ws};
    STX_DNNL_TRY(&f, "execute", dnnl_primitive_execute(s->prim, s->stream, na, args));
    STX_DNNL_TRY(&f, "output reorder",
                 stx__dnnl_reorder_run(&s->re_dst, s->stream, s->buf_dst, c->out[0]->data));
    STX_DNNL_TRY(&f, "stream wait", dnnl_stream_wait(s->stream));
    s->ws_valid = 1;
    return STX_OK;
dnnl_fail:
    return stx__dnnl_err(c, f.status, f.what);
}

static stx_status pool_forward(stx_op_ctx *c, int is_max) {
    pool_state *s = c->state;
    if (s && !stx__ops_force_reference) return pool_forward_dnnl(c, s);
    if (s) s->ws_valid = 0; /* the workspace no longer matches the forward values */
    return pool_forward_ref(c, is_max);
}

static stx_status maxpool_forward(stx_op_ctx *c) {
    return pool_forward(c, 1);
}

static stx_status avgpool_forward(stx_op_ctx *c) {
    return pool_forward(c, 0);
}

/* d x += pooling backward of d y through oneDNN (see pool_state). */
static stx_status pool_backward_dnnl(stx_op_ctx *c, pool_state *s, const stx_tensor *dY,
                                     stx_tensor *dX) {
    stx_dnnl_fail f = {dnnl_success, NULL};
    STX_DNNL_TRY(&f, "d y reorder",
                 stx__dnnl_reorder_run(&s->re_ddst, s->stream, dY->data, s->buf_dst));
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_DIFF_DST, s->m_ddst}, {DNNL_ARG_DIFF_SRC, s->m_dsrc}};
    int na = 2;
    if (s->m_bscratch) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, s->m_bscratch};
    if (s->m_ws) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, s->m_ws};
    STX_DNNL_TRY(&f, "backward execute", dnnl_primitive_execute(s->bprim, s->stream, na, args));
    STX_DNNL_TRY(&f, "d x accumulation",
                 stx__dnnl_reorder_run(&s->re_acc, s->stream, s->buf_src, dX->data));
    STX_DNNL_TRY(&f, "stream wait", dnnl_stream_wait(s->stream));
    return STX_OK;
dnnl_fail:
    return stx__dnnl_err(c, f.status, f.what);
}

/* Backward: oneDNN when its primitive was built (float32; MaxPool also needs the workspace of
 * the last forward run, i.e. that run went through oneDNN too), else the reference kernels. */
static stx_status pool_backward(stx_op_ctx *c, int is_max) {
    pool_state *s = c->state;
    const stx_tensor *dY = c->dout[0];
    stx_tensor *dX = c->din[0];
    if (!dY || !dX) return STX_OK;
    if (s && s->bprim && !stx__ops_force_reference && (!s->m_ws || s->ws_valid) &&
        dY->dtype == STX_DTYPE_FLOAT && dX->dtype == STX_DTYPE_FLOAT)
        return pool_backward_dnnl(c, s, dY, dX);
    return pool_backward_ref(c, is_max);
}

static stx_status maxpool_backward(stx_op_ctx *c) {
    return pool_backward(c, 1);
}
static stx_status avgpool_backward(stx_op_ctx *c) {
    return pool_backward(c, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Registration
 */
static const stx_op_def op_maxpool = {.name = "MaxPool",
                                      .min_in = 1,
                                      .max_in = 1,
                                      .min_out = 1,
                                      .max_out = 2,
                                      .attrs = maxpool_attrs,
                                      .check = pool_check,
                                      .infer = maxpool_infer,
                                      .forward = maxpool_forward,
                                      .prepare = maxpool_prepare,
                                      .release = pool_release,
                                      .backward = maxpool_backward,
                                      .bwd_in = 0x1};

static const stx_op_def op_avgpool = {.name = "AveragePool",
                                      .min_in = 1,
                                      .max_in = 1,
                                      .min_out = 1,
                                      .max_out = 1,
                                      .attrs = avgpool_attrs,
                                      .check = pool_check,
                                      .infer = avgpool_infer,
                                      .forward = avgpool_forward,
                                      .prepare = avgpool_prepare,
                                      .release = pool_release,
                                      .backward = avgpool_backward};

const stx_op_def *const stx__ops_pool[] = {&op_maxpool, &op_avgpool, NULL};
