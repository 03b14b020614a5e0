/* main.c: `stx` command dispatcher and shared CLI helpers. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

bool cli_parse_int(const char *s, long lo, long hi, long *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_parse_shape(const char *s, int64_t *dims, int *rank) {
    int r = 0;
    const char *p = s;
    while (*p) {
        if (r >= STX_MAX_RANK) return false;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v <= 0) return false;
        dims[r++] = v;
        p = end;
        if (*p == ',' || *p == 'x')
            p++;
        else if (*p)
            return false;
    }
    *rank = r;
    return r > 0;
}

int cli_context(int threads, stx_context **ctx) {
    stx_context_options o = stx_context_options_default();
    o.num_threads = threads;
    if (stx_context_create(&o, ctx) != STX_OK) return cli_fail("cannot create a context");
    return 0;
}

int cli_load_model(stx_context *ctx, const char *path, stx_model **m) {
    if (stx_model_load(ctx, path, NULL, m) != STX_OK)
        return cli_fail("%s", stx_context_last_error(ctx));
    return 0;
}

/* ---- model-fact flags -------------------------------------------------------------------- */

/* Exactly 3 comma-separated finite numbers, each through double then float (as the library
 * parses the metadata, and as numpy's np.float32(float(s)) does). */
static bool parse_floats3(const char *s, float out[3]) {
    const char *p = s;
    for (int i = 0; i < 3; i++) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno == ERANGE || !isfinite(v) || fabs(v) > 3.0e38) return false;
        out[i] = (float)v;
        p = end;
        while (*p == ' ') p++;
        if (i < 2 && *p++ != ',') return false;
    }
    return *p == '\0';
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* Appends the name s[0..len) (spaces, tabs and CRs around it dropped; empty names skipped when
 * skip_empty) to *names. Returns 0, or 1 after a one-line error. */
static int add_name(const char *flag, const char *s, size_t len, bool skip_empty, char ***names,
                    int *n) {
    while (len > 0 && (*s == ' ' || *s == '\t')) s++, len--;
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r')) len--;
    if (len == 0) {
        if (skip_empty) return 0;
        return cli_fail("--classes '%s': class name %d is empty", flag, *n + 1);
    }
    for (int i = 0; i < *n; i++)
        if (strlen((*names)[i]) == len && memcmp((*names)[i], s, len) == 0)
            return cli_fail("--classes '%s': class name '%.*s' appears twice (classes %d and %d)",
                            flag, (int)len, s, i, *n);
    char **grown = realloc(*names, sizeof *grown * (size_t)(*n + 1));
    if (!grown) return cli_fail("out of memory");
    *names = grown;
    if (!(grown[*n] = malloc(len + 1))) return cli_fail("out of memory");
    memcpy(grown[*n], s, len);
    grown[*n][len] = '\0';
    (*n)++;
    return 0;
}

/* --classes a,b,c or --classes @FILE (one name per line, blank lines skipped). */
static int parse_classes(const char *v, cli_facts *f) {
    char **names = NULL;
    int n = 0, rc = 0;
    if (v[0] == '@') {
        FILE *fp = fopen(v + 1, "rb");
        if (!fp) return cli_fail("--classes %s: cannot open %s: %s", v, v + 1, strerror(errno));
        char line[4096];
        while (!rc && fgets(line, sizeof line, fp)) {
            size_t len = strlen(line);
            if (len == sizeof line - 1 && line[len - 1] != '\n')
                rc = cli_fail("--classes %s: a line is longer than %zu bytes", v, sizeof line - 2);
            else
                rc = add_name(v, line, len && line[len - 1] == '\n' ? len - 1 : len, true, &names,
                              &n);
        }
        if (!rc && ferror(fp)) rc = cli_fail("--classes %s: cannot read %s", v, v + 1);
        fclose(fp);
        if (!rc && n == 0) rc = cli_fail("--classes %s: %s holds no class names", v, v + 1);
    } else {
        const char *p = v;
        for (;;) {
            const char *end = strchr(p, ',');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            if ((rc = add_name(v, p, len, false, &names, &n)) || !end) break;
            p = end + 1;
        }
    }
    if (rc) {
        free_names(names, n);
        return rc;
    }
    free_names(f->classes, f->n_classes);
    f->classes = names;
    f->n_classes = n;
    return 0;
}

