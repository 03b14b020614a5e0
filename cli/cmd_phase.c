/* cmd_phase.c: `stx phase`: a whole surgical procedure, frame by frame and phase by phase
 * (docs/phase.md).
 *
 *   1. decode the video at the sampling rate (chunks of frames, preprocessed as the frame model's
 *      metadata says; the frames are kept at the model's resolution);
 *   2. frame features with the frame model in batches, cached on disk under a key hashed from the
 *      frame model's file and the preprocessed frames (a second run on the same video reuses them);
 *   3. the temporal model on the whole feature sequence; it must be causal (checked: its output on
 *      the first half equals the whole run's there), so every frame's prediction uses only the
 * past;
 *   4. moments: every predicted segment (its middle frame), every transition (the first frame of a
 *      new segment) and the frames of --at. Each is explained on the prefix of frames 0..t only
 *      (causal by construction): gradient x feature, Integrated Gradients over the feature sequence
 *      and occlusion of time windows, each summed per frame; the frames with the largest
 *      attribution get a pixel map through the frame model (pixels x gradient of the same score,
 *      seeded at their features: the first-order share of each pixel, so the maps carry their
 *      frame's temporal weight). A transition explains the change of the new phase's logit from
 *      the frame before (linear in the score, so each method explains the difference);
 *   5. with --labels, the Cholec80 scores (accuracy, per-phase precision, recall, Jaccard; relaxed
 *      boundaries with --relaxed);
 *   6. predictions.csv/json, moments.json, scores.json, the explanation .npy files and the report
 *      (phase_write_report, cli/phase_report.c).
 * A single model on frames (a CNN-LSTM, input N,T,C,H,W, output N,K,T) works too: its "features"
 * are then the frames themselves and the maps come from the same gradient.
 */
#include "cli.h"
#include "phase.h"
#include "report_util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { CURVE_GXF = 0, CURVE_IG = 1, CURVE_OCC = 2, N_CURVES = 3 };
static const char *const curve_names[N_CURVES] = {"gradxfeature", "ig", "occlusion"};

typedef struct phase_opts {
    const char *fm_path, *tm_path, *video, *out_dir, *labels, *at, *cache_dir;
    double fps, labels_fps, relaxed;
    int has_fps, no_cache, threads, top_frames, ig_steps, occ_windows, rank, batch;
    int tthreads; /* --temporal-threads; -1: 1 with a frame model, else --threads */
    int kinds;    /* moments explained: bit 0 segments, 1 transitions, 2 --at */
} phase_opts;

/* One explained moment, owned here; phase_moment points into it. */
typedef struct moment {
    int64_t frame, prev; /* prev: the frame before a transition (its logit is subtracted), or -1 */
    int phase;
    const char *why;
    float *curves; /* N_CURVES * (frame + 1) */
    double score;  /* the explained score (logit, or its change for a transition) */
    int nk;
    int64_t *kf;
    float *kw, *maps; /* nk weights, nk * h * w maps */
    phase_keyframe *kfs;
    char note[512];
} moment;

typedef struct phase_run {
    const phase_opts *o;
    stx_context *ctx;
    stx_model *fm, *tm; /* fm NULL: one model on frames */
    cli_resolved fres, tres;
    const char *feat_name; /* the frame model's feature output */
    int fo, to;            /* its index; the tools output's (-1: none) */
    int nt;                /* tool names */
    char **tool_names;
    double src_fps, fps;
    int64_t T;
    int h, w, F, K;
    float *x;     /* T * 3 * h * w preprocessed frames */
    uint8_t *rgb; /* T * h * w * 3 frames at the model's resolution */
    float *feat;  /* T * F (frame-major) features; NULL for one model */
    float *tools; /* T * nt tool probabilities, or NULL */
    float *prob;  /* T * K */
    int *pred, *truth;
    int tthreads;       /* threads of the temporal model's sessions */
    stx_session *fgrad; /* frame model, batch top_frames, reverse mode to the pixels */
    int nm;
    moment *m;
} phase_run;

static void *xcalloc(size_t n, size_t s) {
    return calloc(n ? n : 1, s ? s : 1);
}

/* ---- small parsers ------------------------------------------------------------------------ */

static bool parse_double(const char *s, double lo, double hi, double *out) {
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (e == s || *e || errno || !isfinite(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* "H:MM:SS(.s)", "M:SS(.s)" or "S(.s)" in seconds. */
static bool parse_time(const char *s, double *sec) {
    double parts[3];
    int n = 0;
    const char *p = s;
    for (;;) {
        char *e;
        if (!isdigit((unsigned char)*p)) return false;
        errno = 0;
        double v = strtod(p, &e);
        if (errno || !isfinite(v) || n == 3) return false;
        parts[n++] = v;
        if (*e == '\0') break;
        if (*e != ':') return false;
        for (const char *q = p; q < e; q++)
            if (*q == '.') return false; /* only the seconds may have a fraction */
        p = e + 1;
    }
    double t = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && parts[i] >= 60) return false;
        t = t * 60 + parts[i];
    }
    *sec = t;
    return true;
}

/* Names compared as lower-case letters and digits only ("ClippingCutting" = "clipping_cutting"). */
static bool same_name(const char *a, const char *b) {
    for (;;) {
        while (*a && !isalnum((unsigned char)*a)) a++;
        while (*b && !isalnum((unsigned char)*b)) b++;
        if (!*a || !*b) return !*a && !*b;
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return false;
        a++, b++;
    }
}

/* ---- files ---------------------------------------------------------------------------------- */

static uint64_t fnv(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

static int hash_file(const char *path, uint64_t *h) {
    FILE *f = fopen(path, "rb");
    if (!f) return cli_fail("%s: cannot open: %s", path, strerror(errno));
    unsigned char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) *h = fnv(*h, buf, n);
    int rc = ferror(f) ? cli_fail("%s: cannot read", path) : 0;
    fclose(f);
    return rc;
}

/* mkdir -p; 0 or -1 with errno. */
static int make_dirs(const char *path) {
    char *p = strdup(path);
    if (!p) return -1;
    for (char *q = p + 1;; q++) {
        if (*q == '/' || *q == '\0') {
            char c = *q;
            *q = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                free(p);
                return -1;
            }
            *q = c;
            if (!c) break;
        }
    }
    free(p);
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : (errno = ENOTDIR, -1);
}

/* Saves a float32 / int64 array as .npy (atomic). */
static int save_npy(phase_run *p, const char *name, stx_dtype dt, const void *data,
                    const int64_t *shape, int rank) {
    stx_tensor *t = NULL;
    char *path = path_join(p->o->out_dir, name);
    int rc = 0;
    if (!path || stx_tensor_create(p->ctx, dt, shape, rank, &t) != STX_OK)
        rc = cli_fail("out of memory");
    else {
        memcpy(stx_tensor_data(t), data, stx_dtype_size(dt) * (size_t)stx_tensor_numel(t));
        if (stx_tensor_save_npy(p->ctx, t, path) != STX_OK)
            rc = cli_fail("%s", stx_context_last_error(p->ctx));
    }
    stx_tensor_free(t);
    free(path);
    return rc;
}

/* ---- models --------------------------------------------------------------------------------- */

static int split_names(const char *s, char ***out, int *n) {
    *out = NULL;
    *n = 0;
    if (!s || !*s) return 0;
    int k = 1;
    for (const char *q = s; *q; q++) k += *q == ',';
    char **v = xcalloc((size_t)k, sizeof *v);
    if (!v) return cli_fail("out of memory");
    const char *q = s;
    for (int i = 0; i < k; i++) {
        const char *e = strchr(q, ',');
        size_t len = e ? (size_t)(e - q) : strlen(q);
        if (!(v[i] = malloc(len + 1))) return cli_fail("out of memory");
        memcpy(v[i], q, len);
        v[i][len] = '\0';
        q = e ? e + 1 : q + len;
    }
    *out = v;
    *n = k;
    return 0;
}

