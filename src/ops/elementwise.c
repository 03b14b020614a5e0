/* elementwise.c: unary activations and maths, broadcasting binary/variadic arithmetic,
 * comparisons and logic, Where, Cast/CastLike, Identity and inference-time Dropout.
 *
 * Every op runs through one engine (ew_run): the output shape is the numpy multidirectional
 * broadcast of the inputs (ONNX "Broadcasting.md"); each input gets per-axis strides with 0 on
 * broadcast axes, size-1 axes are dropped and adjacent axes that are contiguous (or broadcast)
 * in every input are merged. What remains is an outer index space and one innermost run in
 * which each input either advances by one element (stride 1) or stays put (stride 0, a scalar
 * along the run). Typed kernels handle such runs with plain loops the compiler vectorises; the
 * engine splits (outer row, chunk of run) work items over OpenMP threads with a static schedule,
 * so results never depend on scheduling.
 *
 * dtype "slots": float32, float64, int64, int32, uint8, int8, bool (stored as one byte, 0/1).
 * Integer arithmetic wraps around (computed in the unsigned type, as numpy does) instead of
 * invoking C's undefined signed overflow; integer division by zero yields 0.
 *
 * Reverse mode (float32 and float64): every differentiable op has a vector-Jacobian product run
 * by bw_run, the engine's twin that also sums gradients over broadcast axes (see "Reverse mode"
 * below, which also lists the conventions at non-differentiable points).
 */
#include "ops.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Below this many output elements a single thread is faster than waking the team. */
#define EW_PAR_MIN 32768
/* Work item length along the innermost run (elements). */
#define EW_CHUNK 16384
#define EW_MAXIN 3

enum { S_F32, S_F64, S_I64, S_I32, S_U8, S_I8, S_BOOL, S_N };

static int ew_slot(stx_dtype dt) {
    switch (dt) {
    case STX_DTYPE_FLOAT:
        return S_F32;
    case STX_DTYPE_DOUBLE:
        return S_F64;
    case STX_DTYPE_INT64:
        return S_I64;
    case STX_DTYPE_INT32:
        return S_I32;
    case STX_DTYPE_UINT8:
        return S_U8;
    case STX_DTYPE_INT8:
        return S_I8;
    case STX_DTYPE_BOOL:
        return S_BOOL;
    default:
        return -1;
    }
}

static const stx_dtype slot_dtype[S_N] = {STX_DTYPE_FLOAT, STX_DTYPE_DOUBLE, STX_DTYPE_INT64,
                                          STX_DTYPE_INT32, STX_DTYPE_UINT8,  STX_DTYPE_INT8,
                                          STX_DTYPE_BOOL};

/* Names of ONNX element types stx does not handle, for error messages. */
static const char *onnx_type_name(int64_t code) {
    switch (code) {
    case 1:
        return "float32";
    case 2:
        return "uint8";
    case 3:
        return "int8";
    case 4:
        return "uint16";
    case 5:
        return "int16";
    case 6:
        return "int32";
    case 7:
        return "int64";
    case 8:
        return "string";
    case 9:
        return "bool";
    case 10:
        return "float16";
    case 11:
        return "float64";
    case 12:
        return "uint32";
    case 13:
        return "uint64";
    case 14:
        return "complex64";
    case 15:
        return "complex128";
    case 16:
        return "bfloat16";
    default:
        return "unknown";
    }
}

/* Per-call parameters handed to kernels (attributes, Clip bounds, mixed-type info). */
typedef struct ew_args {
    double alpha, beta, gamma;
    double flo, fhi;    /* Clip bounds for floating types */
    int64_t ilo, ihi;   /* Clip bounds for integer types */
    int mode;           /* op-specific switch (Gelu approximation; which gradient a VJP computes) */
    int slot_a, slot_b; /* input slots for mixed-type Pow */
    int k, n;           /* backward of variadic Max/Min: the input differentiated, input count */
} ew_args;

/* Processes n output elements; in[i] advances by s[i] (0 or 1) elements per output element. */
typedef void (*ew_kernel)(const void *const *in, const int *s, void *y, int64_t n,
                          const ew_args *p);

/* ---------------------------------------------------------------------------------------------
 * The broadcasting engine. Inputs must broadcast to out's shape (checked in infer).
 */
static void ew_run(stx_tensor *const *ins, int nin, stx_tensor *out, ew_kernel k,
                   const ew_args *p) {
    const int r = out->rank;
    int64_t total = stx__numel(out->dims, r);
    if (total <= 0) return;

    /* Strides of each input along each output axis, 0 where the input is broadcast. */
    int64_t own[EW_MAXIN][STX_MAX_RANK];
    size_t esz[EW_MAXIN];
    for (int i = 0; i < nin; i++) {
        const stx_tensor *t = ins[i];
        esz[i] = stx_dtype_size(t->dtype);
        int64_t st = 1;
        for (int d = r - 1; d >= 0; d--) {
            int id = d - (r - t->rank);
            own[i][d] = (id < 0 || t->dims[id] == 1) ? 0 : st;
            if (id >= 0) st *= t->dims[id];
        }
    }
    /* Drop size-1 axes; merge an axis into its outer neighbour when every input continues
     * contiguously across the boundary (stride_outer == stride_inner * extent_inner). */
    int64_t dims[STX_MAX_RANK], str[EW_MAXIN][STX_MAX_RANK];
    int nd = 0;
    for (int d = 0; d < r; d++) {
        if (out->dims[d] == 1) continue;
        bool merge = nd > 0;
        for (int i = 0; i < nin && merge; i++)
            if (str[i][nd - 1] != own[i][d] * out->dims[d]) merge = false;
        if (merge) {
            dims[nd - 1] *= out->dims[d];
            for (int i = 0; i < nin; i++) str[i][nd - 1] = own[i][d];
        } else {
            dims[nd] = out->dims[d];
            for (int i = 0; i < nin; i++) str[i][nd] = own[i][d];
            nd++;
        }
    }
    if (nd == 0) { /* a single element */
        dims[0] = 1;
        for (int i = 0; i < nin; i++) str[i][0] = 0;
        nd = 1;
    }
    int s[EW_MAXIN];
    for (int i = 0; i < nin; i++) s[i] = str[i][nd - 1] != 0;

    const int64_t inner = dims[nd - 1], outer = total / inner;
    const int64_t nch = (inner + EW_CHUNK - 1) / EW_CHUNK, items = outer * nch;
    const size_t osz = stx_dtype_size(out->dtype);
#pragma omp parallel for schedule(static) if (total >= EW_PAR_MIN)
    for (int64_t it = 0; it < items; it++) {
        const int64_t row = it / nch, c0 = (it % nch) * EW_CHUNK;
        const int64_t len = inner - c0 < EW_CHUNK ? inner - c0 : EW_CHUNK;
        int64_t off[EW_MAXIN] = {0};
        int64_t o = row;
        for (int d = nd - 2; d >= 0; d--) {
            int64_t q = o % dims[d];
            o /= dims[d];
            for (int i = 0; i < nin; i++) off[i] += q * str[i][d];
        }
        const void *ptr[EW_MAXIN];
        for (int i = 0; i < nin; i++)
            ptr[i] = (const char *)ins[i]->data + (size_t)(off[i] + c0 * s[i]) * esz[i];
        k(ptr, s, (char *)out->data + (size_t)(row * inner + c0) * osz, len, p);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Scalar helpers.
 */

/* Type-generic maths (C11 _Generic) so one kernel body serves float32 and float64. */
#define M_EXP(x) _Generic((x), float : expf, default : exp)(x)
#define M_EXPM1(x) _Generic((x), float : expm1f, default : expm1)(x)
#define M_LOG(x) _Generic((x), float : logf, default : log)(x)
#define M_LOG1P(x) _Generic((x), float : log1pf, default : log1p)(x)
#define M_SQRT(x) _Generic((x), float : sqrtf, default : sqrt)(x)
#define M_TANH(x) _Generic((x), float : tanhf, default : tanh)(x)
#define M_ERF(x) _Generic((x), float : erff, default : erf)(x)
#define M_FLOOR(x) _Generic((x), float : floorf, default : floor)(x)
#define M_CEIL(x) _Generic((x), float : ceilf, default : ceil)(x)
#define M_FABS(x) _Generic((x), float : fabsf, default : fabs)(x)
#define M_POW(x, y) _Generic((x), float : powf, default : pow)(x, y)

/* Helpers with temporaries, instantiated for float and double. */
#define EW_FLOAT_HELPERS(T, sfx)                                                                   \
    /* sigmoid without overflow: exp of a non-positive argument only */                            \
    static inline T sigmoid_##sfx(T x) {                                                           \
        if (x >= 0) return (T)1 / ((T)1 + M_EXP(-x));                                              \
        T e = M_EXP(x);                                                                            \
        return e / ((T)1 + e);                                                                     \
    }                                                                                              \
    /* softplus = log(1 + e^x) = max(x,0) + log1p(e^-|x|) */                                       \
    static inline T softplus_##sfx(T x) {                                                          \
        return x > 0 ? x + M_LOG1P(M_EXP(-x)) : M_LOG1P(M_EXP(x));                                 \
    }                                                                                              \
    /* Gelu (ONNX opset 20): exact 0.5x(1+erf(x/sqrt2)) or the tanh approximation */               \
    static inline T gelu_##sfx(T x, int tanh_approx) {                                             \
        if (tanh_approx) {                                                                         \
            const T k = (T)0.7978845608028654; /* sqrt(2/pi) */                                    \
            return (T)0.5 * x * ((T)1 + M_TANH(k * (x + (T)0.044715 * x * x * x)));                \
        }                                                                                          \
        return (T)0.5 * x * ((T)1 + M_ERF(x * (T)0.7071067811865476));                             \
    }                                                                                              \
    static inline T max0_##sfx(T v) {                                                              \
        return v < 0 ? (T)0 : v;                                                                   \
    }                                                                                              \
    static inline T min1_##sfx(T v) {                                                              \
        return v > 1 ? (T)1 : v;                                                                   \
    }                                                                                              \
    /* d Gelu / dx. Exact: Phi(x) + x phi(x) with Phi(x) = (1 + erf(x/sqrt2))/2 and                \
     * phi(x) = exp(-x^2/2)/sqrt(2 pi). tanh: with u = k(x + c x^3), t = tanh(u):                  \
     * (1 + t)/2 + x/2 (1 - t^2) k (1 + 3 c x^2). */                                               \
    static inline T gelu_grad_##sfx(T x, int tanh_approx) {                                        \
        if (tanh_approx) {                                                                         \
            const T k = (T)0.7978845608028654, c = (T)0.044715;                                    \
            const T t = M_TANH(k * (x + c * x * x * x));                                           \
            return (T)0.5 * ((T)1 + t) +                                                           \
                   (T)0.5 * x * ((T)1 - t * t) * k * ((T)1 + (T)3 * c * x * x);                    \
        }                                                                                          \
        return (T)0.5 * ((T)1 + M_ERF(x * (T)0.7071067811865476)) +                                \
               x * M_EXP((T)-0.5 * x * x) * (T)0.3989422804014327;                                 \
    }
EW_FLOAT_HELPERS(float, f32)
EW_FLOAT_HELPERS(double, f64)
#define SIGMOID(x) _Generic((x), float : sigmoid_f32, default : sigmoid_f64)(x)
#define SOFTPLUS(x) _Generic((x), float : softplus_f32, default : softplus_f64)(x)
#define GELU(x, m) _Generic((x), float : gelu_f32, default : gelu_f64)(x, m)
#define MAX0(x) _Generic((x), float : max0_f32, default : max0_f64)(x)
#define MIN1(x) _Generic((x), float : min1_f32, default : min1_f64)(x)
#define GELU_GRAD(x, m) _Generic((x), float : gelu_grad_f32, default : gelu_grad_f64)(x, m)

/* Saturating float -> integer conversion (C leaves out-of-range and NaN undefined). */
#define EW_SAT(name, T, LO, HI)                                                                    \
    static inline T name(double v) {                                                               \
        if (v != v) return 0;                                                                      \
        if (v <= (double)(LO)) return LO;                                                          \
        if (v >= (double)(HI)) return HI;                                                          \
        return (T)v;                                                                               \
    }
EW_SAT(sat_i64, int64_t, INT64_MIN, INT64_MAX)
EW_SAT(sat_i32, int32_t, INT32_MIN, INT32_MAX)
EW_SAT(sat_u8, uint8_t, 0, UINT8_MAX)
EW_SAT(sat_i8, int8_t, INT8_MIN, INT8_MAX)

/* Signed integer division truncating toward zero like C; x/0 -> 0 and MIN/-1 wraps. */
#define EW_SDIV(name, T, U)                                                                        \
    static inline T name(T a, T b) {                                                               \
        if (b == 0) return 0;                                                                      \
        if (b == -1) return (T)(0 - (U)a);                                                         \
        return (T)(a / b);                                                                         \
    }
