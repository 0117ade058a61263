/* http.c - the operations HTTP server on its own thread and libuv loop.
 * One request per connection (every answer says Connection: close), a
 * deadline per connection, a cap on request size and on connections, and
 * answers built only from the status the host's loop last published (and
 * the status page, which is constant). */
#include "ops/http.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <uv.h>

#include "ops/status_page.h"

#define DISCARD_SIZE 65536
#define NOT_FOUND "not found: try /, /status.json, /healthz, /readyz or /metrics\n"
/* /status.json before the loop's first document. */
#define NO_STATUS "{\"starting\":true}"

typedef struct conn conn_t;

struct http {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t wake; /* asks the server thread to stop */
    uv_thread_t thread;
    uv_mutex_t lock; /* guards what follows, up to heartbeat */
    char *metrics;
    size_t metrics_len, metrics_cap;
    char *status; /* /status.json, or NULL before the first */
    size_t status_len;
    char *readiness;
    int ready, draining;
    uint64_t heartbeat; /* uv_hrtime() of the last publish */
    /* Owned by the server thread. */
    conn_t *conns;
    int nconns;
    char discard[DISCARD_SIZE]; /* where bytes after a request go */
};

enum { READING, ANSWERING, DONE };

struct conn {
    uv_tcp_t tcp;
    uv_timer_t deadline;
    uv_write_t write;
    uv_shutdown_t shutdown;
    http_t *srv;
    conn_t *prev, *next;
    int state;
    int open_handles; /* freed when both handles have closed */
    char *answer;
    size_t len;
    char buf[HTTP_REQUEST_MAX];
};

static void conn_freed(uv_handle_t *h) {
    conn_t *c = h->data;
    if (--c->open_handles == 0) {
        free(c->answer);
        free(c);
    }
}

static void conn_close(conn_t *c) {
    http_t *s = c->srv;
    if (c->state == DONE && uv_is_closing((uv_handle_t *)&c->tcp)) return;
    c->state = DONE;
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    uv_close((uv_handle_t *)&c->tcp, conn_freed);
    uv_close((uv_handle_t *)&c->deadline, conn_freed);
}

static void on_deadline(uv_timer_t *t) { conn_close(t->data); }

static void on_shutdown(uv_shutdown_t *req, int status) {
    (void)req, (void)status;
    /* The client has the answer and our FIN; it closes, and on_read sees
     * the end.  The deadline still bounds a client that never does. */
}

static void on_written(uv_write_t *req, int status) {
    conn_t *c = req->data;
    if (status < 0) {
        if (c->state != DONE) conn_close(c);
        return;
    }
    /* Half-close and keep reading until the client closes: closing with
     * unread bytes would reset the connection and could cut the answer. */
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) < 0) conn_close(c);
}

static const char *reason_phrase(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

static void answer(conn_t *c, int status, const char *type, const char *body, size_t len,
                   int head_only) {
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n"
                     "%s"
                     "Connection: close\r\n\r\n",
                     status, reason_phrase(status), type, len,
                     status == 405 ? "Allow: GET, HEAD\r\n" : "");
    uv_buf_t buf;

    if (head_only) len = 0;
    c->answer = malloc((size_t)n + len);
    memcpy(c->answer, head, (size_t)n);
    if (len) memcpy(c->answer + n, body, len);
    buf = uv_buf_init(c->answer, (unsigned)((size_t)n + len));
    c->state = ANSWERING;
    c->write.data = c;
    if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1, on_written) < 0) conn_close(c);
}

static void answer_text(conn_t *c, int status, const char *text) {
    answer(c, status, "text/plain; charset=utf-8", text, strlen(text), 0);
}

