/* conv.c: Conv and ConvTranspose with 1 to 3 spatial dimensions (ONNX opsets 1 and 11; the
 * attributes did not change in between).
 *
 * Two implementations of each op:
 *   - a reference kernel in plain C (direct loops, no im2col), used for float64, for weights that
 *     are not constant at plan time, for geometries oneDNN refuses, during constant folding, and
 *     by tests (stx__ops_force_reference);
 *   - a oneDNN primitive for float32 with constant weights, built in prepare: the primitive picks
 *     its preferred (blocked) layouts, the weights are reordered into that layout once, and at
 *     run time the input/output are reordered from/to the dense row-major stx tensors through
 *     buffers allocated in prepare.
 *
 * Geometry (ONNX Conv spec), per spatial axis i with effective kernel ek = (k - 1) * d + 1:
 *   NOTSET      out = floor((in + pad_begin + pad_end - ek) / s) + 1
 *   VALID       same with zero pads
 *   SAME_UPPER/ out = ceil(in / s), total pad = max(0, (out - 1) * s + ek - in), split in two
 *   SAME_LOWER  halves, the odd element at the end (UPPER) or at the beginning (LOWER).
 * Output element o reads input positions o * s - pad_begin + j * d, j = 0..k-1.
 *
 * ConvTranspose is the adjoint: input position i, kernel tap j write output position
 *   o = i * s + j * d - pad_begin,
 * the full (unpadded) length being s * (in - 1) + output_padding + ek. With output_shape (or
 * SAME_* auto_pad, where out = in * s), total_padding = full - out is split as the ConvTranspose
 * spec says: SAME_UPPER puts the smaller half at the beginning, NOTSET/SAME_LOWER the larger.
 * A negative total padding (output larger than the full length) is clamped to 0 as onnxruntime
 * does: the extra trailing outputs receive no contribution (bias only).
 *
 * Backward (reverse mode): d x of a Conv is a ConvTranspose of d y with the same W and geometry,
 * and d x of a ConvTranspose a Conv of d y; the reference kernels above serve both directions
 * (accumulating into d x), and for float32 with constant weights a oneDNN backward-data primitive
 * is built in prepare when the session runs backward through the node. d w and d b (reference
 * kernels) are computed only when the engine asks for them. See "Backward" below.
 */
#include "dnnl_util.h"
#include "spatial.h"

#include <stdio.h>
#include <string.h>

/* Test-only toggle shared with pool.c (see dnnl_util.h). */
extern int stx__ops_force_reference;
int stx__ops_force_reference = 0;

/* Largest accepted kernel/stride/dilation/pad value: keeps all index arithmetic far from int64
 * overflow whatever a (malformed) model says. */
#define CONV_ATTR_MAX ((int64_t)1 << 31)

/* ---------------------------------------------------------------------------------------------
 * Attributes and geometry
 */

static const char *const conv_attrs[] = {"auto_pad", "dilations", "group", "kernel_shape",
                                         "pads",     "strides",   NULL};
static const char *const convt_attrs[] = {"auto_pad",     "dilations",      "group",
                                          "kernel_shape", "output_padding", "output_shape",
                                          "pads",         "strides",        NULL};

/* Attribute checks that do not need shapes. */
static stx_status conv_check(const stx_node *n, stx_err *e) {
    const char *ap = stx__attr_str(n, "auto_pad", "NOTSET");
    if (parse_auto_pad(ap) < 0)
        return stx__node_err_n(n, e, STX_E_INVALID,
                               "auto_pad '%s' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID",
                               ap);
    int64_t group = stx__attr_int(n, "group", 1);
    if (group < 1 || group > CONV_ATTR_MAX)
        return stx__node_err_n(n, e, STX_E_INVALID, "group must be >= 1, got %lld",
                               (long long)group);
    static const char *const positive[] = {"kernel_shape", "strides", "dilations"};
    for (int a = 0; a < 3; a++) {
        const int64_t *v;
        int cnt = stx__attr_ints(n, positive[a], &v);
        for (int i = 0; i < cnt; i++)
            if (v[i] < 1 || v[i] > CONV_ATTR_MAX)
                return stx__node_err_n(n, e, STX_E_INVALID, "%s[%d] = %lld must be in [1, 2^31]",
                                       positive[a], i, (long long)v[i]);
    }
    static const char *const nonneg[] = {"pads", "output_padding", "output_shape"};
    for (int a = 0; a < 3; a++) {
        const int64_t *v;
        int cnt = stx__attr_ints(n, nonneg[a], &v);
        for (int i = 0; i < cnt; i++)
            if (v[i] < 0 || v[i] > CONV_ATTR_MAX)
                return stx__node_err_n(n, e, STX_E_INVALID, "%s[%d] = %lld must be in [0, 2^31]",
                                       nonneg[a], i, (long long)v[i]);
    }
    return STX_OK;
}

/* Resolved geometry. Spatial arrays are normalised to 3 axes (D, H, W): a 1-D conv uses only
 * index 2, a 2-D conv indices 1..2; unused leading axes have size 1, kernel 1, stride 1, no pad.
 * This lets one set of loops serve every rank. */
typedef struct conv_geom {
    int nsp;            /* spatial axes of the model: 1..3 */
    int transpose;      /* ConvTranspose */
    int64_t N, C, M, G; /* batch, input channels, output channels, groups */
    int64_t in[3], out[3];
    int64_t k[3], s[3], d[3];
    int64_t pb[3], pe[3]; /* pads at the beginning/end (ConvTranspose: pe may be < 0) */
    int has_bias;
} conv_geom;

/* Reads an optional ints attribute of exactly `want` values (absent/empty: def for all). */
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

static bool float_dtype(stx_dtype t) {
    return t == STX_DTYPE_FLOAT || t == STX_DTYPE_DOUBLE;
}

