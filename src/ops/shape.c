/* shape.c: data-movement and shape ops: Flatten, Reshape, Transpose, Squeeze, Unsqueeze, Concat,
 * Split, Slice, Gather, Pad, Constant, ConstantOfShape, Shape, Size, Expand, Tile, Range.
 *
 * These ops run in two very different regimes: at plan time on tiny int64 shape sub-graphs
 * (constant folding of Shape -> Gather -> Unsqueeze -> Concat -> Reshape chains) and at run time
 * on large float activations. Apart from Range, nothing here does arithmetic on the data: every
 * op is a copy of elements of stx_dtype_size() bytes, so every dtype works the same way. At run
 * time the cost is memory bandwidth, hence the care to copy contiguous blocks with memcpy, to
 * block transposes for cache reuse, and to open a parallel region only for big copies.
 *
 * Inputs that decide an output shape (Reshape's shape, Slice's starts/ends/axes/steps, Expand's
 * shape, Tile's repeats, Pad's pads, Squeeze/Unsqueeze axes, Split sizes, Range's scalars) must
 * be constants known at plan time, because the planner sizes every buffer once before running.
 *
 * Backward: each op is linear with a 0/1 Jacobian, so its VJP sends every output gradient
 * element back to the input element it was copied from, adding (float32 and float64) where
 * several came from one (Expand, Tile, repeated Gather indices, Pad borders). The same strided
 * machinery runs in an accumulating mode; scatter-adds are split so that each thread owns its
 * gradient elements and sums in a fixed order (deterministic for any thread count). Shape,
 * Size, Range, Constant and ConstantOfShape have no backward.
 */
#include "ops.h"

#include <math.h>
#include <string.h>

/* Copies smaller than this stay on one thread: a parallel region costs a few microseconds. */
#define PAR_MIN_BYTES ((size_t)1 << 18)
/* Most parts accepted by Concat (inputs) and Split (outputs). */
#define MAX_PARTS 1024
/* A strided view may need two axes per tensor axis (Tile interleaves repeat and data axes). */
#define SV_MAX (2 * STX_MAX_RANK)

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 */

static stx_tensor *opt_in(const stx_op_ctx *c, int i) {
    return i < c->n_in ? c->in[i] : NULL;
}

static size_t esize(const stx_tensor *t) {
    return stx_dtype_size(t->dtype);
}

#define SHAPE_STR(t, buf) stx__shape_str((t)->dims, (t)->rank, buf, sizeof buf)

/* Row-major strides (in elements) of a dense tensor. */
static void dense_strides(const int64_t *dims, int rank, int64_t *str) {
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        str[i] = s;
        s *= dims[i];
    }
}

/* A data input must be present and of a dtype with a known element size. */
static stx_status need_data(stx_op_ctx *c, int i, const char *what) {
    const stx_tensor *t = opt_in(c, i);
    if (!t) return stx__node_err(c, STX_E_INVALID, "missing required input %d (%s)", i, what);
    if (stx_dtype_size(t->dtype) == 0)
        return stx__node_err(c, STX_E_UNSUPPORTED, "input %d (%s) has unsupported dtype %s", i,
                             what, stx_dtype_name(t->dtype));
    return STX_OK;
}

/* Reads an integer list that decides output shapes from constant input i (int64 or int32,
 * scalar or 1-D). Refuses a non-constant input: buffers are sized at plan time. */
static stx_status const_ints(stx_op_ctx *c, int i, const char *what, int64_t *v, int max, int *n) {
    const stx_tensor *t = opt_in(c, i);
    char sb[128];
    if (!t) return stx__node_err(c, STX_E_INVALID, "missing required input %d (%s)", i, what);
    if (!t->data)
        return stx__node_err(c, STX_E_UNSUPPORTED,
                             "input %d (%s) must be a constant known at plan time (an initializer "
                             "or a constant-foldable sub-graph); data-dependent shapes are not "
                             "supported",
                             i, what);
    if (t->dtype != STX_DTYPE_INT64 && t->dtype != STX_DTYPE_INT32)
        return stx__node_err(c, STX_E_INVALID, "input %d (%s) must be int64 or int32, got %s", i,
                             what, stx_dtype_name(t->dtype));
    if (t->rank > 1)
        return stx__node_err(c, STX_E_SHAPE, "input %d (%s) must be a scalar or 1-D, got shape %s",
                             i, what, SHAPE_STR(t, sb));
    int64_t cnt = stx__numel(t->dims, t->rank);
    if (cnt > max)
        return stx__node_err(c, STX_E_UNSUPPORTED,
                             "input %d (%s) has %lld values, at most %d supported", i, what,
                             (long long)cnt, max);
    for (int64_t k = 0; k < cnt; k++)
        v[k] = t->dtype == STX_DTYPE_INT64 ? ((const int64_t *)t->data)[k]
                                           : ((const int32_t *)t->data)[k];
    *n = (int)cnt;
    return STX_OK;
}

/* An integer list given as constant input i when present, else as attribute `attr` (the form
 * used before the attribute became an input). *n = -1 when neither is given. */
static stx_status ints_in_or_attr(stx_op_ctx *c, int i, const char *attr, const char *what,
                                  int64_t *v, int max, int *n) {
    if (opt_in(c, i)) return const_ints(c, i, what, v, max, n);
    const int64_t *a;
    int cnt = stx__attr_ints(c->node, attr, &a);
    if (cnt > max)
        return stx__node_err(c, STX_E_UNSUPPORTED,
                             "attribute '%s' has %d values, at most %d supported", attr, cnt, max);
    for (int k = 0; k < cnt; k++) v[k] = a[k];
    *n = cnt;
    return STX_OK;
}

/* Checked product of dims for shapes computed from user data. */
static stx_status checked_numel(stx_op_ctx *c, const int64_t *dims, int rank, int64_t *n) {
    char sb[128];
    if (!stx__numel_checked(dims, rank, n))
        return stx__node_err(c, STX_E_SHAPE, "invalid output shape %s (negative or too large)",
                             stx__shape_str(dims, rank, sb, sizeof sb));
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Copy kernels
 */

/* dst[0..n) = src[0..n) bytes, split across threads when big. */
static void copy_bytes(void *dst, const void *src, size_t n) {
    if (n == 0 || dst == src) return;
    if (n < PAR_MIN_BYTES) {
        memcpy(dst, src, n);
        return;
    }
    int64_t chunks = (int64_t)(n / (PAR_MIN_BYTES / 4));
    int64_t th = stx__threads();
    if (chunks > th) chunks = th;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < chunks; k++) {
        size_t a = n * (size_t)k / (size_t)chunks, b = n * (size_t)(k + 1) / (size_t)chunks;
        memcpy((char *)dst + a, (const char *)src + a, b - a);
    }
}

/* Writes n copies of the es-byte element v to d: memset when possible, else doubling memcpy
 * (each step copies the part already written), which is fast for long rows. */
static void fill_elems(char *d, const char *v, int64_t n, size_t es) {
    if (n <= 0) return;
    bool uniform = true;
    for (size_t b = 1; b < es; b++) uniform = uniform && v[b] == v[0];
    if (uniform) {
        memset(d, (unsigned char)v[0], (size_t)n * es);
        return;
    }
    memcpy(d, v, es);
    int64_t done = 1;
    while (done < n) {
        int64_t k = done < n - done ? done : n - done;
        memcpy(d + (size_t)done * es, d, (size_t)k * es);
        done += k;
    }
}

/* d[k] = s[k * st] for k < n (element units). The switch sits outside the loops so that each
 * loop copies a fixed-size element (compiled to a plain load/store). */
static void gather_row(char *d, const char *s, int64_t n, int64_t st, size_t es) {
#define GATHER_LOOP(ES)                                                                            \
    for (int64_t k = 0; k < n; k++) memcpy(d + k * (ES), s + k * st * (ES), (ES))
    switch (es) {
    case 1:
        GATHER_LOOP(1);
        break;
    case 2:
        GATHER_LOOP(2);
        break;
    case 4:
        GATHER_LOOP(4);
        break;
    case 8:
        GATHER_LOOP(8);
        break;
    default:
        for (int64_t k = 0; k < n; k++) memcpy(d + k * (int64_t)es, s + k * st * (int64_t)es, es);
    }
#undef GATHER_LOOP
}

/* ---------------------------------------------------------------------------------------------
 * Accumulation kernels (backward)
 *
 * Every op here moves elements without arithmetic, so each is linear with a 0/1 Jacobian and its
 * vector-Jacobian product moves the output gradient back along the same paths, ADDING where
 * several output elements came from one input element (Expand, Tile, Gather with repeated
 * indices, Pad borders). The copy kernels above therefore get an accumulation mode: ACC_NONE
 * copies bytes (forward), ACC_F32 / ACC_F64 add typed elements (backward). Gradient buffers never
 * alias the forward gradients they are computed from (the memory planner keeps both alive over
 * the backward step), hence the restrict qualifiers.
 */
typedef enum { ACC_NONE = 0, ACC_F32, ACC_F64 } acc_mode;

#define DEF_ACC_KERNELS(T, SUF)                                                                    \
    /* d[k * ds] += s[k * ss] for k < n (ss may be 0: one value added to a whole row) */           \
    static void acc_row_##SUF(T *restrict d, int64_t ds, const T *restrict s, int64_t ss,          \
                              int64_t n) {                                                         \
        if (ds == 1 && ss == 1) {                                                                  \
            _Pragma("omp simd") for (int64_t k = 0; k < n; k++) d[k] += s[k];                      \
        } else if (ss == 0) {                                                                      \
            T v = s[0];                                                                            \
            if (ds == 1)                                                                           \
                _Pragma("omp simd") for (int64_t k = 0; k < n; k++) d[k] += v;                     \
            else                                                                                   \
                for (int64_t k = 0; k < n; k++) d[k * ds] += v;                                    \
        } else if (ds == 1) {                                                                      \
            for (int64_t k = 0; k < n; k++) d[k] += s[k * ss];                                     \
        } else {                                                                                   \
            for (int64_t k = 0; k < n; k++) d[k * ds] += s[k * ss];                                \
        }                                                                                          \
    }                                                                                              \
    /* sum_k s[k * ss] in a fixed order: eight interleaved partial sums on contiguous rows (which  \
     * vectorises without reassociation), then a fixed combination tree */                         \
    static T sum_row_##SUF(const T *restrict s, int64_t ss, int64_t n) {                           \
        T p[8] = {0, 0, 0, 0, 0, 0, 0, 0}, t = 0;                                                  \
        int64_t k = 0;                                                                             \
        if (ss == 1)                                                                               \
            for (; k + 8 <= n; k += 8)                                                             \
                for (int j = 0; j < 8; j++) p[j] += s[k + j];                                      \
        for (; k < n; k++) t += s[k * ss];                                                         \
        return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7])) + t;              \
    }                                                                                              \
    /* the accumulating twin of transpose_block: d[a * dla + b * dlb] += s[a + b * sld] */         \
    static void acc_tblock_##SUF(T *restrict d, int64_t dla, int64_t dlb, const T *restrict s,     \
                                 int64_t sld, int64_t na, int64_t nb, bool a_inner) {              \
        if (a_inner)                                                                               \
            for (int64_t b = 0; b < nb; b++)                                                       \
                for (int64_t a = 0; a < na; a++) d[a * dla + b * dlb] += s[a + b * sld];           \
        else                                                                                       \
            for (int64_t a = 0; a < na; a++)                                                       \
                for (int64_t b = 0; b < nb; b++) d[a * dla + b * dlb] += s[a + b * sld];           \
    }

DEF_ACC_KERNELS(float, f32)
DEF_ACC_KERNELS(double, f64)
#undef DEF_ACC_KERNELS

/* First index of part k when [0, n) is cut into `parts` near-equal contiguous parts. */
static int64_t part_lo(int64_t n, int64_t parts, int64_t k) {
    return n / parts * k + (k < n % parts ? k : n % parts);
}

static size_t acc_esize(acc_mode m) {
    return m == ACC_F64 ? sizeof(double) : sizeof(float);
}

/* Byte-pointer dispatchers; strides and counts in elements. */
static void acc_row(acc_mode m, char *d, int64_t ds, const char *s, int64_t ss, int64_t n) {
    if (m == ACC_F64)
        acc_row_f64((double *)(void *)d, ds, (const double *)(const void *)s, ss, n);
    else
        acc_row_f32((float *)(void *)d, ds, (const float *)(const void *)s, ss, n);
}

