/* image_out.c: PNG (libpng) and animated GIF (giflib) writers.
 *
 * Both write a temporary file beside the target ("<path>.tmp<pid>.<n>", opened with fopen so the
 * final file gets the usual 0666 & ~umask mode) and rename it onto the target; on any failure the
 * temporary is removed and the error names the target path.
 *
 * PNG: 8-bit RGB, not interlaced, libpng's default filters and zlib level. libpng reports errors
 * by longjmp: the error callback keeps the message (nothing is printed), warnings are dropped,
 * and the setjmp lives in a small function whose locals are all set before it.
 *
 * GIF: GIF89a with a NETSCAPE2.0 application block (loop forever), one local colour table per
 * frame (at most 256 colours, quantize.c: exact when the frame has no more than 256 colours,
 * else error-driven median cut refined by k-means; the table is padded to a power of two), a
 * graphics control block per frame (no disposal, no transparency). Frame delays
 * are in 1/100 s: frame i lasts round(100 * (i + 1) / fps) - round(100 * i / fps), so the
 * average rate is fps even when 100 / fps is not an integer, but never below 2 (browsers show
 * shorter delays as 0.1 s). */
#include "render.h"

#include <errno.h>
#include <gif_lib.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

char *stx__render_tmp_path(stx_context *ctx, const char *path) {
    static atomic_uint counter;
    unsigned k = atomic_fetch_add(&counter, 1u);
    size_t n = strlen(path) + 48;
    char *tmp = stx__malloc(ctx, n);
    if (tmp) snprintf(tmp, n, "%s.tmp%ld.%u", path, (long)getpid(), k);
    return tmp;
}

/* ---- PNG ------------------------------------------------------------------------------------ */

typedef struct png_err {
    char msg[256];
} png_err;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_err *pe = png_get_error_ptr(png);
    if (pe) snprintf(pe->msg, sizeof pe->msg, "%s", msg ? msg : "libpng error");
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

/* Everything libpng may longjmp out of; 0 on success. */
static int png_encode(png_structp png, png_infop info, FILE *f, const uint8_t *rgb, int w, int h) {
    if (setjmp(png_jmpbuf(png))) return -1;
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int r = 0; r < h; r++) png_write_row(png, rgb + (size_t)r * (size_t)w * 3);
    png_write_end(png, info);
    return 0;
}

stx_status stx_write_png(stx_context *ctx, const stx_tensor *rgb, const char *path) {
    static const char fn[] = "stx_write_png";
    stx_err *e = ctx ? &ctx->err : NULL;
    if (!rgb || !path) return stx__errf(e, STX_E_INVALID, "%s: rgb and path are required", fn);
    char sb[160];
    if (rgb->dtype != STX_DTYPE_UINT8 || rgb->rank != 3 || rgb->dims[2] != 3 || rgb->dims[0] <= 0 ||
        rgb->dims[1] <= 0)
        return stx__errf(e, rgb->dtype != STX_DTYPE_UINT8 ? STX_E_INVALID : STX_E_SHAPE,
                         "%s: rgb must be uint8 (H,W,3) with H, W > 0, got %s %s", fn,
                         stx_dtype_name(rgb->dtype),
                         stx__shape_str(rgb->dims, rgb->rank, sb, sizeof sb));
    if (rgb->dims[0] > 1000000 || rgb->dims[1] > 1000000)
        return stx__errf(e, STX_E_UNSUPPORTED, "%s: %s: image %s is too large for PNG", fn, path,
                         stx__shape_str(rgb->dims, rgb->rank, sb, sizeof sb));
    const int h = (int)rgb->dims[0], w = (int)rgb->dims[1];
    char *tmp = stx__render_tmp_path(ctx, path);
    if (!tmp) return stx__errf(e, STX_E_NOMEM, "%s: out of memory", fn);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        stx_status st = stx__errf(e, STX_E_IO, "%s: cannot write: %s", path, strerror(errno));
        stx__free(ctx, tmp);
        return st;
    }
    png_err pe = {{0}};
    png_structp png =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, &pe, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    int bad = !png || !info;
    if (bad)
        snprintf(pe.msg, sizeof pe.msg, "out of memory");
    else
        bad = png_encode(png, info, f, rgb->data, w, h) != 0;
    png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
    int io_errno = 0;
    if (fflush(f) != 0 || ferror(f)) io_errno = errno ? errno : EIO;
    if (fclose(f) != 0 && !io_errno) io_errno = errno ? errno : EIO;
    stx_status st = STX_OK;
    if (bad)
        st = stx__errf(e, STX_E_IO, "%s: PNG write failed: %s", path, pe.msg);
    else if (io_errno)
        st = stx__errf(e, STX_E_IO, "%s: write failed: %s", path, strerror(io_errno));
    else if (rename(tmp, path) != 0)
        st = stx__errf(e, STX_E_IO, "%s: cannot rename the temporary file onto it: %s", path,
                       strerror(errno));
    if (st) remove(tmp);
    stx__free(ctx, tmp);
    return st;
}

/* ---- GIF ------------------------------------------------------------------------------------ */

static int gif_write(GifFileType *g, const GifByteType *buf, int len) {
    return (int)fwrite(buf, 1, (size_t)len, (FILE *)g->UserData);
}

