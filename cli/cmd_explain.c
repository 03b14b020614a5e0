/* cmd_explain.c: `stx explain MODEL INPUT --method NAME [--target K|top] [--frame T] [--layer L]
 *                 [--score logit|prob] [--upsample trilinear|nearest|none] [--batch B]
 *                 [--seed S] [-o OUT.npy] [model-fact flags]` */
#include "cli.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void explain_usage(FILE *f) {
    fprintf(
        f,
        "usage: stx explain MODEL INPUT.npy [--method NAME] [--target K|NAME|top|K1,K2,...]\n"
        "                   [--frame T] [--layer L] [--score logit|prob]\n"
        "                   [--upsample trilinear|nearest|none] [--batch B] [--seed S]\n"
        "                   [--samples n] [--noise s] [--token-grid T,H,W] [-o OUT.npy]\n"
        "                   [--threads N] [--repeat R] [model-fact flags]\n"
        "  Explanation map of every sample of INPUT (the model's float32 input or uint8\n"
        "  video frames), raw float32 values (N,T,H,W) aligned with the input's time and\n"
        "  space axes (N,T',H',W' with --upsample none). Definitions: docs/cam.md.\n"
        "  --method   gradcam (default), gradcam-frame, gradcam++, smooth-gradcam++, xgradcam,\n"
        "             layercam, hirescam, cam, scorecam, sscam, iscam, eigencam, ablationcam\n"
        "  --layer    ONNX tensor name or PyTorch module path (default: the model's\n"
        "             stx.target_layer, else the last 5-D, frame-batched or token tensor)\n"
        "  --target   class per sample: index, class name, top (default), or a comma list\n"
        "  --frame    frame index for models that output one prediction per frame (N,K,T)\n"
        "  --score    logit (default) or prob (softmax probability)\n"
        "  --upsample trilinear (default), nearest or none (the layer's resolution)\n"
        "  --batch    forwards per batch for scorecam, sscam, iscam, ablationcam (16)\n"
        "  --seed     seed of the noise of smooth-gradcam++ and sscam (0)\n"
        "  --samples  noisy/scaled copies (smooth-gradcam++ 4, sscam 35, iscam 10)\n"
        "  --noise    noise standard deviation (smooth-gradcam++ 0.3, sscam 2.0)\n"
        "  --token-grid T,H,W  token grid of a transformer layer (default: stx.token_grid,\n"
        "             else the patch embedding's output)\n"
        "%s",
        CLI_FACT_FLAGS_HELP);
}

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

typedef struct bar {
    int tty;
    const char *method;
    double t0;
} bar;

static int on_progress(void *user, int64_t done, int64_t total) {
    bar *b = user;
    if (b->tty && total > 0) {
        int width = 30, fill = (int)(width * done / total);
        fprintf(stderr, "\r%s [", b->method);
        for (int i = 0; i < width; i++) fputc(i < fill ? '#' : '.', stderr);
        fprintf(stderr, "] %lld/%lld forwards %.1f s", (long long)done, (long long)total,
                (cli_now_ms() - b->t0) / 1000.0);
        if (done >= total) fputc('\n', stderr);
        fflush(stderr);
    }
    return interrupted;
}

static bool parse_grid(const char *s, int g[3]) {
    int64_t d[STX_MAX_RANK];
    int r;
    if (!cli_parse_shape(s, d, &r) || r != 3) return false;
    for (int k = 0; k < 3; k++) {
        if (d[k] <= 0 || d[k] > 1 << 20) return false;
        g[k] = (int)d[k];
    }
    return true;
}

