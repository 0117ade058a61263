/* sched.c - lanes of an endpoint's messages: a hash of the busy or waited
 * for (partition, key) pairs, each with the messages queued behind it,
 * and a FIFO of free lanes whose first message waits for a slot.  A lane
 * exists while it is held or has messages waiting; the common case (a
 * key seen once, run at once) costs one hash lookup and one small malloc. */
#include "flow/sched.h"

#include <stdlib.h>
#include <string.h>

#include "app/app.h"

struct lane {
    struct lane *next;  /* hash chain */
    struct lane *rnext; /* the ready FIFO */
    uint64_t hash;
    const offsets_t *part; /* the partition (its tracker is unique to it) */
    int busy;              /* held by a message */
    int ready;             /* in the ready FIFO */
    inflight_t *head, *tail; /* waiting, in the order they came */
    int haskey;
    size_t keylen;
    char key[];
};

enum { S_NONE, S_QUEUED, S_RUNNING, S_HELD, S_DUE };

void sched_init(sched_t *s, int concurrency, int ordering) {
    memset(s, 0, sizeof(*s));
    s->concurrency = concurrency > 0 ? concurrency : 1;
    /* One at a time is in order whatever the lanes. */
    s->ordering = s->concurrency == 1 ? ORDER_NONE : ordering;
}

