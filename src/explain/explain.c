/* explain.c: the explainer: resolves the target layer, plans the sessions a method needs, and
 * runs the CAM family on batches (definitions: docs/cam.md; arithmetic: cam.c). */
#include "explain.h"

#include "../exec/session.h"
#include "../graph/ir.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum {
    M_CAM,
    M_GRADCAM,
    M_GRADCAM_FRAME,
    M_GRADCAMPP,
    M_SMOOTHPP,
    M_XGRADCAM,
    M_LAYERCAM,
    M_HIRESCAM,
    M_SCORECAM,
    M_SSCAM,
    M_ISCAM,
    M_EIGENCAM,
    M_ABLATION,
    M_OCCLUSION,
    M_FRAME_OCC,
    M_SPATIAL_OCC,
    M_RISE,
    M_KERNELSHAP,
    M_LIME,
    M_LOCO,
    M_UP,
    M_AOSA,
    M_EXTREMAL,
    M_SALIENCY,
    M_GRADXINPUT,
    M_IG,
    M_SMOOTHGRAD,
    M_SMOOTHGRAD_SQ,
    M_VARGRAD,
    M_GUIDED_BP,
    M_DECONVNET,
    M_GUIDED_GRADCAM,
    M_LRP,
    M_SWAG,
    M_ROLLOUT,
    M_TRANSFORMER_ATTR,
    M_GENERIC_ATTN
};

static const char *const method_names[] = {"cam",
                                           "gradcam",
                                           "gradcam-frame",
                                           "gradcam++",
                                           "smooth-gradcam++",
                                           "xgradcam",
                                           "layercam",
                                           "hirescam",
                                           "scorecam",
                                           "sscam",
                                           "iscam",
                                           "eigencam",
                                           "ablationcam",
                                           "occlusion",
                                           "frame-occlusion",
                                           "spatial-occlusion",
                                           "rise",
                                           "kernelshap",
                                           "lime",
                                           "loco",
                                           "up",
                                           "aosa",
                                           "extremal",
                                           "saliency",
                                           "gradxinput",
                                           "ig",
                                           "smoothgrad",
                                           "smoothgrad-sq",
                                           "vargrad",
                                           "guided-backprop",
                                           "deconvnet",
                                           "guided-gradcam",
                                           "lrp",
                                           "swag",
                                           "rollout",
                                           "transformer-attribution",
                                           "generic-attention",
                                           NULL};

const char *const *stx_explain_methods(void) {
    return method_names;
}

static bool uses_grad(int m) {
    return m <= M_HIRESCAM || m == M_GUIDED_GRADCAM;
}
/* Perturbation methods: no layer, maps at the input's resolution (perturb.c). */
static bool layer_free(int m) {
    return m >= M_OCCLUSION && m <= M_EXTREMAL;
}
/* Input-space attributions (gradient.c, lrp.c) and transformer methods (attention.c). */
static bool dense_method(int m) {
    return m >= M_SALIENCY && m != M_GUIDED_GRADCAM;
}
/* Methods that explain a feature sequence (NCT) as well as a clip. */
static bool nct_method(int m) {
    return m >= M_SALIENCY && m <= M_DECONVNET;
}
static bool attention_method(int m) {
    return m >= M_ROLLOUT;
}
/* The gradient.c method of an explainer method (guided-gradcam: its guided backpropagation). */
static int grad_kind(int m) {
    static const int k[] = {STX_GRAD_SALIENCY, STX_GRAD_GXI,       STX_GRAD_IG,
                            STX_GRAD_SMOOTH,   STX_GRAD_SMOOTH_SQ, STX_GRAD_VAR,
                            STX_GRAD_GUIDED,   STX_GRAD_DECONV,    STX_GRAD_GUIDED};
    if (m == M_SWAG) return STX_GRAD_SALIENCY;
    return m >= M_SALIENCY && m <= M_GUIDED_GRADCAM ? k[m - M_SALIENCY] : -1;
}
/* Segment-level methods (segments.c): kernelshap, lime, loco, up. */
static bool segment_method(int m) {
    return m >= M_KERNELSHAP && m <= M_UP;
}
static bool score_family(int m) {
    return m == M_SCORECAM || m == M_SSCAM || m == M_ISCAM;
}

/* Noisy or scaled copies per channel (sscam, iscam) or per input (smooth-gradcam++); 1 else. */
static int method_samples(int m, int samples) {
    if (m == M_SSCAM) return samples ? samples : 35;
    if (m == M_ISCAM) return samples ? samples : 10;
    if (m == M_SMOOTHPP) return samples ? samples : 4;
    return 1;
}

/* How the layer's tensor maps to K x T' x H' x W' per sample: element (k, t, h, w) of sample n is
 * at n * slab + off + k*sk + t*st + h*sh + w*sw. */
enum { LV_5D, LV_FRAMES, LV_TOKENS };
typedef struct layer_view {
    int kind;
    int64_t K, T, H, W;
    int64_t sk, st, sh, sw, off, slab;
} layer_view;

struct stx_explainer {
    stx_model *m;
    stx_context *ctx;
    stx_err err;
    int method;
    stx_explain_options o;
    int64_t shape[STX_MAX_RANK]; /* the input's 5 axes (NCT: N, C, T, 1, 1) */
    int rank;
    int64_t mshape[STX_MAX_RANK]; /* the model's input shape (NCT: rank 3) */
    int mrank;
    bool nct;              /* a sequence of feature vectors (layout NCT) */
    int64_t N, T, H, W, C; /* input batch, frames, frame size, colours */
    int tax, cax;          /* axes of time and colour in the input */
    int64_t sample_numel;  /* input elements per sample */
    char *layer;           /* tensor name */
    const char *module, *how;
    layer_view lv;
    int token_grid[3];
    int out_index;
    const char *out_name;
    stx_session *main, *pert, *tail;
    stx_region *region; /* occlusion: crops of the first layers (src/exec/region.c), or NULL */
    int *rwin;
    int B;
    stx_tensor *map, *out_copy, *xb, *xnoisy;
    int64_t *targets, *frames;
    double *A, *G, *D2, *D3, *L, *w, *up, *tmp, *work, *scores, *row;
    /* perturbation methods: window, stride, RISE cells; the baseline sample; the baseline clip */
    int win[3], str[3], cells[3];
    float *base, *bclip;
    int32_t *seg; /* segment-level methods: the segment of every voxel, K segments */
    int64_t K;
    int64_t prows;   /* perturbation methods: forwards per sample (masks, windows, coalitions) */
    int seg_samples; /* segment-level methods: the coalition budget */
    /* slic segments: the plan, every sample's supervoxels (seg holds N clips) and their number,
     * and the un-normalisation x * std + mean of the clip SLIC sees (from the model's facts) */
    bool use_slic, slic_norm;
    stx_slic slic;
    int64_t *Kn;
    double slic_scale[3], slic_shift[3];
    uint8_t *Z;
    double *pscores; /* perturbation scratch (stx_perturb.scores, .idx) */
    int64_t *pidx;
    stx_extremal *ext; /* extremal: the optimisation's plan (extremal.c) */
    /* dense methods: their plans, the unreduced attribution (N x sample_numel) and the totals */
    stx_grad *grad;
    stx_lrp *lrp;
    stx_attn *attn;
    float *raw;
    double *tot_attr, *tot_expect;
    bool have_totals;
};

stx_explain_options stx_explain_options_default(void) {
    stx_explain_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.method = "gradcam";
    o.score = STX_SCORE_LOGIT;
    o.upsample = STX_UPSAMPLE_TRILINEAR;
    o.batch = 16;
    o.noise = -1.0f;
    for (int a = 0; a < 3; a++) o.window[a] = o.stride[a] = -1;
    o.p = 0.5f;
    o.kernel_width = 0.25f;
    o.n_segments = 200;
    o.compactness = 20.0f;
    o.aosa_stride = 8;
    o.aosa_crop = 16;
    o.aosa_stack = 3;
    o.n_areas = 1;
    o.areas[0] = 0.1f;
    o.steps = 0;
    o.precision = STX_PRECISION_FP32;
    o.reduce = STX_REDUCE_SUM;
    o.schedule = STX_IG_MIDDLE;
    o.epsilon = -1.0f;
    o.gamma = -1.0f;
    o.head_fusion = STX_HEADS_MEAN;
    return o;
}

const char *stx_explainer_last_error(const stx_explainer *e) {
    return e ? e->err.msg : "";
}

/* ---- layer mapping ----------------------------------------------------------------------- */

static bool classify(const stx_explainer *e, const int64_t *d, int rank, layer_view *lv) {
    memset(lv, 0, sizeof *lv);
    const int *tg = e->token_grid;
    int64_t P = (int64_t)tg[0] * tg[1] * tg[2];
    if (rank == 5 && d[0] == e->N) {
        *lv = (layer_view){LV_5D,
                           d[1],
                           d[2],
                           d[3],
                           d[4],
                           d[2] * d[3] * d[4],
                           d[3] * d[4],
                           d[4],
                           1,
                           0,
                           d[1] * d[2] * d[3] * d[4]};
        return true;
    }
    if (P > 0 && rank == 3 && d[0] == e->N && (d[1] == P || d[1] == P + 1)) {
        int64_t D = d[2];
        *lv = (layer_view){LV_TOKENS,
                           D,
                           tg[0],
                           tg[1],
                           tg[2],
                           1,
                           (int64_t)tg[1] * tg[2] * D,
                           tg[2] * D,
                           D,
                           d[1] == P + 1 ? D : 0,
                           d[1] * D};
        return true;
    }
    if (P > 0 && rank == 4 && d[0] == e->N && d[1] == tg[0] && d[2] == (int64_t)tg[1] * tg[2]) {
        int64_t D = d[3];
        *lv = (layer_view){LV_TOKENS, D,         tg[0], tg[1], tg[2],          1,
                           d[2] * D,  tg[2] * D, D,     0,     d[1] * d[2] * D};
        return true;
    }
    if (rank == 4 && d[0] == e->N * e->T && e->T > 1) {
        int64_t C = d[1], h = d[2], w = d[3];
        *lv = (layer_view){LV_FRAMES, C, e->T, h, w, h * w, C * h * w, w, 1, 0, e->T * C * h * w};
        return true;
    }
    return false;
}

