/* dataset_list.h: the clip list of `stx evaluate MODEL --dataset LIST`.
 *
 * A CSV text, one clip per line: `clip,mask,events,label`. A first line starting with "clip" (the
 * header) and lines starting with '#' are skipped, as are empty lines; fields after clip may be
 * empty. Relative paths are relative to the list's folder. Parsed from memory, so that the fuzz
 * harness (tests/fuzz/fuzz_list.c) drives exactly what the CLI runs. */
#ifndef STX_CLI_DATASET_LIST_H
#define STX_CLI_DATASET_LIST_H

#include <stddef.h>

typedef struct clip_entry {
    char *clip, *mask, *events, *label; /* malloc'ed; mask/events/label NULL when empty */
    int line;                           /* line number in the list (1-based) */
} clip_entry;

/* Parses len bytes of list text. dir: the list's folder ("" for none); name: the list's path as
 * named in errors. Returns 0 with *out (n_out entries, at least 1) or 1 after a one-line error
 * (cli_fail) naming the list and line. */
int dataset_list_parse(const char *text, size_t len, const char *dir, const char *name,
                       clip_entry **out, int *n_out);
/* Reads and parses the file at path. */
int dataset_list_read(const char *path, clip_entry **out, int *n_out);
void dataset_list_free(clip_entry *c, int n);

#endif
