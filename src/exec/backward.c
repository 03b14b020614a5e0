/* backward.c: reverse mode over the planned steps.
 *
 * Planning (after fusion, before memory planning):
 *   - a value needs a gradient when it depends on a requested tensor (forward reach) and the
 *     seeded output depends on it (backward reach), through differentiable steps only;
 *   - every step with such an input and output gets a backward step, in reverse order, after a
 *     seed step that writes the gradient of the output;
 *   - gradients are values too (index nv + v), so the memory planner places activations and
 *     gradients in one arena by lifetime: an activation lives until the last backward step that
 *     reads it, and activations outside the swept region die in the forward pass.
 * Gradients accumulate (+=); each is zeroed right before its first contribution.
 */
#include "session.h"

#include <math.h>
#include <string.h>

const stx_backward_rule *stx__rule_for(const stx_session *s, const char *op_type) {
    for (int k = 0; k < s->n_rules; k++)
        if (strcmp(s->rules[k].op_type, op_type) == 0) return &s->rules[k];
    return NULL;
}

static bool float_dtype(stx_dtype t) {
    return t == STX_DTYPE_FLOAT || t == STX_DTYPE_DOUBLE;
}

/* Can gradients flow through forward step i? */
static bool differentiable(const stx_session *s, const stx_step *st) {
    if (stx__is_fused_conv(st) || stx__is_gap_blocked(st)) return true;
    if (st->run) return false;
    return st->c.node->def->backward != NULL || stx__rule_for(s, st->c.node->op_type) != NULL;
}

/* ---- the seed ---------------------------------------------------------------------------- */

static stx_status seed_run(stx_step *st) {
    stx_session *s = st->sess;
    const stx_seed *sd = &s->seed;
    const stx_tensor *y = &s->vals[s->seed_out];
    stx_tensor *dy = &s->vals[s->nv + s->seed_out];
    /* gradients with no contribution at all (requested but unreachable) read as zero */
    for (int k = 0; k < s->n_wrt; k++) {
        stx_tensor *gw = &s->vals[s->nv + s->wrt[k]];
        if (!s->need_grad[s->wrt[k]] && gw->data) memset(gw->data, 0, gw->nbytes);
    }
    if (!dy->data) return STX_OK;
    memset(dy->data, 0, dy->nbytes);
    int64_t n = y->rank > 0 ? y->dims[0] : 1;
    int64_t K = y->rank > 1 ? y->dims[1] : 1;
    int64_t inner = 1; /* frames (N, K, T) and anything after the class axis */
    for (int k = 2; k < y->rank; k++) inner *= y->dims[k];
    bool dbl = y->dtype == STX_DTYPE_DOUBLE;
    if (sd->weights) {
        const stx_tensor *w = sd->weights;
        bool same = w->rank == y->rank && w->dtype == STX_DTYPE_FLOAT;
        for (int k = 0; same && k < y->rank; k++) same = w->dims[k] == y->dims[k];
        if (!same) {
            char a[128], b[128];
            return stx__errf(
                &s->err, STX_E_SHAPE, "seed weights must be float32 %s like the output, got %s %s",
                stx__shape_str(y->dims, y->rank, a, sizeof a), stx_dtype_name(w->dtype),
                stx__shape_str(w->dims, w->rank, b, sizeof b));
        }
        int64_t tot = stx__numel(y->dims, y->rank);
        for (int64_t i = 0; i < tot; i++) {
            float wi = ((const float *)w->data)[i];
            if (dbl)
                ((double *)dy->data)[i] = wi;
            else
                ((float *)dy->data)[i] = wi;
        }
        for (int64_t i = 0; i < n; i++) s->seeded[i] = -1;
        return STX_OK;
    }
    if (y->rank < 2)
        return stx__errf(&s->err, STX_E_SHAPE,
                         "output '%s' has rank %d: a class target needs (N, K[, T])",
                         s->m->g.values[s->seed_out].name, y->rank);
    for (int64_t i = 0; i < n; i++) {
        int64_t fr = sd->frames ? sd->frames[i] : -1;
        if (fr < -1 || fr >= inner)
            return stx__errf(&s->err, STX_E_INVALID, "frame %lld out of range for output %s",
                             (long long)fr, "with that many frames");
        if (sd->frames && inner == 1 && fr > 0)
            return stx__errf(&s->err, STX_E_INVALID,
                             "frame %lld given but the output has no frames", (long long)fr);
        int64_t t0 = fr >= 0 ? fr : 0, t1 = fr >= 0 ? fr + 1 : inner;
        int64_t c = sd->targets ? sd->targets[i] : -1;
        if (c < -1 || c >= K)
            return stx__errf(&s->err, STX_E_INVALID, "target class %lld out of range [0, %lld)",
                             (long long)c, (long long)K);
        if (c < 0) { /* top class: of the chosen frame, or of the frame-averaged scores */
            double best = -INFINITY;
            for (int64_t k = 0; k < K; k++) {
                double acc = 0;
                for (int64_t t = t0; t < t1; t++) {
                    int64_t idx = (i * K + k) * inner + t;
                    acc += dbl ? ((const double *)y->data)[idx] : ((const float *)y->data)[idx];
                }
                if (acc > best) {
                    best = acc;
                    c = k;
                }
            }
        }
        s->seeded[i] = c;
        for (int64_t t = t0; t < t1; t++) {
            /* logit: d score / d y = one-hot; probability p_c = softmax(y)_c over the class axis:
             * d p_c / d y_j = p_c (delta_cj - p_j) */
            if (sd->score == STX_SCORE_PROB) {
                double mx = -INFINITY, sum = 0;
                for (int64_t k = 0; k < K; k++) {
                    int64_t idx = (i * K + k) * inner + t;
                    double v = dbl ? ((const double *)y->data)[idx] : ((const float *)y->data)[idx];
                    if (v > mx) mx = v;
                }
                for (int64_t k = 0; k < K; k++) {
                    int64_t idx = (i * K + k) * inner + t;
                    double v = dbl ? ((const double *)y->data)[idx] : ((const float *)y->data)[idx];
                    sum += exp(v - mx);
                }
                int64_t ic = (i * K + c) * inner + t;
                double pc =
                    exp((dbl ? ((const double *)y->data)[ic] : ((const float *)y->data)[ic]) - mx) /
                    sum;
                for (int64_t k = 0; k < K; k++) {
                    int64_t idx = (i * K + k) * inner + t;
                    double v = dbl ? ((const double *)y->data)[idx] : ((const float *)y->data)[idx];
                    double pk = exp(v - mx) / sum;
                    double gk = pc * ((k == c ? 1.0 : 0.0) - pk);
                    if (dbl)
                        ((double *)dy->data)[idx] = gk;
                    else
                        ((float *)dy->data)[idx] = (float)gk;
                }
            } else {
                int64_t idx = (i * K + c) * inner + t;
                if (dbl)
                    ((double *)dy->data)[idx] = 1.0;
                else
                    ((float *)dy->data)[idx] = 1.0f;
            }
        }
    }
    return STX_OK;
}

