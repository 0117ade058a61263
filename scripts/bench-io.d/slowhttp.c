/* slowhttp.c - scripts/bench-io's HTTP fixture: a server that answers every
 * request after a fixed delay, and a load generator to measure it.
 *
 *   slowhttp serve PORT DELAY_MS      prints "listening PORT" (PORT 0: any)
 *   slowhttp load HOST PORT CONNS SECONDS
 *                                     prints "requests N seconds S rate R
 *                                     errors E cpu CPU_SECONDS" (its own CPU)
 *
 * The server speaks just enough HTTP/1.1 for a benchmark: a request ends at
 * "\r\n\r\n" plus its Content-Length body; every connection is kept alive
 * and pipelined requests are answered in order.  Every request gets the same
 * small JSON body DELAY_MS after it arrived, except GET /stats, answered at
 * once with {"requests":N} (N: the delayed requests answered so far).
 *
 * The delay is a FIFO: every request waits the same time, so requests are
 * due in arrival order and one timer for the head of the queue serves them
 * all, which keeps the server's cost per request to a parse and a write.
 * It is a bench fixture, not product code. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <uv.h>

#define MAX_HEAD (64 * 1024)

static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 27\r\n"
    "Connection: keep-alive\r\n"
    "\r\n"
    "{\"ok\":true,\"delay\":\"slow\"}\n";

static uv_loop_t *loop;
static uint64_t delay_ns;
static uint64_t answered;

static void die(const char *what, int err)
{
    fprintf(stderr, "slowhttp: %s: %s\n", what, uv_strerror(err));
    exit(1);
}

/* ---- connections ---------------------------------------------------------- */

typedef struct conn {
    uv_tcp_t tcp;
    char *buf;
    size_t len, cap;
    size_t body_left; /* bytes of a request body still to skip */
    int pending;      /* queued answers that still point here */
    int closed;       /* the handle is closed; free once pending is 0 */
} conn_t;

typedef struct {
    uv_write_t req;
    uv_buf_t buf; /* owned copy for a /stats answer; NULL base for RESPONSE */
    char *owned;
} wreq_t;

static void maybe_free(conn_t *c)
{
    if (c->closed && c->pending == 0) {
        free(c->buf);
        free(c);
    }
}

static void on_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    c->closed = 1;
    maybe_free(c);
}

static void conn_close(conn_t *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_written(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    conn_t *c = req->handle->data;
    free(w->owned);
    free(w);
    if (status < 0)
        conn_close(c);
}

/* Send bytes (static or owned, freed here) in order with earlier sends: a
 * direct write when nothing is queued, the rest through uv_write. */
static void send_bytes(conn_t *c, const char *data, size_t n, char *owned)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp)) {
        free(owned);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
    int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (r == (int)n) {
        free(owned);
        return;
    }
    if (r < 0 && r != UV_EAGAIN) {
        free(owned);
        conn_close(c);
        return;
    }
    if (r > 0) {
        b.base += r;
        b.len -= (size_t)r;
    }
    wreq_t *w = malloc(sizeof *w);
    w->buf = b;
    w->owned = owned;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &w->buf, 1, on_written) < 0) {
        free(owned);
        free(w);
        conn_close(c);
    }
}

/* ---- the delay queue ------------------------------------------------------ */

typedef struct {
    conn_t *c;
    uint64_t due; /* uv_hrtime() ns */
} entry_t;

static entry_t *q;
static size_t q_cap, q_head, q_len;
static uv_timer_t q_timer;
static int q_armed;

static void q_arm(void);

static void on_due(uv_timer_t *t)
{
    (void)t;
    q_armed = 0;
    /* Due within half a millisecond counts as due: the loop's timers have
     * millisecond resolution, so the delay is DELAY_MS +- 0.5 ms, not +1. */
    uint64_t now = uv_hrtime() + 500000;
    while (q_len > 0 && q[q_head].due <= now) {
        conn_t *c = q[q_head].c;
        q_head = (q_head + 1) % q_cap;
        q_len--;
        c->pending--;
        answered++;
        send_bytes(c, RESPONSE, sizeof RESPONSE - 1, NULL);
        maybe_free(c);
    }
    q_arm();
}

