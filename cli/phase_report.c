/* phase_report.c: the pictures and the offline HTML report of `stx phase` (what phase.h's
 * phase_result holds, drawn). docs/phase.md ("Pictures and report") says the same for users.
 *
 * Files. All are written atomically (the image writers and write_file go through a temporary
 * file and a rename); when a later file fails, the files this call already wrote are removed
 * again, so DIR holds the whole report or none of it.
 *
 * timeline.png. N frames get a data area of Wd columns starting at x = 112 (TL_LEFT); the image
 * is 112 + Wd + 8 wide.
 * - N <= 1600: Wd = k N with k = floor(1600 / N), every frame k columns wide.
 * - N > 1600: Wd = 1600; column x shows the frames [floor(x N / Wd), floor((x + 1) N / Wd)).
 * Rows from the top (y, height):
 * - title (0, 16);
 * - predicted phase ribbon (16, 20): the phase's palette colour; a binned column shows the most
 *   frequent phase of its frames (ties: the smaller index; a value outside 0..P-1 is "none",
 *   light grey, and loses ties);
 * - ground-truth ribbon (40, 20), only with truth (without it the rows below move up by 24);
 * - confidence (64, 32): light grey background (240) and a dark grey (80) bar from the bottom,
 *   round(32 c) pixels tall, c = the probability of the predicted phase (mean over a bin);
 * - one heat strip per moment (from 100, 12 tall, 16 apart): the moment's temporal attribution
 *   over frames 0..moment, positive part only, divided by its largest value, in inferno (0 black,
 *   the most attributed frame the brightest yellow; a bin shows its largest value); columns
 *   after the moment are light grey (230); black 3-pixel ticks in the 4-pixel gap under the
 *   strip mark the key frames;
 * - the time axis (ticks at round steps of seconds, or of frames without a rate), then the
 *   legend (a swatch per phase and the attribution colour bar).
 *
 * keyframes_<frame>.png: a moment's key frames (strongest first), at most 8 per row.
 * - A header of 16 + 12 L pixels: the moment and its phase, then its note in L lines (1 to 3:
 *   wrapped at spaces to the image width, 6 px per character; see wrap()).
 * - Each key frame is a block: 12 px of label ("t=<frame> w=<weight>"), the frame, a 4-pixel
 *   gap, the map overlay, a 4-pixel gap. Frames are enlarged s = max(1, floor(160 / max(h, w)))
 *   times by pixel repetition (cw = s w, ch = s h).
 * - Block (row r, column c) starts at x = 4 + c (cw + 4), y = 16 + 12 L + r (2 ch + 20); the
 *   image is max(240, 4 + C (cw + 4)) wide and 16 + 12 L + R (2 ch + 20) tall (C columns, R
 *   rows).
 * - The overlay shows each key frame's positive evidence: jet and alpha 0.5 as the project's
 *   overlays (docs/video.md), of min(max(v, 0) / q, 1) with q the 99th percentile of max(v, 0)
 *   over the frame (its maximum when that is 0). Maps are signed pixel attributions: min-max
 *   scaling would tint a whole frame by its negative pixels, and a few outlier pixels would leave
 *   the rest dark; each frame is scaled on its own (where in that frame; the temporal weight in
 *   the label says how much).
 * - A second moment at the same frame gets keyframes_<frame>_<moment index>.png.
 *
 * thumbs_<k>.png: the thumbnails (every thumb_every-th frame; at most 1600 of them: beyond that
 * every ceil(n / 1600)-th thumbnail is kept), each downscaled to at most 128 px wide
 * (report_util.c's nearest-neighbour rule), 16 per row and 256 per sheet, in frame order.
 *
 * report.html: one page, offline (no network, no external script; the PNGs beside it): the
 * timeline with a cursor, a slider over every frame (arrow keys step, shift: 10 frames, n/p: next
 * or previous moment, a click on the timeline jumps there), the phase, confidence, every phase's
 * probability and the truth at the cursor, the nearest thumbnail, the key-frame grid of the
 * nearest explained moment, one entry per moment with jump links (also to its key frames), and
 * the scores. Its data (phases per frame, probabilities, moments, attributions) is one JSON block
 * (<script type="application/json" id="data">); #f<frame> in the address opens that frame.
 *
 * Phase colours: Okabe & Ito's colour-blind-safe qualitative palette (Color Universal Design,
 * 2008) in a fixed order: orange, sky blue, bluish green, yellow, blue, vermillion, reddish
 * purple, black; phase k gets colour k mod 8 (more than 8 phases repeat colours); a frame
 * without a phase is light grey (221). The PNGs and the HTML use the same table.
 */
#include "cli.h"
#include "phase.h"
#include "report_util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define N_PALETTE 8
static const uint8_t PALETTE[N_PALETTE][3] = {
    {230, 159, 0},   /* orange #E69F00 */
    {86, 180, 233},  /* sky blue #56B4E9 */
    {0, 158, 115},   /* bluish green #009E73 */
    {240, 228, 66},  /* yellow #F0E442 */
    {0, 114, 178},   /* blue #0072B2 */
    {213, 94, 0},    /* vermillion #D55E00 */
    {204, 121, 167}, /* reddish purple #CC79A7 */
    {0, 0, 0},       /* black #000000 */
};
static const uint8_t NO_PHASE[3] = {221, 221, 221};
static const uint8_t BLACK[3] = {0, 0, 0};
static const uint8_t CONF_BG[3] = {240, 240, 240}, CONF_BAR[3] = {80, 80, 80};
static const uint8_t FUTURE[3] = {230, 230, 230};

enum {
    TL_MAX_W = 1600, /* data columns at most */
    TL_LEFT = 112,   /* label gutter */
    TL_RIGHT = 8,
    TL_TITLE = 16,
    TL_RIBBON = 20,
    TL_GAP = 4,
    TL_CONF = 32,
    TL_STRIP = 12,
    TL_AXIS = 20,
    TL_LEGEND_ROW = 14,
    KF_PER_ROW = 8,
    KF_PAD = 4,
    KF_NOTE_LINES = 3,
    KF_LABEL = 12,
    KF_CELL = 160, /* frames are enlarged to about this size */
    TH_MAX_W = 128,
    TH_COLS = 16,
    TH_PER_SHEET = 256,
    TH_MAX_COUNT = 1600, /* thumbnails at most (one per timeline column) */
};

static const uint8_t *phase_rgb(int p, int n_phases) {
    if (p < 0 || p >= n_phases) return NO_PHASE;
    return PALETTE[p % N_PALETTE];
}

/* ---- drawing into a uint8 (H, W, 3) tensor ------------------------------------------------ */

