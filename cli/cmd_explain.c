/* cmd_explain.c: `stx explain MODEL INPUT --method NAME [--target K|top] [--frame T] [--layer L]
 *                 [--score logit|prob] [--upsample trilinear|nearest|none] [--batch B]
 *                 [--seed S] [-o OUT.npy] [model-fact flags]` */
#include "cli.h"
#include "video_job.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void explain_usage(FILE *f) {
    fprintf(
        f,
        "usage: stx explain MODEL INPUT.npy [--method NAME] [--target K|NAME|top|K1,K2,...]\n"
        "                   [--frame T] [--layer L] [--score logit|prob]\n"
        "                   [--upsample trilinear|nearest|none] [--batch B] [--seed S]\n"
        "                   [--samples n] [--noise s] [--token-grid T,H,W] [-o OUT.npy]\n"
        "                   [--threads N] [--repeat R] [model-fact flags]\n"
        "  Explanation map of every sample of INPUT (the model's float32 input or uint8\n"
        "  video frames), raw float32 values (N,T,H,W) aligned with the input's time and\n"
        "  space axes (N,T',H',W' with --upsample none). Definitions: docs/cam.md.\n"
        "  --method   gradcam (default), gradcam-frame, gradcam++, smooth-gradcam++, xgradcam,\n"
        "             layercam, hirescam, cam, scorecam, sscam, iscam, eigencam, ablationcam,\n"
        "             occlusion, frame-occlusion, spatial-occlusion, rise, kernelshap, lime,\n"
        "             loco, up, aosa, extremal, saliency, gradxinput, ig, smoothgrad,\n"
        "             smoothgrad-sq, vargrad, guided-backprop, deconvnet, guided-gradcam, lrp,\n"
        "             swag, rollout, transformer-attribution, generic-attention\n"
        "  --layer    ONNX tensor name or PyTorch module path (default: the model's\n"
        "             stx.target_layer, else the last 5-D, frame-batched or token tensor)\n"
        "  --target   class per sample: index, class name, top (default), or a comma list\n"
        "  --frame    frame index for models that output one prediction per frame (N,K,T)\n"
        "  --score    logit (default) or prob (softmax probability)\n"
        "  --upsample trilinear (default), nearest or none (the layer's resolution)\n"
        "  --batch    forwards per batch for scorecam, sscam, iscam, ablationcam (16)\n"
        "  --seed     seed of the noise of smooth-gradcam++ and sscam (0)\n"
        "  --samples  noisy/scaled copies (smooth-gradcam++ 4, sscam 35, iscam 10)\n"
        "  --noise    noise standard deviation (smooth-gradcam++ 0.3, sscam 2.0)\n"
        "  --token-grid T,H,W  token grid of a transformer layer (default: stx.token_grid,\n"
        "             else the patch embedding's output)\n"
        "perturbation methods (occlusion, frame-occlusion, spatial-occlusion, rise, kernelshap,\n"
        "lime, loco, up, aosa, extremal; no layer;\n"
        "docs/perturbation.md):\n"
        "  --window T,H,W  occlusion cuboid (0: the whole axis; default T/4,H/7,W/7)\n"
        "  --stride T,H,W  occlusion stride (0: the window; default half the window)\n"
        "  --baseline B    zero (default), mean, blur, blur3d, noise, or a float32 .npy clip\n"
        "  --masks N       rise masks (1000)\n"
        "  --cells T,H,W   rise grid cells (min(T,4),7,7)\n"
        "  --p P           rise keep probability (0.5)\n"
        "  --segments S    segments of kernelshap, lime, loco and up: grid (default) of\n"
        "                  --cells cuboids (min(T,4),7,7), or slic supervoxels;\n"
        "                  --samples: coalitions (1000)\n"
        "  --n-segments K  slic: about K supervoxels (200)\n"
        "  --compactness c slic: colour against space distance (20)\n"
        "  --kernel-width w  lime's kernel width on the cosine distance (0.25)\n"
        "  --aosa-stride s, --aosa-crop c  aosa seed spacing (8) and occluded square (16)\n"
        "  --aosa-stack k  aosa: each tube joined with its k most alike in motion (3; 1: alone)\n"
        "  --areas a,b     extremal: area fractions (0.1); --steps: optimiser steps (300)\n"
        "  --precision P   fp32 (default) or bf16: forwards of the perturbation methods,\n"
        "                  forwards and backwards of the gradient family (not lrp, extremal)\n"
        "gradient family and LRP (saliency ... guided-gradcam, lrp, swag; docs/gradient.md):\n"
        "  --reduce R      channels to one map: sum (default), abs-sum, max-abs, l2, or none\n"
        "                  (the raw signed attribution with the input's shape)\n"
        "  --steps K       ig: quadrature points (50), as Captum's n_steps\n"
        "  --schedule S    ig: middle (default), gauss-legendre, left, right, trapezoid\n"
        "  --baseline B    ig: zero (default), mean, blur, blur3d, noise or a .npy clip\n"
        "  --samples n, --noise f  smoothgrad, smoothgrad-sq, vargrad: noisy copies (25)\n"
        "                  and their standard deviation as a fraction of the clip's range (0.15)\n"
        "  --noise-file F  smoothgrad family: float32 (S, sample shape) standard-normal draws\n"
        "                  to use as the noise (S copies)\n"
        "  --batch B       ig interpolants / noisy copies per backward (16)\n"
        "  --rule R        lrp: epsilon-plus (default), epsilon-gamma-box, epsilon-plus-flat,\n"
        "                  or one rule everywhere: epsilon, zero, gamma, alpha1beta0,\n"
        "                  alpha2beta1, zplus, wsquare, flat, zbox (docs/lrp.md)\n"
        "  --epsilon e, --gamma g  lrp rule parameters (1e-6, 0.25)\n"
        "  --zbox LO,HI    lrp zbox input bounds (default: the valid pixel box)\n"
        "two-stage models (a frame model, then a temporal model on its features, e.g. a CNN and\n"
        "an MS-TCN): MODEL is the temporal model (layout NCT), INPUT the frames (uint8\n"
        "(T,H,W,3), or the frame model's float32 input (T,C,H,W)):\n"
        "  --frame-model M  the frame model; --method: the temporal method (default\n"
        "                  gradxinput); -o: (1,T,H,W) pixels x gradient through both models\n"
        "                  at the top frames\n"
        "  --top-frames k  frames given a spatial map (5)\n"
        "  --temporal-out F.npy  the attribution over (feature, time), (F,T)\n"
        "transformer methods (rollout, transformer-attribution, generic-attention):\n"
        "  --head-fusion F  mean (default), max or min over the heads\n"
        "  --discard-ratio r  rollout: fraction of the lowest attentions dropped (0)\n"
        "  --start-layer k  first attention block used (0)\n"
        "video input (a video file, a folder of PNG/JPEG frames, or uint8 frames .npy) and a\n"
        "report (docs/video.md):\n"
        "  --out-dir DIR   write saliency.npy, overlay.mp4, overlay.gif, frames.png,\n"
        "                  temporal.png, manifest.json and report.html into DIR (several\n"
        "                  methods, --method a,b: one folder per method)\n"
        "  --clip-len T    frames per clip (default: the model's stx.clip_length, else 16)\n"
        "  --frame-stride s  step between sampled frames (1)\n"
        "  --start F       first frame (0)\n"
        "  --uniform       T frames spread evenly over the whole video\n"
        "  --windows       sliding windows over the whole video, maps stitched (overlaps\n"
        "                  averaged), one prediction per window\n"
        "  --window-stride S  frames between windows (default: T * s, no overlap)\n"
        "  --size S        resize the short side to S (then --crop); default: the model's\n"
        "                  stx.frame_size (an exact resize), else none\n"
        "  --crop C|HxW    centre crop after --size\n"
        "  --preset P      kinetics (mean/std of torchvision's video models, --size 128\n"
        "                  --crop 112) or imagenet (--size 256 --crop 224)\n"
        "  --bgr           the model takes BGR\n"
        "  --colormap M    jet (default), turbo, inferno, viridis, diverging\n"
        "  --alpha A       heat map weight in the overlay (0.5)\n"
        "  --per-frame     normalise each frame on its own (default: the whole clip)\n"
        "  --signed        signed maps: 0 in the middle of the colour map\n"
        "%s",
        CLI_FACT_FLAGS_HELP);
}

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

