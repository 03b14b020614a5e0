/* metrics.c: how good an explanation map is (definitions: docs/metrics.md).
 *
 * Faithfulness runs the model on perturbed copies of each sample through the perturbation
 * runner of src/explain/perturb.c: a session planned once for batches of B rows, rows numbered
 * in one fixed order (deletion points 0..n, insertion points 0..n, then the average-drop row),
 * each row's content a function of its number only, the last batch padded with clean copies
 * whose scores are ignored. The voxels (or cells) are ranked once per sample (decreasing map
 * value, ties by position), so nothing here depends on B. The engine's arithmetic could: a single
 * row takes other oneDNN kernels, and from 16 rows oneDNN may switch to minibatch-blocked kernels
 * whose sums round differently; so every forward runs between 2 and MAX_ROWS rows, where each row
 * gets the same bits whatever the batch (docs/metrics.md).
 *
 * Localisation and sparsity read the map, the mask and the decisive frames only.
 */
#include "../explain/explain.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows per perturbed forward at most (see above). */
#define MAX_ROWS 8

enum {
    MT_DELETION,
    MT_INSERTION,
    MT_AVG_DROP,
    MT_CONF_INCREASE,
    MT_POINTING,
    MT_POINTING_FRAME,
    MT_ENERGY,
    MT_IOU,
    MT_MASS,
    MT_RANK,
    MT_TOPK,
    MT_TEMPORAL,
    MT_TEMPORAL_POINTING,
    MT_SPARSITY,
    MT_COMPLEXITY,
    MT_COUNT
};

static const char *const metric_names[] = {"deletion",
                                           "insertion",
                                           "avg_drop",
                                           "conf_increase",
                                           "pointing",
                                           "pointing_frame",
                                           "energy",
                                           "iou",
                                           "mass",
                                           "rank",
                                           "topk",
                                           "temporal",
                                           "temporal_pointing",
                                           "sparsity",
                                           "complexity",
                                           NULL};

static bool needs_model(int k) {
    return k <= MT_CONF_INCREASE;
}
static bool needs_mask(int k) {
    return k >= MT_POINTING && k <= MT_TOPK;
}
static bool needs_events(int k) {
    return k == MT_TEMPORAL || k == MT_TEMPORAL_POINTING;
}

const char *const *stx_metric_names(void) {
    return metric_names;
}

/* A voxel's value and position, for the ranking. */
typedef struct ranked {
    double v;
    int64_t i;
} ranked;

struct stx_evaluator {
    stx_context *ctx;
    stx_model *m;
    stx_err err;
    stx_metrics_options o;
    int n_metrics;
    int which[MT_COUNT]; /* the metrics asked, in order */
    bool want[MT_COUNT];
    bool faith, need_mask, need_events;
    int64_t shape[STX_MAX_RANK];
    int rank;
    int64_t N, C, T, H, W, P, sample_numel;
    int tax, cax;
    int64_t cs, ts; /* strides of a channel and of a frame in one sample */
    int out_index;
    stx_session *clean, *pert;
    stx_tensor *xb;
    int B;
    int64_t L;     /* points per curve */
    int64_t *cuts; /* L: units (voxels or cells) changed at each point */
    int64_t U;     /* units: P voxels, or the cells */
    /* cells (o.cells): the cell of every voxel, voxels per cell, the cells' mean map values and
     * ranks; forder: the voxels by their cell's rank (== order without cells); vcut: L voxel
     * counts of the first cuts[i] cells */
    int64_t *cell_of, *cell_n, *cell_pos, *forder, *vcut;
    double *cell_v;
    int64_t rows; /* perturbed forwards per sample */
    float *base_del, *base_ins, *bclip;
    double *tmp, *scores, *emap;
    int64_t *idx;
    ranked *rank_buf;
    int64_t *order; /* P: voxels by decreasing map value */
    uint8_t *gt;    /* N * P */
    uint8_t *ev;    /* N * T */
};

stx_metrics_options stx_metrics_options_default(void) {
    stx_metrics_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.score = STX_SCORE_PROB;
    o.batch = 16;
    o.steps = 20;
    o.curve = STX_CURVE_TORCHCAM;
    o.baseline = STX_BASELINE_ZERO;
    o.insertion_baseline = -1;
    o.tolerance = 0;
    o.iou_threshold = 0.5;
    o.iou_top = 0;
    o.top_k = 1000;
    return o;
}

const char *stx_evaluator_last_error(const stx_evaluator *ev) {
    return ev ? ev->err.msg : "";
}

void stx_evaluator_free(stx_evaluator *ev) {
    if (!ev) return;
    stx_context *ctx = ev->ctx;
    stx_session_free(ev->clean);
    stx_session_free(ev->pert);
    stx_tensor_free(ev->xb);
    stx__free(ctx, ev->cuts);
    stx__free(ctx, ev->cell_of);
    stx__free(ctx, ev->cell_n);
    stx__free(ctx, ev->cell_pos);
    if (ev->forder != ev->order) stx__free(ctx, ev->forder);
    stx__free(ctx, ev->vcut);
    stx__free(ctx, ev->cell_v);
    stx__free(ctx, ev->base_del);
    stx__free(ctx, ev->base_ins);
    stx__free(ctx, ev->bclip);
    stx__free(ctx, ev->tmp);
    stx__free(ctx, ev->scores);
    stx__free(ctx, ev->emap);
    stx__free(ctx, ev->idx);
    stx__free(ctx, ev->rank_buf);
    stx__free(ctx, ev->order);
    stx__free(ctx, ev->gt);
    stx__free(ctx, ev->ev);
    stx__free(ctx, ev);
}

/* Parses the comma-separated metric list into ev->which. */
static stx_status parse_metrics(stx_evaluator *ev, const char *list, stx_err *ce) {
    const char *p = list ? list : "deletion,insertion";
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        int k = -1;
        for (int i = 0; metric_names[i]; i++)
            if (strlen(metric_names[i]) == len && strncmp(p, metric_names[i], len) == 0) k = i;
        if (k < 0) {
            char known[512];
            size_t q = 0;
            for (int i = 0; metric_names[i]; i++)
                q += (size_t)snprintf(known + q, sizeof known - q, "%s%s", i ? ", " : "",
                                      metric_names[i]);
            return stx__errf(ce, STX_E_INVALID, "unknown metric '%.*s' (known: %s)",
                             (int)(len > 64 ? 64 : len), p, known);
        }
        if (!ev->want[k]) {
            ev->want[k] = true;
            ev->which[ev->n_metrics++] = k;
        }
        if (!end) break;
        p = end + 1;
    }
    return STX_OK;
}

