/* cmd_info.c: `stx info MODEL [--input-shape N,C,T,H,W] [model-fact flags]`. */
#include "cli.h"

#include <string.h>

static void shape_str(const int64_t *d, int r, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < r && k < n; i++) {
        if (d[i] >= 0)
            k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)d[i]);
        else
            k += (size_t)snprintf(buf + k, n - k, i ? ",?" : "?");
    }
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* Prints the class names wrapped at 100 columns under a 16-column label. */
static void print_classes(const cli_resolved *r, const char *src) {
    char label[32];
    snprintf(label, sizeof label, "classes (%d):", r->n_classes);
    printf("  %-16s", label);
    int col = 18;
    for (int c = 0; c < r->n_classes; c++) {
        int len = (int)strlen(r->class_names[c]) + (c + 1 < r->n_classes ? 2 : 0);
        if (c > 0 && col + len > 100) {
            printf("\n  %-16s", "");
            col = 18;
        }
        printf("%s%s", r->class_names[c], c + 1 < r->n_classes ? ", " : "");
        col += len;
    }
    printf("%s\n", src);
}

/* The model's facts (stx.* metadata) as the other commands will use them. */
static void print_facts(const stx_model *m, const cli_facts *f, const cli_resolved *r) {
    const stx_model_facts *mf = &r->meta;
    bool any = mf->name || mf->task || mf->layout || f->layout || r->n_classes ||
               r->normalize_set || mf->clip_length || r->pre.height || mf->target_layer ||
               mf->token_grid[0] || mf->output || f->output_name;
    if (!any) {
        printf("facts:      none (no stx.* metadata)\n");
        return;
    }
    printf("facts:\n");
    if (mf->name) printf("  %-16s%s\n", "name:", mf->name);
    if (mf->task) printf("  %-16s%s\n", "task:", mf->task);
    if (f->layout || mf->layout)
        printf("  %-16s%s%s\n", "layout:", r->pre.layout, f->layout ? " (--layout)" : "");
    if (r->n_classes) print_classes(r, f->n_classes ? " (--classes)" : "");
    if (r->normalize_set) {
        printf("  %-16s%g,%g,%g%s\n", "mean:", (double)r->pre.mean[0], (double)r->pre.mean[1],
               (double)r->pre.mean[2], f->has_mean ? " (--mean)" : "");
        printf("  %-16s%g,%g,%g%s\n", "std:", (double)r->pre.std[0], (double)r->pre.std[1],
               (double)r->pre.std[2], f->has_std ? " (--std)" : "");
    }
    if (stx_model_metadata(m, "stx.clip_length") && !mf->clip_length)
        printf("  %-16s%s\n", "clip length:", "any");
    else if (mf->clip_length)
        printf("  %-16s%d frames\n", "clip length:", mf->clip_length);
    if (r->pre.height)
        printf("  %-16s%dx%d%s\n", "frame size:", r->pre.height, r->pre.width,
               f->height ? " (--frame-size)" : "");
    if (mf->target_layer) printf("  %-16s%s\n", "target layer:", mf->target_layer);
    if (mf->token_grid[0])
        printf("  %-16s%dx%dx%d (TxHxW)\n", "token grid:", mf->token_grid[0], mf->token_grid[1],
               mf->token_grid[2]);
    if (mf->output || f->output_name)
        printf("  %-16s%s (output %d)%s\n", "output:", r->output_name, r->output,
               f->output_name ? " (--output-name)" : "");
}

/* An input shape from the facts when the model's own is not fully known: batch 1, the layout's
 * axes with 3 channels, clip length frames and the frame size. */
static bool facts_shape(const stx_model *m, const cli_resolved *r, int64_t *shape, int *rank) {
    const char *lay = r->pre.layout;
    int64_t t = r->meta.clip_length, h = r->pre.height, w = r->pre.width;
    int in_rank = -1;
    if (stx_model_num_inputs(m) < 1 || stx_model_input_info(m, 0, NULL, NULL, &in_rank) != STX_OK)
        return false;
    if (h <= 0 || w <= 0 || (size_t)in_rank != strlen(lay)) return false;
    if (strcmp(lay, "NCHW") == 0) {
        int64_t d[4] = {1, 3, h, w};
        memcpy(shape, d, sizeof d);
    } else if (t > 0 && strcmp(lay, "NCTHW") == 0) {
        int64_t d[5] = {1, 3, t, h, w};
        memcpy(shape, d, sizeof d);
    } else if (t > 0 && strcmp(lay, "NTCHW") == 0) {
        int64_t d[5] = {1, t, 3, h, w};
        memcpy(shape, d, sizeof d);
    } else {
        return false;
    }
    *rank = in_rank;
    return true;
}

