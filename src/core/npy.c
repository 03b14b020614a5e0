/* npy.c: NumPy .npy reader and writer (format 1.0-3.0, little-endian, C order).
 * Reference: numpy/lib/format.py. Reading checks every field before allocating. */
#include "core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *npy_descr(stx_dtype t) {
    switch (t) {
    case STX_DTYPE_FLOAT:
        return "<f4";
    case STX_DTYPE_DOUBLE:
        return "<f8";
    case STX_DTYPE_INT64:
        return "<i8";
    case STX_DTYPE_INT32:
        return "<i4";
    case STX_DTYPE_UINT8:
        return "|u1";
    case STX_DTYPE_INT8:
        return "|i1";
    case STX_DTYPE_BOOL:
        return "|b1";
    default:
        return NULL;
    }
}

static stx_dtype npy_parse_descr(const char *d) {
    static const struct {
        const char *s;
        stx_dtype t;
    } map[] = {{"<f4", STX_DTYPE_FLOAT}, {"<f8", STX_DTYPE_DOUBLE}, {"<i8", STX_DTYPE_INT64},
               {"<i4", STX_DTYPE_INT32}, {"|u1", STX_DTYPE_UINT8},  {"|i1", STX_DTYPE_INT8},
               {"|b1", STX_DTYPE_BOOL},  {"<u1", STX_DTYPE_UINT8},  {"<i1", STX_DTYPE_INT8},
               {"<b1", STX_DTYPE_BOOL},  {"u1", STX_DTYPE_UINT8},   {"b1", STX_DTYPE_BOOL}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(d, map[i].s) == 0) return map[i].t;
    return STX_DTYPE_UNDEFINED;
}

