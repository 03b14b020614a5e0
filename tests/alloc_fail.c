/* alloc_fail.c: allocation-failure injection (the sqlite/libuv technique, docs/robustness.md).
 *
 *   stx_alloc_fail_tests MODEL.onnx CLIP.npy LAYER [--stride S] [--max-runs R] [--persistent]
 *
 * A counting allocator hook on the context makes exactly the N-th allocation fail, for N = 1 ..
 * K where K is the number of allocations of a clean run of the whole pipeline: context, .npy
 * load, model load, a session planned for the input's gradient, forward, backward, and the
 * explainers gradcam (at LAYER) and saliency. Every run must end either with a clean
 * STX_E_NOMEM (and a message) from the step that met the failure, or, when the failed allocation
 * was optional, with the same results as the clean run, bit for bit. After everything is freed
 * the hook must hold no live block (and ASan's leak checker must stay silent at exit). Any other
 * status is a failure. Allocations made inside oneDNN, OpenMP, protobuf-c's own stack and FFmpeg
 * do not go through the hook and are not covered.
 *
 * --persistent makes every allocation from the N-th on fail too (the harder case for cleanup
 * code: the error paths cannot allocate either).
 *
 * N is taken every S-th value (default S = 1: every N); with --max-runs R > 0 at most R runs are
 * made, S being raised to fit. ctest runs every N, one-shot and persistent (about 30 s each
 * under ASan for the demo model's 1118 allocations). */
#include "results.h"
#include "stx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    long count;     /* allocations so far */
    long fail_at;   /* the allocation that fails (0: none) */
    long live;      /* blocks not yet freed */
    int failed;     /* the injected failure happened */
    int persistent; /* every allocation from the N-th on fails (else only the N-th) */
} counter;

static void *hook_alloc(void *user, size_t size) {
    counter *c = user;
    c->count++;
    if (c->fail_at && (c->count == c->fail_at || (c->persistent && c->count > c->fail_at))) {
        c->failed = 1;
        return NULL;
    }
    void *p = NULL;
    size_t sz = (size + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, sz ? sz : 64) != 0) return NULL;
    c->live++;
    return p;
}

static void hook_free(void *user, void *p) {
    counter *c = user;
    if (!p) return;
    c->live--;
    free(p);
}

static const char *g_model, *g_clip, *g_layer;

/* One pass of the pipeline. Returns the status of the first failing step (STX_OK when all
 * succeeded) and its name in *step; fills r on success. */
static stx_status pipeline(counter *c, results *r, const char **step, char *msg, size_t msgn) {
    stx_context *ctx = NULL;
    stx_tensor *x = NULL;
    stx_model *m = NULL;
    stx_session *s = NULL;
    stx_explainer *e1 = NULL, *e2 = NULL;
    stx_status st;
    msg[0] = '\0';
    stx_context_options co = stx_context_options_default();
    co.num_threads = 1;
    co.allocator.alloc = hook_alloc;
    co.allocator.free = hook_free;
    co.allocator.user = c;
    *step = "context";
    st = stx_context_create(&co, &ctx);
    if (st) goto done;
    *step = "npy";
    st = stx_tensor_load_npy(ctx, g_clip, &x);
    if (st) goto done;
    *step = "model";
    st = stx_model_load(ctx, g_model, NULL, &m);
    if (st) goto done;
    *step = "plan";
    const char *wrt[] = {"input", NULL};
    stx_session_options so = stx_session_options_default();
    so.grad_wrt = wrt;
    st = stx_session_create(m, &so, stx_tensor_shape(x), stx_tensor_rank(x), &s);
    if (st) goto done;
    *step = "forward";
    stx_tensor *y = NULL;
    st = stx_session_run(s, x, &y);
    if (st) goto done;
    *step = "backward";
    stx_seed seed = stx_seed_default();
    st = stx_session_backward(s, &seed);
    if (st) goto done;
    stx_tensor *g = stx_session_grad(s, "input");
    if (!g) {
        st = STX_E_INTERNAL;
        snprintf(msg, msgn, "no input gradient after a successful backward");
        goto done;
    }
    r->out = copy_tensor(y, &r->n_out);
    r->grad = copy_tensor(g, &r->n_grad);
    *step = "explain gradcam";
    stx_explain_options eo = stx_explain_options_default();
    eo.method = "gradcam";
    eo.layer = g_layer;
    st = stx_explainer_create(m, &eo, stx_tensor_shape(x), stx_tensor_rank(x), &e1);
    stx_tensor *map = NULL;
    if (!st) st = stx_explainer_run(e1, x, NULL, NULL, &map);
    if (st) goto done;
    r->cam = copy_tensor(map, &r->n_cam);
    *step = "explain saliency";
    eo.method = "saliency";
    eo.layer = NULL;
    st = stx_explainer_create(m, &eo, stx_tensor_shape(x), stx_tensor_rank(x), &e2);
    if (!st) st = stx_explainer_run(e2, x, NULL, NULL, &map);
    if (st) goto done;
    r->sal = copy_tensor(map, &r->n_sal);
done:
    if (st && !msg[0]) {
        const char *em = e2    ? stx_explainer_last_error(e2)
                         : e1  ? stx_explainer_last_error(e1)
                         : s   ? stx_session_last_error(s)
                         : ctx ? stx_context_last_error(ctx)
                               : "";
        if ((!em || !*em) && ctx) em = stx_context_last_error(ctx);
        snprintf(msg, msgn, "%s", em ? em : "");
    }
    stx_explainer_free(e2);
    stx_explainer_free(e1);
    stx_session_free(s);
    stx_model_free(m);
    stx_tensor_free(x);
    stx_context_free(ctx);
    return st;
}

