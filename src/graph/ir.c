/* ir.c: graph construction helpers, attribute lookup, validation and module scopes. */
#include "../ops/ops.h"
#include "ir.h"

#include <stdio.h>
#include <string.h>

stx_graph *stx__graph_init(stx_graph *g, stx_context *ctx) {
    memset(g, 0, sizeof *g);
    g->ctx = ctx;
    g->opset = 1;
    return g;
}

static void attr_free(stx_context *ctx, stx_attr *a) {
    stx__free(ctx, a->name);
    stx__free(ctx, a->s);
    stx__free(ctx, a->floats);
    stx__free(ctx, a->ints);
    if (a->strings)
        for (int i = 0; i < a->n; i++) stx__free(ctx, a->strings[i]);
    stx__free(ctx, a->strings);
    stx_tensor_free(a->t);
}

void stx__graph_free(stx_graph *g) {
    stx_context *ctx = g->ctx;
    for (int i = 0; i < g->n_values; i++) {
        stx__free(ctx, g->values[i].name);
        stx_tensor_free(g->values[i].data);
    }
    stx__free(ctx, g->values);
    for (int i = 0; i < g->n_nodes; i++) {
        stx_node *n = &g->nodes[i];
        stx__free(ctx, n->name);
        stx__free(ctx, n->op_type);
        stx__free(ctx, n->domain);
        stx__free(ctx, n->in);
        stx__free(ctx, n->out);
        stx__free(ctx, n->scope);
        for (int k = 0; k < n->n_attrs; k++) attr_free(ctx, &n->attrs[k]);
        stx__free(ctx, n->attrs);
    }
    stx__free(ctx, g->nodes);
    stx__free(ctx, g->inputs);
    stx__free(ctx, g->outputs);
    stx__free(ctx, g->producer);
    for (int i = 0; i < g->n_meta; i++) {
        stx__free(ctx, g->meta_keys[i]);
        stx__free(ctx, g->meta_vals[i]);
    }
    stx__free(ctx, g->meta_keys);
    stx__free(ctx, g->meta_vals);
    for (int i = 0; i < g->n_modules; i++) stx__free(ctx, g->modules[i].path);
    stx__free(ctx, g->modules);
    stx__free(ctx, g->hash);
    memset(g, 0, sizeof *g);
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static bool rehash(stx_graph *g, int cap) {
    int *h = stx__malloc(g->ctx, sizeof(int) * (size_t)cap);
    if (!h) return false;
    for (int i = 0; i < cap; i++) h[i] = -1;
    for (int v = 0; v < g->n_values; v++) {
        uint64_t k = hash_str(g->values[v].name) & (uint64_t)(cap - 1);
        while (h[k] >= 0) k = (k + 1) & (uint64_t)(cap - 1);
        h[k] = v;
    }
    stx__free(g->ctx, g->hash);
    g->hash = h;
    g->hash_cap = cap;
    return true;
}

int stx__graph_find(const stx_graph *g, const char *name) {
    if (!g->hash_cap || !name) return -1;
    uint64_t k = hash_str(name) & (uint64_t)(g->hash_cap - 1);
    while (g->hash[k] >= 0) {
        if (strcmp(g->values[g->hash[k]].name, name) == 0) return g->hash[k];
        k = (k + 1) & (uint64_t)(g->hash_cap - 1);
    }
    return -1;
}

int stx__graph_value(stx_graph *g, const char *name) {
    int v = stx__graph_find(g, name);
    if (v >= 0) return v;
    if (g->n_values == g->cap_values) {
        int cap = g->cap_values ? g->cap_values * 2 : 64;
        stx_value *nv = stx__malloc(g->ctx, sizeof *nv * (size_t)cap);
        if (!nv) return -1;
        if (g->n_values) memcpy(nv, g->values, sizeof *nv * (size_t)g->n_values);
        stx__free(g->ctx, g->values);
        g->values = nv;
        g->cap_values = cap;
    }
    if ((g->n_values + 1) * 2 > g->hash_cap && !rehash(g, g->hash_cap ? g->hash_cap * 2 : 128))
        return -1;
    stx_value *val = &g->values[g->n_values];
    memset(val, 0, sizeof *val);
    val->name = stx__strdup(g->ctx, name);
    if (!val->name) return -1;
    val->rank = -1;
    val->producer = -1;
    v = g->n_values++;
    uint64_t k = hash_str(name) & (uint64_t)(g->hash_cap - 1);
    while (g->hash[k] >= 0) k = (k + 1) & (uint64_t)(g->hash_cap - 1);
    g->hash[k] = v;
    return v;
}

int stx__graph_add_node(stx_graph *g) {
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? g->cap_nodes * 2 : 64;
        stx_node *nn = stx__malloc(g->ctx, sizeof *nn * (size_t)cap);
        if (!nn) return -1;
        if (g->n_nodes) memcpy(nn, g->nodes, sizeof *nn * (size_t)g->n_nodes);
        stx__free(g->ctx, g->nodes);
        g->nodes = nn;
        g->cap_nodes = cap;
    }
    memset(&g->nodes[g->n_nodes], 0, sizeof(stx_node));
    return g->n_nodes++;
}