typedef struct canvas {
    stx_tensor *t;
    uint8_t *p;
    int w, h;
} canvas;

static int canvas_new(stx_context *ctx, int w, int h, canvas *c) {
    int64_t d[3] = {h, w, 3};
    if (stx_tensor_create(ctx, STX_DTYPE_UINT8, d, 3, &c->t) != STX_OK)
        return cli_fail("out of memory for a %dx%d picture", w, h);
    c->p = stx_tensor_data(c->t);
    c->w = w;
    c->h = h;
    memset(c->p, 255, (size_t)w * h * 3);
    return 0;
}

static void fill(canvas *c, int x, int y, int w, int h, const uint8_t rgb[3]) {
    int x1 = x + w > c->w ? c->w : x + w, y1 = y + h > c->h ? c->h : y + h;
    for (int yy = y < 0 ? 0 : y; yy < y1; yy++)
        for (int xx = x < 0 ? 0 : x; xx < x1; xx++)
            memcpy(c->p + ((size_t)yy * c->w + xx) * 3, rgb, 3);
}

/* Text clipped to at most max_w pixels (whole characters). */
static int text(canvas *c, int x, int y, const char *s, int max_w) {
    char buf[256];
    size_t n = max_w > 0 ? (size_t)(max_w + 1) / 6 : sizeof buf - 1;
    size_t len = s ? strlen(s) : 0;
    if (n > sizeof buf - 1) n = sizeof buf - 1;
    if (n > len) n = len;
    if (n) memcpy(buf, s, n);
    buf[n] = 0;
    return stx_render_text(c->t, x, y, buf, 1, BLACK);
}

/* Writes c to dir/name, remembering the path for clean-up. */
typedef struct written {
    char **paths;
    int n, cap;
} written;

static int remember(written *wr, char *path) {
    if (wr->n == wr->cap) {
        int cap = wr->cap ? 2 * wr->cap : 16;
        char **p = realloc(wr->paths, sizeof *p * (size_t)cap);
        if (!p) return 1;
        wr->paths = p;
        wr->cap = cap;
    }
    wr->paths[wr->n++] = path;
    return 0;
}

static int save_png(stx_context *ctx, const canvas *c, const char *dir, const char *name,
                    written *wr) {
    char *path = path_join(dir, name);
    if (!path) return cli_fail("out of memory");
    if (stx_write_png(ctx, c->t, path) != STX_OK) {
        int rc = cli_fail("%s", stx_context_last_error(ctx));
        free(path);
        return rc;
    }
    if (remember(wr, path)) {
        unlink(path);
        free(path);
        return cli_fail("out of memory");
    }
    return 0;
}

/* ---- the timeline ------------------------------------------------------------------------- */

typedef struct tl_geom {
    int64_t n;
    int wd; /* data columns */
    int y_pred, y_truth, y_conf, y_strip, y_axis, y_legend;
    int legend_rows, W, H;
} tl_geom;

static int64_t col_first(const tl_geom *g, int x) {
    return (int64_t)x * g->n / g->wd;
}

/* One past the last frame of column x (a column shows at least its first frame). */
static int64_t col_end(const tl_geom *g, int x) {
    int64_t b = col_first(g, x + 1), a = col_first(g, x);
    return b > a ? b : a + 1;
}

/* Central column of frame f (for ticks). */
static int frame_col(const tl_geom *g, int64_t f) {
    return (int)(((2 * f + 1) * (int64_t)g->wd) / (2 * g->n));
}

/* Width of one legend entry: swatch, gap, name, spacing. */
static int legend_entry_w(const char *name) {
    size_t n = strlen(name ? name : "");
    if (n > 30) n = 30;
    return 10 + 4 + (int)(6 * n) + 12;
}

static const char *phase_name(const phase_result *r, int p, char *buf, size_t n) {
    if (p >= 0 && p < r->n_phases && r->phase_names && r->phase_names[p]) return r->phase_names[p];
    snprintf(buf, n, "phase %d", p);
    return buf;
}

static void tl_layout(const phase_result *r, tl_geom *g) {
    g->n = r->n_frames;
    g->wd = r->n_frames <= TL_MAX_W ? (int)(TL_MAX_W / r->n_frames * r->n_frames) : TL_MAX_W;
    g->W = TL_LEFT + g->wd + TL_RIGHT;
    int y = TL_TITLE;
    g->y_pred = y;
    y += TL_RIBBON + TL_GAP;
    g->y_truth = -1;
    if (r->truth) {
        g->y_truth = y;
        y += TL_RIBBON + TL_GAP;
    }
    g->y_conf = y;
    y += TL_CONF + TL_GAP;
    g->y_strip = y;
    y += r->n_moments * (TL_STRIP + TL_GAP);
    g->y_axis = y;
    y += TL_AXIS;
    g->y_legend = y;
    /* legend: the phases, then the colour bar with its labels (200 px) */
    int x = 4, rows = 1;
    char buf[32];
    for (int p = 0; p <= r->n_phases; p++) {
        int ew = p < r->n_phases ? legend_entry_w(phase_name(r, p, buf, sizeof buf)) : 200;
        if (x + ew > g->W && x > 4) {
            rows++;
            x = 4;
        }
        x += ew;
    }
    g->legend_rows = rows;
    g->H = y + rows * TL_LEGEND_ROW + 4;
}

/* Time label of frame f: h:mm:ss / m:ss with a rate, else the frame number. */
static void time_label(int64_t f, double fps, char *buf, size_t n) {
    if (!(fps > 0)) {
        snprintf(buf, n, "%lld", (long long)f);
        return;
    }
    long long s = (long long)floor((double)f / fps + 1e-9);
    if (s >= 3600)
        snprintf(buf, n, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, n, "%lld:%02lld", s / 60, s % 60);
}

/* Frames between axis ticks: a round number of seconds (or frames) giving at most 10 ticks. */
static double tick_step(int64_t n, double fps) {
    static const double secs[] = {1,   2,   5,    10,   15,   30,   60,    120,  300,
                                  600, 900, 1200, 1800, 3600, 7200, 14400, 36000};
    if (fps > 0) {
        for (size_t i = 0; i < sizeof secs / sizeof *secs; i++)
            if ((double)n / (secs[i] * fps) <= 10) return secs[i] * fps;
        return (double)n;
    }
    for (double m = 1;; m *= 10)
        for (int k = 0; k < 3; k++) {
            double s = m * (k == 0 ? 1 : k == 1 ? 2 : 5);
            if ((double)n / s <= 10) return s;
        }
}

static float positive(float v) {
    return isfinite(v) && v > 0 ? v : 0;
}

