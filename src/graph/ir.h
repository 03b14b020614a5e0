/* ir.h: stx's own graph IR. The ONNX loader fills it; protobuf types never appear here.
 *
 * A graph is a list of values (named tensors) and nodes in topological order. Values carry
 * their declared dtype/shape (from the model) and, for initialisers and Constant nodes, data.
 * The IR is immutable once loaded; planning copies what it needs into the session.
 */
#ifndef STX_IR_H
#define STX_IR_H

#include "../core/core.h"

typedef enum {
    STX_ATTR_UNDEF = 0,
    STX_ATTR_FLOAT,
    STX_ATTR_INT,
    STX_ATTR_STRING,
    STX_ATTR_TENSOR,
    STX_ATTR_FLOATS,
    STX_ATTR_INTS,
    STX_ATTR_STRINGS,
    STX_ATTR_GRAPH, /* recorded so that it can be refused with a clear message */
    STX_ATTR_OTHER
} stx_attr_type;

typedef struct stx_attr {
    char *name;
    stx_attr_type type;
    float f;
    int64_t i;
    char *s;
    int n; /* number of elements in floats/ints/strings */
    float *floats;
    int64_t *ints;
    char **strings;
    stx_tensor *t;
} stx_attr;

typedef struct stx_value {
    char *name;
    stx_dtype dtype;            /* STX_DTYPE_UNDEFINED when not declared */
    int rank;                   /* -1: unknown */
    int64_t dims[STX_MAX_RANK]; /* < 0: symbolic/unknown */
    stx_tensor *data;           /* initialiser or Constant output, else NULL */
    int producer;               /* node index, -1 for inputs and initialisers */
} stx_value;

struct stx_op_def;

typedef struct stx_node {
    char *name;
    char *op_type;
    char *domain;
    const struct stx_op_def *def; /* resolved at load time */
    int n_in, n_out;
    int *in;  /* value indices, -1 for an omitted optional input */
    int *out; /* value indices, -1 for an omitted optional output */
    int n_attrs;
    stx_attr *attrs;
    char *scope; /* module path from the node name ("layer4.1.conv1"), "" when none */
} stx_node;

typedef struct stx_module {
    char *path; /* "layer4" */
    int value;  /* its output value (output of the module's last node) */
} stx_module;

typedef struct stx_graph {
    stx_context *ctx;
    int n_values, cap_values;
    stx_value *values;
    int n_nodes, cap_nodes;
    stx_node *nodes;
    int n_inputs, n_outputs;
    int *inputs; /* graph inputs that are not initialisers */
    int *outputs;
    int opset; /* default-domain opset */
    char *producer;
    int n_meta;
    char **meta_keys, **meta_vals;
    int n_modules;
    stx_module *modules;
    /* hash index name -> value */
    int *hash;
    int hash_cap;
} stx_graph;

/* The stx.* metadata parsed at load time (graph/facts.c). A malformed key is left out of pub and
 * keeps one message; there is at most one message per key. */
#define STX__FACTS_MAX_ERRORS 16
typedef struct stx_facts {
    stx_model_facts pub;     /* strings point into the graph's metadata values or class_buf */
    char *class_buf;         /* the class names, each NUL-terminated, back to back */
    const char **class_ptrs; /* pub.num_classes pointers into class_buf */
    int n_errors;
    const char *err_key[STX__FACTS_MAX_ERRORS]; /* static strings ("stx.mean") */
    char *err_msg[STX__FACTS_MAX_ERRORS];
} stx_facts;

struct stx_model {
    stx_context *ctx;
    stx_graph g;
    char *path;
    stx_facts facts;
};

/* Parses m->g's metadata into m->facts. Fails only when out of memory. */
stx_status stx__facts_parse(stx_model *m);
void stx__facts_free(stx_model *m);

stx_graph *stx__graph_init(stx_graph *g, stx_context *ctx);
void stx__graph_free(stx_graph *g);
/* Returns the value index for name, creating it when absent; -1 on out of memory. */
int stx__graph_value(stx_graph *g, const char *name);
int stx__graph_find(const stx_graph *g, const char *name);
/* Appends a node; returns its index or -1 (out of memory). */
int stx__graph_add_node(stx_graph *g);
/* Validates ops and attributes against the registry, computes module scopes. */
stx_status stx__graph_finalize(stx_graph *g, stx_err *e);
/* Module path of a node name, e.g. "/layer4/layer4.1/relu/Relu" -> "layer4.1.relu".
 * Returns a newly allocated string (possibly empty) or NULL on out-of-memory. */
char *stx__scope_from_node_name(stx_context *ctx, const char *name);

/* Attribute lookup. */
const stx_attr *stx__attr(const stx_node *n, const char *name);
int64_t stx__attr_int(const stx_node *n, const char *name, int64_t def);
float stx__attr_float(const stx_node *n, const char *name, float def);
const char *stx__attr_str(const stx_node *n, const char *name, const char *def);
/* ints attribute: returns count (or -1 if absent) and sets *v. */
int stx__attr_ints(const stx_node *n, const char *name, const int64_t **v);
int stx__attr_floats(const stx_node *n, const char *name, const float **v);

#endif