static stx_status conv_geom_get(stx_op_ctx *c, int transpose, conv_geom *g) {
    const stx_tensor *X = c->in[0], *W = c->n_in > 1 ? c->in[1] : NULL;
    const stx_tensor *B = c->n_in > 2 ? c->in[2] : NULL;
    char sx[128], sw[128], sb[128];
    memset(g, 0, sizeof *g);
    g->transpose = transpose;
    if (!X || !W) return stx__node_err(c, STX_E_INVALID, "inputs X and W are required");
    if (!float_dtype(X->dtype))
        return stx__node_err(c, STX_E_UNSUPPORTED,
                             "input X has dtype %s; only float32 and float64 are supported",
                             stx_dtype_name(X->dtype));
    if (W->dtype != X->dtype || (B && B->dtype != X->dtype))
        return stx__node_err(c, STX_E_INVALID, "X (%s), W (%s)%s%s must have the same dtype",
                             stx_dtype_name(X->dtype), stx_dtype_name(W->dtype), B ? " and B " : "",
                             B ? stx_dtype_name(B->dtype) : "");
    stx__shape_str(X->dims, X->rank, sx, sizeof sx);
    stx__shape_str(W->dims, W->rank, sw, sizeof sw);
    if (X->rank < 3 || X->rank > 5)
        return stx__node_err(c, STX_E_UNSUPPORTED,
                             "input X %s must have rank 3 to 5 (1 to 3 spatial axes)", sx);
    if (W->rank != X->rank)
        return stx__node_err(c, STX_E_SHAPE, "weights W %s must have the rank of X %s", sw, sx);
    int nsp = X->rank - 2, off = 3 - nsp;
    g->nsp = nsp;
    g->G = stx__attr_int(c->node, "group", 1);
    g->N = X->dims[0];
    g->C = X->dims[1];
    if (g->G < 1) return stx__node_err(c, STX_E_INVALID, "group must be >= 1");
    if (!transpose) {
        /* W: [M, C/group, k...] */
        g->M = W->dims[0];
        if (W->dims[1] * g->G != g->C || g->M % g->G != 0)
            return stx__node_err(c, STX_E_SHAPE,
                                 "X %s and W %s do not match group=%lld: need W[1]*group = C "
                                 "and W[0] divisible by group",
                                 sx, sw, (long long)g->G);
    } else {
        /* W: [C, M/group, k...] */
        if (W->dims[0] != g->C || g->C % g->G != 0)
            return stx__node_err(c, STX_E_SHAPE,
                                 "X %s and W %s do not match group=%lld: need W[0] = C and C "
                                 "divisible by group",
                                 sx, sw, (long long)g->G);
        g->M = W->dims[1] * g->G;
    }
    if (B) {
        stx__shape_str(B->dims, B->rank, sb, sizeof sb);
        if (B->rank != 1 || B->dims[0] != g->M)
            return stx__node_err(c, STX_E_SHAPE, "bias B %s must have shape [%lld]", sb,
                                 (long long)g->M);
        g->has_bias = 1;
    }

    int64_t ks[3], st[3], dl[3], pads[6], opad[3];
    stx_status r;
    if ((r = read_ints(c, "kernel_shape", nsp, -1, ks)) != STX_OK) return r;
    if ((r = read_ints(c, "strides", nsp, 1, st)) != STX_OK) return r;
    if ((r = read_ints(c, "dilations", nsp, 1, dl)) != STX_OK) return r;
    if ((r = read_ints(c, "pads", 2 * nsp, 0, pads)) != STX_OK) return r;
    if ((r = read_ints(c, "output_padding", nsp, 0, opad)) != STX_OK) return r;
    int mode = parse_auto_pad(stx__attr_str(c->node, "auto_pad", "NOTSET"));
    if (mode < 0) return stx__node_err(c, STX_E_INVALID, "bad auto_pad value");
    int64_t oshape[5];
    int n_oshape = 0;
    if (transpose) {
        const int64_t *v;
        n_oshape = stx__attr_ints(c->node, "output_shape", &v);
        /* output_shape lists the spatial sizes; some exporters give the full shape (N, C, ...). */
        if (n_oshape > 0 && n_oshape != nsp && n_oshape != nsp + 2)
            return stx__node_err(c, STX_E_INVALID,
                                 "output_shape has %d values, expected %d (spatial axes)", n_oshape,
                                 nsp);
        for (int i = 0; i < nsp && n_oshape > 0; i++) oshape[i] = v[n_oshape - nsp + i];
    }

    for (int i = 0; i < 3; i++) {
        g->in[i] = g->out[i] = g->k[i] = g->s[i] = g->d[i] = 1;
        g->pb[i] = g->pe[i] = 0;
    }
    for (int i = 0; i < nsp; i++) {
        int a = off + i;
        int64_t kw = W->dims[2 + i];
        if (ks[i] >= 0 && ks[i] != kw)
            return stx__node_err(c, STX_E_SHAPE, "kernel_shape[%d] = %lld but W %s has %lld", i,
                                 (long long)ks[i], sw, (long long)kw);
        if (st[i] < 1 || dl[i] < 1 || pads[i] < 0 || pads[nsp + i] < 0 || opad[i] < 0)
            return stx__node_err(c, STX_E_INVALID,
                                 "strides/dilations must be >= 1 and pads >= 0 (axis %d)", i);
        if (kw < 1 || kw > CONV_ATTR_MAX)
            return stx__node_err(c, STX_E_SHAPE, "kernel size %lld of W %s is out of range",
                                 (long long)kw, sw);
        int64_t in = X->dims[2 + i], s = st[i], d = dl[i], ek = (kw - 1) * d + 1;
        int64_t pb = pads[i], pe = pads[nsp + i], out;
        g->in[a] = in;
        g->k[a] = kw;
        g->s[a] = s;
        g->d[a] = d;
        if (!transpose) {
            if (mode == PAD_VALID) {
                pb = pe = 0;
            } else if (mode == PAD_SAME_UPPER || mode == PAD_SAME_LOWER) {
                int64_t o = div_ceil(in, s), total = (o - 1) * s + ek - in;
                if (total < 0) total = 0;
                pb = mode == PAD_SAME_UPPER ? total / 2 : total - total / 2;
                pe = total - pb;
            }
            if (in + pb + pe < ek)
                return stx__node_err(c, STX_E_SHAPE,
                                     "input %s with pads %lld+%lld is smaller than the dilated "
                                     "kernel %lld on spatial axis %d",
                                     sx, (long long)pb, (long long)pe, (long long)ek, i);
            out = (in + pb + pe - ek) / s + 1;
        } else {
            if (in < 1)
                return stx__node_err(c, STX_E_SHAPE, "input %s has an empty spatial axis", sx);
            int64_t full = s * (in - 1) + opad[i] + ek;
            if (n_oshape > 0 || mode == PAD_SAME_UPPER || mode == PAD_SAME_LOWER) {
                out = n_oshape > 0 ? oshape[i] : in * s;
                int64_t total = full - out;
                if (total < 0) total = 0;
                pb = mode == PAD_SAME_UPPER ? total / 2 : total - total / 2;
            } else {
                if (mode == PAD_VALID) pb = pe = 0;
                out = full - pb - pe;
            }
            if (out < 1)
                return stx__node_err(c, STX_E_SHAPE,
                                     "output size %lld on spatial axis %d is not positive (X %s, "
                                     "W %s, pads %lld+%lld)",
                                     (long long)out, i, sx, sw, (long long)pb, (long long)pe);
            /* pe: what is cut from the end of the full length (negative: outputs added). */
            pe = full - opad[i] - pb - out;
        }
        g->out[a] = out;
        g->pb[a] = pb;
        g->pe[a] = pe;
    }
    return STX_OK;
}

static stx_status conv_infer_common(stx_op_ctx *c, int transpose) {
    conv_geom g;
    stx_status r = conv_geom_get(c, transpose, &g);
    if (r != STX_OK) return r;
    int64_t dims[5] = {g.N, g.M};
    for (int i = 0; i < g.nsp; i++) dims[2 + i] = g.out[3 - g.nsp + i];
    stx__set_out(c, 0, c->in[0]->dtype, dims, g.nsp + 2);
    return STX_OK;
}

static stx_status conv_infer(stx_op_ctx *c) {
    return conv_infer_common(c, 0);
}
static stx_status convt_infer(stx_op_ctx *c) {
    return conv_infer_common(c, 1);
}

/* MACs: every output element of Conv costs C/group * prod(k); for ConvTranspose every input
 * element is spread over M/group * prod(k) outputs. Both equal numel(other) * numel(W) / W[0]. */
static int64_t conv_macs(const stx_op_ctx *c) {
    const stx_tensor *W = c->in[1], *Y = c->out[0];
    if (!W || !Y || W->rank < 1 || W->dims[0] <= 0) return 0;
    return stx__numel(Y->dims, Y->rank) * (stx__numel(W->dims, W->rank) / W->dims[0]);
}

static int64_t convt_macs(const stx_op_ctx *c) {
    const stx_tensor *X = c->in[0], *W = c->in[1];
    if (!X || !W || W->rank < 1 || W->dims[0] <= 0) return 0;
    return stx__numel(X->dims, X->rank) * (stx__numel(W->dims, W->rank) / W->dims[0]);
}

/* ---------------------------------------------------------------------------------------------
 * Reference kernels
 *
 * Conv: one task per (n, block of up to CONV_MB output channels of one group), so tasks never
 * write the same memory. Within a task, output rows (od, oh) are produced one at a time: the
 * rows of the block are set to the bias, then every (input channel, kd, kh, kw) tap adds
 * w * x over the range of ow whose input column lies inside the image. The rows stay in L1
 * while all taps accumulate into them, each loaded x feeds CONV_MB output channels, and for
 * stride 1 the inner loop is contiguous. Every output element sums its taps in the same order
 * (ci, kd, kh, kw) whatever the blocking and thread count, so results are reproducible.
 * With acc = 1 the rows are not initialised: the taps add to what y holds (and b is ignored);
 * the backward pass uses this to accumulate input gradients.
 */
