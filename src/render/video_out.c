/* video_out.c: video writer (stx_write_video) on FFmpeg's libavcodec, libavformat, libswscale.
 *
 * Container: from the path's extension (av_guess_format); MP4 when FFmpeg knows no muxer for it.
 * Encoder: the first of libx264 (by name), any other H.264 encoder, MPEG-4 part 2 that opens and
 * that the container can hold (avformat_query_codec); a container that holds none of them (.gif,
 * .png) is STX_E_UNSUPPORTED. Quality: libx264 with CRF 18, preset "veryfast" (visually lossless
 * at a modest size; about 3 times faster than "fast" on vtest.avi's 768x576 frames); MPEG-4 with
 * a fixed quantiser of 2. The encoder runs on one thread: measured on 2 cores, x264's frame
 * threads competing with the OpenMP threads of the rest of the pipeline made a 10,000-frame
 * report 1.5 times slower (65 s against 42 s).
 *
 * Frames are RGB24; an odd width or height is padded by replicating the last column or row (the
 * yuv420p encoders need even sizes), then converted to yuv420p (BT.601 matrix, limited range,
 * which the stream is tagged with) by libswscale. The time base is 1 / fps (fps as a rational
 * with denominator <= 65535, as MPEG-4 requires), frame i has pts i. MP4 and MOV are written with
 * the index in front (movflags=+faststart) so that browsers can start playing at once.
 *
 * The file is written under a temporary name beside the target and renamed onto it at the end;
 * failures remove it. stx_video_writer_* stream (open, write frames in any number of calls,
 * close); stx_write_video is open + one write + close. FFmpeg's logging is switched off
 * (av_log_set_level(AV_LOG_QUIET), which is process-wide): the library never prints. */
#include "render.h"

#include <errno.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
#include <stdio.h>
#include <string.h>

typedef struct venc {
    AVFormatContext *oc;
    AVCodecContext *cc;
    AVStream *st;
    AVFrame *frame;
    AVPacket *pkt;
    struct SwsContext *sws;
    uint8_t *rgb; /* one padded RGB24 frame */
    int pb_open;
} venc;

static void venc_free(venc *v) {
    if (v->oc && v->pb_open) avio_closep(&v->oc->pb);
    avformat_free_context(v->oc);
    avcodec_free_context(&v->cc);
    av_frame_free(&v->frame);
    av_packet_free(&v->pkt);
    sws_freeContext(v->sws);
    av_free(v->rgb);
    memset(v, 0, sizeof *v);
}

static int has_yuv420p(const AVCodec *c) {
    if (!c->pix_fmts) return 1; /* unknown: let avcodec_open2 decide */
    for (const enum AVPixelFormat *p = c->pix_fmts; *p != AV_PIX_FMT_NONE; p++)
        if (*p == AV_PIX_FMT_YUV420P) return 1;
    return 0;
}

/* Opens an encoder context for codec c; NULL when it does not open. */
static AVCodecContext *open_encoder(const AVCodec *c, const AVOutputFormat *ofmt, int w, int h,
                                    AVRational rate, int threads) {
    AVCodecContext *cc = avcodec_alloc_context3(c);
    if (!cc) return NULL;
    cc->width = w;
    cc->height = h;
    cc->pix_fmt = AV_PIX_FMT_YUV420P;
    cc->time_base = av_inv_q(rate);
    cc->framerate = rate;
    cc->gop_size = 12;
    cc->color_range = AVCOL_RANGE_MPEG;
    cc->colorspace = AVCOL_SPC_SMPTE170M;
    cc->thread_count = threads;
    if (ofmt->flags & AVFMT_GLOBALHEADER) cc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    AVDictionary *opts = NULL;
    if (c->id == AV_CODEC_ID_H264) {
        av_dict_set(&opts, "crf", "18", 0);
        av_dict_set(&opts, "preset", "veryfast", 0);
    } else {
        cc->flags |= AV_CODEC_FLAG_QSCALE;
        cc->global_quality = FF_QP2LAMBDA * 2;
    }
    int r = avcodec_open2(cc, c, &opts);
    av_dict_free(&opts);
    if (r < 0) avcodec_free_context(&cc);
    return cc;
}

