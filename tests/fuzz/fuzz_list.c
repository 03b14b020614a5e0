/* fuzz_list.c: the clip list of `stx evaluate --dataset` (cli/dataset_list.c), parsed from
 * memory as the CLI parses the file it read. An accepted list must be self-consistent: at least
 * one entry, every clip path non-empty, line numbers increasing, and every string readable
 * (ASan checks the reads). The first input byte picks the list's folder ("", "d" or "/d"). */
#include "fuzz_common.h"

#include "dataset_list.h"

#include <stdarg.h>

/* The CLI's one-line error printer, quiet here (the harness links only the list's file). */
int cli_fail(const char *fmt, ...) {
    (void)fmt;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const dirs[] = {"", "d", "/d"};
    if (size == 0) return 0;
    const char *dir = dirs[data[0] % 3];
    clip_entry *c = NULL;
    int n = -1;
    if (dataset_list_parse((const char *)data + 1, size - 1, dir, "fuzz.csv", &c, &n) == 0) {
        if (!c || n < 1) abort();
        int prev = 0;
        for (int i = 0; i < n; i++) {
            if (!c[i].clip || !c[i].clip[0] || c[i].line <= prev) abort();
            prev = c[i].line;
            size_t sum = strlen(c[i].clip);
            if (c[i].mask) sum += strlen(c[i].mask);
            if (c[i].events) sum += strlen(c[i].events);
            if (c[i].label) sum += strlen(c[i].label);
            if (sum > 4 * size + 16) abort();
        }
        dataset_list_free(c, n);
    } else if (c != NULL) {
        abort(); /* a failure hands back nothing */
    }
    return 0;
}