/* ---- attributes ------------------------------------------------------------------------- */

const stx_attr *stx__attr(const stx_node *n, const char *name) {
    for (int i = 0; i < n->n_attrs; i++)
        if (strcmp(n->attrs[i].name, name) == 0) return &n->attrs[i];
    return NULL;
}

int64_t stx__attr_int(const stx_node *n, const char *name, int64_t def) {
    const stx_attr *a = stx__attr(n, name);
    return (a && a->type == STX_ATTR_INT) ? a->i : def;
}

float stx__attr_float(const stx_node *n, const char *name, float def) {
    const stx_attr *a = stx__attr(n, name);
    if (a && a->type == STX_ATTR_FLOAT) return a->f;
    if (a && a->type == STX_ATTR_INT) return (float)a->i;
    return def;
}

const char *stx__attr_str(const stx_node *n, const char *name, const char *def) {
    const stx_attr *a = stx__attr(n, name);
    return (a && a->type == STX_ATTR_STRING) ? a->s : def;
}

int stx__attr_ints(const stx_node *n, const char *name, const int64_t **v) {
    const stx_attr *a = stx__attr(n, name);
    if (!a || a->type != STX_ATTR_INTS) return -1;
    *v = a->ints;
    return a->n;
}

int stx__attr_floats(const stx_node *n, const char *name, const float **v) {
    const stx_attr *a = stx__attr(n, name);
    if (!a || a->type != STX_ATTR_FLOATS) return -1;
    *v = a->floats;
    return a->n;
}

/* ---- module scopes ------------------------------------------------------------------------ */

/* PyTorch's exporter (1.13+) names nodes "/scope/.../OpName[_k]". A scope component is the
 * module's attribute name in its parent ("relu"), except that children of containers carry their
 * parent's component as a prefix ("layer4" -> "layer4.1", "conv1" -> "conv1.0"). We rebuild the
 * full dotted path of the innermost module: a component that starts with the previous component
 * plus '.' replaces it, any other is appended. */
char *stx__scope_from_node_name(stx_context *ctx, const char *name) {
    size_t len = name ? strlen(name) : 0;
    char *out = stx__malloc(ctx, len + 1);
    if (!out) return NULL;
    out[0] = '\0';
    if (!name || name[0] != '/') return out;
    const char *last = strrchr(name, '/'); /* the component after it is the op name */
    const char *p = name + 1;
    size_t olen = 0, prev_start = 0; /* out[prev_start..olen) is the previous component */
    while (p < last) {
        const char *q = strchr(p, '/');
        size_t clen = (size_t)(q - p), plen = olen - prev_start;
        if (clen > 0) {
            if (olen > 0 && clen > plen && strncmp(p, out + prev_start, plen) == 0 &&
                p[plen] == '.') {
                memcpy(out + prev_start, p, clen); /* "layer4" -> "layer4.1" */
                olen = prev_start + clen;
            } else {
                if (olen > 0) out[olen++] = '.';
                prev_start = olen;
                memcpy(out + olen, p, clen);
                olen += clen;
            }
            out[olen] = '\0';
        }
        p = q + 1;
    }
    return out;
}

