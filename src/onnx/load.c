/* load.c: ONNX ModelProto -> stx IR, with protobuf-c code generated from Debian's onnx.proto.
 *
 * Memory: the file is mmap-ed (page cache, not a private copy) and unpacked by protobuf-c with
 * our allocator; the unpacked raw_data buffers of initialisers are then *taken over* by our
 * tensors instead of being copied, so a large model holds one copy of its weights. */
#include "onnx.h"

#include "onnx.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* protobuf-c's allocator: ours, remembering a failure so that a parse that fails for want of
 * memory is reported as STX_E_NOMEM, not as a corrupt file. */
typedef struct {
    stx_context *ctx;
    bool failed;
} pb_state;

static void *pb_alloc(void *data, size_t size) {
    pb_state *ps = data;
    void *p = stx__malloc(ps->ctx, size);
    if (!p) ps->failed = true;
    return p;
}
static void pb_free(void *data, void *p) {
    stx__free(((pb_state *)data)->ctx, p);
}

typedef struct {
    stx_context *ctx;
    stx_err *e;
    const char *path; /* model file, for messages and external data */
    uint64_t file_size;
} loader;

static bool dtype_supported(int32_t t) {
    switch (t) {
    case STX_DTYPE_FLOAT:
    case STX_DTYPE_UINT8:
    case STX_DTYPE_INT8:
    case STX_DTYPE_INT32:
    case STX_DTYPE_INT64:
    case STX_DTYPE_BOOL:
    case STX_DTYPE_DOUBLE:
        return true;
    default:
        return false;
    }
}

static const char *onnx_dtype_name(int32_t t) {
    static const char *names[] = {"UNDEFINED",  "FLOAT",   "UINT8",  "INT8",   "UINT16",
                                  "INT16",      "INT32",   "INT64",  "STRING", "BOOL",
                                  "FLOAT16",    "DOUBLE",  "UINT32", "UINT64", "COMPLEX64",
                                  "COMPLEX128", "BFLOAT16"};
    if (t >= 0 && t < (int32_t)(sizeof names / sizeof names[0])) return names[t];
    return "unknown";
}

/* True when a '/'-separated path has a ".." component. */
static bool has_dotdot(const char *p) {
    for (const char *c = p; *c;) {
        const char *e = strchr(c, '/');
        size_t n = e ? (size_t)(e - c) : strlen(c);
        if (n == 2 && c[0] == '.' && c[1] == '.') return true;
        c += n + (e ? 1 : 0);
        if (!e) break;
    }
    return false;
}

/* Reads external data for tensor t from a file beside the model. The location must stay inside
 * the model's folder (no absolute paths, no "..", no symlink escapes). */
