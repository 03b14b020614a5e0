/* preprocess.c: uint8 video frames to a model's float32 input (stx_frames_to_input).
 *
 * Frames arrive as decoders give them: (T, H, W, C) or (N, T, H, W, C) bytes, channels last,
 * C = 3 (RGB) or 1 (grey, replicated to the 3 channels). The output plane of one (sample, frame,
 * channel) is computed in one pass and written where the layout puts it:
 *   NCTHW: (N, 3, T, H', W')   NTCHW: (N, T, 3, H', W')   NCHW: (N*T, 3, H', W')
 * (NTCHW and NCHW share the memory order; only the shape differs).
 *
 * Exactness. Without resizing, a value is `x = (float)v / 255.0f; x = (x - mean) / std;` in
 * float32, in that order, with no reciprocal and nothing to contract into an fma: the same
 * operations numpy performs on float32 arrays, so the results agree bit for bit. Only 256 pixel
 * values exist, so each channel's results are tabulated once and the plane is a table lookup.
 *
 * Resizing follows torch.nn.functional.interpolate(mode='bilinear', align_corners=False,
 * antialias=False) on v / 255: per axis, scale = in / out (float), source = scale * (d + 0.5)
 * - 0.5 clamped at 0, neighbours floor(source) and the next one clamped to the last pixel, and
 * the result h0 * (w0 * a + w1 * b) + h1 * (w0 * c + w1 * d) in PyTorch's order. Normalisation
 * comes after the interpolation, as when a model's transform resizes the [0,1] image first.
 */
#include "../core/core.h"

#include <math.h>
#include <string.h>

stx_preprocess stx_preprocess_default(void) {
    stx_preprocess p;
    memset(&p, 0, sizeof p);
    p.size = sizeof p;
    p.layout = "NCTHW";
    for (int c = 0; c < 3; c++) p.std[c] = 1.0f;
    return p;
}

stx_status stx_preprocess_from_model(const stx_model *m, stx_preprocess *p) {
    if (!m || !p) return STX_E_INVALID;
    stx_model_facts f;
    stx_status st = stx_model_facts_get(m, &f); /* filled even when some key is malformed */
    if (f.layout) p->layout = f.layout;
    if (f.has_normalization) {
        p->normalize = 1;
        memcpy(p->mean, f.mean, sizeof p->mean);
        memcpy(p->std, f.std, sizeof p->std);
    }
    if (f.frame_height > 0 && f.frame_width > 0) {
        p->height = f.frame_height;
        p->width = f.frame_width;
    }
    return st;
}

/* Python's round() of k / 2 for an integer k >= 0: halves go to the even neighbour. */
static int half_round_even(int k) {
    int q = k / 2;
    return (k % 2 == 1 && q % 2 == 1) ? q + 1 : q;
}

stx_status stx_preprocess_geometry(const stx_preprocess *p, int src_h, int src_w,
                                   stx_frame_geometry *g) {
    if (!p || !g || src_h <= 0 || src_w <= 0) return STX_E_INVALID;
    memset(g, 0, sizeof *g);
    g->src_h = src_h;
    g->src_w = src_w;
    g->resized_h = src_h;
    g->resized_w = src_w;
    const int exact = p->height > 0 || p->width > 0; /* an exact size (0: that side kept) */
    if (exact) {
        if (p->height > 0) g->resized_h = p->height;
        if (p->width > 0) g->resized_w = p->width;
    } else if (p->short_side > 0) {
        /* torchvision's Resize(int): the short side becomes short_side, the long side
         * int(short_side * long / short) (truncated) */
        if (src_h <= src_w) {
            g->resized_h = p->short_side;
            g->resized_w = (int)((double)p->short_side * src_w / src_h);
        } else {
            g->resized_w = p->short_side;
            g->resized_h = (int)((double)p->short_side * src_h / src_w);
        }
        if (g->resized_h < 1) g->resized_h = 1;
        if (g->resized_w < 1) g->resized_w = 1;
    }
    g->out_h = g->resized_h;
    g->out_w = g->resized_w;
    if (exact) return STX_OK; /* no crop after an exact resize */
    if (p->crop_height > 0 && p->crop_width > 0) {
        if (p->crop_height > g->resized_h || p->crop_width > g->resized_w) return STX_E_SHAPE;
        /* torchvision's CenterCrop: top = round((h - crop) / 2), Python rounding */
        g->crop_y = half_round_even(g->resized_h - p->crop_height);
        g->crop_x = half_round_even(g->resized_w - p->crop_width);
        g->out_h = p->crop_height;
        g->out_w = p->crop_width;
    }
    return STX_OK;
}

