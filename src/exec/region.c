/* region.c: region runs, reusing what a local perturbation does not change.
 *
 * Occlusion runs the network on many copies of one clip that differ from it only inside a box
 * (the occluded window). A convolution's output then differs from the clean one only inside
 * the box grown by its receptive field, and for the first layers of a video CNN that is a small
 * part of the tensor. A region plan (for one session of batch B and a list of input boxes)
 * walks the fused steps in order and, for every window, grows the box through each
 * convolution (stride, dilation and padding exactly; a residual adds its own box). While the
 * largest grown box of a step stays under 60 % of its output, the step is "partial": a run
 * computes, per row, only a crop of its output, with a second oneDNN primitive of the same
 * convolution on crops. All windows of a step share one crop size (the largest box, moved
 * inside the tensor), so one primitive does every batch.
 *
 * A partial step's output is never materialised whole: a row of it is the clean activation
 * (one row kept per value, computed once per sample by a batch-1 plan of the same network)
 * with the row's crop over it, and the next partial step reads its source crop from those two
 * (zeros outside the tensor: the convolution's own padding). Only the values that a whole step
 * reads (the frontier) are written out, row by row, into the session's arena. Memory is the
 * usual arena plus one clean row per partial value and the crops; a run allocates nothing.
 */
#include "session.h"

#include <string.h>

#define REGION_MAX_FRACTION 0.6

typedef struct region_step {
    int step, x, res, out;
    int px, pres;      /* region steps producing x and res (index + 1; 0: the graph input) */
    bool frontier;     /* out is read by a whole step (or observed): written out every run */
    int64_t ext[3];    /* output crop extents (t, h, w) */
    int64_t in_ext[3]; /* source crop extents */
    int64_t s[3], p[3];
    void *crop;        /* the crop primitive */
    size_t srcn, resn; /* floats of its source and residual crops (B rows) */
    float *dst;        /* the output crops, B rows (read by later steps of the run) */
    float *clean;      /* one clean row of the output value */
    int64_t *org;      /* per window: output crop origin (t, h, w) */
} region_step;

/* Where a row of a value lives: the clean row, and (when org is set) the row's crop of extent
 * ext at origin org over it. */
typedef struct row_src {
    const float *clean, *crop;
    const int64_t *org, *ext;
} row_src;

struct stx_region {
    stx_session *s;
    stx_session *one; /* the same plan for one sample: computes the clean activations */
    int B, n_boxes, np;
    region_step *ps;
    int *kind;            /* per step: index + 1 into ps, 0: a whole step */
    const int64_t **rows; /* 2 B pointers of scratch: per row the source origin, the crop's */
    int64_t *so;          /* 3 B: the sources' origins */
    row_src *srcs;        /* B */
    float *src, *rbuf;    /* the source and residual crops of the step running (shared) */
};

/* Layout of a 5-D value: channel blocks CB of L lanes (L = 1 for plain), then T, H, W. */
typedef struct vlayout {
    int64_t CB, L, T, H, W;
} vlayout;

static vlayout layout_of(const stx_session *s, int v) {
    const stx_tensor *t = &s->vals[v];
    vlayout l;
    l.L = s->blocked[v] ? s->blocked[v] : 1;
    l.CB = (t->dims[1] + l.L - 1) / l.L;
    l.T = t->dims[2];
    l.H = t->dims[3];
    l.W = t->dims[4];
    return l;
}

/* One line (fixed cb, t, h) of a crop at origin o (may lie partly outside: zeros there) with
 * extent e, read from rs. */
