/* video_job.c: `stx explain MODEL VIDEO --out-dir DIR`: decode -> sample -> preprocess -> predict
 * -> explain -> render (overlay video and GIF, frame grid, temporal curve, raw map, manifest,
 * HTML report).
 *
 * Choices (docs/video.md says the same for users):
 * - One method: the files go straight into DIR. Several (--method gradcam,scorecam): each
 *   method's files go into DIR/METHOD/, and report.html, manifest.json and original.mp4 stay in
 *   DIR. Everything is written into a staging folder beside DIR that replaces DIR at the end, so
 *   a failure leaves no half-written report; an existing DIR is replaced only when it holds an
 *   earlier stx report (a manifest.json), never another folder.
 * - saliency.npy holds the raw map at the model's input resolution: (1, T, H', W') for one clip
 *   (its sampled frames), (1, F, H', W') with sliding windows, F = the video's frames from
 *   --start on, each sampled frame's map holding until the next sampled frame and overlapping
 *   windows averaged.
 * - Rendering is at the source resolution: maps are normalised at the model's resolution, then
 *   carried back through the crop and resize (outside the crop: the frame dimmed).
 * - Long videos (windows) are rendered in chunks: no more than one chunk of source frames is held;
 *   the GIF takes at most 120 frames (evenly spread) at most 320 px wide.
 */
#include "cli.h"
#include "report_util.h"
#include "video_job.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_METHODS 16
#define GRID_FRAMES 8
#define GIF_MAX_FRAMES 120
#define GIF_MAX_WIDTH 320
#define CHUNK 32

/* ---- small helpers ------------------------------------------------------------------------ */

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Removes a folder written by stx (files and one level of method folders). */
static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = path_join(dir, e->d_name);
        if (!p) break;
        if (is_dir(p))
            remove_tree(p);
        else
            unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(dir);
}

/* ---- the job ------------------------------------------------------------------------------ */

typedef struct method_run {
    const char *name;
    stx_explainer *e;
    char layer[512];
    const char *how;
    int64_t grid[4];
    stx_tensor *vol; /* stitched raw map (F, h, w) */
    double ms;       /* explain time */
    const char *codec;
    char dir[16];
} method_run;

typedef struct window_pred {
    int64_t first, last; /* video frames */
    int64_t top;
    float top_prob, target_score;
    int64_t target;
} window_pred;

typedef struct job {
    stx_context *ctx;
    stx_model *m;
    const cli_resolved *res;
    const video_job_opts *o;
    stx_video *v;
    stx_video_info info;
    stx_sampling s;
    stx_preprocess pre;
    stx_frame_geometry g;
    int64_t nclips, F0, F; /* windows: the volume covers video frames F0 .. F0 + F - 1 */
    int h, w;              /* model input frame size */
    method_run runs[MAX_METHODS];
    int nruns;
    window_pred *preds;
    int64_t *clip_idx; /* the sampled frames of clip 0 */
    stx_tensor *clip_frames;
    char *stage;
    double t_decode, t_pre;
} job;

static int job_fail_ctx(job *j, const char *what) {
    return cli_fail("%s: %s", what, stx_context_last_error(j->ctx));
}

static void softmax_top(const float *y, int64_t K, int64_t *top, float *p_top) {
    int64_t t = 0;
    for (int64_t k = 1; k < K; k++)
        if (y[k] > y[t]) t = k;
    double z = 0;
    for (int64_t k = 0; k < K; k++) z += exp((double)y[k] - (double)y[t]);
    *top = t;
    *p_top = (float)(1.0 / z);
}

static bool cancelled(const job *j) {
    return j->o->cancel && *j->o->cancel;
}

