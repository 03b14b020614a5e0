/* aosa.c: Adaptive Occlusion Sensitivity Analysis (Uchiyama et al., arXiv 2207.12859; the
 * reference is uchiyama33/AOSA, src/utils/sensitivity_analysis.py, mask mode "flow_one" with
 * stacking "flow_vec_corr"). Definitions and choices: docs/perturbation.md, "AOSA".
 *
 * 1. Grey frames: the mean over channels of the model input (normalised space); the optical
 *    flow between consecutive frames: pyramidal Lucas-Kanade (src/video/flow.c, defaults).
 * 2. Seeds on a regular grid of frame 0, y, x in {s/2, s/2 + s, ...} (integer part) below H, W;
 *    seed i = row-major index (y outer). No letter-box heuristic.
 * 3. Tracking: at frame t a live point (y, x) occludes the crop x crop square rows
 *    [y - crop/2, y + crop/2 + crop%2) x the same in columns, clipped to the frame; then
 *    (fx, fy) = flow_t(y, x) (the pixel's flow, no interpolation), and the point moves to
 *    round(y + fy), round(x + fx) (half to even, as numpy's round; computed in double) clipped
 *    to the frame. A point whose unrounded y + fy or x + fx leaves [0, H-1] x [0, W-1] stops
 *    occluding from the next frame on (the reference's delete_outside), but is still moved and
 *    its flow still recorded.
 * 4. Stacking (stack > 1): the trajectory vector of a seed is its recorded (fx, fy) for
 *    t = 0 .. T-2, interleaved; similarity(i, j) = <v_i, v_j> / (|v_j| + 1e-10) / (|v_i| + 1e-10)
 *    (double, summed in that order); mask i is the union of tube i and the tubes of the `stack`
 *    seeds j != i most similar to i (ties: the lower index), as the reference's N_stack_mask.
 * 5. Scores: s_i of x with mask i's occluded voxels replaced by the baseline (every channel),
 *    s0 of x. Map: D(v) = (1/N) sum_{i: v occluded by mask i} (s0 - s_i) / kept_i, kept_i the
 *    fraction of voxels mask i keeps. This is AOSA's M(v) = (1/N) sum_i (s_i - s0) m_i(v) /
 *    kept_i minus its constant S = (1/N) sum_i (s_i - s0) / kept_i: the same map up to that
 *    offset (and identical after the reference's min-max display normalisation), in the
 *    orientation of stx's other occlusion maps (score drop when removed, 0: no effect). A mask
 *    that keeps nothing is skipped.
 */
#include "explain.h"

#include "../video/flow.h"

#include <math.h>
#include <string.h>

/* Seed coordinates along an axis of D pixels at spacing s: (s + 2 k s) / 2 for k = 0, 1, ...
 * while below D. */
static int64_t seed_count(int64_t D, int64_t s) {
    int64_t n = 0;
    while (s + 2 * n * s < 2 * D) n++;
    return n;
}

int64_t stx__aosa_rows(int64_t H, int64_t W, int stride) {
    if (stride < 1) return 0;
    return seed_count(H, stride) * seed_count(W, stride);
}

/* The method's buffers, carved from one workspace. */
typedef struct aosa_buf {
    float *grey, *flow, *fwork, *traj;
    int32_t *py, *px, *partner;
    double *norm, *kept;
    uint8_t *mask;
} aosa_buf;

static void *take(char *base, size_t *off, size_t bytes) {
    void *q = base ? base + *off : NULL;
    *off += (bytes + 15) / 16 * 16;
    return q;
}

