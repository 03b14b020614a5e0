/* status.c: status names, messages, allocation and small helpers. */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *stx_status_name(stx_status s) {
    switch (s) {
#define STX__NAME(name, val, desc)                                                                 \
    case STX_##name:                                                                               \
        return "STX_" #name;
        STX_STATUS_MAP(STX__NAME)
#undef STX__NAME
    }
    return "STX_E_UNKNOWN";
}

const char *stx_status_string(stx_status s) {
    switch (s) {
#define STX__DESC(name, val, desc)                                                                 \
    case STX_##name:                                                                               \
        return desc;
        STX_STATUS_MAP(STX__DESC)
#undef STX__DESC
    }
    return "unknown status";
}

const char *stx_version(void) {
#define STX__STR2(x) #x
#define STX__STR(x) STX__STR2(x)
    return STX__STR(STX_VERSION_MAJOR) "." STX__STR(STX_VERSION_MINOR) "." STX__STR(
        STX_VERSION_PATCH);
}

stx_status stx__verrf(stx_err *e, stx_status code, const char *fmt, va_list ap) {
    if (e) vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    return code;
}

stx_status stx__errf(stx_err *e, stx_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    stx__verrf(e, code, fmt, ap);
    va_end(ap);
    return code;
}

void stx__assert_fail(const char *expr, const char *file, int line) {
    /* An internal invariant broke: this is a bug in stx, not bad input. */
    fprintf(stderr, "stx: internal error: %s:%d: assertion '%s' failed\n", file, line, expr);
    abort();
}

/* ---- allocation ---------------------------------------------------------------------------- */

static void *sys_alloc(void *user, size_t size) {
    (void)user;
    void *p = NULL;
    if (size == 0) size = 1;
    size = (size + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, size) != 0) return NULL;
    return p;
}

static void sys_free(void *user, void *p) {
    (void)user;
    free(p);
}

void *stx__malloc(stx_context *ctx, size_t size) {
    if (size > ((size_t)1 << 47)) return NULL; /* no sane tensor is this large */
    if (ctx && ctx->alloc.alloc) return ctx->alloc.alloc(ctx->alloc.user, size);
    return sys_alloc(NULL, size);
}

void *stx__calloc(stx_context *ctx, size_t n, size_t size) {
    size_t total;
    if (!stx__mul_size(n, size, &total)) return NULL;
    void *p = stx__malloc(ctx, total);
    if (p) memset(p, 0, total);
    return p;
}

void stx__free(stx_context *ctx, void *p) {
    if (!p) return;
    if (ctx && ctx->alloc.alloc) {
        ctx->alloc.free(ctx->alloc.user, p);
        return;
    }
    sys_free(NULL, p);
}

char *stx__strdup(stx_context *ctx, const char *s) {
    if (!s) s = "";
    size_t n = strlen(s) + 1;
    char *d = stx__malloc(ctx, n);
    if (d) memcpy(d, s, n);
    return d;
}

bool stx__mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}

const char *stx_dtype_name(stx_dtype t) {
    switch (t) {
    case STX_DTYPE_FLOAT:
        return "float32";
    case STX_DTYPE_UINT8:
        return "uint8";
    case STX_DTYPE_INT8:
        return "int8";
    case STX_DTYPE_INT32:
        return "int32";
    case STX_DTYPE_INT64:
        return "int64";
    case STX_DTYPE_BOOL:
        return "bool";
    case STX_DTYPE_DOUBLE:
        return "float64";
    default:
        return "undefined";
    }
}

size_t stx_dtype_size(stx_dtype t) {
    switch (t) {
    case STX_DTYPE_FLOAT:
        return 4;
    case STX_DTYPE_UINT8:
        return 1;
    case STX_DTYPE_INT8:
        return 1;
    case STX_DTYPE_INT32:
        return 4;
    case STX_DTYPE_INT64:
        return 8;
    case STX_DTYPE_BOOL:
        return 1;
    case STX_DTYPE_DOUBLE:
        return 8;
    default:
        return 0;
    }
}