/* The step schedule: L points, cuts[i] voxels changed at point i. */
static int64_t schedule(const stx_metrics_options *o, int64_t P, int64_t *cuts) {
    int64_t n;
    if (o->curve == STX_CURVE_LINSPACE) {
        n = o->step_voxels > 0 ? (P + o->step_voxels - 1) / o->step_voxels : o->steps;
        if (n > P) n = P;
        if (cuts)
            for (int64_t i = 0; i <= n; i++) cuts[i] = i * P / n;
        return n + 1;
    }
    int64_t s = o->step_voxels > 0 ? o->step_voxels : (P + o->steps - 1) / o->steps;
    if (s < 1) s = 1;
    n = (P + s - 1) / s;
    if (cuts)
        for (int64_t i = 0; i <= n; i++) cuts[i] = i * s < P ? i * s : P;
    return n + 1;
}

static stx_status check_options(const stx_metrics_options *o, stx_err *ce) {
    if (o->batch < 1 || o->batch > 4096)
        return stx__errf(ce, STX_E_INVALID, "batch %d out of range [1, 4096]", o->batch);
    if (o->steps < 1 || o->steps > 1000000)
        return stx__errf(ce, STX_E_INVALID, "steps %d out of range [1, 1000000]", o->steps);
    if (o->step_voxels < 0)
        return stx__errf(ce, STX_E_INVALID, "step voxels %lld must be >= 0 (0: use steps)",
                         (long long)o->step_voxels);
    if ((unsigned)o->curve > STX_CURVE_LINSPACE)
        return stx__errf(ce, STX_E_INVALID, "unknown curve convention %d", (int)o->curve);
    if ((unsigned)o->score > STX_SCORE_PROB)
        return stx__errf(ce, STX_E_INVALID, "unknown score %d", (int)o->score);
    if ((unsigned)o->baseline > STX_BASELINE_CLIP ||
        (o->insertion_baseline != -1 && (unsigned)o->insertion_baseline > STX_BASELINE_CLIP))
        return stx__errf(ce, STX_E_INVALID, "unknown baseline %d (insertion %d)", (int)o->baseline,
                         o->insertion_baseline);
    if (!(o->tolerance >= 0 && o->tolerance <= 4096))
        return stx__errf(ce, STX_E_INVALID, "tolerance %g px out of range [0, 4096]", o->tolerance);
    if (!(o->iou_threshold >= 0 && o->iou_threshold <= 1))
        return stx__errf(ce, STX_E_INVALID, "iou threshold %g out of range [0, 1]",
                         o->iou_threshold);
    if (!(o->iou_top >= 0 && o->iou_top <= 1))
        return stx__errf(ce, STX_E_INVALID, "iou top fraction %g out of range [0, 1]", o->iou_top);
    for (int a = 0; a < 3; a++)
        if (o->cells[a] < 0 || o->cells[a] > 1 << 20)
            return stx__errf(ce, STX_E_INVALID, "cells %d,%d,%d: each must be >= 0 (0: voxels)",
                             o->cells[0], o->cells[1], o->cells[2]);
    if (o->least_first != 0 && o->least_first != 1)
        return stx__errf(ce, STX_E_INVALID, "least_first %d must be 0 (MoRF) or 1 (LeRF)",
                         o->least_first);
    if (o->top_k < 1)
        return stx__errf(ce, STX_E_INVALID, "top-k %lld must be >= 1 voxel", (long long)o->top_k);
    return STX_OK;
}

/* Axes of the input from the layout, and the output index (models only). */
static stx_status model_axes(stx_evaluator *ev, const int64_t *shape, int rank, stx_err *ce) {
    stx_model_facts facts;
    stx_model_facts_get(ev->m, &facts); /* malformed keys are simply absent */
    const char *layout = ev->o.layout ? ev->o.layout : facts.layout ? facts.layout : "NCTHW";
    if (strcmp(layout, "NCTHW") == 0) {
        ev->cax = 1, ev->tax = 2;
    } else if (strcmp(layout, "NTCHW") == 0) {
        ev->tax = 1, ev->cax = 2;
    } else {
        return stx__errf(ce, STX_E_UNSUPPORTED,
                         "metrics need a clip input (layout NCTHW or NTCHW), model layout is %s",
                         layout);
    }
    char sb[128];
    if (rank != 5)
        return stx__errf(ce, STX_E_SHAPE, "input shape %s: expected 5 axes (%s)",
                         stx__shape_str(shape, rank, sb, sizeof sb), layout);
    const char *oname = ev->o.output ? ev->o.output : facts.output;
    ev->out_index = 0;
    if (oname) {
        ev->out_index = -1;
        for (int i = 0; i < stx_model_num_outputs(ev->m); i++)
            if (strcmp(stx_model_output_name(ev->m, i), oname) == 0) ev->out_index = i;
        if (ev->out_index < 0)
            return stx__errf(ce, STX_E_NOTFOUND, "output '%s' not found in the model", oname);
    }
    ev->N = shape[0];
    ev->T = shape[ev->tax];
    ev->C = shape[ev->cax];
    ev->H = shape[3];
    ev->W = shape[4];
    ev->cs = ev->tax == 2 ? ev->T * ev->H * ev->W : ev->H * ev->W;
    ev->ts = ev->tax == 2 ? ev->H * ev->W : ev->C * ev->H * ev->W;
    return STX_OK;
}

