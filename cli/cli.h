/* cli.h: shared helpers of the `stx` command-line tool (uses only the public header). */
#ifndef STX_CLI_H
#define STX_CLI_H

#include "stx.h"

#include <stdbool.h>
#include <stdio.h>

/* Prints "stx: <message>" to stderr; returns 1 (the exit code for errors). */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parses "1,3,16,112,112" into dims; false on a malformed list. */
bool cli_parse_shape(const char *s, int64_t *dims, int *rank);
/* Parses a positive integer option value; false on junk. */
bool cli_parse_int(const char *s, long lo, long hi, long *out);
/* Creates the context honouring --threads (0: default). */
int cli_context(int threads, stx_context **ctx);
/* ---- model facts: metadata, overridden by the flags every command shares ---------------- */

/* The model-fact flags as given on the command line (unset: NULL / 0). */
typedef struct cli_facts {
    const char *layout;    /* --layout */
    int has_mean, has_std; /* --mean, --std */
    float mean[3], std[3];
    char **classes; /* --classes (owned: cli_facts_free) */
    int n_classes;
    int height, width;       /* --frame-size */
    const char *output_name; /* --output-name */
} cli_facts;

/* The flags' lines for a command's --help. */
#define CLI_FACT_FLAGS_HELP                                                                        \
    "  model facts (override the model's stx.* metadata):\n"                                       \
    "  --layout L       input layout for uint8 frames: NCTHW, NTCHW, NCHW (frames as the batch)\n" \
    "                   or NCT\n"                                                                  \
    "  --mean a,b,c     per-channel mean of pixels scaled to [0,1] (uint8 inputs)\n"               \
    "  --std a,b,c      per-channel standard deviation (uint8 inputs)\n"                           \
    "  --frame-size HxW resize uint8 frames to HxW (bilinear) before normalising\n"                \
    "  --classes a,b,c  class names in index order, or @FILE with one name per line\n"             \
    "  --output-name N  the graph output to use (default: metadata stx.output, else output 0)\n"

/* Parses the fact flag at argv[*i] (and its value, advancing *i). Returns 1 when it consumed a
 * flag, 0 when argv[*i] is not a fact flag, -1 on a bad value (after a one-line error). */
int cli_fact_flag(int argc, char **argv, int *i, cli_facts *f);
void cli_facts_free(cli_facts *f);

/* The facts a command uses: the flags over the model's metadata over built-in defaults. */
typedef struct cli_resolved {
    stx_model_facts meta; /* the model's own facts (malformed keys absent) */
    stx_preprocess pre;   /* how uint8 frames become the input */
    bool normalize_set;   /* mean/std came from the metadata or a flag */
    int n_classes;
    const char *const *class_names;
    int output;              /* graph output printed, saved and seeded */
    const char *output_name; /* its name */
} cli_resolved;

/* Merges the model's facts with the flags. A malformed metadata key that no flag overrides is an
 * error (one line: the library's message) when strict, else a "warning:" line on stderr. */
int cli_resolve_facts(const stx_model *m, const cli_facts *f, bool strict, cli_resolved *r);
/* Class index of a name (-1: unknown), and a class's name (NULL: none known). */
int cli_class_index(const cli_resolved *r, const char *name);
const char *cli_class_name(const cli_resolved *r, int64_t k);
/* Parses --target: "top", or one or n comma-separated entries, each "top", a class index or a
 * class name, into n targets (-1 = top). Returns 0, or 1 after a one-line error. */
int cli_parse_targets(const char *s, const cli_resolved *r, int64_t *t, int64_t n);

/* Loads a .npy input: float32 (or float64 for float64 models) is used as is; uint8 is taken as
 * video frames (T,H,W,C) or (N,T,H,W,C) and preprocessed with r->pre. One-line errors that name
 * the file. */
int cli_load_input(stx_context *ctx, const char *path, const cli_resolved *r, stx_tensor **x);
/* Loads a model, printing a one-line error on failure. */
int cli_load_model(stx_context *ctx, const char *path, stx_model **m);
double cli_now_ms(void);

int cmd_info(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_grad(int argc, char **argv);
int cmd_explain(int argc, char **argv);
int cmd_phase(int argc, char **argv);
/* cmd_evaluate.c; its --dataset mode: evaluate_dataset.c */
int cmd_evaluate(int argc, char **argv);
int cmd_evaluate_dataset(int argc, char **argv);

#endif