stx_status stx_preprocess_preset(const char *name, stx_preprocess *p) {
    static const struct {
        const char *name;
        float mean[3], std[3];
        int short_side, crop;
    } presets[] = {
        /* torchvision's video classification weights (R3D-18, R(2+1)D-18, MC3-18 on Kinetics-400)
         */
        {"kinetics", {0.43216f, 0.394666f, 0.37645f}, {0.22803f, 0.22145f, 0.216989f}, 128, 112},
        /* torchvision's ImageNet classifiers */
        {"imagenet", {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}, 256, 224},
    };
    if (!name || !p) return STX_E_INVALID;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (strcmp(name, presets[i].name) == 0) {
            p->normalize = 1;
            memcpy(p->mean, presets[i].mean, sizeof p->mean);
            memcpy(p->std, presets[i].std, sizeof p->std);
            p->short_side = presets[i].short_side;
            p->crop_height = p->crop_width = presets[i].crop;
            p->height = p->width = 0;
            return STX_OK;
        }
    return STX_E_NOTFOUND;
}

/* One output index of a bilinear resize along one axis: two source indices and their weights. */
typedef struct lerp_tap {
    int64_t i0, i1;
    float l0, l1;
} lerp_tap;

static void lerp_taps(int64_t in, int64_t out, lerp_tap *taps) {
    float scale = (float)in / (float)out;
    for (int64_t d = 0; d < out; d++) {
        float src = scale * ((float)d + 0.5f);
        src = src - 0.5f;
        if (src < 0) src = 0;
        int64_t i0 = (int64_t)src;
        if (i0 > in - 1) i0 = in - 1;
        float l1 = src - (float)i0;
        l1 = l1 < 0 ? 0 : l1 > 1 ? 1 : l1;
        taps[d].i0 = i0;
        taps[d].i1 = i0 < in - 1 ? i0 + 1 : i0;
        taps[d].l1 = l1;
        taps[d].l0 = 1.0f - l1;
    }
}

typedef enum { LAYOUT_NCTHW, LAYOUT_NTCHW, LAYOUT_NCHW } frame_layout;

static stx_status parse_layout(stx_err *e, const char *s, frame_layout *out) {
    if (!s || strcmp(s, "NCTHW") == 0)
        *out = LAYOUT_NCTHW;
    else if (strcmp(s, "NTCHW") == 0)
        *out = LAYOUT_NTCHW;
    else if (strcmp(s, "NCHW") == 0)
        *out = LAYOUT_NCHW;
    else if (strcmp(s, "NCT") == 0)
        return stx__errf(e, STX_E_INVALID,
                         "layout NCT takes a sequence of feature vectors, not video frames");
    else
        return stx__errf(e, STX_E_INVALID, "unknown layout '%.40s' (expected NCTHW, NTCHW or NCHW)",
                         s);
    return STX_OK;
}