/* Explains every clip, stitching the maps into each method's volume. */
static int run_clips(job *j, int64_t target, int64_t frame) {
    int T = j->s.clip_len;
    int64_t *idx = malloc(sizeof *idx * (size_t)T);
    float *cnt = calloc((size_t)j->F, sizeof *cnt);
    j->preds = calloc((size_t)j->nclips, sizeof *j->preds);
    j->clip_idx = malloc(sizeof *j->clip_idx * (size_t)T);
    if (!idx || !cnt || !j->preds || !j->clip_idx) {
        free(idx);
        free(cnt);
        return cli_fail("out of memory");
    }
    int rc = 0;
    size_t plane = (size_t)j->h * j->w;
    for (int r = 0; r < j->nruns; r++) {
        int64_t vd[3] = {j->F, j->h, j->w};
        if (stx_tensor_create(j->ctx, STX_DTYPE_FLOAT, vd, 3, &j->runs[r].vol) != STX_OK) {
            rc = cli_fail("out of memory for the map of %lld frames of %dx%d", (long long)j->F,
                          j->h, j->w);
            goto out;
        }
    }
    for (int64_t k = 0; k < j->nclips && !rc; k++) {
        if (cancelled(j)) {
            rc = cli_fail("cancelled after %lld of %lld windows; nothing written", (long long)k,
                          (long long)j->nclips);
            break;
        }
        stx_sampling_indices(&j->s, j->info.num_frames, k, idx);
        if (k == 0) memcpy(j->clip_idx, idx, sizeof *idx * (size_t)T);
        double t0 = cli_now_ms();
        stx_tensor *fr = NULL, *x = NULL;
        if (stx_video_read(j->v, idx, T, &fr) != STX_OK) {
            rc = job_fail_ctx(j, j->o->input);
            break;
        }
        double t1 = cli_now_ms();
        j->t_decode += t1 - t0;
        if (stx_frames_to_input(j->ctx, fr, &j->pre, &x) != STX_OK) {
            stx_tensor_free(fr);
            rc = job_fail_ctx(j, j->o->input);
            break;
        }
        j->t_pre += cli_now_ms() - t1;
        if (j->nclips == 1)
            j->clip_frames = fr;
        else
            stx_tensor_free(fr);
        for (int r = 0; r < j->nruns && !rc; r++) {
            method_run *mr = &j->runs[r];
            if (!mr->e) {
                stx_explain_options eo = *j->o->eo;
                eo.method = mr->name;
                if (stx_explainer_create(j->m, &eo, stx_tensor_shape(x), stx_tensor_rank(x),
                                         &mr->e) != STX_OK) {
                    rc = cli_fail("%s: %s", j->o->model, stx_context_last_error(j->ctx));
                    break;
                }
                const char *tensor, *module;
                stx_explainer_layer(mr->e, &tensor, &module, &mr->how, mr->grid);
                snprintf(mr->layer, sizeof mr->layer, "%s",
                         module   ? module
                         : tensor ? tensor
                                  : "none");
                printf("%s: layer %s (%s; %lld channels, grid %lldx%lldx%lld)\n", mr->name,
                       mr->layer, mr->how, (long long)mr->grid[0], (long long)mr->grid[1],
                       (long long)mr->grid[2], (long long)mr->grid[3]);
            }
            double ta = cli_now_ms();
            stx_tensor *map = NULL;
            int64_t tg = target, fr1 = frame;
            if (stx_explainer_run(mr->e, x, &tg, frame >= 0 ? &fr1 : NULL, &map) != STX_OK) {
                rc = cli_fail("%s", stx_explainer_last_error(mr->e));
                break;
            }
            mr->ms += cli_now_ms() - ta;
            const int64_t *ms = stx_tensor_shape(map);
            if (ms[1] != T || ms[2] != j->h || ms[3] != j->w) {
                rc = cli_fail("%s: the map is %lldx%lldx%lld, not the input's %dx%dx%d (render "
                              "needs --upsample trilinear or nearest)",
                              mr->name, (long long)ms[1], (long long)ms[2], (long long)ms[3], T,
                              j->h, j->w);
                break;
            }
            const float *mp = stx_tensor_data_const(map);
            for (int i = 0; i < T; i++) {
                /* frames idx[i] .. next sampled frame - 1 (the clip's own frames only) */
                int64_t a = idx[i] - j->F0;
                int64_t b =
                    i + 1 < T ? idx[i + 1] - j->F0 : a + (j->nclips > 1 ? j->s.frame_stride : 1);
                if (j->nclips == 1) a = i, b = i + 1;
                for (int64_t f = a; f < b && f < j->F; f++) {
                    float *dst = (float *)stx_tensor_data(mr->vol) + (size_t)f * plane;
                    const float *src = mp + (size_t)i * plane;
                    for (size_t q = 0; q < plane; q++) dst[q] += src[q];
                    if (r == 0) cnt[f] += 1;
                }
            }
            if (r == 0) {
                const stx_tensor *y = stx_explainer_output(mr->e);
                const float *yp = stx_tensor_data_const(y);
                int64_t K = stx_tensor_shape(y)[1];
                window_pred *p = &j->preds[k];
                p->first = idx[0];
                p->last = idx[T - 1];
                if (stx_tensor_rank(y) == 2) {
                    softmax_top(yp, K, &p->top, &p->top_prob);
                    p->target = stx_explainer_targets(mr->e)[0];
                    p->target_score = yp[p->target];
                } else {
                    /* per-frame outputs (1, K, T): the class of the logits summed over the
                     * frames (what the explainer's default target is), and its softmax
                     * probability of the mean logits; target score: the summed logit */
                    int64_t Tn = stx_tensor_rank(y) == 3 ? stx_tensor_shape(y)[2] : 1;
                    float *sum = calloc((size_t)K, sizeof *sum);
                    for (int64_t c = 0; sum && c < K; c++)
                        for (int64_t t = 0; t < Tn; t++) sum[c] += yp[c * Tn + t] / (float)Tn;
                    if (sum) softmax_top(sum, K, &p->top, &p->top_prob);
                    p->target = stx_explainer_targets(mr->e)[0];
                    p->target_score = sum ? sum[p->target] * (float)Tn : NAN;
                    free(sum);
                }
            }
        }
        stx_tensor_free(x);
        if (j->nclips > 1 && isatty(2)) {
            fprintf(stderr, "\rwindows %lld/%lld", (long long)k + 1, (long long)j->nclips);
            if (k + 1 == j->nclips) fputc('\n', stderr);
        }
    }
    if (!rc)
        for (int r = 0; r < j->nruns; r++)
            for (int64_t f = 0; f < j->F; f++) {
                float c = cnt[f] > 0 ? cnt[f] : 1;
                float *dst = (float *)stx_tensor_data(j->runs[r].vol) + (size_t)f * plane;
                for (size_t q = 0; q < plane; q++) dst[q] /= c;
            }
out:
    free(idx);
    free(cnt);
    return rc;
}

/* The source frames the volume's frame f shows. */
static int64_t volume_frame_source(const job *j, int64_t f) {
    return j->nclips == 1 ? j->clip_idx[f] : j->F0 + f;
}

/* Per-frame importance: the mean of the raw map over the frame. */
static void temporal_curve(const job *j, const stx_tensor *volt, float *curve) {
    const float *vol = stx_tensor_data_const(volt);
    size_t plane = (size_t)j->h * j->w;
    for (int64_t f = 0; f < j->F; f++) {
        double s = 0;
        for (size_t q = 0; q < plane; q++) s += vol[(size_t)f * plane + q];
        curve[f] = (float)(s / (double)plane);
    }
}