static void gather_line(const row_src *rs, vlayout l, const int64_t o[3], const int64_t e[3],
                        int64_t cb, int64_t t, int64_t h, float *d) {
    const int64_t L = l.L, ts = o[0] + t, hs = o[1] + h;
    int64_t w0 = o[2] < 0 ? -o[2] : 0, w1 = o[2] + e[2] > l.W ? l.W - o[2] : e[2];
    if (ts < 0 || ts >= l.T || hs < 0 || hs >= l.H || w1 <= w0) {
        memset(d, 0, sizeof(float) * (size_t)(e[2] * L));
        return;
    }
    if (w0 > 0) memset(d, 0, sizeof(float) * (size_t)(w0 * L));
    if (w1 < e[2]) memset(d + w1 * L, 0, sizeof(float) * (size_t)((e[2] - w1) * L));
    /* source columns [a, b) of the tensor; the part inside the row's crop comes from it */
    int64_t a = o[2] + w0, b = o[2] + w1, ca = b, cb2 = b;
    const float *cl = rs->clean + ((cb * l.T + ts) * l.H + hs) * l.W * L;
    if (rs->org) {
        const int64_t *po = rs->org, *pe = rs->ext;
        if (ts >= po[0] && ts < po[0] + pe[0] && hs >= po[1] && hs < po[1] + pe[1]) {
            ca = a > po[2] ? a : po[2];
            cb2 = b < po[2] + pe[2] ? b : po[2] + pe[2];
            if (cb2 <= ca) ca = cb2 = b;
        }
    }
    float *dd = d + w0 * L; /* column a */
    if (ca > a) memcpy(dd, cl + a * L, sizeof(float) * (size_t)((ca - a) * L));
    if (cb2 > ca) {
        const int64_t *po = rs->org, *pe = rs->ext;
        const float *cr =
            rs->crop + (((cb * pe[0] + ts - po[0]) * pe[1] + hs - po[1]) * pe[2] + ca - po[2]) * L;
        memcpy(dd + (ca - a) * L, cr, sizeof(float) * (size_t)((cb2 - ca) * L));
    }
    if (b > cb2) memcpy(dd + (cb2 - a) * L, cl + cb2 * L, sizeof(float) * (size_t)((b - cb2) * L));
}

/* The crops (origin org[j], extent e) of the rows j with org[j] set, into crops (row stride
 * crow floats). Row j of the value: rs[j]. */
static void gather_rows(int B, const row_src *rs, vlayout l, const int64_t *const *org,
                        const int64_t e[3], float *crops, size_t crow) {
#pragma omp parallel for collapse(3) schedule(static)
    for (int j = 0; j < B; j++)
        for (int64_t cb = 0; cb < l.CB; cb++)
            for (int64_t t = 0; t < e[0]; t++) {
                if (!org[j]) continue;
                for (int64_t h = 0; h < e[1]; h++)
                    gather_line(&rs[j], l, org[j], e, cb, t, h,
                                crops + j * crow + ((cb * e[0] + t) * e[1] + h) * e[2] * l.L);
            }
}

/* Writes whole rows of a value (row stride vrow floats): the clean row with the row's crop over
 * it (rows whose crop is unset: the clean row). */
static void write_rows(int B, float *v, size_t vrow, vlayout l, const float *clean,
                       const int64_t *const *org, const int64_t e[3], const float *crops,
                       size_t crow) {
    const int64_t L = l.L;
    for (int j = 0; j < B; j++) memcpy(v + j * vrow, clean, sizeof(float) * vrow);
#pragma omp parallel for collapse(3) schedule(static)
    for (int j = 0; j < B; j++)
        for (int64_t cb = 0; cb < l.CB; cb++)
            for (int64_t t = 0; t < e[0]; t++) {
                if (!org[j]) continue;
                const int64_t *o = org[j];
                for (int64_t h = 0; h < e[1]; h++) {
                    int64_t full = (((cb * l.T + o[0] + t) * l.H + o[1] + h) * l.W + o[2]) * L;
                    int64_t packed = ((cb * e[0] + t) * e[1] + h) * e[2] * L;
                    memcpy(v + j * vrow + full, crops + j * crow + packed,
                           sizeof(float) * (size_t)(e[2] * L));
                }
            }
}

