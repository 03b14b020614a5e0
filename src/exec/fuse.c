/* fuse.c: oneDNN fusion at plan time.
 *
 * Video CNNs spend nearly all their time in chains like Conv -> [BatchNormalization] -> [Add
 * residual] -> [Relu]. Run op by op, each link reads and writes the whole activation again, and
 * each oneDNN convolution reorders its input from the plain N,C,T,H,W layout into a channel-
 * blocked one and its output back. This pass
 *   1. folds every such chain into one oneDNN convolution with post-ops (BatchNorm folded into
 *      the weights and bias, the residual as a binary-add post-op, ReLU as an eltwise post-op);
 *   2. keeps a tensor in oneDNN's channel-blocked layout (nCdhw8c on AVX2, 16c on AVX-512, the
 *      channels padded with zeros to a multiple of the block) when it is produced by a fused
 *      convolution and every reader understands that layout (fused convolutions and
 *      GlobalAveragePool), so activations are never reordered between layers.
 * Tensors that are graph outputs, requested by the caller (`keep`, gradient targets), or read by
 * any other op stay plain; a fused step converts at such boundaries itself, through scratch
 * buffers shared by the whole session (steps run one after another).
 * Backward: the chain's vector-Jacobian product is a ReLU mask, the residual's identity, and
 * oneDNN's convolution backward-data with the folded weights (BatchNorm is affine).
 */
#include "../ops/dnnl_util.h"
#include "../ops/spatial.h"
#include "session.h"

#include <math.h>
#include <string.h>

/* Session-wide scratch of the fused steps: forward boundary conversions use slots 0-2, backward
 * slots 3-5. */
enum { FS_SRC, FS_RES, FS_DST, BS_DZ, BS_DDST, BS_DSRC, FS_N };

typedef struct fused_conv {
    stx_context *ctx;
    stx_session *sess;
    dnnl_primitive_t prim;
    dnnl_stream_t stream;
    dnnl_memory_t src, wei, bias, dst, src1, scratch;
    void *wbuf, *bbuf, *sbuf; /* reordered weights, bias, scratchpad (owned) */
    int has_src1, has_relu;
    /* boundary conversions (prim == NULL when the value already has the primitive's layout) */
    stx_dnnl_reorder rx, rres, ry;
    /* kept for the backward-data primitive (built only when a sweep goes through this step) */
    dnnl_convolution_desc_t fwd_desc;
    dnnl_memory_desc_t wei_md, src_md, dst_md, xval_md, yval_md;
    dnnl_primitive_t bwd;
    dnnl_memory_t bwd_wei, bwd_dsrc, bwd_ddst, bwd_scratch;
    void *bwd_wbuf, *bwd_sbuf;
    stx_conv_geometry geo;              /* for region runs (region.c) */
    stx_dnnl_reorder rdz, rdx, rdx_acc; /* dz -> diff_dst layout; diff_src -> dx (=, +=) */
    /* backward-data computed here instead (few input channels, plain layouts): the weights as
     * a plain (O, C*K) matrix and the column buffer of a slab of output frames */
    float *own_w, *own_col;
    int64_t own_frames;
    /* or as a forward convolution with transposed, flipped weights (stride 1) */
    dnnl_primitive_t flip;
    dnnl_memory_t flip_wei, flip_scratch;
    void *flip_wbuf, *flip_sbuf;
} fused_conv;

typedef struct chain {
    int conv;          /* step index of the Conv */
    int bn, add, relu; /* step indices absorbed, -1 when absent */
    int x, w, b;       /* value indices of the conv inputs (b may be -1) */
    int res;           /* residual value added, -1 when none */
    int out;           /* final output value */
    /* the BatchNormalization absorbed (bn is a stale step index once steps are compacted) */
    const stx_node *bn_node;
} chain;

static int block_size(void) {
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return (isa == dnnl_cpu_isa_avx512_core || isa == dnnl_cpu_isa_avx512_core_vnni ||
            isa == dnnl_cpu_isa_avx512_core_bf16 || isa == dnnl_cpu_isa_avx512_core_amx)
               ? 16
               : 8;
}

static bool is_const(const stx_session *s, int v) {
    return v >= 0 && (s->kind[v] == STX_VK_MODEL_CONST || s->kind[v] == STX_VK_FOLDED);
}

static bool is_op(const stx_step *st, const char *op) {
    return !st->run && strcmp(st->c.node->op_type, op) == 0;
}

/* Steps that read value v (indices into s->steps), up to max; returns the count. */
static int readers(const stx_session *s, int v, int *idx, int max) {
    int n = 0;
    for (int i = 0; i < s->n_steps; i++)
        for (int k = 0; k < s->steps[i].n_vin; k++)
            if (s->steps[i].vin[k] == v) {
                if (n < max) idx[n] = i;
                n++;
                break;
            }
    return n;
}

static bool observable(const stx_session *s, int v) {
    const stx_graph *g = &s->m->g;
    for (int k = 0; k < g->n_outputs; k++)
        if (g->outputs[k] == v) return true;
    return s->keep[v] != 0;
}

/* The single reader of v when v may be absorbed into a chain; -1 otherwise. */
static int sole_reader(const stx_session *s, int v) {
    int idx[2];
    if (observable(s, v) || readers(s, v, idx, 2) != 1) return -1;
    return idx[0];
}

static bool float_tensor(const stx_session *s, int v) {
    return v >= 0 && s->vals[v].dtype == STX_DTYPE_FLOAT;
}

/* Is this Conv step fusable? (float, constant weights and bias, 1-3 spatial dims) */
static bool conv_ok(const stx_session *s, const stx_step *st) {
    const stx_node *n = st->c.node;
    if (!is_op(st, "Conv") || n->n_out != 1 || n->n_in < 2) return false;
    if (stx__rule_for(s, "Conv")) return false; /* a backward rule must see every Conv */
    int x = n->in[0], w = n->in[1], b = n->n_in > 2 ? n->in[2] : -1;
    if (!float_tensor(s, x) || !is_const(s, w) || s->vals[w].dtype != STX_DTYPE_FLOAT) return false;
    if (b >= 0 && (!is_const(s, b) || s->vals[b].dtype != STX_DTYPE_FLOAT)) return false;
    int r = s->vals[x].rank;
    return r >= 3 && r <= 5;
}

static bool bn_ok(const stx_session *s, const stx_step *st) {
    const stx_node *n = st->c.node;
    if (!is_op(st, "BatchNormalization") || n->n_in != 5) return false;
    for (int k = 1; k < 5; k++)
        if (!is_const(s, n->in[k]) || s->vals[n->in[k]].dtype != STX_DTYPE_FLOAT) return false;
    for (int k = 1; k < n->n_out; k++)
        if (n->out[k] >= 0) return false;
    return true;
}

/* Is Add(a, b) with a = v a same-shape residual add? Returns the other operand or -1. */
static int add_other(const stx_session *s, const stx_step *st, int v) {
    const stx_node *n = st->c.node;
    if (!is_op(st, "Add") || n->n_in != 2) return -1;
    int o = n->in[0] == v ? n->in[1] : (n->in[1] == v ? n->in[0] : -1);
    if (o < 0 || o == v || is_const(s, o) || !float_tensor(s, o)) return -1;
    const stx_tensor *a = &s->vals[v], *b = &s->vals[o];
    if (a->rank != b->rank) return -1;
    for (int k = 0; k < a->rank; k++)
        if (a->dims[k] != b->dims[k]) return -1;
    return o;
}

/* ---- layouts and scratch -------------------------------------------------------------------- */

/* Memory descriptor of value v in its planned layout. In bf16 sessions the "blocked" values
 * between fused convolutions are bfloat16, channels last (the layout oneDNN's AMX kernels read
 * and write, so no conversion runs between layers). */
static dnnl_status_t planned_md(const stx_session *s, int v, dnnl_data_type_t cl_type,
                                dnnl_memory_desc_t *md) {
    const stx_tensor *t = &s->vals[v];
    int blk = s->blocked[v];
    if (!blk) return stx__dnnl_md_plain(md, t->dims, t->rank, dnnl_f32);
    if (s->bf16) {
        static const dnnl_format_tag_t cl[6] = {0, 0, 0, dnnl_acb, dnnl_acdb, dnnl_acdeb};
        if (t->rank < 3 || t->rank > 5) return dnnl_unimplemented;
        dnnl_dims_t d;
        for (int k = 0; k < t->rank; k++) d[k] = t->dims[k];
        return dnnl_memory_desc_init_by_tag(md, t->rank, d, cl_type, cl[t->rank]);
    }
    return stx__dnnl_md_blocked(md, t->dims, t->rank, blk);
}

static dnnl_status_t value_md(const stx_session *s, int v, dnnl_memory_desc_t *md) {
    return planned_md(s, v, dnnl_bf16, md);
}

/* Memory descriptor of the gradient of value v: the value's, except that in bf16 sessions
 * the gradients of bfloat16 activations are float32 (same channels-last order). */
