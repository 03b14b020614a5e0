/* overlay.c: heat maps over the source frames: normalisation (stx_render_normalize), carrying a
 * map from the model's input grid back to the source frame (stx_render_unmap) and blending
 * (stx_render_overlay); also the argument checks the other rendering files share.
 *
 * Order of use: normalise the map at the model's resolution (NaN there is an error), unmap it
 * (pixels outside the crop become NaN, inside it bilinear sampling keeps values in [0, 1]), then
 * overlay (NaN pixels are shown dimmed and uncoloured).
 *
 * Normalisation (in double, stored as float32, clamped to [0, 1]) over the whole clip (the peers'
 * default: pytorch-grad-cam, torch-cam, mmaction2) or per frame: min-max (v - lo) / (hi - lo),
 * a constant range giving 0s; signed: 0.5 + 0.5 * v / m with m = max |v|, so 0 maps to 0.5
 * (the diverging map's white), an all-zero range giving 0.5s.
 *
 * Unmapping. A preprocessed frame is the source (src_h x src_w) resized to resized_h x resized_w
 * and cropped at (crop_y, crop_x) to out_h x out_w. Source pixel row y has its centre at the
 * continuous resized coordinate p = (y + 0.5) * resized_h / src_h (pixel k of any grid spans
 * [k, k + 1)). The row is inside the crop when crop_y <= p < crop_y + out_h; the map is then
 * sampled at the crop coordinate c = p - 0.5 - crop_y (map pixel centres at integers), clamped
 * to [0, out_h - 1]: rows floor(c) and floor(c) + 1 (clamped to the last) with weights 1 - f and
 * f, f = c - floor(c). Columns likewise; the value is the bilinear blend (computed in double).
 * Outside the crop (in rows or columns) the value is NaN.
 *
 * Blending: out = floor((1 - alpha) * frame + alpha * colour + 0.5) per channel, colour the
 * colour map's RGB of the normalised value (values outside [0, 1] are clamped by the map); a NaN
 * pixel is floor(frame * dim + 0.5). */
#include "render.h"

#include <math.h>
#include <string.h>

stx_render_options stx_render_options_default(void) {
    stx_render_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.colormap = STX_CMAP_JET;
    o.alpha = 0.5f;
    o.per_frame = 0;
    o.signed_map = 0;
    o.dim = 0.35f;
    return o;
}

stx_status stx__render_check_options(stx_err *e, const char *fn, const stx_render_options *o) {
    if (!o) return STX_OK;
    if (o->size != sizeof *o)
        return stx__errf(e, STX_E_INVALID,
                         "%s: stx_render_options.size is %zu, expected %zu (start from "
                         "stx_render_options_default())",
                         fn, o->size, sizeof *o);
    if ((unsigned)o->colormap > (unsigned)STX_CMAP_DIVERGING)
        return stx__errf(e, STX_E_INVALID, "%s: unknown colour map %d", fn, (int)o->colormap);
    if (!(o->alpha >= 0.0f && o->alpha <= 1.0f))
        return stx__errf(e, STX_E_INVALID, "%s: alpha %g is not in [0, 1]", fn, (double)o->alpha);
    if (!(o->dim >= 0.0f && o->dim <= 1.0f))
        return stx__errf(e, STX_E_INVALID, "%s: dim %g is not in [0, 1]", fn, (double)o->dim);
    return STX_OK;
}

stx_status stx__render_check_clip(stx_err *e, const char *fn, const char *what,
                                  const stx_tensor *t) {
    if (!t) return stx__errf(e, STX_E_INVALID, "%s: %s is NULL", fn, what);
    char sb[160];
    if (t->dtype != STX_DTYPE_UINT8 || t->rank != 4 || t->dims[3] != 3)
        return stx__errf(e, t->dtype != STX_DTYPE_UINT8 ? STX_E_INVALID : STX_E_SHAPE,
                         "%s: %s must be uint8 (T,H,W,3), got %s %s", fn, what,
                         stx_dtype_name(t->dtype), stx__shape_str(t->dims, t->rank, sb, sizeof sb));
    if (t->dims[0] <= 0 || t->dims[1] <= 0 || t->dims[2] <= 0)
        return stx__errf(e, STX_E_SHAPE, "%s: %s %s has an empty axis", fn, what,
                         stx__shape_str(t->dims, t->rank, sb, sizeof sb));
    return STX_OK;
}