/* Loads the models and works out F, K, the frame size and the outputs used. */
static int setup_models(phase_run *p) {
    const phase_opts *o = p->o;
    cli_facts none = {0};
    int rc;
    if ((rc = cli_load_model(p->ctx, o->tm_path, &p->tm))) return rc;
    if (o->fm_path && (rc = cli_load_model(p->ctx, o->fm_path, &p->fm))) return rc;
    if ((rc = cli_resolve_facts(p->tm, &none, true, &p->tres))) return rc;
    stx_dtype dt;
    int64_t d[STX_MAX_RANK];
    int r;
    if (stx_model_input_info(p->tm, 0, &dt, d, &r) != STX_OK || dt != STX_DTYPE_FLOAT)
        return cli_fail("%s: the temporal model must take one float32 input", o->tm_path);
    if (p->fm) {
        if (r != 3 || d[1] <= 0)
            return cli_fail("%s: the temporal model must take a feature sequence (N, F, T) with a "
                            "known F (layout NCT), got rank %d",
                            o->tm_path, r);
        p->F = (int)d[1];
        if ((rc = cli_resolve_facts(p->fm, &none, true, &p->fres))) return rc;
        p->fres.pre.layout = "NCHW";
        const char *fmeta = stx_model_metadata(p->tm, "stx.feature_model");
        const char *colon = fmeta ? strchr(fmeta, ':') : NULL;
        p->feat_name = colon && colon[1] ? colon + 1 : NULL;
        int no = stx_model_num_outputs(p->fm);
        p->fo = p->to = -1;
        for (int i = 0; i < no; i++) {
            const char *nm = stx_model_output_name(p->fm, i);
            if (p->feat_name ? strcmp(nm, p->feat_name) == 0 : strcmp(nm, "features") == 0)
                p->fo = i;
            if (strcmp(nm, "tools") == 0) p->to = i;
        }
        for (int i = 0; i < no && p->fo < 0 && !p->feat_name; i++)
            if (stx_model_output_info(p->fm, i, &dt, d, &r) == STX_OK && r == 2 && d[1] == p->F)
                p->fo = i;
        if (p->fo < 0)
            return cli_fail("%s: no output '%s' giving the %d features per frame that %s reads",
                            o->fm_path, p->feat_name ? p->feat_name : "features", p->F, o->tm_path);
        p->feat_name = stx_model_output_name(p->fm, p->fo);
        if (stx_model_output_info(p->fm, p->fo, &dt, d, &r) != STX_OK || r != 2 ||
            (d[1] > 0 && d[1] != p->F))
            return cli_fail("%s: output '%s' is not (N, %d) features for %s", o->fm_path,
                            p->feat_name, p->F, o->tm_path);
        if (p->to >= 0) {
            if ((rc = split_names(stx_model_metadata(p->fm, "stx.tools"), &p->tool_names, &p->nt)))
                return rc;
            if (stx_model_output_info(p->fm, p->to, &dt, d, &r) != STX_OK || r != 2 ||
                d[1] != p->nt || p->nt == 0)
                p->to = -1; /* tools output without matching names: not used */
        }
        p->h = p->fres.pre.height;
        p->w = p->fres.pre.width;
        if (stx_model_input_info(p->fm, 0, &dt, d, &r) == STX_OK && r == 4 && d[2] > 0 &&
            d[3] > 0 && (!p->h || !p->w)) {
            p->h = (int)d[2];
            p->w = (int)d[3];
        }
        if (r != 4 || d[1] != 3)
            return cli_fail("%s: the frame model must take RGB frames (N, 3, H, W)", o->fm_path);
    } else {
        const char *kind = stx_model_metadata(p->tm, "stx.input_kind");
        if (r == 3 || (kind && strcmp(kind, "features") == 0))
            return cli_fail("%s reads frame features: give its frame model first (stx phase "
                            "FRAME_MODEL TEMPORAL_MODEL VIDEO%s%s)",
                            o->tm_path,
                            stx_model_metadata(p->tm, "stx.feature_model") ? "; stx.feature_model: "
                                                                           : "",
                            stx_model_metadata(p->tm, "stx.feature_model")
                                ? stx_model_metadata(p->tm, "stx.feature_model")
                                : "");
        if (r != 5 || d[2] != 3 || (p->tres.pre.layout && strcmp(p->tres.pre.layout, "NTCHW") != 0))
            return cli_fail("%s: one model on frames must take (N, T, 3, H, W) (layout NTCHW)",
                            o->tm_path);
        p->fres = p->tres;
        p->fres.pre.layout = "NCHW";
        p->h = p->tres.pre.height ? p->tres.pre.height : (int)d[3];
        p->w = p->tres.pre.width ? p->tres.pre.width : (int)d[4];
        if (p->h <= 0 || p->w <= 0)
            return cli_fail("%s: unknown frame size (no stx.frame_size, dynamic input)",
                            o->tm_path);
        p->fres.pre.height = p->h;
        p->fres.pre.width = p->w;
        p->F = 3 * p->h * p->w;
    }
    if (p->fm && (!p->h || !p->w))
        return cli_fail("%s: unknown frame size (no stx.frame_size, dynamic input)", o->fm_path);
    p->fres.pre.height = p->h;
    p->fres.pre.width = p->w;
    if (stx_model_output_info(p->tm, 0, &dt, d, &r) != STX_OK || r != 3)
        return cli_fail("%s: the temporal model must give per-frame scores (N, K, T)", o->tm_path);
    p->K = p->tres.n_classes;
    if (d[1] > 0) {
        if (p->K && p->K != d[1])
            return cli_fail("%s: stx.classes names %d phases but the output has %lld", o->tm_path,
                            p->K, (long long)d[1]);
        p->K = (int)d[1];
    }
    if (p->K <= 0) return cli_fail("%s: unknown number of phases (give stx.classes)", o->tm_path);
    return 0;
}

/* ---- decoding ------------------------------------------------------------------------------- */

static int decode(phase_run *p) {
    const phase_opts *o = p->o;
    stx_video *v = NULL;
    stx_video_info vi;
    stx_tensor *fr = NULL, *in = NULL;
    int64_t *idx = NULL;
    int rc = 0;
    if (stx_video_open(p->ctx, o->video, &v) != STX_OK || stx_video_get_info(v, &vi) != STX_OK) {
        rc = cli_fail("%s", stx_context_last_error(p->ctx));
        goto done;
    }
    p->src_fps = vi.fps;
    p->fps = o->has_fps ? o->fps : 1.0;
    int64_t n = vi.num_frames;
    if (vi.fps > 0) {
        if (p->fps > vi.fps * (1 + 1e-9)) {
            rc = cli_fail("--fps %g: above the video's own rate (%g frames per second)", p->fps,
                          vi.fps);
            goto done;
        }
        n = (int64_t)floor((double)(vi.num_frames - 1) * p->fps / vi.fps + 1e-9) + 1;
    }
    if (vi.num_frames <= 0 || n <= 0) {
        rc = cli_fail("%s: no frames", o->video);
        goto done;
    }
    p->T = n;
    const size_t hw = (size_t)p->h * p->w;
    p->x = malloc(sizeof(float) * 3 * hw * (size_t)n);
    p->rgb = malloc(3 * hw * (size_t)n);
    idx = malloc(sizeof *idx * 64);
    if (!p->x || !p->rgb || !idx) {
        rc = cli_fail("%s: out of memory for %lld frames of %dx%d", o->video, (long long)n, p->h,
                      p->w);
        goto done;
    }
    const stx_preprocess *pre = &p->fres.pre;
    for (int64_t s = 0; s < n; s += 64) {
        int c = (int)(n - s < 64 ? n - s : 64);
        for (int j = 0; j < c; j++)
            idx[j] = vi.fps > 0 ? (int64_t)floor((double)(s + j) * vi.fps / p->fps + 1e-9) : s + j;
        stx_tensor_free(fr);
        stx_tensor_free(in);
        fr = in = NULL;
        if (stx_video_read(v, idx, c, &fr) != STX_OK ||
            stx_frames_to_input(p->ctx, fr, pre, &in) != STX_OK) {
            rc = cli_fail("%s", stx_context_last_error(p->ctx));
            goto done;
        }
        const float *xi = stx_tensor_data(in);
        memcpy(p->x + (size_t)s * 3 * hw, xi, sizeof(float) * 3 * hw * (size_t)c);
        /* the frames as the model sees them, back in uint8 */
        for (int j = 0; j < c; j++)
            for (int ch = 0; ch < 3; ch++)
                for (size_t u = 0; u < hw; u++) {
                    float val = xi[((size_t)j * 3 + (size_t)ch) * hw + u];
                    if (pre->normalize) val = val * pre->std[ch] + pre->mean[ch];
                    float b = floorf(val * 255.0f + 0.5f);
                    p->rgb[((size_t)(s + j) * hw + u) * 3 + (size_t)ch] = (uint8_t)(b < 0     ? 0
                                                                                    : b > 255 ? 255
                                                                                              : b);
                }
    }
done:
    free(idx);
    stx_tensor_free(fr);
    stx_tensor_free(in);
    stx_video_close(v);
    return rc;
}

/* ---- features (cached) ---------------------------------------------------------------------- */

static void cache_paths(phase_run *p, uint64_t key, char **fpath, char **tpath) {
    char name[64];
    snprintf(name, sizeof name, "%016llx-features.npy", (unsigned long long)key);
    *fpath = path_join(p->o->cache_dir, name);
    snprintf(name, sizeof name, "%016llx-tools.npy", (unsigned long long)key);
    *tpath = path_join(p->o->cache_dir, name);
}

/* Loads a cached (T, cols) float32 array; false when absent or not that shape. */
static bool cache_load(phase_run *p, const char *path, int cols, float *dst) {
    stx_tensor *t = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    fclose(f);
    if (stx_tensor_load_npy(p->ctx, path, &t) != STX_OK) return false;
    const int64_t *d = stx_tensor_shape(t);
    bool ok = stx_tensor_dtype(t) == STX_DTYPE_FLOAT && stx_tensor_rank(t) == 2 && d[0] == p->T &&
              d[1] == cols;
    if (ok) memcpy(dst, stx_tensor_data(t), sizeof(float) * (size_t)(p->T * cols));
    stx_tensor_free(t);
    return ok;
}

