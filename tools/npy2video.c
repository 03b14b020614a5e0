/* npy2video.c: writes uint8 frames (T, H, W, 3) from a .npy file as a video with stx's writer
 * (H.264 in MP4 when available, else MPEG-4 part 2), or makes a synthetic long test video.
 *
 *   stx_npy2video FRAMES.npy OUT.mp4 [FPS]
 *   stx_npy2video --synthetic N HxW OUT.mp4 [FPS]   N frames of a moving bright square
 *
 * A development tool: it makes the bundled demo clip (tools/make_demo_video.sh) and the tests'
 * long videos; it is not part of the `stx` command. */
#include "stx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(stx_context *ctx, const char *what) {
    fprintf(stderr, "npy2video: %s: %s\n", what, ctx ? stx_context_last_error(ctx) : "");
    return 1;
}

int main(int argc, char **argv) {
    stx_context *ctx = NULL;
    if (stx_context_create(NULL, &ctx) != STX_OK) return 1;
    int rc = 0;
    if (argc >= 5 && strcmp(argv[1], "--synthetic") == 0) {
        long n = atol(argv[2]);
        int h = 0, w = 0;
        if (n <= 0 || sscanf(argv[3], "%dx%d", &h, &w) != 2 || h <= 0 || w <= 0) {
            fprintf(stderr, "npy2video: bad --synthetic N HxW\n");
            stx_context_free(ctx);
            return 2;
        }
        double fps = argc > 5 ? atof(argv[5]) : 25;
        stx_video_writer *vw = NULL;
        int64_t d[4] = {1, h, w, 3};
        stx_tensor *f = NULL;
        if (stx_video_writer_open(ctx, argv[4], w, h, fps, &vw) != STX_OK ||
            stx_tensor_create(ctx, STX_DTYPE_UINT8, d, 4, &f) != STX_OK) {
            rc = fail(ctx, argv[4]);
        }
        for (long t = 0; t < n && !rc; t++) {
            uint8_t *p = stx_tensor_data(f);
            int s = h / 4, y0 = (int)((t * 3) % (h - s)), x0 = (int)((t * 5) % (w - s));
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    uint8_t *q = p + ((size_t)y * w + x) * 3;
                    int in = y >= y0 && y < y0 + s && x >= x0 && x < x0 + s;
                    q[0] = in ? 240 : (uint8_t)(40 + (x * 80) / w);
                    q[1] = in ? 220 : (uint8_t)(60 + (y * 80) / h);
                    q[2] = in ? 40 : 90;
                }
            if (stx_video_writer_write(vw, f) != STX_OK) rc = fail(ctx, argv[4]);
        }
        stx_tensor_free(f);
        if (vw && stx_video_writer_close(vw, NULL) != STX_OK && !rc) rc = fail(ctx, argv[4]);
        stx_context_free(ctx);
        return rc;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: stx_npy2video FRAMES.npy OUT.mp4 [FPS]\n"
                        "       stx_npy2video --synthetic N HxW OUT.mp4 [FPS]\n");
        stx_context_free(ctx);
        return 2;
    }
    stx_tensor *x = NULL;
    const char *codec = NULL;
    if (stx_tensor_load_npy(ctx, argv[1], &x) != STX_OK ||
        stx_write_video(ctx, x, argc > 3 ? atof(argv[3]) : 8, argv[2], &codec) != STX_OK)
        rc = fail(ctx, argv[1]);
    else
        printf("%s: %s\n", argv[2], codec);
    stx_tensor_free(x);
    stx_context_free(ctx);
    return rc;
}
