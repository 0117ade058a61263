/* dedup.h - the record of message keys already handled, for endpoints that
 * deduplicate.  Three stores share this interface: memory (bounded, the
 * default), SQLite (survives restarts) and Redis (shared by processes). */
#ifndef LUKA_DEDUP_H
#define LUKA_DEDUP_H

#include <stddef.h>
#include <stdint.h>

typedef struct dedup dedup_t;

/* The operations of one store. */
typedef struct dedup_ops {
    /* 1 if key was marked within its ttl, 0 if not, -1 with errbuf. */
    int (*seen)(dedup_t *d, const char *key, size_t len, char *errbuf, size_t errlen);
    /* Remember key for the ttl.  0, or -1 with errbuf. */
    int (*mark)(dedup_t *d, const char *key, size_t len, char *errbuf, size_t errlen);
    void (*close)(dedup_t *d);
} dedup_ops_t;

struct dedup {
    const dedup_ops_t *ops;
    char *scope; /* group and endpoint: keys of different endpoints never meet */
    int64_t ttl_ms;
};

/* Open the store named by spec ("memory", "sqlite:PATH", "redis://HOST:PORT[/DB]").
 * A relative SQLite path is taken from dir.  NULL with errbuf on failure. */
dedup_t *dedup_open(const char *spec, const char *scope, int64_t ttl_ms, int max_entries,
                    const char *dir, char *errbuf, size_t errlen);
void dedup_close(dedup_t *d);

static inline int dedup_seen(dedup_t *d, const char *key, size_t len, char *errbuf,
                             size_t errlen) {
    return d->ops->seen(d, key, len, errbuf, errlen);
}

static inline int dedup_mark(dedup_t *d, const char *key, size_t len, char *errbuf,
                             size_t errlen) {
    return d->ops->mark(d, key, len, errbuf, errlen);
}

/* Milliseconds of the wall clock, which the ttl is measured against. */
int64_t dedup_now_ms(void);

/* The stores; each returns NULL with errbuf on failure. */
dedup_t *dedup_memory_open(int max_entries, char *errbuf, size_t errlen);
dedup_t *dedup_sqlite_open(const char *path, char *errbuf, size_t errlen);
dedup_t *dedup_redis_open(const char *url, char *errbuf, size_t errlen);

#endif
