/* redis_url.c - Redis URLs read into host, port, database and credentials,
 * for every part of luka that talks to Redis (the dedup store, luka.redis),
 * so that they accept the same URLs and mask the same passwords. */
#include "base/redis_url.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

#define SCHEME "redis://"

/* Copy the n bytes at p into out (cap bytes), undoing %XX escapes, as a
 * password with ':', '@' or '/' must be written in a URL. */
static void unescape(const char *p, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        if (p[i] == '%' && i + 2 < n && isxdigit((unsigned char)p[i + 1]) &&
            isxdigit((unsigned char)p[i + 2])) {
            char hex[3] = {p[i + 1], p[i + 2], '\0'};
            out[o++] = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            out[o++] = p[i];
        }
    }
    out[o] = '\0';
}

/* The decimal number at *p, which must be there, moving *p past it; -1 for
 * none or one past max. */
static long number(const char **p, long max) {
    char *end;
    long n;
    if (!isdigit((unsigned char)**p)) return -1;
    n = strtol(*p, &end, 10);
    *p = end;
    return n > max ? -1 : n;
}

int redis_url_parse(const char *url, redis_url_t *out, char *errbuf, size_t errlen) {
    const char *p, *at;
    char shown[512];
    int n = 0;
    long v;

    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (strncmp(url, SCHEME, strlen(SCHEME)) != 0) goto bad;
    p = url + strlen(SCHEME);
    /* The userinfo ends at the last '@', so a password with an unescaped
     * '@' still reads whole. */
    if ((at = strrchr(p, '@'))) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            unescape(p, (size_t)(colon - p), out->user, sizeof(out->user));
            unescape(colon + 1, (size_t)(at - colon - 1), out->password, sizeof(out->password));
            /* Whatever logs it from now on (an error echoing the URL). */
            log_redact(out->password);
        }
        p = at + 1;
    }
    if (sscanf(p, "%255[^:/]%n", out->host, &n) < 1) goto bad;
    p += n;
    if (*p == ':') {
        p++;
        if ((v = number(&p, 65535)) <= 0) goto bad;
        out->port = (int)v;
    }
    if (*p == '/' && p[1]) {
        p++;
        if ((v = number(&p, 1000000)) < 0) goto bad;
        out->db = (int)v;
    } else if (*p == '/') {
        p++;
    }
    if (*p) goto bad;
    return 0;
bad:
    snprintf(errbuf, errlen, "cannot parse '%s': write it as redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]",
             log_redact_url(url, shown, sizeof(shown)));
    return -1;
}
