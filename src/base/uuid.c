/* uuid.c - version 4 UUIDs from the process's generator (rng.c).  Message
 * ids need to be unique, not secret, and one is made per publish. */
#include "base/uuid.h"

#include <stdint.h>
#include <string.h>

#include "base/rng.h"

void uuid_v4(char out[UUID_LEN + 1]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    uint64_t a = rng_next(), c = rng_next();

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