/* The patch embedding's token grid: the output T, H, W of the last 5-D Conv whose strides equal
 * its kernel (tubelet embedding). */
static bool grid_from_embedding(const stx_session *probe, int out[3]) {
    const stx_graph *g = &probe->m->g;
    bool found = false;
    for (int i = 0; i < g->n_nodes; i++) {
        const stx_node *n = &g->nodes[i];
        if (strcmp(n->op_type, "Conv") != 0 || n->n_out < 1 || n->out[0] < 0) continue;
        const stx_attr *k = stx__attr(n, "kernel_shape"), *s = stx__attr(n, "strides");
        if (!k || !s || k->n != 3 || s->n != 3) continue;
        bool same = true, big = false;
        for (int j = 0; j < 3; j++) {
            same &= k->ints[j] == s->ints[j];
            big |= k->ints[j] > 1;
        }
        const stx_tensor *t = &probe->vals[n->out[0]];
        if (!same || !big || t->rank != 5) continue;
        for (int j = 0; j < 3; j++) out[j] = (int)t->dims[2 + j];
        found = true;
    }
    return found;
}

/* The last run-time tensor that maps to a grid with more than one spatial position. */
static int auto_layer(const stx_explainer *e, const stx_session *probe) {
    const stx_graph *g = &probe->m->g;
    int best = -1;
    for (int i = 0; i < g->n_nodes; i++) {
        const stx_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_out; k++) {
            int v = n->out[k];
            if (v < 0 || probe->kind[v] != STX_VK_RUNTIME) continue;
            const stx_tensor *t = &probe->vals[v];
            layer_view lv;
            if (t->dtype != STX_DTYPE_FLOAT || !classify(e, t->dims, t->rank, &lv)) continue;
            if (lv.H * lv.W > 1) best = v;
        }
    }
    return best;
}

static const char *module_of(const stx_model *m, const char *tensor) {
    const char *best = NULL;
    for (int i = 0; i < stx_model_num_modules(m); i++)
        if (strcmp(stx_model_module_output(m, i), tensor) == 0) {
            const char *p = stx_model_module_name(m, i);
            if (!best || strlen(p) < strlen(best)) best = p;
        }
    return best;
}

/* ---- creation ---------------------------------------------------------------------------- */

void stx_explainer_free(stx_explainer *e) {
    if (!e) return;
    stx_context *c = e->ctx;
    stx__region_free(e->region); /* before its session */
    stx__free(c, e->rwin);
    stx_session_free(e->main);
    stx_session_free(e->pert);
    stx_session_free(e->tail);
    stx_tensor_free(e->map);
    stx_tensor_free(e->out_copy);
    stx_tensor_free(e->xb);
    stx_tensor_free(e->xnoisy);
    double *bufs[] = {e->A,  e->G,   e->D2,   e->D3,     e->L,  e->w,
                      e->up, e->tmp, e->work, e->scores, e->row};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) stx__free(c, bufs[i]);
    stx__free(c, e->targets);
    stx__free(c, e->frames);
    stx__free(c, e->base);
    stx__free(c, e->bclip);
    stx__free(c, e->seg);
    stx__slic_free(c, &e->slic);
    stx__free(c, e->Kn);
    stx__free(c, e->Z);
    stx__free(c, e->pscores);
    stx__free(c, e->pidx);
    stx__extremal_free(e->ext);
    stx__grad_free(e->grad);
    stx__lrp_free(e->lrp);
    stx__attn_free(e->attn);
    stx__free(c, e->raw);
    stx__free(c, e->tot_attr);
    stx__free(c, e->tot_expect);
    stx__free(c, e->layer);
    stx__free(c, e);
}

static double *dalloc(stx_explainer *e, int64_t n) {
    return stx__calloc(e->ctx, (size_t)(n > 0 ? n : 1), sizeof(double));
}

/* The default occlusion cuboid along an axis of D: ceil(D / parts). */
static int part(int64_t D, int parts) {
    return (int)((D + parts - 1) / parts);
}

/* Plans the extremal method: the clean session (targets) and the optimisation's plan, whose
 * reverse-mode session runs the n_areas masks of a sample together. */
static stx_status create_extremal(stx_explainer *e) {
    stx_explain_options *o = &e->o;
    stx_err *ce = &e->ctx->err;
    if (o->n_areas < 1 || o->n_areas > STX_EXTREMAL_MAX_AREAS)
        return stx__errf(ce, STX_E_INVALID, "extremal: %d areas, expected 1 to %d", o->n_areas,
                         STX_EXTREMAL_MAX_AREAS);
    for (int a = 0; a < o->n_areas; a++)
        if (!(o->areas[a] > 0 && o->areas[a] <= 1))
            return stx__errf(ce, STX_E_INVALID,
                             "extremal: area %g (areas[%d]) must be a fraction in (0, 1]",
                             (double)o->areas[a], a);
    if (o->steps == 0) o->steps = 300;
    if (o->steps < 1 || o->steps > 100000)
        return stx__errf(ce, STX_E_INVALID, "extremal: steps %d out of range [1, 100000]",
                         o->steps);
    if (o->precision != STX_PRECISION_FP32)
        return stx__errf(ce, STX_E_UNSUPPORTED,
                         "extremal: precision bf16 is not supported (the mask optimisation "
                         "needs fp32 gradients)");
    stx_session_options so = stx_session_options_default();
    so.num_threads = o->num_threads;
    stx_status st = stx_session_create(e->m, &so, e->shape, e->rank, &e->main);
    if (st) return st;
    stx_extremal_spec sp = {.ctx = e->ctx,
                            .shape = e->shape,
                            .tax = e->tax,
                            .out_index = e->out_index,
                            .num_threads = o->num_threads,
                            .n_areas = o->n_areas,
                            .areas = o->areas,
                            .steps = o->steps};
    st = stx__extremal_create(e->m, &sp, &e->ext);
    if (st) return st;
    e->prows = (int64_t)o->steps * o->n_areas;
    e->B = o->n_areas;
    e->how = "none";
    e->lv.K = 1;
    e->lv.T = e->T;
    e->lv.H = e->H;
    e->lv.W = e->W;
    e->up = dalloc(e, e->T * e->H * e->W);
    e->targets = stx__calloc(e->ctx, (size_t)e->N, sizeof(int64_t));
    e->frames = stx__calloc(e->ctx, (size_t)e->N, sizeof(int64_t));
    int64_t ms[4] = {e->N, e->T, e->H, e->W};
    e->map = stx__tensor_new(e->ctx, STX_DTYPE_FLOAT, ms, 4);
    if (!e->up || !e->targets || !e->frames || !e->map)
        return stx__errf(ce, STX_E_NOMEM, "out of memory for the extremal map");
    return STX_OK;
}

/* Checks the baseline option and copies a baseline clip (perturbation methods, ig). */
static stx_status check_baseline(stx_explainer *e) {
    stx_explain_options *o = &e->o;
    stx_err *ce = &e->ctx->err;
    if ((unsigned)o->baseline > STX_BASELINE_CLIP)
        return stx__errf(ce, STX_E_INVALID, "unknown baseline %d", (int)o->baseline);
    if (o->baseline == STX_BASELINE_CLIP) {
        const stx_tensor *b = o->baseline_clip;
        char sb[128], xb[128];
        bool ok =
            b && b->dtype == STX_DTYPE_FLOAT && stx__numel(b->dims, b->rank) == e->sample_numel;
        if (ok) { /* one sample's axes, with or without a leading 1 */
            int off = b->rank == e->mrank ? 1 : 0;
            ok = b->rank == e->mrank - 1 + off && (!off || b->dims[0] == 1);
            for (int k = 1; ok && k < e->mrank; k++) ok = b->dims[k - 1 + off] == e->mshape[k];
        }
        if (!ok)
            return stx__errf(ce, STX_E_SHAPE,
                             "baseline clip %s %s must be float32 with one sample's shape %s",
                             b ? stx_dtype_name(b->dtype) : "(none)",
                             b ? stx__shape_str(b->dims, b->rank, sb, sizeof sb) : "",
                             stx__shape_str(e->mshape + 1, e->mrank - 1, xb, sizeof xb));
        for (int64_t i = 0; i < e->sample_numel; i++)
            if (!isfinite(((const float *)b->data)[i]))
                return stx__errf(ce, STX_E_NUMERIC, "baseline clip: non-finite value at %lld",
                                 (long long)i);
        e->bclip = stx__malloc(e->ctx, sizeof(float) * (size_t)e->sample_numel);
        if (!e->bclip) return stx__errf(ce, STX_E_NOMEM, "out of memory");
        memcpy(e->bclip, b->data, sizeof(float) * (size_t)e->sample_numel);
    }
    o->baseline_clip = NULL; /* not kept: copied */
    return STX_OK;
}

/* Plans a perturbation method: the clean session, one for batches of B perturbed inputs, and the
 * buffers; checks the method's options. */