static int features(phase_run *p, bool *hit) {
    const phase_opts *o = p->o;
    const int64_t T = p->T, hw = (int64_t)p->h * p->w;
    *hit = false;
    p->feat = malloc(sizeof(float) * (size_t)(T * p->F));
    if (p->to >= 0) p->tools = malloc(sizeof(float) * (size_t)(T * p->nt));
    if (!p->feat || (p->to >= 0 && !p->tools)) return cli_fail("out of memory");
    char *fpath = NULL, *tpath = NULL;
    int rc = 0;
    if (!o->no_cache) {
        uint64_t key = 0xcbf29ce484222325ULL;
        const char tag[] = "stx phase features v1";
        key = fnv(key, tag, sizeof tag);
        if ((rc = hash_file(o->fm_path, &key))) return rc;
        key = fnv(key, p->feat_name, strlen(p->feat_name) + 1);
        int64_t dims[4] = {T, 3, p->h, p->w};
        key = fnv(key, dims, sizeof dims);
        key = fnv(key, p->x, sizeof(float) * (size_t)(T * 3 * hw));
        cache_paths(p, key, &fpath, &tpath);
        if (!fpath || !tpath) {
            free(fpath);
            free(tpath);
            return cli_fail("out of memory");
        }
        *hit = cache_load(p, fpath, p->F, p->feat) &&
               (p->to < 0 || cache_load(p, tpath, p->nt, p->tools));
    }
    bool saved = false;
    if (!*hit) {
        int64_t B = o->batch < T ? o->batch : T;
        stx_session *s = NULL;
        stx_tensor *in = NULL;
        stx_session_options so = stx_session_options_default();
        so.num_threads = o->threads;
        for (int64_t b0 = 0; b0 < T && !rc; b0 += B) {
            int64_t nb = T - b0 < B ? T - b0 : B;
            int64_t shape[4] = {nb, 3, p->h, p->w};
            if (!s || stx_tensor_shape(in)[0] != nb) {
                stx_session_free(s);
                stx_tensor_free(in);
                s = NULL;
                in = NULL;
                if (stx_session_create(p->fm, &so, shape, 4, &s) != STX_OK ||
                    stx_tensor_create(p->ctx, STX_DTYPE_FLOAT, shape, 4, &in) != STX_OK) {
                    rc = cli_fail("%s: %s", o->fm_path, stx_context_last_error(p->ctx));
                    break;
                }
            }
            memcpy(stx_tensor_data(in), p->x + b0 * 3 * hw, sizeof(float) * (size_t)(nb * 3 * hw));
            if (stx_session_run(s, in, NULL) != STX_OK) {
                rc = cli_fail("%s: %s", o->fm_path, stx_session_last_error(s));
                break;
            }
            const stx_tensor *fo = stx_session_output(s, p->fo);
            if (stx_tensor_rank(fo) != 2 || stx_tensor_shape(fo)[1] != p->F) {
                rc = cli_fail("%s: output '%s' is not (N, %d)", o->fm_path, p->feat_name, p->F);
                break;
            }
            memcpy(p->feat + b0 * p->F, stx_tensor_data_const(fo),
                   sizeof(float) * (size_t)(nb * p->F));
            if (p->to >= 0) {
                const float *tl = stx_tensor_data_const(stx_session_output(s, p->to));
                for (int64_t i = 0; i < nb * p->nt; i++)
                    p->tools[b0 * p->nt + i] = 1.0f / (1.0f + expf(-tl[i]));
            }
        }
        stx_session_free(s);
        stx_tensor_free(in);
        if (!rc && fpath) {
            if (make_dirs(o->cache_dir) != 0) {
                fprintf(stderr,
                        "warning: cannot create the cache folder %s: %s (features not "
                        "cached)\n",
                        o->cache_dir, strerror(errno));
            } else {
                stx_tensor *t = NULL;
                int64_t sh[2] = {T, p->F};
                saved = true;
                for (int k = 0; k < 2 && !rc; k++) {
                    if (k == 1 && p->to < 0) break;
                    if (k == 1) sh[1] = p->nt;
                    if (stx_tensor_create(p->ctx, STX_DTYPE_FLOAT, sh, 2, &t) != STX_OK) {
                        rc = cli_fail("out of memory");
                        break;
                    }
                    memcpy(stx_tensor_data(t), k ? p->tools : p->feat,
                           sizeof(float) * (size_t)(T * sh[1]));
                    /* an entry is used only when both files load with the right shapes */
                    if (saved && stx_tensor_save_npy(p->ctx, t, k ? tpath : fpath) != STX_OK) {
                        fprintf(stderr, "warning: features not cached: %s\n",
                                stx_context_last_error(p->ctx));
                        saved = false;
                    }
                    stx_tensor_free(t);
                    t = NULL;
                }
            }
        }
    }
    if (!rc && fpath)
        printf("features: %s %s\n",
               *hit    ? "reused from"
               : saved ? "cached in"
                       : "not cached in",
               fpath);
    free(fpath);
    free(tpath);
    return rc;
}

/* ---- the temporal model --------------------------------------------------------------------- */

/* The temporal model's input for frames 0..L-1 into dst (one sample): (F, L) features or the
 * frames (L, 3, h, w) themselves. */
static void make_input(const phase_run *p, int64_t L, float *dst) {
    if (!p->fm) {
        memcpy(dst, p->x, sizeof(float) * (size_t)(L * p->F));
        return;
    }
    for (int64_t t = 0; t < L; t++)
        for (int f = 0; f < p->F; f++) dst[f * L + t] = p->feat[t * p->F + f];
}
/* Index of (feature f, frame t) in that input. */
static inline int64_t in_at(const phase_run *p, int64_t L, int64_t f, int64_t t) {
    return p->fm ? f * L + t : t * p->F + f;
}

static int temporal_shape(const phase_run *p, int64_t n, int64_t L, int64_t *shape) {
    shape[0] = n;
    if (p->fm) {
        shape[1] = p->F;
        shape[2] = L;
        return 3;
    }
    shape[1] = L;
    shape[2] = 3;
    shape[3] = p->h;
    shape[4] = p->w;
    return 5;
}

/* Forward of the temporal model on frames 0..L-1; logits (K, L) into out. */
static int temporal_forward(phase_run *p, int64_t L, float *out) {
    int64_t shape[5];
    int rank = temporal_shape(p, 1, L, shape);
    stx_session_options so = stx_session_options_default();
    so.num_threads = p->tthreads;
    stx_session *s = NULL;
    stx_tensor *in = NULL, *y = NULL;
    int rc = 0;
    if (stx_session_create(p->tm, &so, shape, rank, &s) != STX_OK ||
        stx_tensor_create(p->ctx, STX_DTYPE_FLOAT, shape, rank, &in) != STX_OK)
        rc = cli_fail("%s: %s", p->o->tm_path, stx_context_last_error(p->ctx));
    if (!rc) {
        make_input(p, L, stx_tensor_data(in));
        if (stx_session_run(s, in, &y) != STX_OK)
            rc = cli_fail("%s: %s", p->o->tm_path, stx_session_last_error(s));
        else if (stx_tensor_rank(y) != 3 || stx_tensor_shape(y)[1] != p->K ||
                 stx_tensor_shape(y)[2] != L)
            rc = cli_fail("%s: output is not (1, %d, %lld)", p->o->tm_path, p->K, (long long)L);
        else
            memcpy(out, stx_tensor_data(y), sizeof(float) * (size_t)(p->K * L));
    }
    stx_session_free(s);
    stx_tensor_free(in);
    return rc;
}

static int predict(phase_run *p) {
    const int64_t T = p->T;
    const int K = p->K;
    float *lg = malloc(sizeof(float) * (size_t)(K * T));
    p->prob = malloc(sizeof(float) * (size_t)(K * T));
    p->pred = malloc(sizeof(int) * (size_t)T);
    if (!lg || !p->prob || !p->pred) {
        free(lg);
        return cli_fail("out of memory");
    }
    int rc = temporal_forward(p, T, lg);
    /* causality: the output on the first half must be the whole run's there */
    int64_t Lh = T / 2;
    if (!rc && Lh >= 1) {
        float *lh = malloc(sizeof(float) * (size_t)(K * Lh));
        if (!lh) rc = cli_fail("out of memory");
        if (!rc) rc = temporal_forward(p, Lh, lh);
        double worst = 0, scale = 1;
        int64_t wt = 0;
        for (int k = 0; !rc && k < K; k++)
            for (int64_t t = 0; t < Lh; t++) {
                double a = lg[k * T + t], b = lh[k * Lh + t];
                if (fabs(a) > scale) scale = fabs(a);
                if (fabs(a - b) > worst) worst = fabs(a - b), wt = t;
            }
        if (!rc && worst > 1e-4 * scale)
            rc = cli_fail("%s is not causal: its output at frame %lld changes by %.3g when the "
                          "frames after %lld are removed (stx phase needs an online model)",
                          p->o->tm_path, (long long)wt, worst, (long long)(Lh - 1));
        free(lh);
    }
    for (int64_t t = 0; !rc && t < T; t++) {
        double mx = -INFINITY, sum = 0;
        int best = 0;
        for (int k = 0; k < K; k++)
            if (lg[k * T + t] > mx) mx = lg[k * T + t], best = k;
        for (int k = 0; k < K; k++) sum += exp(lg[k * T + t] - mx);
        for (int k = 0; k < K; k++) p->prob[t * K + k] = (float)(exp(lg[k * T + t] - mx) / sum);
        p->pred[t] = best;
    }
    free(lg);
    return rc;
}

