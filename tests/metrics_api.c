/* metrics_api.c: the metrics' library API without a model (stx_evaluate with m == NULL, the
 * evaluator run twice), on maps whose values are worked out by hand, with a counting allocator
 * (everything, the result included, comes from and returns to the context's allocator).
 * Run by tests/models/test_metrics.py; prints "ok"/"FAIL" lines, exits 1 on a failure. */
#include "stx.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
static long live;

static void check(int ok, const char *what) {
    printf("%s  %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) failures++;
}

static void *count_alloc(void *user, size_t n) {
    (void)user;
    void *p = aligned_alloc(64, (n + 63) / 64 * 64 + 64);
    if (!p) return NULL;
    live++;
    return p;
}

static void count_free(void *user, void *p) {
    (void)user;
    if (p) live--;
    free(p);
}

static const stx_metric_result *find(const stx_metrics_result *r, const char *name) {
    for (int i = 0; i < r->n_metrics; i++)
        if (strcmp(r->metrics[i].name, name) == 0) return &r->metrics[i];
    return NULL;
}

int main(void) {
    stx_context_options co = stx_context_options_default();
    co.allocator.alloc = count_alloc;
    co.allocator.free = count_free;
    stx_context *ctx;
    if (stx_context_create(&co, &ctx)) return 1;
    long base = live;
    enum { N = 3, T = 3, H = 4, W = 5, P = T * H * W };
    const int64_t shape[4] = {N, T, H, W};
    stx_tensor *map, *mask, *ev;
    stx_tensor_create(ctx, STX_DTYPE_FLOAT, shape, 4, &map);
    stx_tensor_create(ctx, STX_DTYPE_UINT8, shape, 4, &mask);
    const int64_t es[2] = {N, T};
    stx_tensor_create(ctx, STX_DTYPE_UINT8, es, 2, &ev);
    float *m = stx_tensor_data(map);
    uint8_t *g = stx_tensor_data(mask), *e = stx_tensor_data(ev);
    memset(m, 0, sizeof(float) * N * P);
    memset(g, 0, N * P);
    memset(e, 0, N * T);
    /* sample 0: truth = frame 1, rows 1..2, cols 1..3 (6 voxels); map 4 at (1,2,3) inside,
     * 1 at (0,0,0) and -1 at (2,3,4) outside; decisive frame 1 */
    for (int y = 1; y <= 2; y++)
        for (int x = 1; x <= 3; x++) g[0 * P + 1 * H * W + y * W + x] = 1;
    m[0 * P + 1 * H * W + 2 * W + 3] = 4;
    m[0 * P + 0] = 1;
    m[0 * P + 2 * H * W + 3 * W + 4] = -1;
    e[0 * T + 1] = 1;
    /* sample 1: the same truth, the maximum 2 outside at (0,0,0), 1 inside at (1,1,1) */
    memcpy(g + P, g, P);
    m[P + 0] = 2;
    m[P + 1 * H * W + 1 * W + 1] = 1;
    e[1 * T + 0] = 1;
    /* sample 2: no truth, no decisive frame, map 3 at one voxel */
    m[2 * P + 7] = 3;

    stx_metrics_options o = stx_metrics_options_default();
    o.metrics = "pointing,mass,energy,rank,temporal,sparsity";
    stx_metrics_result *r = NULL;
    stx_status st = stx_evaluate(ctx, NULL, &o, NULL, map, mask, ev, NULL, NULL, &r);
    check(st == STX_OK && r && r->N == N && r->n_metrics == 6 && !r->targets,
          "stx_evaluate without a model: 6 metrics of 3 samples, no targets");
    if (st == STX_OK) {
        const stx_metric_result *pg = find(r, "pointing"), *ms = find(r, "mass"),
                                *en = find(r, "energy"), *rk = find(r, "rank"),
                                *tm = find(r, "temporal"), *sp = find(r, "sparsity");
        check(pg->per_sample[0] == 1 && pg->per_sample[1] == 0 && isnan(pg->per_sample[2]) &&
                  pg->count == 2 && pg->value == 0.5,
              "pointing: hit, miss, undefined without truth; mean 0.5 over 2");
        /* mass: 4 / (4 + 1 - 1) = 1; sample 1: 1 / 3; energy: 4 / 5, 1 / 3 */
        check(fabs(ms->per_sample[0] - 1.0) < 1e-12 && fabs(ms->per_sample[1] - 1.0 / 3) < 1e-12,
              "relevance mass 4/4 and 1/3 (signed)");
        check(fabs(en->per_sample[0] - 0.8) < 1e-12 && fabs(en->per_sample[1] - 1.0 / 3) < 1e-12,
              "energy 4/5 and 1/3 (positive part)");
        /* rank: the 6 top voxels of sample 0: 4 (in), 1 (out), then zeros by position: frame 0
         * has none inside -> 1/6; sample 1: 2 (out), 1 (in), zeros of frame 0 -> 1/6 */
        check(fabs(rk->per_sample[0] - 1.0 / 6) < 1e-12 &&
                  fabs(rk->per_sample[1] - 1.0 / 6) < 1e-12,
              "relevance rank 1/6 and 1/6 (ties by position)");
        /* temporal: positive mass 4 on frame 1 of 5; sample 1: 2 on frame 0 of 3 */
        check(fabs(tm->per_sample[0] - 0.8) < 1e-12 && fabs(tm->per_sample[1] - 2.0 / 3) < 1e-12 &&
                  isnan(tm->per_sample[2]),
              "temporal mass 4/5 and 2/3, undefined without decisive frames");
        /* Gini of one non-zero voxel among P: a = (1 + 1e-7, 1e-7 x (P - 1)) */
        double eps = 1e-7, num = 0, den = 0;
        for (int i = 1; i <= P; i++) {
            double a = i == P ? 1 + eps : eps;
            num += (2.0 * i - P - 1) * a;
            den += a;
        }
        check(fabs(sp->per_sample[2] - num / (P * den)) < 1e-12, "sparsity of a single spike");
    }
    stx_metrics_result_free(r);

    /* the evaluator, planned once and run twice, gives the same numbers */
    stx_evaluator *evr = NULL;
    o.metrics = "mass,topk,iou";
    o.top_k = 2;
    st = stx_evaluator_create(ctx, NULL, &o, shape, 4, &evr);
    stx_metrics_result *a = NULL, *b = NULL;
    if (!st) st = stx_evaluator_run(evr, NULL, map, mask, NULL, NULL, NULL, &a);
    if (!st) st = stx_evaluator_run(evr, NULL, map, mask, NULL, NULL, NULL, &b);
    int same = !st;
    for (int i = 0; same && i < a->n_metrics; i++)
        same = memcmp(a->metrics[i].per_sample, b->metrics[i].per_sample, sizeof(double) * N) == 0;
    check(same, "an evaluator run twice gives the same bits");
    if (!st)
        check(find(a, "topk")->per_sample[0] == 0.5 && find(a, "topk")->per_sample[1] == 0.5,
              "top-2 intersection 1/2 and 1/2");
    /* iou at 0.5 of sample 0: normalised (m + 1) / 5 >= 0.5 only at the 4: 1 / 6 */
    if (!st)
        check(fabs(find(a, "iou")->per_sample[0] - 1.0 / 6) < 1e-12, "iou 1/6 at threshold 0.5");
    stx_metrics_result_free(a);
    stx_metrics_result_free(b);

    /* errors: deletion without a model; mask of the wrong shape; NaN in the map */
    stx_evaluator *bad = NULL;
    o.metrics = "pointing,deletion";
    st = stx_evaluator_create(ctx, NULL, &o, shape, 4, &bad);
    check(st == STX_E_INVALID && !bad && strstr(stx_context_last_error(ctx), "'deletion'"),
          stx_context_last_error(ctx));
    const int64_t ms3[3] = {T, H, W};
    stx_tensor *m3;
    stx_tensor_create(ctx, STX_DTYPE_UINT8, ms3, 3, &m3);
    st = stx_evaluator_run(evr, NULL, map, m3, NULL, NULL, NULL, &a);
    check(st == STX_E_SHAPE && !a, stx_evaluator_last_error(evr));
    m[5] = NAN;
    st = stx_evaluator_run(evr, NULL, map, mask, NULL, NULL, NULL, &a);
    check(st == STX_E_NUMERIC && !a, stx_evaluator_last_error(evr));
    stx_tensor_free(m3);
    stx_evaluator_free(evr);
    stx_tensor_free(map);
    stx_tensor_free(mask);
    stx_tensor_free(ev);
    check(live == base, "every allocation returned to the context's allocator");
    stx_context_free(ctx);
    return failures ? 1 : 0;
}