/* Finds the value text after 'key': in the header dict. */
static const char *dict_value(const char *hdr, const char *key) {
    char pat[32];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(hdr, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

static stx_status parse_header(stx_err *e, const char *path, const char *hdr, stx_dtype *dt,
                               int64_t *dims, int *rank) {
    const char *v = dict_value(hdr, "descr");
    if (!v || *v != '\'')
        return stx__errf(e, STX_E_FORMAT, "%s: malformed .npy header (no 'descr')", path);
    char descr[16];
    size_t k = 0;
    v++;
    while (*v && *v != '\'' && k + 1 < sizeof descr) descr[k++] = *v++;
    descr[k] = '\0';
    if (*v != '\'') return stx__errf(e, STX_E_FORMAT, "%s: malformed .npy 'descr'", path);
    *dt = npy_parse_descr(descr);
    if (*dt == STX_DTYPE_UNDEFINED)
        return stx__errf(e, STX_E_UNSUPPORTED,
                         "%s: unsupported .npy dtype '%s' (float32, float64, int64, int32, uint8, "
                         "int8 or bool, little-endian)",
                         path, descr);
    v = dict_value(hdr, "fortran_order");
    if (!v)
        return stx__errf(e, STX_E_FORMAT, "%s: malformed .npy header (no 'fortran_order')", path);
    if (strncmp(v, "False", 5) != 0)
        return stx__errf(e, STX_E_UNSUPPORTED, "%s: Fortran-ordered .npy arrays are not supported",
                         path);
    v = dict_value(hdr, "shape");
    if (!v || *v != '(') return stx__errf(e, STX_E_FORMAT, "%s: malformed .npy 'shape'", path);
    v++;
    *rank = 0;
    for (;;) {
        while (*v == ' ' || *v == ',') v++;
        if (*v == ')') break;
        if (*v < '0' || *v > '9')
            return stx__errf(e, STX_E_FORMAT, "%s: malformed .npy 'shape'", path);
        if (*rank >= STX_MAX_RANK)
            return stx__errf(e, STX_E_UNSUPPORTED, "%s: .npy array has more than %d dimensions",
                             path, STX_MAX_RANK);
        errno = 0;
        char *end;
        long long d = strtoll(v, &end, 10);
        if (errno || d < 0 || d > ((int64_t)1 << 40))
            return stx__errf(e, STX_E_FORMAT, "%s: .npy dimension out of range", path);
        dims[(*rank)++] = d;
        v = end;
        while (*v == 'L') v++;
    }
    return STX_OK;
}

stx_status stx_tensor_load_npy(stx_context *ctx, const char *path, stx_tensor **out) {
    stx_err *e = ctx ? &ctx->err : NULL;
    if (!path || !out) return stx__errf(e, STX_E_INVALID, "stx_tensor_load_npy: bad arguments");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return stx__errf(e, STX_E_IO, "%s: cannot open: %s", path, strerror(errno));
    stx_status st = stx__npy_read(ctx, f, path, out);
    fclose(f);
    return st;
}

stx_status stx__npy_read(stx_context *ctx, FILE *f, const char *path, stx_tensor **out) {
    stx_err *e = ctx ? &ctx->err : NULL;
    *out = NULL;
    stx_status st = STX_OK;
    char *hdr = NULL;
    stx_tensor *t = NULL;
    unsigned char pre[10];
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        st = stx__errf(e, STX_E_FORMAT, "%s: not a .npy file (bad magic)", path);
        goto done;
    }
    int major = pre[6];
    size_t hlen;
    if (major == 1) {
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8);
    } else if (major == 2 || major == 3) {
        unsigned char b[2];
        if (fread(b, 1, 2, f) != 2) {
            st = stx__errf(e, STX_E_FORMAT, "%s: truncated .npy header", path);
            goto done;
        }
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8) | ((size_t)b[0] << 16) | ((size_t)b[1] << 24);
    } else {
        st = stx__errf(e, STX_E_UNSUPPORTED, "%s: unsupported .npy format version %d", path, major);
        goto done;
    }
    if (hlen == 0 || hlen > (1u << 20)) {
        st = stx__errf(e, STX_E_FORMAT, "%s: .npy header length %zu out of range", path, hlen);
        goto done;
    }
    hdr = stx__malloc(ctx, hlen + 1);
    if (!hdr) {
        st = stx__errf(e, STX_E_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if (fread(hdr, 1, hlen, f) != hlen) {
        st = stx__errf(e, STX_E_FORMAT, "%s: truncated .npy header", path);
        goto done;
    }
    hdr[hlen] = '\0';
    stx_dtype dt = STX_DTYPE_UNDEFINED;
    int64_t dims[STX_MAX_RANK];
    int rank = 0;
    st = parse_header(e, path, hdr, &dt, dims, &rank);
    if (st) goto done;
    /* Check the file holds exactly the data before allocating. */
    long pos = ftell(f);
    if (pos < 0 || fseek(f, 0, SEEK_END) != 0) {
        st = stx__errf(e, STX_E_IO, "%s: cannot seek", path);
        goto done;
    }
    long end = ftell(f);
    int64_t n;
    uint64_t need;
    if (!stx__numel_checked(dims, rank, &n) || !stx__nbytes_checked(dims, rank, dt, &need)) {
        char sb[128];
        st = stx__errf(e, STX_E_FORMAT, "%s: .npy shape %s %s is too large (over 2^47 bytes)", path,
                       stx__shape_str(dims, rank, sb, sizeof sb), stx_dtype_name(dt));
        goto done;
    }
    if (end < pos || (uint64_t)(end - pos) < need) {
        char sb[128];
        st = stx__errf(e, STX_E_FORMAT,
                       "%s: truncated .npy data (shape %s %s needs %llu bytes, file has %ld)", path,
                       stx__shape_str(dims, rank, sb, sizeof sb), stx_dtype_name(dt),
                       (unsigned long long)need, end - pos);
        goto done;
    }
    if (fseek(f, pos, SEEK_SET) != 0) {
        st = stx__errf(e, STX_E_IO, "%s: cannot seek", path);
        goto done;
    }
    t = stx__tensor_new(ctx, dt, dims, rank);
    if (!t) {
        st = stx__errf(e, STX_E_NOMEM, "%s: out of memory for %llu bytes", path,
                       (unsigned long long)need);
        goto done;
    }
    if (need && fread(t->data, 1, need, f) != need) {
        st = stx__errf(e, STX_E_IO, "%s: read error", path);
        goto done;
    }
    if (dt == STX_DTYPE_BOOL) { /* normalise to 0/1 */
        unsigned char *b = t->data;
        for (int64_t i = 0; i < n; i++) b[i] = b[i] != 0;
    }
    *out = t;
    t = NULL;
done:
    stx_tensor_free(t);
    stx__free(ctx, hdr);
    return st;
}

stx_status stx_tensor_save_npy(stx_context *ctx, const stx_tensor *t, const char *path) {
    stx_err *e = ctx ? &ctx->err : NULL;
    if (!t || !path) return stx__errf(e, STX_E_INVALID, "stx_tensor_save_npy: bad arguments");
    const char *descr = npy_descr(t->dtype);
    if (!descr) return stx__errf(e, STX_E_UNSUPPORTED, "%s: dtype not writable to .npy", path);
    char shape[256];
    size_t k = 0;
    k += (size_t)snprintf(shape + k, sizeof shape - k, "(");
    for (int i = 0; i < t->rank; i++)
        k += (size_t)snprintf(shape + k, sizeof shape - k, "%lld,%s", (long long)t->dims[i],
                              (i + 1 < t->rank) ? " " : "");
    if (t->rank > 1) k--; /* numpy writes (2, 3) but (5,) */
    snprintf(shape + k, sizeof shape - k, ")");
    char hdr[512];
    int hl = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                      descr, shape);
    /* pad so that 10 + header length is a multiple of 64, ending with '\n' */
    size_t total = 10 + (size_t)hl + 1;
    size_t pad = (64 - total % 64) % 64;
    memset(hdr + hl, ' ', pad);
    hdr[hl + pad] = '\n';
    size_t hlen = (size_t)hl + pad + 1;

    size_t plen = strlen(path);
    char *tmp = stx__malloc(ctx, plen + 32);
    if (!tmp) return stx__errf(e, STX_E_NOMEM, "out of memory");
    /* unique per process and call, so that threads writing the same path do not collide */
    static _Atomic unsigned serial;
    snprintf(tmp, plen + 32, "%s.tmp%ld.%u", path, (long)getpid(), serial++);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        stx_status st = stx__errf(e, STX_E_IO, "%s: cannot write: %s", path, strerror(errno));
        stx__free(ctx, tmp);
        return st;
    }
    unsigned char pre[10] = {0x93,
                             'N',
                             'U',
                             'M',
                             'P',
                             'Y',
                             1,
                             0,
                             (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, hlen, f) == hlen &&
             (t->nbytes == 0 || fwrite(t->data, 1, t->nbytes, f) == t->nbytes);
    /* on disk before it gets its name: a crash of the machine cannot publish a short file */
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        stx_status st = stx__errf(e, STX_E_IO, "%s: write failed: %s", path, strerror(errno));
        remove(tmp);
        stx__free(ctx, tmp);
        return st;
    }
    stx__free(ctx, tmp);
    return STX_OK;
}
