/* dnnl_util.h: small oneDNN (C API, 2.x) helpers shared by the ops that run through oneDNN.
 *
 * - one CPU engine for the whole process, created lazily and thread-safely (memory objects of
 *   different ops can then be passed between primitives without copies);
 * - memory descriptors for dense row-major stx tensors of any rank 1..8;
 * - reorders between two layouts with preallocated memory objects;
 * - primitive descriptors with a user-managed scratchpad (no allocation inside execute);
 * - turning a dnnl_status_t into an stx error naming the node and the failing call.
 *
 * Only the f32 data type is used by stx's oneDNN paths. All functions return dnnl_status_t so
 * that callers can decide between an error and a fallback to their reference kernel.
 */
#ifndef STX_DNNL_UTIL_H
#define STX_DNNL_UTIL_H

#include <dnnl.h>

#include "ops.h"

/* Test-only switch (defined in conv.c, 0 by default): when non-zero, ops that have both a
 * oneDNN path and a reference kernel run the reference kernel, even if a oneDNN primitive was
 * prepared. Lets tests compare both paths on the same plan. */
extern int stx__ops_force_reference;

/* The process-wide CPU engine (index 0), created on first use. NULL when creation failed. The
 * engine lives until process exit: primitives and memory objects of any session may use it. */
dnnl_engine_t stx__dnnl_engine(void);

/* Creates a stream on the shared engine (in-order, default flags). */
dnnl_status_t stx__dnnl_stream_create(dnnl_stream_t *stream);

/* Memory descriptor for a dense row-major tensor (tags a, ab, abc, ... abcdefgh). rank 1..8. */
dnnl_status_t stx__dnnl_md_plain(dnnl_memory_desc_t *md, const int64_t *dims, int rank,
                                 dnnl_data_type_t dt);
/* Channel-blocked layout of an N,C,spatial... tensor (rank 3-5): nCw8c/nChw8c/nCdhw8c or 16c,
 * channels padded to a multiple of blk. */
dnnl_status_t stx__dnnl_md_blocked(dnnl_memory_desc_t *md, const int64_t *dims, int rank, int blk);
/* Same dims, format chosen by the primitive (dnnl_format_tag_any). */
dnnl_status_t stx__dnnl_md_any(dnnl_memory_desc_t *md, const int64_t *dims, int rank,
                               dnnl_data_type_t dt);

/* Primitive descriptor (first implementation oneDNN offers) with a user-managed scratchpad:
 * query its size with dnnl_query_scratchpad_md and pass it as DNNL_ARG_SCRATCHPAD. */
dnnl_status_t stx__dnnl_pd_create(dnnl_primitive_desc_t *pd, const_dnnl_op_desc_t op_desc);

/* Same with a hint (the forward_training primitive descriptor a backward primitive needs). */
dnnl_status_t stx__dnnl_pd_create_hint(dnnl_primitive_desc_t *pd, const_dnnl_op_desc_t op_desc,
                                       const_dnnl_primitive_desc_t hint);

/* A memory object on the shared engine. handle: a buffer, or NULL to attach one later with
 * dnnl_memory_set_data_handle. */
dnnl_status_t stx__dnnl_memory(dnnl_memory_t *mem, const dnnl_memory_desc_t *md, void *handle);

/* A layout conversion from one memory descriptor to another, data attached at run time. */
typedef struct stx_dnnl_reorder {
    dnnl_primitive_t prim;
    dnnl_memory_t from, to;
} stx_dnnl_reorder;

/* Builds the reorder; on failure r is left empty (safe to free). */
dnnl_status_t stx__dnnl_reorder_init(stx_dnnl_reorder *r, const dnnl_memory_desc_t *from,
                                     const dnnl_memory_desc_t *to);
/* Builds a reorder that accumulates into its destination (to += reorder(from)), for gradient
 * buffers; on failure r is left empty (safe to free). */
dnnl_status_t stx__dnnl_reorder_init_acc(stx_dnnl_reorder *r, const dnnl_memory_desc_t *from,
                                         const dnnl_memory_desc_t *to);
/* Executes the reorder on stream s from buffer `from` into buffer `to` (does not wait). */
dnnl_status_t stx__dnnl_reorder_run(stx_dnnl_reorder *r, dnnl_stream_t s, const void *from,
                                    void *to);
void stx__dnnl_reorder_free(stx_dnnl_reorder *r);

/* Name of the implementation oneDNN picked for pd ("jit:avx2", "ref:any", ...); never NULL. */
const char *stx__dnnl_impl_name(const_dnnl_primitive_desc_t pd);
/* True when the CPU runs oneDNN's bfloat16 kernels natively (AVX-512 BF16 or AMX). */
bool stx__dnnl_has_bf16(void);

/* stx status for a oneDNN failure: out_of_memory -> STX_E_NOMEM, unimplemented ->
 * STX_E_UNSUPPORTED, others -> STX_E_INTERNAL; message "node 'x' (Conv): oneDNN <what> failed:
 * <status>". */
stx_status stx__dnnl_err(stx_op_ctx *c, dnnl_status_t s, const char *what);

/* Evaluates a oneDNN call; on failure records status and call name in *fail and jumps to the
 * label `dnnl_fail` of the calling function. */
typedef struct stx_dnnl_fail {
    dnnl_status_t status;
    const char *what;
} stx_dnnl_fail;

#define STX_DNNL_TRY(fail, what_, call)                                                            \
    do {                                                                                           \
        dnnl_status_t s_ = (call);                                                                 \
        if (s_ != dnnl_success) {                                                                  \
            (fail)->status = s_;                                                                   \
            (fail)->what = (what_);                                                                \
            goto dnnl_fail;                                                                        \
        }                                                                                          \
    } while (0)

#endif
