/* redis_url.c - libFuzzer harness for src/base/redis_url.c: any text goes
 * through redis_url_parse.  Property: no crash; a URL it refuses has a
 * reason that never shows the password it held (a password of four bytes
 * or more, between "redis://[user]:" and "@", is looked for in the
 * reason); one it reads has a host, a port in 1..65535 and a database of
 * 0 or more.  Built and run by `make fuzz`. */
#include <stdint.h>
#include <string.h>

#define HARNESS "redis_url"
#include "harness.h"
#include "base/redis_url.h"

/* The password of url as written, or "" when there is none to find. */
static void password_of(const char *url, char *out, size_t len) {
    const char *at, *colon, *rest = strncmp(url, "redis://", 8) == 0 ? url + 8 : NULL;
    out[0] = '\0';
    if (!rest || !(at = strrchr(rest, '@')) || !(colon = memchr(rest, ':', (size_t)(at - rest)))) return;
    if ((size_t)(at - colon - 1) < 4 || (size_t)(at - colon - 1) >= len) return;
    memcpy(out, colon + 1, (size_t)(at - colon - 1));
    out[at - colon - 1] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char url[1024], why[1024] = "", secret[512];
    redis_url_t u;

    if (size >= sizeof(url)) size = sizeof(url) - 1;
    memcpy(url, data, size);
    url[size] = '\0';
    if (redis_url_parse(url, &u, why, sizeof(why)) != 0) {
        if (!why[0]) fail("refused without a reason", url);
        password_of(url, secret, sizeof(secret));
        if (secret[0] && strstr(why, secret)) fail("the reason shows the password", why);
        return 0;
    }
    if (!u.host[0]) fail("no host", url);
    if (u.port < 1 || u.port > 65535) fail("port out of range", url);
    if (u.db < 0) fail("negative database", url);
    return 0;
}