static stx_status read_external(loader *L, Onnx__TensorProto *tp, const char *tname, stx_dtype dt,
                                size_t nbytes, stx_tensor **tout) {
    *tout = NULL;
    const char *loc = NULL;
    uint64_t offset = 0, length = 0;
    bool has_len = false;
    for (size_t i = 0; i < tp->n_external_data; i++) {
        const char *k = tp->external_data[i]->key, *v = tp->external_data[i]->value;
        if (!k || !v) continue;
        char *end;
        if (strcmp(k, "location") == 0)
            loc = v;
        else if (strcmp(k, "offset") == 0) {
            errno = 0;
            offset = strtoull(v, &end, 10);
            if (errno || *end)
                return stx__errf(L->e, STX_E_FORMAT, "%s: tensor '%s': bad external offset '%s'",
                                 L->path, tname, v);
        } else if (strcmp(k, "length") == 0) {
            errno = 0;
            length = strtoull(v, &end, 10);
            if (errno || *end)
                return stx__errf(L->e, STX_E_FORMAT, "%s: tensor '%s': bad external length '%s'",
                                 L->path, tname, v);
            has_len = true;
        }
    }
    if (!loc || !*loc)
        return stx__errf(L->e, STX_E_FORMAT, "%s: tensor '%s': external data without location",
                         L->path, tname);
    if (loc[0] == '/' || has_dotdot(loc))
        return stx__errf(L->e, STX_E_FORMAT,
                         "%s: tensor '%s': external data location '%s' leaves the model's folder",
                         L->path, tname, loc);
    if (has_len && length != nbytes)
        return stx__errf(
            L->e, STX_E_FORMAT,
            "%s: tensor '%s': external length %llu does not match its shape (%zu bytes)", L->path,
            tname, (unsigned long long)length, nbytes);
    const char *slash = strrchr(L->path, '/');
    size_t dlen = slash ? (size_t)(slash - L->path) + 1 : 0;
    size_t plen = dlen + strlen(loc) + 1;
    char *full = stx__malloc(L->ctx, plen);
    if (!full) return stx__errf(L->e, STX_E_NOMEM, "out of memory");
    memcpy(full, L->path, dlen);
    strcpy(full + dlen, loc);
    stx_status st = STX_OK;
    char dir_real[PATH_MAX], file_real[PATH_MAX];
    char *dir = stx__malloc(L->ctx, dlen + 2);
    if (!dir) {
        stx__free(L->ctx, full);
        return stx__errf(L->e, STX_E_NOMEM, "out of memory");
    }
    if (dlen) {
        memcpy(dir, L->path, dlen);
        dir[dlen] = '\0';
    } else
        strcpy(dir, ".");
    int fd = -1;
    stx_tensor *t = NULL;
    if (!realpath(dir, dir_real) || !realpath(full, file_real)) {
        st = stx__errf(L->e, STX_E_IO, "%s: tensor '%s': cannot open external data '%s': %s",
                       L->path, tname, full, strerror(errno));
        goto out;
    }
    size_t rl = strlen(dir_real);
    if (strncmp(file_real, dir_real, rl) != 0 || file_real[rl] != '/') {
        st = stx__errf(L->e, STX_E_FORMAT,
                       "%s: tensor '%s': external data '%s' resolves outside the model's folder",
                       L->path, tname, loc);
        goto out;
    }
    fd = open(file_real, O_RDONLY | O_NONBLOCK);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        st = stx__errf(L->e, STX_E_IO, "%s: tensor '%s': cannot open external data '%s': %s",
                       L->path, tname, full, strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = stx__errf(L->e, STX_E_FORMAT,
                       "%s: tensor '%s': external data '%s' is not a regular file", L->path, tname,
                       loc);
        goto out;
    }
    if ((uint64_t)sb.st_size < offset || (uint64_t)sb.st_size - offset < nbytes) {
        st = stx__errf(L->e, STX_E_FORMAT,
                       "%s: tensor '%s': external data '%s' is too short (%lld bytes, need %llu "
                       "at offset %llu)",
                       L->path, tname, loc, (long long)sb.st_size, (unsigned long long)nbytes,
                       (unsigned long long)offset);
        goto out;
    }
    /* allocated only once the file is known to hold the data */
    t = stx__tensor_new(L->ctx, dt, tp->dims, (int)tp->n_dims);
    if (!t) {
        st = stx__errf(L->e, STX_E_NOMEM, "out of memory for tensor '%s'", tname);
        goto out;
    }
    char *dst = t->data;
    size_t got = 0;
    while (got < nbytes) {
        ssize_t r = pread(fd, dst + got, nbytes - got, (off_t)(offset + got));
        if (r <= 0) {
            st = stx__errf(L->e, STX_E_IO, "%s: tensor '%s': read error in '%s'", L->path, tname,
                           loc);
            goto out;
        }
        got += (size_t)r;
    }
out:
    if (fd >= 0) close(fd);
    stx__free(L->ctx, dir);
    stx__free(L->ctx, full);
    if (st)
        stx_tensor_free(t);
    else
        *tout = t;
    return st;
}

