/* session.h: the planned run state of a model (internal). */
#ifndef STX_SESSION_H
#define STX_SESSION_H

#include "../ops/ops.h"

typedef enum {
    STX_VK_UNUSED = 0,
    STX_VK_MODEL_CONST, /* data owned by the model (initialiser / Constant) */
    STX_VK_FOLDED,      /* computed at plan time, owned by the session */
    STX_VK_RUNTIME,     /* computed every run, lives in the arena */
    STX_VK_INPUT,       /* the graph input: points at the caller's tensor during a run */
    STX_VK_FUSED        /* inside a fused chain: shape inferred, never materialised */
} stx_value_kind;

typedef struct stx_step stx_step;
struct stx_step {
    int node; /* graph node index (the first node of a fused chain) */
    stx_op_ctx c;
    void *state;
    stx_tensor *owned; /* a Reshape target rewritten for the batch, or NULL */
    /* Values read and written (graph value indices, -1 for omitted); for a plain op step these
     * are the node's, for a fused step the chain's external inputs and final output. */
    int n_vin, n_vout;
    const int *vin, *vout;
    /* Fused steps: their own run and release (c.node is the chain's first node, for messages). */
    stx_status (*run)(stx_step *st);
    void (*release)(void *state);
    int fused_vals[4]; /* storage behind vin/vout of a fused step */
    stx_tensor *fused_ptrs[4];
};

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
    uint8_t *blocked; /* per value: channel block of a oneDNN blocked layout, 0 = plain */
    int n_inputs;
    int *inputs; /* value indices of the graph inputs */
};

/* oneDNN fusion pass (fuse.c): rewrites s->steps before memory planning. */
stx_status stx__fuse_plan(stx_session *s);

/* Value index for a tensor name or module path; -1 when unknown. */
int stx__session_lookup(const stx_session *s, const char *name);

#endif