/* ---- explanations --------------------------------------------------------------------------- */

/* The score explained: logit (cls, t), minus logit (cls, prev) when prev >= 0. */
static double score_of(const float *y, int64_t L, int cls, int64_t t, int64_t prev) {
    double s = y[cls * L + t];
    if (prev >= 0) s -= y[cls * L + prev];
    return s;
}

static int explain_moment(phase_run *p, moment *m) {
    const phase_opts *o = p->o;
    const int64_t L = m->frame + 1, F = p->F, hw = (int64_t)p->h * p->w;
    const int cls = m->phase;
    int64_t shape[5];
    int rank = temporal_shape(p, 1, L, shape);
    stx_session *s = NULL, *so_s = NULL;
    stx_explainer *ex = NULL;
    stx_tensor *in = NULL, *wts = NULL, *ob = NULL, *fin = NULL, *fw = NULL;
    float *g = NULL;
    int rc = 0;
    const char *wrt[2] = {"input", NULL};
    m->curves = calloc((size_t)(N_CURVES * L), sizeof(float));
    g = malloc(sizeof(float) * (size_t)(F * L));
    if (!m->curves || !g) {
        rc = cli_fail("out of memory");
        goto done;
    }
    float *gxf = m->curves + CURVE_GXF * L, *ig = m->curves + CURVE_IG * L,
          *occ = m->curves + CURVE_OCC * L;
    /* gradient x feature */
    stx_session_options so = stx_session_options_default();
    so.num_threads = p->tthreads;
    so.grad_wrt = wrt;
    int64_t wshape[3] = {1, p->K, L};
    if (stx_session_create(p->tm, &so, shape, rank, &s) != STX_OK ||
        stx_tensor_create(p->ctx, STX_DTYPE_FLOAT, shape, rank, &in) != STX_OK ||
        stx_tensor_create(p->ctx, STX_DTYPE_FLOAT, wshape, 3, &wts) != STX_OK) {
        rc = cli_fail("%s: %s", o->tm_path, stx_context_last_error(p->ctx));
        goto done;
    }
    float *xin = stx_tensor_data(in);
    make_input(p, L, xin);
    float *wd = stx_tensor_data(wts);
    memset(wd, 0, sizeof(float) * (size_t)(p->K * L));
    wd[cls * L + m->frame] = 1;
    if (m->prev >= 0) wd[cls * L + m->prev] = -1;
    stx_seed sd = stx_seed_default();
    sd.weights = wts;
    stx_tensor *y = NULL;
    if (stx_session_run(s, in, &y) != STX_OK || stx_session_backward(s, &sd) != STX_OK) {
        rc = cli_fail("%s: %s", o->tm_path, stx_session_last_error(s));
        goto done;
    }
    m->score = score_of(stx_tensor_data(y), L, cls, m->frame, m->prev);
    memcpy(g, stx_tensor_data(stx_session_grad(s, "input")), sizeof(float) * (size_t)(F * L));
    for (int64_t t = 0; t < L; t++) {
        double a = 0;
        for (int64_t f = 0; f < F; f++) a += (double)g[in_at(p, L, f, t)] * xin[in_at(p, L, f, t)];
        gxf[t] = (float)a;
    }
    /* Integrated Gradients (zero baseline), linear in the score: the change is a difference */
    stx_explain_options eo = stx_explain_options_default();
    eo.method = "ig";
    eo.layout = p->fm ? "NCT" : "NTCHW";
    eo.reduce = STX_REDUCE_NONE;
    eo.steps = o->ig_steps;
    eo.batch = p->fm ? 16 : 4;
    eo.num_threads = p->tthreads;
    if (stx_explainer_create(p->tm, &eo, shape, rank, &ex) != STX_OK) {
        rc = cli_fail("%s: %s", o->tm_path, stx_context_last_error(p->ctx));
        goto done;
    }
    for (int pass = 0; pass < (m->prev >= 0 ? 2 : 1); pass++) {
        int64_t tg = cls, fr = pass ? m->prev : m->frame;
        stx_tensor *map = NULL;
        if (stx_explainer_run(ex, in, &tg, &fr, &map) != STX_OK) {
            rc = cli_fail("%s: %s", o->tm_path, stx_explainer_last_error(ex));
            goto done;
        }
        const float *md = stx_tensor_data(map);
        for (int64_t t = 0; t < L; t++) {
            double a = 0;
            for (int64_t f = 0; f < F; f++) a += md[in_at(p, L, f, t)];
            ig[t] += (float)(pass ? -a : a);
        }
    }
    /* occlusion of time windows (zero features), end-aligned: [L - (j+1) w, L - j w) */
    {
        int64_t nw = o->occ_windows < L ? o->occ_windows : L;
        int64_t ww = (L + nw - 1) / nw;
        nw = (L + ww - 1) / ww;
        int64_t B = p->fm ? 8 : 2;
        if (B > nw) B = nw;
        int64_t bs[5];
        temporal_shape(p, B, L, bs);
        stx_session_options fo = stx_session_options_default();
        fo.num_threads = p->tthreads;
        if (stx_session_create(p->tm, &fo, bs, rank, &so_s) != STX_OK ||
            stx_tensor_create(p->ctx, STX_DTYPE_FLOAT, bs, rank, &ob) != STX_OK) {
            rc = cli_fail("%s: %s", o->tm_path, stx_context_last_error(p->ctx));
            goto done;
        }
        float *od = stx_tensor_data(ob);
        const int64_t per = F * L;
        for (int64_t j0 = 0; j0 < nw; j0 += B) {
            for (int64_t b = 0; b < B; b++) {
                float *dst = od + b * per;
                memcpy(dst, xin, sizeof(float) * (size_t)per);
                int64_t j = j0 + b;
                if (j >= nw) continue;
                int64_t hi = L - j * ww, lo = hi - ww < 0 ? 0 : hi - ww;
                for (int64_t t = lo; t < hi; t++)
                    for (int64_t f = 0; f < F; f++) dst[in_at(p, L, f, t)] = 0;
            }
            stx_tensor *yo = NULL;
            if (stx_session_run(so_s, ob, &yo) != STX_OK) {
                rc = cli_fail("%s: %s", o->tm_path, stx_session_last_error(so_s));
                goto done;
            }
            const float *yd = stx_tensor_data(yo);
            for (int64_t b = 0; b < B && j0 + b < nw; b++) {
                int64_t j = j0 + b, hi = L - j * ww, lo = hi - ww < 0 ? 0 : hi - ww;
                double drop = m->score - score_of(yd + b * p->K * L, L, cls, m->frame, m->prev);
                for (int64_t t = lo; t < hi; t++) occ[t] = (float)drop;
            }
        }
    }
    /* key frames: the largest |attribution| of the ranking method, ties to the earlier frame */
    const float *rk = m->curves + o->rank * L;
    int k = o->top_frames < L ? o->top_frames : (int)L;
    m->kf = xcalloc((size_t)k, sizeof *m->kf);
    m->kw = xcalloc((size_t)k, sizeof *m->kw);
    m->maps = xcalloc((size_t)(k * hw), sizeof(float));
    m->kfs = xcalloc((size_t)k, sizeof *m->kfs);
    if (!m->kf || !m->kw || !m->maps || !m->kfs) {
        rc = cli_fail("out of memory");
        goto done;
    }
    while (m->nk < k) {
        int64_t best = -1;
        for (int64_t t = 0; t < L; t++) {
            bool used = false;
            for (int j = 0; j < m->nk; j++) used |= m->kf[j] == t;
            if (!used && rk[t] != 0 && (best < 0 || fabsf(rk[t]) > fabsf(rk[best]))) best = t;
        }
        if (best < 0) break;
        m->kw[m->nk] = rk[best];
        m->kf[m->nk++] = best;
    }
    /* their maps: pixels x d score / d pixels */
    if (m->nk > 0 && !p->fm) {
        for (int j = 0; j < m->nk; j++)
            for (int64_t u = 0; u < hw; u++) {
                double a = 0;
                for (int c = 0; c < 3; c++) {
                    int64_t f = c * hw + u;
                    a += (double)g[in_at(p, L, f, m->kf[j])] * xin[in_at(p, L, f, m->kf[j])];
                }
                m->maps[j * hw + u] = (float)a;
            }
    } else if (m->nk > 0) {
        int64_t B = o->top_frames, fs[4] = {B, 3, p->h, p->w}, ws[2] = {B, F};
        if (stx_tensor_create(p->ctx, STX_DTYPE_FLOAT, fs, 4, &fin) != STX_OK ||
            stx_tensor_create(p->ctx, STX_DTYPE_FLOAT, ws, 2, &fw) != STX_OK) {
            rc = cli_fail("out of memory");
            goto done;
        }
        float *fd = stx_tensor_data(fin), *fwd = stx_tensor_data(fw);
        memset(fwd, 0, sizeof(float) * (size_t)(B * F));
        for (int64_t j = 0; j < B; j++) {
            int64_t t = m->kf[j < m->nk ? j : 0];
            memcpy(fd + j * 3 * hw, p->x + t * 3 * hw, sizeof(float) * (size_t)(3 * hw));
            if (j < m->nk)
                for (int64_t f = 0; f < F; f++) fwd[j * F + f] = g[in_at(p, L, f, t)];
        }
        stx_seed fsd = stx_seed_default();
        fsd.weights = fw;
        if (stx_session_run(p->fgrad, fin, NULL) != STX_OK ||
            stx_session_backward(p->fgrad, &fsd) != STX_OK) {
            rc = cli_fail("%s: %s", o->fm_path, stx_session_last_error(p->fgrad));
            goto done;
        }
        const float *gp = stx_tensor_data(stx_session_grad(p->fgrad, "input"));
        for (int j = 0; j < m->nk; j++)
            for (int64_t u = 0; u < hw; u++) {
                double a = 0;
                for (int c = 0; c < 3; c++) {
                    int64_t i = (j * 3 + c) * hw + u;
                    a += (double)gp[i] * fd[i];
                }
                m->maps[j * hw + u] = (float)a;
            }
    }
    for (int j = 0; j < m->nk; j++) {
        m->kfs[j].frame = m->kf[j];
        m->kfs[j].weight = m->kw[j];
        m->kfs[j].rgb = p->rgb + m->kf[j] * hw * 3;
        m->kfs[j].map = m->maps + j * hw;
    }
done:
    free(g);
    stx_explainer_free(ex);
    stx_session_free(s);
    stx_session_free(so_s);
    stx_tensor_free(in);
    stx_tensor_free(wts);
    stx_tensor_free(ob);
    stx_tensor_free(fin);
    stx_tensor_free(fw);
    return rc;
}