/* Converts a TensorProto into a new tensor. raw_data is taken over when possible. */
static stx_status convert_tensor(loader *L, Onnx__TensorProto *tp, stx_tensor **out) {
    const char *tname = tp->name ? tp->name : "";
    *out = NULL;
    if (!tp->has_data_type || !dtype_supported(tp->data_type))
        return stx__errf(L->e, STX_E_UNSUPPORTED, "%s: tensor '%s' has unsupported data type %s",
                         L->path, tname, onnx_dtype_name(tp->data_type));
    if (tp->n_dims > STX_MAX_RANK)
        return stx__errf(L->e, STX_E_UNSUPPORTED, "%s: tensor '%s' has rank %zu (max %d)", L->path,
                         tname, tp->n_dims, STX_MAX_RANK);
    if (tp->segment)
        return stx__errf(L->e, STX_E_UNSUPPORTED, "%s: tensor '%s' is segmented", L->path, tname);
    int64_t n;
    stx_dtype dt = (stx_dtype)tp->data_type;
    uint64_t nbytes;
    if (!stx__numel_checked(tp->dims, (int)tp->n_dims, &n))
        return stx__errf(L->e, STX_E_FORMAT,
                         "%s: tensor '%s' has an invalid shape (a negative dimension, or more "
                         "than 2^62 elements)",
                         L->path, tname);
    if (!stx__nbytes_checked(tp->dims, (int)tp->n_dims, dt, &nbytes)) {
        char sb[128];
        return stx__errf(L->e, STX_E_FORMAT, "%s: tensor '%s' %s %s is too large (over 2^47 bytes)",
                         L->path, tname, onnx_dtype_name(tp->data_type),
                         stx__shape_str(tp->dims, (int)tp->n_dims, sb, sizeof sb));
    }
    bool external =
        tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    /* Limits before allocating: inline data must fit in the file itself. */
    if (!external && nbytes > L->file_size + 64 &&
        !(tp->has_raw_data && tp->raw_data.len == nbytes))
        return stx__errf(L->e, STX_E_FORMAT,
                         "%s: tensor '%s' declares %llu bytes, more than the file holds", L->path,
                         tname, (unsigned long long)nbytes);
    if (external) return read_external(L, tp, tname, dt, (size_t)nbytes, out);
    if (tp->has_raw_data) {
        if (tp->raw_data.len != nbytes) {
            char sb[128];
            return stx__errf(L->e, STX_E_FORMAT,
                             "%s: tensor '%s' %s %s has %zu bytes of raw_data, expected %llu",
                             L->path, tname, onnx_dtype_name(tp->data_type),
                             stx__shape_str(tp->dims, (int)tp->n_dims, sb, sizeof sb),
                             tp->raw_data.len, (unsigned long long)nbytes);
        }
        stx_tensor *t;
        if (nbytes > 0 && ((uintptr_t)tp->raw_data.data & 63) == 0) {
            /* take over protobuf-c's buffer (allocated by our allocator, 64-byte aligned) */
            t = stx__tensor_view(L->ctx, dt, tp->dims, (int)tp->n_dims, tp->raw_data.data);
            if (!t) return stx__errf(L->e, STX_E_NOMEM, "out of memory");
            t->owns = true;
            tp->raw_data.data = NULL;
            tp->raw_data.len = 0;
            tp->has_raw_data = 0;
        } else {
            t = stx__tensor_new(L->ctx, dt, tp->dims, (int)tp->n_dims);
            if (!t) return stx__errf(L->e, STX_E_NOMEM, "out of memory for tensor '%s'", tname);
            if (nbytes) memcpy(t->data, tp->raw_data.data, (size_t)nbytes);
        }
        if (dt == STX_DTYPE_BOOL) {
            unsigned char *b = t->data;
            for (int64_t i = 0; i < n; i++) b[i] = b[i] != 0;
        }
        *out = t;
        return STX_OK;
    }
    /* Typed fields. */
    size_t have;
    switch (dt) {
    case STX_DTYPE_FLOAT:
        have = tp->n_float_data;
        break;
    case STX_DTYPE_DOUBLE:
        have = tp->n_double_data;
        break;
    case STX_DTYPE_INT64:
        have = tp->n_int64_data;
        break;
    default:
        have = tp->n_int32_data;
        break; /* int32, int8, uint8, bool */
    }
    if (have != (uint64_t)n)
        return stx__errf(L->e, STX_E_FORMAT, "%s: tensor '%s' has %zu values, its shape needs %lld",
                         L->path, tname, have, (long long)n);
    stx_tensor *t = stx__tensor_new(L->ctx, dt, tp->dims, (int)tp->n_dims);
    if (!t) return stx__errf(L->e, STX_E_NOMEM, "out of memory for tensor '%s'", tname);
    for (int64_t i = 0; i < n; i++) {
        switch (dt) {
        case STX_DTYPE_FLOAT:
            ((float *)t->data)[i] = tp->float_data[i];
            break;
        case STX_DTYPE_DOUBLE:
            ((double *)t->data)[i] = tp->double_data[i];
            break;
        case STX_DTYPE_INT64:
            ((int64_t *)t->data)[i] = tp->int64_data[i];
            break;
        case STX_DTYPE_INT32:
            ((int32_t *)t->data)[i] = tp->int32_data[i];
            break;
        case STX_DTYPE_INT8:
            ((int8_t *)t->data)[i] = (int8_t)tp->int32_data[i];
            break;
        case STX_DTYPE_UINT8:
            ((uint8_t *)t->data)[i] = (uint8_t)tp->int32_data[i];
            break;
        case STX_DTYPE_BOOL:
            ((uint8_t *)t->data)[i] = tp->int32_data[i] != 0;
            break;
        default:
            break;
        }
    }
    *out = t;
    return STX_OK;
}

