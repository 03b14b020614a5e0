/* gradient.c: the gradient family: saliency, gradient x input, Integrated Gradients, SmoothGrad,
 * SmoothGrad^2, VarGrad, guided backpropagation and deconvnet (definitions: docs/gradient.md).
 *
 * Every method is a set of rows, each an input whose gradient of the target score is needed:
 * K rows per sample (1 for the plain gradients, the quadrature points of IG, the noisy copies of
 * the SmoothGrad family). Rows are numbered sample by sample and run through one reverse-mode
 * session planned for B rows; the last batch is padded with repeats of its last row (their
 * gradients are ignored). The noise of a row is drawn from the seeded generator in row order, so
 * results do not depend on B. Gradients accumulate in double:
 *   ig          a = (x - x') * sum_k w_k g(x' + alpha_k (x - x'))   (Captum's quadratures)
 *   smoothgrad  a = mean_k g(x + sigma e_k), sigma = noise * (max x - min x) per sample
 *   smoothgrad-sq  mean_k g^2;   vargrad  mean_k g^2 - (mean_k g)^2
 * guided backpropagation and deconvnet replace the backward of every Relu (rules below).
 */
#include "explain.h"

#include <math.h>
#include <string.h>

struct stx_grad {
    stx_context *ctx;
    int method;
    stx_session *s; /* reverse mode, B rows */
    int B, K;       /* rows per batch, rows per sample */
    int64_t N, numel;
    stx_tensor *xb;
    int64_t *bt, *bf;    /* per row: target, frame */
    double *acc, *acc2;  /* N x numel */
    float *base;         /* ig: N x numel baselines */
    double *alpha, *wts; /* ig: K points and weights */
    float *eps;          /* smoothgrad family: given standard-normal draws (K x numel), or NULL */
    double noise;        /* fraction of the value range */
    double *sigma;       /* smoothgrad family: the N samples' noise levels in a run */
    stx_score score;
    uint64_t seed;
    stx_perturb pb; /* for the baselines (perturb.c) */
    double *tmp;
    int (*progress)(void *, int64_t, int64_t);
    void *progress_user;
    stx_backward_rule rule;
};

/* Guided backpropagation: the gradient passes where the input and the gradient are positive. */
static stx_status guided_relu(void *user, stx_rule_ctx *c) {
    (void)user;
    stx_tensor *x = stx_rule_input(c, 0), *dy = stx_rule_grad_output(c, 0);
    stx_tensor *dx = stx_rule_grad_input(c, 0);
    if (!dx || !dy) return STX_OK;
    int64_t n = stx_tensor_numel(x);
    if (stx_tensor_dtype(x) == STX_DTYPE_DOUBLE) {
        const double *a = stx_tensor_data(x), *g = stx_tensor_data(dy);
        double *d = stx_tensor_data(dx);
        for (int64_t i = 0; i < n; i++) d[i] += a[i] > 0 && g[i] > 0 ? g[i] : 0;
    } else {
        const float *a = stx_tensor_data(x), *g = stx_tensor_data(dy);
        float *d = stx_tensor_data(dx);
        for (int64_t i = 0; i < n; i++) d[i] += a[i] > 0 && g[i] > 0 ? g[i] : 0;
    }
    return STX_OK;
}

/* Deconvnet: the positive part of the gradient, whatever the forward input. */
static stx_status deconv_relu(void *user, stx_rule_ctx *c) {
    (void)user;
    stx_tensor *dy = stx_rule_grad_output(c, 0), *dx = stx_rule_grad_input(c, 0);
    if (!dx || !dy) return STX_OK;
    int64_t n = stx_tensor_numel(dy);
    if (stx_tensor_dtype(dy) == STX_DTYPE_DOUBLE) {
        const double *g = stx_tensor_data(dy);
        double *d = stx_tensor_data(dx);
        for (int64_t i = 0; i < n; i++) d[i] += g[i] > 0 ? g[i] : 0;
    } else {
        const float *g = stx_tensor_data(dy);
        float *d = stx_tensor_data(dx);
        for (int64_t i = 0; i < n; i++) d[i] += g[i] > 0 ? g[i] : 0;
    }
    return STX_OK;
}

