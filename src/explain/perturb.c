/* perturb.c: the perturbation methods' shared runner, baselines, occlusion and RISE.
 *
 * The runner fills a batch of B perturbed copies of one sample (rows), runs them through a
 * session planned once for batch B, and hands each row's target score to the method, which
 * accumulates its map streaming: memory is O(B x clip) whatever the number of perturbations.
 * Rows are numbered in one fixed order and the random draws of a row never depend on the batch
 * it falls in, so results do not depend on B (the last batch is padded with clean copies whose
 * scores are ignored).
 *
 * Everything is in the model's input space (after normalisation): "removing" a region means
 * replacing it with the baseline there. Baselines (docs/perturbation.md):
 *   zero     0 (the dataset mean colour for a normalised input)
 *   mean     the sample's own mean per channel over the clip
 *   blur     the sample blurred in space (Gaussian, sigma = max(1, min(H, W) / 16) pixels)
 *   blur3d   blurred in space and time (sigma 2 frames in time)
 *   noise    uniform noise between the sample's per-channel minimum and maximum (seeded)
 *   clip     a clip given by the caller (one sample's shape)
 * Gaussian blurs are separable, radius ceil(3 sigma), edges replicated.
 *
 * Occlusion (Captum's convention, so its published values carry over): windows start at k * s
 * along each axis for k = 0 .. ceil((D - w) / s), the last one clipped at the border; a window
 * replaced by the baseline scores delta = s(x) - s(x_occluded), and a voxel's attribution is the
 * mean delta of the windows covering it. RISE: mask i is a random binary grid of (c_t + 1) x
 * (c_h + 1) x (c_w + 1) cells (1 with probability p), upsampled trilinearly (half-pixel centres)
 * to cells of ceil(D / c) voxels and shifted by a random offset in [0, cell) per axis;
 * x_i = base + M_i (x - base); map = sum_i s(x_i) M_i / (N p).
 */
#include "explain.h"

#include "../exec/session.h"

#include <math.h>
#include <string.h>

int64_t stx__perturb_plane(const stx_perturb *p, int64_t c, int64_t t) {
    int64_t HW = p->H * p->W;
    return p->tax == 2 ? (c * p->T + t) * HW : (t * p->C + c) * HW;
}

/* In-place 1-D Gaussian blur of n values at stride s (edges replicated). */
static void blur_line(float *v, int64_t n, int64_t s, const double *k, int r, double *tmp) {
    for (int64_t i = 0; i < n; i++) {
        double acc = 0;
        for (int j = -r; j <= r; j++) {
            int64_t q = i + j < 0 ? 0 : i + j >= n ? n - 1 : i + j;
            acc += k[j + r] * v[q * s];
        }
        tmp[i] = acc;
    }
    for (int64_t i = 0; i < n; i++) v[i * s] = (float)tmp[i];
}

static int gauss_kernel(double sigma, double *k) {
    int r = (int)ceil(3 * sigma);
    if (r > STX_BLUR_MAX_RADIUS) r = STX_BLUR_MAX_RADIUS;
    double sum = 0;
    for (int j = -r; j <= r; j++) sum += k[j + r] = exp(-0.5 * (double)(j * j) / (sigma * sigma));
    for (int j = 0; j <= 2 * r; j++) k[j] /= sum;
    return r;
}