#define CONV_PAR_MIN 32768 /* below this many MACs, stay single-threaded */
#define CONV_MB 4          /* output channels per task (register blocking) */

#define DEFINE_CONV_REF(NAME, T)                                                                   \
    static void NAME(const conv_geom *g, const T *x, const T *w, const T *b, T *y, int acc) {      \
        const int64_t ID = g->in[0], IH = g->in[1], IW = g->in[2];                                 \
        const int64_t OD = g->out[0], OH = g->out[1], OW = g->out[2];                              \
        const int64_t KD = g->k[0], KH = g->k[1], KW = g->k[2];                                    \
        const int64_t Cg = g->C / g->G, Mg = g->M / g->G;                                          \
        const int64_t in_sp = ID * IH * IW, out_sp = OD * OH * OW, ksz = KD * KH * KW;             \
        const int64_t nblk = (Mg + CONV_MB - 1) / CONV_MB; /* channel blocks per group */          \
        const int64_t tasks = g->N * g->G * nblk;                                                  \
        const int64_t sw = g->s[2];                                                                \
        const int par = g->N * g->M * out_sp * Cg * ksz >= CONV_PAR_MIN;                           \
        _Pragma("omp parallel for schedule(dynamic, 1) if (par)") for (int64_t t = 0; t < tasks;   \
                                                                       t++) {                      \
            const int64_t n = t / (g->G * nblk), grp = (t / nblk) % g->G, blk = t % nblk;          \
            const int64_t m0 = grp * Mg + blk * CONV_MB;                                           \
            const int64_t nm = Mg - blk * CONV_MB < CONV_MB ? Mg - blk * CONV_MB : CONV_MB;        \
            const T *xn = x + (n * g->C + grp * Cg) * in_sp;                                       \
            for (int64_t od = 0; od < OD; od++)                                                    \
                for (int64_t oh = 0; oh < OH; oh++) {                                              \
                    T *yr[CONV_MB];                                                                \
                    for (int64_t j = 0; j < nm; j++) {                                             \
                        yr[j] = y + ((n * g->M + m0 + j) * OD * OH + od * OH + oh) * OW;           \
                        const T bias = b ? b[m0 + j] : (T)0;                                       \
                        if (!acc)                                                                  \
                            for (int64_t ow = 0; ow < OW; ow++) yr[j][ow] = bias;                  \
                    }                                                                              \
                    for (int64_t ci = 0; ci < Cg; ci++) {                                          \
                        const T *xc = xn + ci * in_sp;                                             \
                        for (int64_t kd = 0; kd < KD; kd++) {                                      \
                            int64_t id = od * g->s[0] - g->pb[0] + kd * g->d[0];                   \
                            if (id < 0 || id >= ID) continue;                                      \
                            for (int64_t kh = 0; kh < KH; kh++) {                                  \
                                int64_t ih = oh * g->s[1] - g->pb[1] + kh * g->d[1];               \
                                if (ih < 0 || ih >= IH) continue;                                  \
                                const T *xr = xc + (id * IH + ih) * IW;                            \
                                /* w[m, ci, kd, kh, 0] for m = m0 */                               \
                                const T *wr = w + ((m0 * Cg + ci) * KD + kd) * KH * KW + kh * KW;  \
                                for (int64_t kw = 0; kw < KW; kw++) {                              \
                                    /* iw = ow * sw + shift must lie in [0, IW) */                 \
                                    const int64_t shift = kw * g->d[2] - g->pb[2];                 \
                                    int64_t lo = div_ceil(-shift, sw);                             \
                                    int64_t hi = div_floor(IW - 1 - shift, sw) + 1;                \
                                    if (lo < 0) lo = 0;                                            \
                                    if (hi > OW) hi = OW;                                          \
                                    if (nm == CONV_MB) {                                           \
                                        const T w0 = wr[kw], w1 = wr[Cg * ksz + kw];               \
                                        const T w2 = wr[2 * Cg * ksz + kw];                        \
                                        const T w3 = wr[3 * Cg * ksz + kw];                        \
                                        T *restrict y0 = yr[0], *restrict y1 = yr[1];              \
                                        T *restrict y2 = yr[2], *restrict y3 = yr[3];              \
                                        for (int64_t ow = lo; ow < hi; ow++) {                     \
                                            const T xv = xr[ow * sw + shift];                      \
                                            y0[ow] += w0 * xv;                                     \
                                            y1[ow] += w1 * xv;                                     \
                                            y2[ow] += w2 * xv;                                     \
                                            y3[ow] += w3 * xv;                                     \
                                        }                                                          \
                                    } else {                                                       \
                                        for (int64_t j = 0; j < nm; j++) {                         \
                                            const T wv = wr[j * Cg * ksz + kw];                    \
                                            T *restrict yj = yr[j];                                \
                                            for (int64_t ow = lo; ow < hi; ow++)                   \
                                                yj[ow] += wv * xr[ow * sw + shift];                \
                                        }                                                          \
                                    }                                                              \
                                }                                                                  \
                            }                                                                      \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
        }                                                                                          \
    }

/* ConvTranspose: one task per (n, block of up to CONV_MB output channels of one group) as well.
 * The block's planes are set to the bias (unless acc = 1: accumulate into y), then each input
 * channel of the group scatters x[i] * w[j] into o = i * s + j * d - pad_begin of every plane of
 * the block (each loaded x feeds CONV_MB planes). Every output element receives its terms in the
 * order (ci, id, kd, ih, kh, kw) whatever the blocking and thread count. */
#define DEFINE_CONVT_REF(NAME, T)                                                                  \
    static void NAME(const conv_geom *g, const T *x, const T *w, const T *b, T *y, int acc) {      \
        const int64_t ID = g->in[0], IH = g->in[1], IW = g->in[2];                                 \
        const int64_t OD = g->out[0], OH = g->out[1], OW = g->out[2];                              \
        const int64_t KD = g->k[0], KH = g->k[1], KW = g->k[2];                                    \
        const int64_t Cg = g->C / g->G, Mg = g->M / g->G;                                          \
        const int64_t in_sp = ID * IH * IW, out_sp = OD * OH * OW, ksz = KD * KH * KW;             \
        const int64_t nblk = (Mg + CONV_MB - 1) / CONV_MB; /* channel blocks per group */          \
        const int64_t tasks = g->N * g->G * nblk;                                                  \
        const int par = g->N * g->M * in_sp * Cg * ksz >= CONV_PAR_MIN;                            \
        _Pragma("omp parallel for schedule(dynamic, 1) if (par)") for (int64_t t = 0; t < tasks;   \
                                                                       t++) {                      \
            const int64_t n = t / (g->G * nblk), grp = (t / nblk) % g->G, blk = t % nblk;          \
            const int64_t ml0 = blk * CONV_MB, m0 = grp * Mg + ml0;                                \
            const int64_t nm = Mg - ml0 < CONV_MB ? Mg - ml0 : CONV_MB;                            \
            T *yp[CONV_MB];                                                                        \
            for (int64_t j = 0; j < nm; j++) {                                                     \
                yp[j] = y + (n * g->M + m0 + j) * out_sp;                                          \
                const T bias = b ? b[m0 + j] : (T)0;                                               \
                if (!acc)                                                                          \
                    for (int64_t o = 0; o < out_sp; o++) yp[j][o] = bias;                          \
            }                                                                                      \
            for (int64_t ci = 0; ci < Cg; ci++) {                                                  \
                const int64_t cg = grp * Cg + ci; /* input channel = row of W */                   \
                const T *xc = x + (n * g->C + cg) * in_sp;                                         \
                const T *wc = w + (cg * Mg + ml0) * ksz; /* w[cg, ml0 + j] at wc + j * ksz */      \
                for (int64_t id = 0; id < ID; id++)                                                \
                    for (int64_t kd = 0; kd < KD; kd++) {                                          \
                        int64_t od = id * g->s[0] + kd * g->d[0] - g->pb[0];                       \
                        if (od < 0 || od >= OD) continue;                                          \
                        for (int64_t ih = 0; ih < IH; ih++)                                        \
                            for (int64_t kh = 0; kh < KH; kh++) {                                  \
                                int64_t oh = ih * g->s[1] + kh * g->d[1] - g->pb[1];               \
                                if (oh < 0 || oh >= OH) continue;                                  \
                                const T *xr = xc + (id * IH + ih) * IW;                            \
                                const int64_t yo = (od * OH + oh) * OW;                            \
                                const T *wr = wc + (kd * KH + kh) * KW;                            \
                                for (int64_t kw = 0; kw < KW; kw++) {                              \
                                    /* ow = iw * sw + shift must lie in [0, OW) */                 \
                                    const int64_t sw = g->s[2], shift = kw * g->d[2] - g->pb[2];   \
                                    int64_t lo = div_ceil(-shift, sw);                             \
                                    int64_t hi = div_floor(OW - 1 - shift, sw) + 1;                \
                                    if (lo < 0) lo = 0;                                            \
                                    if (hi > IW) hi = IW;                                          \
                                    if (nm == CONV_MB) {                                           \
                                        const T w0 = wr[kw], w1 = wr[ksz + kw];                    \
                                        const T w2 = wr[2 * ksz + kw], w3 = wr[3 * ksz + kw];      \
                                        T *restrict y0 = yp[0] + yo;                               \
                                        T *restrict y1 = yp[1] + yo;                               \
                                        T *restrict y2 = yp[2] + yo;                               \
                                        T *restrict y3 = yp[3] + yo;                               \
                                        for (int64_t iw = lo; iw < hi; iw++) {                     \
                                            const T xv = xr[iw];                                   \
                                            y0[iw * sw + shift] += w0 * xv;                        \
                                            y1[iw * sw + shift] += w1 * xv;                        \
                                            y2[iw * sw + shift] += w2 * xv;                        \
                                            y3[iw * sw + shift] += w3 * xv;                        \
                                        }                                                          \
                                    } else {                                                       \
                                        for (int64_t j = 0; j < nm; j++) {                         \
                                            const T wv = wr[j * ksz + kw];                         \
                                            T *restrict yj = yp[j] + yo;                           \
                                            for (int64_t iw = lo; iw < hi; iw++)                   \
                                                yj[iw * sw + shift] += wv * xr[iw];                \
                                        }                                                          \
                                    }                                                              \
                                }                                                                  \
                            }                                                                      \
                    }                                                                              \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_CONV_REF(conv_ref_f32, float)
DEFINE_CONV_REF(conv_ref_f64, double)
DEFINE_CONVT_REF(convt_ref_f32, float)
DEFINE_CONVT_REF(convt_ref_f64, double)

static stx_status conv_forward_ref(stx_op_ctx *c, int transpose) {
    conv_geom g;
    stx_status r = conv_geom_get(c, transpose, &g);
    if (r != STX_OK) return r;
    const stx_tensor *X = c->in[0], *W = c->in[1], *B = c->n_in > 2 ? c->in[2] : NULL;
    stx_tensor *Y = c->out[0];
    if (stx__numel(Y->dims, Y->rank) == 0) return STX_OK;
    if (X->dtype == STX_DTYPE_FLOAT) {
        const float *b = B ? (const float *)B->data : NULL;
        if (transpose)
            convt_ref_f32(&g, X->data, W->data, b, Y->data, 0);
        else
            conv_ref_f32(&g, X->data, W->data, b, Y->data, 0);
    } else {
        const double *b = B ? (const double *)B->data : NULL;
        if (transpose)
            convt_ref_f64(&g, X->data, W->data, b, Y->data, 0);
        else
            conv_ref_f64(&g, X->data, W->data, b, Y->data, 0);
    }
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Backward, reference kernels
 *
 * Conv  y[n, m, o] = b[m] + sum_{c in group(m), k} w[m, c', k] x[n, c, o*s - pb + k*d]  (c' = c
 * within its group) is linear in each of x, w and b, so its vector-Jacobian products are
 *   d x[n, c, i]  += sum_{m in group(c), o, k with i = o*s - pb + k*d} w[m, c', k] d y[n, m, o]
 *                    = ConvTranspose of d y with the same W, strides, dilations, begin pads and
 *                    groups (W [M, C/G, k] read as ConvTranspose weights [in M, out/G C/G, k]);
 *   d w[m, c', k] += sum_{n, o} d y[n, m, o] x[n, c, o*s - pb + k*d];
 *   d b[m]        += sum_{n, o} d y[n, m, o].
 * ConvTranspose  y[n, m, i*s - pb + k*d] += w[c, m', k] x[n, c, i]  is the adjoint of a Conv
 * from y's shape to x's, so
 *   d x[n, c, i]  += sum_{m in group(c), k} w[c, m', k] d y[n, m, i*s - pb + k*d]
 *                    = Conv of d y with W (W [C, M/G, k] read as Conv weights [out C, in/G, k]);
 *   d w[c, m', k] += sum_{n, i} x[n, c, i] d y[n, m, i*s - pb + k*d];
 *   d b[m]        += sum_{n, o} d y[n, m, o].
 * Both weight gradients are one correlation over a Conv-shaped geometry in which `a` is read at
 * o*s - pb + k*d while `b` runs over o: (a, b) = (x, d y) with the Conv geometry, and (d y, x)
 * with the ConvTranspose geometry swapped (geom_swap). Weight gradients are only computed when
 * the engine asks for them (weights that are graph values, never initialisers).
 */

/* The geometry of the adjoint op: input and output (spatial sizes and channel counts) swapped,
 * kernel, strides, dilations, begin pads and groups unchanged. */
static conv_geom geom_swap(const conv_geom *g) {
    conv_geom v = *g;
    v.transpose = !g->transpose;
    v.C = g->M;
    v.M = g->C;
    for (int i = 0; i < 3; i++) {
        v.in[i] = g->out[i];
        v.out[i] = g->in[i];
    }
    v.has_bias = 0;
    return v;
}

/* d w[m, c', k] += sum_{n, o} b[n, m, o] a[n, grp(m) * C/G + c', o*s - pb + k*d] over the Conv
 * geometry g (a: g->in, g->C channels; b: g->out, g->M channels). One task per (m, c') pair:
 * tasks own disjoint weight rows, each tap is a fixed-order sum (deterministic). */
#define DEFINE_CONV_DW(NAME, T)                                                                    \
    static void NAME(const conv_geom *g, const T *a, const T *b, T *dw) {                          \
        const int64_t ID = g->in[0], IH = g->in[1], IW = g->in[2];                                 \
        const int64_t OD = g->out[0], OH = g->out[1], OW = g->out[2];                              \
        const int64_t KD = g->k[0], KH = g->k[1], KW = g->k[2];                                    \
        const int64_t Cg = g->C / g->G, Mg = g->M / g->G;                                          \
        const int64_t in_sp = ID * IH * IW, out_sp = OD * OH * OW, ksz = KD * KH * KW;             \
        const int64_t tasks = g->M * Cg, sw = g->s[2];                                             \
        const int par = g->N * tasks * out_sp * ksz >= CONV_PAR_MIN;                               \
        _Pragma("omp parallel for schedule(dynamic, 1) if (par)") for (int64_t t = 0; t < tasks;   \
                                                                       t++) {                      \
            const int64_t m = t / Cg, cl = t % Cg, grp = m / Mg;                                   \
            T *dwp = dw + t * ksz; /* w[m, cl, ...]: row t of the [M * C/G, ksz] matrix */         \
            for (int64_t kd = 0; kd < KD; kd++)                                                    \
                for (int64_t kh = 0; kh < KH; kh++)                                                \
                    for (int64_t kw = 0; kw < KW; kw++) {                                          \
                        const int64_t shift = kw * g->d[2] - g->pb[2];                             \
                        int64_t lo = div_ceil(-shift, sw);                                         \
                        int64_t hi = div_floor(IW - 1 - shift, sw) + 1;                            \
                        if (lo < 0) lo = 0;                                                        \
                        if (hi > OW) hi = OW;                                                      \
                        T acc = 0;                                                                 \
                        for (int64_t n = 0; n < g->N; n++) {                                       \
                            const T *ac = a + (n * g->C + grp * Cg + cl) * in_sp;                  \
                            const T *bc = b + (n * g->M + m) * out_sp;                             \
                            for (int64_t od = 0; od < OD; od++) {                                  \
                                int64_t id = od * g->s[0] - g->pb[0] + kd * g->d[0];               \
                                if (id < 0 || id >= ID) continue;                                  \
                                for (int64_t oh = 0; oh < OH; oh++) {                              \
                                    int64_t ih = oh * g->s[1] - g->pb[1] + kh * g->d[1];           \
                                    if (ih < 0 || ih >= IH) continue;                              \
                                    const T *ar = ac + (id * IH + ih) * IW;                        \
                                    const T *br = bc + (od * OH + oh) * OW;                        \
                                    for (int64_t ow = lo; ow < hi; ow++)                           \
                                        acc += br[ow] * ar[ow * sw + shift];                       \
                                }                                                                  \
                            }                                                                      \
                        }                                                                          \
                        dwp[(kd * KH + kh) * KW + kw] += acc;                                      \
                    }                                                                              \
        }                                                                                          \
    }

/* d b[m] += sum over batch and positions of d y[n, m, ...]. */
#define DEFINE_CONV_DB(NAME, T)                                                                    \
    static void NAME(int64_t N, int64_t M, int64_t sp, const T *dy, T *db) {                       \
        const int par = N * M * sp >= CONV_PAR_MIN;                                                \
        _Pragma("omp parallel for schedule(static) if (par)") for (int64_t m = 0; m < M; m++) {    \
            T acc = 0;                                                                             \
            for (int64_t n = 0; n < N; n++) {                                                      \
                const T *p = dy + (n * M + m) * sp;                                                \
                for (int64_t i = 0; i < sp; i++) acc += p[i];                                      \
            }                                                                                      \
            db[m] += acc;                                                                          \
        }                                                                                          \
    }

DEFINE_CONV_DW(conv_dw_f32, float)
DEFINE_CONV_DW(conv_dw_f64, double)
DEFINE_CONV_DB(conv_db_f32, float)
DEFINE_CONV_DB(conv_db_f64, double)

/* d x through the reference kernels (accumulating): see the block comment above. */
static void conv_dx_ref(const conv_geom *g, const stx_tensor *dY, const stx_tensor *W,
                        stx_tensor *dX) {
    conv_geom v = geom_swap(g);
    bool dbl = dY->dtype == STX_DTYPE_DOUBLE;
    if (!g->transpose) {
        if (dbl)
            convt_ref_f64(&v, dY->data, W->data, NULL, dX->data, 1);
        else
            convt_ref_f32(&v, dY->data, W->data, NULL, dX->data, 1);
    } else {
        if (dbl)
            conv_ref_f64(&v, dY->data, W->data, NULL, dX->data, 1);
        else
            conv_ref_f32(&v, dY->data, W->data, NULL, dX->data, 1);
    }
}

static void conv_dw_ref(const conv_geom *g, const stx_tensor *X, const stx_tensor *dY,
                        stx_tensor *dW) {
    bool dbl = dY->dtype == STX_DTYPE_DOUBLE;
    if (!g->transpose) {
        if (dbl)
            conv_dw_f64(g, X->data, dY->data, dW->data);
        else
            conv_dw_f32(g, X->data, dY->data, dW->data);
    } else {
        conv_geom v = geom_swap(g);
        if (dbl)
            conv_dw_f64(&v, dY->data, X->data, dW->data);
        else
            conv_dw_f32(&v, dY->data, X->data, dW->data);
    }
}

/* ---------------------------------------------------------------------------------------------
 * oneDNN path (float32, constant weights)
 */

/* Backward-data primitive (built when the session runs backward through the node): d x from
 * d y with the constant weights reordered once into the layout the primitive wants. d y is
 * reordered into the primitive's diff_dst layout (or read in place when it is plain), diff_src
 * is written to a buffer and accumulated into d x by a reorder with a sum post-op. The staging
 * buffers of the forward pass are borrowed when large enough: a node's forward and backward
 * never run at the same time. */
typedef struct conv_bwd {
    dnnl_primitive_t prim;
    dnnl_memory_t m_wei, m_ddst, m_dsrc, m_scratch;
    stx_dnnl_reorder re_ddst; /* d y -> diff_dst layout; .prim NULL: d y used in place */
    stx_dnnl_reorder re_acc;  /* diff_src layout -> d x, accumulating */
    void *ddst, *dsrc;        /* staging buffers (owned or borrowed) */
    void *own_wei, *own_ddst, *own_dsrc, *own_scratch; /* what this struct allocated */
    char impl[64];
} conv_bwd;

typedef struct conv_state {
    stx_context *ctx;
    dnnl_stream_t stream;
    dnnl_primitive_t prim;
    dnnl_memory_t m_src, m_wei, m_bias, m_dst, m_scratch;
    stx_dnnl_reorder re_src, re_dst; /* .prim NULL when the user layout is used directly */
    void *buf_src, *buf_dst, *buf_wei, *buf_scratch;
    size_t sz_src, sz_dst, sz_scratch; /* sizes of the forward staging buffers (0: none) */
    int has_bias;
    char impl[64]; /* oneDNN implementation name, for diagnostics */
    conv_bwd bwd;  /* .prim NULL: the reference kernel computes d x */
} conv_state;

static void conv_bwd_free(stx_context *ctx, conv_bwd *b) {
    if (b->prim) dnnl_primitive_destroy(b->prim);
    dnnl_memory_t mems[] = {b->m_wei, b->m_ddst, b->m_dsrc, b->m_scratch};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    stx__dnnl_reorder_free(&b->re_ddst);
    stx__dnnl_reorder_free(&b->re_acc);
    stx__free(ctx, b->own_wei);
    stx__free(ctx, b->own_ddst);
    stx__free(ctx, b->own_dsrc);
    stx__free(ctx, b->own_scratch);
    memset(b, 0, sizeof *b);
}

static void conv_release(void *p) {
    conv_state *s = p;
    if (!s) return;
    conv_bwd_free(s->ctx, &s->bwd);
    if (s->prim) dnnl_primitive_destroy(s->prim);
    dnnl_memory_t mems[] = {s->m_src, s->m_wei, s->m_bias, s->m_dst, s->m_scratch};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    stx__dnnl_reorder_free(&s->re_src);
    stx__dnnl_reorder_free(&s->re_dst);
    if (s->stream) dnnl_stream_destroy(s->stream);
    stx__free(s->ctx, s->buf_src);
    stx__free(s->ctx, s->buf_dst);
    stx__free(s->ctx, s->buf_wei);
    stx__free(s->ctx, s->buf_scratch);
    stx__free(s->ctx, s);
}

/* Zeroed buffer of `size` bytes for a oneDNN layout (zeroed: blocked layouts may carry padding
 * that primitives expect to be zero). */
static void *dnnl_buffer(stx_context *ctx, size_t size) {
    return stx__calloc(ctx, 1, size ? size : 1);
}

/* Weights memory descriptor over the ONNX layout. oneDNN's logical order is [G,] O, I, k...:
 *   Conv          W = [M, C/G, k...] = [G][M/G][C/G][k]: plain (tags abc.. / goi..).
 *   ConvTranspose W = [C, M/G, k...] = [G][C/G][M/G][k]: O and I swapped in memory (tags bac..
 *                 without groups, acbd.. with groups). */
static dnnl_status_t weights_user_md(dnnl_memory_desc_t *md, const conv_geom *g,
                                     const int64_t *wd) {
    dnnl_dims_t dims;
    int nsp = g->nsp, nd = 0;
    if (g->G > 1) dims[nd++] = g->G;
    dims[nd++] = g->M / g->G;
    dims[nd++] = g->C / g->G;
    for (int i = 0; i < nsp; i++) dims[nd++] = wd[2 + i];
    static const dnnl_format_tag_t plain[] = {dnnl_abc, dnnl_abcd, dnnl_abcde, dnnl_abcdef};
    static const dnnl_format_tag_t swap_oi[] = {dnnl_bac, dnnl_bacd, dnnl_bacde};
    static const dnnl_format_tag_t swap_goi[] = {dnnl_acbd, dnnl_acbde, dnnl_acbdef};
    dnnl_format_tag_t tag;
    if (!g->transpose)
        tag = plain[nd - 3];
    else
        tag = g->G > 1 ? swap_goi[nsp - 1] : swap_oi[nsp - 1];
    return dnnl_memory_desc_init_by_tag(md, nd, dims, dnnl_f32, tag);
}

/* A staging buffer of `need` bytes: the forward buffer `have` (of `have_size` bytes) when it is
 * large enough, else a new zeroed one recorded in *own. NULL when out of memory. */
static void *borrow_buffer(stx_context *ctx, void *have, size_t have_size, size_t need,
                           void **own) {
    if (have && have_size >= need) return have;
    return *own = dnnl_buffer(ctx, need);
}

/* Builds s->bwd: the backward-data primitive of the forward convolution (ConvTranspose: of the
 * deconvolution, i.e. a convolution of d y with W), with a forward_training primitive of the
 * same geometry as the hint oneDNN needs to match layouts. On failure the caller frees s->bwd. */
static dnnl_status_t
conv_bwd_build(conv_state *s, const conv_geom *g, const void *wdata,
               const dnnl_memory_desc_t *src_any, const dnnl_memory_desc_t *wei_any,
               const dnnl_memory_desc_t *dst_any, const dnnl_memory_desc_t *src_user,
               const dnnl_memory_desc_t *dst_user, const dnnl_memory_desc_t *wei_user,
               const dnnl_memory_desc_t *fwd_wei, const int64_t *strides, const int64_t *dil,
               const int64_t *pl, const int64_t *pr) {
    conv_bwd *b = &s->bwd;
    dnnl_primitive_desc_t hint = NULL, pd = NULL;
    stx_dnnl_reorder rw = {0};
    dnnl_status_t st;
    if (!g->transpose) {
        dnnl_convolution_desc_t fd, bd;
        st = dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_training,
                                                        dnnl_convolution_direct, src_any, wei_any,
                                                        NULL, dst_any, strides, dil, pl, pr);
        if (st == dnnl_success) st = stx__dnnl_pd_create(&hint, &fd);
        if (st == dnnl_success)
            st = dnnl_dilated_convolution_backward_data_desc_init(
                &bd, dnnl_convolution_direct, src_any, wei_any, dst_any, strides, dil, pl, pr);
        if (st == dnnl_success) st = stx__dnnl_pd_create_hint(&pd, &bd, hint);
    } else {
        dnnl_deconvolution_desc_t fd, bd;
        st = dnnl_dilated_deconvolution_forward_desc_init(
            &fd, dnnl_forward_training, dnnl_deconvolution_direct, src_any, wei_any, NULL, dst_any,
            strides, dil, pl, pr);
        if (st == dnnl_success) st = stx__dnnl_pd_create(&hint, &fd);
        if (st == dnnl_success)
            st = dnnl_dilated_deconvolution_backward_data_desc_init(
                &bd, dnnl_deconvolution_direct, src_any, wei_any, dst_any, strides, dil, pl, pr);
        if (st == dnnl_success) st = stx__dnnl_pd_create_hint(&pd, &bd, hint);
    }
    if (st != dnnl_success) goto done;
    snprintf(b->impl, sizeof b->impl, "%s", stx__dnnl_impl_name(pd));
    /* oneDNN's generic "ref" loops are many times slower than the reference kernels here */
    if (strncmp(b->impl, "ref", 3) == 0) {
        st = dnnl_unimplemented;
        goto done;
    }
    const dnnl_memory_desc_t *w = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *dsrc = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_src_md, 0);
    const dnnl_memory_desc_t *ddst = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0);
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (!w || !dsrc || !ddst || !sp) {
        st = dnnl_runtime_error;
        goto done;
    }
    /* weights: the forward copy when the layouts agree, else a reorder of W done once here */
    void *wbuf = s->buf_wei;
    if (!dnnl_memory_desc_equal(w, fwd_wei)) {
        if (!(wbuf = b->own_wei = dnnl_buffer(s->ctx, dnnl_memory_desc_get_size(w)))) {
            st = dnnl_out_of_memory;
            goto done;
        }
        st = stx__dnnl_reorder_init(&rw, wei_user, w);
        if (st == dnnl_success) st = stx__dnnl_reorder_run(&rw, s->stream, wdata, wbuf);
        if (st == dnnl_success) st = dnnl_stream_wait(s->stream);
        if (st != dnnl_success) goto done;
    }
    if ((st = stx__dnnl_memory(&b->m_wei, w, wbuf)) != dnnl_success) goto done;
    if (!dnnl_memory_desc_equal(ddst, dst_user)) {
        b->ddst = borrow_buffer(s->ctx, s->buf_dst, s->sz_dst, dnnl_memory_desc_get_size(ddst),
                                &b->own_ddst);
        if (!b->ddst) {
            st = dnnl_out_of_memory;
            goto done;
        }
        if ((st = stx__dnnl_reorder_init(&b->re_ddst, dst_user, ddst)) != dnnl_success) goto done;
    }
    if ((st = stx__dnnl_memory(&b->m_ddst, ddst, b->ddst)) != dnnl_success) goto done;
    b->dsrc =
        borrow_buffer(s->ctx, s->buf_src, s->sz_src, dnnl_memory_desc_get_size(dsrc), &b->own_dsrc);
    if (!b->dsrc) {
        st = dnnl_out_of_memory;
        goto done;
    }
    if ((st = stx__dnnl_memory(&b->m_dsrc, dsrc, b->dsrc)) != dnnl_success) goto done;
    if ((st = stx__dnnl_reorder_init_acc(&b->re_acc, dsrc, src_user)) != dnnl_success) goto done;
    size_t spsz = dnnl_memory_desc_get_size(sp);
    if (spsz > 0) {
        void *sbuf = borrow_buffer(s->ctx, s->buf_scratch, s->sz_scratch, spsz, &b->own_scratch);
        if (!sbuf) {
            st = dnnl_out_of_memory;
            goto done;
        }
        if ((st = stx__dnnl_memory(&b->m_scratch, sp, sbuf)) != dnnl_success) goto done;
    }
    st = dnnl_primitive_create(&b->prim, pd);
done:
    stx__dnnl_reorder_free(&rw);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (hint) dnnl_primitive_desc_destroy(hint);
    return st;
}

/* d x += conv^T(d y) through the backward-data primitive. */
static stx_status conv_backward_dnnl(stx_op_ctx *c, conv_state *s, const stx_tensor *dY,
                                     stx_tensor *dX) {
    conv_bwd *b = &s->bwd;
    stx_dnnl_fail f = {dnnl_success, NULL};
    if (b->re_ddst.prim)
        STX_DNNL_TRY(&f, "d y reorder",
                     stx__dnnl_reorder_run(&b->re_ddst, s->stream, dY->data, b->ddst));
    else
        STX_DNNL_TRY(&f, "set d y", dnnl_memory_set_data_handle(b->m_ddst, dY->data));
    dnnl_exec_arg_t args[4];
    int na = 0;
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, b->m_ddst};
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, b->m_wei};
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SRC, b->m_dsrc};
    if (b->m_scratch) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, b->m_scratch};
    STX_DNNL_TRY(&f, "backward-data execute", dnnl_primitive_execute(b->prim, s->stream, na, args));
    STX_DNNL_TRY(&f, "d x accumulation",
                 stx__dnnl_reorder_run(&b->re_acc, s->stream, b->dsrc, dX->data));
    STX_DNNL_TRY(&f, "stream wait", dnnl_stream_wait(s->stream));
    return STX_OK;
dnnl_fail:
    return stx__dnnl_err(c, f.status, f.what);
}

static stx_status conv_prepare_common(stx_op_ctx *c, void **state, int transpose) {
    *state = NULL;
    const stx_tensor *X = c->in[0], *W = c->in[1], *B = c->n_in > 2 ? c->in[2] : NULL;
    const stx_tensor *Y = c->out[0];
    if (c->no_dnnl || !X || !W || !Y || X->dtype != STX_DTYPE_FLOAT || !W->data) return STX_OK;
    conv_geom g;
    stx_status r = conv_geom_get(c, transpose, &g);
    if (r != STX_OK) return r;
    if (stx__numel(X->dims, X->rank) == 0 || stx__numel(Y->dims, Y->rank) == 0 ||
        stx__numel(W->dims, W->rank) == 0)
        return STX_OK;
    int nsp = g.nsp, off = 3 - nsp;
    dnnl_dims_t strides, dil, pl, pr;
    for (int i = 0; i < nsp; i++) {
        int a = off + i;
        int64_t ek = (g.k[a] - 1) * g.d[a] + 1;
        strides[i] = g.s[a];
        dil[i] = g.d[a] - 1; /* oneDNN counts the holes between taps: ONNX dilation - 1 */
        pl[i] = g.pb[a];
        /* Right padding that makes oneDNN's size relation hold exactly:
         *   conv:   out = (in + pl + pr - ek) / s + 1   (ONNX end pad already satisfies it)
         *   deconv: out = (in - 1) * s + ek - pl - pr   (negative with output_padding) */
        pr[i] = transpose ? (g.in[a] - 1) * g.s[a] + ek - g.pb[a] - g.out[a] : g.pe[a];
    }

    conv_state *s = stx__calloc(c->ctx, 1, sizeof *s);
    if (!s) return stx__node_err(c, STX_E_NOMEM, "out of memory for the oneDNN state");
    s->ctx = c->ctx;
    s->has_bias = B != NULL;
    stx_dnnl_fail f = {dnnl_success, NULL};
    dnnl_primitive_desc_t pd = NULL;
    stx_dnnl_reorder rw = {0};
    dnnl_memory_desc_t src_user, dst_user, wei_user, bias_md, src_any, dst_any, wei_any;
    int64_t bias_dim = g.M;

    STX_DNNL_TRY(&f, "stream creation", stx__dnnl_stream_create(&s->stream));
    STX_DNNL_TRY(&f, "memory descriptor",
                 stx__dnnl_md_plain(&src_user, X->dims, X->rank, dnnl_f32));
    STX_DNNL_TRY(&f, "memory descriptor",
                 stx__dnnl_md_plain(&dst_user, Y->dims, Y->rank, dnnl_f32));
    STX_DNNL_TRY(&f, "memory descriptor", weights_user_md(&wei_user, &g, W->dims));
    STX_DNNL_TRY(&f, "memory descriptor", stx__dnnl_md_plain(&bias_md, &bias_dim, 1, dnnl_f32));
    STX_DNNL_TRY(&f, "memory descriptor", stx__dnnl_md_any(&src_any, X->dims, X->rank, dnnl_f32));
    STX_DNNL_TRY(&f, "memory descriptor", stx__dnnl_md_any(&dst_any, Y->dims, Y->rank, dnnl_f32));
    STX_DNNL_TRY(&f, "memory descriptor",
                 dnnl_memory_desc_init_by_tag(&wei_any, wei_user.ndims, wei_user.dims, dnnl_f32,
                                              dnnl_format_tag_any));
    if (!transpose) {
        dnnl_convolution_desc_t cd;
        STX_DNNL_TRY(&f, "convolution descriptor",
                     dnnl_dilated_convolution_forward_desc_init(
                         &cd, dnnl_forward_inference, dnnl_convolution_direct, &src_any, &wei_any,
                         B ? &bias_md : NULL, &dst_any, strides, dil, pl, pr));
        STX_DNNL_TRY(&f, "convolution primitive descriptor", stx__dnnl_pd_create(&pd, &cd));
    } else {
        dnnl_deconvolution_desc_t dd;
        STX_DNNL_TRY(&f, "deconvolution descriptor",
                     dnnl_dilated_deconvolution_forward_desc_init(
                         &dd, dnnl_forward_inference, dnnl_deconvolution_direct, &src_any, &wei_any,
                         B ? &bias_md : NULL, &dst_any, strides, dil, pl, pr));
        STX_DNNL_TRY(&f, "deconvolution primitive descriptor", stx__dnnl_pd_create(&pd, &dd));
    }
    snprintf(s->impl, sizeof s->impl, "%s", stx__dnnl_impl_name(pd));
    const dnnl_memory_desc_t *src_md = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *wei_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *dst_md = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    const dnnl_memory_desc_t *sp_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (!src_md || !wei_md || !dst_md || !sp_md) {
        f.status = dnnl_runtime_error;
        f.what = "memory descriptor query";
        goto dnnl_fail;
    }

    /* Input: the primitive's layout, or the user's buffer directly when they coincide. */
    if (!dnnl_memory_desc_equal(src_md, &src_user)) {
        STX_DNNL_TRY(&f, "input reorder", stx__dnnl_reorder_init(&s->re_src, &src_user, src_md));
        s->sz_src = dnnl_memory_desc_get_size(src_md);
        if (!(s->buf_src = dnnl_buffer(s->ctx, s->sz_src))) goto nomem;
    }
    STX_DNNL_TRY(&f, "memory creation", stx__dnnl_memory(&s->m_src, src_md, s->buf_src));
    if (!dnnl_memory_desc_equal(dst_md, &dst_user)) {
        STX_DNNL_TRY(&f, "output reorder", stx__dnnl_reorder_init(&s->re_dst, dst_md, &dst_user));
        s->sz_dst = dnnl_memory_desc_get_size(dst_md);
        if (!(s->buf_dst = dnnl_buffer(s->ctx, s->sz_dst))) goto nomem;
    }
    STX_DNNL_TRY(&f, "memory creation", stx__dnnl_memory(&s->m_dst, dst_md, s->buf_dst));
    if (B) STX_DNNL_TRY(&f, "memory creation", stx__dnnl_memory(&s->m_bias, &bias_md, NULL));
    size_t sp_size = dnnl_memory_desc_get_size(sp_md);
    if (sp_size > 0) {
        if (!(s->buf_scratch = dnnl_buffer(s->ctx, sp_size))) goto nomem;
        s->sz_scratch = sp_size;
        STX_DNNL_TRY(&f, "memory creation", stx__dnnl_memory(&s->m_scratch, sp_md, s->buf_scratch));
    }

    /* Weights are constant: convert them to the primitive's layout once, here. */
    if (!(s->buf_wei = dnnl_buffer(s->ctx, dnnl_memory_desc_get_size(wei_md)))) goto nomem;
    STX_DNNL_TRY(&f, "memory creation", stx__dnnl_memory(&s->m_wei, wei_md, s->buf_wei));
    STX_DNNL_TRY(&f, "weights reorder", stx__dnnl_reorder_init(&rw, &wei_user, wei_md));
    STX_DNNL_TRY(&f, "weights reorder", stx__dnnl_reorder_run(&rw, s->stream, W->data, s->buf_wei));
    STX_DNNL_TRY(&f, "weights reorder", dnnl_stream_wait(s->stream));
    stx__dnnl_reorder_free(&rw);

    STX_DNNL_TRY(&f, "primitive creation", dnnl_primitive_create(&s->prim, pd));
    if (c->need_backward) {
        dnnl_status_t bs = conv_bwd_build(s, &g, W->data, &src_any, &wei_any, &dst_any, &src_user,
                                          &dst_user, &wei_user, wei_md, strides, dil, pl, pr);
        /* oneDNN may refuse the backward geometry: the reference kernel computes d x then. */
        if (bs != dnnl_success) {
            conv_bwd_free(s->ctx, &s->bwd);
            if (bs == dnnl_out_of_memory) {
                f.status = bs;
                f.what = "backward-data primitive";
                goto dnnl_fail;
            }
        }
    }
    dnnl_primitive_desc_destroy(pd);
    *state = s;
    return STX_OK;

nomem:
    stx__dnnl_reorder_free(&rw);
    if (pd) dnnl_primitive_desc_destroy(pd);
    conv_release(s);
    return stx__node_err(c, STX_E_NOMEM, "out of memory for oneDNN buffers");
dnnl_fail:
    stx__dnnl_reorder_free(&rw);
    if (pd) dnnl_primitive_desc_destroy(pd);
    conv_release(s);
    /* oneDNN cannot do this geometry (or refused it): the reference kernel will run instead.
     * Only running out of memory is an error. */
    if (f.status == dnnl_out_of_memory) return stx__dnnl_err(c, f.status, f.what);
    return STX_OK;
}

static stx_status conv_prepare(stx_op_ctx *c, void **state) {
    return conv_prepare_common(c, state, 0);
}
static stx_status convt_prepare(stx_op_ctx *c, void **state) {
    return conv_prepare_common(c, state, 1);
}

static stx_status conv_forward_dnnl(stx_op_ctx *c, conv_state *s) {
    const stx_tensor *X = c->in[0], *B = c->n_in > 2 ? c->in[2] : NULL;
    stx_tensor *Y = c->out[0];
    stx_dnnl_fail f = {dnnl_success, NULL};
    if (s->re_src.prim)
        STX_DNNL_TRY(&f, "input reorder",
                     stx__dnnl_reorder_run(&s->re_src, s->stream, X->data, s->buf_src));
    else
        STX_DNNL_TRY(&f, "set input", dnnl_memory_set_data_handle(s->m_src, X->data));
    if (!s->re_dst.prim)
        STX_DNNL_TRY(&f, "set output", dnnl_memory_set_data_handle(s->m_dst, Y->data));
    dnnl_exec_arg_t args[5];
    int na = 0;
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, s->m_src};
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, s->m_wei};
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, s->m_dst};
    if (s->has_bias) {
        if (!B || !B->data) return stx__node_err(c, STX_E_INVALID, "bias input B is missing");
        STX_DNNL_TRY(&f, "set bias", dnnl_memory_set_data_handle(s->m_bias, B->data));
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, s->m_bias};
    }
    if (s->m_scratch) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, s->m_scratch};
    STX_DNNL_TRY(&f, "execute", dnnl_primitive_execute(s->prim, s->stream, na, args));
    if (s->re_dst.prim)
        STX_DNNL_TRY(&f, "output reorder",
                     stx__dnnl_reorder_run(&s->re_dst, s->stream, s->buf_dst, Y->data));
    STX_DNNL_TRY(&f, "stream wait", dnnl_stream_wait(s->stream));
    return STX_OK;
dnnl_fail:
    return stx__dnnl_err(c, f.status, f.what);
}

