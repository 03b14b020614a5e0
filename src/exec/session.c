/* session.c: planning (shape inference, constant folding, memory) and the forward run.
 *
 * Plan once, run many: stx_session_create infers every shape for the concrete input shape,
 * evaluates at plan time every node whose inputs are all known (this folds the Shape/Gather/
 * Concat/Reshape sub-graphs exporters emit), prepares per-node state, and places every runtime
 * tensor in one arena by lifetime. stx_session_run then allocates nothing. */
#include "../ops/dnnl_util.h"
#include "session.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

stx_session_options stx_session_options_default(void) {
    stx_session_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.use_dnnl = 1;
    o.fuse = 1;
    return o;
}

int stx__session_lookup(const stx_session *s, const char *name) {
    const char *t;
    if (stx_model_resolve_tensor(s->m, name, &t) != STX_OK) return -1;
    return stx__graph_find(&s->m->g, t);
}

/* Exporters that saw a fixed batch write it into Reshape targets ([1, -1], or [N*T, C] for
 * frame-batched CNNs). When the session batch n differs from the declared one, the first entry
 * of a constant Reshape target on a runtime tensor is rescaled by n / declared when
 *   - the target has a -1 and its first entry is the declared batch, or the declared batch
 *     times the input's per-batch leading extent, or
 *   - the target has no -1, does not match the input's element count, and the rescaled one does.
 */
static stx_status adjust_reshape_batch(stx_session *s, stx_step *st, int64_t decl_n, int64_t n,
                                       stx_tensor **owned) {
    stx_tensor *x = st->c.in[0], *shp = st->c.in[1];
    *owned = NULL;
    int xv = st->c.node->in[0];
    if (decl_n <= 0 || decl_n == n || !shp || !shp->data || shp->dtype != STX_DTYPE_INT64 ||
        shp->rank != 1 || shp->dims[0] < 1 || x->rank < 1 || xv < 0 ||
        s->kind[xv] == STX_VK_MODEL_CONST || s->kind[xv] == STX_VK_FOLDED)
        return STX_OK;
    const int64_t *v = shp->data;
    int64_t k = x->dims[0], cnt = shp->dims[0], prod = 1, numel = stx__numel(x->dims, x->rank);
    bool minus = false;
    for (int64_t i = 0; i < cnt; i++) {
        if (v[i] == -1)
            minus = true;
        else
            prod *= v[i] == 0 && i < x->rank ? x->dims[i] : v[i];
    }
    int64_t nv0;
    if (minus) {
        if (k % n != 0 || v[0] % decl_n != 0 || (v[0] != decl_n * (k / n) && v[0] != decl_n))
            return STX_OK;
        nv0 = v[0] / decl_n * n;
    } else {
        if (prod == numel || v[0] % decl_n != 0 || prod / decl_n * n != numel) return STX_OK;
        nv0 = v[0] / decl_n * n;
    }
    stx_tensor *c = stx__tensor_clone(s->ctx, shp);
    if (!c) return stx__errf(&s->err, STX_E_NOMEM, "out of memory");
    ((int64_t *)c->data)[0] = nv0;
    st->c.in[1] = c;
    *owned = c;
    return STX_OK;
}

/* Assigns arena offsets to runtime values by lifetime (first fit, largest first). */
typedef struct {
    int v;
    int first, last;
    size_t size, off;
} live_range;

static int cmp_size_desc(const void *a, const void *b) {
    const live_range *x = a, *y = b;
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    return x->v - y->v;
}