static int draw_timeline(stx_context *ctx, const phase_result *r, const tl_geom *g, const char *dir,
                         written *wr) {
    canvas c = {0};
    int P = r->n_phases;
    int *count = calloc((size_t)P + 1, sizeof *count);
    if (!count) return cli_fail("out of memory");
    int rc = canvas_new(ctx, g->W, g->H, &c);
    if (rc) {
        free(count);
        return rc;
    }
    char buf[256], nb[32];
    snprintf(buf, sizeof buf, "stx phase: %s (%lld frames%s", r->video ? r->video : "",
             (long long)r->n_frames, r->fps > 0 ? "" : ")");
    if (r->fps > 0) {
        char tl[32];
        time_label(r->n_frames, r->fps, tl, sizeof tl);
        size_t k = strlen(buf);
        snprintf(buf + k, sizeof buf - k, ", %s at %.4g fps)", tl, r->fps);
    }
    text(&c, 4, 4, buf, g->W - 8);
    text(&c, 4, g->y_pred + 6, "predicted", TL_LEFT - 8);
    if (g->y_truth >= 0) text(&c, 4, g->y_truth + 6, "truth", TL_LEFT - 8);
    text(&c, 4, g->y_conf + 12, "confidence", TL_LEFT - 8);
    fill(&c, TL_LEFT, g->y_conf, g->wd, TL_CONF, CONF_BG);
    for (int x = 0; x < g->wd; x++) {
        int64_t a = col_first(g, x), b = col_end(g, x);
        /* ribbons: the most frequent phase of the bin */
        for (int row = 0; row < 2; row++) {
            const int *ph = row == 0 ? r->pred : r->truth;
            int y = row == 0 ? g->y_pred : g->y_truth;
            if (!ph) continue;
            memset(count, 0, sizeof *count * ((size_t)P + 1));
            for (int64_t f = a; f < b; f++) count[ph[f] >= 0 && ph[f] < P ? ph[f] : P]++;
            int best = P;
            for (int p = 0; p < P; p++)
                if (count[p] > count[best] || (count[p] == count[best] && best == P && count[p]))
                    best = p;
            fill(&c, TL_LEFT + x, y, 1, TL_RIBBON, phase_rgb(best, P));
        }
        /* confidence: mean probability of the predicted phase */
        double s = 0;
        for (int64_t f = a; f < b; f++) {
            int p = r->pred[f];
            float v = p >= 0 && p < P && r->prob ? r->prob[(size_t)f * P + p] : 0;
            s += isfinite(v) ? v : 0;
        }
        double conf = s / (double)(b - a);
        int hb = (int)lround(conf * TL_CONF);
        hb = hb < 0 ? 0 : hb > TL_CONF ? TL_CONF : hb;
        fill(&c, TL_LEFT + x, g->y_conf + TL_CONF - hb, 1, hb, CONF_BAR);
    }
    /* heat strips */
    for (int m = 0; m < r->n_moments; m++) {
        const phase_moment *mo = &r->moments[m];
        int y = g->y_strip + m * (TL_STRIP + TL_GAP);
        const char *why = mo->why ? mo->why : "";
        snprintf(buf, sizeof buf, "%lld %s", (long long)mo->frame, why);
        text(&c, 4, y + 2, buf, TL_LEFT - 8);
        float mx = 0;
        for (int64_t f = 0; f <= mo->frame; f++)
            mx = positive(mo->temporal[f]) > mx ? positive(mo->temporal[f]) : mx;
        for (int x = 0; x < g->wd; x++) {
            int64_t a = col_first(g, x), b = col_end(g, x);
            if (a > mo->frame) {
                fill(&c, TL_LEFT + x, y, 1, TL_STRIP, FUTURE);
                continue;
            }
            float v = 0;
            for (int64_t f = a; f < b && f <= mo->frame; f++)
                v = positive(mo->temporal[f]) > v ? positive(mo->temporal[f]) : v;
            uint8_t rgb[3];
            stx_colormap_rgb(STX_CMAP_INFERNO, mx > 0 ? v / mx : 0, rgb);
            fill(&c, TL_LEFT + x, y, 1, TL_STRIP, rgb);
        }
        for (int k = 0; k < mo->n_keyframes; k++)
            fill(&c, TL_LEFT + frame_col(g, mo->keyframes[k].frame), y + TL_STRIP, 1, 3, BLACK);
    }
    /* axis */
    {
        int y = g->y_axis;
        fill(&c, TL_LEFT, y, g->wd, 1, BLACK);
        double step = tick_step(r->n_frames, r->fps);
        for (int i = 0;; i++) {
            int64_t f = (int64_t)llround(i * step);
            if (f >= r->n_frames) break;
            int x = TL_LEFT + frame_col(g, f);
            fill(&c, x, y, 1, 4, BLACK);
            time_label(f, r->fps, buf, sizeof buf);
            int tw = 6 * (int)strlen(buf) - 1;
            int tx = x - tw / 2;
            if (tx + tw > g->W - 2) tx = g->W - 2 - tw;
            if (tx < TL_LEFT - 4) tx = TL_LEFT - 4;
            text(&c, tx, y + 7, buf, 0);
        }
        text(&c, 4, y + 7, r->fps > 0 ? "time" : "frame", TL_LEFT - 8);
    }
    /* legend */
    {
        int x = 4, y = g->y_legend;
        for (int p = 0; p <= P; p++) {
            const char *name = p < P ? phase_name(r, p, nb, sizeof nb) : NULL;
            int ew = p < P ? legend_entry_w(name) : 200;
            if (x + ew > g->W && x > 4) {
                x = 4;
                y += TL_LEGEND_ROW;
            }
            if (p < P) {
                fill(&c, x, y + 1, 10, 10, phase_rgb(p, P));
                text(&c, x + 14, y + 2, name, 6 * 30);
            } else {
                int tw = text(&c, x, y + 2, "attribution 0", 0);
                for (int i = 0; i < 100; i++) {
                    uint8_t rgb[3];
                    stx_colormap_rgb(STX_CMAP_INFERNO, (float)i / 99.0f, rgb);
                    fill(&c, x + tw + 4 + i, y + 1, 1, 10, rgb);
                }
                text(&c, x + tw + 108, y + 2, "max", 0);
            }
            x += ew;
        }
    }
    rc = save_png(ctx, &c, dir, "timeline.png", wr);
    stx_tensor_free(c.t);
    free(count);
    return rc;
}

/* ---- key-frame grids ---------------------------------------------------------------------- */

static int keyframe_scale(const phase_result *r) {
    int m = r->h > r->w ? r->h : r->w;
    int s = m > 0 ? KF_CELL / m : 1;
    return s < 1 ? 1 : s;
}

