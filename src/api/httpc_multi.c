/* httpc_multi.c - a libcurl multi handle per loop, driven by the loop.
 *
 * curl says which sockets to watch (CURLMOPT_SOCKETFUNCTION: a uv_poll
 * each) and when to call it anyway (CURLMOPT_TIMERFUNCTION: one uv_timer);
 * both call curl_multi_socket_action, and what that finished is read with
 * curl_multi_info_read and handed to its owner.  Nothing here calls curl
 * from inside curl's own callbacks.
 *
 * A kept-alive connection keeps its watcher between requests: curl stops
 * watching the socket when a transfer ends and asks again when the next
 * one picks it, and every uv_poll_stop or restart costs epoll_ctl calls.
 * The watcher goes when curl closes the socket, which it does through
 * this file's CURLOPT_CLOSESOCKETFUNCTION.  Ended transfers are kept
 * for the next request too (an easy handle is costly to make). */
#include "api/httpc_multi.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"

/* Ended transfers kept per multi handle, for the next requests. */
#define POOL_MAX 256

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

/* A socket curl watches, or did and may again. */
typedef struct sock {
    uv_poll_t poll;
    curl_socket_t fd;
    httpc_multi_t *m;
    int events; /* what poll watches now */
    int wanted; /* curl watches it now */
    int ours;   /* made by open_socket: curl closes it with close_socket */
    int read;   /* curl has waited to read it: connected and in use */
} sock_t;

struct httpc_multi {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    sock_t **byfd; /* the watchers, by socket */
    size_t nbyfd;
    httpc_xfer_t *xfers; /* added now */
    httpc_xfer_t *idle;  /* ended, to run again */
    int nidle;
    httpc_multi_t *next;
};

static httpc_multi_t *multis;
static int curl_ready;

static void free_sock(uv_handle_t *handle) { free(handle->data); }

static sock_t *sock_of(httpc_multi_t *m, curl_socket_t fd) {
    return fd >= 0 && (size_t)fd < m->nbyfd ? m->byfd[fd] : NULL;
}

static sock_t *sock_new(httpc_multi_t *m, curl_socket_t fd) {
    sock_t *s;

    if (fd < 0) return NULL;
    if ((size_t)fd >= m->nbyfd) {
        size_t n = m->nbyfd ? m->nbyfd : 64;
        sock_t **byfd;
        while (n <= (size_t)fd) n *= 2;
        if (!(byfd = realloc(m->byfd, n * sizeof(*byfd)))) return NULL;
        memset(byfd + m->nbyfd, 0, (n - m->nbyfd) * sizeof(*byfd));
        m->byfd = byfd;
        m->nbyfd = n;
    }
    if (!(s = calloc(1, sizeof(*s)))) return NULL;
    if (uv_poll_init_socket(m->loop, &s->poll, fd) != 0) {
        free(s);
        return NULL;
    }
    s->fd = fd;
    s->m = m;
    s->poll.data = s;
    m->byfd[fd] = s;
    return s;
}

/* Stop and close s's watcher, before its socket number can be another's. */
static void sock_close(sock_t *s) {
    s->m->byfd[s->fd] = NULL;
    uv_close((uv_handle_t *)&s->poll, free_sock);
}

static void on_poll(uv_poll_t *p, int status, int events);

/* Make s watch events.  uv_poll_start takes the socket out of epoll and
 * puts it back even when the events are the same, so only a change
 * touches it.  0, or -1. */
static int watch(sock_t *s, int events) {
    int rc;

    if (events == s->events) return 0;
    rc = events ? uv_poll_start(&s->poll, events, on_poll) : uv_poll_stop(&s->poll);
    if (rc != 0) return -1;
    s->events = events;
    return 0;
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

    if (!s->wanted) {
        /* An idle kept-alive connection that became readable: the server
         * closed it, most likely.  curl finds out when it next picks it;
         * until then the watcher must not fire again. */
        watch(s, 0);
        return;
    }
    if (status < 0) flags |= CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    /* s may be closed inside: curl can close the socket. */
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
    sock_t *s = sock_of(m, fd);
    int events = 0;

    (void)easy;
    (void)sockp;
    if (what == CURL_POLL_REMOVE) {
        if (!s) return 0;
        s->wanted = 0;
        /* A connection curl has read from keeps its watcher, reading,
         * for the next request: curl closes it through close_socket.  A
         * socket that never got so far (one that lost a connect race,
         * the resolver's) curl may close without a word, so its watcher
         * goes now, before the number is another socket's. */
        if (s->ours && s->read) {
            /* Idle, it must not keep the loop running. */
            uv_unref((uv_handle_t *)&s->poll);
            return watch(s, UV_READABLE);
        }
        sock_close(s);
        return 0;
    }
    if (!s && !(s = sock_new(m, fd))) return -1;
    if (!s->wanted) uv_ref((uv_handle_t *)&s->poll);
    s->wanted = 1;
    if (what & CURL_POLL_IN) {
        events |= UV_READABLE;
        s->read = 1;
    }
    if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
    return watch(s, events);
}