static stx_status conv_forward(stx_op_ctx *c) {
    if (c->state && !stx__ops_force_reference) return conv_forward_dnnl(c, c->state);
    return conv_forward_ref(c, 0);
}

static stx_status convt_forward(stx_op_ctx *c) {
    if (c->state && !stx__ops_force_reference) return conv_forward_dnnl(c, c->state);
    return conv_forward_ref(c, 1);
}

/* Backward of Conv / ConvTranspose: d x through oneDNN (float32, constant weights, geometry
 * accepted) or the reference kernels; d w and d b (reference only) when asked for. */
static stx_status conv_backward_common(stx_op_ctx *c, int transpose) {
    const stx_tensor *dY = c->dout[0];
    stx_tensor *dX = c->din[0];
    stx_tensor *dW = c->n_in > 1 ? c->din[1] : NULL, *dB = c->n_in > 2 ? c->din[2] : NULL;
    if (!dY || (!dX && !dW && !dB)) return STX_OK;
    conv_geom g;
    stx_status r = conv_geom_get(c, transpose, &g);
    if (r != STX_OK) return r;
    const stx_tensor *X = c->in[0], *W = c->in[1];
    if (stx__numel(dY->dims, dY->rank) == 0 || stx__numel(X->dims, X->rank) == 0) return STX_OK;
    if (dY->dtype != X->dtype)
        return stx__node_err(c, STX_E_INTERNAL, "gradient dtype %s differs from X's %s",
                             stx_dtype_name(dY->dtype), stx_dtype_name(X->dtype));
    if (dX) {
        conv_state *s = c->state;
        if (s && s->bwd.prim && !stx__ops_force_reference && X->dtype == STX_DTYPE_FLOAT) {
            r = conv_backward_dnnl(c, s, dY, dX);
            if (r != STX_OK) return r;
        } else {
            if (!W->data)
                return stx__node_err(c, STX_E_INTERNAL, "weights W hold no data in backward");
            conv_dx_ref(&g, dY, W, dX);
        }
    }
    if (dW) {
        if (!X->data) return stx__node_err(c, STX_E_INTERNAL, "input X holds no data in backward");
        conv_dw_ref(&g, X, dY, dW);
    }
    if (dB) {
        int64_t sp = g.out[0] * g.out[1] * g.out[2];
        if (dY->dtype == STX_DTYPE_DOUBLE)
            conv_db_f64(g.N, g.M, sp, dY->data, dB->data);
        else
            conv_db_f32(g.N, g.M, sp, dY->data, dB->data);
    }
    return STX_OK;
}

