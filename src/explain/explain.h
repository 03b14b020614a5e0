/* explain.h: internals shared by the explanation methods (never installed). */
#ifndef STX_EXPLAIN_H
#define STX_EXPLAIN_H

#include "../core/core.h"

#include <math.h>

/* ---- upsampling (upsample.c) ------------------------------------------------------------ */

/* Resizes a (ti, hi, wi) volume to (to, ho, wo). Trilinear is separable linear interpolation with
 * half-pixel centres as torch.nn.functional.interpolate(mode='trilinear', align_corners=False);
 * nearest picks source index floor(d * in / out) as interpolate(mode='nearest'). tmp holds at
 * least ti*hi*wo + ti*ho*wo doubles. */
void stx__upsample_trilinear(const double *in, int64_t ti, int64_t hi, int64_t wi, double *out,
                             int64_t to, int64_t ho, int64_t wo, double *tmp);
void stx__upsample_nearest(const double *in, int64_t ti, int64_t hi, int64_t wi, double *out,
                           int64_t to, int64_t ho, int64_t wo);

/* ---- the CAM family's arithmetic (cam.c), one sample at a time -------------------------- */

/* A and G are K x P (P = T*H*W positions, row-major t, h, w); L receives P values. */
typedef struct stx_cam_maps {
    int64_t K, T, H, W;
    const double *A; /* activation */
    const double *G; /* gradient of the score (NULL for activation-only methods) */
} stx_cam_maps;

/* L = sum_k w_k A_k, then ReLU when relu is set. */
void stx__cam_combine(const stx_cam_maps *m, const double *w, bool relu, double *L);
void stx__cam_cam(const stx_cam_maps *m, double *w, double *L);
void stx__cam_gradcam(const stx_cam_maps *m, double *w, double *L);
/* w holds K*T weights (per time slice). */
void stx__cam_gradcam_frame(const stx_cam_maps *m, double *w, double *L);
/* Grad-CAM++ from derivative moments D1 = mean g, D2 = mean g^2, D3 = mean g^3 (K x P each; for
 * plain Grad-CAM++ D1 = G and D2/D3 NULL: computed from G). */
void stx__cam_gradcampp(const stx_cam_maps *m, const double *D1, const double *D2, const double *D3,
                        double *w, double *L);
void stx__cam_xgradcam(const stx_cam_maps *m, double *w, double *L);
void stx__cam_layercam(const stx_cam_maps *m, double *L);
void stx__cam_hirescam(const stx_cam_maps *m, double *L);
/* Score-CAM family: w = softmax_k(s_k - base); L = relu(sum w A). */
void stx__cam_from_scores(const stx_cam_maps *m, const double *s, double base, double *w,
                          double *L);
/* Ablation-CAM: w_k = (y - y_k) / y. */
void stx__cam_ablation(const stx_cam_maps *m, const double *yk, double y, double *w, double *L);
/* Eigen-CAM: work holds K*K + 3*K doubles. Fails (E_NOMEM) never; returns the iterations. */
int stx__cam_eigen(const stx_cam_maps *m, double *work, double *L);
/* Per-channel min-max of A_k to [0, 1] (constant channel: zeros) into out (P values). */
void stx__cam_minmax(const double *a, int64_t P, double *out);

/* ---- perturbation methods (perturb.c) -------------------------------------------------- */

#define STX_BLUR_MAX_RADIUS 64

/* The target score of sample n of an output (N, K[, T...]): class c at frame f (f < 0: summed
 * over frames), the logit or the softmax probability over axis 1 (as the backward seed). */
double stx__score_of(const stx_tensor *y, int64_t n, int64_t c, int64_t f, stx_score sc);