/* CURLOPT_OPENSOCKETFUNCTION: curl's own socket call, noting the socket
 * as one whose close this file hears of. */
static curl_socket_t open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a) {
    httpc_multi_t *m = ud;
    curl_socket_t fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    sock_t *s;

    (void)purpose;
    if (fd == CURL_SOCKET_BAD) return fd;
    /* A watcher left on this number belongs to a socket closed since. */
    if ((s = sock_of(m, fd))) sock_close(s);
    if (!(s = sock_new(m, fd))) {
        close(fd);
        return CURL_SOCKET_BAD;
    }
    s->ours = 1;
    return fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION: the watcher goes first, then the socket. */
static int close_socket(void *ud, curl_socket_t fd) {
    sock_t *s = sock_of(ud, fd);

    if (s) sock_close(s);
    return close(fd);
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

static httpc_multi_t *find(uv_loop_t *loop) {
    httpc_multi_t *m;

    for (m = multis; m; m = m->next)
        if (m->loop == loop) return m;
    return NULL;
}

/* The multi handle of loop, made on first use; NULL with err filled. */
static httpc_multi_t *multi_of(uv_loop_t *loop, char *err, size_t errlen) {
    httpc_multi_t *m = find(loop);

    if (m) return m;
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

httpc_xfer_t *httpc_multi_reuse(uv_loop_t *loop) {
    httpc_multi_t *m = find(loop);
    httpc_xfer_t *x = m ? m->idle : NULL;

    if (!x) return NULL;
    UNLINK(m->idle, x);
    m->nidle--;
    return x;
}

int httpc_multi_add(uv_loop_t *loop, httpc_xfer_t *x, char *err, size_t errlen) {
    httpc_multi_t *m = multi_of(loop, err, errlen);
    CURLMcode rc;

    if (!m) return -1;
    if (x->home != m) {
        /* Once per easy handle: a kept one stays with its multi. */
        curl_easy_setopt(x->easy, CURLOPT_PRIVATE, (char *)x);
        curl_easy_setopt(x->easy, CURLOPT_OPENSOCKETFUNCTION, open_socket);
        curl_easy_setopt(x->easy, CURLOPT_OPENSOCKETDATA, m);
        curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
        curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETDATA, m);
        x->home = m;
    }
    /* Only sets curl's timer: the transfer starts on the loop. */
    if ((rc = curl_multi_add_handle(m->multi, x->easy)) != CURLM_OK) {
        snprintf(err, errlen, "%s", curl_multi_strerror(rc));
        return -1;
    }
    x->m = m;
    LINK(m->xfers, x);
    return 0;
}

/* Take x out of its multi handle, if it is in one; done is not called. */
static void remove_xfer(httpc_xfer_t *x) {
    if (!x->m) return;
    curl_multi_remove_handle(x->m->multi, x->easy);
    UNLINK(x->m->xfers, x);
    x->m = NULL;
}

void httpc_multi_release(httpc_xfer_t *x) {
    httpc_multi_t *m = x->home;

    remove_xfer(x);
    if (m && m->nidle < POOL_MAX) {
        LINK(m->idle, x);
        m->nidle++;
        return;
    }
    x->free_xfer(x);
}

static void free_multi(uv_handle_t *handle) {
    httpc_multi_t *m = handle->data;

    free(m->byfd);
    free(m);
}

static void close_multi(httpc_multi_t *m) {
    int cut = 0;

    for (; m->xfers; cut++) {
        m->xfers->home = NULL; /* its owner's release frees it */
        remove_xfer(m->xfers);
    }
    if (cut) log_warn("http", "%d request(s) cut off by the shutdown", cut);
    while (m->idle) {
        httpc_xfer_t *x = m->idle;
        UNLINK(m->idle, x);
        x->free_xfer(x);
    }
    m->nidle = 0;
    /* Closing its connections calls close_socket and on_socket. */
    curl_multi_cleanup(m->multi);
    for (size_t fd = 0; fd < m->nbyfd; fd++)
        if (m->byfd[fd]) sock_close(m->byfd[fd]);
    uv_close((uv_handle_t *)&m->timer, free_multi);
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