static const char *phase_name(const phase_run *p, int k) {
    const char *n = cli_class_name(&p->tres, k);
    return n ? n : "?";
}

/* A transition's note: the phases, the probability change and (with a tools output) the tools
 * that appeared or left: seen (probability >= 0.5) at t but in under half of the w frames before
 * it, or the other way round. Only frames <= t are read. */
static void transition_note(const phase_run *p, moment *m) {
    const int64_t t = m->frame, t0 = m->prev;
    const int a = p->pred[t0], b = m->phase;
    size_t n = 0, cap = sizeof m->note;
    n += (size_t)snprintf(m->note + n, cap - n, "%s -> %s: P(%s) %.2f -> %.2f", phase_name(p, a),
                          phase_name(p, b), phase_name(p, b), (double)p->prob[t0 * p->K + b],
                          (double)p->prob[t * p->K + b]);
    if (p->tools && n < cap) {
        int64_t w = (int64_t)llround(5 * p->fps);
        if (w < 1) w = 1;
        if (w > t) w = t;
        char in[256] = "", out[256] = "";
        size_t ni = 0, no = 0;
        for (int k = 0; k < p->nt; k++) {
            double before = 0;
            for (int64_t s = t - w; s < t; s++) before += p->tools[s * p->nt + k] >= 0.5f;
            before /= (double)w;
            bool now = p->tools[t * p->nt + k] >= 0.5f;
            if (now && before < 0.5 && ni < sizeof in)
                ni += (size_t)snprintf(in + ni, sizeof in - ni, " +%s", p->tool_names[k]);
            if (!now && before >= 0.5 && no < sizeof out)
                no += (size_t)snprintf(out + no, sizeof out - no, " -%s", p->tool_names[k]);
        }
        if (ni || no)
            n += (size_t)snprintf(m->note + n, cap - n, "; tools%s%s", in, out);
        else if (n < cap)
            n += (size_t)snprintf(m->note + n, cap - n, "; same tools in view");
    }
    if (m->nk > 0 && n < cap)
        snprintf(m->note + n, cap - n, "; the change comes most from frame %lld (%.1f s)",
                 (long long)m->kf[0], (double)m->kf[0] / p->fps);
}

static int add_moment(phase_run *p, int64_t frame, const char *why, int64_t prev) {
    for (int i = 0; i < p->nm; i++)
        if (p->m[i].frame == frame) return 0; /* the earlier kind wins: user, transition, segment */
    moment *g = realloc(p->m, sizeof *g * (size_t)(p->nm + 1));
    if (!g) return cli_fail("out of memory");
    p->m = g;
    moment *m = &p->m[p->nm++];
    memset(m, 0, sizeof *m);
    m->frame = frame;
    m->prev = prev;
    m->why = why;
    m->phase = p->pred[frame];
    return 0;
}

static int cmp_moment(const void *a, const void *b) {
    int64_t x = ((const moment *)a)->frame, y = ((const moment *)b)->frame;
    return (x > y) - (x < y);
}

static int choose_moments(phase_run *p) {
    const phase_opts *o = p->o;
    int rc = 0;
    if (o->at) {
        const char *q = o->at;
        for (;;) {
            const char *e = strchr(q, ',');
            size_t len = e ? (size_t)(e - q) : strlen(q);
            char tok[64];
            double sec;
            if (len == 0 || len >= sizeof tok)
                return cli_fail("--at '%s': an entry is %s", o->at, len ? "too long" : "empty");
            memcpy(tok, q, len);
            tok[len] = '\0';
            if (!parse_time(tok, &sec))
                return cli_fail("--at '%s': '%s' is not a time (H:MM:SS, M:SS or seconds)", o->at,
                                tok);
            int64_t f = (int64_t)floor(sec * p->fps + 0.5);
            if (f >= p->T)
                return cli_fail("--at '%s': %s is frame %lld, after the last frame %lld (%.1f s)",
                                o->at, tok, (long long)f, (long long)(p->T - 1),
                                (double)(p->T - 1) / p->fps);
            if ((o->kinds & 4) && (rc = add_moment(p, f, "user", -1))) return rc;
            if (!e) break;
            q = e + 1;
        }
    }
    for (int64_t t = 1; t < p->T && !rc && (o->kinds & 2); t++)
        if (p->pred[t] != p->pred[t - 1]) rc = add_moment(p, t, "transition", t - 1);
    for (int64_t s = 0; s < p->T && !rc && (o->kinds & 1);) {
        int64_t e = s;
        while (e + 1 < p->T && p->pred[e + 1] == p->pred[s]) e++;
        rc = add_moment(p, (s + e) / 2, "segment", -1);
        s = e + 1;
    }
    if (!rc && p->nm > 1) qsort(p->m, (size_t)p->nm, sizeof *p->m, cmp_moment);
    return rc;
}

/* ---- labels and scores ---------------------------------------------------------------------- */

/* Reads a label file: "Frame<TAB>Phase" (Cholec80) or "frame,phase" lines, an optional header,
 * phases by name (compared as lower-case letters and digits) or index. Fills p->truth for every
 * sampled frame: the label of the last line at or before its label-frame index. */
