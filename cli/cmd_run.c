/* cmd_run.c: `stx run MODEL INPUT.npy [-o OUT.npy] [--topk K] [--threads N] [--repeat R]
 *            [model-fact flags]`. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void run_usage(FILE *f) {
    fprintf(f,
            "usage: stx run MODEL INPUT.npy [-o OUT.npy] [--topk K] [--threads N] [--repeat R]\n"
            "               [--layout L] [--mean a,b,c] [--std a,b,c] [--frame-size HxW]\n"
            "               [--classes a,b,c|@FILE] [--output-name NAME]\n"
            "  Runs the model forward and prints, for every sample, the top-K classes with their\n"
            "  scores (logits), named when the model (or --classes) names its classes. For an\n"
            "  output with one prediction per frame (N,K,T), it prints the predicted class of\n"
            "  every frame as runs (\"frames 0-123: preparation\") instead.\n"
            "  INPUT.npy: the model's float32 input, used as is, or uint8 video frames\n"
            "  (T,H,W,3), (N,T,H,W,3) or grey (...,1), resized, scaled to [0,1], normalised and\n"
            "  laid out as the model's stx.* metadata (or the flags below) say.\n"
            "  -o OUT.npy     write the output tensor\n"
            "  --topk K       classes to print per sample (default 5; 0: none)\n"
            "  --threads N    threads (default: STX_NUM_THREADS or all cores)\n"
            "  --repeat R     run R times and print the best and mean time (benchmarking)\n"
            "%s",
            CLI_FACT_FLAGS_HELP);
}

/* Element i of a float32 or float64 tensor. */
static double value_at(const stx_tensor *y, int64_t i) {
    if (stx_tensor_dtype(y) == STX_DTYPE_DOUBLE)
        return ((const double *)stx_tensor_data_const(y))[i];
    return ((const float *)stx_tensor_data_const(y))[i];
}

/* Prints the top-k entries of each row of a (N, K) or (N, K, ...) output, with class names when
 * the row holds one score per named class. */
static void print_topk(const stx_tensor *y, int topk, const cli_resolved *r) {
    const int64_t *d = stx_tensor_shape(y);
    int rank = stx_tensor_rank(y);
    int64_t n = rank >= 1 ? d[0] : 1;
    int64_t k = 1;
    for (int i = 1; i < rank; i++) k *= d[i];
    if (rank < 2 || topk <= 0 || k <= 0) return;
    bool named = r->n_classes > 0 && k == r->n_classes;
    if (r->n_classes > 0 && !named)
        fprintf(stderr,
                "note: output '%s' has %lld values per sample, not the %d classes the model "
                "names: printing indices\n",
                r->output_name, (long long)k, r->n_classes);
    int width = 0;
    for (int c = 0; named && c < r->n_classes; c++) {
        int len = (int)strlen(r->class_names[c]);
        if (len > width) width = len < 32 ? len : 32;
    }
    int tk = topk < k ? topk : (int)k;
    int64_t *best = malloc(sizeof(int64_t) * (size_t)tk);
    if (!best) return;
    for (int64_t s = 0; s < n; s++) {
        printf("sample %lld: top-%d\n", (long long)s, tk);
        for (int j = 0; j < tk; j++) {
            int64_t b = -1;
            for (int64_t c = 0; c < k; c++) {
                bool used = false;
                for (int q = 0; q < j; q++) used |= best[q] == c;
                if (!used && (b < 0 || value_at(y, s * k + c) > value_at(y, s * k + b))) b = c;
            }
            best[j] = b;
            double v = value_at(y, s * k + b);
            if (named)
                printf("  %2d. %-*s  (class %lld)  score %.6g\n", j + 1, width, r->class_names[b],
                       (long long)b, v);
            else
                printf("  %2d. class %-6lld score %.6g\n", j + 1, (long long)b, v);
        }
    }
    free(best);
}

/* Prints an (N, K, T) per-frame output as runs of frames with the same top class. */
static void print_frame_runs(const stx_tensor *y, const cli_resolved *r) {
    const int64_t *d = stx_tensor_shape(y);
    int64_t n = d[0], k = d[1], t = d[2];
    if (k <= 0 || t <= 0) return;
    int width = 0;
    for (int64_t c = 0; c < k; c++) {
        const char *name = cli_class_name(r, c);
        int len = name ? (int)strlen(name) : 0;
        if (len > width) width = len < 32 ? len : 32;
    }
    for (int64_t s = 0; s < n; s++) {
        printf("sample %lld: predicted class per frame (%lld frames)\n", (long long)s,
               (long long)t);
        int64_t start = 0, prev = -1;
        for (int64_t f = 0; f <= t; f++) {
            int64_t b = -1;
            if (f < t) {
                for (int64_t c = 0; c < k; c++) {
                    double v = value_at(y, (s * k + c) * t + f);
                    if (b < 0 || v > value_at(y, (s * k + b) * t + f)) b = c;
                }
                if (b == prev) continue;
            }
            if (prev >= 0) {
                const char *name = cli_class_name(r, prev);
                char range[64];
                if (f - 1 == start)
                    snprintf(range, sizeof range, "frame %lld", (long long)start);
                else
                    snprintf(range, sizeof range, "frames %lld-%lld", (long long)start,
                             (long long)(f - 1));
                if (name)
                    printf("  %-16s %-*s  (class %lld)\n", range, width, name, (long long)prev);
                else
                    printf("  %-16s class %lld\n", range, (long long)prev);
            }
            start = f;
            prev = b;
        }
    }
}