void stx__region_free(stx_region *r) {
    if (!r) return;
    stx_context *ctx = r->s->ctx;
    for (int i = 0; i < r->np; i++) {
        region_step *p = &r->ps[i];
        stx__fused_conv_crop_free(p->crop);
        stx__free(ctx, p->dst);
        stx__free(ctx, p->clean);
        stx__free(ctx, p->org);
    }
    stx_session_free(r->one);
    stx__free(ctx, r->ps);
    stx__free(ctx, r->kind);
    stx__free(ctx, (void *)r->rows);
    stx__free(ctx, r->so);
    stx__free(ctx, r->srcs);
    stx__free(ctx, r->src);
    stx__free(ctx, r->rbuf);
    stx__free(ctx, r);
}

/* Output box of a convolution along one axis for the input box [a, b) (exact: outputs whose
 * window touches it), clamped to [0, n). */
static void grow(int64_t a, int64_t b, int64_t k, int64_t s, int64_t d, int64_t p, int64_t n,
                 int64_t *lo, int64_t *hi) {
    int64_t ek = (k - 1) * d + 1;
    int64_t l = a + p - ek + 1, h = b - 1 + p; /* o * s in [l, h] */
    int64_t ol = l <= 0 ? 0 : (l + s - 1) / s, oh = h < 0 ? -1 : h / s;
    *lo = ol < 0 ? 0 : ol;
    *hi = oh + 1 > n ? n : oh + 1;
    if (*hi < *lo) *hi = *lo;
}