typedef struct bar {
    int tty;
    const char *method;
    double t0;
} bar;

static int on_progress(void *user, int64_t done, int64_t total) {
    bar *b = user;
    if (b->tty && total > 0) {
        int width = 30, fill = (int)(width * done / total);
        fprintf(stderr, "\r%s [", b->method);
        for (int i = 0; i < width; i++) fputc(i < fill ? '#' : '.', stderr);
        fprintf(stderr, "] %lld/%lld forwards %.1f s", (long long)done, (long long)total,
                (cli_now_ms() - b->t0) / 1000.0);
        if (done >= total) fputc('\n', stderr);
        fflush(stderr);
    }
    return interrupted;
}

/* "T,H,W" (or "TxHxW") of sizes >= 0 (zero_ok) or >= 1. */
static bool parse_triple(const char *s, int g[3], bool zero_ok) {
    int n = 0;
    const char *p = s;
    while (n < 3) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < (zero_ok ? 0 : 1) || v > 1 << 20) return false;
        g[n++] = (int)v;
        p = end;
        if (n < 3 && *p != ',' && *p != 'x') return false;
        if (n < 3) p++;
    }
    return *p == '\0';
}

/* "a[,b...]": 1 to 4 fractions in (0, 1]. */
static bool parse_areas(const char *s, float a[4], int *n) {
    int k = 0;
    const char *p = s;
    while (k < 4) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !(v > 0 && v <= 1)) return false;
        a[k++] = (float)v;
        p = end;
        if (*p != ',') break;
        p++;
    }
    if (*p != '\0') return false;
    *n = k;
    return true;
}