static dnnl_status_t grad_md(const stx_session *s, int v, dnnl_memory_desc_t *md) {
    return planned_md(s, v, dnnl_f32, md);
}

static bool md_equal(const dnnl_memory_desc_t *a, const dnnl_memory_desc_t *b) {
    return dnnl_memory_desc_equal(a, b) != 0;
}

static void *fscratch(stx_session *s, int slot) {
    return s->fscratch[slot];
}

static void need_scratch(stx_session *s, int slot, size_t n) {
    if (n > s->fscratch_size[slot]) s->fscratch_size[slot] = n;
}

/* Allocates the shared scratch once every step has said what it needs. */
static stx_status alloc_scratch(stx_session *s) {
    for (int k = 0; k < FS_N; k++) {
        if (s->fscratch_size[k] <= s->fscratch_alloc[k]) continue;
        stx__free(s->ctx, s->fscratch[k]);
        s->fscratch_alloc[k] = 0;
        s->fscratch[k] = stx__calloc(s->ctx, 1, s->fscratch_size[k]);
        if (!s->fscratch[k])
            return stx__errf(&s->err, STX_E_NOMEM, "out of memory for %zu bytes of scratch",
                             s->fscratch_size[k]);
        s->fscratch_alloc[k] = s->fscratch_size[k];
    }
    return STX_OK;
}

/* A reorder between two descriptors, or nothing when they are equal. */
static dnnl_status_t maybe_reorder(stx_dnnl_reorder *r, const dnnl_memory_desc_t *from,
                                   const dnnl_memory_desc_t *to) {
    if (md_equal(from, to)) return dnnl_success;
    return stx__dnnl_reorder_init(r, from, to);
}

/* A reorder that accumulates into its destination (dst += reorder(src)). */
static dnnl_status_t accumulate_reorder(stx_dnnl_reorder *r, const dnnl_memory_desc_t *from,
                                        const dnnl_memory_desc_t *to) {
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_engine_t e = stx__dnnl_engine();
    dnnl_status_t st = dnnl_primitive_attr_create(&attr);
    if (st == dnnl_success) st = dnnl_post_ops_create(&po);
    if (st == dnnl_success) st = dnnl_post_ops_append_sum(po, 1.0f);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(attr, po);
    if (st == dnnl_success) st = dnnl_reorder_primitive_desc_create(&pd, from, e, to, e, attr);
    if (st == dnnl_success) st = dnnl_primitive_create(&r->prim, pd);
    if (st == dnnl_success) st = stx__dnnl_memory(&r->from, from, NULL);
    if (st == dnnl_success) st = stx__dnnl_memory(&r->to, to, NULL);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

/* ---- the fused convolution step ----------------------------------------------------------- */

static void fused_conv_free(void *p) {
    fused_conv *f = p;
    if (!f) return;
    if (f->prim) dnnl_primitive_destroy(f->prim);
    if (f->bwd) dnnl_primitive_destroy(f->bwd);
    if (f->stream) dnnl_stream_destroy(f->stream);
    dnnl_memory_t mems[] = {f->src,     f->wei,     f->bias,     f->dst,      f->src1,
                            f->scratch, f->bwd_wei, f->bwd_dsrc, f->bwd_ddst, f->bwd_scratch};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    stx_dnnl_reorder *rs[] = {&f->rx, &f->rres, &f->ry, &f->rdz, &f->rdx, &f->rdx_acc};
    for (size_t i = 0; i < sizeof rs / sizeof rs[0]; i++) stx__dnnl_reorder_free(rs[i]);
    stx__free(f->ctx, f->wbuf);
    stx__free(f->ctx, f->bbuf);
    stx__free(f->ctx, f->sbuf);
    stx__free(f->ctx, f->bwd_wbuf);
    stx__free(f->ctx, f->bwd_sbuf);
    stx__free(f->ctx, f->own_w);
    stx__free(f->ctx, f->own_col);
    if (f->flip) dnnl_primitive_destroy(f->flip);
    if (f->flip_wei) dnnl_memory_destroy(f->flip_wei);
    if (f->flip_scratch) dnnl_memory_destroy(f->flip_scratch);
    stx__free(f->ctx, f->flip_wbuf);
    stx__free(f->ctx, f->flip_sbuf);
    stx__free(f->ctx, f);
}

static stx_status fused_conv_run(stx_step *st) {
    fused_conv *f = st->state;
    stx_session *s = f->sess;
    stx_tensor *x = st->c.in[0], *res = st->c.in[1], *y = st->c.out[0];
    dnnl_status_t ds = dnnl_success;
    void *src = x->data, *src1 = res ? res->data : NULL, *dst = y->data;
    if (f->rx.prim) {
        src = fscratch(s, FS_SRC);
        ds = stx__dnnl_reorder_run(&f->rx, f->stream, x->data, src);
    }
    if (ds == dnnl_success && f->rres.prim) {
        src1 = fscratch(s, FS_RES);
        ds = stx__dnnl_reorder_run(&f->rres, f->stream, res->data, src1);
    }
    if (f->ry.prim) dst = fscratch(s, FS_DST);
    dnnl_memory_set_data_handle(f->src, src);
    dnnl_memory_set_data_handle(f->dst, dst);
    if (f->has_src1) dnnl_memory_set_data_handle(f->src1, src1);
    dnnl_exec_arg_t args[8];
    int na = 0;
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, f->src};
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, f->wei};
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, f->bias};
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, f->dst};
    if (f->scratch) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, f->scratch};
    if (f->has_src1)
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, f->src1};
    if (ds == dnnl_success) ds = dnnl_primitive_execute(f->prim, f->stream, na, args);
    if (ds == dnnl_success && f->ry.prim)
        ds = stx__dnnl_reorder_run(&f->ry, f->stream, dst, y->data);
    if (ds == dnnl_success) ds = dnnl_stream_wait(f->stream);
    if (ds != dnnl_success) return stx__dnnl_err(&st->c, ds, "fused convolution execute");
    return STX_OK;
}

/* Builds the oneDNN primitive for a chain; weights folded with BatchNorm when present. The
 * destination is always channel-blocked (the fast kernels' layout); the source is the input
 * value's layout when blocked, else whatever the primitive prefers. */