stx_status stx__region_create(stx_session *s, const int64_t *boxes, int n_boxes, stx_region **out) {
    *out = NULL;
    stx_context *ctx = s->ctx;
    const stx_tensor *in = &s->vals[s->inputs[0]];
    if (s->n_inputs != 1 || in->rank != 5 || s->bf16 || s->seed_out >= 0 || n_boxes < 1)
        return STX_E_UNSUPPORTED;
    stx_region *r = stx__calloc(ctx, 1, sizeof *r);
    if (!r) return STX_E_NOMEM;
    r->s = s;
    r->B = (int)in->dims[0];
    r->n_boxes = n_boxes;
    r->ps = stx__calloc(ctx, (size_t)s->n_fwd + 1, sizeof *r->ps);
    r->kind = stx__calloc(ctx, (size_t)s->n_fwd + 1, sizeof(int));
    r->rows = stx__malloc(ctx, sizeof(*r->rows) * 2 * (size_t)r->B);
    r->so = stx__malloc(ctx, sizeof(int64_t) * 3 * (size_t)r->B);
    r->srcs = stx__malloc(ctx, sizeof(row_src) * (size_t)r->B);
    /* per value: 0 unchanged, 1 partial (boxes per window), 2 changed everywhere */
    uint8_t *state = stx__calloc(ctx, (size_t)s->nv + 1, 1);
    int64_t **vbox = stx__calloc(ctx, (size_t)s->nv + 1, sizeof *vbox); /* per window, 6 each */
    stx_status st = STX_OK;
    int *prod = stx__calloc(ctx, (size_t)s->nv + 1, sizeof(int)); /* value -> region step + 1 */
    if (!r->ps || !r->kind || !r->rows || !r->so || !r->srcs || !state || !vbox || !prod) {
        st = STX_E_NOMEM;
        goto done;
    }
    int xin = s->inputs[0];
    state[xin] = 1;
    vbox[xin] = stx__malloc(ctx, sizeof(int64_t) * 6 * (size_t)n_boxes);
    if (!vbox[xin]) {
        st = STX_E_NOMEM;
        goto done;
    }
    memcpy(vbox[xin], boxes, sizeof(int64_t) * 6 * (size_t)n_boxes);
    for (int i = 0; i < s->n_fwd; i++) {
        stx_step *sp = &s->steps[i];
        bool any = false, full = false;
        for (int k = 0; k < sp->n_vin; k++) {
            int v = sp->vin[k];
            if (v < 0) continue;
            any |= state[v] != 0;
            full |= state[v] == 2;
        }
        if (!any) continue;
        stx_conv_geometry g;
        bool partial = !full && stx__fused_conv_geometry(sp, &g) && g.nd == 3 &&
                       state[sp->vin[0]] == 1 && s->vals[sp->vout[0]].rank == 5;
        int res = partial && g.has_res ? sp->vin[1] : -1;
        if (partial && res >= 0 && state[res] != 1) partial = false;
        region_step p = {.step = i, .x = sp->vin[0], .res = res, .out = sp->vout[0]};
        const stx_tensor *Y = &s->vals[p.out];
        int64_t *ob = NULL;
        if (partial) {
            ob = stx__malloc(ctx, sizeof(int64_t) * 6 * (size_t)n_boxes);
            if (!ob) {
                st = STX_E_NOMEM;
                goto done;
            }
            for (int a = 0; a < 3; a++) {
                p.ext[a] = 0;
                p.s[a] = g.s[a];
                p.p[a] = g.p[a];
            }
            for (int w = 0; w < n_boxes; w++) {
                const int64_t *xb = vbox[p.x] + 6 * w;
                for (int a = 0; a < 3; a++) {
                    int64_t lo, hi;
                    grow(xb[2 * a], xb[2 * a + 1], g.k[a], g.s[a], g.d[a], g.p[a], Y->dims[2 + a],
                         &lo, &hi);
                    if (res >= 0) {
                        const int64_t *rb = vbox[res] + 6 * w;
                        if (rb[2 * a] < lo) lo = rb[2 * a];
                        if (rb[2 * a + 1] > hi) hi = rb[2 * a + 1];
                    }
                    ob[6 * w + 2 * a] = lo;
                    ob[6 * w + 2 * a + 1] = hi;
                    if (hi - lo > p.ext[a]) p.ext[a] = hi - lo;
                }
            }
            double frac = 1;
            for (int a = 0; a < 3; a++) {
                if (p.ext[a] < 1) p.ext[a] = 1;
                frac *= (double)p.ext[a] / (double)Y->dims[2 + a];
            }
            partial = frac <= REGION_MAX_FRACTION;
        }
        if (partial) {
            /* every window's crop: the largest extent, moved inside the tensor */
            p.org = stx__malloc(ctx, sizeof(int64_t) * 3 * (size_t)n_boxes);
            if (!p.org) {
                stx__free(ctx, ob);
                st = STX_E_NOMEM;
                goto done;
            }
            for (int w = 0; w < n_boxes; w++)
                for (int a = 0; a < 3; a++) {
                    int64_t o = ob[6 * w + 2 * a], n = Y->dims[2 + a];
                    if (o + p.ext[a] > n) o = n - p.ext[a];
                    p.org[3 * w + a] = o;
                    ob[6 * w + 2 * a] = o;
                    ob[6 * w + 2 * a + 1] = o + p.ext[a];
                }
            const stx_tensor *X = &s->vals[p.x];
            int64_t sd[5] = {r->B, X->dims[1], 0, 0, 0}, dd[5] = {r->B, Y->dims[1], 0, 0, 0};
            for (int a = 0; a < 3; a++) {
                p.in_ext[a] = (p.ext[a] - 1) * g.s[a] + (g.k[a] - 1) * g.d[a] + 1;
                sd[2 + a] = p.in_ext[a];
                dd[2 + a] = p.ext[a];
            }
            stx_status cs = stx__fused_conv_crop_create(s, sp, sd, dd, &p.crop);
            if (cs == STX_E_UNSUPPORTED) {
                partial = false;
                stx__free(ctx, p.org);
            } else if (cs) {
                stx__free(ctx, p.org);
                stx__free(ctx, ob);
                st = cs;
                goto done;
            }
        }
        if (!partial) {
            stx__free(ctx, ob);
            for (int k = 0; k < sp->n_vout; k++)
                if (sp->vout[k] >= 0) state[sp->vout[k]] = 2;
            continue;
        }
        /* buffers: crops and a clean row */
        vlayout lx = layout_of(s, p.x), ly = layout_of(s, p.out);
        size_t srcn = (size_t)(r->B * lx.CB * lx.L * p.in_ext[0] * p.in_ext[1] * p.in_ext[2]);
        size_t dstn = (size_t)(r->B * ly.CB * ly.L * p.ext[0] * p.ext[1] * p.ext[2]);
        p.px = prod[p.x];
        p.pres = res >= 0 ? prod[res] : 0;
        p.srcn = srcn;
        p.resn = res >= 0 ? dstn : 0;
        p.dst = stx__malloc(ctx, sizeof(float) * dstn);
        p.clean = stx__malloc(ctx, s->vals[p.out].nbytes / (size_t)r->B);
        r->ps[r->np] = p; /* freed with r from here on */
        r->kind[i] = ++r->np;
        if (!p.dst || !p.clean) {
            stx__free(ctx, ob);
            st = STX_E_NOMEM;
            goto done;
        }
        prod[p.out] = r->np;
        state[p.out] = 1;
        vbox[p.out] = ob;
    }
    {
        size_t srcn = 0, resn = 0;
        for (int q = 0; q < r->np; q++) {
            if (r->ps[q].srcn > srcn) srcn = r->ps[q].srcn;
            if (r->ps[q].resn > resn) resn = r->ps[q].resn;
        }
        r->src = stx__malloc(ctx, sizeof(float) * srcn);
        r->rbuf = resn ? stx__malloc(ctx, sizeof(float) * resn) : NULL;
        if ((srcn && !r->src) || (resn && !r->rbuf)) {
            st = STX_E_NOMEM;
            goto done;
        }
    }
    /* the frontier: partial values that a whole step reads, or that are observed */
    for (int q = 0; q < r->np; q++) {
        region_step *p = &r->ps[q];
        int v = p->out;
        p->frontier = s->keep[v] != 0;
        for (int k = 0; k < s->m->g.n_outputs; k++) p->frontier |= s->m->g.outputs[k] == v;
        for (int i = 0; i < s->n_fwd && !p->frontier; i++) {
            if (r->kind[i]) continue;
            for (int k = 0; k < s->steps[i].n_vin; k++) p->frontier |= s->steps[i].vin[k] == v;
        }
    }
    if (r->np == 0) {
        st = STX_E_UNSUPPORTED;
        goto done;
    }
    /* the clean activations come from a plan of the same network for one sample, run step by
     * step; its steps must be the same (the fusion decisions do not depend on the batch) */
    {
        stx_session_options so = stx_session_options_default();
        so.num_threads = s->nthreads;
        so.use_dnnl = s->use_dnnl;
        so.fuse = s->fuse;
        int64_t d1[5];
        memcpy(d1, in->dims, sizeof d1);
        d1[0] = 1;
        st = stx_session_create(s->m, &so, d1, 5, &r->one);
        if (st) goto done;
        bool same = r->one->n_fwd == s->n_fwd;
        for (int i = 0; same && i < s->n_fwd; i++)
            same = r->one->steps[i].n_vout == s->steps[i].n_vout &&
                   r->one->steps[i].vout[0] == s->steps[i].vout[0] &&
                   r->one->blocked[s->steps[i].vout[0]] == s->blocked[s->steps[i].vout[0]];
        if (!same) st = STX_E_UNSUPPORTED;
    }
done:
    for (int v = 0; v < s->nv; v++) stx__free(ctx, vbox[v]);
    stx__free(ctx, vbox);
    stx__free(ctx, state);
    stx__free(ctx, prod);
    if (st) {
        stx__region_free(r);
        return st;
    }
    *out = r;
    return STX_OK;
}