/* Sends one frame (NULL: flush) and writes every packet the encoder gives back. */
static int encode_write(venc *v, AVFrame *f) {
    int r = avcodec_send_frame(v->cc, f);
    if (r < 0) return r;
    for (;;) {
        r = avcodec_receive_packet(v->cc, v->pkt);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return 0;
        if (r < 0) return r;
        av_packet_rescale_ts(v->pkt, v->cc->time_base, v->st->time_base);
        v->pkt->stream_index = v->st->index;
        r = av_interleaved_write_frame(v->oc, v->pkt); /* takes the packet's reference */
        if (r < 0) return r;
    }
}

static const char *av_err(int r, char *buf, size_t n) {
    if (av_strerror(r, buf, n) < 0) snprintf(buf, n, "FFmpeg error %d", r);
    return buf;
}

struct stx_video_writer {
    stx_context *ctx;
    venc v;
    char *path, *tmp;
    const AVCodec *used;
    const AVOutputFormat *ofmt;
    int h, w, H, W; /* frame size and the padded (even) size */
    int64_t next_pts;
    int failed;
};

static void writer_free(stx_video_writer *vw) {
    if (!vw) return;
    stx_context *ctx = vw->ctx;
    venc_free(&vw->v);
    if (vw->tmp) remove(vw->tmp);
    stx__free(ctx, vw->tmp);
    stx__free(ctx, vw->path);
    stx__free(ctx, vw);
}