static stx_status build_fused_conv(stx_session *s, const chain *ch, stx_step *st) {
    stx_op_ctx *c = &st->c;
    const stx_node *n = c->node;
    stx_context *ctx = s->ctx;
    const stx_tensor *X = &s->vals[ch->x], *W = &s->vals[ch->w], *Y = &s->vals[ch->out];
    const stx_tensor *B = ch->b >= 0 ? &s->vals[ch->b] : NULL;
    int nd = X->rank - 2;
    int64_t group = stx__attr_int(n, "group", 1);
    int64_t M = W->dims[0], Cg = W->dims[1];
    int64_t kvol = 1;
    for (int k = 2; k < W->rank; k++) kvol *= W->dims[k];
    if (W->rank != X->rank || group < 1 || M % group != 0 || Cg * group != X->dims[1])
        return stx__node_err(c, STX_E_SHAPE, "weights %lld x %lld do not match input channels",
                             (long long)M, (long long)Cg);
    /* geometry: strides, dilations (oneDNN counts dilation - 1), left pads from the attributes,
     * right pads from the inferred output size */
    dnnl_dims_t strides, dil, pl, pr;
    const int64_t *a;
    int autopad = parse_auto_pad(stx__attr_str(n, "auto_pad", "NOTSET"));
    for (int k = 0; k < nd; k++) {
        strides[k] = 1;
        dil[k] = 0;
        pl[k] = 0;
    }
    if (stx__attr_ints(n, "strides", &a) == nd)
        for (int k = 0; k < nd; k++) strides[k] = a[k];
    if (stx__attr_ints(n, "dilations", &a) == nd)
        for (int k = 0; k < nd; k++) dil[k] = a[k] - 1;
    for (int k = 0; k < nd; k++) {
        int64_t in = X->dims[2 + k], out = Y->dims[2 + k], ks = W->dims[2 + k];
        int64_t ext = (ks - 1) * (dil[k] + 1) + 1;
        int64_t total = (out - 1) * strides[k] + ext - in;
        if (autopad == PAD_SAME_UPPER)
            pl[k] = total > 0 ? total / 2 : 0;
        else if (autopad == PAD_SAME_LOWER)
            pl[k] = total > 0 ? total - total / 2 : 0;
        else if (autopad == PAD_VALID)
            pl[k] = 0;
        else if (stx__attr_ints(n, "pads", &a) == 2 * nd)
            pl[k] = a[k];
        /* smallest right pad giving the inferred size (oneDNN divides with floor too) */
        pr[k] = total - pl[k] > 0 ? total - pl[k] : 0;
    }
    /* folded weights and bias (BatchNorm: w' = w * g / sqrt(v + eps), b' = (b - m) * s + beta) */
    size_t wn = (size_t)stx__numel(W->dims, W->rank);
    float *w = stx__malloc(ctx, wn * sizeof(float));
    float *bias = stx__calloc(ctx, (size_t)M, sizeof(float));
    fused_conv *f = stx__calloc(ctx, 1, sizeof *f);
    if (!w || !bias || !f) {
        stx__free(ctx, w);
        stx__free(ctx, bias);
        stx__free(ctx, f);
        return stx__errf(&s->err, STX_E_NOMEM, "out of memory");
    }
    f->ctx = ctx;
    f->sess = s;
    memcpy(w, W->data, wn * sizeof(float));
    if (B) memcpy(bias, B->data, (size_t)M * sizeof(float));
    if (ch->bn >= 0) {
        const stx_node *bn = ch->bn_node;
        const float *g = s->vals[bn->in[1]].data, *be = s->vals[bn->in[2]].data;
        const float *mu = s->vals[bn->in[3]].data, *var = s->vals[bn->in[4]].data;
        float eps = stx__attr_float(bn, "epsilon", 1e-5f);
        for (int64_t o = 0; o < M; o++) {
            float sc = g[o] / sqrtf(var[o] + eps);
            for (int64_t i = 0; i < Cg * kvol; i++) w[o * Cg * kvol + i] *= sc;
            bias[o] = (bias[o] - mu[o]) * sc + be[o];
        }
    }
    stx_status status = STX_OK;
    stx_dnnl_fail fail = {dnnl_success, NULL};
    dnnl_memory_desc_t src_md, dst_md, wei_md, wei_user_md, bias_md, res_val_md;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_convolution_desc_t cd;
    stx_dnnl_reorder wr = {0};
    STX_DNNL_TRY(&fail, "source descriptor", value_md(s, ch->x, &f->xval_md));
    STX_DNNL_TRY(&fail, "destination descriptor", value_md(s, ch->out, &f->yval_md));
    /* bf16 sessions: a convolution inside a chain of fused ones (reading and writing the
     * bfloat16 activations between them) runs in bfloat16 with fp32 accumulation, bias and
     * residual. The first one (reading the pixels, fp32) and the last one (writing an fp32
     * value for other ops) stay fp32: rounding every input voxel, or the head's output, to 8
     * significant bits is most of bfloat16's error on the maps, and those layers are a few
     * percent of the work. */
    dnnl_data_type_t cdt =
        s->bf16 && s->blocked[ch->x] && s->blocked[ch->out] ? dnnl_bf16 : dnnl_f32;
    if (s->blocked[ch->x] && (cdt == dnnl_bf16 || !s->bf16))
        src_md = f->xval_md;
    else
        STX_DNNL_TRY(&fail, "source descriptor", stx__dnnl_md_any(&src_md, X->dims, X->rank, cdt));
    if (!s->bf16)
        STX_DNNL_TRY(&fail, "destination descriptor",
                     stx__dnnl_md_blocked(&dst_md, Y->dims, Y->rank, s->block));
    else if (s->blocked[ch->out] && cdt == dnnl_bf16)
        dst_md = f->yval_md;
    else /* fp32 in the primitive's layout, converted to the value's (bf16 or plain) */
        STX_DNNL_TRY(&fail, "destination descriptor",
                     stx__dnnl_md_any(&dst_md, Y->dims, Y->rank, dnnl_f32));
    {
        dnnl_dims_t wd;
        int wr_rank;
        if (group > 1) {
            wd[0] = group;
            wd[1] = M / group;
            wd[2] = Cg;
            for (int k = 0; k < nd; k++) wd[3 + k] = W->dims[2 + k];
            wr_rank = nd + 3;
        } else {
            for (int k = 0; k < W->rank; k++) wd[k] = W->dims[k];
            wr_rank = W->rank;
        }
        STX_DNNL_TRY(&fail, "weights descriptor",
                     dnnl_memory_desc_init_by_tag(&wei_md, wr_rank, wd, cdt, dnnl_format_tag_any));
        int64_t wdims[STX_MAX_RANK];
        for (int k = 0; k < wr_rank; k++) wdims[k] = wd[k];
        STX_DNNL_TRY(&fail, "weights descriptor",
                     stx__dnnl_md_plain(&wei_user_md, wdims, wr_rank, dnnl_f32));
        int64_t bd[1] = {M};
        STX_DNNL_TRY(&fail, "bias descriptor", stx__dnnl_md_plain(&bias_md, bd, 1, dnnl_f32));
    }
    STX_DNNL_TRY(&fail, "convolution descriptor",
                 dnnl_dilated_convolution_forward_desc_init(
                     &cd, dnnl_forward_inference, dnnl_convolution_direct, &src_md, &wei_md,
                     &bias_md, &dst_md, strides, dil, pl, pr));
    STX_DNNL_TRY(&fail, "attributes", dnnl_primitive_attr_create(&attr));
    STX_DNNL_TRY(&fail, "scratchpad mode",
                 dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    STX_DNNL_TRY(&fail, "post-ops", dnnl_post_ops_create(&po));
    if (ch->res >= 0) {
        /* the residual is read in the destination's layout */
        STX_DNNL_TRY(&fail, "binary post-op",
                     dnnl_post_ops_append_binary(po, dnnl_binary_add, &dst_md));
        f->has_src1 = 1;
    }
    f->has_relu = ch->relu >= 0;
    if (f->has_relu)
        STX_DNNL_TRY(&fail, "eltwise post-op",
                     dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
    STX_DNNL_TRY(&fail, "post-ops", dnnl_primitive_attr_set_post_ops(attr, po));
    STX_DNNL_TRY(&fail, "convolution primitive descriptor",
                 dnnl_primitive_desc_create(&pd, &cd, attr, stx__dnnl_engine(), NULL));
    STX_DNNL_TRY(&fail, "convolution primitive", dnnl_primitive_create(&f->prim, pd));
    STX_DNNL_TRY(&fail, "stream", stx__dnnl_stream_create(&f->stream));
    f->fwd_desc = cd;
    f->geo.nd = nd;
    f->geo.has_res = ch->res >= 0;
    for (int k = 0; k < nd; k++) {
        f->geo.k[k] = W->dims[2 + k];
        f->geo.s[k] = strides[k];
        f->geo.d[k] = dil[k] + 1;
        f->geo.p[k] = pl[k];
    }
    f->geo.group = group;
    f->src_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    f->dst_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    f->fwd_desc.src_desc = f->src_md;
    {
        const dnnl_memory_desc_t *chosen_w =
            dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        const dnnl_memory_desc_t *sp =
            dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        size_t wsz = dnnl_memory_desc_get_size(chosen_w);
        f->wei_md = *chosen_w;
        f->wbuf = stx__malloc(ctx, wsz ? wsz : 64);
        f->bbuf = bias;
        bias = NULL;
        size_t ssz = sp ? dnnl_memory_desc_get_size(sp) : 0;
        if (ssz) f->sbuf = stx__malloc(ctx, ssz);
        if (!f->wbuf || (ssz && !f->sbuf)) {
            status = stx__errf(&s->err, STX_E_NOMEM, "out of memory for convolution weights");
            goto done;
        }
        STX_DNNL_TRY(&fail, "weights memory", stx__dnnl_memory(&f->wei, chosen_w, f->wbuf));
        STX_DNNL_TRY(&fail, "bias memory", stx__dnnl_memory(&f->bias, &bias_md, f->bbuf));
        if (ssz)
            STX_DNNL_TRY(&fail, "scratchpad memory", stx__dnnl_memory(&f->scratch, sp, f->sbuf));
        STX_DNNL_TRY(&fail, "source memory", stx__dnnl_memory(&f->src, &f->src_md, NULL));
        STX_DNNL_TRY(&fail, "destination memory", stx__dnnl_memory(&f->dst, &f->dst_md, NULL));
        if (f->has_src1)
            STX_DNNL_TRY(&fail, "residual memory", stx__dnnl_memory(&f->src1, &f->dst_md, NULL));
        /* weights: plain -> the layout the primitive chose, once */
        STX_DNNL_TRY(&fail, "weights reorder", stx__dnnl_reorder_init(&wr, &wei_user_md, chosen_w));
        STX_DNNL_TRY(&fail, "weights reorder", stx__dnnl_reorder_run(&wr, f->stream, w, f->wbuf));
        STX_DNNL_TRY(&fail, "weights reorder", dnnl_stream_wait(f->stream));
    }
    /* boundary conversions */
    STX_DNNL_TRY(&fail, "source reorder", maybe_reorder(&f->rx, &f->xval_md, &f->src_md));
    if (f->rx.prim) need_scratch(s, FS_SRC, dnnl_memory_desc_get_size(&f->src_md));
    if (f->has_src1) {
        STX_DNNL_TRY(&fail, "residual descriptor", value_md(s, ch->res, &res_val_md));
        STX_DNNL_TRY(&fail, "residual reorder", maybe_reorder(&f->rres, &res_val_md, &f->dst_md));
        if (f->rres.prim) need_scratch(s, FS_RES, dnnl_memory_desc_get_size(&f->dst_md));
    }
    STX_DNNL_TRY(&fail, "destination reorder", maybe_reorder(&f->ry, &f->dst_md, &f->yval_md));
    if (f->ry.prim) need_scratch(s, FS_DST, dnnl_memory_desc_get_size(&f->dst_md));
    st->state = f;
    st->run = fused_conv_run;
    st->release = fused_conv_free;
    f = NULL;
    goto done;
dnnl_fail:
    status = stx__dnnl_err(c, fail.status, fail.what);
done:
    stx__dnnl_reorder_free(&wr);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    stx__free(ctx, w);
    stx__free(ctx, bias);
    fused_conv_free(f);
    return status;
}

/* ---- the same convolution on crops (region runs, region.c) ------------------------------- */

bool stx__fused_conv_geometry(const stx_step *st, stx_conv_geometry *g) {
    if (st->run != fused_conv_run) return false;
    *g = ((const fused_conv *)st->state)->geo;
    return true;
}

typedef struct conv_crop {
    stx_context *ctx;
    dnnl_primitive_t prim;
    dnnl_stream_t stream;
    dnnl_memory_t src, wei, bias, dst, src1, scratch;
    void *wbuf, *sbuf; /* owned: weights reordered for this primitive (or NULL), scratchpad */
    int has_src1;
} conv_crop;

void stx__fused_conv_crop_free(void *p) {
    conv_crop *k = p;
    if (!k) return;
    if (k->prim) dnnl_primitive_destroy(k->prim);
    if (k->stream) dnnl_stream_destroy(k->stream);
    dnnl_memory_t mems[] = {k->src, k->wei, k->bias, k->dst, k->src1, k->scratch};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    stx__free(k->ctx, k->wbuf);
    stx__free(k->ctx, k->sbuf);
    stx__free(k->ctx, k);
}

/* Descriptor of value v's layout with other dimensions (a crop of it). */
static dnnl_status_t crop_md(const stx_session *s, int v, const int64_t *dims,
                             dnnl_memory_desc_t *md) {
    const stx_tensor *t = &s->vals[v];
    if (!s->blocked[v]) return stx__dnnl_md_plain(md, dims, t->rank, dnnl_f32);
    return stx__dnnl_md_blocked(md, dims, t->rank, s->blocked[v]);
}

stx_status stx__fused_conv_crop_create(stx_session *s, const stx_step *st, const int64_t *src_dims,
                                       const int64_t *dst_dims, void **out) {
    *out = NULL;
    if (st->run != fused_conv_run || s->bf16) return STX_E_UNSUPPORTED;
    const fused_conv *f = st->state;
    int nd = f->geo.nd;
    stx_dnnl_fail fail = {dnnl_success, NULL};
    stx_status status = STX_OK;
    dnnl_memory_desc_t src_md, dst_md, bias_md, wany;
    dnnl_convolution_desc_t cd;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    stx_dnnl_reorder wr = {0};
    conv_crop *k = stx__calloc(s->ctx, 1, sizeof *k);
    if (!k) return stx__errf(&s->err, STX_E_NOMEM, "out of memory");
    k->ctx = s->ctx;
    k->has_src1 = f->has_src1;
    dnnl_dims_t strides, dil, pad0;
    for (int a = 0; a < nd; a++) {
        strides[a] = f->geo.s[a];
        dil[a] = f->geo.d[a] - 1;
        pad0[a] = 0;
    }
    int64_t bd[1] = {f->wei_md.dims[0] * (f->geo.group > 1 ? f->wei_md.dims[1] : 1)};
    STX_DNNL_TRY(&fail, "crop source", crop_md(s, st->vin[0], src_dims, &src_md));
    STX_DNNL_TRY(&fail, "crop destination", crop_md(s, st->vout[0], dst_dims, &dst_md));
    STX_DNNL_TRY(&fail, "bias descriptor", stx__dnnl_md_plain(&bias_md, bd, 1, dnnl_f32));
    STX_DNNL_TRY(&fail, "attributes", dnnl_primitive_attr_create(&attr));
    STX_DNNL_TRY(&fail, "scratchpad mode",
                 dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    STX_DNNL_TRY(&fail, "post-ops", dnnl_post_ops_create(&po));
    if (f->has_src1)
        STX_DNNL_TRY(&fail, "binary post-op",
                     dnnl_post_ops_append_binary(po, dnnl_binary_add, &dst_md));
    if (f->has_relu)
        STX_DNNL_TRY(&fail, "eltwise post-op",
                     dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
    STX_DNNL_TRY(&fail, "post-ops", dnnl_primitive_attr_set_post_ops(attr, po));
    /* the full primitive's weights layout first (no copy); else whatever this one prefers */
    for (int pass = 0; pass < 2 && !pd; pass++) {
        wany = f->wei_md;
        if (pass) wany.format_kind = dnnl_format_kind_any;
        STX_DNNL_TRY(&fail, "crop convolution descriptor",
                     dnnl_dilated_convolution_forward_desc_init(
                         &cd, dnnl_forward_inference, dnnl_convolution_direct, &src_md, &wany,
                         &bias_md, &dst_md, strides, dil, pad0, pad0));
        dnnl_status_t ds = dnnl_primitive_desc_create(&pd, &cd, attr, stx__dnnl_engine(), NULL);
        if (ds != dnnl_success) {
            pd = NULL;
            if (pass) STX_DNNL_TRY(&fail, "crop convolution primitive descriptor", ds);
        }
    }
    STX_DNNL_TRY(&fail, "crop convolution primitive", dnnl_primitive_create(&k->prim, pd));
    STX_DNNL_TRY(&fail, "stream", stx__dnnl_stream_create(&k->stream));
    {
        const dnnl_memory_desc_t *w = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        const dnnl_memory_desc_t *sp =
            dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        void *wdata = f->wbuf;
        if (!dnnl_memory_desc_equal(w, &f->wei_md)) {
            k->wbuf = stx__malloc(s->ctx, dnnl_memory_desc_get_size(w));
            if (!k->wbuf) goto nomem;
            STX_DNNL_TRY(&fail, "weights reorder", stx__dnnl_reorder_init(&wr, &f->wei_md, w));
            STX_DNNL_TRY(&fail, "weights reorder",
                         stx__dnnl_reorder_run(&wr, k->stream, f->wbuf, k->wbuf));
            STX_DNNL_TRY(&fail, "weights reorder", dnnl_stream_wait(k->stream));
            wdata = k->wbuf;
        }
        size_t ssz = sp ? dnnl_memory_desc_get_size(sp) : 0;
        if (ssz && !(k->sbuf = stx__malloc(s->ctx, ssz))) goto nomem;
        STX_DNNL_TRY(&fail, "weights memory", stx__dnnl_memory(&k->wei, w, wdata));
        STX_DNNL_TRY(&fail, "bias memory", stx__dnnl_memory(&k->bias, &bias_md, f->bbuf));
        if (ssz) STX_DNNL_TRY(&fail, "scratchpad", stx__dnnl_memory(&k->scratch, sp, k->sbuf));
        STX_DNNL_TRY(&fail, "source memory", stx__dnnl_memory(&k->src, &src_md, NULL));
        STX_DNNL_TRY(&fail, "destination memory", stx__dnnl_memory(&k->dst, &dst_md, NULL));
        if (f->has_src1)
            STX_DNNL_TRY(&fail, "residual memory", stx__dnnl_memory(&k->src1, &dst_md, NULL));
    }
    *out = k;
    k = NULL;
    goto done;
nomem:
    status = stx__errf(&s->err, STX_E_NOMEM, "out of memory for a crop convolution");
    goto done;
dnnl_fail:
    status = fail.status == dnnl_unimplemented
                 ? STX_E_UNSUPPORTED
                 : stx__errf(&s->err, STX_E_INTERNAL, "node '%s': oneDNN %s failed",
                             st->c.node->name, fail.what);
done:
    stx__dnnl_reorder_free(&wr);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    stx__fused_conv_crop_free(k);
    return status;
}

stx_status stx__fused_conv_crop_run(void *crop, const void *src, const void *res, void *dst) {
    conv_crop *k = crop;
    dnnl_memory_set_data_handle(k->src, (void *)src);
    dnnl_memory_set_data_handle(k->dst, dst);
    if (k->has_src1) dnnl_memory_set_data_handle(k->src1, (void *)res);
    dnnl_exec_arg_t args[8];
    int na = 0;
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, k->src};
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, k->wei};
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, k->bias};
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, k->dst};
    if (k->scratch) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, k->scratch};
    if (k->has_src1)
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, k->src1};
    dnnl_status_t ds = dnnl_primitive_execute(k->prim, k->stream, na, args);
    if (ds == dnnl_success) ds = dnnl_stream_wait(k->stream);
    return ds == dnnl_success ? STX_OK : STX_E_INTERNAL;
}

