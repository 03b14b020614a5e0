/* video_job.h: the video path of `stx explain` (decode, explain, render a report). */
#ifndef STX_CLI_VIDEO_JOB_H
#define STX_CLI_VIDEO_JOB_H

#include "cli.h"

#include <signal.h>

typedef struct video_job_opts {
    const char *model, *input, *out_dir;
    const char *methods; /* comma-separated */
    const stx_explain_options *eo;
    stx_sampling sampling; /* clip_len 0: the model's stx.clip_length, else 16 */
    stx_preprocess pre;
    stx_render_options ro;
    int64_t frame; /* --frame, -1: none */
    /* set (by a SIGINT handler) to stop between windows and rendering chunks; may be NULL */
    volatile const sig_atomic_t *cancel;
} video_job_opts;

/* Runs the whole job; returns 0 or 1 after a one-line error. */
int explain_video(const video_job_opts *o, stx_context *ctx, stx_model *m, const cli_resolved *res,
                  const char *target);

#endif