/* Writes every record after the open; giflib's error code in *gerr on failure. */
static int gif_encode(stx_context *ctx, GifFileType *g, const uint8_t *frames, int64_t T, int w,
                      int h, double fps, uint8_t *idx, int *gerr) {
    const size_t np = (size_t)w * (size_t)h;
    EGifSetGifVersion(g, true);
    if (EGifPutScreenDesc(g, w, h, 8, 0, NULL) == GIF_ERROR) goto fail;
    /* NETSCAPE2.0 application block: sub-block 1, loop count 0 (forever). */
    static const uint8_t loop[3] = {1, 0, 0};
    if (EGifPutExtensionLeader(g, APPLICATION_EXT_FUNC_CODE) == GIF_ERROR ||
        EGifPutExtensionBlock(g, 11, "NETSCAPE2.0") == GIF_ERROR ||
        EGifPutExtensionBlock(g, 3, loop) == GIF_ERROR || EGifPutExtensionTrailer(g) == GIF_ERROR)
        goto fail;
    for (int64_t t = 0; t < T; t++) {
        uint8_t pal[256][3];
        int ncolors = 0;
        if (stx__quantize(ctx, frames + (size_t)t * np * 3, np, pal, &ncolors, idx) != 0) {
            *gerr = E_GIF_ERR_NOT_ENOUGH_MEM;
            return -1;
        }
        int size = 2;
        while (size < ncolors) size *= 2;
        GifColorType colors[256];
        memset(colors, 0, sizeof colors);
        for (int k = 0; k < ncolors; k++) {
            colors[k].Red = pal[k][0];
            colors[k].Green = pal[k][1];
            colors[k].Blue = pal[k][2];
        }
        ColorMapObject *map = GifMakeMapObject(size, colors);
        if (!map) {
            *gerr = E_GIF_ERR_NOT_ENOUGH_MEM;
            return -1;
        }
        long long c0 = llround(100.0 * (double)t / fps),
                  c1 = llround(100.0 * (double)(t + 1) / fps);
        long long delay = c1 - c0;
        GraphicsControlBlock gcb;
        gcb.DisposalMode = DISPOSE_DO_NOT;
        gcb.UserInputFlag = false;
        gcb.DelayTime = (int)(delay < 2 ? 2 : delay > 65535 ? 65535 : delay);
        gcb.TransparentColor = NO_TRANSPARENT_COLOR;
        GifByteType ext[4];
        size_t elen = EGifGCBToExtension(&gcb, ext);
        int ok = EGifPutExtension(g, GRAPHICS_EXT_FUNC_CODE, (int)elen, ext) != GIF_ERROR &&
                 EGifPutImageDesc(g, 0, 0, w, h, false, map) != GIF_ERROR;
        GifFreeMapObject(map);
        if (!ok) goto fail;
        for (int r = 0; r < h; r++)
            if (EGifPutLine(g, idx + (size_t)r * (size_t)w, w) == GIF_ERROR) goto fail;
    }
    return 0;
fail:
    *gerr = g->Error;
    return -1;
}

stx_status stx_write_gif(stx_context *ctx, const stx_tensor *frames, double fps, const char *path) {
    static const char fn[] = "stx_write_gif";
    stx_err *e = ctx ? &ctx->err : NULL;
    if (!path) return stx__errf(e, STX_E_INVALID, "%s: path is NULL", fn);
    stx_status st = stx__render_check_clip(e, fn, "frames", frames);
    if (st) return st;
    if (!(fps > 0 && fps <= 1000))
        return stx__errf(e, STX_E_INVALID, "%s: %s: fps %g is not in (0, 1000]", fn, path, fps);
    char sb[160];
    if (frames->dims[1] > 65535 || frames->dims[2] > 65535)
        return stx__errf(e, STX_E_UNSUPPORTED, "%s: %s: frames %s are too large for GIF", fn, path,
                         stx__shape_str(frames->dims, frames->rank, sb, sizeof sb));
    const int64_t T = frames->dims[0];
    const int h = (int)frames->dims[1], w = (int)frames->dims[2];
    uint8_t *idx = stx__malloc(ctx, (size_t)w * (size_t)h);
    char *tmp = stx__render_tmp_path(ctx, path);
    if (!idx || !tmp) {
        st = stx__errf(e, STX_E_NOMEM, "%s: out of memory", fn);
        goto done;
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        st = stx__errf(e, STX_E_IO, "%s: cannot write: %s", path, strerror(errno));
        goto done;
    }
    int gerr = 0;
    GifFileType *g = EGifOpen(f, gif_write, &gerr);
    int bad = !g || gif_encode(ctx, g, frames->data, T, w, h, fps, idx, &gerr) != 0;
    if (g) {
        int cerr = 0;
        if (EGifCloseFile(g, &cerr) == GIF_ERROR && !bad) { /* frees g in any case */
            bad = 1;
            gerr = cerr;
        }
    }
    int io_errno = 0;
    if (fflush(f) != 0 || ferror(f)) io_errno = errno ? errno : EIO;
    if (fclose(f) != 0 && !io_errno) io_errno = errno ? errno : EIO;
    if (io_errno)
        st = stx__errf(e, STX_E_IO, "%s: write failed: %s", path, strerror(io_errno));
    else if (bad) {
        const char *gs = GifErrorString(gerr);
        st = stx__errf(e, gerr == E_GIF_ERR_NOT_ENOUGH_MEM ? STX_E_NOMEM : STX_E_IO,
                       "%s: GIF write failed: %s", path, gs ? gs : "unknown giflib error");
    } else if (rename(tmp, path) != 0)
        st = stx__errf(e, STX_E_IO, "%s: cannot rename the temporary file onto it: %s", path,
                       strerror(errno));
    if (st) remove(tmp);
done:
    stx__free(ctx, idx);
    stx__free(ctx, tmp);
    return st;
}
