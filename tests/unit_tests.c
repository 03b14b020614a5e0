/* unit_tests.c: core units (status table, .npy I/O, module scopes, planner memory reuse, video
 * frame preprocessing, model facts from metadata).
 * Prints one line per failed check and "N passed, M failed". */
#include "core/core.h"
#include "explain/explain.h"
#include "graph/ir.h"
#include "stx.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_pass, g_fail;
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (cond)                                                                                  \
            g_pass++;                                                                              \
        else {                                                                                     \
            g_fail++;                                                                              \
            printf("FAIL  %s:%d: %s\n", __FILE__, __LINE__, #cond);                                \
        }                                                                                          \
    } while (0)

static void test_status(void) {
    CHECK(strcmp(stx_status_name(STX_OK), "STX_OK") == 0);
    CHECK(strcmp(stx_status_name(STX_E_NOMEM), "STX_E_NOMEM") == 0);
    CHECK(strcmp(stx_status_string(STX_E_SHAPE), "shape mismatch") == 0);
    CHECK(strcmp(stx_status_name((stx_status)-999), "STX_E_UNKNOWN") == 0);
}

static void test_scope(void) {
    /* PyTorch 1.13+ exporter node names */
    struct {
        const char *name, *want;
    } cases[] = {{"/layer4/layer4.1/relu/Relu", "layer4.1.relu"},
                 {"/layer4/layer4.1/conv1/conv1.0/Conv", "layer4.1.conv1.0"},
                 {"/stem/stem.0/Conv", "stem.0"},
                 {"/fc/Gemm", "fc"},
                 {"/Flatten", ""},
                 {"Conv_0", ""},
                 {"/blocks.2/attn/MatMul_1", "blocks.2.attn"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *s = stx__scope_from_node_name(NULL, cases[i].name);
        CHECK(s && strcmp(s, cases[i].want) == 0);
        if (s && strcmp(s, cases[i].want) != 0)
            printf("      scope('%s') = '%s', want '%s'\n", cases[i].name, s, cases[i].want);
        stx__free(NULL, s);
    }
}

static void test_npy(void) {
    stx_context *ctx;
    CHECK(stx_context_create(NULL, &ctx) == STX_OK);
    char path[] = "/tmp/stx_unit_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    int64_t shape[5] = {2, 3, 1, 4, 5};
    stx_tensor *t;
    CHECK(stx_tensor_create(ctx, STX_DTYPE_FLOAT, shape, 5, &t) == STX_OK);
    float *p = stx_tensor_data(t);
    for (int i = 0; i < 120; i++) p[i] = (float)i * 0.5f - 7.0f;
    CHECK(stx_tensor_save_npy(ctx, t, path) == STX_OK);
    stx_tensor *u = NULL;
    CHECK(stx_tensor_load_npy(ctx, path, &u) == STX_OK);
    CHECK(u && stx_tensor_rank(u) == 5 && stx_tensor_numel(u) == 120);
    CHECK(u && memcmp(stx_tensor_data(u), p, 120 * sizeof(float)) == 0);
    /* a scalar and a 1-D int64 */
    stx_tensor *sc;
    CHECK(stx_tensor_create(ctx, STX_DTYPE_INT64, NULL, 0, &sc) == STX_OK);
    *(int64_t *)stx_tensor_data(sc) = -42;
    CHECK(stx_tensor_save_npy(ctx, sc, path) == STX_OK);
    stx_tensor *sc2 = NULL;
    CHECK(stx_tensor_load_npy(ctx, path, &sc2) == STX_OK);
    CHECK(sc2 && stx_tensor_rank(sc2) == 0 && *(int64_t *)stx_tensor_data(sc2) == -42);
    /* header written must be numpy's: 64-byte aligned total header, ends with newline */
    FILE *f = fopen(path, "rb");
    unsigned char hdr[10];
    CHECK(f && fread(hdr, 1, 10, f) == 10);
    if (f) fclose(f);
    CHECK((10 + (hdr[8] | hdr[9] << 8)) % 64 == 0);
    /* bad files give errors, not crashes */
    f = fopen(path, "wb");
    fputs("\x93NUMPY\x01\x00\x20\x00{'descr': '<f4', 'shape': (3,", f);
    fclose(f);
    stx_tensor *bad = NULL;
    CHECK(stx_tensor_load_npy(ctx, path, &bad) != STX_OK && bad == NULL);
    CHECK(strstr(stx_context_last_error(ctx), path) != NULL);
    CHECK(stx_tensor_load_npy(ctx, "/nonexistent/x.npy", &bad) == STX_E_IO);
    remove(path);
    stx_tensor_free(t);
    stx_tensor_free(u);
    stx_tensor_free(sc);
    stx_tensor_free(sc2);
    stx_context_free(ctx);
}

static void test_numel(void) {
    int64_t big[3] = {1 << 30, 1 << 30, 1 << 30};
    int64_t n;
    CHECK(!stx__numel_checked(big, 3, &n));
    int64_t neg[2] = {3, -1};
    CHECK(!stx__numel_checked(neg, 2, &n));
    int64_t ok[2] = {3, 0};
    CHECK(stx__numel_checked(ok, 2, &n) && n == 0);
}

/* ---- stx_frames_to_input: expected values are computed by hand or in double here ---------- */

static stx_tensor *frames_u8(stx_context *ctx, const int64_t *dims, int rank, const uint8_t *v) {
    stx_tensor *t = NULL;
    if (stx_tensor_create(ctx, STX_DTYPE_UINT8, dims, rank, &t) != STX_OK) return NULL;
    memcpy(stx_tensor_data(t), v, (size_t)stx_tensor_numel(t));
    return t;
}

static bool close_to(float got, double want, double tol) {
    return fabs((double)got - want) <= tol;
}

static void test_preprocess_values(stx_context *ctx) {
    stx_preprocess d = stx_preprocess_default();
    CHECK(d.size == sizeof d && strcmp(d.layout, "NCTHW") == 0 && d.normalize == 0);
    CHECK(d.std[0] == 1.0f && d.std[2] == 1.0f && d.mean[1] == 0.0f && d.height == 0);
    /* one RGB pixel: 51 -> 0.2, 102 -> 0.4, 255 -> 1.0, then (x - mean) / std */
    int64_t dims[4] = {1, 1, 1, 3};
    uint8_t px[3] = {51, 102, 255};
    stx_tensor *f = frames_u8(ctx, dims, 4, px), *y = NULL;
    stx_preprocess p = stx_preprocess_default();
    CHECK(f && stx_frames_to_input(ctx, f, &p, &y) == STX_OK);
    if (y) {
        const float *o = stx_tensor_data(y);
        CHECK(stx_tensor_rank(y) == 5 && stx_tensor_dtype(y) == STX_DTYPE_FLOAT);
        CHECK(close_to(o[0], 0.2, 1e-7) && close_to(o[1], 0.4, 1e-7) && o[2] == 1.0f);
        stx_tensor_free(y);
    }
    p.normalize = 1;
    float mean[3] = {0.1f, 0.2f, 0.5f}, sd[3] = {0.5f, 0.25f, 0.5f};
    memcpy(p.mean, mean, sizeof mean);
    memcpy(p.std, sd, sizeof sd);
    y = NULL;
    CHECK(f && stx_frames_to_input(ctx, f, &p, &y) == STX_OK);
    if (y) {
        const float *o = stx_tensor_data(y);
        CHECK(close_to(o[0], 0.2, 1e-6) && close_to(o[1], 0.8, 1e-6) && close_to(o[2], 1.0, 1e-6));
        stx_tensor_free(y);
    }
    stx_tensor_free(f);
}

/* Every layout, element by element, against the index arithmetic written out per layout. */
static void test_preprocess_layouts(stx_context *ctx) {
    enum { N = 2, T = 3, H = 2, W = 4 };
    int64_t dims[5] = {N, T, H, W, 3};
    uint8_t v[N * T * H * W * 3];
    for (int i = 0; i < (int)sizeof v; i++) v[i] = (uint8_t)((i * 37 + 11) % 256);
    stx_tensor *f = frames_u8(ctx, dims, 5, v);
    const char *layouts[3] = {"NCTHW", "NTCHW", "NCHW"};
    const double mean[3] = {0.3, 0.5, 0.7}, sd[3] = {0.2, 0.4, 0.8};
    for (int l = 0; l < 3; l++) {
        stx_preprocess p = stx_preprocess_default();
        p.layout = layouts[l];
        p.normalize = 1;
        for (int c = 0; c < 3; c++) {
            p.mean[c] = (float)mean[c];
            p.std[c] = (float)sd[c];
        }
        stx_tensor *y = NULL;
        CHECK(f && stx_frames_to_input(ctx, f, &p, &y) == STX_OK);
        if (!y) continue;
        const int64_t *yd = stx_tensor_shape(y);
        if (l == 0)
            CHECK(stx_tensor_rank(y) == 5 && yd[0] == N && yd[1] == 3 && yd[2] == T && yd[3] == H &&
                  yd[4] == W);
        else if (l == 1)
            CHECK(stx_tensor_rank(y) == 5 && yd[0] == N && yd[1] == T && yd[2] == 3 && yd[3] == H &&
                  yd[4] == W);
        else
            CHECK(stx_tensor_rank(y) == 4 && yd[0] == N * T && yd[1] == 3 && yd[2] == H &&
                  yd[3] == W);
        const float *o = stx_tensor_data(y);
        int bad = 0;
        for (int n = 0; n < N; n++)
            for (int t = 0; t < T; t++)
                for (int h = 0; h < H; h++)
                    for (int w = 0; w < W; w++)
                        for (int c = 0; c < 3; c++) {
                            int src = (((n * T + t) * H + h) * W + w) * 3 + c;
                            int dst = l == 0   ? (((n * 3 + c) * T + t) * H + h) * W + w
                                      : l == 1 ? (((n * T + t) * 3 + c) * H + h) * W + w
                                               : ((((n * T) + t) * 3 + c) * H + h) * W + w;
                            double want = ((double)v[src] / 255.0 - mean[c]) / sd[c];
                            bad += !close_to(o[dst], want, 1e-5);
                        }
        CHECK(bad == 0);
        if (bad) printf("      layout %s: %d elements differ\n", layouts[l], bad);
        stx_tensor_free(y);
    }
    stx_tensor_free(f);
}

static void test_preprocess_resize(stx_context *ctx) {
    /* a constant frame stays constant whatever the sizes */
    int64_t dims[4] = {2, 5, 7, 3};
    uint8_t cst[2 * 5 * 7 * 3];
    memset(cst, 77, sizeof cst);
    stx_tensor *f = frames_u8(ctx, dims, 4, cst), *y = NULL;
    stx_preprocess p = stx_preprocess_default();
    p.height = 3;
    p.width = 11;
    CHECK(f && stx_frames_to_input(ctx, f, &p, &y) == STX_OK);
    if (y) {
        const int64_t *yd = stx_tensor_shape(y);
        CHECK(yd[0] == 1 && yd[1] == 3 && yd[2] == 2 && yd[3] == 3 && yd[4] == 11);
        const float *o = stx_tensor_data(y);
        int bad = 0;
        for (int64_t i = 0; i < stx_tensor_numel(y); i++) bad += !close_to(o[i], 77.0 / 255, 1e-6);
        CHECK(bad == 0);
        stx_tensor_free(y);
    }
    stx_tensor_free(f);

    /* 2x2 -> 4x4: [[0, 0.2], [0.4, 1.0]]; per axis, output pixels sit at source coordinates
     * 0 (clamped from -0.25), 0.25, 0.75 and 1 (1.25 with both neighbours clamped to pixel 1) */
    int64_t d2[4] = {1, 2, 2, 1};
    uint8_t g2[4] = {0, 51, 102, 255};
    static const double want[4][4] = {{0.0, 0.05, 0.15, 0.2},
                                      {0.1, 0.175, 0.325, 0.4},
                                      {0.3, 0.425, 0.675, 0.8},
                                      {0.4, 0.55, 0.85, 1.0}};
    f = frames_u8(ctx, d2, 4, g2);
    p = stx_preprocess_default();
    p.height = p.width = 4;
    y = NULL;
    CHECK(f && stx_frames_to_input(ctx, f, &p, &y) == STX_OK);
    if (y) {
        const float *o = stx_tensor_data(y);
        int bad = 0;
        for (int c = 0; c < 3; c++) /* grey, so every channel is the same */
            for (int i = 0; i < 16; i++) bad += !close_to(o[c * 16 + i], want[i / 4][i % 4], 1e-6);
        CHECK(bad == 0);
        stx_tensor_free(y);
    }
    stx_tensor_free(f);

    /* 1x4 -> 1x2: source coordinates 0.5 and 2.5, the means of neighbouring pairs */
    int64_t d3[4] = {1, 1, 4, 1};
    uint8_t g3[4] = {0, 51, 102, 255};
    f = frames_u8(ctx, d3, 4, g3);
    p = stx_preprocess_default();
    p.width = 2;
    y = NULL;
    CHECK(f && stx_frames_to_input(ctx, f, &p, &y) == STX_OK);
    if (y) {
        const float *o = stx_tensor_data(y);
        CHECK(stx_tensor_shape(y)[3] == 1 && stx_tensor_shape(y)[4] == 2);
        CHECK(close_to(o[0], 0.1, 1e-6) && close_to(o[1], 0.7, 1e-6));
        stx_tensor_free(y);
    }
    stx_tensor_free(f);
}

static void test_preprocess_grey(stx_context *ctx) {
    int64_t dims[4] = {2, 1, 3, 1};
    uint8_t v[6] = {0, 51, 255, 128, 3, 200};
    stx_tensor *f = frames_u8(ctx, dims, 4, v), *y = NULL;
    stx_preprocess p = stx_preprocess_default();
    p.layout = "NTCHW";
    p.normalize = 1;
    const double mean[3] = {0.1, 0.2, 0.3}, sd[3] = {1.0, 2.0, 4.0};
    for (int c = 0; c < 3; c++) {
        p.mean[c] = (float)mean[c];
        p.std[c] = (float)sd[c];
    }
    CHECK(f && stx_frames_to_input(ctx, f, &p, &y) == STX_OK);
    if (y) {
        CHECK(stx_tensor_shape(y)[2] == 3);
        const float *o = stx_tensor_data(y);
        int bad = 0;
        for (int t = 0; t < 2; t++)
            for (int c = 0; c < 3; c++)
                for (int w = 0; w < 3; w++)
                    bad += !close_to(o[(t * 3 + c) * 3 + w],
                                     ((double)v[t * 3 + w] / 255.0 - mean[c]) / sd[c], 1e-6);
        CHECK(bad == 0);
        stx_tensor_free(y);
    }
    stx_tensor_free(f);
}

/* Bad input: an error naming the problem, *out stays NULL, nothing leaks (ASan). */
static void test_preprocess_errors(stx_context *ctx) {
    uint8_t v[64] = {0};
    int64_t ok[4] = {1, 2, 2, 3}, r3[3] = {2, 2, 3}, c2[4] = {1, 2, 2, 2}, z[4] = {0, 2, 2, 3};
    stx_tensor *good = frames_u8(ctx, ok, 4, v), *rank3 = frames_u8(ctx, r3, 3, v),
               *two = frames_u8(ctx, c2, 4, v), *zero = frames_u8(ctx, z, 4, v), *fl = NULL;
    CHECK(stx_tensor_create(ctx, STX_DTYPE_FLOAT, ok, 4, &fl) == STX_OK);
    stx_preprocess p = stx_preprocess_default();
    struct {
        const stx_tensor *f;
        const char *layout;
        float std0;
        int height;
        const char *needle;
    } cases[] = {{fl, "NCTHW", 1, 0, "uint8"},  {rank3, "NCTHW", 1, 0, "rank 3"},
                 {two, "NCTHW", 1, 0, "got 2"}, {zero, "NCTHW", 1, 0, "[0,2,2,3]"},
                 {good, "NCWH", 1, 0, "NCWH"},  {good, "NCT", 1, 0, "NCT"},
                 {good, "NCTHW", 0, 0, "std"},  {good, "NCTHW", -1, 0, "std"},
                 {good, "NCTHW", 1, -4, "-4"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        p.layout = cases[i].layout;
        p.normalize = 1;
        p.std[0] = cases[i].std0;
        p.height = cases[i].height;
        stx_tensor *y = (stx_tensor *)&p; /* must be reset to NULL */
        stx_status st = stx_frames_to_input(ctx, cases[i].f, &p, &y);
        CHECK(st != STX_OK && y == NULL);
        CHECK(strstr(stx_context_last_error(ctx), cases[i].needle) != NULL);
        if (!strstr(stx_context_last_error(ctx), cases[i].needle))
            printf("      case %zu: '%s' lacks '%s'\n", i, stx_context_last_error(ctx),
                   cases[i].needle);
    }
    stx_tensor *y = NULL;
    p = stx_preprocess_default();
    CHECK(stx_frames_to_input(ctx, NULL, &p, &y) == STX_E_INVALID && y == NULL);
    CHECK(stx_frames_to_input(ctx, good, NULL, &y) == STX_E_INVALID);
    CHECK(stx_frames_to_input(NULL, good, &p, &y) == STX_OK && y != NULL); /* ctx is optional */
    stx_tensor_free(y);
    stx_tensor_free(good);
    stx_tensor_free(rank3);
    stx_tensor_free(two);
    stx_tensor_free(zero);
    stx_tensor_free(fl);
}

static void test_preprocess(void) {
    stx_context *ctx = NULL;
    CHECK(stx_context_create(NULL, &ctx) == STX_OK);
    test_preprocess_values(ctx);
    test_preprocess_layouts(ctx);
    test_preprocess_resize(ctx);
    test_preprocess_grey(ctx);
    test_preprocess_errors(ctx);
    stx_context_free(ctx);
}

/* ---- model facts: a tiny ONNX model written here with a minimal protobuf encoder ---------- */

/* A growable byte buffer holding one protobuf message. */
typedef struct pb {
    unsigned char b[4096];
    size_t n;
} pb;

static void pb_varint(pb *m, uint64_t v) {
    do {
        m->b[m->n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
}
static void pb_int(pb *m, int field, uint64_t v) { /* wire type 0 */
    pb_varint(m, (uint64_t)field << 3);
    pb_varint(m, v);
}
static void pb_bytes(pb *m, int field, const void *data, size_t len) { /* wire type 2 */
    pb_varint(m, (uint64_t)field << 3 | 2);
    pb_varint(m, len);
    memcpy(m->b + m->n, data, len);
    m->n += len;
}
static void pb_str(pb *m, int field, const char *s) {
    pb_bytes(m, field, s, strlen(s));
}
static void pb_msg(pb *m, int field, const pb *sub) {
    pb_bytes(m, field, sub->b, sub->n);
}

/* ValueInfoProto: float tensor `name` of shape dims. */
static void pb_value_info(pb *g, int field, const char *name, const int64_t *dims, int rank) {
    pb shape = {.n = 0}, tensor = {.n = 0}, type = {.n = 0}, vi = {.n = 0};
    for (int i = 0; i < rank; i++) {
        pb dim = {.n = 0};
        pb_int(&dim, 1, (uint64_t)dims[i]); /* Dimension.dim_value */
        pb_msg(&shape, 1, &dim);            /* TensorShapeProto.dim */
    }
    pb_int(&tensor, 1, 1);      /* TypeProto.Tensor.elem_type = FLOAT */
    pb_msg(&tensor, 2, &shape); /* .shape */
    pb_msg(&type, 1, &tensor);  /* TypeProto.tensor_type */
    pb_str(&vi, 1, name);       /* ValueInfoProto.name */
    pb_msg(&vi, 2, &type);      /* .type */
    pb_msg(g, field, &vi);
}

/* Writes input (1,3,2,2,2) -> Identity -> "scores", with metadata key/value pairs (NULL-ended). */
static bool write_facts_model(const char *path, const char *const *kv) {
    static pb model, graph;
    model.n = graph.n = 0;
    pb node = {.n = 0}, opset = {.n = 0};
    int64_t dims[5] = {1, 3, 2, 2, 2};
    pb_str(&node, 1, "input");  /* NodeProto.input */
    pb_str(&node, 2, "scores"); /* .output */
    pb_str(&node, 3, "/head/Identity");
    pb_str(&node, 4, "Identity"); /* .op_type */
    pb_msg(&graph, 1, &node);
    pb_str(&graph, 2, "g");
    pb_value_info(&graph, 11, "input", dims, 5);
    pb_value_info(&graph, 12, "scores", dims, 5);
    pb_int(&model, 1, 8);  /* ModelProto.ir_version */
    pb_int(&opset, 2, 17); /* OperatorSetIdProto.version */
    pb_msg(&model, 8, &opset);
    pb_msg(&model, 7, &graph);
    for (int i = 0; kv[i]; i += 2) {
        pb e = {.n = 0};
        pb_str(&e, 1, kv[i]);
        pb_str(&e, 2, kv[i + 1]);
        pb_msg(&model, 14, &e); /* ModelProto.metadata_props */
    }
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(model.b, 1, model.n, f) == model.n;
    return fclose(f) == 0 && ok;
}

static void test_facts(void) {
    stx_context *ctx = NULL;
    CHECK(stx_context_create(NULL, &ctx) == STX_OK);
    char path[] = "/tmp/stx_facts_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);

    /* every key well-formed */
    const char *good[] = {"stx.name",
                          "tiny",
                          "stx.task",
                          "frame",
                          "stx.classes",
                          "a, b ,c",
                          "stx.layout",
                          "NCTHW",
                          "stx.mean",
                          "0.5,0.25,1e-1",
                          "stx.std",
                          "2,0.5,0.3",
                          "stx.clip_length",
                          "0",
                          "stx.frame_size",
                          "64x48",
                          "stx.target_layer",
                          "head",
                          "stx.token_grid",
                          "8x4x2",
                          "stx.output",
                          "scores",
                          "stx.tools",
                          "x,y",
                          NULL};
    stx_model *m = NULL;
    CHECK(write_facts_model(path, good) && stx_model_load(ctx, path, NULL, &m) == STX_OK);
    if (m) {
        stx_model_facts f;
        memset(&f, 0xab, sizeof f);
        CHECK(stx_model_facts_get(m, &f) == STX_OK && f.size == sizeof f);
        CHECK(f.name && strcmp(f.name, "tiny") == 0 && strcmp(f.task, "frame") == 0);
        CHECK(f.layout && strcmp(f.layout, "NCTHW") == 0);
        CHECK(f.target_layer && strcmp(f.target_layer, "head") == 0);
        CHECK(f.output && strcmp(f.output, "scores") == 0);
        CHECK(f.num_classes == 3 && strcmp(f.class_names[0], "a") == 0 &&
              strcmp(f.class_names[1], "b") == 0 && strcmp(f.class_names[2], "c") == 0);
        CHECK(f.has_normalization && f.mean[0] == 0.5f && f.mean[1] == 0.25f &&
              f.mean[2] == (float)0.1 && f.std[0] == 2.0f && f.std[2] == (float)0.3);
        CHECK(f.clip_length == 0 && f.frame_height == 64 && f.frame_width == 48);
        CHECK(f.token_grid[0] == 8 && f.token_grid[1] == 4 && f.token_grid[2] == 2);
        CHECK(stx_model_facts_error(m, 0, NULL) == NULL);
        CHECK(stx_model_class_index(m, "b") == 1 && stx_model_class_index(m, "c") == 2);
        CHECK(stx_model_class_index(m, "d") == -1 && stx_model_class_index(m, NULL) == -1);
        stx_preprocess p = stx_preprocess_default();
        CHECK(stx_preprocess_from_model(m, &p) == STX_OK);
        CHECK(strcmp(p.layout, "NCTHW") == 0 && p.normalize == 1 && p.mean[1] == 0.25f &&
              p.std[1] == 0.5f && p.height == 64 && p.width == 48);
    }
    stx_model_free(m);

    /* malformed values: the load succeeds, the model runs, the keys are absent and reported */
    const char *bad[] = {"stx.task",
                         "video",
                         "stx.classes",
                         "a,b,a",
                         "stx.layout",
                         "NCHW",
                         "stx.mean",
                         "a,b",
                         "stx.std",
                         "1,0,1",
                         "stx.frame_size",
                         "64",
                         "stx.clip_length",
                         "-1",
                         "stx.token_grid",
                         "8x4",
                         "stx.target_layer",
                         "layer9",
                         "stx.output",
                         "logits",
                         "stx.name",
                         "",
                         NULL};
    const char *want_keys[] = {"stx.name",         "stx.task",      "stx.layout",
                               "stx.target_layer", "stx.output",    "stx.classes",
                               "stx.mean",         "stx.std",       "stx.clip_length",
                               "stx.frame_size",   "stx.token_grid"};
    m = NULL;
    CHECK(write_facts_model(path, bad) && stx_model_load(ctx, path, NULL, &m) == STX_OK);
    if (m) {
        stx_model_facts f;
        CHECK(stx_model_facts_get(m, &f) == STX_E_FORMAT);
        const char *msg = stx_context_last_error(ctx);
        CHECK(strstr(msg, path) && strstr(msg, "metadata 'stx.name'"));
        const char *key = NULL;
        int n = 0;
        for (int i = 0; stx_model_facts_error(m, i, &key); i++, n++)
            CHECK(i < 11 && strcmp(key, want_keys[i]) == 0);
        CHECK(n == 11);
        msg = stx_model_facts_error(m, 6, &key);
        CHECK(msg && strstr(msg, "metadata 'stx.mean' = 'a,b': expected 3 comma-separated"));
        msg = stx_model_facts_error(m, 2, &key);
        CHECK(msg && strstr(msg, "rank 5")); /* NCHW for a rank-5 input */
        CHECK(!f.name && !f.task && !f.layout && !f.target_layer && !f.output);
        CHECK(f.num_classes == 0 && !f.class_names && !f.has_normalization);
        CHECK(f.frame_height == 0 && f.token_grid[0] == 0 && f.clip_length == 0);
        stx_preprocess p = stx_preprocess_default();
        CHECK(stx_preprocess_from_model(m, &p) == STX_E_FORMAT);
        CHECK(strcmp(p.layout, "NCTHW") == 0 && p.normalize == 0 && p.height == 0);
        /* the graph still runs */
        int64_t dims[5] = {1, 3, 2, 2, 2};
        stx_session *s = NULL;
        stx_tensor *x = NULL, *y = NULL;
        CHECK(stx_tensor_create(ctx, STX_DTYPE_FLOAT, dims, 5, &x) == STX_OK);
        CHECK(stx_session_create(m, NULL, dims, 5, &s) == STX_OK);
        CHECK(s && x && stx_session_run(s, x, &y) == STX_OK && y);
        stx_session_free(s);
        stx_tensor_free(x);
    }
    stx_model_free(m);

    /* one of mean/std alone: the other is reported missing, the present one still parses */
    const char *half[] = {"stx.mean", "0.5,0.5,0.5", NULL};
    m = NULL;
    CHECK(write_facts_model(path, half) && stx_model_load(ctx, path, NULL, &m) == STX_OK);
    if (m) {
        stx_model_facts f;
        const char *key = NULL;
        CHECK(stx_model_facts_get(m, &f) == STX_E_FORMAT && !f.has_normalization);
        CHECK(f.mean[0] == 0.5f && f.std[0] == 0.0f);
        const char *msg = stx_model_facts_error(m, 0, &key);
        CHECK(msg && strcmp(key, "stx.std") == 0 && strstr(msg, "missing"));
    }
    stx_model_free(m);

    /* no metadata at all: empty facts, no error */
    const char *none[] = {NULL};
    m = NULL;
    CHECK(write_facts_model(path, none) && stx_model_load(ctx, path, NULL, &m) == STX_OK);
    if (m) {
        stx_model_facts f;
        CHECK(stx_model_facts_get(m, &f) == STX_OK && !f.layout && f.num_classes == 0);
        CHECK(stx_model_class_index(m, "a") == -1);
    }
    stx_model_free(m);
    unlink(path);
    stx_context_free(ctx);
}

/* Upsampling and the CAM arithmetic against hand-computed values (docs/cam.md). */
static bool near(double a, double b) {
    return fabs(a - b) <= 1e-12 * (1 + fabs(b));
}

static void test_explain_units(void) {
    double in[2] = {0, 1}, out[4], tmp[16];
    /* trilinear 1x1x2 -> 1x1x4, half-pixel centres: sources -0.25 (clamped), 0.25, 0.75, 1.25 */
    stx__upsample_trilinear(in, 1, 1, 2, out, 1, 1, 4, tmp);
    CHECK(near(out[0], 0) && near(out[1], 0.25) && near(out[2], 0.75) && near(out[3], 1));
    /* the same along time and height */
    stx__upsample_trilinear(in, 2, 1, 1, out, 4, 1, 1, tmp);
    CHECK(near(out[1], 0.25) && near(out[2], 0.75) && near(out[3], 1));
    stx__upsample_trilinear(in, 1, 2, 1, out, 1, 4, 1, tmp);
    CHECK(near(out[1], 0.25) && near(out[2], 0.75));
    stx__upsample_nearest(in, 1, 1, 2, out, 1, 1, 4);
    CHECK(out[0] == 0 && out[1] == 0 && out[2] == 1 && out[3] == 1);
    /* 2x2x2 cube -> 4x4x4: the centre voxels average the 8 corners with weights 3/4, 1/4 */
    double cube[8] = {0, 1, 2, 3, 4, 5, 6, 7}, big[64], tmp2[64];
    stx__upsample_trilinear(cube, 2, 2, 2, big, 4, 4, 4, tmp2);
    CHECK(near(big[(1 * 4 + 1) * 4 + 1], 0.25 * 4 + 0.25 * 2 + 0.25 * 1) && near(big[0], 0) &&
          near(big[63], 7));

    /* Grad-CAM++: K=1, A=[1,3], G=[2,-1]: S=4, alpha(0)=4/(8+4*8)=0.1, w=0.1*2 */
    double A[2] = {1, 3}, G[2] = {2, -1}, w[4], L[3];
    stx_cam_maps m = {1, 1, 1, 2, A, G};
    stx__cam_gradcampp(&m, G, NULL, NULL, w, L);
    CHECK(near(w[0], 0.2) && near(L[0], 0.2) && near(L[1], 0.6));
    /* Grad-CAM: w = mean G = 0.5; HiResCAM relu(2*1, -3) ; Layer-CAM relu(G)*A */
    stx__cam_gradcam(&m, w, L);
    CHECK(near(w[0], 0.5) && near(L[0], 0.5) && near(L[1], 1.5));
    stx__cam_hirescam(&m, L);
    CHECK(near(L[0], 2) && L[1] == 0);
    stx__cam_layercam(&m, L);
    CHECK(near(L[0], 2) && L[1] == 0);
    /* CAM: w = sum G = 1, no ReLU */
    stx__cam_cam(&m, w, L);
    CHECK(near(w[0], 1) && near(L[1], 3));
    /* XGrad-CAM: w = (1*2 + 3*(-1)) / 4 < 0 -> zero map */
    stx__cam_xgradcam(&m, w, L);
    CHECK(fabs(w[0] + 0.25) < 1e-7 && L[0] == 0 && L[1] == 0);
    /* Score-CAM weights: softmax of (s - base): s = [1, 1 + ln 3] -> [1/4, 3/4] */
    double A2[4] = {1, 0, 0, 1}, s2[2] = {1, 1 + log(3.0)};
    stx_cam_maps m2 = {2, 1, 1, 2, A2, NULL};
    stx__cam_from_scores(&m2, s2, 0.5, w, L);
    CHECK(near(w[0], 0.25) && near(w[1], 0.75) && near(L[0], 0.25) && near(L[1], 0.75));
    /* Ablation: w_k = (y - y_k) / y */
    double yk[2] = {1, 3};
    stx__cam_ablation(&m2, yk, 2, w, L);
    CHECK(near(w[0], 0.5) && near(w[1], -0.5) && near(L[0], 0.5) && L[1] == 0);
    /* Eigen-CAM: channels [1,2,3] and [2,4,6]: centred rows project on (1,2)/sqrt 5 to
     * [-sqrt 5, 0, sqrt 5]; no sign flip (|min| = |max|), ReLU keeps the last */
    double A3[6] = {1, 2, 3, 2, 4, 6}, work[16], L3[3];
    stx_cam_maps m3 = {2, 1, 1, 3, A3, NULL};
    stx__cam_eigen(&m3, work, L3);
    CHECK(fabs(L3[0]) < 1e-9 && fabs(L3[1]) < 1e-9 && fabs(L3[2] - sqrt(5.0)) < 1e-9);
    /* Eigen-CAM sign: channel [3, 0, 0] centred [2,-1,-1]: the flip makes the big side positive */
    double A4[3] = {0, 0, 3}, L4[3], work4[8];
    stx_cam_maps m4 = {1, 1, 1, 3, A4, NULL};
    stx__cam_eigen(&m4, work4, L4);
    CHECK(near(L4[2], 2) && L4[0] == 0 && L4[1] == 0);
    /* min-max; a constant channel gives zeros */
    double c3[3] = {2, 4, 3}, mm[3], k3[3] = {5, 5, 5};
    stx__cam_minmax(c3, 3, mm);
    CHECK(mm[0] == 0 && mm[1] == 1 && near(mm[2], 0.5));
    stx__cam_minmax(k3, 3, mm);
    CHECK(mm[0] == 0 && mm[2] == 0);

    /* RNG: same seed, same stream; normal draws have about the right moments */
    stx_rng r1, r2;
    stx__rng_seed(&r1, 7);
    stx__rng_seed(&r2, 7);
    bool same = true;
    for (int i = 0; i < 100; i++) same &= stx__rng_next(&r1) == stx__rng_next(&r2);
    CHECK(same);
    double s1 = 0, sq = 0;
    for (int i = 0; i < 100000; i++) {
        double z = stx__rng_normal(&r1);
        s1 += z;
        sq += z * z;
    }
    CHECK(fabs(s1 / 100000) < 0.02 && fabs(sq / 100000 - 1) < 0.02);
}

/* Clip sampling: indices worked out by hand from the definitions in stx.h. */
static void test_sampling(void) {
    stx_sampling s = stx_sampling_default();
    int64_t n = -1, idx[16];
    CHECK(s.clip_len == 16 && s.frame_stride == 1);
    /* one clip, stride 2 from 3: 3, 5, ..., 33 needs 34 frames */
    s.frame_stride = 2;
    s.start = 3;
    CHECK(stx_sampling_count(&s, 34, &n) == STX_OK && n == 1);
    CHECK(stx_sampling_indices(&s, 34, 0, idx) == STX_OK && idx[0] == 3 && idx[15] == 33);
    CHECK(stx_sampling_count(&s, 33, &n) == STX_E_SHAPE);
    /* uniform: floor((i + 0.5) * 100 / 16) */
    s = stx_sampling_default();
    s.uniform = 1;
    CHECK(stx_sampling_count(&s, 100, &n) == STX_OK && n == 1);
    CHECK(stx_sampling_indices(&s, 100, 0, idx) == STX_OK);
    CHECK(idx[0] == 3 && idx[1] == 9 && idx[8] == 53 && idx[15] == 96);
    /* a video shorter than the clip repeats frames: 5 frames -> floor((2i + 1) * 5 / 32) =
     * 0,0,0,1,1,1,2,2,2,2,3,3,3,4,4,4 */
    CHECK(stx_sampling_indices(&s, 5, 0, idx) == STX_OK);
    CHECK(idx[0] == 0 && idx[2] == 0 && idx[3] == 1 && idx[6] == 2 && idx[9] == 2 && idx[10] == 3 &&
          idx[13] == 4 && idx[15] == 4);
    /* windows of 16, stride 8 over 50 frames: starts 0, 8, 16, 24, 32 and 34 (the last moved
     * back to end at frame 49) */
    s = stx_sampling_default();
    s.windows = 1;
    s.window_stride = 8;
    CHECK(stx_sampling_count(&s, 50, &n) == STX_OK && n == 6);
    CHECK(stx_sampling_indices(&s, 50, 4, idx) == STX_OK && idx[0] == 32 && idx[15] == 47);
    CHECK(stx_sampling_indices(&s, 50, 5, idx) == STX_OK && idx[0] == 34 && idx[15] == 49);
    CHECK(stx_sampling_indices(&s, 50, 6, idx) == STX_E_INVALID);
    /* exact fit: 48 frames, stride 16 (default: no overlap): 3 windows, none moved */
    s.window_stride = 0;
    CHECK(stx_sampling_count(&s, 48, &n) == STX_OK && n == 3);
    CHECK(stx_sampling_indices(&s, 48, 2, idx) == STX_OK && idx[0] == 32 && idx[15] == 47);
    /* frame stride 2, windows from 5: span 31 frames; 100 frames -> starts 5, 37, 69 (69 + 30 =
     * 99: the last frame) */
    s.frame_stride = 2;
    s.start = 5;
    CHECK(stx_sampling_count(&s, 100, &n) == STX_OK && n == 3);
    CHECK(stx_sampling_indices(&s, 100, 2, idx) == STX_OK && idx[0] == 69 && idx[15] == 99);
    s.clip_len = 0;
    CHECK(stx_sampling_count(&s, 100, &n) == STX_E_INVALID);
}

/* Resize-and-crop geometry: torchvision's rules worked out by hand. */
static void test_geometry(void) {
    stx_preprocess p = stx_preprocess_default();
    stx_frame_geometry g;
    p.short_side = 128;
    p.crop_height = p.crop_width = 112;
    /* 240x320 -> 128 x int(128 * 320 / 240) = 128x170; crop offsets round(16/2) = 8 and
     * round(58/2) = 29 */
    CHECK(stx_preprocess_geometry(&p, 240, 320, &g) == STX_OK);
    CHECK(g.resized_h == 128 && g.resized_w == 170 && g.crop_y == 8 && g.crop_x == 29);
    CHECK(g.out_h == 112 && g.out_w == 112);
    /* portrait 321x240 -> int(128 * 321 / 240) = 171 x 128; offsets round(59/2) = round(29.5) =
     * 30 (Python rounds halves to even) and 8 */
    CHECK(stx_preprocess_geometry(&p, 321, 240, &g) == STX_OK);
    CHECK(g.resized_h == 171 && g.resized_w == 128 && g.crop_y == 30 && g.crop_x == 8);
    /* 333x240 -> 177x128: round(65/2) = round(32.5) = 32 */
    CHECK(stx_preprocess_geometry(&p, 333, 240, &g) == STX_OK && g.crop_y == 32);
    /* a crop larger than the resized frame */
    p.crop_height = 200;
    CHECK(stx_preprocess_geometry(&p, 240, 320, &g) == STX_E_SHAPE);
    /* an exact size wins over short side and crop */
    p.height = 64;
    p.width = 48;
    CHECK(stx_preprocess_geometry(&p, 240, 320, &g) == STX_OK && g.out_h == 64 && g.out_w == 48 &&
          g.crop_y == 0);
    stx_preprocess q = stx_preprocess_default();
    CHECK(stx_preprocess_preset("kinetics", &q) == STX_OK && q.short_side == 128 &&
          q.crop_height == 112 && q.normalize && q.mean[0] == 0.43216f);
    CHECK(stx_preprocess_preset("nope", &q) == STX_E_NOTFOUND);
}

int main(int argc, char **argv) {
    if (argc == 7 && strcmp(argv[1], "--preprocess") == 0) {
        /* tests/cli/test_video.py: IN.npy OUT.npy SHORT CROP BGR with the kinetics mean/std */
        stx_context *ctx = NULL;
        stx_tensor *x = NULL, *y = NULL;
        stx_preprocess p = stx_preprocess_default();
        stx_preprocess_preset("kinetics", &p);
        p.short_side = atoi(argv[4]);
        p.crop_height = p.crop_width = atoi(argv[5]);
        p.bgr = atoi(argv[6]);
        int rc = stx_context_create(NULL, &ctx) != STX_OK ||
                 stx_tensor_load_npy(ctx, argv[2], &x) != STX_OK ||
                 stx_frames_to_input(ctx, x, &p, &y) != STX_OK ||
                 stx_tensor_save_npy(ctx, y, argv[3]) != STX_OK;
        if (rc) fprintf(stderr, "%s\n", stx_context_last_error(ctx));
        stx_tensor_free(x);
        stx_tensor_free(y);
        stx_context_free(ctx);
        return rc;
    }
    (void)argv;
    test_status();
    test_scope();
    test_npy();
    test_numel();
    test_preprocess();
    test_facts();
    test_explain_units();
    test_sampling();
    test_geometry();
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