EW_SDIV(div_i64, int64_t, uint64_t)
EW_SDIV(div_i32, int32_t, uint32_t)
EW_SDIV(div_i8, int8_t, uint8_t)
static inline uint8_t div_u8(uint8_t a, uint8_t b) {
    return b ? (uint8_t)(a / b) : 0;
}

/* Integer power by squaring in wrapping arithmetic; negative exponents give 1/a^n truncated
 * toward zero (non-zero only for |a| == 1, and 0 for a == 0 instead of a division by zero). */
static int64_t ipow(int64_t a, int64_t e) {
    if (e < 0) {
        if (a == 1) return 1;
        if (a == -1) return (e & 1) ? -1 : 1;
        return 0;
    }
    uint64_t r = 1, b = (uint64_t)a;
    while (e) {
        if (e & 1) r *= b;
        b *= b;
        e >>= 1;
    }
    return (int64_t)r;
}

/* ---------------------------------------------------------------------------------------------
 * Kernel generators.
 */

/* Unary: y = expr(x) (the input always has the output's shape, so s[0] == 1 or n == 1). The
 * float attributes are copied to locals so stores through y cannot alias them. */
#define EW_UNARY(fname, T, TY, expr)                                                               \
    static void fname(const void *const *in_, const int *s_, void *y_, int64_t n_,                 \
                      const ew_args *p_) {                                                         \
        const T *x_ = in_[0];                                                                      \
        TY *y_t = y_;                                                                              \
        const T alpha = (T)p_->alpha, beta = (T)p_->beta, gamma = (T)p_->gamma;                    \
        const int mode = p_->mode;                                                                 \
        (void)s_, (void)alpha, (void)beta, (void)gamma, (void)mode;                                \
        _Pragma("omp simd") for (int64_t i_ = 0; i_ < n_; i_++) {                                  \
            const T x = x_[i_];                                                                    \
            y_t[i_] = (TY)(expr);                                                                  \
        }                                                                                          \
    }

/* Binary: y = expr(a, b), with a separate loop per stride pattern so that each one vectorises
 * (the scalar operand is hoisted). y may alias a (in-place accumulation for Max/Min/Sum). */
#define EW_BINARY(fname, TA, TB, TY, expr)                                                         \
    static void fname(const void *const *in_, const int *s_, void *y_, int64_t n_,                 \
                      const ew_args *p_) {                                                         \
        const TA *A_ = in_[0];                                                                     \
        const TB *B_ = in_[1];                                                                     \
        TY *y_t = y_;                                                                              \
        (void)p_;                                                                                  \
        if (s_[0] && s_[1]) {                                                                      \
            _Pragma("omp simd") for (int64_t i_ = 0; i_ < n_; i_++) {                              \
                const TA a = A_[i_];                                                               \
                const TB b = B_[i_];                                                               \
                y_t[i_] = (TY)(expr);                                                              \
            }                                                                                      \
        } else if (s_[1]) {                                                                        \
            const TA a = A_[0];                                                                    \
            _Pragma("omp simd") for (int64_t i_ = 0; i_ < n_; i_++) {                              \
                const TB b = B_[i_];                                                               \
                y_t[i_] = (TY)(expr);                                                              \
            }                                                                                      \
        } else if (s_[0]) {                                                                        \
            const TB b = B_[0];                                                                    \
            _Pragma("omp simd") for (int64_t i_ = 0; i_ < n_; i_++) {                              \
                const TA a = A_[i_];                                                               \
                y_t[i_] = (TY)(expr);                                                              \
            }                                                                                      \
        } else {                                                                                   \
            const TA a = A_[0];                                                                    \
            const TB b = B_[0];                                                                    \
            const TY v_ = (TY)(expr);                                                              \
            _Pragma("omp simd") for (int64_t i_ = 0; i_ < n_; i_++) y_t[i_] = v_;                  \
        }                                                                                          \
    }

/* Type lists: suffix, C type (and the unsigned type used for wrapping arithmetic). */
#define EW_FLOATS(X) X(f32, float) X(f64, double)
#define EW_SINTS(X) X(i64, int64_t, uint64_t) X(i32, int32_t, uint32_t) X(i8, int8_t, uint8_t)

/* Kernel tables indexed by slot. */
typedef struct ew_op {
    ew_kernel k[S_N];
    bool out_bool; /* comparisons and logic produce bool */
    /* Optional: fills kernel parameters from attributes/inputs (called in forward). */
    stx_status (*params)(stx_op_ctx *c, ew_args *a);
} ew_op;

#define TAB_FLOAT(p) [S_F32] = p##_f32, [S_F64] = p##_f64
#define TAB_SINT(p) [S_I64] = p##_i64, [S_I32] = p##_i32, [S_I8] = p##_i8
#define TAB_NUM(p) TAB_FLOAT(p), TAB_SINT(p), [S_U8] = p##_u8

/* ---------------------------------------------------------------------------------------------
 * Unary kernels.
 */

