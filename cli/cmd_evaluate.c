/* cmd_evaluate.c: `stx evaluate MODEL INPUT --saliency S.npy --metric a,b,c
 * [--mask GT.npy]
 *                  [--events E.npy] [--steps K] [--baseline B] [--target K]
 * [--score logit|prob]
 *                  [--batch B] [--json OUT]`: the metrics of one input's maps
 * (docs/metrics.md).
 * `--dataset` hands the whole command line to cmd_evaluate_dataset
 * (evaluate_dataset.c). */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void evaluate_usage(FILE *f) {
    fprintf(f,
            "usage: stx evaluate MODEL INPUT.npy --saliency S.npy [--metric a,b,...]\n"
            "                    [--mask GT.npy] [--events E.npy] [--target K|NAME|top]\n"
            "                    [--frame T] [--score prob|logit] [--steps K] [--step-voxels V]\n"
            "                    [--curve torchcam|rise|linspace] [--cells T,H,W] [--order O]\n"
            "                    [--baseline B] [--insertion-baseline B] [--batch B]\n"
            "                    [--tolerance PX] [--iou-threshold t] [--iou-top f] [--top-k K]\n"
            "                    [--seed S] [--threads N] [--json OUT.json] [model-fact flags]\n"
            "       stx evaluate --dataset ...   (a whole test set: evaluate_dataset)\n"
            "  How good the explanation maps S (float32 (N,T,H,W), or (T,H,W) for one clip)\n"
            "  of INPUT (the model's float32 input or uint8 frames) are. Definitions and\n"
            "  conventions: docs/metrics.md.\n"
            "  --metric   comma list (default deletion,insertion) of: deletion, insertion,\n"
            "             avg_drop, conf_increase (run the model); pointing, pointing_frame,\n"
            "             energy, iou, mass, rank, topk (need --mask); temporal,\n"
            "             temporal_pointing (need --events); sparsity, complexity\n"
            "  --mask     ground truth (N,T,H,W) or (T,H,W), uint8/bool/float (non-zero: in)\n"
            "  --events   decisive frames (N,T) or (T), non-zero on decisive frames\n"
            "  --target   class per sample: index, name, top (default), or a comma list\n"
            "  --frame    frame index for per-frame models (N,K,T) (default: summed)\n"
            "  --score    prob (softmax probability, default) or logit\n"
            "  --steps    deletion/insertion intervals (20); --step-voxels V: V voxels per step\n"
            "  --curve    torchcam (default: trapezoid over the fractions), rise\n"
            "             ((sum - ends/2) / steps), linspace (Li et al.'s cut points, AUC as\n"
            "             rise)\n"
            "  --cells T,H,W  deletion/insertion over a grid of cells (map averaged per cell,\n"
            "             whole cells removed; 0: voxels on that axis; Li et al.: T,16,16)\n"
            "  --order    morf (default: most relevant voxels first) or lerf (least first)\n"
            "  --baseline zero (default), mean, blur, blur3d, noise or a float32 .npy clip:\n"
            "             what deleted voxels become; --insertion-baseline: where insertion\n"
            "             starts (default: the same)\n"
            "  --batch    perturbed inputs per batch (16; results do not depend on it)\n"
            "  --tolerance PX  pointing game: hit within PX pixels of the truth (0)\n"
            "  --iou-threshold t  iou: map min-max normalised >= t (0.5); --iou-top f: the\n"
            "             top fraction f of voxels instead\n"
            "  --top-k K  topk: voxels (1000)\n"
            "  --json F   write every number and curve to F (atomically)\n"
            "%s",
            CLI_FACT_FLAGS_HELP);
}

static int on_progress(void *user, int64_t done, int64_t total) {
    int *tty = user;
    if (*tty && total > 0) {
        int width = 30, fill = (int)(width * done / total);
        fprintf(stderr, "\revaluate [");
        for (int i = 0; i < width; i++) fputc(i < fill ? '#' : '.', stderr);
        fprintf(stderr, "] %lld/%lld forwards", (long long)done, (long long)total);
        if (done >= total) fputc('\n', stderr);
        fflush(stderr);
    }
    return 0;
}

static const char *baseline_names[] = {"zero", "mean", "blur", "blur3d", "noise", NULL};

/* zero|mean|blur|blur3d|noise, else a file (*file set). */
static int parse_baseline(const char *s, int *b, const char **file) {
    for (int k = 0; baseline_names[k]; k++)
        if (strcmp(s, baseline_names[k]) == 0) {
            *b = k;
            return 0;
        }
    *b = STX_BASELINE_CLIP;
    *file = s;
    return 0;
}