static stx_status plan_memory(stx_session *s) {
    int nv = 2 * s->nv; /* values and their gradients */
    live_range *r = stx__calloc(s->ctx, (size_t)nv + 1, sizeof *r);
    int *idx = stx__malloc(s->ctx, sizeof(int) * ((size_t)nv + 1));
    if (!r || !idx) {
        stx__free(s->ctx, r);
        stx__free(s->ctx, idx);
        return stx__errf(&s->err, STX_E_NOMEM, "out of memory");
    }
    for (int v = 0; v < nv; v++) idx[v] = -1;
    int nr = 0;
    for (int i = 0; i < s->n_steps; i++) {
        const stx_step *sp = &s->steps[i];
        for (int k = 0; k < sp->n_vout; k++) {
            int v = sp->vout[k];
            if (v < 0 || s->kind[v] != STX_VK_RUNTIME) continue;
            if (idx[v] >= 0) { /* written again (gradients accumulate): one buffer throughout */
                r[idx[v]].last = i;
                continue;
            }
            idx[v] = nr;
            r[nr].v = v;
            r[nr].first = i;
            r[nr].last = i;
            r[nr].size = (s->vals[v].nbytes + 63) & ~(size_t)63;
            nr++;
        }
        for (int k = 0; k < sp->n_vin; k++) {
            int v = sp->vin[k];
            if (v >= 0 && idx[v] >= 0) r[idx[v]].last = i;
        }
    }
    const stx_graph *g = &s->m->g;
    for (int k = 0; k < g->n_outputs; k++)
        if (idx[g->outputs[k]] >= 0) r[idx[g->outputs[k]]].last = s->n_steps;
    for (int v = 0; v < s->nv; v++)
        if (s->keep[v] && idx[v] >= 0) r[idx[v]].last = s->n_steps;
    for (int k = 0; k < s->n_wrt; k++) /* requested gradients live to the end */
        if (idx[s->nv + s->wrt[k]] >= 0) r[idx[s->nv + s->wrt[k]]].last = s->n_steps;
    qsort(r, (size_t)nr, sizeof *r, cmp_size_desc);
    size_t total = 0;
    for (int i = 0; i < nr; i++) {
        /* candidate offsets: 0 and the end of every placed, overlapping range */
        size_t best = SIZE_MAX;
        for (int j = -1; j < i; j++) {
            size_t cand = 0;
            if (j >= 0) {
                if (r[j].last < r[i].first || r[i].last < r[j].first) continue;
                cand = r[j].off + r[j].size;
            }
            bool ok = true;
            for (int q = 0; q < i && ok; q++) {
                if (r[q].last < r[i].first || r[i].last < r[q].first) continue;
                if (cand < r[q].off + r[q].size && r[q].off < cand + r[i].size) ok = false;
            }
            if (ok && cand < best) best = cand;
        }
        r[i].off = best;
        if (best + r[i].size > total) total = best + r[i].size;
    }
    s->arena_size = total;
    s->arena = stx__malloc(s->ctx, total ? total : 64);
    if (!s->arena) {
        stx__free(s->ctx, r);
        stx__free(s->ctx, idx);
        return stx__errf(&s->err, STX_E_NOMEM, "out of memory for %zu bytes of activations", total);
    }
    memset(s->arena, 0, total);
    for (int i = 0; i < nr; i++) s->vals[r[i].v].data = (char *)s->arena + r[i].off;
    stx__free(s->ctx, r);
    stx__free(s->ctx, idx);
    return STX_OK;
}

static void set_nbytes(stx_tensor *t) {
    t->nbytes = (size_t)stx__numel(t->dims, t->rank) * stx_dtype_size(t->dtype);
}

/* True when the op needs only the shape of its input (it can be folded without data). */
static bool shape_only_op(const stx_node *n) {
    return strcmp(n->op_type, "Shape") == 0 || strcmp(n->op_type, "Size") == 0;
}

/* start_at: keeps only the steps that depend on value `name`, which becomes the session's one
 * input. Fails when a kept step reads a run-time value computed by a dropped step. */
