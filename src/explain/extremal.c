/* extremal.c: spatio-temporal extremal perturbation, preserve variant (Fong et al., ICCV 2019;
 * Li et al., WACV 2021 "STEP" and TCSVT 2021; definitions: docs/perturbation.md "Extremal
 * perturbation", shared/docs/methods.md §4.7).
 *
 * One mask per area a, per frame t a smooth mask m_t made from free parameters p (one gh x gw
 * plane per input frame, a parameter every `step` = 7 pixels, centre (7 i, 7 j)):
 *
 *   v_q = k(|u - c_q| / sigma) p_q,   k(z) = exp(-2 max(z - 1/2, 0)^2)
 *   m(u) = sum_q v_q e^{20 v_q} / sum_q e^{20 v_q}            (soft-max pooling, coldness 20)
 *
 * over the (2r + 1)^2 parameters q around pixel u (r = 1 + ceil(sigma / step), the window centred
 * on the nearest centre; parameters outside the grid are left out). As in TorchRay the mask
 * covers the frame plus a margin of M = round(sigma) pixels on every side, and the area and core
 * terms see that padded volume: border parameters are then pushed towards 0 by as many pixels as
 * inner ones (on the frame alone they lag behind and the optimum ends up in the corners). The
 * perturbed clip keeps frame t where m_t is 1 and blurs it where m_t is 0: Phi(x, m) blends the
 * two neighbouring levels of a blur pyramid of L = 8 levels (level l blurred with sigma_l =
 * (1 - l / 7) max_blur, level 7 the frame itself) at w = 7 m, linearly in w.
 *
 *   E = lambda_r (-1/F sum_f log softmax(z_f(Phi(x, m)))_c)        reward (F frames scored)
 *     + lambda_a mean_i (sort(m)_i - r_i)^2                       area: the last ceil(a T H W)
 *                                                                 of the padded volume's r are 1
 *     + lambda_c [mean_top K (R - 1)^2 + mean_rest R^2]           STEP's core term
 *
 * with R the responses of a binary ellipsoid (n_kf x ks x ks) slid over the padded mask volume at
 * stride (1, ks, ks), divided by the ellipsoid's size, sorted. E is minimised by SGD with momentum
 * 0.9, dampening 0.9 and learning rate 0.05 (PyTorch's SGD; the first step takes the plain
 * gradient), parameters clamped to [0, 1] after each step, starting from p = 1. All areas run
 * together, one batch row each; the gradient of the reward with respect to the model input comes
 * from the reverse-mode engine (seeded with d E / d z), and the rest of the chain (blend, pyramid
 * selection, soft-max pooling, sort) is differentiated here by hand.
 *
 * Sorting ties: elements whose values agree within 1e-12 form one group, and every member gets
 * the group's average target (the symmetric subgradient), so the gradient does not depend on
 * the order in which equal values are visited.
 */
#include "explain.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EXT_LEVELS 8
#define EXT_COLD 20.0
#define EXT_LR 0.05
#define EXT_MOMENTUM 0.9
#define EXT_DAMPENING 0.9
#define EXT_LAMBDA_R 1.0
#define EXT_LAMBDA_A 300.0
#define EXT_LAMBDA_C 300.0
#define EXT_TIE 1e-12
#define EXT_EXP_STEPS 256 /* table entries per unit of the exponent */

/* A sort key: the value's order-preserving bit pattern and its index. */
typedef struct ext_key {
    uint64_t k;
    int64_t i;
} ext_key;