/* The grid's file name for moment m. */
static void grid_name(const phase_result *r, int m, char *buf, size_t n) {
    bool dup = false;
    for (int q = 0; q < m; q++) dup |= r->moments[q].frame == r->moments[m].frame;
    if (dup)
        snprintf(buf, n, "keyframes_%lld_%d.png", (long long)r->moments[m].frame, m);
    else
        snprintf(buf, n, "keyframes_%lld.png", (long long)r->moments[m].frame);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* A key frame's positive evidence in [0, 1] into out (see the header): min(max(v, 0) / q, 1), q
 * the 99th percentile of max(v, 0) (element floor(0.99 (n - 1)) in ascending order), or its
 * maximum when that percentile is 0; all 0 without positive values. scratch holds n floats.
 * Returns the index of a non-finite value, or -1. */
static int64_t evidence(const float *map, size_t n, float *out, float *scratch) {
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(map[i])) return (int64_t)i;
        scratch[i] = map[i] > 0 ? map[i] : 0;
    }
    qsort(scratch, n, sizeof *scratch, cmp_float);
    float q = scratch[(size_t)(0.99 * (double)(n - 1))];
    if (!(q > 0)) q = scratch[n - 1];
    for (size_t i = 0; i < n; i++) {
        float v = map[i] > 0 ? map[i] : 0;
        out[i] = q > 0 ? fminf(v / q, 1.0f) : 0;
    }
    return -1;
}

/* Greedy word wrap of s into at most max_lines lines of at most cols characters (breaking at
 * the last space that fits, or inside a word longer than a line; leading spaces of a line are
 * skipped; text beyond the last line is dropped). Returns the number of lines. */
static int wrap(const char *s, int cols, int max_lines, char lines[][256]) {
    int n = 0;
    if (cols > 255) cols = 255;
    if (cols < 1) return 0;
    while (s && *s && n < max_lines) {
        while (*s == ' ') s++;
        if (!*s) break;
        size_t len = strlen(s), take = len, skip = len;
        if (len > (size_t)cols) {
            size_t k = (size_t)cols;
            while (k > 0 && s[k] != ' ') k--;
            take = k > 0 ? k : (size_t)cols;
            skip = take;
        }
        memcpy(lines[n], s, take);
        lines[n++][take] = 0;
        s += skip;
    }
    return n;
}

static int draw_grid(stx_context *ctx, const phase_result *r, int m, stx_tensor *fr, stx_tensor *mp,
                     float *scratch, const char *dir, written *wr) {
    const phase_moment *mo = &r->moments[m];
    int K = mo->n_keyframes, C = K < KF_PER_ROW ? K : KF_PER_ROW,
        R = (K + KF_PER_ROW - 1) / KF_PER_ROW;
    int s = keyframe_scale(r), cw = s * r->w, ch = s * r->h;
    int bh = KF_LABEL + 2 * ch + 2 * KF_PAD;
    int W = KF_PAD + C * (cw + KF_PAD);
    char buf[256], nb[32], note[KF_NOTE_LINES][256];
    if (W < 240) W = 240; /* room for the header; blocks stay where the geometry says */
    int nl = wrap(mo->note, (W - 2 * KF_PAD + 1) / 6, KF_NOTE_LINES, note);
    int head = 16 + 12 * (nl > 1 ? nl : 1), H = head + R * bh;
    canvas c = {0};
    int rc = canvas_new(ctx, W, H, &c);
    if (rc) return rc;
    snprintf(buf, sizeof buf, "t=%lld (%s): %s", (long long)mo->frame, mo->why ? mo->why : "",
             phase_name(r, mo->phase, nb, sizeof nb));
    text(&c, KF_PAD, 4, buf, W - 2 * KF_PAD);
    for (int i = 0; i < nl; i++) text(&c, KF_PAD, 16 + 12 * i, note[i], W - 2 * KF_PAD);
    stx_render_options ro = stx_render_options_default();
    size_t plane = (size_t)r->h * r->w;
    for (int k = 0; k < K && !rc; k++) {
        const phase_keyframe *kf = &mo->keyframes[k];
        int x0 = KF_PAD + (k % KF_PER_ROW) * (cw + KF_PAD), y0 = head + (k / KF_PER_ROW) * bh;
        snprintf(buf, sizeof buf, "t=%lld w=%.3g", (long long)kf->frame, (double)kf->weight);
        text(&c, x0, y0 + 2, buf, cw);
        memcpy(stx_tensor_data(fr), kf->rgb, plane * 3);
        stx_tensor *ov = NULL;
        int64_t bad = evidence(kf->map, plane, stx_tensor_data(mp), scratch);
        if (bad >= 0) {
            rc = cli_fail("the map of key frame %lld of the moment at frame %lld: non-finite value "
                          "%g at y=%lld, x=%lld",
                          (long long)kf->frame, (long long)mo->frame, (double)kf->map[bad],
                          (long long)(bad / r->w), (long long)(bad % r->w));
        } else if (stx_render_overlay(ctx, fr, mp, &ro, &ov) != STX_OK) {
            rc = cli_fail("the map of key frame %lld of the moment at frame %lld: %s",
                          (long long)kf->frame, (long long)mo->frame, stx_context_last_error(ctx));
        } else {
            const uint8_t *src[2] = {kf->rgb, stx_tensor_data_const(ov)};
            for (int row = 0; row < 2; row++) {
                int yb = y0 + KF_LABEL + row * (ch + KF_PAD);
                for (int y = 0; y < ch; y++)
                    for (int x = 0; x < cw; x++)
                        memcpy(c.p + ((size_t)(yb + y) * W + x0 + x) * 3,
                               src[row] + ((size_t)(y / s) * r->w + x / s) * 3, 3);
            }
        }
        stx_tensor_free(ov);
    }
    if (!rc) {
        grid_name(r, m, buf, sizeof buf);
        rc = save_png(ctx, &c, dir, buf, wr);
    }
    stx_tensor_free(c.t);
    return rc;
}

/* ---- thumbnails --------------------------------------------------------------------------- */

typedef struct thumb_info {
    int64_t count, every, stride; /* thumbnail i is the source's i * stride, frame i * every */
    int tw, th, sheets;
} thumb_info;

