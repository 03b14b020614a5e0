/* phase_report_tool.c: test entry point of `stx phase`'s pictures and report (cli/phase_report.c).
 *
 *   stx_phase_report_tool IN_DIR OUT_DIR
 *
 * builds a phase_result from files that tests/cli/test_phase_report.py wrote into IN_DIR and calls
 * phase_write_report(OUT_DIR). IN_DIR/info.txt has one item per line:
 *   video TEXT | fps X | phase NAME (one line per phase, in order) | size H W | thumb_every K |
 *   accuracy X | score PRECISION RECALL JACCARD (one line per phase) |
 *   moment FRAME PHASE WHY (then, for that moment) note TEXT
 * and the arrays are .npy files: pred.npy int32 (N), prob.npy float32 (N, P), truth.npy int32 (N)
 * (optional), thumbs.npy uint8 (ceil(N / K), H, W, 3) (optional), and per moment m:
 * m<m>_temporal.npy float32 (FRAME + 1), m<m>_kf_frame.npy int32 (n), m<m>_kf_weight.npy float32
 * (n), m<m>_kf_rgb.npy uint8 (n, H, W, 3), m<m>_kf_map.npy float32 (n, H, W) (absent: no key
 * frames). Exit status: phase_write_report's. */
#include "phase.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_PHASES 64
#define MAX_MOMENTS 64
#define MAX_TENSORS 1024

static stx_context *CTX;
static stx_tensor *KEEP[MAX_TENSORS];
static int NKEEP;
static char IN[4096];

/* Loads IN/name (NULL when absent and optional); exits on any other failure. */
static const void *load(const char *name, stx_dtype dt, bool optional, int64_t *n0) {
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", IN, name);
    if (optional && access(path, F_OK) != 0) return NULL;
    stx_tensor *t = NULL;
    if (stx_tensor_load_npy(CTX, path, &t) != STX_OK || stx_tensor_dtype(t) != dt ||
        NKEEP == MAX_TENSORS) {
        fprintf(stderr, "phase_report_tool: %s: %s\n", path,
                t ? "wrong dtype" : stx_context_last_error(CTX));
        exit(2);
    }
    KEEP[NKEEP++] = t;
    if (n0) *n0 = stx_tensor_shape(t)[0];
    return stx_tensor_data_const(t);
}

static char *dup_rest(const char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
    char *d = malloc(n + 1);
    if (!d) exit(2);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: stx_phase_report_tool IN_DIR OUT_DIR\n");
        return 2;
    }
    snprintf(IN, sizeof IN, "%s", argv[1]);
    if (stx_context_create(NULL, &CTX) != STX_OK) return 2;
    char path[4400], line[4096];
    snprintf(path, sizeof path, "%s/info.txt", IN);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "phase_report_tool: cannot open %s\n", path);
        return 2;
    }
    phase_result r;
    memset(&r, 0, sizeof r);
    r.accuracy = NAN;
    static char *names[MAX_PHASES], *whys[MAX_MOMENTS], *notes[MAX_MOMENTS];
    static double prec[MAX_PHASES], rec[MAX_PHASES], jac[MAX_PHASES];
    static phase_moment moments[MAX_MOMENTS];
    int nscores = 0;
    while (fgets(line, sizeof line, f)) {
        char *sp = strchr(line, ' ');
        const char *arg = sp ? sp + 1 : "";
        if (!strncmp(line, "video ", 6))
            r.video = dup_rest(arg);
        else if (!strncmp(line, "fps ", 4))
            r.fps = atof(arg);
        else if (!strncmp(line, "phase ", 6) && r.n_phases < MAX_PHASES)
            names[r.n_phases++] = dup_rest(arg);
        else if (!strncmp(line, "size ", 5))
            sscanf(arg, "%d %d", &r.h, &r.w);
        else if (!strncmp(line, "thumb_every ", 12))
            r.thumb_every = atoll(arg);
        else if (!strncmp(line, "accuracy ", 9))
            r.accuracy = atof(arg);
        else if (!strncmp(line, "score ", 6) && nscores < MAX_PHASES) {
            sscanf(arg, "%lf %lf %lf", &prec[nscores], &rec[nscores], &jac[nscores]);
            nscores++;
        } else if (!strncmp(line, "moment ", 7) && r.n_moments < MAX_MOMENTS) {
            phase_moment *m = &moments[r.n_moments];
            long long fr = 0;
            int ph = 0, used = 0;
            sscanf(arg, "%lld %d %n", &fr, &ph, &used);
            m->frame = fr;
            m->phase = ph;
            whys[r.n_moments] = dup_rest(arg + used);
            m->why = whys[r.n_moments];
            r.n_moments++;
        } else if (!strncmp(line, "note ", 5) && r.n_moments > 0) {
            notes[r.n_moments - 1] = dup_rest(arg);
            moments[r.n_moments - 1].note = notes[r.n_moments - 1];
        }
    }
    fclose(f);
    r.phase_names = (const char *const *)names;
    r.pred = load("pred.npy", STX_DTYPE_INT32, false, &r.n_frames);
    r.prob = load("prob.npy", STX_DTYPE_FLOAT, false, NULL);
    r.truth = load("truth.npy", STX_DTYPE_INT32, true, NULL);
    r.thumbs = load("thumbs.npy", STX_DTYPE_UINT8, true, NULL);
    if (nscores == r.n_phases && nscores > 0) {
        r.precision = prec;
        r.recall = rec;
        r.jaccard = jac;
    }
    static phase_keyframe *kfs[MAX_MOMENTS];
    size_t plane = (size_t)r.h * r.w;
    for (int m = 0; m < r.n_moments; m++) {
        char name[64];
        snprintf(name, sizeof name, "m%d_temporal.npy", m);
        moments[m].temporal = load(name, STX_DTYPE_FLOAT, false, NULL);
        int64_t n = 0;
        snprintf(name, sizeof name, "m%d_kf_frame.npy", m);
        const int32_t *kf = load(name, STX_DTYPE_INT32, true, &n);
        if (!kf) continue;
        snprintf(name, sizeof name, "m%d_kf_weight.npy", m);
        const float *w = load(name, STX_DTYPE_FLOAT, false, NULL);
        snprintf(name, sizeof name, "m%d_kf_rgb.npy", m);
        const uint8_t *rgb = load(name, STX_DTYPE_UINT8, false, NULL);
        snprintf(name, sizeof name, "m%d_kf_map.npy", m);
        const float *map = load(name, STX_DTYPE_FLOAT, false, NULL);
        kfs[m] = calloc((size_t)n, sizeof *kfs[m]);
        if (!kfs[m]) return 2;
        for (int64_t k = 0; k < n; k++) {
            kfs[m][k].frame = kf[k];
            kfs[m][k].weight = w[k];
            kfs[m][k].rgb = rgb + (size_t)k * plane * 3;
            kfs[m][k].map = map + (size_t)k * plane;
        }
        moments[m].keyframes = kfs[m];
        moments[m].n_keyframes = (int)n;
    }
    r.moments = moments;
    int rc = phase_write_report(CTX, &r, argv[2]);
    for (int i = 0; i < NKEEP; i++) stx_tensor_free(KEEP[i]);
    for (int m = 0; m < r.n_moments; m++) {
        free(kfs[m]);
        free(whys[m]);
        free(notes[m]);
    }
    for (int p = 0; p < r.n_phases; p++) free(names[p]);
    free((char *)r.video);
    stx_context_free(CTX);
    return rc;
}
