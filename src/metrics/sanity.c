/* sanity.c: the sanity checks of Adebayo et al. (NeurIPS 2018): cascading model-parameter
 * randomisation (a copy of a model whose top k parameterised layers are re-initialised) and the
 * random-label check, with the similarities of two maps they are judged by (Spearman rank
 * correlation, SSIM). Definitions and choices: docs/benchmark.md.
 *
 * Layers. A parameterised node is a Conv, ConvTranspose, Gemm, MatMul, BatchNormalization,
 * LayerNormalization, InstanceNormalization, LSTM, GRU or RNN node that reads a floating-point
 * initialiser. Nodes of one PyTorch module (the same non-empty scope, e.g. `fc` for the MatMul
 * and the bias Add that a Linear on a 3-D input becomes) form one layer, and an Add, Sub or Mul
 * of that scope reading an initialiser gives that layer its bias. Layers are ordered by their
 * last node in topological order, the output's first (layer 0 is the top).
 *
 * Re-initialisation follows PyTorch's reset_parameters, as Quantus' MPRT does: weights and biases
 * of Conv/ConvTranspose/Gemm/MatMul ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with
 * a = sqrt(5)); recurrent weights and biases ~ U(-1/sqrt(hidden), 1/sqrt(hidden)); normalisation
 * layers get scale 1, bias 0, running mean 0 and running variance 1. Layer i draws from a
 * generator seeded by (seed, i), so a layer gets the same weights whatever k (cascading).
 *
 * The randomised copy shares the original's graph data: every tensor it does not re-initialise
 * is a view of the original's (the original must outlive the copy); only the re-initialised
 * weights are new memory. */
#include "../graph/ir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- layers ------------------------------------------------------------------------------ */

typedef struct layer_info {
    int last_node; /* topological index of the layer's last parameterised node */
    int first;     /* index of the first node of the layer (its name when the scope is empty) */
    int n_params;
    int *params; /* initialiser value indices, in the order the nodes read them */
    int *kinds;  /* per param: the node index that reads it first */
} layer_info;

typedef struct layer_list {
    int n;
    layer_info *l;
    int *param_layer; /* per value: the layer it belongs to, -1 none */
} layer_list;

static bool is_param_op(const char *op) {
    static const char *const ops[] = {"Conv",
                                      "ConvTranspose",
                                      "Gemm",
                                      "MatMul",
                                      "BatchNormalization",
                                      "LayerNormalization",
                                      "InstanceNormalization",
                                      "LSTM",
                                      "GRU",
                                      "RNN",
                                      NULL};
    for (int i = 0; ops[i]; i++)
        if (strcmp(op, ops[i]) == 0) return true;
    return false;
}

static bool is_bias_op(const char *op) {
    return strcmp(op, "Add") == 0 || strcmp(op, "Sub") == 0 || strcmp(op, "Mul") == 0;
}

static bool is_float_init(const stx_graph *g, int v) {
    if (v < 0) return false;
    const stx_value *val = &g->values[v];
    return val->data && val->producer < 0 &&
           (val->data->dtype == STX_DTYPE_FLOAT || val->data->dtype == STX_DTYPE_DOUBLE);
}

static bool node_reads_float_init(const stx_graph *g, const stx_node *n) {
    for (int k = 0; k < n->n_in; k++)
        if (is_float_init(g, n->in[k])) return true;
    return false;
}

/* The layer key of a node: its scope, or its own name when it has none. */
static bool same_layer(const stx_graph *g, int a, int b) {
    const stx_node *na = &g->nodes[a], *nb = &g->nodes[b];
    const char *sa = na->scope && na->scope[0] ? na->scope : NULL;
    const char *sb = nb->scope && nb->scope[0] ? nb->scope : NULL;
    if (sa && sb) return strcmp(sa, sb) == 0;
    return a == b;
}

static void layers_free(stx_context *ctx, layer_list *L) {
    for (int i = 0; i < L->n; i++) {
        stx__free(ctx, L->l[i].params);
        stx__free(ctx, L->l[i].kinds);
    }
    stx__free(ctx, L->l);
    stx__free(ctx, L->param_layer);
    memset(L, 0, sizeof *L);
}