/* d[0] += sum_k s[k * ss] */
static void acc_sum(acc_mode m, char *d, const char *s, int64_t ss, int64_t n) {
    if (m == ACC_F64)
        *(double *)(void *)d += sum_row_f64((const double *)(const void *)s, ss, n);
    else
        *(float *)(void *)d += sum_row_f32((const float *)(const void *)s, ss, n);
}

/* d[0..n) += s[0..n) for a long contiguous run, split across threads when big. */
static void acc_flat(acc_mode m, char *d, const char *s, int64_t n) {
    size_t es = acc_esize(m);
    if (n <= 0) return;
    int64_t chunks = (int64_t)((size_t)n * es / (PAR_MIN_BYTES / 4));
    int64_t th = stx__threads();
    if (chunks > th) chunks = th;
    if (chunks < 2) {
        acc_row(m, d, 1, s, 1, n);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < chunks; k++) {
        int64_t a = part_lo(n, chunks, k), b = part_lo(n, chunks, k + 1);
        acc_row(m, d + a * (int64_t)es, 1, s + a * (int64_t)es, 1, b - a);
    }
}

/* Block of a 2-D transpose: d[a * dla + b * dlb] = s[a + b * sld] for a < na, b < nb (+= with
 * an accumulation mode).
 * The loop kept outside holds lines of one side in L1 while the inner loop walks the other:
 * b inside holds the source lines (stride sld), a inside holds the destination lines (stride
 * dla). When that stride is a multiple of 4 KiB all held lines map to one L1 set and thrash,
 * so the caller picks the order whose held stride has fewer factors of two. */
static void transpose_block(char *d, int64_t dla, int64_t dlb, const char *s, int64_t sld,
                            int64_t na, int64_t nb, size_t es, bool a_inner, acc_mode acc) {
    if (acc == ACC_F32) {
        acc_tblock_f32((float *)(void *)d, dla, dlb, (const float *)(const void *)s, sld, na, nb,
                       a_inner);
        return;
    }
    if (acc == ACC_F64) {
        acc_tblock_f64((double *)(void *)d, dla, dlb, (const double *)(const void *)s, sld, na, nb,
                       a_inner);
        return;
    }
#define TR_LOOP(ES)                                                                                \
    do {                                                                                           \
        if (a_inner)                                                                               \
            for (int64_t b = 0; b < nb; b++)                                                       \
                for (int64_t a = 0; a < na; a++)                                                   \
                    memcpy(d + (a * dla + b * dlb) * (ES), s + (a + b * sld) * (ES), (ES));        \
        else                                                                                       \
            for (int64_t a = 0; a < na; a++)                                                       \
                for (int64_t b = 0; b < nb; b++)                                                   \
                    memcpy(d + (a * dla + b * dlb) * (ES), s + (a + b * sld) * (ES), (ES));        \
    } while (0)
    switch (es) {
    case 1:
        TR_LOOP(1);
        break;
    case 2:
        TR_LOOP(2);
        break;
    case 4:
        TR_LOOP(4);
        break;
    case 8:
        TR_LOOP(8);
        break;
    default:
        TR_LOOP(es);
    }
#undef TR_LOOP
}

/* Number of trailing zero bits of a non-zero stride in bytes (its power-of-two factor). */
static int pow2_factor(int64_t v) {
    uint64_t u = (uint64_t)(v < 0 ? -v : v);
    int n = 0;
    while (u && !(u & 1)) {
        u >>= 1;
        n++;
    }
    return n;
}

/* A strided view of a source tensor: element (i0..ir-1) sits at sum(i_k * str[k]) elements
 * from the base pointer. Strides may be negative (Slice with negative steps) or 0 (Expand,
 * Tile). The destination is always dense with shape dims. Transpose, Slice, Expand and Tile
 * all reduce to copying such a view. */
typedef struct {
    int rank;
    int64_t dims[SV_MAX];
    int64_t str[SV_MAX];
} sview;

/* Drops unit axes and merges neighbouring axes that are contiguous in the source, so that the
 * innermost axis is as long as possible (one memcpy per row in the best case). */
static void sview_simplify(sview *v) {
    int r = 0;
    for (int i = 0; i < v->rank; i++) {
        if (v->dims[i] == 1) continue;
        if (r > 0 && v->str[r - 1] == v->str[i] * v->dims[i]) {
            v->dims[r - 1] *= v->dims[i];
            v->str[r - 1] = v->str[i];
        } else {
            v->dims[r] = v->dims[i];
            v->str[r] = v->str[i];
            r++;
        }
    }
    v->rank = r;
}

/* Blocked transpose for views where axis j is contiguous in the source (stride 1) but the
 * innermost axis is not: copies 32x32 tiles of the plane formed by j and the axis k that is
 * as close as possible to contiguous in the destination (the innermost one of at least 8
 * elements), for every index of the other axes. Reads and writes then both touch whole cache
 * lines. Work units are (outer index, tile row), which parallelises even a single plane. */
static void sview_copy_transposed(char *dst, const char *src, const sview *v, int j, int k,
                                  size_t es, bool par, acc_mode acc) {
    enum { TB = 32 };
    int r = v->rank;
    int64_t dstr[SV_MAX];
    dense_strides(v->dims, r, dstr);
    int od[SV_MAX], no = 0;
    int64_t nouter = 1;
    for (int i = 0; i < r; i++)
        if (i != j && i != k) {
            od[no++] = i;
            nouter *= v->dims[i];
        }
    int64_t na = v->dims[j], nb = v->dims[k], ta = (na + TB - 1) / TB;
    int64_t units = nouter * ta, sld = v->str[k], dla = dstr[j], dlb = dstr[k];
    bool a_inner = pow2_factor(dla * (int64_t)es) <= pow2_factor(sld * (int64_t)es);
#pragma omp parallel for schedule(static) if (par && units > 1)
    for (int64_t u = 0; u < units; u++) {
        int64_t rem = u / ta, a0 = (u % ta) * TB, soff = 0, doff = 0;
        for (int q = no - 1; q >= 0; q--) {
            int i = od[q];
            int64_t x = rem % v->dims[i];
            rem /= v->dims[i];
            soff += x * v->str[i];
            doff += x * dstr[i];
        }
        int64_t a1 = a0 + TB < na ? a0 + TB : na;
        for (int64_t b0 = 0; b0 < nb; b0 += TB) {
            int64_t b1 = b0 + TB < nb ? b0 + TB : nb;
            transpose_block(dst + (doff + a0 * dla + b0 * dlb) * (int64_t)es, dla, dlb,
                            src + (soff + a0 + b0 * sld) * (int64_t)es, sld, a1 - a0, b1 - b0, es,
                            a_inner, acc);
        }
    }
}

/* dst (dense, shape v.dims) = the view v of src (src points at the view's element 0); with an
 * accumulation mode dst += the view instead (the VJP of a view whose source is dense, e.g. the
 * gradient of Transpose and Concat gathered from the output gradient). */
static void sview_copy(void *dst, const void *src, sview v, size_t es, acc_mode acc) {
    int64_t total = stx__numel(v.dims, v.rank);
    if (total == 0) return;
    sview_simplify(&v);
    if (v.rank == 0) {
        if (acc)
            acc_row(acc, dst, 1, src, 1, 1);
        else
            memcpy(dst, src, es);
        return;
    }
    int r = v.rank;
    int64_t inner = v.dims[r - 1], istr = v.str[r - 1];
    bool par = (size_t)total * es >= PAR_MIN_BYTES;
    if (istr != 1 && r >= 2) {
        int j = -1, k = -1;
        for (int i = 0; i < r - 1; i++)
            if (v.str[i] == 1 && v.dims[i] >= 8) j = i;
        for (int i = r - 1; j >= 0 && k < 0 && i > j; i--)
            if (v.dims[i] >= 8 && v.str[i] != 0) k = i;
        if (k >= 0) {
            sview_copy_transposed(dst, src, &v, j, k, es, par, acc);
            return;
        }
    }
    /* Row loop over all axes but the last. Each chunk of rows decomposes its first row index
     * once and then advances an odometer, so there is no division per row. */
    int64_t nrows = total / inner, chunks = 1;
    if (par) {
        chunks = 4 * (int64_t)stx__threads();
        if (chunks > nrows) chunks = nrows;
    }
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (int64_t ch = 0; ch < chunks; ch++) {
        int64_t r0 = nrows / chunks * ch + (ch < nrows % chunks ? ch : nrows % chunks);
        int64_t r1 = r0 + nrows / chunks + (ch < nrows % chunks ? 1 : 0);
        int64_t idx[SV_MAX], off = 0, rem = r0;
        for (int i = r - 2; i >= 0; i--) {
            idx[i] = rem % v.dims[i];
            rem /= v.dims[i];
            off += idx[i] * v.str[i];
        }
        for (int64_t row = r0; row < r1; row++) {
            char *d = (char *)dst + row * inner * (int64_t)es;
            const char *s = (const char *)src + off * (int64_t)es;
            if (acc)
                acc_row(acc, d, 1, s, istr, inner);
            else if (istr == 1)
                memcpy(d, s, (size_t)inner * es);
            else if (istr == 0)
                fill_elems(d, s, inner, es);
            else
                gather_row(d, s, inner, istr, es);
            for (int i = r - 2; i >= 0; i--) {
                off += v.str[i];
                if (++idx[i] < v.dims[i]) break;
                off -= v.str[i] * v.dims[i];
                idx[i] = 0;
            }
        }
    }
}

/* The adjoint of a strided view in its general form: for every index (i0..ir-1) of dims,
 *     dx[sum i_k * xs[k]] += dy[sum i_k * ys[k]]
 * (element offsets from the base pointers). dy is read through any strides (dense for Slice,
 * Split, Expand, Tile; a cropped window for Pad). xs may be negative (Slice with negative steps)
 * or 0: such an axis is summed (Expand, Tile). Indices that differ on an axis with xs != 0 must
 * reach different dx elements, so threads split the xs != 0 axes and each owns its dx elements;
 * the zero-stride axes are summed inside a thread in ascending order, which makes the result
 * independent of the thread count. */
typedef struct {
    int rank;
    int64_t dims[SV_MAX];
    int64_t xs[SV_MAX];
    int64_t ys[SV_MAX];
} bview;

/* Drops unit axes and merges neighbours contiguous on both sides. */
static void bview_simplify(bview *v) {
    int r = 0;
    for (int i = 0; i < v->rank; i++) {
        if (v->dims[i] == 1) continue;
        if (r > 0 && v->xs[r - 1] == v->xs[i] * v->dims[i] &&
            v->ys[r - 1] == v->ys[i] * v->dims[i]) {
            v->dims[r - 1] *= v->dims[i];
            v->xs[r - 1] = v->xs[i];
            v->ys[r - 1] = v->ys[i];
        } else {
            v->dims[r] = v->dims[i];
            v->xs[r] = v->xs[i];
            v->ys[r] = v->ys[i];
            r++;
        }
    }
    v->rank = r;
}