/* Floating-point only activations and maths. */
#define EW_FLOAT_UNARIES(sfx, T)                                                                   \
    EW_UNARY(sigmoid_k_##sfx, T, T, SIGMOID(x))                                                    \
    EW_UNARY(tanh_k_##sfx, T, T, M_TANH(x))                                                        \
    EW_UNARY(erf_k_##sfx, T, T, M_ERF(x))                                                          \
    EW_UNARY(gelu_k_##sfx, T, T, GELU(x, mode))                                                    \
    EW_UNARY(softplus_k_##sfx, T, T, SOFTPLUS(x))                                                  \
    EW_UNARY(sqrt_k_##sfx, T, T, M_SQRT(x))                                                        \
    EW_UNARY(exp_k_##sfx, T, T, M_EXP(x))                                                          \
    EW_UNARY(log_k_##sfx, T, T, M_LOG(x))                                                          \
    EW_UNARY(recip_k_##sfx, T, T, (T)1 / x)                                                        \
    EW_UNARY(floor_k_##sfx, T, T, M_FLOOR(x))                                                      \
    EW_UNARY(ceil_k_##sfx, T, T, M_CEIL(x))                                                        \
    EW_UNARY(leaky_k_##sfx, T, T, x < 0 ? alpha * x : x)                                           \
    EW_UNARY(elu_k_##sfx, T, T, x < 0 ? alpha * M_EXPM1(x) : x)                                    \
    EW_UNARY(selu_k_##sfx, T, T, x <= 0 ? gamma * (alpha * M_EXP(x) - alpha) : gamma * x)          \
    EW_UNARY(celu_k_##sfx, T, T, MAX0(x) + (x < 0 ? alpha * M_EXPM1(x / alpha) : (T)0))            \
    EW_UNARY(hsig_k_##sfx, T, T, MAX0(MIN1(alpha *x + beta)))                                      \
    EW_UNARY(hswish_k_##sfx, T, T, x *MAX0(MIN1(x *(T)(1.0 / 6.0) + (T)0.5)))                      \
    EW_UNARY(softsign_k_##sfx, T, T, x / ((T)1 + M_FABS(x)))                                       \
    EW_UNARY(relu_k_##sfx, T, T, x < 0 ? (T)0 : x)                                                 \
    EW_UNARY(neg_k_##sfx, T, T, -x)                                                                \
    EW_UNARY(abs_k_##sfx, T, T, M_FABS(x))                                                         \
    EW_UNARY(sign_k_##sfx, T, T, x > 0 ? (T)1 : (x < 0 ? (T)-1 : x))                               \
    EW_UNARY(divn_k_##sfx, T, T, x / alpha)
EW_FLOATS(EW_FLOAT_UNARIES)

/* Signed integers: wrapping negation (-MIN == MIN as in numpy). */
#define EW_SINT_UNARIES(sfx, T, U)                                                                 \
    EW_UNARY(relu_k_##sfx, T, T, x < 0 ? (T)0 : x)                                                 \
    EW_UNARY(neg_k_##sfx, T, T, (T)(0 - (U)x))                                                     \
    EW_UNARY(abs_k_##sfx, T, T, x < 0 ? (T)(0 - (U)x) : x)                                         \
    EW_UNARY(sign_k_##sfx, T, T, (x > 0) - (x < 0))
EW_SINTS(EW_SINT_UNARIES)
EW_UNARY(abs_k_u8, uint8_t, uint8_t, x)
EW_UNARY(sign_k_u8, uint8_t, uint8_t, x > 0)
EW_UNARY(not_k_b, uint8_t, uint8_t, x == 0)

/* Copy (Identity, Dropout, the first operand of variadic ops) by element size; s[0] == 0 is
 * a broadcast fill. */
#define EW_COPY(name, T)                                                                           \
    static void name(const void *const *in, const int *s, void *y_, int64_t n, const ew_args *p) { \
        const T *x = in[0];                                                                        \
        T *y = y_;                                                                                 \
        (void)p;                                                                                   \
        if (s[0])                                                                                  \
            memcpy(y, x, (size_t)n * sizeof(T));                                                   \
        else                                                                                       \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) y[i] = x[0];                       \
    }
EW_COPY(copy_1, uint8_t)
EW_COPY(copy_4, uint32_t)
EW_COPY(copy_8, uint64_t)

static ew_kernel copy_kernel(stx_dtype dt) {
    switch (stx_dtype_size(dt)) {
    case 1:
        return copy_1;
    case 4:
        return copy_4;
    case 8:
        return copy_8;
    default:
        return NULL;
    }
}

/* Fills n elements with 1 of the output's type (Dropout mask). */
#define EW_ONES(name, T)                                                                           \
    static void name(const void *const *in, const int *s, void *y_, int64_t n, const ew_args *p) { \
        T *y = y_;                                                                                 \
        (void)in, (void)s, (void)p;                                                                \
        _Pragma("omp simd") for (int64_t i = 0; i < n; i++) y[i] = (T)1;                           \
    }
EW_ONES(ones_f32, float)
EW_ONES(ones_f64, double)
EW_ONES(ones_i64, int64_t)
EW_ONES(ones_i32, int32_t)
EW_ONES(ones_i8, int8_t)
EW_ONES(ones_u8, uint8_t)
static const ew_kernel ones_tab[S_N] = {TAB_NUM(ones), [S_BOOL] = ones_u8};

/* Clip: min(max(x, lo), hi) (when lo > hi every output is hi, as the spec requires); NaN
 * passes through. */
#define EW_CLIP_F(sfx, T)                                                                          \
    static void clip_k_##sfx(const void *const *in, const int *s, void *y_, int64_t n,             \
                             const ew_args *p) {                                                   \
        const T *x = in[0];                                                                        \
        T *y = y_;                                                                                 \
        const T lo = (T)p->flo, hi = (T)p->fhi;                                                    \
        (void)s;                                                                                   \
        _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                                      \
            T v = x[i] < lo ? lo : x[i];                                                           \
            y[i] = v > hi ? hi : v;                                                                \
        }                                                                                          \
    }
#define EW_CLIP_I(sfx, T, ...)                                                                     \
    static void clip_k_##sfx(const void *const *in, const int *s, void *y_, int64_t n,             \
                             const ew_args *p) {                                                   \
        const T *x = in[0];                                                                        \
        T *y = y_;                                                                                 \
        const T lo = (T)p->ilo, hi = (T)p->ihi;                                                    \
        (void)s;                                                                                   \
        _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                                      \
            T v = x[i] < lo ? lo : x[i];                                                           \
            y[i] = v > hi ? hi : v;                                                                \
        }                                                                                          \
    }
EW_FLOATS(EW_CLIP_F)
EW_SINTS(EW_CLIP_I)
EW_CLIP_I(u8, uint8_t, uint8_t)

/* ---------------------------------------------------------------------------------------------
 * Binary kernels.
 */
#define EW_FLOAT_BINARIES(sfx, T)                                                                  \
    EW_BINARY(add_k_##sfx, T, T, T, a + b)                                                         \
    EW_BINARY(sub_k_##sfx, T, T, T, a - b)                                                         \
    EW_BINARY(mul_k_##sfx, T, T, T, a *b)                                                          \
    EW_BINARY(div_k_##sfx, T, T, T, a / b)                                                         \
    /* numpy maximum/minimum: NaN in either operand propagates */                                  \
    EW_BINARY(max_k_##sfx, T, T, T, (a > b || a != a) ? a : b)                                     \
    EW_BINARY(min_k_##sfx, T, T, T, (a < b || a != a) ? a : b)                                     \
    EW_BINARY(prelu_k_##sfx, T, T, T, a < 0 ? a * b : a)                                           \
    EW_BINARY(eq_k_##sfx, T, T, uint8_t, a == b)                                                   \
    EW_BINARY(lt_k_##sfx, T, T, uint8_t, a < b)                                                    \
    EW_BINARY(gt_k_##sfx, T, T, uint8_t, a > b)                                                    \
    EW_BINARY(le_k_##sfx, T, T, uint8_t, a <= b)                                                   \
    EW_BINARY(ge_k_##sfx, T, T, uint8_t, a >= b)
EW_FLOATS(EW_FLOAT_BINARIES)

#define EW_INT_BINARIES(sfx, T, U)                                                                 \
    EW_BINARY(add_k_##sfx, T, T, T, (T)((U)a + (U)b))                                              \
    EW_BINARY(sub_k_##sfx, T, T, T, (T)((U)a - (U)b))                                              \
    EW_BINARY(mul_k_##sfx, T, T, T, (T)((U)a * (U)b))                                              \
    EW_BINARY(div_k_##sfx, T, T, T, div_##sfx(a, b))                                               \
    EW_BINARY(max_k_##sfx, T, T, T, a > b ? a : b)                                                 \
    EW_BINARY(min_k_##sfx, T, T, T, a < b ? a : b)                                                 \
    EW_BINARY(eq_k_##sfx, T, T, uint8_t, a == b)                                                   \
    EW_BINARY(lt_k_##sfx, T, T, uint8_t, a < b)                                                    \
    EW_BINARY(gt_k_##sfx, T, T, uint8_t, a > b)                                                    \
    EW_BINARY(le_k_##sfx, T, T, uint8_t, a <= b)                                                   \
    EW_BINARY(ge_k_##sfx, T, T, uint8_t, a >= b)
EW_SINTS(EW_INT_BINARIES)
EW_INT_BINARIES(u8, uint8_t, uint8_t)
#define EW_SINT_PRELU(sfx, T, U) EW_BINARY(prelu_k_##sfx, T, T, T, a < 0 ? (T)((U)a * (U)b) : a)
EW_SINTS(EW_SINT_PRELU)

EW_BINARY(eq_k_b, uint8_t, uint8_t, uint8_t, (a != 0) == (b != 0))
EW_BINARY(and_k_b, uint8_t, uint8_t, uint8_t, (a != 0) & (b != 0))
EW_BINARY(or_k_b, uint8_t, uint8_t, uint8_t, (a != 0) | (b != 0))
EW_BINARY(xor_k_b, uint8_t, uint8_t, uint8_t, (a != 0) ^ (b != 0))

/* Pow with equal base/exponent types. float32 uses powf, except that the very common x^2
 * (variance in decomposed normalisations) is an exact multiply. */
static void pow_k_f32(const void *const *in, const int *s, void *y_, int64_t n, const ew_args *p) {
    const float *A = in[0], *B = in[1];
    float *y = y_;
    (void)p;
    if (!s[1] && B[0] == 2.0f) {
        _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {
            float a = A[i * s[0]];
            y[i] = a * a;
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) y[i] = powf(A[i * s[0]], B[i * s[1]]);
}
EW_BINARY(pow_k_f64, double, double, double, pow(a, b))
EW_BINARY(pow_k_i64, int64_t, int64_t, int64_t, ipow(a, b))
EW_BINARY(pow_k_i32, int32_t, int32_t, int32_t, (int32_t)(uint32_t)(uint64_t)ipow(a, b))

/* Loads element i of a slot-typed array as double / int64. */
static double ld_f(const void *v, int64_t i, int slot) {
    switch (slot) {
    case S_F32:
        return ((const float *)v)[i];
    case S_F64:
        return ((const double *)v)[i];
    case S_I64:
        return (double)((const int64_t *)v)[i];
    case S_I32:
        return ((const int32_t *)v)[i];
    case S_I8:
        return ((const int8_t *)v)[i];
    default:
        return ((const uint8_t *)v)[i];
    }
}
static int64_t ld_i(const void *v, int64_t i, int slot) {
    switch (slot) {
    case S_I64:
        return ((const int64_t *)v)[i];
    case S_I32:
        return ((const int32_t *)v)[i];
    case S_I8:
        return ((const int8_t *)v)[i];
    default:
        return ((const uint8_t *)v)[i];
    }
}

/* Pow with different base (T) and exponent (T1) types (opset 12+): integer^integer is exact
 * integer power, anything involving a float is computed in double and converted to T (as the
 * numpy reference does: np.power promotes, then casts back to the base type). */
static void pow_k_mixed(const void *const *in, const int *s, void *y, int64_t n, const ew_args *p) {
    const int sa = p->slot_a, sb = p->slot_b;
    const bool a_int = sa != S_F32 && sa != S_F64, b_int = sb != S_F32 && sb != S_F64;
    for (int64_t i = 0; i < n; i++) {
        const int64_t ia = i * s[0], ib = i * s[1];
        if (a_int && b_int) {
            int64_t v = ipow(ld_i(in[0], ia, sa), ld_i(in[1], ib, sb));
            if (sa == S_I64)
                ((int64_t *)y)[i] = v;
            else
                ((int32_t *)y)[i] = (int32_t)(uint32_t)(uint64_t)v;
            continue;
        }
        double v = pow(ld_f(in[0], ia, sa), ld_f(in[1], ib, sb));
        switch (sa) {
        case S_F32:
            ((float *)y)[i] = (float)v;
            break;
        case S_F64:
            ((double *)y)[i] = v;
            break;
        case S_I64:
            ((int64_t *)y)[i] = sat_i64(v);
            break;
        default:
            ((int32_t *)y)[i] = sat_i32(v);
            break;
        }
    }
}

/* Where(cond, x, y): any element size, all three operands broadcast. */
#define EW_WHERE(name, T)                                                                          \
    static void name(const void *const *in, const int *s, void *y_, int64_t n, const ew_args *p) { \
        const uint8_t *c = in[0];                                                                  \
        const T *a = in[1], *b = in[2];                                                            \
        T *y = y_;                                                                                 \
        (void)p;                                                                                   \
        const int sc = s[0], sa = s[1], sb = s[2];                                                 \
        _Pragma("omp simd") for (int64_t i = 0; i < n; i++) y[i] =                                 \
            c[i * sc] ? a[i * sa] : b[i * sb];                                                     \
    }
EW_WHERE(where_1, uint8_t)
EW_WHERE(where_4, uint32_t)
EW_WHERE(where_8, uint64_t)

/* ---------------------------------------------------------------------------------------------
 * Cast kernels: a 7x7 table. Floating sources go through double (saturating into integers,
 * NaN -> 0), integer sources through int64 (narrowing wraps modulo 2^bits, like numpy), bool
 * sources are normalised to 0/1; to bool is "!= 0".
 */
static inline float fl_to_f32(double v) {
    return (float)v;
}
static inline double fl_to_f64(double v) {
    return v;
}
static inline int64_t fl_to_i64(double v) {
    return sat_i64(v);
}
static inline int32_t fl_to_i32(double v) {
    return sat_i32(v);
}
static inline uint8_t fl_to_u8(double v) {
    return sat_u8(v);
}
static inline int8_t fl_to_i8(double v) {
    return sat_i8(v);
}
static inline uint8_t fl_to_b(double v) {
    return v != 0;
}
static inline float in_to_f32(int64_t v) {
    return (float)v;
}
static inline double in_to_f64(int64_t v) {
    return (double)v;
}
static inline int64_t in_to_i64(int64_t v) {
    return v;
}
static inline int32_t in_to_i32(int64_t v) {
    return (int32_t)(uint32_t)(uint64_t)v;
}
static inline uint8_t in_to_u8(int64_t v) {
    return (uint8_t)(uint64_t)v;
}
static inline int8_t in_to_i8(int64_t v) {
    return (int8_t)(uint8_t)(uint64_t)v;
}
static inline uint8_t in_to_b(int64_t v) {
    return v != 0;
}
#define bo_to_f32(v) in_to_f32((v) != 0)
#define bo_to_f64(v) in_to_f64((v) != 0)
#define bo_to_i64(v) in_to_i64((v) != 0)
#define bo_to_i32(v) in_to_i32((v) != 0)
#define bo_to_u8(v) in_to_u8((v) != 0)
#define bo_to_i8(v) in_to_i8((v) != 0)
#define bo_to_b(v) in_to_b((v) != 0)

#define EW_CAST_KERNEL(SN, ST, FAM, DN, DT)                                                        \
    static void cast_##SN##_##DN(const void *const *in, const int *s, void *y_, int64_t n,         \
                                 const ew_args *p) {                                               \
        const ST *x = in[0];                                                                       \
        DT *y = y_;                                                                                \
        (void)s, (void)p;                                                                          \
        _Pragma("omp simd") for (int64_t i = 0; i < n; i++) y[i] = FAM##_to_##DN(x[i]);            \
    }
#define EW_CAST_DSTS(X, SN, ST, FAM)                                                               \
    X(SN, ST, FAM, f32, float)                                                                     \
    X(SN, ST, FAM, f64, double)                                                                    \
    X(SN, ST, FAM, i64, int64_t)                                                                   \
    X(SN, ST, FAM, i32, int32_t)                                                                   \
    X(SN, ST, FAM, u8, uint8_t)                                                                    \
    X(SN, ST, FAM, i8, int8_t)                                                                     \
    X(SN, ST, FAM, b, uint8_t)
#define EW_CAST_SRC(SN, ST, FAM) EW_CAST_DSTS(EW_CAST_KERNEL, SN, ST, FAM)
EW_CAST_SRC(f32, float, fl)
EW_CAST_SRC(f64, double, fl)
EW_CAST_SRC(i64, int64_t, in)
EW_CAST_SRC(i32, int32_t, in)
EW_CAST_SRC(u8, uint8_t, in)
EW_CAST_SRC(i8, int8_t, in)
EW_CAST_SRC(b, uint8_t, bo)
/* Rows and columns in slot order. */
#define EW_CAST_ROW(SN)                                                                            \
    {                                                                                              \
        cast_##SN##_f32, cast_##SN##_f64, cast_##SN##_i64, cast_##SN##_i32, cast_##SN##_u8,        \
            cast_##SN##_i8, cast_##SN##_b                                                          \
    }
static const ew_kernel cast_tab[S_N][S_N] = {EW_CAST_ROW(f32), EW_CAST_ROW(f64), EW_CAST_ROW(i64),
                                             EW_CAST_ROW(i32), EW_CAST_ROW(u8),  EW_CAST_ROW(i8),
                                             EW_CAST_ROW(b)};

/* ---------------------------------------------------------------------------------------------
 * Parameter readers.
 */
static stx_status p_alpha(stx_op_ctx *c, ew_args *a, double def) {
    a->alpha = stx__attr_float(c->node, "alpha", (float)def);
    return STX_OK;
}
static stx_status p_leaky(stx_op_ctx *c, ew_args *a) {
    return p_alpha(c, a, 0.01);
}
static stx_status p_elu(stx_op_ctx *c, ew_args *a) {
    return p_alpha(c, a, 1.0);
}
static stx_status p_celu(stx_op_ctx *c, ew_args *a) {
    return p_alpha(c, a, 1.0);
}
static stx_status p_selu(stx_op_ctx *c, ew_args *a) {
    /* ONNX defaults are these float32 values (spec: 1.67326319217681884765625 and
     * 1.05070102214813232421875). */
    a->alpha = stx__attr_float(c->node, "alpha", 1.67326319217681884765625f);
    a->gamma = stx__attr_float(c->node, "gamma", 1.05070102214813232421875f);
    return STX_OK;
}
static stx_status p_hsig(stx_op_ctx *c, ew_args *a) {
    a->alpha = stx__attr_float(c->node, "alpha", 0.2f);
    a->beta = stx__attr_float(c->node, "beta", 0.5f);
    return STX_OK;
}
static stx_status p_gelu(stx_op_ctx *c, ew_args *a) {
    a->mode = strcmp(stx__attr_str(c->node, "approximate", "none"), "tanh") == 0;
    return STX_OK;
}

static void int_limits(int slot, int64_t *lo, int64_t *hi) {
    switch (slot) {
    case S_I32:
        *lo = INT32_MIN, *hi = INT32_MAX;
        break;
    case S_U8:
        *lo = 0, *hi = UINT8_MAX;
        break;
    case S_I8:
        *lo = INT8_MIN, *hi = INT8_MAX;
        break;
    default:
        *lo = INT64_MIN, *hi = INT64_MAX;
        break;
    }
}

/* Reads a one-element tensor of x's slot into *f or *i. */
static void scalar_value(const stx_tensor *t, int slot, double *f, int64_t *i) {
    if (slot == S_F32 || slot == S_F64)
        *f = ld_f(t->data, 0, slot);
    else
        *i = ld_i(t->data, 0, slot);
}

/* Clip bounds: inputs 1 and 2 (optional, scalars) since opset 11; float attributes before. */
static stx_status p_clip(stx_op_ctx *c, ew_args *a) {
    const int slot = ew_slot(c->in[0]->dtype);
    a->flo = -INFINITY;
    a->fhi = INFINITY;
    int_limits(slot, &a->ilo, &a->ihi);
    if (c->opset < 11) {
        a->flo = stx__attr_float(c->node, "min", -FLT_MAX);
        a->fhi = stx__attr_float(c->node, "max", FLT_MAX);
        return STX_OK;
    }
    if (c->n_in > 1 && c->in[1]) scalar_value(c->in[1], slot, &a->flo, &a->ilo);
    if (c->n_in > 2 && c->in[2]) scalar_value(c->in[2], slot, &a->fhi, &a->ihi);
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Shared infer/forward.
 */
static const char *types_str(const ew_kernel *k, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = '\0';
    for (int s = 0; s < S_N; s++) {
        if (!k[s]) continue;
        int w =
            snprintf(buf + len, n - len, "%s%s", len ? ", " : "", stx_dtype_name(slot_dtype[s]));
        if (w < 0 || (size_t)w >= n - len) break;
        len += (size_t)w;
    }
    return buf;
}

static stx_status bad_dtype(stx_op_ctx *c, const char *what, stx_dtype dt, const ew_kernel *k) {
    char buf[160];
    return stx__node_err(c, STX_E_UNSUPPORTED, "%s has dtype %s, which is not supported (%s)", what,
                         stx_dtype_name(dt), types_str(k, buf, sizeof buf));
}

static stx_status need_input(stx_op_ctx *c, int i) {
    if (i < c->n_in && c->in[i]) return STX_OK;
    return stx__node_err(c, STX_E_INVALID, "required input %d is missing", i);
}

static stx_status unary_infer(stx_op_ctx *c, const ew_op *op) {
    stx_status st = need_input(c, 0);
    if (st) return st;
    const stx_tensor *x = c->in[0];
    int s = ew_slot(x->dtype);
    if (s < 0 || !op->k[s]) return bad_dtype(c, "input", x->dtype, op->k);
    stx__set_out(c, 0, op->out_bool ? STX_DTYPE_BOOL : x->dtype, x->dims, x->rank);
    return STX_OK;
}

static stx_status unary_forward(stx_op_ctx *c, const ew_op *op) {
    stx_tensor *x = c->in[0], *y = c->out[0];
    if (!y) return STX_OK;
    ew_args a = {0};
    if (op->params) {
        stx_status st = op->params(c, &a);
        if (st) return st;
    }
    ew_run(&x, 1, y, op->k[ew_slot(x->dtype)], &a);
    return STX_OK;
}

/* Broadcast shape of inputs [0, n): all present, same dtype (unless mixed is set). */
static stx_status bcast_infer(stx_op_ctx *c, int n, bool mixed, int64_t *dims, int *rank) {
    for (int i = 0; i < n; i++) {
        stx_status st = need_input(c, i);
        if (st) return st;
    }
    const stx_tensor *a = c->in[0];
    *rank = a->rank;
    memcpy(dims, a->dims, sizeof(int64_t) * (size_t)a->rank);
    for (int i = 1; i < n; i++) {
        const stx_tensor *b = c->in[i];
        if (!mixed && b->dtype != a->dtype)
            return stx__node_err(c, STX_E_INVALID, "input %d has dtype %s but input 0 has %s", i,
                                 stx_dtype_name(b->dtype), stx_dtype_name(a->dtype));
        int64_t tmp[STX_MAX_RANK];
        int r;
        stx_status st = stx__broadcast_shape(c, dims, *rank, b->dims, b->rank, tmp, &r);
        if (st) return st;
        memcpy(dims, tmp, sizeof(int64_t) * (size_t)r);
        *rank = r;
    }
    return STX_OK;
}

static stx_status binary_infer(stx_op_ctx *c, const ew_op *op) {
    int64_t dims[STX_MAX_RANK];
    int r;
    stx_status st = bcast_infer(c, 2, false, dims, &r);
    if (st) return st;
    int s = ew_slot(c->in[0]->dtype);
    if (s < 0 || !op->k[s]) return bad_dtype(c, "input", c->in[0]->dtype, op->k);
    stx__set_out(c, 0, op->out_bool ? STX_DTYPE_BOOL : c->in[0]->dtype, dims, r);
    return STX_OK;
}

static stx_status binary_forward(stx_op_ctx *c, const ew_op *op) {
    if (!c->out[0]) return STX_OK;
    ew_args a = {0};
    stx_tensor *ins[2] = {c->in[0], c->in[1]};
    ew_run(ins, 2, c->out[0], op->k[ew_slot(ins[0]->dtype)], &a);
    return STX_OK;
}

/* Variadic Max/Min/Sum/Mean: y = in0 broadcast, then y = f(y, in_k) in place. */
static stx_status variadic_infer(stx_op_ctx *c, const ew_op *op) {
    int64_t dims[STX_MAX_RANK];
    int r;
    stx_status st = bcast_infer(c, c->n_in, false, dims, &r);
    if (st) return st;
    int s = ew_slot(c->in[0]->dtype);
    if (s < 0 || !op->k[s]) return bad_dtype(c, "input", c->in[0]->dtype, op->k);
    stx__set_out(c, 0, c->in[0]->dtype, dims, r);
    return STX_OK;
}

static stx_status variadic_forward(stx_op_ctx *c, const ew_op *op) {
    stx_tensor *y = c->out[0];
    if (!y) return STX_OK;
    ew_args a = {0};
    stx_tensor *first = c->in[0];
    ew_run(&first, 1, y, copy_kernel(y->dtype), &a);
    for (int i = 1; i < c->n_in; i++) {
        stx_tensor *ins[2] = {y, c->in[i]};
        ew_run(ins, 2, y, op->k[ew_slot(y->dtype)], &a);
    }
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Reverse mode.
 *
 * Every VJP here has the form din_k += R_k(g(dy, forward values)) with g elementwise over the
 * output and R_k the sum over the axes along which input k was broadcast (numpy broadcasting:
 * missing leading axes and size-1 axes). bw_run is the broadcasting engine's twin for this: it
 * takes the output's index space and the operands' strides as ew_run does, plus the target
 * (the gradient of input k) with stride 0 on its broadcast axes. After dropping size-1 axes and
 * merging axes contiguous in every operand and in the target, the outer axes split into "kept"
 * ones (the target advances) and "reduced" ones (it does not), and the innermost run either
 * advances the target (kernels do G[i] += g_i) or not (kernels do G[0] += sum g_i).
 *
 * Determinism: work items own disjoint target elements (kept outer index x chunk of the inner
 * run) and sum their reduced runs in a fixed order, so the result does not depend on how items
 * are scheduled. When there are fewer owners than threads for a big reduction (a bias-like
 * gradient: a scalar, a [C] vector), the reduced runs are split into P parts (P a function of
 * the thread count) summed into private zeroed buffers, then added in part order.
 *
 * Kernels come in float32/float64 pairs indexed by slot (S_F32 = 0, S_F64 = 1).
 */

/* Accumulates g over n output elements into G: sg == 1: G[i] += g_i, sg == 0: G[0] += sum g_i.
 * Operand j advances by s[j] (0 or 1) elements per output element; operand 0 is dy. */
typedef void (*bw_kernel)(const void *const *op, const int *s, void *G, int sg, int64_t n,
                          const ew_args *p);

#define BW_MAXOP 66   /* dy, up to 64 inputs (variadic Max/Min), one spare */
#define BW_PBUF 16384 /* bytes of per-part partial sums (on the stack) */

/* Strides of t along each of the r output axes, 0 where t is broadcast. */
static void bw_strides(const stx_tensor *t, int r, int64_t *own) {
    const bool scalar = stx__numel(t->dims, t->rank) == 1; /* also a [1] against a scalar */
    int64_t st = 1;
    for (int d = r - 1; d >= 0; d--) {
        int id = d - (r - t->rank);
        own[d] = (scalar || id < 0 || t->dims[id] == 1) ? 0 : st;
        if (id >= 0 && !scalar) st *= t->dims[id];
    }
}

/* gt += R(k(ops)) over the index space of ref (the output); ops[0] is dy. */
static void bw_run(const stx_tensor *const *ops, int nops, const stx_tensor *ref, stx_tensor *gt,
                   bw_kernel k, const ew_args *p) {
    const int r = ref->rank, nt = nops + 1; /* operands, then the target at index nops */
    const int64_t total = stx__numel(ref->dims, r);
    if (total <= 0) return;
    int64_t own[BW_MAXOP + 1][STX_MAX_RANK], str[BW_MAXOP + 1][STX_MAX_RANK];
    size_t esz[BW_MAXOP + 1];
    for (int i = 0; i < nt; i++) {
        const stx_tensor *t = i < nops ? ops[i] : gt;
        bw_strides(t, r, own[i]);
        esz[i] = stx_dtype_size(t->dtype);
    }
    int64_t dims[STX_MAX_RANK];
    int nd = 0;
    for (int d = 0; d < r; d++) {
        if (ref->dims[d] == 1) continue;
        bool merge = nd > 0;
        for (int i = 0; i < nt && merge; i++)
            if (str[i][nd - 1] != own[i][d] * ref->dims[d]) merge = false;
        if (merge) {
            dims[nd - 1] *= ref->dims[d];
            for (int i = 0; i < nt; i++) str[i][nd - 1] = own[i][d];
        } else {
            dims[nd] = ref->dims[d];
            for (int i = 0; i < nt; i++) str[i][nd] = own[i][d];
            nd++;
        }
    }
    if (nd == 0) { /* a single element: every operand "advances" over a run of one */
        dims[0] = 1;
        for (int i = 0; i < nt; i++) str[i][0] = 1;
        nd = 1;
    }
    int s[BW_MAXOP];
    for (int i = 0; i < nops; i++) s[i] = str[i][nd - 1] != 0;
    const int sg = str[nops][nd - 1] != 0;
    const int64_t inner = dims[nd - 1];
    int ko[STX_MAX_RANK], ro[STX_MAX_RANK], nko = 0, nro = 0;
    int64_t nK = 1, nR = 1;
    for (int d = 0; d < nd - 1; d++) {
        if (str[nops][d]) {
            ko[nko++] = d;
            nK *= dims[d];
        } else {
            ro[nro++] = d;
            nR *= dims[d];
        }
    }
    const int64_t nth = stx__threads();
    const bool par = total >= EW_PAR_MIN && nth > 1;
    /* chunk of the inner run; shorter when the target's kept elements are too few to share */
    int64_t cl = EW_CHUNK;
    if (sg && par && nK * ((inner + cl - 1) / cl) < nth) {
        int64_t want = (nth + nK - 1) / nK;
        cl = ((inner + want - 1) / want + 15) / 16 * 16;
        if (cl < 64) cl = 64;
    }
    const int64_t nch = (inner + cl - 1) / cl;
    const int64_t kept = sg ? nK * nch : nK;  /* owners of disjoint target elements */
    const int64_t units = sg ? nR : nR * nch; /* runs each owner sums, in this order */
    const int64_t gn = stx__numel(gt->dims, gt->rank);
    const size_t gsz = esz[nops];
    _Alignas(64) unsigned char pbuf[BW_PBUF];
    int64_t P = 1;
    if (par && kept < nth && units >= 2) {
        P = (nth + kept - 1) / kept;
        if (P > units) P = units;
        const int64_t cap = BW_PBUF / (gn * (int64_t)gsz);
        if (P > cap) P = cap;
        if (P < 2)
            P = 1;
        else
            memset(pbuf, 0, (size_t)(P * gn) * gsz);
    }
    const int64_t items = kept * P;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t it = 0; it < items; it++) {
        const int64_t kid = it / P, part = it % P;
        int64_t kk = sg ? kid / nch : kid;
        const int64_t ch = sg ? kid % nch : 0;
        int64_t base[BW_MAXOP + 1], off[BW_MAXOP + 1];
        for (int i = 0; i < nt; i++) base[i] = 0;
        for (int j = nko - 1; j >= 0; j--) {
            const int d = ko[j];
            const int64_t q = kk % dims[d];
            kk /= dims[d];
            for (int i = 0; i < nt; i++) base[i] += q * str[i][d];
        }
        char *G = P > 1 ? (char *)pbuf + (size_t)(part * gn) * gsz : (char *)gt->data;
        const void *ptr[BW_MAXOP];
        const int64_t u0 = units * part / P, u1 = units * (part + 1) / P;
        for (int64_t u = u0; u < u1; u++) {
            int64_t rr = sg ? u : u / nch;
            const int64_t c0 = (sg ? ch : u % nch) * cl;
            const int64_t len = inner - c0 < cl ? inner - c0 : cl;
            for (int i = 0; i < nops; i++) off[i] = base[i];
            for (int j = nro - 1; j >= 0; j--) { /* the target does not move along these */
                const int d = ro[j];
                const int64_t q = rr % dims[d];
                rr /= dims[d];
                for (int i = 0; i < nops; i++) off[i] += q * str[i][d];
            }
            for (int i = 0; i < nops; i++)
                ptr[i] = (const char *)ops[i]->data + (size_t)(off[i] + c0 * s[i]) * esz[i];
            k(ptr, s, G + (size_t)(base[nops] + c0 * sg) * gsz, sg, len, p);
        }
    }
    if (P > 1) { /* parts in a fixed order */
        if (gt->dtype == STX_DTYPE_FLOAT) {
            float *g = gt->data;
            const float *b = (const float *)(void *)pbuf;
            for (int64_t j = 0; j < gn; j++)
                for (int64_t q = 0; q < P; q++) g[j] += b[q * gn + j];
        } else {
            double *g = gt->data;
            const double *b = (const double *)(void *)pbuf;
            for (int64_t j = 0; j < gn; j++)
                for (int64_t q = 0; q < P; q++) g[j] += b[q * gn + j];
        }
    }
}

/* The loop of every backward kernel: the statements (variadic) define `const T v_`, the
 * contribution of element i_, added to G_[i_] (sg_) or summed into G_[0] (!sg_). */
#define BW_EMIT(T, ...)                                                                            \
    do {                                                                                           \
        if (sg_) {                                                                                 \
            _Pragma("omp simd") for (int64_t i_ = 0; i_ < n_; i_++) {                              \
                __VA_ARGS__                                                                        \
                G_[i_] += v_;                                                                      \
            }                                                                                      \
        } else {                                                                                   \
            T acc_ = 0;                                                                            \
            _Pragma("omp simd reduction(+ : acc_)") for (int64_t i_ = 0; i_ < n_; i_++) {          \
                __VA_ARGS__                                                                        \
                acc_ += v_;                                                                        \
            }                                                                                      \
            G_[0] += acc_;                                                                         \
        }                                                                                          \
    } while (0)

#define BW_PROLOGUE(T)                                                                             \
    T *G_ = G_v;                                                                                   \
    const T alpha = (T)p_->alpha, beta = (T)p_->beta, gamma = (T)p_->gamma;                        \
    const int mode = p_->mode;                                                                     \
    (void)s_, (void)alpha, (void)beta, (void)gamma, (void)mode

/* g = expr(dy) (linear ops: Add, Sub, Neg, Sum, Mean, Identity, Cast). TD: dy's type. */
#define BW_LINEAR(fname, TD, TG, expr)                                                             \
    static void fname(const void *const *op_, const int *s_, void *G_v, int sg_, int64_t n_,       \
                      const ew_args *p_) {                                                         \
        const TD *D_ = op_[0];                                                                     \
        BW_PROLOGUE(TG);                                                                           \
        BW_EMIT(TG, const TD dy = D_[i_]; const TG v_ = (TG)(expr););                              \
    }

/* g = expr(dy, VAR) where VAR (x or y) has the output's shape, like dy (both advance by one). */
#define BW_UNARY(fname, T, VAR, expr)                                                              \
    static void fname(const void *const *op_, const int *s_, void *G_v, int sg_, int64_t n_,       \
                      const ew_args *p_) {                                                         \
        const T *D_ = op_[0], *V_ = op_[1];                                                        \
        BW_PROLOGUE(T);                                                                            \
        BW_EMIT(T, const T dy = D_[i_]; const T VAR = V_[i_]; const T v_ = (expr););               \
    }

/* g = expr(dy, a, b) with broadcast a and b: one loop per stride pattern (each vectorises). */
#define BW_BIN_CASE(T, SA, SB, expr)                                                               \
    BW_EMIT(T, const T dy = D_[i_]; const T a = A_[i_ * SA]; const T b = B_[i_ * SB];              \
            (void)a, (void)b; const T v_ = (expr);)
#define BW_BINARY(fname, T, expr)                                                                  \
    static void fname(const void *const *op_, const int *s_, void *G_v, int sg_, int64_t n_,       \
                      const ew_args *p_) {                                                         \
        const T *D_ = op_[0], *A_ = op_[1], *B_ = op_[2];                                          \
        BW_PROLOGUE(T);                                                                            \
        if (s_[1] && s_[2])                                                                        \
            BW_BIN_CASE(T, 1, 1, expr);                                                            \
        else if (s_[1])                                                                            \
            BW_BIN_CASE(T, 1, 0, expr);                                                            \
        else if (s_[2])                                                                            \
            BW_BIN_CASE(T, 0, 1, expr);                                                            \
        else                                                                                       \
            BW_BIN_CASE(T, 0, 0, expr);                                                            \
    }

/* Kernels. Conventions at non-differentiable points follow PyTorch:
 *   Relu'(0) = 0 (gradient where y > 0), LeakyRelu/PRelu/Elu/Selu at 0 take the negative
 *   branch's slope, Abs'(0) = sign(0) = 0, Clip passes the gradient at its bounds (lo <= x <= hi)
 *   and a bound tensor receives it where x lies beyond it (the lower one only while lo < hi),
 *   HardSigmoid zero at the kinks (exclusive), HardSwish: 0 for x < -3, x/3 + 1/2 for
 *   -3 <= x <= 3, 1 above, Max/Min ties split the gradient evenly among the inputs attaining
 *   the extremum (torch.maximum's 1/2 and 1/2 for two). */
#define BW_FLOAT_KERNELS(sfx, T)                                                                   \
    BW_LINEAR(scale_b_##sfx, T, T, alpha *dy)                                                      \
    /* Relu: dx = dy [y > 0] */                                                                    \
    BW_UNARY(relu_b_##sfx, T, y, y > 0 ? dy : (T)0)                                                \
    /* LeakyRelu: dx = dy (x > 0 ? 1 : alpha) */                                                   \
    BW_UNARY(leaky_b_##sfx, T, x, x > 0 ? dy : alpha * dy)                                         \
    /* Sigmoid: dx = dy y (1 - y) */                                                               \
    BW_UNARY(sigmoid_b_##sfx, T, y, dy *y *((T)1 - y))                                             \
    /* Tanh: dx = dy (1 - y^2) */                                                                  \
    BW_UNARY(tanh_b_##sfx, T, y, dy *((T)1 - y * y))                                               \
    /* Erf: dx = dy 2/sqrt(pi) exp(-x^2) */                                                        \
    BW_UNARY(erf_b_##sfx, T, x, dy *(T)1.1283791670955126 * M_EXP(-x * x))                         \
    /* Gelu: dx = dy Gelu'(x) */                                                                   \
    BW_UNARY(gelu_b_##sfx, T, x, dy *GELU_GRAD(x, mode))                                           \
    /* Softplus: dx = dy sigmoid(x) = dy (1 - e^-y), as -expm1(-y) (y = log(1 + e^x)) */           \
    BW_UNARY(softplus_b_##sfx, T, y, -dy *M_EXPM1(-y))                                             \
    /* Sqrt: dx = dy / (2 y) */                                                                    \
    BW_UNARY(sqrt_b_##sfx, T, y, dy / ((T)2 * y))                                                  \
    /* Exp: dx = dy y */                                                                           \
    BW_UNARY(exp_b_##sfx, T, y, dy *y)                                                             \
    /* Log: dx = dy / x */                                                                         \
    BW_UNARY(log_b_##sfx, T, x, dy / x)                                                            \
    /* Reciprocal: y = 1/x, dx = -dy / x^2 = -dy y^2 */                                            \
    BW_UNARY(recip_b_##sfx, T, y, -dy *y *y)                                                       \
    /* Abs: dx = dy sign(x) */                                                                     \
    BW_UNARY(abs_b_##sfx, T, x, x > 0 ? dy : (x < 0 ? -dy : (T)0))                                 \
    /* Elu: dx = dy (x > 0 ? 1 : alpha e^x) */                                                     \
    BW_UNARY(elu_b_##sfx, T, x, x > 0 ? dy : dy * alpha * M_EXP(x))                                \
    /* Selu: dx = dy gamma (x > 0 ? 1 : alpha e^x) */                                              \
    BW_UNARY(selu_b_##sfx, T, x, x > 0 ? gamma * dy : dy * gamma * alpha * M_EXP(x))               \
    /* Celu: dx = dy (x > 0 ? 1 : e^(x/alpha)) (continuous at 0) */                                \
    BW_UNARY(celu_b_##sfx, T, x, x > 0 ? dy : dy * M_EXP(x / alpha))                               \
    /* HardSigmoid: y = clamp(alpha x + beta, 0, 1): dx = dy alpha where 0 < y < 1 */              \
    BW_UNARY(hsig_b_##sfx, T, y, (y > 0 && y < (T)1) ? alpha *dy : (T)0)                           \
    /* HardSwish: y = x clamp(x/6 + 1/2, 0, 1): dx = dy (0 | x/3 + 1/2 | 1) */                     \
    BW_UNARY(hswish_b_##sfx, T, x, x < (T)-3 ? (T)0 : (x <= (T)3 ? dy * (x / (T)3 + (T)0.5) : dy)) \
    /* Softsign: y = x / (1 + |x|), dx = dy / (1 + |x|)^2 */                                       \
    BW_UNARY(softsign_b_##sfx, T, x, dy / (((T)1 + M_FABS(x)) * ((T)1 + M_FABS(x))))               \
    /* Clip (alpha = lo, beta = hi): x gets dy where lo <= x <= hi, lo where x < lo < hi, hi       \
     * where x > hi or hi < lo (then the output is hi everywhere) */                               \
    BW_UNARY(clip_bx_##sfx, T, x, (x >= alpha && x <= beta) ? dy : (T)0)                           \
    BW_UNARY(clip_blo_##sfx, T, x, (x < alpha && alpha < beta) ? dy : (T)0)                        \
    BW_UNARY(clip_bhi_##sfx, T, x, (x > beta || beta < alpha) ? dy : (T)0)                         \
    /* Mul: da = dy b, db = dy a */                                                                \
    BW_BINARY(mul_ba_##sfx, T, dy *b)                                                              \
    BW_BINARY(mul_bb_##sfx, T, dy *a)                                                              \
    /* Div: da = dy / b, db = -dy a / b^2 */                                                       \
    BW_BINARY(div_ba_##sfx, T, dy / b)                                                             \
    BW_BINARY(div_bb_##sfx, T, -dy *a / (b * b))                                                   \
    /* Pow: da = dy b a^(b-1) (0 where b == 0), db = dy a^b log(a) (0 where a == 0, b >= 0) */     \
    BW_BINARY(pow_ba_##sfx, T, b == 0 ? (T)0 : dy * b * M_POW(a, b - (T)1))                        \
    BW_BINARY(pow_bb_##sfx, T, (a == 0 && b >= 0) ? (T)0 : dy *M_POW(a, b) * M_LOG(a))             \
    BW_BINARY(sq_ba_##sfx, T, (T)2 * a * dy) /* a^2: da = 2 a dy */                                \
    /* PRelu (a = x, b = slope): dx = dy (x > 0 ? 1 : slope), dslope = dy (x > 0 ? 0 : x) */       \
    BW_BINARY(prelu_bx_##sfx, T, a > 0 ? dy : b * dy)                                              \
    BW_BINARY(prelu_bs_##sfx, T, a > 0 ? (T)0 : a * dy)                                            \
    /* Max/Min of two: the larger (smaller) input gets dy, a tie gives each dy/2 */                \
    BW_BINARY(max_ba_##sfx, T, a > b ? dy : (a == b ? (T)0.5 * dy : (T)0))                         \
    BW_BINARY(max_bb_##sfx, T, b > a ? dy : (a == b ? (T)0.5 * dy : (T)0))                         \
    BW_BINARY(min_ba_##sfx, T, a < b ? dy : (a == b ? (T)0.5 * dy : (T)0))                         \
    BW_BINARY(min_bb_##sfx, T, b < a ? dy : (a == b ? (T)0.5 * dy : (T)0))
EW_FLOATS(BW_FLOAT_KERNELS)
/* Cast between float types: the gradient is cast back, dx = (Tx) dy. */
BW_LINEAR(cvt_b_f32_f64, float, double, dy)
BW_LINEAR(cvt_b_f64_f32, double, float, dy)

/* Where: X gets dy where the condition holds (mode 0), Y where it does not (mode 1). */
#define BW_WHERE(sfx, T)                                                                           \
    static void where_b_##sfx(const void *const *op_, const int *s_, void *G_v, int sg_,           \
                              int64_t n_, const ew_args *p_) {                                     \
        const T *D_ = op_[0];                                                                      \
        const uint8_t *C_ = op_[1];                                                                \
        BW_PROLOGUE(T);                                                                            \
        const bool want = mode == 0;                                                               \
        if (!s_[1]) { /* the condition is constant along the run */                                \
            if ((C_[0] != 0) == want) BW_EMIT(T, const T v_ = D_[i_];);                            \
            return;                                                                                \
        }                                                                                          \
        BW_EMIT(T, const T v_ = ((C_[i_] != 0) == want) ? D_[i_] : (T)0;);                         \
    }
EW_FLOATS(BW_WHERE)

/* Variadic Max (mode 0) / Min (mode 1) of n > 2 inputs (operands dy, x_0 .. x_n-1): the
 * extremum m is recomputed as the forward does (NaN propagates, and then no input matches);
 * input k gets dy / (number of inputs equal to m) where x_k == m. */
#define BW_EXTREMUM(sfx, T)                                                                        \
    static void extremum_b_##sfx(const void *const *op_, const int *s_, void *G_v, int sg_,        \
                                 int64_t n_, const ew_args *p_) {                                  \
        const T *D_ = op_[0];                                                                      \
        BW_PROLOGUE(T);                                                                            \
        const int n = p_->n, k = p_->k, is_min = mode;                                             \
        T acc = 0;                                                                                 \
        for (int64_t i = 0; i < n_; i++) {                                                         \
            T m = ((const T *)op_[1])[i * s_[1]];                                                  \
            for (int j = 1; j < n; j++) {                                                          \
                const T v = ((const T *)op_[1 + j])[i * s_[1 + j]];                                \
                m = ((is_min ? m < v : m > v) || m != m) ? m : v;                                  \
            }                                                                                      \
            int cnt = 0;                                                                           \
            for (int j = 0; j < n; j++) cnt += ((const T *)op_[1 + j])[i * s_[1 + j]] == m;        \
            const T xk = ((const T *)op_[1 + k])[i * s_[1 + k]];                                   \
            const T v = xk == m ? D_[i] / (T)cnt : (T)0;                                           \
            if (sg_)                                                                               \
                G_[i] += v;                                                                        \
            else                                                                                   \
                acc += v;                                                                          \
        }                                                                                          \
        if (!sg_) G_[0] += acc;                                                                    \
    }
EW_FLOATS(BW_EXTREMUM)

/* Pow with mixed base/exponent types, in double like the forward: mode 0: the base's
 * gradient, mode 1: the exponent's (same formulas as pow_ba/pow_bb). dy has the base's type. */
static void pow_b_mixed(const void *const *op, const int *s, void *G, int sg, int64_t n,
                        const ew_args *p) {
    const int sa = p->slot_a, sb = p->slot_b, st = p->mode ? sb : sa;
    double acc = 0;
    for (int64_t i = 0; i < n; i++) {
        const double dy = ld_f(op[0], i * s[0], sa), a = ld_f(op[1], i * s[1], sa);
        const double b = ld_f(op[2], i * s[2], sb);
        double v;
        if (p->mode == 0)
            v = b == 0 ? 0 : dy * b * pow(a, b - 1);
        else
            v = (a == 0 && b >= 0) ? 0 : dy * pow(a, b) * log(a);
        if (!sg)
            acc += v;
        else if (st == S_F32)
            ((float *)G)[i] += (float)v;
        else
            ((double *)G)[i] += v;
    }
    if (sg) return;
    if (st == S_F32)
        ((float *)G)[0] += (float)acc;
    else
        ((double *)G)[0] += acc;
}

/* ---- backward entry points ---------------------------------------------------------------- */

#define BW_PAIR(p)                                                                                 \
    { p##_f32, p##_f64 }

/* The kernel for the gradient g's dtype (float32/float64). */
static stx_status bw_pick(stx_op_ctx *c, const stx_tensor *g, const bw_kernel *k2, bw_kernel *k) {
    const int s = ew_slot(g->dtype);
    if (s != S_F32 && s != S_F64)
        return stx__node_err(c, STX_E_UNSUPPORTED, "cannot differentiate a %s tensor",
                             stx_dtype_name(g->dtype));
    *k = k2[s];
    return STX_OK;
}

/* A forward value the VJP reads (declared in bwd_in/bwd_out, so the engine keeps it). */
static stx_status bw_need(stx_op_ctx *c, const stx_tensor *t, const char *what, int i) {
    if (t && t->data) return STX_OK;
    return stx__node_err(c, STX_E_INTERNAL, "backward needs %s %d, which holds no data", what, i);
}

/* Linear ops: din_k += coef_k R_k(dy), coef_0 = c0, the others crest; inputs [0, n). The
 * gradient is cast to the input's float type when it differs (Cast, CastLike). */
static stx_status linear_bwd(stx_op_ctx *c, int n, double c0, double crest) {
    static const bw_kernel same[2] = BW_PAIR(scale_b);
    stx_tensor *dy = c->dout[0];
    if (!dy) return STX_OK;
    for (int t = 0; t < n && t < c->n_in; t++) {
        stx_tensor *g = c->din[t];
        if (!g) continue;
        bw_kernel k = NULL;
        stx_status st = bw_pick(c, g, same, &k);
        if (st) return st;
        const int sd = ew_slot(dy->dtype), sg = ew_slot(g->dtype);
        if (sd != sg) {
            if (sd != S_F32 && sd != S_F64)
                return stx__node_err(c, STX_E_UNSUPPORTED, "cannot differentiate a %s tensor",
                                     stx_dtype_name(dy->dtype));
            k = sd == S_F32 ? cvt_b_f32_f64 : cvt_b_f64_f32;
        }
        ew_args a = {.alpha = t == 0 ? c0 : crest};
        const stx_tensor *ops[1] = {dy};
        bw_run(ops, 1, dy, g, k, &a);
    }
    return STX_OK;
}

/* Unary ops: dx += g(dy, v) with v the input (use_y == 0) or the output. */
static stx_status unary_bwd(stx_op_ctx *c, int use_y, const bw_kernel *k2,
                            stx_status (*params)(stx_op_ctx *, ew_args *)) {
    stx_tensor *g = c->din[0], *dy = c->dout[0];
    if (!g || !dy) return STX_OK;
    bw_kernel k = NULL;
    stx_status st = bw_pick(c, g, k2, &k);
    if (st) return st;
    const stx_tensor *v = use_y ? c->out[0] : c->in[0];
    if ((st = bw_need(c, v, use_y ? "output" : "input", 0))) return st;
    ew_args a = {0};
    if (params && (st = params(c, &a))) return st;
    const stx_tensor *ops[2] = {dy, v};
    bw_run(ops, 2, dy, g, k, &a);
    return STX_OK;
}

#define UNARY_BWD(name, USE_Y, kern, PARAMS)                                                       \
    static stx_status name(stx_op_ctx *c) {                                                        \
        static const bw_kernel k_[2] = BW_PAIR(kern);                                              \
        return unary_bwd(c, USE_Y, k_, PARAMS);                                                    \
    }
UNARY_BWD(relu_bwd, 1, relu_b, NULL)
UNARY_BWD(leaky_bwd, 0, leaky_b, p_leaky)
UNARY_BWD(sigmoid_bwd, 1, sigmoid_b, NULL)
UNARY_BWD(tanh_bwd, 1, tanh_b, NULL)
UNARY_BWD(erf_bwd, 0, erf_b, NULL)
UNARY_BWD(gelu_bwd, 0, gelu_b, p_gelu)
UNARY_BWD(softplus_bwd, 1, softplus_b, NULL)
UNARY_BWD(sqrt_bwd, 1, sqrt_b, NULL)
UNARY_BWD(exp_bwd, 1, exp_b, NULL)
UNARY_BWD(log_bwd, 0, log_b, NULL)
UNARY_BWD(recip_bwd, 1, recip_b, NULL)
UNARY_BWD(abs_bwd, 0, abs_b, NULL)
UNARY_BWD(elu_bwd, 0, elu_b, p_elu)
UNARY_BWD(selu_bwd, 0, selu_b, p_selu)
UNARY_BWD(celu_bwd, 0, celu_b, p_celu)
UNARY_BWD(hsig_bwd, 1, hsig_b, p_hsig)
UNARY_BWD(hswish_bwd, 0, hswish_b, NULL)
UNARY_BWD(softsign_bwd, 0, softsign_b, NULL)

/* Clip: x, and the bounds when they are inputs whose gradient is asked for (they reduce to
 * their single element). Bounds come from the inputs (opset 11+) or attributes. */
static stx_status clip_bwd(stx_op_ctx *c) {
    static const bw_kernel kx[2] = BW_PAIR(clip_bx), klo[2] = BW_PAIR(clip_blo),
                           khi[2] = BW_PAIR(clip_bhi);
    stx_tensor *dy = c->dout[0];
    if (!dy) return STX_OK;
    stx_status st = bw_need(c, c->in[0], "input", 0);
    for (int i = 1; i < c->n_in && i < 3 && !st; i++)
        if (c->in[i]) st = bw_need(c, c->in[i], "input", i);
    if (st) return st;
    ew_args a = {0};
    if ((st = p_clip(c, &a))) return st;
    a.alpha = a.flo;
    a.beta = a.fhi;
    const stx_tensor *ops[2] = {dy, c->in[0]};
    for (int t = 0; t < c->n_in && t < 3; t++) {
        stx_tensor *g = c->din[t];
        if (!g) continue;
        bw_kernel k = NULL;
        if ((st = bw_pick(c, g, t == 0 ? kx : t == 1 ? klo : khi, &k))) return st;
        bw_run(ops, 2, dy, g, k, &a);
    }
    return STX_OK;
}

/* Binary ops with operands (dy, in0, in1): din_t += R_t(k_t(dy, in0, in1)). */
static stx_status binary_bwd(stx_op_ctx *c, const bw_kernel *ka, const bw_kernel *kb,
                             const ew_args *a) {
    stx_tensor *dy = c->dout[0];
    if (!dy) return STX_OK;
    const stx_tensor *ops[3] = {dy, c->in[0], c->in[1]};
    for (int t = 0; t < 2; t++) {
        stx_tensor *g = c->din[t];
        if (!g) continue;
        bw_kernel k = NULL;
        stx_status st = bw_pick(c, g, t ? kb : ka, &k);
        if (!st) st = bw_need(c, c->in[0], "input", 0);
        if (!st) st = bw_need(c, c->in[1], "input", 1);
        if (st) return st;
        bw_run(ops, 3, dy, g, k, a);
    }
    return STX_OK;
}

#define BINARY_BWD(name, ka, kb)                                                                   \
    static stx_status name(stx_op_ctx *c) {                                                        \
        static const bw_kernel a_[2] = BW_PAIR(ka), b_[2] = BW_PAIR(kb);                           \
        ew_args a = {0};                                                                           \
        return binary_bwd(c, a_, b_, &a);                                                          \
    }
BINARY_BWD(mul_bwd, mul_ba, mul_bb)
BINARY_BWD(div_bwd, div_ba, div_bb)
BINARY_BWD(prelu_bwd, prelu_bx, prelu_bs)

static stx_status add_bwd(stx_op_ctx *c) {
    return linear_bwd(c, 2, 1, 1); /* da = R_a(dy), db = R_b(dy) */
}
static stx_status sub_bwd(stx_op_ctx *c) {
    return linear_bwd(c, 2, 1, -1); /* da = R_a(dy), db = -R_b(dy) */
}
static stx_status neg_bwd(stx_op_ctx *c) {
    return linear_bwd(c, 1, -1, 0); /* dx = -dy */
}
static stx_status sum_bwd(stx_op_ctx *c) {
    return linear_bwd(c, c->n_in, 1, 1); /* dx_k = R_k(dy) */
}
static stx_status mean_bwd(stx_op_ctx *c) {
    return linear_bwd(c, c->n_in, 1.0 / c->n_in, 1.0 / c->n_in); /* dx_k = R_k(dy) / n */
}
/* Identity, Dropout (inference: identity; ratio and training_mode get nothing), Cast and
 * CastLike between float types (the gradient is cast back; target_type gets nothing). */
static stx_status identity_bwd(stx_op_ctx *c) {
    return linear_bwd(c, 1, 1, 0);
}

/* Pow: same float types use the typed kernels (x^2 with a constant scalar 2: da = 2 a dy);
 * otherwise the double-precision mixed kernel. Integer operands have no gradient. */
static stx_status pow_bwd(stx_op_ctx *c) {
    static const bw_kernel ka[2] = BW_PAIR(pow_ba), kb[2] = BW_PAIR(pow_bb),
                           ksq[2] = BW_PAIR(sq_ba);
    stx_tensor *dy = c->dout[0];
    if (!dy) return STX_OK;
    stx_status st = bw_need(c, c->in[0], "input", 0);
    if (!st) st = bw_need(c, c->in[1], "input", 1);
    if (st) return st;
    const stx_tensor *x = c->in[0], *e = c->in[1];
    ew_args a = {.slot_a = ew_slot(x->dtype), .slot_b = ew_slot(e->dtype)};
    if (a.slot_a == a.slot_b) {
        const bool sq = stx__numel(e->dims, e->rank) == 1 && ld_f(e->data, 0, a.slot_b) == 2;
        return binary_bwd(c, sq ? ksq : ka, kb, &a);
    }
    const stx_tensor *ops[3] = {dy, x, e};
    for (int t = 0; t < 2; t++) {
        stx_tensor *g = c->din[t];
        if (!g) continue;
        bw_kernel k = NULL;
        if ((st = bw_pick(c, g, ka, &k))) return st; /* checks the dtype */
        a.mode = t;
        bw_run(ops, 3, dy, g, pow_b_mixed, &a);
    }
    return STX_OK;
}

/* Max/Min: one input passes dy through; two use the vectorised pair kernels; more the general
 * tie-counting kernel. Every input is read, so none may be missing (bwd_in holds 32 bits). */
static stx_status extremum_bwd(stx_op_ctx *c, int is_min) {
    static const bw_kernel pa[2][2] = {BW_PAIR(max_ba), BW_PAIR(min_ba)},
                           pb[2][2] = {BW_PAIR(max_bb), BW_PAIR(min_bb)},
                           kn[2] = BW_PAIR(extremum_b);
    stx_tensor *dy = c->dout[0];
    const int n = c->n_in;
    if (!dy) return STX_OK;
    if (n == 1) return linear_bwd(c, 1, 1, 0);
    if (n == 2) {
        ew_args a = {0};
        return binary_bwd(c, pa[is_min], pb[is_min], &a);
    }
    if (n + 1 > BW_MAXOP)
        return stx__node_err(c, STX_E_UNSUPPORTED, "backward supports up to %d inputs",
                             BW_MAXOP - 1);
    const stx_tensor *ops[BW_MAXOP];
    ops[0] = dy;
    for (int j = 0; j < n; j++) {
        stx_status st = bw_need(c, c->in[j], "input", j);
        if (st) return st;
        ops[1 + j] = c->in[j];
    }
    for (int t = 0; t < n; t++) {
        stx_tensor *g = c->din[t];
        if (!g) continue;
        bw_kernel k = NULL;
        stx_status st = bw_pick(c, g, kn, &k);
        if (st) return st;
        ew_args a = {.mode = is_min, .k = t, .n = n};
        bw_run(ops, n + 1, dy, g, k, &a);
    }
    return STX_OK;
}
static stx_status max_bwd(stx_op_ctx *c) {
    return extremum_bwd(c, 0);
}
static stx_status min_bwd(stx_op_ctx *c) {
    return extremum_bwd(c, 1);
}

/* Where: dX = R_X(dy [cond]), dY = R_Y(dy [!cond]); the bool condition gets nothing. */
static stx_status where_bwd(stx_op_ctx *c) {
    static const bw_kernel kw[2] = BW_PAIR(where_b);
    stx_tensor *dy = c->dout[0];
    if (!dy) return STX_OK;
    stx_status st = bw_need(c, c->in[0], "input", 0);
    if (st) return st;
    const stx_tensor *ops[2] = {dy, c->in[0]};
    for (int t = 1; t < 3; t++) {
        stx_tensor *g = c->din[t];
        if (!g) continue;
        bw_kernel k = NULL;
        if ((st = bw_pick(c, g, kw, &k))) return st;
        ew_args a = {.mode = t - 1};
        bw_run(ops, 2, dy, g, k, &a);
    }
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Op tables and definitions.
 */
static const char *const no_attrs[] = {NULL};
static const char *const alpha_attrs[] = {"alpha", NULL};
static const char *const selu_attrs[] = {"alpha", "gamma", NULL};
static const char *const hsig_attrs[] = {"alpha", "beta", NULL};
static const char *const gelu_attrs[] = {"approximate", NULL};
static const char *const clip_attrs[] = {"min", "max", NULL};
static const char *const cast_attrs[] = {"to", NULL};
static const char *const dropout_attrs[] = {"ratio", "seed", "is_test", NULL};

/* BWD: (backward, bwd_in, bwd_out), or NO_BW for ops without a gradient: integer/bool outputs,
 * and Floor, Ceil, Sign whose gradient is zero almost everywhere (they stop gradients rather
 * than propagate zeros: the same result without zeroed gradient buffers upstream). */
#define EW_BWD_FIELDS(FN, IN, OUT) .backward = FN, .bwd_in = IN, .bwd_out = OUT
#define NO_BW (NULL, 0, 0)
#define EW_DEF(var, NAME, MIN_IN, MAX_IN, MAX_OUT, ATTRS, CHECK, INFER, FWD, BWD)                  \
    static const stx_op_def var = {.name = NAME,                                                   \
                                   .min_in = MIN_IN,                                               \
                                   .max_in = MAX_IN,                                               \
                                   .min_out = 1,                                                   \
                                   .max_out = MAX_OUT,                                             \
                                   .attrs = ATTRS,                                                 \
                                   .check = CHECK,                                                 \
                                   .infer = INFER,                                                 \
                                   .forward = FWD,                                                 \
                                   EW_BWD_FIELDS BWD};

/* An op driven by an ew_op table through one of the shared infer/forward pairs. */
#define EW_TABLE_OP(var, NAME, MIN_IN, MAX_IN, ATTRS, CHECK, KIND, BWD, ...)                       \
    static const ew_op var##_tab = {__VA_ARGS__};                                                  \
    static stx_status var##_infer(stx_op_ctx *c) {                                                 \
        return KIND##_infer(c, &var##_tab);                                                        \
    }                                                                                              \
    static stx_status var##_fwd(stx_op_ctx *c) {                                                   \
        return KIND##_forward(c, &var##_tab);                                                      \
    }                                                                                              \
    EW_DEF(var, NAME, MIN_IN, MAX_IN, 1, ATTRS, CHECK, var##_infer, var##_fwd, BWD)

#define UNARY_F(var, NAME, ATTRS, p, PARAMS, BWD)                                                  \
    EW_TABLE_OP(var, NAME, 1, 1, ATTRS, NULL, unary, BWD, .k = {TAB_FLOAT(p)}, .params = PARAMS)

static stx_status gelu_check(const stx_node *n, stx_err *e) {
    const char *s = stx__attr_str(n, "approximate", "none");
    if (strcmp(s, "none") != 0 && strcmp(s, "tanh") != 0)
        return stx__node_err_n(n, e, STX_E_UNSUPPORTED,
                               "approximate='%s' is not supported (expected 'none' or 'tanh')", s);
    return STX_OK;
}

UNARY_F(op_sigmoid, "Sigmoid", no_attrs, sigmoid_k, NULL, (sigmoid_bwd, 0, 1))
UNARY_F(op_tanh, "Tanh", no_attrs, tanh_k, NULL, (tanh_bwd, 0, 1))
UNARY_F(op_erf, "Erf", no_attrs, erf_k, NULL, (erf_bwd, 1, 0))
UNARY_F(op_softplus, "Softplus", no_attrs, softplus_k, NULL, (softplus_bwd, 0, 1))
UNARY_F(op_sqrt, "Sqrt", no_attrs, sqrt_k, NULL, (sqrt_bwd, 0, 1))
UNARY_F(op_exp, "Exp", no_attrs, exp_k, NULL, (exp_bwd, 0, 1))
UNARY_F(op_log, "Log", no_attrs, log_k, NULL, (log_bwd, 1, 0))
UNARY_F(op_recip, "Reciprocal", no_attrs, recip_k, NULL, (recip_bwd, 0, 1))
UNARY_F(op_floor, "Floor", no_attrs, floor_k, NULL, NO_BW)
UNARY_F(op_ceil, "Ceil", no_attrs, ceil_k, NULL, NO_BW)
UNARY_F(op_leaky, "LeakyRelu", alpha_attrs, leaky_k, p_leaky, (leaky_bwd, 1, 0))
UNARY_F(op_elu, "Elu", alpha_attrs, elu_k, p_elu, (elu_bwd, 1, 0))
UNARY_F(op_celu, "Celu", alpha_attrs, celu_k, p_celu, (celu_bwd, 1, 0))
UNARY_F(op_selu, "Selu", selu_attrs, selu_k, p_selu, (selu_bwd, 1, 0))
UNARY_F(op_hsig, "HardSigmoid", hsig_attrs, hsig_k, p_hsig, (hsig_bwd, 0, 1))
UNARY_F(op_hswish, "HardSwish", no_attrs, hswish_k, NULL, (hswish_bwd, 1, 0))
UNARY_F(op_softsign, "Softsign", no_attrs, softsign_k, NULL, (softsign_bwd, 1, 0))
EW_TABLE_OP(op_gelu, "Gelu", 1, 1, gelu_attrs, gelu_check, unary, (gelu_bwd, 1, 0),
            .k = {TAB_FLOAT(gelu_k)}, .params = p_gelu)
EW_TABLE_OP(op_relu, "Relu", 1, 1, no_attrs, NULL, unary, (relu_bwd, 0, 1),
            .k = {TAB_FLOAT(relu_k), TAB_SINT(relu_k)})
EW_TABLE_OP(op_neg, "Neg", 1, 1, no_attrs, NULL, unary, (neg_bwd, 0, 0),
            .k = {TAB_FLOAT(neg_k), TAB_SINT(neg_k)})
EW_TABLE_OP(op_abs, "Abs", 1, 1, no_attrs, NULL, unary, (abs_bwd, 1, 0), .k = {TAB_NUM(abs_k)})
EW_TABLE_OP(op_sign, "Sign", 1, 1, no_attrs, NULL, unary, NO_BW, .k = {TAB_NUM(sign_k)})
EW_TABLE_OP(op_not, "Not", 1, 1, no_attrs, NULL, unary, NO_BW, .k = {[S_BOOL] = not_k_b},
            .out_bool = true)

/* Clip: bounds must be one-element tensors of the input's dtype. */
static const ew_op clip_tab = {.k = {TAB_NUM(clip_k)}, .params = p_clip};
static stx_status clip_infer(stx_op_ctx *c) {
    stx_status st = unary_infer(c, &clip_tab);
    if (st) return st;
    for (int i = 1; i < c->n_in && i < 3; i++) {
        const stx_tensor *b = c->in[i];
        if (!b) continue;
        if (b->dtype != c->in[0]->dtype)
            return stx__node_err(c, STX_E_INVALID, "%s has dtype %s but the input has %s",
                                 i == 1 ? "min" : "max", stx_dtype_name(b->dtype),
                                 stx_dtype_name(c->in[0]->dtype));
        if (stx__numel(b->dims, b->rank) != 1) {
            char sb[128];
            return stx__node_err(c, STX_E_SHAPE, "%s must be a scalar, got shape %s",
                                 i == 1 ? "min" : "max",
                                 stx__shape_str(b->dims, b->rank, sb, sizeof sb));
        }
    }
    return STX_OK;
}
static stx_status clip_fwd(stx_op_ctx *c) {
    return unary_forward(c, &clip_tab);
}
EW_DEF(op_clip, "Clip", 1, 3, 1, clip_attrs, NULL, clip_infer, clip_fwd, (clip_bwd, 7, 0))

/* Binary arithmetic, comparisons, logic. */
#define BINARY(var, NAME, BWD, ...)                                                                \
    EW_TABLE_OP(var, NAME, 2, 2, no_attrs, NULL, binary, BWD, __VA_ARGS__)
BINARY(op_add, "Add", (add_bwd, 0, 0), .k = {TAB_NUM(add_k)})
BINARY(op_sub, "Sub", (sub_bwd, 0, 0), .k = {TAB_NUM(sub_k)})
BINARY(op_mul, "Mul", (mul_bwd, 3, 0), .k = {TAB_NUM(mul_k)})
BINARY(op_div, "Div", (div_bwd, 3, 0), .k = {TAB_NUM(div_k)})
BINARY(op_equal, "Equal", NO_BW, .k = {TAB_NUM(eq_k), [S_BOOL] = eq_k_b}, .out_bool = true)
BINARY(op_less, "Less", NO_BW, .k = {TAB_NUM(lt_k)}, .out_bool = true)
BINARY(op_greater, "Greater", NO_BW, .k = {TAB_NUM(gt_k)}, .out_bool = true)
BINARY(op_le, "LessOrEqual", NO_BW, .k = {TAB_NUM(le_k)}, .out_bool = true)
BINARY(op_ge, "GreaterOrEqual", NO_BW, .k = {TAB_NUM(ge_k)}, .out_bool = true)
BINARY(op_and, "And", NO_BW, .k = {[S_BOOL] = and_k_b}, .out_bool = true)
BINARY(op_or, "Or", NO_BW, .k = {[S_BOOL] = or_k_b}, .out_bool = true)
BINARY(op_xor, "Xor", NO_BW, .k = {[S_BOOL] = xor_k_b}, .out_bool = true)

/* Variadic. Sum and Mean are defined on floating types only by the spec. */
#define VARIADIC(var, NAME, BWD, ...)                                                              \
    EW_TABLE_OP(var, NAME, 1, 64, no_attrs, NULL, variadic, BWD, __VA_ARGS__)
VARIADIC(op_max, "Max", (max_bwd, 0xffffffffu, 0), .k = {TAB_NUM(max_k)})
VARIADIC(op_min, "Min", (min_bwd, 0xffffffffu, 0), .k = {TAB_NUM(min_k)})
VARIADIC(op_sum, "Sum", (sum_bwd, 0, 0), .k = {TAB_FLOAT(add_k)})

static const ew_op mean_tab = {.k = {TAB_FLOAT(add_k)}};
static const ew_kernel divn_tab[S_N] = {TAB_FLOAT(divn_k)};
static stx_status mean_infer(stx_op_ctx *c) {
    return variadic_infer(c, &mean_tab);
}
static stx_status mean_fwd(stx_op_ctx *c) {
    stx_status st = variadic_forward(c, &mean_tab);
    if (st || !c->out[0]) return st;
    ew_args a = {.alpha = c->n_in};
    stx_tensor *y = c->out[0];
    ew_run(&y, 1, y, divn_tab[ew_slot(y->dtype)], &a);
    return STX_OK;
}
EW_DEF(op_mean, "Mean", 1, 64, 1, no_attrs, NULL, mean_infer, mean_fwd, (mean_bwd, 0, 0))

/* PRelu: slope broadcasts unidirectionally to X; output has X's shape. */
static const ew_op prelu_tab = {.k = {TAB_FLOAT(prelu_k), TAB_SINT(prelu_k)}};
static stx_status prelu_infer(stx_op_ctx *c) {
    int64_t dims[STX_MAX_RANK];
    int r;
    stx_status st = bcast_infer(c, 2, false, dims, &r);
    if (st) return st;
    const stx_tensor *x = c->in[0], *sl = c->in[1];
    int s = ew_slot(x->dtype);
    if (s < 0 || !prelu_tab.k[s]) return bad_dtype(c, "input", x->dtype, prelu_tab.k);
    if (r != x->rank || memcmp(dims, x->dims, sizeof(int64_t) * (size_t)r) != 0) {
        char sa[128], sb[128];
        return stx__node_err(c, STX_E_SHAPE, "slope shape %s does not broadcast to input shape %s",
                             stx__shape_str(sl->dims, sl->rank, sb, sizeof sb),
                             stx__shape_str(x->dims, x->rank, sa, sizeof sa));
    }
    stx__set_out(c, 0, x->dtype, x->dims, x->rank);
    return STX_OK;
}
static stx_status prelu_fwd(stx_op_ctx *c) {
    return binary_forward(c, &prelu_tab);
}
EW_DEF(op_prelu, "PRelu", 2, 2, 1, no_attrs, NULL, prelu_infer, prelu_fwd, (prelu_bwd, 3, 0))

/* Pow(X: T, Y: T1) -> T. */
static const ew_kernel pow_base_ok[S_N] = {
    TAB_FLOAT(pow_k), [S_I64] = pow_k_i64, [S_I32] = pow_k_i32};
static stx_status pow_infer(stx_op_ctx *c) {
    int64_t dims[STX_MAX_RANK];
    int r;
    stx_status st = bcast_infer(c, 2, true, dims, &r);
    if (st) return st;
    const stx_tensor *a = c->in[0], *b = c->in[1];
    int sa = ew_slot(a->dtype), sb = ew_slot(b->dtype);
    if (sa < 0 || !pow_base_ok[sa]) return bad_dtype(c, "base", a->dtype, pow_base_ok);
    if (sb < 0 || sb == S_BOOL)
        return stx__node_err(c, STX_E_UNSUPPORTED, "exponent has unsupported dtype %s",
                             stx_dtype_name(b->dtype));
    stx__set_out(c, 0, a->dtype, dims, r);
    return STX_OK;
}
static stx_status pow_fwd(stx_op_ctx *c) {
    if (!c->out[0]) return STX_OK;
    stx_tensor *ins[2] = {c->in[0], c->in[1]};
    ew_args a = {.slot_a = ew_slot(ins[0]->dtype), .slot_b = ew_slot(ins[1]->dtype)};
    ew_kernel k = a.slot_a == a.slot_b ? pow_base_ok[a.slot_a] : pow_k_mixed;
    ew_run(ins, 2, c->out[0], k, &a);
    return STX_OK;
}
EW_DEF(op_pow, "Pow", 2, 2, 1, no_attrs, NULL, pow_infer, pow_fwd, (pow_bwd, 3, 0))

/* Where(condition: bool, X: T, Y: T), all three broadcast. */
static stx_status where_infer(stx_op_ctx *c) {
    int64_t dims[STX_MAX_RANK];
    int r;
    stx_status st = bcast_infer(c, 3, true, dims, &r);
    if (st) return st;
    if (c->in[0]->dtype != STX_DTYPE_BOOL)
        return stx__node_err(c, STX_E_INVALID, "condition has dtype %s, expected bool",
                             stx_dtype_name(c->in[0]->dtype));
    if (c->in[1]->dtype != c->in[2]->dtype)
        return stx__node_err(c, STX_E_INVALID, "X has dtype %s but Y has %s",
                             stx_dtype_name(c->in[1]->dtype), stx_dtype_name(c->in[2]->dtype));
    if (ew_slot(c->in[1]->dtype) < 0)
        return stx__node_err(c, STX_E_UNSUPPORTED, "dtype %s is not supported",
                             stx_dtype_name(c->in[1]->dtype));
    stx__set_out(c, 0, c->in[1]->dtype, dims, r);
    return STX_OK;
}
static stx_status where_fwd(stx_op_ctx *c) {
    stx_tensor *y = c->out[0];
    if (!y) return STX_OK;
    stx_tensor *ins[3] = {c->in[0], c->in[1], c->in[2]};
    size_t es = stx_dtype_size(y->dtype);
    ew_kernel k = es == 8 ? where_8 : es == 4 ? where_4 : where_1;
    ew_args a = {0};
    ew_run(ins, 3, y, k, &a);
    return STX_OK;
}
EW_DEF(op_where, "Where", 3, 3, 1, no_attrs, NULL, where_infer, where_fwd, (where_bwd, 1, 0))

/* Cast: 'to' is an int (TensorProto.DataType) since opset 6, a type-name string before. */
static int cast_target(const stx_node *n, int64_t *code) {
    const stx_attr *a = stx__attr(n, "to");
    *code = -1;
    if (!a) return -1;
    if (a->type == STX_ATTR_STRING && a->s) {
        static const struct {
            const char *name;
            int code;
        } names[] = {{"FLOAT", 1},   {"UINT8", 2},    {"INT8", 3},    {"UINT16", 4},
                     {"INT16", 5},   {"INT32", 6},    {"INT64", 7},   {"STRING", 8},
                     {"BOOL", 9},    {"FLOAT16", 10}, {"DOUBLE", 11}, {"UINT32", 12},
                     {"UINT64", 13}, {"BFLOAT16", 16}};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strcmp(a->s, names[i].name) == 0) *code = names[i].code;
    } else if (a->type == STX_ATTR_INT) {
        *code = a->i;
    }
    if (*code < 0 || *code > 100) return -1;
    return ew_slot((stx_dtype)*code);
}

static stx_status cast_check(const stx_node *n, stx_err *e) {
    int64_t code;
    if (!stx__attr(n, "to"))
        return stx__node_err_n(n, e, STX_E_INVALID, "missing required attribute 'to'");
    if (cast_target(n, &code) < 0)
        return stx__node_err_n(n, e, STX_E_UNSUPPORTED,
                               "cast to %s (to=%lld) is not supported; stx handles float32, "
                               "float64, int64, int32, int8, uint8 and bool",
                               onnx_type_name(code), (long long)code);
    return STX_OK;
}

static stx_status cast_common_infer(stx_op_ctx *c, int dst) {
    stx_status st = need_input(c, 0);
    if (st) return st;
    const stx_tensor *x = c->in[0];
    if (ew_slot(x->dtype) < 0)
        return stx__node_err(c, STX_E_UNSUPPORTED,
                             "cast from %s is not supported; stx handles float32, float64, int64, "
                             "int32, int8, uint8 and bool",
                             stx_dtype_name(x->dtype));
    stx__set_out(c, 0, slot_dtype[dst], x->dims, x->rank);
    return STX_OK;
}

static stx_status cast_common_fwd(stx_op_ctx *c) {
    stx_tensor *x = c->in[0], *y = c->out[0];
    if (!y) return STX_OK;
    ew_args a = {0};
    ew_run(&x, 1, y, cast_tab[ew_slot(x->dtype)][ew_slot(y->dtype)], &a);
    return STX_OK;
}

static stx_status cast_infer(stx_op_ctx *c) {
    int64_t code;
    int dst = cast_target(c->node, &code);
    if (dst < 0) return cast_check(c->node, c->err);
    return cast_common_infer(c, dst);
}
EW_DEF(op_cast, "Cast", 1, 1, 1, cast_attrs, cast_check, cast_infer, cast_common_fwd,
       (identity_bwd, 0, 0))

/* CastLike(input, target_type): the output takes target_type's dtype. */
static stx_status castlike_infer(stx_op_ctx *c) {
    stx_status st = need_input(c, 1);
    if (st) return st;
    int dst = ew_slot(c->in[1]->dtype);
    if (dst < 0)
        return stx__node_err(c, STX_E_UNSUPPORTED, "cast to %s is not supported",
                             stx_dtype_name(c->in[1]->dtype));
    return cast_common_infer(c, dst);
}
EW_DEF(op_castlike, "CastLike", 2, 2, 1, no_attrs, NULL, castlike_infer, cast_common_fwd,
       (identity_bwd, 0, 0))

/* Identity: a copy of any supported dtype. */
static stx_status identity_infer(stx_op_ctx *c) {
    stx_status st = need_input(c, 0);
    if (st) return st;
    const stx_tensor *x = c->in[0];
    if (ew_slot(x->dtype) < 0)
        return stx__node_err(c, STX_E_UNSUPPORTED, "dtype %s is not supported",
                             stx_dtype_name(x->dtype));
    stx__set_out(c, 0, x->dtype, x->dims, x->rank);
    return STX_OK;
}
static stx_status identity_fwd(stx_op_ctx *c) {
    stx_tensor *x = c->in[0], *y = c->out[0];
    if (!y) return STX_OK;
    ew_args a = {0};
    ew_run(&x, 1, y, copy_kernel(x->dtype), &a);
    return STX_OK;
}
EW_DEF(op_identity, "Identity", 1, 1, 1, no_attrs, NULL, identity_infer, identity_fwd,
       (identity_bwd, 0, 0))

/* Dropout at inference: output = input and mask = all true. Since opset 12 `ratio` and
 * `training_mode` are inputs. training_mode = true with a non-zero ratio would need random
 * masking, which an explanation pass must not do, so it is refused; with ratio 0 training-mode
 * dropout is the identity too (spec: "If the ratio is 0, the output is the input"). Before
 * opset 12 ratio is an attribute and (up to opset 6) is_test too; both are accepted and
 * ignored. The mask is bool since opset 10 and of the input type before.
 *
 * Inputs not known yet (plan time, non-constant) are assumed fine and checked at run time. */
static stx_status dropout_mode(stx_op_ctx *c) {
    if (c->n_in < 3 || !c->in[2] || !c->in[2]->data) return STX_OK;
    const stx_tensor *t = c->in[2];
    if (t->dtype != STX_DTYPE_BOOL || stx__numel(t->dims, t->rank) != 1)
        return stx__node_err(c, STX_E_INVALID, "training_mode must be a bool scalar");
    if (((const uint8_t *)t->data)[0] == 0) return STX_OK;
    double ratio = 0.5;
    const stx_tensor *r = c->in[1];
    if (r) {
        int s = ew_slot(r->dtype);
        if ((s != S_F32 && s != S_F64) || stx__numel(r->dims, r->rank) != 1)
            return stx__node_err(c, STX_E_INVALID, "ratio must be a floating-point scalar");
        if (!r->data) return STX_OK;
        ratio = ld_f(r->data, 0, s);
    }
    if (ratio == 0) return STX_OK;
    return stx__node_err(c, STX_E_UNSUPPORTED,
                         "training_mode=true with ratio %g (random dropout) is not supported; "
                         "export the model in eval mode",
                         ratio);
}

static stx_status dropout_infer(stx_op_ctx *c) {
    stx_status st = identity_infer(c);
    if (st) return st;
    if ((st = dropout_mode(c))) return st;
    const stx_tensor *x = c->in[0];
    if (c->n_out > 1)
        stx__set_out(c, 1, c->opset >= 10 ? STX_DTYPE_BOOL : x->dtype, x->dims, x->rank);
    return STX_OK;
}

static stx_status dropout_fwd(stx_op_ctx *c) {
    stx_status st = dropout_mode(c);
    if (st) return st;
    if ((st = identity_fwd(c))) return st;
    if (c->n_out > 1 && c->out[1]) {
        ew_args a = {0};
        stx_tensor *m = c->out[1];
        ew_run(&m, 1, m, ones_tab[ew_slot(m->dtype)], &a);
    }
    return STX_OK;
}
EW_DEF(op_dropout, "Dropout", 1, 3, 2, dropout_attrs, NULL, dropout_infer, dropout_fwd,
       (identity_bwd, 0, 0))

const stx_op_def *const stx__ops_elementwise[] = {
    &op_relu,     &op_leaky,   &op_sigmoid,  &op_tanh,     &op_clip,    &op_erf,    &op_gelu,
    &op_softplus, &op_elu,     &op_selu,     &op_celu,     &op_hsig,    &op_hswish, &op_softsign,
    &op_prelu,    &op_add,     &op_sub,      &op_mul,      &op_div,     &op_pow,    &op_sqrt,
    &op_exp,      &op_log,     &op_neg,      &op_abs,      &op_sign,    &op_recip,  &op_floor,
    &op_ceil,     &op_max,     &op_min,      &op_sum,      &op_mean,    &op_where,  &op_equal,
    &op_less,     &op_greater, &op_le,       &op_ge,       &op_not,     &op_and,    &op_or,
    &op_xor,      &op_cast,    &op_castlike, &op_identity, &op_dropout, NULL};
