/* fuzz_npy.c: the .npy reader (stx__npy_read behind stx_tensor_load_npy) on a memory stream.
 * An accepted array must be self-consistent: its byte size is its element count times the
 * element size and every byte of it can be read (ASan checks the reads). */
#include "fuzz_common.h"

#include "core/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static stx_context *ctx;
    if (!ctx) ctx = fuzz_context();
    if (!ctx || size == 0) return 0;
    FILE *f = fmemopen((void *)data, size, "rb");
    if (!f) return 0;
    stx_tensor *t = NULL;
    stx_status st = stx__npy_read(ctx, f, "fuzz.npy", &t);
    fclose(f);
    if (st == STX_OK) {
        int64_t n = stx_tensor_numel(t);
        size_t es = stx_dtype_size(stx_tensor_dtype(t));
        if (es == 0 || n < 0 || (uint64_t)n * es != t->nbytes || t->nbytes > size) abort();
        const unsigned char *p = stx_tensor_data_const(t);
        unsigned sum = 0;
        for (size_t i = 0; i < t->nbytes; i++) sum += p[i];
        if (stx_tensor_dtype(t) == STX_DTYPE_BOOL)
            for (size_t i = 0; i < t->nbytes; i++)
                if (p[i] > 1) abort();
        (void)sum;
    } else if (t != NULL || stx_context_last_error(ctx)[0] == '\0') {
        abort(); /* a failure leaves no tensor and always has a message */
    }
    stx_tensor_free(t);
    return 0;
}