static void q_arm(void)
{
    if (q_armed || q_len == 0)
        return;
    uint64_t now = uv_hrtime(), due = q[q_head].due;
    uint64_t ms = due > now ? (due - now + 500000) / 1000000 : 0;
    uv_update_time(loop);
    uv_timer_start(&q_timer, on_due, ms, 0);
    q_armed = 1;
}

static void q_push(conn_t *c)
{
    if (q_len == q_cap) {
        size_t ncap = q_cap ? q_cap * 2 : 1024;
        entry_t *n = malloc(ncap * sizeof *n);
        for (size_t i = 0; i < q_len; i++)
            n[i] = q[(q_head + i) % q_cap];
        free(q);
        q = n;
        q_cap = ncap;
        q_head = 0;
    }
    q[(q_head + q_len) % q_cap] = (entry_t){ c, uv_hrtime() + delay_ns };
    q_len++;
    c->pending++;
    q_arm();
}

/* ---- requests ------------------------------------------------------------- */

/* The Content-Length of a head (0 when absent). */
static size_t content_length(const char *head, size_t n)
{
    const char *p = head, *end = head + n;
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol)
            eol = end;
        if (eol - p > 15 && strncasecmp(p, "content-length:", 15) == 0)
            return strtoul(p + 15, NULL, 10);
        p = eol + 2;
    }
    return 0;
}

static void handle_requests(conn_t *c)
{
    size_t off = 0;
    for (;;) {
        if (c->body_left) {
            size_t take = c->len - off < c->body_left ? c->len - off : c->body_left;
            off += take;
            c->body_left -= take;
            if (c->body_left)
                break;
        }
        char *start = c->buf + off;
        size_t avail = c->len - off;
        char *end = memmem(start, avail, "\r\n\r\n", 4);
        if (!end) {
            if (avail > MAX_HEAD)
                conn_close(c);
            break;
        }
        size_t head = (size_t)(end - start) + 4;
        c->body_left = content_length(start, head);
        if (head >= 11 && memcmp(start, "GET /stats ", 11) == 0) {
            char body[64], *out = malloc(192);
            int bl = snprintf(body, sizeof body, "{\"requests\":%llu}\n", (unsigned long long)answered);
            int n = snprintf(out, 192,
                             "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             "Content-Length: %d\r\n\r\n%s",
                             bl, body);
            send_bytes(c, out, (size_t)n, out);
        } else {
            q_push(c);
        }
        off += head;
    }
    if (off) {
        memmove(c->buf, c->buf + off, c->len - off);
        c->len -= off;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    conn_t *c = h->data;
    (void)suggested;
    if (c->cap - c->len < 16384) {
        c->cap = c->cap ? c->cap * 2 : 32768;
        c->buf = realloc(c->buf, c->cap);
    }
    *b = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn_t *c = s->data;
    (void)b;
    if (n < 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)n;
    handle_requests(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    conn_t *c = calloc(1, sizeof *c);
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    fprintf(stderr, "slowhttp: answered %llu delayed requests\n", (unsigned long long)answered);
    uv_stop(s->loop);
}

static int serve(int port, int delay_ms)
{
    static uv_tcp_t server;
    static uv_signal_t sigterm, sigint;
    struct sockaddr_in addr;
    int r;
    delay_ns = (uint64_t)delay_ms * 1000000;
    uv_timer_init(loop, &q_timer);
    uv_tcp_init(loop, &server);
    uv_ip4_addr("127.0.0.1", port, &addr);
    if ((r = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0)) < 0)
        die("bind", r);
    if ((r = uv_listen((uv_stream_t *)&server, 4096, on_connection)) < 0)
        die("listen", r);
    struct sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(&server, (struct sockaddr *)&got, &len);
    printf("listening %d\n", ntohs(got.sin_port));
    fflush(stdout);
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}

/* ---- load generator ------------------------------------------------------- */

/* CONNS connections, each with one request in flight at a time, for SECONDS;
 * counts complete responses. */

typedef struct client {
    uv_tcp_t tcp;
    uv_connect_t connect;
    char buf[65536];
    size_t len;
    size_t body_left;
} client_t;

static const char REQUEST_FMT[] = "GET /item/%d HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: slowhttp\r\n\r\n";
static uint64_t responses, load_errors;
static int load_stopping;
static char request[256];
static size_t request_len;

static void client_send(client_t *k)
{
    uv_buf_t b = uv_buf_init(request, (unsigned)request_len);
    if (uv_try_write((uv_stream_t *)&k->tcp, &b, 1) != (int)request_len) {
        load_errors++;
        uv_close((uv_handle_t *)&k->tcp, NULL);
    }
}

static void client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    client_t *k = h->data;
    (void)suggested;
    *b = uv_buf_init(k->buf + k->len, (unsigned)(sizeof k->buf - k->len));
}

