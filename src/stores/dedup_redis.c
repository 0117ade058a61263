/* dedup_redis.c - the shared dedup store: keys in Redis with a PX expiry,
 * so every luka process of a group sees what the others handled.  Calls are
 * synchronous with a short timeout: a loopback round trip is tens of
 * microseconds, and a dead Redis costs one timeout per message, logged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "stores/dedup.h"

typedef struct redis_store {
    dedup_t base;
    redisContext *c;
    char host[256];
    int port, db;
} redis_store_t;

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

dedup_t *dedup_redis_open(const char *url, char *errbuf, size_t errlen) {
    redis_store_t *s = calloc(1, sizeof(*s));
    const char *p = url + strlen("redis://");
    int n = 0;
    s->base.ops = &redis_ops;
    s->port = 6379;
    if (sscanf(p, "%255[^:/]%n", s->host, &n) < 1) {
        snprintf(errbuf, errlen, "redis dedup store: cannot parse '%s'", url);
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