int cli_fact_flag(int argc, char **argv, int *i, cli_facts *f) {
    static const char *const flags[] = {"--layout",     "--mean",        "--std", "--classes",
                                        "--frame-size", "--output-name", NULL};
    const char *a = argv[*i];
    int which = -1;
    for (int k = 0; flags[k]; k++)
        if (strcmp(a, flags[k]) == 0) which = k;
    if (which < 0) return 0;
    if (*i + 1 >= argc) {
        cli_fail("%s needs a value (try --help)", a);
        return -1;
    }
    const char *v = argv[++*i];
    switch (which) {
    case 0:
        if (strcmp(v, "NCTHW") && strcmp(v, "NTCHW") && strcmp(v, "NCHW") && strcmp(v, "NCT")) {
            cli_fail("--layout '%s': expected NCTHW, NTCHW, NCHW or NCT", v);
            return -1;
        }
        f->layout = v;
        break;
    case 1:
    case 2: {
        float t[3];
        if (!parse_floats3(v, t)) {
            cli_fail("%s '%s': expected 3 comma-separated numbers, e.g. 0.45,0.45,0.45", a, v);
            return -1;
        }
        if (which == 2 && !(t[0] > 0 && t[1] > 0 && t[2] > 0)) {
            cli_fail("--std '%s': every standard deviation must be > 0", v);
            return -1;
        }
        memcpy(which == 1 ? f->mean : f->std, t, sizeof t);
        *(which == 1 ? &f->has_mean : &f->has_std) = 1;
        break;
    }
    case 3:
        if (parse_classes(v, f)) return -1;
        break;
    case 4: {
        long hw[2];
        char *x = strchr(v, 'x'), *end;
        bool ok = x && x > v && x[1] >= '0' && x[1] <= '9' && v[0] >= '0' && v[0] <= '9';
        if (ok) {
            hw[0] = strtol(v, &end, 10);
            ok = end == x;
            hw[1] = strtol(x + 1, &end, 10);
            ok = ok && *end == '\0' && hw[0] > 0 && hw[1] > 0 && hw[0] <= 65536 && hw[1] <= 65536;
        }
        if (!ok) {
            cli_fail("--frame-size '%s': expected HxW with positive integers, e.g. 112x112", v);
            return -1;
        }
        f->height = (int)hw[0];
        f->width = (int)hw[1];
        break;
    }
    default:
        if (!*v) {
            cli_fail("--output-name needs a graph output's name");
            return -1;
        }
        f->output_name = v;
    }
    return 1;
}

void cli_facts_free(cli_facts *f) {
    free_names(f->classes, f->n_classes);
    f->classes = NULL;
    f->n_classes = 0;
}

/* The flag that overrides a metadata key (NULL: none given). */
static const char *overriding_flag(const char *key, const cli_facts *f, const char **flag_name) {
    static const struct {
        const char *key, *flag;
    } map[] = {{"stx.layout", "--layout"},
               {"stx.mean", "--mean"},
               {"stx.std", "--std"},
               {"stx.classes", "--classes"},
               {"stx.frame_size", "--frame-size"},
               {"stx.output", "--output-name"}};
    bool given[] = {f->layout != NULL, f->has_mean,   f->has_std,
                    f->n_classes > 0,  f->height > 0, f->output_name != NULL};
    *flag_name = NULL;
    for (size_t k = 0; k < sizeof map / sizeof map[0]; k++)
        if (strcmp(key, map[k].key) == 0) {
            *flag_name = map[k].flag;
            return given[k] ? map[k].flag : NULL;
        }
    return NULL;
}

/* Whether the metadata holds key and it parsed. */
static bool meta_ok(const stx_model *m, const char *key) {
    if (!stx_model_metadata(m, key)) return false;
    const char *k;
    for (int i = 0; stx_model_facts_error(m, i, &k); i++)
        if (strcmp(k, key) == 0) return false;
    return true;
}