static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    client_t *k = s->data;
    (void)b;
    if (n < 0) {
        if (!load_stopping)
            load_errors++;
        uv_close((uv_handle_t *)&k->tcp, NULL);
        return;
    }
    k->len += (size_t)n;
    size_t off = 0;
    for (;;) {
        if (k->body_left) {
            size_t take = k->len - off < k->body_left ? k->len - off : k->body_left;
            off += take;
            k->body_left -= take;
            if (k->body_left)
                break;
            responses++;
            if (!load_stopping)
                client_send(k);
            continue;
        }
        char *end = memmem(k->buf + off, k->len - off, "\r\n\r\n", 4);
        if (!end)
            break;
        size_t head = (size_t)(end - (k->buf + off)) + 4;
        k->body_left = content_length(k->buf + off, head);
        off += head;
        if (!k->body_left) {
            responses++;
            if (!load_stopping)
                client_send(k);
        }
    }
    memmove(k->buf, k->buf + off, k->len - off);
    k->len -= off;
}

static void client_connected(uv_connect_t *req, int status)
{
    client_t *k = req->data;
    if (status < 0) {
        load_errors++;
        uv_close((uv_handle_t *)&k->tcp, NULL);
        return;
    }
    uv_tcp_nodelay(&k->tcp, 1);
    uv_read_start((uv_stream_t *)&k->tcp, client_alloc, client_read);
    client_send(k);
}

static uint64_t load_t0;

static void load_end(uv_timer_t *t)
{
    double secs = (double)(uv_hrtime() - load_t0) / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                 (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    printf("requests %llu seconds %.3f rate %.0f errors %llu cpu %.3f\n", (unsigned long long)responses,
           secs, (double)responses / secs, (unsigned long long)load_errors, cpu);
    fflush(stdout);
    load_stopping = 1;
    uv_stop(t->loop);
}

static int load(const char *host, int port, int conns, double seconds)
{
    struct sockaddr_in addr;
    static uv_timer_t timer;
    uv_ip4_addr(host, port, &addr);
    request_len = (size_t)snprintf(request, sizeof request, REQUEST_FMT, 1, host, port);
    client_t *ks = calloc((size_t)conns, sizeof *ks);
    for (int i = 0; i < conns; i++) {
        client_t *k = &ks[i];
        uv_tcp_init(loop, &k->tcp);
        k->tcp.data = k;
        k->connect.data = k;
        int r = uv_tcp_connect(&k->connect, &k->tcp, (const struct sockaddr *)&addr, client_connected);
        if (r < 0)
            die("connect", r);
    }
    load_t0 = uv_hrtime();
    uv_timer_init(loop, &timer);
    uv_timer_start(&timer, load_end, (uint64_t)(seconds * 1000), 0);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0; /* the process exits; the kernel closes the sockets */
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    if (argc == 4 && strcmp(argv[1], "serve") == 0)
        return serve(atoi(argv[2]), atoi(argv[3]));
    if (argc == 6 && strcmp(argv[1], "load") == 0)
        return load(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]));
    fprintf(stderr, "usage: slowhttp serve PORT DELAY_MS\n"
                    "       slowhttp load HOST PORT CONNS SECONDS\n");
    return 2;
}