static stx_status copy_baseline_clip(stx_evaluator *ev, stx_err *ce) {
    const stx_tensor *b = ev->o.baseline_clip;
    bool used =
        ev->o.baseline == STX_BASELINE_CLIP || ev->o.insertion_baseline == STX_BASELINE_CLIP;
    ev->o.baseline_clip = NULL; /* copied, not kept */
    if (!used) return STX_OK;
    char sb[128], xb[128];
    bool ok = b && b->dtype == STX_DTYPE_FLOAT && stx__numel(b->dims, b->rank) == ev->sample_numel;
    if (ok) { /* one sample's axes, with or without a leading 1 */
        int off = b->rank == 5 ? 1 : 0;
        ok = b->rank == 4 + off && (!off || b->dims[0] == 1);
        for (int k = 1; ok && k < 5; k++) ok = b->dims[k - 1 + off] == ev->shape[k];
    }
    if (!ok)
        return stx__errf(ce, STX_E_SHAPE,
                         "baseline clip %s %s must be float32 with one sample's shape %s",
                         b ? stx_dtype_name(b->dtype) : "(none)",
                         b ? stx__shape_str(b->dims, b->rank, sb, sizeof sb) : "",
                         stx__shape_str(ev->shape + 1, 4, xb, sizeof xb));
    for (int64_t i = 0; i < ev->sample_numel; i++)
        if (!isfinite(((const float *)b->data)[i]))
            return stx__errf(ce, STX_E_NUMERIC, "baseline clip: non-finite value at %lld",
                             (long long)i);
    ev->bclip = stx__malloc(ev->ctx, sizeof(float) * (size_t)ev->sample_numel);
    if (!ev->bclip) return stx__errf(ce, STX_E_NOMEM, "out of memory");
    memcpy(ev->bclip, b->data, sizeof(float) * (size_t)ev->sample_numel);
    return STX_OK;
}

/* The cell grid of the deletion/insertion curves (o.cells), or the voxels themselves. */
static stx_status plan_cells(stx_evaluator *ev, stx_err *ce) {
    const int64_t D[3] = {ev->T, ev->H, ev->W};
    int64_t c[3];
    bool any = false;
    for (int a = 0; a < 3; a++) {
        c[a] = ev->o.cells[a] > 0 ? ev->o.cells[a] : D[a];
        any |= ev->o.cells[a] > 0;
        if (c[a] > D[a])
            return stx__errf(ce, STX_E_INVALID,
                             "cells %d,%d,%d: more cells than the input's %lld x %lld x %lld "
                             "voxels on an axis",
                             ev->o.cells[0], ev->o.cells[1], ev->o.cells[2], (long long)D[0],
                             (long long)D[1], (long long)D[2]);
    }
    ev->U = ev->P;
    stx_context *ctx = ev->ctx;
    if (!any) {
        if (ev->o.least_first) {
            ev->forder = stx__malloc(ctx, sizeof(int64_t) * (size_t)ev->P);
            if (!ev->forder) return stx__errf(ce, STX_E_NOMEM, "out of memory");
        }
        return STX_OK;
    }
    ev->U = c[0] * c[1] * c[2];
    ev->cell_of = stx__malloc(ctx, sizeof(int64_t) * (size_t)ev->P);
    ev->forder = stx__malloc(ctx, sizeof(int64_t) * (size_t)ev->P);
    ev->cell_n = stx__calloc(ctx, (size_t)ev->U, sizeof(int64_t));
    ev->cell_pos = stx__malloc(ctx, sizeof(int64_t) * (size_t)ev->U);
    ev->cell_v = stx__malloc(ctx, sizeof(double) * (size_t)ev->U);
    if (!ev->cell_of || !ev->forder || !ev->cell_n || !ev->cell_pos || !ev->cell_v)
        return stx__errf(ce, STX_E_NOMEM, "out of memory for %lld cells", (long long)ev->U);
    /* voxel index d along an axis of D voxels in c cells: cell floor(d * c / D) */
    for (int64_t t = 0, v = 0; t < D[0]; t++)
        for (int64_t y = 0; y < D[1]; y++)
            for (int64_t x = 0; x < D[2]; x++, v++) {
                int64_t k = ((t * c[0] / D[0]) * c[1] + y * c[1] / D[1]) * c[2] + x * c[2] / D[2];
                ev->cell_of[v] = k;
                ev->cell_n[k]++;
            }
    return STX_OK;
}

