/* decode.c: video sources (stx_video_*): video files through FFmpeg's libraries, folders of
 * PNG/JPEG frames and uint8 .npy arrays, all read as uint8 RGB frames (n, H, W, 3).
 *
 * Video files. The path is opened as a local file only ("file:" URL, protocol whitelist "file":
 * a name with a colon is never taken for a protocol, and no playlist may reach the network). The
 * stream is the one av_find_best_stream picks (cover pictures are passed over), decoded by
 * libavcodec with the context's thread count (at most 8; the output does not depend on it) and
 * converted to RGB24 at the stream's size by libswscale (bicubic, accurate rounding, full chroma
 * interpolation; the frame's YUV matrix and range are honoured, BT.601 when unspecified). Packed
 * RGB and grey frames (8 or 16 bits, with or without alpha: what PNG decodes to) are converted
 * without swscale, so lossless sources come out bit-exact (16-bit values rounded to 8 bits).
 * Rotation metadata and the sample aspect ratio are ignored: frames come out as stored (a stream
 * that changes size part-way is scaled to its first size).
 *
 * Frame count. Frame k is the k-th picture the decoder outputs (presentation order). num_frames
 * is counted at open by a demux-only pass (no decoding): the non-empty packets of the stream
 * that the container does not mark for discarding (edit lists), one picture each. The header's
 * nb_frames is not trusted (AVI and MP4 headers may disagree with the stream). A packet the
 * demuxer reports as truncated or corrupt, or a read error before the end, fails the open with
 * STX_E_FORMAT naming the frame; a decoder that still delivers fewer pictures than counted fails
 * the read of the first missing frame, and so does a picture the decoder flags as corrupt
 * (STX_E_FORMAT naming the file and the frame index). Damage the decoder conceals without
 * flagging it cannot be seen here.
 *
 * Reading. Decoding only moves forward: the frames between the requests are decoded (as
 * references) but not converted, and only the requested ones are kept. The frames returned by
 * the previous call are kept (a copy: the caller owns the returned tensor), so that overlapping
 * sliding windows never decode a frame twice; memory is one window plus the decoder's state,
 * whatever the length of the video. A frame before both the cache and the decoder's position
 * rewinds by reopening the file (exact for every container, unlike seeking), as does any read
 * after a failed one. A handle is not for two threads at once.
 *
 * Frame folders: the regular files named *.png, *.jpg or *.jpeg (case-insensitively; names
 * starting with '.' skipped), sorted by name (strcmp). Every file's size is read from its header
 * at open (PNG IHDR, JPEG SOF) so that a folder of mixed sizes fails at once, naming the first
 * file that differs; each file is decoded when read (FFmpeg's png and mjpeg decoders, one whole
 * file per packet; JPEG EXIF orientation ignored).
 *
 * .npy: uint8 (T, H, W, 3), (T, H, W, 1) or (T, H, W) (grey, replicated to RGB), loaded whole
 * by stx_tensor_load_npy (the array is the caller's data; nothing is decoded).
 *
 * FFmpeg logs nothing: stx_video_open sets av_log_set_level(AV_LOG_QUIET), which is process-wide.
 */
#include "../core/core.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define MAX_SIDE 32768 /* frame sides beyond this are refused (sizes stay far from overflow) */
#define MAX_PIXELS ((int64_t)1 << 26) /* and frames over 64 Mpixels (8192 x 8192; 192 MiB RGB) */
#define MAX_THREADS 8                 /* decoder threads */
#define SWS_FLAGS (SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT)

typedef enum { SRC_VIDEO, SRC_IMAGES, SRC_NPY } src_kind;
typedef enum { IMG_PNG = 0, IMG_JPEG = 1 } img_type;

struct stx_video {
    stx_context *ctx;
    src_kind kind;
    char *path, *format, *codec;
    int width, height;
    int64_t num_frames;
    double fps;
    size_t frame_bytes; /* width * height * 3 */

    /* Video files: the open demuxer and decoder, positioned before frame `next`. */
    AVFormatContext *fmt;
    AVCodecContext *dec;
    AVPacket *pkt;
    AVFrame *frame;
    int stream;
    int64_t next;
    bool draining; /* the end of the file was reached and the decoder is being drained */
    bool broken;   /* a read failed part-way: reopen before decoding again */
    int64_t n_decoded, n_rewinds;

    /* Memory sources (stx_video_open_memory): the caller's bytes and the read position of the
     * one demuxer open at a time (custom AVIOContext). */
    const uint8_t *mem;
    size_t mem_size, mem_pos;

    /* Frame folders: the file paths in order and their types. */
    char **files;
    size_t n_files;
    unsigned char *types;

    /* .npy: the whole array, (T, H, W, C) or (T, H, W). */
    stx_tensor *npy;
    int npy_channels;

    /* RGB conversion: swscale context for the last source format, and a padded RGB24 frame. */
    struct SwsContext *sws;
    int sws_w, sws_h, sws_fmt, sws_cs, sws_range;
    uint8_t *rgb[4];
    int rgb_ls[4];

    /* The frames returned by the previous call (indices non-decreasing). */
    int64_t *cache_idx;
    uint8_t *cache;
    int cache_n, cache_cap;
};

static stx_err *verr(const stx_video *v) {
    return v->ctx ? &v->ctx->err : NULL;
}

static const char *averr(int code, char *buf, size_t n) {
    if (av_strerror(code, buf, n) < 0) snprintf(buf, n, "FFmpeg error %d", code);
    return buf;
}

static bool has_ext(const char *name, const char *ext) {
    size_t n = strlen(name), k = strlen(ext);
    return n > k && strcasecmp(name + n - k, ext) == 0;
}

static char *join_path(stx_context *ctx, const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    bool slash = a > 0 && dir[a - 1] != '/';
    char *p = stx__malloc(ctx, a + b + 2);
    if (p) snprintf(p, a + b + 2, "%s%s%s", dir, slash ? "/" : "", name);
    return p;
}