/* ---- backward steps ------------------------------------------------------------------------- */

static stx_status bwd_run(stx_step *b) {
    stx_session *s = b->sess;
    stx_step *f = &s->steps[b->fwd];
    /* fused steps overwrite a gradient they contribute to first, instead of zero + add */
    if (stx__is_fused_conv(f) || stx__is_gap_blocked(f)) return stx__fused_backward_run(s, f, b);
    for (int k = 0; k < b->c.n_in; k++)
        if ((b->zero_mask >> k) & 1u) memset(b->c.din[k]->data, 0, b->c.din[k]->nbytes);
    const stx_backward_rule *r = stx__rule_for(s, f->c.node->op_type);
    if (r) return r->fn(r->user, (stx_rule_ctx *)&b->c);
    return f->c.node->def->backward(&b->c);
}

stx_status stx__backward_plan(stx_session *s) {
    int nv = s->nv, nf = s->n_fwd;
    stx_context *ctx = s->ctx;
    uint8_t *fr = stx__calloc(ctx, (size_t)nv + 1, 1), *br = stx__calloc(ctx, (size_t)nv + 1, 1);
    if (!fr || !br) {
        stx__free(ctx, fr);
        stx__free(ctx, br);
        return stx__errf(&s->err, STX_E_NOMEM, "out of memory");
    }
    for (int k = 0; k < s->n_wrt; k++)
        if (float_dtype(s->vals[s->wrt[k]].dtype)) fr[s->wrt[k]] = 1;
    for (int i = 0; i < nf; i++) {
        const stx_step *st = &s->steps[i];
        bool any = false;
        for (int k = 0; k < st->n_vin; k++) any |= st->vin[k] >= 0 && fr[st->vin[k]];
        if (!any || !differentiable(s, st)) continue;
        for (int k = 0; k < st->n_vout; k++)
            if (st->vout[k] >= 0 && float_dtype(s->vals[st->vout[k]].dtype)) fr[st->vout[k]] = 1;
    }
    br[s->seed_out] = 1;
    for (int i = nf - 1; i >= 0; i--) {
        const stx_step *st = &s->steps[i];
        bool any = false;
        for (int k = 0; k < st->n_vout; k++) any |= st->vout[k] >= 0 && br[st->vout[k]];
        if (!any || !differentiable(s, st)) continue;
        for (int k = 0; k < st->n_vin; k++)
            if (st->vin[k] >= 0 && float_dtype(s->vals[st->vin[k]].dtype)) br[st->vin[k]] = 1;
    }
    for (int v = 0; v < nv; v++) s->need_grad[v] = fr[v] && br[v];
    stx__free(ctx, fr);
    stx__free(ctx, br);
    if (!float_dtype(s->vals[s->seed_out].dtype)) {
        const char *nm = s->m->g.values[s->seed_out].name;
        return stx__errf(&s->err, STX_E_INVALID, "output '%s' is %s: it cannot be seeded", nm,
                         stx_dtype_name(s->vals[s->seed_out].dtype));
    }
    s->need_grad[s->seed_out] = 1;

    /* gradient values: same dtype, shape and layout as their values; in bf16 sessions the
     * gradient of a bfloat16 activation is float32 in the same (channels-last) order */
    for (int v = 0; v < nv; v++) {
        bool want = s->need_grad[v];
        for (int k = 0; k < s->n_wrt; k++) want |= s->wrt[k] == v;
        if (!want) continue;
        stx_tensor *g = &s->vals[nv + v];
        *g = s->vals[v];
        if (s->bf16 && s->blocked[v])
            g->nbytes = (size_t)stx__numel(g->dims, g->rank) * sizeof(float);
        g->data = NULL;
        g->owns = false;
        s->kind[nv + v] = STX_VK_RUNTIME;
        s->blocked[nv + v] = s->blocked[v];
    }

    /* pools for backward steps' value lists and pointer arrays */
    int nint = 2 + s->n_wrt, nptr = 0;
    for (int i = 0; i < nf; i++) {
        const stx_step *st = &s->steps[i];
        nint += 2 * (st->n_vin + st->n_vout);
        nptr += 2 * (st->c.n_in + st->c.n_out);
    }
    s->int_pool = stx__calloc(ctx, (size_t)nint + 1, sizeof(int));
    s->ptr_pool = stx__calloc(ctx, (size_t)nptr + 1, sizeof(stx_tensor *));
    s->seeded =
        stx__calloc(ctx, (size_t)(s->vals[s->seed_out].rank ? s->vals[s->seed_out].dims[0] : 1) + 1,
                    sizeof(int64_t));
    if (!s->int_pool || !s->ptr_pool || !s->seeded)
        return stx__errf(&s->err, STX_E_NOMEM, "out of memory");
    int ip = 0, pp = 0;

    /* the seed step: reads the output, writes its gradient */
    stx_step *sd = &s->steps[nf];
    memset(sd, 0, sizeof *sd);
    sd->fwd = -1;
    sd->sess = s;
    sd->run = seed_run;
    sd->c = s->steps[nf - 1 >= 0 ? nf - 1 : 0].c;
    /* it also "writes" every requested gradient, so that each has a buffer from here on, even
     * one no path reaches (it reads as zero) */
    s->int_pool[ip] = s->seed_out;
    s->int_pool[ip + 1] = nv + s->seed_out;
    sd->vin = &s->int_pool[ip];
    sd->n_vin = 1;
    sd->vout = &s->int_pool[ip + 1];
    sd->n_vout = 1;
    ip += 2;
    for (int k = 0; k < s->n_wrt; k++)
        if (s->wrt[k] != s->seed_out) s->int_pool[ip + sd->n_vout++ - 1] = nv + s->wrt[k];
    ip += sd->n_vout - 1;
    int w = nf + 1;
    /* zero-before-first-contribution bookkeeping: a gradient seen for the first time as a din */
    uint8_t *seen = stx__calloc(ctx, (size_t)nv + 1, 1);
    if (!seen) return stx__errf(&s->err, STX_E_NOMEM, "out of memory");
    seen[s->seed_out] = 1;
    for (int i = nf - 1; i >= 0; i--) {
        stx_step *f = &s->steps[i];
        bool in_any = false, out_any = false;
        for (int k = 0; k < f->n_vin; k++) in_any |= f->vin[k] >= 0 && s->need_grad[f->vin[k]];
        for (int k = 0; k < f->n_vout; k++) out_any |= f->vout[k] >= 0 && s->need_grad[f->vout[k]];
        if (!in_any || !out_any || !differentiable(s, f)) continue;
        f->c.need_backward = 1; /* the op's prepare may build backward state */
        stx_step *b = &s->steps[w++];
        memset(b, 0, sizeof *b);
        b->fwd = i;
        b->sess = s;
        b->node = f->node;
        b->run = bwd_run;
        b->c = f->c;
        b->c.din = &s->ptr_pool[pp];
        pp += f->c.n_in;
        b->c.dout = &s->ptr_pool[pp];
        pp += f->c.n_out;
        /* which forward values this backward reads */
        uint32_t need_in = 0, need_out = 0;
        if (stx__is_fused_conv(f)) {
            need_out = 1; /* the ReLU mask; harmless when there is no ReLU */
        } else if (stx__is_gap_blocked(f)) {
            need_in = need_out = 0;
        } else if (stx__rule_for(s, f->c.node->op_type)) {
            need_in = need_out = 0xffffffffu;
        } else {
            const stx_op_def *d = f->c.node->def;
            uint32_t din_mask = 0;
            for (int k = 0; k < f->c.n_in && k < 32; k++)
                if (f->c.node->in[k] >= 0 && s->need_grad[f->c.node->in[k]]) din_mask |= 1u << k;
            need_in = d->bwd_in_for ? d->bwd_in_for(din_mask) : d->bwd_in;
            need_out = d->bwd_out;
        }
        int *vin = &s->int_pool[ip];
        int nvin = 0;
        for (int k = 0; k < f->n_vin; k++)
            if (((need_in >> k) & 1u) && f->vin[k] >= 0) vin[nvin++] = f->vin[k];
        for (int k = 0; k < f->n_vout; k++) {
            if (((need_out >> k) & 1u) && f->vout[k] >= 0) vin[nvin++] = f->vout[k];
            if (f->vout[k] >= 0 && s->need_grad[f->vout[k]]) vin[nvin++] = nv + f->vout[k];
        }
        ip += nvin;
        int *vout = &s->int_pool[ip];
        int nvout = 0;
        for (int k = 0; k < f->n_vin; k++) {
            int v = f->vin[k];
            if (v < 0 || !s->need_grad[v]) continue;
            vout[nvout++] = nv + v;
        }
        ip += nvout;
        b->vin = vin;
        b->n_vin = nvin;
        b->vout = vout;
        b->n_vout = nvout;
        /* c.din/c.dout in the step's own input order (fused steps: x, residual / y) */
        for (int k = 0; k < f->c.n_in; k++) {
            int v = -1;
            if (stx__is_fused_conv(f) || stx__is_gap_blocked(f))
                v = k < f->n_vin ? f->vin[k] : -1;
            else
                v = f->c.node->in[k];
            b->c.din[k] = (v >= 0 && s->need_grad[v]) ? &s->vals[nv + v] : NULL;
            if (v >= 0 && s->need_grad[v] && !seen[v]) {
                seen[v] = 1;
                b->zero_mask |= 1u << k;
            }
        }
        for (int k = 0; k < f->c.n_out; k++) {
            int v = (stx__is_fused_conv(f) || stx__is_gap_blocked(f))
                        ? (k < f->n_vout ? f->vout[k] : -1)
                        : f->c.node->out[k];
            b->c.dout[k] = (v >= 0 && s->need_grad[v]) ? &s->vals[nv + v] : NULL;
        }
    }
    stx__free(ctx, seen);
    s->n_steps = w;
    return STX_OK;
}

