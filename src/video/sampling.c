/* sampling.c: which frames of a video make the clips a model sees (stx_sampling_*).
 *
 * Three ways, as the video models' data loaders do it:
 *   - one clip of clip_len frames, frame_stride apart, from start;
 *   - uniform: clip_len frames spread evenly over the whole video, frame i at
 *     floor((i + 0.5) * num_frames / clip_len) (the centre of its segment, as TSN-style uniform
 *     sampling takes it at test time); a video shorter than clip_len repeats frames;
 *   - windows: clips of the first kind starting at start, start + window_stride, ...; the last
 *     window is moved back so that it ends at the last frame, so every frame from start on lies
 *     in at least one window (a video whose length is not a multiple of the stride gets one
 *     window overlapping its neighbour more than the others).
 */
#include "../core/core.h"

#include <string.h>

stx_sampling stx_sampling_default(void) {
    stx_sampling s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    s.clip_len = 16;
    s.frame_stride = 1;
    return s;
}

static stx_status check(const stx_sampling *s, int64_t num_frames) {
    if (!s || s->size < sizeof *s || s->clip_len <= 0 || s->frame_stride <= 0 || s->start < 0 ||
        s->window_stride < 0 || num_frames <= 0)
        return STX_E_INVALID;
    if (s->uniform) return STX_OK;
    /* the frames one clip spans */
    int64_t span = (int64_t)(s->clip_len - 1) * s->frame_stride + 1;
    if (s->start + span > num_frames) return STX_E_SHAPE;
    return STX_OK;
}

stx_status stx_sampling_count(const stx_sampling *s, int64_t num_frames, int64_t *count) {
    if (!count) return STX_E_INVALID;
    *count = 0;
    stx_status st = check(s, num_frames);
    if (st) return st;
    if (s->uniform || !s->windows) {
        *count = 1;
        return STX_OK;
    }
    int64_t span = (int64_t)(s->clip_len - 1) * s->frame_stride + 1;
    int64_t step = s->window_stride > 0 ? s->window_stride : (int64_t)s->clip_len * s->frame_stride;
    int64_t room = num_frames - s->start - span; /* >= 0 */
    /* windows at start + k * step for k * step <= room, plus one ending at the last frame when
     * the last of those does not */
    int64_t k = room / step + 1;
    if ((k - 1) * step < room) k++;
    *count = k;
    return STX_OK;
}

stx_status stx_sampling_indices(const stx_sampling *s, int64_t num_frames, int64_t k,
                                int64_t *indices) {
    int64_t count;
    stx_status st = stx_sampling_count(s, num_frames, &count);
    if (st) return st;
    if (!indices || k < 0 || k >= count) return STX_E_INVALID;
    if (s->uniform) {
        for (int i = 0; i < s->clip_len; i++) {
            /* exact integer arithmetic: floor((2i + 1) * num_frames / (2 clip_len)) */
            indices[i] = ((2 * (int64_t)i + 1) * num_frames) / (2 * (int64_t)s->clip_len);
        }
        return STX_OK;
    }
    int64_t span = (int64_t)(s->clip_len - 1) * s->frame_stride + 1;
    int64_t step = s->window_stride > 0 ? s->window_stride : (int64_t)s->clip_len * s->frame_stride;
    int64_t first = s->start + k * step;
    if (first + span > num_frames) first = num_frames - span; /* the last window */
    for (int i = 0; i < s->clip_len; i++) indices[i] = first + (int64_t)i * s->frame_stride;
    return STX_OK;
}
