/* plot.c: a bitmap font, text drawing (stx_render_text) and a line plot of per-frame values
 * (stx_render_plot), drawn into uint8 RGB images without any graphics library.
 *
 * Font: 5 x 7 glyphs for printable ASCII (32..126), designed for this file: capitals and digits
 * fill the 7 rows, lower case uses rows 2..6 with descenders folded into the last row. A
 * character cell is 6 x 8 pixels (one blank column and row), times an integer scale.
 *
 * Plot geometry (render.h, stx_plot_layout), in pixels. s is the font scale, max(1, floor(min(
 * width, height) / 360)): 1 below 720 pixels, 2 from 720. Text is 8s high and (6 * chars - 1) * s
 * wide. Margins:
 * - top: 4s + (title ? 8s + 4s : 0) + 4s, the first data-area row ay;
 * - left: 4s + (ylabel ? 8s + 4s : 0) + the widest value label + 2s + 4s (tick), the left axis
 *   column ax - 1 (the data area starts at column ax);
 * - bottom: 4s (tick) + 2s + 8s + (xlabel ? 4s + 8s : 0) + 4s, the bottom axis row ay + ah =
 *   height - 1 - bottom;
 * - right: max(8s, half the widest frame label + 4s).
 * Frame i of n owns the columns [b(i), b(i + 1)), b(i) = ax + floor(i * aw / n) (shaded when
 * marked), and sits at their centre x(i) = (b(i) + b(i + 1) - 1) / 2. Value v sits at the row
 * y(v) = ay + (yhi - v) / (yhi - ylo) * (ah - 1). Coordinates are pixel centres.
 *
 * Value ticks: a step of 1, 2 or 5 times a power of ten giving about 5 intervals over the finite
 * values' range (a constant series is widened by 5 % of its value, or by 0.5 around 0), the range
 * rounded out to whole steps; labels carry the step's decimals ("%.*f"), or for magnitudes from
 * 1e6 or steps below 1e-6 "%.*g" with enough significant digits (3 to 10) to tell ticks apart.
 * Frame ticks at multiples of the smallest step 1, 2, 5, 10, 20, ... whose labels fit. Light grey
 * grid lines at the value ticks.
 *
 * The line: matplotlib's first colour (31, 119, 180), 2s wide, anti-aliased by the distance d of
 * each pixel centre to the polyline (coverage clamp(s + 0.5 - d, 0, 1), the largest over the
 * segments), so pixels within s - 0.5 of it have exactly the line colour; a dot of radius 2s at
 * every value when the bands are at least 5s wide. Non-finite values break the line. The line is
 * clipped to the data area; axes, ticks and labels are drawn over it. Marked frames are shaded
 * light orange (255, 221, 170) over the whole data-area height. */