static stx_status check_size(stx_video *v, const char *what, int64_t w, int64_t h) {
    if (w <= 0 || h <= 0)
        return stx__errf(verr(v), STX_E_FORMAT, "%s: frame size %lldx%lld is not valid", what,
                         (long long)w, (long long)h);
    if (w > MAX_SIDE || h > MAX_SIDE)
        return stx__errf(verr(v), STX_E_UNSUPPORTED,
                         "%s: frame size %lldx%lld is too large (at most %d per side)", what,
                         (long long)w, (long long)h, MAX_SIDE);
    if (w * h > MAX_PIXELS)
        return stx__errf(verr(v), STX_E_UNSUPPORTED,
                         "%s: frame size %lldx%lld is too large (%lld pixels; at most %lld per "
                         "frame)",
                         what, (long long)w, (long long)h, (long long)(w * h),
                         (long long)MAX_PIXELS);
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * RGB conversion.
 */

/* SWS_CS_* matrix for a frame's colour space (BT.601 when unspecified or unknown). */
static int sws_matrix(enum AVColorSpace cs) {
    switch (cs) {
    case AVCOL_SPC_BT709:
        return SWS_CS_ITU709;
    case AVCOL_SPC_FCC:
        return SWS_CS_FCC;
    case AVCOL_SPC_SMPTE240M:
        return SWS_CS_SMPTE240M;
    case AVCOL_SPC_BT2020_NCL:
    case AVCOL_SPC_BT2020_CL:
        return SWS_CS_BT2020;
    default:
        return SWS_CS_DEFAULT;
    }
}

/* The deprecated full-range "J" formats: their plain counterpart, with *full set. */
static enum AVPixelFormat unjpeg(enum AVPixelFormat f, int *full) {
    switch (f) {
    case AV_PIX_FMT_YUVJ420P:
        *full = 1;
        return AV_PIX_FMT_YUV420P;
    case AV_PIX_FMT_YUVJ422P:
        *full = 1;
        return AV_PIX_FMT_YUV422P;
    case AV_PIX_FMT_YUVJ444P:
        *full = 1;
        return AV_PIX_FMT_YUV444P;
    case AV_PIX_FMT_YUVJ440P:
        *full = 1;
        return AV_PIX_FMT_YUV440P;
    case AV_PIX_FMT_YUVJ411P:
        *full = 1;
        return AV_PIX_FMT_YUV411P;
    default:
        return f;
    }
}

/* The packed RGB and grey formats PNG decodes to, converted here exactly (8-bit values copied,
 * 16-bit big-endian ones rounded to the nearest 8-bit level, alpha dropped): bytes per pixel,
 * grey (one colour channel) and 16-bit. */
static bool packed_layout(int fmt, int *step, bool *grey, bool *wide) {
    static const struct {
        int fmt, step;
        bool grey, wide;
    } t[] = {{AV_PIX_FMT_RGB24, 3, false, false},  {AV_PIX_FMT_RGBA, 4, false, false},
             {AV_PIX_FMT_GRAY8, 1, true, false},   {AV_PIX_FMT_YA8, 2, true, false},
             {AV_PIX_FMT_RGB48BE, 6, false, true}, {AV_PIX_FMT_RGBA64BE, 8, false, true},
             {AV_PIX_FMT_GRAY16BE, 2, true, true}, {AV_PIX_FMT_YA16BE, 4, true, true}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i].fmt == fmt) {
            *step = t[i].step;
            *grey = t[i].grey;
            *wide = t[i].wide;
            return true;
        }
    return false;
}

