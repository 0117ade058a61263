/* redis_url.c - libFuzzer harness for src/base/redis_url.c: any text goes
 * through redis_url_parse.  Property: no crash; a URL it refuses has a
 * reason, which quotes it with its password (read as the parser reads
 * one) replaced by the mask; one it reads has a host, a port in 1..65535 and a database of
 * 0 or more.  Built and run by `make fuzz`. */
#include <stdint.h>
#include <string.h>

#define HARNESS "redis_url"
#include "harness.h"
#include "base/redis_url.h"

/* What the reason must quote for url: the password, read as
 * redis_url.c reads it (between the userinfo's first ':' and the last
 * '@'), replaced by the mask; NULL when url has none. */
static const char *masked(const char *url, char *out, size_t len) {
    const char *at, *colon, *rest = strncmp(url, "redis://", 8) == 0 ? url + 8 : NULL;
    if (!rest || !(at = strrchr(rest, '@')) || !(colon = memchr(rest, ':', (size_t)(at - rest))))
        return NULL;
    snprintf(out, len, "%.*s********%s", (int)(colon + 1 - url), url, at);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char url[400], why[1024] = "", secret[512];
    redis_url_t u;

    if (size >= sizeof(url)) size = sizeof(url) - 1;
    memcpy(url, data, size);
    url[size] = '\0';
    if (redis_url_parse(url, &u, why, sizeof(why)) != 0) {
        const char *want = masked(url, secret, sizeof(secret));
        char *open = strchr(why, '\''), *close = strrchr(why, '\'');
        if (!why[0]) fail("refused without a reason", url);
        if (!want || !open || close <= open) return 0;
        *close = '\0';
        if (strcmp(open + 1, want) != 0) fail("the reason shows the URL unmasked", why);
        return 0;
    }
    if (!u.host[0]) fail("no host", url);
    if (u.port < 1 || u.port > 65535) fail("port out of range", url);
    if (u.db < 0) fail("negative database", url);
    return 0;
}