/* What the perturbation methods need of an explainer, for one sample. */
typedef struct stx_perturb {
    stx_session *sess; /* planned for batch B */
    stx_tensor *xb;    /* (B, ...) input batch */
    int B, out_index;
    int64_t T, C, H, W, sample_numel;
    int tax; /* time axis of the input: 2 (NCTHW) or 1 (NTCHW) */
    int64_t target, frame;
    stx_score score;
    int baseline;               /* stx_baseline */
    const float *baseline_clip; /* STX_BASELINE_CLIP: one sample */
    int (*progress)(void *, int64_t, int64_t);
    void *progress_user;
    int64_t *done, total;
    stx_err *err;
    /* scratch owned by the caller: B scores, and max(6 B, T + H + W) indices */
    double *scores;
    int64_t *idx;
    /* occlusion: a region plan of sess reusing the clean activations outside the windows
     * (src/exec/region.c), or NULL; win: B window indices of scratch */
    struct stx_region *region;
    int *win;
} stx_perturb;

/* Offset of the (channel c, frame t) plane in one sample (layout NCTHW or NTCHW). */
int64_t stx__perturb_plane(const stx_perturb *p, int64_t c, int64_t t);
/* Fills the batch rows from nb on with the clean sample x (their scores are ignored). */
void stx__perturb_pad(stx_perturb *p, const float *x, int64_t nb);
/* Runs the batch p->xb (rows 0..nb-1 filled, the rest padding) and returns the rows' scores;
 * counts them as done and calls the progress callback. */
stx_status stx__perturb_run(stx_perturb *p, int64_t nb, double *scores);
/* The baseline of sample x into base (sample_numel floats); tmp holds max(T, H, W) doubles. */
stx_status stx__perturb_baseline(const stx_perturb *p, const float *x, float *base, double *tmp,
                                 stx_rng *rng);
/* Number of occlusion windows (window 0: the whole axis; stride 0: the window). */
int64_t stx__occlusion_rows(const stx_perturb *p, const int win[3], const int str[3]);
/* The windows' boxes (rows x (t0, t1, h0, h1, w0, w1)), in the order occlusion runs them. */
void stx__occlusion_boxes(const stx_perturb *p, const int win[3], const int str[3], int64_t *boxes);
/* Occlusion map (T*H*W) of sample x with its clean score s0; count: T*H*W doubles of scratch. */
stx_status stx__occlusion(stx_perturb *p, const float *x, const float *base, const int win[3],
                          const int str[3], double s0, double *map, double *count);
/* RISE map; work holds B*T*H*W + (c_t+1)(c_h+1)(c_w+1) + T + H + W doubles. */
stx_status stx__rise(stx_perturb *p, const float *x, const float *base, int masks,
                     const int cells[3], double prob, stx_rng *rng, double *map, double *work);

/* ---- AOSA (aosa.c) ---------------------------------------------------------------------- */

/* Seed points (rows: one masked forward each) of an H x W frame at spacing stride. */
int64_t stx__aosa_rows(int64_t H, int64_t W, int stride);
/* Doubles of workspace stx__aosa needs (p: T, C, H, W and B set). */
int64_t stx__aosa_work(const stx_perturb *p, int stride, int stack);
/* The grey frames (T x H x W: the mean over channels of sample x) and their optical flows
 * ((T - 1) x H x W x 2) exactly as stx__aosa computes them; fwork: stx__flow_work() floats for
 * the default stx_flow_params (src/video/flow.h). */
void stx__aosa_flows(const stx_perturb *p, const float *x, float *grey, float *flow, float *fwork);
/* AOSA map (T*H*W) of sample x with clean score s0: crop x crop squares following the flow from
 * seeds every `stride` px, each joined with its `stack` most similar tubes when stack > 1. */
stx_status stx__aosa(stx_perturb *p, const float *x, const float *base, int stride, int crop,
                     int stack, double s0, double *map, double *work);

/* ---- segment-level methods (segments.c) ------------------------------------------------- */

enum { STX_SEG_KERNELSHAP, STX_SEG_LIME, STX_SEG_LOCO, STX_SEG_UP };
/* A regular grid of cells[0] x cells[1] x cells[2] cuboid segments over T x H x W. */
void stx__grid_segments(int64_t T, int64_t H, int64_t W, const int cells[3], int32_t *seg);
/* Coalitions (forwards) a method runs for K segments and a sample budget. */
int64_t stx__segment_rows(int method, int64_t K, int samples);
/* The method's map (T*H*W) of sample x. Z: rows*K bytes, scores: rows doubles, work:
 * (K + 1)^2 + 3K + 3 doubles. */
