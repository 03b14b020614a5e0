/* results.h: what the robustness tests (alloc_fail.c, threads.c) keep of a run to compare it
 * with a reference run: malloc'ed copies of the output, the input gradient (alloc_fail only)
 * and two explanation maps. */
#ifndef STX_TESTS_RESULTS_H
#define STX_TESTS_RESULTS_H

#include "stx.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    float *out, *grad, *cam, *sal;
    size_t n_out, n_grad, n_cam, n_sal;
} results;

/* A copy of a float tensor's data (its element count in *n); NULL when out of memory. */
static inline float *copy_tensor(const stx_tensor *t, size_t *n) {
    *n = (size_t)stx_tensor_numel(t);
    float *d = malloc(*n * sizeof(float) + 1);
    if (d) memcpy(d, stx_tensor_data_const(t), *n * sizeof(float));
    return d;
}

static inline void results_free(results *r) {
    free(r->out);
    free(r->grad);
    free(r->cam);
    free(r->sal);
    memset(r, 0, sizeof *r);
}

#endif
