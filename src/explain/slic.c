/* slic.c: 3-D SLIC supervoxels (Achanta et al., "SLIC Superpixels Compared to State-of-the-art
 * Superpixel Methods", TPAMI 2012) for the segment-level methods, as REVEX makes them
 * (Xavi3398/revex_framework SlicSegmenter: skimage.segmentation.slic on the T x H x W x 3 video,
 * spacing [0.2, 1, 1] so that time counts a fifth of space, start_label 0), step for step as
 * scikit-image 0.19's slic computes them (max_num_iter 10, no smoothing, connectivity enforced
 * with min_size_factor 0.5 and max_size_factor 3), so that its labels are the oracle.
 *
 *   1. Colour: the clip's values (un-normalised with the model's mean and std when given:
 *      v = x std + mean) are rescaled to [0, 1] by the clip's own minimum and maximum over all
 *      channels; three channels are read as sRGB and converted to CIE Lab (D65, 2 degrees;
 *      skimage.color.rgb2lab's constants); other channel counts stay as they are. The colour
 *      features are then multiplied by 1 / compactness.
 *   2. Seeds: skimage.util.regular_grid((T, H, W), n_segments): steps of (THW / n)^(1/3) voxels,
 *      an axis shorter than the step keeps one seed and the others share the rest; each step is
 *      rounded half to even, and the first seed of an axis sits at floor(step / 2). Seed colours
 *      start at 0 (as scikit-image's do).
 *   3. Ten rounds of k-means limited to windows: every seed k looks at the voxels within
 *      2 s_a of it along each axis a (s from the regular grid for the number of seeds actually
 *      placed) and claims those for which
 *          D = ((0.2 dt)^2 + dy^2 + dx^2) / S^2 + |colour - colour_k|^2
 *      (S the largest seed step) is smaller than any earlier seed's (ties: the lower k); then every
 *      seed moves to the mean position and colour of its voxels. A seed left without voxels drops
 *      out (in scikit-image it becomes NaN and never claims a voxel again). A voxel that no window
 *      reaches keeps its previous label.
 *   4. Connectivity: scanning voxels in (t, y, x) order, each unlabelled voxel grows its
 *      6-connected component of equal k-means label by breadth-first search (stopped at max_size =
 *      3 THW / n_seeds voxels); a component smaller than min_size = THW / (2 n_seeds) joins the
 *      last labelled neighbour met by the search (or the label being built when none was met),
 *      else it gets the next label. Labels are 0 .. K-1.
 */
#include "explain.h"

#include <float.h>
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* skimage.util.regular_grid for a T x H x W volume and n points: the first point and the step of
 * each axis, and the number of points. */
static int64_t regular_grid(const int64_t d[3], int64_t n, int64_t start[3], int64_t step[3]) {
    const double space = (double)d[0] * (double)d[1] * (double)d[2];
    if (space <= (double)n) {
        for (int a = 0; a < 3; a++) start[a] = 0, step[a] = 1;
        return d[0] * d[1] * d[2];
    }
    /* axes by increasing size (stable: numpy's argsort of three values is an insertion sort) */
    int ord[3] = {0, 1, 2};
    for (int i = 1; i < 3; i++)
        for (int j = i; j > 0 && d[ord[j - 1]] > d[ord[j]]; j--) {
            int tmp = ord[j];
            ord[j] = ord[j - 1];
            ord[j - 1] = tmp;
        }
    double sd[3], st[3];
    for (int i = 0; i < 3; i++) {
        sd[i] = (double)d[ord[i]];
        st[i] = pow(space / (double)n, 1.0 / 3.0);
    }
    if (sd[0] < st[0] || sd[1] < st[1] || sd[2] < st[2]) {
        for (int dim = 0; dim < 3; dim++) {
            st[dim] = sd[dim];
            double rest = 1;
            for (int j = dim + 1; j < 3; j++) rest *= sd[j];
            for (int j = dim + 1; j < 3; j++)
                st[j] = pow(rest / (double)n, 1.0 / (double)(3 - dim - 1));
            if (sd[0] >= st[0] && sd[1] >= st[1] && sd[2] >= st[2]) break;
        }
    }
    int64_t count = 1;
    for (int i = 0; i < 3; i++) {
        int a = ord[i];
        start[a] = (int64_t)floor(st[i] / 2);
        step[a] = (int64_t)rint(st[i]); /* numpy's round: halves to even */
        if (step[a] < 1) step[a] = 1;
        count *= start[a] < d[a] ? (d[a] - start[a] + step[a] - 1) / step[a] : 0;
    }
    return count;
}