static stx_status restrict_to_tail(stx_session *s, const char *name) {
    stx_err *ce = &s->ctx->err;
    const stx_graph *g = &s->m->g;
    int sv = stx__session_lookup(s, name);
    if (sv < 0) return stx__errf(ce, STX_E_NOTFOUND, "tensor or module '%s' not found", name);
    if (s->kind[sv] != STX_VK_RUNTIME)
        return stx__errf(ce, STX_E_INVALID,
                         "start tensor '%s' is not computed at run time (input or constant)", name);
    if (s->seed_out >= 0)
        return stx__errf(ce, STX_E_UNSUPPORTED, "start_at and grad_wrt cannot be combined");
    uint8_t *dep = stx__calloc(s->ctx, (size_t)s->nv + 1, 1);
    if (!dep) return stx__errf(ce, STX_E_NOMEM, "out of memory");
    dep[sv] = 1;
    int n = 0;
    stx_status st = STX_OK;
    for (int i = 0; i < s->n_steps; i++) {
        stx_step *sp = &s->steps[i];
        bool d = false;
        for (int k = 0; k < sp->n_vin; k++) d |= sp->vin[k] >= 0 && dep[sp->vin[k]];
        if (!d) {
            stx_tensor_free(sp->owned);
            sp->owned = NULL;
            continue;
        }
        for (int k = 0; k < sp->n_vout; k++)
            if (sp->vout[k] >= 0) dep[sp->vout[k]] = 1;
        if (n != i) s->steps[n] = *sp;
        n++;
    }
    for (int i = n; i < s->n_steps; i++) memset(&s->steps[i], 0, sizeof s->steps[i]);
    s->n_steps = n;
    for (int i = 0; i < n && !st; i++) {
        const stx_step *sp = &s->steps[i];
        for (int k = 0; k < sp->n_vin && !st; k++) {
            int v = sp->vin[k];
            if (v >= 0 && !dep[v] && (s->kind[v] == STX_VK_RUNTIME || s->kind[v] == STX_VK_INPUT))
                st = stx__errf(ce, STX_E_UNSUPPORTED,
                               "node '%s' after '%s' also reads '%s', computed before it (a "
                               "connection around it): the network cannot restart there",
                               sp->c.node->name, name, g->values[v].name);
        }
    }
    bool any = false;
    for (int k = 0; k < g->n_outputs; k++) any |= dep[g->outputs[k]] != 0;
    if (!st && !any)
        st = stx__errf(ce, STX_E_INVALID, "no output of the model depends on '%s'", name);
    if (!st) {
        for (int v = 0; v < s->nv; v++)
            if (s->kind[v] == STX_VK_RUNTIME && !dep[v]) s->kind[v] = STX_VK_UNUSED;
        s->kind[sv] = STX_VK_INPUT;
        s->inputs[0] = sv;
        s->n_inputs = 1;
    }
    stx__free(s->ctx, dep);
    return st;
}

stx_status stx_session_create(stx_model *m, const stx_session_options *opt,
                              const int64_t *input_shape, int rank, stx_session **out) {
    return stx_session_create_multi(m, opt, 1, &input_shape, &rank, out);
}

