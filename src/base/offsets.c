/* offsets.c - per-partition completion tracking: a ring of offsets in the
 * order they were taken, with a state each.  The front is popped while it
 * is not pending, and the commit offset follows the done ones. */
#include "base/offsets.h"

#include <stdlib.h>
#include <string.h>

offsets_t *offsets_new(const char *topic, int32_t partition) {
    offsets_t *o = calloc(1, sizeof(*o));
    o->topic = strdup(topic);
    o->partition = partition;
    o->cap = 64;
    o->offs = malloc(o->cap * sizeof(*o->offs));
    o->done = malloc(o->cap);
    o->commit = -1;
    o->stored = -1;
    o->refs = 1;
    return o;
}

static void grow(offsets_t *o) {
    size_t cap = o->cap * 2;
    int64_t *offs = malloc(cap * sizeof(*offs));
    uint8_t *done = malloc(cap);
    for (size_t i = 0; i < o->len; i++) {
        size_t j = (o->head + i) % o->cap;
        offs[i] = o->offs[j];
        done[i] = o->done[j];
    }
    free(o->offs);
    free(o->done);
    o->offs = offs;
    o->done = done;
    o->cap = cap;
    o->head = 0;
}

uint64_t offsets_track(offsets_t *o, int64_t offset) {
    if (o->len == o->cap) grow(o);
    size_t j = (o->head + o->len) % o->cap;
    o->offs[j] = offset;
    o->done[j] = OFFSET_PENDING;
    o->len++;
    return o->first + o->len - 1;
}

static uint8_t *entry(offsets_t *o, uint64_t seq) {
    if (seq < o->first || seq >= o->first + o->len) return NULL;
    return &o->done[(o->head + (seq - o->first)) % o->cap];
}

int offsets_done(offsets_t *o, uint64_t seq) {
    uint8_t *e = entry(o, seq);
    int moved = 0;
    if (o->revoked || !e || *e != OFFSET_PENDING) return 0;
    *e = OFFSET_DONE;
    while (o->len && o->done[o->head] != OFFSET_PENDING) {
        if (o->done[o->head] == OFFSET_DONE) o->commit = o->offs[o->head] + 1, moved = 1;
        o->head = (o->head + 1) % o->cap;
        o->first++;
        o->len--;
    }
    return moved;
}

void offsets_void_from(offsets_t *o, uint64_t seq) {
    for (uint8_t *e; (e = entry(o, seq)); seq++) *e = OFFSET_VOID;
}

void offsets_ref(offsets_t *o) { o->refs++; }

void offsets_unref(offsets_t *o) {
    if (--o->refs > 0) return;
    free(o->topic);
    free(o->offs);
    free(o->done);
    free(o);
}
