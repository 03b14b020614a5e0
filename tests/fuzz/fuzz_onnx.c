/* fuzz_onnx.c: the ONNX loader (protobuf parsing, initialisers inline, typed and external, graph
 * checks, module scopes, stx.* facts) and session planning for the declared input shape.
 *
 * The input is written as model.onnx into a private folder holding what external-data references
 * may name: weights.bin (4 MiB, a byte pattern), sub/w.bin, link_in (a symlink to weights.bin),
 * link_out (a symlink leaving the folder), pipe (a FIFO). ../outside.bin, beside the folder,
 * is filled with 0xA5 bytes: a loaded tensor starting with eight of them was read from outside
 * the model's folder, which the harness reports as a crash. Allocations go through a hook that
 * refuses any single block over 256 MiB (a clean STX_E_NOMEM is then expected). */
#include "fuzz_common.h"

#include "graph/ir.h"

#include <sys/stat.h>
#include <unistd.h>

#define BLOCK_LIMIT ((size_t)256 << 20)

static void *hook_alloc(void *user, size_t size) {
    (void)user;
    if (size > BLOCK_LIMIT) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, 64, size ? size : 1) != 0) return NULL;
    return p;
}
static void hook_free(void *user, void *p) {
    (void)user;
    free(p);
}

static char g_model[4096];

static int setup(void) {
    const char *tmp = fuzz_tmpdir();
    if (!tmp) return -1;
    char p[4096], q[4096];
    snprintf(p, sizeof p, "%s/outside.bin", tmp);
    static unsigned char buf[1 << 16];
    memset(buf, 0xA5, sizeof buf);
    if (fuzz_write_file(p, buf, sizeof buf)) return -1;
    snprintf(p, sizeof p, "%s/model", tmp);
    if (mkdir(p, 0700)) return -1;
    snprintf(p, sizeof p, "%s/model/sub", tmp);
    if (mkdir(p, 0700)) return -1;
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)(i % 251);
    snprintf(p, sizeof p, "%s/model/sub/w.bin", tmp);
    if (fuzz_write_file(p, buf, 4096)) return -1;
    snprintf(p, sizeof p, "%s/model/weights.bin", tmp);
    if (fuzz_write_file(p, buf, sizeof buf) || truncate(p, 4 << 20)) return -1;
    snprintf(p, sizeof p, "%s/model/link_in", tmp);
    if (symlink("weights.bin", p)) return -1;
    snprintf(p, sizeof p, "%s/model/link_out", tmp);
    snprintf(q, sizeof q, "%s/outside.bin", tmp);
    if (symlink(q, p)) return -1;
    snprintf(p, sizeof p, "%s/model/pipe", tmp);
    if (mkfifo(p, 0600)) return -1;
    snprintf(g_model, sizeof g_model, "%s/model/model.onnx", tmp);
    return 0;
}

static void check_no_outside_data(const stx_model *m) {
    const stx_graph *g = &m->g;
    for (int i = 0; i < g->n_values; i++) {
        const stx_tensor *t = g->values[i].data;
        if (!t || t->nbytes < 8) continue;
        const unsigned char *b = t->data;
        int k = 0;
        while (k < 8 && b[k] == 0xA5) k++;
        if (k == 8) {
            fprintf(stderr, "fuzz_onnx: tensor '%s' holds data from outside the model folder\n",
                    g->values[i].name);
            abort();
        }
    }
}

static void exercise(stx_model *m) {
    check_no_outside_data(m);
    stx_model_facts facts;
    stx_model_facts_get(m, &facts);
    const char *key;
    for (int i = 0; stx_model_facts_error(m, i, &key); i++) {
    }
    for (int i = 0; i < facts.num_classes; i++)
        if (stx_model_class_index(m, facts.class_names[i]) != i) abort();
    (void)stx_model_num_parameters(m);
    for (int i = 0; i < stx_model_num_modules(m); i++) {
        const char *t = NULL;
        if (stx_model_resolve_tensor(m, stx_model_module_name(m, i), &t) != STX_OK) abort();
    }
    if (stx_model_num_inputs(m) < 1) return;
    int64_t shape[STX_MAX_RANK];
    int rank = 0;
    stx_dtype dt;
    stx_model_input_info(m, 0, &dt, shape, &rank);
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] <= 0 || shape[i] > 4096) return;
        n *= shape[i];
        if (n > 4096) return;
    }
    if (rank < 1 || stx_model_num_inputs(m) != 1) return;
    stx_session *s = NULL;
    stx_session_create(m, NULL, shape, rank, &s);
    stx_session_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) ready = setup() == 0 ? 1 : -1;
    if (ready < 0) return 0;
    if (fuzz_write_file(g_model, data, size)) return 0;
    stx_context_options o = stx_context_options_default();
    o.num_threads = 1;
    o.allocator.alloc = hook_alloc;
    o.allocator.free = hook_free;
    stx_context *ctx = NULL;
    if (stx_context_create(&o, &ctx) != STX_OK) return 0;
    stx_model *m = NULL;
    stx_status st = stx_model_load(ctx, g_model, NULL, &m);
    if (st == STX_OK)
        exercise(m);
    else if (m != NULL || stx_context_last_error(ctx)[0] == '\0')
        abort(); /* a failed load leaves no model and always says why */
    stx_model_free(m);
    stx_context_free(ctx);
    return 0;
}