stx_status stx__region_clean(stx_region *r, const float *x) {
    stx_session *one = r->one;
    one->vals[one->inputs[0]].data = (void *)x;
    stx__set_threads(one->nthreads);
    stx_status st = STX_OK;
    for (int i = 0; i < one->n_fwd && !st; i++) {
        stx_step *sp = &one->steps[i];
        sp->c.err = &one->err;
        st = sp->run ? sp->run(sp) : sp->c.node->def->forward(&sp->c);
        if (st || !r->kind[i]) continue;
        region_step *p = &r->ps[r->kind[i] - 1];
        size_t row = r->s->vals[p->out].nbytes / (size_t)r->B;
        memcpy(p->clean, one->vals[p->out].data, row);
    }
    if (st) return stx__errf(&r->s->err, st, "%s", one->err.msg);
    return STX_OK;
}

/* Row j of the value a partial step reads: the graph input's row (x), or a partial value's
 * clean row with the row's crop (window w) over it. */
static row_src source_of(const stx_region *r, int prod, const float *x, size_t xrow, int j, int w) {
    if (!prod) return (row_src){x + (size_t)j * xrow, NULL, NULL, NULL};
    const region_step *q = &r->ps[prod - 1];
    size_t crow = (size_t)(q->ext[0] * q->ext[1] * q->ext[2]) *
                  (size_t)(layout_of(r->s, q->out).CB * layout_of(r->s, q->out).L);
    return (row_src){q->clean, q->dst + (size_t)j * crow, q->org + 3 * w, q->ext};
}