/* A float32 (T, h, w) map with every axis > 0. */
static stx_status check_map(stx_err *e, const char *fn, const stx_tensor *m) {
    if (!m) return stx__errf(e, STX_E_INVALID, "%s: map is NULL", fn);
    char sb[160];
    if (m->dtype != STX_DTYPE_FLOAT || m->rank != 3)
        return stx__errf(e, m->dtype != STX_DTYPE_FLOAT ? STX_E_INVALID : STX_E_SHAPE,
                         "%s: map must be float32 (T,h,w), got %s %s", fn, stx_dtype_name(m->dtype),
                         stx__shape_str(m->dims, m->rank, sb, sizeof sb));
    if (m->dims[0] <= 0 || m->dims[1] <= 0 || m->dims[2] <= 0)
        return stx__errf(e, STX_E_SHAPE, "%s: map %s has an empty axis", fn,
                         stx__shape_str(m->dims, m->rank, sb, sizeof sb));
    return STX_OK;
}

stx_status stx_render_normalize(stx_context *ctx, const stx_tensor *map,
                                const stx_render_options *o, stx_tensor **out) {
    static const char fn[] = "stx_render_normalize";
    stx_err *e = ctx ? &ctx->err : NULL;
    if (out) *out = NULL;
    if (!out) return stx__errf(e, STX_E_INVALID, "%s: out is NULL", fn);
    stx_status st = check_map(e, fn, map);
    if (st) return st;
    st = stx__render_check_options(e, fn, o);
    if (st) return st;
    stx_render_options def = stx_render_options_default();
    if (!o) o = &def;

    const int64_t T = map->dims[0], HW = map->dims[1] * map->dims[2];
    const float *x = map->data;
    for (int64_t i = 0; i < T * HW; i++)
        if (!isfinite(x[i])) {
            char sb[160];
            int64_t t = i / HW, r = i % HW;
            return stx__errf(e, STX_E_NUMERIC,
                             "%s: map %s has a non-finite value (%g) at [t=%lld, y=%lld, x=%lld]",
                             fn, stx__shape_str(map->dims, map->rank, sb, sizeof sb), (double)x[i],
                             (long long)t, (long long)(r / map->dims[2]),
                             (long long)(r % map->dims[2]));
        }
    stx_tensor *y = stx__tensor_new(ctx, STX_DTYPE_FLOAT, map->dims, 3);
    if (!y) return stx__errf(e, STX_E_NOMEM, "%s: out of memory", fn);
    float *d = y->data;
    if (o->use_range &&
        !(isfinite(o->range_lo) && isfinite(o->range_hi) && o->range_lo <= o->range_hi)) {
        stx_tensor_free(y);
        return stx__errf(e, STX_E_INVALID, "%s: range [%g, %g] must be finite and ordered", fn,
                         (double)o->range_lo, (double)o->range_hi);
    }
    /* One scope per frame, or one scope for the clip (always with a fixed range). */
    const int per_frame = o->per_frame && !o->use_range;
    const int64_t scopes = per_frame ? T : 1, len = per_frame ? HW : T * HW;
    for (int64_t s = 0; s < scopes; s++) {
        const float *xs = x + s * len;
        float *ds = d + s * len;
        if (o->signed_map) {
            double m = 0;
            if (o->use_range)
                m = fmax(fabs((double)o->range_lo), fabs((double)o->range_hi));
            else
                for (int64_t i = 0; i < len; i++) m = fmax(m, fabs((double)xs[i]));
            for (int64_t i = 0; i < len; i++) {
                double v = m > 0 ? 0.5 + 0.5 * ((double)xs[i] / m) : 0.5;
                ds[i] = (float)(v < 0 ? 0 : v > 1 ? 1 : v);
            }
        } else {
            double lo = xs[0], hi = xs[0];
            if (o->use_range) {
                lo = o->range_lo;
                hi = o->range_hi;
            } else {
                for (int64_t i = 1; i < len; i++) {
                    lo = fmin(lo, (double)xs[i]);
                    hi = fmax(hi, (double)xs[i]);
                }
            }
            double range = hi - lo;
            for (int64_t i = 0; i < len; i++) {
                double v = range > 0 ? ((double)xs[i] - lo) / range : 0.0;
                ds[i] = (float)(v < 0 ? 0 : v > 1 ? 1 : v);
            }
        }
    }
    *out = y;
    return STX_OK;
}

