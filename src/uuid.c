/* uuid.c - version 4 UUIDs from xoshiro256**, seeded once from the kernel.
 * Message ids need to be unique, not secret, and one is made per publish. */
#include "uuid.h"

#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static uint64_t s[4];
static int seeded;

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next(void) {
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static void seed(void) {
    if (getrandom(s, sizeof(s), 0) != (ssize_t)sizeof(s)) {
        /* No entropy source: time and pid still make ids unique enough
         * between processes, and the generator does the rest. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s[0] = (uint64_t)ts.tv_nsec ^ 0x9e3779b97f4a7c15ull;
        s[1] = (uint64_t)ts.tv_sec;
        s[2] = (uint64_t)getpid();
        s[3] = 0x2545f4914f6cdd1dull;
    }
    seeded = 1;
}

void uuid_v4(char out[UUID_LEN + 1]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    uint64_t a, c;

    if (!seeded) seed();
    a = next();
    c = next();
    memcpy(b, &a, 8);
    memcpy(b + 8, &c, 8);
    b[6] = (b[6] & 0x0f) | 0x40; /* version 4 */
    b[8] = (b[8] & 0x3f) | 0x80; /* RFC 4122 variant */
    for (int i = 0, j = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[j++] = '-';
        out[j++] = hex[b[i] >> 4];
        out[j++] = hex[b[i] & 15];
    }
    out[UUID_LEN] = '\0';
}