struct stx_extremal {
    stx_context *ctx;
    stx_session *sess; /* batch A, gradient with respect to the input */
    stx_tensor *xb;    /* (A, ...) perturbed clips */
    stx_tensor *seedw; /* d E_reward / d output, shaped like the output */
    int out_index, A, steps;
    double areas[STX_EXTREMAL_MAX_AREAS];
    int64_t T, C, H, W, HW, THW, sample_numel;
    /* the mask's domain: the frame and a margin of M pixels on every side */
    int64_t M, Hp, Wp, HWp, THWp;
    int tax;
    /* mask generator */
    int step, r, gh, gw, kd; /* kd: half-width of the kernel table */
    double sigma;
    int64_t P; /* parameters per area: T gh gw */
    double *ktab;
    double *etab; /* e^{j / EXT_EXP_STEPS}, j = 0 .. 20 EXT_EXP_STEPS + 1 */
    /* blur pyramid: levels 0..6 (level 7 is the clip) */
    double max_blur;
    float *pyr;
    double *gk, *line;
    /* core term */
    int nkf, ks;
    int64_t ct, ch, cw, nr; /* response grid and count */
    int *span; /* the ellipsoid's voxels: row (dt, dy) spans dx in [span[2i], span[2i + 1]) */
    double esum;
    int64_t core_k[STX_EXTREMAL_MAX_AREAS];
    double *resp, *dresp;
    /* optimiser state */
    double *p, *buf, *dp;  /* A * P */
    double *m, *dm, *ssum; /* A * THWp: mask, its gradient, the softmax denominators */
    ext_key *keys, *ktmp;  /* max(THWp, nr) each: the radix sort's two buffers */
    int64_t ones[STX_EXTREMAL_MAX_AREAS]; /* area targets: ceil(a T H W) ones */
    double growth;                        /* lambda_a's factor per step */
    int core_from;                        /* first step with the core term */
};

void stx__extremal_free(stx_extremal *x) {
    if (!x) return;
    stx_context *c = x->ctx;
    stx_session_free(x->sess);
    stx_tensor_free(x->xb);
    stx_tensor_free(x->seedw);
    double *bufs[] = {x->ktab, x->etab, x->gk, x->line, x->resp, x->dresp,
                      x->p,    x->buf,  x->dp, x->m,    x->dm,   x->ssum};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) stx__free(c, bufs[i]);
    stx__free(c, x->pyr);
    stx__free(c, x->span);
    stx__free(c, x->keys);
    stx__free(c, x->ktmp);
    stx__free(c, x);
}

/* Offset of the (channel c, frame t) plane in one sample. */
static int64_t plane(const stx_extremal *x, int64_t c, int64_t t) {
    return x->tax == 2 ? (c * x->T + t) * x->HW : (t * x->C + c) * x->HW;
}

static double *dnew(stx_context *ctx, int64_t n) {
    return stx__calloc(ctx, (size_t)(n > 0 ? n : 1), sizeof(double));
}

/* Is voxel (a, b, c) of a d0 x d1 x d2 box inside the ellipsoid through the box's outer voxel
 * centres? Coordinates are -1 + 2 i / (d - 1) (0 when d = 1), compared in integers (a point on
 * the surface counts as inside). */
static bool in_ellipsoid(const int d[3], const int i[3]) {
    int64_t num = 0, den = 1;
    for (int k = 0; k < 3; k++) den *= d[k] > 1 ? (int64_t)(d[k] - 1) * (d[k] - 1) : 1;
    for (int k = 0; k < 3; k++) {
        if (d[k] <= 1) continue;
        int64_t c = 2 * (int64_t)i[k] - (d[k] - 1), s = (int64_t)(d[k] - 1) * (d[k] - 1);
        num += c * c * (den / s);
    }
    return num <= den;
}