/* One output pixel's sampling along an axis: inside the crop or not, two map indices, weight of
 * the second. */
typedef struct unmap_tap {
    int inside;
    int64_t i0, i1;
    double f;
} unmap_tap;

static void unmap_taps(int src, int resized, int crop, int out, unmap_tap *taps) {
    for (int y = 0; y < src; y++) {
        double p = ((double)y + 0.5) * (double)resized / (double)src;
        unmap_tap *t = &taps[y];
        t->inside = p >= (double)crop && p < (double)crop + (double)out;
        double c = p - 0.5 - (double)crop;
        if (c < 0) c = 0;
        if (c > out - 1) c = out - 1;
        double fl = floor(c);
        t->i0 = (int64_t)fl;
        t->i1 = t->i0 + 1 < out ? t->i0 + 1 : t->i0;
        t->f = c - fl;
    }
}

stx_status stx_render_unmap(stx_context *ctx, const stx_tensor *map, const stx_frame_geometry *g,
                            stx_tensor **out) {
    static const char fn[] = "stx_render_unmap";
    stx_err *e = ctx ? &ctx->err : NULL;
    if (out) *out = NULL;
    if (!out || !g) return stx__errf(e, STX_E_INVALID, "%s: g and out are required", fn);
    stx_status st = check_map(e, fn, map);
    if (st) return st;
    if (g->src_h <= 0 || g->src_w <= 0 || g->resized_h <= 0 || g->resized_w <= 0 || g->out_h <= 0 ||
        g->out_w <= 0 || g->crop_y < 0 || g->crop_x < 0 ||
        (int64_t)g->crop_y + g->out_h > g->resized_h ||
        (int64_t)g->crop_x + g->out_w > g->resized_w)
        return stx__errf(e, STX_E_INVALID,
                         "%s: bad geometry: source %dx%d, resized %dx%d, crop %dx%d at (y=%d, "
                         "x=%d) (the crop must lie inside the resized frame)",
                         fn, g->src_h, g->src_w, g->resized_h, g->resized_w, g->out_h, g->out_w,
                         g->crop_y, g->crop_x);
    char sb[160];
    if (map->dims[1] != g->out_h || map->dims[2] != g->out_w)
        return stx__errf(e, STX_E_SHAPE, "%s: map %s does not match the crop %dx%d (T,%d,%d)", fn,
                         stx__shape_str(map->dims, map->rank, sb, sizeof sb), g->out_h, g->out_w,
                         g->out_h, g->out_w);
    const int64_t T = map->dims[0], H = g->src_h, W = g->src_w, w = g->out_w;
    int64_t dims[3] = {T, H, W}, n;
    if (!stx__numel_checked(dims, 3, &n))
        return stx__errf(e, STX_E_INVALID, "%s: output %s is too large", fn,
                         stx__shape_str(dims, 3, sb, sizeof sb));
    stx_tensor *y = stx__tensor_new(ctx, STX_DTYPE_FLOAT, dims, 3);
    unmap_tap *ty = stx__malloc(ctx, sizeof *ty * (size_t)(H + W));
    if (!y || !ty) {
        stx_tensor_free(y);
        stx__free(ctx, ty);
        return stx__errf(e, STX_E_NOMEM, "%s: out of memory for %s", fn,
                         stx__shape_str(dims, 3, sb, sizeof sb));
    }
    unmap_tap *tx = ty + H;
    unmap_taps(g->src_h, g->resized_h, g->crop_y, g->out_h, ty);
    unmap_taps(g->src_w, g->resized_w, g->crop_x, g->out_w, tx);
    const float *m = map->data;
    float *d = y->data;
    for (int64_t t = 0; t < T; t++) {
        const float *mt = m + t * g->out_h * w;
        for (int64_t r = 0; r < H; r++) {
            float *row = d + (t * H + r) * W;
            const unmap_tap *a = &ty[r];
            if (!a->inside) {
                for (int64_t c = 0; c < W; c++) row[c] = NAN;
                continue;
            }
            const float *r0 = mt + a->i0 * w, *r1 = mt + a->i1 * w;
            for (int64_t c = 0; c < W; c++) {
                const unmap_tap *b = &tx[c];
                if (!b->inside) {
                    row[c] = NAN;
                    continue;
                }
                double top = (1 - b->f) * r0[b->i0] + b->f * r0[b->i1];
                double bot = (1 - b->f) * r1[b->i0] + b->f * r1[b->i1];
                row[c] = (float)((1 - a->f) * top + a->f * bot);
            }
        }
    }
    stx__free(ctx, ty);
    *out = y;
    return STX_OK;
}

