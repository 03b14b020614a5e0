/* facts.c: a model's facts from its stx.* metadata_props (stx_model_facts).
 *
 * The keys are parsed once, when the model is loaded, into m->facts. A malformed value never
 * fails the load, since the graph itself is fine and still runs: the key is left absent from the
 * facts and one message is kept for it ("model.onnx: metadata 'stx.mean' = 'a,b': expected 3
 * comma-separated numbers"). stx_model_facts_get reports the first such message, and
 * stx_model_facts_error lists them all, so that a caller (the CLI) that overrides a key can
 * ignore that key's error. Only running out of memory fails the load.
 *
 * Strings in the facts point into the graph's metadata values, except the class names, which
 * are split into one buffer owned by the facts.
 */
#include "ir.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies a metadata value for an error message: at most 60 bytes, control characters replaced,
 * so that the message stays on one line. */
static const char *quote(const char *v, char *buf, size_t n) {
    size_t k = 0, len = strlen(v);
    for (; k < len && k < 60 && k + 4 < n; k++) {
        unsigned char c = (unsigned char)v[k];
        buf[k] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (k < len && k + 4 <= n) {
        memcpy(buf + k, "...", 3);
        k += 3;
    }
    buf[k] = '\0';
    return buf;
}

/* Records that metadata `key` (value `val`, NULL when missing) is malformed; the format says
 * what was expected. Returns STX_OK, or STX_E_NOMEM. */
static stx_status bad(stx_model *m, const char *key, const char *val, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static stx_status bad(stx_model *m, const char *key, const char *val, const char *fmt, ...) {
    stx_facts *f = &m->facts;
    if (f->n_errors >= STX__FACTS_MAX_ERRORS) return STX_OK;
    char what[512], q[80], msg[STX_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (val)
        snprintf(msg, sizeof msg, "%s: metadata '%s' = '%s': %s", m->path, key,
                 quote(val, q, sizeof q), what);
    else
        snprintf(msg, sizeof msg, "%s: metadata '%s' is missing: %s", m->path, key, what);
    char *s = stx__strdup(m->ctx, msg);
    if (!s) return stx__errf(&m->ctx->err, STX_E_NOMEM, "out of memory");
    f->err_key[f->n_errors] = key;
    f->err_msg[f->n_errors++] = s;
    return STX_OK;
}

static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

/* Parses exactly n non-negative decimal integers separated by `sep` ("8x4x4"). */
static bool parse_ints(const char *s, char sep, int n, int *out) {
    const char *p = s;
    for (int i = 0; i < n; i++) {
        if (!is_digit(*p)) return false;
        long long v = 0;
        while (is_digit(*p)) {
            v = v * 10 + (*p++ - '0');
            if (v > INT_MAX) return false;
        }
        out[i] = (int)v;
        if (i + 1 < n && *p++ != sep) return false;
    }
    return *p == '\0';
}

/* Parses exactly 3 comma-separated finite numbers. Each goes through double, then float, as
 * numpy's np.array([float(a), ...], np.float32) does, so that both sides get the same floats. */
static bool parse_floats3(const char *s, float out[3]) {
    const char *p = s;
    for (int i = 0; i < 3; i++) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno == ERANGE || !isfinite(v) || fabs(v) > 3.0e38) return false;
        out[i] = (float)v;
        p = end;
        while (*p == ' ') p++;
        if (i < 2 && *p++ != ',') return false;
    }
    return *p == '\0';
}

static bool one_of(const char *v, const char *const *allowed) {
    for (int i = 0; allowed[i]; i++)
        if (strcmp(v, allowed[i]) == 0) return true;
    return false;
}

/* Splits "a,b,c" into class names (spaces around a name are dropped). Empty or duplicate names
 * make the list malformed. */
static stx_status parse_classes(stx_model *m, const char *key, const char *val) {
    stx_facts *f = &m->facts;
    size_t len = strlen(val);
    int n = 1;
    for (const char *p = val; *p; p++) n += *p == ',';
    f->class_buf = stx__malloc(m->ctx, len + 1);
    f->class_ptrs = stx__calloc(m->ctx, (size_t)n, sizeof *f->class_ptrs);
    if (!f->class_buf || !f->class_ptrs)
        return stx__errf(&m->ctx->err, STX_E_NOMEM, "out of memory");
    memcpy(f->class_buf, val, len + 1);
    char *p = f->class_buf;
    for (int i = 0; i < n; i++) {
        char *end = strchr(p, ',');
        if (end) *end = '\0';
        while (*p == ' ') p++;
        size_t k = strlen(p);
        while (k > 0 && p[k - 1] == ' ') p[--k] = '\0';
        if (k == 0) return bad(m, key, val, "class name %d of %d is empty", i + 1, n);
        for (int j = 0; j < i; j++)
            if (strcmp(f->class_ptrs[j], p) == 0)
                return bad(m, key, val, "class name '%s' appears twice (classes %d and %d)", p, j,
                           i);
        f->class_ptrs[i] = p;
        if (end) p = end + 1;
    }
    f->pub.num_classes = n;
    f->pub.class_names = f->class_ptrs;
    return STX_OK;
}

/* Whether name is a tensor or a module path of the graph (without touching any error). */
static bool graph_has(const stx_graph *g, const char *name) {
    if (stx__graph_find(g, name) >= 0) return true;
    for (int i = 0; i < g->n_modules; i++)
        if (strcmp(g->modules[i].path, name) == 0) return true;
    return false;
}

static int output_index(const stx_graph *g, const char *name) {
    for (int i = 0; i < g->n_outputs; i++)
        if (strcmp(g->values[g->outputs[i]].name, name) == 0) return i;
    return -1;
}

stx_status stx__facts_parse(stx_model *m) {
    static const char *const tasks[] = {"clip", "frame", "frame-features", NULL};
    static const char *const layouts[] = {"NCTHW", "NTCHW", "NCHW", "NCT", NULL};
    stx_facts *f = &m->facts;
    stx_model_facts *pub = &f->pub;
    const stx_graph *g = &m->g;
    memset(f, 0, sizeof *f);
    pub->size = sizeof *pub;
    stx_status st = STX_OK;
    const char *v;

    /* Free-form strings: non-empty. */
    static const char *const str_keys[] = {"stx.name", "stx.task", "stx.layout", "stx.target_layer",
                                           "stx.output"};
    const char **str_dst[] = {&pub->name, &pub->task, &pub->layout, &pub->target_layer,
                              &pub->output};
    for (int i = 0; i < 5 && !st; i++) {
        const char *key = str_keys[i];
        if (!(v = stx_model_metadata(m, key))) continue;
        if (!*v) {
            st = bad(m, key, v, "expected a non-empty value");
        } else if (i == 1 && !one_of(v, tasks)) {
            st = bad(m, key, v, "expected clip, frame or frame-features");
        } else if (i == 2 && !one_of(v, layouts)) {
            st = bad(m, key, v, "expected NCTHW, NTCHW, NCHW or NCT");
        } else if (i == 2 && g->n_inputs > 0 && g->values[g->inputs[0]].rank > 0 &&
                   (size_t)g->values[g->inputs[0]].rank != strlen(v)) {
            st = bad(m, key, v, "the input '%s' has rank %d", g->values[g->inputs[0]].name,
                     g->values[g->inputs[0]].rank);
        } else if (i == 3 && !graph_has(g, v)) {
            st = bad(m, key, v, "neither a tensor nor a module of the model");
        } else if (i == 4 && output_index(g, v) < 0) {
            st = bad(m, key, v, "not one of the model's %d graph outputs", g->n_outputs);
        } else {
            *str_dst[i] = v;
        }
    }

    if (!st && (v = stx_model_metadata(m, "stx.classes"))) st = parse_classes(m, "stx.classes", v);

    /* Normalisation: both keys or neither. */
    const char *mv = stx_model_metadata(m, "stx.mean"), *sv = stx_model_metadata(m, "stx.std");
    bool mean_ok = false, std_ok = false;
    if (!st && mv) {
        mean_ok = parse_floats3(mv, pub->mean);
        if (!mean_ok) st = bad(m, "stx.mean", mv, "expected 3 comma-separated numbers");
    }
    if (!st && sv) {
        float s3[3];
        if (!parse_floats3(sv, s3))
            st = bad(m, "stx.std", sv, "expected 3 comma-separated numbers");
        else if (!(s3[0] > 0 && s3[1] > 0 && s3[2] > 0))
            st = bad(m, "stx.std", sv, "every standard deviation must be > 0");
        else {
            std_ok = true;
            memcpy(pub->std, s3, sizeof s3);
        }
    }
    if (!st && mv && !sv) st = bad(m, "stx.std", NULL, "'stx.mean' is given without it");
    if (!st && sv && !mv) st = bad(m, "stx.mean", NULL, "'stx.std' is given without it");
    pub->has_normalization = mean_ok && std_ok;

    if (!st && (v = stx_model_metadata(m, "stx.clip_length"))) {
        if (!parse_ints(v, 0, 1, &pub->clip_length))
            st = bad(m, "stx.clip_length", v, "expected a non-negative integer");
    }
    if (!st && (v = stx_model_metadata(m, "stx.frame_size"))) {
        int hw[2];
        if (!parse_ints(v, 'x', 2, hw) || hw[0] <= 0 || hw[1] <= 0) {
            st = bad(m, "stx.frame_size", v, "expected HxW with positive integers, e.g. 112x112");
        } else {
            pub->frame_height = hw[0];
            pub->frame_width = hw[1];
        }
    }
    if (!st && (v = stx_model_metadata(m, "stx.token_grid"))) {
        int tg[3];
        if (!parse_ints(v, 'x', 3, tg) || tg[0] <= 0 || tg[1] <= 0 || tg[2] <= 0)
            st = bad(m, "stx.token_grid", v, "expected TxHxW with positive integers, e.g. 8x4x4");
        else
            memcpy(pub->token_grid, tg, sizeof tg);
    }
    return st;
}

void stx__facts_free(stx_model *m) {
    stx_facts *f = &m->facts;
    for (int i = 0; i < f->n_errors; i++) stx__free(m->ctx, f->err_msg[i]);
    stx__free(m->ctx, f->class_buf);
    stx__free(m->ctx, f->class_ptrs);
    memset(f, 0, sizeof *f);
}

stx_status stx_model_facts_get(const stx_model *m, stx_model_facts *out) {
    if (!m) return STX_E_INVALID;
    if (!out) return stx__errf(&m->ctx->err, STX_E_INVALID, "stx_model_facts_get: out is NULL");
    *out = m->facts.pub;
    out->size = sizeof *out;
    if (m->facts.n_errors) return stx__errf(&m->ctx->err, STX_E_FORMAT, "%s", m->facts.err_msg[0]);
    return STX_OK;
}

const char *stx_model_facts_error(const stx_model *m, int i, const char **key) {
    if (!m || i < 0 || i >= m->facts.n_errors) return NULL;
    if (key) *key = m->facts.err_key[i];
    return m->facts.err_msg[i];
}

int stx_model_class_index(const stx_model *m, const char *name) {
    if (!m || !name) return -1;
    for (int i = 0; i < m->facts.pub.num_classes; i++)
        if (strcmp(m->facts.class_ptrs[i], name) == 0) return i;
    return -1;
}