static int cmp_layer_desc(const void *pa, const void *pb) {
    const layer_info *a = pa, *b = pb;
    return (a->last_node < b->last_node) - (a->last_node > b->last_node);
}

static stx_status layers_build(const stx_model *m, layer_list *L) {
    const stx_graph *g = &m->g;
    stx_context *ctx = m->ctx;
    memset(L, 0, sizeof *L);
    int *node_layer = stx__malloc(ctx, sizeof(int) * ((size_t)g->n_nodes + 1));
    L->l = stx__calloc(ctx, (size_t)g->n_nodes + 1, sizeof *L->l);
    L->param_layer = stx__malloc(ctx, sizeof(int) * ((size_t)g->n_values + 1));
    if (!node_layer || !L->l || !L->param_layer) {
        stx__free(ctx, node_layer);
        layers_free(ctx, L);
        return stx__errf(&ctx->err, STX_E_NOMEM, "out of memory");
    }
    for (int v = 0; v < g->n_values; v++) L->param_layer[v] = -1;
    /* layers of the parameterised nodes */
    for (int i = 0; i < g->n_nodes; i++) {
        node_layer[i] = -1;
        const stx_node *n = &g->nodes[i];
        if (!is_param_op(n->op_type) || !node_reads_float_init(g, n)) continue;
        int li = -1;
        for (int j = 0; j < L->n && li < 0; j++)
            if (same_layer(g, L->l[j].first, i)) li = j;
        if (li < 0) {
            li = L->n++;
            L->l[li].first = i;
        }
        L->l[li].last_node = i;
        node_layer[i] = li;
    }
    /* bias-like nodes of a layer's scope */
    for (int i = 0; i < g->n_nodes; i++) {
        const stx_node *n = &g->nodes[i];
        if (node_layer[i] >= 0 || !is_bias_op(n->op_type) || !n->scope || !n->scope[0] ||
            !node_reads_float_init(g, n))
            continue;
        for (int j = 0; j < L->n; j++)
            if (same_layer(g, L->l[j].first, i)) {
                node_layer[i] = j;
                if (i > L->l[j].last_node) L->l[j].last_node = i;
                break;
            }
    }
    /* parameters: the float initialisers each layer's nodes read (first reader wins) */
    stx_status st = STX_OK;
    for (int i = 0; i < g->n_nodes && !st; i++) {
        int li = node_layer[i];
        if (li < 0) continue;
        const stx_node *n = &g->nodes[i];
        /* recurrent nodes: W, R, B only (not initial states or sequence lengths) */
        bool rnn = strcmp(n->op_type, "LSTM") == 0 || strcmp(n->op_type, "GRU") == 0 ||
                   strcmp(n->op_type, "RNN") == 0;
        for (int k = 0; k < n->n_in; k++) {
            int v = n->in[k];
            if ((rnn && (k < 1 || k > 3)) || !is_float_init(g, v) || L->param_layer[v] >= 0)
                continue;
            layer_info *l = &L->l[li];
            int *np = stx__malloc(ctx, sizeof(int) * ((size_t)l->n_params + 1));
            int *nk = stx__malloc(ctx, sizeof(int) * ((size_t)l->n_params + 1));
            if (!np || !nk) {
                stx__free(ctx, np);
                stx__free(ctx, nk);
                st = stx__errf(&ctx->err, STX_E_NOMEM, "out of memory");
                break;
            }
            if (l->n_params) {
                memcpy(np, l->params, sizeof(int) * (size_t)l->n_params);
                memcpy(nk, l->kinds, sizeof(int) * (size_t)l->n_params);
            }
            stx__free(ctx, l->params);
            stx__free(ctx, l->kinds);
            np[l->n_params] = v;
            nk[l->n_params] = i;
            l->params = np;
            l->kinds = nk;
            l->n_params++;
            L->param_layer[v] = li;
        }
    }
    stx__free(ctx, node_layer);
    if (st) {
        layers_free(ctx, L);
        return st;
    }
    /* the output's layer first; param_layer renumbered to match */
    int *order = stx__malloc(ctx, sizeof(int) * ((size_t)L->n + 1));
    if (!order) {
        layers_free(ctx, L);
        return stx__errf(&ctx->err, STX_E_NOMEM, "out of memory");
    }
    /* last_node values are distinct (a node belongs to one layer): they identify the layers */
    int *old_last = order;
    for (int j = 0; j < L->n; j++) old_last[j] = L->l[j].last_node;
    qsort(L->l, (size_t)L->n, sizeof *L->l, cmp_layer_desc);
    for (int v = 0; v < g->n_values; v++) {
        int li = L->param_layer[v];
        if (li < 0) continue;
        for (int j = 0; j < L->n; j++)
            if (L->l[j].last_node == old_last[li]) {
                L->param_layer[v] = j;
                break;
            }
    }
    stx__free(ctx, order);
    return STX_OK;
}