static stx_status create_perturb(stx_explainer *e) {
    stx_explain_options *o = &e->o;
    stx_err *ce = &e->ctx->err;
    const int64_t D[3] = {e->T, e->H, e->W};
    for (int a = 0; a < 3; a++)
        if (o->window[a] < -1 || o->stride[a] < -1 || o->cells[a] < 0 || o->cells[a] > 4096)
            return stx__errf(ce, STX_E_INVALID,
                             "window %d,%d,%d, stride %d,%d,%d, cells %d,%d,%d: window and stride "
                             "must be >= 0 (0: the whole axis / the window), cells in [0, 4096]",
                             o->window[0], o->window[1], o->window[2], o->stride[0], o->stride[1],
                             o->stride[2], o->cells[0], o->cells[1], o->cells[2]);
    /* method defaults, then the caller's values */
    int dw[3], ds[3];
    if (e->method == M_FRAME_OCC) {
        dw[0] = 1, dw[1] = 0, dw[2] = 0;
        ds[0] = 1, ds[1] = 0, ds[2] = 0;
    } else {
        dw[0] = e->method == M_SPATIAL_OCC ? 0 : part(D[0], 4);
        dw[1] = part(D[1], 7);
        dw[2] = part(D[2], 7);
        for (int a = 0; a < 3; a++) ds[a] = dw[a] > 1 ? (dw[a] + 1) / 2 : dw[a];
    }
    for (int a = 0; a < 3; a++) {
        e->win[a] = o->window[a] >= 0 ? o->window[a] : dw[a];
        e->str[a] = o->stride[a] >= 0 ? o->stride[a] : ds[a];
        e->cells[a] = o->cells[a] > 0 ? o->cells[a] : a == 0 ? (int)(D[0] < 4 ? D[0] : 4) : 7;
        if (e->cells[a] > D[a]) e->cells[a] = (int)D[a];
    }
    if (o->masks < 0 || o->masks > 1000000)
        return stx__errf(ce, STX_E_INVALID, "masks %d out of range [1, 1000000]", o->masks);
    if (!(o->p > 0 && o->p <= 1))
        return stx__errf(ce, STX_E_INVALID, "p %g: the keep probability must be in (0, 1]",
                         (double)o->p);
    if ((unsigned)o->precision > STX_PRECISION_BF16)
        return stx__errf(ce, STX_E_INVALID, "unknown precision %d", (int)o->precision);
    stx_status bst = check_baseline(e);
    if (bst) return bst;
    int64_t rows;
    if (segment_method(e->method)) {
        bool regression = e->method == M_KERNELSHAP || e->method == M_LIME;
        e->use_slic = o->segments && strcmp(o->segments, "slic") == 0;
        if (o->segments && !e->use_slic && strcmp(o->segments, "grid") != 0)
            return stx__errf(ce, STX_E_INVALID, "segments '%s': expected 'grid' or 'slic'",
                             o->segments);
        if (!(o->kernel_width > 0 && isfinite(o->kernel_width)))
            return stx__errf(ce, STX_E_INVALID, "kernel width %g must be > 0",
                             (double)o->kernel_width);
        if (e->use_slic) {
            stx_status sst = stx__slic_plan(e->ctx, e->T, e->H, e->W, e->C, o->n_segments,
                                            (double)o->compactness, &e->slic, ce);
            if (sst) return sst;
            /* the clip as pixels: the model's normalisation undone (SLIC rescales to [0, 1]) */
            stx_model_facts f;
            stx_model_facts_get(e->m, &f); /* malformed keys are simply absent */
            e->slic_norm = f.has_normalization && e->C == 3;
            for (int c = 0; c < 3; c++) {
                e->slic_scale[c] = (double)f.std[c];
                e->slic_shift[c] = (double)f.mean[c];
            }
            /* buffers for the most supervoxels a clip can get; a regression refuses more than
             * 4096 when a clip has them */
            e->K = e->slic.kmax;
            if (regression && e->K > 4096) e->K = 4096;
            e->Kn = stx__calloc(e->ctx, (size_t)e->N, sizeof(int64_t));
            if (!e->Kn) return stx__errf(ce, STX_E_NOMEM, "out of memory");
        } else {
            e->K = (int64_t)e->cells[0] * e->cells[1] * e->cells[2];
            if (regression && e->K > 4096)
                return stx__errf(ce, STX_E_INVALID,
                                 "%s: %lld segments (cells %dx%dx%d): at most 4096 for a "
                                 "regression",
                                 method_names[e->method], (long long)e->K, e->cells[0], e->cells[1],
                                 e->cells[2]);
        }
        e->seg_samples = o->samples ? o->samples : 1000;
        int samples = e->seg_samples;
        rows = stx__segment_rows(e->method - M_KERNELSHAP, e->K, samples);
        if (e->method == M_LIME && rows < 2)
            return stx__errf(ce, STX_E_INVALID, "lime needs at least 2 samples");
        int64_t nseg = (e->use_slic ? e->N : 1) * e->T * e->H * e->W;
        e->seg = stx__malloc(e->ctx, sizeof(int32_t) * (size_t)nseg);
        e->Z = stx__malloc(e->ctx, (size_t)(rows * e->K));
        e->scores = dalloc(e, rows);
        /* segment values, and for a regression its normal equations */
        e->work = dalloc(e, regression ? (e->K + 1) * (e->K + 1) + 3 * e->K + 3 : e->K + 1);
        if (!e->seg || !e->Z || !e->scores || !e->work)
            return stx__errf(ce, STX_E_NOMEM, "out of memory for %lld coalitions of %lld segments",
                             (long long)rows, (long long)e->K);
        if (!e->use_slic) stx__grid_segments(e->T, e->H, e->W, e->cells, e->seg);
    } else if (e->method == M_RISE) {
        rows = o->masks ? o->masks : 1000;
    } else if (e->method == M_AOSA) {
        if (o->aosa_stride < 1 || o->aosa_stride > 4096 || o->aosa_crop < 1 ||
            o->aosa_crop > 4096 || o->aosa_stack < 1 || o->aosa_stack > 64)
            return stx__errf(ce, STX_E_INVALID,
                             "aosa stride %d, crop %d, stack %d: stride and crop must be in "
                             "[1, 4096] pixels, stack in [1, 64]",
                             o->aosa_stride, o->aosa_crop, o->aosa_stack);
        rows = stx__aosa_rows(e->H, e->W, o->aosa_stride);
        if (rows == 0)
            return stx__errf(ce, STX_E_INVALID,
                             "aosa stride %d leaves no seed point in a %lldx%lld frame (the first "
                             "seed is at stride / 2)",
                             o->aosa_stride, (long long)e->H, (long long)e->W);
        if (o->aosa_stack > 1 && o->aosa_stack > rows - 1)
            return stx__errf(ce, STX_E_INVALID,
                             "aosa stack %d: a tube joins its %d most similar, but stride %d "
                             "gives %lld seed point(s) in a %lldx%lld frame (stack 1: single "
                             "tubes)",
                             o->aosa_stack, o->aosa_stack, o->aosa_stride, (long long)rows,
                             (long long)e->H, (long long)e->W);
    } else if (e->method == M_EXTREMAL) {
        return create_extremal(e);
    } else {
        stx_perturb pp = {.T = e->T, .H = e->H, .W = e->W};
        rows = stx__occlusion_rows(&pp, e->win, e->str);
    }
    e->prows = rows;
    e->B = (int)(o->batch < rows ? o->batch : rows);
    /* the clean forward in the same precision as the perturbed ones: score differences then
     * compare like with like */
    stx_session_options so = stx_session_options_default();
    so.num_threads = o->num_threads;
    so.precision = o->precision;
    stx_status st = stx_session_create(e->m, &so, e->shape, e->rank, &e->main);
    if (st) return st;
    int64_t bshape[STX_MAX_RANK];
    memcpy(bshape, e->shape, sizeof bshape);
    bshape[0] = e->B;
    st = stx_session_create(e->m, &so, bshape, e->rank, &e->pert);
    if (st) return st;
    e->how = "none";
    e->lv.K = 1;
    e->lv.T = e->T;
    e->lv.H = e->H;
    e->lv.W = e->W;
    int64_t THW = e->T * e->H * e->W,
            G = (int64_t)(e->cells[0] + 1) * (e->cells[1] + 1) * (e->cells[2] + 1);
    e->xb = stx__tensor_new(e->ctx, STX_DTYPE_FLOAT, bshape, e->rank);
    e->up = dalloc(e, THW);
    e->row = dalloc(e, THW);
    e->tmp = dalloc(e, e->T + e->H + e->W);
    if (e->method == M_RISE) e->work = dalloc(e, (int64_t)e->B * THW + G + e->T + e->H + e->W);
    if (e->method == M_AOSA) {
        stx_perturb pa = {.T = e->T, .C = e->C, .H = e->H, .W = e->W, .B = e->B};
        e->work = dalloc(e, stx__aosa_work(&pa, o->aosa_stride, o->aosa_stack));
    }
    e->base = stx__malloc(e->ctx, sizeof(float) * (size_t)e->sample_numel);
    e->targets = stx__calloc(e->ctx, (size_t)e->N, sizeof(int64_t));
    e->frames = stx__calloc(e->ctx, (size_t)e->N, sizeof(int64_t));
    int64_t ms[4] = {e->N, e->T, e->H, e->W};
    e->map = stx__tensor_new(e->ctx, STX_DTYPE_FLOAT, ms, 4);
    if (!e->xb || !e->up || !e->row || !e->tmp ||
        ((e->method == M_RISE || e->method == M_AOSA) && !e->work) || !e->base || !e->targets ||
        !e->frames || !e->map)
        return stx__errf(ce, STX_E_NOMEM, "out of memory for a batch of %d perturbed inputs", e->B);
    int64_t ni = 6 * (int64_t)e->B > e->T + e->H + e->W ? 6 * (int64_t)e->B : e->T + e->H + e->W;
    e->pscores = dalloc(e, e->B);
    e->pidx = stx__malloc(e->ctx, sizeof(int64_t) * (size_t)ni);
    if (!e->pscores || !e->pidx) return stx__errf(ce, STX_E_NOMEM, "out of memory");
    if ((e->method == M_OCCLUSION || e->method == M_FRAME_OCC || e->method == M_SPATIAL_OCC) &&
        e->tax == 2 && e->rank == 5 && o->precision == STX_PRECISION_FP32 && rows <= 1 << 20) {
        /* windows change a small box of the first layers' activations: recompute only that */
        stx_perturb pp = {.T = e->T, .H = e->H, .W = e->W};
        int64_t *boxes = stx__malloc(e->ctx, sizeof(int64_t) * 6 * (size_t)rows);
        e->rwin = stx__malloc(e->ctx, sizeof(int) * (size_t)e->B);
        if (!boxes || !e->rwin) {
            stx__free(e->ctx, boxes);
            return stx__errf(ce, STX_E_NOMEM, "out of memory");
        }
        stx__occlusion_boxes(&pp, e->win, e->str, boxes);
        st = stx__region_create(e->pert, boxes, (int)rows, &e->region);
        stx__free(e->ctx, boxes);
        if (st == STX_E_UNSUPPORTED)
            st = STX_OK; /* nothing to reuse: whole forwards */
        else if (st)
            return stx__errf(ce, st, "occlusion: %s",
                             st == STX_E_NOMEM ? "out of memory for the reused activations"
                                               : stx_session_last_error(e->pert));
    }
    return STX_OK;
}