/* Converts frame f (any size and pixel format) to the source's width x height RGB24 at dst. */
static stx_status to_rgb(stx_video *v, const AVFrame *f, uint8_t *dst, const char *what,
                         int64_t index) {
    const int W = v->width, H = v->height;
    const size_t row = (size_t)W * 3;
    int step;
    bool grey, wide;
    if (f->width == W && f->height == H && packed_layout(f->format, &step, &grey, &wide)) {
        for (int y = 0; y < H; y++) {
            const uint8_t *s = f->data[0] + (ptrdiff_t)f->linesize[0] * y;
            uint8_t *d = dst + row * y;
            if (step == 3 && !wide) {
                memcpy(d, s, row);
                continue;
            }
            for (int x = 0; x < W; x++)
                for (int c = 0; c < 3; c++) {
                    const uint8_t *p = s + (size_t)step * x + (grey ? 0 : c) * (wide ? 2 : 1);
                    uint32_t q = wide ? ((uint32_t)p[0] << 8 | p[1]) : p[0];
                    d[3 * x + c] = (uint8_t)(wide ? (q * 255 + 32767) / 65535 : q);
                }
        }
        return STX_OK;
    }
    int full = f->color_range == AVCOL_RANGE_JPEG;
    enum AVPixelFormat fmt = unjpeg((enum AVPixelFormat)f->format, &full);
    int cs = sws_matrix(f->colorspace);
    if (!v->sws || v->sws_w != f->width || v->sws_h != f->height || v->sws_fmt != (int)fmt ||
        v->sws_cs != cs || v->sws_range != full) {
        sws_freeContext(v->sws);
        v->sws = sws_getContext(f->width, f->height, fmt, W, H, AV_PIX_FMT_RGB24, SWS_FLAGS, NULL,
                                NULL, NULL);
        if (!v->sws) {
            const char *name = av_get_pix_fmt_name(fmt);
            return stx__errf(verr(v), STX_E_UNSUPPORTED,
                             "%s: frame %lld: pixel format %s (%dx%d) cannot be converted to RGB",
                             what, (long long)index, name ? name : "unknown", f->width, f->height);
        }
        const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(fmt);
        if (d && !(d->flags & (AV_PIX_FMT_FLAG_RGB | AV_PIX_FMT_FLAG_PAL)) && d->nb_components >= 3)
            sws_setColorspaceDetails(v->sws, sws_getCoefficients(cs), full,
                                     sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16);
        v->sws_w = f->width;
        v->sws_h = f->height;
        v->sws_fmt = (int)fmt;
        v->sws_cs = cs;
        v->sws_range = full;
    }
    if (!v->rgb[0] && av_image_alloc(v->rgb, v->rgb_ls, W, H, AV_PIX_FMT_RGB24, 64) < 0)
        return stx__errf(verr(v), STX_E_NOMEM, "%s: out of memory for a %dx%d frame", what, W, H);
    int r = sws_scale(v->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, v->rgb,
                      v->rgb_ls);
    if (r != H)
        return stx__errf(verr(v), STX_E_INTERNAL, "%s: frame %lld: RGB conversion failed", what,
                         (long long)index);
    for (int y = 0; y < H; y++) memcpy(dst + row * y, v->rgb[0] + (size_t)v->rgb_ls[0] * y, row);
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Video files.
 */

/* Memory sources: AVIOContext callbacks over v->mem. */
static int mem_read(void *opaque, uint8_t *buf, int n) {
    stx_video *v = opaque;
    size_t left = v->mem_size - v->mem_pos;
    if (left == 0) return AVERROR_EOF;
    size_t k = (size_t)n < left ? (size_t)n : left;
    memcpy(buf, v->mem + v->mem_pos, k);
    v->mem_pos += k;
    return (int)k;
}

static int64_t mem_seek(void *opaque, int64_t off, int whence) {
    stx_video *v = opaque;
    int64_t base;
    switch (whence & ~AVSEEK_FORCE) {
    case AVSEEK_SIZE:
        return (int64_t)v->mem_size;
    case SEEK_SET:
        base = 0;
        break;
    case SEEK_CUR:
        base = (int64_t)v->mem_pos;
        break;
    case SEEK_END:
        base = (int64_t)v->mem_size;
        break;
    default:
        return AVERROR(EINVAL);
    }
    if ((off < 0 && -off > base) || (off > 0 && off > (int64_t)v->mem_size - base))
        return AVERROR(EINVAL);
    v->mem_pos = (size_t)(base + off);
    return (int64_t)v->mem_pos;
}

/* A memory source's demuxer may open no other resource (playlists, concat lists, ...). */
static int mem_io_open(struct AVFormatContext *s, AVIOContext **pb, const char *url, int flags,
                       AVDictionary **options) {
    (void)s, (void)pb, (void)url, (void)flags, (void)options;
    return AVERROR(EPERM);
}

/* Closes a demuxer and, for a memory source, its AVIOContext. */
static void demux_close(AVFormatContext **fmt) {
    if (!*fmt) return;
    AVIOContext *pb = ((*fmt)->flags & AVFMT_FLAG_CUSTOM_IO) ? (*fmt)->pb : NULL;
    avformat_close_input(fmt);
    if (pb) {
        av_freep(&pb->buffer);
        avio_context_free(&pb);
    }
}

/* Opens the container and finds the video stream and its decoder (not opened). */
static stx_status demux_open(stx_video *v, AVFormatContext **out, int *stream,
                             const AVCodec **codec) {
    *out = NULL;
    char eb[AV_ERROR_MAX_STRING_SIZE];
    AVFormatContext *fmt = NULL;
    int r;
    if (v->mem) {
        /* from the caller's bytes: a custom AVIOContext, nothing else may be opened */
        const int bs = 1 << 15;
        uint8_t *iobuf = av_malloc(bs);
        AVIOContext *pb =
            iobuf ? avio_alloc_context(iobuf, bs, 0, v, mem_read, NULL, mem_seek) : NULL;
        fmt = pb ? avformat_alloc_context() : NULL;
        if (!fmt) {
            if (pb) avio_context_free(&pb);
            av_free(iobuf);
            return stx__errf(verr(v), STX_E_NOMEM, "%s: out of memory", v->path);
        }
        v->mem_pos = 0;
        fmt->pb = pb;
        fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
        fmt->io_open = mem_io_open;
        AVDictionary *opt = NULL;
        av_dict_set(&opt, "protocol_whitelist", "none", 0);
        r = avformat_open_input(&fmt, NULL, NULL, &opt);
        av_dict_free(&opt);
        if (r < 0) { /* avformat_open_input freed fmt but not the custom AVIOContext */
            av_freep(&pb->buffer);
            avio_context_free(&pb);
        }
    } else {
        size_t n = strlen(v->path) + 8;
        char *url = stx__malloc(v->ctx, n);
        if (!url) return stx__errf(verr(v), STX_E_NOMEM, "%s: out of memory", v->path);
        snprintf(url, n, "file:%s", v->path);
        AVDictionary *opt = NULL;
        av_dict_set(&opt, "protocol_whitelist", "file", 0);
        r = avformat_open_input(&fmt, url, NULL, &opt);
        av_dict_free(&opt);
        stx__free(v->ctx, url);
    }
    if (r < 0) {
        /* ENOMEM here comes from size fields of a corrupt header: a format error. */
        bool io = r == AVERROR(EACCES) || r == AVERROR(EIO) || r == AVERROR(ENOENT) ||
                  r == AVERROR(EISDIR);
        return stx__errf(verr(v), io ? STX_E_IO : STX_E_FORMAT, "%s: %s (%s)", v->path,
                         io ? "cannot open"
                            : "not a video file FFmpeg can read, or a corrupt header",
                         averr(r, eb, sizeof eb));
    }
    stx_status st = STX_OK;
    r = avformat_find_stream_info(fmt, NULL);
    if (r < 0) {
        st = stx__errf(verr(v), STX_E_FORMAT, "%s: cannot read the stream parameters (%s)", v->path,
                       averr(r, eb, sizeof eb));
        goto fail;
    }
    int s = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    if (s >= 0 && (fmt->streams[s]->disposition & AV_DISPOSITION_ATTACHED_PIC)) {
        s = -1;
        for (unsigned i = 0; i < fmt->nb_streams; i++)
            if (fmt->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO &&
                !(fmt->streams[i]->disposition & AV_DISPOSITION_ATTACHED_PIC)) {
                s = (int)i;
                break;
            }
    }
    if (s < 0) {
        st = stx__errf(verr(v), STX_E_UNSUPPORTED, "%s: no video stream (%s container, %u streams)",
                       v->path, fmt->iformat->name, fmt->nb_streams);
        goto fail;
    }
    const AVCodecParameters *par = fmt->streams[s]->codecpar;
    const AVCodec *c = avcodec_find_decoder(par->codec_id);
    if (par->codec_id == AV_CODEC_ID_NONE) {
        char tag[AV_FOURCC_MAX_STRING_SIZE];
        st = stx__errf(verr(v), STX_E_UNSUPPORTED, "%s: unknown video codec (tag '%s')", v->path,
                       av_fourcc_make_string(tag, par->codec_tag));
        goto fail;
    }
    if (!c) {
        st = stx__errf(verr(v), STX_E_UNSUPPORTED,
                       "%s: no decoder for the video codec '%s' in this FFmpeg build", v->path,
                       avcodec_get_name(par->codec_id));
        goto fail;
    }
    for (unsigned i = 0; i < fmt->nb_streams; i++)
        if ((int)i != s) fmt->streams[i]->discard = AVDISCARD_ALL;
    *out = fmt;
    *stream = s;
    *codec = c;
    return STX_OK;
fail:
    demux_close(&fmt);
    return st;
}

static void decoder_close(stx_video *v) {
    avcodec_free_context(&v->dec);
    demux_close(&v->fmt);
}

/* Opens demuxer and decoder positioned before frame 0. */
static stx_status decoder_open(stx_video *v) {
    decoder_close(v);
    char eb[AV_ERROR_MAX_STRING_SIZE];
    int s = -1;
    const AVCodec *c = NULL;
    stx_status st = demux_open(v, &v->fmt, &s, &c);
    if (st) return st;
    const AVStream *vs = v->fmt->streams[s];
    if (v->stream >= 0 && s != v->stream) {
        decoder_close(v);
        return stx__errf(verr(v), STX_E_FORMAT, "%s: the file changed since it was opened",
                         v->path);
    }
    v->stream = s;
    v->dec = avcodec_alloc_context3(c);
    if (!v->dec) {
        decoder_close(v);
        return stx__errf(verr(v), STX_E_NOMEM, "%s: out of memory for the decoder", v->path);
    }
    int r = avcodec_parameters_to_context(v->dec, vs->codecpar);
    if (r >= 0) {
        int nt = v->ctx ? v->ctx->num_threads : 1;
        v->dec->thread_count = nt < 1 ? 1 : nt > MAX_THREADS ? MAX_THREADS : nt;
        v->dec->pkt_timebase = vs->time_base;
        r = avcodec_open2(v->dec, c, NULL);
    }
    if (r < 0) {
        decoder_close(v);
        return stx__errf(verr(v), STX_E_UNSUPPORTED, "%s: cannot open the %s decoder (%s)", v->path,
                         c->name, averr(r, eb, sizeof eb));
    }
    v->next = 0;
    v->draining = false;
    v->broken = false;
    return STX_OK;
}

static stx_status open_video(stx_video *v, int64_t file_size) {
    if (file_size == 0)
        return stx__errf(verr(v), STX_E_FORMAT, "%s: empty file (0 bytes), not a video", v->path);
    char eb[AV_ERROR_MAX_STRING_SIZE];
    AVFormatContext *fmt = NULL;
    int s = -1;
    const AVCodec *c = NULL;
    stx_status st = demux_open(v, &fmt, &s, &c);
    if (st) return st;
    const AVStream *vs = fmt->streams[s];
    const AVCodecParameters *par = vs->codecpar;
    v->kind = SRC_VIDEO;
    v->width = par->width;
    v->height = par->height;
    AVRational fr = vs->avg_frame_rate;
    if (fr.num <= 0 || fr.den <= 0) fr = vs->r_frame_rate;
    v->fps = fr.num > 0 && fr.den > 0 ? av_q2d(fr) : 0.0;
    v->format = stx__strdup(v->ctx, fmt->iformat->name);
    v->codec = stx__strdup(v->ctx, avcodec_get_name(par->codec_id));
    if (!v->format || !v->codec) {
        st = stx__errf(verr(v), STX_E_NOMEM, "%s: out of memory", v->path);
        goto done;
    }
    st = check_size(v, v->path, v->width, v->height);
    if (st) goto done;
    /* The demux-only pass counting the frames. */
    int64_t count = 0;
    for (;;) {
        int r = av_read_frame(fmt, v->pkt);
        if (r == AVERROR_EOF) break;
        if (r < 0) {
            st = stx__errf(verr(v), STX_E_FORMAT,
                           "%s: frame %lld cannot be read (%s): truncated or corrupt file", v->path,
                           (long long)count, averr(r, eb, sizeof eb));
            goto done;
        }
        if (v->pkt->stream_index == s && v->pkt->size > 0 &&
            !(v->pkt->flags & AV_PKT_FLAG_DISCARD)) {
            if (v->pkt->flags & AV_PKT_FLAG_CORRUPT) {
                av_packet_unref(v->pkt);
                st = stx__errf(verr(v), STX_E_FORMAT, "%s: frame %lld is truncated or corrupt",
                               v->path, (long long)count);
                goto done;
            }
            count++;
        }
        av_packet_unref(v->pkt);
    }
    if (count == 0) {
        st = stx__errf(verr(v), STX_E_FORMAT, "%s: the video stream has no frames", v->path);
        goto done;
    }
    v->num_frames = count;
    demux_close(&fmt);
    st = decoder_open(v);
done:
    demux_close(&fmt);
    return st;
}

/* Decodes the next picture of the stream into v->frame (frame index v->next). */
static stx_status next_frame(stx_video *v) {
    char eb[AV_ERROR_MAX_STRING_SIZE];
    const long long k = (long long)v->next;
    for (;;) {
        int r = avcodec_receive_frame(v->dec, v->frame);
        if (r == 0) {
            if ((v->frame->flags & AV_FRAME_FLAG_CORRUPT) || v->frame->decode_error_flags) {
                av_frame_unref(v->frame);
                return stx__errf(verr(v), STX_E_FORMAT, "%s: frame %lld is corrupt", v->path, k);
            }
            return STX_OK;
        }
        if (r == AVERROR_EOF)
            return stx__errf(verr(v), STX_E_FORMAT,
                             "%s: frame %lld cannot be decoded: the stream ends after %lld of the "
                             "%lld frames counted at open (truncated or corrupt file)",
                             v->path, k, k, (long long)v->num_frames);
        if (r != AVERROR(EAGAIN) || v->draining)
            return stx__errf(verr(v), STX_E_FORMAT, "%s: frame %lld cannot be decoded (%s)",
                             v->path, k, averr(r, eb, sizeof eb));
        r = av_read_frame(v->fmt, v->pkt);
        if (r == AVERROR_EOF) {
            v->draining = true;
            r = avcodec_send_packet(v->dec, NULL);
            if (r < 0 && r != AVERROR_EOF)
                return stx__errf(verr(v), STX_E_FORMAT, "%s: frame %lld cannot be decoded (%s)",
                                 v->path, k, averr(r, eb, sizeof eb));
            continue;
        }
        if (r < 0)
            return stx__errf(verr(v), STX_E_FORMAT, "%s: frame %lld cannot be read (%s)", v->path,
                             k, averr(r, eb, sizeof eb));
        if (v->pkt->stream_index != v->stream || v->pkt->size == 0) {
            av_packet_unref(v->pkt);
            continue;
        }
        if (v->pkt->flags & AV_PKT_FLAG_CORRUPT) {
            av_packet_unref(v->pkt);
            return stx__errf(verr(v), STX_E_FORMAT, "%s: frame %lld is truncated or corrupt",
                             v->path, k);
        }
        r = avcodec_send_packet(v->dec, v->pkt);
        av_packet_unref(v->pkt);
        if (r < 0)
            return stx__errf(verr(v), STX_E_FORMAT, "%s: frame %lld cannot be decoded (%s)",
                             v->path, k, averr(r, eb, sizeof eb));
    }
}

/* Decodes forward to frame index and converts it into dst (rewinding when it lies behind). */
static stx_status video_frame(stx_video *v, int64_t index, uint8_t *dst) {
    if (v->broken || !v->dec || index < v->next) {
        if (!v->broken && v->dec) v->n_rewinds++;
        stx_status st = decoder_open(v);
        if (st) {
            v->broken = true;
            return st;
        }
    }
    while (v->next <= index) {
        stx_status st = next_frame(v);
        if (!st && v->next == index) st = to_rgb(v, v->frame, dst, v->path, index);
        av_frame_unref(v->frame);
        if (st) {
            v->broken = true;
            return st;
        }
        v->next++;
        v->n_decoded++;
    }
    return STX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Frame folders.
 */

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Size of a PNG (IHDR) or JPEG (first SOF marker) from its header; type from its signature. */
static stx_status image_header(stx_video *v, const char *file, int64_t *w, int64_t *h,
                               img_type *type) {
    FILE *f = fopen(file, "rb");
    if (!f)
        return stx__errf(verr(v), errno == ENOENT ? STX_E_NOTFOUND : STX_E_IO,
                         "%s: cannot open: %s", file, strerror(errno));
    stx_status st = STX_OK;
    unsigned char b[24];
    size_t got = fread(b, 1, sizeof b, f);
    if (got >= 24 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0 && memcmp(b + 12, "IHDR", 4) == 0) {
        *type = IMG_PNG;
        *w = be32(b + 16);
        *h = be32(b + 20);
        goto done;
    }
    if (got < 4 || b[0] != 0xFF || b[1] != 0xD8) {
        st = stx__errf(verr(v), STX_E_FORMAT, "%s: not a PNG or JPEG image", file);
        goto done;
    }
    *type = IMG_JPEG;
    if (fseek(f, 2, SEEK_SET) != 0) goto bad_jpeg;
    for (;;) { /* markers: FF (FF fill)* code [length(2) payload] */
        int c = fgetc(f);
        if (c != 0xFF) goto bad_jpeg;
        while ((c = fgetc(f)) == 0xFF) {
        }
        if (c == EOF || c == 0xD9 || c == 0xDA) goto bad_jpeg; /* end or scan before a SOF */
        if (c == 0x01 || (c >= 0xD0 && c <= 0xD8)) continue;   /* markers without a length */
        int l0 = fgetc(f), l1 = fgetc(f);
        if (l0 == EOF || l1 == EOF) goto bad_jpeg;
        long len = (long)l0 << 8 | l1;
        if (len < 2) goto bad_jpeg;
        if (c >= 0xC0 && c <= 0xCF && c != 0xC4 && c != 0xC8 && c != 0xCC) {
            unsigned char s[5];
            if (len < 7 || fread(s, 1, 5, f) != 5) goto bad_jpeg;
            *h = (int64_t)s[1] << 8 | s[2];
            *w = (int64_t)s[3] << 8 | s[4];
            goto done;
        }
        if (fseek(f, len - 2, SEEK_CUR) != 0) goto bad_jpeg;
    }
bad_jpeg:
    st = stx__errf(verr(v), STX_E_FORMAT, "%s: corrupt JPEG header (no frame size found)", file);
done:
    fclose(f);
    if (!st) st = check_size(v, file, *w, *h);
    return st;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static stx_status open_images(stx_video *v) {
    stx_context *ctx = v->ctx;
    DIR *d = opendir(v->path);
    if (!d)
        return stx__errf(verr(v), STX_E_IO, "%s: cannot list the folder: %s", v->path,
                         strerror(errno));
    stx_status st = STX_OK;
    size_t n = 0, cap = 0;
    char **names = NULL;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        if (nm[0] == '.' || !(has_ext(nm, ".png") || has_ext(nm, ".jpg") || has_ext(nm, ".jpeg")))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            char **nn = stx__malloc(ctx, nc * sizeof *nn);
            if (!nn) goto oom;
            if (n) memcpy(nn, names, n * sizeof *nn);
            stx__free(ctx, names);
            names = nn;
            cap = nc;
        }
        names[n] = stx__strdup(ctx, nm);
        if (!names[n]) goto oom;
        n++;
    }
    closedir(d);
    d = NULL;
    if (n > 1) qsort(names, n, sizeof *names, cmp_names);
    /* Full paths of the regular files (a folder named x.png is skipped). */
    v->files = stx__calloc(ctx, n ? n : 1, sizeof *v->files);
    if (!v->files) goto oom;
    for (size_t i = 0; i < n; i++) {
        char *p = join_path(ctx, v->path, names[i]);
        if (!p) goto oom;
        struct stat sb;
        if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode))
            v->files[v->n_files++] = p;
        else
            stx__free(ctx, p);
    }
    const size_t m = v->n_files;
    if (m == 0) {
        st = stx__errf(verr(v), STX_E_FORMAT,
                       "%s: the folder has no frames (no .png, .jpg or .jpeg files)", v->path);
        goto done;
    }
    v->types = stx__malloc(ctx, m);
    if (!v->types) goto oom;
    bool seen[2] = {false, false};
    for (size_t i = 0; i < m; i++) {
        int64_t w = 0, h = 0;
        img_type t = IMG_PNG;
        st = image_header(v, v->files[i], &w, &h, &t);
        if (st) goto done;
        v->types[i] = (unsigned char)t;
        seen[t] = true;
        if (i == 0) {
            v->width = (int)w;
            v->height = (int)h;
        } else if (w != v->width || h != v->height) {
            st = stx__errf(verr(v), STX_E_SHAPE,
                           "%s: frame size %lldx%lld differs from the %dx%d of %s (every frame of "
                           "a folder must have the same size)",
                           v->files[i], (long long)w, (long long)h, v->width, v->height,
                           v->files[0]);
            goto done;
        }
    }
    v->kind = SRC_IMAGES;
    v->num_frames = (int64_t)m;
    v->format = stx__strdup(ctx, seen[0] && seen[1] ? "png,jpeg" : seen[0] ? "png" : "jpeg");
    v->codec = stx__strdup(ctx, seen[0] && seen[1] ? "png,mjpeg" : seen[0] ? "png" : "mjpeg");
    if (!v->format || !v->codec) goto oom;
    goto done;
