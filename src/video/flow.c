/* flow.c: dense optical flow, pyramidal Lucas-Kanade with iterative warping (see flow.h).
 *
 * Both frames are smoothed (Gaussian, `smooth`) and reduced into pyramids: level l + 1 is level l
 * blurred (sigma 1) and sampled at its even pixels, so pixel x of level l + 1 sits on pixel 2x of
 * level l. From the coarsest level (flow 0) to the full frame, the flow of the coarser level is
 * resampled (bilinear at x / 2, times 2) and refined by `iterations` Gauss-Newton steps of
 * Lucas & Kanade (1981) / Bouguet's pyramidal tracker, made dense:
 *
 *   I1w = I1(x + u) (bicubic, Keys a = -0.5: bilinear warping blurs half-pixel shifts and biased
 *   sub-pixel estimates by ~0.04 px), gradients g = (grad I0 + grad I1 at x + u) / 2 (5-point
 *   central differences), It = I1w - I0; per pixel, with Gaussian-window (`window`) averages
 *     [<gx gx> + lambda, <gx gy>; <gx gy>, <gy gy> + lambda] d
 *         = -[<gx It>; <gy It>] - lambda (u - u_prior),
 *   lambda = reg * mean(gx^2 + gy^2) over the level, u_prior the flow the level started from
 *   (Tikhonov on the flow, not on the step: the iterations converge to a regularised solution
 *   instead of drifting to the noise-driven one in flat areas); u += d, each component of d
 *   clamped to 2 px (farther than the linearisation reaches).
 *
 * Pixels whose displaced position falls outside the frame do not enter the window averages.
 * After each level the flow can be median-filtered (3 x 3, per component), which removes the
 * isolated outliers of aperture-problem pixels. Images are sampled with clamped coordinates
 * (edges replicated); Gaussian windows are truncated at 3 sigma and renormalised at the frame
 * edges. Storage is float32; the per-pixel 2 x 2 solve and the mean gradient energy use double.
 * Nothing runs in parallel, so results are the same on every run.
 */
#include "flow.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#define FLOW_MAX_LEVELS 16
#define FLOW_MAX_RADIUS 32
#define FLOW_MIN_SIDE 8
#define FLOW_MAX_STEP 2.0

stx_flow_params stx__flow_params_default(void) {
    stx_flow_params p;
    memset(&p, 0, sizeof p);
    p.levels = 3;
    p.iterations = 5;
    p.window = 4.0f;
    p.smooth = 1.0f;
    p.reg = 0.01f;
    p.median = 1;
    return p;
}

/* Level sizes; returns the number of levels. */
static int level_sizes(const stx_flow_params *p, int64_t H, int64_t W, int64_t *h, int64_t *w) {
    int want = p->levels < 1 ? 1 : p->levels > FLOW_MAX_LEVELS ? FLOW_MAX_LEVELS : p->levels;
    int n = 1;
    h[0] = H;
    w[0] = W;
    while (n < want) {
        int64_t h2 = (h[n - 1] + 1) / 2, w2 = (w[n - 1] + 1) / 2;
        if (h2 < FLOW_MIN_SIDE || w2 < FLOW_MIN_SIDE) break;
        h[n] = h2;
        w[n] = w2;
        n++;
    }
    return n;
}

int stx__flow_levels(const stx_flow_params *p, int64_t H, int64_t W) {
    int64_t h[FLOW_MAX_LEVELS], w[FLOW_MAX_LEVELS];
    return level_sizes(p, H, W, h, w);
}

int64_t stx__flow_work(const stx_flow_params *p, int64_t H, int64_t W) {
    int64_t h[FLOW_MAX_LEVELS], w[FLOW_MAX_LEVELS], pyr = 0;
    int L = level_sizes(p, H, W, h, w);
    for (int l = 0; l < L; l++) pyr += h[l] * w[l];
    /* two pyramids; gradients of both frames (4); u, v and the coarser level's (4); Ix, Iy, It
     * (3); the five window products; one scratch plane */
    return 2 * pyr + 17 * H * W;
}

/* Gaussian taps k[0 .. 2r] of standard deviation sigma (r = ceil(3 sigma), at most
 * FLOW_MAX_RADIUS); returns r (0 for sigma <= 0: the identity). */