stx_status stx__extremal_create(stx_model *m, const stx_extremal_spec *sp, stx_extremal **out) {
    stx_context *ctx = sp->ctx;
    stx_err *ce = &ctx->err;
    *out = NULL;
    stx_extremal *x = stx__calloc(ctx, 1, sizeof *x);
    if (!x) return stx__errf(ce, STX_E_NOMEM, "out of memory");
    x->ctx = ctx;
    x->A = sp->n_areas;
    x->steps = sp->steps;
    for (int a = 0; a < x->A; a++) x->areas[a] = sp->areas[a];
    x->out_index = sp->out_index;
    x->tax = sp->tax;
    x->T = sp->shape[sp->tax];
    x->C = sp->shape[sp->tax == 2 ? 1 : 2];
    x->H = sp->shape[3];
    x->W = sp->shape[4];
    x->HW = x->H * x->W;
    x->THW = x->T * x->HW;
    x->sample_numel = x->C * x->THW;
    stx_status st;

    /* the session: one row per area, gradient of the seeded output with respect to the input */
    int64_t bshape[STX_MAX_RANK];
    memcpy(bshape, sp->shape, sizeof(int64_t) * 5);
    bshape[0] = x->A;
    const char *wrt[2] = {"input", NULL};
    stx_session_options so = stx_session_options_default();
    so.num_threads = sp->num_threads;
    so.grad_wrt = wrt;
    so.grad_output = sp->out_index;
    st = stx_session_create(m, &so, bshape, 5, &x->sess);
    if (st) goto fail;
    x->xb = stx__tensor_new(ctx, STX_DTYPE_FLOAT, bshape, 5);
    const stx_tensor *y = stx_session_output(x->sess, sp->out_index);
    if (!x->xb || !y) {
        st = stx__errf(ce, STX_E_NOMEM, "out of memory for %d perturbed clips", x->A);
        goto fail;
    }
    x->seedw = stx__tensor_new(ctx, STX_DTYPE_FLOAT, y->dims, y->rank);
    if (!x->seedw) {
        st = stx__errf(ce, STX_E_NOMEM, "out of memory");
        goto fail;
    }

    /* geometry: a parameter every 7 px; sigma 11 px at 112 px (methods.md §4.7), scaled with
     * the frame and never below the step (smooth masks on small frames) */
    double S = (double)(x->H < x->W ? x->H : x->W);
    x->step = 7;
    x->sigma = fmax((double)x->step, 11.0 * S / 112.0);
    x->r = 1 + (int)ceil(x->sigma / x->step);
    x->gh = (int)((x->H + x->step - 1) / x->step);
    x->gw = (int)((x->W + x->step - 1) / x->step);
    x->P = x->T * x->gh * x->gw;
    x->M = lround(x->sigma);
    x->Hp = x->H + 2 * x->M;
    x->Wp = x->W + 2 * x->M;
    x->HWp = x->Hp * x->Wp;
    x->THWp = x->T * x->HWp;
    x->kd = x->r * x->step + x->step / 2 + 1;
    int64_t kn = 2 * (int64_t)x->kd + 1;
    x->ktab = dnew(ctx, kn * kn);
    if (!x->ktab) {
        st = stx__errf(ce, STX_E_NOMEM, "out of memory");
        goto fail;
    }
    for (int dy = -x->kd; dy <= x->kd; dy++)
        for (int dx = -x->kd; dx <= x->kd; dx++) {
            double z = sqrt((double)(dy * dy + dx * dx)) / x->sigma - 0.5;
            z = z > 0 ? z : 0;
            x->ktab[(dy + x->kd) * kn + dx + x->kd] = exp(-2.0 * z * z);
        }

    /* blur pyramid: max_blur 20 px at 112 px, scaled with the frame */
    x->max_blur = 20.0 * S / 112.0;
    int rmax = (int)ceil(3.0 * x->max_blur);
    x->pyr = stx__malloc(ctx, sizeof(float) * (size_t)(EXT_LEVELS - 1) * (size_t)x->sample_numel);
    x->gk = dnew(ctx, 2 * (int64_t)rmax + 1);
    x->line = dnew(ctx, (x->H > x->W ? x->H : x->W) + 2 * (int64_t)rmax);

    /* STEP's core term: an ellipsoid of n_kf = min(7, T) frames by ks x ks pixels (11 at 112 px,
     * scaled, odd), stride (1, ks, ks), no padding */
    x->nkf = x->T < 7 ? (int)x->T : 7;
    x->ks = 2 * (int)floor(11.0 * S / 224.0) + 1;
    if (x->ks > S) x->ks = (int)S;
    x->ct = x->T - x->nkf + 1;
    x->ch = (x->Hp - x->ks) / x->ks + 1;
    x->cw = (x->Wp - x->ks) / x->ks + 1;
    x->nr = x->ct * x->ch * x->cw;
    int64_t en = (int64_t)x->nkf * x->ks * x->ks;
    x->span = stx__calloc(ctx, 2 * (size_t)x->nkf * (size_t)x->ks, sizeof(int));
    x->resp = dnew(ctx, x->nr);
    x->dresp = dnew(ctx, x->nr);
    int64_t AP = x->A * x->P, ATHW = x->A * x->THWp;
    x->p = dnew(ctx, AP);
    x->buf = dnew(ctx, AP);
    x->dp = dnew(ctx, AP);
    x->m = dnew(ctx, ATHW);
    x->dm = dnew(ctx, ATHW);
    x->ssum = dnew(ctx, ATHW);
    int64_t nk = x->THWp > x->nr ? x->THWp : x->nr;
    x->keys = stx__malloc(ctx, sizeof(ext_key) * (size_t)nk);
    x->ktmp = stx__malloc(ctx, sizeof(ext_key) * (size_t)nk);
    int ne = (int)EXT_COLD * EXT_EXP_STEPS + 2;
    x->etab = dnew(ctx, ne);
    if (!x->pyr || !x->gk || !x->line || !x->span || !x->resp || !x->dresp || !x->p || !x->buf ||
        !x->dp || !x->m || !x->dm || !x->ssum || !x->keys || !x->ktmp || !x->etab) {
        st = stx__errf(ce, STX_E_NOMEM, "out of memory for the extremal masks of %d area(s)", x->A);
        goto fail;
    }
    for (int j = 0; j < ne; j++) x->etab[j] = exp((double)j / EXT_EXP_STEPS);
    int d[3] = {x->nkf, x->ks, x->ks}, i3[3];
    x->esum = 0;
    for (i3[0] = 0; i3[0] < d[0]; i3[0]++)
        for (i3[1] = 0; i3[1] < d[1]; i3[1]++)
            for (i3[2] = 0; i3[2] < d[2]; i3[2]++) {
                if (!in_ellipsoid(d, i3)) continue; /* rows of a convex body: one span each */
                int *sp2 = x->span + 2 * (i3[0] * d[1] + i3[1]);
                if (sp2[1] == sp2[0]) sp2[0] = i3[2];
                sp2[1] = i3[2] + 1;
                x->esum += 1;
            }
    /* K = ceil(a T H W / floor(n_kf ks^2 pi / 6)): as many blobs as fill the area */
    int64_t vol = (int64_t)floor((double)en * 0.5236);
    if (vol < 1) vol = 1;
    for (int a = 0; a < x->A; a++) {
        int64_t k = (int64_t)ceil(x->areas[a] * (double)x->THW / (double)vol);
        x->core_k[a] = k < 1 ? 1 : k > x->nr ? x->nr : k;
        x->ones[a] = (int64_t)ceil(x->areas[a] * (double)x->THW);
    }
    /* lambda_a grows by the reference's factor over its 2000 steps (1.0008668^2000 = 5.66),
     * whatever the number of steps; the core term joins after the first 5 % of the steps */
    x->growth = pow(1.0008668, 2000.0 / x->steps);
    x->core_from = x->steps / 20;
    *out = x;
    return STX_OK;
fail:
    stx__extremal_free(x);
    return st;
}