/* ---- GlobalAveragePool reading a blocked tensor ---------------------------------------------- */

static stx_status gap_blocked_run(stx_step *st) {
    const stx_tensor *x = st->c.in[0];
    stx_tensor *y = st->c.out[0];
    int blk = (int)(intptr_t)st->state;
    int64_t N = x->dims[0], C = x->dims[1], S = 1;
    for (int k = 2; k < x->rank; k++) S *= x->dims[k];
    const float *xp = x->data;
    float *yp = y->data;
    if (st->sess->bf16) {
        /* bfloat16, layout n, spatial, c: each channel summed in double, fixed order */
        const uint16_t *xb = x->data;
#pragma omp parallel for collapse(2) schedule(static)
        for (int64_t n = 0; n < N; n++)
            for (int64_t ch = 0; ch < C; ch++) {
                double acc = 0;
                const uint16_t *p = xb + n * S * C + ch;
                for (int64_t i = 0; i < S; i++) {
                    uint32_t bits = (uint32_t)p[i * C] << 16;
                    float v;
                    memcpy(&v, &bits, sizeof v);
                    acc += v;
                }
                yp[n * C + ch] = (float)(acc / (double)S);
            }
        return STX_OK;
    }
    int64_t CB = (C + blk - 1) / blk;
    /* layout n, cb, spatial, c-in-block: accumulate each block's lanes in double, fixed order */
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t cb = 0; cb < CB; cb++) {
            double acc[16] = {0};
            const float *p = xp + (n * CB + cb) * S * blk;
            for (int64_t i = 0; i < S; i++)
                for (int l = 0; l < blk; l++) acc[l] += p[i * blk + l];
            for (int l = 0; l < blk && cb * blk + l < C; l++)
                yp[n * C + cb * blk + l] = (float)(acc[l] / (double)S);
        }
    return STX_OK;
}