/* What the dense methods' plans need of the explainer. */
static stx_dense_spec dense_spec(stx_explainer *e) {
    return (stx_dense_spec){.m = e->m,
                            .ctx = e->ctx,
                            .o = &e->o,
                            .shape = e->shape,
                            .mshape = e->mshape,
                            .mrank = e->mrank,
                            .tax = e->tax,
                            .cax = e->cax,
                            .out_index = e->out_index,
                            .num_threads = e->o.num_threads};
}

/* Plans a dense method (gradient family, lrp, swag, transformer methods): the clean session
 * (targets) and the method's own plan; the map is (N, T, H, W), the input's shape with
 * reduce none, or the token grid with upsample none (transformer methods). */
static stx_status create_dense(stx_explainer *e) {
    stx_explain_options *o = &e->o;
    stx_err *ce = &e->ctx->err;
    if ((unsigned)o->reduce > STX_REDUCE_NONE)
        return stx__errf(ce, STX_E_INVALID, "unknown reduce %d", (int)o->reduce);
    if ((unsigned)o->schedule > STX_IG_TRAPEZOID)
        return stx__errf(ce, STX_E_INVALID, "unknown ig schedule %d", (int)o->schedule);
    if ((unsigned)o->head_fusion > STX_HEADS_MIN)
        return stx__errf(ce, STX_E_INVALID, "unknown head fusion %d", (int)o->head_fusion);
    /* bf16: the gradient family runs its forwards and backward-data convolutions in
     * bfloat16; LRP's rules and the transformer methods need fp32 */
    if (o->precision != STX_PRECISION_FP32 && !nct_method(e->method) && e->method != M_SWAG)
        return stx__errf(ce, STX_E_UNSUPPORTED,
                         "%s: precision bf16 is for the perturbation and gradient methods only "
                         "(this one needs fp32)",
                         method_names[e->method]);
    if (e->method == M_SWAG && o->reduce == STX_REDUCE_NONE)
        return stx__errf(ce, STX_E_INVALID,
                         "swag: reduce none is meaningless (the map is one value per supervoxel)");
    if (e->method == M_IG) {
        stx_status bst = check_baseline(e);
        if (bst) return bst;
    }
    stx_session_options so = stx_session_options_default();
    so.num_threads = o->num_threads;
    stx_status st = stx_session_create(e->m, &so, e->mshape, e->mrank, &e->main);
    if (st) return st;
    stx_dense_spec sp = dense_spec(e);
    e->how = "none";
    e->lv.K = 1;
    e->lv.T = e->T;
    e->lv.H = e->H;
    e->lv.W = e->W;
    int64_t ms[STX_MAX_RANK] = {e->N, e->T, e->H, e->W};
    int mr = 4;
    if (attention_method(e->method)) {
        stx_model_facts f;
        stx_model_facts_get(e->m, &f);
        for (int j = 0; j < 3; j++) sp.token_grid[j] = o->token_grid[j];
        if (!sp.token_grid[0] && f.token_grid[0]) {
            for (int j = 0; j < 3; j++) sp.token_grid[j] = f.token_grid[j];
        } else if (!sp.token_grid[0]) {
            stx_session_options po = stx_session_options_default();
            po.use_dnnl = 0;
            po.fuse = 0;
            po.num_threads = o->num_threads;
            stx_session *probe = NULL;
            st = stx_session_create(e->m, &po, e->shape, e->rank, &probe);
            if (st) return st;
            grid_from_embedding(probe, sp.token_grid);
            stx_session_free(probe);
        }
        st = stx__attn_create(&sp, e->method - M_ROLLOUT, &e->attn);
        if (st) return st;
        int64_t g[3];
        stx__attn_grid(e->attn, g);
        e->lv.T = g[0];
        e->lv.H = g[1];
        e->lv.W = g[2];
        if (o->upsample == STX_UPSAMPLE_NONE)
            for (int j = 0; j < 3; j++) ms[1 + j] = g[j];
        int64_t P = g[0] * g[1] * g[2], THW = e->T * e->H * e->W;
        e->L = dalloc(e, e->N * P);
        e->up = dalloc(e, THW);
        e->tmp = dalloc(e, g[0] * g[1] * e->W + g[0] * e->H * e->W);
        if (!e->L || !e->up || !e->tmp)
            return stx__errf(ce, STX_E_NOMEM, "out of memory for the token relevance");
    } else {
        if (e->method == M_LRP)
            st = stx__lrp_create(&sp, &e->lrp);
        else
            st = stx__grad_create(&sp, grad_kind(e->method), &e->grad);
        if (st) return st;
        if (o->reduce == STX_REDUCE_NONE && e->method != M_SWAG) {
            memcpy(ms, e->mshape, sizeof(int64_t) * (size_t)e->mrank);
            mr = e->mrank;
        } else if (e->nct) {
            mr = 2; /* (N, T) */
        }
        e->raw = stx__malloc(e->ctx, sizeof(float) * (size_t)(e->N * e->sample_numel));
        e->tot_attr = dalloc(e, e->N);
        e->tot_expect = dalloc(e, e->N);
        e->up = dalloc(e, e->T * e->H * e->W);
        if (!e->raw || !e->tot_attr || !e->tot_expect || !e->up)
            return stx__errf(ce, STX_E_NOMEM, "out of memory for the attribution");
        if (e->method == M_SWAG) {
            stx_status sst = stx__slic_plan(e->ctx, e->T, e->H, e->W, e->C, o->n_segments,
                                            o->compactness, &e->slic, ce);
            if (sst) return sst;
            stx_model_facts f;
            stx_model_facts_get(e->m, &f);
            e->slic_norm = f.has_normalization && e->C == 3;
            for (int c = 0; c < 3; c++) {
                e->slic_scale[c] = (double)f.std[c];
                e->slic_shift[c] = (double)f.mean[c];
            }
            e->seg = stx__malloc(e->ctx, sizeof(int32_t) * (size_t)(e->T * e->H * e->W));
            e->w = dalloc(e, e->slic.kmax);
            e->scores = dalloc(e, e->slic.kmax);
            if (!e->seg || !e->w || !e->scores)
                return stx__errf(ce, STX_E_NOMEM, "out of memory for the supervoxels");
        }
    }
    e->targets = stx__calloc(e->ctx, (size_t)e->N, sizeof(int64_t));
    e->frames = stx__calloc(e->ctx, (size_t)e->N, sizeof(int64_t));
    e->map = stx__tensor_new(e->ctx, STX_DTYPE_FLOAT, ms, mr);
    if (!e->targets || !e->frames || !e->map)
        return stx__errf(ce, STX_E_NOMEM, "out of memory for the map");
    return STX_OK;
}

