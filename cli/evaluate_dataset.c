/* evaluate_dataset.c: `stx evaluate MODEL --dataset LIST --methods a,b --metrics x,y
 * [--out-dir DIR] [--batch B] [--seed S] [--randomize] [--random-label] ...`
 *
 * Runs every method on every clip of a list (with ground truth), times it, scores the maps with
 * the metrics library, and writes DIR/results.csv, DIR/results.json and plots (mean deletion /
 * insertion curves per method, a bar chart per metric). --randomize adds the cascading
 * model-parameter randomisation check and --random-label the random-label check (Adebayo et al.),
 * written to DIR/sanity.csv, the JSON and DIR/sanity_<method>.png. docs/benchmark.md.
 *
 * LIST: the CSV of cli/dataset_list.h (clip,mask,events,label). clip: .npy uint8 frames
 * (T,H,W,3) or the model's float32 input; mask: .npy (T,H,W) ground-truth voxels (non-zero);
 * events: .npy (T) decisive frames; label: class index or name (empty: the top class).
 *
 * Besides the library's methods, two model-independent maps serve as references: `intensity`
 * (the input averaged over its colour channels) and `random` (uniform noise, seeded per clip). */
#include "cli.h"
#include "dataset_list.h"
#include "report_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_LIST 64

static void dataset_usage(FILE *f) {
    fprintf(f, "%s%s",
            "usage: stx evaluate MODEL --dataset LIST [--methods a,b,...] [--metric x,y,...]\n"
            "                    [--out-dir DIR] [--batch B] [--seed S] [--clips N]\n"
            "                    [--curve-steps K] [--samples n] [--masks n]\n"
            "                    [--explain-steps K] [--window T,H,W] [--stride T,H,W]\n"
            "                    [--cells T,H,W]\n"
            "                    [--randomize] [--randomize-layers K] [--randomize-clips N]\n"
            "                    [--random-label] [--threads N] [model-fact flags]\n"
            "  Every method on every clip of LIST (CSV lines clip.npy,mask.npy,events.npy,label;\n"
            "  paths relative to the list's folder; mask, events and label may be empty), timed\n"
            "  and scored; writes DIR/results.csv, results.json and PNG plots\n"
            "  (docs/benchmark.md).\n"
            "  --methods   explanation methods (default gradcam), plus the model-independent\n"
            "              references intensity (channel mean of the input) and random (noise)\n"
            "  --metric    metric names of `stx evaluate` (default deletion,insertion)\n"
            "  --out-dir   output folder (default evaluation)\n"
            "  --batch B   perturbed forwards per batch of the metrics and of the perturbation\n"
            "              methods (16)\n"
            "  --seed S    seed of the methods' noise, the random map and the randomisation (0)\n"
            "  --clips N   only the first N clips of the list\n"
            "  --curve-steps K  deletion/insertion intervals (20)\n"
            "  --samples n, --masks n, --explain-steps K  the methods' samples, RISE masks and\n"
            "              steps (ig's quadrature points, extremal's optimiser steps)\n"
            "  --window T,H,W, --stride T,H,W  the occlusion methods' cuboid and stride\n"
            "  --cells T,H,W  the grid of rise, kernelshap, lime, loco and up\n"
            "  --randomize cascading model-parameter randomisation: re-initialise the top k\n"
            "              layers (k = 1..layers, or 1..K with --randomize-layers K) and compare\n"
            "              each map with the original's (Spearman rank correlation, of |map|\n"
            "              too, and SSIM) on the first --randomize-clips clips (all); writes\n"
            "              DIR/sanity.csv\n"
            "  --random-label  map of the label against the map of a random other class\n"
            "time per clip: the method's run alone (the metrics not counted); the summary is\n"
            "the median over the clips\n",
            CLI_FACT_FLAGS_HELP);
}

/* ---- small helpers -------------------------------------------------------------------------- */

typedef struct method_rec {
    const char *name;
    int kind;        /* 0: library method, 1: intensity, 2: random */
    char *refused;   /* why the method gave no table (malloc'ed), NULL: ran */
    double *time_ms; /* per clip */
    double *vals;    /* clips x metrics (NaN: undefined) */
    double *curves;  /* clips x metrics x curve_len (only curve metrics are filled) */
    float *maps;     /* clips x map size: the original model's maps (sanity checks) */
    int64_t *used;   /* per clip: the class explained */
    double *sim;     /* randomisation: steps x clips x 3 */
    double *rl;      /* random label: clips x 3 */
    int64_t *rl_class;
} method_rec;

static char *xstrndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Splits "a,b,c" into at most max tokens (malloc'ed copies). Returns the count,
 * -1 on a bad list. */
static int split_list(const char *s, char **out, int max) {
    int n = 0;
    const char *p = s;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0 || n >= max) {
            for (int i = 0; i < n; i++) free(out[i]);
            return -1;
        }
        out[n++] = xstrndup(p, len);
        if (!e) break;
        p = e + 1;
    }
    return n;
}

static double mean_of(const double *v, int n, int stride) {
    double s = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(v[(size_t)i * (size_t)stride])) {
            s += v[(size_t)i * (size_t)stride];
            k++;
        }
    return k ? s / k : NAN;
}

static int cmp_double(const void *pa, const void *pb) {
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* Median of the non-NaN values (NaN when none): the time per clip, robust to the first run's
 * one-off costs (kernel generation, page faults). */
static double median_of(const double *v, int n) {
    double *c = malloc(sizeof(double) * (size_t)(n ? n : 1));
    int k = 0;
    if (!c) return NAN;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i])) c[k++] = v[i];
    qsort(c, (size_t)k, sizeof *c, cmp_double);
    double m = k == 0 ? NAN : k % 2 ? c[k / 2] : 0.5 * (c[k / 2 - 1] + c[k / 2]);
    free(c);
    return m;
}

static void sb_num(sbuf *b, double v) {
    if (isnan(v) || isinf(v))
        sb_printf(b, "null");
    else
        sb_printf(b, "%.17g", v);
}