stx_status stx_evaluator_create(stx_context *ctx, stx_model *m, const stx_metrics_options *opt,
                                const int64_t *input_shape, int rank, stx_evaluator **out) {
    if (!ctx || !out || !input_shape) return STX_E_INVALID;
    *out = NULL;
    stx_err *ce = &ctx->err;
    stx_evaluator *ev = stx__calloc(ctx, 1, sizeof *ev);
    if (!ev) return stx__errf(ce, STX_E_NOMEM, "out of memory");
    ev->ctx = ctx;
    ev->m = m;
    ev->o = opt ? *opt : stx_metrics_options_default();
    stx_status st = check_options(&ev->o, ce);
    if (!st) st = parse_metrics(ev, ev->o.metrics, ce);
    if (st) goto fail;
    ev->o.metrics = NULL; /* not kept */
    for (int i = 0; i < ev->n_metrics; i++) {
        int k = ev->which[i];
        ev->faith |= needs_model(k);
        ev->need_mask |= needs_mask(k);
        ev->need_events |= needs_events(k);
    }
    if (ev->faith && !m) {
        for (int i = 0; i < ev->n_metrics; i++)
            if (needs_model(ev->which[i])) {
                st = stx__errf(ce, STX_E_INVALID, "metric '%s' runs the model: none given",
                               metric_names[ev->which[i]]);
                break;
            }
        goto fail;
    }
    char sb[128];
    for (int k = 0; k < rank; k++)
        if (input_shape[k] <= 0 || rank > 5) {
            st = stx__errf(ce, STX_E_SHAPE, "input shape %s has an empty axis or too many",
                           stx__shape_str(input_shape, rank, sb, sizeof sb));
            goto fail;
        }
    if (m) {
        st = model_axes(ev, input_shape, rank, ce);
        if (st) goto fail;
    } else if (rank == 4 || rank == 5) { /* the map's (N, T, H, W) or an NCTHW input */
        ev->N = input_shape[0];
        ev->C = rank == 5 ? input_shape[1] : 1;
        ev->T = input_shape[rank - 3];
        ev->H = input_shape[rank - 2];
        ev->W = input_shape[rank - 1];
    } else {
        st = stx__errf(ce, STX_E_SHAPE, "shape %s: expected the map's (N, T, H, W)",
                       stx__shape_str(input_shape, rank, sb, sizeof sb));
        goto fail;
    }
    memcpy(ev->shape, input_shape, sizeof(int64_t) * (size_t)rank);
    ev->rank = rank;
    ev->P = ev->T * ev->H * ev->W;
    ev->sample_numel = ev->P * ev->C;
    int64_t P = ev->P;
    ev->order = stx__malloc(ctx, sizeof(int64_t) * (size_t)P);
    ev->rank_buf = stx__malloc(ctx, sizeof(ranked) * (size_t)P);
    ev->emap = stx__malloc(ctx, sizeof(double) * (size_t)P);
    if (!ev->order || !ev->rank_buf || !ev->emap) {
        st = stx__errf(ce, STX_E_NOMEM, "out of memory for %lld voxels", (long long)P);
        goto fail;
    }
    if (ev->need_mask) {
        ev->gt = stx__malloc(ctx, (size_t)(ev->N * P));
        if (!ev->gt) {
            st = stx__errf(ce, STX_E_NOMEM, "out of memory for the mask");
            goto fail;
        }
    }
    if (ev->need_events) {
        ev->ev = stx__malloc(ctx, (size_t)(ev->N * ev->T));
        if (!ev->ev) {
            st = stx__errf(ce, STX_E_NOMEM, "out of memory");
            goto fail;
        }
    }
    if (m) {
        stx_session_options so = stx_session_options_default();
        so.num_threads = ev->o.num_threads;
        st = stx_session_create(m, &so, ev->shape, ev->rank, &ev->clean);
        if (st) goto fail;
    }
    if (ev->faith) {
        st = copy_baseline_clip(ev, ce);
        if (st) goto fail;
        st = plan_cells(ev, ce);
        if (st) goto fail;
        ev->L = schedule(&ev->o, ev->U, NULL);
        ev->cuts = stx__malloc(ctx, sizeof(int64_t) * (size_t)ev->L);
        ev->vcut = stx__malloc(ctx, sizeof(int64_t) * (size_t)ev->L);
        if (!ev->cuts || !ev->vcut) {
            st = stx__errf(ce, STX_E_NOMEM, "out of memory");
            goto fail;
        }
        schedule(&ev->o, ev->U, ev->cuts);
        ev->rows = (ev->want[MT_DELETION] ? ev->L : 0) + (ev->want[MT_INSERTION] ? ev->L : 0) +
                   (ev->want[MT_AVG_DROP] || ev->want[MT_CONF_INCREASE] ? 1 : 0);
        /* two to MAX_ROWS rows: for a single row some kernels (oneDNN's among them) take another
         * path with another summation order, and so may minibatch-blocked ones for 16 rows and
         * more, while every batch in between gives each row the same bits; batch 1 runs one row
         * and a padding copy, larger batches run in forwards of MAX_ROWS */
        ev->B = (int)(ev->o.batch < ev->rows ? ev->o.batch : ev->rows);
        if (ev->B > MAX_ROWS) ev->B = MAX_ROWS;
        if (ev->B < 2) ev->B = 2;
        int64_t bshape[STX_MAX_RANK];
        memcpy(bshape, ev->shape, sizeof bshape);
        bshape[0] = ev->B;
        stx_session_options so = stx_session_options_default();
        so.num_threads = ev->o.num_threads;
        st = stx_session_create(m, &so, bshape, ev->rank, &ev->pert);
        if (st) goto fail;
        ev->xb = stx__tensor_new(ctx, STX_DTYPE_FLOAT, bshape, ev->rank);
        int64_t maxd = ev->T > ev->H ? ev->T : ev->H;
        if (ev->W > maxd) maxd = ev->W;
        ev->base_del = stx__malloc(ctx, sizeof(float) * (size_t)ev->sample_numel);
        ev->base_ins = stx__malloc(ctx, sizeof(float) * (size_t)ev->sample_numel);
        ev->tmp = stx__malloc(ctx, sizeof(double) * (size_t)maxd);
        ev->scores = stx__malloc(ctx, sizeof(double) * (size_t)ev->B);
        int64_t ni =
            6 * (int64_t)ev->B > ev->T + ev->H + ev->W ? 6 * (int64_t)ev->B : ev->T + ev->H + ev->W;
        ev->idx = stx__malloc(ctx, sizeof(int64_t) * (size_t)ni);
        if (!ev->xb || !ev->base_del || !ev->base_ins || !ev->tmp || !ev->scores || !ev->idx) {
            st = stx__errf(ce, STX_E_NOMEM, "out of memory for a batch of %d perturbed inputs",
                           ev->B);
            goto fail;
        }
    }
    *out = ev;
    return STX_OK;
fail:
    stx_evaluator_free(ev);
    return st;
}

/* ---- ranking
 * -----------------------------------------------------------------------------
 */

static int cmp_ranked(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->v > y->v) return -1;
    if (x->v < y->v) return 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* ev->order: the voxels of map (P values) by decreasing value, ties by
 * position. */
static void rank_voxels(stx_evaluator *ev, const float *map) {
    for (int64_t i = 0; i < ev->P; i++) ev->rank_buf[i] = (ranked){map[i], i};
    qsort(ev->rank_buf, (size_t)ev->P, sizeof(ranked), cmp_ranked);
    for (int64_t i = 0; i < ev->P; i++) ev->order[i] = ev->rank_buf[i].i;
}

/* The deletion order of the sample's map: forder (voxels by their cell's rank, cells by
 * decreasing mean value, ties by cell index; within a cell by position) and vcut. */
static void rank_cells(stx_evaluator *ev, const float *map) {
    const int64_t U = ev->U, P = ev->P;
    const double sign = ev->o.least_first ? -1.0 : 1.0; /* LeRF: increasing values */
    if (!ev->cell_of) {
        memcpy(ev->vcut, ev->cuts, sizeof(int64_t) * (size_t)ev->L);
        if (!ev->o.least_first) {
            ev->forder = ev->order;
            return;
        }
        for (int64_t i = 0; i < P; i++) ev->rank_buf[i] = (ranked){-(double)map[i], i};
        qsort(ev->rank_buf, (size_t)P, sizeof(ranked), cmp_ranked);
        for (int64_t i = 0; i < P; i++) ev->forder[i] = ev->rank_buf[i].i;
        return;
    }
    for (int64_t k = 0; k < U; k++) ev->cell_v[k] = 0;
    for (int64_t v = 0; v < P; v++) ev->cell_v[ev->cell_of[v]] += map[v];
    for (int64_t k = 0; k < U; k++)
        ev->rank_buf[k] = (ranked){sign * (ev->cell_v[k] / (double)ev->cell_n[k]), k};
    qsort(ev->rank_buf, (size_t)U, sizeof(ranked), cmp_ranked);
    /* cell_pos: where each cell's voxels start in forder; vcut from the same prefix sums */
    int64_t pos = 0, j = 0;
    for (int64_t r = 0; r < U; r++) {
        while (j < ev->L && ev->cuts[j] == r) ev->vcut[j++] = pos;
        int64_t k = ev->rank_buf[r].i;
        ev->cell_pos[k] = pos;
        pos += ev->cell_n[k];
    }
    while (j < ev->L) ev->vcut[j++] = pos;
    for (int64_t v = 0; v < P; v++) ev->forder[ev->cell_pos[ev->cell_of[v]]++] = v;
}