/* Renders one method's pictures and videos into dir. */
static int render_method(job *j, method_run *mr, const char *dir, bool write_original) {
    stx_context *ctx = j->ctx;
    const video_job_opts *o = j->o;
    int rc = 0;
    int64_t F = j->F, dims[3] = {F, j->h, j->w};
    stx_tensor *norm = NULL, *plot = NULL;
    stx_video_writer *vw = NULL, *ow = NULL;
    float *curve = malloc(sizeof *curve * (size_t)F);
    char *p_npy = path_join(dir, "saliency.npy"), *p_mp4 = path_join(dir, "overlay.mp4"),
         *p_gif = path_join(dir, "overlay.gif"), *p_grid = path_join(dir, "frames.png"),
         *p_tmp = path_join(dir, "temporal.png"), *p_orig = path_join(j->stage, "original.mp4");
    uint8_t *gif = NULL, *grid_src[GRID_FRAMES] = {0}, *grid_ov[GRID_FRAMES] = {0};
    int64_t grid_f[GRID_FRAMES], gif_f[GIF_MAX_FRAMES];
    int ngrid = F < GRID_FRAMES ? (int)F : GRID_FRAMES;
    int ngif = F < GIF_MAX_FRAMES ? (int)F : GIF_MAX_FRAMES, gh = 0, gw = 0;
    if (!curve || !p_npy || !p_mp4 || !p_gif || !p_grid || !p_tmp || !p_orig) {
        rc = cli_fail("out of memory");
        goto out;
    }
    for (int i = 0; i < ngrid; i++) grid_f[i] = ngrid == 1 ? 0 : i * (F - 1) / (ngrid - 1);
    for (int i = 0; i < ngif; i++) gif_f[i] = ((int64_t)2 * i + 1) * F / (2 * ngif);
    /* the raw map, saved as (1, F, h, w) */
    {
        int64_t d4[4] = {1, F, j->h, j->w};
        stx_tensor_reshape(mr->vol, d4, 4);
        stx_status st = stx_tensor_save_npy(ctx, mr->vol, p_npy);
        stx_tensor_reshape(mr->vol, dims, 3);
        if (st != STX_OK) {
            rc = job_fail_ctx(j, p_npy);
            goto out;
        }
    }
    /* one scale for the whole clip (or video): the range of the raw map, applied chunk by chunk;
     * per-frame normalisation needs no range */
    stx_render_options ro = o->ro;
    if (!ro.per_frame) {
        const float *vp = stx_tensor_data_const(mr->vol);
        size_t total = (size_t)F * j->h * j->w;
        float lo = vp[0], hi = vp[0];
        for (size_t q = 1; q < total; q++) {
            lo = vp[q] < lo ? vp[q] : lo;
            hi = vp[q] > hi ? vp[q] : hi;
        }
        ro.use_range = 1;
        ro.range_lo = lo;
        ro.range_hi = hi;
    }
    temporal_curve(j, mr->vol, curve);
    /* frames: decoded again chunk by chunk (windows) or the clip's own frames */
    double fps = j->info.fps > 0 ? j->info.fps : 8.0;
    if (j->nclips == 1 && j->s.frame_stride > 1) fps /= j->s.frame_stride;
    if (j->nclips == 1 && j->s.uniform) fps = 4.0;
    int H = j->info.height, W = j->info.width;
    if (stx_video_writer_open(ctx, p_mp4, W, H, fps, &vw) != STX_OK ||
        (write_original && stx_video_writer_open(ctx, p_orig, W, H, fps, &ow) != STX_OK)) {
        rc = job_fail_ctx(j, "video");
        goto out;
    }
    int gi = 0, gri = 0;
    size_t plane = (size_t)j->h * j->w;
    bool tty = isatty(2) && F > CHUNK;
    for (int64_t f0 = 0; f0 < F && !rc; f0 += CHUNK) {
        int64_t n = F - f0 < CHUNK ? F - f0 : CHUNK;
        if (cancelled(j)) {
            rc = cli_fail("cancelled while rendering; nothing written");
            break;
        }
        if (tty) {
            fprintf(stderr, "\r%s: rendering %lld/%lld frames", mr->name, (long long)(f0 + n),
                    (long long)F);
            if (f0 + n == F) fputc('\n', stderr);
        }
        stx_tensor *fr = NULL, *ov = NULL, *um = NULL, *part = NULL;
        if (j->nclips == 1) {
            int64_t fd[4] = {n, H, W, 3};
            if (stx_tensor_create(ctx, STX_DTYPE_UINT8, fd, 4, &fr) == STX_OK)
                memcpy(stx_tensor_data(fr),
                       (const uint8_t *)stx_tensor_data_const(j->clip_frames) +
                           (size_t)f0 * H * W * 3,
                       (size_t)n * H * W * 3);
        } else {
            int64_t ids[CHUNK];
            for (int64_t i = 0; i < n; i++) ids[i] = volume_frame_source(j, f0 + i);
            stx_video_read(j->v, ids, (int)n, &fr);
        }
        int64_t pd[3] = {n, j->h, j->w};
        if (!fr || stx_tensor_create(ctx, STX_DTYPE_FLOAT, pd, 3, &part) != STX_OK) {
            rc = job_fail_ctx(j, o->input);
        } else {
            memcpy(stx_tensor_data(part),
                   (const float *)stx_tensor_data_const(mr->vol) + f0 * plane,
                   sizeof(float) * (size_t)n * plane);
            if (stx_render_normalize(ctx, part, &ro, &norm) != STX_OK ||
                stx_render_unmap(ctx, norm, &j->g, &um) != STX_OK ||
                stx_render_overlay(ctx, fr, um, &o->ro, &ov) != STX_OK ||
                stx_video_writer_write(vw, ov) != STX_OK ||
                (ow && stx_video_writer_write(ow, fr) != STX_OK))
                rc = job_fail_ctx(j, mr->name);
        }
        if (!rc) {
            const uint8_t *src = stx_tensor_data_const(fr), *ovp = stx_tensor_data_const(ov);
            size_t fb = (size_t)H * W * 3;
            for (int64_t i = 0; i < n; i++) {
                int64_t f = f0 + i;
                while (gri < ngrid && grid_f[gri] == f) {
                    int hh, ww;
                    grid_src[gri] = downscale(src + i * fb, H, W, 160, &hh, &ww);
                    grid_ov[gri] = downscale(ovp + i * fb, H, W, 160, &hh, &ww);
                    gri++;
                }
                while (gi < ngif && gif_f[gi] == f) {
                    int hh, ww;
                    uint8_t *d = downscale(ovp + i * fb, H, W, GIF_MAX_WIDTH, &hh, &ww);
                    if (!gif) {
                        gh = hh;
                        gw = ww;
                        gif = malloc((size_t)ngif * gh * gw * 3);
                    }
                    if (d && gif) memcpy(gif + (size_t)gi * gh * gw * 3, d, (size_t)gh * gw * 3);
                    free(d);
                    gi++;
                }
            }
        }
        stx_tensor_free(fr);
        stx_tensor_free(ov);
        stx_tensor_free(um);
        stx_tensor_free(part);
        stx_tensor_free(norm);
        norm = NULL;
    }
    if (rc) goto out;
    if (stx_video_writer_close(vw, &mr->codec) != STX_OK) {
        vw = NULL;
        rc = job_fail_ctx(j, p_mp4);
        goto out;
    }
    vw = NULL;
    if (ow) {
        stx_status st = stx_video_writer_close(ow, NULL);
        ow = NULL;
        if (st != STX_OK) {
            rc = job_fail_ctx(j, p_orig);
            goto out;
        }
    }
    /* GIF */
    if (gif) {
        int64_t gd[4] = {ngif, gh, gw, 3};
        stx_tensor *gt = NULL;
        double gfps = fps * (double)ngif / (double)F;
        if (gfps < 1) gfps = 1;
        if (stx_tensor_create(ctx, STX_DTYPE_UINT8, gd, 4, &gt) != STX_OK) {
            rc = job_fail_ctx(j, p_gif);
            goto out;
        }
        memcpy(stx_tensor_data(gt), gif, (size_t)ngif * gh * gw * 3);
        stx_status st = stx_write_gif(ctx, gt, gfps, p_gif);
        stx_tensor_free(gt);
        if (st != STX_OK) {
            rc = job_fail_ctx(j, p_gif);
            goto out;
        }
    }
    /* temporal curve */
    {
        char title[160];
        snprintf(title, sizeof title, "%s: importance per frame (mean of the map)", mr->name);
        if (stx_render_plot(ctx, curve, NULL, F, title,
                            j->nclips == 1 ? "clip frame" : "video frame - start", "mean map", 640,
                            240, &plot) != STX_OK ||
            stx_write_png(ctx, plot, p_tmp) != STX_OK) {
            rc = job_fail_ctx(j, p_tmp);
            goto out;
        }
    }
    /* frame grid: originals, overlays, and a temporal-importance strip */
    {
        int ch = 0, cw = 0;
        if (grid_src[0]) {
            cw = W > 160 ? 160 : W;
            ch = (int)((int64_t)H * cw / W);
            if (ch < 1) ch = 1;
        }
        int pad = 4, label = 12, strip = 16;
        int GW = ngrid * (cw + pad) + pad, GH = label + 2 * (ch + pad) + pad + strip + pad;
        int64_t gd[3] = {GH, GW, 3};
        stx_tensor *gt = NULL;
        if (stx_tensor_create(ctx, STX_DTYPE_UINT8, gd, 3, &gt) != STX_OK) {
            rc = job_fail_ctx(j, p_grid);
            goto out;
        }
        uint8_t *gp = stx_tensor_data(gt);
        memset(gp, 255, (size_t)GH * GW * 3);
        const uint8_t black[3] = {0, 0, 0};
        for (int i = 0; i < ngrid; i++) {
            int x0 = pad + i * (cw + pad);
            char lab[32];
            snprintf(lab, sizeof lab, "t=%lld", (long long)volume_frame_source(j, grid_f[i]));
            stx_render_text(gt, x0, 2, lab, 1, black);
            for (int row = 0; row < 2; row++) {
                const uint8_t *img = row == 0 ? grid_src[i] : grid_ov[i];
                if (!img) continue;
                int y0 = label + row * (ch + pad);
                for (int y = 0; y < ch; y++)
                    memcpy(gp + ((size_t)(y0 + y) * GW + x0) * 3, img + (size_t)y * cw * 3,
                           (size_t)cw * 3);
            }
        }
        /* the strip: every frame's importance, normalised over the clip, in the colour map */
        float lo = curve[0], hi = curve[0];
        for (int64_t f = 1; f < F; f++) {
            if (curve[f] < lo) lo = curve[f];
            if (curve[f] > hi) hi = curve[f];
        }
        int sy = label + 2 * (ch + pad) + pad, sw = GW - 2 * pad;
        for (int x = 0; x < sw; x++) {
            int64_t f = (int64_t)x * F / sw;
            float v = hi > lo ? (curve[f] - lo) / (hi - lo) : 0;
            uint8_t c[3];
            stx_colormap_rgb(o->ro.colormap, v, c);
            for (int y = 0; y < strip; y++)
                memcpy(gp + ((size_t)(sy + y) * GW + pad + x) * 3, c, 3);
        }
        /* ticks under the strip at the grid's frames */
        for (int i = 0; i < ngrid; i++) {
            int x = pad + (int)((grid_f[i] * sw + sw / 2) / (F > 0 ? F : 1));
            for (int y = sy + strip; y < sy + strip + pad && y < GH; y++)
                memcpy(gp + ((size_t)y * GW + x) * 3, black, 3);
        }
        stx_status st = stx_write_png(ctx, gt, p_grid);
        stx_tensor_free(gt);
        if (st != STX_OK) {
            rc = job_fail_ctx(j, p_grid);
            goto out;
        }
    }
out:
    if (vw) stx_video_writer_close(vw, NULL);
    if (ow) stx_video_writer_close(ow, NULL);
    for (int i = 0; i < GRID_FRAMES; i++) {
        free(grid_src[i]);
        free(grid_ov[i]);
    }
    free(gif);
    stx_tensor_free(norm);
    stx_tensor_free(plot);
    free(curve);
    free(p_npy);
    free(p_mp4);
    free(p_gif);
    free(p_grid);
    free(p_tmp);
    free(p_orig);
    return rc;
}

