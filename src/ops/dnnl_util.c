/* dnnl_util.c: shared oneDNN helpers (see dnnl_util.h). */
#include "dnnl_util.h"

#include <dnnl_debug.h>
#include <pthread.h>
#include <string.h>

/* The engine is created once per process. pthread_once makes the lazy creation safe when
 * several sessions are planned concurrently from different threads. */
static pthread_once_t g_engine_once = PTHREAD_ONCE_INIT;
static dnnl_engine_t g_engine;

static void engine_init(void) {
    dnnl_engine_t e = NULL;
    if (dnnl_engine_create(&e, dnnl_cpu, 0) == dnnl_success) g_engine = e;
}

dnnl_engine_t stx__dnnl_engine(void) {
    pthread_once(&g_engine_once, engine_init);
    return g_engine;
}

dnnl_status_t stx__dnnl_stream_create(dnnl_stream_t *stream) {
    *stream = NULL;
    dnnl_engine_t e = stx__dnnl_engine();
    if (!e) return dnnl_runtime_error;
    return dnnl_stream_create(stream, e, dnnl_stream_default_flags);
}

/* Plain tags in rank order: a, ab, abc, ... (row-major, outermost dimension first). */
static const dnnl_format_tag_t plain_tags[9] = {
    dnnl_format_tag_undef, dnnl_a,       dnnl_ab,      dnnl_abc, dnnl_abcd, dnnl_abcde,
    dnnl_abcdef,           dnnl_abcdefg, dnnl_abcdefgh};

static dnnl_status_t md_by_tag(dnnl_memory_desc_t *md, const int64_t *dims, int rank,
                               dnnl_data_type_t dt, dnnl_format_tag_t tag) {
    if (rank < 1 || rank > 8) return dnnl_invalid_arguments;
    dnnl_dims_t d;
    for (int i = 0; i < rank; i++) d[i] = dims[i];
    return dnnl_memory_desc_init_by_tag(md, rank, d, dt, tag);
}

dnnl_status_t stx__dnnl_md_plain(dnnl_memory_desc_t *md, const int64_t *dims, int rank,
                                 dnnl_data_type_t dt) {
    if (rank < 1 || rank > 8) return dnnl_invalid_arguments;
    return md_by_tag(md, dims, rank, dt, plain_tags[rank]);
}

dnnl_status_t stx__dnnl_md_any(dnnl_memory_desc_t *md, const int64_t *dims, int rank,
                               dnnl_data_type_t dt) {
    return md_by_tag(md, dims, rank, dt, dnnl_format_tag_any);
}

dnnl_status_t stx__dnnl_pd_create(dnnl_primitive_desc_t *pd, const_dnnl_op_desc_t op_desc) {
    return stx__dnnl_pd_create_hint(pd, op_desc, NULL);
}

dnnl_status_t stx__dnnl_pd_create_hint(dnnl_primitive_desc_t *pd, const_dnnl_op_desc_t op_desc,
                                       const_dnnl_primitive_desc_t hint) {
    *pd = NULL;
    dnnl_engine_t e = stx__dnnl_engine();
    if (!e) return dnnl_runtime_error;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_status_t s = dnnl_primitive_attr_create(&attr);
    if (s != dnnl_success) return s;
    /* User scratchpad: the primitive never allocates during execute, and two primitives
     * never share a hidden library buffer. */
    s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (s == dnnl_success) s = dnnl_primitive_desc_create(pd, op_desc, attr, e, hint);
    dnnl_primitive_attr_destroy(attr);
    if (s != dnnl_success) *pd = NULL;
    return s;
}

dnnl_status_t stx__dnnl_memory(dnnl_memory_t *mem, const dnnl_memory_desc_t *md, void *handle) {
    *mem = NULL;
    dnnl_engine_t e = stx__dnnl_engine();
    if (!e) return dnnl_runtime_error;
    return dnnl_memory_create(mem, md, e, handle ? handle : DNNL_MEMORY_NONE);
}

