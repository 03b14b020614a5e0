/* engine_tests.c: reverse-mode engine properties that need the internal plan.
 *
 *   stx_engine_tests memory MODEL.onnx INPUT.npy MODULE
 *       plans a gradient to MODULE and checks that no backward step reads an activation produced
 *       before MODULE (the forward keeps nothing below it), and that every forward value the
 *       backward reads lies in the swept region; prints the arena sizes of the forward-only and
 *       the gradient plans.
 *   stx_engine_tests guided MODEL.onnx INPUT.npy OUT.npy
 *       guided backpropagation through a user backward rule on Relu (d x = [x > 0] max(d y, 0)),
 *       the gradient of the top class w.r.t. the input written to OUT.npy (compared with PyTorch
 *       by tests/cli/test_rules.py).
 * Prints "N passed, M failed". */
#include "exec/session.h"
#include "stx.h"

#include <stdio.h>
#include <string.h>

static int g_pass, g_fail;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond)                                                                                  \
            g_pass++;                                                                              \
        else {                                                                                     \
            g_fail++;                                                                              \
            printf("FAIL  " __VA_ARGS__);                                                          \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

static int producer_step(const stx_session *s, int v) {
    for (int i = 0; i < s->n_fwd; i++)
        for (int k = 0; k < s->steps[i].n_vout; k++)
            if (s->steps[i].vout[k] == v) return i;
    return -1;
}

static int test_memory(const char *model, const char *input, const char *module) {
    stx_context *ctx;
    stx_context_create(NULL, &ctx);
    stx_model *m = NULL;
    stx_tensor *x = NULL;
    if (stx_model_load(ctx, model, NULL, &m) || stx_tensor_load_npy(ctx, input, &x)) {
        printf("FAIL  %s\n", stx_context_last_error(ctx));
        return 1;
    }
    stx_session *fwd = NULL, *s = NULL;
    stx_session_create(m, NULL, stx_tensor_shape(x), stx_tensor_rank(x), &fwd);
    const char *wrt[2] = {module, NULL};
    stx_session_options o = stx_session_options_default();
    o.grad_wrt = wrt;
    CHECK(stx_session_create(m, &o, stx_tensor_shape(x), stx_tensor_rank(x), &s) == STX_OK,
          "plan gradient to %s: %s", module, stx_context_last_error(ctx));
    if (!s || !fwd) return 1;
    int mv = stx__session_lookup(s, module);
    int ps = producer_step(s, mv);
    CHECK(ps >= 0, "module %s has no producing step", module);
    int reads_below = 0, bsteps = 0;
    for (int i = s->n_fwd + 1; i < s->n_steps; i++) {
        const stx_step *b = &s->steps[i];
        bsteps++;
        CHECK(b->fwd > ps, "backward step for forward step %d runs below %s (step %d)", b->fwd,
              module, ps);
        for (int k = 0; k < b->n_vin; k++) {
            int v = b->vin[k];
            if (v < 0 || v >= s->nv) continue; /* gradients */
            int p = producer_step(s, v);
            if (p >= 0 && p < ps) reads_below++;
        }
    }
    CHECK(bsteps > 0, "no backward steps planned to %s", module);
    CHECK(reads_below == 0, "backward reads %d activations produced below %s", reads_below, module);
    printf("memory: %s: %d backward steps; arena %.1f MiB (forward-only plan %.1f MiB)\n", module,
           bsteps, (double)s->arena_size / 1048576.0, (double)fwd->arena_size / 1048576.0);
    /* the gradient plan adds the gradients of the swept region only */
    CHECK(s->arena_size <= fwd->arena_size + 4 * (size_t)s->vals[mv].nbytes + (1u << 20),
          "gradient plan arena %zu is much larger than the forward plan's %zu", s->arena_size,
          fwd->arena_size);
    stx_session_free(s);
    stx_session_free(fwd);
    stx_tensor_free(x);
    stx_model_free(m);
    stx_context_free(ctx);
    return 0;
}

/* Guided backpropagation's ReLU (Springenberg et al. 2015): only positive gradients pass, and
 * only where the forward input was positive. */
static stx_status guided_relu(void *user, stx_rule_ctx *c) {
    (void)user;
    stx_tensor *dx = stx_rule_grad_input(c, 0), *dy = stx_rule_grad_output(c, 0);
    stx_tensor *y = stx_rule_output(c, 0);
    if (!dx || !dy) return STX_OK;
    float *gx = stx_tensor_data(dx);
    const float *gy = stx_tensor_data_const(dy), *yv = stx_tensor_data_const(y);
    int64_t n = stx_tensor_numel(dx);
    for (int64_t i = 0; i < n; i++) gx[i] += (yv[i] > 0.0f && gy[i] > 0.0f) ? gy[i] : 0.0f;
    return STX_OK;
}

static int test_guided(const char *model, const char *input, const char *out) {
    stx_context *ctx;
    stx_context_create(NULL, &ctx);
    stx_model *m = NULL;
    stx_tensor *x = NULL;
    stx_session *s = NULL;
    if (stx_model_load(ctx, model, NULL, &m) || stx_tensor_load_npy(ctx, input, &x)) {
        printf("FAIL  %s\n", stx_context_last_error(ctx));
        return 1;
    }
    const char *wrt[2] = {"input", NULL};
    stx_backward_rule rule = {"Relu", guided_relu, NULL};
    stx_session_options o = stx_session_options_default();
    o.grad_wrt = wrt;
    o.rules = &rule;
    o.n_rules = 1;
    int rc = 0;
    if (stx_session_create(m, &o, stx_tensor_shape(x), stx_tensor_rank(x), &s) ||
        stx_session_run(s, x, NULL) || stx_session_backward(s, NULL) ||
        stx_tensor_save_npy(ctx, stx_session_grad(s, "input"), out)) {
        printf("FAIL  guided: %s %s\n", stx_context_last_error(ctx),
               s ? stx_session_last_error(s) : "");
        rc = 1;
    } else {
        printf("guided: class %lld, written to %s\n", (long long)stx_session_seeded_targets(s)[0],
               out);
    }
    stx_session_free(s);
    stx_tensor_free(x);
    stx_model_free(m);
    stx_context_free(ctx);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "memory") == 0)
        test_memory(argv[2], argv[3], argv[4]);
    else if (argc == 5 && strcmp(argv[1], "guided") == 0)
        return test_guided(argv[2], argv[3], argv[4]);
    else {
        fprintf(stderr, "usage: stx_engine_tests memory MODEL INPUT MODULE | guided MODEL INPUT "
                        "OUT\n");
        return 2;
    }
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
