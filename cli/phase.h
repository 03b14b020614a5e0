/* phase.h: what `stx phase` computes about one procedure, handed from the computing side
 * (cmd_phase.c) to the pictures and the report (phase_report.c). Everything is in memory and owned
 * by the computing side; the report only reads it. Frame indices are at the sampling rate (frame i
 * is at time i / fps seconds). */
#ifndef STX_CLI_PHASE_H
#define STX_CLI_PHASE_H

#include "stx.h"

#include <stdint.h>

/* A frame that mattered to a moment's prediction, with its spatial map through the frame model. */
typedef struct phase_keyframe {
    int64_t frame;      /* index of the frame (< the moment's frame + 1: only the past matters) */
    float weight;       /* its temporal attribution (raw, signed) */
    const uint8_t *rgb; /* the frame as the frame model saw it: h*w*3 uint8, row-major */
    const float *map;   /* its spatial map: h*w floats, raw (the report shows its positive part,
                         * scaled per frame; a non-finite value is an error) */
} phase_keyframe;

/* One explained moment: a frame whose prediction is explained. */
typedef struct phase_moment {
    int64_t frame;         /* the explained frame */
    int phase;             /* the phase predicted there */
    const char *why;       /* "segment" (a predicted segment's representative frame), "user"
                            * (--at), or "transition" (the first frame of a new segment) */
    const float *temporal; /* attribution over frames 0..frame (frame + 1 values), raw, signed */
    int n_keyframes;       /* the most influential past frames, strongest first */
    const phase_keyframe *keyframes;
    const char *note; /* for transitions: what changed (one line, may be NULL) */
} phase_moment;

typedef struct phase_result {
    const char *video; /* the input's path, as given */
    double fps;        /* sampling rate (frames per second of the frame indices) */
    int64_t n_frames;
    int n_phases;
    const char *const *phase_names; /* n_phases names */
    const int *pred;                /* n_frames predicted phases */
    const float *prob;              /* n_frames * n_phases softmax probabilities, frame-major */
    const int *truth;               /* n_frames ground-truth phases, or NULL without --labels
                                     * (a value outside 0..n_phases-1: unlabelled, drawn grey) */
    int h, w;                       /* frame size of rgb pictures and maps */
    int64_t thumb_every;            /* thumbs holds every thumb_every-th frame (0: no thumbs) */
    const uint8_t *thumbs;          /* ceil(n_frames / thumb_every) * h * w * 3 uint8 (the
                                     * report keeps at most 1600 of them, evenly spaced) */
    int n_moments;
    const phase_moment *moments;
    /* Cholec80-style scores with labels (NAN when truth is NULL). */
    double accuracy;
    const double *precision, *recall, *jaccard; /* n_phases each, NAN for a phase never seen */
} phase_result;

/* Writes DIR/timeline.png (predicted and ground-truth ribbons, per-frame confidence, a heat strip
 * of temporal attribution per moment), DIR/keyframes_<frame>.png (a grid of a moment's key frames
 * with their maps; none for a moment without key frames), DIR/thumbs_<k>.png (thumbnail sheets)
 * and DIR/report.html (one offline page: scrub through time, see the phase, the moments that drove
 * it and their maps). DIR is created when missing. Files are written atomically, and on a failure
 * the files this call wrote are removed again (and DIR, when the call created it). Returns 0, or 1
 * after a one-line error on stderr. Geometry, colours and scaling: cli/phase_report.c's header. */
int phase_write_report(stx_context *ctx, const phase_result *r, const char *dir);

#endif
