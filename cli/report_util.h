/* report_util.h: small helpers shared by the CLI's report writers (video_job.c, phase_report.c):
 * paths, a growing string for JSON and HTML, atomic whole-file writes, a nearest-neighbour
 * downscale. */
#ifndef STX_CLI_REPORT_UTIL_H
#define STX_CLI_REPORT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "a/b" (malloc'ed; NULL when out of memory). */
char *path_join(const char *a, const char *b);

/* A growing string for JSON and HTML; start from {0}, free(b.s) at the end. oom is set (and
 * later appends are ignored) when an allocation fails. */
typedef struct sbuf {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a JSON string literal ("null" for NULL); <, > and & as \u escapes, so it is also safe
 * inside an HTML <script>. */
void sb_str(sbuf *b, const char *s);
/* HTML text: escapes <, >, &, quotes. */
void sb_html(sbuf *b, const char *s);

/* Writes a whole file atomically (temporary "<path>.tmp" beside it, then rename; the temporary is
 * removed on failure). Returns 0, or 1 after a one-line error naming path. */
int write_file(const char *path, const char *data, size_t n);

/* Nearest-neighbour downscale of an (H, W, 3) image to at most max_w wide (a malloc'ed copy; NULL
 * when out of memory): output pixel (y, x) takes source ((2y + 1) H / 2h, (2x + 1) W / 2w). */
uint8_t *downscale(const uint8_t *src, int H, int W, int max_w, int *oh, int *ow);

#endif
