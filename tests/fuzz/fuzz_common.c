/* fuzz_common.c: the temporary folder, file writing and context of the fuzz harnesses. */
#include "fuzz_common.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_tmp[4096];
static int g_tmp_state; /* 0: not tried, 1: ready, -1: failed */

/* Removes a folder tree (the harness's own files only: no symlink is followed). */
static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            struct stat sb;
            if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
                remove_tree(p);
            else
                unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static void cleanup(void) {
    if (g_tmp_state == 1) remove_tree(g_tmp);
}

const char *fuzz_tmpdir(void) {
    if (g_tmp_state == 0) {
        const char *base = getenv("TMPDIR");
        if (!base || !*base) base = "/tmp";
        snprintf(g_tmp, sizeof g_tmp, "%s/stx_fuzz_XXXXXX", base);
        g_tmp_state = mkdtemp(g_tmp) ? 1 : -1;
        if (g_tmp_state == 1) atexit(cleanup);
    }
    return g_tmp_state == 1 ? g_tmp : NULL;
}

int fuzz_write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = size == 0 || fwrite(data, 1, size, f) == size;
    ok = fclose(f) == 0 && ok;
    return ok ? 0 : -1;
}

stx_context *fuzz_context(void) {
    stx_context_options o = stx_context_options_default();
    o.num_threads = 1;
    stx_context *ctx = NULL;
    if (stx_context_create(&o, &ctx) != STX_OK) return NULL;
    return ctx;
}