stx_status stx_session_create_multi(stx_model *m, const stx_session_options *opt, int n_inputs,
                                    const int64_t *const *shapes, const int *ranks,
                                    stx_session **out) {
    if (!m || !out || n_inputs < 0 || (n_inputs > 0 && (!shapes || !ranks))) return STX_E_INVALID;
    for (int i = 0; i < n_inputs; i++)
        if (ranks[i] < 0 || ranks[i] > STX_MAX_RANK || (ranks[i] > 0 && !shapes[i]))
            return STX_E_INVALID;
    *out = NULL;
    stx_context *ctx = m->ctx;
    stx_err *ce = &ctx->err;
    stx_session_options o = opt ? *opt : stx_session_options_default();
    const stx_graph *g = &m->g;
    stx_session *s = stx__calloc(ctx, 1, sizeof *s);
    if (!s) return stx__errf(ce, STX_E_NOMEM, "out of memory");
    s->m = m;
    s->ctx = ctx;
    s->nthreads = o.num_threads > 0 ? o.num_threads : ctx->num_threads;
    s->use_dnnl = o.use_dnnl;
    s->fuse = o.fuse;
    s->bf16 = o.precision == STX_PRECISION_BF16;
    s->nv = g->n_values;
    s->n_inputs = g->n_inputs;
    stx_status st = STX_OK;
    int total_ptrs = 0;
    for (int i = 0; i < g->n_nodes; i++) total_ptrs += g->nodes[i].n_in + g->nodes[i].n_out;
    s->vals = stx__calloc(ctx, 2 * (size_t)s->nv + 1, sizeof *s->vals);
    s->kind = stx__calloc(ctx, 2 * (size_t)s->nv + 1, 1);
    s->keep = stx__calloc(ctx, (size_t)s->nv + 1, 1);
    /* forward steps, then the seed and one backward step per forward step */
    s->steps = stx__calloc(ctx, 2 * (size_t)g->n_nodes + 2, sizeof *s->steps);
    s->ptrs = stx__calloc(ctx, (size_t)total_ptrs + 1, sizeof *s->ptrs);
    s->inputs = stx__calloc(ctx, (size_t)g->n_inputs + 1, sizeof(int));
    s->blocked = stx__calloc(ctx, 2 * (size_t)s->nv + 1, 1);
    s->need_grad = stx__calloc(ctx, (size_t)s->nv + 1, 1);
    s->seed_out = -1;
    if (!s->vals || !s->kind || !s->keep || !s->steps || !s->ptrs || !s->inputs || !s->blocked ||
        !s->need_grad) {
        st = stx__errf(ce, STX_E_NOMEM, "out of memory");
        goto fail;
    }
    /* Values: constants from the model, the input with the requested shape. */
    for (int v = 0; v < s->nv; v++) {
        const stx_value *val = &g->values[v];
        stx_tensor *t = &s->vals[v];
        t->ctx = ctx;
        if (val->data) {
            *t = *val->data;
            t->owns = false;
            s->kind[v] = STX_VK_MODEL_CONST;
        }
    }
    if (o.keep)
        for (const char *const *k = o.keep; *k; k++) {
            int v = stx__session_lookup(s, *k);
            if (v < 0) {
                st = stx__errf(ce, STX_E_NOTFOUND, "tensor or module '%s' not found in the model",
                               *k);
                goto fail;
            }
            s->keep[v] = 1;
        }
    if (o.n_rules > 0) {
        if (!o.rules) {
            st = stx__errf(ce, STX_E_INVALID, "n_rules > 0 but rules is NULL");
            goto fail;
        }
        s->rules = stx__calloc(ctx, (size_t)o.n_rules, sizeof *s->rules);
        if (!s->rules) {
            st = stx__errf(ce, STX_E_NOMEM, "out of memory");
            goto fail;
        }
        for (int k = 0; k < o.n_rules; k++) {
            if (!o.rules[k].op_type || !o.rules[k].fn) {
                st = stx__errf(ce, STX_E_INVALID, "backward rule %d has no op type or function", k);
                goto fail;
            }
            s->rules[k] = o.rules[k];
        }
        s->n_rules = o.n_rules;
    }
    if ((unsigned)o.precision > STX_PRECISION_BF16) {
        st = stx__errf(ce, STX_E_INVALID, "unknown precision %d", (int)o.precision);
        goto fail;
    }
    if (s->bf16 && (!s->use_dnnl || !stx__dnnl_has_bf16())) {
        st = stx__errf(ce, STX_E_UNSUPPORTED,
                       !s->use_dnnl ? "precision bf16 needs the oneDNN kernels (use_dnnl)"
                                    : "precision bf16 needs a CPU with AVX-512 BF16 or AMX");
        goto fail;
    }
    if (o.grad_wrt) {
        int n = 0;
        for (const char *const *k = o.grad_wrt; *k; k++) n++;
        s->wrt = stx__calloc(ctx, (size_t)n + 1, sizeof(int));
        if (!s->wrt) {
            st = stx__errf(ce, STX_E_NOMEM, "out of memory");
            goto fail;
        }
        for (const char *const *k = o.grad_wrt; *k; k++) {
            int v = strcmp(*k, "input") == 0 && g->n_inputs > 0 && stx__graph_find(g, *k) < 0
                        ? g->inputs[0]
                        : stx__session_lookup(s, *k);
            if (v < 0) {
                st = stx__errf(ce, STX_E_NOTFOUND,
                               "gradient target '%s' is neither a tensor nor a module of the model",
                               *k);
                goto fail;
            }
            s->wrt[s->n_wrt++] = v;
            s->keep[v] = 1; /* observable: not fused away, plain layout */
        }
        if (o.grad_output < 0 || o.grad_output >= g->n_outputs) {
            st = stx__errf(ce, STX_E_INVALID, "grad_output %d out of range (model has %d outputs)",
                           o.grad_output, g->n_outputs);
            goto fail;
        }
        s->seed_out = g->outputs[o.grad_output];
    }
    if (n_inputs != g->n_inputs) {
        st = stx__errf(ce, STX_E_INVALID, "model has %d input(s) (first: '%s'), %d shape(s) given",
                       g->n_inputs, g->values[g->inputs[0]].name, n_inputs);
        goto fail;
    }
    for (int i = 0; i < g->n_inputs; i++) {
        int iv = g->inputs[i];
        s->inputs[i] = iv;
        const stx_value *in = &g->values[iv];
        const int64_t *input_shape = shapes[i];
        int rank = ranks[i];
        char a[128], b[128];
        if (rank < 0 || rank > STX_MAX_RANK || (rank > 0 && !input_shape)) {
            st = stx__errf(ce, STX_E_SHAPE, "input '%s': rank %d given (0 to %d)", in->name, rank,
                           STX_MAX_RANK);
            goto fail;
        }
        if (in->rank >= 0 && in->rank != rank) {
            st =
                stx__errf(ce, STX_E_SHAPE, "input '%s' has rank %d in the model (%s), got shape %s",
                          in->name, in->rank, stx__shape_str(in->dims, in->rank, a, sizeof a),
                          stx__shape_str(input_shape, rank, b, sizeof b));
            goto fail;
        }
        for (int k = 0; k < rank; k++) {
            /* The batch axis may change (re-planning); other fixed axes must match. */
            if (input_shape[k] < 0 || (k > 0 && in->dims[k] > 0 && in->dims[k] != input_shape[k])) {
                st = stx__errf(ce, STX_E_SHAPE, "input '%s' expects shape %s, got %s", in->name,
                               stx__shape_str(in->dims, in->rank, a, sizeof a),
                               stx__shape_str(input_shape, rank, b, sizeof b));
                goto fail;
            }
        }
        stx_tensor *t = &s->vals[iv];
        t->dtype = in->dtype ? in->dtype : STX_DTYPE_FLOAT;
        t->rank = rank;
        for (int k = 0; k < rank; k++) t->dims[k] = input_shape[k];
        uint64_t in_bytes;
        if (!stx__nbytes_checked(t->dims, rank, t->dtype, &in_bytes)) {
            st = stx__errf(ce, STX_E_SHAPE, "input '%s': shape %s is too large (over 2^47 bytes)",
                           in->name, stx__shape_str(input_shape, rank, b, sizeof b));
            goto fail;
        }
        set_nbytes(t);
        s->kind[iv] = STX_VK_INPUT;
        const stx_tensor *fx = o.fixed_inputs ? o.fixed_inputs[i] : NULL;
        if (fx) {
            bool same = fx->rank == rank && fx->dtype == t->dtype;
            for (int k = 0; same && k < rank; k++) same = fx->dims[k] == input_shape[k];
            if (!same) {
                st = stx__errf(ce, STX_E_SHAPE,
                               "fixed value of input '%s' does not match its shape", in->name);
                goto fail;
            }
            t->data = stx__malloc(ctx, t->nbytes ? t->nbytes : 1);
            if (!t->data) {
                st = stx__errf(ce, STX_E_NOMEM, "out of memory");
                goto fail;
            }
            if (t->nbytes) memcpy(t->data, fx->data, t->nbytes);
            t->owns = true;
            s->kind[iv] = STX_VK_FOLDED;
        }
    }
    int64_t decl_n = -1, new_n = 1;
    if (g->n_inputs > 0 && g->values[g->inputs[0]].rank > 0 && ranks[0] > 0) {
        decl_n = g->values[g->inputs[0]].dims[0];
        new_n = shapes[0][0];
    }

    /* Shape inference and constant folding, node by node in topological order. */
    int np = 0;
    for (int ni = 0; ni < g->n_nodes; ni++) {
        const stx_node *n = &g->nodes[ni];
        stx_step *stp = &s->steps[s->n_steps];
        memset(stp, 0, sizeof *stp);
        stp->node = ni;
        stx_op_ctx *c = &stp->c;
        c->ctx = ctx;
        c->node = n;
        c->err = ce;
        c->opset = g->opset;
        c->no_dnnl = !s->use_dnnl;
        c->n_in = n->n_in;
        c->n_out = n->n_out;
        c->in = &s->ptrs[np];
        np += n->n_in;
        c->out = &s->ptrs[np];
        np += n->n_out;
        bool all_const = true;
        for (int k = 0; k < n->n_in; k++) {
            int v = n->in[k];
            c->in[k] = v >= 0 ? &s->vals[v] : NULL;
            if (v >= 0 && s->kind[v] == STX_VK_UNUSED) {
                st = stx__errf(ce, STX_E_INTERNAL, "node '%s': input '%s' not computed", n->name,
                               g->values[v].name);
                goto fail;
            }
            if (v >= 0 && s->kind[v] != STX_VK_MODEL_CONST && s->kind[v] != STX_VK_FOLDED)
                all_const = false;
        }
        for (int k = 0; k < n->n_out; k++) c->out[k] = n->out[k] >= 0 ? &s->vals[n->out[k]] : NULL;
        if (strcmp(n->op_type, "Reshape") == 0 && n->n_in >= 2) {
            st = adjust_reshape_batch(s, stp, decl_n, new_n, &stp->owned);
            if (st) goto fail;
        }
        st = n->def->infer(c);
        if (st) goto fail;
        for (int k = 0; k < n->n_out; k++) {
            stx_tensor *t = c->out[k];
            if (!t) continue;
            int64_t cnt;
            uint64_t nb;
            if (!stx__numel_checked(t->dims, t->rank, &cnt) || stx_dtype_size(t->dtype) == 0) {
                char sb[128];
                st = stx__errf(ce, STX_E_SHAPE, "node '%s' (%s): invalid output %d shape %s",
                               n->name, n->op_type, k,
                               stx__shape_str(t->dims, t->rank, sb, sizeof sb));
                goto fail;
            }
            if (!stx__nbytes_checked(t->dims, t->rank, t->dtype, &nb)) {
                char sb[128];
                st = stx__errf(ce, STX_E_SHAPE,
                               "node '%s' (%s): output %d shape %s is too large (over 2^47 bytes)",
                               n->name, n->op_type, k,
                               stx__shape_str(t->dims, t->rank, sb, sizeof sb));
                goto fail;
            }
            set_nbytes(t);
        }
        if (all_const || shape_only_op(n)) {
            /* Fold now: outputs get their own storage owned by the session. */
            for (int k = 0; k < n->n_out; k++) {
                stx_tensor *t = c->out[k];
                if (!t) continue;
                t->data = stx__calloc(ctx, 1, t->nbytes ? t->nbytes : 1);
                if (!t->data) {
                    st = stx__errf(ce, STX_E_NOMEM, "out of memory");
                    goto fail;
                }
                t->owns = true;
                s->kind[n->out[k]] = STX_VK_FOLDED;
            }
            void *state = NULL;
            if (n->def->prepare) st = n->def->prepare(c, &state);
            c->state = state;
            if (!st) st = n->def->forward(c);
            if (n->def->release && state) n->def->release(state);
            c->state = NULL;
            stx_tensor_free(stp->owned);
            stp->owned = NULL;
            if (st) goto fail;
            continue;
        }
        for (int k = 0; k < n->n_out; k++)
            if (n->out[k] >= 0) s->kind[n->out[k]] = STX_VK_RUNTIME;
        if (n->def->macs) s->macs += n->def->macs(c);
        stp->n_vin = n->n_in;
        stp->vin = n->in;
        stp->n_vout = n->n_out;
        stp->vout = n->out;
        s->n_steps++;
    }
    for (int k = 0; k < g->n_outputs; k++) {
        int v = g->outputs[k];
        if (s->kind[v] == STX_VK_UNUSED) {
            st = stx__errf(ce, STX_E_INTERNAL, "graph output '%s' not computed", g->values[v].name);
            goto fail;
        }
    }
    if (o.start_at) {
        st = restrict_to_tail(s, o.start_at);
        if (st) goto fail;
    }
    stx__set_threads(s->nthreads); /* oneDNN splits work when primitives are created */
    if (s->use_dnnl && s->fuse) {
        st = stx__fuse_plan(s);
        if (st) {
            stx__errf(ce, st, "%s", s->err.msg);
            goto fail;
        }
    }
    s->n_fwd = s->n_steps;
    if (s->seed_out >= 0) {
        st = stx__backward_plan(s);
        if (st) {
            stx__errf(ce, st, "%s", s->err.msg);
            goto fail;
        }
    }
    st = plan_memory(s);
    if (st) {
        stx__errf(ce, st, "%s", s->err.msg);
        goto fail;
    }
    for (int i = 0; i < s->n_fwd; i++) {
        stx_step *stp = &s->steps[i];
        if (stp->run || !stp->c.node->def->prepare) continue;
        st = stp->c.node->def->prepare(&stp->c, &stp->state);
        stp->c.state = stp->state;
        if (st) goto fail;
    }
    if (s->seed_out >= 0) {
        st = stx__backward_prepare(s);
        if (st) {
            stx__errf(ce, st, "%s", s->err.msg);
            goto fail;
        }
    }
    *out = s;
    return STX_OK;
fail:
    if (s->steps && !s->n_fwd) {
        s->n_steps += s->steps[s->n_steps].owned != NULL; /* free a pending one */
        s->n_fwd = s->n_steps;
    }
    stx_session_free(s);
    return st;
}