/* The name of a layer: its scope, or its first node's name. */
static const char *layer_name(const stx_graph *g, const layer_info *l) {
    const stx_node *n = &g->nodes[l->first];
    return n->scope && n->scope[0] ? n->scope : (n->name && n->name[0] ? n->name : n->op_type);
}

int stx_model_num_layers(const stx_model *m) {
    layer_list L;
    if (!m || layers_build(m, &L)) return -1;
    int n = L.n;
    layers_free(m->ctx, &L);
    return n;
}

const char *stx_model_layer_name(const stx_model *m, int i) {
    layer_list L;
    if (!m || layers_build(m, &L)) return NULL;
    const char *s = (i >= 0 && i < L.n) ? layer_name(&m->g, &L.l[i]) : NULL;
    layers_free(m->ctx, &L);
    return s;
}

int stx_model_layer_num_params(const stx_model *m, int i) {
    layer_list L;
    if (!m || layers_build(m, &L)) return -1;
    int n = (i >= 0 && i < L.n) ? L.l[i].n_params : -1;
    layers_free(m->ctx, &L);
    return n;
}

const char *stx_model_layer_param(const stx_model *m, int i, int j) {
    layer_list L;
    if (!m || layers_build(m, &L)) return NULL;
    const char *s = (i >= 0 && i < L.n && j >= 0 && j < L.l[i].n_params)
                        ? m->g.values[L.l[i].params[j]].name
                        : NULL;
    layers_free(m->ctx, &L);
    return s;
}

const stx_tensor *stx_model_initializer(const stx_model *m, const char *name) {
    if (!m || !name) return NULL;
    int v = stx__graph_find(&m->g, name);
    if (v < 0 || m->g.values[v].producer >= 0) return NULL;
    return m->g.values[v].data;
}

/* ---- re-initialisation ------------------------------------------------------------------- */

static int64_t prod_from(const stx_tensor *t, int k) {
    int64_t p = 1;
    for (int i = k; i < t->rank; i++) p *= t->dims[i];
    return p;
}

/* fan_in of the layer's weight (the first rank >= 2 parameter), as PyTorch computes it. */
static int64_t layer_fan_in(const stx_graph *g, const layer_info *l) {
    for (int p = 0; p < l->n_params; p++) {
        const stx_tensor *w = g->values[l->params[p]].data;
        const stx_node *n = &g->nodes[l->kinds[p]];
        if (w->rank < 2) continue;
        if (strcmp(n->op_type, "Gemm") == 0) {
            /* the weight is B (input 1): (out, in) with transB, else (in, out) */
            bool is_b = n->n_in > 1 && n->in[1] == l->params[p];
            int64_t trans = stx__attr_int(n, is_b ? "transB" : "transA", 0);
            return is_b ? (trans ? w->dims[1] : w->dims[0]) : (trans ? w->dims[0] : w->dims[1]);
        }
        if (strcmp(n->op_type, "MatMul") == 0) return w->dims[w->rank - 2]; /* (.., in, out) */
        return prod_from(w, 1); /* Conv (out, in/g, k..), ConvTranspose (in, out/g, k..) */
    }
    return 0;
}

/* Value of a normalisation parameter after reset: scale 1, bias 0, mean 0, variance 1. */
static double norm_reset_value(const stx_node *n, int input) {
    if (strcmp(n->op_type, "BatchNormalization") == 0)
        return (input == 1 || input == 4) ? 1.0 : 0.0; /* X, scale, B, mean, var */
    return input == 1 ? 1.0 : 0.0;                     /* X, scale, B */
}

static int input_slot(const stx_node *n, int v) {
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k] == v) return k;
    return -1;
}

