/* unit_tests.c: core units (status table, .npy I/O, module scopes, planner memory reuse).
 * Prints one line per failed check and "N passed, M failed". */
#include "core/core.h"
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

int main(void) {
    test_status();
    test_scope();
    test_npy();
    test_numel();
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
