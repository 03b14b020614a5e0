/* lrp.c: layer-wise relevance propagation (placeholder until the rules land). */
#include "explain.h"

struct stx_lrp {
    int unused;
};

stx_status stx__lrp_create(const stx_dense_spec *sp, stx_lrp **out) {
    *out = NULL;
    return stx__errf(&sp->ctx->err, STX_E_UNSUPPORTED, "lrp: not implemented yet");
}
void stx__lrp_free(stx_lrp *l) {
    (void)l;
}
stx_status stx__lrp_run(stx_lrp *l, const stx_tensor *x, const int64_t *targets,
                        const int64_t *frames, stx_err *err, float *rel, double *seeded,
                        double *total) {
    (void)l, (void)x, (void)targets, (void)frames, (void)rel, (void)seeded, (void)total;
    return stx__errf(err, STX_E_UNSUPPORTED, "lrp: not implemented yet");
}