/* Fills t (float or double) with the re-initialised values of parameter p of layer l. */
static void reinit_param(const stx_graph *g, const layer_info *l, int p, stx_rng *r,
                         stx_tensor *t) {
    const stx_node *n = &g->nodes[l->kinds[p]];
    int64_t count = stx__numel(t->dims, t->rank);
    bool is_norm = strstr(n->op_type, "Normalization") != NULL;
    double fixed = 0, bound = 0;
    if (is_norm) {
        fixed = norm_reset_value(n, input_slot(n, l->params[p]));
    } else if (strcmp(n->op_type, "LSTM") == 0 || strcmp(n->op_type, "GRU") == 0 ||
               strcmp(n->op_type, "RNN") == 0) {
        int64_t hidden = stx__attr_int(n, "hidden_size", 0);
        if (hidden <= 0 && n->n_in > 2 && n->in[2] >= 0 && g->values[n->in[2]].data)
            hidden = g->values[n->in[2]].data->dims[2]; /* R: (dirs, gates * hidden, hidden) */
        bound = hidden > 0 ? 1.0 / sqrt((double)hidden) : 0.0;
    } else {
        int64_t fan_in = layer_fan_in(g, l);
        if (fan_in <= 0) fan_in = t->rank >= 2 ? prod_from(t, 1) : count;
        bound = fan_in > 0 ? 1.0 / sqrt((double)fan_in) : 0.0;
    }
    for (int64_t i = 0; i < count; i++) {
        double v = is_norm ? fixed : bound * (2.0 * stx__rng_uniform(r) - 1.0);
        if (t->dtype == STX_DTYPE_DOUBLE)
            ((double *)t->data)[i] = v;
        else
            ((float *)t->data)[i] = (float)v;
    }
}

/* ---- copying a graph (sharing its data) ---------------------------------------------------- */

static char *dup_or_null(stx_context *ctx, const char *s, bool *fail) {
    if (!s) return NULL;
    char *d = stx__strdup(ctx, s);
    if (!d) *fail = true;
    return d;
}

static stx_tensor *view_of(stx_context *ctx, const stx_tensor *t, bool *fail) {
    if (!t) return NULL;
    stx_tensor *v = stx__tensor_view(ctx, t->dtype, t->dims, t->rank, t->data);
    if (!v) *fail = true;
    return v;
}

static void *dup_mem(stx_context *ctx, const void *p, size_t n, bool *fail) {
    if (!p) return NULL;
    void *d = stx__malloc(ctx, n ? n : 1);
    if (!d) {
        *fail = true;
        return NULL;
    }
    if (n) memcpy(d, p, n);
    return d;
}

static void copy_attr(stx_context *ctx, const stx_attr *a, stx_attr *b, bool *fail) {
    *b = *a;
    b->name = dup_or_null(ctx, a->name, fail);
    b->s = dup_or_null(ctx, a->s, fail);
    b->floats = dup_mem(ctx, a->floats, sizeof(float) * (size_t)(a->floats ? a->n : 0), fail);
    b->ints = dup_mem(ctx, a->ints, sizeof(int64_t) * (size_t)(a->ints ? a->n : 0), fail);
    b->strings = NULL;
    if (a->strings) {
        b->strings = stx__calloc(ctx, (size_t)a->n + 1, sizeof(char *));
        if (!b->strings)
            *fail = true;
        else
            for (int i = 0; i < a->n; i++) b->strings[i] = dup_or_null(ctx, a->strings[i], fail);
    }
    b->t = view_of(ctx, a->t, fail);
}