oom:
    st = stx__errf(verr(v), STX_E_NOMEM, "%s: out of memory listing the folder", v->path);
done:
    if (d) closedir(d);
    for (size_t i = 0; i < n; i++) stx__free(ctx, names[i]);
    stx__free(ctx, names);
    return st;
}

/* Decodes image file `index` of the folder into dst. Each file gets a fresh decoder: FFmpeg's
 * png decoder otherwise takes a same-sized picture after the first for a difference frame (MNG
 * style) and adds the previous one to it. */
static stx_status image_frame(stx_video *v, int64_t index, uint8_t *dst) {
    const char *file = v->files[index];
    const long long k = (long long)index;
    img_type t = (img_type)v->types[index];
    char eb[AV_ERROR_MAX_STRING_SIZE];
    FILE *f = fopen(file, "rb");
    if (!f)
        return stx__errf(verr(v), errno == ENOENT ? STX_E_NOTFOUND : STX_E_IO,
                         "%s: frame %lld: cannot open: %s", file, k, strerror(errno));
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size <= 0 || size > INT32_MAX - AV_INPUT_BUFFER_PADDING_SIZE || fseek(f, 0, SEEK_SET)) {
        fclose(f);
        return stx__errf(verr(v), STX_E_IO, "%s: frame %lld: cannot read the file", file, k);
    }
    if (av_new_packet(v->pkt, (int)size) < 0) {
        fclose(f);
        return stx__errf(verr(v), STX_E_NOMEM, "%s: out of memory", file);
    }
    size_t got = fread(v->pkt->data, 1, (size_t)size, f);
    fclose(f);
    if (got != (size_t)size) {
        av_packet_unref(v->pkt);
        return stx__errf(verr(v), STX_E_IO, "%s: frame %lld: read error", file, k);
    }
    const AVCodec *c = avcodec_find_decoder(t == IMG_PNG ? AV_CODEC_ID_PNG : AV_CODEC_ID_MJPEG);
    if (!c) {
        av_packet_unref(v->pkt);
        return stx__errf(verr(v), STX_E_UNSUPPORTED, "%s: no %s decoder in this FFmpeg build", file,
                         t == IMG_PNG ? "png" : "mjpeg");
    }
    AVCodecContext *dec = avcodec_alloc_context3(c);
    if (!dec) {
        av_packet_unref(v->pkt);
        return stx__errf(verr(v), STX_E_NOMEM, "%s: out of memory", file);
    }
    dec->thread_count = 1;
    int r = avcodec_open2(dec, c, NULL);
    if (r < 0) {
        avcodec_free_context(&dec);
        av_packet_unref(v->pkt);
        return stx__errf(verr(v), STX_E_UNSUPPORTED, "%s: cannot open the %s decoder (%s)", file,
                         c->name, averr(r, eb, sizeof eb));
    }
    r = avcodec_send_packet(dec, v->pkt);
    av_packet_unref(v->pkt);
    if (r >= 0) r = avcodec_send_packet(dec, NULL); /* the one picture: drain */
    if (r >= 0) r = avcodec_receive_frame(dec, v->frame);
    avcodec_free_context(&dec);
    if (r < 0)
        return stx__errf(verr(v), STX_E_FORMAT, "%s: frame %lld cannot be decoded (%s)", file, k,
                         averr(r, eb, sizeof eb));
    stx_status st;
    if ((v->frame->flags & AV_FRAME_FLAG_CORRUPT) || v->frame->decode_error_flags)
        st = stx__errf(verr(v), STX_E_FORMAT, "%s: frame %lld is corrupt", file, k);
    else if (v->frame->width != v->width || v->frame->height != v->height)
        st = stx__errf(verr(v), STX_E_SHAPE,
                       "%s: frame %lld decodes to %dx%d, not the %dx%d of the folder's frames",
                       file, k, v->frame->width, v->frame->height, v->width, v->height);
    else
        st = to_rgb(v, v->frame, dst, file, index);
    av_frame_unref(v->frame);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * .npy arrays.
 */

