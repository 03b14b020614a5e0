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
    /* Backward steps: the forward step they differentiate (-1 for forward steps), and which
     * din entries must be zeroed first (bit k). */
    int fwd;
    uint32_t zero_mask;
    stx_session *sess;
};

struct stx_session {
    stx_model *m;
    stx_context *ctx;
    stx_err err;
    int nthreads;
    int use_dnnl, fuse;
    bool bf16; /* convolutions between fused ones in bfloat16, forward and backward-data */
    int nv;
    stx_tensor *vals; /* per graph value: planned tensor (header + data pointer) */
    uint8_t *kind;    /* stx_value_kind per value */
    uint8_t *keep;    /* values that must stay observable (live to the end) */
    int n_steps;      /* forward steps, then (reverse mode) the seed and backward steps */
    int n_fwd;        /* forward steps */
    stx_step *steps;
    stx_tensor **ptrs; /* storage behind the steps' in/out pointer arrays */
    void *arena;
    size_t arena_size;
    int64_t macs;
    uint8_t *blocked; /* per value: channel block of a oneDNN blocked layout, 0 = plain */
    /* reverse mode */
    int n_wrt;
    int *wrt;           /* values whose gradients are requested */
    int seed_out;       /* value seeded, -1 when reverse mode is not planned */
    uint8_t *need_grad; /* per value */
    stx_backward_rule *rules;
    int n_rules;
    int *int_pool;         /* storage behind backward steps' vin/vout */
    stx_tensor **ptr_pool; /* storage behind backward steps' din/dout */
    int block;             /* channel block of blocked layouts (8 or 16) */
    void *fscratch[6];     /* scratch shared by fused steps (fuse.c) */
    size_t fscratch_size[6], fscratch_alloc[6];
    stx_seed seed;   /* the seed of the current backward */
    int64_t *seeded; /* N targets used by the last backward */
    bool ran_forward;
    int n_inputs;
    int *inputs; /* value indices of the graph inputs */
};

/* Geometry of a fused convolution along its nd spatial axes (ONNX dilations, begin pads). */
typedef struct stx_conv_geometry {
    int nd, has_res;
    int64_t group;
    int64_t k[3], s[3], d[3], p[3];
} stx_conv_geometry;
/* fuse.c, for region runs: the geometry of a fused convolution step (false: not one); the same
 * convolution (folded weights, post-ops) as a primitive on crops without padding, source and
 * destination in the values' layouts with the given dimensions (STX_E_UNSUPPORTED when oneDNN
 * has no kernel for it, or in bf16 sessions). */
bool stx__fused_conv_geometry(const stx_step *st, stx_conv_geometry *g);
stx_status stx__fused_conv_crop_create(stx_session *s, const stx_step *st, const int64_t *src_dims,
                                       const int64_t *dst_dims, void **out);
stx_status stx__fused_conv_crop_run(void *crop, const void *src, const void *res, void *dst);
void stx__fused_conv_crop_free(void *crop);

/* Region runs (region.c): a session of batch B whose rows differ from one clean sample only
 * inside boxes of the input (N, C, T, H, W), e.g. occlusion windows. boxes: n_boxes x (t0, t1,
 * h0, h1, w0, w1). STX_E_UNSUPPORTED when no step can be computed on crops (the caller then
 * runs the session as usual). stx__region_clean takes the clean sample (one row) and must run
 * before the first batch of every sample; stx__region_run then runs a batch xb whose row j is
 * the clean sample changed inside box win[j] (-1: row j is the clean sample); outputs as
 * stx_session_run's. */
typedef struct stx_region stx_region;
stx_status stx__region_create(stx_session *s, const int64_t *boxes, int n_boxes, stx_region **out);
stx_status stx__region_clean(stx_region *r, const float *x);
stx_status stx__region_run(stx_region *r, const stx_tensor *xb, const int *win);
void stx__region_free(stx_region *r);

/* oneDNN fusion pass (fuse.c): rewrites s->steps before memory planning. */
stx_status stx__fuse_plan(stx_session *s);
/* Reverse-mode planning (backward.c): appends the seed and backward steps. */
stx_status stx__backward_plan(stx_session *s);
/* After memory planning: per-step backward state (oneDNN backward primitives). */
stx_status stx__backward_prepare(stx_session *s);
void stx__backward_free(stx_session *s);
/* fuse.c: backward of fused steps. */
bool stx__is_fused_conv(const stx_step *st);
bool stx__is_gap_blocked(const stx_step *st);
stx_status stx__fused_backward_prepare(stx_session *s, stx_step *fwd);
stx_status stx__fused_backward_run(stx_session *s, stx_step *fwd, stx_step *bwd);
/* Rules: the rule for an op type, or NULL. */
const stx_backward_rule *stx__rule_for(const stx_session *s, const char *op_type);

/* Value index for a tensor name or module path; -1 when unknown. */
int stx__session_lookup(const stx_session *s, const char *name);

#endif