static void csv_num(sbuf *b, double v) {
    if (isnan(v))
        sb_printf(b, ",nan");
    else
        sb_printf(b, ",%.9g", v);
}

static void csv_text(sbuf *b, const char *s) {
    sb_printf(b, "\"");
    for (; *s; s++) sb_printf(b, *s == '"' ? "\"\"" : "%c", *s);
    sb_printf(b, "\"");
}

/* The model-independent reference maps, (T, H, W) of one sample of x. */
static void reference_map(int kind, const stx_tensor *x, bool ntchw, uint64_t seed, int clip,
                          float *map) {
    const int64_t *d = stx_tensor_shape(x);
    int64_t C = ntchw ? d[2] : d[1], T = ntchw ? d[1] : d[2], HW = d[3] * d[4];
    const float *xp = stx_tensor_data_const(x);
    if (kind == 1) {
        for (int64_t t = 0; t < T; t++)
            for (int64_t i = 0; i < HW; i++) {
                double s = 0;
                for (int64_t c = 0; c < C; c++)
                    s += xp[ntchw ? (t * C + c) * HW + i : (c * T + t) * HW + i];
                map[t * HW + i] = (float)(s / (double)C);
            }
        return;
    }
    /* splitmix64 stream seeded by (seed, clip) */
    uint64_t z = seed ^ (0xd1b54a32d192ed03ull * (uint64_t)(clip + 1));
    for (int64_t i = 0; i < T * HW; i++) {
        uint64_t r = (z += 0x9e3779b97f4a7c15ull);
        r = (r ^ (r >> 30)) * 0xbf58476d1ce4e5b9ull;
        r = (r ^ (r >> 27)) * 0x94d049bb133111ebull;
        r ^= r >> 31;
        map[i] = (float)((double)(r >> 11) * 0x1.0p-53);
    }
}

/* ---- plots ---------------------------------------------------------------------------------- */

static void fill_rect(uint8_t *img, int W, int H, int x0, int y0, int x1, int y1,
                      const uint8_t c[3]) {
    for (int y = y0 < 0 ? 0 : y0; y < y1 && y < H; y++)
        for (int x = x0 < 0 ? 0 : x0; x < x1 && x < W; x++)
            memcpy(img + ((size_t)y * W + x) * 3, c, 3);
}

/* A horizontal bar chart of one value per method (NaN: no bar, "n/a"). */
static int bar_chart(stx_context *ctx, const char *title, const char *const *names, const double *v,
                     int n, const char *path) {
    const int W = 720, row = 16, top = 30, H = top + n * row + 16;
    int64_t shape[3] = {H, W, 3};
    stx_tensor *img = NULL;
    if (stx_tensor_create(ctx, STX_DTYPE_UINT8, shape, 3, &img) != STX_OK)
        return cli_fail("%s", stx_context_last_error(ctx));
    uint8_t *p = stx_tensor_data(img);
    memset(p, 255, (size_t)W * H * 3);
    const uint8_t black[3] = {0, 0, 0}, bar[3] = {70, 110, 190}, grey[3] = {160, 160, 160};
    stx_render_text(img, 8, 8, title, 1, black);
    double lo = 0, hi = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i])) {
            if (v[i] < lo) lo = v[i];
            if (v[i] > hi) hi = v[i];
        }
    if (hi - lo <= 0) hi = lo + 1;
    const int x0 = 160, x1 = W - 90;
    int zero = x0 + (int)lround((0 - lo) / (hi - lo) * (x1 - x0));
    for (int i = 0; i < n; i++) {
        int y = top + i * row;
        stx_render_text(img, 8, y + 4, names[i], 1, black);
        char num[32];
        if (isnan(v[i])) {
            snprintf(num, sizeof num, "n/a");
            stx_render_text(img, zero + 4, y + 4, num, 1, grey);
            continue;
        }
        int xe = x0 + (int)lround((v[i] - lo) / (hi - lo) * (x1 - x0));
        fill_rect(p, W, H, xe < zero ? xe : zero, y + 2, xe < zero ? zero : xe + 1, y + row - 2,
                  bar);
        snprintf(num, sizeof num, "%.4g", v[i]);
        stx_render_text(img, (xe > zero ? xe : zero) + 4, y + 4, num, 1, black);
    }
    fill_rect(p, W, H, zero, top - 2, zero + 1, top + n * row + 2, black);
    int rc = 0;
    if (stx_write_png(ctx, img, path) != STX_OK) rc = cli_fail("%s", stx_context_last_error(ctx));
    stx_tensor_free(img);
    return rc;
}

static int line_plot(stx_context *ctx, const double *v, int64_t n, const char *title,
                     const char *xlabel, const char *ylabel, const char *path) {
    float *f = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!f) return cli_fail("out of memory");
    for (int64_t i = 0; i < n; i++) f[i] = (float)v[i];
    stx_tensor *img = NULL;
    int rc = 0;
    if (stx_render_plot(ctx, f, NULL, n, title, xlabel, ylabel, 640, 320, &img) != STX_OK ||
        stx_write_png(ctx, img, path) != STX_OK)
        rc = cli_fail("%s: %s", path, stx_context_last_error(ctx));
    stx_tensor_free(img);
    free(f);
    return rc;
}

/* ---- the command ---------------------------------------------------------------------------- */

typedef struct ds_opts {
    const char *model, *list, *out_dir, *methods, *metrics;
    long batch, clips, curve_steps, samples, masks, explain_steps, threads;
    long rand_layers, rand_clips;
    uint64_t seed;
    bool randomize, random_label;
    int window[3], stride[3]; /* -1: the method's default */
    int cells[3];             /* 0: the method's default */
} ds_opts;

