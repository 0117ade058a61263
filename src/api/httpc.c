/* httpc.c - luka.http.request{ method, url, headers, body, timeout }.
 *
 * The handler's task parks (task_wait) while libcurl runs its request on
 * the multi handle of the task's loop.  curl says which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION: a uv_poll each) and when to call it anyway
 * (CURLMOPT_TIMERFUNCTION: one uv_timer); a transfer it reports done
 * through curl_multi_info_read wakes its task with the response.  One
 * multi per loop, so keep-alive connections are shared by every handler.
 * Bad arguments raise; a request that fails returns nil, err. */
#include "api/httpc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <uv.h>

#include "base/cliopt.h"
#include "base/log.h"
#include "lua/task.h"

/* curl_easy_nextheader came in 7.84, CURLOPT_PROTOCOLS_STR in 7.85. */
#if LIBCURL_VERSION_NUM < 0x075500
#error "luka.http needs libcurl 7.85 or later"
#endif

#define FN "luka.http.request"
#define TAKES "method, url, headers, body, timeout"
#define DEFAULT_TIMEOUT_MS 30000
#define MAX_TIMEOUT_MS (24LL * 60 * 60 * 1000)
#define MAX_REDIRECTS 5L
/* A response is held whole in memory; past this it fails instead. */
#define MAX_BODY (64L << 20)

#define LINK(head, x)                          \
    do {                                       \
        (x)->prev = NULL;                      \
        (x)->next = (head);                    \
        if (head) (head)->prev = (x);          \
        (head) = (x);                          \
    } while (0)
#define UNLINK(head, x)                                 \
    do {                                                \
        if ((x)->prev) (x)->prev->next = (x)->next;     \
        else (head) = (x)->next;                        \
        if ((x)->next) (x)->next->prev = (x)->prev;     \
    } while (0)

typedef struct httpc httpc_t;

/* A socket curl wants watched. */
typedef struct sock {
    uv_poll_t poll;
    curl_socket_t fd;
    httpc_t *h;
    struct sock *prev, *next;
} sock_t;

/* One request, from the call until its task is woken or lets go. */
typedef struct req {
    httpc_t *h; /* NULL once httpc_shutdown cut it off */
    CURL *easy;
    struct curl_slist *headers;
    task_t *task;
    lua_State *main; /* the state's main thread, which builds the response */
    char *body;
    size_t len, cap;
    int too_big;
    char *what; /* "GET http://host/path", for errors */
    char errbuf[CURL_ERROR_SIZE];
    struct req *prev, *next;
} req_t;

/* One loop's multi handle and what drives it. */
struct httpc {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    sock_t *socks; /* watched now */
    req_t *reqs;   /* running now */
    httpc_t *next;
};

static httpc_t *multis;
static int curl_ready;

/* ---- the multi handle on the loop ---- */

static void free_data(uv_handle_t *handle) { free(handle->data); }

static void sock_close(sock_t *s) {
    UNLINK(s->h->socks, s);
    uv_close((uv_handle_t *)&s->poll, free_data);
}

static void req_free(req_t *r) {
    if (r->h) {
        curl_multi_remove_handle(r->h->multi, r->easy);
        UNLINK(r->h->reqs, r);
    }
    if (r->easy) curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->body);
    free(r->what);
    free(r);
}

/* Push what r's request gives the handler: its response, or nil and an
 * error.  Runs in protected mode, as it allocates outside user code. */
static int push_result(lua_State *L) {
    req_t *r = lua_touserdata(L, 1);
    CURLcode rc = (CURLcode)lua_tointeger(L, 2);
    struct curl_header *hd = NULL;
    long status = 0;

    if (rc != CURLE_OK) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", r->what,
                        r->too_big  ? "the response is over 64 MiB"
                        : r->errbuf[0] ? r->errbuf
                                       : curl_easy_strerror(rc));
        return 2;
    }
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    lua_newtable(L);
    /* The last response's headers (not a redirect's), each name once in
     * lower case, its values joined. */
    while ((hd = curl_easy_nextheader(r->easy, CURLH_HEADER, -1, hd))) {
        luaL_Buffer b;
        size_t n = strlen(hd->name);
        char *name = luaL_buffinitsize(L, &b, n);
        for (size_t i = 0; i < n; i++)
            name[i] = hd->name[i] >= 'A' && hd->name[i] <= 'Z' ? hd->name[i] + 32 : hd->name[i];
        luaL_pushresultsize(&b, n);
        lua_pushvalue(L, -1); /* Stack: response, headers, name, name */
        if (lua_rawget(L, -3) == LUA_TSTRING) {
            lua_pushliteral(L, ", ");
            lua_pushstring(L, hd->value);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushstring(L, hd->value);
        }
        lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, r->body ? r->body : "", r->len);
    lua_setfield(L, -2, "body");
    return 1;
}