/* Gauss-Legendre nodes and weights on [0, 1] (n points, ascending), as numpy's leggauss mapped
 * by alpha = (x + 1) / 2, weight w / 2. */
static void gauss_legendre(int n, double *alpha, double *w) {
    for (int i = 0; i < (n + 1) / 2; i++) {
        double z = cos(M_PI * (i + 0.75) / (n + 0.5)), pp = 1;
        for (int it = 0; it < 100; it++) {
            double p1 = 1, p2 = 0;
            for (int j = 1; j <= n; j++) {
                double p3 = p2;
                p2 = p1;
                p1 = ((2.0 * j - 1) * z * p2 - (j - 1.0) * p3) / j;
            }
            pp = n * (z * p1 - p2) / (z * z - 1);
            double z1 = z;
            z = z1 - p1 / pp;
            if (fabs(z - z1) < 1e-15) break;
        }
        if (n % 2 && i == n / 2) z = 0; /* the middle node of an odd rule */
        double wi = 2 / ((1 - z * z) * pp * pp);
        /* z > 0 belongs at the top: alpha ascending */
        alpha[i] = 0.5 * (1 - z);
        alpha[n - 1 - i] = 0.5 * (1 + z);
        w[i] = w[n - 1 - i] = 0.5 * wi;
    }
}

/* Captum's Riemann sums: alphas linspace(0, 1 - 1/n), (1/n, 1), (1/2n, 1 - 1/2n), (0, 1). */
static void ig_schedule(stx_ig_schedule s, int n, double *alpha, double *w) {
    if (s == STX_IG_GAUSS_LEGENDRE) {
        gauss_legendre(n, alpha, w);
        return;
    }
    for (int k = 0; k < n; k++) {
        w[k] = 1.0 / n;
        switch (s) {
        case STX_IG_LEFT:
            alpha[k] = n > 1 ? (1 - 1.0 / n) * k / (n - 1) : 0;
            break;
        case STX_IG_RIGHT:
            alpha[k] = n > 1 ? 1.0 / n + (1 - 1.0 / n) * k / (n - 1) : 1;
            break;
        case STX_IG_MIDDLE:
            alpha[k] = n > 1 ? 0.5 / n + (1 - 1.0 / n) * k / (n - 1) : 0.5;
            break;
        default: /* trapezoid, n >= 2 */
            alpha[k] = (double)k / (n - 1);
            w[k] = k == 0 || k == n - 1 ? 0.5 / (n - 1) : 1.0 / (n - 1);
        }
    }
}

void stx__grad_free(stx_grad *g) {
    if (!g) return;
    stx_context *c = g->ctx;
    stx_session_free(g->s);
    stx_tensor_free(g->xb);
    stx__free(c, g->bt);
    stx__free(c, g->bf);
    stx__free(c, g->acc);
    stx__free(c, g->acc2);
    stx__free(c, g->base);
    stx__free(c, g->alpha);
    stx__free(c, g->wts);
    stx__free(c, g->eps);
    stx__free(c, g->sigma);
    stx__free(c, g->tmp);
    stx__free(c, g);
}

static bool smooth_family(int m) {
    return m == STX_GRAD_SMOOTH || m == STX_GRAD_SMOOTH_SQ || m == STX_GRAD_VAR;
}