/* FNV-1a over the partition's identity and the key. */
static uint64_t hash_of(const offsets_t *part, const char *key, size_t len, int haskey) {
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)part;
    h *= 1099511628211ull;
    if (!haskey) return h ^ 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void grow(sched_t *s) {
    size_t n = s->nbuckets ? s->nbuckets * 2 : 64;
    lane_t **b = calloc(n, sizeof(*b));
    for (size_t i = 0; i < s->nbuckets; i++) {
        lane_t *l = s->buckets[i];
        while (l) {
            lane_t *next = l->next;
            l->next = b[l->hash & (n - 1)];
            b[l->hash & (n - 1)] = l;
            l = next;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
}

static lane_t *lane_of(sched_t *s, const inflight_t *inf) {
    const message_t *m = &inf->msg;
    int haskey = s->ordering == ORDER_KEY && m->key != NULL;
    size_t len = haskey ? m->key_len : 0;
    uint64_t h = hash_of(inf->offsets, m->key, len, haskey);
    lane_t *l;

    if (s->nlanes >= s->nbuckets) grow(s);
    for (l = s->buckets[h & (s->nbuckets - 1)]; l; l = l->next)
        if (l->hash == h && l->part == inf->offsets && l->haskey == haskey &&
            l->keylen == len && (!len || memcmp(l->key, m->key, len) == 0))
            return l;
    l = calloc(1, sizeof(*l) + len);
    l->hash = h;
    l->part = inf->offsets;
    l->haskey = haskey;
    l->keylen = len;
    if (len) memcpy(l->key, m->key, len);
    l->next = s->buckets[h & (s->nbuckets - 1)];
    s->buckets[h & (s->nbuckets - 1)] = l;
    s->nlanes++;
    return l;
}

static void lane_free(sched_t *s, lane_t *l) {
    lane_t **p = &s->buckets[l->hash & (s->nbuckets - 1)];
    while (*p != l) p = &(*p)->next;
    *p = l->next;
    s->nlanes--;
    free(l);
}

static void make_ready(sched_t *s, lane_t *l) {
    if (l->ready) return;
    l->ready = 1;
    l->rnext = NULL;
    if (s->ready_tail) s->ready_tail->rnext = l;
    else s->ready = l;
    s->ready_tail = l;
}

static void append(inflight_t **head, inflight_t **tail, inflight_t *inf) {
    inf->qnext = NULL;
    if (*tail) (*tail)->qnext = inf;
    else *head = inf;
    *tail = inf;
}

static void unlink_from(inflight_t **head, inflight_t **tail, inflight_t *inf) {
    inflight_t *prev = NULL;
    for (inflight_t *q = *head; q; prev = q, q = q->qnext)
        if (q == inf) {
            if (prev) prev->qnext = q->qnext;
            else *head = q->qnext;
            if (*tail == q) *tail = prev;
            return;
        }
}

int sched_push(sched_t *s, inflight_t *inf) {
    lane_t *l;

    if (s->ordering == ORDER_NONE) {
        if (!s->fifo && s->running < s->concurrency) {
            s->running++;
            inf->sched = S_RUNNING;
            return 1;
        }
        append(&s->fifo, &s->fifo_tail, inf);
        s->queued++;
        inf->sched = S_QUEUED;
        return 0;
    }
    l = lane_of(s, inf);
    inf->lane = l;
    if (!l->busy && !l->head && s->running < s->concurrency) {
        l->busy = 1;
        s->running++;
        inf->sched = S_RUNNING;
        return 1;
    }
    append(&l->head, &l->tail, inf);
    s->queued++;
    inf->sched = S_QUEUED;
    if (!l->busy) make_ready(s, l);
    return 0;
}

inflight_t *sched_next(sched_t *s) {
    inflight_t *inf;
    lane_t *l;

    if (s->running >= s->concurrency) return NULL;
    if ((inf = s->due)) {
        s->due = inf->qnext;
        if (!s->due) s->due_tail = NULL;
    } else if (s->ordering == ORDER_NONE) {
        if (!(inf = s->fifo)) return NULL;
        s->fifo = inf->qnext;
        if (!s->fifo) s->fifo_tail = NULL;
        s->queued--;
    } else {
        if (!(l = s->ready)) return NULL;
        s->ready = l->rnext;
        if (!s->ready) s->ready_tail = NULL;
        l->ready = 0;
        inf = l->head;
        l->head = inf->qnext;
        if (!l->head) l->tail = NULL;
        l->busy = 1;
        s->queued--;
    }
    inf->qnext = NULL;
    s->running++;
    inf->sched = S_RUNNING;
    return inf;
}

void sched_done(sched_t *s, inflight_t *inf) {
    if (inf->sched != S_RUNNING) return;
    s->running--;
    inf->sched = S_HELD;
}

lane_t *sched_detach(inflight_t *inf) {
    lane_t *l = inf->lane;
    inf->lane = NULL;
    inf->sched = S_NONE;
    return l;
}

void sched_hold(inflight_t *again, lane_t *lane) {
    again->lane = lane;
    again->sched = S_HELD;
}

void sched_release(sched_t *s, lane_t *l) {
    if (!l) return;
    l->busy = 0;
    if (l->head) make_ready(s, l);
    else lane_free(s, l);
}

void sched_due(sched_t *s, inflight_t *inf) {
    append(&s->due, &s->due_tail, inf);
    inf->sched = S_DUE;
}

void sched_forget(sched_t *s, inflight_t *inf) {
    lane_t *l = inf->lane;

    switch (inf->sched) {
    case S_QUEUED:
        s->queued--;
        if (!l) {
            unlink_from(&s->fifo, &s->fifo_tail, inf);
        } else {
            unlink_from(&l->head, &l->tail, inf);
            if (!l->busy && !l->head) {
                /* Out of the ready FIFO too, before it goes. */
                lane_t **p = &s->ready, *prev = NULL;
                while (*p && *p != l) prev = *p, p = &(*p)->rnext;
                if (*p) {
                    *p = l->rnext;
                    if (s->ready_tail == l) s->ready_tail = prev;
                }
                lane_free(s, l);
            }
        }
        break;
    case S_RUNNING:
        s->running--;
        sched_release(s, l);
        break;
    case S_DUE:
        unlink_from(&s->due, &s->due_tail, inf);
        sched_release(s, l);
        break;
    case S_HELD:
        sched_release(s, l);
        break;
    }
    inf->sched = S_NONE;
    inf->lane = NULL;
}

int sched_waiting(const inflight_t *inf) { return inf->sched == S_QUEUED || inf->sched == S_DUE; }

void sched_free(sched_t *s) {
    for (size_t i = 0; i < s->nbuckets; i++)
        while (s->buckets[i]) {
            lane_t *l = s->buckets[i];
            s->buckets[i] = l->next;
            free(l);
        }
    free(s->buckets);
    s->buckets = NULL;
    s->nbuckets = s->nlanes = 0;
    s->ready = s->ready_tail = NULL;
    s->fifo = s->fifo_tail = s->due = s->due_tail = NULL;
    s->running = s->queued = 0;
}
