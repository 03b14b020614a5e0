/* threads.c: one loaded model shared by several threads, each with its own run state.
 *
 *   stx_threads_tests MODEL.onnx LAYER CLIP.npy [CLIP.npy ...]
 *
 * The clips are uint8 frames (T, H, W, 3), preprocessed as the model's metadata says. First, on
 * the main thread alone, every clip is explained with gradcam (at LAYER) and saliency and run
 * forward: the reference results. Then one explainer pair and one session per worker are created
 * (on the main thread: a context creates models and sessions from one thread at a time, stx.h),
 * and K = number of clips + 1 workers (the first clip twice) run them all at the same time,
 * ROUNDS times each. Every result must equal the single-threaded one bit for bit. Built with
 * ThreadSanitizer (ctest threads_tsan, build-tsan/) the run must also be free of data races.
 * The context has one thread, so OpenMP and oneDNN run single-threaded inside each worker
 * (libgomp is not instrumented by TSan: parallel regions with several threads would give false
 * reports). */
#include "results.h"
#include "stx.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CLIPS 8
#define ROUNDS 2

typedef struct {
    stx_explainer *cam, *sal;
    stx_session *fwd;
    const stx_tensor *x;
    results r;
    stx_status st;
    char msg[512];
} worker;

/* Runs the worker's forward session and both explainers on its clip; keeps the last results. */
static stx_status run_worker(worker *w) {
    stx_tensor *y = NULL, *map = NULL;
    results_free(&w->r);
    stx_status st = stx_session_run(w->fwd, w->x, &y);
    if (st) {
        snprintf(w->msg, sizeof w->msg, "forward: %s", stx_session_last_error(w->fwd));
        return st;
    }
    w->r.out = copy_tensor(y, &w->r.n_out);
    st = stx_explainer_run(w->cam, w->x, NULL, NULL, &map);
    if (st) {
        snprintf(w->msg, sizeof w->msg, "gradcam: %s", stx_explainer_last_error(w->cam));
        return st;
    }
    w->r.cam = copy_tensor(map, &w->r.n_cam);
    st = stx_explainer_run(w->sal, w->x, NULL, NULL, &map);
    if (st) {
        snprintf(w->msg, sizeof w->msg, "saliency: %s", stx_explainer_last_error(w->sal));
        return st;
    }
    w->r.sal = copy_tensor(map, &w->r.n_sal);
    return STX_OK;
}

static void *thread_main(void *arg) {
    worker *w = arg;
    for (int r = 0; r < ROUNDS && !w->st; r++) w->st = run_worker(w);
    return NULL;
}

static stx_status make_worker(stx_model *m, const char *layer, const stx_tensor *x, worker *w) {
    memset(w, 0, sizeof *w);
    w->x = x;
    stx_explain_options o = stx_explain_options_default();
    o.method = "gradcam";
    o.layer = layer;
    o.num_threads = 1;
    stx_status st = stx_explainer_create(m, &o, stx_tensor_shape(x), stx_tensor_rank(x), &w->cam);
    o.method = "saliency";
    o.layer = NULL;
    if (!st) st = stx_explainer_create(m, &o, stx_tensor_shape(x), stx_tensor_rank(x), &w->sal);
    stx_session_options so = stx_session_options_default();
    so.num_threads = 1;
    if (!st) st = stx_session_create(m, &so, stx_tensor_shape(x), stx_tensor_rank(x), &w->fwd);
    return st;
}

static void free_worker(worker *w) {
    stx_explainer_free(w->cam);
    stx_explainer_free(w->sal);
    stx_session_free(w->fwd);
    results_free(&w->r);
}