void stx_session_free(stx_session *s) {
    if (!s) return;
    stx_context *ctx = s->ctx;
    stx__backward_free(s);
    if (s->steps)
        for (int i = 0; i < s->n_fwd; i++) {
            stx_step *stp = &s->steps[i];
            if (stp->state && stp->release)
                stp->release(stp->state);
            else if (stp->state && stp->c.node->def->release)
                stp->c.node->def->release(stp->state);
            stx_tensor_free(stp->owned);
        }
    if (s->vals)
        for (int v = 0; v < s->nv; v++)
            if (s->kind && s->kind[v] == STX_VK_FOLDED && s->vals[v].owns)
                stx__free(ctx, s->vals[v].data);
    stx__free(ctx, s->arena);
    stx__free(ctx, s->vals);
    stx__free(ctx, s->kind);
    stx__free(ctx, s->keep);
    stx__free(ctx, s->steps);
    stx__free(ctx, s->ptrs);
    stx__free(ctx, s->inputs);
    stx__free(ctx, s->blocked);
    stx__free(ctx, s->need_grad);
    stx__free(ctx, s->wrt);
    stx__free(ctx, s->rules);
    stx__free(ctx, s);
}

const char *stx_session_last_error(const stx_session *s) {
    return s ? s->err.msg : "";
}