stx_status stx__grad_create(const stx_dense_spec *sp, int method, stx_grad **out) {
    *out = NULL;
    stx_context *ctx = sp->ctx;
    stx_err *ce = &ctx->err;
    const stx_explain_options *o = sp->o;
    static const char *const names[] = {"saliency",        "gradxinput",    "ig",
                                        "smoothgrad",      "smoothgrad-sq", "vargrad",
                                        "guided-backprop", "deconvnet"};
    const char *name = names[method];
    stx_grad *g = stx__calloc(ctx, 1, sizeof *g);
    if (!g) return stx__errf(ce, STX_E_NOMEM, "out of memory");
    g->ctx = ctx;
    g->method = method;
    g->N = sp->shape[0];
    g->numel = sp->shape[1] * sp->shape[2] * sp->shape[3] * sp->shape[4];
    g->score = o->score;
    g->seed = o->seed;
    g->progress = o->progress;
    g->progress_user = o->progress_user;
    stx_status st = STX_OK;
    g->K = 1;
    if (method == STX_GRAD_IG) {
        g->K = o->steps ? o->steps : 50;
        if (g->K < 1 || g->K > 100000 || (o->schedule == STX_IG_TRAPEZOID && g->K < 2)) {
            st = stx__errf(ce, STX_E_INVALID, "ig: steps %d out of range [%d, 100000]", g->K,
                           o->schedule == STX_IG_TRAPEZOID ? 2 : 1);
            goto fail;
        }
    } else if (smooth_family(method)) {
        const stx_tensor *e = o->noise_samples;
        g->noise = o->noise >= 0 ? o->noise : 0.15;
        if (e) {
            char sb[128], xb[128];
            bool ok = e->dtype == STX_DTYPE_FLOAT && e->rank == sp->mrank && e->dims[0] >= 1 &&
                      e->dims[0] <= 100000;
            for (int k = 1; ok && k < sp->mrank; k++) ok = e->dims[k] == sp->mshape[k];
            if (!ok) {
                st = stx__errf(ce, STX_E_SHAPE,
                               "%s: noise samples %s %s must be float32 (S, %s) with one sample's "
                               "shape",
                               name, stx_dtype_name(e->dtype),
                               stx__shape_str(e->dims, e->rank, sb, sizeof sb),
                               stx__shape_str(sp->mshape + 1, sp->mrank - 1, xb, sizeof xb));
                goto fail;
            }
            g->K = (int)e->dims[0];
            size_t n = (size_t)g->K * (size_t)g->numel;
            g->eps = stx__malloc(ctx, sizeof(float) * n);
            if (!g->eps) {
                st = stx__errf(ce, STX_E_NOMEM, "out of memory for the noise samples");
                goto fail;
            }
            memcpy(g->eps, e->data, sizeof(float) * n);
            for (size_t i = 0; i < n; i++)
                if (!isfinite(g->eps[i])) {
                    st = stx__errf(ce, STX_E_NUMERIC,
                                   "%s: noise samples: non-finite value at element %zu", name, i);
                    goto fail;
                }
        } else {
            g->K = o->samples ? o->samples : 25;
        }
    }
    int64_t rows = g->N * g->K;
    g->B = (int)(o->batch < rows ? o->batch : rows);
    int64_t bshape[STX_MAX_RANK];
    memcpy(bshape, sp->mshape, sizeof(int64_t) * (size_t)sp->mrank);
    bshape[0] = g->B;
    const char *wrt[2] = {"input", NULL};
    stx_session_options so = stx_session_options_default();
    so.num_threads = sp->num_threads;
    so.grad_wrt = wrt;
    so.grad_output = sp->out_index;
    so.precision = o->precision;
    if (method == STX_GRAD_GUIDED || method == STX_GRAD_DECONV) {
        g->rule.op_type = "Relu";
        g->rule.fn = method == STX_GRAD_GUIDED ? guided_relu : deconv_relu;
        so.rules = &g->rule;
        so.n_rules = 1;
    }
    st = stx_session_create(sp->m, &so, bshape, sp->mrank, &g->s);
    if (st) goto fail;
    g->xb = stx__tensor_new(ctx, STX_DTYPE_FLOAT, bshape, sp->mrank);
    g->bt = stx__calloc(ctx, (size_t)g->B, sizeof(int64_t));
    g->bf = stx__calloc(ctx, (size_t)g->B, sizeof(int64_t));
    if (!g->xb || !g->bt || !g->bf) goto nomem;
    if (method == STX_GRAD_IG || smooth_family(method)) {
        g->acc = stx__calloc(ctx, (size_t)(g->N * g->numel), sizeof(double));
        if (!g->acc) goto nomem;
    }
    if (smooth_family(method)) {
        g->sigma = stx__calloc(ctx, (size_t)g->N, sizeof(double));
        if (!g->sigma) goto nomem;
    }
    if (method == STX_GRAD_VAR) {
        g->acc2 = stx__calloc(ctx, (size_t)(g->N * g->numel), sizeof(double));
        if (!g->acc2) goto nomem;
    }
    if (method == STX_GRAD_IG) {
        g->base = stx__malloc(ctx, sizeof(float) * (size_t)(g->N * g->numel));
        g->alpha = stx__calloc(ctx, (size_t)g->K, sizeof(double));
        g->wts = stx__calloc(ctx, (size_t)g->K, sizeof(double));
        int64_t mx = sp->shape[sp->tax] > sp->shape[3] ? sp->shape[sp->tax] : sp->shape[3];
        if (sp->shape[4] > mx) mx = sp->shape[4];
        g->tmp = stx__calloc(ctx, (size_t)mx, sizeof(double));
        if (!g->base || !g->alpha || !g->wts || !g->tmp) goto nomem;
        ig_schedule(o->schedule, g->K, g->alpha, g->wts);
        g->pb.T = sp->shape[sp->tax];
        g->pb.C = sp->shape[sp->cax];
        g->pb.H = sp->shape[3];
        g->pb.W = sp->shape[4];
        g->pb.tax = sp->tax;
        g->pb.sample_numel = g->numel;
        g->pb.baseline = o->baseline;
    }
    *out = g;
    return STX_OK;
nomem:
    st = stx__errf(ce, STX_E_NOMEM, "%s: out of memory for a batch of %d rows", name, g->B);
fail:
    stx__grad_free(g);
    return st;
}

