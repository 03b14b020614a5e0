/* cam.c: the arithmetic of the CAM family for one sample (definitions: docs/cam.md). Everything
 * is in double precision; A and G are K x P with P = T*H*W positions. */
#include "explain.h"

#include <math.h>
#include <string.h>

static int64_t npos(const stx_cam_maps *m) {
    return m->T * m->H * m->W;
}

void stx__cam_combine(const stx_cam_maps *m, const double *w, bool relu, double *L) {
    int64_t P = npos(m);
    memset(L, 0, sizeof *L * (size_t)P);
    for (int64_t k = 0; k < m->K; k++) {
        const double *a = m->A + k * P;
        double wk = w[k];
        if (wk == 0) continue;
        for (int64_t u = 0; u < P; u++) L[u] += wk * a[u];
    }
    if (relu)
        for (int64_t u = 0; u < P; u++) L[u] = L[u] > 0 ? L[u] : 0;
}

void stx__cam_cam(const stx_cam_maps *m, double *w, double *L) {
    int64_t P = npos(m);
    for (int64_t k = 0; k < m->K; k++) {
        double s = 0;
        for (int64_t u = 0; u < P; u++) s += m->G[k * P + u];
        w[k] = s;
    }
    stx__cam_combine(m, w, false, L);
}

void stx__cam_gradcam(const stx_cam_maps *m, double *w, double *L) {
    int64_t P = npos(m);
    for (int64_t k = 0; k < m->K; k++) {
        double s = 0;
        for (int64_t u = 0; u < P; u++) s += m->G[k * P + u];
        w[k] = s / (double)P;
    }
    stx__cam_combine(m, w, true, L);
}

void stx__cam_gradcam_frame(const stx_cam_maps *m, double *w, double *L) {
    int64_t P = npos(m), S = m->H * m->W;
    for (int64_t k = 0; k < m->K; k++)
        for (int64_t t = 0; t < m->T; t++) {
            double s = 0;
            for (int64_t u = 0; u < S; u++) s += m->G[k * P + t * S + u];
            w[k * m->T + t] = s / (double)S;
        }
    memset(L, 0, sizeof *L * (size_t)P);
    for (int64_t k = 0; k < m->K; k++)
        for (int64_t t = 0; t < m->T; t++) {
            double wk = w[k * m->T + t];
            const double *a = m->A + k * P + t * S;
            for (int64_t u = 0; u < S; u++) L[t * S + u] += wk * a[u];
        }
    for (int64_t u = 0; u < P; u++) L[u] = L[u] > 0 ? L[u] : 0;
}

void stx__cam_gradcampp(const stx_cam_maps *m, const double *D1, const double *D2, const double *D3,
                        double *w, double *L) {
    int64_t P = npos(m);
    for (int64_t k = 0; k < m->K; k++) {
        const double *a = m->A + k * P;
        double S = 0;
        for (int64_t u = 0; u < P; u++) S += a[u];
        double wk = 0;
        for (int64_t u = 0; u < P; u++) {
            double g = D1[k * P + u];
            double d2 = D2 ? D2[k * P + u] : g * g;
            double d3 = D3 ? D3[k * P + u] : g * g * g;
            double den = 2.0 * d2 + S * d3;
            if (d2 == 0 || den == 0) continue;
            wk += d2 / den * (g > 0 ? g : 0);
        }
        w[k] = wk;
    }
    stx__cam_combine(m, w, true, L);
}

void stx__cam_xgradcam(const stx_cam_maps *m, double *w, double *L) {
    int64_t P = npos(m);
    for (int64_t k = 0; k < m->K; k++) {
        const double *a = m->A + k * P, *g = m->G + k * P;
        double S = 0, s = 0;
        for (int64_t u = 0; u < P; u++) {
            S += a[u];
            s += a[u] * g[u];
        }
        w[k] = s / (S + 1e-7);
    }
    stx__cam_combine(m, w, true, L);
}