static int draw_thumbs(stx_context *ctx, const phase_result *r, thumb_info *ti, const char *dir,
                       written *wr) {
    memset(ti, 0, sizeof *ti);
    if (r->thumb_every <= 0 || !r->thumbs) return 0;
    int64_t given = (r->n_frames + r->thumb_every - 1) / r->thumb_every;
    ti->stride = (given + TH_MAX_COUNT - 1) / TH_MAX_COUNT;
    ti->every = r->thumb_every * ti->stride;
    ti->count = (given + ti->stride - 1) / ti->stride;
    size_t fb = (size_t)r->h * r->w * 3;
    int rc = 0;
    for (int64_t first = 0; first < ti->count && !rc; first += TH_PER_SHEET) {
        int64_t n = ti->count - first < TH_PER_SHEET ? ti->count - first : TH_PER_SHEET;
        canvas c = {0};
        for (int64_t i = 0; i < n && !rc; i++) {
            int th, tw;
            uint8_t *d = downscale(r->thumbs + (size_t)((first + i) * ti->stride) * fb, r->h, r->w,
                                   TH_MAX_W, &th, &tw);
            if (!d) {
                rc = cli_fail("out of memory");
                break;
            }
            if (!c.t) {
                ti->tw = tw;
                ti->th = th;
                int cols = n < TH_COLS ? (int)n : TH_COLS;
                rc = canvas_new(ctx, cols * tw, (int)((n + TH_COLS - 1) / TH_COLS) * th, &c);
            }
            if (!rc) {
                int x0 = (int)(i % TH_COLS) * tw, y0 = (int)(i / TH_COLS) * th;
                for (int y = 0; y < th; y++)
                    memcpy(c.p + ((size_t)(y0 + y) * c.w + x0) * 3, d + (size_t)y * tw * 3,
                           (size_t)tw * 3);
            }
            free(d);
        }
        if (!rc) {
            char name[64];
            snprintf(name, sizeof name, "thumbs_%d.png", ti->sheets);
            rc = save_png(ctx, &c, dir, name, wr);
            ti->sheets++;
        }
        stx_tensor_free(c.t);
    }
    return rc;
}

/* ---- report.html -------------------------------------------------------------------------- */

/* A number with up to `digits` decimals and no trailing zeros; null when not finite. */
static void js_fixed(sbuf *b, double v, int digits) {
    if (!isfinite(v)) {
        sb_printf(b, "null");
        return;
    }
    char buf[64];
    snprintf(buf, sizeof buf, "%.*f", digits, v);
    char *dot = strchr(buf, '.');
    if (dot) {
        char *e = buf + strlen(buf) - 1;
        while (e > dot && *e == '0') *e-- = 0;
        if (e == dot) *e = 0;
    }
    if (!strcmp(buf, "-0")) snprintf(buf, sizeof buf, "0");
    sb_printf(b, "%s", buf);
}

static void js_g(sbuf *b, double v) {
    if (isfinite(v))
        sb_printf(b, "%.4g", v);
    else
        sb_printf(b, "null");
}

static void html_time(sbuf *b, int64_t f, double fps) {
    if (fps > 0) { /* h:mm:ss.s or m:ss.s */
        long long t = llround((double)f / fps * 10);
        if (t >= 36000)
            sb_printf(b, "%lld:%02lld:%02lld.%lld", t / 36000, t / 600 % 60, t / 10 % 60, t % 10);
        else
            sb_printf(b, "%lld:%02lld.%lld", t / 600, t / 10 % 60, t % 10);
    } else {
        sb_printf(b, "frame %lld", (long long)f);
    }
}

static void write_data(sbuf *b, const phase_result *r, const tl_geom *g, const thumb_info *ti) {
    int P = r->n_phases;
    char nb[32];
    sb_printf(b, "{\"video\": ");
    sb_str(b, r->video);
    sb_printf(b, ", \"fps\": ");
    js_g(b, r->fps);
    sb_printf(b, ", \"n_frames\": %lld, \"phases\": [", (long long)r->n_frames);
    for (int p = 0; p < P; p++) {
        sb_printf(b, "%s", p ? ", " : "");
        sb_str(b, phase_name(r, p, nb, sizeof nb));
    }
    sb_printf(b, "],\n\"colors\": [");
    for (int p = 0; p < N_PALETTE; p++)
        sb_printf(b, "%s\"#%02X%02X%02X\"", p ? ", " : "", PALETTE[p][0], PALETTE[p][1],
                  PALETTE[p][2]);
    sb_printf(b, "], \"none_color\": \"#%02X%02X%02X\",\n", NO_PHASE[0], NO_PHASE[1], NO_PHASE[2]);
    sb_printf(b, "\"timeline\": {\"file\": \"timeline.png\", \"x0\": %d, \"width\": %d},\n",
              TL_LEFT, g->wd);
    sb_printf(b, "\"pred\": [");
    for (int64_t f = 0; f < r->n_frames; f++) sb_printf(b, "%s%d", f ? "," : "", r->pred[f]);
    sb_printf(b, "],\n\"truth\": ");
    if (r->truth) {
        sb_printf(b, "[");
        for (int64_t f = 0; f < r->n_frames; f++) sb_printf(b, "%s%d", f ? "," : "", r->truth[f]);
        sb_printf(b, "]");
    } else {
        sb_printf(b, "null");
    }
    sb_printf(b, ",\n\"prob\": ");
    if (r->prob) {
        sb_printf(b, "[");
        for (int64_t i = 0; i < r->n_frames * P; i++) {
            sb_printf(b, "%s", i ? "," : "");
            js_fixed(b, r->prob[i], 3);
        }
        sb_printf(b, "]");
    } else {
        sb_printf(b, "null");
    }
    sb_printf(b, ",\n\"thumbs\": ");
    if (ti->sheets) {
        sb_printf(b,
                  "{\"every\": %lld, \"count\": %lld, \"w\": %d, \"h\": %d, \"cols\": %d, "
                  "\"per_sheet\": %d, \"files\": [",
                  (long long)ti->every, (long long)ti->count, ti->tw, ti->th, TH_COLS,
                  TH_PER_SHEET);
        for (int k = 0; k < ti->sheets; k++) sb_printf(b, "%s\"thumbs_%d.png\"", k ? ", " : "", k);
        sb_printf(b, "]}");
    } else {
        sb_printf(b, "null");
    }
    sb_printf(b, ",\n\"moments\": [");
    for (int m = 0; m < r->n_moments; m++) {
        const phase_moment *mo = &r->moments[m];
        char name[64];
        grid_name(r, m, name, sizeof name);
        sb_printf(b, "%s\n{\"frame\": %lld, \"phase\": %d, \"why\": ", m ? "," : "",
                  (long long)mo->frame, mo->phase);
        sb_str(b, mo->why);
        sb_printf(b, ", \"note\": ");
        sb_str(b, mo->note);
        sb_printf(b, ", \"grid\": ");
        if (mo->n_keyframes > 0)
            sb_str(b, name);
        else
            sb_printf(b, "null");
        sb_printf(b, ", \"keyframes\": [");
        for (int k = 0; k < mo->n_keyframes; k++) {
            sb_printf(b, "%s{\"frame\": %lld, \"weight\": ", k ? ", " : "",
                      (long long)mo->keyframes[k].frame);
            js_g(b, mo->keyframes[k].weight);
            sb_printf(b, "}");
        }
        sb_printf(b, "], \"temporal\": [");
        for (int64_t f = 0; f <= mo->frame; f++) {
            sb_printf(b, "%s", f ? "," : "");
            js_g(b, mo->temporal[f]);
        }
        sb_printf(b, "]}");
    }
    sb_printf(b, "]}");
}