/* "T,H,W" of sizes >= 0 */
static bool parse_triple(const char *s, int *v) {
    long a[3];
    char *e;
    const char *p = s;
    for (int k = 0; k < 3; k++) {
        a[k] = strtol(p, &e, 10);
        if (e == p || a[k] < 0 || a[k] > 100000 || (k < 2 && *e != ',') || (k == 2 && *e))
            return false;
        p = e + 1;
    }
    for (int k = 0; k < 3; k++) v[k] = (int)a[k];
    return true;
}

static int parse_args(int argc, char **argv, ds_opts *o, cli_facts *facts) {
    memset(o, 0, sizeof *o);
    o->out_dir = "evaluation";
    o->methods = "gradcam";
    o->metrics = "deletion,insertion";
    o->batch = 16;
    o->curve_steps = 20;
    o->rand_layers = -1;
    o->rand_clips = -1;
    for (int k = 0; k < 3; k++) o->window[k] = o->stride[k] = -1;
    int rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        long *lp = NULL;
        long lo = 1, hi = 1000000;
        int f = cli_fact_flag(argc, argv, &i, facts);
        if (f < 0) return 1;
        if (f > 0) continue;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            dataset_usage(stdout);
            return -1;
        } else if (strcmp(a, "--dataset") == 0 || strcmp(a, "--methods") == 0 ||
                   strcmp(a, "--metrics") == 0 || strcmp(a, "--metric") == 0 ||
                   strcmp(a, "--out-dir") == 0) {
            if (++i >= argc || !argv[i][0]) return cli_fail("%s needs a value", a);
            if (strcmp(a, "--dataset") == 0) o->list = argv[i];
            if (strcmp(a, "--out-dir") == 0) o->out_dir = argv[i];
            if (strcmp(a, "--methods") == 0) o->methods = argv[i];
            if (strcmp(a, "--metrics") == 0 || strcmp(a, "--metric") == 0) o->metrics = argv[i];
        } else if (strcmp(a, "--seed") == 0) {
            char *e = NULL;
            unsigned long long v = ++i < argc ? strtoull(argv[i], &e, 10) : 0;
            if (i >= argc || !e || *e || argv[i][0] == '-' || !argv[i][0])
                return cli_fail("--seed needs a non-negative integer");
            o->seed = v;
        } else if (strcmp(a, "--cells") == 0) {
            if (++i >= argc || !parse_triple(argv[i], o->cells) || !o->cells[0] || !o->cells[1] ||
                !o->cells[2])
                return cli_fail("--cells needs three counts T,H,W (>= 1)");
        } else if (strcmp(a, "--window") == 0 || strcmp(a, "--stride") == 0) {
            if (++i >= argc || !parse_triple(argv[i], a[2] == 'w' ? o->window : o->stride))
                return cli_fail("%s needs three sizes T,H,W (0: the whole axis / the window)", a);
        } else if (strcmp(a, "--randomize") == 0) {
            o->randomize = true;
        } else if (strcmp(a, "--random-label") == 0) {
            o->random_label = true;
        } else if (strcmp(a, "--batch") == 0) {
            lp = &o->batch;
            hi = 4096;
        } else if (strcmp(a, "--clips") == 0) {
            lp = &o->clips;
        } else if (strcmp(a, "--curve-steps") == 0) {
            lp = &o->curve_steps;
            hi = 100000;
        } else if (strcmp(a, "--samples") == 0) {
            lp = &o->samples;
        } else if (strcmp(a, "--masks") == 0) {
            lp = &o->masks;
        } else if (strcmp(a, "--explain-steps") == 0) {
            lp = &o->explain_steps;
        } else if (strcmp(a, "--threads") == 0) {
            lp = &o->threads;
            hi = 1024;
        } else if (strcmp(a, "--randomize-layers") == 0) {
            lp = &o->rand_layers;
            o->randomize = true;
        } else if (strcmp(a, "--randomize-clips") == 0) {
            lp = &o->rand_clips;
            o->randomize = true;
        } else if (a[0] == '-') {
            return cli_fail("evaluate --dataset: unknown option '%s' (see --dataset --help)", a);
        } else if (!o->model) {
            o->model = a;
        } else {
            return cli_fail("evaluate --dataset: unexpected argument '%s' (the clips come from "
                            "the list)",
                            a);
        }
        if (lp && (++i >= argc || !cli_parse_int(argv[i], lo, hi, lp)))
            return cli_fail("%s needs an integer in [%ld, %ld]", a, lo, hi);
    }
    if (!o->model || !o->list) {
        dataset_usage(stderr);
        return 2;
    }
    return 0;
}

typedef struct ds_state {
    ds_opts o;
    stx_context *ctx;
    stx_model *m;
    cli_resolved res;
    int n_clips, n_entries;
    clip_entry *ent;
    stx_tensor **x, **mask, **events;
    int64_t *targets;
    int n_methods, n_metrics;
    char *method_names[MAX_LIST], *metric_names[MAX_LIST];
    method_rec meth[MAX_LIST];
    int64_t curve_len[MAX_LIST]; /* per metric; 0: no curve */
    int64_t T, H, W, per;        /* map size */
    int n_layers, rand_steps, rand_clips;
    char **layer_names;
} ds_state;

static void eo_setup(const ds_state *s, const char *method, stx_explain_options *eo) {
    *eo = stx_explain_options_default();
    eo->method = method;
    eo->layout = s->res.pre.layout;
    eo->output = s->res.output_name;
    eo->batch = (int)s->o.batch;
    eo->seed = s->o.seed;
    if (s->o.samples) eo->samples = (int)s->o.samples;
    if (s->o.masks) eo->masks = (int)s->o.masks;
    if (s->o.explain_steps) eo->steps = (int)s->o.explain_steps;
    eo->num_threads = (int)s->o.threads;
    memcpy(eo->window, s->o.window, sizeof eo->window);
    memcpy(eo->stride, s->o.stride, sizeof eo->stride);
    if (s->o.cells[0]) memcpy(eo->cells, s->o.cells, sizeof eo->cells);
}

static bool is_ntchw(const ds_state *s) {
    return s->res.pre.layout && strcmp(s->res.pre.layout, "NTCHW") == 0;
}