#include "render.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* clang-format off */
static const char *const font[95][7] = {
    {".....", ".....", ".....", ".....", ".....", ".....", "....."}, /* 32   */
    {"..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."}, /* 33 ! */
    {".#.#.", ".#.#.", ".....", ".....", ".....", ".....", "....."}, /* 34 " */
    {".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."}, /* 35 # */
    {"..#..", ".####", "#.#..", ".###.", "..#.#", "####.", "..#.."}, /* 36 $ */
    {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"}, /* 37 % */
    {".##..", "#..#.", "#.#..", ".#...", "#.#.#", "#..#.", ".##.#"}, /* 38 & */
    {"..#..", "..#..", ".....", ".....", ".....", ".....", "....."}, /* 39 quote */
    {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."}, /* 40 ( */
    {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."}, /* 41 ) */
    {".....", "..#..", "#.#.#", ".###.", "#.#.#", "..#..", "....."}, /* 42 star */
    {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."}, /* 43 + */
    {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."}, /* 44 , */
    {".....", ".....", ".....", "#####", ".....", ".....", "....."}, /* 45 - */
    {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."}, /* 46 . */
    {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."}, /* 47 slash */
    {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}, /* 48 0 */
    {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}, /* 49 1 */
    {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}, /* 50 2 */
    {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."}, /* 51 3 */
    {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}, /* 52 4 */
    {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}, /* 53 5 */
    {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}, /* 54 6 */
    {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}, /* 55 7 */
    {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}, /* 56 8 */
    {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}, /* 57 9 */
    {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."}, /* 58 : */
    {".....", ".##..", ".##..", ".....", ".##..", "..#..", ".#..."}, /* 59 ; */
    {"...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#."}, /* 60 < */
    {".....", ".....", "#####", ".....", "#####", ".....", "....."}, /* 61 = */
    {".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..."}, /* 62 > */
    {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."}, /* 63 ? */
    {".###.", "#...#", "....#", ".##.#", "#.#.#", "#.#.#", ".###."}, /* 64 @ */
    {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}, /* 65 A */
    {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."}, /* 66 B */
    {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."}, /* 67 C */
    {"###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."}, /* 68 D */
    {"#####", "#....", "#....", "####.", "#....", "#....", "#####"}, /* 69 E */
    {"#####", "#....", "#....", "####.", "#....", "#....", "#...."}, /* 70 F */
    {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"}, /* 71 G */
    {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}, /* 72 H */
    {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}, /* 73 I */
    {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."}, /* 74 J */
    {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"}, /* 75 K */
    {"#....", "#....", "#....", "#....", "#....", "#....", "#####"}, /* 76 L */
    {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"}, /* 77 M */
    {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"}, /* 78 N */
    {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}, /* 79 O */
    {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."}, /* 80 P */
    {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"}, /* 81 Q */
    {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"}, /* 82 R */
    {".####", "#....", "#....", ".###.", "....#", "....#", "####."}, /* 83 S */
    {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}, /* 84 T */
    {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}, /* 85 U */
    {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."}, /* 86 V */
    {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."}, /* 87 W */
    {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"}, /* 88 X */
    {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."}, /* 89 Y */
    {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"}, /* 90 Z */
    {".###.", ".#...", ".#...", ".#...", ".#...", ".#...", ".###."}, /* 91 [ */
    {".....", "#....", ".#...", "..#..", "...#.", "....#", "....."}, /* 92 backslash */
    {".###.", "...#.", "...#.", "...#.", "...#.", "...#.", ".###."}, /* 93 ] */
    {"..#..", ".#.#.", "#...#", ".....", ".....", ".....", "....."}, /* 94 ^ */
    {".....", ".....", ".....", ".....", ".....", ".....", "#####"}, /* 95 _ */
    {".#...", "..#..", ".....", ".....", ".....", ".....", "....."}, /* 96 ` */
    {".....", ".....", ".###.", "....#", ".####", "#...#", ".####"}, /* 97 a */
    {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "####."}, /* 98 b */
    {".....", ".....", ".###.", "#....", "#....", "#...#", ".###."}, /* 99 c */
    {"....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####"}, /* 100 d */
    {".....", ".....", ".###.", "#...#", "#####", "#....", ".###."}, /* 101 e */
    {"..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."}, /* 102 f */
    {".....", ".....", ".####", "#...#", ".####", "....#", ".###."}, /* 103 g */
    {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"}, /* 104 h */
    {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."}, /* 105 i */
    {"...#.", ".....", "..##.", "...#.", "...#.", "#..#.", ".##.."}, /* 106 j */
    {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."}, /* 107 k */
    {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}, /* 108 l */
    {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#"}, /* 109 m */
    {".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"}, /* 110 n */
    {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."}, /* 111 o */
    {".....", ".....", "####.", "#...#", "####.", "#....", "#...."}, /* 112 p */
    {".....", ".....", ".####", "#...#", ".####", "....#", "....#"}, /* 113 q */
    {".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."}, /* 114 r */
    {".....", ".....", ".###.", "#....", ".###.", "....#", "####."}, /* 115 s */
    {".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."}, /* 116 t */
    {".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"}, /* 117 u */
    {".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."}, /* 118 v */
    {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."}, /* 119 w */
    {".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"}, /* 120 x */
    {".....", ".....", "#...#", "#...#", ".####", "....#", ".###."}, /* 121 y */
    {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"}, /* 122 z */
    {"...#.", "..#..", "..#..", ".#...", "..#..", "..#..", "...#."}, /* 123 { */
    {"..#..", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}, /* 124 | */
    {".#...", "..#..", "..#..", "...#.", "..#..", "..#..", ".#..."}, /* 125 } */
    {".....", ".....", ".#...", "#.#.#", "...#.", ".....", "....."}, /* 126 ~ */
};
/* clang-format on */

unsigned stx__font_row(int c, int r) {
    if (c < 32 || c > 126) c = '?';
    if (r < 0 || r > 6) return 0;
    const char *row = font[c - 32][r];
    unsigned bits = 0;
    for (int k = 0; k < 5; k++) bits = (bits << 1) | (row[k] == '#');
    return bits;
}

/* ---- drawing primitives on an RGB image ----------------------------------------------------- */

typedef struct image {
    uint8_t *p;
    int w, h;
} image;

static void put(const image *im, int64_t x, int64_t y, const uint8_t c[3]) {
    if (x < 0 || y < 0 || x >= im->w || y >= im->h) return;
    memcpy(im->p + ((size_t)y * (size_t)im->w + (size_t)x) * 3, c, 3);
}

static void fill_rect(const image *im, int x0, int y0, int x1, int y1, const uint8_t c[3]) {
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) put(im, x, y, c);
}

static int text_width(const char *t, int s) {
    size_t n = t ? strlen(t) : 0;
    return n ? (int)(6 * n - 1) * s : 0;
}

/* Left to right with the top left corner at (x, y); up = 1: rotated a quarter turn
 * anticlockwise, reading upwards from the bottom left corner (x, y). */
static void draw_text(const image *im, int x, int y, const char *t, int s, const uint8_t c[3],
                      int up) {
    for (int64_t k = 0; t[k]; k++) {
        /* The cell's first column (or row, upwards) relative to the image, in 64 bits. */
        int64_t along = up ? (int64_t)y - 6 * k * s : (int64_t)x + 6 * k * s;
        if (up ? along < 0 : along >= im->w) break; /* this and the rest are past the edge */
        if (up ? along - 6 * s >= im->h : along + 6 * s <= 0) continue;
        for (int r = 0; r < 7; r++) {
            unsigned bits = stx__font_row((unsigned char)t[k], r);
            for (int q = 0; q < 5; q++) {
                if (!(bits & (0x10u >> q))) continue;
                int gx = q * s, gy = r * s;
                for (int dy = 0; dy < s; dy++)
                    for (int dx = 0; dx < s; dx++) {
                        if (up)
                            put(im, (int64_t)x + gy + dy, along - gx - dx, c);
                        else
                            put(im, along + gx + dx, (int64_t)y + gy + dy, c);
                    }
            }
        }
    }
}

int stx_render_text(stx_tensor *rgb, int x, int y, const char *text, int scale,
                    const uint8_t color[3]) {
    if (!rgb || !text || !color || scale < 1 || scale > 256 || rgb->dtype != STX_DTYPE_UINT8 ||
        rgb->rank != 3 || rgb->dims[2] != 3 || rgb->dims[0] <= 0 || rgb->dims[1] <= 0 ||
        rgb->dims[0] > INT32_MAX || rgb->dims[1] > INT32_MAX)
        return -1;
    image im = {rgb->data, (int)rgb->dims[1], (int)rgb->dims[0]};
    draw_text(&im, x, y, text, scale, color, 0);
    size_t n = strlen(text);
    int64_t w = n ? (6 * (int64_t)n - 1) * scale : 0;
    return w > INT32_MAX ? INT32_MAX : (int)w;
}

/* ---- layout ---------------------------------------------------------------------------------- */

/* A value tick label: the step's decimals, or (sig) enough significant digits (3 to 10) to tell
 * neighbouring ticks apart. */
static void format_value(double v, const stx_plot_layout *L, int sig, char *buf, size_t n) {
    const double step = L->ystep;
    if (fabs(v) < step * 1e-6) v = 0; /* no "-0" */
    int dec = (int)-floor(log10(step) + 1e-9);
    if (sig || dec > 6) {
        double big = fmax(fabs(L->ylo), fabs(L->yhi));
        int p = big > 0 ? (int)ceil(log10(big / step) - 1e-9) + 1 : 3;
        snprintf(buf, n, "%.*g", p < 3 ? 3 : p > 10 ? 10 : p, v);
    } else {
        snprintf(buf, n, "%.*f", dec < 0 ? 0 : dec, v);
    }
}

/* Whether value labels use significant digits. */
static int value_sig(const stx_plot_layout *L) {
    return fmax(fabs(L->ylo), fabs(L->yhi)) >= 1e6 || L->ystep < 1e-6;
}

static double nice_step(double raw) {
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

stx_status stx__plot_layout(stx_err *e, const float *values, int64_t n, const char *title,
                            const char *xlabel, const char *ylabel, int width, int height,
                            stx_plot_layout *L) {
    memset(L, 0, sizeof *L);
    const int side = width < height ? width : height, s = side / 360 > 1 ? side / 360 : 1;
    L->scale = s;
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(values[i])) {
            lo = fmin(lo, (double)values[i]);
            hi = fmax(hi, (double)values[i]);
        }
    if (!(lo <= hi)) lo = 0, hi = 1;
    if (!(hi - lo > 1e-12 * fmax(fabs(lo), fabs(hi)))) {
        double half = lo != 0 ? 0.05 * fabs(lo) : 0.5;
        lo -= half;
        hi += half;
    }
    L->ystep = nice_step((hi - lo) / 5);
    L->ylo = floor(lo / L->ystep + 1e-9) * L->ystep;
    L->yhi = ceil(hi / L->ystep - 1e-9) * L->ystep;
    if (!(L->yhi > L->ylo)) L->yhi = L->ylo + L->ystep;
    L->nyticks = (int)floor((L->yhi - L->ylo) / L->ystep + 0.5) + 1;
    int lw = 0, sig = value_sig(L);
    for (int k = 0; k < L->nyticks; k++) {
        char b[48];
        format_value(L->ylo + k * L->ystep, L, sig, b, sizeof b);
        int tw = text_width(b, s);
        if (tw > lw) lw = tw;
    }
    char last[32];
    snprintf(last, sizeof last, "%lld", (long long)(n - 1));
    const int xw = text_width(last, s);
    const int pad = 4 * s, ch = 8 * s, tick = 4 * s;
    int top = pad + (title && *title ? ch + pad : 0) + pad;
    int left = pad + (ylabel && *ylabel ? ch + pad : 0) + lw + 2 * s + tick;
    int bottom = tick + 2 * s + ch + (xlabel && *xlabel ? pad + ch : 0) + pad;
    int right = xw / 2 + pad > 2 * pad ? xw / 2 + pad : 2 * pad;
    L->ax = left + 1;
    L->ay = top;
    L->aw = width - right - L->ax;
    L->ah = height - 1 - bottom - L->ay;
    if (L->aw < 16 || L->ah < 16)
        return stx__errf(e, STX_E_INVALID,
                         "stx_render_plot: a %dx%d plot leaves no room for the data inside its "
                         "labels (data area %dx%d)",
                         width, height, L->aw < 0 ? 0 : L->aw, L->ah < 0 ? 0 : L->ah);
    /* Frame ticks: the smallest 1-2-5 step whose labels (and 2 cells between them) fit. */
    int64_t fit = L->aw / (xw + 12 * s);
    if (fit < 1) fit = 1;
    int64_t step = 1;
    for (int64_t mag = 1;; mag *= 10) {
        if ((n + mag - 1) / mag <= fit) {
            step = mag;
            break;
        }
        if ((n + 2 * mag - 1) / (2 * mag) <= fit) {
            step = 2 * mag;
            break;
        }
        if ((n + 5 * mag - 1) / (5 * mag) <= fit) {
            step = 5 * mag;
            break;
        }
    }
    L->xstep = step;
    return STX_OK;
}

static int64_t band(const stx_plot_layout *L, int64_t n, int64_t i) {
    return L->ax + i * L->aw / n;
}

double stx__plot_x(const stx_plot_layout *L, int64_t n, double i) {
    int64_t k = (int64_t)i;
    return (double)(band(L, n, k) + band(L, n, k + 1) - 1) / 2.0;
}

double stx__plot_y(const stx_plot_layout *L, double v) {
    return L->ay + (L->yhi - v) / (L->yhi - L->ylo) * (L->ah - 1);
}

/* ---- the plot ------------------------------------------------------------------------------ */

/* Coverage of a segment (x0,y0)-(x1,y1) of half width hw into cov (the largest wins), clipped
 * to the data area (as matplotlib clips lines to the axes). */
static void cover_segment(float *cov, int w, const stx_plot_layout *L, double x0, double y0,
                          double x1, double y1, double hw) {
    int xa = (int)floor(fmin(x0, x1) - hw - 1), xb = (int)ceil(fmax(x0, x1) + hw + 1);
    int ya = (int)floor(fmin(y0, y1) - hw - 1), yb = (int)ceil(fmax(y0, y1) + hw + 1);
    if (xa < L->ax) xa = L->ax;
    if (ya < L->ay) ya = L->ay;
    if (xb > L->ax + L->aw - 1) xb = L->ax + L->aw - 1;
    if (yb > L->ay + L->ah - 1) yb = L->ay + L->ah - 1;
    double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
    for (int y = ya; y <= yb; y++)
        for (int x = xa; x <= xb; x++) {
            double t = len2 > 0 ? ((x - x0) * dx + (y - y0) * dy) / len2 : 0;
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            double px = x0 + t * dx - x, py = y0 + t * dy - y;
            double c = hw + 0.5 - sqrt(px * px + py * py);
            if (c <= 0) continue;
            float cf = (float)(c > 1 ? 1 : c);
            if (cf > cov[(size_t)y * (size_t)w + (size_t)x])
                cov[(size_t)y * (size_t)w + (size_t)x] = cf;
        }
}

stx_status stx_render_plot(stx_context *ctx, const float *values, const uint8_t *marks, int64_t n,
                           const char *title, const char *xlabel, const char *ylabel, int width,
                           int height, stx_tensor **out) {
    static const char fn[] = "stx_render_plot";
    stx_err *e = ctx ? &ctx->err : NULL;
    if (out) *out = NULL;
    if (!out || !values) return stx__errf(e, STX_E_INVALID, "%s: values and out are required", fn);
    if (n < 1 || n > ((int64_t)1 << 30))
        return stx__errf(e, STX_E_INVALID, "%s: %lld values (need 1 to 2^30)", fn, (long long)n);
    if (width < 64 || height < 64 || width > 16384 || height > 16384)
        return stx__errf(e, STX_E_INVALID, "%s: size %dx%d is not in 64..16384", fn, width, height);
    stx_plot_layout L;
    stx_status st = stx__plot_layout(e, values, n, title, xlabel, ylabel, width, height, &L);
    if (st) return st;
    int64_t dims[3] = {height, width, 3};
    stx_tensor *img = stx__tensor_new(ctx, STX_DTYPE_UINT8, dims, 3);
    float *cov = stx__calloc(ctx, (size_t)width * (size_t)height, sizeof *cov);
    if (!img || !cov) {
        stx_tensor_free(img);
        stx__free(ctx, cov);
        return stx__errf(e, STX_E_NOMEM, "%s: out of memory for a %dx%d image", fn, width, height);
    }
    static const uint8_t black[3] = {0, 0, 0}, grid[3] = {225, 225, 225},
                         shade[3] = {255, 221, 170}, line[3] = {31, 119, 180};
    const image im = {img->data, width, height};
    const int s = L.scale, pad = 4 * s, ch = 8 * s, tick = 4 * s;
    memset(im.p, 255, (size_t)width * (size_t)height * 3); /* white */
    const int axis_x = L.ax - 1, axis_y = L.ay + L.ah;

    if (marks)
        for (int64_t i = 0; i < n; i++)
            if (marks[i])
                fill_rect(&im, (int)band(&L, n, i), L.ay, (int)band(&L, n, i + 1), axis_y, shade);
    /* Grid lines at the value ticks (under the line). */
    for (int k = 1; k < L.nyticks; k++) {
        int y = (int)floor(stx__plot_y(&L, L.ylo + k * L.ystep) + 0.5);
        fill_rect(&im, L.ax, y, L.ax + L.aw, y + 1, grid);
    }
    /* The line and its dots, through the coverage mask. */
    const double hw = s;
    const int dots = L.aw / n >= 5 * s;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(values[i])) continue;
        double x0 = stx__plot_x(&L, n, (double)i), y0 = stx__plot_y(&L, values[i]);
        if (i + 1 < n && isfinite(values[i + 1]))
            cover_segment(cov, width, &L, x0, y0, stx__plot_x(&L, n, (double)(i + 1)),
                          stx__plot_y(&L, values[i + 1]), hw);
        else
            cover_segment(cov, width, &L, x0, y0, x0, y0, hw);
        if (dots) cover_segment(cov, width, &L, x0, y0, x0, y0, 2.0 * s);
    }
    for (size_t q = 0; q < (size_t)width * (size_t)height; q++) {
        float c = cov[q];
        if (c <= 0) continue;
        uint8_t *p = im.p + 3 * q;
        for (int k = 0; k < 3; k++)
            p[k] = (uint8_t)floorf((1.0f - c) * (float)p[k] + c * (float)line[k] + 0.5f);
    }
    /* Value ticks and labels. */
    const int sig = value_sig(&L);
    for (int k = 0; k < L.nyticks; k++) {
        double v = L.ylo + k * L.ystep;
        int y = (int)floor(stx__plot_y(&L, v) + 0.5);
        fill_rect(&im, axis_x - tick, y, axis_x, y + 1, black);
        char b[48];
        format_value(v, &L, sig, b, sizeof b);
        draw_text(&im, axis_x - tick - 2 * s - text_width(b, s), y - 7 * s / 2, b, s, black, 0);
    }
    /* Frame ticks and labels. */
    for (int64_t i = 0; i < n; i += L.xstep) {
        int x = (int)floor(stx__plot_x(&L, n, (double)i) + 0.5);
        fill_rect(&im, x, axis_y + 1, x + 1, axis_y + 1 + tick, black);
        char b[32];
        snprintf(b, sizeof b, "%lld", (long long)i);
        draw_text(&im, x - text_width(b, s) / 2, axis_y + 1 + tick + 2 * s, b, s, black, 0);
    }
    /* Axes. */
    fill_rect(&im, axis_x, L.ay, axis_x + 1, axis_y + 1, black);
    fill_rect(&im, axis_x, axis_y, L.ax + L.aw, axis_y + 1, black);
    /* Labels. */
    if (title && *title) {
        int tw = text_width(title, s), x = L.ax + (L.aw - tw) / 2;
        draw_text(&im, x < 0 ? 0 : x, pad, title, s, black, 0);
    }
    if (xlabel && *xlabel) {
        int tw = text_width(xlabel, s), x = L.ax + (L.aw - tw) / 2;
        draw_text(&im, x < 0 ? 0 : x, axis_y + 1 + tick + 2 * s + ch + pad, xlabel, s, black, 0);
    }
    if (ylabel && *ylabel) {
        int tw = text_width(ylabel, s), y = L.ay + (L.ah + tw) / 2;
        draw_text(&im, pad, y > height - 1 ? height - 1 : y, ylabel, s, black, 1);
    }
    stx__free(ctx, cov);
    *out = img;
    return STX_OK;
}