/* The page's script: everything it shows at the cursor comes from the JSON block. */
static const char PAGE_JS[] =
    "(function(){\n"
    "var D=JSON.parse(document.getElementById('data').textContent),N=D.n_frames,"
    "P=D.phases.length,T=D.timeline,M=D.moments;\n"
    "function $(i){return document.getElementById(i)}\n"
    "var sl=$('slider'),img=$('timeline'),cur=$('cursor'),at=0,pin=-1;\n"
    "function esc(s){return String(s).replace(/[&<>\"]/g,function(c){return{'&':'&amp;',"
    "'<':'&lt;','>':'&gt;','\"':'&quot;'}[c]})}\n"
    "function fx(v){return v===null||v===undefined?'-':v.toFixed(3)}\n"
    "function p2(n){return(n<10?'0':'')+n}\n"
    "function tstr(f){if(!(D.fps>0))return 'frame '+f;var t=Math.round(f/D.fps*10),"
    "h=Math.floor(t/36000),m=Math.floor(t/600)%60,s=Math.floor(t/10)%60;"
    "return(h?h+':'+p2(m):m)+':'+p2(s)+'.'+t%10}\n"
    "function pcol(p){return p>=0&&p<P?D.colors[p%D.colors.length]:D.none_color}\n"
    "function pname(p){return p>=0&&p<P?D.phases[p]:'none'}\n"
    "function sw(p){return '<i class=\"sw\" style=\"background:'+pcol(p)+'\"></i>'+"
    "esc(pname(p))}\n"
    "function nearest(f){var b=-1;for(var i=0;i<M.length;i++)"
    "if(b<0||Math.abs(M[i].frame-f)<Math.abs(M[b].frame-f))b=i;return b}\n"
    "function link(f,m,t){return '<a href=\"#f'+f+'m'+m+'\" data-frame=\"'+f+'\" "
    "data-moment=\"'+m+'\">'+t+'</a>'}\n"
    "function place(){if(!img.naturalWidth)return;var s=img.clientWidth/img.naturalWidth;"
    "cur.style.left=(img.offsetLeft+(T.x0+(2*at+1)*T.width/(2*N))*s-1)+'px';"
    "cur.style.top=img.offsetTop+'px';cur.style.height=img.clientHeight+'px'}\n"
    /* show(frame, moment): the cursor at frame; the moment's grid (-1 or absent: the nearest) */
    "function show(f,mi){f=Math.max(0,Math.min(N-1,Math.round(+f)||0));at=f;sl.value=f;"
    "pin=mi!==undefined&&mi!==null&&+mi>=0&&+mi<M.length?+mi:-1;place();\n"
    "var p=D.pred[f],h='<b>frame '+f+'</b> ('+esc(tstr(f))+'): predicted '+sw(p);\n"
    "if(D.prob&&p>=0&&p<P)h+=', confidence '+fx(D.prob[f*P+p]);\n"
    "if(D.truth)h+='; truth '+sw(D.truth[f]);\n"
    /* the moments this frame drove: those that list it as a key frame */
    "var kd=[];M.forEach(function(m,i){m.keyframes.forEach(function(q){if(q.frame===f)"
    "kd.push(link(m.frame,i,'frame '+m.frame)+' (weight '+q.weight.toPrecision(3)+')')})});\n"
    "if(kd.length)h+='<br>a key frame of '+kd.join(', ');$('now').innerHTML=h;\n"
    "if(D.prob){var t='';for(var q=0;q<P;q++){var v=D.prob[f*P+q];t+='<tr><td>'+sw(q)+"
    "'</td><td><span class=\"bar\" style=\"width:'+Math.round(160*(v||0))+'px;background:'+"
    "pcol(q)+'\"></span> '+fx(v)+'</td></tr>'}$('probs').innerHTML=t}\n"
    "var th=D.thumbs,tb=$('thumb');if(th){var i=Math.min(th.count-1,Math.round(f/th.every)),"
    "k=i%th.per_sheet,z=Math.max(1,Math.floor(192/th.w)),"
    "rows=Math.ceil(Math.min(th.per_sheet,th.count-i+k)/th.cols),"
    "cols=Math.min(th.cols,th.count-i+k);\n"
    "tb.style.width=th.w*z+'px';tb.style.height=th.h*z+'px';"
    "tb.style.backgroundImage='url('+th.files[Math.floor(i/th.per_sheet)]+')';"
    "tb.style.backgroundSize=cols*th.w*z+'px '+rows*th.h*z+'px';"
    "tb.style.backgroundPosition=(-(k%th.cols)*th.w*z)+'px '+(-Math.floor(k/th.cols)*th.h*z)+"
    "'px';$('thumbcap').textContent='frame '+i*th.every}\n"
    "var b=pin>=0?pin:nearest(f),mc=$('mcap'),g=$('grid');"
    "[].forEach.call(document.querySelectorAll('li.moment'),function(e){"
    "e.classList.toggle('here',+e.getAttribute('data-index')===b)});\n"
    "if(b<0){mc.textContent='no explained moments';g.style.display='none'}else{var m=M[b];"
    "var c=(pin>=0?'selected':'nearest explained')+' moment: '+link(m.frame,b,'frame '+m.frame)+"
    "' ('+esc(m.why)+', '+sw(m.phase)+')';\n"
    "if(m.note)c+='<br>'+esc(m.note);if(f<=m.frame&&m.temporal[f]!==null)c+='<br>attribution of "
    "frame '+f+' to it: '+m.temporal[f].toPrecision(3);\n"
    "if(m.keyframes.length){c+='<br>key frames:';m.keyframes.forEach(function(q){c+=' '+"
    "(q.frame===f?'<b>'+q.frame+'</b>':link(q.frame,b,q.frame))})}\n"
    "mc.innerHTML=c;if(m.grid){g.style.display='';if(g.getAttribute('src')!==m.grid)"
    "g.setAttribute('src',m.grid)}else g.style.display='none'}\n"
    "try{history.replaceState(null,'','#f'+f+(pin>=0?'m'+pin:''))}catch(e){}}\n"
    "sl.addEventListener('input',function(){show(sl.value)});\n"
    "img.addEventListener('click',function(e){var r=img.getBoundingClientRect(),"
    "x=(e.clientX-r.left)*img.naturalWidth/r.width;show(Math.floor((x-T.x0)*N/T.width))});\n"
    "document.addEventListener('click',function(e){var a=e.target.closest?"
    "e.target.closest('[data-frame]'):null;if(!a)return;e.preventDefault();"
    "show(a.getAttribute('data-frame'),a.getAttribute('data-moment'));"
    "$('scrub').scrollIntoView()});\n"
    "function step(d){var n=-1;if(d>0){for(var i=0;i<M.length;i++)if(M[i].frame>at&&"
    "(n<0||M[i].frame<M[n].frame))n=i}else{for(var i=0;i<M.length;i++)if(M[i].frame<at&&"
    "(n<0||M[i].frame>M[n].frame))n=i}if(n>=0)show(M[n].frame,n)}\n"
    "document.addEventListener('keydown',function(e){if(e.target===sl)return;var k=e.key,"
    "d=e.shiftKey?10:1;if(k==='ArrowRight')show(at+d,pin);else if(k==='ArrowLeft')"
    "show(at-d,pin);else if(k==='n')step(1);else if(k==='p')step(-1);else if(k==='Escape')"
    "show(at);else return;e.preventDefault()});\n"
    "window.addEventListener('resize',place);img.addEventListener('load',place);\n"
    "var h=/^#f(\\d+)(?:m(\\d+))?$/.exec(location.hash);"
    "if(h)show(+h[1],h[2]);else if(M.length)show(M[0].frame,0);else show(0);\n"
    "})();\n";