int cli_resolve_facts(const stx_model *m, const cli_facts *f, bool strict, cli_resolved *r) {
    memset(r, 0, sizeof *r);
    stx_model_facts_get(m, &r->meta); /* filled even when a key is malformed: checked below */
    const char *key, *msg;
    for (int i = 0; (msg = stx_model_facts_error(m, i, &key)); i++) {
        const char *flag_name, *by = overriding_flag(key, f, &flag_name);
        if (!strict)
            fprintf(stderr, "warning: %s%s%s%s\n", msg, by ? " (overridden by " : "", by ? by : "",
                    by ? ")" : "");
        else if (!by && flag_name)
            return cli_fail("%s (or override it with %s)", msg, flag_name);
        else if (!by)
            return cli_fail("%s", msg);
    }
    const stx_model_facts *mf = &r->meta;
    stx_preprocess *p = &r->pre;
    *p = stx_preprocess_default();
    if (f->layout)
        p->layout = f->layout;
    else if (mf->layout)
        p->layout = mf->layout;
    bool meta_mean = meta_ok(m, "stx.mean"), meta_std = meta_ok(m, "stx.std");
    if (f->has_mean || meta_mean) memcpy(p->mean, f->has_mean ? f->mean : mf->mean, sizeof p->mean);
    if (f->has_std || meta_std) memcpy(p->std, f->has_std ? f->std : mf->std, sizeof p->std);
    r->normalize_set = f->has_mean || f->has_std || meta_mean || meta_std;
    p->normalize = r->normalize_set;
    p->height = f->height ? f->height : mf->frame_height;
    p->width = f->height ? f->width : mf->frame_width;
    if (f->n_classes) {
        r->n_classes = f->n_classes;
        r->class_names = (const char *const *)f->classes;
    } else {
        r->n_classes = mf->num_classes;
        r->class_names = mf->class_names;
    }
    const char *want = f->output_name ? f->output_name : mf->output;
    r->output = 0;
    r->output_name = stx_model_output_name(m, 0);
    if (want) {
        int no = stx_model_num_outputs(m);
        r->output = -1;
        for (int i = 0; i < no; i++)
            if (strcmp(stx_model_output_name(m, i), want) == 0) r->output = i;
        if (r->output < 0) {
            char list[512];
            size_t k = 0;
            list[0] = '\0';
            for (int i = 0; i < no && k < sizeof list; i++)
                k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "",
                                      stx_model_output_name(m, i));
            return cli_fail("--output-name '%s': the model has no output of that name (outputs: "
                            "%s)",
                            want, list);
        }
        r->output_name = want;
    }
    return 0;
}

int cli_class_index(const cli_resolved *r, const char *name) {
    for (int i = 0; i < r->n_classes; i++)
        if (strcmp(r->class_names[i], name) == 0) return i;
    return -1;
}

const char *cli_class_name(const cli_resolved *r, int64_t k) {
    return k >= 0 && k < r->n_classes ? r->class_names[k] : NULL;
}

int cli_load_input(stx_context *ctx, const char *path, const cli_resolved *r, stx_tensor **x) {
    if (stx_tensor_load_npy(ctx, path, x) != STX_OK)
        return cli_fail("%s", stx_context_last_error(ctx));
    stx_dtype dt = stx_tensor_dtype(*x);
    if (dt == STX_DTYPE_FLOAT || dt == STX_DTYPE_DOUBLE) return 0;
    int rc;
    if (dt == STX_DTYPE_UINT8) {
        stx_tensor *y = NULL;
        rc = stx_frames_to_input(ctx, *x, &r->pre, &y) == STX_OK
                 ? 0
                 : cli_fail("%s: %s", path, stx_context_last_error(ctx));
        stx_tensor_free(*x);
        *x = y;
        return rc;
    }
    rc = cli_fail("%s: input must be float32 (float64 for a float64 model) or uint8 video frames, "
                  "got %s",
                  path, stx_dtype_name(dt));
    stx_tensor_free(*x);
    *x = NULL;
    return rc;
}

