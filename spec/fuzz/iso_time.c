/* iso_time.c - libFuzzer harness for cliopt_time (base/cliopt.c), the
 * parser of `luka offsets --reset TIME`.  Property: no crash, no read past
 * the string; a time it reads, written back as YYYY-MM-DDTHH:MM:SS.mmmZ
 * (or @MS), reads again as the same millisecond.  Built and run by
 * `make fuzz`. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HARNESS "iso_time"
#include "harness.h"
#include "base/cliopt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1), back[64];
    int64_t ms, again;
    struct tm tm;

    memcpy(s, data, size);
    s[size] = '\0';
    if (cliopt_time(s, &ms) == 0) {
        time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
        if (s[0] == '@' || !gmtime_r(&secs, &tm) || tm.tm_year + 1900 > 9999 ||
            tm.tm_year + 1900 < 0)
            snprintf(back, sizeof(back), "@%" PRId64, ms);
        else
            snprintf(back, sizeof(back), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(ms - (int64_t)secs * 1000));
        if (cliopt_time(back, &again) != 0) fail("its own rendering is refused", back);
        if (again != ms) fail("reads back as another time", back);
    }
    free(s);
    return 0;
}
