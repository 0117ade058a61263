/* rng.c - xoshiro256**, seeded once per process from the kernel.  Only the
 * loop thread draws from it. */
#include "base/rng.h"

#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static uint64_t s[4];
static int seeded;

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static void seed(void) {
    if (getrandom(s, sizeof(s), 0) != (ssize_t)sizeof(s)) {
        /* No entropy source: time and pid still tell processes apart, and
         * the generator does the rest. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s[0] = (uint64_t)ts.tv_nsec ^ 0x9e3779b97f4a7c15ull;
        s[1] = (uint64_t)ts.tv_sec;
        s[2] = (uint64_t)getpid();
        s[3] = 0x2545f4914f6cdd1dull;
    }
    seeded = 1;
}

uint64_t rng_next(void) {
    uint64_t result, t;
    if (!seeded) seed();
    result = rotl(s[1] * 5, 7) * 9;
    t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_unit(void) {
    /* The top 53 bits fill a double's mantissa exactly. */
    return (double)(rng_next() >> 11) * 0x1.0p-53;
}
