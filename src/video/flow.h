/* flow.h: dense optical flow between two grey frames (internal; used by AOSA, src/explain/aosa.c).
 *
 * Pyramidal (coarse-to-fine) Lucas-Kanade with iterative warping, float32, deterministic (no
 * threads, fixed summation order), no allocation: the caller passes stx__flow_work() floats of
 * workspace. Definition and measured accuracy: flow.c and docs/perturbation.md (AOSA). */
#ifndef STX_VIDEO_FLOW_H
#define STX_VIDEO_FLOW_H

#include <stdint.h>

typedef struct stx_flow_params {
    /* Pyramid levels including the full-size frame (1: no pyramid), each half the size of the
     * previous one; levels whose shorter side would fall below 8 px are not built. Motion up to
     * about 2^(levels - 1) times the per-level capture range (~2 px) is recovered. Default 3
     * (Farneback's default in AOSA). */
    int levels;
    /* Warping iterations per level (default 5). */
    int iterations;
    /* Standard deviation, in pixels of the level, of the Gaussian window over which the
     * brightness-constancy equations are pooled (default 4: about the spread of Farneback's
     * 15 px box window in AOSA, 15 / sqrt(12) = 4.3). */
    float window;
    /* Standard deviation of the Gaussian pre-smoothing of both full-size frames (default 1; 0:
     * none). */
    float smooth;
    /* Tikhonov weight, relative to the level's mean squared gradient, pulling the flow towards
     * the coarser level's estimate (0 at the coarsest level): each step solves
     * (G + lambda I) d = -b - lambda (u - u_prior) with lambda = reg * mean(|grad I|^2), so
     * textureless areas keep the prior and noise is not amplified, and the flow does not depend
     * on the frames' contrast or offset (default 0.01). */
    float reg;
    /* 1: a 3x3 median filter of each flow component at the end of every level (default 1). */
    int median;
} stx_flow_params;

stx_flow_params stx__flow_params_default(void);
/* Levels actually built for H x W frames. */
int stx__flow_levels(const stx_flow_params *p, int64_t H, int64_t W);
/* Floats of workspace stx__flow needs for H x W frames. */
int64_t stx__flow_work(const stx_flow_params *p, int64_t H, int64_t W);
/* The flow from I0 to I1 (H x W each, row-major) into flow (H x W x 2, interleaved u = dx,
 * v = dy as OpenCV's): I1(x + u, y + v) ~ I0(x, y). work: stx__flow_work() floats. */
void stx__flow(const stx_flow_params *p, const float *I0, const float *I1, int64_t H, int64_t W,
               float *flow, float *work);

#endif
