/* segments.c: segment-level perturbation methods: Kernel SHAP, LIME, LOCO and UP on a regular
 * grid of cuboid segments (docs/perturbation.md).
 *
 * A coalition z in {0,1}^K keeps the segments where z = 1 and replaces the others with the
 * baseline; f(z) is the target score of that input. Every voxel receives its segment's value
 * (Captum's feature-mask convention), so the map stays (T, H, W).
 *
 *   loco  f(1) - f(1 - e_k): the drop when segment k alone is removed
 *   up    f(e_k) - f(0): the score of segment k alone, over the all-baseline input
 *   kernelshap  weighted least squares of f(z) - f(0) on z with the Shapley kernel weights
 *         (K - 1) / (C(K, |z|) |z| (K - |z|)) under the efficiency constraint
 *         sum_k phi_k = f(1) - f(0) (solved by eliminating the last coefficient). When the
 *         2^K - 2 proper coalitions fit in the sample budget they are all enumerated and the
 *         result is the exact Shapley values; else coalitions are drawn from the kernel's
 *         distribution (a size with probability proportional to its total kernel weight, then a
 *         uniform subset of that size) and weighted equally.
 *   lime  ridge regression (alpha 1, with intercept) of f(z) on z over random coalitions (each
 *         segment kept with probability 1/2; the first coalition is all ones), weighted by
 *         exp(-d^2 / width^2) with d the cosine distance between z and the all-ones coalition
 *         (lime_image's kernel, width 0.25).
 */
#include "explain.h"

#include <math.h>
#include <string.h>

void stx__grid_segments(int64_t T, int64_t H, int64_t W, const int cells[3], int32_t *seg) {
    const int64_t ct = cells[0], ch = cells[1], cw = cells[2];
    for (int64_t t = 0; t < T; t++)
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++)
                seg[(t * H + y) * W + x] =
                    (int32_t)(((t * ct / T) * ch + y * ch / H) * cw + x * cw / W);
}

/* Scores of coalition rows Z[r*K .. r*K+K) for r in [0, rows), batched. */
static stx_status coalition_scores(stx_perturb *p, const float *x, const float *base,
                                   const int32_t *seg, int64_t K, const uint8_t *Z, int64_t rows,
                                   double *scores) {
    const int64_t HW = p->H * p->W;
    float *xb = p->xb->data;
    for (int64_t r0 = 0; r0 < rows; r0 += p->B) {
        int64_t nb = rows - r0 < p->B ? rows - r0 : p->B;
        for (int64_t j = 0; j < nb; j++) {
            float *dst = xb + j * p->sample_numel;
            const uint8_t *z = Z + (r0 + j) * K;
            for (int64_t c = 0; c < p->C; c++)
                for (int64_t t = 0; t < p->T; t++) {
                    int64_t off = stx__perturb_plane(p, c, t);
                    const int32_t *sg = seg + t * HW;
                    for (int64_t i = 0; i < HW; i++)
                        dst[off + i] = z[sg[i]] ? x[off + i] : base[off + i];
                }
        }
        stx__perturb_pad(p, x, nb);
        stx_status st = stx__perturb_run(p, nb, scores + r0);
        if (st) return st;
    }
    return STX_OK;
}

/* Solves the symmetric positive definite n x n system A v = b in place (Cholesky; A is
 * overwritten). Returns false when A is not positive definite. */
static bool spd_solve(double *A, double *b, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        double d = A[j * n + j];
        for (int64_t k = 0; k < j; k++) d -= A[j * n + k] * A[j * n + k];
        if (!(d > 0)) return false;
        d = sqrt(d);
        A[j * n + j] = d;
        for (int64_t i = j + 1; i < n; i++) {
            double s = A[i * n + j];
            for (int64_t k = 0; k < j; k++) s -= A[i * n + k] * A[j * n + k];
            A[i * n + j] = s / d;
        }
    }
    for (int64_t i = 0; i < n; i++) { /* L y = b */
        double s = b[i];
        for (int64_t k = 0; k < i; k++) s -= A[i * n + k] * b[k];
        b[i] = s / A[i * n + i];
    }
    for (int64_t i = n - 1; i >= 0; i--) { /* L^T v = y */
        double s = b[i];
        for (int64_t k = i + 1; k < n; k++) s -= A[k * n + i] * b[k];
        b[i] = s / A[i * n + i];
    }
    return true;
}

static double log_choose(int64_t n, int64_t k) {
    return lgamma((double)n + 1) - lgamma((double)k + 1) - lgamma((double)(n - k) + 1);
}

int64_t stx__segment_rows(int method, int64_t K, int samples) {
    switch (method) {
    case STX_SEG_LOCO:
    case STX_SEG_UP:
        return K + 1;
    case STX_SEG_KERNELSHAP: {
        int64_t all = K < 62 ? ((int64_t)1 << K) - 2 : INT64_MAX;
        return 2 + (all <= samples ? all : samples);
    }
    default:
        return samples;
    }
}

