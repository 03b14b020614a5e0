/* attention.c: transformer methods (placeholder until they land). */
#include "explain.h"

struct stx_attn {
    int unused;
};

stx_status stx__attn_create(const stx_dense_spec *sp, int method, stx_attn **out) {
    (void)method;
    *out = NULL;
    return stx__errf(&sp->ctx->err, STX_E_UNSUPPORTED, "transformer methods: not implemented yet");
}
void stx__attn_free(stx_attn *a) {
    (void)a;
}
void stx__attn_grid(const stx_attn *a, int64_t grid[3]) {
    (void)a;
    grid[0] = grid[1] = grid[2] = 1;
}
stx_status stx__attn_run(stx_attn *a, const stx_tensor *x, const int64_t *targets,
                         const int64_t *frames, stx_err *err, double *rel) {
    (void)a, (void)x, (void)targets, (void)frames, (void)rel;
    return stx__errf(err, STX_E_UNSUPPORTED, "transformer methods: not implemented yet");
}
