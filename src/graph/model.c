/* model.c: the public model handle: loading and read-only accessors. */
#include "../onnx/onnx.h"
#include "ir.h"

#include <string.h>

stx_model_options stx_model_options_default(void) {
    stx_model_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    return o;
}

stx_status stx_model_load(stx_context *ctx, const char *path, const stx_model_options *opt,
                          stx_model **out) {
    (void)opt;
    if (!ctx || !path || !out) return STX_E_INVALID;
    *out = NULL;
    stx_model *m = stx__calloc(ctx, 1, sizeof *m);
    if (!m) return stx__errf(&ctx->err, STX_E_NOMEM, "out of memory");
    m->ctx = ctx;
    stx__graph_init(&m->g, ctx);
    m->path = stx__strdup(ctx, path);
    stx_status st = m->path ? stx__onnx_load_graph(ctx, path, &m->g, &ctx->err)
                            : stx__errf(&ctx->err, STX_E_NOMEM, "out of memory");
    if (!st) st = stx__facts_parse(m);
    if (st) {
        stx_model_free(m);
        return st;
    }
    *out = m;
    return STX_OK;
}

void stx_model_free(stx_model *m) {
    if (!m) return;
    stx_context *ctx = m->ctx;
    stx__facts_free(m);
    stx__graph_free(&m->g);
    stx__free(ctx, m->path);
    stx__free(ctx, m);
}

int stx_model_opset(const stx_model *m) {
    return m->g.opset;
}
int stx_model_num_inputs(const stx_model *m) {
    return m->g.n_inputs;
}
int stx_model_num_outputs(const stx_model *m) {
    return m->g.n_outputs;
}
const char *stx_model_input_name(const stx_model *m, int i) {
    return (i >= 0 && i < m->g.n_inputs) ? m->g.values[m->g.inputs[i]].name : NULL;
}
const char *stx_model_output_name(const stx_model *m, int i) {
    return (i >= 0 && i < m->g.n_outputs) ? m->g.values[m->g.outputs[i]].name : NULL;
}

static stx_status value_info(const stx_value *v, stx_dtype *dtype, int64_t *shape, int *rank) {
    if (dtype) *dtype = v->dtype;
    if (rank) *rank = v->rank;
    if (shape)
        for (int k = 0; k < v->rank; k++) shape[k] = v->dims[k];
    return STX_OK;
}

stx_status stx_model_input_info(const stx_model *m, int i, stx_dtype *dtype,
                                int64_t shape[STX_MAX_RANK], int *rank) {
    if (i < 0 || i >= m->g.n_inputs) return STX_E_INVALID;
    return value_info(&m->g.values[m->g.inputs[i]], dtype, shape, rank);
}

stx_status stx_model_output_info(const stx_model *m, int i, stx_dtype *dtype,
                                 int64_t shape[STX_MAX_RANK], int *rank) {
    if (i < 0 || i >= m->g.n_outputs) return STX_E_INVALID;
    return value_info(&m->g.values[m->g.outputs[i]], dtype, shape, rank);
}

int64_t stx_model_num_parameters(const stx_model *m) {
    /* Floating-point initialisers are parameters; integer ones are shapes/indices. */
    int64_t n = 0;
    for (int i = 0; i < m->g.n_values; i++) {
        const stx_tensor *t = m->g.values[i].data;
        if (t && m->g.values[i].producer < 0 &&
            (t->dtype == STX_DTYPE_FLOAT || t->dtype == STX_DTYPE_DOUBLE))
            n += stx__numel(t->dims, t->rank);
    }
    return n;
}

int stx_model_num_nodes(const stx_model *m) {
    return m->g.n_nodes;
}

const char *stx_model_metadata(const stx_model *m, const char *key) {
    for (int i = 0; i < m->g.n_meta; i++)
        if (strcmp(m->g.meta_keys[i], key) == 0) return m->g.meta_vals[i];
    return NULL;
}

const char *stx_model_producer(const stx_model *m) {
    return m->g.producer;
}
int stx_model_num_modules(const stx_model *m) {
    return m->g.n_modules;
}
const char *stx_model_module_name(const stx_model *m, int i) {
    return (i >= 0 && i < m->g.n_modules) ? m->g.modules[i].path : NULL;
}
const char *stx_model_module_output(const stx_model *m, int i) {
    return (i >= 0 && i < m->g.n_modules) ? m->g.values[m->g.modules[i].value].name : NULL;
}

stx_status stx_model_resolve_tensor(const stx_model *m, const char *name, const char **tensor) {
    if (!name) return STX_E_INVALID;
    int v = stx__graph_find(&m->g, name);
    if (v >= 0) {
        *tensor = m->g.values[v].name;
        return STX_OK;
    }
    for (int i = 0; i < m->g.n_modules; i++)
        if (strcmp(m->g.modules[i].path, name) == 0) {
            *tensor = m->g.values[m->g.modules[i].value].name;
            return STX_OK;
        }
    return stx__errf(&m->ctx->err, STX_E_NOTFOUND,
                     "'%s' is neither a tensor nor a module of the model (see `stx info`)", name);
}