/* ---- backward of fused steps ------------------------------------------------------------------
 */

bool stx__is_fused_conv(const stx_step *st) {
    return st->run == fused_conv_run;
}
bool stx__is_gap_blocked(const stx_step *st) {
    return st->run == gap_blocked_run;
}

/* oneDNN 2.6 computes the backward-data of a convolution with few input channels (a video
 * model's first layer, reading RGB) with a GEMM kernel at a few GMAC/s: 3.6 s of R3D-18's stem
 * for 8 clips against 1.1 s for a layer with 4x its MACs. For such layers (at most 4 input
 * channels, one group, plain diff layouts) stx computes it itself: per sample and slab of output
 * frames, col = W^T dY (dnnl_sgemm, C*K x P), then col2im (scatter-add, one colour per thread). */
static stx_status own_bwd_prepare(stx_session *s, stx_step *st, fused_conv *f,
                                  const_dnnl_primitive_desc_t pd, const dnnl_memory_desc_t *dsrc,
                                  const dnnl_memory_desc_t *ddst) {
    const stx_tensor *X = st->c.in[0], *Y = st->c.out[0];
    dnnl_memory_desc_t px, py, pw;
    if (!strstr(stx__dnnl_impl_name(pd), "gemm") || f->geo.group != 1 || X->dims[1] > 4 ||
        f->geo.nd < 1 || f->geo.nd > 3 || f->wei_md.ndims != X->rank)
        return STX_OK;
    if (stx__dnnl_md_plain(&px, X->dims, X->rank, dnnl_f32) != dnnl_success ||
        stx__dnnl_md_plain(&py, Y->dims, Y->rank, dnnl_f32) != dnnl_success ||
        stx__dnnl_md_plain(&pw, f->wei_md.dims, f->wei_md.ndims, dnnl_f32) != dnnl_success ||
        !dnnl_memory_desc_equal(dsrc, &px) || !dnnl_memory_desc_equal(ddst, &py))
        return STX_OK;
    int64_t CK = 1;
    for (int k = 1; k < f->wei_md.ndims; k++) CK *= f->wei_md.dims[k];
    /* slabs of output frames (3-D) or the whole output plane (1-D, 2-D) */
    int64_t D = Y->rank == 5 ? Y->dims[2] : 1, cap = ((int64_t)8 << 20) / CK;
    int64_t OHW = stx__numel(Y->dims + (Y->rank == 5 ? 3 : 2), Y->rank == 5 ? 2 : Y->rank - 2);
    f->own_frames = cap / OHW < 1 ? 1 : cap / OHW > D ? D : cap / OHW;
    f->own_w = stx__malloc(s->ctx, sizeof(float) * (size_t)(Y->dims[1] * CK));
    f->own_col = stx__malloc(s->ctx, sizeof(float) * (size_t)(CK * f->own_frames * OHW));
    if (!f->own_w || !f->own_col) {
        stx__free(s->ctx, f->own_w);
        stx__free(s->ctx, f->own_col);
        f->own_w = f->own_col = NULL;
        return stx__errf(&s->err, STX_E_NOMEM, "out of memory for a convolution's backward");
    }
    stx_dnnl_reorder wr = {0};
    dnnl_status_t ds = stx__dnnl_reorder_init(&wr, &f->wei_md, &pw);
    if (ds == dnnl_success) ds = stx__dnnl_reorder_run(&wr, f->stream, f->wbuf, f->own_w);
    if (ds == dnnl_success) ds = dnnl_stream_wait(f->stream);
    stx__dnnl_reorder_free(&wr);
    if (ds != dnnl_success) return stx__dnnl_err(&st->c, ds, "weights reorder");
    return STX_OK;
}

/* dx (plain N, C, spatial) = the convolution's backward-data of dy (plain N, O, spatial). */
static dnnl_status_t own_bwd_run(const fused_conv *f, const stx_tensor *X, const stx_tensor *Y,
                                 const float *dy, float *dx) {
    const stx_conv_geometry *g = &f->geo;
    int nd = g->nd, o3 = 3 - nd;
    int64_t in[3] = {1, 1, 1}, out[3] = {1, 1, 1}, k[3] = {1, 1, 1}, sd[3] = {1, 1, 1},
            dl[3] = {1, 1, 1}, pd[3] = {0, 0, 0};
    for (int a = 0; a < nd; a++) {
        in[o3 + a] = X->dims[2 + a];
        out[o3 + a] = Y->dims[2 + a];
        k[o3 + a] = g->k[a];
        sd[o3 + a] = g->s[a];
        dl[o3 + a] = g->d[a];
        pd[o3 + a] = g->p[a];
    }
    const int64_t N = X->dims[0], C = X->dims[1], O = Y->dims[1], K = k[0] * k[1] * k[2];
    const int64_t CK = C * K, OHW = out[1] * out[2], OS = out[0] * OHW, IS = in[0] * in[1] * in[2];
    memset(dx, 0, sizeof(float) * (size_t)(N * C * IS));
    float *col = f->own_col;
    for (int64_t n = 0; n < N; n++)
        for (int64_t o0 = 0; o0 < out[0]; o0 += f->own_frames) {
            int64_t nr = out[0] - o0 < f->own_frames ? out[0] - o0 : f->own_frames, P = nr * OHW;
            dnnl_status_t ds = dnnl_sgemm('T', 'N', CK, P, O, 1.0f, f->own_w, CK,
                                          dy + n * O * OS + o0 * OHW, OS, 0.0f, col, P);
            if (ds != dnnl_success) return ds;
#pragma omp parallel for schedule(static)
            for (int64_t c = 0; c < C; c++)
                for (int64_t kk = 0; kk < K; kk++) {
                    int64_t kd = kk / (k[1] * k[2]), kh = kk / k[2] % k[1], kw = kk % k[2];
                    const float *row = col + (c * K + kk) * P;
                    for (int64_t t = 0; t < nr; t++) {
                        int64_t id = (o0 + t) * sd[0] - pd[0] + kd * dl[0];
                        if (id < 0 || id >= in[0]) continue;
                        for (int64_t oh = 0; oh < out[1]; oh++) {
                            int64_t ih = oh * sd[1] - pd[1] + kh * dl[1];
                            if (ih < 0 || ih >= in[1]) continue;
                            float *dst =
                                dx + ((n * C + c) * in[0] + id) * in[1] * in[2] + ih * in[2];
                            const float *src = row + (t * out[1] + oh) * out[2];
                            for (int64_t ow = 0; ow < out[2]; ow++) {
                                int64_t iw = ow * sd[2] - pd[2] + kw * dl[2];
                                if (iw >= 0 && iw < in[2]) dst[iw] += src[ow];
                            }
                        }
                    }
                }
        }
    return dnnl_success;
}

/* oneDNN 2.6's backward-data kernels for 3-D convolutions run 20-40 % slower than its forward
 * kernels on the same shape (R3D-18's 64-channel layers: 0.61-0.71 s against 0.51 s for 8
 * clips). A stride-1 convolution's backward-data is itself a forward convolution: of d y with
 * the weights transposed (input and output channels swapped) and flipped in space, padded by
 * (k - 1) * dilation - pad on each side. When oneDNN has a JIT forward kernel for that, it is
 * used instead (same layouts as the backward primitive's). */