/* Offset of voxel v's channel c in one sample. */
static inline int64_t voxel_off(const stx_evaluator *ev, int64_t v, int64_t c) {
    int64_t HW = ev->H * ev->W;
    return c * ev->cs + (v / HW) * ev->ts + v % HW;
}

/* ---- faithfulness
 * ------------------------------------------------------------------------ */

/* Row r of sample x into dst: deletion point, insertion point or the
 * average-drop input. */
static void fill_row(const stx_evaluator *ev, int64_t r, const float *x, float *dst) {
    const int64_t C = ev->C, SN = ev->sample_numel;
    int64_t nd = ev->want[MT_DELETION] ? ev->L : 0, ni = ev->want[MT_INSERTION] ? ev->L : 0;
    if (r < nd) { /* deletion: the first cuts[r] ranked voxels become the baseline */
        memcpy(dst, x, sizeof(float) * (size_t)SN);
        for (int64_t k = 0; k < ev->vcut[r]; k++)
            for (int64_t c = 0; c < C; c++) {
                int64_t o = voxel_off(ev, ev->forder[k], c);
                dst[o] = ev->base_del[o];
            }
    } else if (r < nd + ni) { /* insertion: the first cuts[i] ranked voxels come
                                 back */
        int64_t i = r - nd;
        memcpy(dst, ev->base_ins, sizeof(float) * (size_t)SN);
        for (int64_t k = 0; k < ev->vcut[i]; k++)
            for (int64_t c = 0; c < C; c++) {
                int64_t o = voxel_off(ev, ev->forder[k], c);
                dst[o] = x[o];
            }
    } else { /* average drop: base + E (x - base), E the map min-max normalised */
        for (int64_t v = 0; v < ev->P; v++)
            for (int64_t c = 0; c < C; c++) {
                int64_t o = voxel_off(ev, v, c);
                dst[o] = (float)((double)ev->base_del[o] +
                                 ev->emap[v] * ((double)x[o] - (double)ev->base_del[o]));
            }
    }
}

/* min-max of map to [0, 1] into out (a constant map gives zeros). */
static void minmax(const float *map, int64_t P, double *out) {
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < P; i++) {
        lo = fmin(lo, map[i]);
        hi = fmax(hi, map[i]);
    }
    for (int64_t i = 0; i < P; i++) out[i] = hi > lo ? ((double)map[i] - lo) / (hi - lo) : 0.0;
}

static double curve_auc(const stx_evaluator *ev, const double *s) {
    const int64_t L = ev->L, n = L - 1;
    if (n == 0) return s[0];
    double a = 0;
    if (ev->o.curve == STX_CURVE_TORCHCAM) {
        for (int64_t i = 0; i < n; i++)
            a += (double)(ev->cuts[i + 1] - ev->cuts[i]) / (double)ev->U * (s[i] + s[i + 1]) / 2;
        return a;
    }
    for (int64_t i = 0; i < L; i++) a += s[i];
    return (a - s[0] / 2 - s[n] / 2) / (double)n;
}

/* The results of one sample's rows: curves and drop. */
typedef struct faith_out {
    double *del, *ins; /* L scores each (NULL: not asked) */
    double drop_score;
} faith_out;

static stx_status run_faith(stx_evaluator *ev, const float *x, int64_t n, int64_t target,
                            int64_t frame, int64_t *done, int64_t total, faith_out *fo) {
    stx_perturb p = {.sess = ev->pert,
                     .xb = ev->xb,
                     .B = ev->B,
                     .out_index = ev->out_index,
                     .T = ev->T,
                     .C = ev->C,
                     .H = ev->H,
                     .W = ev->W,
                     .sample_numel = ev->sample_numel,
                     .tax = ev->tax,
                     .target = target,
                     .frame = frame,
                     .score = ev->o.score,
                     .baseline = ev->o.baseline,
                     .baseline_clip = ev->bclip,
                     .progress = ev->o.progress,
                     .progress_user = ev->o.progress_user,
                     .done = done,
                     .total = total,
                     .err = &ev->err,
                     .scores = ev->scores,
                     .idx = ev->idx};
    /* baselines: the noise draws depend on the seed and the sample only */
    stx_rng rng;
    stx__rng_seed(&rng, ev->o.seed + (uint64_t)n);
    stx_status st = stx__perturb_baseline(&p, x, ev->base_del, ev->tmp, &rng);
    if (st) return st;
    int ib = ev->o.insertion_baseline < 0 ? (int)ev->o.baseline : ev->o.insertion_baseline;
    if (ib == (int)ev->o.baseline) {
        memcpy(ev->base_ins, ev->base_del, sizeof(float) * (size_t)ev->sample_numel);
    } else {
        p.baseline = ib;
        stx__rng_seed(&rng, ev->o.seed + (uint64_t)n);
        st = stx__perturb_baseline(&p, x, ev->base_ins, ev->tmp, &rng);
        if (st) return st;
        p.baseline = ev->o.baseline;
    }
    int64_t nd = ev->want[MT_DELETION] ? ev->L : 0, ni = ev->want[MT_INSERTION] ? ev->L : 0;
    float *xb = ev->xb->data;
    int64_t step = ev->o.batch < ev->B ? ev->o.batch : ev->B; /* rows per forward */
    for (int64_t r0 = 0; r0 < ev->rows; r0 += step) {
        int64_t nb = ev->rows - r0 < step ? ev->rows - r0 : step;
        for (int64_t j = 0; j < nb; j++) fill_row(ev, r0 + j, x, xb + j * ev->sample_numel);
        stx__perturb_pad(&p, x, nb);
        st = stx__perturb_run(&p, nb, ev->scores);
        if (st) return st;
        for (int64_t j = 0; j < nb; j++) {
            int64_t r = r0 + j;
            if (r < nd)
                fo->del[r] = ev->scores[j];
            else if (r < nd + ni)
                fo->ins[r - nd] = ev->scores[j];
            else
                fo->drop_score = ev->scores[j];
        }
    }
    return STX_OK;
}