stx_status stx_explainer_create(stx_model *m, const stx_explain_options *opt,
                                const int64_t *input_shape, int rank, stx_explainer **out) {
    if (!m || !out || !input_shape) return STX_E_INVALID;
    *out = NULL;
    stx_context *ctx = m->ctx;
    stx_err *ce = &ctx->err;
    stx_explainer *e = stx__calloc(ctx, 1, sizeof *e);
    if (!e) return stx__errf(ce, STX_E_NOMEM, "out of memory");
    e->m = m;
    e->ctx = ctx;
    e->o = opt ? *opt : stx_explain_options_default();
    stx_explain_options *o = &e->o;
    stx_session *probe = NULL;
    stx_status st = STX_OK;
    char sb[128];

    /* method */
    const char *meth = o->method ? o->method : "gradcam";
    e->method = -1;
    for (int i = 0; method_names[i]; i++)
        if (strcmp(meth, method_names[i]) == 0) e->method = i;
    if (e->method < 0) {
        char list[512];
        size_t q = 0;
        for (int i = 0; method_names[i]; i++)
            q +=
                (size_t)snprintf(list + q, sizeof list - q, "%s%s", i ? ", " : "", method_names[i]);
        st = stx__errf(ce, STX_E_INVALID, "unknown method '%s' (known: %s)", meth, list);
        goto fail;
    }
    if (o->batch < 1 || o->batch > 4096) {
        st = stx__errf(ce, STX_E_INVALID, "batch %d out of range [1, 4096]", o->batch);
        goto fail;
    }
    if (o->samples < 0 || o->samples > 100000) {
        st = stx__errf(ce, STX_E_INVALID, "samples %d out of range [0, 100000]", o->samples);
        goto fail;
    }
    if (!(o->noise < 0 || (isfinite(o->noise) && o->noise <= 1e6))) {
        st = stx__errf(ce, STX_E_INVALID, "noise %g is not a finite standard deviation",
                       (double)o->noise);
        goto fail;
    }
    if ((unsigned)o->upsample > STX_UPSAMPLE_NONE || (unsigned)o->score > STX_SCORE_PROB) {
        st = stx__errf(ce, STX_E_INVALID, "invalid upsample or score option");
        goto fail;
    }

    /* input axes */
    stx_model_facts facts;
    stx_model_facts_get(m, &facts); /* malformed keys are simply absent here */
    const char *layout = o->layout ? o->layout : facts.layout ? facts.layout : "NCTHW";
    if (strcmp(layout, "NCTHW") == 0 || strcmp(layout, "NCT") == 0) {
        e->cax = 1;
        e->tax = 2;
        e->nct = layout[3] == '\0';
    } else if (strcmp(layout, "NTCHW") == 0) {
        e->tax = 1;
        e->cax = 2;
    } else {
        st = stx__errf(ce, STX_E_UNSUPPORTED,
                       "explanations need a clip input (layout NCTHW or NTCHW) or a feature "
                       "sequence (NCT), model layout is %s",
                       layout);
        goto fail;
    }
    if (rank != (e->nct ? 3 : 5)) {
        st = stx__errf(ce, STX_E_SHAPE, "input shape %s: expected %d axes (%s)",
                       stx__shape_str(input_shape, rank, sb, sizeof sb), e->nct ? 3 : 5, layout);
        goto fail;
    }
    if (e->nct && !nct_method(e->method)) {
        st = stx__errf(ce, STX_E_UNSUPPORTED,
                       "%s needs a clip input (NCTHW or NTCHW); a feature sequence (NCT) is "
                       "explained by saliency, gradxinput, ig, smoothgrad, smoothgrad-sq, vargrad, "
                       "guided-backprop or deconvnet",
                       method_names[e->method]);
        goto fail;
    }
    for (int k = 0; k < rank; k++) {
        if (input_shape[k] <= 0) {
            st = stx__errf(ce, STX_E_SHAPE, "input shape %s has an empty axis",
                           stx__shape_str(input_shape, rank, sb, sizeof sb));
            goto fail;
        }
        e->shape[k] = e->mshape[k] = input_shape[k];
    }
    e->rank = e->mrank = rank;
    if (e->nct) { /* (N, C, T) is explained as (N, C, T, 1, 1) */
        e->shape[3] = e->shape[4] = 1;
        e->rank = 5;
    }
    e->N = input_shape[0];
    e->T = input_shape[e->tax];
    e->C = input_shape[e->cax];
    e->H = e->shape[3];
    e->W = e->shape[4];
    e->sample_numel = e->T * e->C * e->H * e->W;

    /* output */
    const char *oname = o->output ? o->output : facts.output;
    e->out_index = 0;
    if (oname) {
        e->out_index = -1;
        for (int i = 0; i < stx_model_num_outputs(m); i++)
            if (strcmp(stx_model_output_name(m, i), oname) == 0) e->out_index = i;
        if (e->out_index < 0) {
            st = stx__errf(ce, STX_E_NOTFOUND, "output '%s' not found in the model", oname);
            goto fail;
        }
    }
    e->out_name = stx_model_output_name(m, e->out_index);
    if (dense_method(e->method)) {
        st = create_dense(e);
        if (st) goto fail;
        *out = e;
        return STX_OK;
    }
    if (layer_free(e->method)) {
        st = create_perturb(e);
        if (st) goto fail;
        *out = e;
        return STX_OK;
    }
    if (o->precision != STX_PRECISION_FP32) {
        st = stx__errf(ce, STX_E_UNSUPPORTED,
                       "%s: precision bf16 is for the perturbation and gradient methods only "
                       "(the CAM family runs in fp32)",
                       method_names[e->method]);
        goto fail;
    }

    /* probe plan: shapes of every tensor, for the layer and the token grid */
    stx_session_options po = stx_session_options_default();
    po.use_dnnl = 0;
    po.fuse = 0;
    po.num_threads = o->num_threads;
    st = stx_session_create(m, &po, e->shape, rank, &probe);
    if (st) goto fail;
    for (int j = 0; j < 3; j++) e->token_grid[j] = o->token_grid[j];
    if (!e->token_grid[0]) {
        if (facts.token_grid[0])
            for (int j = 0; j < 3; j++) e->token_grid[j] = facts.token_grid[j];
        else
            grid_from_embedding(probe, e->token_grid);
    }
    for (int j = 0; j < 3; j++)
        if (e->token_grid[j] < 0) {
            st = stx__errf(ce, STX_E_INVALID, "token grid %d,%d,%d has a negative size",
                           e->token_grid[0], e->token_grid[1], e->token_grid[2]);
            goto fail;
        }

    /* layer */
    const char *lname = o->layer;
    e->how = "given";
    if (!lname && facts.target_layer) {
        lname = facts.target_layer;
        e->how = "metadata";
    }
    const char *tensor = NULL;
    if (lname) {
        st = stx_model_resolve_tensor(m, lname, &tensor);
        if (st) {
            st = stx__errf(ce, STX_E_NOTFOUND,
                           "layer '%s' is neither a tensor nor a module of the model%s", lname,
                           strcmp(e->how, "metadata") == 0 ? " (from stx.target_layer)" : "");
            goto fail;
        }
    } else {
        e->how = "automatic";
        int v = auto_layer(e, probe);
        if (v < 0) {
            st = stx__errf(ce, STX_E_NOTFOUND,
                           "no layer maps to the clip's time and space axes (5-D, frame-batched "
                           "or token tensor): give --layer%s",
                           e->token_grid[0] ? "" : " (and --token-grid for transformers)");
            goto fail;
        }
        tensor = m->g.values[v].name;
    }
    e->layer = stx__strdup(ctx, tensor);
    if (!e->layer) {
        st = stx__errf(ce, STX_E_NOMEM, "out of memory");
        goto fail;
    }
    e->module = lname && strcmp(lname, tensor) != 0 ? lname : module_of(m, tensor);
    {
        int v = stx__session_lookup(probe, tensor);
        const stx_tensor *t = v >= 0 ? &probe->vals[v] : NULL;
        if (!t || probe->kind[v] != STX_VK_RUNTIME) {
            st =
                stx__errf(ce, STX_E_INVALID,
                          "layer '%s' (tensor '%s') is not computed from the input", lname, tensor);
            goto fail;
        }
        if (t->dtype != STX_DTYPE_FLOAT || !classify(e, t->dims, t->rank, &e->lv)) {
            st = stx__errf(
                ce, STX_E_SHAPE,
                "layer '%s' (tensor '%s') has shape %s, which maps to neither (N, C, T', H', W'), "
                "frames (N*T, C, H', W') nor tokens of a %dx%dx%d grid%s",
                lname ? lname : tensor, tensor, stx__shape_str(t->dims, t->rank, sb, sizeof sb),
                e->token_grid[0], e->token_grid[1], e->token_grid[2],
                e->token_grid[0] ? "" : " (give --token-grid T,H,W for token tensors)");
            goto fail;
        }
    }
    stx_session_free(probe);
    probe = NULL;
    if (e->method == M_EIGENCAM && e->lv.K > 8192) {
        st = stx__errf(ce, STX_E_UNSUPPORTED, "eigencam: layer '%s' has %lld channels (max 8192)",
                       e->layer, (long long)e->lv.K);
        goto fail;
    }

    /* sessions */
    const char *names[2] = {e->layer, NULL};
    stx_session_options so = stx_session_options_default();
    so.num_threads = o->num_threads;
    if (uses_grad(e->method)) {
        so.grad_wrt = names;
        so.grad_output = e->out_index;
    } else {
        so.keep = names;
    }
    st = stx_session_create(m, &so, e->shape, rank, &e->main);
    if (st) goto fail;
    int64_t rows_per_sample = 0;
    if (score_family(e->method) || e->method == M_ABLATION) {
        int ns = method_samples(e->method, o->samples);
        rows_per_sample = e->lv.K * ns;
        int64_t b = o->batch < rows_per_sample ? o->batch : rows_per_sample;
        e->B = (int)b;
        int64_t bshape[STX_MAX_RANK];
        memcpy(bshape, e->shape, sizeof bshape);
        bshape[0] = b;
        stx_session_options bo = stx_session_options_default();
        bo.num_threads = o->num_threads;
        if (e->method == M_ABLATION) {
            bo.start_at = e->layer;
            st = stx_session_create(m, &bo, bshape, rank, &e->tail);
            if (st) goto fail;
            if (!stx_session_output(e->tail, e->out_index)->data) {
                st = stx__errf(ce, STX_E_INVALID, "output '%s' does not depend on layer '%s'",
                               e->out_name, e->layer);
                goto fail;
            }
            int64_t ls[STX_MAX_RANK];
            int lr;
            stx_session_tensor_shape(e->tail, e->layer, ls, &lr);
            e->xb = stx__tensor_new(ctx, STX_DTYPE_FLOAT, ls, lr);
        } else {
            st = stx_session_create(m, &bo, bshape, rank, &e->pert);
            if (st) goto fail;
            e->xb = stx__tensor_new(ctx, STX_DTYPE_FLOAT, bshape, rank);
        }
        if (!e->xb) {
            st = stx__errf(ce, STX_E_NOMEM, "out of memory for a batch of %lld inputs",
                           (long long)b);
            goto fail;
        }
    }
    if (e->method == M_SMOOTHPP) {
        e->xnoisy = stx__tensor_new(ctx, STX_DTYPE_FLOAT, e->shape, rank);
        if (!e->xnoisy) {
            st = stx__errf(ce, STX_E_NOMEM, "out of memory");
            goto fail;
        }
    }

    /* buffers */
    int64_t K = e->lv.K, P = e->lv.T * e->lv.H * e->lv.W, THW = e->T * e->H * e->W;
    e->A = dalloc(e, e->N * K * P);
    e->G = dalloc(e, e->N * K * P);
    e->L = dalloc(e, P);
    e->w = dalloc(e, K * e->lv.T);
    e->up = dalloc(e, THW);
    e->tmp = dalloc(e, e->lv.T * e->lv.H * e->W + e->lv.T * e->H * e->W);
    e->scores = dalloc(e, K);
    e->row = dalloc(e, P);
    if (e->method == M_SMOOTHPP) {
        e->D2 = dalloc(e, e->N * K * P);
        e->D3 = dalloc(e, e->N * K * P);
    }
    if (e->method == M_EIGENCAM) e->work = dalloc(e, K * K + 3 * K);
    if (e->method == M_GUIDED_GRADCAM) { /* Grad-CAM at the input's size times guided backprop */
        if (o->upsample == STX_UPSAMPLE_NONE || (unsigned)o->reduce > STX_REDUCE_NONE) {
            st = stx__errf(ce, STX_E_INVALID,
                           "guided-gradcam: the map is at the input's size (upsample trilinear "
                           "or nearest) and reduce must be sum, abs-sum, max-abs, l2 or none");
            goto fail;
        }
        stx_dense_spec sp = dense_spec(e);
        st = stx__grad_create(&sp, STX_GRAD_GUIDED, &e->grad);
        if (st) goto fail;
        e->raw = stx__malloc(ctx, sizeof(float) * (size_t)(e->N * e->sample_numel));
        e->work = dalloc(e, THW);
        if (!e->raw || !e->work) {
            st = stx__errf(ce, STX_E_NOMEM, "out of memory for the guided backpropagation");
            goto fail;
        }
    }
    e->targets = stx__calloc(ctx, (size_t)e->N, sizeof(int64_t));
    e->frames = stx__calloc(ctx, (size_t)e->N, sizeof(int64_t));
    int64_t ms[4] = {e->N, e->T, e->H, e->W};
    if (o->upsample == STX_UPSAMPLE_NONE) {
        ms[1] = e->lv.T;
        ms[2] = e->lv.H;
        ms[3] = e->lv.W;
    }
    if (e->method == M_GUIDED_GRADCAM && o->reduce == STX_REDUCE_NONE)
        e->map = stx__tensor_new(ctx, STX_DTYPE_FLOAT, e->shape, e->rank);
    else
        e->map = stx__tensor_new(ctx, STX_DTYPE_FLOAT, ms, 4);
    if (!e->A || !e->G || !e->L || !e->w || !e->up || !e->tmp || !e->scores || !e->row ||
        !e->targets || !e->frames || !e->map || (e->method == M_SMOOTHPP && (!e->D2 || !e->D3)) ||
        (e->method == M_EIGENCAM && !e->work)) {
        st = stx__errf(ce, STX_E_NOMEM, "out of memory for the explanation buffers");
        goto fail;
    }
    *out = e;
    return STX_OK;
fail:
    stx_session_free(probe);
    stx_explainer_free(e);
    return st;
}