stx_status stx_render_overlay(stx_context *ctx, const stx_tensor *frames, const stx_tensor *norm,
                              const stx_render_options *o, stx_tensor **out) {
    static const char fn[] = "stx_render_overlay";
    stx_err *e = ctx ? &ctx->err : NULL;
    if (out) *out = NULL;
    if (!out) return stx__errf(e, STX_E_INVALID, "%s: out is NULL", fn);
    stx_status st = stx__render_check_clip(e, fn, "frames", frames);
    if (st) return st;
    if (!norm) return stx__errf(e, STX_E_INVALID, "%s: norm is NULL", fn);
    char sb[160], fb[160];
    if (norm->dtype != STX_DTYPE_FLOAT || norm->rank != 3 || norm->dims[0] != frames->dims[0] ||
        norm->dims[1] != frames->dims[1] || norm->dims[2] != frames->dims[2])
        return stx__errf(e, norm->dtype != STX_DTYPE_FLOAT ? STX_E_INVALID : STX_E_SHAPE,
                         "%s: norm must be float32 (T,H,W) matching frames %s, got %s %s", fn,
                         stx__shape_str(frames->dims, frames->rank, fb, sizeof fb),
                         stx_dtype_name(norm->dtype),
                         stx__shape_str(norm->dims, norm->rank, sb, sizeof sb));
    st = stx__render_check_options(e, fn, o);
    if (st) return st;
    stx_render_options def = stx_render_options_default();
    if (!o) o = &def;
    stx_tensor *y = stx__tensor_new(ctx, STX_DTYPE_UINT8, frames->dims, 4);
    if (!y)
        return stx__errf(e, STX_E_NOMEM, "%s: out of memory for %s", fn,
                         stx__shape_str(frames->dims, frames->rank, fb, sizeof fb));
    /* The frame's share and the dimmed value of every byte value. */
    float keep[256];
    uint8_t dimmed[256];
    const float a = o->alpha;
    for (int v = 0; v < 256; v++) {
        keep[v] = (1.0f - a) * (float)v;
        dimmed[v] = (uint8_t)floorf((float)v * o->dim + 0.5f);
    }
    const int64_t n = frames->dims[0] * frames->dims[1] * frames->dims[2];
    const uint8_t *f = frames->data;
    const float *z = norm->data;
    uint8_t *d = y->data;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *fp = f + 3 * i;
        uint8_t *dp = d + 3 * i;
        if (isnan(z[i])) {
            for (int c = 0; c < 3; c++) dp[c] = dimmed[fp[c]];
            continue;
        }
        uint8_t rgb[3];
        stx_colormap_rgb(o->colormap, z[i], rgb);
        for (int c = 0; c < 3; c++) {
            float v = floorf(keep[fp[c]] + a * (float)rgb[c] + 0.5f);
            dp[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    *out = y;
    return STX_OK;
}