static stx_status set_value_info(loader *L, stx_graph *g, Onnx__ValueInfoProto *vi, int *vout) {
    if (!vi->name || !*vi->name)
        return stx__errf(L->e, STX_E_FORMAT, "%s: graph input/output without a name", L->path);
    int v = stx__graph_value(g, vi->name);
    if (v < 0) return stx__errf(L->e, STX_E_NOMEM, "out of memory");
    *vout = v;
    stx_value *val = &g->values[v];
    if (!vi->type) return STX_OK;
    if (vi->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE)
        return stx__errf(L->e, STX_E_UNSUPPORTED,
                         "%s: '%s' is not a tensor (sequence, map and optional types are not "
                         "supported)",
                         L->path, vi->name);
    Onnx__TypeProto__Tensor *tt = vi->type->tensor_type;
    if (tt->has_elem_type) val->dtype = (stx_dtype)tt->elem_type;
    if (tt->shape) {
        if (tt->shape->n_dim > STX_MAX_RANK)
            return stx__errf(L->e, STX_E_UNSUPPORTED, "%s: tensor '%s' has rank %zu (max %d)",
                             L->path, vi->name, tt->shape->n_dim, STX_MAX_RANK);
        val->rank = (int)tt->shape->n_dim;
        for (size_t i = 0; i < tt->shape->n_dim; i++) {
            Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
            val->dims[i] = (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
                               ? d->dim_value
                               : -1;
        }
    }
    return STX_OK;
}

static stx_status convert_attr(loader *L, const char *node, Onnx__AttributeProto *ap, stx_attr *a) {
    stx_context *ctx = L->ctx;
    a->name = stx__strdup(ctx, ap->name);
    if (!a->name) return stx__errf(L->e, STX_E_NOMEM, "out of memory");
    switch (ap->type) {
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT:
        a->type = STX_ATTR_FLOAT;
        a->f = ap->f;
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT:
        a->type = STX_ATTR_INT;
        a->i = ap->i;
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING:
        a->type = STX_ATTR_STRING;
        a->s = stx__malloc(ctx, ap->s.len + 1);
        if (!a->s) return stx__errf(L->e, STX_E_NOMEM, "out of memory");
        if (ap->s.len) memcpy(a->s, ap->s.data, ap->s.len);
        a->s[ap->s.len] = '\0';
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR:
        a->type = STX_ATTR_TENSOR;
        if (!ap->t)
            return stx__errf(L->e, STX_E_FORMAT, "%s: node '%s': attribute '%s' has no tensor",
                             L->path, node, ap->name);
        return convert_tensor(L, ap->t, &a->t);
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS:
        a->type = STX_ATTR_FLOATS;
        a->n = (int)ap->n_floats;
        a->floats = stx__malloc(ctx, sizeof(float) * (ap->n_floats + 1));
        if (!a->floats) return stx__errf(L->e, STX_E_NOMEM, "out of memory");
        if (ap->n_floats) memcpy(a->floats, ap->floats, sizeof(float) * ap->n_floats);
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS:
        a->type = STX_ATTR_INTS;
        a->n = (int)ap->n_ints;
        a->ints = stx__malloc(ctx, sizeof(int64_t) * (ap->n_ints + 1));
        if (!a->ints) return stx__errf(L->e, STX_E_NOMEM, "out of memory");
        if (ap->n_ints) memcpy(a->ints, ap->ints, sizeof(int64_t) * ap->n_ints);
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS:
        a->type = STX_ATTR_STRINGS;
        a->strings = stx__calloc(ctx, ap->n_strings + 1, sizeof(char *));
        if (!a->strings) return stx__errf(L->e, STX_E_NOMEM, "out of memory");
        a->n = (int)ap->n_strings;
        for (size_t i = 0; i < ap->n_strings; i++) {
            a->strings[i] = stx__malloc(ctx, ap->strings[i].len + 1);
            if (!a->strings[i]) return stx__errf(L->e, STX_E_NOMEM, "out of memory");
            if (ap->strings[i].len) memcpy(a->strings[i], ap->strings[i].data, ap->strings[i].len);
            a->strings[i][ap->strings[i].len] = '\0';
        }
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH:
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPHS:
        a->type = STX_ATTR_GRAPH;
        break;
    default:
        a->type = STX_ATTR_OTHER;
        break;
    }
    return STX_OK;
}

/* Folds a Constant node into its output value's data. */
static stx_status fold_constant(loader *L, stx_graph *g, Onnx__NodeProto *np, int v) {
    const char *nn = np->name ? np->name : "";
    if (np->n_attribute != 1)
        return stx__errf(L->e, STX_E_FORMAT, "%s: Constant node '%s' needs exactly one attribute",
                         L->path, nn);
    Onnx__AttributeProto *ap = np->attribute[0];
    stx_tensor *t = NULL;
    stx_status st = STX_OK;
    const char *an = ap->name ? ap->name : "";
    if (strcmp(an, "value") == 0 && ap->t) {
        st = convert_tensor(L, ap->t, &t);
    } else if (strcmp(an, "value_float") == 0) {
        t = stx__tensor_new(L->ctx, STX_DTYPE_FLOAT, NULL, 0);
        if (t) *(float *)t->data = ap->f;
    } else if (strcmp(an, "value_int") == 0) {
        t = stx__tensor_new(L->ctx, STX_DTYPE_INT64, NULL, 0);
        if (t) *(int64_t *)t->data = ap->i;
    } else if (strcmp(an, "value_floats") == 0) {
        int64_t d = (int64_t)ap->n_floats;
        t = stx__tensor_new(L->ctx, STX_DTYPE_FLOAT, &d, 1);
        if (t && d) memcpy(t->data, ap->floats, sizeof(float) * (size_t)d);
    } else if (strcmp(an, "value_ints") == 0) {
        int64_t d = (int64_t)ap->n_ints;
        t = stx__tensor_new(L->ctx, STX_DTYPE_INT64, &d, 1);
        if (t && d) memcpy(t->data, ap->ints, sizeof(int64_t) * (size_t)d);
    } else {
        return stx__errf(L->e, STX_E_UNSUPPORTED,
                         "%s: node '%s' (Constant): unsupported attribute '%s'", L->path, nn, an);
    }
    if (st) return st;
    if (!t) return stx__errf(L->e, STX_E_NOMEM, "out of memory");
    g->values[v].data = t;
    g->values[v].dtype = t->dtype;
    g->values[v].rank = t->rank;
    for (int i = 0; i < t->rank; i++) g->values[v].dims[i] = t->dims[i];
    return STX_OK;
}

static bool is_input(const stx_graph *g, int v) {
    for (int q = 0; q < g->n_inputs; q++)
        if (g->inputs[q] == v) return true;
    return false;
}

static stx_status convert_model(loader *L, Onnx__ModelProto *mp, stx_graph *g) {
    stx_context *ctx = L->ctx;
    if (!mp->graph) return stx__errf(L->e, STX_E_FORMAT, "%s: model has no graph", L->path);
    Onnx__GraphProto *gp = mp->graph;
    g->opset = 0;
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        Onnx__OperatorSetIdProto *o = mp->opset_import[i];
        if (!o->domain || !*o->domain || strcmp(o->domain, "ai.onnx") == 0)
            g->opset = (int)o->version;
    }
    for (size_t i = 0; i < gp->n_node && g->opset == 0; i++) {
        const char *d = gp->node[i]->domain;
        if (!d || !*d || strcmp(d, "ai.onnx") == 0)
            return stx__errf(L->e, STX_E_FORMAT, "%s: model imports no default-domain opset",
                             L->path);
    }
    g->producer = stx__strdup(ctx, mp->producer_name);
    if (!g->producer) return stx__errf(L->e, STX_E_NOMEM, "out of memory");
    if (mp->n_metadata_props) {
        g->meta_keys = stx__calloc(ctx, mp->n_metadata_props, sizeof(char *));
        g->meta_vals = stx__calloc(ctx, mp->n_metadata_props, sizeof(char *));
        if (!g->meta_keys || !g->meta_vals) return stx__errf(L->e, STX_E_NOMEM, "out of memory");
        for (size_t i = 0; i < mp->n_metadata_props; i++) {
            g->meta_keys[i] = stx__strdup(ctx, mp->metadata_props[i]->key);
            g->meta_vals[i] = stx__strdup(ctx, mp->metadata_props[i]->value);
            g->n_meta++;
            if (!g->meta_keys[i] || !g->meta_vals[i])
                return stx__errf(L->e, STX_E_NOMEM, "out of memory");
        }
    }
    /* Initialisers first: they are constants. Free each converted TensorProto's remaining
     * buffers as we go would need protobuf-c internals; raw_data is taken over instead. */
    for (size_t i = 0; i < gp->n_initializer; i++) {
        Onnx__TensorProto *tp = gp->initializer[i];
        if (!tp->name || !*tp->name)
            return stx__errf(L->e, STX_E_FORMAT, "%s: initializer %zu has no name", L->path, i);
        int v = stx__graph_value(g, tp->name);
        if (v < 0) return stx__errf(L->e, STX_E_NOMEM, "out of memory");
        if (g->values[v].data)
            return stx__errf(L->e, STX_E_FORMAT, "%s: initializer '%s' is defined twice", L->path,
                             tp->name);
        stx_tensor *t;
        stx_status st = convert_tensor(L, tp, &t);
        if (st) return st;
        g->values[v].data = t;
        g->values[v].dtype = t->dtype;
        g->values[v].rank = t->rank;
        for (int k = 0; k < t->rank; k++) g->values[v].dims[k] = t->dims[k];
    }
    if (gp->n_sparse_initializer)
        return stx__errf(L->e, STX_E_UNSUPPORTED, "%s: sparse initializers are not supported",
                         L->path);
    g->inputs = stx__calloc(ctx, gp->n_input + 1, sizeof(int));
    g->outputs = stx__calloc(ctx, gp->n_output + 1, sizeof(int));
    if (!g->inputs || !g->outputs) return stx__errf(L->e, STX_E_NOMEM, "out of memory");
    for (size_t i = 0; i < gp->n_input; i++) {
        int v;
        bool init = gp->input[i]->name && stx__graph_find(g, gp->input[i]->name) >= 0 &&
                    g->values[stx__graph_find(g, gp->input[i]->name)].data;
        if (init) continue; /* initialisers listed as inputs (IR < 4) are constants */
        stx_status st = set_value_info(L, g, gp->input[i], &v);
        if (st) return st;
        g->inputs[g->n_inputs++] = v;
    }
    for (size_t i = 0; i < gp->n_value_info; i++) {
        int v;
        stx_status st = set_value_info(L, g, gp->value_info[i], &v);
        if (st) return st;
    }
    for (size_t i = 0; i < gp->n_node; i++) {
        Onnx__NodeProto *np = gp->node[i];
        const char *nn = np->name ? np->name : "";
        if (!np->op_type || !*np->op_type)
            return stx__errf(L->e, STX_E_FORMAT, "%s: node %zu ('%s') has no op_type", L->path, i,
                             nn);
        bool default_domain = !np->domain || !*np->domain || strcmp(np->domain, "ai.onnx") == 0;
        if (default_domain && strcmp(np->op_type, "Constant") == 0 && np->n_output == 1 &&
            np->output[0] && *np->output[0]) {
            int v = stx__graph_value(g, np->output[0]);
            if (v < 0) return stx__errf(L->e, STX_E_NOMEM, "out of memory");
            if (g->values[v].data)
                return stx__errf(L->e, STX_E_FORMAT, "%s: tensor '%s' is produced twice", L->path,
                                 np->output[0]);
            stx_status st = fold_constant(L, g, np, v);
            if (st) return st;
            continue;
        }
        int ni = stx__graph_add_node(g);
        if (ni < 0) return stx__errf(L->e, STX_E_NOMEM, "out of memory");
        stx_node *n = &g->nodes[ni];
        char defname[64];
        snprintf(defname, sizeof defname, "%s_%zu", np->op_type, i);
        n->name = stx__strdup(ctx, *nn ? nn : defname);
        n->op_type = stx__strdup(ctx, np->op_type);
        n->domain = stx__strdup(ctx, np->domain ? np->domain : "");
        n->in = stx__calloc(ctx, np->n_input + 1, sizeof(int));
        n->out = stx__calloc(ctx, np->n_output + 1, sizeof(int));
        n->attrs = stx__calloc(ctx, np->n_attribute + 1, sizeof(stx_attr));
        if (!n->name || !n->op_type || !n->domain || !n->in || !n->out || !n->attrs)
            return stx__errf(L->e, STX_E_NOMEM, "out of memory");
        n->n_in = (int)np->n_input;
        n->n_out = (int)np->n_output;
        for (size_t k = 0; k < np->n_input; k++) {
            if (!np->input[k] || !*np->input[k]) {
                n->in[k] = -1;
                continue;
            }
            int v = stx__graph_find(g, np->input[k]);
            if (v < 0 || (!g->values[v].data && g->values[v].producer < 0 && !is_input(g, v)))
                return stx__errf(L->e, STX_E_FORMAT,
                                 "%s: node '%s' (%s) reads tensor '%s' that nothing produces "
                                 "before it",
                                 L->path, n->name, n->op_type, np->input[k]);
            n->in[k] = v;
        }
        for (size_t k = 0; k < np->n_output; k++) {
            if (!np->output[k] || !*np->output[k]) {
                n->out[k] = -1;
                continue;
            }
            int v = stx__graph_value(g, np->output[k]);
            if (v < 0) return stx__errf(L->e, STX_E_NOMEM, "out of memory");
            if (g->values[v].data || g->values[v].producer >= 0)
                return stx__errf(L->e, STX_E_FORMAT, "%s: tensor '%s' is produced twice", L->path,
                                 np->output[k]);
            if (is_input(g, v))
                return stx__errf(L->e, STX_E_FORMAT, "%s: node '%s' writes graph input '%s'",
                                 L->path, n->name, np->output[k]);
            g->values[v].producer = ni;
            n->out[k] = v;
        }
        for (size_t k = 0; k < np->n_attribute; k++) {
            stx_status st = convert_attr(L, n->name, np->attribute[k], &n->attrs[k]);
            n->n_attrs = (int)k + 1;
            if (st) return st;
        }
    }
    for (size_t i = 0; i < gp->n_output; i++) {
        int v;
        stx_status st = set_value_info(L, g, gp->output[i], &v);
        if (st) return st;
        if (!g->values[v].data && g->values[v].producer < 0 && !is_input(g, v))
            return stx__errf(L->e, STX_E_FORMAT, "%s: graph output '%s' is never produced", L->path,
                             gp->output[i]->name);
        g->outputs[g->n_outputs++] = v;
    }
    if (g->n_outputs == 0)
        return stx__errf(L->e, STX_E_FORMAT, "%s: graph has no outputs", L->path);
    return STX_OK;
}