/* ---- the blur pyramid ------------------------------------------------------------------------ */

/* In-place 1-D Gaussian blur of n values at stride s, edges replicated. */
static void blur_line(float *v, int64_t n, int64_t s, const double *k, int r, double *buf) {
    for (int64_t i = -r; i < n + r; i++) buf[i + r] = v[(i < 0 ? 0 : i >= n ? n - 1 : i) * s];
    for (int64_t i = 0; i < n; i++) {
        const double *b = buf + i;
        double acc = 0;
        for (int j = 0; j <= 2 * r; j++) acc += k[j] * b[j];
        v[i * s] = (float)acc;
    }
}

/* Level l < 7: every (channel, frame) plane of the clip blurred with sigma_l = (1 - l/7)
 * max_blur (separable Gaussian, radius ceil(3 sigma), rows then columns). */
static void make_pyramid(stx_extremal *x, const float *clip) {
    for (int l = 0; l < EXT_LEVELS - 1; l++) {
        float *dst = x->pyr + (int64_t)l * x->sample_numel;
        memcpy(dst, clip, sizeof(float) * (size_t)x->sample_numel);
        double s = (1.0 - (double)l / (EXT_LEVELS - 1)) * x->max_blur;
        int r = (int)ceil(3.0 * s);
        double sum = 0;
        for (int j = -r; j <= r; j++) sum += x->gk[j + r] = exp(-0.5 * (double)(j * j) / (s * s));
        for (int j = 0; j <= 2 * r; j++) x->gk[j] /= sum;
        for (int64_t c = 0; c < x->C; c++)
            for (int64_t t = 0; t < x->T; t++) {
                float *pl = dst + plane(x, c, t);
                for (int64_t yy = 0; yy < x->H; yy++)
                    blur_line(pl + yy * x->W, x->W, 1, x->gk, r, x->line);
                for (int64_t q = 0; q < x->W; q++) blur_line(pl + q, x->H, x->W, x->gk, r, x->line);
            }
    }
}

/* ---- the mask generator ---------------------------------------------------------------------- */

/* e^{20 v} for v in [0, 1]: a table entry at the exponent's 1/256 below times a degree-5
 * Taylor polynomial for the rest (truncation < 1e-17 relative: to rounding, libm's exp). */
