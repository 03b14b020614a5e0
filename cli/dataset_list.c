/* dataset_list.c: the clip list of `stx evaluate --dataset` (format: dataset_list.h). */
#include "dataset_list.h"

#include "cli.h"
#include "report_util.h"

#include <stdlib.h>
#include <string.h>

#define MAX_LINE 8192        /* bytes per line */
#define MAX_FILE (64u << 20) /* bytes per list */

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = '\0';
    return s;
}

/* A path of the list, relative to its folder (dir) unless absolute; NULL for an empty field. */
static char *list_path(const char *dir, const char *field) {
    if (!field[0]) return NULL;
    if (field[0] == '/' || !dir[0]) return strdup(field);
    return path_join(dir, field);
}

void dataset_list_free(clip_entry *c, int n) {
    for (int i = 0; i < n; i++) {
        free(c[i].clip);
        free(c[i].mask);
        free(c[i].events);
        free(c[i].label);
    }
    free(c);
}

/* One line (NUL-terminated, modified in place) into *e; 0, 1 after an error, -1 to skip it. */
static int parse_line(char *s, int line, const char *dir, const char *name, clip_entry *e) {
    s = trim(s);
    if (!s[0] || s[0] == '#' || (line == 1 && strncmp(s, "clip", 4) == 0)) return -1;
    char *fld[4] = {s, "", "", ""};
    int nf = 1;
    for (char *p = s; *p; p++)
        if (*p == ',') {
            if (nf == 4)
                return cli_fail("--dataset %s:%d: more than 4 fields (clip,mask,events,label)",
                                name, line);
            *p = '\0';
            fld[nf++] = p + 1;
        }
    for (int k = 0; k < 4; k++) fld[k] = trim(fld[k]);
    if (!fld[0][0]) return cli_fail("--dataset %s:%d: the clip field is empty", name, line);
    memset(e, 0, sizeof *e);
    e->line = line;
    e->clip = list_path(dir, fld[0]);
    e->mask = list_path(dir, fld[1]);
    e->events = list_path(dir, fld[2]);
    e->label = fld[3][0] ? strdup(fld[3]) : NULL;
    if (!e->clip || (fld[1][0] && !e->mask) || (fld[2][0] && !e->events) ||
        (fld[3][0] && !e->label)) {
        free(e->clip);
        free(e->mask);
        free(e->events);
        free(e->label);
        return cli_fail("out of memory");
    }
    return 0;
}

int dataset_list_parse(const char *text, size_t len, const char *dir, const char *name,
                       clip_entry **out, int *n_out) {
    clip_entry *c = NULL;
    int n = 0, cap = 0, line = 0, rc = 0;
    char buf[MAX_LINE + 1];
    for (size_t pos = 0; !rc && pos < len;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - (text + pos)) : len - pos;
        line++;
        if (ll > MAX_LINE) {
            rc = cli_fail("--dataset %s:%d: line longer than %d bytes", name, line, MAX_LINE);
            break;
        }
        if (memchr(text + pos, '\0', ll)) {
            rc = cli_fail("--dataset %s:%d: a NUL byte (not a text file?)", name, line);
            break;
        }
        memcpy(buf, text + pos, ll);
        buf[ll] = '\0';
        pos += ll + 1;
        if (n == cap) {
            int ncap = cap ? 2 * cap : 16;
            clip_entry *nc = realloc(c, sizeof *c * (size_t)ncap);
            if (!nc) {
                rc = cli_fail("out of memory");
                break;
            }
            c = nc;
            cap = ncap;
        }
        int r = parse_line(buf, line, dir, name, &c[n]);
        if (r > 0) rc = r;
        if (r == 0) n++;
    }
    if (!rc && n == 0) rc = cli_fail("--dataset %s: no clip in the list", name);
    if (rc) {
        dataset_list_free(c, n);
        return rc;
    }
    *out = c;
    *n_out = n;
    return 0;
}

int dataset_list_read(const char *path, clip_entry **out, int *n_out) {
    FILE *f = fopen(path, "rb");
    if (!f) return cli_fail("--dataset %s: cannot open the list", path);
    /* a growing buffer (the list may be a pipe): a few KiB for a usual list, not MAX_FILE */
    char *text = NULL;
    size_t len = 0, cap = 0;
    int err = 0, more = 0, oom = 0;
    for (;;) {
        if (len == cap) {
            if (cap == MAX_FILE) {
                more = fgetc(f) != EOF;
                break;
            }
            size_t ncap = cap ? 2 * cap : 4096;
            char *nt = realloc(text, ncap < MAX_FILE ? ncap : MAX_FILE);
            if (!nt) {
                oom = 1;
                break;
            }
            text = nt;
            cap = ncap < MAX_FILE ? ncap : MAX_FILE;
        }
        size_t got = fread(text + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            err = ferror(f);
            break;
        }
    }
    fclose(f);
    if (oom) {
        free(text);
        return cli_fail("out of memory");
    }
    int rc;
    if (err)
        rc = cli_fail("--dataset %s: cannot read the list", path);
    else if (more)
        rc = cli_fail("--dataset %s: larger than %u MiB (not a clip list?)", path, MAX_FILE >> 20);
    else {
        char *dir = strdup(path);
        if (!dir) {
            free(text);
            return cli_fail("out of memory");
        }
        char *slash = strrchr(dir, '/');
        if (slash)
            slash[slash == dir ? 1 : 0] = '\0';
        else
            dir[0] = '\0';
        rc = dataset_list_parse(text, len, dir, path, out, n_out);
        free(dir);
    }
    free(text);
    return rc;
}