stx_status stx__backward_prepare(stx_session *s) {
    for (int i = s->n_fwd + 1; i < s->n_steps; i++) {
        stx_step *b = &s->steps[i];
        stx_step *f = &s->steps[b->fwd];
        if (stx__is_fused_conv(f)) {
            stx_status st = stx__fused_backward_prepare(s, f);
            if (st) return st;
        }
        /* ops whose backward uses planned state see need_backward at their prepare; the forward
         * prepare already ran, so re-run it with the flag when the op asks for state */
        b->c.state = f->state;
    }
    return STX_OK;
}

void stx__backward_free(stx_session *s) {
    stx__free(s->ctx, s->int_pool);
    stx__free(s->ctx, s->ptr_pool);
    for (int k = 0; k < 6; k++) {
        stx__free(s->ctx, s->fscratch[k]);
        s->fscratch[k] = NULL;
    }
    stx__free(s->ctx, s->seeded);
    s->int_pool = NULL;
    s->ptr_pool = NULL;
    s->seeded = NULL;
}

/* ---- public API ------------------------------------------------------------------------------ */

stx_seed stx_seed_default(void) {
    stx_seed sd;
    memset(&sd, 0, sizeof sd);
    sd.size = sizeof sd;
    return sd;
}

stx_status stx_session_backward(stx_session *s, const stx_seed *seed) {
    if (!s) return STX_E_INVALID;
    if (s->seed_out < 0)
        return stx__errf(&s->err, STX_E_INVALID,
                         "the session was planned without gradient targets (grad_wrt)");
    if (!s->ran_forward)
        return stx__errf(&s->err, STX_E_INVALID, "stx_session_backward needs a forward run first");
    s->seed = seed ? *seed : stx_seed_default();
    stx__set_threads(s->nthreads);
    for (int i = s->n_fwd; i < s->n_steps; i++) {
        stx_step *b = &s->steps[i];
        b->c.err = &s->err;
        stx_status st = b->run(b);
        if (st) return st;
    }
    return STX_OK;
}