stx_status stx__region_run(stx_region *r, const stx_tensor *xb, const int *win) {
    stx_session *s = r->s;
    s->vals[s->inputs[0]].data = xb->data;
    stx__set_threads(s->nthreads);
    stx_status st = STX_OK;
    const int B = r->B;
    for (int i = 0; i < s->n_fwd && !st; i++) {
        stx_step *sp = &s->steps[i];
        sp->c.err = &s->err;
        if (!r->kind[i]) {
            st = sp->run ? sp->run(sp) : sp->c.node->def->forward(&sp->c);
            continue;
        }
        region_step *p = &r->ps[r->kind[i] - 1];
        vlayout lx = layout_of(s, p->x), ly = layout_of(s, p->out);
        size_t xrow = s->vals[p->x].nbytes / sizeof(float) / (size_t)B;
        size_t yrow = s->vals[p->out].nbytes / sizeof(float) / (size_t)B;
        size_t srow = (size_t)(lx.CB * lx.L * p->in_ext[0] * p->in_ext[1] * p->in_ext[2]);
        size_t drow = (size_t)(ly.CB * ly.L * p->ext[0] * p->ext[1] * p->ext[2]);
        /* per row: the crop's origin and its source's (rows without a window: skipped) */
        const int64_t **cur = r->rows, **src = cur + B;
        int64_t(*so)[3] = (int64_t(*)[3])r->so;
        row_src *rs = r->srcs;
        for (int j = 0; j < B; j++) {
            cur[j] = win[j] >= 0 ? p->org + 3 * win[j] : NULL;
            src[j] = NULL;
            if (!cur[j]) continue;
            for (int a = 0; a < 3; a++) so[j][a] = cur[j][a] * p->s[a] - p->p[a];
            src[j] = so[j];
            rs[j] = source_of(r, p->px, s->vals[p->x].data, xrow, j, win[j]);
        }
        gather_rows(B, rs, lx, src, p->in_ext, r->src, srow);
        if (p->res >= 0) {
            for (int j = 0; j < B; j++)
                if (cur[j]) rs[j] = source_of(r, p->pres, s->vals[p->res].data, yrow, j, win[j]);
            gather_rows(B, rs, ly, cur, p->ext, r->rbuf, drow);
        }
        st = stx__fused_conv_crop_run(p->crop, r->src, r->rbuf, p->dst);
        if (st) {
            st = stx__errf(&s->err, st, "node '%s': crop convolution failed", sp->c.node->name);
            break;
        }
        if (p->frontier)
            write_rows(B, s->vals[p->out].data, yrow, ly, p->clean, cur, p->ext, p->dst, drow);
    }
    s->ran_forward = st == STX_OK;
    return st;
}