static int tchar(unsigned char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* The end of line at p (before "\r\n" or "\n"), and where the next starts. */
static char *line_end(char *p, char **next) {
    char *nl = strchr(p, '\n');
    *next = nl + 1;
    if (nl > p && nl[-1] == '\r') nl--;
    return nl;
}

static void serve_healthz(conn_t *c, int head_only) {
    http_t *s = c->srv;
    char body[160];
    int status;
    uint64_t age_ms;

    uv_mutex_lock(&s->lock);
    age_ms = (uv_hrtime() - s->heartbeat) / 1000000;
    if (s->draining) {
        status = 200;
        snprintf(body, sizeof(body), "{\"healthy\":true,\"draining\":true}");
    } else if (age_ms > HTTP_STALE_MS) {
        status = 503;
        snprintf(body, sizeof(body),
                 "{\"healthy\":false,\"reason\":\"the event loop has not run for %llu ms\"}",
                 (unsigned long long)age_ms);
    } else {
        status = 200;
        snprintf(body, sizeof(body), "{\"healthy\":true,\"heartbeat_age_ms\":%llu}",
                 (unsigned long long)age_ms);
    }
    uv_mutex_unlock(&s->lock);
    answer(c, status, "application/json", body, strlen(body), head_only);
}

static void serve_readyz(conn_t *c, int head_only) {
    http_t *s = c->srv;
    uint64_t age_ms;
    uv_mutex_lock(&s->lock);
    age_ms = (uv_hrtime() - s->heartbeat) / 1000000;
    if (age_ms > HTTP_STALE_MS && !s->draining) {
        /* What was published is stale: nothing is being consumed. */
        char body[160];
        snprintf(body, sizeof(body),
                 "{\"ready\":false,\"reason\":\"the event loop has not run for %llu ms\"}",
                 (unsigned long long)age_ms);
        answer(c, 503, "application/json", body, strlen(body), head_only);
    } else {
        answer(c, s->ready ? 200 : 503, "application/json", s->readiness, strlen(s->readiness),
               head_only);
    }
    uv_mutex_unlock(&s->lock);
}

static void serve_metrics(conn_t *c, int head_only) {
    http_t *s = c->srv;
    uv_mutex_lock(&s->lock);
    answer(c, 200, "text/plain; version=0.0.4; charset=utf-8", s->metrics ? s->metrics : "",
           s->metrics_len, head_only);
    uv_mutex_unlock(&s->lock);
}

static void serve_status(conn_t *c, int head_only) {
    http_t *s = c->srv;
    uv_mutex_lock(&s->lock);
    if (s->status)
        answer(c, 200, "application/json", s->status, s->status_len, head_only);
    else
        answer(c, 200, "application/json", NO_STATUS, sizeof(NO_STATUS) - 1, head_only);
    uv_mutex_unlock(&s->lock);
}

/* A complete request head is in c->buf, NUL-terminated: check it and
 * answer it. */
static void serve(conn_t *c) {
    char *p = c->buf, *next, *end, *method, *target, *version, *q;
    int http11, has_host = 0, head_only;
    size_t plen;

    /* Request line: METHOD SP TARGET SP HTTP/1.x */
    end = line_end(p, &next);
    *end = '\0';
    method = p;
    if (!(target = strchr(method, ' ')) || target == method) goto bad;
    *target++ = '\0';
    if (!(version = strchr(target, ' '))) goto bad;
    *version++ = '\0';
    for (q = method; *q; q++)
        if (!tchar((unsigned char)*q)) goto bad;
    if (target[0] != '/') goto bad;
    for (q = target; *q; q++)
        if ((unsigned char)*q <= ' ' || *q == 0x7f) goto bad;
    if (strcmp(version, "HTTP/1.1") == 0) http11 = 1;
    else if (strcmp(version, "HTTP/1.0") == 0) http11 = 0;
    else goto bad;

    /* Headers: NAME ":" VALUE, no folding, until the empty line. */
    for (p = next; *p != '\r' && *p != '\n'; p = next) {
        char *colon;
        end = line_end(p, &next);
        *end = '\0';
        if (!(colon = strchr(p, ':')) || colon == p) goto bad;
        for (q = p; q < colon; q++)
            if (!tchar((unsigned char)*q)) goto bad;
        for (q = colon + 1; *q; q++)
            if (((unsigned char)*q < ' ' && *q != '\t') || *q == 0x7f) goto bad;
        if ((size_t)(colon - p) == 4 && strncasecmp(p, "host", 4) == 0) has_host++;
    }
    /* RFC 9112 3.2: exactly one Host in an HTTP/1.1 request. */
    if (http11 && has_host != 1) goto bad;

    if (strcmp(method, "GET") == 0) head_only = 0;
    else if (strcmp(method, "HEAD") == 0) head_only = 1;
    else {
        answer_text(c, 405, "only GET and HEAD are served\n");
        return;
    }
    plen = strcspn(target, "?");
    if (plen == 8 && strncmp(target, "/healthz", plen) == 0) serve_healthz(c, head_only);
    else if (plen == 7 && strncmp(target, "/readyz", plen) == 0) serve_readyz(c, head_only);
    else if (plen == 8 && strncmp(target, "/metrics", plen) == 0) serve_metrics(c, head_only);
    else if (plen == 12 && strncmp(target, "/status.json", plen) == 0) serve_status(c, head_only);
    else if (plen == 1) answer(c, 200, "text/html; charset=utf-8", status_page, status_page_len, head_only);
    else answer(c, 404, "text/plain; charset=utf-8", NOT_FOUND, sizeof(NOT_FOUND) - 1, head_only);
    return;
bad:
    answer_text(c, 400, "malformed request\n");
}

/* Where the head ends: after "\r\n\r\n" or "\n\n" (RFC 9112 lets a server
 * take a bare LF as a line end).  NULL while incomplete. */
static char *head_end(char *buf, size_t len) {
    for (size_t i = 1; i < len; i++) {
        if (buf[i] != '\n') continue;
        if (buf[i - 1] == '\n') return buf + i + 1;
        if (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n') return buf + i + 1;
    }
    return NULL;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    conn_t *c = h->data;
    (void)suggested;
    if (c->state == READING) *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - 1 - c->len));
    else *buf = uv_buf_init(c->srv->discard, sizeof(c->srv->discard));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    conn_t *c = stream->data;
    char *end;
    (void)buf;
    if (nread < 0) {
        /* The client went away; an answer being written is cancelled. */
        if (c->state != DONE) conn_close(c);
        return;
    }
    if (c->state != READING) return;
    c->len += (size_t)nread;
    c->buf[c->len] = '\0';
    if (memchr(c->buf, '\0', c->len)) {
        answer_text(c, 400, "malformed request\n");
    } else if ((end = head_end(c->buf, c->len))) {
        *end = '\0';
        serve(c);
    } else if (c->len == sizeof(c->buf) - 1) {
        answer_text(c, 431, "request head larger than 8 KiB\n");
    }
}

