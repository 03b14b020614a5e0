/* render_tests.c: tests of the rendering section of stx.h (src/render/).
 *
 * usage: stx_render_tests WORKDIR             all checks; files are written under WORKDIR
 *        stx_render_tests --colormaps FILE    stx_colormap_rgb against matplotlib's colours in
 *                                             FILE (written by tools/colormap_oracle.py)
 *
 * Expected values come from outside the code under test: matplotlib (the oracle file, and a few
 * published colour-map end points), jet's segment data evaluated here, hand-computed normalised
 * values, bilinear weights worked out for a resize-and-crop geometry, and the files read back
 * with libpng, giflib and libavformat/libavcodec. One line per check; exit status 1 on failure.
 */
#include "stx.h"
#include "render/render.h"

#include <dirent.h>
#include <gif_lib.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libswscale/swscale.h>
#include <math.h>
#include <png.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int failures, checks;

static void check(int ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    checks++;
    if (!ok) failures++;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static stx_tensor *tensor(stx_context *ctx, stx_dtype dt, int rank, int64_t d0, int64_t d1,
                          int64_t d2, int64_t d3) {
    int64_t dims[4] = {d0, d1, d2, d3};
    stx_tensor *t = NULL;
    if (stx_tensor_create(ctx, dt, dims, rank, &t) != STX_OK) {
        fprintf(stderr, "tensor: %s\n", stx_context_last_error(ctx));
        exit(2);
    }
    return t;
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Files in dir whose name contains ".tmp" (a writer's leftover). */
static int tmp_leftovers(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tmp")) n++;
    closedir(d);
    return n;
}

static int contains(const char *s, const char *sub) {
    return s && sub && strstr(s, sub) != NULL;
}

/* ---- 1. colour maps -------------------------------------------------------------------------- */

/* matplotlib's _jet_data segments (x, value) per channel (from its documentation of jet). */
static double jet_channel(int ch, double x) {
    static const double seg[3][6][2] = {
        {{0, 0}, {0.35, 0}, {0.66, 1}, {0.89, 1}, {1, 0.5}, {-1, 0}},
        {{0, 0}, {0.125, 0}, {0.375, 1}, {0.64, 1}, {0.91, 0}, {1, 0}},
        {{0, 0.5}, {0.11, 1}, {0.34, 1}, {0.65, 0}, {1, 0}, {-1, 0}}};
    for (int k = 1; k < 6 && seg[ch][k][0] >= 0; k++)
        if (x <= seg[ch][k][0]) {
            double x0 = seg[ch][k - 1][0], x1 = seg[ch][k][0];
            return seg[ch][k - 1][1] + (x - x0) / (x1 - x0) * (seg[ch][k][1] - seg[ch][k - 1][1]);
        }
    return 0.5;
}

static int rgb_is(const uint8_t *c, int r, int g, int b) {
    return c[0] == r && c[1] == g && c[2] == b;
}

static void test_colormaps_analytic(void) {
    check(stx_colormap_from_name("jet") == STX_CMAP_JET &&
              stx_colormap_from_name("turbo") == STX_CMAP_TURBO &&
              stx_colormap_from_name("inferno") == STX_CMAP_INFERNO &&
              stx_colormap_from_name("viridis") == STX_CMAP_VIRIDIS &&
              stx_colormap_from_name("diverging") == STX_CMAP_DIVERGING &&
              stx_colormap_from_name("bwr") == STX_CMAP_DIVERGING &&
              stx_colormap_from_name("hot") == -1 && stx_colormap_from_name(NULL) == -1,
          "colormap names parse (bwr = diverging, unknown = -1)");
    int names_ok = 1;
    for (int c = 0; c <= STX_CMAP_DIVERGING; c++)
        names_ok &= stx_colormap_from_name(stx_colormap_name((stx_colormap)c)) == c;
    check(names_ok && strcmp(stx_colormap_name((stx_colormap)99), "unknown") == 0,
          "colormap names round-trip; out-of-range value named 'unknown'");
    uint8_t c[3];
    stx_colormap_rgb(STX_CMAP_JET, 0.0f, c);
    int j0 = rgb_is(c, 0, 0, 127);
    stx_colormap_rgb(STX_CMAP_JET, 1.0f, c);
    int j1 = rgb_is(c, 127, 0, 0);
    check(j0 && j1, "jet(0) = (0,0,127) and jet(1) = (127,0,0) (0.5 * 255 truncated)");
    stx_colormap_rgb(STX_CMAP_JET, NAN, c);
    int nan_black = rgb_is(c, 0, 0, 0);
    stx_colormap_rgb(STX_CMAP_JET, -3.0f, c);
    int below = rgb_is(c, 0, 0, 127);
    stx_colormap_rgb(STX_CMAP_JET, 7.0f, c);
    int above = rgb_is(c, 127, 0, 0);
    check(nan_black && below && above, "NaN gives black, values outside [0,1] are clamped");
    /* jet from its segment data: entry i is the segments at i / 255, times 255, truncated; the
     * value (i + 0.5) / 256 falls in bin i. */
    int worst = 0, worst_i = -1;
    for (int i = 0; i < 256; i++) {
        stx_colormap_rgb(STX_CMAP_JET, ((float)i + 0.5f) / 256.0f, c);
        for (int ch = 0; ch < 3; ch++) {
            int want = (int)(jet_channel(ch, i / 255.0) * 255.0);
            int d = abs(want - c[ch]);
            if (d > worst) worst = d, worst_i = i;
        }
    }
    check(worst <= 1, "jet's 256 entries equal its segment data to within 1 (worst %d at %d)",
          worst, worst_i);
    stx_colormap_rgb(STX_CMAP_DIVERGING, 0.5f, c);
    int white = c[0] >= 253 && c[1] >= 253 && c[2] >= 253;
    uint8_t b0[3], b1[3];
    stx_colormap_rgb(STX_CMAP_DIVERGING, 0.0f, b0);
    stx_colormap_rgb(STX_CMAP_DIVERGING, 1.0f, b1);
    check(white && rgb_is(b0, 0, 0, 255) && rgb_is(b1, 255, 0, 0),
          "diverging: 0 blue, 0.5 white (%d,%d,%d), 1 red", c[0], c[1], c[2]);
    /* End points of the listed maps as published in matplotlib's _cm_listed.py (x 255,
     * truncated): viridis (0.267004, 0.004874, 0.329415) .. (0.993248, 0.906157, 0.143936),
     * inferno (0.001462, 0.000466, 0.013866) .. (0.988362, 0.998364, 0.644924), turbo
     * (0.18995, 0.07176, 0.23217) .. (0.4796, 0.01583, 0.01055). */
    uint8_t v0[3], v1[3], i0[3], i1[3], t0[3], t1[3];
    stx_colormap_rgb(STX_CMAP_VIRIDIS, 0.0f, v0);
    stx_colormap_rgb(STX_CMAP_VIRIDIS, 1.0f, v1);
    stx_colormap_rgb(STX_CMAP_INFERNO, 0.0f, i0);
    stx_colormap_rgb(STX_CMAP_INFERNO, 1.0f, i1);
    stx_colormap_rgb(STX_CMAP_TURBO, 0.0f, t0);
    stx_colormap_rgb(STX_CMAP_TURBO, 1.0f, t1);
    check(rgb_is(v0, 68, 1, 84) && rgb_is(v1, 253, 231, 36) && rgb_is(i0, 0, 0, 3) &&
              rgb_is(i1, 252, 254, 164) && rgb_is(t0, 48, 18, 59) && rgb_is(t1, 122, 4, 2),
          "viridis, inferno, turbo end points match matplotlib's published tables");
}

static int test_colormaps_oracle(const char *file) {
    FILE *f = fopen(file, "r");
    if (!f) {
        check(0, "colour oracle %s: cannot open (run tools/colormap_oracle.py --out FILE)", file);
        return 1;
    }
    char name[32];
    unsigned bits;
    int r, g, b, n = 0, bad = 0, per[5] = {0};
    while (fscanf(f, "%31s %x %d %d %d", name, &bits, &r, &g, &b) == 5) {
        int cm = stx_colormap_from_name(name);
        float v;
        memcpy(&v, &bits, sizeof v);
        uint8_t c[3] = {1, 2, 3};
        stx_colormap_rgb((stx_colormap)cm, v, c);
        n++;
        if (cm >= 0) per[cm]++;
        if (cm < 0 || !rgb_is(c, r, g, b)) {
            if (bad < 5)
                printf("     %s(%.9g) [%08x]: stx (%d,%d,%d), matplotlib (%d,%d,%d)\n", name,
                       (double)v, bits, c[0], c[1], c[2], r, g, b);
            bad++;
        }
    }
    fclose(f);
    check(n > 0 && bad == 0 && per[0] && per[1] && per[2] && per[3] && per[4],
          "stx_colormap_rgb equals matplotlib's cmap(v, bytes=True) for %d values over the 5 "
          "maps (%d differ)",
          n, bad);
    return failures != 0;
}

/* ---- 2. normalisation ------------------------------------------------------------------------ */

static int near_all(const float *got, const float *want, int n, float tol) {
    for (int i = 0; i < n; i++)
        if (!(fabsf(got[i] - want[i]) <= tol)) return 0;
    return 1;
}

static void test_normalize(stx_context *ctx) {
    stx_tensor *m = tensor(ctx, STX_DTYPE_FLOAT, 3, 2, 2, 2, 0), *y = NULL;
    float *x = stx_tensor_data(m);
    const float vals[8] = {0, 1, 2, 3, 4, 5, 6, 8};
    memcpy(x, vals, sizeof vals);
    stx_render_options o = stx_render_options_default();
    check(o.size == sizeof o && o.colormap == STX_CMAP_JET && o.alpha == 0.5f && !o.per_frame &&
              !o.signed_map && o.dim == 0.35f,
          "render options default: jet, alpha 0.5, clip-wide, unsigned, dim 0.35");
    stx_status st = stx_render_normalize(ctx, m, &o, &y);
    const float clip[8] = {0, 0.125f, 0.25f, 0.375f, 0.5f, 0.625f, 0.75f, 1};
    check(st == STX_OK && y && near_all(stx_tensor_data(y), clip, 8, 1e-7f),
          "normalise over the clip: v / 8 for values 0..8");
    stx_tensor_free(y);
    o.per_frame = 1;
    st = stx_render_normalize(ctx, m, &o, &y);
    const float perf[8] = {0, 1 / 3.0f, 2 / 3.0f, 1, 0, 0.25f, 0.5f, 1};
    check(st == STX_OK && y && near_all(stx_tensor_data(y), perf, 8, 1e-7f),
          "normalise per frame: (v - min) / (max - min) of each frame");
    stx_tensor_free(y);
    /* a fixed range [-2, 6] (per_frame ignored), clamped: (v + 2) / 8 */
    o.use_range = 1;
    o.range_lo = -2;
    o.range_hi = 6;
    st = stx_render_normalize(ctx, m, &o, &y);
    const float fixed[8] = {0.25f, 0.375f, 0.5f, 0.625f, 0.75f, 0.875f, 1, 1};
    check(st == STX_OK && y && near_all(stx_tensor_data(y), fixed, 8, 1e-7f),
          "a fixed range [-2, 6]: (v + 2) / 8, clamped, per_frame ignored");
    stx_tensor_free(y);
    y = NULL;
    o.range_lo = 7;
    st = stx_render_normalize(ctx, m, &o, &y);
    check(st == STX_E_INVALID && !y, "an unordered fixed range is refused (%s)",
          stx_context_last_error(ctx));
    o.use_range = 0;
    const float sv[8] = {-2, 1, 0, 4, 0, 0.5f, -1, 0};
    memcpy(x, sv, sizeof sv);
    o.signed_map = 1;
    o.per_frame = 0;
    st = stx_render_normalize(ctx, m, &o, &y);
    const float sgn[8] = {0.25f, 0.625f, 0.5f, 1, 0.5f, 0.5625f, 0.375f, 0.5f};
    check(st == STX_OK && y && near_all(stx_tensor_data(y), sgn, 8, 1e-7f),
          "signed over the clip: 0.5 + 0.5 v / max|v| (0 -> 0.5)");
    stx_tensor_free(y);
    o.per_frame = 1;
    st = stx_render_normalize(ctx, m, &o, &y);
    const float sgnf[8] = {0.25f, 0.625f, 0.5f, 1, 0.5f, 0.75f, 0, 0.5f};
    check(st == STX_OK && y && near_all(stx_tensor_data(y), sgnf, 8, 1e-7f),
          "signed per frame: each frame divided by its own max|v|");
    stx_tensor_free(y);
    for (int i = 0; i < 8; i++) x[i] = 3.5f;
    o = stx_render_options_default();
    st = stx_render_normalize(ctx, m, &o, &y);
    const float zeros[8] = {0}, halves[8] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    check(st == STX_OK && y && near_all(stx_tensor_data(y), zeros, 8, 0),
          "a constant map normalises to 0s");
    stx_tensor_free(y);
    for (int i = 0; i < 8; i++) x[i] = 0;
    o.signed_map = 1;
    st = stx_render_normalize(ctx, m, &o, &y);
    check(st == STX_OK && y && near_all(stx_tensor_data(y), halves, 8, 0),
          "an all-zero signed map normalises to 0.5s");
    stx_tensor_free(y);
    x[5] = NAN; /* [t=1, y=0, x=1] */
    st = stx_render_normalize(ctx, m, NULL, &y);
    check(st == STX_E_NUMERIC && !y && contains(stx_context_last_error(ctx), "t=1, y=0, x=1"),
          "NaN in the map: STX_E_NUMERIC naming its index (%s)", stx_context_last_error(ctx));
    x[5] = 0;
    stx_tensor *bad = tensor(ctx, STX_DTYPE_UINT8, 3, 2, 2, 2, 0);
    st = stx_render_normalize(ctx, bad, NULL, &y);
    check(st == STX_E_INVALID && contains(stx_context_last_error(ctx), "uint8 [2,2,2]"),
          "a uint8 map is refused naming dtype and shape (%s)", stx_context_last_error(ctx));
    stx_tensor_free(bad);
    o = stx_render_options_default();
    o.size = 8;
    st = stx_render_normalize(ctx, m, &o, &y);
    check(st == STX_E_INVALID && contains(stx_context_last_error(ctx), "size"),
          "options with a wrong size field are refused (%s)", stx_context_last_error(ctx));
    stx_tensor_free(m);
}

/* ---- 3. unmap -------------------------------------------------------------------------------- */

static void test_unmap(stx_context *ctx) {
    /* Source 40 x 60, short side resized to 20 -> 20 x 30, centred 20 x 20 crop at x = 5. */
    stx_frame_geometry g = {40, 60, 20, 30, 0, 5, 20, 20};
    stx_tensor *m = tensor(ctx, STX_DTYPE_FLOAT, 3, 2, 20, 20, 0), *y = NULL;
    float *x = stx_tensor_data(m);
    x[7 * 20 + 12] = 1.0f;       /* frame 0: one hot pixel at (cy, cx) = (7, 12) */
    x[400 + 7 * 20 + 12] = 2.0f; /* frame 1: twice as hot */
    stx_status st = stx_render_unmap(ctx, m, &g, &y);
    check(st == STX_OK && y && stx_tensor_rank(y) == 3 && stx_tensor_shape(y)[0] == 2 &&
              stx_tensor_shape(y)[1] == 40 && stx_tensor_shape(y)[2] == 60,
          "unmap gives (T, src_h, src_w) = (2, 40, 60)");
    if (st != STX_OK) return;
    const float *u = stx_tensor_data(y);
    /* Columns x < 10 have centres (x + 0.5) / 2 < 5 = crop_x; x >= 50 are past 5 + 20. */
    int nan_ok = 1;
    for (int r = 0; r < 40; r++)
        for (int c = 0; c < 60; c++) {
            int outside = c < 10 || c >= 50;
            if (outside != (isnan(u[r * 60 + c]) != 0)) nan_ok = 0;
        }
    check(nan_ok, "source columns left (x < 10) and right (x >= 50) of the crop are NaN, the rest "
                  "finite");
    /* Hot pixel centre at source ((7 + 0.5) * 2 - 0.5, (12 + 5 + 0.5) * 2 - 0.5) = (14.5, 34.5):
     * the four pixels around it get 0.75 * 0.75; one row further 0.25 * 0.75. */
    float mx = 0;
    int arg_ok = 1;
    for (int i = 0; i < 40 * 60; i++)
        if (u[i] > mx) mx = u[i];
    for (int r = 0; r < 40; r++)
        for (int c = 0; c < 60; c++)
            if (u[r * 60 + c] == mx && !((r == 14 || r == 15) && (c == 34 || c == 35))) arg_ok = 0;
    check(mx == 0.5625f && arg_ok && u[14 * 60 + 34] == 0.5625f && u[15 * 60 + 35] == 0.5625f,
          "hot pixel (7,12) lands on source (14..15, 34..35) with weight 0.75 * 0.75 = %g",
          (double)mx);
    check(u[13 * 60 + 34] == 0.1875f && u[16 * 60 + 35] == 0.1875f && u[14 * 60 + 33] == 0.1875f &&
              u[12 * 60 + 34] == 0.0f,
          "its neighbours: 0.25 * 0.75 = 0.1875 one pixel out, 0 two rows out");
    check(u[2400 + 14 * 60 + 34] == 1.125f, "frame 1 uses map 1 (1.125 = 2 * 0.5625)");
    stx_tensor_free(y);
    /* A ramp m = cx + 100 cy: bilinear reproduces it, clamped at the crop border. */
    for (int t = 0; t < 2; t++)
        for (int r = 0; r < 20; r++)
            for (int c = 0; c < 20; c++) x[t * 400 + r * 20 + c] = (float)(c + 100 * r);
    st = stx_render_unmap(ctx, m, &g, &y);
    u = stx_tensor_data(y);
    /* (0,10): cy = 0.25 - 0.5 -> 0, cx = 5.25 - 5.5 -> 0; (0,11): cx = 0.25; (20,30): cy =
     * 10.25 - 0.5 = 9.75, cx = 15.25 - 5.5 = 9.75; (39,49): both 19.25 clamped to 19. */
    check(st == STX_OK && u[10] == 0.0f && u[11] == 0.25f && u[20 * 60 + 30] == 984.75f &&
              u[39 * 60 + 49] == 1919.0f && u[2400 + 20 * 60 + 31] == 985.25f,
          "ramp map: analytic bilinear values (0, 0.25, 984.75, 1919 at the clamped corner)");
    stx_tensor_free(y);
    /* Crop in rows: source 60 x 40 resized to 30 x 20, crop rows 5..24. */
    stx_frame_geometry g2 = {60, 40, 30, 20, 5, 0, 20, 20};
    st = stx_render_unmap(ctx, m, &g2, &y);
    u = stx_tensor_data(y);
    check(st == STX_OK && isnan(u[9 * 40 + 3]) && !isnan(u[10 * 40 + 3]) && isnan(u[50 * 40]) &&
              !isnan(u[49 * 40]) && u[10 * 40 + 0] == 0.0f,
          "row crop: source rows < 10 and >= 50 are NaN");
    stx_tensor_free(y);
    stx_frame_geometry g3 = {40, 60, 20, 30, 0, 11, 20, 20};
    st = stx_render_unmap(ctx, m, &g3, &y);
    check(st == STX_E_INVALID && !y && contains(stx_context_last_error(ctx), "crop"),
          "a crop past the resized frame is refused (%s)", stx_context_last_error(ctx));
    stx_frame_geometry g4 = {40, 60, 20, 30, 0, 5, 16, 16};
    g4.out_h = 10;
    st = stx_render_unmap(ctx, m, &g4, &y);
    check(st == STX_E_SHAPE && contains(stx_context_last_error(ctx), "[2,20,20]"),
          "a map not matching the crop size is refused (%s)", stx_context_last_error(ctx));
    stx_tensor_free(m);
}

/* ---- 4. overlay ------------------------------------------------------------------------------ */

static void test_overlay(stx_context *ctx) {
    stx_tensor *fr = tensor(ctx, STX_DTYPE_UINT8, 4, 1, 2, 2, 3);
    stx_tensor *nm = tensor(ctx, STX_DTYPE_FLOAT, 3, 1, 2, 2, 0), *y = NULL;
    const uint8_t px[12] = {100, 150, 200, 10, 20, 30, 200, 100, 60, 0, 255, 128};
    memcpy(stx_tensor_data(fr), px, sizeof px);
    const float nv[4] = {0.0f, 1.0f, NAN, 0.5f};
    memcpy(stx_tensor_data(nm), nv, sizeof nv);
    stx_render_options o = stx_render_options_default();
    stx_status st = stx_render_overlay(ctx, fr, nm, &o, &y);
    const uint8_t *q = y ? stx_tensor_data(y) : NULL;
    /* jet(0) = (0,0,127): (50, 75, 163.5 -> 164); jet(1) = (127,0,0): (68.5 -> 69, 10, 15);
     * NaN: frame * 0.35 rounded: (70, 35, 21); jet(0.5) = (124,255,121): (62, 255, 124.5 -> 125).
     */
    check(st == STX_OK && q && rgb_is(q, 50, 75, 164) && rgb_is(q + 3, 69, 10, 15) &&
              rgb_is(q + 6, 70, 35, 21) && rgb_is(q + 9, 62, 255, 125),
          "alpha 0.5: (frame + colour) / 2 rounded half up; NaN pixel dimmed to 0.35");
    stx_tensor_free(y);
    o.alpha = 0;
    st = stx_render_overlay(ctx, fr, nm, &o, &y);
    q = y ? stx_tensor_data(y) : NULL;
    check(st == STX_OK && q && memcmp(q, px, 6) == 0 && memcmp(q + 9, px + 9, 3) == 0 &&
              rgb_is(q + 6, 70, 35, 21),
          "alpha 0: the frame unchanged (NaN pixels still dimmed)");
    stx_tensor_free(y);
    o.alpha = 1;
    o.colormap = STX_CMAP_DIVERGING;
    o.dim = 0;
    st = stx_render_overlay(ctx, fr, nm, &o, &y);
    q = y ? stx_tensor_data(y) : NULL;
    check(st == STX_OK && q && rgb_is(q, 0, 0, 255) && rgb_is(q + 3, 255, 0, 0) &&
              rgb_is(q + 6, 0, 0, 0) && rgb_is(q + 9, 255, 254, 254),
          "alpha 1, diverging map, dim 0: pure colours, NaN black");
    stx_tensor_free(y);
    o.alpha = 1.5f;
    st = stx_render_overlay(ctx, fr, nm, &o, &y);
    check(st == STX_E_INVALID && !y && contains(stx_context_last_error(ctx), "alpha 1.5"),
          "alpha outside [0,1] is refused (%s)", stx_context_last_error(ctx));
    o = stx_render_options_default();
    stx_tensor *ff = tensor(ctx, STX_DTYPE_FLOAT, 4, 1, 16, 64, 64);
    st = stx_render_overlay(ctx, ff, nm, &o, &y);
    check(st == STX_E_INVALID &&
              strcmp(stx_context_last_error(ctx), "stx_render_overlay: frames must be uint8 "
                                                  "(T,H,W,3), got float32 [1,16,64,64]") == 0,
          "float frames are refused: '%s'", stx_context_last_error(ctx));
    stx_tensor_free(ff);
    stx_tensor *n2 = tensor(ctx, STX_DTYPE_FLOAT, 3, 1, 2, 3, 0);
    st = stx_render_overlay(ctx, fr, n2, &o, &y);
    check(st == STX_E_SHAPE && contains(stx_context_last_error(ctx), "[1,2,3]") &&
              contains(stx_context_last_error(ctx), "[1,2,2,3]"),
          "a norm of another size is refused (%s)", stx_context_last_error(ctx));
    stx_tensor_free(n2);
    stx_tensor_free(fr);
    stx_tensor_free(nm);
}

/* ---- 5. writers ------------------------------------------------------------------------------ */

/* The clip's square: columns [square_x, square_x + 10), rows [H / 3, H / 3 + 10). */
static int square_x(int f, int W) {
    return 4 + 2 * f % (W > 16 ? W - 12 : 1);
}

/* In the square or within 8 pixels of it: its saturated yellow on blue is where 4:2:0 chroma
 * subsampling, the coarser chroma quantiser and transform ringing put errors of up to ~130
 * (measured with libx264 CRF 18: up to 20 at 3-4 pixels away; beyond 8, at most 11 with preset
 * "fast", 17 with "veryfast"). */
static int near_square(int f, int x, int y, int W, int H) {
    int x0 = square_x(f, W), y0 = H / 3;
    return x >= x0 - 8 && x < x0 + 18 && y >= y0 - 8 && y < y0 + 18;
}

/* A test clip: smooth gradients with a bright square moving right. */
static stx_tensor *make_clip(stx_context *ctx, int T, int H, int W) {
    stx_tensor *t = tensor(ctx, STX_DTYPE_UINT8, 4, T, H, W, 3);
    uint8_t *p = stx_tensor_data(t);
    for (int f = 0; f < T; f++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                uint8_t *q = p + (((size_t)f * H + y) * W + x) * 3;
                q[0] = (uint8_t)(40 + 160 * x / W);
                q[1] = (uint8_t)(30 + 180 * y / H);
                q[2] = (uint8_t)(90 + 4 * f);
                int sx = square_x(f, W);
                if (x >= sx && x < sx + 10 && y >= H / 3 && y < H / 3 + 10) {
                    q[0] = 250;
                    q[1] = 240;
                    q[2] = 40;
                }
            }
    return t;
}

static void test_png(stx_context *ctx, const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/image.png", dir);
    remove(path);
    stx_tensor *clip = make_clip(ctx, 1, 23, 37);
    int64_t d3[3] = {23, 37, 3};
    stx_tensor *img = NULL;
    stx_tensor_create(ctx, STX_DTYPE_UINT8, d3, 3, &img);
    memcpy(stx_tensor_data(img), stx_tensor_data(clip), 23 * 37 * 3);
    uint8_t *ip = stx_tensor_data(img);
    for (int i = 0; i < 23 * 37 * 3; i += 7) ip[i] = (uint8_t)(i * 31); /* some noise */
    stx_status st = stx_write_png(ctx, img, path);
    check(st == STX_OK, "PNG written (%s)", st ? stx_context_last_error(ctx) : path);
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    int ok = png_image_begin_read_from_file(&pi, path);
    int format_rgb = ok && pi.format == PNG_FORMAT_RGB && pi.width == 37 && pi.height == 23;
    uint8_t *buf = NULL;
    if (ok) {
        pi.format = PNG_FORMAT_RGB;
        buf = malloc(PNG_IMAGE_SIZE(pi));
        ok = buf && png_image_finish_read(&pi, NULL, buf, 0, NULL);
    }
    png_image_free(&pi);
    check(format_rgb && ok && memcmp(buf, ip, 23 * 37 * 3) == 0,
          "PNG read back with libpng: 8-bit RGB 37x23, every byte equal");
    free(buf);
    check(tmp_leftovers(dir) == 0, "no temporary file left beside it");
    char missing[1100];
    snprintf(missing, sizeof missing, "%s/no/such/dir/image.png", dir);
    st = stx_write_png(ctx, img, missing);
    check(st == STX_E_IO && contains(stx_context_last_error(ctx), missing) && !exists(missing),
          "PNG into a missing directory: STX_E_IO naming the path, no file (%s)",
          stx_context_last_error(ctx));
    st = stx_write_png(ctx, clip, path);
    check(st == STX_E_SHAPE && contains(stx_context_last_error(ctx), "[1,23,37,3]"),
          "PNG of a (T,H,W,3) tensor is refused (%s)", stx_context_last_error(ctx));
    stx_tensor_free(img);
    stx_tensor_free(clip);
}

static void test_gif(stx_context *ctx, const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/clip.gif", dir);
    remove(path);
    const int T = 5, H = 40, W = 48;
    stx_tensor *clip = make_clip(ctx, T, H, W);
    double t0 = now();
    stx_status st = stx_write_gif(ctx, clip, 30.0, path);
    double dt = now() - t0;
    check(st == STX_OK, "GIF written in %.3f s (%s)", dt, st ? stx_context_last_error(ctx) : path);
    int err = 0;
    GifFileType *g = DGifOpenFileName(path, &err);
    int slurp = g && DGifSlurp(g) == GIF_OK;
    check(slurp && g->ImageCount == T && g->SWidth == W && g->SHeight == H,
          "giflib reads %d frames of %dx%d", slurp ? g->ImageCount : -1, W, H);
    if (!slurp) {
        if (g) DGifCloseFile(g, &err);
        stx_tensor_free(clip);
        return;
    }
    /* 100 / 30 s per frame, rounded cumulatively: 3, 4, 3, 3, 4. */
    const int want_delay[5] = {3, 4, 3, 3, 4};
    int delays_ok = 1;
    for (int i = 0; i < T; i++) {
        GraphicsControlBlock gcb;
        if (DGifSavedExtensionToGCB(g, i, &gcb) != GIF_OK || gcb.DelayTime != want_delay[i] ||
            gcb.TransparentColor != NO_TRANSPARENT_COLOR)
            delays_ok = 0;
    }
    check(delays_ok, "frame delays at 30 fps: 3,4,3,3,4 hundredths (cumulative rounding)");
    int loop = 0;
    const SavedImage *s0 = &g->SavedImages[0];
    for (int k = 0; k + 1 < s0->ExtensionBlockCount; k++) {
        const ExtensionBlock *a = &s0->ExtensionBlocks[k], *b = &s0->ExtensionBlocks[k + 1];
        if (a->Function == APPLICATION_EXT_FUNC_CODE && a->ByteCount == 11 &&
            memcmp(a->Bytes, "NETSCAPE2.0", 11) == 0 && b->ByteCount == 3 && b->Bytes[0] == 1 &&
            b->Bytes[1] == 0 && b->Bytes[2] == 0)
            loop = 1;
    }
    check(loop, "NETSCAPE2.0 extension: loop forever");
    double sum = 0;
    int maxe = 0;
    const uint8_t *src = stx_tensor_data(clip);
    for (int i = 0; i < T; i++) {
        const SavedImage *si = &g->SavedImages[i];
        const ColorMapObject *cm = si->ImageDesc.ColorMap ? si->ImageDesc.ColorMap : g->SColorMap;
        for (int p = 0; p < H * W; p++) {
            const GifColorType *c = &cm->Colors[si->RasterBits[p]];
            const uint8_t *o = src + ((size_t)i * H * W + p) * 3;
            int d[3] = {abs(c->Red - o[0]), abs(c->Green - o[1]), abs(c->Blue - o[2])};
            for (int k = 0; k < 3; k++) {
                sum += d[k];
                if (d[k] > maxe) maxe = d[k];
            }
        }
    }
    double mean = sum / (3.0 * T * H * W);
    check(mean < 2.5 && maxe <= 12, "GIF colours within quantisation error: mean %.2f, max %d",
          mean, maxe);
    DGifCloseFile(g, &err);
    check(tmp_leftovers(dir) == 0, "no temporary file left beside it");
    st = stx_write_gif(ctx, clip, 10.0, path);
    g = DGifOpenFileName(path, &err);
    slurp = g && DGifSlurp(g) == GIF_OK;
    GraphicsControlBlock gcb = {0, 0, 0, 0};
    if (slurp) DGifSavedExtensionToGCB(g, 2, &gcb);
    check(st == STX_OK && slurp && gcb.DelayTime == 10, "10 fps: delay 10 hundredths");
    if (g) DGifCloseFile(g, &err);
    /* A frame of exactly 256 colours keeps them. */
    stx_tensor *few = tensor(ctx, STX_DTYPE_UINT8, 4, 1, 16, 16, 3);
    uint8_t *fp = stx_tensor_data(few);
    for (int i = 0; i < 256; i++) {
        fp[3 * i] = (uint8_t)i;
        fp[3 * i + 1] = (uint8_t)(255 - i);
        fp[3 * i + 2] = (uint8_t)(i * 7);
    }
    char fpath[1024];
    snprintf(fpath, sizeof fpath, "%s/few.gif", dir);
    st = stx_write_gif(ctx, few, 5.0, fpath);
    g = DGifOpenFileName(fpath, &err);
    slurp = g && DGifSlurp(g) == GIF_OK && g->ImageCount == 1;
    int exact = slurp;
    for (int p = 0; slurp && p < 256; p++) {
        const SavedImage *si = &g->SavedImages[0];
        const ColorMapObject *cm = si->ImageDesc.ColorMap ? si->ImageDesc.ColorMap : g->SColorMap;
        const GifColorType *c = &cm->Colors[si->RasterBits[p]];
        if (c->Red != fp[3 * p] || c->Green != fp[3 * p + 1] || c->Blue != fp[3 * p + 2]) exact = 0;
    }
    check(st == STX_OK && exact, "a frame with 256 distinct colours is stored losslessly");
    if (g) DGifCloseFile(g, &err);
    stx_tensor_free(few);
    char missing[1100];
    snprintf(missing, sizeof missing, "%s/no/such/dir/clip.gif", dir);
    st = stx_write_gif(ctx, clip, 10.0, missing);
    check(st == STX_E_IO && contains(stx_context_last_error(ctx), missing) && !exists(missing),
          "GIF into a missing directory: STX_E_IO naming the path (%s)",
          stx_context_last_error(ctx));
    st = stx_write_gif(ctx, clip, 0.0, path);
    check(st == STX_E_INVALID, "fps 0 is refused (%s)", stx_context_last_error(ctx));
    stx_tensor_free(clip);
}

/* Decodes every frame of a video to RGB24 (the same BT.601 conversion the writer used). */
typedef struct decoded {
    int w, h, n;
    double fps;
    char codec[32];
    uint8_t *rgb; /* n frames */
} decoded;

static int decode_all(const char *path, decoded *out) {
    memset(out, 0, sizeof *out);
    AVFormatContext *fc = NULL;
    if (avformat_open_input(&fc, path, NULL, NULL) < 0) return -1;
    int ret = -1;
    AVCodecContext *cc = NULL;
    AVFrame *fr = av_frame_alloc();
    AVPacket *pkt = av_packet_alloc();
    struct SwsContext *sws = NULL;
    if (avformat_find_stream_info(fc, NULL) < 0) goto done;
    int si = av_find_best_stream(fc, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    if (si < 0) goto done;
    AVStream *stm = fc->streams[si];
    const AVCodec *dec = avcodec_find_decoder(stm->codecpar->codec_id);
    cc = avcodec_alloc_context3(dec);
    if (!dec || !cc || avcodec_parameters_to_context(cc, stm->codecpar) < 0 ||
        avcodec_open2(cc, dec, NULL) < 0)
        goto done;
    snprintf(out->codec, sizeof out->codec, "%s", avcodec_get_name(stm->codecpar->codec_id));
    out->fps = av_q2d(stm->avg_frame_rate);
    out->w = cc->width;
    out->h = cc->height;
    size_t fsz = (size_t)out->w * out->h * 3;
    int cap = 0, eof = 0;
    while (!eof) {
        int r = av_read_frame(fc, pkt);
        if (r < 0) {
            eof = 1;
            avcodec_send_packet(cc, NULL);
        } else {
            if (pkt->stream_index == si) avcodec_send_packet(cc, pkt);
            av_packet_unref(pkt);
        }
        while (avcodec_receive_frame(cc, fr) == 0) {
            if (out->n == cap) {
                cap = cap ? 2 * cap : 16;
                uint8_t *nb = realloc(out->rgb, fsz * cap);
                if (!nb) goto done;
                out->rgb = nb;
            }
            if (!sws)
                sws = sws_getContext(fr->width, fr->height, fr->format, out->w, out->h,
                                     AV_PIX_FMT_RGB24, SWS_BILINEAR | SWS_ACCURATE_RND, NULL, NULL,
                                     NULL);
            uint8_t *dst[4] = {out->rgb + fsz * out->n, NULL, NULL, NULL};
            int ds[4] = {out->w * 3, 0, 0, 0};
            sws_scale(sws, (const uint8_t *const *)fr->data, fr->linesize, 0, fr->height, dst, ds);
            out->n++;
            av_frame_unref(fr);
        }
    }
    ret = 0;
done:
    sws_freeContext(sws);
    av_packet_free(&pkt);
    av_frame_free(&fr);
    avcodec_free_context(&cc);
    avformat_close_input(&fc);
    return ret;
}

/* Mean absolute difference of the top-left h x w of the decoded frames, and the largest one away
 * from the square. */
static void video_error(const decoded *d, const stx_tensor *clip, double *mean, int *maxe) {
    const int64_t *s = stx_tensor_shape(clip);
    const uint8_t *src = stx_tensor_data_const(clip);
    double sum = 0;
    int mx = 0;
    int64_t cnt = 0;
    for (int f = 0; f < d->n && f < s[0]; f++)
        for (int y = 0; y < s[1]; y++)
            for (int x = 0; x < s[2]; x++)
                for (int c = 0; c < 3; c++) {
                    int a = src[(((size_t)f * s[1] + y) * s[2] + x) * 3 + c];
                    int b = d->rgb[(((size_t)f * d->h + y) * d->w + x) * 3 + c];
                    sum += abs(a - b);
                    if (abs(a - b) > mx && !near_square(f, x, y, (int)s[2], (int)s[1]))
                        mx = abs(a - b);
                    cnt++;
                }
    *mean = cnt ? sum / (double)cnt : 1e9;
    *maxe = mx;
}

static void test_video(stx_context *ctx, const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/clip.mp4", dir);
    remove(path);
    stx_tensor *clip = make_clip(ctx, 20, 48, 64);
    const char *codec = NULL;
    double t0 = now();
    stx_status st = stx_write_video(ctx, clip, 25.0, path, &codec);
    double dt = now() - t0;
    check(st == STX_OK && codec, "MP4 written with encoder %s in %.3f s (%s)", codec ? codec : "?",
          dt, st ? stx_context_last_error(ctx) : path);
    decoded d;
    int r = decode_all(path, &d);
    double mean = 0;
    int maxe = 0;
    if (r == 0) video_error(&d, clip, &mean, &maxe);
    check(r == 0 && d.n == 20 && d.w == 64 && d.h == 48 && fabs(d.fps - 25.0) < 1e-6,
          "decoded with libavcodec: %d frames of %dx%d at %.3f fps (%s)", d.n, d.w, d.h, d.fps,
          d.codec);
    check(r == 0 && mean < 3.0 && maxe <= 24,
          "round-trip error: mean %.3f, max %d away from the moving square", mean, maxe);
    free(d.rgb);
    check(tmp_leftovers(dir) == 0, "no temporary file left beside it");

    stx_tensor *odd = make_clip(ctx, 6, 25, 33);
    char opath[1024];
    snprintf(opath, sizeof opath, "%s/odd.mp4", dir);
    st = stx_write_video(ctx, odd, 12.5, opath, NULL);
    r = st == STX_OK ? decode_all(opath, &d) : -1;
    if (r == 0) video_error(&d, odd, &mean, &maxe);
    int pad_ok = 0;
    if (r == 0 && d.n > 0) { /* the padded column repeats the last one (up to coding error) */
        int diff = 0;
        for (int y = 0; y < 25; y++)
            for (int c = 0; c < 3; c++)
                diff += abs(d.rgb[(y * d.w + 33) * 3 + c] - d.rgb[(y * d.w + 32) * 3 + c]);
        pad_ok = diff / (25 * 3) < 6;
    }
    check(r == 0 && d.n == 6 && d.w == 34 && d.h == 26 && mean < 5.0 && maxe <= 24 && pad_ok &&
              fabs(d.fps - 12.5) < 1e-6,
          "odd 33x25 frames padded to 34x26 (edge repeated), error mean %.3f max %d, fps %.3f",
          mean, maxe, d.fps);
    free(d.rgb);
    stx_tensor_free(odd);

    char apath[1024];
    snprintf(apath, sizeof apath, "%s/clip.mkv", dir);
    st = stx_write_video(ctx, clip, 8.0, apath, &codec);
    r = st == STX_OK ? decode_all(apath, &d) : -1;
    check(r == 0 && d.n == 20 && d.w == 64,
          "Matroska by extension (.mkv): encoder %s, %d frames decoded (%s)", codec ? codec : "?",
          d.n, d.codec);
    free(d.rgb);

    /* Streaming: 8 + 12 frames through one writer make the same 20-frame video. */
    snprintf(apath, sizeof apath, "%s/stream.mp4", dir);
    remove(apath);
    stx_video_writer *vw = NULL;
    int64_t d8[4] = {8, 48, 64, 3}, d12[4] = {12, 48, 64, 3};
    stx_tensor *c8 = NULL, *c12 = NULL;
    stx_tensor_create(ctx, STX_DTYPE_UINT8, d8, 4, &c8);
    stx_tensor_create(ctx, STX_DTYPE_UINT8, d12, 4, &c12);
    memcpy(stx_tensor_data(c8), stx_tensor_data(clip), 8 * 48 * 64 * 3);
    memcpy(stx_tensor_data(c12), (uint8_t *)stx_tensor_data(clip) + 8 * 48 * 64 * 3,
           12 * 48 * 64 * 3);
    st = stx_video_writer_open(ctx, apath, 64, 48, 25.0, &vw);
    int early = exists(apath);
    if (!st) st = stx_video_writer_write(vw, c8);
    if (!st) st = stx_video_writer_write(vw, c12);
    stx_status stc = stx_video_writer_close(vw, &codec);
    r = st == STX_OK && stc == STX_OK ? decode_all(apath, &d) : -1;
    if (r == 0) video_error(&d, clip, &mean, &maxe);
    check(r == 0 && !early && d.n == 20 && mean < 3.0,
          "streaming writer: 8 + 12 frames give %d frames (error mean %.3f); no file before close",
          d.n, mean);
    free(d.rgb);
    snprintf(apath, sizeof apath, "%s/stream_bad.mp4", dir);
    vw = NULL;
    st = stx_video_writer_open(ctx, apath, 32, 48, 25.0, &vw);
    stx_status stw = st ? st : stx_video_writer_write(vw, c8); /* 64 wide, opened 32 */
    stc = stx_video_writer_close(vw, NULL);
    check(st == STX_OK && stw == STX_E_SHAPE && stc != STX_OK && !exists(apath),
          "streaming writer: frames of another size fail, and close then leaves no file");
    stx_tensor_free(c8);
    stx_tensor_free(c12);

    char missing[1100];
    snprintf(missing, sizeof missing, "%s/no/such/dir/clip.mp4", dir);
    st = stx_write_video(ctx, clip, 25.0, missing, NULL);
    check(st == STX_E_IO && contains(stx_context_last_error(ctx), missing) && !exists(missing),
          "video into a missing directory: STX_E_IO naming the path (%s)",
          stx_context_last_error(ctx));
    char gpath[1024];
    snprintf(gpath, sizeof gpath, "%s/not_a_video.gif", dir);
    st = stx_write_video(ctx, clip, 25.0, gpath, NULL);
    check(st == STX_E_UNSUPPORTED && !exists(gpath), "a .gif path is not a video container (%s)",
          stx_context_last_error(ctx));
    snprintf(gpath, sizeof gpath, "%s/not_a_video.png", dir);
    st = stx_write_video(ctx, clip, 25.0, gpath, NULL);
    check(st == STX_E_UNSUPPORTED && !exists(gpath), "a .png path is not a video container (%s)",
          stx_context_last_error(ctx));
    check(tmp_leftovers(dir) == 0, "no temporary files left after the failures");
    stx_tensor_free(clip);
}

/* ---- 6. plot and text ------------------------------------------------------------------------ */

static const uint8_t *pix(const stx_tensor *img, int x, int y) {
    const int64_t *s = stx_tensor_shape(img);
    return (const uint8_t *)stx_tensor_data_const(img) + ((size_t)y * s[1] + x) * 3;
}

static void test_text(stx_context *ctx) {
    stx_tensor *img = tensor(ctx, STX_DTYPE_UINT8, 3, 24, 60, 3, 0);
    memset(stx_tensor_data(img), 255, 24 * 60 * 3);
    const uint8_t red[3] = {200, 0, 0};
    int w = stx_render_text(img, 2, 3, "Hi!", 2, red);
    int inside = 0, outside = 0;
    for (int y = 0; y < 24; y++)
        for (int x = 0; x < 60; x++) {
            int ink = !rgb_is(pix(img, x, y), 255, 255, 255);
            int in_box = x >= 2 && x < 2 + w && y >= 3 && y < 3 + 16;
            if (ink && in_box) inside++;
            if (ink && !in_box) outside++;
        }
    check(w == 34 && inside > 20 && outside == 0,
          "text 'Hi!' at scale 2: width %d = (6*3-1)*2, %d ink pixels inside, %d outside", w,
          inside, outside);
    /* 'H' starts with a full-height left stroke: 2x14 red pixels at x 2..3, y 3..16. */
    int stroke = 1;
    for (int y = 3; y < 17; y++)
        for (int x = 2; x < 4; x++) stroke &= rgb_is(pix(img, x, y), 200, 0, 0);
    check(stroke && rgb_is(pix(img, 4, 3), 255, 255, 255),
          "'H' left stroke drawn 2 pixels wide over 14 rows");
    memset(stx_tensor_data(img), 255, 24 * 60 * 3);
    int wc = stx_render_text(img, 50, 20, "clipped", 1, red);
    check(wc == 41, "text past the image edge is clipped (width still %d)", wc);
    memset(stx_tensor_data(img), 255, 24 * 60 * 3);
    int we = stx_render_text(img, INT32_MAX - 3, INT32_MIN + 2, "abc", 256, red);
    int wf = stx_render_text(img, INT32_MIN, 0, "far left", 256, red);
    int blank = 1;
    for (int i = 0; i < 24 * 60 * 3; i++) blank &= ((uint8_t *)stx_tensor_data(img))[i] == 255;
    check(we == 4352 && wf == 12032 && blank,
          "text at extreme coordinates draws nothing and does not overflow");
    stx_tensor *a = tensor(ctx, STX_DTYPE_UINT8, 3, 10, 10, 3, 0);
    stx_tensor *b = tensor(ctx, STX_DTYPE_UINT8, 3, 10, 10, 3, 0);
    stx_render_text(a, 1, 1, "\x01", 1, red);
    stx_render_text(b, 1, 1, "?", 1, red);
    check(memcmp(stx_tensor_data(a), stx_tensor_data(b), 300) == 0 &&
              stx_render_text(a, 0, 0, "x", 0, red) == -1,
          "a non-printable character draws as '?'; scale 0 is refused (-1)");
    /* The font: every printable glyph but the space has ink, and no two are alike. */
    int empty = 0, same = 0;
    for (int c = 33; c < 127; c++) {
        unsigned any = 0;
        for (int r = 0; r < 7; r++) any |= stx__font_row(c, r);
        empty += any == 0;
        for (int d = 32; d < c; d++) {
            int eq = 1;
            for (int r = 0; r < 7; r++) eq &= stx__font_row(c, r) == stx__font_row(d, r);
            same += eq;
        }
    }
    check(empty == 0 && same == 0, "font: 94 printable glyphs with ink, all distinct");
    stx_tensor_free(a);
    stx_tensor_free(b);
    stx_tensor_free(img);
}

static void test_plot(stx_context *ctx, const char *dir) {
    enum { N = 10 };
    float v[N];
    uint8_t marks[N] = {0};
    for (int i = 0; i < N; i++) v[i] = (float)(i * i) / 81.0f;
    marks[3] = marks[4] = 1;
    stx_tensor *img = NULL;
    const int W = 320, H = 200;
    stx_status st = stx_render_plot(ctx, v, marks, N, "Score", "frame", "p", W, H, &img);
    check(st == STX_OK && img && stx_tensor_shape(img)[0] == H && stx_tensor_shape(img)[1] == W,
          "plot rendered as a %dx%d image (%s)", W, H, st ? stx_context_last_error(ctx) : "ok");
    if (st) return;
    char path[1024];
    snprintf(path, sizeof path, "%s/plot.png", dir);
    stx_write_png(ctx, img, path);
    stx_plot_layout L;
    stx__plot_layout(NULL, v, N, "Score", "frame", "p", W, H, &L);
    check(L.ylo == 0 && L.yhi == 1 && fabs(L.ystep - 0.2) < 1e-12 && L.nyticks == 6 && L.xstep == 1,
          "value axis 0..1 in steps of 0.2, a tick on every frame");
    int axes = 1;
    for (int y = L.ay; y <= L.ay + L.ah; y++) axes &= rgb_is(pix(img, L.ax - 1, y), 0, 0, 0);
    for (int x = L.ax - 1; x < L.ax + L.aw; x++) axes &= rgb_is(pix(img, x, L.ay + L.ah), 0, 0, 0);
    /* Independently: going down the middle column from the data area's middle, the first black
     * pixel is the bottom axis (the line is blue, grid lines grey, shading orange). */
    int yb = -1;
    for (int y = L.ay + L.ah / 2; y < H && yb < 0; y++)
        if (rgb_is(pix(img, L.ax + L.aw / 2, y), 0, 0, 0)) yb = y;
    check(axes && yb == L.ay + L.ah, "axes drawn black: left column %d, bottom row %d", L.ax - 1,
          L.ay + L.ah);
    /* The line passes through every value: the pixel nearest (x(i), y(v_i)) has the line colour
     * (31,119,180) and rows follow y = ay + (1 - v) * (ah - 1). */
    int through = 1;
    for (int i = 0; i < N; i++) {
        int x = (int)floor(stx__plot_x(&L, N, i) + 0.5);
        double yf = L.ay + (1.0 - v[i]) * (L.ah - 1);
        int y = (int)floor(yf + 0.5);
        if (!rgb_is(pix(img, x, y), 31, 119, 180)) through = 0;
    }
    check(through, "the line passes through the %d values at the documented pixels", N);
    /* Between frames 6 and 7, the column halfway holds the line at the interpolated row. */
    double xa = stx__plot_x(&L, N, 6), xb = stx__plot_x(&L, N, 7);
    int xm = (int)floor((xa + xb) / 2 + 0.5);
    double ym = L.ay + (1.0 - (v[6] + (v[7] - v[6]) * ((xm - xa) / (xb - xa)))) * (L.ah - 1);
    int best = -1, bestd = 1 << 30;
    for (int y = L.ay; y < L.ay + L.ah; y++) {
        const uint8_t *p = pix(img, xm, y);
        int d = abs(p[0] - 31) + abs(p[1] - 119) + abs(p[2] - 180);
        if (d < bestd) bestd = d, best = y;
    }
    check(bestd == 0 && fabs(best - ym) <= 1.0,
          "between frames 6 and 7 the line is at row %d (expected %.2f)", best, ym);
    int bx = (int)(L.ax + 3 * (int64_t)L.aw / N) + 1, ux = (int)(L.ax + 6 * (int64_t)L.aw / N) + 1;
    check(rgb_is(pix(img, bx, L.ay + 2), 255, 221, 170) &&
              rgb_is(pix(img, ux, L.ay + 2), 255, 255, 255),
          "marked frames 3-4 shaded, frame 6 not");
    int title_ink = 0;
    for (int y = 0; y < L.ay - 4; y++)
        for (int x = 0; x < W; x++) title_ink += rgb_is(pix(img, x, y), 0, 0, 0);
    check(title_ink > 10, "title drawn above the data area (%d ink pixels)", title_ink);
    stx_tensor_free(img);
    img = NULL;

    float cst[3] = {2, 2, 2}, gaps[4] = {NAN, 1, NAN, 3};
    st = stx_render_plot(ctx, cst, NULL, 3, NULL, NULL, NULL, 200, 120, &img);
    check(st == STX_OK, "a constant series plots (%s)", st ? stx_context_last_error(ctx) : "ok");
    stx_tensor_free(img);
    img = NULL;
    st = stx_render_plot(ctx, gaps, NULL, 4, "gaps", NULL, NULL, 200, 120, &img);
    check(st == STX_OK, "NaN values leave gaps (%s)", st ? stx_context_last_error(ctx) : "ok");
    stx_tensor_free(img);
    img = NULL;
    st = stx_render_plot(ctx, v, NULL, N, "t", "x", "y", 64, 64, &img);
    check(st == STX_E_INVALID && !img, "a plot too small for its labels is refused (%s)",
          stx_context_last_error(ctx));
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--colormaps") == 0) {
        test_colormaps_oracle(argv[2]);
        printf("%d checks, %d failed\n", checks, failures);
        return failures != 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: %s WORKDIR | --colormaps ORACLE_FILE\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    mkdir(dir, 0777);
    stx_context *ctx = NULL;
    if (stx_context_create(NULL, &ctx) != STX_OK) return 2;
    double t0 = now();
    test_colormaps_analytic();
    test_normalize(ctx);
    test_unmap(ctx);
    test_overlay(ctx);
    test_png(ctx, dir);
    test_gif(ctx, dir);
    test_video(ctx, dir);
    test_text(ctx);
    test_plot(ctx, dir);
    stx_context_free(ctx);
    printf("%d checks, %d failed (%.2f s)\n", checks, failures, now() - t0);
    return failures != 0;
}