stx_status stx__segments(stx_perturb *p, int method, const float *x, const float *base,
                         const int32_t *seg, int64_t K, int samples, double width, stx_rng *rng,
                         uint8_t *Z, double *scores, double *work, double *map);

/* ---- 3-D SLIC supervoxels (slic.c) ----------------------------------------------------- */

/* The plan of SLIC on T x H x W clips of C channels: the seed grid, the sizes and the scratch
 * (allocated once by stx__slic_plan, freed by stx__slic_free). */
typedef struct stx_slic {
    int64_t T, H, W, C, nf;     /* nf colour features: 3 (Lab) when C == 3, else C */
    int64_t nc;                 /* seeds */
    int64_t start[3], step[3];  /* seed grid along t, y, x */
    int64_t wstep[3];           /* search windows reach 2 wstep along each axis */
    double spatial_weight;      /* 1 / S^2, S the largest seed step */
    double ratio;               /* 1 / compactness */
    double spacing[3];          /* 0.2, 1, 1 */
    int64_t min_size, max_size; /* connectivity */
    int64_t kmax;               /* at most this many supervoxels */
    double *feat, *dist, *cent; /* THW * nf, THW, nc * (3 + nf) */
    int64_t *count;             /* nc */
    int32_t *near, *queue;      /* THW, min(max_size, THW) */
} stx_slic;

/* Checks n_segments (1 .. 4096) and compactness (> 0) and allocates the scratch. */
stx_status stx__slic_plan(stx_context *ctx, int64_t T, int64_t H, int64_t W, int64_t C,
                          int n_segments, double compactness, stx_slic *s, stx_err *err);
void stx__slic_free(stx_context *ctx, stx_slic *s);
/* The supervoxels of one clip into seg (T*H*W labels 0 .. K-1); returns K (<= kmax). Channel c of
 * frame t is the H x W plane at x + c*cs + t*ts; its values are un-normalised as
 * x * scale[c] + shift[c] (scale NULL: as they are). Allocates nothing. */
int64_t stx__slic(stx_slic *s, const float *x, int64_t cs, int64_t ts, const double *scale,
                  const double *shift, int32_t *seg);

/* ---- extremal perturbation (extremal.c) ------------------------------------------------- */

#define STX_EXTREMAL_MAX_AREAS 4

/* The plan of the extremal method: a reverse-mode session for n_areas perturbed clips, the
 * mask parameters and every buffer the optimisation needs. */
typedef struct stx_extremal stx_extremal;

typedef struct stx_extremal_spec {
    stx_context *ctx;
    const int64_t *shape; /* the input's 5 axes (the batch axis is replaced by n_areas) */
    int tax;              /* time axis: 2 (NCTHW) or 1 (NTCHW) */
    int out_index, num_threads;
    int n_areas; /* 1 .. STX_EXTREMAL_MAX_AREAS, areas in (0, 1], steps >= 1 (checked by caller) */
    const float *areas;
    int steps;
} stx_extremal_spec;

typedef struct stx_extremal_progress {
    int (*fn)(void *, int64_t, int64_t); /* after every step (n_areas forwards); NULL: none */
    void *user;
    int64_t *done, total;
} stx_extremal_progress;

/* Plans the method (errors on the context). */
stx_status stx__extremal_create(stx_model *m, const stx_extremal_spec *sp, stx_extremal **out);
void stx__extremal_free(stx_extremal *x);
/* The map (T*H*W: the masks of the areas summed) of one sample clip for class target at frame
 * (-1: every frame of a per-frame output). Allocates nothing. */
stx_status stx__extremal_run(stx_extremal *x, const float *clip, int64_t target, int64_t frame,
                             const stx_extremal_progress *pg, stx_err *err, double *map);

/* ---- dense attributions: gradient family (gradient.c), LRP (lrp.c), transformers (attention.c) */