static stx_status conv_backward(stx_op_ctx *c) {
    return conv_backward_common(c, 0);
}
static stx_status convt_backward(stx_op_ctx *c) {
    return conv_backward_common(c, 1);
}

/* ---------------------------------------------------------------------------------------------
 * Registration
 *
 * Backward reads W (for d x) and X (for d w, which the engine asks for only when W is a graph
 * value rather than an initialiser); B is never read.
 */
/* d X reads W, d W reads X, d B reads neither. */
static uint32_t conv_bwd_in_for(uint32_t din) {
    return ((din & 1u) ? 2u : 0u) | ((din & 2u) ? 1u : 0u);
}

static const stx_op_def op_conv = {.name = "Conv",
                                   .min_in = 2,
                                   .max_in = 3,
                                   .min_out = 1,
                                   .max_out = 1,
                                   .attrs = conv_attrs,
                                   .check = conv_check,
                                   .infer = conv_infer,
                                   .forward = conv_forward,
                                   .macs = conv_macs,
                                   .prepare = conv_prepare,
                                   .release = conv_release,
                                   .backward = conv_backward,
                                   .bwd_in = 0x3,
                                   .bwd_in_for = conv_bwd_in_for};

static const stx_op_def op_convt = {.name = "ConvTranspose",
                                    .min_in = 2,
                                    .max_in = 3,
                                    .min_out = 1,
                                    .max_out = 1,
                                    .attrs = convt_attrs,
                                    .check = conv_check,
                                    .infer = convt_infer,
                                    .forward = convt_forward,
                                    .macs = convt_macs,
                                    .prepare = convt_prepare,
                                    .release = conv_release,
                                    .backward = convt_backward,
                                    .bwd_in = 0x3,
                                    .bwd_in_for = conv_bwd_in_for};

const stx_op_def *const stx__ops_conv[] = {&op_conv, &op_convt, NULL};