static int same(const float *a, size_t na, const float *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof(float)) == 0);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: stx_alloc_fail_tests MODEL.onnx CLIP.npy LAYER [--stride S] "
                        "[--max-runs R]\n");
        return 2;
    }
    g_model = argv[1];
    g_clip = argv[2];
    g_layer = argv[3];
    long stride = 1, max_runs = 0;
    int persistent = 0;
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--persistent") == 0)
            persistent = 1;
        else if (strcmp(argv[i], "--stride") == 0 && i + 1 < argc)
            stride = atol(argv[++i]);
        else if (strcmp(argv[i], "--max-runs") == 0 && i + 1 < argc)
            max_runs = atol(argv[++i]);
    }
    if (stride < 1) stride = 1;
    counter c = {0};
    results base = {0};
    const char *step;
    char msg[1200];
    stx_status st = pipeline(&c, &base, &step, msg, sizeof msg);
    if (st) {
        fprintf(stderr, "alloc_fail: the clean run fails at %s: %s: %s\n", step,
                stx_status_name(st), msg);
        return 1;
    }
    if (c.live != 0) {
        fprintf(stderr, "alloc_fail: the clean run leaves %ld blocks allocated\n", c.live);
        return 1;
    }
    const long K = c.count;
    if (max_runs > 0 && K / stride > max_runs) stride = (K + max_runs - 1) / max_runs;
    printf("alloc_fail: %ld allocations in a clean run; failing every %ld-th of them (%s)\n", K,
           stride, persistent ? "and every allocation after it" : "that one only");
    long runs = 0, nomem = 0, recovered = 0, errors = 0;
    long per_step[8] = {0};
    static const char *steps[] = {"context", "npy",      "model",           "plan",
                                  "forward", "backward", "explain gradcam", "explain saliency"};
    /* N = 1 .. K; with a stride, offset so that the last allocation is always among them */
    for (long n = 1 + (K - 1) % stride; n <= K; n += stride) {
        counter f = {0};
        f.fail_at = n;
        f.persistent = persistent;
        results r = {0};
        st = pipeline(&f, &r, &step, msg, sizeof msg);
        runs++;
        int bad = 0;
        if (f.live != 0) {
            fprintf(stderr, "alloc_fail: N=%ld (%s): %ld blocks leaked\n", n, step, f.live);
            bad = 1;
        }
        if (!f.failed) {
            fprintf(stderr,
                    "alloc_fail: N=%ld: allocation %ld never happened (%ld made): the "
                    "pipeline is not deterministic\n",
                    n, n, f.count);
            bad = 1;
        }
        if (st == STX_E_NOMEM) {
            nomem++;
            if (!msg[0] && strcmp(step, "context") != 0) { /* no context: no message */
                fprintf(stderr, "alloc_fail: N=%ld (%s): STX_E_NOMEM without a message\n", n, step);
                bad = 1;
            }
            for (int k = 0; k < 8; k++)
                if (strcmp(step, steps[k]) == 0) per_step[k]++;
        } else if (st == STX_OK) {
            recovered++;
            if (!same(r.out, r.n_out, base.out, base.n_out) ||
                !same(r.grad, r.n_grad, base.grad, base.n_grad) ||
                !same(r.cam, r.n_cam, base.cam, base.n_cam) ||
                !same(r.sal, r.n_sal, base.sal, base.n_sal)) {
                fprintf(stderr, "alloc_fail: N=%ld: succeeded with different results\n", n);
                bad = 1;
            }
        } else {
            fprintf(stderr, "alloc_fail: N=%ld: %s fails with %s instead of STX_E_NOMEM: %s\n", n,
                    step, stx_status_name(st), msg);
            bad = 1;
        }
        errors += bad;
        results_free(&r);
    }
    printf("alloc_fail: %ld runs: %ld clean STX_E_NOMEM, %ld recovered with identical results, "
           "%ld failures\n",
           runs, nomem, recovered, errors);
    for (int k = 0; k < 8; k++) printf("  NOMEM at %-17s %ld\n", steps[k], per_step[k]);
    results_free(&base);
    return errors ? 1 : 0;
}
