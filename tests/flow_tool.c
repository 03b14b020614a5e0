/* flow_tool.c: a tiny entry point to stx's internal optical flow, for tests/cli/test_flow.py and
 * tests/models/test_aosa.py (the checks and their oracles live in those scripts).
 *
 * usage: stx_flow_tool pair I0.npy I1.npy OUT.npy [levels iterations window smooth reg median]
 *            flow from grey frame I0 to I1 (float32 (H, W) each) -> OUT (H, W, 2) float32
 *            (u = dx, v = dy); unspecified parameters take stx__flow_params_default()
 *        stx_flow_tool clip X.npy NCTHW|NTCHW OUT.npy
 *            the flows AOSA computes for the first sample of a model input X (float32,
 *            (N, C, T, H, W) or (N, T, C, H, W)) -> OUT (T - 1, H, W, 2) float32
 */
#include "stx.h"
#include "core/core.h"
#include "explain/explain.h"
#include "video/flow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(stx_context *ctx, const char *what) {
    fprintf(stderr, "stx_flow_tool: %s: %s\n", what, ctx ? stx_context_last_error(ctx) : "");
    return 1;
}

static int save(stx_context *ctx, const int64_t *shape, int rank, const float *data,
                const char *path) {
    stx_tensor *t = NULL;
    if (stx_tensor_create(ctx, STX_DTYPE_FLOAT, shape, rank, &t)) return fail(ctx, "tensor");
    memcpy(stx_tensor_data(t), data, sizeof(float) * (size_t)stx_tensor_numel(t));
    int rc = stx_tensor_save_npy(ctx, t, path) ? fail(ctx, path) : 0;
    stx_tensor_free(t);
    return rc;
}

static int pair(stx_context *ctx, int argc, char **argv) {
    stx_tensor *a = NULL, *b = NULL;
    if (stx_tensor_load_npy(ctx, argv[2], &a) || stx_tensor_load_npy(ctx, argv[3], &b))
        return fail(ctx, "load");
    const int64_t *sa = stx_tensor_shape(a), *sb = stx_tensor_shape(b);
    if (stx_tensor_rank(a) != 2 || stx_tensor_rank(b) != 2 || sa[0] != sb[0] || sa[1] != sb[1] ||
        stx_tensor_dtype(a) != STX_DTYPE_FLOAT || stx_tensor_dtype(b) != STX_DTYPE_FLOAT) {
        fprintf(stderr, "stx_flow_tool: the frames must be float32 (H, W) of the same size\n");
        return 1;
    }
    stx_flow_params p = stx__flow_params_default();
    if (argc > 5) p.levels = atoi(argv[5]);
    if (argc > 6) p.iterations = atoi(argv[6]);
    if (argc > 7) p.window = (float)atof(argv[7]);
    if (argc > 8) p.smooth = (float)atof(argv[8]);
    if (argc > 9) p.reg = (float)atof(argv[9]);
    if (argc > 10) p.median = atoi(argv[10]);
    int64_t H = sa[0], W = sa[1];
    float *work = malloc(sizeof(float) * (size_t)stx__flow_work(&p, H, W));
    float *flow = malloc(sizeof(float) * (size_t)(H * W * 2));
    int rc = 1;
    if (work && flow) {
        stx__flow(&p, stx_tensor_data_const(a), stx_tensor_data_const(b), H, W, flow, work);
        int64_t shape[3] = {H, W, 2};
        rc = save(ctx, shape, 3, flow, argv[4]);
    }
    free(work);
    free(flow);
    stx_tensor_free(a);
    stx_tensor_free(b);
    return rc;
}

static int clip(stx_context *ctx, char **argv) {
    stx_tensor *x = NULL;
    if (stx_tensor_load_npy(ctx, argv[2], &x)) return fail(ctx, "load");
    const int64_t *s = stx_tensor_shape(x);
    int ncthw = strcmp(argv[3], "NCTHW") == 0;
    if (stx_tensor_rank(x) != 5 || stx_tensor_dtype(x) != STX_DTYPE_FLOAT ||
        (!ncthw && strcmp(argv[3], "NTCHW") != 0)) {
        fprintf(stderr, "stx_flow_tool: X must be float32 NCTHW or NTCHW\n");
        stx_tensor_free(x);
        return 1;
    }
    stx_perturb p = {.T = s[ncthw ? 2 : 1], .C = s[ncthw ? 1 : 2], .H = s[3], .W = s[4]};
    p.tax = ncthw ? 2 : 1;
    p.sample_numel = p.T * p.C * p.H * p.W;
    int64_t HW = p.H * p.W;
    stx_flow_params fp = stx__flow_params_default();
    float *grey = malloc(sizeof(float) * (size_t)(p.T * HW));
    float *flow = malloc(sizeof(float) * (size_t)((p.T - 1) * HW * 2 + 1));
    float *work = malloc(sizeof(float) * (size_t)stx__flow_work(&fp, p.H, p.W));
    int rc = 1;
    if (grey && flow && work) {
        stx__aosa_flows(&p, stx_tensor_data_const(x), grey, flow, work);
        int64_t shape[4] = {p.T - 1, p.H, p.W, 2};
        rc = save(ctx, shape, 4, flow, argv[4]);
    }
    free(grey);
    free(flow);
    free(work);
    stx_tensor_free(x);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 5 || (strcmp(argv[1], "pair") != 0 && strcmp(argv[1], "clip") != 0)) {
        fprintf(stderr, "usage: stx_flow_tool pair I0.npy I1.npy OUT.npy [levels iterations "
                        "window smooth reg median]\n"
                        "       stx_flow_tool clip X.npy NCTHW|NTCHW OUT.npy\n");
        return 2;
    }
    stx_context *ctx = NULL;
    if (stx_context_create(NULL, &ctx)) return fail(NULL, "context");
    int rc = strcmp(argv[1], "pair") == 0 ? pair(ctx, argc, argv) : clip(ctx, argv);
    stx_context_free(ctx);
    return rc;
}
