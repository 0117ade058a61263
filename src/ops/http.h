/* http.h - luka's operations endpoint: a small HTTP/1.1 server on a thread
 * and a libuv loop of its own, answering /healthz, /readyz, /metrics, the
 * status page (/) and /status.json from what the host's loop last
 * published.  Being on its own thread, it
 * still answers (503) when the host's loop is stalled.  It serves nothing
 * that changes state. */
#ifndef LUKA_HTTP_H
#define LUKA_HTTP_H

#include <stddef.h>

/* /healthz answers 503 once the last heartbeat is older than this. */
#define HTTP_STALE_MS 5000
/* A connection gets this long to send its request and read the answer. */
#define HTTP_TIMEOUT_MS 5000
/* Largest request head (request line and headers); larger gets 431. */
#define HTTP_REQUEST_MAX 8192
/* Connections open at once; beyond, the newest is closed at once. */
#define HTTP_MAX_CONNS 256

typedef struct http http_t;

/* What the host's loop publishes, copied by http_publish. */
typedef struct http_status {
    const char *metrics; /* the /metrics text; NULL keeps the last one */
    size_t metrics_len;
    const char *status; /* the /status.json document; NULL keeps the last one */
    size_t status_len;
    int ready;             /* /readyz answers 200 */
    const char *readiness; /* /readyz's JSON body */
    int draining;          /* shutting down: /healthz stays 200 */
} http_status_t;

/* Listen on addr, "HOST:PORT" ("[V6]:PORT" for IPv6; an empty HOST or "*"
 * for every interface), and serve from a new thread.  Until the first
 * http_publish, /readyz answers 503 and /healthz 200.  Returns NULL with
 * errbuf set when addr is malformed or cannot be bound. */
http_t *http_start(const char *addr, char *errbuf, size_t errlen);

/* Replace what the server answers with, and beat the heartbeat. */
void http_publish(http_t *s, const http_status_t *st);

/* Close every connection, join the thread and free the server. */
void http_stop(http_t *s);

#endif