static void json_num(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, "%.17g", v);
    else
        fputs("null", f);
}

static void json_nums(FILE *f, const double *v, int64_t n) {
    fputc('[', f);
    for (int64_t i = 0; i < n; i++) {
        if (i) fputs(", ", f);
        json_num(f, v[i]);
    }
    fputc(']', f);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

typedef struct eval_desc {
    const char *model, *input, *saliency, *mask, *events;
    const stx_metrics_options *o;
    const char *baseline, *insertion_baseline;
} eval_desc;

static const char *curve_name(stx_curve_convention c) {
    return c == STX_CURVE_RISE ? "rise" : c == STX_CURVE_LINSPACE ? "linspace" : "torchcam";
}

/* The results as JSON: one object per metric. */
static void write_json(FILE *f, const eval_desc *d, const stx_metrics_result *r,
                       const cli_resolved *res) {
    fputs("{\n  \"model\": ", f);
    json_str(f, d->model);
    fputs(",\n  \"input\": ", f);
    json_str(f, d->input);
    fputs(",\n  \"saliency\": ", f);
    json_str(f, d->saliency);
    if (d->mask) {
        fputs(",\n  \"mask\": ", f);
        json_str(f, d->mask);
    }
    if (d->events) {
        fputs(",\n  \"events\": ", f);
        json_str(f, d->events);
    }
    fprintf(f, ",\n  \"samples\": %lld", (long long)r->N);
    fprintf(f, ",\n  \"score\": \"%s\"", d->o->score == STX_SCORE_PROB ? "prob" : "logit");
    fprintf(f, ",\n  \"curve_convention\": \"%s\", \"order\": \"%s\"", curve_name(d->o->curve),
            d->o->least_first ? "lerf" : "morf");
    fprintf(f, ",\n  \"steps\": %d, \"step_voxels\": %lld, \"cells\": [%d, %d, %d]", d->o->steps,
            (long long)d->o->step_voxels, d->o->cells[0], d->o->cells[1], d->o->cells[2]);
    fputs(",\n  \"baseline\": ", f);
    json_str(f, d->baseline);
    fputs(", \"insertion_baseline\": ", f);
    json_str(f, d->insertion_baseline);
    fprintf(f,
            ",\n  \"tolerance\": %g, \"iou_threshold\": %g, \"iou_top\": %g, "
            "\"top_k\": %lld",
            d->o->tolerance, d->o->iou_threshold, d->o->iou_top, (long long)d->o->top_k);
    if (r->targets) {
        fputs(",\n  \"targets\": [", f);
        for (int64_t n = 0; n < r->N; n++) {
            fprintf(f, "%s%lld", n ? ", " : "", (long long)r->targets[n]);
        }
        fputs("],\n  \"target_names\": [", f);
        for (int64_t n = 0; n < r->N; n++) {
            if (n) fputs(", ", f);
            const char *nm = cli_class_name(res, r->targets[n]);
            if (nm)
                json_str(f, nm);
            else
                fputs("null", f);
        }
        fputs("],\n  \"clean_scores\": ", f);
        json_nums(f, r->scores, r->N);
    }
    fprintf(f, ",\n  \"forwards\": %lld", (long long)r->forwards);
    for (int i = 0; i < r->n_metrics; i++) {
        const stx_metric_result *m = &r->metrics[i];
        fputs(",\n  ", f);
        json_str(f, m->name);
        fputs(": {", f);
        if (m->curve_len) {
            fputs("\"auc\": ", f);
            json_num(f, m->value);
            fputs(", ", f);
        }
        fputs("\"value\": ", f);
        json_num(f, m->value);
        fprintf(f, ", \"count\": %lld, \"per_sample\": ", (long long)m->count);
        json_nums(f, m->per_sample, r->N);
        if (m->curve_len) {
            fputs(",\n    \"fractions\": ", f);
            json_nums(f, m->fractions, m->curve_len);
            fputs(",\n    \"curve\": [", f); /* the mean curve over samples */
            for (int64_t j = 0; j < m->curve_len; j++) {
                double s = 0;
                for (int64_t n = 0; n < r->N; n++) s += m->curves[n * m->curve_len + j];
                if (j) fputs(", ", f);
                json_num(f, s / (double)r->N);
            }
            fputs("],\n    \"curves\": [", f);
            for (int64_t n = 0; n < r->N; n++) {
                if (n) fputs(", ", f);
                json_nums(f, m->curves + n * m->curve_len, m->curve_len);
            }
            fputc(']', f);
        }
        fputc('}', f);
    }
    fputs("\n}\n", f);
}

/* Writes the JSON to path atomically (a temporary file beside it, then rename).
 */
static int save_json(const char *path, const eval_desc *d, const stx_metrics_result *r,
                     const cli_resolved *res) {
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) return cli_fail("out of memory");
    snprintf(tmp, n, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        free(tmp);
        return cli_fail("--json %s: cannot create the file", path);
    }
    write_json(f, d, r, res);
    bool ok = !ferror(f);
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        free(tmp);
        return cli_fail("--json %s: cannot write the file", path);
    }
    free(tmp);
    return 0;
}

