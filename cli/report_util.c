/* report_util.c: helpers shared by the CLI's report writers (see report_util.h). */
#include "report_util.h"
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *path_join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", a, b);
    return p;
}

void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = true;
            return;
        }
        if (b->s && (size_t)k < room) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

void sb_str(sbuf *b, const char *s) {
    if (!s) {
        sb_printf(b, "null");
        return;
    }
    sb_printf(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            sb_printf(b, "\\%c", *p);
        else if (*p < 0x20 || *p == '<' || *p == '>' || *p == '&')
            sb_printf(b, "\\u%04x", *p);
        else
            sb_printf(b, "%c", *p);
    }
    sb_printf(b, "\"");
}

void sb_html(sbuf *b, const char *s) {
    for (const char *p = s ? s : ""; *p; p++) {
        switch (*p) {
        case '<':
            sb_printf(b, "&lt;");
            break;
        case '>':
            sb_printf(b, "&gt;");
            break;
        case '&':
            sb_printf(b, "&amp;");
            break;
        case '"':
            sb_printf(b, "&quot;");
            break;
        default:
            sb_printf(b, "%c", *p);
        }
    }
}

int write_file(const char *path, const char *data, size_t n) {
    size_t len = strlen(path) + 16;
    char *tmp = malloc(len);
    if (!tmp) return cli_fail("out of memory");
    snprintf(tmp, len, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int rc = 0;
    if (!f || fwrite(data, 1, n, f) != n)
        rc = cli_fail("%s: cannot write: %s", path, strerror(errno));
    if (f && fclose(f) != 0 && !rc) rc = cli_fail("%s: cannot write: %s", path, strerror(errno));
    if (!rc && rename(tmp, path) != 0) rc = cli_fail("%s: cannot write: %s", path, strerror(errno));
    if (rc) unlink(tmp);
    free(tmp);
    return rc;
}

uint8_t *downscale(const uint8_t *src, int H, int W, int max_w, int *oh, int *ow) {
    int w = W > max_w ? max_w : W;
    int h = (int)((int64_t)H * w / W);
    if (h < 1) h = 1;
    uint8_t *d = malloc((size_t)h * w * 3);
    if (!d) return NULL;
    for (int y = 0; y < h; y++) {
        int sy = (int)(((int64_t)y * 2 + 1) * H / (2 * h));
        for (int x = 0; x < w; x++) {
            int sx = (int)(((int64_t)x * 2 + 1) * W / (2 * w));
            memcpy(d + ((size_t)y * w + x) * 3, src + ((size_t)sy * W + sx) * 3, 3);
        }
    }
    *oh = h;
    *ow = w;
    return d;
}