stx_tensor *stx_session_grad(stx_session *s, const char *name) {
    int v = strcmp(name, "input") == 0 && s->n_inputs > 0 && stx__graph_find(&s->m->g, name) < 0
                ? s->inputs[0]
                : stx__session_lookup(s, name);
    if (v < 0) return NULL;
    for (int k = 0; k < s->n_wrt; k++)
        if (s->wrt[k] == v) return &s->vals[s->nv + v];
    return NULL;
}

stx_tensor *stx_session_value(stx_session *s, const char *name) {
    int v = strcmp(name, "input") == 0 && s->n_inputs > 0 && stx__graph_find(&s->m->g, name) < 0
                ? s->inputs[0]
                : stx__session_lookup(s, name);
    if (v < 0 || s->blocked[v]) return NULL;
    if (s->kind[v] == STX_VK_MODEL_CONST || s->kind[v] == STX_VK_FOLDED) return &s->vals[v];
    if (s->kind[v] != STX_VK_RUNTIME) return NULL;
    if (s->keep[v]) return &s->vals[v];
    for (int k = 0; k < s->m->g.n_outputs; k++)
        if (s->m->g.outputs[k] == v) return &s->vals[v];
    return NULL;
}

const int64_t *stx_session_seeded_targets(const stx_session *s) {
    return s->seeded;
}