static inline double exp_cold(const double *etab, double v) {
    double xx = EXT_COLD * EXT_EXP_STEPS * v;
    int j = (int)xx;
    if (j > (int)EXT_COLD * EXT_EXP_STEPS) j = (int)EXT_COLD * EXT_EXP_STEPS;
    if (j < 0) j = 0;
    double r = (xx - j) / EXT_EXP_STEPS;
    return etab[j] *
           (1 + r * (1 + r * (1.0 / 2 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120))))));
}

/* The grid index nearest to pixel coordinate y (centres at step * i): floor((y + step/2) / step),
 * y possibly negative (the margin). */
static int64_t nearest(int64_t y, int st) {
    int64_t q = y + st / 2;
    return q >= 0 ? q / st : -((-q + st - 1) / st);
}

/* m (Hp x Wp) and the softmax denominators s from the parameter plane p (gh x gw). */
static void mask_forward(const stx_extremal *x, const double *p, double *m, double *s) {
    const int st = x->step, r = x->r, kd = x->kd;
    const int64_t kn = 2 * (int64_t)kd + 1;
    for (int64_t yy = -x->M; yy < x->H + x->M; yy++) {
        int64_t i0 = nearest(yy, st), ia = i0 - r > 0 ? i0 - r : 0;
        int64_t ib = i0 + r < x->gh - 1 ? i0 + r : x->gh - 1;
        for (int64_t xx = -x->M; xx < x->W + x->M; xx++) {
            int64_t j0 = nearest(xx, st), ja = j0 - r > 0 ? j0 - r : 0;
            int64_t jb = j0 + r < x->gw - 1 ? j0 + r : x->gw - 1;
            int64_t u = (yy + x->M) * x->Wp + xx + x->M;
            double num = 0, den = 0;
            for (int64_t i = ia; i <= ib; i++) {
                const double *kr = x->ktab + (yy - st * i + kd) * kn + kd + xx;
                for (int64_t j = ja; j <= jb; j++) {
                    double v = kr[-st * j] * p[i * x->gw + j];
                    double e = v > 0 ? exp_cold(x->etab, v) : 1.0; /* e^0: params at 0 */
                    num += v * e;
                    den += e;
                }
            }
            m[u] = num / den;
            s[u] = den;
        }
    }
}

/* dp (gh x gw) += the mask's vector-Jacobian product for dm (Hp x Wp):
 * d m / d v_q = w_q (1 + 20 (v_q - m)), w_q = e^{20 v_q} / s; d v_q / d p_q = k_q. */
static void mask_backward(const stx_extremal *x, const double *p, const double *m, const double *s,
                          const double *dm, double *dp) {
    const int st = x->step, r = x->r, kd = x->kd;
    const int64_t kn = 2 * (int64_t)kd + 1;
    for (int64_t yy = -x->M; yy < x->H + x->M; yy++) {
        int64_t i0 = nearest(yy, st), ia = i0 - r > 0 ? i0 - r : 0;
        int64_t ib = i0 + r < x->gh - 1 ? i0 + r : x->gh - 1;
        for (int64_t xx = -x->M; xx < x->W + x->M; xx++) {
            int64_t j0 = nearest(xx, st), u = (yy + x->M) * x->Wp + xx + x->M;
            int64_t ja = j0 - r > 0 ? j0 - r : 0, jb = j0 + r < x->gw - 1 ? j0 + r : x->gw - 1;
            double g = dm[u];
            if (g == 0) continue;
            double mu = m[u], inv = 1.0 / s[u];
            for (int64_t i = ia; i <= ib; i++) {
                const double *kr = x->ktab + (yy - st * i + kd) * kn + kd + xx;
                for (int64_t j = ja; j <= jb; j++) {
                    double k = kr[-st * j], v = k * p[i * x->gw + j];
                    double w = (v > 0 ? exp_cold(x->etab, v) : 1.0) * inv;
                    dp[i * x->gw + j] += g * w * (1.0 + EXT_COLD * (v - mu)) * k;
                }
            }
        }
    }
}

/* ---- sorted-target losses (area and core terms) ---------------------------------------------- */

/* Sorts v[0..n) ascending into keys (LSD radix sort, 11 bits a pass, of the bit patterns mapped
 * so that unsigned order is the numbers' order; stable, so equal values keep index order). */