static int read_labels(phase_run *p) {
    const phase_opts *o = p->o;
    FILE *f = fopen(o->labels, "rb");
    if (!f) return cli_fail("--labels %s: cannot open: %s", o->labels, strerror(errno));
    int64_t *lf = NULL;
    int *lp = NULL;
    int64_t n = 0, cap = 0, line = 0;
    char buf[4096];
    int rc = 0;
    while (!rc && fgets(buf, sizeof buf, f)) {
        line++;
        size_t len = strlen(buf);
        if (len == sizeof buf - 1 && buf[len - 1] != '\n') {
            rc = cli_fail("--labels %s: line %lld is too long", o->labels, (long long)line);
            break;
        }
        while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
            buf[--len] = '\0';
        char *a = buf;
        while (*a == ' ' || *a == '\t') a++;
        if (!*a || *a == '#') continue;
        char *sep = a + strcspn(a, "\t, ");
        if (!*sep) {
            rc = cli_fail("--labels %s:%lld: expected 'frame<TAB>phase' or 'frame,phase', got "
                          "'%s'",
                          o->labels, (long long)line, a);
            break;
        }
        *sep = '\0';
        char *b = sep + 1;
        while (*b == ' ' || *b == '\t' || *b == ',') b++;
        char *e;
        errno = 0;
        long long fr = strtoll(a, &e, 10);
        if (*e || errno || e == a || fr < 0) {
            if (n == 0 && line == 1 && !isdigit((unsigned char)*a)) continue; /* a header */
            rc = cli_fail("--labels %s:%lld: '%s' is not a frame index", o->labels, (long long)line,
                          a);
            break;
        }
        int ph = -1;
        for (int k = 0; k < p->K && ph < 0; k++)
            if (p->tres.class_names && k < p->tres.n_classes &&
                same_name(b, p->tres.class_names[k]))
                ph = k;
        if (ph < 0) {
            long v = strtol(b, &e, 10);
            if (*b && !*e && v >= 0 && v < p->K) ph = (int)v;
        }
        if (ph < 0) {
            char list[512];
            size_t q = 0;
            list[0] = '\0';
            for (int k = 0; k < p->K && q < sizeof list; k++)
                q += (size_t)snprintf(list + q, sizeof list - q, "%s%s", k ? "," : "",
                                      phase_name(p, k));
            rc = cli_fail("--labels %s:%lld: unknown phase '%s' (phases: %s, or 0..%d)", o->labels,
                          (long long)line, b, list, p->K - 1);
            break;
        }
        if (n > 0 && fr <= lf[n - 1]) {
            rc = cli_fail("--labels %s:%lld: frame %lld after frame %lld: frames must increase",
                          o->labels, (long long)line, fr, (long long)lf[n - 1]);
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            int64_t *g1 = realloc(lf, sizeof *lf * (size_t)cap);
            if (g1) lf = g1;
            int *g2 = realloc(lp, sizeof *lp * (size_t)cap);
            if (g2) lp = g2;
            if (!g1 || !g2) {
                rc = cli_fail("out of memory");
                break;
            }
        }
        lf[n] = fr;
        lp[n++] = ph;
    }
    if (!rc && ferror(f)) rc = cli_fail("--labels %s: cannot read", o->labels);
    fclose(f);
    if (!rc && n == 0) rc = cli_fail("--labels %s: no labels", o->labels);
    double rate = o->labels_fps > 0 ? o->labels_fps : p->src_fps > 0 ? p->src_fps : p->fps;
    if (!rc && !(p->truth = malloc(sizeof(int) * (size_t)p->T))) rc = cli_fail("out of memory");
    for (int64_t i = 0, j = 0; !rc && i < p->T; i++) {
        int64_t want = (int64_t)floor((double)i * rate / p->fps + 1e-9);
        if (want < lf[0] || want > lf[n - 1]) {
            rc = cli_fail("--labels %s: no label for frame %lld (%.1f s = label frame %lld at %g "
                          "per second); the labels cover frames %lld to %lld",
                          o->labels, (long long)i, (double)i / p->fps, (long long)want, rate,
                          (long long)lf[0], (long long)lf[n - 1]);
            break;
        }
        while (j + 1 < n && lf[j + 1] <= want) j++;
        p->truth[i] = lp[j];
    }
    free(lf);
    free(lp);
    return rc;
}

typedef struct scores {
    double accuracy;
    double *precision, *recall, *jaccard;
} scores;

/* The Cholec80 / M2CAI evaluation (docs/phase.md): frames are correct where pred == truth, or,
 * with a relaxed window of rw frames, where inside the first rw frames of a ground-truth segment
 * of phase k the model still says an earlier phase (k - 1; also k - 2 for the last two phases of
 * 7), or inside its last rw frames already a later one (k + 1; also k + 2 for phases 4 to 7 of 7).
 * Per phase k (NaN when k is absent from the truth): over U = {pred == k} | {truth == k}, TP =
 * correct frames in U; Jaccard TP / |U|, precision TP / #pred k, recall TP / #truth k, each
 * capped at 1. Accuracy: correct frames / all frames. */
static void score(const int *truth, const int *pred, int64_t T, int K, int64_t rw, scores *s) {
    char *ok = malloc((size_t)T);
    if (!ok) return;
    for (int64_t t = 0; t < T; t++) ok[t] = pred[t] == truth[t];
    for (int64_t a = 0; a < T && rw > 0;) {
        int64_t b = a;
        while (b + 1 < T && truth[b + 1] == truth[a]) b++;
        int k = truth[a];
        int64_t w = rw < b - a + 1 ? rw : b - a + 1;
        bool late2 = K == 7 && (k == 5 || k == 6), early2 = K == 7 && k >= 3;
        for (int64_t t = a; t < a + w; t++) {
            int d = pred[t] - k;
            if (d == -1 || (late2 && d == -2)) ok[t] = 1;
        }
        for (int64_t t = b - w + 1; t <= b; t++) {
            int d = pred[t] - k;
            if (d == 1 || (early2 && d == 2)) ok[t] = 1;
        }
        a = b + 1;
    }
    int64_t good = 0;
    for (int64_t t = 0; t < T; t++) good += ok[t];
    s->accuracy = (double)good / (double)T;
    for (int k = 0; k < K; k++) {
        int64_t np = 0, nt = 0, nu = 0, tp = 0;
        for (int64_t t = 0; t < T; t++) {
            bool ip = pred[t] == k, it = truth[t] == k;
            np += ip;
            nt += it;
            if (ip || it) nu++, tp += ok[t];
        }
        if (nt == 0) {
            s->precision[k] = s->recall[k] = s->jaccard[k] = NAN;
            continue;
        }
        s->jaccard[k] = fmin(1.0, (double)tp / (double)nu);
        s->precision[k] = np ? fmin(1.0, (double)tp / (double)np) : NAN;
        s->recall[k] = fmin(1.0, (double)tp / (double)nt);
    }
    free(ok);
}

static void json_num(sbuf *b, double v) {
    if (isfinite(v))
        sb_printf(b, "%.6g", v);
    else
        sb_printf(b, "null");
}

static void json_scores(sbuf *b, const phase_run *p, const scores *s) {
    sb_printf(b, "{\"accuracy\": ");
    json_num(b, s->accuracy);
    const double *v[3] = {s->precision, s->recall, s->jaccard};
    const char *nm[3] = {"precision", "recall", "jaccard"};
    for (int i = 0; i < 3; i++) {
        sb_printf(b, ", \"%s\": [", nm[i]);
        for (int k = 0; k < p->K; k++) {
            sb_printf(b, "%s", k ? ", " : "");
            json_num(b, v[i][k]);
        }
        double sum = 0;
        int c = 0;
        for (int k = 0; k < p->K; k++)
            if (isfinite(v[i][k])) sum += v[i][k], c++;
        sb_printf(b, "], \"mean_%s\": ", nm[i]);
        json_num(b, c ? sum / c : NAN);
    }
    sb_printf(b, "}");
}

/* ---- outputs -------------------------------------------------------------------------------- */

static int write_predictions(phase_run *p) {
    sbuf c = {0}, j = {0};
    const int K = p->K;
    sb_printf(&c, "frame,time_s,phase,phase_name");
    for (int k = 0; k < K; k++) sb_printf(&c, ",p_%s", phase_name(p, k));
    if (p->truth) sb_printf(&c, ",truth,truth_name");
    sb_printf(&c, "\n");
    for (int64_t t = 0; t < p->T; t++) {
        sb_printf(&c, "%lld,%.3f,%d,%s", (long long)t, (double)t / p->fps, p->pred[t],
                  phase_name(p, p->pred[t]));
        for (int k = 0; k < K; k++) sb_printf(&c, ",%.6g", (double)p->prob[t * K + k]);
        if (p->truth) sb_printf(&c, ",%d,%s", p->truth[t], phase_name(p, p->truth[t]));
        sb_printf(&c, "\n");
    }
    sb_printf(&j, "{\n  \"video\": ");
    sb_str(&j, p->o->video);
    sb_printf(&j, ",\n  \"fps\": %.6g,\n  \"n_frames\": %lld,\n  \"phases\": [", p->fps,
              (long long)p->T);
    for (int k = 0; k < K; k++) {
        sb_printf(&j, "%s", k ? ", " : "");
        sb_str(&j, phase_name(p, k));
    }
    sb_printf(&j, "],\n  \"segments\": [");
    int ns = 0;
    for (int64_t s = 0; s < p->T;) {
        int64_t e = s;
        while (e + 1 < p->T && p->pred[e + 1] == p->pred[s]) e++;
        sb_printf(&j, "%s\n    {\"start\": %lld, \"end\": %lld, \"phase\": %d, \"name\": ",
                  ns++ ? "," : "", (long long)s, (long long)e, p->pred[s]);
        sb_str(&j, phase_name(p, p->pred[s]));
        sb_printf(&j, "}");
        s = e + 1;
    }
    sb_printf(&j, "\n  ],\n  \"pred\": [");
    for (int64_t t = 0; t < p->T; t++) sb_printf(&j, "%s%d", t ? "," : "", p->pred[t]);
    sb_printf(&j, "],\n  \"prob\": [");
    for (int64_t t = 0; t < p->T; t++) {
        sb_printf(&j, "%s\n    [", t ? "," : "");
        for (int k = 0; k < K; k++)
            sb_printf(&j, "%s%.5g", k ? ", " : "", (double)p->prob[t * K + k]);
        sb_printf(&j, "]");
    }
    sb_printf(&j, "\n  ]");
    if (p->truth) {
        sb_printf(&j, ",\n  \"truth\": [");
        for (int64_t t = 0; t < p->T; t++) sb_printf(&j, "%s%d", t ? "," : "", p->truth[t]);
        sb_printf(&j, "]");
    }
    sb_printf(&j, "\n}\n");
    int rc = 0;
    char *pc = path_join(p->o->out_dir, "predictions.csv"),
         *pj = path_join(p->o->out_dir, "predictions.json");
    if (c.oom || j.oom || !pc || !pj)
        rc = cli_fail("out of memory");
    else if (!(rc = write_file(pc, c.s, c.n)))
        rc = write_file(pj, j.s, j.n);
    free(c.s);
    free(j.s);
    free(pc);
    free(pj);
    return rc;
}