static int load_clips(ds_state *s) {
    int n = s->n_clips;
    s->x = calloc((size_t)n, sizeof *s->x);
    s->mask = calloc((size_t)n, sizeof *s->mask);
    s->events = calloc((size_t)n, sizeof *s->events);
    s->targets = calloc((size_t)n, sizeof *s->targets);
    if (!s->x || !s->mask || !s->events || !s->targets) return cli_fail("out of memory");
    for (int i = 0; i < n; i++) {
        clip_entry *e = &s->ent[i];
        int rc = cli_load_input(s->ctx, e->clip, &s->res, &s->x[i]);
        if (rc) return rc;
        const int64_t *d = stx_tensor_shape(s->x[i]);
        int r = stx_tensor_rank(s->x[i]);
        if (r == 4) { /* one sample without its batch axis */
            int64_t nd[5] = {1, d[0], d[1], d[2], d[3]};
            stx_tensor_reshape(s->x[i], nd, 5);
            d = stx_tensor_shape(s->x[i]);
            r = 5;
        }
        if (r != 5 || d[0] != 1)
            return cli_fail("%s (list line %d): one clip (1,C,T,H,W) or uint8 frames (T,H,W,3) "
                            "expected",
                            e->clip, e->line);
        if (i > 0 && memcmp(d, stx_tensor_shape(s->x[0]), 5 * sizeof *d) != 0)
            return cli_fail("%s (list line %d): every clip must have the first clip's shape",
                            e->clip, e->line);
        s->T = is_ntchw(s) ? d[1] : d[2];
        s->H = d[3];
        s->W = d[4];
        s->per = s->T * s->H * s->W;
        const char *paths[2] = {e->mask, e->events};
        stx_tensor **dst[2] = {&s->mask[i], &s->events[i]};
        for (int k = 0; k < 2; k++) {
            if (!paths[k]) continue;
            if (stx_tensor_load_npy(s->ctx, paths[k], dst[k]) != STX_OK)
                return cli_fail("list line %d: %s", e->line, stx_context_last_error(s->ctx));
        }
        if (s->mask[i]) {
            const int64_t *md = stx_tensor_shape(s->mask[i]);
            int mr = stx_tensor_rank(s->mask[i]);
            if (mr < 3 || md[mr - 3] != s->T || md[mr - 2] != s->H || md[mr - 1] != s->W ||
                stx_tensor_numel(s->mask[i]) != s->per)
                return cli_fail("%s (list line %d): the mask must be (T,H,W) = (%lld,%lld,%lld), "
                                "the model input's",
                                e->mask, e->line, (long long)s->T, (long long)s->H,
                                (long long)s->W);
        }
        if (s->events[i] && stx_tensor_numel(s->events[i]) != s->T)
            return cli_fail("%s (list line %d): events must have one value per frame (%lld)",
                            e->events, e->line, (long long)s->T);
        if ((rc = cli_parse_targets(e->label ? e->label : "top", &s->res, &s->targets[i], 1)))
            return rc;
    }
    return 0;
}

static int method_alloc(ds_state *s, method_rec *r) {
    size_t n = (size_t)s->n_clips, k = (size_t)s->n_metrics;
    int64_t cl = 0;
    for (int j = 0; j < s->n_metrics; j++) cl += s->curve_len[j];
    r->time_ms = malloc(sizeof(double) * n);
    r->vals = malloc(sizeof(double) * n * k);
    r->curves = calloc(n * (size_t)(cl ? cl : 1), sizeof(double));
    r->maps = malloc(sizeof(float) * n * (size_t)s->per);
    r->used = malloc(sizeof(int64_t) * n);
    r->rl = malloc(sizeof(double) * n * 3);
    r->rl_class = malloc(sizeof(int64_t) * n);
    if (!r->time_ms || !r->vals || !r->curves || !r->maps || !r->used || !r->rl || !r->rl_class)
        return cli_fail("out of memory");
    for (size_t i = 0; i < n; i++) {
        r->time_ms[i] = NAN;
        r->used[i] = -1;
        r->rl_class[i] = -1;
        for (int q = 0; q < 3; q++) r->rl[i * 3 + q] = NAN;
    }
    for (size_t i = 0; i < n * k; i++) r->vals[i] = NAN;
    return 0;
}

static void method_free(method_rec *r) {
    free(r->refused);
    free(r->time_ms);
    free(r->vals);
    free(r->curves);
    free(r->maps);
    free(r->used);
    free(r->sim);
    free(r->rl);
    free(r->rl_class);
}

static int64_t curve_offset(const ds_state *s, int metric) {
    int64_t off = 0;
    for (int j = 0; j < metric; j++) off += s->curve_len[j];
    return off;
}

static int64_t curve_total(const ds_state *s) {
    return curve_offset(s, s->n_metrics);
}

static void refuse(method_rec *r, const char *what, const char *msg) {
    size_t n = strlen(what) + strlen(msg) + 4;
    free(r->refused);
    r->refused = malloc(n);
    if (r->refused) snprintf(r->refused, n, "%s: %s", what, msg);
}

/* Runs one method over every clip: maps, times, metrics (and the random-label
 * check). */
