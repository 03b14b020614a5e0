/* session.h: the planned run state of a model (internal). */
#ifndef STX_SESSION_H
#define STX_SESSION_H

#include "../ops/ops.h"

typedef enum {
    STX_VK_UNUSED = 0,
    STX_VK_MODEL_CONST, /* data owned by the model (initialiser / Constant) */
    STX_VK_FOLDED,      /* computed at plan time, owned by the session */
    STX_VK_RUNTIME,     /* computed every run, lives in the arena */
    STX_VK_INPUT        /* the graph input: points at the caller's tensor during a run */
} stx_value_kind;

typedef struct stx_step {
    int node; /* graph node index */
    stx_op_ctx c;
    void *state;
    stx_tensor *owned; /* a Reshape target rewritten for the batch, or NULL */
} stx_step;

struct stx_session {
    stx_model *m;
    stx_context *ctx;
    stx_err err;
    int nthreads;
    int use_dnnl, fuse;
    int nv;
    stx_tensor *vals; /* per graph value: planned tensor (header + data pointer) */
    uint8_t *kind;    /* stx_value_kind per value */
    uint8_t *keep;    /* values that must stay observable (live to the end) */
    int n_steps;
    stx_step *steps;
    stx_tensor **ptrs; /* storage behind the steps' in/out pointer arrays */
    void *arena;
    size_t arena_size;
    int64_t macs;
    int n_inputs;
    int *inputs; /* value indices of the graph inputs */
};

/* Value index for a tensor name or module path; -1 when unknown. */
int stx__session_lookup(const stx_session *s, const char *name);

#endif