stx_status stx__segments(stx_perturb *p, int method, const float *x, const float *base,
                         const int32_t *seg, int64_t K, int samples, double width, stx_rng *rng,
                         uint8_t *Z, double *scores, double *work, double *map) {
    const int64_t rows = stx__segment_rows(method, K, samples), THW = p->T * p->H * p->W;
    double *phi = work; /* K values (LIME: K + 1) */
    memset(Z, 0, (size_t)(rows * K));
    /* the coalitions */
    if (method == STX_SEG_LOCO || method == STX_SEG_UP) {
        /* row 0: all removed (up) or all kept (loco); row k + 1: segment k flipped */
        uint8_t v = method == STX_SEG_LOCO;
        memset(Z, v, (size_t)(rows * K));
        for (int64_t k = 0; k < K; k++) Z[(k + 1) * K + k] = !v;
    } else if (method == STX_SEG_KERNELSHAP) {
        /* rows 0 and 1: empty and full; then every proper coalition, or samples drawn from the
         * kernel */
        memset(Z + K, 1, (size_t)K);
        int64_t all = K < 62 ? ((int64_t)1 << K) - 2 : INT64_MAX;
        if (all <= samples) {
            for (int64_t r = 0; r < all; r++)
                for (int64_t k = 0; k < K; k++) Z[(r + 2) * K + k] = (uint8_t)(((r + 1) >> k) & 1);
        } else {
            /* size distribution: total kernel weight of size s is (K-1) / (s (K-s)) */
            double tot = 0;
            for (int64_t s = 1; s < K; s++) tot += (double)(K - 1) / (double)(s * (K - s));
            int64_t *perm = (int64_t *)(work + K + 1);
            for (int64_t r = 2; r < rows; r++) {
                double u = stx__rng_uniform(rng) * tot, acc = 0;
                int64_t size = K - 1;
                for (int64_t s = 1; s < K; s++) {
                    acc += (double)(K - 1) / (double)(s * (K - s));
                    if (u < acc) {
                        size = s;
                        break;
                    }
                }
                for (int64_t k = 0; k < K; k++) perm[k] = k;
                for (int64_t k = 0; k < size; k++) { /* partial Fisher-Yates */
                    int64_t j = k + (int64_t)(stx__rng_uniform(rng) * (double)(K - k));
                    if (j >= K) j = K - 1;
                    int64_t tmp = perm[k];
                    perm[k] = perm[j];
                    perm[j] = tmp;
                    Z[r * K + perm[k]] = 1;
                }
            }
        }
    } else { /* lime */
        memset(Z, 1, (size_t)K);
        for (int64_t r = 1; r < rows; r++)
            for (int64_t k = 0; k < K; k++) Z[r * K + k] = stx__rng_uniform(rng) < 0.5;
    }
    stx_status st = coalition_scores(p, x, base, seg, K, Z, rows, scores);
    if (st) return st;
    if (method == STX_SEG_LOCO || method == STX_SEG_UP) {
        for (int64_t k = 0; k < K; k++)
            phi[k] = method == STX_SEG_LOCO ? scores[0] - scores[k + 1] : scores[k + 1] - scores[0];
    } else if (method == STX_SEG_KERNELSHAP) {
        /* y = f(z) - f(0) = sum_k phi_k z_k with phi_{K-1} = D - sum_{k<K-1} phi_k:
         * y - D z_{K-1} = sum_{k<K-1} phi_k (z_k - z_{K-1}) */
        const double f0 = scores[0], D = scores[1] - scores[0];
        const int64_t n = K - 1;
        if (n == 0) {
            phi[0] = D;
        } else {
            double *A = work + K + 1 + K, *b = A + n * n;
            memset(A, 0, sizeof(double) * (size_t)(n * n + n));
            bool enumerated = rows - 2 == (K < 62 ? ((int64_t)1 << K) - 2 : -1);
            for (int64_t r = 2; r < rows; r++) {
                const uint8_t *z = Z + r * K;
                int64_t size = 0;
                for (int64_t k = 0; k < K; k++) size += z[k];
                double wgt = enumerated ? exp(log((double)(K - 1)) - log_choose(K, size) -
                                              log((double)size) - log((double)(K - size)))
                                        : 1.0;
                double y = scores[r] - f0 - D * z[K - 1];
                for (int64_t i = 0; i < n; i++) {
                    double ai = (double)z[i] - z[K - 1];
                    if (ai == 0) continue;
                    b[i] += wgt * ai * y;
                    for (int64_t j = 0; j < n; j++)
                        A[i * n + j] += wgt * ai * ((double)z[j] - z[K - 1]);
                }
            }
            for (int64_t i = 0; i < n; i++) A[i * n + i] += 1e-12; /* unsampled segments */
            if (!spd_solve(A, b, n))
                return stx__errf(p->err, STX_E_NUMERIC,
                                 "kernelshap: the regression is singular (give more --samples)");
            double sum = 0;
            for (int64_t k = 0; k < n; k++) sum += phi[k] = b[k];
            phi[K - 1] = D - sum;
        }
    } else { /* lime: ridge with intercept on K + 1 columns (intercept unpenalised) */
        const int64_t n = K + 1;
        double *A = work + K + 1 + K, *b = A + n * n;
        memset(A, 0, sizeof(double) * (size_t)(n * n + n));
        for (int64_t r = 0; r < rows; r++) {
            const uint8_t *z = Z + r * K;
            int64_t on = 0;
            for (int64_t k = 0; k < K; k++) on += z[k];
            /* cosine distance to the all-ones coalition: 1 - |z| / (sqrt(|z|) sqrt(K)) */
            double d = on ? 1.0 - sqrt((double)on) / sqrt((double)K) : 1.0;
            double wgt = exp(-d * d / (width * width));
            for (int64_t i = 0; i < n; i++) {
                double ai = i < K ? z[i] : 1.0;
                if (ai == 0) continue;
                b[i] += wgt * ai * scores[r];
                for (int64_t j = 0; j < n; j++) A[i * n + j] += wgt * ai * (j < K ? z[j] : 1.0);
            }
        }
        for (int64_t i = 0; i < K; i++) A[i * n + i] += 1.0;
        A[K * n + K] += 1e-12;
        if (!spd_solve(A, b, n))
            return stx__errf(p->err, STX_E_NUMERIC, "lime: the regression is singular");
        for (int64_t k = 0; k < K; k++) phi[k] = b[k];
    }
    for (int64_t u = 0; u < THW; u++) map[u] = phi[seg[u]];
    return STX_OK;
}