stx_status stx_video_writer_open(stx_context *ctx, const char *path, int width, int height,
                                 double fps, stx_video_writer **out) {
    static const char fn[] = "stx_video_writer_open";
    stx_err *e = ctx ? &ctx->err : NULL;
    if (out) *out = NULL;
    if (!path || !out) return stx__errf(e, STX_E_INVALID, "%s: path and out are required", fn);
    if (width <= 0 || height <= 0 || width > 16384 || height > 16384)
        return stx__errf(e, STX_E_INVALID, "%s: %s: frame size %dx%d is not in [1, 16384]", fn,
                         path, width, height);
    if (!(fps > 0 && fps <= 1000))
        return stx__errf(e, STX_E_INVALID, "%s: %s: fps %g is not in (0, 1000]", fn, path, fps);
    char eb[AV_ERROR_MAX_STRING_SIZE];
    av_log_set_level(AV_LOG_QUIET);
    const AVRational rate = av_d2q(fps, 65535);
    const int threads = 1; /* see the header */
    const AVOutputFormat *ofmt = av_guess_format(NULL, path, NULL);
    if (!ofmt) ofmt = av_guess_format("mp4", NULL, NULL);
    if (!ofmt) return stx__errf(e, STX_E_UNSUPPORTED, "%s: FFmpeg has no MP4 muxer", path);
    /* image-sequence muxers (.png, .jpg, ...) would write a series of images, not a video */
    if (strncmp(ofmt->name, "image2", 6) == 0 || (ofmt->flags & AVFMT_NOFILE))
        return stx__errf(e, STX_E_UNSUPPORTED,
                         "%s: not a video container ('%s'); use .mp4, .mkv, .mov or .avi", path,
                         ofmt->name);
    stx_video_writer *vw = stx__calloc(ctx, 1, sizeof *vw);
    if (!vw) return stx__errf(e, STX_E_NOMEM, "%s: %s: out of memory", fn, path);
    vw->ctx = ctx;
    vw->ofmt = ofmt;
    vw->h = height;
    vw->w = width;
    vw->H = height + (height & 1);
    vw->W = width + (width & 1);
    venc *v = &vw->v;
    const AVCodec *cands[3] = {avcodec_find_encoder_by_name("libx264"),
                               avcodec_find_encoder(AV_CODEC_ID_H264),
                               avcodec_find_encoder(AV_CODEC_ID_MPEG4)};
    int any = 0;
    for (int i = 0; i < 3 && !v->cc; i++) {
        const AVCodec *c = cands[i];
        if (!c || !has_yuv420p(c) || avformat_query_codec(ofmt, c->id, FF_COMPLIANCE_NORMAL) != 1)
            continue;
        any = 1;
        v->cc = open_encoder(c, ofmt, vw->W, vw->H, rate, threads);
        if (v->cc) vw->used = c;
    }
    stx_status st = STX_OK;
    if (!v->cc) {
        if (!any)
            st = stx__errf(e, STX_E_UNSUPPORTED,
                           "%s: the '%s' container holds neither H.264 nor MPEG-4 video (or "
                           "FFmpeg has neither encoder); use .mp4, .mkv, .mov or .avi%s",
                           path, ofmt->name,
                           strcmp(ofmt->name, "gif") == 0 ? " (or stx_write_gif)" : "");
        else
            st = stx__errf(e, STX_E_UNSUPPORTED, "%s: no H.264 or MPEG-4 encoder opened for %dx%d",
                           path, vw->W, vw->H);
        writer_free(vw);
        return st;
    }
    int r = 0;
    const char *what = "out of memory";
    vw->path = stx__strdup(ctx, path);
    vw->tmp = stx__render_tmp_path(ctx, path);
    v->frame = av_frame_alloc();
    v->pkt = av_packet_alloc();
    v->rgb = av_malloc((size_t)vw->W * (size_t)vw->H * 3);
    v->sws = sws_getContext(vw->W, vw->H, AV_PIX_FMT_RGB24, vw->W, vw->H, AV_PIX_FMT_YUV420P,
                            SWS_BILINEAR | SWS_ACCURATE_RND, NULL, NULL, NULL);
    if (!vw->path || !vw->tmp || !v->frame || !v->pkt || !v->rgb || !v->sws) {
        st = stx__errf(e, STX_E_NOMEM, "%s: %s: out of memory", fn, path);
        writer_free(vw);
        return st;
    }
    v->frame->format = AV_PIX_FMT_YUV420P;
    v->frame->width = vw->W;
    v->frame->height = vw->H;
    if ((r = av_frame_get_buffer(v->frame, 0)) < 0) goto fail;
    what = "cannot set up the container";
    if ((r = avformat_alloc_output_context2(&v->oc, ofmt, NULL, vw->tmp)) < 0) goto fail;
    v->st = avformat_new_stream(v->oc, NULL);
    if (!v->st) {
        r = AVERROR(ENOMEM);
        goto fail;
    }
    v->st->time_base = v->cc->time_base;
    v->st->avg_frame_rate = rate;
    if ((r = avcodec_parameters_from_context(v->st->codecpar, v->cc)) < 0) goto fail;
    if (!(ofmt->flags & AVFMT_NOFILE)) {
        if ((r = avio_open(&v->oc->pb, vw->tmp, AVIO_FLAG_WRITE)) < 0) {
            st = stx__errf(e, STX_E_IO, "%s: cannot write: %s", path, av_err(r, eb, sizeof eb));
            writer_free(vw);
            return st;
        }
        v->pb_open = 1;
    }
    AVDictionary *mopts = NULL;
    if (strstr(ofmt->name, "mp4") || strstr(ofmt->name, "mov"))
        av_dict_set(&mopts, "movflags", "+faststart", 0);
    what = "cannot write the header";
    r = avformat_write_header(v->oc, &mopts);
    av_dict_free(&mopts);
    if (r < 0) goto fail;
    *out = vw;
    return STX_OK;
fail:
    st = stx__errf(e, r == AVERROR(ENOMEM) ? STX_E_NOMEM : STX_E_IO, "%s: %s (%s, encoder %s): %s",
                   path, what, ofmt->name, vw->used->name, av_err(r, eb, sizeof eb));
    writer_free(vw);
    return st;
}

