/* registry.c: the operator table and helpers shared by op implementations. */
#include "ops.h"

#include <stdio.h>
#include <string.h>

static const stx_op_def *const *const families[] = {
    stx__ops_elementwise, stx__ops_shape,  stx__ops_reduce, stx__ops_conv,
    stx__ops_pool,        stx__ops_matmul, stx__ops_norm,   stx__ops_rnn,
};

#define STX_MAX_OPS 256
static const stx_op_def *g_table[STX_MAX_OPS];
static int g_count = -1;

static void build_table(void) {
    int n = 0;
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (const stx_op_def *const *p = families[f]; *p; p++) {
            STX_ASSERT(n < STX_MAX_OPS);
            g_table[n++] = *p;
        }
    g_count = n;
}

const stx_op_def *const *stx__op_table(int *count) {
    if (g_count < 0) build_table();
    *count = g_count;
    return g_table;
}

const stx_op_def *stx__op_find(const char *domain, const char *op_type) {
    if (domain && *domain && strcmp(domain, "ai.onnx") != 0) return NULL;
    int n;
    const stx_op_def *const *t = stx__op_table(&n);
    for (int i = 0; i < n; i++)
        if (strcmp(t[i]->name, op_type) == 0) return t[i];
    return NULL;
}

void stx__set_out(stx_op_ctx *c, int i, stx_dtype dt, const int64_t *dims, int rank) {
    STX_ASSERT(i < c->n_out && rank <= STX_MAX_RANK);
    stx_tensor *t = c->out[i];
    if (!t) return;
    t->dtype = dt;
    t->rank = rank;
    for (int k = 0; k < rank; k++) t->dims[k] = dims[k];
}

stx_status stx__node_err(stx_op_ctx *c, stx_status code, const char *fmt, ...) {
    char msg[STX_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return stx__errf(c->err, code, "node '%s' (%s): %s", c->node->name, c->node->op_type, msg);
}

stx_status stx__node_err_n(const stx_node *n, stx_err *e, stx_status code, const char *fmt, ...) {
    char msg[STX_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return stx__errf(e, code, "node '%s' (%s): %s", n->name, n->op_type, msg);
}

stx_status stx__broadcast_shape(stx_op_ctx *c, const int64_t *a, int ra, const int64_t *b, int rb,
                                int64_t *out, int *rout) {
    int r = ra > rb ? ra : rb;
    for (int i = 0; i < r; i++) {
        int64_t da = i < r - ra ? 1 : a[i - (r - ra)];
        int64_t db = i < r - rb ? 1 : b[i - (r - rb)];
        if (da == db || db == 1)
            out[i] = da;
        else if (da == 1)
            out[i] = db;
        else {
            char sa[128], sb[128];
            return stx__node_err(c, STX_E_SHAPE, "shapes %s and %s do not broadcast",
                                 stx__shape_str(a, ra, sa, sizeof sa),
                                 stx__shape_str(b, rb, sb, sizeof sb));
        }
    }
    *rout = r;
    return STX_OK;
}

bool stx__const_ints(const stx_tensor *t, int64_t *v, int max, int *n) {
    if (!t || !t->data || t->rank > 1) return false;
    int64_t cnt = stx__numel(t->dims, t->rank);
    if (cnt > max) return false;
    for (int64_t i = 0; i < cnt; i++) {
        if (t->dtype == STX_DTYPE_INT64)
            v[i] = ((const int64_t *)t->data)[i];
        else if (t->dtype == STX_DTYPE_INT32)
            v[i] = ((const int32_t *)t->data)[i];
        else
            return false;
    }
    *n = (int)cnt;
    return true;
}

bool stx__norm_axis(int64_t axis, int rank, int *out) {
    if (axis < -rank || axis >= rank) return false;
    *out = (int)(axis < 0 ? axis + rank : axis);
    return true;
}
