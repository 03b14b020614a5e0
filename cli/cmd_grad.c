/* cmd_grad.c: `stx grad MODEL INPUT --target K|NAME|top [--frame T] [--score logit|prob]
 *              [--wrt input|TENSOR|MODULE] -o OUT.npy [model-fact flags]` */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static void grad_usage(FILE *f) {
    fprintf(
        f,
        "usage: stx grad MODEL INPUT.npy [--target K|NAME|top|K1,K2,...] [--frame T]\n"
        "                [--score logit|prob] [--wrt input|TENSOR|MODULE] -o OUT.npy\n"
        "                [--threads N] [--repeat R] [--reference] [--output-name NAME]\n"
        "                [--layout L] [--mean a,b,c] [--std a,b,c] [--frame-size HxW]\n"
        "                [--classes a,b,c|@FILE]\n"
        "  Gradient of a class score with respect to the input or any tensor (an ONNX tensor\n"
        "  name or a PyTorch module path such as layer4), written with that tensor's shape.\n"
        "  INPUT.npy is the model's float32 input or uint8 video frames (see 'stx run --help').\n"
        "  --target   class per sample: an index or a class name, for all samples, a comma list\n"
        "             (one per sample), or top (default: the predicted class)\n"
        "  --frame    frame index for models that output one prediction per frame (N,K,T)\n"
        "  --score    logit (default) or prob (softmax probability over the class axis)\n"
        "  --reference  plain reference kernels only (no oneDNN, no fusion): slow, for checks\n"
        "%s"
        "  (--output-name picks the output whose score is differentiated)\n",
        CLI_FACT_FLAGS_HELP);
}

int cmd_grad(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *out = NULL, *target = "top", *wrt = "input";
    const char *score = "logit";
    long threads = 0, frame = -2, repeat = 1;
    int reference = 0, rc = 0;
    cli_facts facts = {0};
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        int ff = cli_fact_flag(argc, argv, &i, &facts);
        if (ff < 0) {
            rc = 1;
        } else if (ff > 0) {
            continue;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            grad_usage(stdout);
            cli_facts_free(&facts);
            return 0;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (++i >= argc)
                rc = cli_fail("%s needs a file name", a);
            else
                out = argv[i];
        } else if (strcmp(a, "--target") == 0) {
            if (++i >= argc)
                rc = cli_fail("--target needs a class index or name, a list or top");
            else
                target = argv[i];
        } else if (strcmp(a, "--wrt") == 0) {
            if (++i >= argc)
                rc = cli_fail("--wrt needs input, a tensor name or a module path");
            else
                wrt = argv[i];
        } else if (strcmp(a, "--score") == 0) {
            if (++i >= argc || (strcmp(argv[i], "logit") && strcmp(argv[i], "prob")))
                rc = cli_fail("--score must be logit or prob");
            else
                score = argv[i];
        } else if (strcmp(a, "--frame") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 0, 1L << 40, &frame))
                rc = cli_fail("--frame needs a non-negative frame index");
        } else if (strcmp(a, "--threads") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 1, 4096, &threads))
                rc = cli_fail("--threads needs a positive integer");
        } else if (strcmp(a, "--reference") == 0) {
            reference = 1;
        } else if (strcmp(a, "--repeat") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 1, 1000000, &repeat))
                rc = cli_fail("--repeat needs a positive integer");
        } else if (a[0] == '-' && a[1]) {
            rc = cli_fail("grad: unknown option '%s' (try 'stx grad --help')", a);
        } else if (!model) {
            model = a;
        } else if (!input) {
            input = a;
        } else {
            rc = cli_fail("grad: unexpected argument '%s'", a);
        }
    }
    if (!rc && (!model || !input || !out)) {
        grad_usage(stderr);
        rc = 2;
    }
    if (rc) {
        cli_facts_free(&facts);
        return rc;
    }
    stx_context *ctx = NULL;
    stx_model *m = NULL;
    stx_session *s = NULL;
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
    const char *wrt_list[2] = {wrt, NULL};
    stx_session_options so = stx_session_options_default();
    so.grad_wrt = wrt_list;
    so.grad_output = res.output;
    so.use_dnnl = !reference;
    if (stx_session_create(m, &so, stx_tensor_shape(x), stx_tensor_rank(x), &s) != STX_OK) {
        rc = cli_fail("%s", stx_context_last_error(ctx));
        goto done;
    }
    stx_seed seed = stx_seed_default();
    seed.targets = targets;
    seed.frames = frame >= 0 ? frames : NULL;
    seed.score = strcmp(score, "prob") == 0 ? STX_SCORE_PROB : STX_SCORE_LOGIT;
    double best_f = 1e300, best_b = 1e300, best_t = 1e300;
    for (long r = 0; r < repeat; r++) {
        double t0 = cli_now_ms();
        if (stx_session_run(s, x, NULL) != STX_OK) {
            rc = cli_fail("%s", stx_session_last_error(s));
            goto done;
        }
        double t1 = cli_now_ms();
        if (stx_session_backward(s, &seed) != STX_OK) {
            rc = cli_fail("%s", stx_session_last_error(s));
            goto done;
        }
        double t2 = cli_now_ms();
        if (t1 - t0 < best_f) best_f = t1 - t0;
        if (t2 - t1 < best_b) best_b = t2 - t1;
        if (t2 - t0 < best_t) best_t = t2 - t0;
    }
    const int64_t *used = stx_session_seeded_targets(s);
    if (stx_model_num_outputs(m) > 1) printf("output: %s\n", res.output_name);
    for (int64_t i = 0; i < n; i++) {
        const char *name = cli_class_name(&res, used[i]);
        printf("sample %lld: class %lld%s%s%s\n", (long long)i, (long long)used[i], name ? " " : "",
               name ? name : "", targets[i] < 0 ? " (top)" : "");
    }
    printf("forward_ms: %.3f\nbackward_ms: %.3f\ntime_ms_best: %.3f\n", best_f, best_b, best_t);
    stx_tensor *g = stx_session_grad(s, wrt);
    if (!g || stx_tensor_save_npy(ctx, g, out) != STX_OK) {
        rc = cli_fail("%s", g ? stx_context_last_error(ctx) : "no gradient computed");
        goto done;
    }
done:
    free(targets);
    free(frames);
    stx_tensor_free(x);
    stx_session_free(s);
    stx_model_free(m);
    stx_context_free(ctx);
    cli_facts_free(&facts);
    return rc;
}