/* r's transfer ended with rc: hand the result to its task and let go. */
static void finish(req_t *r, CURLcode rc) {
    lua_State *L = r->main, *co = task_thread(r->task);
    int base = lua_gettop(L), n;

    lua_checkstack(L, 4);
    lua_checkstack(co, 2);
    lua_pushcfunction(L, push_result);
    lua_pushlightuserdata(L, r);
    lua_pushinteger(L, rc);
    if (lua_pcall(L, 2, LUA_MULTRET, 0) != LUA_OK) {
        /* Out of memory: the error is a string Lua keeps ready. */
        lua_pushnil(L);
        lua_insert(L, -2);
    }
    n = lua_gettop(L) - base;
    lua_xmove(L, co, n);
    task_wake(r->task, n);
    req_free(r);
}

/* Wake the task of every transfer curl has finished. */
static void check_done(httpc_t *h) {
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(h->multi, &left))) {
        char *r;
        if (m->msg != CURLMSG_DONE) continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &r);
        finish((req_t *)r, m->data.result);
    }
}

static void on_poll(uv_poll_t *p, int status, int events) {
    sock_t *s = p->data;
    httpc_t *h = s->h;
    int flags = 0, running;

    if (status < 0) flags |= CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    /* s may be closed inside: curl can give the socket up. */
    curl_multi_socket_action(h->multi, s->fd, flags, &running);
    check_done(h);
}

static void on_timer(uv_timer_t *t) {
    httpc_t *h = t->data;
    int running;

    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(h);
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for what curl waits on, or stop. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *ud, void *sockp) {
    httpc_t *h = ud;
    sock_t *s = sockp;
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        /* Stopped now, before curl closes fd, which may soon be reused. */
        if (s) {
            curl_multi_assign(h->multi, fd, NULL);
            sock_close(s);
        }
        return 0;
    }
    if (!s) {
        if (!(s = calloc(1, sizeof(*s)))) return -1;
        if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->fd = fd;
        s->h = h;
        s->poll.data = s;
        LINK(h->socks, s);
        curl_multi_assign(h->multi, fd, s);
    }
    if (what & CURL_POLL_IN) events |= UV_READABLE;
    if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
    return uv_poll_start(&s->poll, events, on_poll) == 0 ? 0 : -1;
}

/* CURLMOPT_TIMERFUNCTION: curl is never called from inside itself, so a
 * timeout of 0 too goes through the timer, on a later loop turn. */
static int on_curl_timer(CURLM *multi, long ms, void *ud) {
    httpc_t *h = ud;

    (void)multi;
    if (ms < 0) uv_timer_stop(&h->timer);
    else uv_timer_start(&h->timer, on_timer, (uint64_t)ms, 0);
    return 0;
}

/* The multi handle of loop, made on first use; NULL with err filled. */
static httpc_t *multi_for(uv_loop_t *loop, char *err, size_t errlen) {
    httpc_t *h;

    for (h = multis; h; h = h->next)
        if (h->loop == loop) return h;
    if (!curl_ready) {
        CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
        if (rc != CURLE_OK) {
            snprintf(err, errlen, "libcurl: %s", curl_easy_strerror(rc));
            return NULL;
        }
        curl_ready = 1;
    }
    if (!(h = calloc(1, sizeof(*h))) || !(h->multi = curl_multi_init())) {
        free(h);
        snprintf(err, errlen, "libcurl: out of memory");
        return NULL;
    }
    h->loop = loop;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    h->next = multis;
    multis = h;
    return h;
}

void httpc_shutdown(void) {
    while (multis) {
        httpc_t *h = multis;
        multis = h->next;
        while (h->reqs) {
            req_t *r = h->reqs;
            UNLINK(h->reqs, r);
            curl_multi_remove_handle(h->multi, r->easy);
            curl_easy_cleanup(r->easy);
            r->easy = NULL;
            r->h = NULL; /* now only its task's cancel frees it */
            log_warn("http", "%s: cut off by the shutdown", r->what);
        }
        /* Closing its connections may still call on_socket. */
        curl_multi_cleanup(h->multi);
        while (h->socks) sock_close(h->socks);
        uv_close((uv_handle_t *)&h->timer, free_data);
    }
    if (curl_ready) curl_global_cleanup();
    curl_ready = 0;
}

/* ---- one request ---- */

static size_t on_data(char *data, size_t size, size_t nmemb, void *ud) {
    req_t *r = ud;
    size_t n = size * nmemb;

    if (n > (size_t)MAX_BODY - r->len) {
        r->too_big = 1;
        return 0; /* curl fails the transfer */
    }
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        char *body;
        while (cap < r->len + n) cap *= 2;
        if (!(body = realloc(r->body, cap))) return 0;
        r->body = body;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    return n;
}