static void on_connection(uv_stream_t *listener, int status) {
    http_t *s = listener->data;
    conn_t *c;

    if (status < 0) return;
    c = calloc(1, sizeof(*c));
    c->srv = s;
    uv_tcp_init(&s->loop, &c->tcp);
    uv_timer_init(&s->loop, &c->deadline);
    c->tcp.data = c->deadline.data = c;
    c->open_handles = 2;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0) {
        c->state = DONE;
        uv_close((uv_handle_t *)&c->tcp, conn_freed);
        uv_close((uv_handle_t *)&c->deadline, conn_freed);
        return;
    }
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    if (s->nconns > HTTP_MAX_CONNS) {
        /* Make room by closing the oldest connection still waiting for its
         * request: a flood of idle connections then cannot lock out a
         * probe, which sends its request at once. */
        conn_t *oldest = NULL;
        for (conn_t *o = c->next; o; o = o->next)
            if (o->state == READING) oldest = o;
        conn_close(oldest ? oldest : c);
        if (!oldest) return;
    }
    uv_timer_start(&c->deadline, on_deadline, HTTP_TIMEOUT_MS, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) conn_close(c);
}

static void on_wake(uv_async_t *a) {
    http_t *s = a->data;
    while (s->conns) conn_close(s->conns);
    uv_close((uv_handle_t *)&s->listener, NULL);
    uv_close((uv_handle_t *)&s->wake, NULL);
}

static void run(void *arg) {
    http_t *s = arg;
    uv_run(&s->loop, UV_RUN_DEFAULT);
}