static stx_status copy_graph(const stx_graph *g, stx_graph *h) {
    stx_context *ctx = g->ctx;
    bool fail = false;
    stx__graph_init(h, ctx);
    for (int v = 0; v < g->n_values && !fail; v++) {
        int w = stx__graph_value(h, g->values[v].name);
        if (w != v) {
            fail = true;
            break;
        }
        stx_value *d = &h->values[w];
        const stx_value *s = &g->values[v];
        d->dtype = s->dtype;
        d->rank = s->rank;
        memcpy(d->dims, s->dims, sizeof d->dims);
        d->producer = s->producer;
        d->data = view_of(ctx, s->data, &fail);
    }
    for (int i = 0; i < g->n_nodes && !fail; i++) {
        int k = stx__graph_add_node(h);
        if (k < 0) {
            fail = true;
            break;
        }
        const stx_node *s = &g->nodes[i];
        stx_node *d = &h->nodes[k];
        d->name = dup_or_null(ctx, s->name, &fail);
        d->op_type = dup_or_null(ctx, s->op_type, &fail);
        d->domain = dup_or_null(ctx, s->domain, &fail);
        d->scope = dup_or_null(ctx, s->scope, &fail);
        d->def = s->def;
        d->n_in = s->n_in;
        d->n_out = s->n_out;
        d->in = dup_mem(ctx, s->in, sizeof(int) * (size_t)s->n_in, &fail);
        d->out = dup_mem(ctx, s->out, sizeof(int) * (size_t)s->n_out, &fail);
        if (s->n_attrs) {
            d->attrs = stx__calloc(ctx, (size_t)s->n_attrs, sizeof *d->attrs);
            if (!d->attrs) {
                fail = true;
                break;
            }
            d->n_attrs = s->n_attrs;
            for (int a = 0; a < s->n_attrs; a++) copy_attr(ctx, &s->attrs[a], &d->attrs[a], &fail);
        }
    }
    if (!fail) {
        h->n_inputs = g->n_inputs;
        h->n_outputs = g->n_outputs;
        h->inputs = dup_mem(ctx, g->inputs, sizeof(int) * (size_t)g->n_inputs, &fail);
        h->outputs = dup_mem(ctx, g->outputs, sizeof(int) * (size_t)g->n_outputs, &fail);
        h->opset = g->opset;
        h->producer = dup_or_null(ctx, g->producer, &fail);
    }
    if (!fail && g->n_meta) {
        h->meta_keys = stx__calloc(ctx, (size_t)g->n_meta, sizeof(char *));
        h->meta_vals = stx__calloc(ctx, (size_t)g->n_meta, sizeof(char *));
        if (!h->meta_keys || !h->meta_vals)
            fail = true;
        else {
            h->n_meta = g->n_meta;
            for (int i = 0; i < g->n_meta; i++) {
                h->meta_keys[i] = dup_or_null(ctx, g->meta_keys[i], &fail);
                h->meta_vals[i] = dup_or_null(ctx, g->meta_vals[i], &fail);
            }
        }
    }
    if (!fail && g->n_modules) {
        h->modules = stx__calloc(ctx, (size_t)g->n_modules, sizeof *h->modules);
        if (!h->modules)
            fail = true;
        else {
            h->n_modules = g->n_modules;
            for (int i = 0; i < g->n_modules; i++) {
                h->modules[i].path = dup_or_null(ctx, g->modules[i].path, &fail);
                h->modules[i].value = g->modules[i].value;
            }
        }
    }
    if (fail) {
        stx__graph_free(h);
        return stx__errf(&ctx->err, STX_E_NOMEM, "out of memory copying the model");
    }
    return STX_OK;
}

stx_status stx_model_randomize(const stx_model *m, int top_layers, uint64_t seed, stx_model **out) {
    if (!m || !out) return STX_E_INVALID;
    *out = NULL;
    stx_context *ctx = m->ctx;
    layer_list L;
    stx_status st = layers_build(m, &L);
    if (st) return st;
    if (top_layers < 0 || top_layers > L.n) {
        int n = L.n;
        layers_free(ctx, &L);
        return stx__errf(&ctx->err, STX_E_INVALID,
                         "%s: cannot randomise the top %d layers: the model has %d "
                         "parameterised layers",
                         m->path, top_layers, n);
    }
    stx_model *r = stx__calloc(ctx, 1, sizeof *r);
    if (!r) {
        layers_free(ctx, &L);
        return stx__errf(&ctx->err, STX_E_NOMEM, "out of memory");
    }
    r->ctx = ctx;
    r->path = stx__strdup(ctx, m->path);
    st = r->path ? copy_graph(&m->g, &r->g) : stx__errf(&ctx->err, STX_E_NOMEM, "out of memory");
    for (int li = 0; li < top_layers && !st; li++) {
        stx_rng rng;
        stx__rng_seed(&rng, seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(li + 1)));
        const layer_info *l = &L.l[li];
        for (int p = 0; p < l->n_params && !st; p++) {
            stx_value *val = &r->g.values[l->params[p]];
            stx_tensor *t =
                stx__tensor_new(ctx, val->data->dtype, val->data->dims, val->data->rank);
            if (!t) {
                st = stx__errf(&ctx->err, STX_E_NOMEM, "out of memory");
                break;
            }
            reinit_param(&m->g, l, p, &rng, t);
            stx_tensor_free(val->data);
            val->data = t;
        }
    }
    if (!st) st = stx__facts_parse(r);
    layers_free(ctx, &L);
    if (st) {
        stx_model_free(r);
        return st;
    }
    *out = r;
    return STX_OK;
}