/* The task has ended without the answer: drop the transfer. */
static void on_cancel(void *req) { req_free(req); }

#define SET(opt, val)                                            \
    do {                                                         \
        if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); \
    } while (0)

static CURLcode setup(req_t *r, const char *url, const char *method, const char *body,
                      size_t blen, int64_t timeout_ms) {
    CURL *e = r->easy;
    CURLcode rc = CURLE_OK;

    SET(CURLOPT_URL, url);
    SET(CURLOPT_PRIVATE, (char *)r);
    SET(CURLOPT_ERRORBUFFER, r->errbuf);
    SET(CURLOPT_WRITEFUNCTION, on_data);
    SET(CURLOPT_WRITEDATA, r);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_FOLLOWLOCATION, 1L);
    SET(CURLOPT_MAXREDIRS, MAX_REDIRECTS);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)MAX_BODY);
    SET(CURLOPT_USERAGENT, "luka/" LUKA_VERSION);
    SET(CURLOPT_HTTPHEADER, r->headers);
    if (strcmp(method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (body || strcmp(method, "POST") == 0) {
        /* The size first: the body may hold NULs. */
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
        SET(CURLOPT_COPYPOSTFIELDS, body ? body : "");
        if (strcmp(method, "POST") != 0) SET(CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") != 0) {
        SET(CURLOPT_CUSTOMREQUEST, method);
    }
    return rc;
}

/* RFC 9110's token: what a method or a header name may be made of. */
static int is_token(const char *s, size_t n) {
    if (n == 0 || strlen(s) != n) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *s)))
            return 0;
    return 1;
}

/* Refuse an option the call does not take, with the nearest it does. */
static void check_options(lua_State *L) {
    static const char *known[] = {"method", "url", "headers", "body", "timeout"};
    enum { NKNOWN = sizeof(known) / sizeof(known[0]) };
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        int ok = 0;
        lua_pop(L, 1);
        for (size_t i = 0; name && i < NKNOWN; i++) ok |= strcmp(name, known[i]) == 0;
        if (ok) continue;
        if (!name) luaL_error(L, FN ": options are written name = value (" TAKES ")");
        cliopt_near_t near = cliopt_near(name);
        for (size_t i = 0; i < NKNOWN; i++) cliopt_near_add(&near, known[i]);
        if (near.best)
            luaL_error(L, FN ": unknown option '%s'; did you mean '%s'?", name, near.best);
        luaL_error(L, FN ": unknown option '%s'; it takes " TAKES, name);
    }
}

/* opts.timeout in milliseconds: a number of them or a duration text. */
static int64_t read_timeout(lua_State *L) {
    int64_t ms = DEFAULT_TIMEOUT_MS;
    int ok = 1, t = lua_getfield(L, 1, "timeout");

    if (t == LUA_TNUMBER) {
        int isint;
        lua_Integer n = lua_tointegerx(L, -1, &isint);
        ok = isint && n > 0 && n <= MAX_TIMEOUT_MS;
        ms = n;
    } else if (t == LUA_TSTRING) {
        ok = cliopt_duration(lua_tostring(L, -1), MAX_TIMEOUT_MS, &ms) == 0 && ms > 0;
    } else if (t != LUA_TNIL) {
        ok = 0;
    }
    if (!ok)
        luaL_error(L, FN ": timeout must be %s, more than 0 and at most 24h", CLIOPT_DURATION_HINT);
    lua_pop(L, 1);
    return ms;
}

/* Push opts.headers as a list of curl's header lines, checked.  Adds
 * blanks that stop curl's own Expect (a server without 100-continue
 * would stall the body a second) and, for a body, its form Content-Type:
 * a body is sent as the handler labels it, or unlabelled. */
static void push_header_lines(lua_State *L, int has_body) {
    int n = 0, expect = 0, ctype = 0;

    lua_newtable(L);
    if (lua_getfield(L, 1, "headers") != LUA_TNIL) {
        if (!lua_istable(L, -1)) luaL_error(L, FN ": headers must be a table of name = value");
        lua_pushnil(L);
        /* Stack: lines, headers, name, value */
        while (lua_next(L, -2)) {
            size_t nn, vn;
            const char *name, *v;
            name = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &nn) : NULL;
            if (!name || !is_token(name, nn))
                luaL_error(L, FN ": headers: a header name must be a string of letters, digits "
                              "and -_.!#$%%&'*+^`|~");
            if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
                luaL_error(L, FN ": headers: '%s' must be a string or a number", name);
            v = lua_tolstring(L, -1, &vn); /* the value, not the key: lua_next goes on */
            if (strlen(v) != vn || strpbrk(v, "\r\n"))
                luaL_error(L, FN ": headers: '%s' must not hold a line break or a NUL", name);
            expect |= strcasecmp(name, "expect") == 0;
            ctype |= strcasecmp(name, "content-type") == 0;
            /* "Name;" is curl's way to send a header with no value. */
            lua_pushfstring(L, vn ? "%s: %s" : "%s;", name, v);
            lua_rawseti(L, -5, ++n);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    if (!expect) {
        lua_pushliteral(L, "Expect:");
        lua_rawseti(L, -2, ++n);
    }
    if (has_body && !ctype) {
        lua_pushliteral(L, "Content-Type:");
        lua_rawseti(L, -2, ++n);
    }
}

/* Return nil, "<what>: <msg>". */
static int fail(lua_State *L, const char *what, const char *msg) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, msg);
    return 2;
}