/* Lays out the buffers from base (NULL: only sizes them); returns the bytes. */
static size_t carve(const stx_perturb *p, int64_t N, int stack, char *base, aosa_buf *b) {
    const int64_t T = p->T, HW = p->H * p->W, S = T > 1 ? T - 1 : 0;
    stx_flow_params fp = stx__flow_params_default();
    size_t off = 0;
    b->grey = take(base, &off, sizeof(float) * (size_t)(T * HW));
    b->flow = take(base, &off, sizeof(float) * (size_t)(S * HW * 2));
    b->fwork = take(base, &off, sizeof(float) * (size_t)stx__flow_work(&fp, p->H, p->W));
    b->traj = take(base, &off, sizeof(float) * (size_t)(N * 2 * S));
    b->py = take(base, &off, sizeof(int32_t) * (size_t)(N * T));
    b->px = take(base, &off, sizeof(int32_t) * (size_t)(N * T));
    b->partner = take(base, &off, sizeof(int32_t) * (size_t)(N * (stack > 1 ? stack : 0)));
    b->norm = take(base, &off, sizeof(double) * (size_t)N);
    b->kept = take(base, &off, sizeof(double) * (size_t)p->B);
    b->mask = take(base, &off, (size_t)(p->B * T * HW));
    return off;
}

int64_t stx__aosa_work(const stx_perturb *p, int stride, int stack) {
    aosa_buf b;
    size_t bytes = carve(p, stx__aosa_rows(p->H, p->W, stride), stack, NULL, &b);
    return (int64_t)((bytes + sizeof(double) - 1) / sizeof(double));
}

void stx__aosa_flows(const stx_perturb *p, const float *x, float *grey, float *flow, float *fwork) {
    const int64_t T = p->T, C = p->C, HW = p->H * p->W;
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < HW; i++) {
            double s = 0;
            for (int64_t c = 0; c < C; c++) s += x[stx__perturb_plane(p, c, t) + i];
            grey[t * HW + i] = (float)(s / (double)C);
        }
    stx_flow_params fp = stx__flow_params_default();
    for (int64_t t = 0; t + 1 < T; t++)
        stx__flow(&fp, grey + t * HW, grey + (t + 1) * HW, p->H, p->W, flow + t * HW * 2, fwork);
}

/* Rounds half to even (numpy's round), whatever the floating-point rounding mode. */
static double round_even(double v) {
    double r = floor(v), d = v - r;
    if (d > 0.5 || (d == 0.5 && fmod(r, 2.0) != 0)) r += 1;
    return r;
}

static int32_t clampi(double v, int64_t D) {
    return v < 0 ? 0 : v > (double)(D - 1) ? (int32_t)(D - 1) : (int32_t)v;
}

/* Seeds, tracks (py = -1 where a point no longer occludes) and trajectory vectors. */
static void track(const stx_perturb *p, int stride, aosa_buf *b) {
    const int64_t T = p->T, H = p->H, W = p->W, S = T > 1 ? T - 1 : 0;
    const int64_t ny = seed_count(H, stride), nx = seed_count(W, stride);
    for (int64_t i = 0; i < ny * nx; i++) {
        int64_t y = (stride + 2 * (i / nx) * stride) / 2, x = (stride + 2 * (i % nx) * stride) / 2;
        bool alive = true;
        for (int64_t t = 0; t < T; t++) {
            b->py[i * T + t] = alive ? (int32_t)y : -1;
            b->px[i * T + t] = (int32_t)x;
            if (t + 1 >= T) break;
            const float *f = b->flow + ((t * H + y) * W + x) * 2;
            float fx = isfinite(f[0]) ? f[0] : 0, fy = isfinite(f[1]) ? f[1] : 0;
            b->traj[i * 2 * S + 2 * t] = fx;
            b->traj[i * 2 * S + 2 * t + 1] = fy;
            double yn = (double)y + fy, xn = (double)x + fx;
            if (yn < 0 || yn > (double)(H - 1) || xn < 0 || xn > (double)(W - 1)) alive = false;
            y = clampi(round_even(yn), H);
            x = clampi(round_even(xn), W);
        }
    }
}