static void sort_values(const double *v, int64_t n, ext_key *keys, ext_key *tmp) {
    for (int64_t i = 0; i < n; i++) {
        uint64_t b;
        memcpy(&b, &v[i], sizeof b);
        keys[i] = (ext_key){b >> 63 ? ~b : b | (1ull << 63), i};
    }
    for (int shift = 0; shift < 64; shift += 11) {
        int64_t cnt[2049] = {0};
        for (int64_t i = 0; i < n; i++) cnt[((keys[i].k >> shift) & 2047) + 1]++;
        bool one = false; /* every key has the same digit: nothing to do */
        for (int d = 1; d <= 2048; d++) one |= cnt[d] == n;
        if (one) continue;
        for (int d = 1; d <= 2048; d++) cnt[d] += cnt[d - 1];
        for (int64_t i = 0; i < n; i++) tmp[cnt[(keys[i].k >> shift) & 2047]++] = keys[i];
        memcpy(keys, tmp, sizeof *keys * (size_t)n);
    }
}

/* g += scale * d/dv [ sum_j w_j (sort(v)_j - ref_j)^2 ] for n values sorted ascending, where the
 * last n1 positions have ref 1 and weight w1 and the others ref 0 and weight w0. Tied values
 * (within EXT_TIE, chained) share their positions' average ref and weight:
 * d/dv_i = 2 (mean(w) v_i - mean(w ref)) over i's group. */
static void sorted_grad(const double *v, int64_t n, int64_t n1, double w0, double w1, double scale,
                        ext_key *keys, ext_key *tmp, double *g) {
    sort_values(v, n, keys, tmp);
    int64_t lo = n - n1;
    for (int64_t j0 = 0; j0 < n;) {
        int64_t j1 = j0 + 1;
        while (j1 < n && v[keys[j1].i] - v[keys[j1 - 1].i] <= EXT_TIE) j1++;
        /* positions [j0, j1): those >= lo have (ref 1, w1), the others (ref 0, w0) */
        int64_t ones = j1 <= lo ? 0 : j0 >= lo ? j1 - j0 : j1 - lo;
        double cnt = (double)(j1 - j0);
        double aw = ((double)(j1 - j0 - ones) * w0 + (double)ones * w1) / cnt;
        double awr = (double)ones * w1 / cnt;
        for (int64_t j = j0; j < j1; j++) g[keys[j].i] += scale * 2.0 * (aw * v[keys[j].i] - awr);
        j0 = j1;
    }
}

/* dm += scale * the gradient of the core term of one area's padded mask volume m (T x Hp x Wp). */
static void core_grad(stx_extremal *x, const double *m, int64_t K, double scale, double *dm) {
    const int nk = x->nkf, ks = x->ks;
    for (int64_t t = 0; t < x->ct; t++)
        for (int64_t a = 0; a < x->ch; a++)
            for (int64_t b = 0; b < x->cw; b++) {
                double acc = 0;
                for (int dt = 0; dt < nk; dt++)
                    for (int dy = 0; dy < ks; dy++) {
                        const int *e = x->span + 2 * (dt * ks + dy);
                        const double *row = m + (t + dt) * x->HWp + (a * ks + dy) * x->Wp + b * ks;
                        for (int dx = e[0]; dx < e[1]; dx++) acc += row[dx];
                    }
                x->resp[(t * x->ch + a) * x->cw + b] = acc / x->esum;
                x->dresp[(t * x->ch + a) * x->cw + b] = 0;
            }
    int64_t n = x->nr, rest = n - K;
    sorted_grad(x->resp, n, K, rest > 0 ? 1.0 / (double)rest : 0.0, 1.0 / (double)K, scale, x->keys,
                x->ktmp, x->dresp);
    for (int64_t t = 0; t < x->ct; t++)
        for (int64_t a = 0; a < x->ch; a++)
            for (int64_t b = 0; b < x->cw; b++) {
                double g = x->dresp[(t * x->ch + a) * x->cw + b] / x->esum;
                for (int dt = 0; dt < nk; dt++)
                    for (int dy = 0; dy < ks; dy++) {
                        const int *e = x->span + 2 * (dt * ks + dy);
                        double *row = dm + (t + dt) * x->HWp + (a * ks + dy) * x->Wp + b * ks;
                        for (int dx = e[0]; dx < e[1]; dx++) row[dx] += g;
                    }
            }
}

/* ---- the optimisation ------------------------------------------------------------------------ */