void stx__cam_layercam(const stx_cam_maps *m, double *L) {
    int64_t P = npos(m);
    memset(L, 0, sizeof *L * (size_t)P);
    for (int64_t k = 0; k < m->K; k++)
        for (int64_t u = 0; u < P; u++) {
            double g = m->G[k * P + u];
            if (g > 0) L[u] += g * m->A[k * P + u];
        }
    for (int64_t u = 0; u < P; u++) L[u] = L[u] > 0 ? L[u] : 0;
}

void stx__cam_hirescam(const stx_cam_maps *m, double *L) {
    int64_t P = npos(m);
    memset(L, 0, sizeof *L * (size_t)P);
    for (int64_t k = 0; k < m->K; k++)
        for (int64_t u = 0; u < P; u++) L[u] += m->G[k * P + u] * m->A[k * P + u];
    for (int64_t u = 0; u < P; u++) L[u] = L[u] > 0 ? L[u] : 0;
}

void stx__cam_from_scores(const stx_cam_maps *m, const double *s, double base, double *w,
                          double *L) {
    double mx = -INFINITY, sum = 0;
    for (int64_t k = 0; k < m->K; k++)
        if (s[k] - base > mx) mx = s[k] - base;
    for (int64_t k = 0; k < m->K; k++) sum += exp(s[k] - base - mx);
    for (int64_t k = 0; k < m->K; k++) w[k] = exp(s[k] - base - mx) / sum;
    stx__cam_combine(m, w, true, L);
}

void stx__cam_ablation(const stx_cam_maps *m, const double *yk, double y, double *w, double *L) {
    for (int64_t k = 0; k < m->K; k++) w[k] = (y - yk[k]) / y;
    stx__cam_combine(m, w, true, L);
}

void stx__cam_minmax(const double *a, int64_t P, double *out) {
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t u = 0; u < P; u++) {
        if (a[u] < lo) lo = a[u];
        if (a[u] > hi) hi = a[u];
    }
    for (int64_t u = 0; u < P; u++) out[u] = hi > lo ? (a[u] - lo) / (hi - lo) : 0.0;
}

int stx__cam_eigen(const stx_cam_maps *m, double *work, double *L) {
    int64_t P = npos(m), K = m->K;
    double *C = work, *mean = work + K * K, *v = mean + K, *nv = v + K;
    for (int64_t k = 0; k < K; k++) {
        double s = 0;
        for (int64_t u = 0; u < P; u++) s += m->A[k * P + u];
        mean[k] = s / (double)P;
    }
    /* Gram matrix of the centred channels: C = Ac Ac^T (K x K); its leading eigenvector is the
     * leading right singular vector of the P x K matrix of rows A(u). */
    for (int64_t i = 0; i < K; i++)
        for (int64_t j = i; j < K; j++) {
            double s = 0;
            const double *a = m->A + i * P, *b = m->A + j * P;
            for (int64_t u = 0; u < P; u++) s += (a[u] - mean[i]) * (b[u] - mean[j]);
            C[i * K + j] = C[j * K + i] = s;
        }
    for (int64_t k = 0; k < K; k++) v[k] = 1.0 / sqrt((double)K) * (1.0 + 1e-3 * (double)k);
    int it;
    for (it = 0; it < 20000; it++) {
        double norm = 0;
        for (int64_t i = 0; i < K; i++) {
            double s = 0;
            for (int64_t j = 0; j < K; j++) s += C[i * K + j] * v[j];
            nv[i] = s;
            norm += s * s;
        }
        norm = sqrt(norm);
        if (norm == 0) break;
        double diff = 0;
        for (int64_t i = 0; i < K; i++) {
            nv[i] /= norm;
            diff += fabs(nv[i] - v[i]);
            v[i] = nv[i];
        }
        if (diff < 1e-13 * (double)K) break;
    }
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t u = 0; u < P; u++) {
        double s = 0;
        for (int64_t k = 0; k < K; k++) s += (m->A[k * P + u] - mean[k]) * v[k];
        L[u] = s;
        if (s < lo) lo = s;
        if (s > hi) hi = s;
    }
    double sign = fabs(lo) > fabs(hi) ? -1.0 : 1.0;
    for (int64_t u = 0; u < P; u++) {
        double x = sign * L[u];
        L[u] = x > 0 ? x : 0;
    }
    return it;
}