static stx_status open_npy(stx_video *v) {
    stx_status st = stx_tensor_load_npy(v->ctx, v->path, &v->npy);
    if (st) return st;
    const stx_tensor *t = v->npy;
    char sb[160];
    const char *shape = stx__shape_str(t->dims, t->rank, sb, sizeof sb);
    if (t->dtype != STX_DTYPE_UINT8)
        return stx__errf(verr(v), STX_E_UNSUPPORTED,
                         "%s: frames must be uint8 pixels (T,H,W,3) or (T,H,W), got %s %s", v->path,
                         stx_dtype_name(t->dtype), shape);
    if (!(t->rank == 3 || (t->rank == 4 && (t->dims[3] == 3 || t->dims[3] == 1))))
        return stx__errf(verr(v), STX_E_SHAPE,
                         "%s: frames must be (T,H,W,3) RGB or (T,H,W) grey uint8, got shape %s",
                         v->path, shape);
    if (t->dims[0] == 0)
        return stx__errf(verr(v), STX_E_FORMAT, "%s: the array has no frames (shape %s)", v->path,
                         shape);
    st = check_size(v, v->path, t->dims[2], t->dims[1]);
    if (st) return st;
    v->kind = SRC_NPY;
    v->width = (int)t->dims[2];
    v->height = (int)t->dims[1];
    v->num_frames = t->dims[0];
    v->npy_channels = t->rank == 4 ? (int)t->dims[3] : 1;
    v->format = stx__strdup(v->ctx, "npy");
    v->codec = stx__strdup(v->ctx, "raw");
    if (!v->format || !v->codec)
        return stx__errf(verr(v), STX_E_NOMEM, "%s: out of memory", v->path);
    return STX_OK;
}