dnnl_status_t stx__dnnl_reorder_init(stx_dnnl_reorder *r, const dnnl_memory_desc_t *from,
                                     const dnnl_memory_desc_t *to) {
    memset(r, 0, sizeof *r);
    dnnl_engine_t e = stx__dnnl_engine();
    if (!e) return dnnl_runtime_error;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t s = dnnl_reorder_primitive_desc_create(&pd, from, e, to, e, NULL);
    if (s == dnnl_success) s = dnnl_primitive_create(&r->prim, pd);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (s == dnnl_success) s = stx__dnnl_memory(&r->from, from, NULL);
    if (s == dnnl_success) s = stx__dnnl_memory(&r->to, to, NULL);
    if (s != dnnl_success) stx__dnnl_reorder_free(r);
    return s;
}

dnnl_status_t stx__dnnl_reorder_init_acc(stx_dnnl_reorder *r, const dnnl_memory_desc_t *from,
                                         const dnnl_memory_desc_t *to) {
    memset(r, 0, sizeof *r);
    dnnl_engine_t e = stx__dnnl_engine();
    if (!e) return dnnl_runtime_error;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    /* a sum post-op with scale 1: to = 1 * to + reorder(from) */
    dnnl_status_t s = dnnl_primitive_attr_create(&attr);
    if (s == dnnl_success) s = dnnl_post_ops_create(&po);
    if (s == dnnl_success) s = dnnl_post_ops_append_sum(po, 1.0f);
    if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(attr, po);
    if (s == dnnl_success) s = dnnl_reorder_primitive_desc_create(&pd, from, e, to, e, attr);
    if (s == dnnl_success) s = dnnl_primitive_create(&r->prim, pd);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (s == dnnl_success) s = stx__dnnl_memory(&r->from, from, NULL);
    if (s == dnnl_success) s = stx__dnnl_memory(&r->to, to, NULL);
    if (s != dnnl_success) stx__dnnl_reorder_free(r);
    return s;
}

dnnl_status_t stx__dnnl_reorder_run(stx_dnnl_reorder *r, dnnl_stream_t s, const void *from,
                                    void *to) {
    /* oneDNN never writes the source of a reorder; its API just has no const handles. */
    dnnl_status_t st = dnnl_memory_set_data_handle(r->from, (void *)from);
    if (st == dnnl_success) st = dnnl_memory_set_data_handle(r->to, to);
    if (st != dnnl_success) return st;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, r->from}, {DNNL_ARG_TO, r->to}};
    return dnnl_primitive_execute(r->prim, s, 2, args);
}

void stx__dnnl_reorder_free(stx_dnnl_reorder *r) {
    if (r->prim) dnnl_primitive_destroy(r->prim);
    if (r->from) dnnl_memory_destroy(r->from);
    if (r->to) dnnl_memory_destroy(r->to);
    memset(r, 0, sizeof *r);
}

const char *stx__dnnl_impl_name(const_dnnl_primitive_desc_t pd) {
    const char *name = NULL;
    if (!pd || dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name) != dnnl_success ||
        !name)
        return "unknown";
    return name;
}

stx_status stx__dnnl_err(stx_op_ctx *c, dnnl_status_t s, const char *what) {
    stx_status code = s == dnnl_out_of_memory   ? STX_E_NOMEM
                      : s == dnnl_unimplemented ? STX_E_UNSUPPORTED
                                                : STX_E_INTERNAL;
    return stx__node_err(c, code, "oneDNN %s failed: %s", what ? what : "call", dnnl_status2str(s));
}

dnnl_status_t stx__dnnl_md_blocked(dnnl_memory_desc_t *md, const int64_t *dims, int rank, int blk) {
    if (rank < 3 || rank > 5 || (blk != 8 && blk != 16)) return dnnl_invalid_arguments;
    dnnl_dims_t d;
    for (int k = 0; k < rank; k++) d[k] = dims[k];
    static const dnnl_format_tag_t t8[6] = {0, 0, 0, dnnl_nCw8c, dnnl_nChw8c, dnnl_nCdhw8c};
    static const dnnl_format_tag_t t16[6] = {0, 0, 0, dnnl_nCw16c, dnnl_nChw16c, dnnl_nCdhw16c};
    return dnnl_memory_desc_init_by_tag(md, rank, d, dnnl_f32, blk == 16 ? t16[rank] : t8[rank]);
}

bool stx__dnnl_has_bf16(void) {
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return isa == dnnl_cpu_isa_avx512_core_bf16 || isa == dnnl_cpu_isa_avx512_core_amx;
}
