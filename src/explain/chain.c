/* chain.c: explanations through two models: a frame model giving one feature vector per frame
 * and a temporal model on the feature sequence (TeCNO's CNN + MS-TCN; docs/gradient.md).
 *
 *   1. the frame model runs on the T frames (one batch, reverse mode planned to its input);
 *   2. its features (T, F) become the temporal model's input (1, F, T);
 *   3. the chosen gradient method explains the temporal score (class, frame) over (feature,
 *      time) through an explainer on the temporal model (layout NCT), reduced over the features
 *      into a curve over time;
 *   4. d score / d features (one backward of the temporal model) seeds the frame model's
 *      feature output at the frames with the largest |curve|, and one backward of the frame
 *      model gives d score / d pixels of those frames: the map is pixels x gradient, the first-
 *      order contribution of each pixel through both models, reduced over colours.
 */
#include "explain.h"

#include "../graph/ir.h"

#include <math.h>
#include <string.h>

stx_chain_options stx_chain_options_default(void) {
    stx_chain_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.top_frames = 5;
    return o;
}

void stx_chain_result_free(stx_chain_result *r) {
    if (!r) return;
    stx_tensor_free(r->temporal);
    stx_tensor_free(r->curve);
    stx_tensor_free(r->spatial);
    stx_tensor_free(r->top);
    memset(r, 0, sizeof *r);
}

/* The frame model's output holding the features: named, "features", or the first one declared
 * with rank 2 and F columns. */
static stx_status feature_output(const stx_model *m, const char *name, int64_t F, stx_err *err,
                                 int *out) {
    int n = stx_model_num_outputs(m);
    for (*out = 0; *out < n; ++*out)
        if (strcmp(stx_model_output_name(m, *out), name ? name : "features") == 0) return STX_OK;
    if (name) return stx__errf(err, STX_E_NOTFOUND, "chain: frame model: no output '%s'", name);
    for (*out = 0; *out < n; ++*out) {
        stx_dtype dt;
        int64_t d[STX_MAX_RANK];
        int r;
        if (!stx_model_output_info(m, *out, &dt, d, &r) && r == 2 && d[1] == F) return STX_OK;
    }
    return stx__errf(err, STX_E_SHAPE,
                     "chain: frame model: no output (T, %lld) to feed the temporal model's %lld "
                     "features (name it with features_output)",
                     (long long)F, (long long)F);
}