/* ---- localisation
 * ------------------------------------------------------------------------ */

/* Whether a ground-truth voxel of frame t lies within the tolerance of (y, x).
 */
static bool near_gt(const stx_evaluator *ev, const uint8_t *g, int64_t t, int64_t y, int64_t x) {
    const int64_t H = ev->H, W = ev->W;
    const uint8_t *f = g + t * H * W;
    double tol = ev->o.tolerance;
    if (tol <= 0) return f[y * W + x] != 0;
    int64_t r = (int64_t)floor(tol);
    for (int64_t dy = -r; dy <= r; dy++) {
        int64_t yy = y + dy;
        if (yy < 0 || yy >= H) continue;
        for (int64_t dx = -r; dx <= r; dx++) {
            int64_t xx = x + dx;
            if (xx < 0 || xx >= W || (double)(dy * dy + dx * dx) > tol * tol) continue;
            if (f[yy * W + xx]) return true;
        }
    }
    return false;
}

/* Pointing game over the voxels [v0, v1) of one sample (a clip or a frame): a
 * hit when any maximal voxel is near the ground truth. */
static bool pointing_hit(const stx_evaluator *ev, const float *map, const uint8_t *g, int64_t v0,
                         int64_t v1) {
    const int64_t HW = ev->H * ev->W;
    float mx = -INFINITY;
    for (int64_t v = v0; v < v1; v++) mx = map[v] > mx ? map[v] : mx;
    for (int64_t v = v0; v < v1; v++)
        if (map[v] == mx && near_gt(ev, g, v / HW, v % HW / ev->W, v % ev->W)) return true;
    return false;
}

/* The model-free metric k of one sample (map P values, g its mask, e its
 * frames). */
static double local_metric(stx_evaluator *ev, int k, const float *map, const uint8_t *g,
                           const uint8_t *e) {
    const int64_t P = ev->P, HW = ev->H * ev->W, T = ev->T;
    int64_t ngt = 0;
    if (g)
        for (int64_t v = 0; v < P; v++) ngt += g[v] != 0;
    if (needs_mask(k) && ngt == 0) return NAN;
    switch (k) {
    case MT_POINTING:
        return pointing_hit(ev, map, g, 0, P) ? 1.0 : 0.0;
    case MT_POINTING_FRAME: {
        int64_t frames = 0, hits = 0;
        for (int64_t t = 0; t < T; t++) {
            bool any = false;
            for (int64_t i = 0; i < HW && !any; i++) any = g[t * HW + i] != 0;
            if (!any) continue;
            frames++;
            hits += pointing_hit(ev, map, g, t * HW, (t + 1) * HW);
        }
        return (double)hits / (double)frames;
    }
    case MT_ENERGY:
    case MT_MASS: {
        double in = 0, all = 0;
        for (int64_t v = 0; v < P; v++) {
            double a = k == MT_ENERGY ? fmax(map[v], 0.0) : map[v];
            all += a;
            if (g[v]) in += a;
        }
        return all != 0 ? in / all : NAN;
    }
    case MT_RANK:
    case MT_TOPK: {
        int64_t kk = k == MT_RANK ? ngt : ev->o.top_k < P ? ev->o.top_k : P;
        int64_t hit = 0;
        for (int64_t i = 0; i < kk; i++) hit += g[ev->order[i]] != 0;
        return (double)hit / (double)kk;
    }
    case MT_IOU: {
        minmax(map, P, ev->emap);
        int64_t inter = 0, uni = 0;
        if (ev->o.iou_top > 0) {
            int64_t kk = (int64_t)ceil(ev->o.iou_top * (double)P);
            if (kk > P) kk = P;
            for (int64_t v = 0; v < P; v++) ev->emap[v] = 0;
            for (int64_t i = 0; i < kk; i++) ev->emap[ev->order[i]] = 1;
        }
        double th = ev->o.iou_top > 0 ? 0.5 : ev->o.iou_threshold;
        for (int64_t v = 0; v < P; v++) {
            bool b = ev->emap[v] >= th, t = g[v] != 0;
            inter += b && t;
            uni += b || t;
        }
        return uni ? (double)inter / (double)uni : NAN;
    }
    case MT_TEMPORAL:
    case MT_TEMPORAL_POINTING: {
        bool anyev = false;
        for (int64_t t = 0; t < T; t++) anyev |= e[t] != 0;
        if (!anyev) return NAN;
        double in = 0, all = 0, best = -INFINITY;
        int64_t tbest = 0;
        for (int64_t t = 0; t < T; t++) {
            double m = 0;
            for (int64_t i = 0; i < HW; i++) m += fmax(map[t * HW + i], 0.0);
            all += m;
            if (e[t]) in += m;
            if (m > best) best = m, tbest = t;
        }
        if (k == MT_TEMPORAL_POINTING) return e[tbest] ? 1.0 : 0.0;
        return all > 0 ? in / all : NAN;
    }
    case MT_SPARSITY: { /* Gini index of |a| / max |a| + 1e-7, sorted ascending */
        double mx = 0;
        for (int64_t v = 0; v < P; v++) mx = fmax(mx, fabs(map[v]));
        for (int64_t v = 0; v < P; v++)
            ev->rank_buf[v] = (ranked){(mx > 0 ? fabs(map[v]) / mx : 0.0) + 1e-7, v};
        qsort(ev->rank_buf, (size_t)P, sizeof(ranked), cmp_ranked); /* descending */
        double num = 0, den = 0;
        for (int64_t i = 1; i <= P; i++) {
            double a = ev->rank_buf[P - i].v; /* ascending */
            num += (double)(2 * i - P - 1) * a;
            den += a;
        }
        return num / ((double)P * den);
    }
    case MT_COMPLEXITY: { /* entropy of |a| / sum |a| */
        double s = 0, h = 0;
        for (int64_t v = 0; v < P; v++) s += fabs(map[v]);
        if (s == 0) return NAN;
        for (int64_t v = 0; v < P; v++) {
            double q = fabs(map[v]) / s;
            if (q > 0) h -= q * log(q);
        }
        return h;
    }
    default:
        return NAN;
    }
}

/* ---- running
 * -----------------------------------------------------------------------------
 */

