/* httpc.c - luka.http.request{ method, url, headers, body, timeout }.
 *
 * Reads the call's table (bad arguments raise), sets a libcurl easy
 * handle to it (one an earlier request left, or a new one) and parks the
 * handler's task (task_wait) while the loop's multi handle runs it
 * (httpc_multi.c).  When curl is done, the response, or nil and an
 * error, goes to the task's coroutine and task_wake resumes it; a task
 * that ends first cancels the request. */
#include "api/httpc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <uv.h>

#include "api/httpc_multi.h"
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

/* One request, from the call until its task is woken or lets go; then
 * kept with its easy handle and buffers for a next one (httpc_multi.c's
 * pool), so a request in the steady state allocates nothing here. */
typedef struct req {
    httpc_xfer_t x; /* first: the multi's callbacks get it */
    task_t *task;
    lua_State *main; /* the state's main thread, which builds the response */
    struct curl_slist *headers; /* the header lines, an array linked */
    size_t nheaders, nheaders_cap;
    char *text; /* their text */
    size_t text_cap;
    char *body;
    size_t len, cap;
    int too_big;
    int shaped; /* a method or a body was set, to undo for the next request */
    char *what; /* "GET http://host/path", for errors */
    size_t what_cap;
    char errbuf[CURL_ERROR_SIZE];
} req_t;

/* What the call being read makes of its arguments, built while they are
 * checked, which may raise: so it belongs to no request until then, and
 * the request copies it.  Only the loop's thread runs requests. */
static struct {
    char *what;
    size_t what_cap;
    char *text; /* the header lines, "Name: value\0" one after another */
    size_t text_len, text_cap;
    size_t n;
} call;

/* Make *buf hold n bytes, growing it by doubling; 0, or -1. */
static int reserve(char **buf, size_t *cap, size_t n) {
    size_t c = *cap ? *cap : 64;
    char *p;

    if (n <= *cap) return 0;
    while (c < n) c *= 2;
    if (!(p = realloc(*buf, c))) return -1;
    *buf = p;
    *cap = c;
    return 0;
}

static void free_req(httpc_xfer_t *x) {
    req_t *r = (req_t *)x;

    if (r->x.easy) curl_easy_cleanup(r->x.easy);
    free(r->headers);
    free(r->text);
    free(r->body);
    free(r->what);
    free(r);
}

/* A kept request keeps a buffer up to this size; a bigger one, made for
 * an unusual request, goes. */
#define KEEP_BUFFER 16384

static void trim(char **buf, size_t *cap) {
    if (*cap <= KEEP_BUFFER) return;
    free(*buf);
    *buf = NULL;
    *cap = 0;
}

/* r's request is over: out of its multi handle, kept for the next. */
static void req_release(req_t *r) {
    trim(&r->body, &r->cap);
    trim(&r->text, &r->text_cap);
    trim(&r->what, &r->what_cap);
    r->task = NULL;
    httpc_multi_release(&r->x);
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
    curl_easy_getinfo(r->x.easy, CURLINFO_RESPONSE_CODE, &status);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    lua_createtable(L, 0, 8); /* room for the usual headers: no rehash */
    /* The last response's headers (not a redirect's), each name once in
     * lower case, its values joined. */
    while ((hd = curl_easy_nextheader(r->x.easy, CURLH_HEADER, -1, hd))) {
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
static void on_done(httpc_xfer_t *x, CURLcode rc) {
    req_t *r = (req_t *)x;
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
    req_release(r);
}

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
static void on_cancel(void *req) { req_release(req); }

#define SET(opt, val)                                            \
    do {                                                         \
        if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); \
    } while (0)

/* The options every request of r's easy handle shares, set when it is
 * made. */
static CURLcode setup_once(req_t *r) {
    CURL *e = r->x.easy;
    CURLcode rc = CURLE_OK;

    SET(CURLOPT_ERRORBUFFER, r->errbuf);
    SET(CURLOPT_WRITEFUNCTION, on_data);
    SET(CURLOPT_WRITEDATA, r);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_FOLLOWLOCATION, 1L);
    SET(CURLOPT_MAXREDIRS, MAX_REDIRECTS);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)MAX_BODY);
    SET(CURLOPT_USERAGENT, "luka/" LUKA_VERSION);
    return rc;
}