static void bview_acc(char *dx, const char *dy, bview v, acc_mode acc) {
    int64_t total = stx__numel(v.dims, v.rank), es = (int64_t)acc_esize(acc);
    if (total == 0) return;
    bview_simplify(&v);
    if (v.rank == 0) {
        acc_row(acc, dx, 1, dy, 1, 1);
        return;
    }
    int r = v.rank;
    int64_t inner = v.dims[r - 1], ixs = v.xs[r - 1], iys = v.ys[r - 1];
    /* outer axes: kept ones (own dx elements) and summed ones (xs == 0) */
    int kd[SV_MAX], rd[SV_MAX], nk = 0, nr = 0;
    int64_t nkeep = 1, nred = 1;
    for (int i = 0; i < r - 1; i++) {
        if (v.xs[i] != 0) {
            kd[nk++] = i;
            nkeep *= v.dims[i];
        } else {
            rd[nr++] = i;
            nred *= v.dims[i];
        }
    }
    /* Tasks: ranges of kept outer indices with whole rows, or, when there are too few kept
     * indices for the threads, one kept index times a column chunk of the (kept) inner axis. */
    int64_t tasks = 1, nic = 1, icw = inner;
    if ((size_t)total * (size_t)es >= PAR_MIN_BYTES) {
        int64_t want = 4 * (int64_t)stx__threads();
        if (nkeep >= want || ixs == 0) {
            tasks = nkeep < want ? nkeep : want;
        } else {
            int64_t per = (want + nkeep - 1) / nkeep, most = inner / 256 > 1 ? inner / 256 : 1;
            nic = per < most ? per : most;
            icw = (inner + nic - 1) / nic;
            nic = (inner + icw - 1) / icw;
            tasks = nkeep * nic;
        }
    }
#pragma omp parallel for schedule(static) if (tasks > 1)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t u0, u1, c0 = 0, c1 = inner;
        if (nic > 1) {
            u0 = t / nic;
            u1 = u0 + 1;
            c0 = (t % nic) * icw;
            c1 = c0 + icw < inner ? c0 + icw : inner;
        } else {
            u0 = part_lo(nkeep, tasks, t);
            u1 = part_lo(nkeep, tasks, t + 1);
        }
        int64_t kidx[SV_MAX], xoff = 0, yoff = 0, rem = u0;
        for (int q = nk - 1; q >= 0; q--) {
            int i = kd[q];
            kidx[q] = rem % v.dims[i];
            rem /= v.dims[i];
            xoff += kidx[q] * v.xs[i];
            yoff += kidx[q] * v.ys[i];
        }
        for (int64_t u = u0; u < u1; u++) {
            int64_t ridx[SV_MAX] = {0}, yr = 0;
            for (int64_t w = 0; w < nred; w++) {
                const char *s = dy + (yoff + yr + c0 * iys) * es;
                if (ixs != 0)
                    acc_row(acc, dx + (xoff + c0 * ixs) * es, ixs, s, iys, c1 - c0);
                else
                    acc_sum(acc, dx + xoff * es, s, iys, c1 - c0);
                for (int q = nr - 1; q >= 0; q--) {
                    int i = rd[q];
                    yr += v.ys[i];
                    if (++ridx[q] < v.dims[i]) break;
                    yr -= v.ys[i] * v.dims[i];
                    ridx[q] = 0;
                }
            }
            for (int q = nk - 1; q >= 0; q--) {
                int i = kd[q];
                xoff += v.xs[i];
                yoff += v.ys[i];
                if (++kidx[q] < v.dims[i]) break;
                xoff -= v.xs[i] * v.dims[i];
                yoff -= v.ys[i] * v.dims[i];
                kidx[q] = 0;
            }
        }
    }
}

/* The accumulation mode of a gradient tensor (float32 or float64). */
static stx_status grad_mode(stx_op_ctx *c, const stx_tensor *g, acc_mode *m) {
    *m = ACC_NONE;
    if (g->dtype == STX_DTYPE_FLOAT) {
        *m = ACC_F32;
    } else if (g->dtype == STX_DTYPE_DOUBLE) {
        *m = ACC_F64;
    } else {
        return stx__node_err(c, STX_E_UNSUPPORTED, "gradients of %s tensors are not supported",
                             stx_dtype_name(g->dtype));
    }
    return STX_OK;
}

/* Concat and Split move rows between one tensor seen as [outer, sum(blk)] bytes and n parts
 * seen as [outer, blk[k]] bytes. Work units are (row, part) pairs; with few big units each
 * copy is parallelised internally instead. */
static void parts_copy(char *whole, char *const *parts, const size_t *blk, const size_t *pre, int n,
                       int64_t outer, size_t row, bool to_whole) {
    int64_t units = outer * n;
    size_t total = row * (size_t)outer;
    if (total >= PAR_MIN_BYTES && units >= 2 * (int64_t)stx__threads()) {
#pragma omp parallel for schedule(static)
        for (int64_t u = 0; u < units; u++) {
            int64_t o = u / n;
            int k = (int)(u % n);
            char *w = whole + (size_t)o * row + pre[k], *p = parts[k] + (size_t)o * blk[k];
            if (blk[k]) memcpy(to_whole ? w : p, to_whole ? p : w, blk[k]);
        }
        return;
    }
    for (int64_t o = 0; o < outer; o++)
        for (int k = 0; k < n; k++) {
            char *w = whole + (size_t)o * row + pre[k], *p = parts[k] + (size_t)o * blk[k];
            if (blk[k]) copy_bytes(to_whole ? w : p, to_whole ? p : w, blk[k]);
        }
}

/* Whole-tensor copy for the view ops (Flatten, Reshape, Squeeze, Unsqueeze): the data is
 * unchanged, only the shape differs. A no-op if the planner aliased output and input. */
static stx_status forward_copy(stx_op_ctx *c) {
    const stx_tensor *x = c->in[0];
    stx_tensor *y = c->out[0];
    copy_bytes(y->data, x->data, (size_t)stx__numel(x->dims, x->rank) * esize(x));
    return STX_OK;
}