stx_status stx__slic_plan(stx_context *ctx, int64_t T, int64_t H, int64_t W, int64_t C,
                          int n_segments, double compactness, stx_slic *s, stx_err *err) {
    memset(s, 0, sizeof *s);
    if (n_segments < 1 || n_segments > 4096)
        return stx__errf(err, STX_E_INVALID, "n_segments %d out of range [1, 4096]", n_segments);
    if (!(compactness > 0 && isfinite(compactness)))
        return stx__errf(err, STX_E_INVALID, "compactness %g must be > 0", compactness);
    const int64_t THW = T * H * W;
    if (THW < 1 || THW > INT32_MAX || C < 1)
        return stx__errf(err, STX_E_SHAPE, "slic: %lld x %lld x %lld voxels of %lld channels",
                         (long long)T, (long long)H, (long long)W, (long long)C);
    s->T = T, s->H = H, s->W = W, s->C = C;
    s->nf = C == 3 ? 3 : C;
    s->ratio = 1.0 / compactness;
    s->spacing[0] = 0.2, s->spacing[1] = 1, s->spacing[2] = 1;
    const int64_t d[3] = {T, H, W};
    int64_t st0[3], sp0[3];
    s->nc = regular_grid(d, n_segments, st0, sp0);
    /* the scale S: the largest seed step (a step of 1 when every voxel is a seed); passed as a
     * float to scikit-image's kernel */
    double S = (double)(sp0[0] > sp0[1] ? (sp0[0] > sp0[2] ? sp0[0] : sp0[2])
                                        : (sp0[1] > sp0[2] ? sp0[1] : sp0[2]));
    float Sf = (float)S;
    s->spatial_weight = 1.0 / (double)(Sf * Sf);
    for (int a = 0; a < 3; a++) s->start[a] = st0[a], s->step[a] = sp0[a];
    int64_t wst[3];
    regular_grid(d, s->nc, wst, s->wstep);
    double size = (double)THW / (double)s->nc;
    s->min_size = (int64_t)(0.5 * size);
    s->max_size = (int64_t)(3 * size);
    int64_t ms = s->min_size > 1 ? s->min_size : 1;
    s->kmax = THW / ms + 1 < THW ? THW / ms + 1 : THW;
    int64_t nq = s->max_size < THW ? s->max_size : THW;
    s->feat = stx__malloc(ctx, sizeof(double) * (size_t)(THW * s->nf));
    s->dist = stx__malloc(ctx, sizeof(double) * (size_t)THW);
    s->cent = stx__malloc(ctx, sizeof(double) * (size_t)(s->nc * (3 + s->nf)));
    s->count = stx__malloc(ctx, sizeof(int64_t) * (size_t)s->nc);
    s->near = stx__malloc(ctx, sizeof(int32_t) * (size_t)THW);
    s->queue = stx__malloc(ctx, sizeof(int32_t) * (size_t)(nq > 0 ? nq : 1));
    if (!s->feat || !s->dist || !s->cent || !s->count || !s->near || !s->queue)
        return stx__errf(err, STX_E_NOMEM, "out of memory for slic on %lld voxels", (long long)THW);
    return STX_OK;
}

void stx__slic_free(stx_context *ctx, stx_slic *s) {
    if (!s) return;
    stx__free(ctx, s->feat);
    stx__free(ctx, s->dist);
    stx__free(ctx, s->cent);
    stx__free(ctx, s->count);
    stx__free(ctx, s->near);
    stx__free(ctx, s->queue);
    memset(s, 0, sizeof *s);
}

/* sRGB in [0, 1] to CIE Lab (D65, 2 degrees), as skimage.color.rgb2lab. */
static void rgb_to_lab(double *v) {
    double l[3];
    for (int c = 0; c < 3; c++)
        l[c] = v[c] > 0.04045 ? pow((v[c] + 0.055) / 1.055, 2.4) : v[c] / 12.92;
    static const double M[3][3] = {{0.412453, 0.357580, 0.180423},
                                   {0.212671, 0.715160, 0.072169},
                                   {0.019334, 0.119193, 0.950227}};
    static const double white[3] = {0.95047, 1.0, 1.08883};
    double f[3];
    for (int i = 0; i < 3; i++) {
        double u = (l[0] * M[i][0] + l[1] * M[i][1] + l[2] * M[i][2]) / white[i];
        f[i] = u > 0.008856 ? cbrt(u) : 7.787 * u + 16.0 / 116.0;
    }
    v[0] = 116.0 * f[1] - 16.0;
    v[1] = 500.0 * (f[0] - f[1]);
    v[2] = 200.0 * (f[1] - f[2]);
}