static stx_status flip_bwd_prepare(stx_session *s, stx_step *st, fused_conv *f,
                                   const dnnl_memory_desc_t *dsrc, const dnnl_memory_desc_t *ddst) {
    const dnnl_convolution_desc_t *fd = &f->fwd_desc;
    int nd = f->geo.nd;
    if (f->own_w || f->geo.group != 1 || nd < 1 || nd > 3 || f->wei_md.ndims != nd + 2)
        return STX_OK;
    for (int k = 0; k < nd; k++)
        if (fd->strides[k] != 1) return STX_OK;
    const int64_t O = f->wei_md.dims[0], C = f->wei_md.dims[1];
    int64_t K = 1, ks[3] = {1, 1, 1};
    for (int k = 0; k < nd; k++) K *= ks[k] = f->wei_md.dims[2 + k];
    dnnl_dims_t pl, pr, wd;
    for (int k = 0; k < nd; k++) {
        pl[k] = (ks[k] - 1) * (fd->dilates[k] + 1) - fd->padding[0][k];
        pr[k] = (ks[k] - 1) * (fd->dilates[k] + 1) - fd->padding[1][k];
        if (pl[k] < 0 || pr[k] < 0) return STX_OK;
    }
    wd[0] = C;
    wd[1] = O;
    for (int k = 0; k < nd; k++) wd[2 + k] = ks[k];
    dnnl_memory_desc_t wany, plain_w, plain_t;
    dnnl_convolution_desc_t cd;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    stx_dnnl_reorder wr = {0};
    float *wp = NULL, *wt = NULL;
    stx_status status = STX_OK;
    dnnl_status_t ds =
        dnnl_memory_desc_init_by_tag(&wany, nd + 2, wd, f->wei_md.data_type, dnnl_format_tag_any);
    if (ds == dnnl_success)
        ds = dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference,
                                                        dnnl_convolution_direct, ddst, &wany, NULL,
                                                        dsrc, fd->strides, fd->dilates, pl, pr);
    if (ds == dnnl_success) ds = dnnl_primitive_attr_create(&attr);
    if (ds == dnnl_success)
        ds = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (ds == dnnl_success)
        ds = dnnl_primitive_desc_create(&pd, &cd, attr, stx__dnnl_engine(), NULL);
    /* (JIT kernels; in bfloat16 also the AMX brgemm ones, the fastest there) */
    if (ds != dnnl_success ||
        (strncmp(stx__dnnl_impl_name(pd), "jit", 3) != 0 &&
         !(wany.data_type == dnnl_bf16 && strncmp(stx__dnnl_impl_name(pd), "brg", 3) == 0)))
        goto done;
    {
        const dnnl_memory_desc_t *w = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        const dnnl_memory_desc_t *sp =
            dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        size_t wsz = dnnl_memory_desc_get_size(w), ssz = sp ? dnnl_memory_desc_get_size(sp) : 0;
        int64_t odims[5] = {O, C, ks[0], ks[1], ks[2]}, tdims[5] = {C, O, ks[0], ks[1], ks[2]};
        wp = stx__malloc(s->ctx, sizeof(float) * (size_t)(O * C * K));
        wt = stx__malloc(s->ctx, sizeof(float) * (size_t)(O * C * K));
        f->flip_wbuf = stx__malloc(s->ctx, wsz ? wsz : 64);
        if (ssz) f->flip_sbuf = stx__malloc(s->ctx, ssz);
        if (!wp || !wt || !f->flip_wbuf || (ssz && !f->flip_sbuf)) {
            status = stx__errf(&s->err, STX_E_NOMEM, "out of memory for a convolution's backward");
            goto done;
        }
        /* the forward's weights, plain (O, C, k...), then transposed and flipped (C, O, k...) */
        ds = stx__dnnl_md_plain(&plain_w, odims, nd + 2, dnnl_f32);
        if (ds == dnnl_success) ds = stx__dnnl_md_plain(&plain_t, tdims, nd + 2, dnnl_f32);
        if (ds == dnnl_success) ds = stx__dnnl_reorder_init(&wr, &f->wei_md, &plain_w);
        if (ds == dnnl_success) ds = stx__dnnl_reorder_run(&wr, f->stream, f->wbuf, wp);
        if (ds == dnnl_success) ds = dnnl_stream_wait(f->stream);
        stx__dnnl_reorder_free(&wr);
        for (int64_t o = 0; ds == dnnl_success && o < O; o++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t q = 0; q < K; q++)
                    wt[(c * O + o) * K + (K - 1 - q)] = wp[(o * C + c) * K + q];
        if (ds == dnnl_success) ds = stx__dnnl_reorder_init(&wr, &plain_t, w);
        if (ds == dnnl_success) ds = stx__dnnl_reorder_run(&wr, f->stream, wt, f->flip_wbuf);
        if (ds == dnnl_success) ds = dnnl_stream_wait(f->stream);
        if (ds == dnnl_success) ds = stx__dnnl_memory(&f->flip_wei, w, f->flip_wbuf);
        if (ds == dnnl_success && ssz) ds = stx__dnnl_memory(&f->flip_scratch, sp, f->flip_sbuf);
        if (ds == dnnl_success) ds = dnnl_primitive_create(&f->flip, pd);
        if (ds != dnnl_success) status = stx__dnnl_err(&st->c, ds, "transposed convolution");
    }
done:
    stx__dnnl_reorder_free(&wr);
    stx__free(s->ctx, wp);
    stx__free(s->ctx, wt);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return status;
}

/* Backward-data primitive d x = conv^T(d z) with the folded weights. The weights are reordered
 * once from the forward layout into the one the backward primitive wants; gradients use the
 * primitive's own layouts, with conversions at plain boundaries like the forward. */
