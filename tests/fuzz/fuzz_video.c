/* fuzz_video.c: the video path (src/video/decode.c) on a memory buffer through FFmpeg's custom
 * I/O (stx_video_open_memory): probing, the demux-only frame count, decoding, RGB conversion,
 * the frame cache and rewinding. Frames are decoded only when a frame has at most 2^20 pixels
 * (larger ones are opened and counted but not decoded, to keep executions fast). FFmpeg's own
 * code is not instrumented for coverage: libFuzzer is guided by stx's code only. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static stx_context *ctx;
    if (!ctx) ctx = fuzz_context();
    if (!ctx) return 0;
    stx_video *v = NULL;
    stx_status st = stx_video_open_memory(ctx, data, size, "fuzz", &v);
    if (st != STX_OK) {
        if (v != NULL || stx_context_last_error(ctx)[0] == '\0') abort();
        return 0;
    }
    stx_video_info info;
    stx_video_get_info(v, &info);
    if (info.width <= 0 || info.height <= 0 || info.num_frames <= 0) abort();
    if ((int64_t)info.width * info.height <= (1 << 20)) {
        int64_t n = info.num_frames;
        int64_t idx[3] = {0, n / 2, n - 1};
        int64_t again[2] = {0, 0};
        stx_tensor *t = NULL;
        if (stx_video_read(v, idx, 3, &t) == STX_OK) {
            const int64_t *s = stx_tensor_shape(t);
            if (s[0] != 3 || s[1] != info.height || s[2] != info.width || s[3] != 3) abort();
            stx_tensor_free(t);
            t = NULL;
            if (stx_video_read(v, again, 2, &t) == STX_OK) stx_tensor_free(t); /* a rewind */
        }
    }
    stx_video_close(v);
    return 0;
}