/* Step 1: the colour features of every voxel, (t, y, x) major, nf per voxel. */
static void features(stx_slic *s, const float *x, int64_t cs, int64_t ts, const double *scale,
                     const double *shift) {
    const int64_t HW = s->H * s->W, THW = s->T * HW, C = s->C, nf = s->nf;
    double *f = s->feat;
    for (int64_t c = 0; c < C; c++)
        for (int64_t t = 0; t < s->T; t++) {
            const float *pl = x + c * cs + t * ts;
            double *dst = f + t * HW * nf + c;
            for (int64_t i = 0; i < HW; i++)
                dst[i * nf] = scale ? (double)pl[i] * scale[c] + shift[c] : (double)pl[i];
        }
    double lo = DBL_MAX, hi = -DBL_MAX;
    for (int64_t i = 0; i < THW * nf; i++) lo = f[i] < lo ? f[i] : lo;
    for (int64_t i = 0; i < THW * nf; i++) {
        f[i] -= lo;
        hi = f[i] > hi ? f[i] : hi;
    }
    if (hi != 0)
        for (int64_t i = 0; i < THW * nf; i++) f[i] /= hi;
    if (C == 3)
        for (int64_t v = 0; v < THW; v++) rgb_to_lab(f + v * 3);
    for (int64_t i = 0; i < THW * nf; i++) f[i] *= s->ratio;
}

/* Step 3, one assignment: every live seed claims the voxels of its window it is nearest to. Each
 * thread owns a range of (t, y) rows and runs the seeds in order over its rows only, so every voxel
 * sees the same comparisons in the same order whatever the number of threads. */
static void assign(stx_slic *s) {
    const int64_t T = s->T, H = s->H, W = s->W, nf = s->nf, F = 3 + nf;
    const double sz = s->spacing[0], sy = s->spacing[1], sx = s->spacing[2];
    const int64_t D[3] = {T, H, W};
#pragma omp parallel
    {
        int64_t nth = 1, tid = 0;
#ifdef _OPENMP
        nth = omp_get_num_threads(), tid = omp_get_thread_num();
#endif
        const int64_t r0 = T * H * tid / nth, r1 = T * H * (tid + 1) / nth;
        for (int64_t v = r0 * W; v < r1 * W; v++) s->dist[v] = DBL_MAX;
        for (int64_t k = 0; k < s->nc; k++) {
            if (s->count[k] == 0) continue; /* dropped out */
            const double *ck = s->cent + k * F;
            const double cz = ck[0], cy = ck[1], cx = ck[2];
            /* scikit-image's window: (Py_ssize_t) max(c - 2 s, 0) .. (Py_ssize_t) min(c + 2 s + 1,
             * D) along each axis */
            const double c3[3] = {cz, cy, cx};
            int64_t a0[3], a1[3];
            for (int a = 0; a < 3; a++) {
                double lo = c3[a] - 2.0 * (double)s->wstep[a];
                double hi = c3[a] + 2.0 * (double)s->wstep[a] + 1;
                a0[a] = lo < 0 ? 0 : (int64_t)lo;
                a1[a] = hi > (double)D[a] ? D[a] : (int64_t)hi;
            }
            for (int64_t z = a0[0]; z < a1[0]; z++) {
                if (z * H + a1[1] <= r0 || z * H + a0[1] >= r1) continue;
                double dz = sz * (cz - (double)z);
                dz *= dz;
                for (int64_t y = a0[1]; y < a1[1]; y++) {
                    const int64_t r = z * H + y;
                    if (r < r0 || r >= r1) continue;
                    double dy = sy * (cy - (double)y);
                    dy *= dy;
                    for (int64_t x = a0[2]; x < a1[2]; x++) {
                        double dx = sx * (cx - (double)x);
                        dx *= dx;
                        double dist = (dz + dy + dx) * s->spatial_weight;
                        /* the colour term only adds: no chance to win (exact shortcut) */
                        if (!(s->dist[r * W + x] > dist)) continue;
                        const double *fv = s->feat + (r * W + x) * nf;
                        double dc = 0;
                        for (int64_t c = 0; c < nf; c++) {
                            double t = fv[c] - ck[3 + c];
                            dc += t * t;
                        }
                        dist += dc;
                        if (s->dist[r * W + x] > dist) {
                            s->near[r * W + x] = (int32_t)k;
                            s->dist[r * W + x] = dist;
                        }
                    }
                }
            }
        }
    }
}