void stx_metrics_result_free(stx_metrics_result *r) {
    if (!r) return;
    for (int i = 0; i < r->n_metrics; i++) {
        stx__free(r->ctx, r->metrics[i].per_sample);
        stx__free(r->ctx, r->metrics[i].fractions);
        stx__free(r->ctx, r->metrics[i].curves);
    }
    stx__free(r->ctx, r->metrics);
    stx__free(r->ctx, r->targets);
    stx__free(r->ctx, r->scores);
    stx__free(r->ctx, r);
}

/* Reads a ground-truth tensor (N*per values, or per values when N = 1) as bytes
 * (non-zero). */
static stx_status read_flags(stx_evaluator *ev, const stx_tensor *t, const char *what,
                             const int64_t *dims, int rank, uint8_t *dst) {
    char sb[128], xb[128];
    int64_t per = stx__numel(dims + 1, rank - 1), n = ev->N * per;
    bool ok = t->rank == rank || (ev->N == 1 && t->rank == rank - 1);
    int off = t->rank == rank ? 0 : 1;
    for (int k = 0; ok && k < t->rank; k++) ok = t->dims[k] == dims[k + off];
    if (!ok)
        return stx__errf(&ev->err, STX_E_SHAPE, "%s shape %s does not match %s", what,
                         stx__shape_str(t->dims, t->rank, sb, sizeof sb),
                         stx__shape_str(dims, rank, xb, sizeof xb));
    for (int64_t i = 0; i < n; i++) {
        double v;
        switch (t->dtype) {
        case STX_DTYPE_UINT8:
        case STX_DTYPE_BOOL:
            v = ((const uint8_t *)t->data)[i];
            break;
        case STX_DTYPE_FLOAT:
            v = ((const float *)t->data)[i];
            break;
        case STX_DTYPE_DOUBLE:
            v = ((const double *)t->data)[i];
            break;
        case STX_DTYPE_INT64:
            v = (double)((const int64_t *)t->data)[i];
            break;
        case STX_DTYPE_INT32:
            v = ((const int32_t *)t->data)[i];
            break;
        default:
            return stx__errf(&ev->err, STX_E_UNSUPPORTED,
                             "%s: dtype %s (expected uint8, bool, float32, float64 or int)", what,
                             stx_dtype_name(t->dtype));
        }
        if (!isfinite(v))
            return stx__errf(&ev->err, STX_E_NUMERIC, "%s: non-finite value at element %lld", what,
                             (long long)i);
        dst[i] = v != 0;
    }
    return STX_OK;
}

static stx_status check_map(stx_evaluator *ev, const stx_tensor *map) {
    char sb[128], xb[128];
    const int64_t want[4] = {ev->N, ev->T, ev->H, ev->W};
    if (!map) return stx__errf(&ev->err, STX_E_INVALID, "no map given");
    bool ok = map->rank == 4 && map->dtype == STX_DTYPE_FLOAT;
    for (int k = 0; ok && k < 4; k++) ok = map->dims[k] == want[k];
    if (!ok)
        return stx__errf(&ev->err, STX_E_SHAPE,
                         "map %s %s does not match the input's (N, T, H, W) = %s (float32)",
                         stx_dtype_name(map->dtype),
                         stx__shape_str(map->dims, map->rank, sb, sizeof sb),
                         stx__shape_str(want, 4, xb, sizeof xb));
    const float *d = map->data;
    for (int64_t i = 0; i < ev->N * ev->P; i++)
        if (!isfinite(d[i])) {
            int64_t n = i / ev->P, v = i % ev->P, HW = ev->H * ev->W;
            return stx__errf(&ev->err, STX_E_NUMERIC,
                             "map: non-finite value %g at sample %lld, frame %lld, (%lld, %lld)",
                             (double)d[i], (long long)n, (long long)(v / HW),
                             (long long)(v % HW / ev->W), (long long)(v % ev->W));
        }
    return STX_OK;
}

