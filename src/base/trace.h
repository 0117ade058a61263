/* trace.h - W3C Trace Context (`traceparent`) for the messages luka
 * handles and publishes: parse the header of a consumed message, start a
 * trace when it has none, and write the header of what it publishes.
 * Used by the flow (one trace context per message in flight) and by
 * luka.publish. */
#ifndef LUKA_TRACE_H
#define LUKA_TRACE_H

#include <stddef.h>

#define TRACE_ID_LEN 32     /* hex digits of a trace id */
#define TRACE_SPAN_LEN 16   /* hex digits of a span (parent) id */
#define TRACEPARENT_LEN 55  /* "00-" trace "-" span "-" flags */

typedef struct trace {
    char trace_id[TRACE_ID_LEN + 1];
    char span_id[TRACE_SPAN_LEN + 1];
    char flags[3];
} trace_t;

/* Read a traceparent header's value (len bytes, not NUL-terminated) into
 * t.  Version 00 must be exactly its 55 characters; a later version is
 * read by its first 55, as the W3C recommendation says, and written back
 * as 00.  Returns 0, or -1 with why in errbuf (the value is malformed:
 * upper-case or missing hex digits, an all-zero id, version ff). */
int trace_parse(trace_t *t, const char *value, size_t len, char *errbuf, size_t errlen);

/* A new trace: new random trace and span ids, sampled. */
void trace_new(trace_t *t);

/* The next hop of t: the same trace id and flags, a new span id. */
void trace_child(trace_t *t);

/* Write t as a traceparent value and its terminating NUL into out. */
void trace_format(const trace_t *t, char out[TRACEPARENT_LEN + 1]);

#endif