/* Masks of every area from the parameters (planes in parallel: each is independent). */
static void all_masks(stx_extremal *x) {
    int64_t planes = x->A * x->T, gp = (int64_t)x->gh * x->gw;
#pragma omp parallel for schedule(static)
    for (int64_t q = 0; q < planes; q++)
        mask_forward(x, x->p + q * gp, x->m + q * x->HWp, x->ssum + q * x->HWp);
}

/* The level below the mask value v (w = 7 v; 7: the clip itself) and the blend weight. */
static inline int level_of(double v, double *f) {
    double w = (EXT_LEVELS - 1) * v, k = floor(w);
    *f = w - k;
    return k >= EXT_LEVELS - 1 ? EXT_LEVELS - 1 : (int)k;
}

/* Level l of the pyramid at plane offset off (level 7: the clip). */
static inline const float *level(const stx_extremal *x, const float *clip, int l, int64_t off) {
    return (l == EXT_LEVELS - 1 ? clip : x->pyr + (int64_t)l * x->sample_numel) + off;
}

/* Row a of the batch: Phi(clip, m_a), level w = 7 m blended between floor(w) and floor(w) + 1.
 * The frame's pixel (y, x) reads the padded mask at (y + M, x + M). */
static void blend(stx_extremal *x, const float *clip) {
    float *xb = x->xb->data;
    int64_t planes = x->A * x->T;
#pragma omp parallel for schedule(static)
    for (int64_t q = 0; q < planes; q++) {
        int64_t a = q / x->T, t = q % x->T;
        for (int64_t c = 0; c < x->C; c++) {
            int64_t off = plane(x, c, t);
            float *dst = xb + a * x->sample_numel + off;
            for (int64_t yy = 0; yy < x->H; yy++) {
                const double *mr = x->m + q * x->HWp + (yy + x->M) * x->Wp + x->M;
                for (int64_t xx = 0; xx < x->W; xx++) {
                    int64_t u = yy * x->W + xx;
                    double f;
                    int l = level_of(mr[xx], &f);
                    if (l == EXT_LEVELS - 1) {
                        dst[u] = clip[off + u];
                        continue;
                    }
                    const float *y0 = level(x, clip, l, off), *y1 = level(x, clip, l + 1, off);
                    dst[u] = (float)((1.0 - f) * y0[u] + f * y1[u]);
                }
            }
        }
    }
}

/* dm = d E_reward / d m through the blend (7 (Y_{l+1} - Y_l) per channel; 0 at the top level,
 * as the blend is flat there), from the input gradient g (A rows); 0 in the margin. */
static void blend_backward(stx_extremal *x, const float *clip, const float *g) {
    int64_t planes = x->A * x->T;
#pragma omp parallel for schedule(static)
    for (int64_t q = 0; q < planes; q++) {
        int64_t a = q / x->T, t = q % x->T;
        double *dm = x->dm + q * x->HWp;
        for (int64_t u = 0; u < x->HWp; u++) dm[u] = 0;
        for (int64_t c = 0; c < x->C; c++) {
            int64_t off = plane(x, c, t);
            const float *gr = g + a * x->sample_numel + off;
            for (int64_t yy = 0; yy < x->H; yy++) {
                int64_t row = q * x->HWp + (yy + x->M) * x->Wp + x->M;
                for (int64_t xx = 0; xx < x->W; xx++) {
                    int64_t u = yy * x->W + xx;
                    double f;
                    int l = level_of(x->m[row + xx], &f);
                    if (l == EXT_LEVELS - 1) continue;
                    const float *y0 = level(x, clip, l, off), *y1 = level(x, clip, l + 1, off);
                    dm[row - q * x->HWp + xx] +=
                        (double)gr[u] * (EXT_LEVELS - 1) * ((double)y1[u] - (double)y0[u]);
                }
            }
        }
    }
}