stx_status stx_video_writer_write(stx_video_writer *vw, const stx_tensor *frames) {
    static const char fn[] = "stx_video_writer_write";
    if (!vw) return STX_E_INVALID;
    stx_err *e = vw->ctx ? &vw->ctx->err : NULL;
    if (vw->failed)
        return stx__errf(e, STX_E_INVALID, "%s: %s: an earlier write failed", fn, vw->path);
    stx_status st = stx__render_check_clip(e, fn, "frames", frames);
    if (st) return st;
    char sb[160], eb[AV_ERROR_MAX_STRING_SIZE];
    if (frames->dims[1] != vw->h || frames->dims[2] != vw->w) {
        vw->failed = 1;
        return stx__errf(e, STX_E_SHAPE, "%s: %s: frames %s are not %dx%d as opened", fn, vw->path,
                         stx__shape_str(frames->dims, frames->rank, sb, sizeof sb), vw->h, vw->w);
    }
    venc *v = &vw->v;
    const int h = vw->h, w = vw->w, H = vw->H, W = vw->W;
    const uint8_t *src = frames->data;
    int r = 0;
    for (int64_t t = 0; t < frames->dims[0]; t++) {
        const uint8_t *fr = src + (size_t)t * (size_t)h * (size_t)w * 3;
        for (int y = 0; y < H; y++) {
            const uint8_t *row = fr + (size_t)(y < h ? y : h - 1) * (size_t)w * 3;
            uint8_t *dst = v->rgb + (size_t)y * (size_t)W * 3;
            memcpy(dst, row, (size_t)w * 3);
            if (W > w) memcpy(dst + (size_t)w * 3, row + (size_t)(w - 1) * 3, 3);
        }
        if ((r = av_frame_make_writable(v->frame)) < 0) break;
        const uint8_t *in[4] = {v->rgb, NULL, NULL, NULL};
        const int in_stride[4] = {W * 3, 0, 0, 0};
        if ((r = sws_scale(v->sws, in, in_stride, 0, H, v->frame->data, v->frame->linesize)) < 0)
            break;
        v->frame->pts = vw->next_pts++;
        if (vw->used->id == AV_CODEC_ID_MPEG4) v->frame->quality = v->cc->global_quality;
        if ((r = encode_write(v, v->frame)) < 0) break;
    }
    if (r < 0) {
        vw->failed = 1;
        return stx__errf(e, r == AVERROR(ENOMEM) ? STX_E_NOMEM : STX_E_IO,
                         "%s: encoding failed (%s, encoder %s): %s", vw->path, vw->ofmt->name,
                         vw->used->name, av_err(r, eb, sizeof eb));
    }
    return STX_OK;
}

stx_status stx_video_writer_close(stx_video_writer *vw, const char **codec) {
    if (codec) *codec = NULL;
    if (!vw) return STX_OK;
    stx_err *e = vw->ctx ? &vw->ctx->err : NULL;
    venc *v = &vw->v;
    stx_status st = STX_OK;
    char eb[AV_ERROR_MAX_STRING_SIZE];
    int r = 0;
    const char *what = "encoding failed";
    if (vw->failed) {
        st = STX_E_IO; /* the failed write kept its message */
    } else if (vw->next_pts == 0) {
        st = stx__errf(e, STX_E_INVALID, "%s: no frames were written", vw->path);
    } else if ((r = encode_write(v, NULL)) < 0 ||
               (what = "cannot finish the file", r = av_write_trailer(v->oc)) < 0) {
        st = stx__errf(e, STX_E_IO, "%s: %s (%s, encoder %s): %s", vw->path, what, vw->ofmt->name,
                       vw->used->name, av_err(r, eb, sizeof eb));
    } else {
        if (v->pb_open) {
            v->pb_open = 0;
            if ((r = avio_closep(&v->oc->pb)) < 0)
                st = stx__errf(e, STX_E_IO, "%s: cannot finish the file: %s", vw->path,
                               av_err(r, eb, sizeof eb));
        }
        if (!st && rename(vw->tmp, vw->path) != 0)
            st = stx__errf(e, STX_E_IO, "%s: cannot rename the temporary file onto it: %s",
                           vw->path, strerror(errno));
        if (!st) {
            if (codec) *codec = vw->used->name;
            stx__free(vw->ctx, vw->tmp);
            vw->tmp = NULL; /* renamed: nothing to remove */
        }
    }
    writer_free(vw);
    return st;
}

stx_status stx_write_video(stx_context *ctx, const stx_tensor *frames, double fps, const char *path,
                           const char **codec) {
    static const char fn[] = "stx_write_video";
    stx_err *e = ctx ? &ctx->err : NULL;
    if (codec) *codec = NULL;
    if (!path) return stx__errf(e, STX_E_INVALID, "%s: path is NULL", fn);
    stx_status st = stx__render_check_clip(e, fn, "frames", frames);
    if (st) return st;
    char sb[160];
    if (frames->dims[1] > 16384 || frames->dims[2] > 16384)
        return stx__errf(e, STX_E_UNSUPPORTED, "%s: %s: frames %s are too large to encode", fn,
                         path, stx__shape_str(frames->dims, frames->rank, sb, sizeof sb));
    stx_video_writer *vw = NULL;
    st = stx_video_writer_open(ctx, path, (int)frames->dims[2], (int)frames->dims[1], fps, &vw);
    if (st) return st;
    st = stx_video_writer_write(vw, frames);
    stx_status st2 = stx_video_writer_close(vw, codec);
    return st ? st : st2;
}