static int run_method(ds_state *s, stx_evaluator *ev, method_rec *r) {
    stx_explainer *e = NULL;
    if (r->kind == 0) {
        stx_explain_options eo;
        eo_setup(s, r->name, &eo);
        if (stx_explainer_create(s->m, &eo, stx_tensor_shape(s->x[0]), 5, &e) != STX_OK) {
            refuse(r, "refused", stx_context_last_error(s->ctx));
            return 0;
        }
    }
    int64_t ct = curve_total(s);
    int rc = 0;
    stx_tensor *ref = NULL;
    int64_t mshape[4] = {1, s->T, s->H, s->W};
    if (r->kind && stx_tensor_create(s->ctx, STX_DTYPE_FLOAT, mshape, 4, &ref) != STX_OK)
        rc = cli_fail("%s", stx_context_last_error(s->ctx));
    for (int i = 0; i < s->n_clips && !rc && !r->refused; i++) {
        stx_tensor *map = NULL;
        double t0 = cli_now_ms();
        if (r->kind == 0) {
            if (stx_explainer_run(e, s->x[i], &s->targets[i], NULL, &map) != STX_OK) {
                refuse(r, "failed", stx_explainer_last_error(e));
                break;
            }
            r->used[i] = stx_explainer_targets(e)[0];
        } else {
            reference_map(r->kind, s->x[i], is_ntchw(s), s->o.seed, i, stx_tensor_data(ref));
            map = ref;
            r->used[i] = s->targets[i];
        }
        r->time_ms[i] = cli_now_ms() - t0;
        if (stx_tensor_numel(map) != s->per) {
            refuse(r, "refused", "the map is not at the input's T x H x W");
            break;
        }
        memcpy(r->maps + (size_t)i * (size_t)s->per, stx_tensor_data_const(map),
               sizeof(float) * (size_t)s->per);
        stx_metrics_result *mr = NULL;
        if (stx_evaluator_run(ev, s->x[i], map, s->mask[i], s->events[i], &s->targets[i], NULL,
                              &mr) != STX_OK) {
            rc = cli_fail("%s (list line %d), method %s: %s", s->ent[i].clip, s->ent[i].line,
                          r->name, stx_evaluator_last_error(ev));
            break;
        }
        for (int j = 0; j < s->n_metrics && j < mr->n_metrics; j++) {
            const stx_metric_result *q = &mr->metrics[j];
            r->vals[(size_t)i * (size_t)s->n_metrics + (size_t)j] = q->per_sample[0];
            if (q->curve_len == s->curve_len[j] && q->curve_len && q->curves)
                memcpy(r->curves + i * ct + curve_offset(s, j), q->curves,
                       sizeof(double) * (size_t)q->curve_len);
        }
        stx_metrics_result_free(mr);
    }
    if (!rc && !r->refused && s->o.random_label) {
        for (int i = 0; i < s->n_clips && !rc; i++) {
            stx_similarity sim;
            stx_status st;
            if (r->kind == 0) {
                st = stx_sanity_random_label(e, s->x[i], &s->targets[i], s->o.seed + (uint64_t)i,
                                             &r->rl_class[i], &sim);
            } else {
                /* the reference maps do not depend on the class: the same map again */
                reference_map(r->kind, s->x[i], is_ntchw(s), s->o.seed, i, stx_tensor_data(ref));
                st = stx_map_similarity(s->ctx, ref, ref, &sim);
            }
            if (st != STX_OK) {
                rc = cli_fail("random-label check, %s, %s: %s", r->name, s->ent[i].clip,
                              r->kind == 0 ? stx_explainer_last_error(e)
                                           : stx_context_last_error(s->ctx));
                break;
            }
            r->rl[i * 3] = sim.spearman;
            r->rl[i * 3 + 1] = sim.spearman_abs;
            r->rl[i * 3 + 2] = sim.ssim;
        }
    }
    stx_tensor_free(ref);
    stx_explainer_free(e);
    return rc;
}

/* Cascading randomisation: for k = 1..rand_steps, the top k layers
 * re-initialised. */
static int run_randomization(ds_state *s) {
    int steps = s->rand_steps, nc = s->rand_clips, rc = 0;
    for (int mi = 0; mi < s->n_methods; mi++) {
        method_rec *r = &s->meth[mi];
        if (r->refused) continue;
        r->sim = malloc(sizeof(double) * (size_t)(steps + 1) * (size_t)nc * 3);
        if (!r->sim) return cli_fail("out of memory");
        for (int i = 0; i < nc; i++) /* k = 0: the original model, itself */
            for (int q = 0; q < 3; q++) r->sim[i * 3 + q] = 1.0;
    }
    stx_tensor *map1 = NULL, *orig = NULL;
    int64_t mshape[4] = {1, s->T, s->H, s->W};
    if (stx_tensor_create(s->ctx, STX_DTYPE_FLOAT, mshape, 4, &map1) != STX_OK ||
        stx_tensor_create(s->ctx, STX_DTYPE_FLOAT, mshape, 4, &orig) != STX_OK) {
        stx_tensor_free(map1);
        return cli_fail("%s", stx_context_last_error(s->ctx));
    }
    for (int k = 1; k <= steps && !rc; k++) {
        stx_model *rm = NULL;
        if (stx_model_randomize(s->m, k, s->o.seed, &rm) != STX_OK) {
            rc = cli_fail("%s", stx_context_last_error(s->ctx));
            break;
        }
        for (int mi = 0; mi < s->n_methods && !rc; mi++) {
            method_rec *r = &s->meth[mi];
            if (r->refused) continue;
            stx_explainer *e = NULL;
            if (r->kind == 0) {
                stx_explain_options eo;
                eo_setup(s, r->name, &eo);
                if (stx_explainer_create(rm, &eo, stx_tensor_shape(s->x[0]), 5, &e) != STX_OK) {
                    rc = cli_fail("randomised model (top %d layers), %s: %s", k, r->name,
                                  stx_context_last_error(s->ctx));
                    break;
                }
            }
            for (int i = 0; i < nc && !rc; i++) {
                stx_tensor *map = map1;
                if (r->kind == 0) {
                    /* the class explained by the original model, kept */
                    if (stx_explainer_run(e, s->x[i], &r->used[i], NULL, &map) != STX_OK) {
                        rc = cli_fail("randomised model (top %d layers), %s, %s: %s", k, r->name,
                                      s->ent[i].clip, stx_explainer_last_error(e));
                        break;
                    }
                } else {
                    reference_map(r->kind, s->x[i], is_ntchw(s), s->o.seed, i,
                                  stx_tensor_data(map1));
                }
                memcpy(stx_tensor_data(orig), r->maps + (size_t)i * (size_t)s->per,
                       sizeof(float) * (size_t)s->per);
                stx_similarity sim;
                if (stx_map_similarity(s->ctx, orig, map, &sim) != STX_OK) {
                    rc = cli_fail("similarity, %s: %s", r->name, stx_context_last_error(s->ctx));
                    break;
                }
                double *d = r->sim + ((size_t)k * (size_t)nc + (size_t)i) * 3;
                d[0] = sim.spearman;
                d[1] = sim.spearman_abs;
                d[2] = sim.ssim;
            }
            stx_explainer_free(e);
        }
        stx_model_free(rm);
        printf("randomised the top %d of %d layers (%s)\n", k, s->n_layers, s->layer_names[k - 1]);
        fflush(stdout);
    }
    stx_tensor_free(map1);
    stx_tensor_free(orig);
    return rc;
}

