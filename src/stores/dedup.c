/* dedup.c - open a dedup store by name, and the memory store: a hash table
 * over a ring of at most max_entries keys, evicting the oldest when full. */
#include "stores/dedup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"

int64_t dedup_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

dedup_t *dedup_open(const char *spec, const char *scope, int64_t ttl_ms, int max_entries,
                    const char *dir, char *errbuf, size_t errlen) {
    dedup_t *d;
    if (strcmp(spec, "memory") == 0) {
        d = dedup_memory_open(max_entries, errbuf, errlen);
    } else if (strncmp(spec, "sqlite:", 7) == 0) {
        char path[4096];
        const char *p = spec + 7;
        if (p[0] == '/') snprintf(path, sizeof(path), "%s", p);
        else snprintf(path, sizeof(path), "%s/%s", dir, p);
        d = dedup_sqlite_open(path, errbuf, errlen);
    } else if (strncmp(spec, "redis://", 8) == 0) {
        d = dedup_redis_open(spec, errbuf, errlen);
    } else {
        char shown[512];
        snprintf(errbuf, errlen, "unknown dedup store '%s'",
                 log_redact_url(spec, shown, sizeof(shown)));
        return NULL;
    }
    if (!d) return NULL;
    d->scope = strdup(scope);
    d->ttl_ms = ttl_ms;
    return d;
}

void dedup_close(dedup_t *d) {
    if (!d) return;
    free(d->scope);
    d->ops->close(d);
}

/* The memory store ------------------------------------------------------ */

typedef struct slot {
    char *key;
    size_t len;
    uint64_t hash;
    int64_t expires;
    int next; /* next slot in the same bucket, or -1 */
} slot_t;

typedef struct memory {
    dedup_t base;
    slot_t *slots; /* ring, oldest at head */
    int cap, head, count;
    int *buckets; /* first slot of each bucket, or -1 */
    int nbuckets;
} memory_t;

static uint64_t hash(const char *s, size_t len) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static int find(memory_t *m, const char *key, size_t len, uint64_t h) {
    for (int i = m->buckets[h % m->nbuckets]; i >= 0; i = m->slots[i].next)
        if (m->slots[i].hash == h && m->slots[i].len == len && !memcmp(m->slots[i].key, key, len))
            return i;
    return -1;
}

static void unlink_slot(memory_t *m, int i) {
    int *p = &m->buckets[m->slots[i].hash % m->nbuckets];
    while (*p != i) p = &m->slots[*p].next;
    *p = m->slots[i].next;
    free(m->slots[i].key);
    m->slots[i].key = NULL;
}

static int memory_seen(dedup_t *d, const char *key, size_t len, char *errbuf, size_t errlen) {
    memory_t *m = (memory_t *)d;
    int i = find(m, key, len, hash(key, len));
    (void)errbuf, (void)errlen;
    return i >= 0 && m->slots[i].expires > dedup_now_ms();
}

static int memory_mark(dedup_t *d, const char *key, size_t len, char *errbuf, size_t errlen) {
    memory_t *m = (memory_t *)d;
    uint64_t h = hash(key, len);
    int i = find(m, key, len, h);
    (void)errbuf, (void)errlen;
    if (i >= 0) {
        m->slots[i].expires = dedup_now_ms() + d->ttl_ms;
        return 0;
    }
    if (m->count == m->cap) { /* evict the oldest */
        unlink_slot(m, m->head);
        m->head = (m->head + 1) % m->cap;
        m->count--;
    }
    i = (m->head + m->count++) % m->cap;
    m->slots[i].key = malloc(len ? len : 1);
    memcpy(m->slots[i].key, key, len);
    m->slots[i].len = len;
    m->slots[i].hash = h;
    m->slots[i].expires = dedup_now_ms() + d->ttl_ms;
    m->slots[i].next = m->buckets[h % m->nbuckets];
    m->buckets[h % m->nbuckets] = i;
    return 0;
}

static void memory_close(dedup_t *d) {
    memory_t *m = (memory_t *)d;
    for (int i = 0; i < m->cap; i++) free(m->slots[i].key);
    free(m->slots);
    free(m->buckets);
    free(m);
}

static const dedup_ops_t memory_ops = {memory_seen, memory_mark, memory_close};

dedup_t *dedup_memory_open(int max_entries, char *errbuf, size_t errlen) {
    memory_t *m = calloc(1, sizeof(*m));
    (void)errbuf, (void)errlen;
    m->base.ops = &memory_ops;
    m->cap = max_entries > 0 ? max_entries : 1;
    m->slots = calloc(m->cap, sizeof(*m->slots));
    m->nbuckets = m->cap;
    m->buckets = malloc(m->nbuckets * sizeof(int));
    for (int i = 0; i < m->nbuckets; i++) m->buckets[i] = -1;
    return &m->base;
}
