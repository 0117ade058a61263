/* httpc_multi.c - a libcurl multi handle per loop, driven by the loop.
 *
 * curl says which sockets to watch (CURLMOPT_SOCKETFUNCTION: a uv_poll
 * each) and when to call it anyway (CURLMOPT_TIMERFUNCTION: one uv_timer);
 * both call curl_multi_socket_action, and what that finished is read with
 * curl_multi_info_read and handed to its owner.  Nothing here calls curl
 * from inside curl's own callbacks. */
#include "api/httpc_multi.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/log.h"

#define LINK(head, x)                 \
    do {                              \
        (x)->prev = NULL;             \
        (x)->next = (head);           \
        if (head) (head)->prev = (x); \
        (head) = (x);                 \
    } while (0)
#define UNLINK(head, x)                             \
    do {                                            \
        if ((x)->prev) (x)->prev->next = (x)->next; \
        else (head) = (x)->next;                    \
        if ((x)->next) (x)->next->prev = (x)->prev; \
    } while (0)

/* A socket curl wants watched. */
typedef struct sock {
    uv_poll_t poll;
    curl_socket_t fd;
    httpc_multi_t *m;
    struct sock *prev, *next;
} sock_t;

struct httpc_multi {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    sock_t *socks;      /* watched now */
    httpc_xfer_t *xfers; /* added now */
    httpc_multi_t *next;
};

static httpc_multi_t *multis;
static int curl_ready;

static void free_data(uv_handle_t *handle) { free(handle->data); }

static void sock_close(sock_t *s) {
    UNLINK(s->m->socks, s);
    uv_close((uv_handle_t *)&s->poll, free_data);
}

/* Hand every transfer curl has finished to its owner. */
static void check_done(httpc_multi_t *m) {
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(m->multi, &left))) {
        char *x;
        if (msg->msg != CURLMSG_DONE) continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &x);
        ((httpc_xfer_t *)x)->done((httpc_xfer_t *)x, msg->data.result);
    }
}

static void on_poll(uv_poll_t *p, int status, int events) {
    sock_t *s = p->data;
    httpc_multi_t *m = s->m;
    int flags = 0, running;

    if (status < 0) flags |= CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    /* s may be closed inside: curl can give the socket up. */
    curl_multi_socket_action(m->multi, s->fd, flags, &running);
    check_done(m);
}

static void on_timer(uv_timer_t *t) {
    httpc_multi_t *m = t->data;
    int running;

    curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(m);
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for what curl waits on, or stop. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *ud, void *sockp) {
    httpc_multi_t *m = ud;
    sock_t *s = sockp;
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        /* Stopped now, before curl closes fd, whose number may soon be
         * another socket's. */
        if (s) {
            curl_multi_assign(m->multi, fd, NULL);
            sock_close(s);
        }
        return 0;
    }
    if (!s) {
        if (!(s = calloc(1, sizeof(*s)))) return -1;
        if (uv_poll_init_socket(m->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->fd = fd;
        s->m = m;
        s->poll.data = s;
        LINK(m->socks, s);
        curl_multi_assign(m->multi, fd, s);
    }
    if (what & CURL_POLL_IN) events |= UV_READABLE;
    if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
    return uv_poll_start(&s->poll, events, on_poll) == 0 ? 0 : -1;
}

/* CURLMOPT_TIMERFUNCTION.  A timeout of 0 goes through the timer too, so
 * curl is called on the loop's next turn, never from inside itself. */
static int on_curl_timer(CURLM *multi, long ms, void *ud) {
    httpc_multi_t *m = ud;

    (void)multi;
    if (ms < 0) uv_timer_stop(&m->timer);
    else uv_timer_start(&m->timer, on_timer, (uint64_t)ms, 0);
    return 0;
}

/* The multi handle of loop, made on first use; NULL with err filled. */
static httpc_multi_t *multi_of(uv_loop_t *loop, char *err, size_t errlen) {
    httpc_multi_t *m;

    for (m = multis; m; m = m->next)
        if (m->loop == loop) return m;
    if (!curl_ready) {
        CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
        if (rc != CURLE_OK) {
            snprintf(err, errlen, "libcurl: %s", curl_easy_strerror(rc));
            return NULL;
        }
        curl_ready = 1;
    }
    if (!(m = calloc(1, sizeof(*m))) || !(m->multi = curl_multi_init())) {
        free(m);
        snprintf(err, errlen, "libcurl: out of memory");
        return NULL;
    }
    m->loop = loop;
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
    uv_timer_init(loop, &m->timer);
    m->timer.data = m;
    m->next = multis;
    multis = m;
    return m;
}

int httpc_multi_add(uv_loop_t *loop, httpc_xfer_t *x, char *err, size_t errlen) {
    httpc_multi_t *m = multi_of(loop, err, errlen);
    CURLMcode rc;

    if (!m) return -1;
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, (char *)x);
    /* Only sets curl's timer: the transfer starts on the loop. */
    if ((rc = curl_multi_add_handle(m->multi, x->easy)) != CURLM_OK) {
        snprintf(err, errlen, "%s", curl_multi_strerror(rc));
        return -1;
    }
    x->m = m;
    LINK(m->xfers, x);
    return 0;
}

void httpc_multi_remove(httpc_xfer_t *x) {
    if (!x->m) return;
    curl_multi_remove_handle(x->m->multi, x->easy);
    UNLINK(x->m->xfers, x);
    x->m = NULL;
}

static void close_multi(httpc_multi_t *m) {
    int cut = 0;

    for (; m->xfers; cut++) httpc_multi_remove(m->xfers);
    if (cut) log_warn("http", "%d request(s) cut off by the shutdown", cut);
    /* Closing its connections may still call on_socket. */
    curl_multi_cleanup(m->multi);
    while (m->socks) sock_close(m->socks);
    uv_close((uv_handle_t *)&m->timer, free_data);
}

void httpc_multi_close_loop(uv_loop_t *loop) {
    for (httpc_multi_t **p = &multis; *p; p = &(*p)->next)
        if ((*p)->loop == loop) {
            httpc_multi_t *m = *p;
            *p = m->next;
            close_multi(m);
            return;
        }
}

void httpc_multi_shutdown(void) {
    while (multis) {
        httpc_multi_t *m = multis;
        multis = m->next;
        close_multi(m);
    }
    if (curl_ready) curl_global_cleanup();
    curl_ready = 0;
}
