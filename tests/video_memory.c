/* video_memory.c: stx_video_open_memory (FFmpeg custom I/O on a buffer) against stx_video_open
 * on the same file: the same info and the same frames, bit for bit, with a rewind; an empty or
 * garbage buffer is a clean STX_E_FORMAT naming the source.
 *
 *   stx_video_memory_tests VIDEO */
#include "stx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, stx_context *ctx) {
    fprintf(stderr, "video_memory: %s: %s\n", what, ctx ? stx_context_last_error(ctx) : "");
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: stx_video_memory_tests VIDEO\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) return fail("cannot open the video", NULL);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) return fail("cannot read", NULL);
    fclose(f);
    stx_context *ctx = NULL;
    stx_context_options o = stx_context_options_default();
    o.num_threads = 1;
    if (stx_context_create(&o, &ctx)) return fail("context", NULL);
    stx_video *vf = NULL, *vm = NULL;
    if (stx_video_open(ctx, argv[1], &vf)) return fail("open file", ctx);
    if (stx_video_open_memory(ctx, buf, (size_t)size, "clip in memory", &vm))
        return fail("open memory", ctx);
    stx_video_info a, b;
    stx_video_get_info(vf, &a);
    stx_video_get_info(vm, &b);
    if (a.width != b.width || a.height != b.height || a.num_frames != b.num_frames ||
        a.fps != b.fps || strcmp(a.codec, b.codec) != 0 || strcmp(a.format, b.format) != 0)
        return fail("info differs", ctx);
    int bad = 0;
    /* every frame; the last one alone (the cache then holds only it); frames before it (a
     * rewind: the memory source is demuxed again from its start) */
    int64_t n = a.num_frames;
    int64_t *all = malloc(sizeof *all * (size_t)n);
    for (int64_t i = 0; i < n; i++) all[i] = i;
    int64_t last[1] = {n - 1}, back[2] = {0, n / 2};
    for (int pass = 0; pass < 3; pass++) {
        const int64_t *idx = pass == 0 ? all : pass == 1 ? last : back;
        int k = pass == 0 ? (int)n : pass == 1 ? 1 : 2;
        stx_tensor *tf = NULL, *tm = NULL;
        if (stx_video_read(vf, idx, k, &tf) || stx_video_read(vm, idx, k, &tm))
            return fail("read", ctx);
        size_t bytes = (size_t)stx_tensor_numel(tf);
        if (stx_tensor_numel(tm) != (int64_t)bytes ||
            memcmp(stx_tensor_data_const(tf), stx_tensor_data_const(tm), bytes) != 0) {
            fprintf(stderr, "video_memory: pass %d: frames differ\n", pass);
            bad = 1;
        }
        stx_tensor_free(tf);
        stx_tensor_free(tm);
    }
    char codec[64];
    snprintf(codec, sizeof codec, "%s", a.codec);
    stx_video_close(vf);
    stx_video_close(vm);
    /* bad buffers */
    stx_video *v = NULL;
    stx_status st = stx_video_open_memory(ctx, buf, 0, "empty", &v);
    if (st != STX_E_FORMAT || v || !strstr(stx_context_last_error(ctx), "empty")) {
        fprintf(stderr, "video_memory: empty buffer: %s\n", stx_context_last_error(ctx));
        bad = 1;
    }
    memset(buf, 0x5a, (size_t)size);
    st = stx_video_open_memory(ctx, buf, (size_t)size, "garbage", &v);
    if (st != STX_E_FORMAT || v || !strstr(stx_context_last_error(ctx), "garbage")) {
        fprintf(stderr, "video_memory: garbage buffer: %s %s\n", stx_status_name(st),
                stx_context_last_error(ctx));
        bad = 1;
    }
    printf("video_memory: %lld frames %dx%d (%s): %s\n", (long long)n, a.width, a.height, codec,
           bad ? "FAILED" : "memory source identical to the file");
    free(all);
    free(buf);
    stx_context_free(ctx);
    return bad;
}