stx_status stx_evaluator_run(stx_evaluator *ev, const stx_tensor *input, const stx_tensor *map,
                             const stx_tensor *mask, const stx_tensor *events,
                             const int64_t *targets, const int64_t *frames,
                             stx_metrics_result **out) {
    if (!ev || !out) return STX_E_INVALID;
    *out = NULL;
    char sb[128], xb[128];
    stx_status st = check_map(ev, map);
    if (st) return st;
    const int64_t N = ev->N, P = ev->P;
    if (ev->need_mask) {
        if (!mask) {
            int k = 0;
            for (int i = ev->n_metrics - 1; i >= 0; i--)
                if (needs_mask(ev->which[i])) k = ev->which[i];
            return stx__errf(&ev->err, STX_E_INVALID, "metric '%s' needs a ground-truth mask",
                             metric_names[k]);
        }
        const int64_t d[4] = {N, ev->T, ev->H, ev->W};
        st = read_flags(ev, mask, "mask", d, 4, ev->gt);
        if (st) return st;
    }
    if (ev->need_events) {
        if (!events)
            return stx__errf(&ev->err, STX_E_INVALID,
                             "metric '%s' needs the decisive frames (events)",
                             ev->want[MT_TEMPORAL] ? "temporal" : "temporal_pointing");
        const int64_t d[2] = {N, ev->T};
        st = read_flags(ev, events, "events", d, 2, ev->ev);
        if (st) return st;
    }
    if (ev->m) {
        bool ok = input && input->dtype == STX_DTYPE_FLOAT && input->rank == ev->rank;
        for (int k = 0; ok && k < ev->rank; k++) ok = input->dims[k] == ev->shape[k];
        if (!ok)
            return stx__errf(&ev->err, STX_E_SHAPE, "input %s %s does not match the planned %s",
                             input ? stx_dtype_name(input->dtype) : "(none)",
                             input ? stx__shape_str(input->dims, input->rank, sb, sizeof sb) : "",
                             stx__shape_str(ev->shape, ev->rank, xb, sizeof xb));
    }

    stx_context *ctx = ev->ctx;
    stx_metrics_result *r = stx__calloc(ctx, 1, sizeof *r);
    if (!r) return stx__errf(&ev->err, STX_E_NOMEM, "out of memory");
    r->ctx = ctx;
    r->N = N;
    r->n_metrics = ev->n_metrics;
    r->metrics = stx__calloc(ctx, (size_t)ev->n_metrics, sizeof *r->metrics);
    if (!r->metrics) goto nomem;
    for (int i = 0; i < ev->n_metrics; i++) {
        int k = ev->which[i];
        stx_metric_result *mr = &r->metrics[i];
        mr->name = metric_names[k];
        mr->per_sample = stx__malloc(ctx, sizeof(double) * (size_t)N);
        if (!mr->per_sample) goto nomem;
        if (k == MT_DELETION || k == MT_INSERTION) {
            mr->curve_len = ev->L;
            mr->fractions = stx__malloc(ctx, sizeof(double) * (size_t)ev->L);
            mr->curves = stx__malloc(ctx, sizeof(double) * (size_t)(N * ev->L));
            if (!mr->fractions || !mr->curves) goto nomem;
            for (int64_t j = 0; j < ev->L; j++)
                mr->fractions[j] = (double)ev->cuts[j] / (double)ev->U;
        }
    }

    /* the clean forward: targets and their scores */
    if (ev->m) {
        r->targets = stx__malloc(ctx, sizeof(int64_t) * (size_t)N);
        r->scores = stx__malloc(ctx, sizeof(double) * (size_t)N);
        if (!r->targets || !r->scores) goto nomem;
        stx_tensor *y;
        st = stx_session_run(ev->clean, input, &y);
        if (st) {
            stx__errf(&ev->err, st, "%s", stx_session_last_error(ev->clean));
            goto fail;
        }
        y = stx_session_output(ev->clean, ev->out_index);
        int64_t K = y->rank >= 2 ? y->dims[1] : 0;
        if (y->rank < 2 || y->dtype != STX_DTYPE_FLOAT || y->dims[0] != N) {
            st = stx__errf(&ev->err, STX_E_SHAPE,
                           "output %s: expected float32 class scores (N, K[, T])",
                           stx__shape_str(y->dims, y->rank, sb, sizeof sb));
            goto fail;
        }
        int64_t Tf = y->rank == 3 ? y->dims[2] : 1;
        for (int64_t n = 0; n < N; n++) {
            int64_t f = frames ? frames[n] : -1, t = targets ? targets[n] : -1;
            if (f >= Tf || f < -1 || (f >= 0 && y->rank != 3)) {
                st = stx__errf(&ev->err, STX_E_INVALID,
                               "frame %lld of sample %lld: the output %s has %s", (long long)f,
                               (long long)n, stx__shape_str(y->dims, y->rank, sb, sizeof sb),
                               y->rank == 3 ? "fewer frames" : "no frame axis");
                goto fail;
            }
            if (t >= K || t < -1) {
                st = stx__errf(&ev->err, STX_E_INVALID,
                               "target %lld of sample %lld out of range [0, %lld)", (long long)t,
                               (long long)n, (long long)K);
                goto fail;
            }
            if (t < 0) {
                double best = -INFINITY;
                for (int64_t c = 0; c < K; c++) {
                    double s = stx__score_of(y, n, c, f, STX_SCORE_LOGIT);
                    if (s > best) best = s, t = c;
                }
            }
            r->targets[n] = t;
            r->scores[n] = stx__score_of(y, n, t, f, ev->o.score);
        }
        r->forwards = N;
    }

    int64_t done = 0, total = N * ev->rows;
    const float *md = map->data;
    for (int64_t n = 0; n < N; n++) {
        const float *mp = md + n * P;
        rank_voxels(ev, mp);
        faith_out fo = {NULL, NULL, 0};
        if (ev->faith) {
            for (int i = 0; i < ev->n_metrics; i++) {
                if (ev->which[i] == MT_DELETION) fo.del = r->metrics[i].curves + n * ev->L;
                if (ev->which[i] == MT_INSERTION) fo.ins = r->metrics[i].curves + n * ev->L;
            }
            rank_cells(ev, mp);
            minmax(mp, P, ev->emap);
            const float *x = (const float *)input->data + n * ev->sample_numel;
            st = run_faith(ev, x, n, r->targets[n], frames ? frames[n] : -1, &done, total, &fo);
            if (st) goto fail;
        }
        for (int i = 0; i < ev->n_metrics; i++) {
            int k = ev->which[i];
            double v;
            double Y = r->scores ? r->scores[n] : 0;
            switch (k) {
            case MT_DELETION:
                v = curve_auc(ev, fo.del);
                break;
            case MT_INSERTION:
                v = curve_auc(ev, fo.ins);
                break;
            case MT_AVG_DROP: /* torch-cam: relu(Y - O) / (Y + 1e-7) */
                v = fmax(Y - fo.drop_score, 0.0) / (Y + 1e-7);
                break;
            case MT_CONF_INCREASE:
                v = Y < fo.drop_score ? 1.0 : 0.0;
                break;
            default:
                v = local_metric(ev, k, mp, ev->gt ? ev->gt + n * P : NULL,
                                 ev->ev ? ev->ev + n * ev->T : NULL);
            }
            r->metrics[i].per_sample[n] = v;
        }
    }
    r->forwards += done;
    for (int i = 0; i < ev->n_metrics; i++) {
        stx_metric_result *mr = &r->metrics[i];
        double s = 0;
        for (int64_t n = 0; n < N; n++)
            if (!isnan(mr->per_sample[n])) s += mr->per_sample[n], mr->count++;
        mr->value = mr->count ? s / (double)mr->count : NAN;
    }
    *out = r;
    return STX_OK;
nomem:
    st = stx__errf(&ev->err, STX_E_NOMEM, "out of memory for the results");
fail:
    stx_metrics_result_free(r);
    return st;
}

stx_status stx_evaluate(stx_context *ctx, stx_model *m, const stx_metrics_options *opt,
                        const stx_tensor *input, const stx_tensor *map, const stx_tensor *mask,
                        const stx_tensor *events, const int64_t *targets, const int64_t *frames,
                        stx_metrics_result **out) {
    if (!ctx || !out) return STX_E_INVALID;
    *out = NULL;
    const stx_tensor *shp = m ? input : map;
    if (!shp) return stx__errf(&ctx->err, STX_E_INVALID, "no %s given", m ? "input" : "map");
    stx_evaluator *ev;
    stx_status st = stx_evaluator_create(ctx, m, opt, shp->dims, shp->rank, &ev);
    if (st) return st;
    st = stx_evaluator_run(ev, input, map, mask, events, targets, frames, out);
    if (st) stx__errf(&ctx->err, st, "%s", ev->err.msg);
    stx_evaluator_free(ev);
    return st;
}
