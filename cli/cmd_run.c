/* cmd_run.c: `stx run MODEL INPUT.npy [-o OUT.npy] [--topk K] [--threads N] [--repeat R]`. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void run_usage(FILE *f) {
    fprintf(f, "usage: stx run MODEL INPUT.npy [-o OUT.npy] [--topk K] [--threads N] [--repeat R]\n"
               "  Runs the model forward on the input tensor (.npy, float32, the model's layout)\n"
               "  and prints the top-K classes with their scores (logits) for every sample.\n"
               "  -o OUT.npy     write the output tensor\n"
               "  --topk K       classes to print per sample (default 5; 0: none)\n"
               "  --threads N    threads (default: STX_NUM_THREADS or all cores)\n"
               "  --repeat R     run R times and print the best and mean time (benchmarking)\n");
}

/* Prints the top-k entries of each row of a (N, K) or (N, K, ...) output. */
static void print_topk(const stx_tensor *y, int topk) {
    const float *p = stx_tensor_data_const(y);
    const int64_t *d = stx_tensor_shape(y);
    int r = stx_tensor_rank(y);
    int64_t n = r >= 1 ? d[0] : 1;
    int64_t k = 1;
    for (int i = 1; i < r; i++) k *= d[i];
    if (r < 2 || topk <= 0) return;
    int tk = topk < k ? topk : (int)k;
    int *best = malloc(sizeof(int) * (size_t)tk);
    if (!best) return;
    for (int64_t s = 0; s < n; s++) {
        const float *row = p + s * k;
        printf("sample %lld: top-%d\n", (long long)s, tk);
        for (int j = 0; j < tk; j++) {
            int b = -1;
            for (int64_t c = 0; c < k; c++) {
                bool used = false;
                for (int q = 0; q < j; q++) used |= best[q] == c;
                if (!used && (b < 0 || row[c] > row[b])) b = (int)c;
            }
            best[j] = b;
            printf("  %2d. class %-6d score %.6g\n", j + 1, b, (double)row[b]);
        }
    }
    free(best);
}

int cmd_run(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *out = NULL;
    long topk = 5, threads = 0, repeat = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            run_usage(stdout);
            return 0;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (++i >= argc) return cli_fail("%s needs a file name", a);
            out = argv[i];
        } else if (strcmp(a, "--topk") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 0, 1000000, &topk))
                return cli_fail("--topk needs a non-negative integer");
        } else if (strcmp(a, "--threads") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 1, 4096, &threads))
                return cli_fail("--threads needs a positive integer");
        } else if (strcmp(a, "--repeat") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 1, 1000000, &repeat))
                return cli_fail("--repeat needs a positive integer");
        } else if (a[0] == '-' && a[1]) {
            return cli_fail("run: unknown option '%s' (try 'stx run --help')", a);
        } else if (!model) {
            model = a;
        } else if (!input) {
            input = a;
        } else {
            return cli_fail("run: unexpected argument '%s'", a);
        }
    }
    if (!model || !input) {
        run_usage(stderr);
        return 2;
    }
    stx_context *ctx = NULL;
    stx_model *m = NULL;
    stx_session *s = NULL;
    stx_tensor *x = NULL, *y = NULL;
    int rc = cli_context((int)threads, &ctx);
    if (rc) return rc;
    if ((rc = cli_load_model(ctx, model, &m))) goto done;
    if ((rc = cli_load_input(ctx, input, &x))) goto done;
    if (stx_session_create(m, NULL, stx_tensor_shape(x), stx_tensor_rank(x), &s) != STX_OK) {
        rc = cli_fail("%s: %s", input, stx_context_last_error(ctx));
        goto done;
    }
    double best = INFINITY, sum = 0;
    for (long r = 0; r < repeat; r++) {
        double t0 = cli_now_ms();
        if (stx_session_run(s, x, &y) != STX_OK) {
            rc = cli_fail("%s", stx_session_last_error(s));
            goto done;
        }
        double dt = cli_now_ms() - t0;
        sum += dt;
        if (dt < best) best = dt;
    }
    if (repeat > 1) {
        printf("time_ms_best: %.3f\n", best);
        printf("time_ms_mean: %.3f\n", sum / (double)repeat);
    } else {
        printf("time_ms: %.3f\n", best);
    }
    print_topk(y, (int)topk);
    if (out && stx_tensor_save_npy(ctx, y, out) != STX_OK) {
        rc = cli_fail("%s", stx_context_last_error(ctx));
        goto done;
    }
done:
    stx_tensor_free(x);
    stx_session_free(s);
    stx_model_free(m);
    stx_context_free(ctx);
    return rc;
}
