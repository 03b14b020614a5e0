/* core.h: internal core types shared by every part of libstx (never installed). */
#ifndef STX_CORE_H
#define STX_CORE_H

#include "stx.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__FINITE_MATH_ONLY__) && __FINITE_MATH_ONLY__
#error "stx must not be built with -ffast-math: softmax, baselines and LRP need IEEE semantics"
#endif

#define STX_ERRMSG_MAX 1024

/* Error message buffer kept on a handle. */
typedef struct stx_err {
    char msg[STX_ERRMSG_MAX];
} stx_err;

/* Formats a message into e (when e != NULL) and returns code. */
stx_status stx__errf(stx_err *e, stx_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
stx_status stx__verrf(stx_err *e, stx_status code, const char *fmt, va_list ap);

/* Internal invariant check: reports file and line, always on. Never used for user input. */
void stx__assert_fail(const char *expr, const char *file, int line);
#define STX_ASSERT(x) ((x) ? (void)0 : stx__assert_fail(#x, __FILE__, __LINE__))

struct stx_context {
    stx_allocator alloc;
    int num_threads;
    stx_err err;
};

/* Allocation through the context's hooks (64-byte aligned). ctx may be NULL: system allocator.
 * stx__malloc/calloc never abort; callers check for NULL. */
void *stx__malloc(stx_context *ctx, size_t size);
void *stx__calloc(stx_context *ctx, size_t n, size_t size);
void stx__free(stx_context *ctx, void *p);
char *stx__strdup(stx_context *ctx, const char *s);
/* Overflow-checked size helpers: return false on overflow. */
bool stx__mul_size(size_t a, size_t b, size_t *out);

/* ---------------------------------------------------------------------------------------------
 * Tensors. Also the public opaque stx_tensor.
 */
struct stx_tensor {
    stx_context *ctx; /* allocator owner; NULL: system allocator */
    stx_dtype dtype;
    int rank;
    int64_t dims[STX_MAX_RANK];
    void *data;
    size_t nbytes;
    bool owns; /* data freed with the tensor */
};

int64_t stx__numel(const int64_t *dims, int rank);
/* Checked element count: false if negative dims or overflow beyond 2^62 elements. */
bool stx__numel_checked(const int64_t *dims, int rank, int64_t *out);
/* Creates a tensor owning zeroed storage; NULL on failure (no message). */
stx_tensor *stx__tensor_new(stx_context *ctx, stx_dtype dt, const int64_t *dims, int rank);
/* A tensor header that views external memory (not freed with the tensor). */
stx_tensor *stx__tensor_view(stx_context *ctx, stx_dtype dt, const int64_t *dims, int rank,
                             void *data);
stx_tensor *stx__tensor_clone(stx_context *ctx, const stx_tensor *t);
/* "[1,3,16,112,112]" into buf. */
const char *stx__shape_str(const int64_t *dims, int rank, char *buf, size_t n);
/* Number of threads to use for our own OpenMP kernels (set per session run). */
int stx__threads(void);
void stx__set_threads(int n);

/* Random numbers (rng.c): xoshiro256** seeded by splitmix64; only through explicit seeds. */
typedef struct stx_rng {
    uint64_t s[4];
} stx_rng;
void stx__rng_seed(stx_rng *r, uint64_t seed);
uint64_t stx__rng_next(stx_rng *r);
double stx__rng_uniform(stx_rng *r); /* [0, 1), 53 bits */
double stx__rng_normal(stx_rng *r);  /* standard normal (Box-Muller) */

/* ---------------------------------------------------------------------------------------------
 * Reader entry points on already-open streams, shared by the public file
 * readers and the fuzz harnesses (tests/fuzz).
 */
#include <stdio.h>
/* Reads a .npy array from f (positioned at its start; seekable, e.g. fmemopen). path names the
 * source in messages. Every header field and the data size are checked before allocating. */
stx_status stx__npy_read(stx_context *ctx, FILE *f, const char *path, stx_tensor **out);
/* The largest tensor stx allocates (128 TiB, as stx__malloc): element counts are checked against
 * it before multiplying by the element size, so that byte counts never wrap around. */
#define STX__MAX_TENSOR_BYTES ((uint64_t)1 << 47)
/* Checked byte size of a dt tensor of these dims: false when a dim is negative, the element
 * count overflows, or the bytes exceed STX__MAX_TENSOR_BYTES. */
bool stx__nbytes_checked(const int64_t *dims, int rank, stx_dtype dt, uint64_t *out);

#endif
