/* fuzz_metadata.c: model facts, the stx.* metadata_props (src/graph/facts.c) as stx_model_load
 * parses them, and what reads them (stx_model_facts_get/_error, class lookup, preprocessing).
 *
 * Input: byte 0 picks the rank of the model's input (3, 4 or 5: NCT, NCHW, NCTHW shapes), then
 * lines separated by '\n', one metadata entry each: a first byte k < 11 names the key
 * (KEYS[k]) and the rest of the line is the value; any other first byte is followed by
 * "key=value" verbatim. The harness builds a small ONNX model (Relu then Identity, module scopes
 * layer1 and fc, outputs y and h) with protobuf-c, writes it and loads it. */
#include "fuzz_common.h"

#include "onnx.pb-c.h"

static const char *const KEYS[] = {"stx.name",        "stx.task",       "stx.classes",
                                   "stx.layout",      "stx.mean",       "stx.std",
                                   "stx.clip_length", "stx.frame_size", "stx.target_layer",
                                   "stx.token_grid",  "stx.output"};
#define N_KEYS ((int)(sizeof KEYS / sizeof KEYS[0]))
#define MAX_ENTRIES 64

static char *dup_n(const uint8_t *p, size_t n) {
    char *s = malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static void value_info(Onnx__ValueInfoProto *vi, Onnx__TypeProto *tp, Onnx__TypeProto__Tensor *tt,
                       Onnx__TensorShapeProto *sp, Onnx__TensorShapeProto__Dimension *dims,
                       Onnx__TensorShapeProto__Dimension **dimp, int rank, char *name) {
    static const int64_t shapes[3][5] = {{1, 3, 4}, {1, 3, 8, 8}, {1, 3, 4, 8, 8}};
    const int64_t *shape = shapes[rank - 3];
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sp);
    for (int i = 0; i < rank; i++) {
        onnx__tensor_shape_proto__dimension__init(&dims[i]);
        dims[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        dims[i].dim_value = shape[i];
        dimp[i] = &dims[i];
    }
    sp->n_dim = (size_t)rank;
    sp->dim = dimp;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = sp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    vi->name = name;
    vi->type = tp;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[4096];
    const char *tmp = fuzz_tmpdir();
    if (!tmp || size == 0) return 0;
    if (!path[0]) snprintf(path, sizeof path, "%s/meta.onnx", tmp);
    int rank = 3 + data[0] % 3;

    Onnx__StringStringEntryProto ent[MAX_ENTRIES], *entp[MAX_ENTRIES];
    int n_ent = 0;
    for (size_t i = 1; i < size && n_ent < MAX_ENTRIES;) {
        size_t j = i;
        while (j < size && data[j] != '\n') j++;
        if (j > i) {
            onnx__string_string_entry_proto__init(&ent[n_ent]);
            uint8_t k = data[i];
            if (k < N_KEYS) {
                ent[n_ent].key = dup_n((const uint8_t *)KEYS[k], strlen(KEYS[k]));
                ent[n_ent].value = dup_n(data + i + 1, j - i - 1);
            } else {
                size_t e = i + 1;
                while (e < j && data[e] != '=') e++;
                ent[n_ent].key = dup_n(data + i + 1, e - i - 1);
                ent[n_ent].value = dup_n(data + (e < j ? e + 1 : j), e < j ? j - e - 1 : 0);
            }
            entp[n_ent] = &ent[n_ent];
            n_ent++;
        }
        i = j + 1;
    }

    Onnx__ValueInfoProto vx, vy, vh, *ins[1] = {&vx}, *outs[2] = {&vy, &vh};
    Onnx__TypeProto tx, ty, th;
    Onnx__TypeProto__Tensor ttx, tty, tth;
    Onnx__TensorShapeProto sx, sy, sh;
    Onnx__TensorShapeProto__Dimension dx[5], dy[5], dh[5], *dxp[5], *dyp[5], *dhp[5];
    value_info(&vx, &tx, &ttx, &sx, dx, dxp, rank, "x");
    value_info(&vy, &ty, &tty, &sy, dy, dyp, rank, "y");
    value_info(&vh, &th, &tth, &sh, dh, dhp, rank, "h");
    char *relu_in[1] = {"x"}, *relu_out[1] = {"h"}, *id_in[1] = {"h"}, *id_out[1] = {"y"};
    Onnx__NodeProto relu, ident, *nodes[2] = {&relu, &ident};
    onnx__node_proto__init(&relu);
    onnx__node_proto__init(&ident);
    relu.name = "/layer1/relu/Relu";
    relu.op_type = "Relu";
    relu.n_input = relu.n_output = 1;
    relu.input = relu_in;
    relu.output = relu_out;
    ident.name = "/fc/Identity";
    ident.op_type = "Identity";
    ident.n_input = ident.n_output = 1;
    ident.input = id_in;
    ident.output = id_out;
    Onnx__GraphProto g;
    onnx__graph_proto__init(&g);
    g.name = "meta";
    g.n_node = 2;
    g.node = nodes;
    g.n_input = 1;
    g.input = ins;
    g.n_output = 2;
    g.output = outs;
    Onnx__OperatorSetIdProto os, *osp[1] = {&os};
    onnx__operator_set_id_proto__init(&os);
    os.domain = "";
    os.has_version = 1;
    os.version = 17;
    Onnx__ModelProto mp;
    onnx__model_proto__init(&mp);
    mp.has_ir_version = 1;
    mp.ir_version = 8;
    mp.n_opset_import = 1;
    mp.opset_import = osp;
    mp.graph = &g;
    mp.n_metadata_props = (size_t)n_ent;
    mp.metadata_props = entp;

    size_t len = onnx__model_proto__get_packed_size(&mp);
    uint8_t *buf = malloc(len ? len : 1);
    int ok = 1;
    for (int i = 0; i < n_ent; i++) ok = ok && ent[i].key && ent[i].value;
    if (buf && ok) {
        onnx__model_proto__pack(&mp, buf);
        if (fuzz_write_file(path, buf, len) == 0) {
            stx_context *ctx = fuzz_context();
            stx_model *m = NULL;
            if (ctx && stx_model_load(ctx, path, NULL, &m) == STX_OK) {
                stx_model_facts f;
                stx_status st = stx_model_facts_get(m, &f);
                const char *key = NULL;
                int n_err = 0;
                while (stx_model_facts_error(m, n_err, &key)) n_err++;
                if ((st == STX_OK) != (n_err == 0)) abort();
                if (f.num_classes < 0 || (f.num_classes > 0 && !f.class_names)) abort();
                for (int i = 0; i < f.num_classes; i++)
                    if (stx_model_class_index(m, f.class_names[i]) != i) abort();
                if (f.target_layer) {
                    const char *t = NULL;
                    if (stx_model_resolve_tensor(m, f.target_layer, &t) != STX_OK) abort();
                }
                stx_preprocess p = stx_preprocess_default();
                stx_preprocess_from_model(m, &p);
            } else if (ctx) {
                abort(); /* metadata never fails a load */
            }
            stx_model_free(m);
            stx_context_free(ctx);
        }
    }
    free(buf);
    for (int i = 0; i < n_ent; i++) {
        free(ent[i].key);
        free(ent[i].value);
    }
    return 0;
}