/* `stx explain TEMPORAL FRAMES --frame-model FRAME`: stx_explain_chain. */
static int explain_chain(const char *tpath, const char *fpath, const char *input,
                         const char *target, long frame, long threads, long top_frames,
                         stx_explain_options *eo, const char *noise_file, const char *baseline_file,
                         const char *out, const char *temporal_out, const cli_facts *facts) {
    stx_context *ctx = NULL;
    stx_model *tm = NULL, *fm = NULL;
    stx_tensor *x = NULL, *noise = NULL, *bclip = NULL;
    stx_chain_result r;
    memset(&r, 0, sizeof r);
    cli_resolved tres, fres;
    cli_facts none = {0};
    int64_t tg = -1;
    int rc;
    if ((rc = cli_context((int)threads, &ctx))) goto done;
    if ((rc = cli_load_model(ctx, tpath, &tm)) || (rc = cli_load_model(ctx, fpath, &fm))) goto done;
    if ((rc = cli_resolve_facts(tm, facts, true, &tres)) ||
        (rc = cli_resolve_facts(fm, &none, true, &fres)))
        goto done;
    if ((rc = cli_parse_targets(target, &tres, &tg, 1))) goto done;
    fres.pre.layout = "NCHW";
    if ((rc = cli_load_input(ctx, input, &fres, &x))) goto done;
    if (noise_file && stx_tensor_load_npy(ctx, noise_file, &noise) != STX_OK) {
        rc = cli_fail("--noise-file: %s", stx_context_last_error(ctx));
        goto done;
    }
    if (baseline_file && stx_tensor_load_npy(ctx, baseline_file, &bclip) != STX_OK) {
        rc = cli_fail("--baseline: %s", stx_context_last_error(ctx));
        goto done;
    }
    eo->noise_samples = noise;
    eo->baseline_clip = bclip;
    stx_chain_options co = stx_chain_options_default();
    co.top_frames = (int)top_frames;
    double t0 = cli_now_ms();
    if (stx_explain_chain(fm, tm, x, tg, frame >= 0 ? frame : -1, eo, &co, &r) != STX_OK) {
        rc = cli_fail("%s with %s: %s", tpath, fpath, stx_context_last_error(ctx));
        goto done;
    }
    double t1 = cli_now_ms();
    const char *name = cli_class_name(&tres, r.target);
    if (frame >= 0)
        printf("class %lld%s%s%s at frame %ld: score %.4f\n", (long long)r.target, name ? " " : "",
               name ? name : "", tg < 0 ? " (top)" : "", frame, r.score);
    else
        printf("class %lld%s%s%s summed over frames: score %.4f\n", (long long)r.target,
               name ? " " : "", name ? name : "", tg < 0 ? " (top)" : "", r.score);
    const int64_t *top = stx_tensor_data(r.top);
    const float *curve = stx_tensor_data(r.curve);
    printf("frames that matter most (%s over features):", eo->method);
    for (int64_t j = 0; j < stx_tensor_shape(r.top)[0]; j++)
        printf(" %lld (%.4g)", (long long)top[j], (double)curve[top[j]]);
    printf("\n");
    const int64_t *ss = stx_tensor_shape(r.spatial);
    int64_t vs[4] = {1, ss[0], ss[1], ss[2]};
    if (out) {
        if (stx_tensor_reshape(r.spatial, vs, 4) != STX_OK ||
            stx_tensor_save_npy(ctx, r.spatial, out) != STX_OK) {
            rc = cli_fail("%s", stx_context_last_error(ctx));
            goto done;
        }
    }
    if (temporal_out && stx_tensor_save_npy(ctx, r.temporal, temporal_out) != STX_OK) {
        rc = cli_fail("%s", stx_context_last_error(ctx));
        goto done;
    }
    printf("map: 1x%lldx%lldx%lld float32%s%s\n", (long long)vs[1], (long long)vs[2],
           (long long)vs[3], out ? " -> " : " (not saved: give -o OUT.npy)", out ? out : "");
    printf("time_ms: %.1f\n", t1 - t0);
done:
    stx_chain_result_free(&r);
    stx_tensor_free(x);
    stx_tensor_free(noise);
    stx_tensor_free(bclip);
    stx_model_free(tm);
    stx_model_free(fm);
    stx_context_free(ctx);
    return rc;
}

