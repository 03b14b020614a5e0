/* sanity_tool.c: a tiny entry point to the sanity-check primitives (src/metrics/sanity.c) for
 * tests/models/test_sanity.py (the checks and their oracles live in that script).
 *
 * usage: stx_sanity_tool similarity A.npy B.npy
 *            Spearman (raw and |.|) and SSIM of two float32 maps (T,H,W) or (N,T,H,W), printed
 *            as "spearman V", "spearman_abs V", "ssim V"
 *        stx_sanity_tool spearman A.npy B.npy
 *            Spearman of two float32 arrays of any shape with the same element count
 *        stx_sanity_tool randomize MODEL K SEED OUTDIR [INPUT.npy]
 *            OUTDIR/layers.txt: "index name param..." per layer (top first); the top K layers
 *            re-initialised with SEED: OUTDIR/p<layer>_<j>.npy per parameter and
 *            OUTDIR/params.txt "layer j name file"; with INPUT, the randomised model's output
 *            (OUTDIR/randomized.npy) and then the original's (OUTDIR/original.npy)
 */
#include "stx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(stx_context *ctx, const char *what) {
    fprintf(stderr, "stx_sanity_tool: %s: %s\n", what, ctx ? stx_context_last_error(ctx) : "");
    return 1;
}

static int forward(stx_context *ctx, stx_model *m, const stx_tensor *x, const char *path) {
    stx_session *s = NULL;
    stx_tensor *y = NULL;
    if (stx_session_create(m, NULL, stx_tensor_shape(x), stx_tensor_rank(x), &s))
        return fail(ctx, "session");
    int rc = 0;
    if (stx_session_run(s, x, &y)) {
        fprintf(stderr, "stx_sanity_tool: run: %s\n", stx_session_last_error(s));
        rc = 1;
    } else if (stx_tensor_save_npy(ctx, y, path)) {
        rc = fail(ctx, path);
    }
    stx_session_free(s);
    return rc;
}

static int randomize(stx_context *ctx, int argc, char **argv) {
    if (argc < 6) return fail(NULL, "randomize needs MODEL K SEED OUTDIR [INPUT.npy]");
    stx_model *m = NULL, *r = NULL;
    stx_tensor *x = NULL;
    char path[4096];
    int rc = 0;
    if (stx_model_load(ctx, argv[2], NULL, &m)) return fail(ctx, argv[2]);
    int k = atoi(argv[3]);
    uint64_t seed = strtoull(argv[4], NULL, 10);
    const char *dir = argv[5];
    snprintf(path, sizeof path, "%s/layers.txt", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        stx_model_free(m);
        return fail(NULL, path);
    }
    int n = stx_model_num_layers(m);
    for (int i = 0; i < n; i++) {
        fprintf(f, "%d %s", i, stx_model_layer_name(m, i));
        for (int j = 0; j < stx_model_layer_num_params(m, i); j++)
            fprintf(f, " %s", stx_model_layer_param(m, i, j));
        fprintf(f, "\n");
    }
    fclose(f);
    if (stx_model_randomize(m, k, seed, &r)) {
        rc = fail(ctx, "randomize");
        goto done;
    }
    snprintf(path, sizeof path, "%s/params.txt", dir);
    f = fopen(path, "w");
    if (!f) {
        rc = fail(NULL, path);
        goto done;
    }
    for (int i = 0; i < k && !rc; i++)
        for (int j = 0; j < stx_model_layer_num_params(r, i) && !rc; j++) {
            const char *name = stx_model_layer_param(r, i, j);
            snprintf(path, sizeof path, "%s/p%d_%d.npy", dir, i, j);
            fprintf(f, "%d %d %s p%d_%d.npy\n", i, j, name, i, j);
            if (stx_tensor_save_npy(ctx, stx_model_initializer(r, name), path))
                rc = fail(ctx, path);
        }
    fclose(f);
    if (!rc && argc > 6) {
        if (stx_tensor_load_npy(ctx, argv[6], &x)) {
            rc = fail(ctx, argv[6]);
            goto done;
        }
        snprintf(path, sizeof path, "%s/randomized.npy", dir);
        rc = forward(ctx, r, x, path);
        /* the original after its copy was made and run: must be untouched */
        snprintf(path, sizeof path, "%s/original.npy", dir);
        if (!rc) rc = forward(ctx, m, x, path);
    }
done:
    stx_tensor_free(x);
    stx_model_free(r);
    stx_model_free(m);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) return fail(NULL, "usage: similarity|spearman|randomize ...");
    stx_context *ctx = NULL;
    if (stx_context_create(NULL, &ctx)) return fail(NULL, "context");
    int rc = 0;
    if (strcmp(argv[1], "randomize") == 0) {
        rc = randomize(ctx, argc, argv);
    } else if (argc == 4 &&
               (strcmp(argv[1], "similarity") == 0 || strcmp(argv[1], "spearman") == 0)) {
        stx_tensor *a = NULL, *b = NULL;
        if (stx_tensor_load_npy(ctx, argv[2], &a) || stx_tensor_load_npy(ctx, argv[3], &b)) {
            rc = fail(ctx, "load");
        } else if (argv[1][1] == 'i') {
            stx_similarity s;
            if (stx_map_similarity(ctx, a, b, &s))
                rc = fail(ctx, "similarity");
            else
                printf("spearman %.17g\nspearman_abs %.17g\nssim %.17g\n", s.spearman,
                       s.spearman_abs, s.ssim);
        } else {
            double r0, r1;
            if (stx_tensor_numel(a) != stx_tensor_numel(b))
                rc = fail(NULL, "element counts differ");
            else if (stx_spearman(ctx, stx_tensor_data_const(a), stx_tensor_data_const(b),
                                  stx_tensor_numel(a), 0, &r0) ||
                     stx_spearman(ctx, stx_tensor_data_const(a), stx_tensor_data_const(b),
                                  stx_tensor_numel(a), 1, &r1))
                rc = fail(ctx, "spearman");
            else
                printf("spearman %.17g\nspearman_abs %.17g\n", r0, r1);
        }
        stx_tensor_free(a);
        stx_tensor_free(b);
    } else {
        rc = fail(NULL, "unknown command");
    }
    stx_context_free(ctx);
    return rc;
}