stx_status stx__perturb_baseline(const stx_perturb *p, const float *x, float *base, double *tmp,
                                 stx_rng *rng) {
    const int64_t T = p->T, C = p->C, H = p->H, W = p->W, HW = H * W;
    switch (p->baseline) {
    case STX_BASELINE_ZERO:
        memset(base, 0, sizeof(float) * (size_t)p->sample_numel);
        return STX_OK;
    case STX_BASELINE_CLIP:
        memcpy(base, p->baseline_clip, sizeof(float) * (size_t)p->sample_numel);
        return STX_OK;
    case STX_BASELINE_MEAN:
    case STX_BASELINE_NOISE:
        for (int64_t c = 0; c < C; c++) {
            double sum = 0, lo = INFINITY, hi = -INFINITY;
            for (int64_t t = 0; t < T; t++) {
                const float *pl = x + stx__perturb_plane(p, c, t);
                for (int64_t i = 0; i < HW; i++) {
                    sum += pl[i];
                    lo = fmin(lo, pl[i]);
                    hi = fmax(hi, pl[i]);
                }
            }
            for (int64_t t = 0; t < T; t++) {
                float *pl = base + stx__perturb_plane(p, c, t);
                for (int64_t i = 0; i < HW; i++)
                    pl[i] = p->baseline == STX_BASELINE_MEAN
                                ? (float)(sum / (double)(T * HW))
                                : (float)(lo + (hi - lo) * stx__rng_uniform(rng));
            }
        }
        return STX_OK;
    case STX_BASELINE_BLUR:
    case STX_BASELINE_BLUR3D: {
        double ks[2 * STX_BLUR_MAX_RADIUS + 1], kt[2 * STX_BLUR_MAX_RADIUS + 1];
        double ss = fmax(1.0, (double)(H < W ? H : W) / 16.0);
        int rs = gauss_kernel(ss, ks), rt = gauss_kernel(2.0, kt);
        memcpy(base, x, sizeof(float) * (size_t)p->sample_numel);
        for (int64_t c = 0; c < C; c++)
            for (int64_t t = 0; t < T; t++) {
                float *pl = base + stx__perturb_plane(p, c, t);
                for (int64_t y = 0; y < H; y++) blur_line(pl + y * W, W, 1, ks, rs, tmp);
                for (int64_t q = 0; q < W; q++) blur_line(pl + q, H, W, ks, rs, tmp);
            }
        if (p->baseline == STX_BASELINE_BLUR3D && T > 1) {
            /* along time: the stride between frames of one channel */
            int64_t ts = stx__perturb_plane(p, 0, 1) - stx__perturb_plane(p, 0, 0);
            for (int64_t c = 0; c < C; c++)
                for (int64_t i = 0; i < HW; i++)
                    blur_line(base + stx__perturb_plane(p, c, 0) + i, T, ts, kt, rt, tmp);
        }
        return STX_OK;
    }
    default:
        return stx__errf(p->err, STX_E_INVALID, "unknown baseline %d", p->baseline);
    }
}

stx_status stx__perturb_run(stx_perturb *p, int64_t nb, double *scores) {
    stx_status st = p->region ? stx__region_run(p->region, p->xb, p->win)
                              : stx_session_run(p->sess, p->xb, NULL);
    if (st) return stx__errf(p->err, st, "%s", stx_session_last_error(p->sess));
    const stx_tensor *y = stx_session_output(p->sess, p->out_index);
    for (int64_t j = 0; j < nb; j++) scores[j] = stx__score_of(y, j, p->target, p->frame, p->score);
    *p->done += nb;
    if (p->progress && p->progress(p->progress_user, *p->done, p->total))
        return stx__errf(p->err, STX_E_CANCELLED, "cancelled after %lld of %lld forwards",
                         (long long)*p->done, (long long)p->total);
    return STX_OK;
}

void stx__perturb_pad(stx_perturb *p, const float *x, int64_t nb) {
    float *xb = p->xb->data;
    for (int64_t j = nb; j < p->B; j++)
        memcpy(xb + j * p->sample_numel, x, sizeof(float) * (size_t)p->sample_numel);
}

/* Windows along one axis: count, and the start/end of window k. */
static int64_t win_count(int64_t D, int64_t w, int64_t s) {
    return w >= D ? 1 : (D - w + s - 1) / s + 1;
}

int64_t stx__occlusion_rows(const stx_perturb *p, const int win[3], const int str[3]) {
    const int64_t D[3] = {p->T, p->H, p->W};
    int64_t n = 1;
    for (int a = 0; a < 3; a++) {
        int64_t w = win[a] > 0 && win[a] < D[a] ? win[a] : D[a];
        int64_t s = str[a] > 0 ? str[a] : w;
        n *= win_count(D[a], w, s);
    }
    return n;
}

/* Window sizes, strides and counts per axis of an occlusion. */
static void occ_geometry(const stx_perturb *p, const int win[3], const int str[3], int64_t w[3],
                         int64_t s[3], int64_t nw[3]) {
    const int64_t D[3] = {p->T, p->H, p->W};
    for (int a = 0; a < 3; a++) {
        w[a] = win[a] > 0 && win[a] < D[a] ? win[a] : D[a];
        s[a] = str[a] > 0 ? str[a] : w[a];
        nw[a] = win_count(D[a], w[a], s[a]);
    }
}

