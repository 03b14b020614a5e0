/* spatial.h: helpers shared by the sliding-window ops (Conv, ConvTranspose, pooling) and the
 * fusion pass: ONNX auto_pad parsing and floor/ceil division for output-size arithmetic. */
#ifndef STX_SPATIAL_H
#define STX_SPATIAL_H

#include <stdint.h>
#include <string.h>

typedef enum { PAD_NOTSET, PAD_SAME_UPPER, PAD_SAME_LOWER, PAD_VALID } pad_mode;

/* auto_pad attribute value -> pad_mode, -1 for an unknown value. */
static inline int parse_auto_pad(const char *s) {
    if (!s || !*s || strcmp(s, "NOTSET") == 0) return PAD_NOTSET;
    if (strcmp(s, "SAME_UPPER") == 0) return PAD_SAME_UPPER;
    if (strcmp(s, "SAME_LOWER") == 0) return PAD_SAME_LOWER;
    if (strcmp(s, "VALID") == 0) return PAD_VALID;
    return -1;
}

/* Floor and ceiling of a / b for b > 0 and any sign of a. */
static inline int64_t div_floor(int64_t a, int64_t b) {
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}
static inline int64_t div_ceil(int64_t a, int64_t b) {
    return a >= 0 ? (a + b - 1) / b : -((-a) / b);
}

#endif
