/* rng.c: the one random-number generator of stx (xoshiro256**, seeded through splitmix64).
 * Every random draw in the library goes through an explicit stx_rng seeded from an options
 * struct, so results are reproducible for a fixed seed. */
#include "core.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void stx__rng_seed(stx_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

uint64_t stx__rng_next(stx_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double stx__rng_uniform(stx_rng *r) {
    return (double)(stx__rng_next(r) >> 11) * 0x1.0p-53;
}

double stx__rng_normal(stx_rng *r) {
    /* Box-Muller, one value per call (no cached second value: the stream stays simple). */
    double u1 = 1.0 - stx__rng_uniform(r); /* (0, 1] */
    double u2 = stx__rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