stx_status stx_explain_chain(stx_model *fm, stx_model *tm, const stx_tensor *frames, int64_t target,
                             int64_t frame, const stx_explain_options *eo,
                             const stx_chain_options *co, stx_chain_result *out) {
    if (!fm || !tm || !frames || !out) return STX_E_INVALID;
    memset(out, 0, sizeof *out);
    stx_context *ctx = fm->ctx;
    stx_err *ce = &ctx->err;
    stx_chain_options cdef = stx_chain_options_default();
    if (!co) co = &cdef;
    stx_explain_options o = eo ? *eo : stx_explain_options_default();
    char sb[128];
    if (frames->dtype != STX_DTYPE_FLOAT || frames->rank != 4)
        return stx__errf(ce, STX_E_SHAPE,
                         "chain: frames %s %s must be the frame model's float32 input (T, C, H, W)",
                         stx_dtype_name(frames->dtype),
                         stx__shape_str(frames->dims, frames->rank, sb, sizeof sb));
    if (co->top_frames < 0)
        return stx__errf(ce, STX_E_INVALID, "chain: top_frames %d must be >= 0", co->top_frames);
    const int64_t T = frames->dims[0], C = frames->dims[1], H = frames->dims[2],
                  W = frames->dims[3], HW = H * W;
    stx_dtype dt;
    int64_t tshape[STX_MAX_RANK];
    int trank;
    if (stx_model_input_info(tm, 0, &dt, tshape, &trank) || trank != 3 || tshape[1] <= 0)
        return stx__errf(ce, STX_E_SHAPE,
                         "chain: the temporal model's input must be a feature sequence (N, F, T) "
                         "with a known F");
    const int64_t F = tshape[1];
    const char *wrt[2] = {"input", NULL};
    stx_session *fs = NULL, *ts = NULL;
    stx_explainer *ex = NULL;
    stx_tensor *xt = NULL, *seedw = NULL;
    stx_status st;
    /* 1. the frame model, reverse mode from its feature output to its input */
    int fo;
    st = feature_output(fm, co->features_output, F, ce, &fo);
    if (st) return st;
    stx_session_options so = stx_session_options_default();
    so.num_threads = o.num_threads;
    so.grad_wrt = wrt;
    so.grad_output = fo;
    st = stx_session_create(fm, &so, frames->dims, 4, &fs);
    if (st) goto done;
    st = stx_session_run(fs, frames, NULL);
    if (st) {
        st = stx__errf(ce, st, "chain: frame model: %s", stx_session_last_error(fs));
        goto done;
    }
    const stx_tensor *feat = stx_session_output(fs, fo);
    if (feat->rank != 2 || feat->dims[0] != T || feat->dims[1] != F) {
        st = stx__errf(ce, STX_E_SHAPE, "chain: frame model output %s, expected (%lld, %lld)",
                       stx__shape_str(feat->dims, feat->rank, sb, sizeof sb), (long long)T,
                       (long long)F);
        goto done;
    }
    /* 2. the feature sequence */
    int64_t xs[3] = {1, F, T};
    xt = stx__tensor_new(ctx, STX_DTYPE_FLOAT, xs, 3);
    int64_t ws[2] = {T, F};
    seedw = stx__tensor_new(ctx, STX_DTYPE_FLOAT, ws, 2);
    out->temporal = stx__tensor_new(ctx, STX_DTYPE_FLOAT, xs + 1, 2);
    out->curve = stx__tensor_new(ctx, STX_DTYPE_FLOAT, xs + 2, 1);
    int64_t ms[3] = {T, H, W};
    out->spatial = stx__tensor_new(ctx, STX_DTYPE_FLOAT, ms, 3);
    int64_t nt = co->top_frames < T ? co->top_frames : T;
    out->top = stx__tensor_new(ctx, STX_DTYPE_INT64, &nt, 1);
    if (!xt || !seedw || !out->temporal || !out->curve || !out->spatial || !out->top) {
        st = stx__errf(ce, STX_E_NOMEM, "chain: out of memory");
        goto done;
    }
    const float *fd = feat->data;
    float *xd = xt->data;
    for (int64_t t = 0; t < T; t++)
        for (int64_t f = 0; f < F; f++) xd[f * T + t] = fd[t * F + f];
    /* 3. the method over (feature, time) */
    stx_reduce red = o.reduce == STX_REDUCE_NONE ? STX_REDUCE_SUM : o.reduce;
    o.layout = "NCT";
    o.reduce = STX_REDUCE_NONE;
    o.output = NULL;
    st = stx_explainer_create(tm, &o, xs, 3, &ex);
    if (st) goto done;
    stx_tensor *amap = NULL;
    st = stx_explainer_run(ex, xt, &target, &frame, &amap);
    if (st) {
        st = stx__errf(ce, st, "chain: temporal model: %s", stx_explainer_last_error(ex));
        goto done;
    }
    out->target = stx_explainer_targets(ex)[0];
    const float *ad = amap->data;
    memcpy(out->temporal->data, ad, sizeof(float) * (size_t)(F * T));
    float *curve = out->curve->data;
    for (int64_t t = 0; t < T; t++) {
        double r = 0;
        for (int64_t f = 0; f < F; f++) r = stx__reduce_add(r, ad[f * T + t], red);
        curve[t] = (float)stx__reduce_end(r, red);
    }
    /* 4. d score / d features, then through the frame model at the top frames */
    stx_session_options to = stx_session_options_default();
    to.num_threads = o.num_threads;
    to.grad_wrt = wrt;
    st = stx_session_create(tm, &to, xs, 3, &ts);
    if (!st) st = stx_session_run(ts, xt, NULL);
    stx_seed sd = stx_seed_default();
    sd.targets = &out->target;
    sd.frames = &frame;
    sd.score = o.score;
    if (!st) st = stx_session_backward(ts, &sd);
    if (st) {
        st = stx__errf(ce, st, "chain: temporal model: %s",
                       ts ? stx_session_last_error(ts) : stx_context_last_error(ctx));
        goto done;
    }
    {
        const stx_tensor *y = stx_session_output(ts, 0);
        out->score = stx__score_of(y, 0, out->target, frame, o.score);
    }
    const float *gf = stx_session_grad(ts, "input")->data;
    int64_t *top = out->top->data, k = 0;
    while (k < nt) { /* the largest |curve| first; ties: the earlier frame */
        int64_t best = -1;
        for (int64_t t = 0; t < T; t++) {
            bool used = false;
            for (int64_t j = 0; j < k; j++) used |= top[j] == t;
            if (!used && curve[t] != 0 && (best < 0 || fabsf(curve[t]) > fabsf(curve[best])))
                best = t;
        }
        if (best < 0) break;
        top[k++] = best;
    }
    out->top->dims[0] = k; /* frames with a non-zero curve only */
    float *w = seedw->data;
    memset(w, 0, sizeof(float) * (size_t)(T * F));
    for (int64_t j = 0; j < k; j++)
        for (int64_t f = 0; f < F; f++) w[top[j] * F + f] = gf[f * T + top[j]];
    memset(out->spatial->data, 0, sizeof(float) * (size_t)(T * HW));
    if (k > 0) {
        stx_seed fsd = stx_seed_default();
        fsd.weights = seedw;
        st = stx_session_backward(fs, &fsd);
        if (st) {
            st = stx__errf(ce, st, "chain: frame model: %s", stx_session_last_error(fs));
            goto done;
        }
        const float *gp = stx_session_grad(fs, "input")->data, *px = frames->data;
        float *sp = out->spatial->data;
        for (int64_t j = 0; j < k; j++) {
            int64_t t = top[j];
            for (int64_t u = 0; u < HW; u++) {
                double r = 0;
                for (int64_t c = 0; c < C; c++) {
                    int64_t i = (t * C + c) * HW + u;
                    r = stx__reduce_add(r, (double)gp[i] * px[i], red);
                }
                sp[t * HW + u] = (float)stx__reduce_end(r, red);
            }
        }
    }
done:
    stx_explainer_free(ex);
    stx_session_free(ts);
    stx_session_free(fs);
    stx_tensor_free(xt);
    stx_tensor_free(seedw);
    if (st) stx_chain_result_free(out);
    return st;
}