/* Maps a whole file read-only. */
static stx_status map_file(loader *L, const char *path, void **data, size_t *len) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return stx__errf(L->e, STX_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return stx__errf(L->e, STX_E_IO, "%s: not a regular file", path);
    }
    if (sb.st_size == 0) {
        close(fd);
        return stx__errf(L->e, STX_E_FORMAT, "%s: empty file", path);
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return stx__errf(L->e, STX_E_IO, "%s: cannot map: %s", path, strerror(errno));
    *data = p;
    *len = (size_t)sb.st_size;
    L->file_size = (uint64_t)sb.st_size;
    return STX_OK;
}

stx_status stx__onnx_load_graph(stx_context *ctx, const char *path, stx_graph *g, stx_err *e) {
    loader L = {ctx, e, path, 0};
    void *data;
    size_t len;
    stx_status st = map_file(&L, path, &data, &len);
    if (st) return st;
    pb_state ps = {ctx, false};
    ProtobufCAllocator pa = {pb_alloc, pb_free, &ps};
    Onnx__ModelProto *mp = onnx__model_proto__unpack(&pa, len, data);
    munmap(data, len);
    if (!mp && ps.failed)
        return stx__errf(e, STX_E_NOMEM, "%s: out of memory while parsing the model (%zu bytes)",
                         path, len);
    if (!mp)
        return stx__errf(e, STX_E_FORMAT,
                         "%s: not a valid ONNX model (protobuf parse failed: truncated or corrupt)",
                         path);
    st = convert_model(&L, mp, g);
    onnx__model_proto__free_unpacked(mp, &pa);
    if (st) return st;
    st = stx__graph_finalize(g, e);
    if (st) {
        char msg[STX_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s", e->msg);
        stx__errf(e, st, "%s: %s", path, msg);
    }
    return st;
}

stx_status stx__onnx_load_tensor_file(stx_context *ctx, const char *path, stx_tensor **out,
                                      stx_err *e) {
    loader L = {ctx, e, path, 0};
    void *data;
    size_t len;
    stx_status st = map_file(&L, path, &data, &len);
    if (st) return st;
    pb_state ps = {ctx, false};
    ProtobufCAllocator pa = {pb_alloc, pb_free, &ps};
    Onnx__TensorProto *tp = onnx__tensor_proto__unpack(&pa, len, data);
    munmap(data, len);
    if (!tp && ps.failed) return stx__errf(e, STX_E_NOMEM, "%s: out of memory", path);
    if (!tp) return stx__errf(e, STX_E_FORMAT, "%s: not a valid TensorProto", path);
    st = convert_tensor(&L, tp, out);
    onnx__tensor_proto__free_unpacked(tp, &pa);
    return st;
}
