/* upsample.c: resizing explanation volumes to the input's time and space axes. */
#include "explain.h"

#include <math.h>

/* Source index and weight of output position d along one axis (align_corners=False). */
static void lin_src(int64_t d, int64_t in, int64_t out, int64_t *i0, int64_t *i1, double *l1) {
    double scale = (double)in / (double)out;
    double src = scale * ((double)d + 0.5) - 0.5;
    if (src < 0) src = 0;
    int64_t a = (int64_t)src;
    if (a > in - 1) a = in - 1;
    *i0 = a;
    *i1 = a + (a < in - 1 ? 1 : 0);
    *l1 = src - (double)a;
}

/* Linear resize along the last axis of rows x n -> rows x m. */
static void lin_last(const double *in, int64_t rows, int64_t n, double *out, int64_t m) {
    for (int64_t d = 0; d < m; d++) {
        int64_t i0, i1;
        double l1;
        lin_src(d, n, m, &i0, &i1, &l1);
        for (int64_t r = 0; r < rows; r++)
            out[r * m + d] = (1.0 - l1) * in[r * n + i0] + l1 * in[r * n + i1];
    }
}

/* Linear resize along a middle axis: (outer, n, inner) -> (outer, m, inner). */
static void lin_mid(const double *in, int64_t outer, int64_t n, int64_t inner, double *out,
                    int64_t m) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t d = 0; d < m; d++) {
            int64_t i0, i1;
            double l1;
            lin_src(d, n, m, &i0, &i1, &l1);
            const double *a = in + (o * n + i0) * inner, *b = in + (o * n + i1) * inner;
            double *y = out + (o * m + d) * inner;
            for (int64_t k = 0; k < inner; k++) y[k] = (1.0 - l1) * a[k] + l1 * b[k];
        }
}

void stx__upsample_trilinear(const double *in, int64_t ti, int64_t hi, int64_t wi, double *out,
                             int64_t to, int64_t ho, int64_t wo, double *tmp) {
    double *a = tmp;                /* ti x hi x wo */
    double *b = tmp + ti * hi * wo; /* ti x ho x wo */
    lin_last(in, ti * hi, wi, a, wo);
    lin_mid(a, ti, hi, wo, b, ho);
    lin_mid(b, 1, ti, ho * wo, out, to);
}

static int64_t near_src(int64_t d, int64_t in, int64_t out) {
    /* as PyTorch: float scale, floor, clamp */
    float scale = (float)in / (float)out;
    int64_t s = (int64_t)floorf((float)d * scale);
    return s < in - 1 ? s : in - 1;
}

void stx__upsample_nearest(const double *in, int64_t ti, int64_t hi, int64_t wi, double *out,
                           int64_t to, int64_t ho, int64_t wo) {
    for (int64_t t = 0; t < to; t++) {
        int64_t st = near_src(t, ti, to);
        for (int64_t h = 0; h < ho; h++) {
            int64_t sh = near_src(h, hi, ho);
            for (int64_t w = 0; w < wo; w++)
                out[(t * ho + h) * wo + w] = in[(st * hi + sh) * wi + near_src(w, wi, wo)];
        }
    }
}