/* Split "HOST:PORT" / "[V6]:PORT" and resolve it for binding. */
static int resolve(const char *addr, struct sockaddr_storage *ss, char *errbuf, size_t errlen) {
    char host[256];
    const char *colon = strrchr(addr, ':'), *h = addr, *port;
    size_t hlen;
    struct addrinfo hints, *res = NULL;
    int rc;

    if (!colon || !colon[1]) goto malformed;
    port = colon + 1;
    hlen = (size_t)(colon - addr);
    if (hlen >= 2 && addr[0] == '[' && colon[-1] == ']') h = addr + 1, hlen -= 2;
    if (hlen >= sizeof(host)) goto malformed;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    for (const char *d = port; *d; d++)
        if (*d < '0' || *d > '9') goto malformed;
    if (atol(port) > 65535) goto malformed;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host[0] && strcmp(host, "*") ? host : NULL, port, &hints, &res);
    if (rc != 0) {
        snprintf(errbuf, errlen, "--http %s: cannot resolve '%s': %s", addr, host, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
malformed:
    snprintf(errbuf, errlen, "--http takes HOST:PORT (such as 0.0.0.0:9090), got '%s'", addr);
    return -1;
}

http_t *http_start(const char *addr, char *errbuf, size_t errlen) {
    http_t *s;
    struct sockaddr_storage ss;
    int rc;

    if (resolve(addr, &ss, errbuf, errlen)) return NULL;
    s = calloc(1, sizeof(*s));
    uv_loop_init(&s->loop);
    uv_mutex_init(&s->lock);
    s->readiness = strdup("{\"ready\":false,\"reason\":\"starting\"}");
    s->heartbeat = uv_hrtime();
    uv_tcp_init(&s->loop, &s->listener);
    s->listener.data = s;
    if ((rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&s->listener, 128, on_connection)) < 0) {
        snprintf(errbuf, errlen, "--http %s: cannot listen: %s", addr, uv_strerror(rc));
        uv_close((uv_handle_t *)&s->listener, NULL);
        goto fail;
    }
    uv_async_init(&s->loop, &s->wake, on_wake);
    s->wake.data = s;
    /* The handles were made on this thread; from here on only the server
     * thread touches the loop (thread creation orders the two). */
    if ((rc = uv_thread_create(&s->thread, run, s)) < 0) {
        snprintf(errbuf, errlen, "--http %s: cannot start its thread: %s", addr, uv_strerror(rc));
        uv_close((uv_handle_t *)&s->listener, NULL);
        uv_close((uv_handle_t *)&s->wake, NULL);
        goto fail;
    }
    return s;
fail:
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    uv_mutex_destroy(&s->lock);
    free(s->readiness);
    free(s);
    return NULL;
}

void http_publish(http_t *s, const http_status_t *st) {
    char *readiness = strdup(st->readiness), *status = NULL;
    /* Copied before taking the lock, which the server thread waits on. */
    if (st->status) {
        status = malloc(st->status_len + 1);
        memcpy(status, st->status, st->status_len);
        status[st->status_len] = '\0';
    }
    uv_mutex_lock(&s->lock);
    if (st->metrics && st->metrics_len + 1 > s->metrics_cap) {
        free(s->metrics);
        s->metrics_cap = st->metrics_len + 1 + st->metrics_len / 4;
        s->metrics = malloc(s->metrics_cap);
    }
    if (st->metrics) {
        memcpy(s->metrics, st->metrics, st->metrics_len);
        s->metrics[st->metrics_len] = '\0';
        s->metrics_len = st->metrics_len;
    }
    if (status) {
        free(s->status);
        s->status = status;
        s->status_len = st->status_len;
    }
    free(s->readiness);
    s->readiness = readiness;
    s->ready = st->ready;
    s->draining = st->draining;
    s->heartbeat = uv_hrtime();
    uv_mutex_unlock(&s->lock);
}

void http_stop(http_t *s) {
    if (!s) return;
    uv_async_send(&s->wake);
    uv_thread_join(&s->thread);
    if (uv_loop_close(&s->loop) != 0) {
        /* Cannot happen: on_wake closes every handle.  Leak rather than
         * free memory the loop still points at. */
        return;
    }
    uv_mutex_destroy(&s->lock);
    free(s->metrics);
    free(s->status);
    free(s->readiness);
    free(s);
}