stx_status stx_explainer_layer(const stx_explainer *e, const char **tensor, const char **module,
                               const char **how, int64_t grid[4]) {
    if (!e) return STX_E_INVALID;
    if (tensor) *tensor = e->layer;
    if (module) *module = e->module;
    if (how) *how = e->how;
    if (grid) {
        grid[0] = e->lv.K;
        grid[1] = e->lv.T;
        grid[2] = e->lv.H;
        grid[3] = e->lv.W;
    }
    return STX_OK;
}

const stx_tensor *stx_explainer_output(const stx_explainer *e) {
    return e ? e->out_copy : NULL;
}
const int64_t *stx_explainer_targets(const stx_explainer *e) {
    return e ? e->targets : NULL;
}
stx_status stx_explainer_totals(const stx_explainer *e, const double **attributed,
                                const double **expected) {
    if (!e || !e->have_totals) return STX_E_INVALID;
    if (attributed) *attributed = e->tot_attr;
    if (expected) *expected = e->tot_expect;
    return STX_OK;
}

/* ---- running ----------------------------------------------------------------------------- */

double stx__score_of(const stx_tensor *y, int64_t n, int64_t c, int64_t f, stx_score sc) {
    int64_t K = y->dims[1], inner = 1;
    for (int k = 2; k < y->rank; k++) inner *= y->dims[k];
    const float *d = y->data;
    int64_t t0 = f >= 0 ? f : 0, t1 = f >= 0 ? f + 1 : inner;
    double s = 0;
    for (int64_t t = t0; t < t1; t++) {
        double z = d[(n * K + c) * inner + t];
        if (sc == STX_SCORE_PROB) {
            double mx = -INFINITY, sum = 0;
            for (int64_t k = 0; k < K; k++) mx = fmax(mx, d[(n * K + k) * inner + t]);
            for (int64_t k = 0; k < K; k++) sum += exp(d[(n * K + k) * inner + t] - mx);
            z = exp(z - mx) / sum;
        }
        s += z;
    }
    return s;
}

/* Copies sample n of the layer's tensor into K x P doubles. */
static void gather(const layer_view *lv, const float *src, int64_t n, double *dst) {
    const float *b = src + n * lv->slab + lv->off;
    int64_t P = lv->T * lv->H * lv->W;
    for (int64_t k = 0; k < lv->K; k++)
        for (int64_t t = 0; t < lv->T; t++)
            for (int64_t h = 0; h < lv->H; h++)
                for (int64_t w = 0; w < lv->W; w++)
                    dst[k * P + (t * lv->H + h) * lv->W + w] =
                        b[k * lv->sk + t * lv->st + h * lv->sh + w * lv->sw];
}

static void zero_channel(const layer_view *lv, float *slab, int64_t k) {
    float *b = slab + lv->off + k * lv->sk;
    for (int64_t t = 0; t < lv->T; t++)
        for (int64_t h = 0; h < lv->H; h++)
            for (int64_t w = 0; w < lv->W; w++) b[t * lv->st + h * lv->sh + w * lv->sw] = 0;
}

/* dst = x (one sample) * mask (T x H x W) broadcast over the colour axis. */
static void mask_input(const stx_explainer *e, const float *x, const double *mask, float *dst) {
    int64_t T = e->T, C = e->C, HW = e->H * e->W;
    for (int64_t t = 0; t < T; t++)
        for (int64_t c = 0; c < C; c++) {
            int64_t off = e->tax == 2 ? (c * T + t) * HW : (t * C + c) * HW;
            const double *mk = mask + t * HW;
            for (int64_t i = 0; i < HW; i++) dst[off + i] = (float)((double)x[off + i] * mk[i]);
        }
}

static void upsample_into(stx_explainer *e, const double *L, double *dst, stx_upsample how) {
    const layer_view *lv = &e->lv;
    if (how == STX_UPSAMPLE_NEAREST)
        stx__upsample_nearest(L, lv->T, lv->H, lv->W, dst, e->T, e->H, e->W);
    else
        stx__upsample_trilinear(L, lv->T, lv->H, lv->W, dst, e->T, e->H, e->W, e->tmp);
}

static stx_status progress(stx_explainer *e, int64_t done, int64_t total) {
    if (e->o.progress && e->o.progress(e->o.progress_user, done, total))
        return stx__errf(&e->err, STX_E_CANCELLED, "cancelled after %lld of %lld forwards",
                         (long long)done, (long long)total);
    return STX_OK;
}

static stx_status sess_err(stx_explainer *e, stx_session *s, stx_status st) {
    return stx__errf(&e->err, st, "%s", stx_session_last_error(s));
}

/* After a forward of the main session: the gradient of the targets' scores at the layer. */
static stx_status layer_gradient(stx_explainer *e, const stx_tensor **g) {
    stx_seed sd = stx_seed_default();
    sd.targets = e->targets;
    sd.frames = e->frames;
    sd.score = e->o.score;
    stx_status st = stx_session_backward(e->main, &sd);
    if (st) return sess_err(e, e->main, st);
    *g = stx_session_grad(e->main, e->layer);
    if (!*g) return stx__errf(&e->err, STX_E_INTERNAL, "no gradient at '%s'", e->layer);
    return STX_OK;
}

/* Score-CAM family: the K (x samples) masked forwards of sample n, batched; fills e->scores. */
static stx_status masked_scores(stx_explainer *e, const float *x, int64_t n, stx_rng *rng,
                                int64_t *done, int64_t total) {
    const layer_view *lv = &e->lv;
    int64_t K = lv->K, P = lv->T * lv->H * lv->W, THW = e->T * e->H * e->W;
    int ns = method_samples(e->method, e->o.samples);
    double sigma = e->o.noise >= 0 ? e->o.noise : 2.0;
    int64_t rows = K * ns;
    float *xb = e->xb->data;
    const float *xs = x + n * e->sample_numel;
    for (int64_t k = 0; k < K; k++) e->scores[k] = 0;
    for (int64_t r0 = 0; r0 < rows; r0 += e->B) {
        int64_t nb = rows - r0 < e->B ? rows - r0 : e->B;
        for (int64_t j = 0; j < e->B; j++) {
            float *dst = xb + j * e->sample_numel;
            if (j >= nb) { /* padding rows of the last batch: scores ignored */
                memset(dst, 0, sizeof(float) * (size_t)e->sample_numel);
                continue;
            }
            int64_t r = r0 + j, k = r / ns, i = r % ns;
            stx__cam_minmax(e->A + (n * K + k) * P, P, e->row);
            stx__upsample_trilinear(e->row, lv->T, lv->H, lv->W, e->up, e->T, e->H, e->W, e->tmp);
            if (e->method == M_SSCAM) {
                for (int64_t u = 0; u < THW; u++) e->up[u] += sigma * stx__rng_normal(rng);
            } else if (e->method == M_ISCAM) {
                double beta = (double)(i + 1) * (double)(i + 2) / 2.0 / (double)ns;
                for (int64_t u = 0; u < THW; u++) e->up[u] *= beta;
            }
            mask_input(e, xs, e->up, dst);
        }
        stx_tensor *y;
        stx_status st = stx_session_run(e->pert, e->xb, &y);
        if (st) return sess_err(e, e->pert, st);
        y = stx_session_output(e->pert, e->out_index);
        for (int64_t j = 0; j < nb; j++) {
            int64_t r = r0 + j;
            e->scores[r / ns] += stx__score_of(y, j, e->targets[n], e->frames[n], e->o.score) / ns;
        }
        *done += nb;
        st = progress(e, *done, total);
        if (st) return st;
    }
    return STX_OK;
}

/* Ablation-CAM: the K forwards of the network's tail with one channel of sample n zeroed. */
static stx_status ablation_scores(stx_explainer *e, const float *act, int64_t n, int64_t *done,
                                  int64_t total) {
    const layer_view *lv = &e->lv;
    int64_t K = lv->K;
    float *xb = e->xb->data;
    for (int64_t r0 = 0; r0 < K; r0 += e->B) {
        int64_t nb = K - r0 < e->B ? K - r0 : e->B;
        for (int64_t j = 0; j < e->B; j++) {
            float *dst = xb + j * lv->slab;
            memcpy(dst, act + n * lv->slab, sizeof(float) * (size_t)lv->slab);
            if (j < nb) zero_channel(lv, dst, r0 + j);
        }
        stx_tensor *y;
        stx_status st = stx_session_run(e->tail, e->xb, &y);
        if (st) return sess_err(e, e->tail, st);
        y = stx_session_output(e->tail, e->out_index);
        for (int64_t j = 0; j < nb; j++)
            e->scores[r0 + j] = stx__score_of(y, j, e->targets[n], e->frames[n], e->o.score);
        *done += nb;
        st = progress(e, *done, total);
        if (st) return st;
    }
    return STX_OK;
}