/* The seed d E_reward / d z: lambda_r / F (softmax(z_f) - onehot(c)) at the F scored frames. */
static stx_status reward_seed(stx_extremal *x, int64_t target, int64_t frame, stx_err *err) {
    const stx_tensor *y = stx_session_output(x->sess, x->out_index);
    int64_t K = y->dims[1], inner = 1;
    for (int k = 2; k < y->rank; k++) inner *= y->dims[k];
    const float *z = y->data;
    float *w = x->seedw->data;
    memset(w, 0, x->seedw->nbytes);
    int64_t f0 = frame >= 0 ? frame : 0, f1 = frame >= 0 ? frame + 1 : inner;
    double F = (double)(f1 - f0);
    for (int64_t a = 0; a < x->A; a++)
        for (int64_t f = f0; f < f1; f++) {
            double mx = -INFINITY, sum = 0;
            for (int64_t k = 0; k < K; k++) mx = fmax(mx, z[(a * K + k) * inner + f]);
            for (int64_t k = 0; k < K; k++) sum += exp(z[(a * K + k) * inner + f] - mx);
            if (!isfinite(mx) || !(sum > 0))
                return stx__errf(err, STX_E_NUMERIC,
                                 "extremal: the model's output on a perturbed clip is not finite");
            for (int64_t k = 0; k < K; k++) {
                double pk = exp(z[(a * K + k) * inner + f] - mx) / sum;
                w[(a * K + k) * inner + f] =
                    (float)(EXT_LAMBDA_R / F * (pk - (k == target ? 1.0 : 0.0)));
            }
        }
    return STX_OK;
}

stx_status stx__extremal_run(stx_extremal *x, const float *clip, int64_t target, int64_t frame,
                             const stx_extremal_progress *pg, stx_err *err, double *map) {
    make_pyramid(x, clip);
    int64_t AP = x->A * x->P, gp = (int64_t)x->gh * x->gw;
    for (int64_t i = 0; i < AP; i++) {
        x->p[i] = 1.0;
        x->buf[i] = 0.0;
    }
    double lam_a = EXT_LAMBDA_A;
    stx_seed sd = stx_seed_default();
    sd.weights = x->seedw;
    for (int it = 0; it < x->steps; it++) {
        all_masks(x);
        blend(x, clip);
        stx_status st = stx_session_run(x->sess, x->xb, NULL);
        if (st) return stx__errf(err, st, "%s", stx_session_last_error(x->sess));
        st = reward_seed(x, target, frame, err);
        if (st) return st;
        st = stx_session_backward(x->sess, &sd);
        if (st) return stx__errf(err, st, "%s", stx_session_last_error(x->sess));
        const stx_tensor *g = stx_session_grad(x->sess, "input");
        if (!g) return stx__errf(err, STX_E_INTERNAL, "extremal: no input gradient");
        blend_backward(x, clip, g->data);
        double lam_c = it >= x->core_from ? EXT_LAMBDA_C : 0.0;
        for (int a = 0; a < x->A; a++) {
            double *m = x->m + a * x->THWp, *dm = x->dm + a * x->THWp, w = 1.0 / (double)x->THWp;
            sorted_grad(m, x->THWp, x->ones[a], w, w, lam_a, x->keys, x->ktmp, dm);
            if (lam_c > 0) core_grad(x, m, x->core_k[a], lam_c, dm);
        }
        int64_t planes = x->A * x->T;
        memset(x->dp, 0, sizeof(double) * (size_t)AP);
#pragma omp parallel for schedule(static)
        for (int64_t q = 0; q < planes; q++)
            mask_backward(x, x->p + q * gp, x->m + q * x->HWp, x->ssum + q * x->HWp,
                          x->dm + q * x->HWp, x->dp + q * gp);
        /* SGD with momentum and dampening (torch.optim.SGD), then the clamp to [0, 1] */
        for (int64_t i = 0; i < AP; i++) {
            double b =
                it == 0 ? x->dp[i] : EXT_MOMENTUM * x->buf[i] + (1.0 - EXT_DAMPENING) * x->dp[i];
            double v = x->p[i] - EXT_LR * b;
            x->buf[i] = b;
            x->p[i] = v < 0 ? 0 : v > 1 ? 1 : v;
        }
        lam_a *= x->growth;
        *pg->done += x->A;
        if (pg->fn && pg->fn(pg->user, *pg->done, pg->total))
            return stx__errf(err, STX_E_CANCELLED,
                             "extremal: cancelled after %lld of %lld forward-backward passes",
                             (long long)*pg->done, (long long)pg->total);
    }
    /* the map: the masks of the final parameters, summed over the areas */
    all_masks(x);
    for (int64_t t = 0; t < x->T; t++)
        for (int64_t u = 0; u < x->HW; u++) {
            double s = 0;
            for (int a = 0; a < x->A; a++)
                s += x->m[(a * x->T + t) * x->HWp + (u / x->W + x->M) * x->Wp + u % x->W + x->M];
            map[t * x->HW + u] = s;
        }
    return STX_OK;
}