int cmd_explain(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *out = NULL, *target = "top";
    stx_explain_options eo = stx_explain_options_default();
    long threads = 0, frame = -2, batch = eo.batch, samples = 0, repeat = 1;
    int rc = 0;
    cli_facts facts = {0};
    video_job_opts vo;
    memset(&vo, 0, sizeof vo);
    vo.sampling = stx_sampling_default();
    vo.sampling.clip_len = 0;
    vo.ro = stx_render_options_default();
    const char *preset = NULL;
    long size = 0, crop_h = 0, crop_w = 0, lv;
    bool video_flags = false, bgr = false;
    const char *baseline_file = NULL, *noise_file = NULL, *frame_model = NULL, *temporal_out = NULL;
    long top_frames = 5;
    bool method_set = false;
    stx_tensor *bclip = NULL, *noise = NULL;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        int ff = cli_fact_flag(argc, argv, &i, &facts);
        if (ff < 0) {
            rc = 1;
        } else if (ff > 0) {
            continue;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            explain_usage(stdout);
            cli_facts_free(&facts);
            return 0;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (++i >= argc)
                rc = cli_fail("%s needs a file name", a);
            else
                out = argv[i];
        } else if (strcmp(a, "--method") == 0) {
            if (++i >= argc)
                rc = cli_fail("--method needs a name (try 'stx explain --help')");
            else
                eo.method = argv[i];
            method_set = true;
        } else if (strcmp(a, "--layer") == 0) {
            if (++i >= argc || !argv[i][0])
                rc = cli_fail("--layer needs a tensor name or a module path");
            else
                eo.layer = argv[i];
        } else if (strcmp(a, "--target") == 0) {
            if (++i >= argc)
                rc = cli_fail("--target needs a class index or name, a list or top");
            else
                target = argv[i];
        } else if (strcmp(a, "--score") == 0) {
            if (++i >= argc || (strcmp(argv[i], "logit") && strcmp(argv[i], "prob")))
                rc = cli_fail("--score must be logit or prob");
            else
                eo.score = strcmp(argv[i], "prob") == 0 ? STX_SCORE_PROB : STX_SCORE_LOGIT;
        } else if (strcmp(a, "--upsample") == 0) {
            if (++i >= argc) {
                rc = cli_fail("--upsample must be trilinear, nearest or none");
            } else if (strcmp(argv[i], "trilinear") == 0) {
                eo.upsample = STX_UPSAMPLE_TRILINEAR;
            } else if (strcmp(argv[i], "nearest") == 0) {
                eo.upsample = STX_UPSAMPLE_NEAREST;
            } else if (strcmp(argv[i], "none") == 0) {
                eo.upsample = STX_UPSAMPLE_NONE;
            } else {
                rc = cli_fail("--upsample must be trilinear, nearest or none, not '%s'", argv[i]);
            }
        } else if (strcmp(a, "--frame") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 0, 1L << 40, &frame))
                rc = cli_fail("--frame needs a non-negative frame index");
        } else if (strcmp(a, "--batch") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 1, 4096, &batch))
                rc = cli_fail("--batch needs an integer in [1, 4096]");
        } else if (strcmp(a, "--samples") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 1, 100000, &samples))
                rc = cli_fail("--samples needs an integer in [1, 100000]");
        } else if (strcmp(a, "--noise") == 0) {
            char *e = NULL;
            double v = ++i < argc ? strtod(argv[i], &e) : -1;
            if (i >= argc || !e || *e || !(v >= 0 && v <= 1e6))
                rc = cli_fail("--noise needs a standard deviation >= 0");
            else
                eo.noise = (float)v;
        } else if (strcmp(a, "--seed") == 0) {
            char *e = NULL;
            unsigned long long v = ++i < argc ? strtoull(argv[i], &e, 10) : 0;
            if (i >= argc || !e || *e || argv[i][0] == '-' || !argv[i][0])
                rc = cli_fail("--seed needs a non-negative integer");
            else
                eo.seed = v;
        } else if (strcmp(a, "--token-grid") == 0) {
            if (++i >= argc || !parse_triple(argv[i], eo.token_grid, false))
                rc = cli_fail("--token-grid needs three positive sizes T,H,W");
        } else if (strcmp(a, "--out-dir") == 0) {
            if (++i >= argc || !argv[i][0])
                rc = cli_fail("--out-dir needs a folder name");
            else
                vo.out_dir = argv[i];
        } else if (strcmp(a, "--clip-len") == 0) {
            video_flags = true;
            if (++i >= argc || !cli_parse_int(argv[i], 1, 100000, &lv))
                rc = cli_fail("--clip-len needs a frame count in [1, 100000]");
            else
                vo.sampling.clip_len = (int)lv;
        } else if (strcmp(a, "--frame-stride") == 0) {
            video_flags = true;
            if (++i >= argc || !cli_parse_int(argv[i], 1, 100000, &lv))
                rc = cli_fail("--frame-stride needs a positive integer");
            else
                vo.sampling.frame_stride = (int)lv;
        } else if (strcmp(a, "--start") == 0) {
            video_flags = true;
            if (++i >= argc || !cli_parse_int(argv[i], 0, 1L << 40, &lv))
                rc = cli_fail("--start needs a frame index >= 0");
            else
                vo.sampling.start = lv;
        } else if (strcmp(a, "--uniform") == 0) {
            video_flags = true;
            vo.sampling.uniform = 1;
        } else if (strcmp(a, "--windows") == 0) {
            video_flags = true;
            vo.sampling.windows = 1;
        } else if (strcmp(a, "--window-stride") == 0) {
            video_flags = true;
            if (++i >= argc || !cli_parse_int(argv[i], 1, 1L << 40, &lv))
                rc = cli_fail("--window-stride needs a positive frame count");
            else
                vo.sampling.window_stride = lv;
        } else if (strcmp(a, "--size") == 0) {
            video_flags = true;
            if (++i >= argc || !cli_parse_int(argv[i], 1, 16384, &size))
                rc = cli_fail("--size needs the short side in pixels, in [1, 16384]");
        } else if (strcmp(a, "--crop") == 0) {
            int64_t d[STX_MAX_RANK];
            int r = 0;
            video_flags = true;
            if (++i >= argc || !cli_parse_shape(argv[i], d, &r) || r > 2 || d[0] > 16384 ||
                d[r - 1] > 16384) {
                rc = cli_fail("--crop needs a size C or HxW");
            } else {
                crop_h = (long)d[0];
                crop_w = (long)d[r - 1];
            }
        } else if (strcmp(a, "--preset") == 0) {
            video_flags = true;
            stx_preprocess tmp = stx_preprocess_default();
            if (++i >= argc || stx_preprocess_preset(argv[i], &tmp) != STX_OK)
                rc = cli_fail("--preset must be kinetics or imagenet");
            else
                preset = argv[i];
        } else if (strcmp(a, "--bgr") == 0) {
            video_flags = true;
            bgr = true;
        } else if (strcmp(a, "--colormap") == 0) {
            video_flags = true;
            int c = ++i < argc ? stx_colormap_from_name(argv[i]) : -1;
            if (c < 0)
                rc = cli_fail("--colormap must be jet, turbo, inferno, viridis or diverging");
            else
                vo.ro.colormap = (stx_colormap)c;
        } else if (strcmp(a, "--alpha") == 0) {
            char *e = NULL;
            double v = ++i < argc ? strtod(argv[i], &e) : -1;
            video_flags = true;
            if (i >= argc || !e || *e || !(v >= 0 && v <= 1))
                rc = cli_fail("--alpha needs a weight in [0, 1]");
            else
                vo.ro.alpha = (float)v;
        } else if (strcmp(a, "--per-frame") == 0) {
            video_flags = true;
            vo.ro.per_frame = 1;
        } else if (strcmp(a, "--signed") == 0) {
            video_flags = true;
            vo.ro.signed_map = 1;
        } else if (strcmp(a, "--window") == 0 || strcmp(a, "--stride") == 0 ||
                   strcmp(a, "--cells") == 0) {
            int *dst = a[2] == 'w' ? eo.window : a[2] == 's' ? eo.stride : eo.cells;
            if (++i >= argc || !parse_triple(argv[i], dst, a[2] != 'c'))
                rc = cli_fail("%s needs three sizes T,H,W%s", a,
                              a[2] != 'c' ? " (0: the whole axis / the window)" : " (>= 1)");
        } else if (strcmp(a, "--baseline") == 0) {
            if (++i >= argc)
                rc = cli_fail("--baseline needs zero, mean, blur, blur3d, noise or a .npy clip");
            else if (!strcmp(argv[i], "zero"))
                eo.baseline = STX_BASELINE_ZERO;
            else if (!strcmp(argv[i], "mean"))
                eo.baseline = STX_BASELINE_MEAN;
            else if (!strcmp(argv[i], "blur"))
                eo.baseline = STX_BASELINE_BLUR;
            else if (!strcmp(argv[i], "blur3d"))
                eo.baseline = STX_BASELINE_BLUR3D;
            else if (!strcmp(argv[i], "noise"))
                eo.baseline = STX_BASELINE_NOISE;
            else {
                eo.baseline = STX_BASELINE_CLIP;
                baseline_file = argv[i];
            }
        } else if (strcmp(a, "--segments") == 0) {
            if (++i >= argc || (strcmp(argv[i], "grid") != 0 && strcmp(argv[i], "slic") != 0))
                rc = cli_fail("--segments must be grid or slic");
            else
                eo.segments = argv[i];
        } else if (strcmp(a, "--n-segments") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 1, 4096, &lv))
                rc = cli_fail("--n-segments needs a count in [1, 4096]");
            else
                eo.n_segments = (int)lv;
        } else if (strcmp(a, "--compactness") == 0) {
            char *e = NULL;
            double v = ++i < argc ? strtod(argv[i], &e) : -1;
            if (i >= argc || !e || *e || !(v > 0 && v <= 1e6))
                rc = cli_fail("--compactness needs a value > 0");
            else
                eo.compactness = (float)v;
        } else if (strcmp(a, "--aosa-stride") == 0 || strcmp(a, "--aosa-crop") == 0) {
            int *dst = a[7] == 's' ? &eo.aosa_stride : &eo.aosa_crop;
            if (++i >= argc || !cli_parse_int(argv[i], 1, 4096, &lv))
                rc = cli_fail("%s needs a size in pixels in [1, 4096]", a);
            else
                *dst = (int)lv;
        } else if (strcmp(a, "--aosa-stack") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 1, 64, &lv))
                rc = cli_fail("--aosa-stack needs a count in [1, 64] (1: single tubes)");
            else
                eo.aosa_stack = (int)lv;
        } else if (strcmp(a, "--areas") == 0) {
            if (++i >= argc || !parse_areas(argv[i], eo.areas, &eo.n_areas))
                rc = cli_fail("--areas needs 1 to 4 fractions in (0, 1], e.g. 0.05,0.1");
        } else if (strcmp(a, "--steps") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 1, 100000, &lv))
                rc = cli_fail("--steps needs a count in [1, 100000]");
            else
                eo.steps = (int)lv;
        } else if (strcmp(a, "--frame-model") == 0 || strcmp(a, "--temporal-out") == 0) {
            if (++i >= argc || !argv[i][0])
                rc = cli_fail("%s needs a file name", a);
            else if (a[2] == 'f')
                frame_model = argv[i];
            else
                temporal_out = argv[i];
        } else if (strcmp(a, "--top-frames") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 0, 1L << 30, &top_frames))
                rc = cli_fail("--top-frames needs a count >= 0");
        } else if (strcmp(a, "--reduce") == 0) {
            static const char *const rn[] = {"sum", "abs-sum", "max-abs", "l2", "none"};
            int k = -1;
            if (++i < argc)
                for (int j = 0; j < 5; j++)
                    if (strcmp(argv[i], rn[j]) == 0) k = j;
            if (k < 0)
                rc = cli_fail("--reduce must be sum, abs-sum, max-abs, l2 or none");
            else
                eo.reduce = (stx_reduce)k;
        } else if (strcmp(a, "--schedule") == 0) {
            static const char *const sn[] = {"middle", "gauss-legendre", "left", "right",
                                             "trapezoid"};
            int k = -1;
            if (++i < argc)
                for (int j = 0; j < 5; j++)
                    if (strcmp(argv[i], sn[j]) == 0) k = j;
            if (k < 0)
                rc =
                    cli_fail("--schedule must be middle, gauss-legendre, left, right or trapezoid");
            else
                eo.schedule = (stx_ig_schedule)k;
        } else if (strcmp(a, "--noise-file") == 0) {
            if (++i >= argc || !argv[i][0])
                rc = cli_fail("--noise-file needs a float32 .npy file");
            else
                noise_file = argv[i];
        } else if (strcmp(a, "--rule") == 0) {
            if (++i >= argc || !argv[i][0])
                rc = cli_fail("--rule needs an LRP rule or composite name");
            else
                eo.rule = argv[i];
        } else if (strcmp(a, "--epsilon") == 0 || strcmp(a, "--gamma") == 0 ||
                   strcmp(a, "--discard-ratio") == 0) {
            char *e = NULL;
            double v = ++i < argc ? strtod(argv[i], &e) : -1;
            bool dr = a[2] == 'd';
            if (i >= argc || !e || *e || !(v >= 0 && v <= (dr ? 0.999999 : 1e6)))
                rc = cli_fail("%s needs a value %s", a, dr ? "in [0, 1)" : ">= 0");
            else if (dr)
                eo.discard_ratio = (float)v;
            else if (a[2] == 'e')
                eo.epsilon = (float)v;
            else
                eo.gamma = (float)v;
        } else if (strcmp(a, "--zbox") == 0) {
            char *e = NULL, *e2 = NULL;
            double lo = ++i < argc ? strtod(argv[i], &e) : 0, hi = 0;
            if (i < argc && e && *e == ',') hi = strtod(e + 1, &e2);
            if (i >= argc || !e2 || *e2 || e2 == e + 1 || !(lo < hi) || !isfinite(lo) ||
                !isfinite(hi))
                rc = cli_fail("--zbox needs two bounds LO,HI with LO < HI");
            else {
                eo.zbox_low = (float)lo;
                eo.zbox_high = (float)hi;
            }
        } else if (strcmp(a, "--head-fusion") == 0) {
            if (++i >= argc ||
                (strcmp(argv[i], "mean") && strcmp(argv[i], "max") && strcmp(argv[i], "min")))
                rc = cli_fail("--head-fusion must be mean, max or min");
            else
                eo.head_fusion = argv[i][1] == 'e'   ? STX_HEADS_MEAN
                                 : argv[i][1] == 'a' ? STX_HEADS_MAX
                                                     : STX_HEADS_MIN;
        } else if (strcmp(a, "--start-layer") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 0, 100000, &lv))
                rc = cli_fail("--start-layer needs a block index >= 0");
            else
                eo.start_layer = (int)lv;
        } else if (strcmp(a, "--precision") == 0) {
            if (++i >= argc || (strcmp(argv[i], "fp32") != 0 && strcmp(argv[i], "bf16") != 0))
                rc = cli_fail("--precision must be fp32 or bf16");
            else
                eo.precision = argv[i][0] == 'b' ? STX_PRECISION_BF16 : STX_PRECISION_FP32;
        } else if (strcmp(a, "--kernel-width") == 0) {
            char *e = NULL;
            double v = ++i < argc ? strtod(argv[i], &e) : -1;
            if (i >= argc || !e || *e || !(v > 0 && v <= 1e6))
                rc = cli_fail("--kernel-width needs a width > 0");
            else
                eo.kernel_width = (float)v;
        } else if (strcmp(a, "--masks") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 1, 1000000, &lv))
                rc = cli_fail("--masks needs a count in [1, 1000000]");
            else
                eo.masks = (int)lv;
        } else if (strcmp(a, "--p") == 0) {
            char *e = NULL;
            double v = ++i < argc ? strtod(argv[i], &e) : -1;
            if (i >= argc || !e || *e || !(v > 0 && v <= 1))
                rc = cli_fail("--p needs a keep probability in (0, 1]");
            else
                eo.p = (float)v;
        } else if (strcmp(a, "--repeat") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 1, 1000000, &repeat))
                rc = cli_fail("--repeat needs a positive integer");
        } else if (strcmp(a, "--threads") == 0) {
            if (++i >= argc || !cli_parse_int(argv[i], 1, 4096, &threads))
                rc = cli_fail("--threads needs a positive integer");
        } else if (a[0] == '-' && a[1]) {
            rc = cli_fail("explain: unknown option '%s' (try 'stx explain --help')", a);
        } else if (!model) {
            model = a;
        } else if (!input) {
            input = a;
        } else {
            rc = cli_fail("explain: unexpected argument '%s'", a);
        }
    }
    if (!rc && (!model || !input)) {
        explain_usage(stderr);
        rc = 2;
    }
    if (rc) {
        cli_facts_free(&facts);
        return rc;
    }
    if (frame_model) {
        if (vo.out_dir || video_flags) {
            cli_facts_free(&facts);
            return cli_fail("--frame-model takes frames in a .npy file and -o, not --out-dir or "
                            "video flags");
        }
        if (!method_set) eo.method = "gradxinput";
        eo.batch = (int)batch;
        eo.samples = (int)samples;
        rc = explain_chain(model, frame_model, input, target, frame, threads, top_frames, &eo,
                           noise_file, baseline_file, out, temporal_out, &facts);
        cli_facts_free(&facts);
        return rc;
    }
    size_t il = strlen(input);
    bool npy = il >= 4 && strcmp(input + il - 4, ".npy") == 0;
    if (!vo.out_dir && (!npy || video_flags)) {
        cli_facts_free(&facts);
        return cli_fail("%s: a video input (or a sampling or rendering flag) needs --out-dir DIR",
                        input);
    }
    if (vo.out_dir && eo.reduce == STX_REDUCE_NONE) {
        cli_facts_free(&facts);
        return cli_fail("--reduce none writes the raw attribution (the input's shape): use an "
                        ".npy input and -o, not --out-dir");
    }
    if (vo.out_dir && out) {
        cli_facts_free(&facts);
        return cli_fail("-o and --out-dir: the report folder holds the raw map (saliency.npy)");
    }
    eo.batch = (int)batch;
    eo.samples = (int)samples;
    stx_context *ctx = NULL;
    stx_model *m = NULL;
    stx_explainer *e = NULL;
    stx_tensor *x = NULL;
    int64_t *targets = NULL, *frames = NULL;
    cli_resolved res;
    if ((rc = cli_context((int)threads, &ctx))) goto done;
    if ((rc = cli_load_model(ctx, model, &m))) goto done;
    if ((rc = cli_resolve_facts(m, &facts, true, &res))) goto done;
    if (baseline_file) {
        if (stx_tensor_load_npy(ctx, baseline_file, &bclip) != STX_OK) {
            rc = cli_fail("--baseline: %s", stx_context_last_error(ctx));
            goto done;
        }
        eo.baseline_clip = bclip;
    }
    if (noise_file) {
        if (stx_tensor_load_npy(ctx, noise_file, &noise) != STX_OK) {
            rc = cli_fail("--noise-file: %s", stx_context_last_error(ctx));
            goto done;
        }
        eo.noise_samples = noise;
    }
    if (vo.out_dir) {
        vo.model = model;
        vo.input = input;
        vo.methods = eo.method ? eo.method : "gradcam";
        vo.frame = frame >= 0 ? frame : -1;
        vo.pre = res.pre;
        if (preset) {
            stx_preprocess_preset(preset, &vo.pre);
            if (facts.has_mean) memcpy(vo.pre.mean, facts.mean, sizeof vo.pre.mean);
            if (facts.has_std) memcpy(vo.pre.std, facts.std, sizeof vo.pre.std);
        }
        if (size || crop_h) {
            /* resize-and-crop replaces the model's exact frame size */
            vo.pre.height = vo.pre.width = 0;
            if (size) vo.pre.short_side = (int)size;
            if (crop_h) {
                vo.pre.crop_height = (int)crop_h;
                vo.pre.crop_width = (int)crop_w;
            }
        }
        vo.pre.bgr = bgr;
        eo.layout = vo.pre.layout;
        eo.output = res.output_name;
        bar vb = {isatty(2), vo.methods, cli_now_ms()};
        eo.progress = on_progress;
        eo.progress_user = &vb;
        vo.eo = &eo;
        struct sigaction vsa, vold;
        memset(&vsa, 0, sizeof vsa);
        vsa.sa_handler = on_sigint;
        sigaction(SIGINT, &vsa, &vold);
        vo.cancel = &interrupted;
        rc = explain_video(&vo, ctx, m, &res, target);
        sigaction(SIGINT, &vold, NULL);
        goto done;
    }
    if ((rc = cli_load_input(ctx, input, &res, &x))) goto done;
    int64_t n = stx_tensor_rank(x) > 0 ? stx_tensor_shape(x)[0] : 1;
    targets = calloc((size_t)n, sizeof *targets);
    frames = calloc((size_t)n, sizeof *frames);
    if (!targets || !frames) {
        rc = cli_fail("out of memory");
        goto done;
    }
    if ((rc = cli_parse_targets(target, &res, targets, n))) goto done;
    for (int64_t i = 0; i < n; i++) frames[i] = frame >= 0 ? frame : -1;
    eo.layout = res.pre.layout;
    eo.output = res.output_name;
    bar b = {isatty(2), eo.method ? eo.method : "gradcam", 0};
    eo.progress = on_progress;
    eo.progress_user = &b;
    double t0 = cli_now_ms();
    if (stx_explainer_create(m, &eo, stx_tensor_shape(x), stx_tensor_rank(x), &e) != STX_OK) {
        rc = cli_fail("%s: %s", model, stx_context_last_error(ctx));
        goto done;
    }
    const char *tensor, *module, *how;
    int64_t grid[4];
    stx_explainer_layer(e, &tensor, &module, &how, grid);
    if (!tensor)
        printf("layer: none (the method needs no target layer)\n");
    else
        printf("layer: %s%s%s%s (%s; %lld channels, grid %lldx%lldx%lld)\n",
               module ? module : tensor, module ? " (tensor " : "", module ? tensor : "",
               module ? ")" : "", how, (long long)grid[0], (long long)grid[1], (long long)grid[2],
               (long long)grid[3]);
    fflush(stdout);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);
    b.t0 = cli_now_ms();
    stx_tensor *map = NULL;
    stx_status st = STX_OK;
    double best = 1e300;
    for (long r = 0; r < repeat && st == STX_OK; r++) {
        double ta = cli_now_ms();
        st = stx_explainer_run(e, x, targets, frame >= 0 ? frames : NULL, &map);
        if (cli_now_ms() - ta < best) best = cli_now_ms() - ta;
    }
    sigaction(SIGINT, &old, NULL);
    double t1 = cli_now_ms();
    if (st != STX_OK) {
        if (b.tty) fputc('\n', stderr);
        rc = cli_fail("%s", stx_explainer_last_error(e));
        goto done;
    }
    const int64_t *used = stx_explainer_targets(e);
    const stx_tensor *y = stx_explainer_output(e);
    const int64_t *ms = stx_tensor_shape(map);
    const float *mp = stx_tensor_data_const(map);
    int mrank = stx_tensor_rank(map);
    int64_t per = stx_tensor_numel(map) / (ms[0] ? ms[0] : 1);
    const double *tot_a = NULL, *tot_e = NULL;
    stx_explainer_totals(e, &tot_a, &tot_e);
    for (int64_t i = 0; i < n; i++) {
        const char *name = cli_class_name(&res, used[i]);
        int64_t arg = 0;
        for (int64_t u = 1; u < per; u++)
            if (mp[i * per + u] > mp[i * per + arg]) arg = u;
        int64_t K = stx_tensor_shape(y)[1];
        /* predicted class (top over frames for per-frame outputs is printed by `stx run`) */
        printf("sample %lld: class %lld%s%s%s", (long long)i, (long long)used[i], name ? " " : "",
               name ? name : "", targets[i] < 0 ? " (top)" : "");
        if (stx_tensor_rank(y) == 2)
            printf(" logit %.4f",
                   (double)((const float *)stx_tensor_data_const(y))[i * K + used[i]]);
        if (mrank == 4)
            printf("; map max %.4g at t=%lld y=%lld x=%lld", (double)mp[i * per + arg],
                   (long long)(arg / (ms[2] * ms[3])), (long long)(arg / ms[3] % ms[2]),
                   (long long)(arg % ms[3]));
        else
            printf("; attribution max %.4g at element %lld", (double)mp[i * per + arg],
                   (long long)arg);
        if (tot_a) {
            double gap = tot_a[i] - tot_e[i];
            printf("; %s: sum %.6g, expected %.6g, gap %.3g (%.3g%%)",
                   strcmp(eo.method, "lrp") == 0 ? "conservation" : "completeness", tot_a[i],
                   tot_e[i], gap, tot_e[i] != 0 ? 100 * fabs(gap) / fabs(tot_e[i]) : 0.0);
        }
        printf("\n");
    }
    char msb[128];
    {
        size_t q = 0;
        for (int k = 0; k < mrank; k++)
            q +=
                (size_t)snprintf(msb + q, sizeof msb - q, "%s%lld", k ? "x" : "", (long long)ms[k]);
    }
    printf("map: %s float32%s%s\n", msb, out ? " -> " : " (not saved: give -o OUT.npy)",
           out ? out : "");
    printf("time_ms: %.1f (plan %.1f, explain %.1f)\ntime_ms_best: %.3f\n", t1 - t0, b.t0 - t0,
           t1 - b.t0, best);
    if (out && stx_tensor_save_npy(ctx, map, out) != STX_OK) {
        rc = cli_fail("%s", stx_context_last_error(ctx));
        goto done;
    }
done:
    stx_tensor_free(bclip);
    stx_tensor_free(noise);
    free(targets);
    free(frames);
    stx_tensor_free(x);
    stx_explainer_free(e);
    stx_model_free(m);
    stx_context_free(ctx);
    cli_facts_free(&facts);
    return rc;
}