static void print_table(const stx_metrics_result *r, const cli_resolved *res,
                        const stx_metrics_options *o) {
    if (r->targets)
        for (int64_t n = 0; n < r->N; n++) {
            const char *nm = cli_class_name(res, r->targets[n]);
            printf("sample %lld: class %lld%s%s, %s %.6g\n", (long long)n, (long long)r->targets[n],
                   nm ? " " : "", nm ? nm : "",
                   o->score == STX_SCORE_PROB ? "probability" : "logit", r->scores[n]);
        }
    printf("%-18s %12s %8s\n", "metric", "value", "samples");
    for (int i = 0; i < r->n_metrics; i++) {
        const stx_metric_result *m = &r->metrics[i];
        char name[64];
        snprintf(name, sizeof name, "%s%s", m->name, m->curve_len ? " (auc)" : "");
        if (isfinite(m->value))
            printf("%-18s %12.6f %8lld\n", name, m->value, (long long)m->count);
        else
            printf("%-18s %12s %8lld\n", name, "n/a", (long long)m->count);
    }
    for (int i = 0; i < r->n_metrics; i++) {
        const stx_metric_result *m = &r->metrics[i];
        if (!m->curve_len || r->N != 1) continue;
        printf("%s curve (%lld points):", m->name, (long long)m->curve_len);
        int64_t step = m->curve_len > 11 ? (m->curve_len - 1) / 10 : 1;
        for (int64_t j = 0; j < m->curve_len; j += step)
            printf(" %.3f:%.4g", m->fractions[j], m->curves[j]);
        if ((m->curve_len - 1) % step)
            printf(" %.3f:%.4g", m->fractions[m->curve_len - 1], m->curves[m->curve_len - 1]);
        printf("\n");
    }
}

/* Loads a .npy (one-line error naming the flag). */
static int load_npy(stx_context *ctx, const char *flag, const char *path, stx_tensor **t) {
    if (stx_tensor_load_npy(ctx, path, t) != STX_OK)
        return cli_fail("%s: %s", flag, stx_context_last_error(ctx));
    return 0;
}