stx_status stx__fused_backward_prepare(stx_session *s, stx_step *st) {
    if (stx__is_gap_blocked(st)) return STX_OK;
    fused_conv *f = st->state;
    if (f->bwd) return STX_OK;
    stx_op_ctx *c = &st->c;
    stx_dnnl_fail fail = {dnnl_success, NULL};
    stx_status status = STX_OK;
    dnnl_primitive_desc_t hint = NULL, pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    stx_dnnl_reorder wr = {0};
    dnnl_convolution_desc_t fd = f->fwd_desc, bd;
    fd.prop_kind = dnnl_forward_training;
    dnnl_memory_desc_t wany = fd.weights_desc;
    wany.format_kind = dnnl_format_kind_any;
    fd.weights_desc = wany;
    STX_DNNL_TRY(&fail, "forward hint",
                 dnnl_primitive_desc_create(&hint, &fd, NULL, stx__dnnl_engine(), NULL));
    STX_DNNL_TRY(&fail, "attributes", dnnl_primitive_attr_create(&attr));
    STX_DNNL_TRY(&fail, "scratchpad mode",
                 dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    /* gradients of x and y in their values' layouts (float32 also in bf16 sessions) */
    dnnl_memory_desc_t xg_md, yg_md;
    STX_DNNL_TRY(&fail, "gradient descriptor", grad_md(s, st->vin[0], &xg_md));
    STX_DNNL_TRY(&fail, "gradient descriptor", grad_md(s, st->vout[0], &yg_md));
    /* A bfloat16 convolution (bf16 sessions) runs its backward-data in bfloat16 too: d y
     * rounded to bfloat16, the weights in bfloat16, fp32 accumulation, d x written in float32
     * straight into its gradient's layout (else in bfloat16, converted). Otherwise first the
     * forward's (blocked) layouts. oneDNN 2.6 has no fast AVX2 kernel for strided 3-D
     * backward-data in blocked layouts and falls back to its naive reference one, 100x slower:
     * then plain layouts, where its im2col+GEMM kernel applies. */
    bool lowp = f->src_md.data_type == dnnl_bf16;
    /* (in bf16 sessions an fp32 first layer reads and writes channels-last layouts, where
     * oneDNN's JIT backward-data for few input channels is slow: plain layouts and stx's own
     * kernel below, as in fp32 sessions) */
    int first = s->bf16 && !lowp && st->c.in[0]->dims[1] <= 4 ? 1 : 0;
    for (int attempt = first; attempt < 2; attempt++) {
        dnnl_memory_desc_t dsrc = f->src_md, ddst = f->dst_md;
        if (lowp) {
            if (attempt == 0) dsrc = xg_md;
        } else if (attempt == 1) {
            const stx_tensor *X = st->c.in[0], *Y = st->c.out[0];
            STX_DNNL_TRY(&fail, "plain descriptor",
                         stx__dnnl_md_plain(&dsrc, X->dims, X->rank, dnnl_f32));
            STX_DNNL_TRY(&fail, "plain descriptor",
                         stx__dnnl_md_plain(&ddst, Y->dims, Y->rank, dnnl_f32));
        }
        STX_DNNL_TRY(&fail, "backward-data descriptor",
                     dnnl_dilated_convolution_backward_data_desc_init(
                         &bd, dnnl_convolution_direct, &dsrc, &wany, &ddst, f->fwd_desc.strides,
                         f->fwd_desc.dilates, f->fwd_desc.padding[0], f->fwd_desc.padding[1]));
        dnnl_primitive_desc_t cand = NULL;
        STX_DNNL_TRY(&fail, "backward-data primitive descriptor",
                     dnnl_primitive_desc_create(&cand, &bd, attr, stx__dnnl_engine(), hint));
        bool naive = strncmp(stx__dnnl_impl_name(cand), "ref", 3) == 0;
        if (pd) dnnl_primitive_desc_destroy(pd);
        pd = cand;
        if (!naive) break;
    }
    STX_DNNL_TRY(&fail, "backward-data primitive", dnnl_primitive_create(&f->bwd, pd));
    {
        const dnnl_memory_desc_t *w = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        const dnnl_memory_desc_t *sp =
            dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        const dnnl_memory_desc_t *dsrc =
            dnnl_primitive_desc_query_md(pd, dnnl_query_diff_src_md, 0);
        const dnnl_memory_desc_t *ddst =
            dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0);
        size_t wsz = dnnl_memory_desc_get_size(w), ssz = sp ? dnnl_memory_desc_get_size(sp) : 0;
        f->bwd_wbuf = stx__malloc(s->ctx, wsz ? wsz : 64);
        if (ssz) f->bwd_sbuf = stx__malloc(s->ctx, ssz);
        if (!f->bwd_wbuf || (ssz && !f->bwd_sbuf)) {
            status = stx__errf(&s->err, STX_E_NOMEM, "out of memory for backward weights");
            goto done;
        }
        STX_DNNL_TRY(&fail, "weights memory", stx__dnnl_memory(&f->bwd_wei, w, f->bwd_wbuf));
        if (ssz)
            STX_DNNL_TRY(&fail, "scratchpad memory",
                         stx__dnnl_memory(&f->bwd_scratch, sp, f->bwd_sbuf));
        STX_DNNL_TRY(&fail, "diff_src memory", stx__dnnl_memory(&f->bwd_dsrc, dsrc, NULL));
        STX_DNNL_TRY(&fail, "diff_dst memory", stx__dnnl_memory(&f->bwd_ddst, ddst, NULL));
        STX_DNNL_TRY(&fail, "weights reorder", stx__dnnl_reorder_init(&wr, &f->wei_md, w));
        STX_DNNL_TRY(&fail, "weights reorder",
                     stx__dnnl_reorder_run(&wr, f->stream, f->wbuf, f->bwd_wbuf));
        STX_DNNL_TRY(&fail, "weights reorder", dnnl_stream_wait(f->stream));
        status = own_bwd_prepare(s, st, f, pd, dsrc, ddst);
        if (!status) status = flip_bwd_prepare(s, st, f, dsrc, ddst);
        if (status) goto done;
        /* d z lives in the output gradient's layout; the primitive reads diff_dst in its own */
        STX_DNNL_TRY(&fail, "diff_dst reorder", maybe_reorder(&f->rdz, &yg_md, ddst));
        STX_DNNL_TRY(&fail, "diff_src reorder", maybe_reorder(&f->rdx, dsrc, &xg_md));
        STX_DNNL_TRY(&fail, "diff_src accumulation", accumulate_reorder(&f->rdx_acc, dsrc, &xg_md));
        need_scratch(s, BS_DZ, dnnl_memory_desc_get_size(&yg_md));
        need_scratch(s, BS_DDST, dnnl_memory_desc_get_size(ddst));
        need_scratch(s, BS_DSRC, dnnl_memory_desc_get_size(dsrc));
    }
    status = alloc_scratch(s);
    goto done;
dnnl_fail:
    status = stx__dnnl_err(c, fail.status, fail.what);
done:
    stx__dnnl_reorder_free(&wr);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (hint) dnnl_primitive_desc_destroy(hint);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return status;
}

static void add_into(float *dst, const float *src, int64_t n, bool fresh) {
    if (fresh) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

stx_status stx__fused_backward_run(stx_session *s, stx_step *f, stx_step *b) {
    stx_tensor *dx = b->c.din[0];
    if (stx__is_gap_blocked(f)) {
        /* d x[n, cb, i, l] = d y[n, cb*blk + l] / S in the blocked layout (padding stays 0) */
        const stx_tensor *x = f->c.in[0], *dy = b->c.dout[0];
        if (!dx || !dy) return STX_OK;
        int blk = (int)(intptr_t)f->state;
        int64_t N = x->dims[0], C = x->dims[1], S = 1;
        for (int k = 2; k < x->rank; k++) S *= x->dims[k];
        int64_t CB = (C + blk - 1) / blk;
        bool fresh = b->zero_mask & 1u;
        float *dxp = dx->data;
        const float *dyp = dy->data;
        if (s->bf16) {
            /* d x (float32, layout n, spatial, c) = d y[n, c] / S */
#pragma omp parallel for collapse(2) schedule(static)
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < S; i++) {
                    float *p = dxp + (n * S + i) * C;
                    const float *g = dyp + n * C;
                    for (int64_t ch = 0; ch < C; ch++)
                        p[ch] = fresh ? g[ch] / (float)S : p[ch] + g[ch] / (float)S;
                }
            return STX_OK;
        }
#pragma omp parallel for collapse(2) schedule(static)
        for (int64_t n = 0; n < N; n++)
            for (int64_t cb = 0; cb < CB; cb++) {
                float *p = dxp + (n * CB + cb) * S * blk;
                float g[16];
                for (int l = 0; l < blk; l++)
                    g[l] = cb * blk + l < C ? dyp[n * C + cb * blk + l] / (float)S : 0.0f;
                for (int64_t i = 0; i < S; i++)
                    for (int l = 0; l < blk; l++)
                        p[i * blk + l] = fresh ? g[l] : p[i * blk + l] + g[l];
            }
        return STX_OK;
    }
    fused_conv *fc = f->state;
    const stx_tensor *y = f->c.out[0];
    const stx_tensor *dy = b->c.dout[0];
    stx_tensor *dres = b->c.din[1];
    if (!dy) return STX_OK;
    /* physical element count: blocked layouts include zero padding, which stays zero */
    int64_t ny = (int64_t)(dy->nbytes / sizeof(float));
    /* d z = d y masked by the ReLU (y > 0), in the output gradient's layout */
    const float *dz = dy->data;
    if (fc->has_relu && s->bf16 && s->blocked[f->vout[0]]) {
        /* y in bfloat16 (same order): positive when the sign bit is clear and it is not zero */
        float *z = fscratch(s, BS_DZ);
        const uint16_t *yb = y->data;
        const float *g = dy->data;
#pragma omp parallel for schedule(static) if (ny > 65536)
        for (int64_t i = 0; i < ny; i++) z[i] = yb[i] != 0 && yb[i] < 0x8000u ? g[i] : 0.0f;
        dz = z;
    } else if (fc->has_relu) {
        float *z = fscratch(s, BS_DZ);
        const float *yp = y->data, *g = dy->data;
#pragma omp parallel for schedule(static) if (ny > 65536)
        for (int64_t i = 0; i < ny; i++) z[i] = yp[i] > 0.0f ? g[i] : 0.0f;
        dz = z;
    }
    if (dres) add_into(dres->data, dz, ny, (b->zero_mask >> 1) & 1u);
    if (!dx) return STX_OK;
    dnnl_status_t ds = dnnl_success;
    const void *ddst = dz;
    if (fc->rdz.prim) {
        ddst = fscratch(s, BS_DDST);
        ds = stx__dnnl_reorder_run(&fc->rdz, fc->stream, dz, (void *)ddst);
    }
    bool fresh = b->zero_mask & 1u;
    bool direct = !fc->rdx.prim && fresh;
    void *dsrc = direct ? dx->data : fscratch(s, BS_DSRC);
    dnnl_memory_set_data_handle(fc->bwd_ddst, (void *)ddst);
    dnnl_memory_set_data_handle(fc->bwd_dsrc, dsrc);
    dnnl_exec_arg_t args[4];
    int na = 0;
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, fc->bwd_ddst};
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, fc->bwd_wei};
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SRC, fc->bwd_dsrc};
    if (fc->bwd_scratch) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, fc->bwd_scratch};
    if (ds == dnnl_success && fc->own_w) {
        ds = dnnl_stream_wait(fc->stream);
        if (ds == dnnl_success)
            ds = own_bwd_run(fc, f->c.in[0], y, (const float *)ddst, (float *)dsrc);
    } else if (ds == dnnl_success && fc->flip) {
        dnnl_exec_arg_t fa[4] = {{DNNL_ARG_SRC, fc->bwd_ddst},
                                 {DNNL_ARG_WEIGHTS, fc->flip_wei},
                                 {DNNL_ARG_DST, fc->bwd_dsrc},
                                 {DNNL_ARG_SCRATCHPAD, fc->flip_scratch}};
        ds = dnnl_primitive_execute(fc->flip, fc->stream, fc->flip_scratch ? 4 : 3, fa);
    } else if (ds == dnnl_success) {
        ds = dnnl_primitive_execute(fc->bwd, fc->stream, na, args);
    }
    if (ds == dnnl_success && !direct) {
        if (fc->rdx.prim)
            ds = stx__dnnl_reorder_run(fresh ? &fc->rdx : &fc->rdx_acc, fc->stream, dsrc, dx->data);
        else
            ds = stx__dnnl_reorder_run(&fc->rdx_acc, fc->stream, dsrc, dx->data);
    }
    if (ds == dnnl_success) ds = dnnl_stream_wait(fc->stream);
    if (ds != dnnl_success) return stx__dnnl_err(&b->c, ds, "convolution backward-data");
    return STX_OK;
}

