/* render.h: internal helpers shared by the rendering files (src/render/), and the plot layout
 * that tests/render_tests.c checks drawn pixels against. Never installed. */
#ifndef STX_RENDER_H
#define STX_RENDER_H

#include "../core/core.h"

/* Checks that t is a uint8 (T, H, W, 3) clip with every axis > 0; the message reads
 * "<fn>: <what> must be uint8 (T,H,W,3), got float32 [1,16,64,64]". */
stx_status stx__render_check_clip(stx_err *e, const char *fn, const char *what,
                                  const stx_tensor *t);
/* Checks the options (NULL is fine: the caller uses the defaults). */
stx_status stx__render_check_options(stx_err *e, const char *fn, const stx_render_options *o);
/* A temporary path beside `path` ("<path>.tmp<pid>.<n>", unique within the process), freed with
 * stx__free; NULL when out of memory. Writers fill it and rename it onto path. */
char *stx__render_tmp_path(stx_context *ctx, const char *path);

/* Quantises npix RGB pixels to at most 256 colours (quantize.c): the palette in pal[0..*ncolors),
 * the entry of every pixel in idx. -1 when out of memory. */
int stx__quantize(stx_context *ctx, const uint8_t *rgb, size_t npix, uint8_t pal[256][3],
                  int *ncolors, uint8_t *idx);

/* The 5 x 7 bitmap font (plot.c): row r (0 = top) of printable character c, bit 4 the leftmost
 * column. Characters outside 32..126 give '?'. */
unsigned stx__font_row(int c, int r);

/* Plot geometry of stx_render_plot for an image size, labels and values (plot.c explains the
 * margins). The data area is the columns [ax, ax + aw) and the rows [ay, ay + ah); the left axis
 * is the column ax - 1 (rows ay .. ay + ah) and the bottom axis the row ay + ah (columns ax - 1
 * .. ax + aw - 1), both black. Frame i of n owns the columns [b(i), b(i + 1)), b(i) = ax +
 * floor(i * aw / n), and sits at the column stx__plot_x = (b(i) + b(i + 1) - 1) / 2; value v
 * sits at the row stx__plot_y = ay + (yhi - v) / (yhi - ylo) * (ah - 1) (pixel centres at
 * integer coordinates). */
typedef struct stx_plot_layout {
    int scale;              /* font scale */
    int ax, ay, aw, ah;     /* data area */
    double ylo, yhi, ystep; /* value axis range and tick step: ticks at ylo + k * ystep */
    int nyticks;            /* number of value ticks (ylo .. yhi inclusive) */
    int64_t xstep;          /* frame tick step: ticks at frames 0, xstep, 2 * xstep, ... < n */
} stx_plot_layout;

stx_status stx__plot_layout(stx_err *e, const float *values, int64_t n, const char *title,
                            const char *xlabel, const char *ylabel, int width, int height,
                            stx_plot_layout *L);
/* Continuous pixel coordinates of frame i and of value v in the layout. */
double stx__plot_x(const stx_plot_layout *L, int64_t n, double i);
double stx__plot_y(const stx_plot_layout *L, double v);

#endif