static void write_html(sbuf *b, const phase_result *r, const tl_geom *g, const thumb_info *ti) {
    int P = r->n_phases;
    char nb[32];
    sb_printf(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
                 "<title>stx phase: ");
    sb_html(b, r->video);
    sb_printf(
        b, "</title>\n<style>\nbody{font-family:sans-serif;margin:1.5em;color:#222}\n"
           "img{max-width:100%%;border:1px solid #ccc}\n"
           "#tl{position:relative;max-height:70vh;overflow-y:auto}#timeline{display:block;cursor:"
           "crosshair}\n"
           "#cursor{position:absolute;width:1px;border-left:1px solid #000;"
           "border-right:1px solid #fff;pointer-events:none}\n"
           "#slider{width:100%%;margin:.5em 0}\n"
           "i.sw{display:inline-block;width:12px;height:12px;margin:0 4px;"
           "vertical-align:middle;border:1px solid #888}\n"
           ".bar{display:inline-block;height:10px;vertical-align:middle}\n"
           ".pair{display:flex;gap:1.5em;flex-wrap:wrap;align-items:flex-start}"
           ".pair figure{margin:0}\n"
           "#thumb{image-rendering:pixelated;border:1px solid #ccc;background-repeat:no-repeat}\n"
           "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;"
           "text-align:left}\nsection{margin-bottom:2em}\n"
           "li.moment{margin-bottom:.4em}li.here{background:#ffeeb0}\n"
           ".legend span{display:inline-block;margin-right:1em}\n</style></head><body>\n"
           "<h1>stx phase: ");
    sb_html(b, r->video);
    sb_printf(b, "</h1>\n<p>%lld frames", (long long)r->n_frames);
    if (r->fps > 0) {
        sb_printf(b, " at %.4g fps (", r->fps);
        html_time(b, r->n_frames, r->fps);
        sb_printf(b, ")");
    }
    sb_printf(b, ", %d phases, %d explained moment%s.", P, r->n_moments,
              r->n_moments == 1 ? "" : "s");
    if (r->truth && isfinite(r->accuracy)) sb_printf(b, " Accuracy %.4f.", r->accuracy);
    sb_printf(b, "</p>\n<p class=\"legend\">");
    for (int p = 0; p < P; p++) {
        sb_printf(b, "<span><i class=\"sw\" style=\"background:#%02X%02X%02X\"></i>",
                  phase_rgb(p, P)[0], phase_rgb(p, P)[1], phase_rgb(p, P)[2]);
        sb_html(b, phase_name(r, p, nb, sizeof nb));
        sb_printf(b, "</span>");
    }
    sb_printf(b, "</p>\n");
    /* the scrubber */
    sb_printf(
        b,
        "<section id=\"scrub\"><div id=\"tl\"><img id=\"timeline\" src=\"timeline.png\" "
        "alt=\"timeline: predicted%s phases, confidence, attribution of each moment\">"
        "<div id=\"cursor\"></div></div>\n"
        "<input type=\"range\" id=\"slider\" min=\"0\" max=\"%lld\" value=\"0\" step=\"1\" "
        "aria-label=\"frame\" list=\"marks\">\n<p id=\"now\">frame 0</p>\n"
        "<div class=\"pair\"><figure><div id=\"thumb\"></div><figcaption id=\"thumbcap\">"
        "%s</figcaption></figure>\n<figure><table id=\"probs\"></table>"
        "<figcaption>probability of each phase</figcaption></figure>\n"
        "<figure><img id=\"grid\" alt=\"key frames of the nearest moment\">"
        "<figcaption id=\"mcap\"></figcaption></figure></div>\n"
        "<p><small>Slider or click on the timeline to move; arrow keys step one frame "
        "(shift: 10), n and p jump to the next and previous moment; a key frame's link keeps its "
        "moment shown (Esc: the nearest again).</small></p></section>\n",
        r->truth ? " and true" : "", (long long)(r->n_frames - 1),
        ti->sheets ? "" : "no thumbnails");
    /* the moments: ticks on the slider, then the list */
    sb_printf(b, "<datalist id=\"marks\">");
    for (int m = 0; m < r->n_moments; m++)
        sb_printf(b, "<option value=\"%lld\"></option>", (long long)r->moments[m].frame);
    sb_printf(b, "</datalist>\n<section><h2>Explained moments</h2>\n");
    if (r->n_moments == 0) sb_printf(b, "<p>none</p>\n");
    sb_printf(b, "<ol id=\"moments\">\n");
    for (int m = 0; m < r->n_moments; m++) {
        const phase_moment *mo = &r->moments[m];
        sb_printf(b,
                  "<li class=\"moment\" id=\"m%d\" data-index=\"%d\"><a href=\"#f%lldm%d\" "
                  "data-frame=\"%lld\" data-moment=\"%d\">frame %lld</a> (",
                  m, m, (long long)mo->frame, m, (long long)mo->frame, m, (long long)mo->frame);
        html_time(b, mo->frame, r->fps);
        sb_printf(b, "), ");
        sb_html(b, mo->why);
        sb_printf(b, ": <i class=\"sw\" style=\"background:#%02X%02X%02X\"></i>",
                  phase_rgb(mo->phase, P)[0], phase_rgb(mo->phase, P)[1],
                  phase_rgb(mo->phase, P)[2]);
        sb_html(b, phase_name(r, mo->phase, nb, sizeof nb));
        if (mo->note) {
            sb_printf(b, "; ");
            sb_html(b, mo->note);
        }
        if (mo->n_keyframes > 0) {
            sb_printf(b, ". Key frames:");
            for (int k = 0; k < mo->n_keyframes; k++)
                sb_printf(b,
                          " <a href=\"#f%lldm%d\" data-frame=\"%lld\" data-moment=\"%d\">%lld</a> "
                          "(%.3g)",
                          (long long)mo->keyframes[k].frame, m, (long long)mo->keyframes[k].frame,
                          m, (long long)mo->keyframes[k].frame, (double)mo->keyframes[k].weight);
            char name[64];
            grid_name(r, m, name, sizeof name);
            sb_printf(b, " (<a href=\"%s\">grid</a>)", name);
        }
        sb_printf(b, "</li>\n");
    }
    sb_printf(b, "</ol></section>\n");
    /* scores */
    if (r->truth && r->precision && r->recall && r->jaccard) {
        sb_printf(b, "<section><h2>Scores against the labels</h2>\n<p>accuracy ");
        if (isfinite(r->accuracy))
            sb_printf(b, "%.4f", r->accuracy);
        else
            sb_printf(b, "-");
        sb_printf(b, "</p>\n<table><tr><th>phase</th><th>precision</th><th>recall</th>"
                     "<th>Jaccard</th></tr>\n");
        for (int p = 0; p < P; p++) {
            sb_printf(b, "<tr><td><i class=\"sw\" style=\"background:#%02X%02X%02X\"></i>",
                      phase_rgb(p, P)[0], phase_rgb(p, P)[1], phase_rgb(p, P)[2]);
            sb_html(b, phase_name(r, p, nb, sizeof nb));
            const double v[3] = {r->precision[p], r->recall[p], r->jaccard[p]};
            sb_printf(b, "</td>");
            for (int q = 0; q < 3; q++)
                if (isfinite(v[q]))
                    sb_printf(b, "<td>%.4f</td>", v[q]);
                else
                    sb_printf(b, "<td>-</td>");
            sb_printf(b, "</tr>\n");
        }
        sb_printf(b, "</table></section>\n");
    }
    sb_printf(b, "<p><small>Phase colours: Okabe &amp; Ito's colour-blind-safe palette. Heat "
                 "strips: each moment's positive temporal attribution over the frames before it, "
                 "scaled to its largest value (inferno; grey: after the moment; ticks: key "
                 "frames). Maps: each key frame's own min-max range, jet.</small></p>\n");
    sb_printf(b, "<script type=\"application/json\" id=\"data\">");
    write_data(b, r, g, ti);
    sb_printf(b, "</script>\n<script>\n%s</script>\n</body></html>\n", PAGE_JS);
}

