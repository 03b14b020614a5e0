/* context.c: the library context (allocator, threads, last error). */
#include "core.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* The thread count is OpenMP's per-thread ICV, so sessions run from different host threads do
 * not interfere with each other (oneDNN, built on the same OpenMP runtime, follows it too). */
int stx__threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void stx__set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n > 0 ? n : 1);
#else
    (void)n;
#endif
}

static int default_threads(void) {
    const char *env = getenv("STX_NUM_THREADS");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == '\0' && v > 0 && v <= 4096) return (int)v;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

stx_context_options stx_context_options_default(void) {
    stx_context_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    return o;
}

stx_status stx_context_create(const stx_context_options *opt, stx_context **out) {
    if (!out) return STX_E_INVALID;
    *out = NULL;
    stx_context_options o = opt ? *opt : stx_context_options_default();
    if (o.allocator.alloc && !o.allocator.free) return STX_E_INVALID;
    stx_context *ctx;
    if (o.allocator.alloc)
        ctx = o.allocator.alloc(o.allocator.user, sizeof *ctx);
    else
        ctx = stx__malloc(NULL, sizeof *ctx);
    if (!ctx) return STX_E_NOMEM;
    memset(ctx, 0, sizeof *ctx);
    ctx->alloc = o.allocator;
    ctx->num_threads = o.num_threads > 0 ? o.num_threads : default_threads();
    *out = ctx;
    return STX_OK;
}

void stx_context_free(stx_context *ctx) {
    if (!ctx) return;
    stx_allocator a = ctx->alloc;
    if (a.alloc)
        a.free(a.user, ctx);
    else
        stx__free(NULL, ctx);
}

const char *stx_context_last_error(const stx_context *ctx) {
    return ctx ? ctx->err.msg : "";
}
int stx_context_num_threads(const stx_context *ctx) {
    return ctx ? ctx->num_threads : 1;
}
