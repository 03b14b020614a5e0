/* colormap.c: the colour maps (stx_colormap_*).
 *
 * Each map is a 256-entry RGB table generated from matplotlib by tools/gen_colormaps.py
 * (colormap_tables.h): entry i is matplotlib's cmap(i, bytes=True), i.e. its float lookup table
 * times 255, truncated. The lookup of a float value follows matplotlib's Colormap.__call__:
 * index = int(v * 256), with v == 1 (and anything above) giving the last entry and anything
 * below 0 the first. Together they make stx_colormap_rgb(c, v) equal cmap(v, bytes=True)[:3] for
 * every float32 v, so tests compare against matplotlib exactly. NaN gives black (matplotlib's
 * "bad" colour is transparent black). */
#include "../core/core.h"
#include "colormap_tables.h"

#include <string.h>

static const char *const cmap_names[] = {"jet", "turbo", "inferno", "viridis", "diverging"};
#define NUM_CMAPS ((int)(sizeof cmap_names / sizeof cmap_names[0]))

int stx_colormap_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < NUM_CMAPS; i++)
        if (strcmp(name, cmap_names[i]) == 0) return i;
    if (strcmp(name, "bwr") == 0) return STX_CMAP_DIVERGING;
    return -1;
}

const char *stx_colormap_name(stx_colormap c) {
    if ((unsigned)c >= (unsigned)NUM_CMAPS) return "unknown";
    return cmap_names[c];
}

void stx_colormap_rgb(stx_colormap c, float v, uint8_t rgb[3]) {
    if (!rgb) return;
    if ((unsigned)c >= (unsigned)NUM_CMAPS || v != v) {
        rgb[0] = rgb[1] = rgb[2] = 0;
        return;
    }
    int i = 0;
    if (v > 0) {
        float x = v * 256.0f; /* exact: a power of two (inf for huge v) */
        i = x >= 255.0f ? 255 : (int)x;
    }
    memcpy(rgb, stx__cmap_tables[c][i], 3);
}