/* What a dense method's plan needs of the explainer (validated input shape and options). */
typedef struct stx_dense_spec {
    stx_model *m;
    stx_context *ctx; /* errors at creation go to ctx->err */
    const stx_explain_options *o;
    const int64_t *shape;  /* the input's 5 axes, N first (a feature sequence (N, C, T), layout
                              NCT: N, C, T, 1, 1) */
    const int64_t *mshape; /* the model's input shape (sessions are planned for it) */
    int mrank;
    int tax, cax;  /* axes of time and colour: 2, 1 (NCTHW) or 1, 2 (NTCHW) */
    int out_index; /* graph output holding the class scores */
    int num_threads;
    int token_grid[3]; /* T', H', W' of a transformer's tokens (0s: unknown) */
} stx_dense_spec;

/* Gradient family: input gradients of the target score, combined as the method says. */
enum {
    STX_GRAD_SALIENCY, /* the gradient */
    STX_GRAD_GXI,      /* gradient x input */
    STX_GRAD_IG,       /* Integrated Gradients */
    STX_GRAD_SMOOTH,   /* SmoothGrad: mean gradient over noisy copies */
    STX_GRAD_SMOOTH_SQ,
    STX_GRAD_VAR,
    STX_GRAD_GUIDED, /* guided backpropagation (ReLU rule) */
    STX_GRAD_DECONV  /* deconvnet (ReLU rule) */
};
typedef struct stx_grad stx_grad;
stx_status stx__grad_create(const stx_dense_spec *sp, int method, stx_grad **out);
void stx__grad_free(stx_grad *g);
/* The attribution of every input element of the batch x (x's shape and layout) into attr. ig:
 * base is the baseline clip for STX_BASELINE_CLIP (one sample), attributed[n] the sum of attr
 * over sample n (may be NULL). */
stx_status stx__grad_run(stx_grad *g, const stx_tensor *x, const int64_t *targets,
                         const int64_t *frames, const float *base, stx_err *err, float *attr,
                         double *attributed);
/* ig, after a run: the N baselines (x's shape). */
const float *stx__grad_baselines(const stx_grad *g);

/* Channel reductions (stx_reduce): fold values v into r (starting at 0), then finish. */
static inline double stx__reduce_add(double r, double v, stx_reduce how) {
    switch (how) {
    case STX_REDUCE_ABS_SUM:
        return r + fabs(v);
    case STX_REDUCE_MAX_ABS:
        return fabs(v) > r ? fabs(v) : r;
    case STX_REDUCE_L2:
        return r + v * v;
    default:
        return r + v;
    }
}
static inline double stx__reduce_end(double r, stx_reduce how) {
    return how == STX_REDUCE_L2 ? sqrt(r) : r;
}

/* LRP: a reverse-mode session whose backward rules propagate relevance. */
typedef struct stx_lrp stx_lrp;
stx_status stx__lrp_create(const stx_dense_spec *sp, stx_lrp **out);
void stx__lrp_free(stx_lrp *l);
/* Relevance of every input element of the batch x for class targets[n] at frames[n] (-1: the
 * score summed over the frames of a per-frame output) into rel (x's shape and layout);
 * seeded[n]: the relevance put at the output, total[n]: the sum of rel over sample n. */
stx_status stx__lrp_run(stx_lrp *l, const stx_tensor *x, const int64_t *targets,
                        const int64_t *frames, stx_err *err, float *rel, double *seeded,
                        double *total);

/* Transformer methods over the attention maps found in the graph. */
enum { STX_ATTN_ROLLOUT, STX_ATTN_TRANSFORMER_ATTRIBUTION, STX_ATTN_GENERIC };
typedef struct stx_attn stx_attn;
stx_status stx__attn_create(const stx_dense_spec *sp, int method, stx_attn **out);
void stx__attn_free(stx_attn *a);
/* The token grid T', H', W' of the relevance. */
void stx__attn_grid(const stx_attn *a, int64_t grid[3]);
/* Token relevance (N x T'*H'*W', row-major t, h, w) of the batch x for the targets. */
stx_status stx__attn_run(stx_attn *a, const stx_tensor *x, const int64_t *targets,
                         const int64_t *frames, stx_err *err, double *rel);

#endif
