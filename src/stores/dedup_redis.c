/* dedup_redis.c - the shared dedup store: keys in Redis with a PX expiry,
 * so every luka process of a group sees what the others handled.  Calls are
 * synchronous with a short timeout: a loopback round trip is tens of
 * microseconds, and a dead Redis costs one timeout per message, logged. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "base/log.h"
#include "stores/dedup.h"

typedef struct redis_store {
    dedup_t base;
    redisContext *c;
    char host[256];
    int port, db;
    char user[256], password[256]; /* AUTH, when the URL has a password */
} redis_store_t;

/* AUTH with the URL's password (and user, for Redis 6 ACLs); 0 or -1. */
static int auth(redis_store_t *s, char *errbuf, size_t errlen) {
    redisReply *r;
    int rc = 0;
    if (!s->password[0]) return 0;
    r = s->user[0] ? redisCommand(s->c, "AUTH %s %s", s->user, s->password)
                   : redisCommand(s->c, "AUTH %s", s->password);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        /* Redis's own message names no password; the password never goes
         * into errbuf. */
        snprintf(errbuf, errlen, "redis dedup store %s:%d: AUTH: %s", s->host, s->port,
                 r ? r->str : s->c->errstr);
        rc = -1;
    }
    if (r) freeReplyObject(r);
    return rc;
}

static int connect_redis(redis_store_t *s, char *errbuf, size_t errlen) {
    struct timeval tv = {1, 0};
    redisReply *r;
    if (s->c && !s->c->err) return 0;
    if (s->c) redisFree(s->c);
    s->c = redisConnectWithTimeout(s->host, s->port, tv);
    if (!s->c || s->c->err) {
        snprintf(errbuf, errlen, "redis dedup store %s:%d: %s", s->host, s->port,
                 s->c ? s->c->errstr : "cannot allocate a context");
        return -1;
    }
    redisSetTimeout(s->c, tv);
    if (auth(s, errbuf, errlen)) return -1;
    if (s->db) {
        r = redisCommand(s->c, "SELECT %d", s->db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(errbuf, errlen, "redis dedup store: SELECT %d: %s", s->db,
                     r ? r->str : s->c->errstr);
            if (r) freeReplyObject(r);
            return -1;
        }
        freeReplyObject(r);
    }
    return 0;
}

static redisReply *command(redis_store_t *s, char *errbuf, size_t errlen, const char *fmt,
                           const char *scope, const char *key, size_t len, long long ttl) {
    redisReply *r;
    if (connect_redis(s, errbuf, errlen)) return NULL;
    r = redisCommand(s->c, fmt, scope, key, len, ttl);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        snprintf(errbuf, errlen, "redis dedup store %s:%d: %s", s->host, s->port,
                 r ? r->str : s->c->errstr);
        if (r) freeReplyObject(r);
        return NULL;
    }
    return r;
}

static int redis_seen(dedup_t *d, const char *key, size_t len, char *errbuf, size_t errlen) {
    redisReply *r = command((redis_store_t *)d, errbuf, errlen, "EXISTS luka:dedup:%s:%b", d->scope,
                            key, len, 0);
    int seen;
    if (!r) return -1;
    seen = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
    freeReplyObject(r);
    return seen;
}

static int redis_mark(dedup_t *d, const char *key, size_t len, char *errbuf, size_t errlen) {
    redisReply *r = command((redis_store_t *)d, errbuf, errlen, "SET luka:dedup:%s:%b 1 PX %lld",
                            d->scope, key, len, (long long)d->ttl_ms);
    if (!r) return -1;
    freeReplyObject(r);
    return 0;
}

static void redis_close(dedup_t *d) {
    redis_store_t *s = (redis_store_t *)d;
    if (s->c) redisFree(s->c);
    free(s);
}

static const dedup_ops_t redis_ops = {redis_seen, redis_mark, redis_close};

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

/* redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] */
dedup_t *dedup_redis_open(const char *url, char *errbuf, size_t errlen) {
    redis_store_t *s = calloc(1, sizeof(*s));
    const char *p = url + strlen("redis://"), *at = strrchr(p, '@');
    char shown[512];
    int n = 0;
    s->base.ops = &redis_ops;
    s->port = 6379;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            unescape(p, (size_t)(colon - p), s->user, sizeof(s->user));
            unescape(colon + 1, (size_t)(at - colon - 1), s->password, sizeof(s->password));
            /* Whatever logs it from now on (an error echoing the URL). */
            log_redact(s->password);
        }
        p = at + 1;
    }
    if (sscanf(p, "%255[^:/]%n", s->host, &n) < 1) {
        snprintf(errbuf, errlen, "redis dedup store: cannot parse '%s'",
                 log_redact_url(url, shown, sizeof(shown)));
        redis_close(&s->base);
        return NULL;
    }
    p += n;
    if (*p == ':') s->port = (int)strtol(p + 1, (char **)&p, 10);
    if (*p == '/' && p[1]) s->db = atoi(p + 1);
    if (connect_redis(s, errbuf, errlen)) {
        redis_close(&s->base);
        return NULL;
    }
    return &s->base;
}