static int same(const float *a, size_t na, const float *b, size_t nb) {
    return na == nb && na > 0 && memcmp(a, b, na * sizeof(float)) == 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: stx_threads_tests MODEL.onnx LAYER CLIP.npy [CLIP.npy ...]\n");
        return 2;
    }
    const int n_clips = argc - 3 < MAX_CLIPS ? argc - 3 : MAX_CLIPS;
    stx_context_options co = stx_context_options_default();
    co.num_threads = 1;
    stx_context *ctx = NULL;
    stx_model *m = NULL;
    if (stx_context_create(&co, &ctx) || stx_model_load(ctx, argv[1], NULL, &m)) {
        fprintf(stderr, "threads: %s\n", ctx ? stx_context_last_error(ctx) : "no context");
        return 1;
    }
    stx_preprocess p = stx_preprocess_default();
    stx_preprocess_from_model(m, &p);
    stx_tensor *x[MAX_CLIPS] = {0};
    for (int i = 0; i < n_clips; i++) {
        stx_tensor *frames = NULL;
        if (stx_tensor_load_npy(ctx, argv[3 + i], &frames) ||
            stx_frames_to_input(ctx, frames, &p, &x[i])) {
            fprintf(stderr, "threads: %s\n", stx_context_last_error(ctx));
            return 1;
        }
        stx_tensor_free(frames);
    }
    /* the reference: each clip alone on the main thread */
    results ref[MAX_CLIPS];
    for (int i = 0; i < n_clips; i++) {
        worker w;
        if (make_worker(m, argv[2], x[i], &w) || run_worker(&w)) {
            fprintf(stderr, "threads: single-threaded run of %s fails: %s %s\n", argv[3 + i], w.msg,
                    stx_context_last_error(ctx));
            return 1;
        }
        ref[i] = w.r;
        memset(&w.r, 0, sizeof w.r);
        free_worker(&w);
    }
    /* K workers at once: every clip, and the first one a second time */
    const int K = n_clips + 1;
    worker w[MAX_CLIPS + 1];
    pthread_t th[MAX_CLIPS + 1];
    for (int k = 0; k < K; k++) {
        const stx_tensor *xk = x[k < n_clips ? k : 0];
        if (make_worker(m, argv[2], xk, &w[k])) {
            fprintf(stderr, "threads: worker %d: %s\n", k, stx_context_last_error(ctx));
            return 1;
        }
    }
    for (int k = 0; k < K; k++)
        if (pthread_create(&th[k], NULL, thread_main, &w[k]) != 0) {
            fprintf(stderr, "threads: cannot start thread %d\n", k);
            return 1;
        }
    for (int k = 0; k < K; k++) pthread_join(th[k], NULL);
    int bad = 0;
    for (int k = 0; k < K; k++) {
        int c = k < n_clips ? k : 0;
        if (w[k].st) {
            fprintf(stderr, "threads: worker %d (%s) fails: %s: %s\n", k, argv[3 + c],
                    stx_status_name(w[k].st), w[k].msg);
            bad = 1;
            continue;
        }
        const char *what = !same(w[k].r.out, w[k].r.n_out, ref[c].out, ref[c].n_out)   ? "output"
                           : !same(w[k].r.cam, w[k].r.n_cam, ref[c].cam, ref[c].n_cam) ? "gradcam"
                           : !same(w[k].r.sal, w[k].r.n_sal, ref[c].sal, ref[c].n_sal) ? "saliency"
                                                                                       : NULL;
        if (what) {
            fprintf(stderr, "threads: worker %d (%s): %s differs from the single-threaded run\n", k,
                    argv[3 + c], what);
            bad = 1;
        }
    }
    /* the clips differ, so their maps must too (else the comparison above proves little) */
    if (n_clips > 1 && same(ref[0].cam, ref[0].n_cam, ref[1].cam, ref[1].n_cam)) {
        fprintf(stderr, "threads: two different clips give the same map\n");
        bad = 1;
    }
    printf("threads: %d workers x %d rounds (forward, gradcam, saliency) on %d clips: %s\n", K,
           ROUNDS, n_clips, bad ? "FAILED" : "identical to single-threaded runs");
    for (int k = 0; k < K; k++) free_worker(&w[k]);
    for (int i = 0; i < n_clips; i++) {
        results_free(&ref[i]);
        stx_tensor_free(x[i]);
    }
    stx_model_free(m);
    stx_context_free(ctx);
    return bad;
}