static int gauss_taps(double sigma, float *k) {
    if (!(sigma > 0)) {
        k[0] = 1;
        return 0;
    }
    int r = (int)ceil(3 * sigma);
    if (r > FLOW_MAX_RADIUS) r = FLOW_MAX_RADIUS;
    for (int j = -r; j <= r; j++) k[j + r] = (float)exp(-0.5 * (double)(j * j) / (sigma * sigma));
    return r;
}

/* dst = src convolved with the separable Gaussian k (radius r), truncated at the edges and
 * renormalised by the taps that fall inside; tmp: h*w floats; dst may be src. */
static void blur(const float *src, float *dst, int64_t h, int64_t w, const float *k, int r,
                 float *tmp) {
    if (r == 0) {
        if (dst != src) memcpy(dst, src, sizeof(float) * (size_t)(h * w));
        return;
    }
    for (int64_t y = 0; y < h; y++) {
        const float *s = src + y * w;
        for (int64_t x = 0; x < w; x++) {
            int64_t j0 = x - r < 0 ? -x : -r, j1 = x + r >= w ? w - 1 - x : r;
            float acc = 0, norm = 0;
            for (int64_t j = j0; j <= j1; j++) {
                acc += k[j + r] * s[x + j];
                norm += k[j + r];
            }
            tmp[y * w + x] = acc / norm;
        }
    }
    for (int64_t y = 0; y < h; y++) {
        int64_t j0 = y - r < 0 ? -y : -r, j1 = y + r >= h ? h - 1 - y : r;
        float norm = 0;
        for (int64_t j = j0; j <= j1; j++) norm += k[j + r];
        float *d = dst + y * w;
        for (int64_t x = 0; x < w; x++) d[x] = 0;
        for (int64_t j = j0; j <= j1; j++) {
            const float *s = tmp + (y + j) * w;
            float kj = k[j + r];
            for (int64_t x = 0; x < w; x++) d[x] += kj * s[x];
        }
        for (int64_t x = 0; x < w; x++) d[x] /= norm;
    }
}

/* 5-point central differences (-f(x+2) + 8 f(x+1) - 8 f(x-1) + f(x-2)) / 12, edges clamped. */
static void gradient(const float *I, int64_t h, int64_t w, float *gx, float *gy) {
    for (int64_t y = 0; y < h; y++) {
        int64_t ym2 = y < 2 ? 0 : y - 2, ym1 = y < 1 ? 0 : y - 1;
        int64_t yp1 = y + 1 < h ? y + 1 : h - 1, yp2 = y + 2 < h ? y + 2 : h - 1;
        for (int64_t x = 0; x < w; x++) {
            int64_t xm2 = x < 2 ? 0 : x - 2, xm1 = x < 1 ? 0 : x - 1;
            int64_t xp1 = x + 1 < w ? x + 1 : w - 1, xp2 = x + 2 < w ? x + 2 : w - 1;
            const float *r = I + y * w;
            gx[y * w + x] = (r[xm2] - r[xp2] + 8 * (r[xp1] - r[xm1])) / 12;
            gy[y * w + x] =
                (I[ym2 * w + x] - I[yp2 * w + x] + 8 * (I[yp1 * w + x] - I[ym1 * w + x])) / 12;
        }
    }
}

/* Bilinear sample of I at (x, y), coordinates clamped to the frame. */
static float sample(const float *I, int64_t h, int64_t w, double x, double y) {
    x = x < 0 ? 0 : x > (double)(w - 1) ? (double)(w - 1) : x;
    y = y < 0 ? 0 : y > (double)(h - 1) ? (double)(h - 1) : y;
    int64_t x0 = (int64_t)x, y0 = (int64_t)y;
    int64_t x1 = x0 + 1 < w ? x0 + 1 : x0, y1 = y0 + 1 < h ? y0 + 1 : y0;
    float fx = (float)(x - (double)x0), fy = (float)(y - (double)y0);
    const float *r0 = I + y0 * w, *r1 = I + y1 * w;
    float a = r0[x0] + fx * (r0[x1] - r0[x0]);
    float b = r1[x0] + fx * (r1[x1] - r1[x0]);
    return a + fy * (b - a);
}