double cli_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void usage(FILE *f) {
    fprintf(f,
            "stx %s: spatio-temporal explanations for video models\n\n"
            "usage: stx <command> [options]\n\n"
            "commands:\n"
            "  info MODEL [--input-shape N,C,T,H,W]   inputs, outputs, facts (stx.* metadata),\n"
            "                                         parameters, MACs, modules\n"
            "  run MODEL INPUT.npy [-o OUT.npy] [--topk K] [--threads N] [--repeat R]\n"
            "                                         forward pass, top-K classes (or the phase\n"
            "                                         of every frame for per-frame outputs)\n"
            "  grad MODEL INPUT.npy -o OUT.npy [--target K|NAME|top] [--wrt input|TENSOR|MODULE]\n"
            "                                         gradient of a class score\n"
            "  explain MODEL INPUT.npy --method NAME [--target K|top] [--layer L] [-o OUT.npy]\n"
            "                                         map (N,T,H,W): CAM, perturbation, gradient,\n"
            "                                         LRP and transformer methods\n"
            "  evaluate MODEL INPUT.npy --saliency S.npy --metric a,b [--mask GT.npy]\n"
            "                                         how faithful and well placed a map is\n"
            "                                         (docs/metrics.md); --dataset LIST: methods\n"
            "                                         x clips table (docs/benchmark.md)\n"
            "  phase FRAME_MODEL TEMPORAL_MODEL VIDEO --out-dir DIR\n"
            "                                         a whole procedure: phases per frame,\n"
            "                                         explained (docs/phase.md)\n"
            "  version                                print the version\n\n"
            "INPUT.npy is the model's float32 input, or uint8 video frames (T,H,W,3), (N,T,H,W,3)\n"
            "or grey (...,1), preprocessed as the model's metadata says. info, run, grad and\n"
            "explain also take:\n" CLI_FACT_FLAGS_HELP "\n"
            "Run 'stx <command> --help' for a command's options.\n",
            stx_version());
}

/* Parses "top", or one or n comma-separated entries, each "top", a class index or a class name,
 * into n targets (-1 = top). Returns 0, or 1 after a one-line error. */
int cli_parse_targets(const char *s, const cli_resolved *r, int64_t *t, int64_t n) {
    int64_t k = 0;
    const char *p = s;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char tok[256];
        if (len == 0 || len >= sizeof tok)
            return cli_fail("--target '%s': entry %lld is %s", s, (long long)k + 1,
                            len ? "too long" : "empty");
        memcpy(tok, p, len);
        tok[len] = '\0';
        if (k >= n)
            return cli_fail("--target '%s': more entries than the %lld samples", s, (long long)n);
        char *e;
        long v = strtol(tok, &e, 10);
        if (strcmp(tok, "top") == 0) {
            t[k] = -1;
        } else if (*e == '\0' && tok[0] >= '0' && tok[0] <= '9') {
            t[k] = v;
        } else if ((t[k] = cli_class_index(r, tok)) < 0) {
            if (r->n_classes == 0)
                return cli_fail("--target '%s': '%s' is not a class index, and the model names "
                                "no classes (give --classes)",
                                s, tok);
            char list[256];
            size_t q = 0;
            list[0] = '\0';
            for (int c = 0; c < r->n_classes && q < sizeof list; c++)
                q += (size_t)snprintf(list + q, sizeof list - q, "%s%s", c ? "," : "",
                                      r->class_names[c]);
            if (q >= sizeof list) strcpy(list + sizeof list - 4, "...");
            return cli_fail("--target '%s': unknown class '%s' (classes: %s)", s, tok, list);
        }
        k++;
        if (!end) break;
        p = end + 1;
    }
    if (k == 1)
        for (int64_t i = 1; i < n; i++) t[i] = t[0];
    else if (k != n)
        return cli_fail(
            "--target '%s': %lld entries for %lld samples (give one, or one per sample)", s,
            (long long)k, (long long)n);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "info") == 0) return cmd_info(argc - 1, argv + 1);
    if (strcmp(cmd, "run") == 0) return cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "grad") == 0) return cmd_grad(argc - 1, argv + 1);
    if (strcmp(cmd, "explain") == 0) return cmd_explain(argc - 1, argv + 1);
    if (strcmp(cmd, "phase") == 0) return cmd_phase(argc - 1, argv + 1);
    if (strcmp(cmd, "evaluate") == 0) return cmd_evaluate(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("stx %s\n", stx_version());
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    cli_fail("unknown command '%s' (try 'stx --help')", cmd);
    return 2;
}
