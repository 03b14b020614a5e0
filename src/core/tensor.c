/* tensor.c: dense tensors (up to STX_MAX_RANK dimensions). */
#include "core.h"

#include <stdio.h>
#include <string.h>

int64_t stx__numel(const int64_t *dims, int rank) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    return n;
}

bool stx__numel_checked(const int64_t *dims, int rank, int64_t *out) {
    int64_t n = 1;
    if (rank < 0 || rank > STX_MAX_RANK) return false;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0) return false;
        if (dims[i] != 0 && n > ((int64_t)1 << 62) / dims[i]) return false;
        n *= dims[i];
    }
    *out = n;
    return true;
}

bool stx__nbytes_checked(const int64_t *dims, int rank, stx_dtype dt, uint64_t *out) {
    int64_t n;
    size_t es = stx_dtype_size(dt);
    if (es == 0 || !stx__numel_checked(dims, rank, &n)) return false;
    if ((uint64_t)n > STX__MAX_TENSOR_BYTES / es) return false;
    *out = (uint64_t)n * es;
    return true;
}

static stx_tensor *tensor_header(stx_context *ctx, stx_dtype dt, const int64_t *dims, int rank) {
    int64_t n;
    uint64_t nb;
    if (!stx__numel_checked(dims, rank, &n) || !stx__nbytes_checked(dims, rank, dt, &nb))
        return NULL;
    stx_tensor *t = stx__calloc(ctx, 1, sizeof *t);
    if (!t) return NULL;
    t->ctx = ctx;
    t->dtype = dt;
    t->rank = rank;
    for (int i = 0; i < rank; i++) t->dims[i] = dims[i];
    t->nbytes = (size_t)n * stx_dtype_size(dt);
    return t;
}

stx_tensor *stx__tensor_new(stx_context *ctx, stx_dtype dt, const int64_t *dims, int rank) {
    stx_tensor *t = tensor_header(ctx, dt, dims, rank);
    if (!t) return NULL;
    t->data = stx__calloc(ctx, 1, t->nbytes ? t->nbytes : 1);
    if (!t->data) {
        stx__free(ctx, t);
        return NULL;
    }
    t->owns = true;
    return t;
}

stx_tensor *stx__tensor_view(stx_context *ctx, stx_dtype dt, const int64_t *dims, int rank,
                             void *data) {
    stx_tensor *t = tensor_header(ctx, dt, dims, rank);
    if (!t) return NULL;
    t->data = data;
    t->owns = false;
    return t;
}

stx_tensor *stx__tensor_clone(stx_context *ctx, const stx_tensor *src) {
    stx_tensor *t = stx__tensor_new(ctx, src->dtype, src->dims, src->rank);
    if (t && src->nbytes) memcpy(t->data, src->data, src->nbytes);
    return t;
}

const char *stx__shape_str(const int64_t *dims, int rank, char *buf, size_t n) {
    size_t k = 0;
    if (n == 0) return buf;
    buf[0] = '\0';
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < rank && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)dims[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

stx_status stx_tensor_create(stx_context *ctx, stx_dtype dtype, const int64_t *shape, int rank,
                             stx_tensor **out) {
    if (!out || rank < 0 || rank > STX_MAX_RANK || (rank > 0 && !shape))
        return stx__errf(ctx ? &ctx->err : NULL, STX_E_INVALID, "stx_tensor_create: bad arguments");
    int64_t n;
    if (!stx__numel_checked(shape, rank, &n) || stx_dtype_size(dtype) == 0)
        return stx__errf(ctx ? &ctx->err : NULL, STX_E_INVALID,
                         "stx_tensor_create: invalid shape or dtype");
    uint64_t nb;
    if (!stx__nbytes_checked(shape, rank, dtype, &nb)) {
        char sb[128];
        return stx__errf(ctx ? &ctx->err : NULL, STX_E_INVALID,
                         "stx_tensor_create: shape %s %s is too large (over 2^47 bytes)",
                         stx__shape_str(shape, rank, sb, sizeof sb), stx_dtype_name(dtype));
    }
    *out = stx__tensor_new(ctx, dtype, shape, rank);
    if (!*out)
        return stx__errf(ctx ? &ctx->err : NULL, STX_E_NOMEM, "out of memory allocating a tensor");
    return STX_OK;
}

void stx_tensor_free(stx_tensor *t) {
    if (!t) return;
    if (t->owns) stx__free(t->ctx, t->data);
    stx__free(t->ctx, t);
}

stx_dtype stx_tensor_dtype(const stx_tensor *t) {
    return t->dtype;
}
int stx_tensor_rank(const stx_tensor *t) {
    return t->rank;
}
const int64_t *stx_tensor_shape(const stx_tensor *t) {
    return t->dims;
}
int64_t stx_tensor_numel(const stx_tensor *t) {
    return stx__numel(t->dims, t->rank);
}
void *stx_tensor_data(stx_tensor *t) {
    return t->data;
}
stx_status stx_tensor_reshape(stx_tensor *t, const int64_t *shape, int rank) {
    if (!t || !shape || rank < 0 || rank > STX_MAX_RANK) return STX_E_INVALID;
    int64_t n;
    if (!stx__numel_checked(shape, rank, &n) || n != stx__numel(t->dims, t->rank))
        return STX_E_SHAPE;
    memcpy(t->dims, shape, sizeof *shape * (size_t)rank);
    t->rank = rank;
    return STX_OK;
}

const void *stx_tensor_data_const(const stx_tensor *t) {
    return t->data;
}
