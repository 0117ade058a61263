/* meta.h - the meta table handlers receive: where a message came from, its
 * key, timestamp, headers, id, attempt and trace id. */
#ifndef LUKA_META_H
#define LUKA_META_H

#include <lua.h>

#include "base/message.h"

/* The trace id of the message at topic, partition and offset if its code
 * runs now, else NULL: meta.trace_id, read on first use. */
typedef const char *(*meta_trace_fn)(const char *topic, int32_t partition, int64_t offset);

/* meta:pause(ms): pause the partition of the message at topic, partition
 * and offset for ms and deliver it again after, if its handler runs now.
 * Returns 0, or -1 when it is not (the caller raises). */
typedef int (*meta_pause_fn)(const char *topic, int32_t partition, int64_t offset, int64_t ms);

/* Where meta:pause goes: set by the flow before it pushes meta. */
void meta_set_pause(meta_pause_fn fn);

/* Push meta for m, delivered for the attempt-th time; trace gives its
 * trace_id.
 * Stack: ... -> ..., meta */
void meta_push(lua_State *L, const message_t *m, int attempt, meta_trace_fn trace);

/* Push a name -> value table of hdrs (may be NULL); of repeated names the
 * last wins, and a header without a value is luka.null. */
void meta_push_headers(lua_State *L, const rd_kafka_headers_t *hdrs);

#endif