static void json_floats(sbuf *b, const float *v, int n) {
    sb_printf(b, "[");
    for (int i = 0; i < n; i++) sb_printf(b, "%s%.6g", i ? ", " : "", (double)v[i]);
    sb_printf(b, "]");
}

/* manifest.json: everything needed to reproduce the run. */
static void write_manifest(job *j, sbuf *b, double total_ms) {
    const video_job_opts *o = j->o;
    const stx_explain_options *eo = o->eo;
    sb_printf(b, "{\n  \"stx_version\": ");
    sb_str(b, stx_version());
    sb_printf(b, ",\n  \"input\": {\"path\": ");
    sb_str(b, o->input);
    sb_printf(b, ", \"kind\": ");
    sb_str(b, j->info.kind);
    sb_printf(b, ", \"format\": ");
    sb_str(b, j->info.format);
    sb_printf(b, ", \"codec\": ");
    sb_str(b, j->info.codec);
    sb_printf(b, ", \"width\": %d, \"height\": %d, \"frames\": %lld, \"fps\": %.6g},\n",
              j->info.width, j->info.height, (long long)j->info.num_frames, j->info.fps);
    sb_printf(b,
              "  \"sampling\": {\"clip_len\": %d, \"frame_stride\": %d, \"start\": %lld, "
              "\"uniform\": %s, \"windows\": %s, \"window_stride\": %lld, \"clips\": %lld, "
              "\"frames\": [",
              j->s.clip_len, j->s.frame_stride, (long long)j->s.start,
              j->s.uniform ? "true" : "false", j->s.windows ? "true" : "false",
              (long long)j->s.window_stride, (long long)j->nclips);
    for (int i = 0; i < j->s.clip_len; i++)
        sb_printf(b, "%s%lld", i ? ", " : "", (long long)j->clip_idx[i]);
    sb_printf(b, "]},\n  \"preprocessing\": {\"layout\": ");
    sb_str(b, j->pre.layout);
    sb_printf(b, ", \"normalize\": %s, \"mean\": ", j->pre.normalize ? "true" : "false");
    json_floats(b, j->pre.mean, 3);
    sb_printf(b, ", \"std\": ");
    json_floats(b, j->pre.std, 3);
    sb_printf(b,
              ", \"bgr\": %s, \"resize\": [%d, %d], \"crop\": {\"y\": %d, \"x\": %d, \"height\": "
              "%d, \"width\": %d}},\n",
              j->pre.bgr ? "true" : "false", j->g.resized_h, j->g.resized_w, j->g.crop_y,
              j->g.crop_x, j->g.out_h, j->g.out_w);
    sb_printf(b, "  \"model\": {\"path\": ");
    sb_str(b, o->model);
    sb_printf(b, ", \"name\": ");
    sb_str(b, j->res->meta.name);
    sb_printf(b, ", \"output\": ");
    sb_str(b, j->res->output_name);
    sb_printf(b, ", \"classes\": [");
    for (int c = 0; c < j->res->n_classes; c++) {
        sb_printf(b, "%s", c ? ", " : "");
        sb_str(b, j->res->class_names[c]);
    }
    sb_printf(b, "]},\n  \"predictions\": [");
    for (int64_t k = 0; k < j->nclips; k++) {
        const window_pred *p = &j->preds[k];
        const char *tn = cli_class_name(j->res, p->top), *gn = cli_class_name(j->res, p->target);
        sb_printf(b,
                  "%s\n    {\"first_frame\": %lld, \"last_frame\": %lld, \"top\": %lld, "
                  "\"top_name\": ",
                  k ? "," : "", (long long)p->first, (long long)p->last, (long long)p->top);
        sb_str(b, tn);
        if (isfinite(p->top_prob)) sb_printf(b, ", \"top_prob\": %.6g", (double)p->top_prob);
        sb_printf(b, ", \"target\": %lld, \"target_name\": ", (long long)p->target);
        sb_str(b, gn);
        if (isfinite(p->target_score))
            sb_printf(b, ", \"target_logit\": %.6g", (double)p->target_score);
        sb_printf(b, "}");
    }
    sb_printf(b, "\n  ],\n  \"methods\": [");
    for (int r = 0; r < j->nruns; r++) {
        const method_run *mr = &j->runs[r];
        sb_printf(b, "%s\n    {\"method\": ", r ? "," : "");
        sb_str(b, mr->name);
        sb_printf(b, ", \"dir\": ");
        sb_str(b, mr->dir[0] ? mr->dir : ".");
        sb_printf(b, ", \"layer\": ");
        sb_str(b, mr->layer);
        sb_printf(b, ", \"layer_choice\": ");
        sb_str(b, mr->how);
        sb_printf(b,
                  ", \"grid\": [%lld, %lld, %lld, %lld], \"score\": \"%s\", \"upsample\": \"%s\", "
                  "\"batch\": %d, \"seed\": %llu, \"samples\": %d, \"noise\": %.6g, "
                  "\"explain_ms\": %.1f, \"video_codec\": ",
                  (long long)mr->grid[0], (long long)mr->grid[1], (long long)mr->grid[2],
                  (long long)mr->grid[3], eo->score == STX_SCORE_PROB ? "prob" : "logit",
                  eo->upsample == STX_UPSAMPLE_NEAREST ? "nearest" : "trilinear", eo->batch,
                  (unsigned long long)eo->seed, eo->samples, (double)eo->noise, mr->ms);
        sb_str(b, mr->codec);
        sb_printf(b, "}");
    }
    sb_printf(b, "\n  ],\n  \"render\": {\"colormap\": ");
    sb_str(b, stx_colormap_name(o->ro.colormap));
    sb_printf(b,
              ", \"alpha\": %.6g, \"normalization\": \"%s\", \"signed\": %s, "
              "\"outside_crop_brightness\": %.6g},\n",
              (double)o->ro.alpha, o->ro.per_frame ? "per-frame" : "clip",
              o->ro.signed_map ? "true" : "false", (double)o->ro.dim);
    sb_printf(b,
              "  \"timings_ms\": {\"decode\": %.1f, \"preprocess\": %.1f, \"total\": %.1f},\n"
              "  \"threads\": %d\n}\n",
              j->t_decode, j->t_pre, total_ms, stx_context_num_threads(j->ctx));
}