/* ---- similarity of two maps --------------------------------------------------------------- */

typedef struct rank_item {
    double v;
    int64_t i;
} rank_item;

static int cmp_rank(const void *pa, const void *pb) {
    const rank_item *a = pa, *b = pb;
    if (a->v < b->v) return -1;
    if (a->v > b->v) return 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* Ranks 1..n of x (ties get the mean of their ranks) into r. */
static void ranks(const double *x, int64_t n, rank_item *tmp, double *r) {
    for (int64_t i = 0; i < n; i++) {
        tmp[i].v = x[i];
        tmp[i].i = i;
    }
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_rank);
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j + 1 < n && tmp[j + 1].v == tmp[i].v) j++;
        double avg = 0.5 * (double)(i + j) + 1.0;
        for (int64_t k = i; k <= j; k++) r[tmp[k].i] = avg;
        i = j + 1;
    }
}

static double pearson(const double *a, const double *b, int64_t n) {
    double ma = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) {
        ma += a[i];
        mb += b[i];
    }
    ma /= (double)n;
    mb /= (double)n;
    double sab = 0, saa = 0, sbb = 0;
    for (int64_t i = 0; i < n; i++) {
        double da = a[i] - ma, db = b[i] - mb;
        sab += da * db;
        saa += da * da;
        sbb += db * db;
    }
    if (saa <= 0 || sbb <= 0) return NAN;
    return sab / sqrt(saa * sbb);
}

static stx_status check_finite(stx_context *ctx, const float *a, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(a[i]))
            return stx__errf(ctx ? &ctx->err : NULL, STX_E_NUMERIC,
                             "%s map: non-finite value %g at element %lld", what, (double)a[i],
                             (long long)i);
    return STX_OK;
}

stx_status stx_spearman(stx_context *ctx, const float *a, const float *b, int64_t n, int absolute,
                        double *rho) {
    if (!a || !b || !rho || n < 2)
        return stx__errf(ctx ? &ctx->err : NULL, STX_E_INVALID,
                         "stx_spearman: needs two maps of at least 2 values (got %lld)",
                         (long long)n);
    stx_status st = check_finite(ctx, a, n, "first");
    if (!st) st = check_finite(ctx, b, n, "second");
    if (st) return st;
    double *x = stx__malloc(ctx, sizeof(double) * (size_t)n * 4);
    rank_item *tmp = stx__malloc(ctx, sizeof(rank_item) * (size_t)n);
    if (!x || !tmp) {
        stx__free(ctx, x);
        stx__free(ctx, tmp);
        return stx__errf(ctx ? &ctx->err : NULL, STX_E_NOMEM, "out of memory");
    }
    double *y = x + n, *rx = x + 2 * n, *ry = x + 3 * n;
    for (int64_t i = 0; i < n; i++) {
        x[i] = absolute ? fabs((double)a[i]) : (double)a[i];
        y[i] = absolute ? fabs((double)b[i]) : (double)b[i];
    }
    ranks(x, n, tmp, rx);
    ranks(y, n, tmp, ry);
    *rho = pearson(rx, ry, n);
    stx__free(ctx, x);
    stx__free(ctx, tmp);
    return STX_OK;
}

/* SSIM with Wang et al.'s 11 x 11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, data range
 * 1, as skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
 * use_sample_covariance=False, data_range=1): local means by a separable Gaussian filter (scipy's
 * gaussian_filter, truncate 3.5, 'reflect' borders), the SSIM map averaged over the pixels at
 * least 5 from the border. */