static void npy_frame(const stx_video *v, int64_t index, uint8_t *dst) {
    size_t px = (size_t)v->width * (size_t)v->height;
    const uint8_t *s = (const uint8_t *)v->npy->data + px * (size_t)v->npy_channels * (size_t)index;
    if (v->npy_channels == 3) {
        memcpy(dst, s, px * 3);
        return;
    }
    for (size_t i = 0; i < px; i++) dst[3 * i] = dst[3 * i + 1] = dst[3 * i + 2] = s[i];
}

/* ---------------------------------------------------------------------------------------------
 * Public API.
 */

stx_status stx_video_open(stx_context *ctx, const char *path, stx_video **out) {
    stx_err *e = ctx ? &ctx->err : NULL;
    if (out) *out = NULL;
    if (!path || !*path || !out)
        return stx__errf(e, STX_E_INVALID, "stx_video_open: path and out are required");
    av_log_set_level(AV_LOG_QUIET);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        int err = errno;
        if (err == ENOENT || err == ENOTDIR)
            return stx__errf(e, STX_E_NOTFOUND, "%s: no such file or folder", path);
        return stx__errf(e, STX_E_IO, "%s: cannot open: %s", path, strerror(err));
    }
    if (!S_ISDIR(sb.st_mode) && !S_ISREG(sb.st_mode))
        return stx__errf(e, STX_E_IO, "%s: not a regular file or a folder", path);
    stx_video *v = stx__calloc(ctx, 1, sizeof *v);
    if (!v) return stx__errf(e, STX_E_NOMEM, "%s: out of memory", path);
    v->ctx = ctx;
    v->stream = -1;
    v->path = stx__strdup(ctx, path);
    v->pkt = av_packet_alloc();
    v->frame = av_frame_alloc();
    stx_status st;
    if (!v->path || !v->pkt || !v->frame)
        st = stx__errf(e, STX_E_NOMEM, "%s: out of memory", path);
    else if (S_ISDIR(sb.st_mode))
        st = open_images(v);
    else if (has_ext(path, ".npy"))
        st = open_npy(v);
    else
        st = open_video(v, (int64_t)sb.st_size);
    if (st) {
        stx_video_close(v);
        return st;
    }
    v->frame_bytes = (size_t)v->width * (size_t)v->height * 3;
    *out = v;
    return STX_OK;
}