/* Extremal perturbation: per sample, the optimised masks summed over the areas. */
static stx_status run_extremal(stx_explainer *e, const stx_tensor *input, stx_tensor **map) {
    int64_t THW = e->T * e->H * e->W, done = 0;
    stx_extremal_progress pg = {e->o.progress, e->o.progress_user, &done, e->prows * e->N};
    float *out = e->map->data;
    for (int64_t n = 0; n < e->N; n++) {
        const float *xs = (const float *)input->data + n * e->sample_numel;
        stx_status st =
            stx__extremal_run(e->ext, xs, e->targets[n], e->frames[n], &pg, &e->err, e->up);
        if (st) return st;
        for (int64_t u = 0; u < THW; u++) {
            if (!isfinite(e->up[u]))
                return stx__errf(&e->err, STX_E_NUMERIC,
                                 "the extremal map of sample %lld has a non-finite value at %lld",
                                 (long long)n, (long long)u);
            out[n * THW + u] = (float)e->up[u];
        }
    }
    *map = e->map;
    return STX_OK;
}

/* Perturbation methods: per sample, its baseline and the method's map at the input's size. */
static stx_status run_perturb(stx_explainer *e, const stx_tensor *input, stx_tensor **map) {
    if (e->method == M_EXTREMAL) return run_extremal(e, input, map);
    int64_t THW = e->T * e->H * e->W, done = 0;
    const int64_t rows = e->prows;
    stx_perturb p = {.sess = e->pert,
                     .xb = e->xb,
                     .B = e->B,
                     .out_index = e->out_index,
                     .T = e->T,
                     .C = e->C,
                     .H = e->H,
                     .W = e->W,
                     .sample_numel = e->sample_numel,
                     .tax = e->tax,
                     .score = e->o.score,
                     .baseline = e->o.baseline,
                     .baseline_clip = e->bclip,
                     .progress = e->o.progress,
                     .progress_user = e->o.progress_user,
                     .done = &done,
                     .err = &e->err,
                     .scores = e->pscores,
                     .idx = e->pidx,
                     .region = e->region,
                     .win = e->rwin};
    p.total = rows * e->N;
    float *out = e->map->data;
    const float *x = input->data;
    if (e->use_slic) { /* every sample's supervoxels first: their numbers set the forwards */
        const int64_t HW = e->H * e->W;
        const int64_t cs = e->tax == 2 ? e->T * HW : HW, ts = e->tax == 2 ? HW : e->C * HW;
        p.total = 0;
        for (int64_t n = 0; n < e->N; n++) {
            int64_t K =
                stx__slic(&e->slic, x + n * e->sample_numel, cs, ts,
                          e->slic_norm ? e->slic_scale : NULL, e->slic_shift, e->seg + n * THW);
            if (K > e->K)
                return stx__errf(&e->err, STX_E_INVALID,
                                 "%s: slic made %lld supervoxels of sample %lld (n_segments "
                                 "%d): at most 4096 for a regression",
                                 method_names[e->method], (long long)K, (long long)n,
                                 e->o.n_segments);
            e->Kn[n] = K;
            p.total += stx__segment_rows(e->method - M_KERNELSHAP, K, e->seg_samples);
        }
    }
    stx_rng rng;
    stx__rng_seed(&rng, e->o.seed);
    for (int64_t n = 0; n < e->N; n++) {
        const float *xs = x + n * e->sample_numel;
        p.target = e->targets[n];
        p.frame = e->frames[n];
        stx_status st = stx__perturb_baseline(&p, xs, e->base, e->tmp, &rng);
        if (st) return st;
        if (segment_method(e->method)) {
            const int32_t *seg = e->use_slic ? e->seg + n * THW : e->seg;
            st = stx__segments(&p, e->method - M_KERNELSHAP, xs, e->base, seg,
                               e->use_slic ? e->Kn[n] : e->K, e->seg_samples,
                               (double)e->o.kernel_width, &rng, e->Z, e->scores, e->work, e->up);
        } else if (e->method == M_RISE) {
            st = stx__rise(&p, xs, e->base, (int)rows, e->cells, (double)e->o.p, &rng, e->up,
                           e->work);
        } else if (e->method == M_AOSA) {
            double s0 = stx__score_of(e->out_copy, n, p.target, p.frame, e->o.score);
            st = stx__aosa(&p, xs, e->base, e->o.aosa_stride, e->o.aosa_crop, e->o.aosa_stack, s0,
                           e->up, e->work);
        } else {
            double s0 = stx__score_of(e->out_copy, n, p.target, p.frame, e->o.score);
            st = stx__occlusion(&p, xs, e->base, e->win, e->str, s0, e->up, e->row);
        }
        if (st) return st;
        for (int64_t u = 0; u < THW; u++) {
            if (!isfinite(e->up[u]))
                return stx__errf(&e->err, STX_E_NUMERIC,
                                 "the %s map of sample %lld has a non-finite value at %lld",
                                 method_names[e->method], (long long)n, (long long)u);
            out[n * THW + u] = (float)e->up[u];
        }
    }
    *map = e->map;
    return STX_OK;
}

/* Sample n's map (mapP values) into out, refusing non-finite values. */
static stx_status store_map(stx_explainer *e, int64_t n, const double *res, int64_t mapP,
                            float *out) {
    for (int64_t u = 0; u < mapP; u++) {
        if (!isfinite(res[u]))
            return stx__errf(&e->err, STX_E_NUMERIC,
                             "the %s map of sample %lld has a non-finite value at %lld",
                             method_names[e->method], (long long)n, (long long)u);
        out[n * mapP + u] = (float)res[u];
    }
    return STX_OK;
}

/* Offset of the (channel c, frame t) plane in one input sample. */
static int64_t plane_of(const stx_explainer *e, int64_t c, int64_t t) {
    int64_t HW = e->H * e->W;
    return e->tax == 2 ? (c * e->T + t) * HW : (t * e->C + c) * HW;
}

/* Sample a (the input's layout) reduced over the colour channels into dst (T*H*W). */
static void reduce_channels(const stx_explainer *e, const float *a, stx_reduce how, double *dst) {
    int64_t HW = e->H * e->W;
    for (int64_t t = 0; t < e->T; t++)
        for (int64_t u = 0; u < HW; u++) {
            double r = 0;
            for (int64_t c = 0; c < e->C; c++)
                r = stx__reduce_add(r, a[plane_of(e, c, t) + u], how);
            dst[t * HW + u] = stx__reduce_end(r, how);
        }
}

/* SWAG-V: the mean of the saliency (|gradient| summed over channels, in map) over each of the
 * sample's supervoxels, painted back to its voxels. */
static void swag_map(stx_explainer *e, const float *x, double *map) {
    const int64_t HW = e->H * e->W, THW = e->T * HW;
    const int64_t cs = e->tax == 2 ? e->T * HW : HW, ts = e->tax == 2 ? HW : e->C * HW;
    int64_t K =
        stx__slic(&e->slic, x, cs, ts, e->slic_norm ? e->slic_scale : NULL, e->slic_shift, e->seg);
    memset(e->w, 0, sizeof(double) * (size_t)K);
    memset(e->scores, 0, sizeof(double) * (size_t)K);
    for (int64_t u = 0; u < THW; u++) {
        e->w[e->seg[u]] += map[u];
        e->scores[e->seg[u]] += 1;
    }
    for (int64_t u = 0; u < THW; u++) map[u] = e->w[e->seg[u]] / e->scores[e->seg[u]];
}

/* Dense methods: the attribution (or token relevance) of the whole batch, then per sample its
 * reduction (or upsampling) into the map. */
static stx_status run_dense(stx_explainer *e, const stx_tensor *input, stx_tensor **map) {
    const int64_t THW = e->T * e->H * e->W;
    float *out = e->map->data;
    stx_status st;
    e->have_totals = false;
    if (e->attn) {
        const layer_view *lv = &e->lv;
        int64_t P = lv->T * lv->H * lv->W, mapP = stx__numel(e->map->dims, 4) / e->N;
        st = stx__attn_run(e->attn, input, e->targets, e->frames, &e->err, e->L);
        if (st) return st;
        for (int64_t n = 0; n < e->N; n++) {
            const double *res = e->L + n * P;
            if (e->o.upsample != STX_UPSAMPLE_NONE) {
                upsample_into(e, res, e->up, e->o.upsample);
                res = e->up;
            }
            st = store_map(e, n, res, mapP, out);
            if (st) return st;
        }
        *map = e->map;
        return STX_OK;
    }
    if (e->lrp)
        st = stx__lrp_run(e->lrp, input, e->targets, e->frames, &e->err, e->raw, e->tot_expect,
                          e->tot_attr);
    else
        st = stx__grad_run(e->grad, input, e->targets, e->frames, e->bclip, &e->err, e->raw,
                           e->tot_attr);
    if (st) return st;
    if (e->method == M_IG) { /* completeness: f(x) - f(baseline), one forward of the baselines */
        stx_tensor *bt = stx__tensor_view(e->ctx, STX_DTYPE_FLOAT, e->mshape, e->mrank,
                                          (void *)stx__grad_baselines(e->grad));
        if (!bt) return stx__errf(&e->err, STX_E_NOMEM, "out of memory");
        st = stx_session_run(e->main, bt, NULL);
        stx_tensor_free(bt);
        if (st) return sess_err(e, e->main, st);
        const stx_tensor *yb = stx_session_output(e->main, e->out_index);
        for (int64_t n = 0; n < e->N; n++)
            e->tot_expect[n] =
                stx__score_of(e->out_copy, n, e->targets[n], e->frames[n], e->o.score) -
                stx__score_of(yb, n, e->targets[n], e->frames[n], e->o.score);
    }
    e->have_totals = e->method == M_IG || e->method == M_LRP;
    for (int64_t n = 0; n < e->N; n++)
        for (int64_t i = 0; i < e->sample_numel; i++)
            if (!isfinite(e->raw[n * e->sample_numel + i]))
                return stx__errf(&e->err, STX_E_NUMERIC,
                                 "the %s attribution of sample %lld has a non-finite value at "
                                 "input element %lld",
                                 method_names[e->method], (long long)n, (long long)i);
    if (e->o.reduce == STX_REDUCE_NONE && e->method != M_SWAG) {
        memcpy(out, e->raw, sizeof(float) * (size_t)(e->N * e->sample_numel));
        *map = e->map;
        return STX_OK;
    }
    for (int64_t n = 0; n < e->N; n++) {
        const float *xs = (const float *)input->data + n * e->sample_numel;
        if (e->method == M_SWAG) {
            reduce_channels(e, e->raw + n * e->sample_numel, STX_REDUCE_ABS_SUM, e->up);
            swag_map(e, xs, e->up);
        } else {
            reduce_channels(e, e->raw + n * e->sample_numel, e->o.reduce, e->up);
        }
        for (int64_t u = 0; u < THW; u++) out[n * THW + u] = (float)e->up[u];
    }
    *map = e->map;
    return STX_OK;
}