int cmd_info(int argc, char **argv) {
    const char *model = NULL;
    int64_t shape[STX_MAX_RANK];
    int rank = -1, rc = 0;
    cli_facts facts = {0};
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        int ff = cli_fact_flag(argc, argv, &i, &facts);
        if (ff < 0) {
            rc = 1;
        } else if (ff > 0) {
            continue;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf(
                "usage: stx info MODEL [--input-shape N,C,T,H,W] [--layout L] [--mean a,b,c]\n"
                "                [--std a,b,c] [--frame-size HxW] [--classes a,b,c|@FILE]\n"
                "                [--output-name NAME]\n"
                "  Prints inputs, outputs, opset, parameters, the model's facts from its stx.*\n"
                "  metadata (task, layout, classes, normalisation, clip length, frame size,\n"
                "  target layer, token grid, output; a malformed key gives a warning), and for\n"
                "  a concrete input shape (the model's own when fully known, with a dynamic\n"
                "  batch taken as 1) the multiply-adds and the module scopes with their output\n"
                "  tensors and shapes. The flags show the facts as run and grad would use them.\n"
                "%s",
                CLI_FACT_FLAGS_HELP);
            cli_facts_free(&facts);
            return 0;
        } else if (strcmp(a, "--input-shape") == 0) {
            if (++i >= argc || !cli_parse_shape(argv[i], shape, &rank))
                rc = cli_fail("--input-shape needs a list like 1,3,16,112,112");
        } else if (a[0] == '-' && a[1]) {
            rc = cli_fail("info: unknown option '%s' (try 'stx info --help')", a);
        } else if (!model) {
            model = a;
        } else {
            rc = cli_fail("info: unexpected argument '%s'", a);
        }
    }
    if (!rc && !model) rc = cli_fail("usage: stx info MODEL [--input-shape N,C,T,H,W]");
    if (rc) {
        cli_facts_free(&facts);
        return rc;
    }
    stx_context *ctx = NULL;
    stx_model *m = NULL;
    stx_session *s = NULL;
    cli_resolved res;
    if ((rc = cli_context(0, &ctx))) goto done;
    if ((rc = cli_load_model(ctx, model, &m))) goto done;
    if ((rc = cli_resolve_facts(m, &facts, false, &res))) goto done;
    char buf[256];
    printf("model:      %s\n", model);
    printf("producer:   %s\n", stx_model_producer(m));
    printf("opset:      %d\n", stx_model_opset(m));
    printf("nodes:      %d\n", stx_model_num_nodes(m));
    printf("parameters: %lld\n", (long long)stx_model_num_parameters(m));
    for (int i = 0; i < stx_model_num_inputs(m); i++) {
        stx_dtype dt;
        int64_t d[STX_MAX_RANK];
        int r;
        stx_model_input_info(m, i, &dt, d, &r);
        shape_str(d, r, buf, sizeof buf);
        printf("input:      %s %s %s\n", stx_model_input_name(m, i), stx_dtype_name(dt), buf);
        if (i == 0 && rank < 0) {
            bool known = r > 0;
            for (int k = 1; k < r; k++) known &= d[k] > 0;
            if (known) {
                rank = r;
                for (int k = 0; k < r; k++) shape[k] = d[k] > 0 ? d[k] : 1;
            }
        }
    }
    for (int i = 0; i < stx_model_num_outputs(m); i++) {
        stx_dtype dt;
        int64_t d[STX_MAX_RANK];
        int r;
        stx_model_output_info(m, i, &dt, d, &r);
        shape_str(d, r, buf, sizeof buf);
        printf("output:     %s %s %s\n", stx_model_output_name(m, i), stx_dtype_name(dt), buf);
    }
    print_facts(m, &facts, &res);
    bool derived = rank < 0 && facts_shape(m, &res, shape, &rank);
    if (rank > 0) {
        if (stx_session_create(m, NULL, shape, rank, &s) != STX_OK) {
            if (derived) { /* a guess from the metadata: say so, but the model is fine */
                shape_str(shape, rank, buf, sizeof buf);
                printf("(no MACs: the input shape %s from the facts does not fit: %s)\n", buf,
                       stx_context_last_error(ctx));
                rank = -1;
                goto modules;
            }
            rc = cli_fail("%s", stx_context_last_error(ctx));
            goto done;
        }
        shape_str(shape, rank, buf, sizeof buf);
        int64_t macs = stx_session_macs(s);
        printf("for input:  %s%s\n", buf,
               derived ? " (from the facts: layout, clip length, frame size)" : "");
        printf("MACs:       %lld (%.3f GMAC)\n", (long long)macs, (double)macs * 1e-9);
    } else {
        printf("(give --input-shape for MACs and module shapes)\n");
    }
modules:;
    int nm = stx_model_num_modules(m);
    if (nm > 0) {
        printf("\nmodules (%d):\n", nm);
        printf("  %-36s %-40s %s\n", "module", "output tensor", "shape");
        for (int i = 0; i < nm; i++) {
            const char *name = stx_model_module_name(m, i), *t = stx_model_module_output(m, i);
            int64_t d[STX_MAX_RANK];
            int r;
            buf[0] = '\0';
            if (s && stx_session_tensor_shape(s, t, d, &r) == STX_OK)
                shape_str(d, r, buf, sizeof buf);
            printf("  %-36s %-40s %s\n", name, t, buf);
        }
    }
done:
    stx_session_free(s);
    stx_model_free(m);
    stx_context_free(ctx);
    cli_facts_free(&facts);
    return rc;
}