#define SSIM_R 5

static int64_t reflect_index(int64_t i, int64_t n) {
    /* scipy's 'reflect': (d c b a | a b c d | d c b a) */
    for (;;) {
        if (i < 0)
            i = -i - 1;
        else if (i >= n)
            i = 2 * n - i - 1;
        else
            return i;
    }
}

/* out = Gaussian-filtered in (h x w); tmp: h * w doubles. */
static void gauss2d(const double *in, double *tmp, double *out, int64_t h, int64_t w,
                    const double *k) {
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            double s = 0;
            for (int d = -SSIM_R; d <= SSIM_R; d++)
                s += k[d + SSIM_R] * in[y * w + reflect_index(x + d, w)];
            tmp[y * w + x] = s;
        }
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            double s = 0;
            for (int d = -SSIM_R; d <= SSIM_R; d++)
                s += k[d + SSIM_R] * tmp[reflect_index(y + d, h) * w + x];
            out[y * w + x] = s;
        }
}

/* Min-max normalisation of a (n values) to [0, 1] into out; a constant map gives 0s. */
static void minmax01(const float *a, int64_t n, double *out) {
    double lo = a[0], hi = a[0];
    for (int64_t i = 1; i < n; i++) {
        if (a[i] < lo) lo = a[i];
        if (a[i] > hi) hi = a[i];
    }
    double s = hi > lo ? 1.0 / (hi - lo) : 0.0;
    for (int64_t i = 0; i < n; i++) out[i] = ((double)a[i] - lo) * s;
}

stx_status stx_ssim(stx_context *ctx, const float *a, const float *b, int64_t t, int64_t h,
                    int64_t w, double *ssim) {
    if (!a || !b || !ssim || t < 1 || h < 1 || w < 1)
        return stx__errf(ctx ? &ctx->err : NULL, STX_E_INVALID, "stx_ssim: bad arguments");
    if (h < 2 * SSIM_R + 1 || w < 2 * SSIM_R + 1)
        return stx__errf(ctx ? &ctx->err : NULL, STX_E_SHAPE,
                         "stx_ssim: frames of %lldx%lld are smaller than the 11x11 window",
                         (long long)h, (long long)w);
    int64_t n = t * h * w, hw = h * w;
    stx_status st = check_finite(ctx, a, n, "first");
    if (!st) st = check_finite(ctx, b, n, "second");
    if (st) return st;
    double *buf = stx__malloc(ctx, sizeof(double) * (size_t)(2 * n + 8 * hw));
    if (!buf) return stx__errf(ctx ? &ctx->err : NULL, STX_E_NOMEM, "out of memory");
    double *x = buf, *y = buf + n, *prod = buf + 2 * n, *tmp = prod + hw, *ux = tmp + hw,
           *uy = ux + hw, *uxx = uy + hw, *uyy = uxx + hw, *uxy = uyy + hw;
    minmax01(a, n, x);
    minmax01(b, n, y);
    double k[2 * SSIM_R + 1], ks = 0;
    for (int d = -SSIM_R; d <= SSIM_R; d++) ks += k[d + SSIM_R] = exp(-0.5 * d * d / (1.5 * 1.5));
    for (int d = 0; d < 2 * SSIM_R + 1; d++) k[d] /= ks;
    const double c1 = 0.01 * 0.01, c2 = 0.03 * 0.03;
    double total = 0;
    for (int64_t f = 0; f < t; f++) {
        const double *xf = x + f * hw, *yf = y + f * hw;
        gauss2d(xf, tmp, ux, h, w, k);
        gauss2d(yf, tmp, uy, h, w, k);
        for (int64_t i = 0; i < hw; i++) prod[i] = xf[i] * xf[i];
        gauss2d(prod, tmp, uxx, h, w, k);
        for (int64_t i = 0; i < hw; i++) prod[i] = yf[i] * yf[i];
        gauss2d(prod, tmp, uyy, h, w, k);
        for (int64_t i = 0; i < hw; i++) prod[i] = xf[i] * yf[i];
        gauss2d(prod, tmp, uxy, h, w, k);
        double s = 0;
        for (int64_t yy = SSIM_R; yy < h - SSIM_R; yy++)
            for (int64_t xx = SSIM_R; xx < w - SSIM_R; xx++) {
                int64_t i = yy * w + xx;
                double vx = uxx[i] - ux[i] * ux[i], vy = uyy[i] - uy[i] * uy[i];
                double vxy = uxy[i] - ux[i] * uy[i];
                s += ((2 * ux[i] * uy[i] + c1) * (2 * vxy + c2)) /
                     ((ux[i] * ux[i] + uy[i] * uy[i] + c1) * (vx + vy + c2));
            }
        total += s / (double)((h - 2 * SSIM_R) * (w - 2 * SSIM_R));
    }
    *ssim = total / (double)t;
    stx__free(ctx, buf);
    return STX_OK;
}

