/* main.c: `stx` command dispatcher and shared CLI helpers. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("stx: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

bool cli_parse_int(const char *s, long lo, long hi, long *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_parse_shape(const char *s, int64_t *dims, int *rank) {
    int r = 0;
    const char *p = s;
    while (*p) {
        if (r >= STX_MAX_RANK) return false;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v <= 0) return false;
        dims[r++] = v;
        p = end;
        if (*p == ',' || *p == 'x')
            p++;
        else if (*p)
            return false;
    }
    *rank = r;
    return r > 0;
}

int cli_context(int threads, stx_context **ctx) {
    stx_context_options o = stx_context_options_default();
    o.num_threads = threads;
    if (stx_context_create(&o, ctx) != STX_OK) return cli_fail("cannot create a context");
    return 0;
}

int cli_load_model(stx_context *ctx, const char *path, stx_model **m) {
    if (stx_model_load(ctx, path, NULL, m) != STX_OK)
        return cli_fail("%s", stx_context_last_error(ctx));
    return 0;
}

int cli_load_input(stx_context *ctx, const char *path, stx_tensor **x) {
    if (stx_tensor_load_npy(ctx, path, x) != STX_OK)
        return cli_fail("%s", stx_context_last_error(ctx));
    stx_dtype dt = stx_tensor_dtype(*x);
    if (dt != STX_DTYPE_FLOAT && dt != STX_DTYPE_DOUBLE) {
        int rc = cli_fail("%s: input must be float32 (or float64 for a float64 model), got %s",
                          path, stx_dtype_name(dt));
        stx_tensor_free(*x);
        *x = NULL;
        return rc;
    }
    return 0;
}

double cli_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void usage(FILE *f) {
    fprintf(f,
            "stx %s: spatio-temporal explanations for video models\n\n"
            "usage: stx <command> [options]\n\n"
            "commands:\n"
            "  info MODEL [--input-shape N,C,T,H,W]   inputs, outputs, parameters, MACs, modules\n"
            "  run MODEL INPUT.npy [-o OUT.npy] [--topk K] [--threads N] [--repeat R]\n"
            "                                         forward pass, top-K classes\n"
            "  version                                print the version\n\n"
            "Run 'stx <command> --help' for a command's options.\n",
            stx_version());
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "info") == 0) return cmd_info(argc - 1, argv + 1);
    if (strcmp(cmd, "run") == 0) return cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "grad") == 0) return cmd_grad(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("stx %s\n", stx_version());
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    cli_fail("unknown command '%s' (try 'stx --help')", cmd);
    return 2;
}