int cmd_explain(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *out = NULL, *target = "top";
    stx_explain_options eo = stx_explain_options_default();
    long threads = 0, frame = -2, batch = eo.batch, samples = 0, repeat = 1;
    int rc = 0;
    cli_facts facts = {0};
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        int ff = cli_fact_flag(argc, argv, &i, &facts);
        if (ff < 0) {
            rc = 1;
        } else if (ff > 0) {
            continue;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            explain_usage(stdout);
            cli_facts_free(&facts);
            return 0;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (++i >= argc)
                rc = cli_fail("%s needs a file name", a);
            else
                out = argv[i];
        } else if (strcmp(a, "--method") == 0) {
            if (++i >= argc)
                rc = cli_fail("--method needs a name (try 'stx explain --help')");
            else
                eo.method = argv[i];
        } else if (strcmp(a, "--layer") == 0) {
            if (++i >= argc || !argv[i][0])
                rc = cli_fail("--layer needs a tensor name or a module path");
            else
                eo.layer = argv[i];
        } else if (strcmp(a, "--target") == 0) {
            if (++i >= argc)
                rc = cli_fail("--target needs a class index or name, a list or top");
            else
                target = argv[i];
        } else if (strcmp(a, "--score") == 0) {
            if (++i >= argc || (strcmp(argv[i], "logit") && strcmp(argv[i], "prob")))
                rc = cli_fail("--score must be logit or prob");
            else
                eo.score = strcmp(argv[i], "prob") == 0 ? STX_SCORE_PROB : STX_SCORE_LOGIT;
        } else if (strcmp(a, "--upsample") == 0) {
            if (++i >= argc) {
                rc = cli_fail("--upsample must be trilinear, nearest or none");
            } else if (strcmp(argv[i], "trilinear") == 0) {
                eo.upsample = STX_UPSAMPLE_TRILINEAR;
            } else if (strcmp(argv[i], "nearest") == 0) {
                eo.upsample = STX_UPSAMPLE_NEAREST;
            } else if (strcmp(argv[i], "none") == 0) {
                eo.upsample = STX_UPSAMPLE_NONE;
            } else {
                rc = cli_fail("--upsample must be trilinear, nearest or none, not '%s'", argv[i]);
            }
        } else if (strcmp(a, "--frame") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 0, 1L << 40, &frame))
                rc = cli_fail("--frame needs a non-negative frame index");
        } else if (strcmp(a, "--batch") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 1, 4096, &batch))
                rc = cli_fail("--batch needs an integer in [1, 4096]");
        } else if (strcmp(a, "--samples") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 1, 100000, &samples))
                rc = cli_fail("--samples needs an integer in [1, 100000]");
        } else if (strcmp(a, "--noise") == 0) {
            char *e = NULL;
            double v = ++i < argc ? strtod(argv[i], &e) : -1;
            if (i >= argc || !e || *e || !(v >= 0 && v <= 1e6))
                rc = cli_fail("--noise needs a standard deviation >= 0");
            else
                eo.noise = (float)v;
        } else if (strcmp(a, "--seed") == 0) {
            char *e = NULL;
            unsigned long long v = ++i < argc ? strtoull(argv[i], &e, 10) : 0;
            if (i >= argc || !e || *e || argv[i][0] == '-' || !argv[i][0])
                rc = cli_fail("--seed needs a non-negative integer");
            else
                eo.seed = v;
        } else if (strcmp(a, "--token-grid") == 0) {
            if (++i >= argc || !parse_grid(argv[i], eo.token_grid))
                rc = cli_fail("--token-grid needs three positive sizes T,H,W");
        } else if (strcmp(a, "--repeat") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 1, 1000000, &repeat))
                rc = cli_fail("--repeat needs a positive integer");
        } else if (strcmp(a, "--threads") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 1, 4096, &threads))
                rc = cli_fail("--threads needs a positive integer");
        } else if (a[0] == '-' && a[1]) {
            rc = cli_fail("explain: unknown option '%s' (try 'stx explain --help')", a);
        } else if (!model) {
            model = a;
        } else if (!input) {
            input = a;
        } else {
            rc = cli_fail("explain: unexpected argument '%s'", a);
        }
    }
    if (!rc && (!model || !input)) {
        explain_usage(stderr);
        rc = 2;
    }
    if (rc) {
        cli_facts_free(&facts);
        return rc;
    }
    eo.batch = (int)batch;
    eo.samples = (int)samples;
    stx_context *ctx = NULL;
    stx_model *m = NULL;
    stx_explainer *e = NULL;
    stx_tensor *x = NULL;
    int64_t *targets = NULL, *frames = NULL;
    cli_resolved res;
    if ((rc = cli_context((int)threads, &ctx))) goto done;
    if ((rc = cli_load_model(ctx, model, &m))) goto done;
    if ((rc = cli_resolve_facts(m, &facts, true, &res))) goto done;
    if ((rc = cli_load_input(ctx, input, &res, &x))) goto done;
    int64_t n = stx_tensor_rank(x) > 0 ? stx_tensor_shape(x)[0] : 1;
    targets = calloc((size_t)n, sizeof *targets);
    frames = calloc((size_t)n, sizeof *frames);
    if (!targets || !frames) {
        rc = cli_fail("out of memory");
        goto done;
    }
    if ((rc = cli_parse_targets(target, &res, targets, n))) goto done;
    for (int64_t i = 0; i < n; i++) frames[i] = frame >= 0 ? frame : -1;
    eo.layout = res.pre.layout;
    eo.output = res.output_name;
    bar b = {isatty(2), eo.method ? eo.method : "gradcam", 0};
    eo.progress = on_progress;
    eo.progress_user = &b;
    double t0 = cli_now_ms();
    if (stx_explainer_create(m, &eo, stx_tensor_shape(x), stx_tensor_rank(x), &e) != STX_OK) {
        rc = cli_fail("%s: %s", model, stx_context_last_error(ctx));
        goto done;
    }
    const char *tensor, *module, *how;
    int64_t grid[4];
    stx_explainer_layer(e, &tensor, &module, &how, grid);
    printf("layer: %s%s%s%s (%s; %lld channels, grid %lldx%lldx%lld)\n", module ? module : tensor,
           module ? " (tensor " : "", module ? tensor : "", module ? ")" : "", how,
           (long long)grid[0], (long long)grid[1], (long long)grid[2], (long long)grid[3]);
    fflush(stdout);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);
    b.t0 = cli_now_ms();
    stx_tensor *map = NULL;
    stx_status st = STX_OK;
    double best = 1e300;
    for (long r = 0; r < repeat && st == STX_OK; r++) {
        double ta = cli_now_ms();
        st = stx_explainer_run(e, x, targets, frame >= 0 ? frames : NULL, &map);
        if (cli_now_ms() - ta < best) best = cli_now_ms() - ta;
    }
    sigaction(SIGINT, &old, NULL);
    double t1 = cli_now_ms();
    if (st != STX_OK) {
        if (b.tty) fputc('\n', stderr);
        rc = cli_fail("%s", stx_explainer_last_error(e));
        goto done;
    }
    const int64_t *used = stx_explainer_targets(e);
    const stx_tensor *y = stx_explainer_output(e);
    const int64_t *ms = stx_tensor_shape(map);
    const float *mp = stx_tensor_data_const(map);
    int64_t per = ms[1] * ms[2] * ms[3];
    for (int64_t i = 0; i < n; i++) {
        const char *name = cli_class_name(&res, used[i]);
        int64_t arg = 0;
        for (int64_t u = 1; u < per; u++)
            if (mp[i * per + u] > mp[i * per + arg]) arg = u;
        int64_t K = stx_tensor_shape(y)[1];
        /* predicted class (top over frames for per-frame outputs is printed by `stx run`) */
        printf("sample %lld: class %lld%s%s%s", (long long)i, (long long)used[i], name ? " " : "",
               name ? name : "", targets[i] < 0 ? " (top)" : "");
        if (stx_tensor_rank(y) == 2)
            printf(" logit %.4f",
                   (double)((const float *)stx_tensor_data_const(y))[i * K + used[i]]);
        printf("; map max %.4g at t=%lld y=%lld x=%lld\n", (double)mp[i * per + arg],
               (long long)(arg / (ms[2] * ms[3])), (long long)(arg / ms[3] % ms[2]),
               (long long)(arg % ms[3]));
    }
    printf("map: %lldx%lldx%lldx%lld float32%s%s\n", (long long)ms[0], (long long)ms[1],
           (long long)ms[2], (long long)ms[3], out ? " -> " : " (not saved: give -o OUT.npy)",
           out ? out : "");
    printf("time_ms: %.1f (plan %.1f, explain %.1f)\ntime_ms_best: %.3f\n", t1 - t0, b.t0 - t0,
           t1 - b.t0, best);
    if (out && stx_tensor_save_npy(ctx, map, out) != STX_OK) {
        rc = cli_fail("%s", stx_context_last_error(ctx));
        goto done;
    }
done:
    free(targets);
    free(frames);
    stx_tensor_free(x);
    stx_explainer_free(e);
    stx_model_free(m);
    stx_context_free(ctx);
    cli_facts_free(&facts);
    return rc;
}