/* Keys' cubic convolution weights (a = -0.5, Catmull-Rom) of the 4 taps around fraction f. */
static void cubic_weights(float f, float *k) {
    float f2 = f * f, f3 = f2 * f;
    k[0] = -0.5f * f3 + f2 - 0.5f * f;
    k[1] = 1.5f * f3 - 2.5f * f2 + 1;
    k[2] = -1.5f * f3 + 2 * f2 + 0.5f * f;
    k[3] = 0.5f * f3 - 0.5f * f2;
}

/* Bicubic (Keys) sample of I at (x, y), coordinates and taps clamped to the frame: the warp,
 * whose half-pixel blur would otherwise bias sub-pixel estimates. */
static float sample_cubic(const float *I, int64_t h, int64_t w, double x, double y) {
    x = x < 0 ? 0 : x > (double)(w - 1) ? (double)(w - 1) : x;
    y = y < 0 ? 0 : y > (double)(h - 1) ? (double)(h - 1) : y;
    int64_t x0 = (int64_t)x, y0 = (int64_t)y, xs[4], ys[4];
    float kx[4], ky[4];
    cubic_weights((float)(x - (double)x0), kx);
    cubic_weights((float)(y - (double)y0), ky);
    for (int j = 0; j < 4; j++) {
        int64_t xx = x0 - 1 + j, yy = y0 - 1 + j;
        xs[j] = xx < 0 ? 0 : xx >= w ? w - 1 : xx;
        ys[j] = yy < 0 ? 0 : yy >= h ? h - 1 : yy;
    }
    float acc = 0;
    for (int i = 0; i < 4; i++) {
        const float *r = I + ys[i] * w;
        acc += ky[i] * (kx[0] * r[xs[0]] + kx[1] * r[xs[1]] + kx[2] * r[xs[2]] + kx[3] * r[xs[3]]);
    }
    return acc;
}

/* Median of 9 values (partial insertion sort). */
static float median9(float *v) {
    for (int i = 1; i < 9; i++) {
        float t = v[i];
        int j = i - 1;
        while (j >= 0 && v[j] > t) {
            v[j + 1] = v[j];
            j--;
        }
        v[j + 1] = t;
    }
    return v[4];
}

/* 3 x 3 median filter of f in place, edges clamped; tmp: h*w floats. */
static void median3(float *f, int64_t h, int64_t w, float *tmp) {
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            float v[9];
            int n = 0;
            for (int dy = -1; dy <= 1; dy++) {
                int64_t yy = y + dy < 0 ? 0 : y + dy >= h ? h - 1 : y + dy;
                for (int dx = -1; dx <= 1; dx++) {
                    int64_t xx = x + dx < 0 ? 0 : x + dx >= w ? w - 1 : x + dx;
                    v[n++] = f[yy * w + xx];
                }
            }
            tmp[y * w + x] = median9(v);
        }
    memcpy(f, tmp, sizeof(float) * (size_t)(h * w));
}

/* Level 0 = I smoothed, level l + 1 = level l blurred (sigma 1) at its even pixels. a, b: h*w
 * floats of scratch each. */
static void pyramid(const stx_flow_params *p, const float *I, int L, const int64_t *h,
                    const int64_t *w, float *pyr, float *a, float *b) {
    float k[2 * FLOW_MAX_RADIUS + 1];
    int r = gauss_taps(p->smooth, k);
    blur(I, pyr, h[0], w[0], k, r, a);
    r = gauss_taps(1.0, k);
    for (int l = 0; l + 1 < L; l++) {
        const float *src = pyr;
        pyr += h[l] * w[l];
        blur(src, a, h[l], w[l], k, r, b);
        for (int64_t y = 0; y < h[l + 1]; y++)
            for (int64_t x = 0; x < w[l + 1]; x++) pyr[y * w[l + 1] + x] = a[2 * y * w[l] + 2 * x];
    }
}