stx_status stx_explainer_run(stx_explainer *e, const stx_tensor *input, const int64_t *targets,
                             const int64_t *frames, stx_tensor **map) {
    if (!e || !input || !map) return STX_E_INVALID;
    *map = NULL;
    stx_status st = stx_session_run(e->main, input, NULL);
    if (st) return sess_err(e, e->main, st);
    const stx_tensor *y = stx_session_output(e->main, e->out_index);
    if (y->rank < 2 || y->dtype != STX_DTYPE_FLOAT || y->dims[0] != e->N) {
        char sb[128];
        return stx__errf(&e->err, STX_E_SHAPE,
                         "output '%s' has shape %s: class scores need float32 (N, K[, T])",
                         e->out_name, stx__shape_str(y->dims, y->rank, sb, sizeof sb));
    }
    int64_t Kc = y->dims[1], inner = 1;
    for (int k = 2; k < y->rank; k++) inner *= y->dims[k];
    stx_tensor_free(e->out_copy);
    e->out_copy = stx__tensor_clone(e->ctx, y);
    if (!e->out_copy) return stx__errf(&e->err, STX_E_NOMEM, "out of memory");
    for (int64_t n = 0; n < e->N; n++) {
        int64_t f = frames ? frames[n] : -1, c = targets ? targets[n] : -1;
        if (f < -1 || f >= inner || (inner == 1 && f > 0))
            return stx__errf(&e->err, STX_E_INVALID,
                             "frame %lld out of range: output '%s' has %lld frame(s)", (long long)f,
                             e->out_name, (long long)inner);
        if (c < -1 || c >= Kc)
            return stx__errf(&e->err, STX_E_INVALID, "target class %lld out of range [0, %lld)",
                             (long long)c, (long long)Kc);
        if (c < 0) { /* top class of the frame, or of the scores summed over frames */
            double best = -INFINITY;
            for (int64_t k = 0; k < Kc; k++) {
                double s = stx__score_of(y, n, k, f, STX_SCORE_LOGIT);
                if (s > best) {
                    best = s;
                    c = k;
                }
            }
        }
        e->targets[n] = c;
        e->frames[n] = f;
    }
    if (dense_method(e->method)) return run_dense(e, input, map);
    if (layer_free(e->method)) return run_perturb(e, input, map);
    const layer_view *lv = &e->lv;
    int64_t K = lv->K, P = lv->T * lv->H * lv->W, NKP = e->N * K * P;
    const stx_tensor *act = stx_session_value(e->main, e->layer);
    if (!act) return stx__errf(&e->err, STX_E_INTERNAL, "layer '%s' not observable", e->layer);
    for (int64_t n = 0; n < e->N; n++) gather(lv, act->data, n, e->A + n * K * P);
    if (uses_grad(e->method)) {
        const stx_tensor *g;
        st = layer_gradient(e, &g);
        if (st) return st;
        for (int64_t n = 0; n < e->N; n++) gather(lv, g->data, n, e->G + n * K * P);
    }
    if (e->method == M_SMOOTHPP) {
        int ns = method_samples(e->method, e->o.samples);
        double sigma = e->o.noise >= 0 ? e->o.noise : 0.3;
        stx_rng rng;
        stx__rng_seed(&rng, e->o.seed);
        memset(e->G, 0, sizeof(double) * (size_t)NKP);
        memset(e->D2, 0, sizeof(double) * (size_t)NKP);
        memset(e->D3, 0, sizeof(double) * (size_t)NKP);
        const float *x = input->data;
        float *xn = e->xnoisy->data;
        int64_t tot = e->N * e->sample_numel;
        for (int i = 0; i < ns; i++) {
            for (int64_t j = 0; j < tot; j++)
                xn[j] = (float)((double)x[j] + sigma * stx__rng_normal(&rng));
            st = stx_session_run(e->main, e->xnoisy, NULL);
            if (st) return sess_err(e, e->main, st);
            const stx_tensor *g;
            st = layer_gradient(e, &g);
            if (st) return st;
            /* accumulate the moments D1, D2, D3 (D1 in e->G) */
            for (int64_t n = 0; n < e->N; n++) {
                const float *gb = (const float *)g->data;
                double *g1 = e->G + n * K * P, *g2 = e->D2 + n * K * P, *g3 = e->D3 + n * K * P;
                const float *b = gb + n * lv->slab + lv->off;
                for (int64_t k = 0; k < K; k++)
                    for (int64_t t = 0; t < lv->T; t++)
                        for (int64_t h = 0; h < lv->H; h++)
                            for (int64_t w = 0; w < lv->W; w++) {
                                double v = b[k * lv->sk + t * lv->st + h * lv->sh + w * lv->sw];
                                int64_t u = k * P + (t * lv->H + h) * lv->W + w;
                                g1[u] += v / ns;
                                g2[u] += v * v / ns;
                                g3[u] += v * v * v / ns;
                            }
            }
            st = progress(e, i + 1, ns);
            if (st) return st;
        }
    }
    if (e->method == M_GUIDED_GRADCAM) {
        st = stx__grad_run(e->grad, input, e->targets, e->frames, NULL, &e->err, e->raw, NULL);
        if (st) return st;
    }
    /* per-sample perturbation scores and maps */
    int64_t done = 0, total = 0;
    if (score_family(e->method)) {
        int ns = method_samples(e->method, e->o.samples);
        total = e->N * K * ns;
    } else if (e->method == M_ABLATION) {
        total = e->N * K;
    }
    stx_rng rng;
    stx__rng_seed(&rng, e->o.seed);
    /* the clean input and activations stay valid: the perturbation runs use other sessions */
    float *out = e->map->data;
    int64_t mapP = e->map->dims[1] * e->map->dims[2] * e->map->dims[3];
    for (int64_t n = 0; n < e->N; n++) {
        stx_cam_maps cm = {K, lv->T, lv->H, lv->W, e->A + n * K * P, e->G + n * K * P};
        double base = stx__score_of(e->out_copy, n, e->targets[n], e->frames[n], e->o.score);
        switch (e->method) {
        case M_CAM:
            stx__cam_cam(&cm, e->w, e->L);
            break;
        case M_GRADCAM:
        case M_GUIDED_GRADCAM:
            stx__cam_gradcam(&cm, e->w, e->L);
            break;
        case M_GRADCAM_FRAME:
            stx__cam_gradcam_frame(&cm, e->w, e->L);
            break;
        case M_GRADCAMPP:
            stx__cam_gradcampp(&cm, cm.G, NULL, NULL, e->w, e->L);
            break;
        case M_SMOOTHPP:
            stx__cam_gradcampp(&cm, cm.G, e->D2 + n * K * P, e->D3 + n * K * P, e->w, e->L);
            break;
        case M_XGRADCAM:
            stx__cam_xgradcam(&cm, e->w, e->L);
            break;
        case M_LAYERCAM:
            stx__cam_layercam(&cm, e->L);
            break;
        case M_HIRESCAM:
            stx__cam_hirescam(&cm, e->L);
            break;
        case M_EIGENCAM:
            stx__cam_eigen(&cm, e->work, e->L);
            break;
        case M_ABLATION:
            if (base == 0)
                return stx__errf(&e->err, STX_E_NUMERIC,
                                 "ablationcam: the target score of sample %lld is 0, so the "
                                 "weights (y - y_k) / y are undefined (try --score prob)",
                                 (long long)n);
            st = ablation_scores(e, act->data, n, &done, total);
            if (st) return st;
            stx__cam_ablation(&cm, e->scores, base, e->w, e->L);
            break;
        default: /* Score-CAM family */
            st = masked_scores(e, input->data, n, &rng, &done, total);
            if (st) return st;
            stx__cam_from_scores(&cm, e->scores, base, e->w, e->L);
            break;
        }
        const double *res = e->L;
        if (e->o.upsample != STX_UPSAMPLE_NONE) {
            upsample_into(e, e->L, e->up, e->o.upsample);
            res = e->up;
        }
        if (e->method == M_GUIDED_GRADCAM) { /* guided backprop times the upsampled map */
            float *gb = e->raw + n * e->sample_numel;
            int64_t HW = e->H * e->W;
            for (int64_t c = 0; c < e->C; c++)
                for (int64_t t = 0; t < e->T; t++)
                    for (int64_t u = 0; u < HW; u++)
                        gb[plane_of(e, c, t) + u] *= (float)res[t * HW + u];
            if (e->o.reduce == STX_REDUCE_NONE) {
                for (int64_t i = 0; i < e->sample_numel; i++)
                    if (!isfinite(gb[i]))
                        return stx__errf(&e->err, STX_E_NUMERIC,
                                         "the guided-gradcam map of sample %lld has a non-finite "
                                         "value at input element %lld",
                                         (long long)n, (long long)i);
                memcpy(out + n * e->sample_numel, gb, sizeof(float) * (size_t)e->sample_numel);
                continue;
            }
            reduce_channels(e, gb, e->o.reduce, e->work);
            res = e->work;
        }
        st = store_map(e, n, res, mapP, out);
        if (st) return st;
    }
    *map = e->map;
    return STX_OK;
}