stx_status stx_session_run(stx_session *s, const stx_tensor *input, stx_tensor **output) {
    if (!s || !input) return STX_E_INVALID;
    stx_status st = stx_session_run_multi(s, 1, &input);
    if (st == STX_OK && output) *output = &s->vals[s->m->g.outputs[0]];
    return st;
}

static stx_status check_input(stx_session *s, int i, const stx_tensor *input) {
    stx_tensor *in = &s->vals[s->inputs[i]];
    const char *name = s->m->g.values[s->inputs[i]].name;
    char a[128], b[128];
    bool same = input && input->rank == in->rank && input->dtype == in->dtype;
    for (int k = 0; same && k < in->rank; k++) same = input->dims[k] == in->dims[k];
    if (!input) return stx__errf(&s->err, STX_E_INVALID, "input '%s' missing", name);
    if (!same)
        return stx__errf(&s->err, STX_E_SHAPE, "input '%s': expected %s %s, got %s %s", name,
                         stx_dtype_name(in->dtype), stx__shape_str(in->dims, in->rank, a, sizeof a),
                         stx_dtype_name(input->dtype),
                         stx__shape_str(input->dims, input->rank, b, sizeof b));
    if (input->dtype == STX_DTYPE_FLOAT) {
        const float *x = input->data;
        int64_t n = stx__numel(input->dims, input->rank);
        for (int64_t j = 0; j < n; j++)
            if (!isfinite(x[j]))
                return stx__errf(&s->err, STX_E_NUMERIC,
                                 "input '%s' holds a non-finite value (%g) at flat index %lld",
                                 name, (double)x[j], (long long)j);
    }
    return STX_OK;
}