/* Their VJP: the same elements in the same row-major order, so dx (flat) += dy (flat). */
static stx_status backward_copy(stx_op_ctx *c) {
    stx_tensor *dx = c->din[0];
    const stx_tensor *dy = c->dout[0];
    acc_mode m;
    if (!dx || !dy) return STX_OK;
    stx_status st = grad_mode(c, dx, &m);
    if (st) return st;
    acc_flat(m, dx->data, dy->data, stx__numel(dx->dims, dx->rank));
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Flatten: [d0..dr-1] -> [d0*..*d(axis-1), d(axis)*..*d(r-1)], axis in [-r, r].
 */
static stx_status flatten_infer(stx_op_ctx *c) {
    stx_status st = need_data(c, 0, "input");
    if (st) return st;
    const stx_tensor *x = c->in[0];
    int64_t axis = stx__attr_int(c->node, "axis", 1);
    char sb[128];
    if (axis < -x->rank || axis > x->rank)
        return stx__node_err(c, STX_E_INVALID, "axis %lld out of range for input shape %s",
                             (long long)axis, SHAPE_STR(x, sb));
    if (axis < 0) axis += x->rank;
    int64_t d[2] = {stx__numel(x->dims, (int)axis),
                    stx__numel(x->dims + axis, x->rank - (int)axis)};
    stx__set_out(c, 0, x->dtype, d, 2);
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Reshape: shape entries 0 copy the input dim (unless allowzero=1: a real 0), one entry may be
 * -1 and is inferred from the element count.
 */
static stx_status reshape_infer(stx_op_ctx *c) {
    stx_status st = need_data(c, 0, "data");
    if (st) return st;
    const stx_tensor *x = c->in[0];
    int64_t sh[STX_MAX_RANK], out[STX_MAX_RANK];
    int n;
    char sb[128], sb2[128];
    if (!opt_in(c, 1) && c->opset >= 5)
        return stx__node_err(c, STX_E_INVALID, "missing required input 1 (shape)");
    st = ints_in_or_attr(c, 1, "shape", "shape", sh, STX_MAX_RANK, &n);
    if (st) return st;
    if (n < 0) return stx__node_err(c, STX_E_INVALID, "missing 'shape' attribute");
    bool allowzero = stx__attr_int(c->node, "allowzero", 0) != 0, has_zero = false;
    int neg = -1;
    int64_t known = 1;
    for (int i = 0; i < n; i++) {
        if (sh[i] == -1) {
            if (neg >= 0)
                return stx__node_err(c, STX_E_INVALID, "shape %s has more than one -1",
                                     stx__shape_str(sh, n, sb, sizeof sb));
            neg = i;
            continue;
        }
        if (sh[i] < -1)
            return stx__node_err(c, STX_E_INVALID, "invalid entry %lld in shape %s",
                                 (long long)sh[i], stx__shape_str(sh, n, sb, sizeof sb));
        if (sh[i] == 0 && !allowzero) {
            if (i >= x->rank)
                return stx__node_err(c, STX_E_SHAPE,
                                     "shape %s copies dim %d (0 entry) but the input %s has "
                                     "rank %d",
                                     stx__shape_str(sh, n, sb, sizeof sb), i, SHAPE_STR(x, sb2),
                                     x->rank);
            out[i] = x->dims[i];
        } else {
            out[i] = sh[i];
        }
        if (out[i] == 0) has_zero = true;
        if (out[i] != 0 && known > ((int64_t)1 << 62) / out[i])
            return stx__node_err(c, STX_E_SHAPE, "shape %s is too large",
                                 stx__shape_str(sh, n, sb, sizeof sb));
        known *= out[i];
    }
    int64_t total = stx__numel(x->dims, x->rank);
    if (neg >= 0) {
        if (allowzero && has_zero)
            return stx__node_err(c, STX_E_INVALID,
                                 "shape %s has both 0 and -1, which allowzero=1 forbids",
                                 stx__shape_str(sh, n, sb, sizeof sb));
        if (known == 0 || total % known != 0)
            return stx__node_err(c, STX_E_SHAPE, "cannot reshape input %s to %s", SHAPE_STR(x, sb2),
                                 stx__shape_str(sh, n, sb, sizeof sb));
        out[neg] = total / known;
    } else if (known != total) {
        return stx__node_err(c, STX_E_SHAPE, "cannot reshape input %s (%lld elements) to %s",
                             SHAPE_STR(x, sb2), (long long)total,
                             stx__shape_str(sh, n, sb, sizeof sb));
    }
    stx__set_out(c, 0, x->dtype, out, n);
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Transpose: out.dims[i] = in.dims[perm[i]]; perm defaults to reversing the axes.
 */
static stx_status transpose_perm(stx_op_ctx *c, int *perm) {
    const stx_tensor *x = c->in[0];
    const int64_t *p;
    int n = stx__attr_ints(c->node, "perm", &p);
    char sb[128];
    if (n < 0) {
        for (int i = 0; i < x->rank; i++) perm[i] = x->rank - 1 - i;
        return STX_OK;
    }
    if (n != x->rank)
        return stx__node_err(c, STX_E_SHAPE, "perm has %d entries but the input %s has rank %d", n,
                             SHAPE_STR(x, sb), x->rank);
    bool seen[STX_MAX_RANK] = {false};
    for (int i = 0; i < n; i++) {
        if (p[i] < 0 || p[i] >= n || seen[p[i]])
            return stx__node_err(c, STX_E_INVALID, "perm is not a permutation of 0..%d", n - 1);
        seen[p[i]] = true;
        perm[i] = (int)p[i];
    }
    return STX_OK;
}

static stx_status transpose_infer(stx_op_ctx *c) {
    stx_status st = need_data(c, 0, "data");
    if (st) return st;
    int perm[STX_MAX_RANK];
    if ((st = transpose_perm(c, perm))) return st;
    const stx_tensor *x = c->in[0];
    int64_t d[STX_MAX_RANK];
    for (int i = 0; i < x->rank; i++) d[i] = x->dims[perm[i]];
    stx__set_out(c, 0, x->dtype, d, x->rank);
    return STX_OK;
}

static stx_status transpose_forward(stx_op_ctx *c) {
    int perm[STX_MAX_RANK];
    stx_status st = transpose_perm(c, perm);
    if (st) return st;
    const stx_tensor *x = c->in[0];
    int64_t xs[STX_MAX_RANK];
    dense_strides(x->dims, x->rank, xs);
    sview v = {.rank = x->rank};
    for (int i = 0; i < x->rank; i++) {
        v.dims[i] = x->dims[perm[i]];
        v.str[i] = xs[perm[i]];
    }
    sview_copy(c->out[0]->data, x->data, v, esize(x), ACC_NONE);
    return STX_OK;
}

/* y[j] = x[i] with j_k = i_perm[k], so dx[i] += dy[j]: dx is the transpose of dy by the inverse
 * permutation, i.e. the view of dy whose axis perm[k] has dy's stride of axis k. */
static stx_status transpose_backward(stx_op_ctx *c) {
    stx_tensor *dx = c->din[0];
    const stx_tensor *dy = c->dout[0];
    int perm[STX_MAX_RANK];
    acc_mode m;
    if (!dx || !dy) return STX_OK;
    stx_status st = transpose_perm(c, perm);
    if (st || (st = grad_mode(c, dx, &m))) return st;
    int64_t ys[STX_MAX_RANK];
    dense_strides(dy->dims, dy->rank, ys);
    sview v = {.rank = dx->rank};
    for (int k = 0; k < dx->rank; k++) {
        v.dims[perm[k]] = dy->dims[k];
        v.str[perm[k]] = ys[k];
    }
    sview_copy(dx->data, dy->data, v, acc_esize(m), m);
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Squeeze / Unsqueeze: axes as an input since opset 13, as an attribute before.
 */
static stx_status squeeze_infer(stx_op_ctx *c) {
    stx_status st = need_data(c, 0, "data");
    if (st) return st;
    const stx_tensor *x = c->in[0];
    int64_t axes[STX_MAX_RANK], d[STX_MAX_RANK];
    int n, r = 0;
    char sb[128];
    if ((st = ints_in_or_attr(c, 1, "axes", "axes", axes, STX_MAX_RANK, &n))) return st;
    bool drop[STX_MAX_RANK] = {false};
    if (n <= 0) {
        /* No (or empty) axes: remove every unit dimension. */
        for (int i = 0; i < x->rank; i++) drop[i] = x->dims[i] == 1;
    } else {
        for (int k = 0; k < n; k++) {
            int a;
            if (!stx__norm_axis(axes[k], x->rank, &a))
                return stx__node_err(c, STX_E_INVALID, "axis %lld out of range for input %s",
                                     (long long)axes[k], SHAPE_STR(x, sb));
            if (x->dims[a] != 1)
                return stx__node_err(c, STX_E_SHAPE,
                                     "cannot squeeze axis %d of size %lld (input %s)", a,
                                     (long long)x->dims[a], SHAPE_STR(x, sb));
            drop[a] = true;
        }
    }
    for (int i = 0; i < x->rank; i++)
        if (!drop[i]) d[r++] = x->dims[i];
    stx__set_out(c, 0, x->dtype, d, r);
    return STX_OK;
}

static stx_status unsqueeze_infer(stx_op_ctx *c) {
    stx_status st = need_data(c, 0, "data");
    if (st) return st;
    const stx_tensor *x = c->in[0];
    int64_t axes[STX_MAX_RANK], d[STX_MAX_RANK];
    int n;
    if ((st = ints_in_or_attr(c, 1, "axes", "axes", axes, STX_MAX_RANK, &n))) return st;
    if (n < 0) return stx__node_err(c, STX_E_INVALID, "missing axes (input 1 or attribute)");
    int r = x->rank + n;
    if (r > STX_MAX_RANK)
        return stx__node_err(c, STX_E_UNSUPPORTED, "output rank %d exceeds the maximum %d", r,
                             STX_MAX_RANK);
    bool ins[STX_MAX_RANK] = {false};
    for (int k = 0; k < n; k++) {
        int a;
        if (!stx__norm_axis(axes[k], r, &a))
            return stx__node_err(c, STX_E_INVALID, "axis %lld out of range for output rank %d",
                                 (long long)axes[k], r);
        if (ins[a]) return stx__node_err(c, STX_E_INVALID, "axes contain axis %d twice", a);
        ins[a] = true;
    }
    for (int i = 0, j = 0; i < r; i++) d[i] = ins[i] ? 1 : x->dims[j++];
    stx__set_out(c, 0, x->dtype, d, r);
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Concat: all inputs share rank, dtype and every dim but `axis`.
 */
static stx_status concat_axis(stx_op_ctx *c, int *axis) {
    const stx_tensor *x = c->in[0];
    const stx_attr *a = stx__attr(c->node, "axis");
    if (!a && c->opset >= 4)
        return stx__node_err(c, STX_E_INVALID, "missing required attribute 'axis'");
    int64_t ax = a ? a->i : 1; /* opset 1 defaulted to 1 */
    char sb[128];
    if (!stx__norm_axis(ax, x->rank, axis))
        return stx__node_err(c, STX_E_INVALID, "axis %lld out of range for input %s", (long long)ax,
                             SHAPE_STR(x, sb));
    return STX_OK;
}

static stx_status concat_infer(stx_op_ctx *c) {
    stx_status st;
    for (int i = 0; i < c->n_in; i++)
        if ((st = need_data(c, i, "inputs"))) return st;
    const stx_tensor *x = c->in[0];
    int axis;
    if ((st = concat_axis(c, &axis))) return st;
    int64_t d[STX_MAX_RANK];
    char sb[128], sb2[128];
    for (int k = 0; k < x->rank; k++) d[k] = x->dims[k];
    for (int i = 1; i < c->n_in; i++) {
        const stx_tensor *t = c->in[i];
        if (t->dtype != x->dtype)
            return stx__node_err(c, STX_E_INVALID, "input %d has dtype %s, input 0 has %s", i,
                                 stx_dtype_name(t->dtype), stx_dtype_name(x->dtype));
        bool ok = t->rank == x->rank;
        for (int k = 0; ok && k < x->rank; k++) ok = k == axis || t->dims[k] == x->dims[k];
        if (!ok)
            return stx__node_err(c, STX_E_SHAPE,
                                 "input %d has shape %s, incompatible with input 0 %s on axis %d",
                                 i, SHAPE_STR(t, sb), SHAPE_STR(x, sb2), axis);
        d[axis] += t->dims[axis];
    }
    stx__set_out(c, 0, x->dtype, d, x->rank);
    return STX_OK;
}

static stx_status concat_forward(stx_op_ctx *c) {
    const stx_tensor *x = c->in[0];
    int axis;
    stx_status st = concat_axis(c, &axis);
    if (st) return st;
    size_t es = esize(x), blk[MAX_PARTS], pre[MAX_PARTS], row = 0;
    char *parts[MAX_PARTS];
    int64_t outer = stx__numel(x->dims, axis);
    int64_t inner = stx__numel(x->dims + axis + 1, x->rank - axis - 1);
    for (int i = 0; i < c->n_in; i++) {
        blk[i] = (size_t)(c->in[i]->dims[axis] * inner) * es;
        pre[i] = row;
        row += blk[i];
        parts[i] = c->in[i]->data;
    }
    parts_copy(c->out[0]->data, parts, blk, pre, c->n_in, outer, row, true);
    return STX_OK;
}

/* Input i occupies columns [pre_i, pre_i + n_i) of every row of y seen as [outer, row], so
 * dx_i[o, :] += dy[o, pre_i : pre_i + n_i]. Parts are done one after the other (each copy
 * parallel inside): an input used twice (Concat(x, x)) has one gradient buffer for both. */
static stx_status concat_backward(stx_op_ctx *c) {
    const stx_tensor *x = c->in[0], *dy = c->dout[0];
    int axis;
    if (!dy) return STX_OK;
    stx_status st = concat_axis(c, &axis);
    if (st) return st;
    int64_t outer = stx__numel(x->dims, axis);
    int64_t inner = stx__numel(x->dims + axis + 1, x->rank - axis - 1);
    int64_t row = dy->dims[axis] * inner, pre = 0;
    for (int i = 0; i < c->n_in; i++) {
        stx_tensor *dx = c->din[i];
        int64_t w = c->in[i]->dims[axis] * inner;
        if (dx) {
            acc_mode m;
            if ((st = grad_mode(c, dx, &m))) return st;
            sview v = {.rank = 2, .dims = {outer, w}, .str = {row, 1}};
            sview_copy(dx->data, (const char *)dy->data + pre * (int64_t)acc_esize(m), v,
                       acc_esize(m), m);
        }
        pre += w;
    }
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Split: sizes from input 1 (opset 13+) or the 'split' attribute (before), else equal parts
 * ('num_outputs', opset 18: ceil-sized parts with a smaller last one).
 */
static stx_status split_sizes(stx_op_ctx *c, int *axis, int64_t *sizes) {
    const stx_tensor *x = c->in[0];
    int64_t ax = stx__attr_int(c->node, "axis", 0);
    char sb[128];
    if (!stx__norm_axis(ax, x->rank, axis))
        return stx__node_err(c, STX_E_INVALID, "axis %lld out of range for input %s", (long long)ax,
                             SHAPE_STR(x, sb));
    int64_t dim = x->dims[*axis];
    int n, nout = c->n_out;
    stx_status st = ints_in_or_attr(c, 1, "split", "split", sizes, MAX_PARTS, &n);
    if (st) return st;
    if (n >= 0) {
        if (n != nout)
            return stx__node_err(c, STX_E_INVALID, "split has %d sizes for %d outputs", n, nout);
        int64_t sum = 0;
        for (int k = 0; k < n; k++) {
            if (sizes[k] < 0 || sizes[k] > dim)
                return stx__node_err(c, STX_E_INVALID, "invalid split size %lld",
                                     (long long)sizes[k]);
            sum += sizes[k];
        }
        if (sum != dim)
            return stx__node_err(c, STX_E_SHAPE,
                                 "split sizes sum to %lld but axis %d of input %s has %lld",
                                 (long long)sum, *axis, SHAPE_STR(x, sb), (long long)dim);
        return STX_OK;
    }
    const stx_attr *no = stx__attr(c->node, "num_outputs");
    if (no) {
        if (no->i != nout)
            return stx__node_err(c, STX_E_INVALID, "num_outputs=%lld but the node has %d outputs",
                                 (long long)no->i, nout);
        int64_t chunk = (dim + nout - 1) / nout;
        if (chunk * (nout - 1) > dim)
            return stx__node_err(c, STX_E_SHAPE, "cannot split axis of size %lld into %d parts",
                                 (long long)dim, nout);
        for (int k = 0; k < nout; k++) sizes[k] = k < nout - 1 ? chunk : dim - chunk * (nout - 1);
        return STX_OK;
    }
    if (dim % nout != 0)
        return stx__node_err(c, STX_E_SHAPE,
                             "axis %d of input %s (size %lld) does not split into %d equal parts",
                             *axis, SHAPE_STR(x, sb), (long long)dim, nout);
    for (int k = 0; k < nout; k++) sizes[k] = dim / nout;
    return STX_OK;
}

static stx_status split_infer(stx_op_ctx *c) {
    stx_status st = need_data(c, 0, "input");
    if (st) return st;
    const stx_tensor *x = c->in[0];
    int64_t sizes[MAX_PARTS], d[STX_MAX_RANK];
    int axis;
    if ((st = split_sizes(c, &axis, sizes))) return st;
    for (int k = 0; k < x->rank; k++) d[k] = x->dims[k];
    for (int k = 0; k < c->n_out; k++) {
        d[axis] = sizes[k];
        stx__set_out(c, k, x->dtype, d, x->rank);
    }
    return STX_OK;
}

static stx_status split_forward(stx_op_ctx *c) {
    const stx_tensor *x = c->in[0];
    int64_t sizes[MAX_PARTS];
    int axis;
    stx_status st = split_sizes(c, &axis, sizes);
    if (st) return st;
    size_t es = esize(x), blk[MAX_PARTS], pre[MAX_PARTS], row = 0;
    char *parts[MAX_PARTS];
    int64_t outer = stx__numel(x->dims, axis);
    int64_t inner = stx__numel(x->dims + axis + 1, x->rank - axis - 1);
    int n = 0;
    for (int k = 0; k < c->n_out; k++) {
        size_t b = (size_t)(sizes[k] * inner) * es;
        if (c->out[k]) { /* an omitted output is simply skipped */
            blk[n] = b;
            pre[n] = row;
            parts[n++] = c->out[k]->data;
        }
        row += b;
    }
    parts_copy(x->data, parts, blk, pre, n, outer, row, false);
    return STX_OK;
}

/* Output k is columns [pre_k, pre_k + n_k) of every row of x seen as [outer, row], so
 * dx[o, pre_k : pre_k + n_k] += dy_k[o, :]; outputs without a gradient add nothing. */
static stx_status split_backward(stx_op_ctx *c) {
    const stx_tensor *x = c->in[0];
    stx_tensor *dx = c->din[0];
    int64_t sizes[MAX_PARTS];
    int axis;
    acc_mode m;
    if (!dx) return STX_OK;
    stx_status st = split_sizes(c, &axis, sizes);
    if (st || (st = grad_mode(c, dx, &m))) return st;
    int64_t outer = stx__numel(x->dims, axis);
    int64_t inner = stx__numel(x->dims + axis + 1, x->rank - axis - 1);
    int64_t row = x->dims[axis] * inner, pre = 0;
    for (int k = 0; k < c->n_out; k++) {
        const stx_tensor *dy = c->dout[k];
        int64_t w = sizes[k] * inner;
        if (dy) {
            bview v = {.rank = 2, .dims = {outer, w}, .xs = {row, 1}, .ys = {w, 1}};
            bview_acc((char *)dx->data + pre * (int64_t)acc_esize(m), dy->data, v, m);
        }
        pre += w;
    }
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Slice: per axis, negative starts/ends get dims added, then starts are clamped to [0, d]
 * ([0, d-1] for negative steps) and ends to [0, d] ([-1, d-1] for negative steps), as in the
 * opset-13 spec. Inputs since opset 10; before, 'starts'/'ends'/'axes' attributes (no steps).
 */
static stx_status slice_view(stx_op_ctx *c, sview *v, int64_t *base) {
    const stx_tensor *x = c->in[0];
    int r = x->rank;
    int64_t starts[STX_MAX_RANK], ends[STX_MAX_RANK], axes[STX_MAX_RANK], steps[STX_MAX_RANK];
    int ns, ne, na = -1, np = -1;
    stx_status st;
    char sb[128];
    if (opt_in(c, 1) || c->opset >= 10) {
        if ((st = const_ints(c, 1, "starts", starts, STX_MAX_RANK, &ns))) return st;
        if ((st = const_ints(c, 2, "ends", ends, STX_MAX_RANK, &ne))) return st;
        if (opt_in(c, 3) && (st = const_ints(c, 3, "axes", axes, STX_MAX_RANK, &na))) return st;
        if (opt_in(c, 4) && (st = const_ints(c, 4, "steps", steps, STX_MAX_RANK, &np))) return st;
    } else {
        if ((st = ints_in_or_attr(c, 1, "starts", "starts", starts, STX_MAX_RANK, &ns)) ||
            (st = ints_in_or_attr(c, 2, "ends", "ends", ends, STX_MAX_RANK, &ne)) ||
            (st = ints_in_or_attr(c, 3, "axes", "axes", axes, STX_MAX_RANK, &na)))
            return st;
        if (ns < 0 || ne < 0)
            return stx__node_err(c, STX_E_INVALID, "missing 'starts' or 'ends' attribute");
    }
    if (ne != ns || (na >= 0 && na != ns) || (np >= 0 && np != ns))
        return stx__node_err(c, STX_E_INVALID,
                             "starts, ends, axes and steps must have the same length (got %d, "
                             "%d, %d, %d; -1 = omitted)",
                             ns, ne, na, np);
    int64_t xs[STX_MAX_RANK], lo[STX_MAX_RANK], step[STX_MAX_RANK];
    dense_strides(x->dims, r, xs);
    v->rank = r;
    for (int i = 0; i < r; i++) {
        lo[i] = 0;
        step[i] = 1;
        v->dims[i] = x->dims[i];
    }
    bool seen[STX_MAX_RANK] = {false};
    for (int k = 0; k < ns; k++) {
        int a;
        int64_t ax = na >= 0 ? axes[k] : k;
        if (!stx__norm_axis(ax, r, &a))
            return stx__node_err(c, STX_E_INVALID, "axis %lld out of range for input %s",
                                 (long long)ax, SHAPE_STR(x, sb));
        if (seen[a]) return stx__node_err(c, STX_E_INVALID, "axis %d is sliced twice", a);
        seen[a] = true;
        int64_t sp = np >= 0 ? steps[k] : 1, d = x->dims[a], s = starts[k], e = ends[k], len;
        if (sp == 0) return stx__node_err(c, STX_E_INVALID, "step for axis %d is 0", a);
        if (s < 0) s += d;
        if (e < 0) e += d;
        if (sp > 0) {
            s = s < 0 ? 0 : s > d ? d : s;
            e = e < 0 ? 0 : e > d ? d : e;
            /* ceil((e - s) / sp) written so that huge steps cannot overflow */
            len = e > s ? (e - s - 1) / sp + 1 : 0;
        } else {
            s = s < 0 ? 0 : s > d - 1 ? d - 1 : s;
            e = e < -1 ? -1 : e > d - 1 ? d - 1 : e;
            int64_t as = sp == INT64_MIN ? INT64_MAX : -sp;
            len = d > 0 && s > e ? (s - e - 1) / as + 1 : 0;
        }
        lo[a] = s;
        step[a] = sp;
        v->dims[a] = len;
    }
    *base = 0;
    bool empty = stx__numel(v->dims, r) == 0;
    for (int i = 0; i < r; i++) {
        v->str[i] = xs[i] * step[i];
        if (!empty) *base += lo[i] * xs[i];
    }
    return STX_OK;
}

static stx_status slice_infer(stx_op_ctx *c) {
    stx_status st = need_data(c, 0, "data");
    if (st) return st;
    sview v;
    int64_t base;
    if ((st = slice_view(c, &v, &base))) return st;
    stx__set_out(c, 0, c->in[0]->dtype, v.dims, v.rank);
    return STX_OK;
}

static stx_status slice_forward(stx_op_ctx *c) {
    sview v;
    int64_t base;
    stx_status st = slice_view(c, &v, &base);
    if (st) return st;
    const stx_tensor *x = c->in[0];
    size_t es = esize(x);
    sview_copy(c->out[0]->data, (const char *)x->data + base * (int64_t)es, v, es, ACC_NONE);
    return STX_OK;
}

/* y = the view (base, strides xs_k * step_k) of x, so dy scatters back through the same view:
 * dx[base + sum j_k xs_k step_k] += dy[j]; elements not selected get nothing. Distinct j reach
 * distinct elements (steps are non-zero), negative steps included. */
static stx_status slice_backward(stx_op_ctx *c) {
    stx_tensor *dx = c->din[0];
    const stx_tensor *dy = c->dout[0];
    sview sv;
    int64_t base;
    acc_mode m;
    if (!dx || !dy) return STX_OK;
    stx_status st = slice_view(c, &sv, &base);
    if (st || (st = grad_mode(c, dx, &m))) return st;
    bview v = {.rank = sv.rank};
    dense_strides(sv.dims, sv.rank, v.ys);
    for (int i = 0; i < sv.rank; i++) {
        v.dims[i] = sv.dims[i];
        v.xs[i] = sv.str[i];
    }
    bview_acc((char *)dx->data + base * (int64_t)acc_esize(m), dy->data, v, m);
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Gather: out = data[:axis] + indices.shape + data[axis+1:]; negative indices count from the
 * end of the axis; out-of-range indices are an error (checked before copying).
 */
static int64_t index_at(const stx_tensor *t, int64_t k) {
    return t->dtype == STX_DTYPE_INT64 ? ((const int64_t *)t->data)[k]
                                       : ((const int32_t *)t->data)[k];
}

static stx_status gather_infer(stx_op_ctx *c) {
    stx_status st = need_data(c, 0, "data");
    if (st || (st = need_data(c, 1, "indices"))) return st;
    const stx_tensor *x = c->in[0], *ind = c->in[1];
    char sb[128];
    if (ind->dtype != STX_DTYPE_INT64 && ind->dtype != STX_DTYPE_INT32)
        return stx__node_err(c, STX_E_INVALID, "indices must be int64 or int32, got %s",
                             stx_dtype_name(ind->dtype));
    int axis;
    int64_t ax = stx__attr_int(c->node, "axis", 0);
    if (!stx__norm_axis(ax, x->rank, &axis))
        return stx__node_err(c, STX_E_INVALID, "axis %lld out of range for data %s", (long long)ax,
                             SHAPE_STR(x, sb));
    int r = x->rank - 1 + ind->rank;
    if (r > STX_MAX_RANK)
        return stx__node_err(c, STX_E_UNSUPPORTED, "output rank %d exceeds the maximum %d", r,
                             STX_MAX_RANK);
    int64_t d[STX_MAX_RANK];
    int k = 0;
    for (int i = 0; i < axis; i++) d[k++] = x->dims[i];
    for (int i = 0; i < ind->rank; i++) d[k++] = ind->dims[i];
    for (int i = axis + 1; i < x->rank; i++) d[k++] = x->dims[i];
    stx__set_out(c, 0, x->dtype, d, r);
    return STX_OK;
}

static stx_status gather_forward(stx_op_ctx *c) {
    const stx_tensor *x = c->in[0], *ind = c->in[1];
    int axis;
    stx__norm_axis(stx__attr_int(c->node, "axis", 0), x->rank, &axis);
    int64_t n = x->dims[axis], ni = stx__numel(ind->dims, ind->rank);
    char sb[128];
    for (int64_t j = 0; j < ni; j++) {
        int64_t ix = index_at(ind, j);
        if (ix < -n || ix >= n)
            return stx__node_err(c, STX_E_INVALID, "index %lld out of range for axis %d of data %s",
                                 (long long)ix, axis, SHAPE_STR(x, sb));
    }
    size_t es = esize(x);
    int64_t outer = stx__numel(x->dims, axis);
    size_t blk = (size_t)stx__numel(x->dims + axis + 1, x->rank - axis - 1) * es;
    int64_t units = outer * ni;
    const char *src = x->data;
    char *dst = c->out[0]->data;
    bool par = blk * (size_t)units >= PAR_MIN_BYTES && units > 1;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t u = 0; u < units; u++) {
        int64_t o = u / ni, ix = index_at(ind, u % ni);
        if (ix < 0) ix += n;
        memcpy(dst + (size_t)u * blk, src + (size_t)(o * n + ix) * blk, blk);
    }
    return STX_OK;
}

/* y[o, j, :] = x[o, ind[j], :] (x seen as [outer, n, inner], y as [outer, ni, inner]), so
 *     dx[o, ind[j], :] += dy[o, j, :]  for every j,
 * a scatter-add in which repeated indices accumulate. Determinism without atomics: a task owns
 * whole outer slices o (or, when there are few, a column chunk of the inner block of one slice)
 * and walks j in ascending order, so every dx element sums its contributions in the order of j
 * whatever the thread count. */
static stx_status gather_backward(stx_op_ctx *c) {
    const stx_tensor *x = c->in[0], *ind = c->in[1], *dy = c->dout[0];
    stx_tensor *dx = c->din[0];
    int axis;
    acc_mode m;
    char sb[128];
    if (!dx || !dy) return STX_OK;
    stx_status st = grad_mode(c, dx, &m);
    if (st) return st;
    if (!ind->data)
        return stx__node_err(c, STX_E_INVALID, "the indices are not available for backward");
    stx__norm_axis(stx__attr_int(c->node, "axis", 0), x->rank, &axis);
    int64_t n = x->dims[axis], ni = stx__numel(ind->dims, ind->rank);
    for (int64_t j = 0; j < ni; j++) {
        int64_t ix = index_at(ind, j);
        if (ix < -n || ix >= n)
            return stx__node_err(c, STX_E_INVALID, "index %lld out of range for axis %d of data %s",
                                 (long long)ix, axis, SHAPE_STR(x, sb));
    }
    int64_t outer = stx__numel(x->dims, axis), es = (int64_t)acc_esize(m);
    int64_t inner = stx__numel(x->dims + axis + 1, x->rank - axis - 1);
    int64_t nic = 1, icw = inner, tasks = outer;
    if ((size_t)(outer * ni * inner * es) >= PAR_MIN_BYTES) {
        int64_t want = 4 * (int64_t)stx__threads();
        if (outer < want) {
            int64_t per = (want + outer - 1) / outer, most = inner / 256 > 1 ? inner / 256 : 1;
            nic = per < most ? per : most;
            icw = (inner + nic - 1) / nic;
            nic = (inner + icw - 1) / icw;
            tasks = outer * nic;
        }
    } else {
        tasks = outer > 0 ? 1 : 0;
    }
    bool par = tasks > 1;
    char *gx = dx->data;
    const char *gy = dy->data;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t o0, o1, c0 = 0, c1 = inner;
        if (nic > 1) {
            o0 = t / nic;
            o1 = o0 + 1;
            c0 = (t % nic) * icw;
            c1 = c0 + icw < inner ? c0 + icw : inner;
        } else if (par) {
            o0 = t;
            o1 = t + 1;
        } else {
            o0 = 0;
            o1 = outer;
        }
        for (int64_t o = o0; o < o1; o++)
            for (int64_t j = 0; j < ni; j++) {
                int64_t ix = index_at(ind, j);
                if (ix < 0) ix += n;
                acc_row(m, gx + ((o * n + ix) * inner + c0) * es, 1,
                        gy + ((o * ni + j) * inner + c0) * es, 1, c1 - c0);
            }
    }
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Pad: pads = [x1_begin, x2_begin, ..., x1_end, x2_end, ...] (negative values crop); modes
 * constant / reflect (mirror without repeating the edge) / edge (repeat the edge). Since
 * opset 11 pads and constant_value are inputs (axes too in opset 18), before attributes.
 */
typedef enum { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE } pad_mode;

static stx_status pad_check(const stx_node *n, stx_err *e) {
    const char *m = stx__attr_str(n, "mode", "constant");
    if (strcmp(m, "constant") && strcmp(m, "reflect") && strcmp(m, "edge"))
        return stx__node_err_n(n, e, STX_E_UNSUPPORTED,
                               "mode '%s' is not supported (constant, reflect, edge)", m);
    return STX_OK;
}

static pad_mode pad_get_mode(const stx_node *n) {
    const char *m = stx__attr_str(n, "mode", "constant");
    return !strcmp(m, "reflect") ? PAD_REFLECT : !strcmp(m, "edge") ? PAD_EDGE : PAD_CONSTANT;
}

/* Pads per axis (begin, end) and the output dims. */
static stx_status pad_params(stx_op_ctx *c, int64_t *pb, int64_t *pe, int64_t *od) {
    const stx_tensor *x = c->in[0];
    int r = x->rank, n, na = -1;
    int64_t pads[2 * STX_MAX_RANK], axes[STX_MAX_RANK];
    char sb[128];
    stx_status st;
    if (!opt_in(c, 1) && c->opset >= 11)
        return stx__node_err(c, STX_E_INVALID, "missing required input 1 (pads)");
    if ((st = ints_in_or_attr(c, 1, "pads", "pads", pads, 2 * STX_MAX_RANK, &n))) return st;
    if (n < 0) return stx__node_err(c, STX_E_INVALID, "missing 'pads' attribute");
    if (opt_in(c, 3) && (st = const_ints(c, 3, "axes", axes, STX_MAX_RANK, &na))) return st;
    int nax = na >= 0 ? na : r;
    if (n != 2 * nax)
        return stx__node_err(c, STX_E_SHAPE, "pads has %d values, expected %d for input %s", n,
                             2 * nax, SHAPE_STR(x, sb));
    for (int i = 0; i < r; i++) pb[i] = pe[i] = 0;
    for (int k = 0; k < nax; k++) {
        int a = k;
        if (na >= 0 && !stx__norm_axis(axes[k], r, &a))
            return stx__node_err(c, STX_E_INVALID, "axis %lld out of range for input %s",
                                 (long long)axes[k], SHAPE_STR(x, sb));
        pb[a] = pads[k];
        pe[a] = pads[k + nax];
    }
    pad_mode mode = pad_get_mode(c->node);
    for (int i = 0; i < r; i++) {
        od[i] = x->dims[i] + pb[i] + pe[i];
        if (od[i] < 0)
            return stx__node_err(c, STX_E_SHAPE, "pads crop axis %d of input %s below zero", i,
                                 SHAPE_STR(x, sb));
        if (mode != PAD_CONSTANT && x->dims[i] == 0 && od[i] > 0)
            return stx__node_err(c, STX_E_SHAPE,
                                 "cannot %s-pad axis %d of input %s: it has no elements",
                                 mode == PAD_EDGE ? "edge" : "reflect", i, SHAPE_STR(x, sb));
    }
    return STX_OK;
}

static stx_status pad_infer(stx_op_ctx *c) {
    stx_status st = need_data(c, 0, "data");
    if (st) return st;
    const stx_tensor *x = c->in[0], *cv = opt_in(c, 2);
    int64_t pb[STX_MAX_RANK], pe[STX_MAX_RANK], od[STX_MAX_RANK];
    char sb[128];
    if ((st = pad_params(c, pb, pe, od))) return st;
    if (cv && (cv->dtype != x->dtype || stx__numel(cv->dims, cv->rank) != 1))
        return stx__node_err(c, STX_E_INVALID, "constant_value must be one %s element, got %s %s",
                             stx_dtype_name(x->dtype), stx_dtype_name(cv->dtype),
                             SHAPE_STR(cv, sb));
    stx__set_out(c, 0, x->dtype, od, x->rank);
    return STX_OK;
}

/* Stores v in dtype dt (for the pre-opset-11 float 'value' attribute). */
static void store_scalar(stx_dtype dt, double v, char *out) {
    switch (dt) {
    case STX_DTYPE_FLOAT: {
        float f = (float)v;
        memcpy(out, &f, 4);
        break;
    }
    case STX_DTYPE_DOUBLE:
        memcpy(out, &v, 8);
        break;
    case STX_DTYPE_INT64: {
        int64_t i = (int64_t)v;
        memcpy(out, &i, 8);
        break;
    }
    case STX_DTYPE_INT32: {
        int32_t i = (int32_t)v;
        memcpy(out, &i, 4);
        break;
    }
    case STX_DTYPE_INT8:
        out[0] = (char)(int8_t)v;
        break;
    case STX_DTYPE_UINT8:
        out[0] = (char)(uint8_t)v;
        break;
    case STX_DTYPE_BOOL:
        out[0] = v != 0;
        break;
    default:
        memset(out, 0, 8);
    }
}

/* Source index along an axis of size n for padded coordinate i (already shifted by the begin
 * pad); -1 means "the constant". Reflect mirrors about the first and last element, which is
 * periodic with period 2(n-1) (numpy's reflect, also for pads longer than the axis). */
static int64_t pad_map(int64_t i, int64_t n, pad_mode m) {
    if (i >= 0 && i < n) return i;
    if (m == PAD_CONSTANT) return -1;
    if (m == PAD_EDGE) return i < 0 ? 0 : n - 1;
    if (n == 1) return 0;
    int64_t p = 2 * (n - 1);
    if (i < 0 && i > -n) return -i; /* the first reflection on either side, without a division */
    if (i >= n && i < p) return p - i;
    i %= p;
    if (i < 0) i += p;
    return i < n ? i : p - i;
}

static stx_status pad_forward(stx_op_ctx *c) {
    const stx_tensor *x = c->in[0], *cvt = opt_in(c, 2);
    stx_tensor *y = c->out[0];
    int64_t pb[STX_MAX_RANK], pe[STX_MAX_RANK], od[STX_MAX_RANK], xs[STX_MAX_RANK];
    stx_status st = pad_params(c, pb, pe, od);
    if (st) return st;
    int r = x->rank;
    size_t es = esize(x);
    pad_mode mode = pad_get_mode(c->node);
    char cv[8] = {0};
    if (cvt && stx__numel(cvt->dims, cvt->rank) >= 1)
        memcpy(cv, cvt->data, es);
    else if (stx__attr(c->node, "value"))
        store_scalar(x->dtype, stx__attr_float(c->node, "value", 0.0f), cv);
    int64_t total = stx__numel(od, r);
    if (total == 0) return STX_OK;
    if (r == 0) {
        memcpy(y->data, x->data, es);
        return STX_OK;
    }
    dense_strides(x->dims, r, xs);
    int64_t W = od[r - 1], w = x->dims[r - 1], b = pb[r - 1], nrows = total / W;
    /* Output columns [lo, hi) map to the contiguous input columns [lo - b, hi - b). */
    int64_t lo = b > 0 ? b : 0, hi = b + w < W ? b + w : W;
    if (hi < lo) hi = lo;
    const char *src = x->data;
    char *dst = y->data;
    bool par = (size_t)total * es >= PAR_MIN_BYTES && nrows > 1;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t row = 0; row < nrows; row++) {
        char *d = dst + (size_t)(row * W) * es;
        int64_t rem = row, soff = 0;
        bool inside = true;
        for (int i = r - 2; i >= 0; i--) {
            int64_t o = rem % od[i], si = pad_map(o - pb[i], x->dims[i], mode);
            rem /= od[i];
            if (si < 0) inside = false;
            soff += si * xs[i];
        }
        if (!inside) { /* the whole row lies in the constant border */
            fill_elems(d, cv, W, es);
            continue;
        }
        const char *s = src + (size_t)soff * es;
        if (hi > lo) memcpy(d + (size_t)lo * es, s + (size_t)(lo - b) * es, (size_t)(hi - lo) * es);
        for (int64_t o = 0; o < W; o++) {
            if (o == lo) o = hi; /* skip the copied middle */
            if (o >= W) break;
            int64_t si = pad_map(o - b, w, mode);
            memcpy(d + (size_t)o * es, si < 0 ? cv : s + (size_t)si * es, es);
        }
    }
    return STX_OK;
}

/* The smallest padded coordinate o in [from, od) with pad_map(o - b, n, m) == i, or -1: walks
 * the preimage of input index i along an axis of size n (begin pad b, padded size od).
 *   constant: only o = i + b;
 *   edge:     i + b, extended down to 0 for i = 0 and up to od - 1 for i = n - 1 (an interval);
 *   reflect:  o - b congruent to i or to -i modulo the period 2(n - 1).
 * With n = 1, edge and reflect map every o to 0. */
static int64_t pad_next(int64_t from, int64_t i, int64_t n, int64_t od, int64_t b, pad_mode m) {
    if (from < 0) from = 0;
    if (from >= od) return -1;
    int64_t o;
    if (m == PAD_CONSTANT || (b == 0 && od == n)) { /* (an axis without pads is the identity) */
        o = i + b;
        return o >= from && o < od ? o : -1;
    }
    if (n == 1) return from;
    if (m == PAD_EDGE) {
        int64_t lo = i == 0 ? from : i + b, hi = i == n - 1 ? od - 1 : i + b;
        o = lo > from ? lo : from;
        return o <= hi && o < od ? o : -1;
    }
    int64_t p = 2 * (n - 1), t = from - b, best = -1;
    int64_t q[2] = {i, (p - i) % p};
    for (int k = 0; k < 2; k++) {
        /* smallest t' >= t with t' = q (mod p) is t + ((q - t) mod p); one period away in the
         * common case (pads shorter than the axis), which needs no division */
        int64_t d = q[k] - t;
        if (d < 0) d += p;
        if (d < 0 || d >= p) {
            d = (q[k] - t) % p;
            if (d < 0) d += p;
        }
        int64_t cand = t + d + b;
        if (best < 0 || cand < best) best = cand;
    }
    return best < od ? best : -1;
}

/* Folds one padded dy row s (W columns) onto the dx row d (w columns): the middle columns
 * [lo, hi) add straight across, then (edge / reflect) each border column adds onto the element
 * it was copied from, left to right. */
#define DEF_PAD_FOLD(T, SUF)                                                                       \
    static void pad_fold_##SUF(T *restrict d, const T *restrict s, int64_t W, int64_t w,           \
                               int64_t b, int64_t lo, int64_t hi, pad_mode mode) {                 \
        _Pragma("omp simd") for (int64_t q = lo; q < hi; q++) d[q - b] += s[q];                    \
        if (mode == PAD_CONSTANT) return;                                                          \
        for (int64_t q = 0; q < lo && q < W; q++) d[pad_map(q - b, w, mode)] += s[q];              \
        for (int64_t q = hi; q < W; q++) d[pad_map(q - b, w, mode)] += s[q];                       \
    }
DEF_PAD_FOLD(float, f32)
DEF_PAD_FOLD(double, f64)
#undef DEF_PAD_FOLD

/* Constant mode: every padded position that maps to no input element holds constant_value,
 * so d constant_value += the sum of dy over those positions (rows wholly in the border, then
 * the border columns of the other rows; summed in double, in row order). */
static stx_status pad_value_backward(stx_op_ctx *c, const int64_t *pb, const int64_t *od) {
    const stx_tensor *x = c->in[0], *dy = c->dout[0];
    stx_tensor *dv = c->din[2];
    acc_mode m;
    stx_status st = grad_mode(c, dv, &m);
    if (st) return st;
    int r = x->rank;
    int64_t total = stx__numel(od, r);
    double acc = 0;
    if (total > 0 && r > 0) {
        int64_t W = od[r - 1], w = x->dims[r - 1], b = pb[r - 1], nrows = total / W;
        int64_t lo = b > 0 ? b : 0, hi = b + w < W ? b + w : W;
        if (hi < lo) hi = lo;
        for (int64_t row = 0; row < nrows; row++) {
            int64_t rem = row;
            bool inside = true;
            for (int i = r - 2; i >= 0 && inside; i--) {
                int64_t o = rem % od[i] - pb[i];
                rem /= od[i];
                inside = o >= 0 && o < x->dims[i];
            }
            for (int64_t q = 0; q < W; q++) {
                if (inside && q == lo) q = hi;
                if (q >= W) break;
                acc += m == ACC_F64 ? ((const double *)dy->data)[row * W + q]
                                    : ((const float *)dy->data)[row * W + q];
            }
        }
    }
    if (m == ACC_F64)
        *(double *)dv->data += acc;
    else
        *(float *)dv->data += (float)acc;
    return STX_OK;
}

/* dx[pad_map(o - pb)] += dy[o] for every padded position o that maps to an input element:
 * constant mode crops dy (border positions hold the constant, which has no gradient here);
 * edge and reflect fold the borders back onto the edge / mirrored elements, accumulating.
 * Several dy rows can fold onto one dx row, so the loop runs over dx rows (each thread owns
 * its rows) and visits the dy rows of each one's preimage in ascending order; within a row
 * the contiguous middle is added first, then the border columns left to right. */
static stx_status pad_backward(stx_op_ctx *c) {
    const stx_tensor *x = c->in[0], *dy = c->dout[0];
    stx_tensor *dx = c->din[0];
    int64_t pb[STX_MAX_RANK], pe[STX_MAX_RANK], od[STX_MAX_RANK], ys[STX_MAX_RANK];
    acc_mode m;
    if (!dy) return STX_OK;
    stx_status st = pad_params(c, pb, pe, od);
    if (st) return st;
    pad_mode mode = pad_get_mode(c->node);
    if (mode == PAD_CONSTANT && c->n_in > 2 && c->din[2] && (st = pad_value_backward(c, pb, od)))
        return st;
    if (!dx) return STX_OK;
    if ((st = grad_mode(c, dx, &m))) return st;
    int r = x->rank;
    int64_t xtotal = stx__numel(x->dims, r), es = (int64_t)acc_esize(m);
    if (xtotal == 0 || stx__numel(od, r) == 0) return STX_OK;
    if (r == 0) {
        acc_row(m, dx->data, 1, dy->data, 1, 1);
        return STX_OK;
    }
    dense_strides(od, r, ys);
    int64_t W = od[r - 1], w = x->dims[r - 1], b = pb[r - 1], nrows = xtotal / w;
    int64_t lo = b > 0 ? b : 0, hi = b + w < W ? b + w : W;
    if (hi < lo) hi = lo;
    char *gx = dx->data;
    const char *gy = dy->data;
    bool par = (size_t)(stx__numel(od, r) * es) >= PAR_MIN_BYTES && nrows > 1;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t row = 0; row < nrows; row++) {
        char *d = gx + row * w * es;
        int64_t ix[STX_MAX_RANK], o[STX_MAX_RANK], first[STX_MAX_RANK], rem = row;
        bool any = true;
        for (int i = r - 2; i >= 0; i--) {
            ix[i] = rem % x->dims[i];
            rem /= x->dims[i];
            first[i] = o[i] = pad_next(0, ix[i], x->dims[i], od[i], pb[i], mode);
            if (o[i] < 0) any = false;
        }
        while (any) {
            int64_t yoff = 0;
            for (int i = 0; i < r - 1; i++) yoff += o[i] * ys[i];
            const char *s = gy + yoff * es;
            if (m == ACC_F64)
                pad_fold_f64((double *)(void *)d, (const double *)(const void *)s, W, w, b, lo, hi,
                             mode);
            else
                pad_fold_f32((float *)(void *)d, (const float *)(const void *)s, W, w, b, lo, hi,
                             mode);
            /* next dy row of the preimage (odometer, last outer axis fastest) */
            int i = r - 2;
            for (; i >= 0; i--) {
                o[i] = pad_next(o[i] + 1, ix[i], x->dims[i], od[i], pb[i], mode);
                if (o[i] >= 0) break;
                o[i] = first[i];
            }
            if (i < 0) break;
        }
    }
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Constant: the output is the attribute (value tensor, value_float(s), value_int(s)).
 */
static const char *const constant_kinds[] = {"value", "value_float", "value_floats", "value_int",
                                             "value_ints"};

static stx_status constant_check(const stx_node *n, stx_err *e) {
    int found = 0;
    for (int k = 0; k < 5; k++) found += stx__attr(n, constant_kinds[k]) != NULL;
    if (found != 1)
        return stx__node_err_n(n, e, STX_E_INVALID,
                               "needs exactly one of value, value_float(s), value_int(s); got %d",
                               found);
    const stx_attr *a = stx__attr(n, "value");
    if (a && (a->type != STX_ATTR_TENSOR || !a->t))
        return stx__node_err_n(n, e, STX_E_INVALID, "attribute 'value' is not a tensor");
    if (a && stx_dtype_size(a->t->dtype) == 0)
        return stx__node_err_n(n, e, STX_E_UNSUPPORTED, "unsupported constant dtype %s",
                               stx_dtype_name(a->t->dtype));
    return STX_OK;
}

static stx_status constant_infer(stx_op_ctx *c) {
    stx_status st = constant_check(c->node, c->err);
    if (st) return st;
    const stx_attr *a;
    int64_t d[1];
    if ((a = stx__attr(c->node, "value"))) {
        stx__set_out(c, 0, a->t->dtype, a->t->dims, a->t->rank);
    } else if ((a = stx__attr(c->node, "value_float"))) {
        stx__set_out(c, 0, STX_DTYPE_FLOAT, d, 0);
    } else if ((a = stx__attr(c->node, "value_int"))) {
        stx__set_out(c, 0, STX_DTYPE_INT64, d, 0);
    } else if ((a = stx__attr(c->node, "value_floats"))) {
        d[0] = a->n;
        stx__set_out(c, 0, STX_DTYPE_FLOAT, d, 1);
    } else {
        a = stx__attr(c->node, "value_ints");
        d[0] = a->n;
        stx__set_out(c, 0, STX_DTYPE_INT64, d, 1);
    }
    return STX_OK;
}

static stx_status constant_forward(stx_op_ctx *c) {
    stx_tensor *y = c->out[0];
    const stx_attr *a;
    if ((a = stx__attr(c->node, "value"))) {
        copy_bytes(y->data, a->t->data, (size_t)stx__numel(a->t->dims, a->t->rank) * esize(a->t));
    } else if ((a = stx__attr(c->node, "value_float"))) {
        memcpy(y->data, &a->f, sizeof(float));
    } else if ((a = stx__attr(c->node, "value_int"))) {
        memcpy(y->data, &a->i, sizeof(int64_t));
    } else if ((a = stx__attr(c->node, "value_floats"))) {
        if (a->n) memcpy(y->data, a->floats, (size_t)a->n * sizeof(float));
    } else if ((a = stx__attr(c->node, "value_ints"))) {
        if (a->n) memcpy(y->data, a->ints, (size_t)a->n * sizeof(int64_t));
    }
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * ConstantOfShape: a tensor of shape input[0] filled with the one-element 'value' attribute
 * (default float32 0).
 */
static stx_status cos_value(stx_op_ctx *c, const stx_tensor **v) {
    const stx_attr *a = stx__attr(c->node, "value");
    *v = NULL;
    if (!a) return STX_OK;
    if (a->type != STX_ATTR_TENSOR || !a->t || stx__numel(a->t->dims, a->t->rank) != 1 ||
        stx_dtype_size(a->t->dtype) == 0)
        return stx__node_err(c, STX_E_INVALID,
                             "attribute 'value' must be a one-element tensor of a supported dtype");
    *v = a->t;
    return STX_OK;
}

static stx_status cos_infer(stx_op_ctx *c) {
    int64_t d[STX_MAX_RANK], n;
    int r;
    const stx_tensor *v;
    stx_status st = const_ints(c, 0, "shape", d, STX_MAX_RANK, &r);
    if (st || (st = cos_value(c, &v)) || (st = checked_numel(c, d, r, &n))) return st;
    stx__set_out(c, 0, v ? v->dtype : STX_DTYPE_FLOAT, d, r);
    return STX_OK;
}

static stx_status cos_forward(stx_op_ctx *c) {
    const stx_tensor *v;
    stx_status st = cos_value(c, &v);
    if (st) return st;
    stx_tensor *y = c->out[0];
    char zero[8] = {0};
    fill_elems(y->data, v ? (const char *)v->data : zero, stx__numel(y->dims, y->rank), esize(y));
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Shape (opset 15 start/end: negative counts from the back, both clamped to [0, rank]) and
 * Size. Neither reads the input data, only its dims, so both can be evaluated at plan time
 * even when the input is an activation.
 */
static void shape_range(const stx_op_ctx *c, int *s, int *e) {
    int r = c->in[0]->rank;
    int64_t a = stx__attr_int(c->node, "start", 0), b = stx__attr_int(c->node, "end", r);
    if (a < 0) a += r;
    if (b < 0) b += r;
    a = a < 0 ? 0 : a > r ? r : a;
    b = b < 0 ? 0 : b > r ? r : b;
    *s = (int)a;
    *e = (int)(b > a ? b : a);
}

static stx_status shape_infer(stx_op_ctx *c) {
    if (!c->in[0]) return stx__node_err(c, STX_E_INVALID, "missing required input 0 (data)");
    int s, e;
    shape_range(c, &s, &e);
    int64_t d[1] = {e - s};
    stx__set_out(c, 0, STX_DTYPE_INT64, d, 1);
    return STX_OK;
}

static stx_status shape_forward(stx_op_ctx *c) {
    int s, e;
    shape_range(c, &s, &e);
    int64_t *y = c->out[0]->data;
    for (int i = s; i < e; i++) y[i - s] = c->in[0]->dims[i];
    return STX_OK;
}

static stx_status size_infer(stx_op_ctx *c) {
    if (!c->in[0]) return stx__node_err(c, STX_E_INVALID, "missing required input 0 (data)");
    stx__set_out(c, 0, STX_DTYPE_INT64, NULL, 0);
    return STX_OK;
}

static stx_status size_forward(stx_op_ctx *c) {
    int64_t n = stx__numel(c->in[0]->dims, c->in[0]->rank);
    memcpy(c->out[0]->data, &n, sizeof n);
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Expand: numpy broadcast of the input against the constant 'shape' (either side may be 1).
 */
static stx_status expand_shape(stx_op_ctx *c, int64_t *od, int *orank) {
    const stx_tensor *x = c->in[0];
    int64_t sh[STX_MAX_RANK], n;
    int ns;
    char sb[128];
    stx_status st = const_ints(c, 1, "shape", sh, STX_MAX_RANK, &ns);
    if (st) return st;
    for (int i = 0; i < ns; i++)
        if (sh[i] < 0)
            return stx__node_err(c, STX_E_INVALID, "negative dim in shape %s",
                                 stx__shape_str(sh, ns, sb, sizeof sb));
    if ((st = stx__broadcast_shape(c, x->dims, x->rank, sh, ns, od, orank))) return st;
    return checked_numel(c, od, *orank, &n);
}

static stx_status expand_infer(stx_op_ctx *c) {
    stx_status st = need_data(c, 0, "input");
    if (st) return st;
    int64_t od[STX_MAX_RANK];
    int r;
    if ((st = expand_shape(c, od, &r))) return st;
    stx__set_out(c, 0, c->in[0]->dtype, od, r);
    return STX_OK;
}

static stx_status expand_forward(stx_op_ctx *c) {
    const stx_tensor *x = c->in[0];
    stx_tensor *y = c->out[0];
    int64_t xs[STX_MAX_RANK];
    dense_strides(x->dims, x->rank, xs);
    int r = y->rank, lead = r - x->rank;
    sview v = {.rank = r};
    for (int i = 0; i < r; i++) {
        v.dims[i] = y->dims[i];
        /* broadcast axes (missing or of size 1 in the input) re-read the same elements */
        v.str[i] = i < lead || x->dims[i - lead] == 1 ? 0 : xs[i - lead];
    }
    sview_copy(y->data, x->data, v, esize(x), ACC_NONE);
    return STX_OK;
}

/* y[j] = x[j with the broadcast axes at 0], so dx = dy summed over the broadcast axes (the
 * leading axes x does not have and those where x has size 1): the forward view with stride 0
 * on those axes, run backwards. */
static stx_status expand_backward(stx_op_ctx *c) {
    const stx_tensor *x = c->in[0], *dy = c->dout[0];
    stx_tensor *dx = c->din[0];
    acc_mode m;
    if (!dx || !dy) return STX_OK;
    stx_status st = grad_mode(c, dx, &m);
    if (st) return st;
    int64_t xs[STX_MAX_RANK];
    dense_strides(x->dims, x->rank, xs);
    int r = dy->rank, lead = r - x->rank;
    bview v = {.rank = r};
    dense_strides(dy->dims, r, v.ys);
    for (int i = 0; i < r; i++) {
        v.dims[i] = dy->dims[i];
        v.xs[i] = i < lead || x->dims[i - lead] == 1 ? 0 : xs[i - lead];
    }
    bview_acc(dx->data, dy->data, v, m);
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Tile: out.dims[i] = dims[i] * repeats[i]. As a view, the output is [rep0, d0, rep1, d1, ...]
 * with stride 0 on the repeat axes, so the generic strided copy does the work.
 */
static stx_status tile_repeats(stx_op_ctx *c, int64_t *rep) {
    const stx_tensor *x = c->in[0];
    int n;
    char sb[128];
    stx_status st = const_ints(c, 1, "repeats", rep, STX_MAX_RANK, &n);
    if (st) return st;
    if (n != x->rank)
        return stx__node_err(c, STX_E_SHAPE, "repeats has %d values but the input %s has rank %d",
                             n, SHAPE_STR(x, sb), x->rank);
    for (int i = 0; i < n; i++)
        if (rep[i] < 0)
            return stx__node_err(c, STX_E_INVALID, "negative repeat %lld", (long long)rep[i]);
    return STX_OK;
}

static stx_status tile_infer(stx_op_ctx *c) {
    stx_status st = need_data(c, 0, "input");
    if (st) return st;
    const stx_tensor *x = c->in[0];
    int64_t rep[STX_MAX_RANK], od[STX_MAX_RANK], n;
    if ((st = tile_repeats(c, rep))) return st;
    for (int i = 0; i < x->rank; i++) {
        if (rep[i] && x->dims[i] > ((int64_t)1 << 62) / rep[i])
            return stx__node_err(c, STX_E_SHAPE, "tiled shape is too large");
        od[i] = x->dims[i] * rep[i];
    }
    if ((st = checked_numel(c, od, x->rank, &n))) return st;
    stx__set_out(c, 0, x->dtype, od, x->rank);
    return STX_OK;
}

static stx_status tile_forward(stx_op_ctx *c) {
    const stx_tensor *x = c->in[0];
    int64_t rep[STX_MAX_RANK], xs[STX_MAX_RANK];
    stx_status st = tile_repeats(c, rep);
    if (st) return st;
    dense_strides(x->dims, x->rank, xs);
    sview v = {.rank = 2 * x->rank};
    for (int i = 0; i < x->rank; i++) {
        v.dims[2 * i] = rep[i];
        v.str[2 * i] = 0;
        v.dims[2 * i + 1] = x->dims[i];
        v.str[2 * i + 1] = xs[i];
    }
    sview_copy(c->out[0]->data, x->data, v, esize(x), ACC_NONE);
    return STX_OK;
}

/* y seen as [rep0, d0, rep1, d1, ...] holds x at every repeat, so dx = dy summed over the
 * repeat axes: y axis i of size rep_i * d_i splits into a repeat axis (dy stride d_i * Y_i,
 * summed: dx stride 0) and a data axis (dy stride Y_i, dx stride X_i). */
static stx_status tile_backward(stx_op_ctx *c) {
    const stx_tensor *x = c->in[0], *dy = c->dout[0];
    stx_tensor *dx = c->din[0];
    int64_t rep[STX_MAX_RANK], xs[STX_MAX_RANK], ys[STX_MAX_RANK];
    acc_mode m;
    if (!dx || !dy) return STX_OK;
    stx_status st = tile_repeats(c, rep);
    if (st || (st = grad_mode(c, dx, &m))) return st;
    dense_strides(x->dims, x->rank, xs);
    dense_strides(dy->dims, dy->rank, ys);
    bview v = {.rank = 2 * x->rank};
    for (int i = 0; i < x->rank; i++) {
        v.dims[2 * i] = rep[i];
        v.xs[2 * i] = 0;
        v.ys[2 * i] = x->dims[i] * ys[i];
        v.dims[2 * i + 1] = x->dims[i];
        v.xs[2 * i + 1] = xs[i];
        v.ys[2 * i + 1] = ys[i];
    }
    bview_acc(dx->data, dy->data, v, m);
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Range: max(ceil((limit - start) / delta), 0) elements start + i * delta. The length depends
 * on the values, so all three scalars must be constants at plan time.
 */
static double scalar_at(const stx_tensor *t) {
    switch (t->dtype) {
    case STX_DTYPE_FLOAT:
        return ((const float *)t->data)[0];
    case STX_DTYPE_DOUBLE:
        return ((const double *)t->data)[0];
    case STX_DTYPE_INT32:
        return ((const int32_t *)t->data)[0];
    default:
        return (double)((const int64_t *)t->data)[0];
    }
}

static int64_t int_at(const stx_tensor *t) {
    return t->dtype == STX_DTYPE_INT32 ? ((const int32_t *)t->data)[0]
                                       : ((const int64_t *)t->data)[0];
}

static stx_status range_count(stx_op_ctx *c, int64_t *count) {
    static const char *const names[3] = {"start", "limit", "delta"};
    const stx_tensor *t0 = c->in[0];
    for (int i = 0; i < 3; i++) {
        const stx_tensor *t = c->in[i];
        char sb[128];
        if (!t) return stx__node_err(c, STX_E_INVALID, "missing input %d (%s)", i, names[i]);
        if (!t->data)
            return stx__node_err(c, STX_E_UNSUPPORTED,
                                 "input %d (%s) must be a constant known at plan time: the output "
                                 "length depends on it",
                                 i, names[i]);
        if (t->dtype != STX_DTYPE_FLOAT && t->dtype != STX_DTYPE_DOUBLE &&
            t->dtype != STX_DTYPE_INT32 && t->dtype != STX_DTYPE_INT64)
            return stx__node_err(c, STX_E_UNSUPPORTED, "unsupported dtype %s",
                                 stx_dtype_name(t->dtype));
        if (t->dtype != t0->dtype)
            return stx__node_err(c, STX_E_INVALID, "inputs have different dtypes %s and %s",
                                 stx_dtype_name(t0->dtype), stx_dtype_name(t->dtype));
        if (stx__numel(t->dims, t->rank) != 1)
            return stx__node_err(c, STX_E_SHAPE, "input %d (%s) must be a scalar, got shape %s", i,
                                 names[i], SHAPE_STR(t, sb));
    }
    double n;
    if (t0->dtype == STX_DTYPE_INT32 || t0->dtype == STX_DTYPE_INT64) {
        int64_t s = int_at(c->in[0]), l = int_at(c->in[1]), d = int_at(c->in[2]);
        if (d == 0) return stx__node_err(c, STX_E_INVALID, "delta is 0");
        if (fabs((double)l - (double)s) > 4e18)
            return stx__node_err(c, STX_E_INVALID, "range is too large");
        int64_t diff = l - s;
        /* exact integer ceil(diff / d), zero when the signs disagree */
        if ((diff > 0 && d > 0) || (diff < 0 && d < 0))
            n = (double)((diff - (d > 0 ? 1 : -1)) / d + 1);
        else
            n = 0;
    } else {
        double s = scalar_at(c->in[0]), l = scalar_at(c->in[1]), d = scalar_at(c->in[2]);
        if (d == 0 || !isfinite(s) || !isfinite(l) || !isfinite(d))
            return stx__node_err(c, STX_E_INVALID,
                                 "start, limit and delta must be finite, delta non-zero");
        /* the difference is taken in the input precision, as ONNX Runtime does */
        double diff = t0->dtype == STX_DTYPE_FLOAT ? (double)((float)l - (float)s) : l - s;
        n = ceil(diff / d);
        if (n < 0) n = 0;
    }
    if (n > (double)((int64_t)1 << 40))
        return stx__node_err(c, STX_E_INVALID, "range of %.0f elements is too large", n);
    *count = (int64_t)n;
    return STX_OK;
}

static stx_status range_infer(stx_op_ctx *c) {
    int64_t n;
    stx_status st = range_count(c, &n);
    if (st) return st;
    stx__set_out(c, 0, c->in[0]->dtype, &n, 1);
    return STX_OK;
}

static stx_status range_forward(stx_op_ctx *c) {
    int64_t n;
    stx_status st = range_count(c, &n);
    if (st) return st;
    void *y = c->out[0]->data;
    switch (c->in[0]->dtype) {
    case STX_DTYPE_FLOAT: {
        float s = (float)scalar_at(c->in[0]), d = (float)scalar_at(c->in[2]);
        for (int64_t i = 0; i < n; i++) ((float *)y)[i] = s + (float)i * d;
        break;
    }
    case STX_DTYPE_DOUBLE: {
        double s = scalar_at(c->in[0]), d = scalar_at(c->in[2]);
        for (int64_t i = 0; i < n; i++) ((double *)y)[i] = s + (double)i * d;
        break;
    }
    case STX_DTYPE_INT32: {
        int64_t s = int_at(c->in[0]), d = int_at(c->in[2]);
        for (int64_t i = 0; i < n; i++) ((int32_t *)y)[i] = (int32_t)(s + i * d);
        break;
    }
    default: {
        int64_t s = int_at(c->in[0]), d = int_at(c->in[2]);
        for (int64_t i = 0; i < n; i++) ((int64_t *)y)[i] = s + i * d;
    }
    }
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Registration
 */
static const char *const no_attrs[] = {NULL};
static const char *const flatten_attrs[] = {"axis", NULL};
static const char *const reshape_attrs[] = {"allowzero", "shape", NULL};
static const char *const transpose_attrs[] = {"perm", NULL};
static const char *const axes_attrs[] = {"axes", NULL};
static const char *const concat_attrs[] = {"axis", NULL};
static const char *const split_attrs[] = {"axis", "split", "num_outputs", NULL};
static const char *const slice_attrs[] = {"starts", "ends", "axes", NULL};
static const char *const gather_attrs[] = {"axis", NULL};
static const char *const pad_attrs[] = {"mode", "pads", "value", NULL};
static const char *const constant_attrs[] = {"value",     "value_float", "value_floats",
                                             "value_int", "value_ints",  NULL};
static const char *const cos_attrs[] = {"value", NULL};
static const char *const shape_attrs[] = {"start", "end", NULL};

/* One table entry: name, input and output arity, attribute list, then the handlers. */
#define SHAPE_OP(var, NAME, MIN_IN, MAX_IN, MAX_OUT, ATTRS, ...)                                   \
    static const stx_op_def var = {.name = NAME,                                                   \
                                   .min_in = MIN_IN,                                               \
                                   .max_in = MAX_IN,                                               \
                                   .min_out = 1,                                                   \
                                   .max_out = MAX_OUT,                                             \
                                   .attrs = ATTRS,                                                 \
                                   __VA_ARGS__};

SHAPE_OP(op_flatten, "Flatten", 1, 1, 1, flatten_attrs, .infer = flatten_infer,
         .forward = forward_copy, .backward = backward_copy)
SHAPE_OP(op_reshape, "Reshape", 1, 2, 1, reshape_attrs, .infer = reshape_infer,
         .forward = forward_copy, .backward = backward_copy)
SHAPE_OP(op_transpose, "Transpose", 1, 1, 1, transpose_attrs, .infer = transpose_infer,
         .forward = transpose_forward, .backward = transpose_backward)
SHAPE_OP(op_squeeze, "Squeeze", 1, 2, 1, axes_attrs, .infer = squeeze_infer,
         .forward = forward_copy, .backward = backward_copy)
SHAPE_OP(op_unsqueeze, "Unsqueeze", 1, 2, 1, axes_attrs, .infer = unsqueeze_infer,
         .forward = forward_copy, .backward = backward_copy)
SHAPE_OP(op_concat, "Concat", 1, MAX_PARTS, 1, concat_attrs, .infer = concat_infer,
         .forward = concat_forward, .backward = concat_backward)
SHAPE_OP(op_split, "Split", 1, 2, MAX_PARTS, split_attrs, .infer = split_infer,
         .forward = split_forward, .backward = split_backward, .bwd_in = 1u << 1)
SHAPE_OP(op_slice, "Slice", 1, 5, 1, slice_attrs, .infer = slice_infer, .forward = slice_forward,
         .backward = slice_backward, .bwd_in = 0x1eu)
SHAPE_OP(op_gather, "Gather", 2, 2, 1, gather_attrs, .infer = gather_infer,
         .forward = gather_forward, .backward = gather_backward, .bwd_in = 1u << 1)
SHAPE_OP(op_pad, "Pad", 1, 4, 1, pad_attrs, .check = pad_check, .infer = pad_infer,
         .forward = pad_forward, .backward = pad_backward, .bwd_in = (1u << 1) | (1u << 3))
SHAPE_OP(op_constant, "Constant", 0, 0, 1, constant_attrs, .check = constant_check,
         .infer = constant_infer, .forward = constant_forward)
SHAPE_OP(op_cos, "ConstantOfShape", 1, 1, 1, cos_attrs, .infer = cos_infer, .forward = cos_forward)
SHAPE_OP(op_shape, "Shape", 1, 1, 1, shape_attrs, .infer = shape_infer, .forward = shape_forward)
SHAPE_OP(op_size, "Size", 1, 1, 1, no_attrs, .infer = size_infer, .forward = size_forward)
SHAPE_OP(op_expand, "Expand", 2, 2, 1, no_attrs, .infer = expand_infer, .forward = expand_forward,
         .backward = expand_backward)
SHAPE_OP(op_tile, "Tile", 2, 2, 1, no_attrs, .infer = tile_infer, .forward = tile_forward,
         .backward = tile_backward, .bwd_in = 1u << 1)
SHAPE_OP(op_range, "Range", 3, 3, 1, no_attrs, .infer = range_infer, .forward = range_forward)

const stx_op_def *const stx__ops_shape[] = {
    &op_flatten, &op_reshape, &op_transpose, &op_squeeze, &op_unsqueeze, &op_concat,
    &op_split,   &op_slice,   &op_gather,    &op_pad,     &op_constant,  &op_cos,
    &op_shape,   &op_size,    &op_expand,    &op_tile,    &op_range,     NULL};
