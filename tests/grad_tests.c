/* grad_tests.c: every op's vector-Jacobian product against central finite differences, in double
 * precision, through the whole engine (plan, forward, seed, backward).
 *
 * Cases are single-op float64 ONNX models written by tools/make_grad_cases.py (inputs chosen away
 * from non-differentiable points). For each case and each float output o: the score is
 * L = sum(r * y_o) for a fixed random r; the engine's dL/dx is compared with
 * (L(x + h e_i) - L(x - h e_i)) / 2h on up to 64 elements i of every input.
 * Coverage: every operator of the forward set except the non-differentiable ones must have a
 * backward and at least one case (checked when no -p filter is given).
 *
 * usage: stx_grad_tests -d DIR [-p SUBSTRING] [-v] */
#include "core/core.h"
#include "forward_ops.h"
#include "ops/ops.h"
#include "stx.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Outputs that are integers, booleans or constants: no gradient flows through them. */
static const char *const nondifferentiable[] = {"Constant", "ConstantOfShape", "Shape", "Equal",
                                                NULL};

static bool in_list(const char *const *l, const char *s) {
    for (; *l; l++)
        if (strcmp(*l, s) == 0) return true;
    return false;
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* xorshift64*, uniform in [0, 1) */
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (double)((g_rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

typedef struct {
    int pass, fail;
    int verbose;
    char covered[64][64];
    int n_covered;
} runner;

static double score(const stx_tensor *y, const float *r) {
    double s = 0;
    int64_t n = stx_tensor_numel(y);
    const double *p = stx_tensor_data_const(y);
    for (int64_t i = 0; i < n; i++) s += (double)r[i] * p[i];
    return s;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Runs one case; returns true on pass. */
static bool run_case(runner *R, const char *dir, const char *name) {
    char path[4096], msg[1024] = "";
    snprintf(path, sizeof path, "%s/%s.onnx", dir, name);
    stx_context *ctx;
    stx_context_create(NULL, &ctx);
    stx_model *m = NULL;
    stx_tensor *ins[8] = {0};
    bool ok = true;
    double worst = 0;
    if (stx_model_load(ctx, path, NULL, &m) != STX_OK) {
        snprintf(msg, sizeof msg, "load: %s", stx_context_last_error(ctx));
        ok = false;
        goto done;
    }
    int ni = stx_model_num_inputs(m);
    if (ni > 8) ni = 8;
    const int64_t *shapes[8];
    int ranks[8];
    const char *wrt[9];
    for (int k = 0; k < ni; k++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/%s.in%d.npy", dir, name, k);
        if (stx_tensor_load_npy(ctx, p, &ins[k]) != STX_OK) {
            snprintf(msg, sizeof msg, "%s", stx_context_last_error(ctx));
            ok = false;
            goto done;
        }
        shapes[k] = stx_tensor_shape(ins[k]);
        ranks[k] = stx_tensor_rank(ins[k]);
        wrt[k] = stx_model_input_name(m, k);
    }
    wrt[ni] = NULL;
    for (int o = 0; o < stx_model_num_outputs(m) && ok; o++) {
        stx_dtype odt;
        if (stx_model_output_info(m, o, &odt, NULL, NULL) == STX_OK && odt != STX_DTYPE_DOUBLE &&
            odt != STX_DTYPE_UNDEFINED)
            continue; /* integer and boolean outputs (indices, masks) are not seeded */
        stx_session_options so = stx_session_options_default();
        so.grad_wrt = wrt;
        so.grad_output = o;
        stx_session *s = NULL;
        if (stx_session_create_multi(m, &so, ni, shapes, ranks, &s) != STX_OK) {
            snprintf(msg, sizeof msg, "output %d: plan: %s", o, stx_context_last_error(ctx));
            ok = false;
            break;
        }
        stx_tensor *y = NULL, *rt = NULL;
        if (stx_session_run_multi(s, ni, (const stx_tensor *const *)ins) != STX_OK) {
            snprintf(msg, sizeof msg, "output %d: run: %s", o, stx_session_last_error(s));
            ok = false;
            goto next;
        }
        y = stx_session_output(s, o);
        if (stx_tensor_dtype(y) != STX_DTYPE_DOUBLE) goto next; /* integer output */
        stx_tensor_create(ctx, STX_DTYPE_FLOAT, stx_tensor_shape(y), stx_tensor_rank(y), &rt);
        float *r = stx_tensor_data(rt);
        for (int64_t i = 0; i < stx_tensor_numel(y); i++) r[i] = (float)(2.0 * urand() - 1.0);
        stx_seed seed = stx_seed_default();
        seed.weights = rt;
        if (stx_session_backward(s, &seed) != STX_OK) {
            snprintf(msg, sizeof msg, "output %d: backward: %s", o, stx_session_last_error(s));
            ok = false;
            goto next;
        }
        /* gradients are valid until the next run: copy them all first */
        double *gcopies[8] = {0};
        for (int k = 0; k < ni; k++) {
            int64_t n = stx_tensor_numel(ins[k]);
            gcopies[k] = malloc(sizeof(double) * (size_t)(n ? n : 1));
            memcpy(gcopies[k], stx_tensor_data(stx_session_grad(s, wrt[k])),
                   sizeof(double) * (size_t)n);
        }
        for (int k = 0; k < ni && ok; k++) {
            const double *gcopy = gcopies[k];
            int64_t n = stx_tensor_numel(ins[k]);
            double *x = stx_tensor_data(ins[k]);
            double gmax = 1e-12;
            for (int64_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(gcopy[i]));
            int64_t probes = n < 64 ? n : 64;
            for (int64_t p = 0; p < probes && ok; p++) {
                int64_t i = n <= 64 ? p : (int64_t)(urand() * (double)n);
                double xi = x[i], h = 1e-6 * fmax(1.0, fabs(xi));
                x[i] = xi + h;
                stx_session_run_multi(s, ni, (const stx_tensor *const *)ins);
                double lp = score(stx_session_output(s, o), r);
                x[i] = xi - h;
                stx_session_run_multi(s, ni, (const stx_tensor *const *)ins);
                double lm = score(stx_session_output(s, o), r);
                x[i] = xi;
                double fd = (lp - lm) / (2 * h);
                double err = fabs(fd - gcopy[i]) / fmax(gmax, fabs(fd));
                if (err > worst) worst = err;
                if (err > 1e-5) {
                    snprintf(msg, sizeof msg,
                             "output %d, input %d ('%s'), element %lld: backward %.10g, finite "
                             "difference %.10g (rel err %.2e)",
                             o, k, wrt[k], (long long)i, gcopy[i], fd, err);
                    ok = false;
                }
            }
        }
        for (int k = 0; k < ni; k++) free(gcopies[k]);
    next:
        stx_tensor_free(rt);
        stx_session_free(s);
    }
done:
    for (int k = 0; k < 8; k++) stx_tensor_free(ins[k]);
    stx_model_free(m);
    stx_context_free(ctx);
    if (ok) {
        R->pass++;
        if (R->verbose) printf("PASS  %s (max rel err %.2e)\n", name, worst);
    } else {
        R->fail++;
        printf("FAIL  %s: %s\n", name, msg);
    }
    return ok;
}

/* The op type a case tests: read from the file name "grad_<family>_<...>" is not enough, so
 * load the model's first node. */
static void note_op(runner *R, const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.onnx", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return;
    /* the node's op_type is stored as a protobuf string; scan for known op names instead of
     * parsing: good enough for coverage bookkeeping of single-op models */
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char marker[80];
    for (const char *const *op = forward_ops; *op; op++) {
        snprintf(marker, sizeof marker, "%s_under_test", *op);
        for (size_t i = 0; i + strlen(marker) <= n; i++)
            if (memcmp(buf + i, marker, strlen(marker)) == 0) {
                bool seen = false;
                for (int k = 0; k < R->n_covered; k++) seen |= strcmp(R->covered[k], *op) == 0;
                if (!seen && R->n_covered < 64) snprintf(R->covered[R->n_covered++], 64, "%s", *op);
                break;
            }
    }
}

int main(int argc, char **argv) {
    runner R = {0};
    const char *dir = NULL, *pattern = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-d") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (strcmp(argv[i], "-p") == 0 && i + 1 < argc)
            pattern = argv[++i];
        else if (strcmp(argv[i], "-v") == 0)
            R.verbose = 1;
        else {
            fprintf(stderr, "usage: stx_grad_tests -d DIR [-p SUBSTRING] [-v]\n");
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "stx_grad_tests: -d DIR (from tools/make_grad_cases.py) is required\n");
        return 2;
    }
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "stx_grad_tests: cannot open %s\n", dir);
        return 1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t L = strlen(de->d_name);
        if (L < 6 || strcmp(de->d_name + L - 5, ".onnx") != 0) continue;
        if (pattern && !strstr(de->d_name, pattern)) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            names = realloc(names, cap * sizeof *names);
        }
        names[n] = strdup(de->d_name);
        names[n][L - 5] = '\0';
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        run_case(&R, dir, names[i]);
        note_op(&R, dir, names[i]);
        free(names[i]);
    }
    free(names);
    if (!pattern) {
        /* every differentiable op of the forward set has a backward and a case */
        for (const char *const *op = forward_ops; *op; op++) {
            if (in_list(nondifferentiable, *op)) continue;
            const stx_op_def *def = stx__op_find("", *op);
            bool covered = false;
            for (int k = 0; k < R.n_covered; k++) covered |= strcmp(R.covered[k], *op) == 0;
            if (!def || !def->backward) {
                printf("FAIL  coverage: %s has no backward\n", *op);
                R.fail++;
            } else if (!covered) {
                printf("FAIL  coverage: %s has no gradient case\n", *op);
                R.fail++;
            } else {
                R.pass++;
            }
        }
    }
    printf("%d passed, %d failed\n", R.pass, R.fail);
    return R.fail ? 1 : 0;
}
