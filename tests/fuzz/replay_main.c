/* replay_main.c: runs a fuzz harness on every file of the folders (or files) given: the corpus
 * and the crash inputs found so far, as a fast regression test without libFuzzer. A harness
 * failure shows up as a sanitizer report (non-zero exit); a folder that cannot be read, or no
 * input at all, is an error too. STX_REPLAY_VERBOSE=1 names each input before running it. */
#include "fuzz_common.h"

#include <dirent.h>
#include <sys/stat.h>

static int cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "replay: out of memory reading %s\n", path);
        return -1;
    }
    if (getenv("STX_REPLAY_VERBOSE")) fprintf(stderr, "replay: %s\n", path);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

int main(int argc, char **argv) {
    int files = 0;
    for (int a = 1; a < argc; a++) {
        struct stat sb;
        if (stat(argv[a], &sb) != 0) {
            fprintf(stderr, "replay: %s: no such file or folder\n", argv[a]);
            return 1;
        }
        if (!S_ISDIR(sb.st_mode)) {
            if (run_file(argv[a])) return 1;
            files++;
            continue;
        }
        DIR *d = opendir(argv[a]);
        if (!d) {
            fprintf(stderr, "replay: cannot read %s\n", argv[a]);
            return 1;
        }
        size_t n = 0, cap = 64;
        char **names = malloc(cap * sizeof *names);
        struct dirent *e;
        while (names && (e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            if (n == cap) {
                char **nn = realloc(names, 2 * cap * sizeof *names);
                if (!nn) break;
                names = nn;
                cap *= 2;
            }
            names[n] = malloc(strlen(argv[a]) + strlen(e->d_name) + 2);
            if (!names[n]) break;
            sprintf(names[n], "%s/%s", argv[a], e->d_name);
            n++;
        }
        closedir(d);
        if (!names) return 1;
        qsort(names, n, sizeof *names, cmp);
        for (size_t i = 0; i < n; i++) {
            if (stat(names[i], &sb) == 0 && S_ISREG(sb.st_mode)) {
                if (run_file(names[i])) return 1;
                files++;
            }
            free(names[i]);
        }
        free(names);
    }
    printf("replay: %d inputs, no failure\n", files);
    return files > 0 ? 0 : 1;
}