/* For every seed, the `stack` others with the most similar trajectory vectors. */
static void stack_partners(const stx_perturb *p, int64_t N, int stack, aosa_buf *b) {
    const int64_t S2 = 2 * (p->T > 1 ? p->T - 1 : 0);
    for (int64_t i = 0; i < N; i++) {
        const float *v = b->traj + i * S2;
        double acc = 0;
        for (int64_t k = 0; k < S2; k++) acc += (double)v[k] * (double)v[k];
        b->norm[i] = sqrt(acc);
    }
    double best[64];
    for (int64_t i = 0; i < N; i++) {
        const float *vi = b->traj + i * S2;
        int32_t *part = b->partner + i * stack;
        int n = 0;
        for (int64_t j = 0; j < N; j++) {
            if (j == i) continue;
            const float *vj = b->traj + j * S2;
            double dot = 0;
            for (int64_t k = 0; k < S2; k++) dot += (double)vi[k] * (double)vj[k];
            double s = dot / (b->norm[j] + 1e-10) / (b->norm[i] + 1e-10);
            if (n == stack && !(s > best[n - 1])) continue;
            int q = n < stack ? n : stack - 1; /* insert after every value >= s */
            while (q > 0 && best[q - 1] < s) {
                best[q] = best[q - 1];
                part[q] = part[q - 1];
                q--;
            }
            best[q] = s;
            part[q] = (int32_t)j;
            if (n < stack) n++;
        }
    }
}

/* Zeroes tube k's squares in mask (1 = keep) and puts the baseline there in dst. */
static void occlude_tube(const stx_perturb *p, const aosa_buf *b, int64_t k, int crop,
                         const float *base, uint8_t *mask, float *dst) {
    const int64_t T = p->T, H = p->H, W = p->W;
    const int64_t lo = crop / 2, hi = crop / 2 + crop % 2;
    for (int64_t t = 0; t < T; t++) {
        int64_t y = b->py[k * T + t], x = b->px[k * T + t];
        if (y < 0) continue;
        int64_t y0 = y - lo < 0 ? 0 : y - lo, y1 = y + hi > H ? H : y + hi;
        int64_t x0 = x - lo < 0 ? 0 : x - lo, x1 = x + hi > W ? W : x + hi;
        for (int64_t yy = y0; yy < y1; yy++)
            memset(mask + (t * H + yy) * W + x0, 0, (size_t)(x1 - x0));
        for (int64_t c = 0; c < p->C; c++) {
            int64_t off = stx__perturb_plane(p, c, t);
            for (int64_t yy = y0; yy < y1; yy++)
                memcpy(dst + off + yy * W + x0, base + off + yy * W + x0,
                       sizeof(float) * (size_t)(x1 - x0));
        }
    }
}

stx_status stx__aosa(stx_perturb *p, const float *x, const float *base, int stride, int crop,
                     int stack, double s0, double *map, double *work) {
    const int64_t THW = p->T * p->H * p->W, N = stx__aosa_rows(p->H, p->W, stride);
    aosa_buf b;
    carve(p, N, stack, (char *)work, &b);
    stx__aosa_flows(p, x, b.grey, b.flow, b.fwork);
    track(p, stride, &b);
    int joined = stack > 1 ? stack : 0;
    if (joined) stack_partners(p, N, stack, &b);
    memset(map, 0, sizeof(double) * (size_t)THW);
    float *xb = p->xb->data;
    double *scores = p->scores;
    for (int64_t r0 = 0; r0 < N; r0 += p->B) {
        int64_t nb = N - r0 < p->B ? N - r0 : p->B;
        for (int64_t j = 0; j < nb; j++) {
            int64_t r = r0 + j;
            uint8_t *m = b.mask + j * THW;
            float *dst = xb + j * p->sample_numel;
            memset(m, 1, (size_t)THW);
            memcpy(dst, x, sizeof(float) * (size_t)p->sample_numel);
            occlude_tube(p, &b, r, crop, base, m, dst);
            for (int q = 0; q < joined; q++)
                occlude_tube(p, &b, b.partner[r * stack + q], crop, base, m, dst);
            int64_t kept = 0;
            for (int64_t u = 0; u < THW; u++) kept += m[u];
            b.kept[j] = (double)kept / (double)THW;
        }
        stx__perturb_pad(p, x, nb);
        stx_status st = stx__perturb_run(p, nb, scores);
        if (st) return st;
        for (int64_t j = 0; j < nb; j++) {
            if (b.kept[j] <= 0) continue;
            const uint8_t *m = b.mask + j * THW;
            double w = (s0 - scores[j]) / b.kept[j];
            for (int64_t u = 0; u < THW; u++)
                if (!m[u]) map[u] += w;
        }
    }
    for (int64_t u = 0; u < THW; u++) map[u] /= (double)N;
    return STX_OK;
}