int cmd_run(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *out = NULL;
    long topk = 5, threads = 0, repeat = 1;
    cli_facts facts = {0};
    int rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        int ff = cli_fact_flag(argc, argv, &i, &facts);
        if (ff < 0) {
            rc = 1;
        } else if (ff > 0) {
            continue;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            run_usage(stdout);
            cli_facts_free(&facts);
            return 0;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (++i >= argc)
                rc = cli_fail("%s needs a file name", a);
            else
                out = argv[i];
        } else if (strcmp(a, "--topk") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 0, 1000000, &topk))
                rc = cli_fail("--topk needs a non-negative integer");
        } else if (strcmp(a, "--threads") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 1, 4096, &threads))
                rc = cli_fail("--threads needs a positive integer");
        } else if (strcmp(a, "--repeat") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 1, 1000000, &repeat))
                rc = cli_fail("--repeat needs a positive integer");
        } else if (a[0] == '-' && a[1]) {
            rc = cli_fail("run: unknown option '%s' (try 'stx run --help')", a);
        } else if (!model) {
            model = a;
        } else if (!input) {
            input = a;
        } else {
            rc = cli_fail("run: unexpected argument '%s'", a);
        }
    }
    if (!rc && (!model || !input)) {
        run_usage(stderr);
        rc = 2;
    }
    if (rc) {
        cli_facts_free(&facts);
        return rc;
    }
    stx_context *ctx = NULL;
    stx_model *m = NULL;
    stx_session *s = NULL;
    stx_tensor *x = NULL, *y = NULL;
    cli_resolved res;
    if ((rc = cli_context((int)threads, &ctx))) goto done;
    if ((rc = cli_load_model(ctx, model, &m))) goto done;
    if ((rc = cli_resolve_facts(m, &facts, true, &res))) goto done;
    if ((rc = cli_load_input(ctx, input, &res, &x))) goto done;
    if (stx_session_create(m, NULL, stx_tensor_shape(x), stx_tensor_rank(x), &s) != STX_OK) {
        rc = cli_fail("%s: %s", input, stx_context_last_error(ctx));
        goto done;
    }
    double best = INFINITY, sum = 0;
    for (long r = 0; r < repeat; r++) {
        double t0 = cli_now_ms();
        if (stx_session_run(s, x, NULL) != STX_OK) {
            rc = cli_fail("%s", stx_session_last_error(s));
            goto done;
        }
        double dt = cli_now_ms() - t0;
        sum += dt;
        if (dt < best) best = dt;
    }
    y = stx_session_output(s, res.output);
    if (repeat > 1) {
        printf("time_ms_best: %.3f\n", best);
        printf("time_ms_mean: %.3f\n", sum / (double)repeat);
    } else {
        printf("time_ms: %.3f\n", best);
    }
    stx_dtype ydt = stx_tensor_dtype(y);
    const int64_t *yd = stx_tensor_shape(y);
    int yr = stx_tensor_rank(y);
    if (stx_model_num_outputs(m) > 1) {
        printf("output: %s [", res.output_name);
        for (int k = 0; k < yr; k++) printf(k ? ",%lld" : "%lld", (long long)yd[k]);
        printf("]\n");
    }
    const char *task = res.meta.task;
    bool per_frame = yr == 3 && ((task && strcmp(task, "frame") == 0) ||
                                 (res.n_classes > 0 && yd[1] == res.n_classes));
    if (ydt != STX_DTYPE_FLOAT && ydt != STX_DTYPE_DOUBLE)
        printf("(output '%s' is %s: no scores to rank)\n", res.output_name, stx_dtype_name(ydt));
    else if (per_frame && topk > 0)
        print_frame_runs(y, &res);
    else
        print_topk(y, (int)topk, &res);
    if (out && stx_tensor_save_npy(ctx, y, out) != STX_OK) {
        rc = cli_fail("%s", stx_context_last_error(ctx));
        goto done;
    }
done:
    stx_tensor_free(x);
    stx_session_free(s);
    stx_model_free(m);
    stx_context_free(ctx);
    cli_facts_free(&facts);
    return rc;
}
