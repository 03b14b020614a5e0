/* ops.h: the operator registry and the interface every op family implements.
 *
 * An op has up to four parts:
 *   check    at load time: validate attributes that do not depend on shapes (optional)
 *   infer    at plan time: output dtypes and shapes from input dtypes/shapes; inputs whose data
 *            is known at plan time (initialisers, folded constants) have t->data != NULL
 *   forward  at run time: compute outputs (already allocated with the inferred shapes) from
 *            inputs. Never allocates in the hot loop except through ctx->scratch.
 *   macs     multiply-accumulate count (optional; 0 when absent)
 * Kernels are pure: raw data in the tensors, sizes from the shapes. An omitted optional input or
 * output is NULL.
 */
#ifndef STX_OPS_H
#define STX_OPS_H

#include "../graph/ir.h"

typedef struct stx_op_ctx {
    stx_context *ctx;
    const stx_node *node;
    int n_in, n_out;
    stx_tensor **in;  /* n_in entries; NULL for omitted optional inputs */
    stx_tensor **out; /* n_out entries; NULL for omitted optional outputs */
    stx_err *err;
    int opset;
    void *state; /* per-node planned state (from prepare), or NULL */
    int no_dnnl; /* 1: the session asked for reference kernels only (prepare must not use oneDNN) */
    /* Reverse mode (see `backward` below). din/dout have n_in/n_out entries. */
    stx_tensor **din;  /* gradient buffers of inputs to compute (accumulate +=), NULL: not needed */
    stx_tensor **dout; /* gradients of outputs, NULL: no gradient flows into that output (zero) */
    int need_backward; /* set at prepare when the session will run backward through this node */
} stx_op_ctx;

typedef struct stx_op_def {
    const char *name;         /* ONNX op_type in the default domain */
    int min_in, max_in;       /* accepted input arity */
    int min_out, max_out;     /* accepted output arity */
    const char *const *attrs; /* NULL-terminated list of supported attribute names */
    stx_status (*check)(const stx_node *n, stx_err *e);
    stx_status (*infer)(stx_op_ctx *c);
    stx_status (*forward)(stx_op_ctx *c);
    int64_t (*macs)(const stx_op_ctx *c);
    /* Optional: build per-node state once shapes are known (e.g. oneDNN primitives). */
    stx_status (*prepare)(stx_op_ctx *c, void **state);
    void (*release)(void *state);
    /* Reverse mode: the vector-Jacobian product. Given the gradients of the outputs (c->dout),
     * accumulate (+=) the gradients of the inputs that are asked for (c->din[k] != NULL; the
     * buffers are zeroed by the engine). Only the forward values named in bwd_in / bwd_out
     * (bit k = input/output k) are guaranteed to hold data; the others may have data == NULL.
     * Never compute what is not asked for (weight gradients in particular). float32 and float64.
     * NULL: the op is not differentiable (integer outputs: Shape, Equal, ...); gradients stop. */
    stx_status (*backward)(stx_op_ctx *c);
    uint32_t bwd_in, bwd_out;
    /* Optional: the forward inputs the backward reads when only the inputs in din_mask (bit k =
     * input k) need gradients, so that e.g. a convolution's input is not kept for a weight
     * gradient nobody asks for. NULL: bwd_in. */
    uint32_t (*bwd_in_for)(uint32_t din_mask);
} stx_op_def;

/* Looks an op up by name (default domain ""/"ai.onnx"); NULL when unsupported. */
const stx_op_def *stx__op_find(const char *domain, const char *op_type);
/* The whole table (for documentation and tests). */
const stx_op_def *const *stx__op_table(int *count);

/* Helpers used by op implementations ------------------------------------------------------- */

/* Sets output i's dtype and shape (the planner allocates it). */
void stx__set_out(stx_op_ctx *c, int i, stx_dtype dt, const int64_t *dims, int rank);
/* Numpy-style multidirectional broadcast of two shapes. */
stx_status stx__broadcast_shape(stx_op_ctx *c, const int64_t *a, int ra, const int64_t *b, int rb,
                                int64_t *out, int *rout);
/* Error naming the node: "node 'name' (Op): <fmt>". */
stx_status stx__node_err(stx_op_ctx *c, stx_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
stx_status stx__node_err_n(const stx_node *n, stx_err *e, stx_status code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Reads a 1-D int64 (or int32) constant input as int64 values; false if not constant. */
bool stx__const_ints(const stx_tensor *t, int64_t *v, int max, int *n);
/* Normalises a possibly negative axis; false when out of range. */
bool stx__norm_axis(int64_t axis, int rank, int *out);

/* Op family registration lists (each file defines one array, NULL-terminated). */
extern const stx_op_def *const stx__ops_elementwise[];
extern const stx_op_def *const stx__ops_shape[];
extern const stx_op_def *const stx__ops_reduce[];
extern const stx_op_def *const stx__ops_conv[];
extern const stx_op_def *const stx__ops_pool[];
extern const stx_op_def *const stx__ops_matmul[];
extern const stx_op_def *const stx__ops_norm[];
extern const stx_op_def *const stx__ops_rnn[];

#endif