/* Box [lo, hi) of window r along t, h, w. */
static void occ_box(const stx_perturb *p, const int64_t w[3], const int64_t s[3],
                    const int64_t nw[3], int64_t r, int64_t lo[3], int64_t hi[3]) {
    const int64_t D[3] = {p->T, p->H, p->W};
    int64_t k[3] = {r / (nw[1] * nw[2]), r / nw[2] % nw[1], r % nw[2]};
    for (int a = 0; a < 3; a++) {
        lo[a] = k[a] * s[a];
        hi[a] = lo[a] + w[a] < D[a] ? lo[a] + w[a] : D[a];
    }
}

void stx__occlusion_boxes(const stx_perturb *p, const int win[3], const int str[3],
                          int64_t *boxes) {
    int64_t w[3], s[3], nw[3], lo[3], hi[3];
    occ_geometry(p, win, str, w, s, nw);
    for (int64_t r = 0; r < nw[0] * nw[1] * nw[2]; r++) {
        occ_box(p, w, s, nw, r, lo, hi);
        for (int a = 0; a < 3; a++) {
            boxes[6 * r + 2 * a] = lo[a];
            boxes[6 * r + 2 * a + 1] = hi[a];
        }
    }
}

stx_status stx__occlusion(stx_perturb *p, const float *x, const float *base, const int win[3],
                          const int str[3], double s0, double *map, double *count) {
    const int64_t THW = p->T * p->H * p->W;
    int64_t w[3], s[3], nw[3];
    occ_geometry(p, win, str, w, s, nw);
    const int64_t rows = nw[0] * nw[1] * nw[2];
    memset(map, 0, sizeof(double) * (size_t)THW);
    memset(count, 0, sizeof(double) * (size_t)THW);
    float *xb = p->xb->data;
    double *scores = p->scores;
    int64_t(*lo)[3] = (int64_t(*)[3])p->idx, (*hi)[3] = lo + p->B;
    if (p->region) {
        stx_status st = stx__region_clean(p->region, x);
        if (st) return stx__errf(p->err, st, "%s", stx_session_last_error(p->sess));
    }
    for (int64_t r0 = 0; r0 < rows; r0 += p->B) {
        int64_t nb = rows - r0 < p->B ? rows - r0 : p->B;
        for (int64_t j = 0; j < nb; j++) {
            occ_box(p, w, s, nw, r0 + j, lo[j], hi[j]);
            float *dst = xb + j * p->sample_numel;
            memcpy(dst, x, sizeof(float) * (size_t)p->sample_numel);
            for (int64_t c = 0; c < p->C; c++)
                for (int64_t t = lo[j][0]; t < hi[j][0]; t++) {
                    int64_t off = stx__perturb_plane(p, c, t);
                    for (int64_t y = lo[j][1]; y < hi[j][1]; y++)
                        memcpy(dst + off + y * p->W + lo[j][2], base + off + y * p->W + lo[j][2],
                               sizeof(float) * (size_t)(hi[j][2] - lo[j][2]));
                }
        }
        stx__perturb_pad(p, x, nb);
        if (p->region)
            for (int64_t j = 0; j < p->B; j++) p->win[j] = j < nb ? (int)(r0 + j) : -1;
        stx_status st = stx__perturb_run(p, nb, scores);
        if (st) return st;
        for (int64_t j = 0; j < nb; j++) {
            double delta = s0 - scores[j];
            for (int64_t t = lo[j][0]; t < hi[j][0]; t++)
                for (int64_t y = lo[j][1]; y < hi[j][1]; y++)
                    for (int64_t q = lo[j][2]; q < hi[j][2]; q++) {
                        int64_t u = (t * p->H + y) * p->W + q;
                        map[u] += delta;
                        count[u] += 1;
                    }
        }
    }
    for (int64_t u = 0; u < THW; u++) map[u] = count[u] > 0 ? map[u] / count[u] : 0;
    return STX_OK;
}

/* Per-axis sampling of a RISE grid of c + 1 cells at cell size L with a shift: voxel v reads
 * grid coordinate (v + shift + 0.5) / L - 0.5, clamped to [0, c]. */