static int write_outputs(ds_state *s) {
    const char *dir = s->o.out_dir;
    int nm = s->n_metrics, nc = s->n_clips, rc = 0;
    int64_t ct = curve_total(s);
    /* results.csv */
    sbuf c = {0};
    sb_printf(&c, "method,clip,label,target,time_ms");
    for (int j = 0; j < nm; j++) sb_printf(&c, ",%s", s->metric_names[j]);
    sb_printf(&c, ",status\n");
    for (int mi = 0; mi < s->n_methods; mi++) {
        method_rec *r = &s->meth[mi];
        for (int i = 0; i <= nc; i++) {
            bool mean = i == nc;
            sb_printf(&c, "%s,", r->name);
            if (mean)
                sb_printf(&c, "mean,,");
            else {
                csv_text(&c, s->ent[i].clip);
                sb_printf(&c, ",%s,%lld", s->ent[i].label ? s->ent[i].label : "",
                          (long long)r->used[i]);
            }
            csv_num(&c, mean ? median_of(r->time_ms, nc) : r->time_ms[i]);
            for (int j = 0; j < nm; j++)
                csv_num(&c, mean ? mean_of(r->vals + j, nc, nm) : r->vals[(size_t)i * nm + j]);
            sb_printf(&c, ",");
            csv_text(&c, r->refused ? r->refused : "ok");
            sb_printf(&c, "\n");
        }
    }
    /* sanity.csv */
    sbuf sc = {0};
    bool sanity = s->o.randomize || s->o.random_label;
    if (sanity) {
        sb_printf(&sc, "method,clip,check,layers,layer,spearman,spearman_abs,ssim\n");
        for (int mi = 0; mi < s->n_methods; mi++) {
            method_rec *r = &s->meth[mi];
            if (r->refused) continue;
            for (int k = 0; r->sim && k <= s->rand_steps; k++)
                for (int i = 0; i <= s->rand_clips; i++) {
                    bool mean = i == s->rand_clips;
                    sb_printf(&sc, "%s,", r->name);
                    if (mean)
                        sb_printf(&sc, "mean");
                    else
                        csv_text(&sc, s->ent[i].clip);
                    sb_printf(&sc, ",randomization,%d,%s", k, k ? s->layer_names[k - 1] : "");
                    for (int q = 0; q < 3; q++)
                        csv_num(&sc, mean ? mean_of(r->sim + (size_t)k * s->rand_clips * 3 + q,
                                                    s->rand_clips, 3)
                                          : r->sim[((size_t)k * s->rand_clips + i) * 3 + q]);
                    sb_printf(&sc, "\n");
                }
            if (s->o.random_label)
                for (int i = 0; i <= nc; i++) {
                    bool mean = i == nc;
                    sb_printf(&sc, "%s,", r->name);
                    if (mean)
                        sb_printf(&sc, "mean");
                    else
                        csv_text(&sc, s->ent[i].clip);
                    sb_printf(&sc, ",random-label,,");
                    for (int q = 0; q < 3; q++)
                        csv_num(&sc, mean ? mean_of(r->rl + q, nc, 3) : r->rl[i * 3 + q]);
                    sb_printf(&sc, "\n");
                }
        }
    }
    /* results.json */
    sbuf j = {0};
    sb_printf(&j, "{\n  \"model\": ");
    sb_str(&j, s->o.model);
    sb_printf(&j, ",\n  \"dataset\": ");
    sb_str(&j, s->o.list);
    sb_printf(&j,
              ",\n  \"clips\": %d,\n  \"batch\": %ld,\n  \"seed\": %llu,\n  "
              "\"metrics\": [",
              nc, s->o.batch, (unsigned long long)s->o.seed);
    for (int q = 0; q < nm; q++) {
        sb_printf(&j, q ? ", " : "");
        sb_str(&j, s->metric_names[q]);
    }
    sb_printf(&j, "],\n  \"methods\": [");
    for (int mi = 0; mi < s->n_methods; mi++) {
        method_rec *r = &s->meth[mi];
        sb_printf(&j, "%s\n    {\"name\": ", mi ? "," : "");
        sb_str(&j, r->name);
        sb_printf(&j, ", \"status\": ");
        sb_str(&j, r->refused ? r->refused : "ok");
        sb_printf(&j, ", \"time_ms\": ");
        sb_num(&j, median_of(r->time_ms, nc));
        sb_printf(&j, ", \"mean\": {");
        for (int q = 0; q < nm; q++) {
            sb_printf(&j, q ? ", " : "");
            sb_str(&j, s->metric_names[q]);
            sb_printf(&j, ": ");
            sb_num(&j, mean_of(r->vals + q, nc, nm));
        }
        sb_printf(&j, "},\n     \"clips\": [");
        for (int i = 0; i < nc && !r->refused; i++) {
            sb_printf(&j, "%s\n      {\"clip\": ", i ? "," : "");
            sb_str(&j, s->ent[i].clip);
            sb_printf(&j, ", \"target\": %lld, \"time_ms\": ", (long long)r->used[i]);
            sb_num(&j, r->time_ms[i]);
            for (int q = 0; q < nm; q++) {
                sb_printf(&j, ", ");
                sb_str(&j, s->metric_names[q]);
                sb_printf(&j, ": ");
                sb_num(&j, r->vals[(size_t)i * nm + q]);
            }
            for (int q = 0; q < nm; q++) {
                if (!s->curve_len[q]) continue;
                sb_printf(&j, ", \"%s_curve\": [", s->metric_names[q]);
                const double *cv = r->curves + i * ct + curve_offset(s, q);
                for (int64_t p = 0; p < s->curve_len[q]; p++) {
                    sb_printf(&j, p ? ", " : "");
                    sb_num(&j, cv[p]);
                }
                sb_printf(&j, "]");
            }
            if (s->o.random_label) {
                sb_printf(&j, ", \"random_label\": {\"class\": %lld, \"spearman\": ",
                          (long long)r->rl_class[i]);
                sb_num(&j, r->rl[i * 3]);
                sb_printf(&j, ", \"spearman_abs\": ");
                sb_num(&j, r->rl[i * 3 + 1]);
                sb_printf(&j, ", \"ssim\": ");
                sb_num(&j, r->rl[i * 3 + 2]);
                sb_printf(&j, "}");
            }
            sb_printf(&j, "}");
        }
        sb_printf(&j, "]");
        if (r->sim) {
            sb_printf(&j, ",\n     \"randomization\": [");
            for (int k = 0; k <= s->rand_steps; k++) {
                sb_printf(&j, "%s\n      {\"layers\": %d, \"layer\": ", k ? "," : "", k);
                sb_str(&j, k ? s->layer_names[k - 1] : NULL);
                const char *qn[3] = {"spearman", "spearman_abs", "ssim"};
                for (int q = 0; q < 3; q++) {
                    sb_printf(&j, ", \"%s\": ", qn[q]);
                    sb_num(&j,
                           mean_of(r->sim + (size_t)k * s->rand_clips * 3 + q, s->rand_clips, 3));
                }
                sb_printf(&j, "}");
            }
            sb_printf(&j, "]");
        }
        sb_printf(&j, "}");
    }
    sb_printf(&j, "\n  ]\n}\n");
    if (c.oom || j.oom || sc.oom) rc = cli_fail("out of memory");
    char *p = NULL;
    if (!rc && (!(p = path_join(dir, "results.csv")) || write_file(p, c.s, c.n))) rc = 1;
    free(p);
    p = NULL;
    if (!rc && (!(p = path_join(dir, "results.json")) || write_file(p, j.s, j.n))) rc = 1;
    free(p);
    p = NULL;
    if (!rc && sanity && (!(p = path_join(dir, "sanity.csv")) || write_file(p, sc.s, sc.n))) rc = 1;
    free(p);
    free(c.s);
    free(j.s);
    free(sc.s);
    /* plots: a bar chart per metric and time, mean curves, randomisation curves
     */
    double *v = malloc(sizeof(double) * (size_t)(s->n_methods + 1));
    double *curve = malloc(sizeof(double) * (size_t)(ct + s->rand_steps + 2));
    char name[512];
    if (!v || !curve) rc = rc ? rc : cli_fail("out of memory");
    for (int q = -1; q < nm && !rc; q++) {
        for (int mi = 0; mi < s->n_methods; mi++) {
            method_rec *r = &s->meth[mi];
            v[mi] = r->refused ? NAN
                    : q < 0    ? median_of(r->time_ms, nc)
                               : mean_of(r->vals + q, nc, nm);
        }
        const char *mn = q < 0 ? "time_ms" : s->metric_names[q];
        char title[256];
        snprintf(title, sizeof title, "%s per method (%s over %d clips)", mn,
                 q < 0 ? "median" : "mean", nc);
        snprintf(name, sizeof name, "%s/bar_%s.png", dir, mn);
        rc = bar_chart(s->ctx, title, (const char *const *)s->method_names, v, s->n_methods, name);
    }
    for (int q = 0; q < nm && !rc; q++) {
        if (!s->curve_len[q]) continue;
        for (int mi = 0; mi < s->n_methods && !rc; mi++) {
            method_rec *r = &s->meth[mi];
            if (r->refused) continue;
            for (int64_t p2 = 0; p2 < s->curve_len[q]; p2++)
                curve[p2] = mean_of(r->curves + curve_offset(s, q) + p2, nc, (int)ct);
            char title[256];
            snprintf(title, sizeof title, "%s: mean %s curve over %d clips", r->name,
                     s->metric_names[q], nc);
            snprintf(name, sizeof name, "%s/curve_%s_%s.png", dir, s->metric_names[q], r->name);
            rc = line_plot(s->ctx, curve, s->curve_len[q], title, "step", "score", name);
        }
    }
    for (int mi = 0; mi < s->n_methods && !rc; mi++) {
        method_rec *r = &s->meth[mi];
        if (!r->sim) continue;
        for (int k = 0; k <= s->rand_steps; k++)
            curve[k] = mean_of(r->sim + (size_t)k * s->rand_clips * 3, s->rand_clips, 3);
        char title[256];
        snprintf(title, sizeof title, "%s: Spearman to the original map, top k layers randomised",
                 r->name);
        snprintf(name, sizeof name, "%s/sanity_%s.png", dir, r->name);
        rc = line_plot(s->ctx, curve, s->rand_steps + 1, title, "k", "spearman", name);
    }
    free(v);
    free(curve);
    return rc;
}

