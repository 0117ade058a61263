/* dedup_redis.c - the shared dedup store: keys in Redis with a PX expiry,
 * so every luka process of a group sees what the others handled.  Calls are
 * synchronous with a short timeout: a loopback round trip is tens of
 * microseconds, and a dead Redis costs one timeout per message, logged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "base/redis_url.h"
#include "stores/dedup.h"

typedef struct redis_store {
    dedup_t base;
    redisContext *c;
    redis_url_t url; /* AUTH, when it has a password; SELECT, when a db */
} redis_store_t;

/* AUTH with the URL's password (and user, for Redis 6 ACLs); 0 or -1. */
static int auth(redis_store_t *s, char *errbuf, size_t errlen) {
    redisReply *r;
    int rc = 0;
    if (!s->url.password[0]) return 0;
    r = s->url.user[0] ? redisCommand(s->c, "AUTH %s %s", s->url.user, s->url.password)
                   : redisCommand(s->c, "AUTH %s", s->url.password);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        /* Redis's own message names no password; the password never goes
         * into errbuf. */
        snprintf(errbuf, errlen, "redis dedup store %s:%d: AUTH: %s", s->url.host, s->url.port,
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
    s->c = redisConnectWithTimeout(s->url.host, s->url.port, tv);
    if (!s->c || s->c->err) {
        snprintf(errbuf, errlen, "redis dedup store %s:%d: %s", s->url.host, s->url.port,
                 s->c ? s->c->errstr : "cannot allocate a context");
        return -1;
    }
    redisSetTimeout(s->c, tv);
    if (auth(s, errbuf, errlen)) return -1;
    if (s->url.db) {
        r = redisCommand(s->c, "SELECT %d", s->url.db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(errbuf, errlen, "redis dedup store: SELECT %d: %s", s->url.db,
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
        snprintf(errbuf, errlen, "redis dedup store %s:%d: %s", s->url.host, s->url.port,
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

/* redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] */
dedup_t *dedup_redis_open(const char *url, char *errbuf, size_t errlen) {
    redis_store_t *s = calloc(1, sizeof(*s));
    char why[600];
    s->base.ops = &redis_ops;
    if (redis_url_parse(url, &s->url, why, sizeof(why))) {
        snprintf(errbuf, errlen, "redis dedup store: %s", why);
        redis_close(&s->base);
        return NULL;
    }
    if (connect_redis(s, errbuf, errlen)) {
        redis_close(&s->base);
        return NULL;
    }
    return &s->base;
}