static int write_moments(phase_run *p) {
    sbuf j = {0};
    int rc = 0;
    sb_printf(&j,
              "{\n  \"rank\": \"%s\",\n  \"curves\": [\"%s\", \"%s\", \"%s\"],\n  \"moments\": [",
              curve_names[p->o->rank], curve_names[0], curve_names[1], curve_names[2]);
    for (int i = 0; i < p->nm && !rc; i++) {
        moment *m = &p->m[i];
        const int64_t L = m->frame + 1, hw = (int64_t)p->h * p->w;
        char name[96];
        snprintf(name, sizeof name, "moment_%06lld_temporal.npy", (long long)m->frame);
        int64_t cs[2] = {N_CURVES, L}, ks[1] = {m->nk}, ms[3] = {m->nk, p->h, p->w};
        rc = save_npy(p, name, STX_DTYPE_FLOAT, m->curves, cs, 2);
        sb_printf(&j, "%s\n    {\"frame\": %lld, \"time_s\": %.3f, \"phase\": %d, \"name\": ",
                  i ? "," : "", (long long)m->frame, (double)m->frame / p->fps, m->phase);
        sb_str(&j, phase_name(p, m->phase));
        sb_printf(&j, ", \"why\": \"%s\", \"score\": %.6g, \"temporal\": ", m->why, m->score);
        sb_str(&j, name);
        if (m->prev >= 0) sb_printf(&j, ", \"change_from\": %lld", (long long)m->prev);
        snprintf(name, sizeof name, "moment_%06lld_keyframes.npy", (long long)m->frame);
        if (!rc) rc = save_npy(p, name, STX_DTYPE_INT64, m->kf, ks, 1);
        sb_printf(&j, ", \"keyframes\": ");
        sb_str(&j, name);
        snprintf(name, sizeof name, "moment_%06lld_maps.npy", (long long)m->frame);
        if (!rc) rc = save_npy(p, name, STX_DTYPE_FLOAT, m->maps, ms, 3);
        sb_printf(&j, ", \"maps\": ");
        sb_str(&j, name);
        sb_printf(&j, ", \"top\": [");
        for (int k = 0; k < m->nk; k++)
            sb_printf(&j, "%s{\"frame\": %lld, \"weight\": %.6g}", k ? ", " : "",
                      (long long)m->kf[k], (double)m->kw[k]);
        sb_printf(&j, "], \"note\": ");
        sb_str(&j, m->note[0] ? m->note : NULL);
        sb_printf(&j, "}");
        (void)hw;
    }
    sb_printf(&j, "\n  ]\n}\n");
    char *pj = path_join(p->o->out_dir, "moments.json");
    if (!rc && (j.oom || !pj)) rc = cli_fail("out of memory");
    if (!rc) rc = write_file(pj, j.s, j.n);
    free(pj);
    free(j.s);
    return rc;
}

/* ---- the command ---------------------------------------------------------------------------- */

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: stx phase FRAME_MODEL TEMPORAL_MODEL VIDEO --out-dir DIR [options]\n"
        "       stx phase MODEL VIDEO --out-dir DIR [options]   (one model on frames, N,T,C,H,W)\n"
        "\n"
        "Phase recognition over a whole procedure, explained (docs/phase.md). VIDEO: a video\n"
        "file, a folder of frames or uint8 frames (T,H,W,3) in a .npy.\n"
        "  --fps F            sampling rate in frames per second (default 1; a .npy or folder is\n"
        "                     taken as already sampled at F)\n"
        "  --at T1,T2,...     also explain these moments (H:MM:SS, M:SS or seconds)\n"
        "  --labels GT        ground truth: Cholec80 'Frame<TAB>Phase' or 'frame,phase' lines\n"
        "  --labels-fps R     frame rate of the label file's frame indices (default: the video's\n"
        "                     own rate, else F)\n"
        "  --relaxed S        score with relaxed phase boundaries of S seconds (M2CAI, 10)\n"
        "  --moments LIST     which moments are explained: segment, transition, user (--at),\n"
        "                     comma-separated, or none (default: all three)\n"
        "  --top-frames k     key frames with a pixel map per moment (default 5)\n"
        "  --rank M           method choosing the key frames: ig (default), gradxfeature,\n"
        "                     occlusion\n"
        "  --steps n          Integrated Gradients' steps (default 32)\n"
        "  --windows n        time windows occluded per moment (default 32)\n"
        "  --batch B          frames per batch of the frame model (default 64)\n"
        "  --cache-dir D      feature cache (default $STX_CACHE_DIR, else\n"
        "                     $XDG_CACHE_HOME/stx/phase, else ~/.cache/stx/phase)\n"
        "  --no-cache         neither read nor write the feature cache\n"
        "  --threads N        threads (default: all cores)\n"
        "  --temporal-threads N  threads of the temporal model (default 1 with a frame model:\n"
        "                     its small convolutions gain little from more; else --threads)\n");
}

static void run_free(phase_run *p) {
    for (int i = 0; i < p->nm; i++) {
        free(p->m[i].curves);
        free(p->m[i].kf);
        free(p->m[i].kw);
        free(p->m[i].maps);
        free(p->m[i].kfs);
    }
    free(p->m);
    for (int i = 0; i < p->nt; i++) free(p->tool_names[i]);
    free(p->tool_names);
    free(p->x);
    free(p->rgb);
    free(p->feat);
    free(p->tools);
    free(p->prob);
    free(p->pred);
    free(p->truth);
    stx_session_free(p->fgrad);
    stx_model_free(p->fm);
    stx_model_free(p->tm);
    stx_context_free(p->ctx);
}

