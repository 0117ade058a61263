/* meta.h - the meta table handlers receive: where a message came from, its
 * key, timestamp, headers, id, attempt and trace id. */
#ifndef LUKA_META_H
#define LUKA_META_H

#include <lua.h>

#include "base/message.h"

/* Push meta for m, delivered for the attempt-th time, in the trace
 * trace_id (NULL: none).
 * Stack: ... -> ..., meta */
void meta_push(lua_State *L, const message_t *m, int attempt, const char *trace_id);

/* Push a name -> value table of hdrs (may be NULL); of repeated names the
 * last wins, and a header without a value is luka.null. */
void meta_push_headers(lua_State *L, const rd_kafka_headers_t *hdrs);

#endif