stx_status stx_frames_to_input(stx_context *ctx, const stx_tensor *frames, const stx_preprocess *p,
                               stx_tensor **out) {
    stx_err *e = ctx ? &ctx->err : NULL;
    if (out) *out = NULL;
    if (!frames || !p || !out)
        return stx__errf(e, STX_E_INVALID, "stx_frames_to_input: frames, p and out are required");
    char sb[160];
    const char *shape = stx__shape_str(frames->dims, frames->rank, sb, sizeof sb);
    if (frames->dtype != STX_DTYPE_UINT8)
        return stx__errf(e, STX_E_INVALID, "frames must be uint8 pixels, got %s %s",
                         stx_dtype_name(frames->dtype), shape);
    if (frames->rank != 4 && frames->rank != 5)
        return stx__errf(e, STX_E_SHAPE,
                         "frames must be (T,H,W,C) or (N,T,H,W,C) uint8, got rank %d %s",
                         frames->rank, shape);
    const int64_t *d = frames->dims + (frames->rank - 4);
    int64_t N = frames->rank == 5 ? frames->dims[0] : 1, T = d[0], H = d[1], W = d[2], C = d[3];
    if (N <= 0 || T <= 0 || H <= 0 || W <= 0)
        return stx__errf(e, STX_E_SHAPE, "frames %s: every dimension must be > 0", shape);
    if (C != 1 && C != 3)
        return stx__errf(
            e, STX_E_SHAPE,
            "frames %s: the last axis holds the channels, 3 (RGB) or 1 (grey), got %lld", shape,
            (long long)C);
    frame_layout lay;
    stx_status st = parse_layout(e, p->layout, &lay);
    if (st) return st;
    if (p->height < 0 || p->width < 0)
        return stx__errf(e, STX_E_INVALID, "frame size %dx%d: must be positive (0 keeps the size)",
                         p->height, p->width);
    if (p->normalize)
        for (int c = 0; c < 3; c++)
            if (!isfinite(p->mean[c]) || !isfinite(p->std[c]) || !(p->std[c] > 0))
                return stx__errf(e, STX_E_INVALID,
                                 "normalisation mean %g,%g,%g std %g,%g,%g: the means must be "
                                 "finite and every std > 0",
                                 (double)p->mean[0], (double)p->mean[1], (double)p->mean[2],
                                 (double)p->std[0], (double)p->std[1], (double)p->std[2]);
    if (p->short_side < 0 || p->crop_height < 0 || p->crop_width < 0)
        return stx__errf(e, STX_E_INVALID,
                         "short side %d, crop %dx%d: must be positive (0: keep, no crop)",
                         p->short_side, p->crop_height, p->crop_width);
    if (H > INT32_MAX || W > INT32_MAX)
        return stx__errf(e, STX_E_SHAPE, "frames %s: frames too large", shape);
    stx_frame_geometry g;
    st = stx_preprocess_geometry(p, (int)H, (int)W, &g);
    if (st)
        return stx__errf(
            e, st, "frames %s: a %dx%d crop does not fit the %dx%d frame resized to %dx%d", shape,
            p->crop_height, p->crop_width, (int)H, (int)W, g.resized_h, g.resized_w);
    const int64_t Ho = g.out_h, Wo = g.out_w, Hr = g.resized_h, Wr = g.resized_w;
    int64_t dims[5];
    int rank;
    if (lay == LAYOUT_NCTHW) {
        int64_t s[5] = {N, 3, T, Ho, Wo};
        memcpy(dims, s, sizeof s);
        rank = 5;
    } else if (lay == LAYOUT_NTCHW) {
        int64_t s[5] = {N, T, 3, Ho, Wo};
        memcpy(dims, s, sizeof s);
        rank = 5;
    } else {
        int64_t s[4] = {N * T, 3, Ho, Wo};
        memcpy(dims, s, sizeof s);
        rank = 4;
    }
    int64_t total;
    if (!stx__numel_checked(dims, rank, &total))
        return stx__errf(e, STX_E_INVALID, "frames %s: the output would be too large", shape);
    stx_tensor *y = stx__tensor_new(ctx, STX_DTYPE_FLOAT, dims, rank);
    bool resize = Hr != H || Wr != W;
    lerp_tap *th = resize ? stx__malloc(ctx, sizeof *th * (size_t)(Hr + Wr)) : NULL;
    if (!y || (resize && !th)) {
        stx_tensor_free(y);
        stx__free(ctx, th);
        return stx__errf(e, STX_E_NOMEM, "out of memory for the preprocessed frames %s", shape);
    }
    lerp_tap *tw = th ? th + Hr : NULL;
    if (resize) {
        lerp_taps(H, Hr, th);
        lerp_taps(W, Wr, tw);
    }
    const int64_t cy = g.crop_y, cx = g.crop_x;
    const int bgr = p->bgr != 0;

    /* The 256 possible values per channel: v / 255, then normalised (the no-resize table). */
    float base[256], lut[3][256];
    for (int v = 0; v < 256; v++) {
        float x = (float)v / 255.0f;
        base[v] = x;
        for (int c = 0; c < 3; c++) {
            float z = x;
            if (p->normalize) {
                z = z - p->mean[c];
                z = z / p->std[c];
            }
            lut[c][v] = z;
        }
    }
    const uint8_t *src = frames->data;
    float *dst = y->data;
    const int norm = p->normalize;
    const float mean[3] = {p->mean[0], p->mean[1], p->mean[2]};
    const float sd[3] = {p->std[0], p->std[1], p->std[2]};
    const int64_t planes = N * T * 3, HWo = Ho * Wo, HW = H * W;
    const int nt = ctx && ctx->num_threads > 0 ? ctx->num_threads : 1;
#pragma omp parallel for schedule(static) num_threads(nt) if (total >= 65536)
    for (int64_t q = 0; q < planes; q++) {
        int64_t n = q / (T * 3), t = (q / 3) % T, c = q % 3;
        int64_t o = lay == LAYOUT_NCTHW ? ((n * 3 + c) * T + t) * HWo : ((n * T + t) * 3 + c) * HWo;
        /* output channel c reads source channel c (RGB) or 2 - c (BGR) */
        const uint8_t *s = src + (n * T + t) * HW * C + (C == 1 ? 0 : bgr ? 2 - c : c);
        float *yo = dst + o;
        if (!resize) {
            for (int64_t r = 0; r < Ho; r++)
                for (int64_t k = 0; k < Wo; k++)
                    yo[r * Wo + k] = lut[c][s[((r + cy) * W + k + cx) * C]];
            continue;
        }
        for (int64_t r = 0; r < Ho; r++) {
            const lerp_tap *tr = &th[r + cy];
            const uint8_t *r0 = s + tr->i0 * W * C, *r1 = s + tr->i1 * W * C;
            float h0 = tr->l0, h1 = tr->l1;
            for (int64_t k = 0; k < Wo; k++) {
                const lerp_tap *tk = &tw[k + cx];
                int64_t a = tk->i0 * C, b = tk->i1 * C;
                float w0 = tk->l0, w1 = tk->l1;
                float top = w0 * base[r0[a]] + w1 * base[r0[b]];
                float bot = w0 * base[r1[a]] + w1 * base[r1[b]];
                float x = h0 * top + h1 * bot;
                if (norm) {
                    x = x - mean[c];
                    x = x / sd[c];
                }
                yo[r * Wo + k] = x;
            }
        }
    }
    stx__free(ctx, th);
    *out = y;
    return STX_OK;
}