/* ---- entry point -------------------------------------------------------------------------- */

static int check_input(const phase_result *r) {
    if (!r || r->n_frames < 1 || r->n_phases < 1 || !r->pred)
        return cli_fail("report: no frames or no phases to draw");
    if (r->n_moments < 0 || (r->n_moments > 0 && !r->moments))
        return cli_fail("report: %d moments without their data", r->n_moments);
    if (r->thumb_every > 0 && r->thumbs && (r->h < 1 || r->w < 1))
        return cli_fail("report: thumbnails of %dx%d pixels", r->h, r->w);
    for (int m = 0; m < r->n_moments; m++) {
        const phase_moment *mo = &r->moments[m];
        if (mo->frame < 0 || mo->frame >= r->n_frames || !mo->temporal)
            return cli_fail("report: moment %d at frame %lld of %lld frames (or no attribution)", m,
                            (long long)mo->frame, (long long)r->n_frames);
        if (mo->n_keyframes > 0 && (!mo->keyframes || r->h < 1 || r->w < 1))
            return cli_fail("report: moment %d: key frames without pictures", m);
        for (int k = 0; k < mo->n_keyframes; k++) {
            const phase_keyframe *kf = &mo->keyframes[k];
            if (kf->frame < 0 || kf->frame >= r->n_frames || !kf->rgb || !kf->map)
                return cli_fail("report: moment %d: key frame %lld is outside the %lld frames or "
                                "has no picture",
                                m, (long long)kf->frame, (long long)r->n_frames);
        }
    }
    return 0;
}

int phase_write_report(stx_context *ctx, const phase_result *r, const char *dir) {
    int rc = check_input(r);
    if (rc) return rc;
    bool made_dir = false;
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (mkdir(dir, 0777) != 0)
            return cli_fail("%s: cannot create the output folder: %s", dir, strerror(errno));
        made_dir = true;
    } else if (!S_ISDIR(st.st_mode)) {
        return cli_fail("%s: not a folder", dir);
    }
    written wr = {0};
    tl_geom g;
    tl_layout(r, &g);
    thumb_info ti = {0};
    stx_tensor *fr = NULL, *mp = NULL;
    float *scratch = NULL;
    rc = draw_timeline(ctx, r, &g, dir, &wr);
    if (!rc && r->h > 0 && r->w > 0) {
        int64_t fd[4] = {1, r->h, r->w, 3}, md[3] = {1, r->h, r->w};
        if (stx_tensor_create(ctx, STX_DTYPE_UINT8, fd, 4, &fr) != STX_OK ||
            stx_tensor_create(ctx, STX_DTYPE_FLOAT, md, 3, &mp) != STX_OK ||
            !(scratch = malloc(sizeof *scratch * (size_t)r->h * r->w)))
            rc = cli_fail("out of memory");
    }
    for (int m = 0; m < r->n_moments && !rc; m++)
        if (r->moments[m].n_keyframes > 0) rc = draw_grid(ctx, r, m, fr, mp, scratch, dir, &wr);
    if (!rc) rc = draw_thumbs(ctx, r, &ti, dir, &wr);
    if (!rc) {
        sbuf h = {0};
        write_html(&h, r, &g, &ti);
        char *path = path_join(dir, "report.html");
        if (h.oom || !path)
            rc = cli_fail("out of memory");
        else
            rc = write_file(path, h.s, h.n);
        free(h.s);
        free(path);
    }
    if (rc) {
        for (int i = 0; i < wr.n; i++) unlink(wr.paths[i]);
        if (made_dir) rmdir(dir);
    }
    for (int i = 0; i < wr.n; i++) free(wr.paths[i]);
    free(wr.paths);
    stx_tensor_free(fr);
    stx_tensor_free(mp);
    free(scratch);
    return rc;
}