static void rise_taps(int64_t D, int64_t c, int64_t L, int64_t shift, int64_t *i0, double *f) {
    for (int64_t v = 0; v < D; v++) {
        double g = ((double)(v + shift) + 0.5) / (double)L - 0.5;
        if (g < 0) g = 0;
        if (g > (double)c) g = (double)c;
        double fl = floor(g);
        i0[v] = (int64_t)fl;
        f[v] = g - fl;
    }
}

stx_status stx__rise(stx_perturb *p, const float *x, const float *base, int masks,
                     const int cells[3], double prob, stx_rng *rng, double *map, double *work) {
    const int64_t T = p->T, H = p->H, W = p->W, THW = T * H * W;
    const int64_t ct = cells[0], ch = cells[1], cw = cells[2];
    const int64_t gt = ct + 1, gh = ch + 1, gw = cw + 1, G = gt * gh * gw;
    const int64_t Lt = (T + ct - 1) / ct, Lh = (H + ch - 1) / ch, Lw = (W + cw - 1) / cw;
    /* work: B masks of THW, the grid, taps */
    double *M = work, *grid = M + (size_t)p->B * THW, *ft = grid + G, *fh = ft + T, *fw = fh + H;
    int64_t *it = p->idx, *ih = it + T, *iw = ih + H;
    memset(map, 0, sizeof(double) * (size_t)THW);
    float *xb = p->xb->data;
    double *scores = p->scores;
    for (int64_t r0 = 0; r0 < masks; r0 += p->B) {
        int64_t nb = masks - r0 < p->B ? masks - r0 : p->B;
        for (int64_t j = 0; j < nb; j++) {
            /* mask r0 + j: its grid, then its shifts, drawn in this order */
            for (int64_t g = 0; g < G; g++) grid[g] = stx__rng_uniform(rng) < prob ? 1.0 : 0.0;
            int64_t sh_t = (int64_t)(stx__rng_uniform(rng) * (double)Lt);
            int64_t sh_h = (int64_t)(stx__rng_uniform(rng) * (double)Lh);
            int64_t sh_w = (int64_t)(stx__rng_uniform(rng) * (double)Lw);
            rise_taps(T, ct, Lt, sh_t, it, ft);
            rise_taps(H, ch, Lh, sh_h, ih, fh);
            rise_taps(W, cw, Lw, sh_w, iw, fw);
            double *m = M + (size_t)j * THW;
            for (int64_t t = 0; t < T; t++) {
                int64_t t1 = it[t] + 1 < gt ? it[t] + 1 : it[t];
                for (int64_t y = 0; y < H; y++) {
                    int64_t y1 = ih[y] + 1 < gh ? ih[y] + 1 : ih[y];
                    for (int64_t q = 0; q < W; q++) {
                        int64_t q1 = iw[q] + 1 < gw ? iw[q] + 1 : iw[q];
                        double v = 0;
                        for (int a = 0; a < 2; a++)
                            for (int b = 0; b < 2; b++)
                                for (int cc = 0; cc < 2; cc++) {
                                    double wgt = (a ? ft[t] : 1 - ft[t]) * (b ? fh[y] : 1 - fh[y]) *
                                                 (cc ? fw[q] : 1 - fw[q]);
                                    if (wgt == 0) continue;
                                    int64_t ti = a ? t1 : it[t], yi = b ? y1 : ih[y],
                                            qi = cc ? q1 : iw[q];
                                    v += wgt * grid[(ti * gh + yi) * gw + qi];
                                }
                        m[(t * H + y) * W + q] = v;
                    }
                }
            }
            float *dst = xb + j * p->sample_numel;
            for (int64_t c = 0; c < p->C; c++)
                for (int64_t t = 0; t < T; t++) {
                    int64_t off = stx__perturb_plane(p, c, t);
                    const double *mt = m + t * H * W;
                    for (int64_t i = 0; i < H * W; i++)
                        dst[off + i] =
                            (float)((double)base[off + i] +
                                    mt[i] * ((double)x[off + i] - (double)base[off + i]));
                }
        }
        stx__perturb_pad(p, x, nb);
        stx_status st = stx__perturb_run(p, nb, scores);
        if (st) return st;
        for (int64_t j = 0; j < nb; j++) {
            const double *m = M + (size_t)j * THW;
            for (int64_t u = 0; u < THW; u++) map[u] += scores[j] * m[u];
        }
    }
    for (int64_t u = 0; u < THW; u++) map[u] /= (double)masks * prob;
    return STX_OK;
}