/* A video held in memory, demuxed through FFmpeg's custom I/O. */
stx_status stx_video_open_memory(stx_context *ctx, const void *data, size_t size, const char *name,
                                 stx_video **out) {
    stx_err *e = ctx ? &ctx->err : NULL;
    if (out) *out = NULL;
    if (!out || (!data && size > 0))
        return stx__errf(e, STX_E_INVALID, "stx_video_open_memory: data and out are required");
    if (!name || !*name) name = "<memory>";
    if (size == 0)
        return stx__errf(e, STX_E_FORMAT, "%s: empty buffer (0 bytes), not a video", name);
    av_log_set_level(AV_LOG_QUIET);
    stx_video *v = stx__calloc(ctx, 1, sizeof *v);
    if (!v) return stx__errf(e, STX_E_NOMEM, "%s: out of memory", name);
    v->ctx = ctx;
    v->stream = -1;
    v->mem = data;
    v->mem_size = size;
    v->path = stx__strdup(ctx, name);
    v->pkt = av_packet_alloc();
    v->frame = av_frame_alloc();
    stx_status st = (!v->path || !v->pkt || !v->frame)
                        ? stx__errf(e, STX_E_NOMEM, "%s: out of memory", name)
                        : open_video(v, (int64_t)size);
    if (st) {
        stx_video_close(v);
        return st;
    }
    v->frame_bytes = (size_t)v->width * (size_t)v->height * 3;
    *out = v;
    return STX_OK;
}