/* "K name" (HTML) for class k. */
static void sb_class(sbuf *b, const job *j, int64_t k) {
    const char *name = cli_class_name(j->res, k);
    sb_printf(b, "%lld", (long long)k);
    if (name) {
        sb_printf(b, " ");
        sb_html(b, name);
    }
}

/* report.html: one offline page; the videos and images are the files beside it. */
static void write_report(job *j, sbuf *b) {
    const video_job_opts *o = j->o;
    sb_printf(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>stx: ");
    sb_html(b, o->input);
    sb_printf(b, "</title>\n<style>\nbody{font-family:sans-serif;margin:1.5em;color:#222}\n"
                 "video,img{max-width:100%%;border:1px solid #ccc}\n"
                 "video{width:400px;height:auto}\n"
                 ".legend span{display:inline-block;margin-right:1em}\n"
                 ".legend i{display:inline-block;width:12px;height:12px;margin-right:4px}\n"
                 ".pair{display:flex;gap:1em;flex-wrap:wrap}.pair figure{margin:0}\n"
                 "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;"
                 "text-align:left}\nsection{margin-bottom:2em}\n"
                 ".timeline{display:flex;height:18px;border:1px solid #ccc}\n"
                 ".timeline div{height:100%%}\n</style></head><body>\n<h1>stx: ");
    sb_html(b, o->input);
    sb_printf(b, "</h1>\n<p>Model <code>");
    sb_html(b, o->model);
    sb_printf(b, "</code>; %dx%d video, %lld frames", j->info.width, j->info.height,
              (long long)j->info.num_frames);
    if (j->info.fps > 0) sb_printf(b, " at %.4g fps", j->info.fps);
    sb_printf(b, "; %s, %d frames per clip, stride %d.</p>\n",
              j->nclips > 1 ? "sliding windows" : (j->s.uniform ? "uniform clip" : "one clip"),
              j->s.clip_len, j->s.frame_stride);
    /* prediction */
    sb_printf(b, "<section><h2>Prediction</h2>\n");
    if (j->nclips == 1) {
        const window_pred *p = &j->preds[0];
        sb_printf(b, "<p id=\"prediction\">top class <b>");
        sb_class(b, j, p->top);
        sb_printf(b, "</b>");
        if (isfinite(p->top_prob)) sb_printf(b, " (probability %.3f)", (double)p->top_prob);
        sb_printf(b, "; explained class ");
        sb_class(b, j, p->target);
        sb_printf(b, "</p>\n");
        const stx_tensor *y = j->runs[0].e ? stx_explainer_output(j->runs[0].e) : NULL;
        if (y && stx_tensor_rank(y) == 2) {
            int64_t K = stx_tensor_shape(y)[1];
            const float *yp = stx_tensor_data_const(y);
            double mx = yp[0], z = 0;
            for (int64_t k = 1; k < K; k++) mx = yp[k] > mx ? yp[k] : mx;
            for (int64_t k = 0; k < K; k++) z += exp((double)yp[k] - mx);
            sb_printf(b, "<table><tr><th>class</th><th>logit</th><th>probability</th></tr>\n");
            bool used[64] = {false};
            for (int r = 0; r < 5 && r < K && r < 64; r++) {
                int64_t best = -1;
                for (int64_t k = 0; k < K && k < 64; k++)
                    if (!used[k] && (best < 0 || yp[k] > yp[best])) best = k;
                if (best < 0) break;
                used[best] = true;
                sb_printf(b, "<tr><td>");
                sb_class(b, j, best);
                sb_printf(b, "</td><td>%.4f</td><td>%.4f</td></tr>\n", (double)yp[best],
                          exp((double)yp[best] - mx) / z);
            }
            sb_printf(b, "</table>\n");
        }
    } else {
        sb_printf(b, "<div class=\"timeline\" id=\"timeline\">\n");
        for (int64_t k = 0; k < j->nclips; k++) {
            const window_pred *p = &j->preds[k];
            int hue = (int)((p->top * 137) % 360);
            sb_printf(
                b, "<div style=\"flex:1;background:hsl(%d,70%%,55%%)\" title=\"frames %lld-%lld: ",
                hue, (long long)p->first, (long long)p->last);
            sb_class(b, j, p->top);
            sb_printf(b, "\"></div>\n");
        }
        sb_printf(b, "</div>\n<p class=\"legend\">");
        /* one legend entry per class that some window predicts, in order of appearance */
        const stx_tensor *y0 = stx_explainer_output(j->runs[0].e);
        int64_t K = stx_tensor_rank(y0) >= 2 ? stx_tensor_shape(y0)[1] : 0;
        bool *seen = calloc((size_t)K + 1, 1);
        for (int64_t k = 0; k < j->nclips && seen; k++) {
            int64_t c = j->preds[k].top;
            if (c < 0 || c >= K || seen[c]) continue;
            seen[c] = true;
            sb_printf(b, "<span><i style=\"background:hsl(%d,70%%,55%%)\"></i>",
                      (int)((c * 137) % 360));
            sb_class(b, j, c);
            sb_printf(b, "</span>");
        }
        free(seen);
        sb_printf(b,
                  "</p>\n<details><summary>the %lld windows</summary>\n<table><tr><th>window "
                  "frames</th><th>top class</th><th>p</th></tr>\n",
                  (long long)j->nclips);
        for (int64_t k = 0; k < j->nclips; k++) {
            const window_pred *p = &j->preds[k];
            sb_printf(b, "<tr><td>%lld-%lld</td><td>", (long long)p->first, (long long)p->last);
            sb_class(b, j, p->top);
            sb_printf(b, "</td><td>%.3f</td></tr>\n", (double)p->top_prob);
        }
        sb_printf(b, "</table></details>\n");
    }
    sb_printf(b, "</section>\n");
    for (int r = 0; r < j->nruns; r++) {
        const method_run *mr = &j->runs[r];
        const char *d = mr->dir[0] ? mr->dir : ".";
        sb_printf(b, "<section><h2>");
        sb_html(b, mr->name);
        sb_printf(b, "</h2>\n<p>layer <code>");
        sb_html(b, mr->layer);
        sb_printf(b,
                  "</code> (%s), %.1f ms. Colour map %s, alpha %.2f, normalised over the %s.</p>\n",
                  mr->how, mr->ms, stx_colormap_name(o->ro.colormap), (double)o->ro.alpha,
                  o->ro.per_frame ? "frame" : "clip");
        sb_printf(b,
                  "<div class=\"pair\"><figure><video src=\"original.mp4\" autoplay loop muted "
                  "playsinline controls></video><figcaption>original</figcaption></figure>\n"
                  "<figure><video src=\"%s/overlay.mp4\" autoplay loop muted playsinline "
                  "controls></video><figcaption>overlay</figcaption></figure></div>\n",
                  d);
        sb_printf(b,
                  "<p><img src=\"%s/frames.png\" alt=\"frame grid\"></p>\n"
                  "<p><img src=\"%s/temporal.png\" alt=\"importance per frame\"></p>\n"
                  "<p>Files: <a href=\"%s/saliency.npy\">saliency.npy</a> (raw map), "
                  "<a href=\"%s/overlay.gif\">overlay.gif</a>.</p>\n</section>\n",
                  d, d, d, d);
    }
    sb_printf(b, "<p><a href=\"manifest.json\">manifest.json</a>: input, sampling, "
                 "preprocessing, model, prediction, methods and their parameters, timings.</p>\n");
    /* load status of every medium, for people and for the tests (headless Chromium) */
    sb_printf(
        b,
        "<p id=\"status\">loading</p>\n<script>\n"
        "(function(){var m=[].slice.call(document.querySelectorAll('video,img'));"
        "var left=m.length,bad=[];function done(e,ok){if(!ok)bad.push(e.getAttribute('src'));"
        "if(--left===0){var s=document.getElementById('status');"
        "s.textContent=bad.length?'failed: '+bad.join(' '):'all '+m.length+' media loaded';"
        "s.setAttribute('data-ok',bad.length?'0':'1');}}\n"
        "m.forEach(function(e){var seen=false;function f(ok){if(!seen){seen=true;done(e,ok);}}\n"
        "if(e.tagName==='IMG'){if(e.complete&&e.naturalWidth>0)f(true);else if(e.complete)f(false);"
        "else{e.addEventListener('load',function(){f(true)});e.addEventListener('error',function(){"
        "f(false)});}}\n"
        "else{if(e.readyState>=2)f(true);e.addEventListener('loadeddata',function(){f(true)});"
        "e.addEventListener('error',function(){f(false)});}});})();\n</script>\n"
        "</body></html>\n");
}

int explain_video(const video_job_opts *o, stx_context *ctx, stx_model *m, const cli_resolved *res,
                  const char *target_s) {
    job J;
    memset(&J, 0, sizeof J);
    job *j = &J;
    j->ctx = ctx;
    j->m = m;
    j->res = res;
    j->o = o;
    int rc = 0;
    double t0 = cli_now_ms();
    /* methods */
    char *mlist = strdup(o->methods);
    if (!mlist) return cli_fail("out of memory");
    for (char *save = NULL, *tok = strtok_r(mlist, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (j->nruns == MAX_METHODS) {
            free(mlist);
            return cli_fail("--method: at most %d methods", MAX_METHODS);
        }
        j->runs[j->nruns++].name = tok;
    }
    if (j->nruns == 0) {
        free(mlist);
        return cli_fail("--method needs a name");
    }
    for (int r = 0; r < j->nruns; r++) {
        bool known = false;
        for (const char *const *n = stx_explain_methods(); *n; n++)
            known |= !strcmp(*n, j->runs[r].name);
        if (!known) {
            rc = cli_fail("--method: unknown method '%s' (try 'stx explain --help')",
                          j->runs[r].name);
            free(mlist);
            return rc;
        }
        for (int q = 0; q < r; q++)
            if (!strcmp(j->runs[q].name, j->runs[r].name)) {
                free(mlist);
                return cli_fail("--method: '%s' is given twice", j->runs[r].name);
            }
        if (j->nruns > 1) snprintf(j->runs[r].dir, sizeof j->runs[r].dir, "%s", j->runs[r].name);
    }
    /* the target: one class for every clip */
    int64_t target = -1;
    if ((rc = cli_parse_targets(target_s, res, &target, 1))) goto done;
    /* the video */
    if (stx_video_open(ctx, o->input, &j->v) != STX_OK) {
        rc = cli_fail("%s", stx_context_last_error(ctx));
        goto done;
    }
    stx_video_get_info(j->v, &j->info);
    /* sampling */
    j->s = o->sampling;
    if (j->s.clip_len <= 0) j->s.clip_len = res->meta.clip_length > 0 ? res->meta.clip_length : 16;
    stx_status st = stx_sampling_count(&j->s, j->info.num_frames, &j->nclips);
    if (st != STX_OK) {
        rc = cli_fail("%s: %lld frames: too short for %d frames %d apart from frame %lld", o->input,
                      (long long)j->info.num_frames, j->s.clip_len, j->s.frame_stride,
                      (long long)j->s.start);
        goto done;
    }
    /* preprocessing and geometry */
    j->pre = o->pre;
    if (stx_preprocess_geometry(&j->pre, j->info.height, j->info.width, &j->g) != STX_OK) {
        rc = cli_fail("%s: a %dx%d crop does not fit its %dx%d frames once resized", o->input,
                      j->pre.crop_height, j->pre.crop_width, j->info.height, j->info.width);
        goto done;
    }
    j->h = j->g.out_h;
    j->w = j->g.out_w;
    if (j->nclips == 1) {
        j->F0 = 0;
        j->F = j->s.clip_len;
    } else {
        j->F0 = j->s.start;
        j->F = j->info.num_frames - j->s.start;
    }
    printf("input: %s (%s %s, %dx%d, %lld frames, %.4g fps); %lld clip%s of %d frames\n", o->input,
           j->info.kind, j->info.codec ? j->info.codec : "", j->info.width, j->info.height,
           (long long)j->info.num_frames, j->info.fps, (long long)j->nclips,
           j->nclips == 1 ? "" : "s", j->s.clip_len);
    fflush(stdout);
    if ((rc = run_clips(j, target, o->frame))) goto done;
    /* staging folder */
    {
        size_t n = strlen(o->out_dir) + 32;
        j->stage = malloc(n);
        if (!j->stage) {
            rc = cli_fail("out of memory");
            goto done;
        }
        snprintf(j->stage, n, "%s.partial-%ld", o->out_dir, (long)getpid());
        remove_tree(j->stage);
        if (mkdir(j->stage, 0777) != 0) {
            rc = cli_fail("%s: cannot create the output folder: %s", o->out_dir, strerror(errno));
            free(j->stage);
            j->stage = NULL;
            goto done;
        }
    }
    for (int r = 0; r < j->nruns && !rc; r++) {
        method_run *mr = &j->runs[r];
        char *dir = mr->dir[0] ? path_join(j->stage, mr->dir) : strdup(j->stage);
        if (!dir || (mr->dir[0] && mkdir(dir, 0777) != 0))
            rc = cli_fail("%s: cannot create a folder", o->out_dir);
        else
            rc = render_method(j, mr, dir, r == 0);
        free(dir);
    }
    if (rc) goto done;
    {
        sbuf b = {0}, h = {0};
        write_manifest(j, &b, cli_now_ms() - t0);
        write_report(j, &h);
        char *pm = path_join(j->stage, "manifest.json"), *ph = path_join(j->stage, "report.html");
        if (b.oom || h.oom || !pm || !ph)
            rc = cli_fail("out of memory");
        else if (!(rc = write_file(pm, b.s, b.n)))
            rc = write_file(ph, h.s, h.n);
        free(b.s);
        free(h.s);
        free(pm);
        free(ph);
    }
    if (rc) goto done;
    /* replace DIR */
    if (is_dir(o->out_dir)) {
        char *man = path_join(o->out_dir, "manifest.json");
        bool ours = man && access(man, F_OK) == 0;
        DIR *d = opendir(o->out_dir);
        int entries = 0;
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) entries++;
        if (d) closedir(d);
        free(man);
        if (!ours && entries > 0) {
            rc = cli_fail("%s: the folder exists and is not an stx report (no manifest.json); "
                          "not replacing it",
                          o->out_dir);
            goto done;
        }
        remove_tree(o->out_dir);
    }
    if (rename(j->stage, o->out_dir) != 0) {
        rc = cli_fail("%s: cannot move the report into place: %s", o->out_dir, strerror(errno));
        goto done;
    }
    free(j->stage);
    j->stage = NULL;
    {
        const window_pred *p = &j->preds[0];
        const char *tn = cli_class_name(res, p->top);
        if (j->nclips == 1)
            printf("prediction: class %lld%s%s (p=%.3f%s)\n", (long long)p->top, tn ? " " : "",
                   tn ? tn : "", (double)p->top_prob,
                   stx_tensor_rank(stx_explainer_output(j->runs[0].e)) == 3
                       ? " of the mean per-frame logits"
                       : "");
        for (int r = 0; r < j->nruns; r++)
            printf("%s: %.1f ms for %lld clip%s\n", j->runs[r].name, j->runs[r].ms,
                   (long long)j->nclips, j->nclips == 1 ? "" : "s");
        printf("time_ms: %.1f\nreport: %s/report.html\n", cli_now_ms() - t0, o->out_dir);
    }
done:
    if (j->stage) {
        remove_tree(j->stage);
        free(j->stage);
    }
    for (int r = 0; r < j->nruns; r++) {
        stx_explainer_free(j->runs[r].e);
        stx_tensor_free(j->runs[r].vol);
    }
    free(j->preds);
    free(j->clip_idx);
    stx_tensor_free(j->clip_frames);
    stx_video_close(j->v);
    free(mlist);
    return rc;
}