int cmd_phase(int argc, char **argv) {
    phase_opts o;
    memset(&o, 0, sizeof o);
    o.top_frames = 5;
    o.ig_steps = 32;
    o.occ_windows = 32;
    o.rank = CURVE_IG;
    o.batch = 64;
    o.kinds = 7;
    o.tthreads = -1;
    const char *pos[3];
    int npos = 0;
    char *cache_alloc = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--no-cache") == 0) {
            o.no_cache = 1;
            continue;
        }
        if (a[0] == '-' && a[1] == '-') {
            if (i + 1 >= argc) return cli_fail("%s needs a value (try stx phase --help)", a);
            const char *v = argv[++i];
            long n;
            if (strcmp(a, "--out-dir") == 0)
                o.out_dir = v;
            else if (strcmp(a, "--fps") == 0) {
                if (!parse_double(v, 1e-6, 1e6, &o.fps) || o.fps <= 0)
                    return cli_fail("--fps '%s': expected a positive number of frames per second",
                                    v);
                o.has_fps = 1;
            } else if (strcmp(a, "--labels-fps") == 0) {
                if (!parse_double(v, 1e-6, 1e6, &o.labels_fps) || o.labels_fps <= 0)
                    return cli_fail("--labels-fps '%s': expected a positive rate", v);
            } else if (strcmp(a, "--relaxed") == 0) {
                if (!parse_double(v, 0, 1e6, &o.relaxed))
                    return cli_fail("--relaxed '%s': expected seconds >= 0 (M2CAI: 10)", v);
            } else if (strcmp(a, "--labels") == 0)
                o.labels = v;
            else if (strcmp(a, "--at") == 0)
                o.at = v;
            else if (strcmp(a, "--cache-dir") == 0) {
                if (!*v) return cli_fail("--cache-dir needs a folder");
                o.cache_dir = v;
            } else if (strcmp(a, "--moments") == 0) {
                o.kinds = 0;
                for (const char *q = v;;) {
                    size_t len = strcspn(q, ",");
                    static const char *const kn[3] = {"segment", "transition", "user"};
                    int bit = -1;
                    for (int k = 0; k < 3; k++)
                        if (len == strlen(kn[k]) && strncmp(q, kn[k], len) == 0) bit = k;
                    if (len == 4 && strncmp(q, "none", 4) == 0) bit = 3;
                    if (bit < 0)
                        return cli_fail("--moments '%s': expected a list of segment, transition, "
                                        "user, or none",
                                        v);
                    if (bit < 3) o.kinds |= 1 << bit;
                    if (!q[len]) break;
                    q += len + 1;
                }
            } else if (strcmp(a, "--rank") == 0) {
                o.rank = -1;
                for (int k = 0; k < N_CURVES; k++)
                    if (strcmp(v, curve_names[k]) == 0) o.rank = k;
                if (o.rank < 0)
                    return cli_fail("--rank '%s': expected ig, gradxfeature or occlusion", v);
            } else if (strcmp(a, "--top-frames") == 0 || strcmp(a, "--steps") == 0 ||
                       strcmp(a, "--windows") == 0 || strcmp(a, "--batch") == 0 ||
                       strcmp(a, "--threads") == 0 || strcmp(a, "--temporal-threads") == 0) {
                long lo = strcmp(a, "--threads") == 0 || a[3] == 'e' ? 0 : 1;
                if (!cli_parse_int(v, lo, 4096, &n))
                    return cli_fail("%s '%s': expected an integer from %ld to 4096", a, v, lo);
                if (a[2] == 't' && a[3] == 'o') o.top_frames = (int)n;
                if (a[2] == 's') o.ig_steps = (int)n;
                if (a[2] == 'w') o.occ_windows = (int)n;
                if (a[2] == 'b') o.batch = (int)n;
                if (a[2] == 't' && a[3] == 'h') o.threads = (int)n;
                if (a[2] == 't' && a[3] == 'e') o.tthreads = (int)n;
            } else
                return cli_fail("unknown option '%s' (try stx phase --help)", a);
            continue;
        }
        if (npos == 3) return cli_fail("stx phase: too many arguments ('%s')", a);
        pos[npos++] = a;
    }
    if (npos < 2)
        return cli_fail("stx phase needs FRAME_MODEL TEMPORAL_MODEL VIDEO (or MODEL VIDEO) and "
                        "--out-dir DIR (try stx phase --help)");
    if (!o.out_dir) return cli_fail("stx phase needs --out-dir DIR");
    if (npos == 3) {
        o.fm_path = pos[0];
        o.tm_path = pos[1];
        o.video = pos[2];
    } else {
        o.tm_path = pos[0];
        o.video = pos[1];
        o.no_cache = 1; /* nothing to cache: the model reads the frames */
    }
    if (!o.cache_dir && !o.no_cache) {
        const char *e = getenv("STX_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"),
                   *home = getenv("HOME");
        if (e && *e)
            o.cache_dir = e;
        else if ((xdg && *xdg) || (home && *home)) {
            size_t len = strlen(xdg && *xdg ? xdg : home) + 32;
            if (!(cache_alloc = malloc(len))) return cli_fail("out of memory");
            snprintf(cache_alloc, len, "%s%s", xdg && *xdg ? xdg : home,
                     xdg && *xdg ? "/stx/phase" : "/.cache/stx/phase");
            o.cache_dir = cache_alloc;
        } else
            o.no_cache = 1;
    }
    phase_run p;
    memset(&p, 0, sizeof p);
    p.o = &o;
    p.tthreads = o.tthreads >= 0 ? o.tthreads : npos == 3 ? 1 : o.threads;
    double t0 = cli_now_ms();
    int rc = cli_context(o.threads, &p.ctx);
    if (!rc) rc = setup_models(&p);
    if (!rc) rc = decode(&p);
    double t1 = cli_now_ms();
    if (!rc)
        printf("decoded %lld frames at %g per second (%.1f s)\n", (long long)p.T, p.fps,
               (t1 - t0) / 1e3);
    if (!rc && o.labels) rc = read_labels(&p);
    if (!rc && make_dirs(o.out_dir) != 0)
        rc = cli_fail("--out-dir %s: cannot create the folder: %s", o.out_dir, strerror(errno));
    bool hit = false;
    if (!rc && p.fm) rc = features(&p, &hit);
    double t2 = cli_now_ms();
    if (!rc && p.fm) printf("features: %lld x %d (%.1f s)\n", (long long)p.T, p.F, (t2 - t1) / 1e3);
    if (!rc) rc = predict(&p);
    if (!rc) rc = choose_moments(&p);
    if (!rc && p.fm) {
        const char *wrt[2] = {"input", NULL};
        stx_session_options so = stx_session_options_default();
        so.num_threads = o.threads;
        so.grad_wrt = wrt;
        so.grad_output = p.fo;
        int64_t fs[4] = {o.top_frames, 3, p.h, p.w};
        if (stx_session_create(p.fm, &so, fs, 4, &p.fgrad) != STX_OK)
            rc = cli_fail("%s: %s", o.fm_path, stx_context_last_error(p.ctx));
    }
    for (int i = 0; i < p.nm && !rc; i++) {
        rc = explain_moment(&p, &p.m[i]);
        if (!rc && p.m[i].prev >= 0) transition_note(&p, &p.m[i]);
    }
    double t3 = cli_now_ms();
    if (!rc) printf("explained %d moments (%.1f s)\n", p.nm, (t3 - t2) / 1e3);
    scores strict = {0}, relaxed = {0};
    double *sv = NULL;
    if (!rc && p.truth) {
        sv = malloc(sizeof(double) * 6 * (size_t)p.K);
        if (!sv)
            rc = cli_fail("out of memory");
        else {
            strict.precision = sv, strict.recall = sv + p.K, strict.jaccard = sv + 2 * p.K;
            relaxed.precision = sv + 3 * p.K, relaxed.recall = sv + 4 * p.K,
            relaxed.jaccard = sv + 5 * p.K;
            score(p.truth, p.pred, p.T, p.K, 0, &strict);
            if (o.relaxed > 0)
                score(p.truth, p.pred, p.T, p.K, (int64_t)llround(o.relaxed * p.fps), &relaxed);
        }
    }
    if (!rc) rc = write_predictions(&p);
    if (!rc) rc = write_moments(&p);
    if (!rc && p.truth) {
        sbuf b = {0};
        sb_printf(&b, "{\n  \"n_frames\": %lld,\n  \"fps\": %.6g,\n  \"strict\": ", (long long)p.T,
                  p.fps);
        json_scores(&b, &p, &strict);
        if (o.relaxed > 0) {
            sb_printf(&b,
                      ",\n  \"relaxed_seconds\": %.6g,\n  \"relaxed_frames\": %lld,\n  "
                      "\"relaxed\": ",
                      o.relaxed, (long long)llround(o.relaxed * p.fps));
            json_scores(&b, &p, &relaxed);
        }
        sb_printf(&b, "\n}\n");
        char *ps = path_join(o.out_dir, "scores.json");
        rc = b.oom || !ps ? cli_fail("out of memory") : write_file(ps, b.s, b.n);
        free(ps);
        free(b.s);
        const scores *s = o.relaxed > 0 ? &relaxed : &strict;
        if (!rc) printf("accuracy: %.4f%s\n", s->accuracy, o.relaxed > 0 ? " (relaxed)" : "");
    }
    phase_moment *pm = NULL;
    if (!rc) {
        pm = xcalloc((size_t)p.nm, sizeof *pm);
        if (!pm) rc = cli_fail("out of memory");
    }
    if (!rc) {
        for (int i = 0; i < p.nm; i++) {
            moment *m = &p.m[i];
            pm[i].frame = m->frame;
            pm[i].phase = m->phase;
            pm[i].why = m->why;
            pm[i].temporal = m->curves + o.rank * (m->frame + 1);
            pm[i].n_keyframes = m->nk;
            pm[i].keyframes = m->kfs;
            pm[i].note = m->note[0] ? m->note : NULL;
        }
        const scores *s = o.relaxed > 0 ? &relaxed : &strict;
        phase_result r;
        memset(&r, 0, sizeof r);
        r.video = o.video;
        r.fps = p.fps;
        r.n_frames = p.T;
        r.n_phases = p.K;
        const char **names = xcalloc((size_t)p.K, sizeof *names);
        if (!names) rc = cli_fail("out of memory");
        for (int k = 0; names && k < p.K; k++) names[k] = phase_name(&p, k);
        r.phase_names = names;
        r.pred = p.pred;
        r.prob = p.prob;
        r.truth = p.truth;
        r.h = p.h;
        r.w = p.w;
        r.thumb_every = 1;
        r.thumbs = p.rgb;
        r.n_moments = p.nm;
        r.moments = pm;
        r.accuracy = p.truth ? s->accuracy : NAN;
        r.precision = p.truth ? s->precision : NULL;
        r.recall = p.truth ? s->recall : NULL;
        r.jaccard = p.truth ? s->jaccard : NULL;
        if (!rc) rc = phase_write_report(p.ctx, &r, o.out_dir);
        free(names);
    }
    if (!rc) printf("time_ms: %.1f\nreport: %s/report.html\n", cli_now_ms() - t0, o.out_dir);
    free(pm);
    free(sv);
    free(cache_alloc);
    run_free(&p);
    return rc;
}
