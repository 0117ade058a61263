/* meta.h - the meta table handlers receive: where a message came from, its
 * key, timestamp, headers, id, attempt and trace id. */
#ifndef LUKA_META_H
#define LUKA_META_H

#include <lua.h>

#include "base/message.h"

/* The trace id of the message at topic, partition and offset if its code
 * runs now, else NULL: meta.trace_id, read on first use. */
typedef const char *(*meta_trace_fn)(const char *topic, int32_t partition, int64_t offset);

/* Push meta for m, delivered for the attempt-th time; trace gives its
 * trace_id.
 * Stack: ... -> ..., meta */
void meta_push(lua_State *L, const message_t *m, int attempt, meta_trace_fn trace);

/* Push a name -> value table of hdrs (may be NULL); of repeated names the
 * last wins, and a header without a value is luka.null. */
void meta_push_headers(lua_State *L, const rd_kafka_headers_t *hdrs);

#endif