stx_status stx_map_similarity(stx_context *ctx, const stx_tensor *a, const stx_tensor *b,
                              stx_similarity *out) {
    if (!a || !b || !out) return STX_E_INVALID;
    char sa[96], sb[96];
    if (a->dtype != STX_DTYPE_FLOAT || b->dtype != STX_DTYPE_FLOAT || a->rank != b->rank ||
        (a->rank != 3 && a->rank != 4) || memcmp(a->dims, b->dims, sizeof(int64_t) * 4) != 0)
        return stx__errf(ctx ? &ctx->err : NULL, STX_E_SHAPE,
                         "map similarity: needs two float32 maps of one shape (T,H,W) or "
                         "(N,T,H,W), got %s and %s",
                         stx__shape_str(a->dims, a->rank, sa, sizeof sa),
                         stx__shape_str(b->dims, b->rank, sb, sizeof sb));
    int64_t n = a->rank == 4 ? a->dims[0] : 1;
    const int64_t *d = a->dims + (a->rank - 3);
    int64_t per = d[0] * d[1] * d[2];
    memset(out, 0, sizeof *out);
    for (int64_t s = 0; s < n; s++) {
        const float *pa = (const float *)a->data + s * per, *pb = (const float *)b->data + s * per;
        double r1, r2, r3;
        stx_status st = stx_spearman(ctx, pa, pb, per, 0, &r1);
        if (!st) st = stx_spearman(ctx, pa, pb, per, 1, &r2);
        if (!st) st = stx_ssim(ctx, pa, pb, d[0], d[1], d[2], &r3);
        if (st) return st;
        out->spearman += r1 / (double)n;
        out->spearman_abs += r2 / (double)n;
        out->ssim += r3 / (double)n;
    }
    return STX_OK;
}

stx_status stx_sanity_random_label(stx_explainer *e, const stx_tensor *x, const int64_t *targets,
                                   uint64_t seed, int64_t *random_targets, stx_similarity *out) {
    if (!e || !x || !out) return STX_E_INVALID;
    stx_tensor *map = NULL;
    stx_status st = stx_explainer_run(e, x, targets, NULL, &map);
    if (st) return st;
    const stx_tensor *y = stx_explainer_output(e);
    stx_context *ctx = map->ctx;
    int64_t n = map->dims[0];
    int64_t k = (y && y->rank >= 2) ? y->dims[1] : 0;
    if (k < 2)
        return stx__errf(ctx ? &ctx->err : NULL, STX_E_INVALID,
                         "random-label check: the model has %lld class(es), needs at least 2",
                         (long long)k);
    stx_tensor *first = stx__tensor_clone(ctx, map);
    int64_t *other = stx__malloc(ctx, sizeof(int64_t) * (size_t)n);
    if (!first || !other) {
        stx_tensor_free(first);
        stx__free(ctx, other);
        return stx__errf(ctx ? &ctx->err : NULL, STX_E_NOMEM, "out of memory");
    }
    const int64_t *used = stx_explainer_targets(e);
    stx_rng r;
    stx__rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) {
        int64_t c = (int64_t)(stx__rng_uniform(&r) * (double)(k - 1));
        if (c >= k - 1) c = k - 2;
        other[i] = c >= used[i] ? c + 1 : c; /* uniform over the k - 1 other classes */
        if (random_targets) random_targets[i] = other[i];
    }
    st = stx_explainer_run(e, x, other, NULL, &map);
    if (!st) st = stx_map_similarity(ctx, first, map, out);
    stx_tensor_free(first);
    stx__free(ctx, other);
    return st;
}
