/* gradient.c: the gradient family (placeholder). */
#include "explain.h"

struct stx_grad {
    int unused;
};

stx_status stx__grad_create(const stx_dense_spec *sp, int method, stx_grad **out) {
    (void)method;
    *out = NULL;
    return stx__errf(&sp->ctx->err, STX_E_UNSUPPORTED, "gradient methods: not implemented yet");
}
void stx__grad_free(stx_grad *g) {
    (void)g;
}
stx_status stx__grad_run(stx_grad *g, const stx_tensor *x, const int64_t *targets,
                         const int64_t *frames, const float *base, stx_err *err, float *attr,
                         double *attributed, double *expected) {
    (void)g, (void)x, (void)targets, (void)frames, (void)base, (void)attr, (void)attributed;
    (void)expected;
    return stx__errf(err, STX_E_UNSUPPORTED, "gradient methods: not implemented yet");
}