void stx_video_close(stx_video *v) {
    if (!v) return;
    stx_context *ctx = v->ctx;
    decoder_close(v);
    av_packet_free(&v->pkt);
    av_frame_free(&v->frame);
    sws_freeContext(v->sws);
    av_freep(&v->rgb[0]);
    for (size_t i = 0; i < v->n_files; i++) stx__free(ctx, v->files[i]);
    stx__free(ctx, v->files);
    stx__free(ctx, v->types);
    stx_tensor_free(v->npy);
    stx__free(ctx, v->cache_idx);
    stx__free(ctx, v->cache);
    stx__free(ctx, v->path);
    stx__free(ctx, v->format);
    stx__free(ctx, v->codec);
    stx__free(ctx, v);
}

stx_status stx_video_get_info(const stx_video *v, stx_video_info *out) {
    if (!v || !out) return STX_E_INVALID;
    memset(out, 0, sizeof *out);
    out->size = sizeof *out;
    out->kind = v->kind == SRC_VIDEO ? "video" : v->kind == SRC_IMAGES ? "images" : "npy";
    out->format = v->format;
    out->codec = v->codec;
    out->width = v->width;
    out->height = v->height;
    out->num_frames = v->num_frames;
    out->fps = v->fps;
    return STX_OK;
}

/* Keeps a copy of the frames just returned (out, with their indices) as the cache. */
static void cache_store(stx_video *v, const int64_t *indices, int n, const uint8_t *frames) {
    stx_context *ctx = v->ctx;
    if (n > v->cache_cap || n < v->cache_cap / 2) {
        stx__free(ctx, v->cache);
        stx__free(ctx, v->cache_idx);
        v->cache = NULL;
        v->cache_idx = NULL;
        v->cache_n = v->cache_cap = 0;
        size_t bytes;
        if (n == 0 || !stx__mul_size(v->frame_bytes, (size_t)n, &bytes)) return;
        v->cache = stx__malloc(ctx, bytes);
        v->cache_idx = stx__malloc(ctx, sizeof *v->cache_idx * (size_t)n);
        if (!v->cache || !v->cache_idx) { /* no cache then: only costs decoding again */
            stx__free(ctx, v->cache);
            stx__free(ctx, v->cache_idx);
            v->cache = NULL;
            v->cache_idx = NULL;
            return;
        }
        v->cache_cap = n;
    }
    memcpy(v->cache, frames, v->frame_bytes * (size_t)n);
    memcpy(v->cache_idx, indices, sizeof *indices * (size_t)n);
    v->cache_n = n;
}

stx_status stx_video_read(stx_video *v, const int64_t *indices, int n, stx_tensor **out) {
    if (out) *out = NULL;
    if (!v) return STX_E_INVALID;
    if (!out || n < 0 || (n > 0 && !indices))
        return stx__errf(verr(v), STX_E_INVALID,
                         "stx_video_read: indices (n >= 0 of them) and out are required");
    for (int i = 0; i < n; i++) {
        if (indices[i] < 0 || indices[i] >= v->num_frames)
            return stx__errf(verr(v), STX_E_INVALID,
                             "%s: frame index %lld (position %d) is out of range: the source has "
                             "%lld frames",
                             v->path, (long long)indices[i], i, (long long)v->num_frames);
        if (i > 0 && indices[i] < indices[i - 1])
            return stx__errf(verr(v), STX_E_INVALID,
                             "%s: frame index %lld (position %d) comes after %lld: indices must be "
                             "non-decreasing",
                             v->path, (long long)indices[i], i, (long long)indices[i - 1]);
    }
    int64_t dims[4] = {n, v->height, v->width, 3};
    stx_tensor *t = stx__tensor_new(v->ctx, STX_DTYPE_UINT8, dims, 4);
    if (!t)
        return stx__errf(verr(v), STX_E_NOMEM, "%s: out of memory for %d frames of %dx%d", v->path,
                         n, v->width, v->height);
    uint8_t *data = t->data;
    const size_t fb = v->frame_bytes;
    int j = 0; /* cache position (the cached indices are non-decreasing too) */
    for (int i = 0; i < n; i++) {
        int64_t k = indices[i];
        uint8_t *dst = data + fb * (size_t)i;
        if (i > 0 && k == indices[i - 1]) {
            memcpy(dst, dst - fb, fb);
            continue;
        }
        if (v->kind == SRC_NPY) {
            npy_frame(v, k, dst);
            continue;
        }
        while (j < v->cache_n && v->cache_idx[j] < k) j++;
        if (j < v->cache_n && v->cache_idx[j] == k) {
            memcpy(dst, v->cache + fb * (size_t)j, fb);
            continue;
        }
        stx_status st = v->kind == SRC_VIDEO ? video_frame(v, k, dst) : image_frame(v, k, dst);
        if (st) {
            stx_tensor_free(t);
            return st;
        }
    }
    if (v->kind != SRC_NPY) cache_store(v, indices, n, data);
    *out = t;
    return STX_OK;
}

/* For the tests (not in stx.h): frames decoded and rewinds since the open of a video file. */
void stx__video_stats(const stx_video *v, int64_t *decoded, int64_t *rewinds);
void stx__video_stats(const stx_video *v, int64_t *decoded, int64_t *rewinds) {
    *decoded = v ? v->n_decoded : 0;
    *rewinds = v ? v->n_rewinds : 0;
}