/* luka.http.request{ method, url, headers, body, timeout }
 *   -> { status, headers, body }, or nil, error */
static int l_request(lua_State *L) {
    char method[32], err[256];
    const char *url, *body = NULL, *what, *why;
    size_t ulen, mlen = 0, blen = 0;
    int64_t timeout_ms;
    httpc_t *h;
    task_t *t;
    req_t *r;

    if (lua_type(L, 1) != LUA_TTABLE)
        return luaL_error(L, FN " takes a table { " TAKES " }");
    lua_settop(L, 1);
    check_options(L);
    if (lua_getfield(L, 1, "url") != LUA_TSTRING) luaL_error(L, FN ": url must be a string");
    url = lua_tolstring(L, -1, &ulen); /* Stack: opts, url */
    if (ulen == 0 || strlen(url) != ulen)
        luaL_error(L, FN ": url must be a URL such as http://host/path");
    if (lua_getfield(L, 1, "body") != LUA_TNIL) { /* Stack: opts, url, body */
        if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, FN ": body must be a string");
        body = lua_tolstring(L, -1, &blen);
    }
    if (lua_getfield(L, 1, "method") == LUA_TNIL) {
        snprintf(method, sizeof(method), "%s", body ? "POST" : "GET");
    } else {
        const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &mlen) : NULL;
        if (!m || !is_token(m, mlen) || mlen >= sizeof(method))
            luaL_error(L, FN ": method must be a string such as \"GET\" or \"POST\"");
        for (size_t i = 0; i <= mlen; i++)
            method[i] = m[i] >= 'a' && m[i] <= 'z' ? m[i] - 32 : m[i];
    }
    lua_pop(L, 1);
    timeout_ms = read_timeout(L);
    push_header_lines(L, body != NULL); /* Stack: opts, url, body, lines */
    {
        /* The URL as errors show it: no password. */
        luaL_Buffer b;
        size_t cap = ulen + 16;
        char *shown = luaL_buffinitsize(L, &b, cap);
        log_redact_url(url, shown, cap);
        luaL_pushresultsize(&b, strlen(shown));
        /* Stack: opts, url, body, lines, shown, what */
        what = lua_pushfstring(L, "%s %s", method, lua_tostring(L, -1));
    }

    if (!(t = task_self(L, &why))) return fail(L, what, why);
    if (!(h = multi_for(task_loop(t), err, sizeof(err)))) return fail(L, what, err);
    if (!(r = calloc(1, sizeof(*r))) || !(r->what = strdup(what)) ||
        !(r->easy = curl_easy_init())) {
        if (r) free(r->what);
        free(r);
        return fail(L, what, "out of memory");
    }
    r->task = t;
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    r->main = lua_tothread(L, -1);
    lua_pop(L, 1);
    for (lua_Integer i = 1, n = (lua_Integer)lua_rawlen(L, 4); i <= n; i++) {
        struct curl_slist *more;
        lua_rawgeti(L, 4, i);
        more = curl_slist_append(r->headers, lua_tostring(L, -1));
        lua_pop(L, 1);
        if (!more) {
            req_free(r);
            return fail(L, what, "out of memory");
        }
        r->headers = more;
    }
    CURLcode rc = setup(r, url, method, body, blen, timeout_ms);
    CURLMcode mrc = rc == CURLE_OK ? curl_multi_add_handle(h->multi, r->easy) : CURLM_OK;
    if (rc != CURLE_OK || mrc != CURLM_OK) {
        snprintf(err, sizeof(err), "%s",
                 rc != CURLE_OK ? curl_easy_strerror(rc) : curl_multi_strerror(mrc));
        req_free(r);
        return fail(L, what, err);
    }
    r->h = h; /* added: req_free removes it again */
    LINK(h->reqs, r);
    return task_wait(L, t, what, on_cancel, r);
}

void httpc_inject_api(lua_State *L) {
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_request);
    lua_setfield(L, -2, "request");
    lua_setfield(L, -2, "http");
}