static int module_find(const stx_graph *g, const char *path, size_t len) {
    for (int i = g->n_modules - 1; i >= 0; i--)
        if (strlen(g->modules[i].path) == len && strncmp(g->modules[i].path, path, len) == 0)
            return i;
    return -1;
}

static stx_status build_modules(stx_graph *g, stx_err *e) {
    int cap = 0;
    for (int ni = 0; ni < g->n_nodes; ni++) {
        stx_node *n = &g->nodes[ni];
        n->scope = stx__scope_from_node_name(g->ctx, n->name);
        if (!n->scope) return stx__errf(e, STX_E_NOMEM, "out of memory");
        if (!n->scope[0] || n->n_out == 0 || n->out[0] < 0) continue;
        /* Every prefix at a '.' boundary is a module that contains this node. */
        size_t L = strlen(n->scope);
        for (size_t k = 1; k <= L; k++) {
            if (k < L && n->scope[k] != '.') continue;
            int mi = module_find(g, n->scope, k);
            if (mi < 0) {
                if (g->n_modules == cap) {
                    int nc = cap ? cap * 2 : 64;
                    stx_module *nm = stx__malloc(g->ctx, sizeof *nm * (size_t)nc);
                    if (!nm) return stx__errf(e, STX_E_NOMEM, "out of memory");
                    if (g->n_modules) memcpy(nm, g->modules, sizeof *nm * (size_t)g->n_modules);
                    stx__free(g->ctx, g->modules);
                    g->modules = nm;
                    cap = nc;
                }
                char *p = stx__malloc(g->ctx, k + 1);
                if (!p) return stx__errf(e, STX_E_NOMEM, "out of memory");
                memcpy(p, n->scope, k);
                p[k] = '\0';
                mi = g->n_modules++;
                g->modules[mi].path = p;
            }
            g->modules[mi].value = n->out[0]; /* last node in topological order wins */
        }
    }
    return STX_OK;
}

stx_status stx__graph_finalize(stx_graph *g, stx_err *e) {
    for (int ni = 0; ni < g->n_nodes; ni++) {
        stx_node *n = &g->nodes[ni];
        const stx_op_def *d = stx__op_find(n->domain, n->op_type);
        if (!d)
            return stx__errf(e, STX_E_UNSUPPORTED, "unsupported operator '%s%s%s' at node '%s'",
                             n->domain && *n->domain ? n->domain : "",
                             n->domain && *n->domain ? "::" : "", n->op_type, n->name);
        n->def = d;
        if (n->n_in < d->min_in || n->n_in > d->max_in)
            return stx__node_err_n(n, e, STX_E_FORMAT, "has %d inputs, expected %d to %d", n->n_in,
                                   d->min_in, d->max_in);
        if (n->n_out < d->min_out || n->n_out > d->max_out)
            return stx__node_err_n(n, e, STX_E_FORMAT, "has %d outputs, expected %d to %d",
                                   n->n_out, d->min_out, d->max_out);
        for (int k = 0; k < d->min_in; k++) /* found by fuzzing (tests/fuzz) */
            if (n->in[k] < 0)
                return stx__node_err_n(n, e, STX_E_FORMAT,
                                       "input %d is required but its name is empty", k);
        for (int k = 0; k < n->n_attrs; k++) {
            bool ok = false;
            for (const char *const *a = d->attrs; a && *a; a++)
                if (strcmp(*a, n->attrs[k].name) == 0) ok = true;
            if (!ok)
                return stx__node_err_n(n, e, STX_E_UNSUPPORTED, "unsupported attribute '%s'",
                                       n->attrs[k].name);
            if (n->attrs[k].type == STX_ATTR_GRAPH)
                return stx__node_err_n(n, e, STX_E_UNSUPPORTED,
                                       "attribute '%s' holds a subgraph (not supported)",
                                       n->attrs[k].name);
        }
        if (d->check) {
            stx_status st = d->check(n, e);
            if (st) return st;
        }
        for (int k = 0; k < n->n_out; k++)
            if (n->out[k] >= 0) g->values[n->out[k]].producer = ni;
    }
    return build_modules(g, e);
}