int cmd_evaluate_dataset(int argc, char **argv) {
    ds_state s;
    memset(&s, 0, sizeof s);
    cli_facts facts;
    memset(&facts, 0, sizeof facts);
    int rc = parse_args(argc, argv, &s.o, &facts);
    if (rc) {
        cli_facts_free(&facts);
        return rc < 0 ? 0 : rc;
    }
    stx_evaluator *ev = NULL;
    if ((s.n_methods = split_list(s.o.methods, s.method_names, MAX_LIST)) < 0 ||
        (s.n_metrics = split_list(s.o.metrics, s.metric_names, MAX_LIST)) < 0) {
        s.n_methods = s.n_methods < 0 ? 0 : s.n_methods;
        s.n_metrics = 0;
        rc = cli_fail("--methods and --metrics need comma-separated names (at most %d)", MAX_LIST);
        goto done;
    }
    for (int a = 0; a < s.n_methods; a++)
        for (int b = 0; b < a; b++)
            if (strcmp(s.method_names[a], s.method_names[b]) == 0) {
                rc = cli_fail("--methods: '%s' is given twice", s.method_names[a]);
                goto done;
            }
    if ((rc = dataset_list_read(s.o.list, &s.ent, &s.n_entries))) goto done;
    s.n_clips = s.n_entries;
    if (s.o.clips && s.o.clips < s.n_clips) s.n_clips = (int)s.o.clips;
    if ((rc = cli_context((int)s.o.threads, &s.ctx))) goto done;
    if ((rc = cli_load_model(s.ctx, s.o.model, &s.m))) goto done;
    if ((rc = cli_resolve_facts(s.m, &facts, true, &s.res))) goto done;
    if ((rc = load_clips(&s))) goto done;
    if (mkdir(s.o.out_dir, 0777) != 0) {
        struct stat sb;
        if (stat(s.o.out_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            rc = cli_fail("--out-dir %s: cannot create the folder", s.o.out_dir);
            goto done;
        }
    }
    stx_metrics_options mo = stx_metrics_options_default();
    mo.metrics = s.o.metrics;
    mo.layout = s.res.pre.layout;
    mo.output = s.res.output_name;
    mo.batch = (int)s.o.batch;
    mo.steps = (int)s.o.curve_steps;
    mo.seed = s.o.seed;
    mo.num_threads = (int)s.o.threads;
    if (stx_evaluator_create(s.ctx, s.m, &mo, stx_tensor_shape(s.x[0]), 5, &ev) != STX_OK) {
        rc = cli_fail("%s", stx_context_last_error(s.ctx));
        goto done;
    }
    for (int j = 0; j < s.n_metrics; j++) {
        const char *nm = s.metric_names[j];
        if (strcmp(nm, "deletion") == 0 || strcmp(nm, "insertion") == 0)
            s.curve_len[j] = s.o.curve_steps + 1;
    }
    for (int mi = 0; mi < s.n_methods; mi++) {
        method_rec *r = &s.meth[mi];
        r->name = s.method_names[mi];
        r->kind = strcmp(r->name, "intensity") == 0 ? 1 : strcmp(r->name, "random") == 0 ? 2 : 0;
        if ((rc = method_alloc(&s, r))) goto done;
    }
    for (int mi = 0; mi < s.n_methods && !rc; mi++) {
        method_rec *r = &s.meth[mi];
        rc = run_method(&s, ev, r);
        if (rc) break;
        if (r->refused) {
            printf("%s: %s\n", r->name, r->refused);
        } else {
            printf("%s: %.1f ms/clip", r->name, median_of(r->time_ms, s.n_clips));
            for (int j = 0; j < s.n_metrics; j++)
                printf(", %s %.4g", s.metric_names[j],
                       mean_of(r->vals + j, s.n_clips, s.n_metrics));
            if (s.o.random_label)
                printf(", random-label spearman %.3g", mean_of(r->rl, s.n_clips, 3));
            printf("\n");
        }
        fflush(stdout);
    }
    if (rc) goto done;
    if (s.o.randomize) {
        s.n_layers = stx_model_num_layers(s.m);
        if (s.n_layers < 1) {
            rc = cli_fail("%s: --randomize: the model has no parameterised layer", s.o.model);
            goto done;
        }
        s.rand_steps = s.o.rand_layers >= 0 && s.o.rand_layers < s.n_layers ? (int)s.o.rand_layers
                                                                            : s.n_layers;
        s.rand_clips =
            s.o.rand_clips > 0 && s.o.rand_clips < s.n_clips ? (int)s.o.rand_clips : s.n_clips;
        s.layer_names = calloc((size_t)s.n_layers, sizeof(char *));
        if (!s.layer_names) {
            rc = cli_fail("out of memory");
            goto done;
        }
        for (int k = 0; k < s.n_layers; k++) {
            const char *ln = stx_model_layer_name(s.m, k);
            if (!(s.layer_names[k] = strdup(ln ? ln : "?"))) {
                rc = cli_fail("out of memory");
                goto done;
            }
        }
        if ((rc = run_randomization(&s))) goto done;
        for (int mi = 0; mi < s.n_methods; mi++) {
            method_rec *r = &s.meth[mi];
            if (!r->sim) continue;
            printf("%s: spearman by layers randomised:", r->name);
            for (int k = 0; k <= s.rand_steps; k++)
                printf(" %.3g", mean_of(r->sim + (size_t)k * s.rand_clips * 3, s.rand_clips, 3));
            printf("\n");
        }
    }
    if ((rc = write_outputs(&s))) goto done;
    printf("results: %s/results.csv, %s/results.json\n", s.o.out_dir, s.o.out_dir);
done:
    stx_evaluator_free(ev);
    for (int mi = 0; mi < s.n_methods; mi++) {
        method_free(&s.meth[mi]);
        free(s.method_names[mi]);
    }
    for (int j = 0; j < s.n_metrics; j++) free(s.metric_names[j]);
    for (int i = 0; i < s.n_clips && s.x; i++) {
        stx_tensor_free(s.x[i]);
        stx_tensor_free(s.mask[i]);
        stx_tensor_free(s.events[i]);
    }
    if (s.layer_names)
        for (int k = 0; k < s.n_layers; k++) free(s.layer_names[k]);
    free(s.layer_names);
    free(s.x);
    free(s.mask);
    free(s.events);
    free(s.targets);
    dataset_list_free(s.ent, s.n_entries);
    stx_model_free(s.m);
    stx_context_free(s.ctx);
    cli_facts_free(&facts);
    return rc;
}