/* The options of this request.  A kept handle still has the last one's:
 * those this sets every time are simply set again, and a method or a
 * body of the last one is undone first, back to curl's defaults (a GET
 * with no body), rather than with curl_easy_reset, which would drop
 * setup_once's too. */
static CURLcode setup(req_t *r, const char *url, const char *method, const char *body,
                      size_t blen, int64_t timeout_ms) {
    CURL *e = r->x.easy;
    CURLcode rc = CURLE_OK;

    SET(CURLOPT_URL, url);
    SET(CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    SET(CURLOPT_HTTPHEADER, r->nheaders ? r->headers : NULL);
    if (r->shaped) {
        /* The size first, as it would keep a copied body otherwise;
         * POSTFIELDS frees the copy and makes a POST, HTTPGET a GET. */
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
        SET(CURLOPT_POSTFIELDS, NULL);
        SET(CURLOPT_HTTPGET, 1L);
        SET(CURLOPT_CUSTOMREQUEST, NULL);
        r->shaped = 0;
    }
    if (strcmp(method, "GET") == 0 && !body) return rc;
    r->shaped = 1;
    if (strcmp(method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (body || strcmp(method, "POST") == 0) {
        /* The size first: the body may hold NULs. */
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
        SET(CURLOPT_COPYPOSTFIELDS, body ? body : "");
        if (strcmp(method, "POST") != 0) SET(CURLOPT_CUSTOMREQUEST, method);
    } else {
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

/* Add n bytes of line to call's header lines; 0, or -1 out of memory. */
static int add_text(const char *text, size_t n) {
    if (reserve(&call.text, &call.text_cap, call.text_len + n + 1)) return -1;
    memcpy(call.text + call.text_len, text, n);
    call.text_len += n;
    return 0;
}

/* Add "name: v", or "name;" (curl's way to send a header with no value),
 * to call's header lines; 0, or -1 out of memory. */
static int add_line(const char *name, size_t nn, const char *v, size_t vn) {
    if (add_text(name, nn) || (vn ? add_text(": ", 2) || add_text(v, vn) : add_text(";", 1)) ||
        add_text("", 1))
        return -1;
    call.n++;
    return 0;
}

/* Add a blank: "Name:" stops curl sending a header of its own. */
static int add_blank(const char *line) {
    if (add_text(line, strlen(line) + 1)) return -1;
    call.n++;
    return 0;
}

/* Read opts.headers into call's header lines, checked (a bad one raises).
 * For a body, adds blanks that stop curl's own Expect (a server without
 * 100-continue would stall the body a second) and its form Content-Type:
 * a body is sent as the handler labels it, or unlabelled.  curl adds
 * neither without a body, so a plain GET needs no list at all.  0, or -1
 * out of memory. */
static int read_header_lines(lua_State *L, int has_body) {
    int expect = 0, ctype = 0, oom = 0;

    call.text_len = call.n = 0;
    if (lua_getfield(L, 1, "headers") != LUA_TNIL) {
        if (!lua_istable(L, -1)) luaL_error(L, FN ": headers must be a table of name = value");
        lua_pushnil(L);
        /* Stack: headers, name, value */
        while (lua_next(L, -2)) {
            size_t nn = 0, vn;
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
            oom |= add_line(name, nn, v, vn);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    if (has_body && !expect) oom |= add_blank("Expect:");
    if (has_body && !ctype) oom |= add_blank("Content-Type:");
    return oom ? -1 : 0;
}

/* Write "METHOD url", the URL without its password, into call.what. */
static int read_what(const char *method, const char *url, size_t ulen) {
    size_t mlen = strlen(method), cap = mlen + 1 + ulen + 16;

    if (reserve(&call.what, &call.what_cap, cap)) return -1;
    memcpy(call.what, method, mlen);
    call.what[mlen] = ' ';
    log_redact_url(url, call.what + mlen + 1, cap - mlen - 1);
    return 0;
}

/* Give r call's what and header lines. */
static int req_take_call(req_t *r) {
    size_t wlen = strlen(call.what) + 1;
    char *p;

    if (reserve(&r->what, &r->what_cap, wlen) || reserve(&r->text, &r->text_cap, call.text_len))
        return -1;
    if (call.n > r->nheaders_cap) {
        struct curl_slist *h = realloc(r->headers, call.n * sizeof(*h));
        if (!h) return -1;
        r->headers = h;
        r->nheaders_cap = call.n;
    }
    memcpy(r->what, call.what, wlen);
    if (call.n) memcpy(r->text, call.text, call.text_len); /* none yet for a plain GET */
    p = r->text;
    for (size_t i = 0; i < call.n; i++) {
        r->headers[i].data = p;
        r->headers[i].next = i + 1 < call.n ? &r->headers[i + 1] : NULL;
        p += strlen(p) + 1;
    }
    r->nheaders = call.n;
    return 0;
}

/* Return nil, "<what>: <msg>". */
static int fail(lua_State *L, const char *what, const char *msg) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, msg);
    return 2;
}

/* A kept request of loop's multi handle, or a new one; NULL out of
 * memory. */
static req_t *take_req(uv_loop_t *loop) {
    req_t *r = (req_t *)httpc_multi_reuse(loop);

    if (r) return r;
    if (!(r = calloc(1, sizeof(*r)))) return NULL;
    r->x.done = on_done;
    r->x.free_xfer = free_req;
    if (!(r->x.easy = curl_easy_init()) || setup_once(r) != CURLE_OK) {
        free_req(&r->x);
        return NULL;
    }
    return r;
}

/* luka.http.request{ method, url, headers, body, timeout }
 *   -> { status, headers, body }, or nil, error */
static int l_request(lua_State *L) {
    char method[32], err[256];
    const char *url, *body = NULL, *why;
    size_t ulen, mlen = 0, blen = 0;
    int64_t timeout_ms;
    CURLcode rc;
    int oom;
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
    oom = read_header_lines(L, body != NULL);
    /* No more raising from here on: the call's reading is over. */
    if (read_what(method, url, ulen)) return fail(L, FN, "out of memory");
    if (oom) return fail(L, call.what, "out of memory");

    if (!(t = task_self(L, &why))) return fail(L, call.what, why);
    if (!(r = take_req(task_loop(t)))) return fail(L, call.what, "out of memory");
    if (req_take_call(r)) {
        req_release(r);
        return fail(L, call.what, "out of memory");
    }
    r->task = t;
    r->len = 0;
    r->too_big = 0;
    r->errbuf[0] = '\0';
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    r->main = lua_tothread(L, -1);
    lua_pop(L, 1);
    if ((rc = setup(r, url, method, body, blen, timeout_ms)) != CURLE_OK) {
        req_release(r);
        return fail(L, call.what, curl_easy_strerror(rc));
    }
    if (httpc_multi_add(task_loop(t), &r->x, err, sizeof(err))) {
        req_release(r);
        return fail(L, call.what, err);
    }
    return task_wait(L, t, r->what, on_cancel, r);
}

void httpc_close_loop(uv_loop_t *loop) { httpc_multi_close_loop(loop); }

void httpc_shutdown(void) {
    httpc_multi_shutdown();
    free(call.what);
    free(call.text);
    memset(&call, 0, sizeof(call));
}

void httpc_inject_api(lua_State *L) {
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_request);
    lua_setfield(L, -2, "request");
    lua_setfield(L, -2, "http");
}