/* Fills row r of the batch with row j (sample j / K, point j % K) of the method. */
static void fill_row(stx_grad *g, const float *x, int64_t j, int r, stx_rng *rng,
                     const int64_t *targets, const int64_t *frames) {
    int64_t n = j / g->K, k = j % g->K, numel = g->numel;
    const float *xs = x + n * numel;
    float *dst = (float *)g->xb->data + (int64_t)r * numel;
    g->bt[r] = targets[n];
    g->bf[r] = frames ? frames[n] : -1;
    if (g->method == STX_GRAD_IG) {
        const float *b = g->base + n * numel;
        double a = g->alpha[k];
        for (int64_t i = 0; i < numel; i++)
            dst[i] = (float)((double)b[i] + a * ((double)xs[i] - (double)b[i]));
    } else if (smooth_family(g->method)) {
        double sigma = g->sigma[n];
        const float *e = g->eps ? g->eps + k * numel : NULL;
        for (int64_t i = 0; i < numel; i++)
            dst[i] = (float)((double)xs[i] + sigma * (e ? (double)e[i] : stx__rng_normal(rng)));
    } else {
        memcpy(dst, xs, sizeof(float) * (size_t)numel);
    }
}

const float *stx__grad_baselines(const stx_grad *g) {
    return g->base;
}