stx_status stx_session_run_multi(stx_session *s, int n_inputs, const stx_tensor *const *inputs) {
    if (!s || (n_inputs > 0 && !inputs)) return STX_E_INVALID;
    if (n_inputs != s->n_inputs)
        return stx__errf(&s->err, STX_E_INVALID, "model has %d input(s), %d given", s->n_inputs,
                         n_inputs);
    for (int i = 0; i < n_inputs; i++) {
        stx_status st = check_input(s, i, inputs[i]);
        if (st) return st;
    }
    /* Inputs are read in place: ops never write their inputs. Fixed inputs keep their copy. */
    for (int i = 0; i < n_inputs; i++)
        if (s->kind[s->inputs[i]] == STX_VK_INPUT)
            s->vals[s->inputs[i]].data = (void *)inputs[i]->data;
    stx__set_threads(s->nthreads);
    stx_status st = STX_OK;
    for (int i = 0; i < s->n_fwd && !st; i++) {
        stx_step *stp = &s->steps[i];
        stp->c.err = &s->err;
        st = stp->run ? stp->run(stp) : stp->c.node->def->forward(&stp->c);
    }
    s->ran_forward = st == STX_OK;
    /* the inputs stay referenced until the next run: a backward may read them */
    return st;
}

int stx_session_num_outputs(const stx_session *s) {
    return s->m->g.n_outputs;
}
stx_tensor *stx_session_output(stx_session *s, int i) {
    if (i < 0 || i >= s->m->g.n_outputs) return NULL;
    return &s->vals[s->m->g.outputs[i]];
}

stx_status stx_session_tensor_shape(const stx_session *s, const char *name,
                                    int64_t shape[STX_MAX_RANK], int *rank) {
    int v = stx__session_lookup(s, name);
    if (v < 0 || s->kind[v] == STX_VK_UNUSED) return STX_E_NOTFOUND;
    *rank = s->vals[v].rank;
    for (int k = 0; k < s->vals[v].rank; k++) shape[k] = s->vals[v].dims[k];
    return STX_OK;
}

int64_t stx_session_macs(const stx_session *s) {
    return s->macs;
}