int cmd_evaluate(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--dataset") == 0) return cmd_evaluate_dataset(argc, argv);
    const char *model = NULL, *input = NULL, *sal = NULL, *mask_path = NULL, *events_path = NULL;
    const char *json = NULL, *target = "top", *bname = "zero", *ibname = NULL;
    const char *bfile = NULL, *ibfile = NULL;
    stx_metrics_options o = stx_metrics_options_default();
    long threads = 0, frame = -1, lv;
    int rc = 0, b = STX_BASELINE_ZERO, ib = -1;
    cli_facts facts = {0};
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ff = cli_fact_flag(argc, argv, &i, &facts);
        if (ff < 0) {
            rc = 1;
        } else if (ff > 0) {
            continue;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            evaluate_usage(stdout);
            cli_facts_free(&facts);
            return 0;
        } else if (a[0] == '-' && a[1] == '-' && !v) {
            rc = cli_fail("%s needs a value (try 'stx evaluate --help')", a);
        } else if (strcmp(a, "--saliency") == 0) {
            sal = argv[++i];
        } else if (strcmp(a, "--metric") == 0 || strcmp(a, "--metrics") == 0) {
            o.metrics = argv[++i];
        } else if (strcmp(a, "--mask") == 0) {
            mask_path = argv[++i];
        } else if (strcmp(a, "--events") == 0) {
            events_path = argv[++i];
        } else if (strcmp(a, "--json") == 0) {
            json = argv[++i];
        } else if (strcmp(a, "--target") == 0) {
            target = argv[++i];
        } else if (strcmp(a, "--frame") == 0) {
            if (!cli_parse_int(argv[++i], 0, 1L << 40, &frame))
                rc = cli_fail("--frame needs a non-negative frame index, not '%s'", argv[i]);
        } else if (strcmp(a, "--score") == 0) {
            if (strcmp(argv[++i], "logit") && strcmp(argv[i], "prob"))
                rc = cli_fail("--score must be logit or prob, not '%s'", argv[i]);
            else
                o.score = strcmp(argv[i], "prob") == 0 ? STX_SCORE_PROB : STX_SCORE_LOGIT;
        } else if (strcmp(a, "--steps") == 0) {
            if (!cli_parse_int(argv[++i], 1, 1000000, &lv))
                rc = cli_fail("--steps needs an integer in [1, 1000000], not '%s'", argv[i]);
            o.steps = (int)lv;
        } else if (strcmp(a, "--step-voxels") == 0) {
            if (!cli_parse_int(argv[++i], 1, 1L << 40, &lv))
                rc = cli_fail("--step-voxels needs a positive integer, not '%s'", argv[i]);
            o.step_voxels = lv;
        } else if (strcmp(a, "--curve") == 0) {
            const char *c = argv[++i];
            if (strcmp(c, "torchcam") == 0)
                o.curve = STX_CURVE_TORCHCAM;
            else if (strcmp(c, "rise") == 0)
                o.curve = STX_CURVE_RISE;
            else if (strcmp(c, "linspace") == 0)
                o.curve = STX_CURVE_LINSPACE;
            else
                rc = cli_fail("--curve must be torchcam, rise or linspace, not '%s'", c);
        } else if (strcmp(a, "--baseline") == 0) {
            bname = argv[++i];
            parse_baseline(bname, &b, &bfile);
        } else if (strcmp(a, "--insertion-baseline") == 0) {
            ibname = argv[++i];
            parse_baseline(ibname, &ib, &ibfile);
        } else if (strcmp(a, "--batch") == 0) {
            if (!cli_parse_int(argv[++i], 1, 4096, &lv))
                rc = cli_fail("--batch needs an integer in [1, 4096], not '%s'", argv[i]);
            o.batch = (int)lv;
        } else if (strcmp(a, "--tolerance") == 0 || strcmp(a, "--iou-threshold") == 0 ||
                   strcmp(a, "--iou-top") == 0) {
            char *end;
            double d = strtod(argv[++i], &end);
            if (end == argv[i] || *end || !isfinite(d) || d < 0)
                rc = cli_fail("%s needs a non-negative number, not '%s'", a, argv[i]);
            else if (a[2] == 't')
                o.tolerance = d;
            else if (strcmp(a, "--iou-top") == 0)
                o.iou_top = d;
            else
                o.iou_threshold = d;
        } else if (strcmp(a, "--order") == 0) {
            if (strcmp(argv[++i], "morf") && strcmp(argv[i], "lerf"))
                rc = cli_fail("--order must be morf or lerf, not '%s'", argv[i]);
            o.least_first = strcmp(argv[i], "lerf") == 0;
        } else if (strcmp(a, "--cells") == 0) {
            const char *p = argv[++i];
            char *end;
            for (int k = 0; k < 3 && !rc; k++) {
                long c = strtol(p, &end, 10);
                if (end == p || c < 0 || c > 1 << 20 || (k < 2 && *end != ',' && *end != 'x') ||
                    (k == 2 && *end))
                    rc = cli_fail("--cells needs T,H,W cell counts >= 0 (0: voxels), not '%s'",
                                  argv[i]);
                o.cells[k] = (int)c;
                p = end + 1;
            }
        } else if (strcmp(a, "--top-k") == 0) {
            if (!cli_parse_int(argv[++i], 1, 1L << 40, &lv))
                rc = cli_fail("--top-k needs a positive integer, not '%s'", argv[i]);
            o.top_k = lv;
        } else if (strcmp(a, "--seed") == 0) {
            char *end;
            unsigned long long s = strtoull(argv[++i], &end, 10);
            if (end == argv[i] || *end) rc = cli_fail("--seed needs an integer, not '%s'", argv[i]);
            o.seed = s;
        } else if (strcmp(a, "--threads") == 0) {
            if (!cli_parse_int(argv[++i], 0, 4096, &threads))
                rc = cli_fail("--threads needs an integer in [0, 4096], not '%s'", argv[i]);
        } else if (a[0] == '-' && a[1]) {
            rc = cli_fail("unknown option '%s' (try 'stx evaluate --help')", a);
        } else if (!model) {
            model = a;
        } else if (!input) {
            input = a;
        } else {
            rc = cli_fail("unexpected argument '%s'", a);
        }
    }
    if (!rc && (!model || !input))
        rc = cli_fail("usage: stx evaluate MODEL INPUT.npy --saliency S.npy [--metric a,b,...] "
                      "(try --help)");
    if (!rc && !sal) rc = cli_fail("--saliency S.npy is required (the maps to evaluate)");
    if (rc) {
        cli_facts_free(&facts);
        return rc;
    }
    o.baseline = (stx_baseline)b;
    o.insertion_baseline = ib;
    o.layout = facts.layout;
    o.num_threads = (int)threads;
    int tty = isatty(2);
    o.progress = on_progress;
    o.progress_user = &tty;

    stx_context *ctx = NULL;
    stx_model *m = NULL;
    stx_tensor *x = NULL, *map = NULL, *mask = NULL, *events = NULL, *bclip = NULL;
    stx_metrics_result *r = NULL;
    stx_evaluator *ev = NULL;
    int64_t *targets = NULL, *frames = NULL;
    cli_resolved res;
    if ((rc = cli_context((int)threads, &ctx))) goto done;
    if ((rc = cli_load_model(ctx, model, &m))) goto done;
    if ((rc = cli_resolve_facts(m, &facts, true, &res))) goto done;
    o.output = res.output_name;
    if ((rc = cli_load_input(ctx, input, &res, &x))) goto done;
    if ((rc = load_npy(ctx, "--saliency", sal, &map))) goto done;
    if (mask_path && (rc = load_npy(ctx, "--mask", mask_path, &mask))) goto done;
    if (events_path && (rc = load_npy(ctx, "--events", events_path, &events))) goto done;
    if (bfile && ibfile && strcmp(bfile, ibfile) != 0) {
        rc = cli_fail("--baseline %s and --insertion-baseline %s: at most one baseline clip", bfile,
                      ibfile);
        goto done;
    }
    if ((bfile || ibfile) && (rc = load_npy(ctx, "--baseline", bfile ? bfile : ibfile, &bclip)))
        goto done;
    o.baseline_clip = bclip;
    int64_t N = stx_tensor_rank(x) > 0 ? stx_tensor_shape(x)[0] : 0;
    if (stx_tensor_rank(map) == 3 && N == 1) { /* one clip's (T, H, W) */
        const int64_t *d = stx_tensor_shape(map);
        int64_t d4[4] = {1, d[0], d[1], d[2]};
        stx_tensor_reshape(map, d4, 4);
    }
    targets = malloc(sizeof(int64_t) * (size_t)(N > 0 ? N : 1));
    frames = malloc(sizeof(int64_t) * (size_t)(N > 0 ? N : 1));
    if (!targets || !frames) {
        rc = cli_fail("out of memory");
        goto done;
    }
    if ((rc = cli_parse_targets(target, &res, targets, N))) goto done;
    for (int64_t n = 0; n < N; n++) frames[n] = frame;
    if (stx_evaluator_create(ctx, m, &o, stx_tensor_shape(x), stx_tensor_rank(x), &ev) != STX_OK) {
        const char *msg = stx_context_last_error(ctx);
        rc = cli_fail("%s: %s", strncmp(msg, "unknown metric", 14) ? model : "--metric", msg);
        goto done;
    }
    double t0 = cli_now_ms();
    if (stx_evaluator_run(ev, x, map, mask, events, targets, frames, &r) != STX_OK) {
        const char *msg = stx_evaluator_last_error(ev), *file = model;
        if (strncmp(msg, "map", 3) == 0) file = sal;
        if (strncmp(msg, "mask", 4) == 0) file = mask_path;
        if (strncmp(msg, "events", 6) == 0) file = events_path;
        if (strstr(msg, "needs a ground-truth mask")) file = "--mask";
        if (strstr(msg, "needs the decisive frames")) file = "--events";
        rc = cli_fail("%s: %s", file ? file : model, msg);
        goto done;
    }
    double t1 = cli_now_ms();
    print_table(r, &res, &o);
    printf("forwards: %lld, time_ms: %.1f\n", (long long)r->forwards, t1 - t0);
    if (json) {
        eval_desc d = {model,       input, sal,   mask_path,
                       events_path, &o,    bname, ibname ? ibname : bname};
        if ((rc = save_json(json, &d, r, &res))) goto done;
        printf("json: %s\n", json);
    }
done:
    stx_metrics_result_free(r);
    stx_evaluator_free(ev);
    free(targets);
    free(frames);
    stx_tensor_free(x);
    stx_tensor_free(map);
    stx_tensor_free(mask);
    stx_tensor_free(events);
    stx_tensor_free(bclip);
    stx_model_free(m);
    stx_context_free(ctx);
    cli_facts_free(&facts);
    return rc;
}