/* ---- the pass ------------------------------------------------------------------------------ */

stx_status stx__fuse_plan(stx_session *s) {
    if (!stx__dnnl_engine()) return STX_OK; /* no oneDNN: keep the op-by-op plan */
    int nsteps = s->n_steps;
    uint8_t *dead = stx__calloc(s->ctx, (size_t)nsteps + 1, 1);
    if (!dead) return stx__errf(&s->err, STX_E_NOMEM, "out of memory");
    int blk = block_size();
    s->block = blk;
    stx_status status = STX_OK;

    /* 1. find chains and rewrite their first step; absorbed steps are marked dead */
    chain *chains = stx__calloc(s->ctx, (size_t)nsteps + 1, sizeof *chains);
    int nch = 0;
    if (!chains) {
        stx__free(s->ctx, dead);
        return stx__errf(&s->err, STX_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < nsteps; i++) {
        stx_step *st = &s->steps[i];
        if (dead[i] || !conv_ok(s, st)) continue;
        const stx_node *n = st->c.node;
        chain ch = {i,  -1,        -1,  -1, n->in[0], n->in[1], n->n_in > 2 ? n->in[2] : -1,
                    -1, n->out[0], NULL};
        int r = sole_reader(s, ch.out);
        if (r >= 0 && bn_ok(s, &s->steps[r]) && s->steps[r].c.node->in[0] == ch.out &&
            !stx__rule_for(s, "BatchNormalization")) {
            ch.bn = r;
            ch.bn_node = s->steps[r].c.node;
            ch.out = s->steps[r].c.node->out[0];
            r = sole_reader(s, ch.out);
        }
        if (r >= 0 && !stx__rule_for(s, "Add")) {
            int o = add_other(s, &s->steps[r], ch.out);
            /* the residual must be computed before the conv runs (it is read by the fused step) */
            int prod = -1;
            for (int q = 0; q < nsteps && o >= 0; q++)
                for (int k = 0; k < s->steps[q].n_vout; k++)
                    if (s->steps[q].vout[k] == o) prod = q;
            if (o >= 0 && (s->kind[o] == STX_VK_INPUT || (prod >= 0 && prod < i))) {
                ch.add = r;
                ch.res = o;
                ch.out = s->steps[r].c.node->out[0];
                r = sole_reader(s, ch.out);
            }
        }
        if (r >= 0 && is_op(&s->steps[r], "Relu") && !stx__rule_for(s, "Relu")) {
            ch.relu = r;
            ch.out = s->steps[r].c.node->out[0];
        }
        if (ch.bn >= 0) dead[ch.bn] = 1;
        if (ch.add >= 0) dead[ch.add] = 1;
        if (ch.relu >= 0) dead[ch.relu] = 1;
        chains[nch++] = ch;
        /* the fused step reads x (and the residual) and writes the chain's output */
        st->fused_vals[0] = ch.x;
        st->fused_vals[1] = ch.res;
        st->fused_vals[2] = ch.out;
        st->vin = &st->fused_vals[0];
        st->n_vin = 2;
        st->vout = &st->fused_vals[2];
        st->n_vout = 1;
        st->fused_ptrs[0] = &s->vals[ch.x];
        st->fused_ptrs[1] = ch.res >= 0 ? &s->vals[ch.res] : NULL;
        st->fused_ptrs[2] = &s->vals[ch.out];
        st->c.in = &st->fused_ptrs[0];
        st->c.n_in = 2;
        st->c.out = &st->fused_ptrs[2];
        st->c.n_out = 1;
        st->run = fused_conv_run; /* marks the step as fused; state is built below */
    }
    /* intermediate values of chains are never materialised */
    for (int i = 0; i < nsteps; i++)
        if (dead[i])
            for (int k = 0; k < s->steps[i].n_vout; k++) {
                int v = s->steps[i].vout[k];
                bool is_final = false;
                for (int q = 0; q < nch; q++) is_final |= chains[q].out == v;
                if (v >= 0 && !is_final) s->kind[v] = STX_VK_FUSED;
            }
    for (int q = 0; q < nch; q++) {
        const stx_node *cn = s->steps[chains[q].conv].c.node;
        if (s->kind[cn->out[0]] == STX_VK_RUNTIME && cn->out[0] != chains[q].out)
            s->kind[cn->out[0]] = STX_VK_FUSED;
    }
    /* compact the step list */
    int w = 0;
    for (int i = 0; i < nsteps; i++) {
        if (dead[i]) continue;
        if (w != i) s->steps[w] = s->steps[i];
        /* pointers into the step itself must follow the move */
        stx_step *st = &s->steps[w];
        if (st->run == fused_conv_run) {
            st->vin = &st->fused_vals[0];
            st->vout = &st->fused_vals[2];
            st->c.in = &st->fused_ptrs[0];
            st->c.out = &st->fused_ptrs[2];
        }
        for (int q = 0; q < nch; q++)
            if (chains[q].conv == i) chains[q].conv = w;
        w++;
    }
    s->n_steps = w;

    /* 2. layouts: a fused conv output is blocked when its channels divide by the block and every
     * reader is a fused conv (as input or residual) or a GlobalAveragePool */
    for (int q = 0; q < nch; q++) {
        int v = chains[q].out;
        const stx_tensor *t = &s->vals[v];
        /* (channels that do not fill whole blocks, e.g. 8 of a 16-block, would pad with zeros
         * and leave the next convolution without a JIT kernel: oneDNN's reference one is
         * ~20x slower) */
        if (observable(s, v) || t->rank < 3 || t->dims[1] % blk != 0) continue;
        bool ok = true;
        for (int i = 0; i < s->n_steps && ok; i++) {
            const stx_step *st = &s->steps[i];
            bool reads = false;
            for (int k = 0; k < st->n_vin; k++) reads |= st->vin[k] == v;
            if (!reads) continue;
            ok = st->run == fused_conv_run || is_op(st, "GlobalAveragePool");
        }
        if (ok) s->blocked[v] = (uint8_t)blk;
    }
    /* a residual and the output it is added to must share a layout (the binary post-op and its
     * gradient are elementwise on raw memory): demote both to plain until consistent */
    for (bool changed = true; changed;) {
        changed = false;
        for (int q = 0; q < nch; q++)
            if (chains[q].res >= 0 && s->blocked[chains[q].res] != s->blocked[chains[q].out]) {
                s->blocked[chains[q].res] = s->blocked[chains[q].out] = 0;
                changed = true;
            }
    }
    /* blocked tensors are padded to whole channel blocks */
    for (int v = 0; v < s->nv; v++)
        if (s->blocked[v]) {
            dnnl_memory_desc_t md;
            if (value_md(s, v, &md) != dnnl_success) {
                s->blocked[v] = 0;
                continue;
            }
            s->vals[v].nbytes = dnnl_memory_desc_get_size(&md);
        }
    /* 3. build primitives; GlobalAveragePool on blocked input gets its own kernel */
    for (int i = 0; i < s->n_steps && !status; i++) {
        stx_step *st = &s->steps[i];
        if (st->run == fused_conv_run) {
            st->run = NULL;
            const chain *ch = NULL;
            for (int q = 0; q < nch; q++)
                if (chains[q].conv == i) ch = &chains[q];
            status = build_fused_conv(s, ch, st);
            if (status == STX_E_UNSUPPORTED && !st->run) status = STX_OK;
            if (!st->run && !status)
                status = stx__errf(&s->err, STX_E_INTERNAL,
                                   "node '%s': convolution could not be fused", st->c.node->name);
        } else if (is_op(st, "GlobalAveragePool") && s->blocked[st->vin[0]]) {
            st->run = gap_blocked_run;
            st->sess = s;
            st->state = (void *)(intptr_t)s->blocked[st->vin[0]];
            st->release = NULL;
        }
    }
    if (!status) status = alloc_scratch(s);
    stx__free(s->ctx, chains);
    stx__free(s->ctx, dead);
    return status;
}