stx_status stx__grad_run(stx_grad *g, const stx_tensor *x, const int64_t *targets,
                         const int64_t *frames, const float *base, stx_err *err, float *attr,
                         double *attributed) {
    const int64_t numel = g->numel, rows = g->N * g->K;
    const float *xd = x->data;
    stx_rng rng;
    stx__rng_seed(&rng, g->seed);
    stx_status st;
    if (g->method == STX_GRAD_IG) {
        g->pb.baseline_clip = base;
        for (int64_t n = 0; n < g->N; n++) {
            st = stx__perturb_baseline(&g->pb, xd + n * numel, g->base + n * numel, g->tmp, &rng);
            if (st) return stx__errf(err, st, "ig: the baseline of sample %lld", (long long)n);
        }
    }
    for (int64_t n = 0; g->sigma && n < g->N; n++) { /* noise level: a share of the range */
        const float *xs = xd + n * numel;
        float lo = xs[0], hi = xs[0];
        for (int64_t i = 1; i < numel; i++) {
            lo = xs[i] < lo ? xs[i] : lo;
            hi = xs[i] > hi ? xs[i] : hi;
        }
        g->sigma[n] = g->noise * ((double)hi - (double)lo);
    }
    if (g->acc) memset(g->acc, 0, sizeof(double) * (size_t)(g->N * numel));
    if (g->acc2) memset(g->acc2, 0, sizeof(double) * (size_t)(g->N * numel));
    stx_seed sd = stx_seed_default();
    sd.targets = g->bt;
    sd.frames = g->bf;
    sd.score = g->score;
    for (int64_t j0 = 0; j0 < rows; j0 += g->B) {
        int nb = (int)(rows - j0 < g->B ? rows - j0 : g->B);
        for (int r = 0; r < g->B; r++)
            if (r < nb)
                fill_row(g, xd, j0 + r, r, &rng, targets, frames);
            else { /* padding: a repeat of the last row */
                memcpy((float *)g->xb->data + (int64_t)r * numel,
                       (float *)g->xb->data + (int64_t)(nb - 1) * numel,
                       sizeof(float) * (size_t)numel);
                g->bt[r] = g->bt[nb - 1];
                g->bf[r] = g->bf[nb - 1];
            }
        st = stx_session_run(g->s, g->xb, NULL);
        if (!st) st = stx_session_backward(g->s, &sd);
        if (st) return stx__errf(err, st, "%s", stx_session_last_error(g->s));
        const stx_tensor *gr = stx_session_grad(g->s, "input");
        if (!gr) return stx__errf(err, STX_E_INTERNAL, "no input gradient");
        const float *gd = gr->data;
        for (int r = 0; r < nb; r++) {
            int64_t j = j0 + r, n = j / g->K, k = j % g->K;
            const float *gv = gd + (int64_t)r * numel;
            double *acc = g->acc ? g->acc + n * numel : NULL;
            float *a = attr + n * numel;
            switch (g->method) {
            case STX_GRAD_IG:
                for (int64_t i = 0; i < numel; i++) acc[i] += g->wts[k] * (double)gv[i];
                break;
            case STX_GRAD_SMOOTH:
                for (int64_t i = 0; i < numel; i++) acc[i] += (double)gv[i];
                break;
            case STX_GRAD_SMOOTH_SQ:
                for (int64_t i = 0; i < numel; i++) acc[i] += (double)gv[i] * gv[i];
                break;
            case STX_GRAD_VAR:
                for (int64_t i = 0; i < numel; i++) {
                    acc[i] += (double)gv[i];
                    g->acc2[n * numel + i] += (double)gv[i] * gv[i];
                }
                break;
            case STX_GRAD_GXI: {
                const float *xs = xd + n * numel;
                for (int64_t i = 0; i < numel; i++) a[i] = gv[i] * xs[i];
                break;
            }
            default:
                memcpy(a, gv, sizeof(float) * (size_t)numel);
            }
        }
        if (g->progress && g->progress(g->progress_user, j0 + nb, rows))
            return stx__errf(err, STX_E_CANCELLED, "cancelled after %lld of %lld backwards",
                             (long long)(j0 + nb), (long long)rows);
    }
    if (g->method == STX_GRAD_IG) {
        for (int64_t n = 0; n < g->N; n++) {
            double sum = 0;
            const float *xs = xd + n * numel, *b = g->base + n * numel;
            for (int64_t i = 0; i < numel; i++) {
                double v = g->acc[n * numel + i] * ((double)xs[i] - (double)b[i]);
                attr[n * numel + i] = (float)v;
                sum += v;
            }
            if (attributed) attributed[n] = sum;
        }
    } else if (smooth_family(g->method)) {
        const double inv = 1.0 / g->K;
        for (int64_t i = 0; i < g->N * numel; i++) {
            double m = g->acc[i] * inv;
            attr[i] = (float)(g->method == STX_GRAD_VAR ? g->acc2[i] * inv - m * m : m);
        }
    }
    return STX_OK;
}
