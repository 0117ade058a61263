/* offsets.h - which offsets of a partition are done, so that only the
 * contiguous done prefix is ever committed.
 *
 * Messages are tracked in the order they are taken from the consumer and
 * may finish in any order (a handler returns, then its publishes are
 * acknowledged).  The committable offset is the one after the last message
 * of the longest finished prefix. */
#ifndef LUKA_OFFSETS_H
#define LUKA_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

enum { OFFSET_PENDING, OFFSET_DONE, OFFSET_VOID };

typedef struct offsets {
    char *topic;
    int32_t partition;
    int64_t *offs;   /* ring of tracked offsets, oldest first */
    uint8_t *done;   /* OFFSET_* state of each entry, same ring */
    size_t cap, len; /* ring capacity and entries in use */
    size_t head;     /* ring index of the oldest entry */
    uint64_t first;  /* sequence number of the oldest entry */
    int64_t commit;  /* offset to commit next, or -1 when nothing is done */
    int64_t stored;  /* the last commit offset handed to librdkafka */
    int refs;        /* the endpoint's own plus one per message in flight */
    int revoked;     /* no longer assigned: completions change nothing */
} offsets_t;

offsets_t *offsets_new(const char *topic, int32_t partition);

/* Start tracking a message; returns its sequence number. */
uint64_t offsets_track(offsets_t *o, int64_t offset);

/* Mark a tracked message done; returns 1 if the commit offset moved. */
int offsets_done(offsets_t *o, uint64_t seq);

/* Void the message seq and every one tracked after it: they will be
 * delivered again (after a seek back) and tracked anew.  A void entry
 * neither holds the commit back nor moves it, and marking it done later
 * changes nothing. */
void offsets_void_from(offsets_t *o, uint64_t seq);

void offsets_ref(offsets_t *o);
void offsets_unref(offsets_t *o);

#endif