void stx__flow(const stx_flow_params *p, const float *I0, const float *I1, int64_t H, int64_t W,
               float *flow, float *work) {
    int64_t h[FLOW_MAX_LEVELS], w[FLOW_MAX_LEVELS], off[FLOW_MAX_LEVELS], pyr = 0;
    int L = level_sizes(p, H, W, h, w);
    for (int l = 0; l < L; l++) {
        off[l] = pyr;
        pyr += h[l] * w[l];
    }
    const int64_t HW = H * W;
    float *P0 = work, *P1 = P0 + pyr, *gx0 = P1 + pyr, *gy0 = gx0 + HW, *gx1 = gy0 + HW,
          *gy1 = gx1 + HW, *u = gy1 + HW, *v = u + HW, *uc = v + HW, *vc = uc + HW, *Ix = vc + HW,
          *Iy = Ix + HW, *It = Iy + HW, *pr = It + HW, *tmp = pr + 5 * HW;
    pyramid(p, I0, L, h, w, P0, Ix, Iy);
    pyramid(p, I1, L, h, w, P1, Ix, Iy);
    float kw[2 * FLOW_MAX_RADIUS + 1];
    int rw = gauss_taps(p->window, kw);
    for (int l = L - 1; l >= 0; l--) {
        const int64_t lh = h[l], lw = w[l], n = lh * lw;
        const float *A = P0 + off[l], *B = P1 + off[l];
        if (l == L - 1) {
            memset(u, 0, sizeof(float) * (size_t)n);
            memset(v, 0, sizeof(float) * (size_t)n);
        } else { /* the coarser level's flow, at x / 2, doubled */
            for (int64_t y = 0; y < lh; y++)
                for (int64_t x = 0; x < lw; x++) {
                    u[y * lw + x] =
                        2 * sample(uc, h[l + 1], w[l + 1], 0.5 * (double)x, 0.5 * (double)y);
                    v[y * lw + x] =
                        2 * sample(vc, h[l + 1], w[l + 1], 0.5 * (double)x, 0.5 * (double)y);
                }
        }
        /* the prior the step is pulled towards: the flow the level starts from */
        memcpy(uc, u, sizeof(float) * (size_t)n);
        memcpy(vc, v, sizeof(float) * (size_t)n);
        gradient(A, lh, lw, gx0, gy0);
        gradient(B, lh, lw, gx1, gy1);
        for (int it = 0; it < p->iterations; it++) {
            float *a = pr, *b = a + n, *c = b + n, *d = c + n, *e = d + n;
            double energy = 0;
            for (int64_t y = 0; y < lh; y++)
                for (int64_t x = 0; x < lw; x++) {
                    int64_t i = y * lw + x;
                    double xs = (double)x + u[i], ys = (double)y + v[i];
                    bool in =
                        xs >= 0 && xs <= (double)(lw - 1) && ys >= 0 && ys <= (double)(lh - 1);
                    float gx = 0.5f * (gx0[i] + sample_cubic(gx1, lh, lw, xs, ys));
                    float gy = 0.5f * (gy0[i] + sample_cubic(gy1, lh, lw, xs, ys));
                    float gt = sample_cubic(B, lh, lw, xs, ys) - A[i];
                    if (!in) gx = gy = gt = 0;
                    a[i] = gx * gx;
                    b[i] = gx * gy;
                    c[i] = gy * gy;
                    d[i] = gx * gt;
                    e[i] = gy * gt;
                    energy += (double)a[i] + (double)c[i];
                }
            for (int q = 0; q < 5; q++) blur(pr + q * n, pr + q * n, lh, lw, kw, rw, tmp);
            double lambda = (double)p->reg * energy / (double)n + 1e-30;
            for (int64_t i = 0; i < n; i++) {
                double gxx = a[i] + lambda, gxy = b[i], gyy = c[i] + lambda;
                double bx = d[i] + lambda * ((double)u[i] - uc[i]);
                double by = e[i] + lambda * ((double)v[i] - vc[i]);
                double det = gxx * gyy - gxy * gxy;
                double du = (-gyy * bx + gxy * by) / det, dv = (gxy * bx - gxx * by) / det;
                du = du > FLOW_MAX_STEP ? FLOW_MAX_STEP : du < -FLOW_MAX_STEP ? -FLOW_MAX_STEP : du;
                dv = dv > FLOW_MAX_STEP ? FLOW_MAX_STEP : dv < -FLOW_MAX_STEP ? -FLOW_MAX_STEP : dv;
                u[i] = (float)((double)u[i] + du);
                v[i] = (float)((double)v[i] + dv);
            }
        }
        if (p->median) {
            median3(u, lh, lw, tmp);
            median3(v, lh, lw, tmp);
        }
        if (l > 0) {
            memcpy(uc, u, sizeof(float) * (size_t)n);
            memcpy(vc, v, sizeof(float) * (size_t)n);
        }
    }
    for (int64_t i = 0; i < HW; i++) {
        flow[2 * i] = u[i];
        flow[2 * i + 1] = v[i];
    }
}