/* Step 3, one update: every seed moves to the mean position and colour of its voxels. */
static void update(stx_slic *s) {
    const int64_t H = s->H, W = s->W, nf = s->nf, F = 3 + nf;
    memset(s->cent, 0, sizeof(double) * (size_t)(s->nc * F));
    memset(s->count, 0, sizeof(int64_t) * (size_t)s->nc);
    int64_t v = 0;
    for (int64_t z = 0; z < s->T; z++)
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++, v++) {
                int32_t k = s->near[v];
                double *ck = s->cent + k * F;
                s->count[k]++;
                ck[0] += (double)z;
                ck[1] += (double)y;
                ck[2] += (double)x;
                for (int64_t c = 0; c < nf; c++) ck[3 + c] += s->feat[v * nf + c];
            }
    for (int64_t k = 0; k < s->nc; k++)
        if (s->count[k])
            for (int64_t c = 0; c < F; c++) s->cent[k * F + c] /= (double)s->count[k];
}

/* Step 4: connected labels into seg; returns K. */
static int64_t connect(stx_slic *s, int32_t *seg) {
    const int64_t T = s->T, H = s->H, W = s->W, HW = H * W, THW = T * HW;
    const int32_t *lab = s->near;
    int32_t *q = s->queue;
    const int64_t maxs = s->max_size;
    static const int dx[6] = {1, -1, 0, 0, 0, 0}, dy[6] = {0, 0, 1, -1, 0, 0},
                     dz[6] = {0, 0, 0, 0, 1, -1};
    for (int64_t v = 0; v < THW; v++) seg[v] = -1;
    int32_t cur = 0;
    for (int64_t v0 = 0; v0 < THW; v0++) {
        if (seg[v0] >= 0) continue;
        int32_t adjacent = cur, label = lab[v0];
        seg[v0] = cur;
        int64_t size = 1, visited = 0;
        q[0] = (int32_t)v0;
        while (visited < size && size < maxs) {
            const int64_t u = q[visited], z = u / HW, y = u / W % H, x = u % W;
            for (int i = 0; i < 6; i++) {
                const int64_t zz = z + dz[i], yy = y + dy[i], xx = x + dx[i];
                if (xx < 0 || xx >= W || yy < 0 || yy >= H || zz < 0 || zz >= T) continue;
                const int64_t w = (zz * H + yy) * W + xx;
                if (lab[w] == label && seg[w] == -1) {
                    seg[w] = cur;
                    q[size++] = (int32_t)w;
                    if (size >= maxs) break;
                } else if (seg[w] >= 0 && seg[w] != cur) {
                    adjacent = seg[w];
                }
            }
            visited++;
        }
        if (size < s->min_size) {
            for (int64_t i = 0; i < size; i++) seg[q[i]] = adjacent;
        } else {
            cur++;
        }
    }
    int32_t top = 0;
    for (int64_t v = 0; v < THW; v++) top = seg[v] > top ? seg[v] : top;
    return (int64_t)top + 1;
}

int64_t stx__slic(stx_slic *s, const float *x, int64_t cs, int64_t ts, const double *scale,
                  const double *shift, int32_t *seg) {
    const int64_t F = 3 + s->nf;
    features(s, x, cs, ts, scale, shift);
    /* step 2: seeds on the regular grid, colour 0 */
    memset(s->cent, 0, sizeof(double) * (size_t)(s->nc * F));
    int64_t k = 0;
    for (int64_t z = s->start[0]; z < s->T; z += s->step[0])
        for (int64_t y = s->start[1]; y < s->H; y += s->step[1])
            for (int64_t x = s->start[2]; x < s->W; x += s->step[2], k++) {
                s->cent[k * F] = (double)z;
                s->cent[k * F + 1] = (double)y;
                s->cent[k * F + 2] = (double)x;
                s->count[k] = 1;
            }
    STX_ASSERT(k == s->nc);
    /* step 3: the first assignment reaches every voxel (along each axis the window reaches 2 s
     * and seeds are at most about 2 s apart), so every voxel has a label from then on; the zeros
     * only keep the memory defined */
    memset(s->near, 0, sizeof(int32_t) * (size_t)(s->T * s->H * s->W));
    for (int it = 0; it < 10; it++) {
        assign(s);
        if (it < 9) update(s); /* the update after the last assignment changes no label */
    }
    return connect(s, seg);
}