/* ---- rule context accessors (the context is the backward step's op context) ---------------- */

const char *stx_rule_op_type(const stx_rule_ctx *c) {
    return ((const stx_op_ctx *)c)->node->op_type;
}
const char *stx_rule_node_name(const stx_rule_ctx *c) {
    return ((const stx_op_ctx *)c)->node->name;
}
int stx_rule_num_inputs(const stx_rule_ctx *c) {
    return ((const stx_op_ctx *)c)->n_in;
}
int stx_rule_num_outputs(const stx_rule_ctx *c) {
    return ((const stx_op_ctx *)c)->n_out;
}
stx_tensor *stx_rule_input(stx_rule_ctx *c, int i) {
    stx_op_ctx *o = (stx_op_ctx *)c;
    return i >= 0 && i < o->n_in ? o->in[i] : NULL;
}
stx_tensor *stx_rule_output(stx_rule_ctx *c, int i) {
    stx_op_ctx *o = (stx_op_ctx *)c;
    return i >= 0 && i < o->n_out ? o->out[i] : NULL;
}
stx_tensor *stx_rule_grad_output(stx_rule_ctx *c, int i) {
    stx_op_ctx *o = (stx_op_ctx *)c;
    return i >= 0 && i < o->n_out ? o->dout[i] : NULL;
}
stx_tensor *stx_rule_grad_input(stx_rule_ctx *c, int i) {
    stx_op_ctx *o = (stx_op_ctx *)c;
    return i >= 0 && i < o->n_in ? o->din[i] : NULL;
}
stx_status stx_rule_default(stx_rule_ctx *c) {
    stx_op_ctx *o = (stx_op_ctx *)c;
    if (!o->node->def->backward)
        return stx__node_err(o, STX_E_UNSUPPORTED, "has no backward to fall back to");
    return o->node->def->backward(o);
}
