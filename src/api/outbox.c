/* outbox.c - the C half of the transactional outbox's relay
 * (lua/luka/outbox.lua runs it, on a timer).  host.outbox_send publishes a
 * round's rows through a publisher and parks the relay's task until the
 * broker has answered every one; host.outbox_report keeps each outbox's
 * figures (pending rows, the oldest one's age, rows published) for
 * /metrics and logs its trouble, once per change of trouble and then at
 * most every OUTBOX_REMIND_MS. */
#include "api/outbox.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "api/env.h"
#include "app/app.h"
#include "base/json.h"
#include "base/log.h"
#include "flow/inflight.h"
#include "lua/script.h"
#include "lua/task.h"

#define OUTBOX_REMIND_MS 30000

/* One row of a round: its tag comes back with the delivery report. */
typedef struct sent_row {
    publish_tag_t tag;
    struct round *round;
    rd_kafka_resp_err_t err;
    int failed; /* the send itself failed: errs holds why */
} sent_row_t;

/* A round of rows in flight, freed once every report came and the task
 * was answered or had let go. */
typedef struct round {
    task_t *task;
    int n, pending;
    int cancelled; /* the relay's task stopped waiting */
    char **errs;   /* per row: why its send failed, or NULL */
    sent_row_t rows[];
} round_t;

static void round_free(round_t *r) {
    for (int i = 0; i < r->n; i++) free(r->errs[i]);
    free(r->errs);
    free(r);
}

/* Push { true | "why", ... } for the rows of r on L. */
static void push_results(lua_State *L, const round_t *r) {
    lua_createtable(L, r->n, 0);
    for (int i = 0; i < r->n; i++) {
        if (r->errs[i]) lua_pushstring(L, r->errs[i]);
        else if (r->rows[i].err)
            lua_pushfstring(L, "not delivered: %s", rd_kafka_err2str(r->rows[i].err));
        else lua_pushboolean(L, 1);
        lua_rawseti(L, -2, i + 1);
    }
}

static void row_reported(publish_tag_t *t, rd_kafka_resp_err_t err) {
    sent_row_t *row = (sent_row_t *)t;
    round_t *r = row->round;
    row->err = err;
    if (--r->pending > 0) return;
    if (!r->cancelled) {
        push_results(task_thread(r->task), r);
        task_wake(r->task, 1);
    }
    round_free(r);
}

static void round_cancel(void *req) {
    round_t *r = req;
    r->cancelled = 1; /* freed by its last report */
}

/* Read header values of the table at idx into h: strings and numbers. */
static void add_headers(lua_State *L, int idx, rd_kafka_headers_t *h) {
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        /* Stack: ..., name, value */
        if (lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), "id") != 0 &&
            (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)) {
            size_t n;
            const char *v;
            lua_pushvalue(L, -1);
            v = lua_tolstring(L, -1, &n);
            rd_kafka_header_add(h, lua_tostring(L, -3), -1, v, (ssize_t)n);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
}

/* A string field of the row at idx, or NULL when absent or luka.null. */
static const char *row_str(lua_State *L, int idx, const char *name, size_t *len) {
    const char *s = NULL;
    lua_getfield(L, idx, name);
    if (lua_type(L, -1) == LUA_TSTRING) s = lua_tolstring(L, -1, len);
    lua_pop(L, 1); /* the row anchors it */
    return s;
}

/* host.outbox_send(publisher, rows) -> { true | "why", ... } once the
 * broker answered every row, or nil, err when the caller cannot wait.
 * rows: { id, topic, key, payload, headers } each, as luka.pg gives them. */
static int l_send(lua_State *L) {
    const char *pub = luaL_checkstring(L, 1);
    const api_env_t *env = api_env(L);
    const char *why;
    task_t *task = task_self(L, &why);
    sink_t *sink;
    round_t *r;
    int n;

    luaL_checktype(L, 2, LUA_TTABLE);
    if (!task) {
        lua_pushnil(L);
        lua_pushfstring(L, "outbox relay: %s", why);
        return 2;
    }
    if (!env || !(sink = env->sinks->find(env->sinks->ctx, pub)))
        return luaL_error(L, "outbox relay: no publisher '%s'", pub);
    n = (int)luaL_len(L, 2);
    r = calloc(1, sizeof(*r) + (size_t)(n ? n : 1) * sizeof(sent_row_t));
    r->errs = calloc((size_t)(n ? n : 1), sizeof(char *));
    r->n = n;
    r->task = task;
    r->pending = 1; /* held until every row is sent */
    for (int i = 0; i < n; i++) {
        sent_row_t *row = &r->rows[i];
        size_t keylen = 0, len = 0;
        const char *topic, *key, *payload;
        char idtext[32], err[512];
        char *value = NULL;
        rd_kafka_headers_t *h = rd_kafka_headers_new(8);
        int row_idx;

        lua_rawgeti(L, 2, i + 1); /* Stack: publisher, rows, row */
        row_idx = lua_gettop(L);
        lua_getfield(L, row_idx, "id");
        snprintf(idtext, sizeof(idtext), "%lld", (long long)lua_tointeger(L, -1));
        lua_pop(L, 1);
        topic = row_str(L, row_idx, "topic", NULL);
        key = row_str(L, row_idx, "key", &keylen);
        payload = row_str(L, row_idx, "payload", &len);
        if (lua_getfield(L, row_idx, "headers") == LUA_TTABLE) add_headers(L, lua_gettop(L), h);
        lua_pop(L, 1);
        rd_kafka_header_add(h, "id", -1, idtext, -1);
        if (payload) {
            value = malloc(len ? len : 1);
            memcpy(value, payload, len);
        }
        row->tag.reported = row_reported;
        row->round = r;
        r->pending++;
        if (sink->ops->send(sink, topic, RD_KAFKA_PARTITION_UA, key, keylen, value, len, h,
                            &row->tag, err, sizeof(err))) {
            r->pending--;
            r->errs[i] = strdup(err);
            rd_kafka_headers_destroy(h);
        }
        lua_pop(L, 1);
    }
    if (--r->pending == 0) {
        /* Every send failed at once (or there were no rows). */
        push_results(L, r);
        round_free(r);
        return 1;
    }
    return task_wait(L, task, "the acknowledgements of an outbox round", round_cancel, r);
}

/* The figures of every outbox of the process, by name: they outlive the
 * states a reload replaces, as the app's own metrics do. */
static outbox_figures_t *figures;
static int nfigures;

static outbox_figures_t *figures_of(const char *name) {
    for (int i = 0; i < nfigures; i++)
        if (strcmp(figures[i].name, name) == 0) return &figures[i];
    figures = realloc(figures, (size_t)(nfigures + 1) * sizeof(*figures));
    memset(&figures[nfigures], 0, sizeof(*figures));
    snprintf(figures[nfigures].name, sizeof(figures[nfigures].name), "%s", name);
    figures[nfigures].pending = -1;
    figures[nfigures].oldest_age = -1;
    return &figures[nfigures++];
}

/* host.outbox_report(name, where, published [, pending, oldest_age] [, trouble])
 * published: rows marked sent since the last report; pending and
 * oldest_age (seconds): what the table holds now, nil when unknown;
 * trouble: what went wrong this round, or nil when nothing did. */
static int l_report(lua_State *L) {
    outbox_figures_t *f = figures_of(luaL_checkstring(L, 1));
    const char *where = luaL_checkstring(L, 2);
    const char *trouble = luaL_optstring(L, 6, NULL);
    int64_t now = script_now_ms();

    f->published += (uint64_t)luaL_checkinteger(L, 3);
    if (lua_isnumber(L, 4)) f->pending = (int64_t)lua_tointeger(L, 4);
    if (lua_isnumber(L, 5)) f->oldest_age = lua_tonumber(L, 5);
    if (!trouble) {
        if (f->troubled)
            log_info("outbox", "outbox '%s' (%s) works again after %llu failed round(s)", f->name,
                     where, (unsigned long long)f->failed_rounds);
        f->troubled = 0;
        f->failed_rounds = 0;
        f->trouble[0] = '\0';
        return 0;
    }
    f->failed_rounds++;
    f->errors++;
    if (!f->troubled || strcmp(f->trouble, trouble) != 0 || now - f->logged_ms >= OUTBOX_REMIND_MS) {
        log_error("outbox", "outbox '%s' (%s): %s; its rows stay unsent and are tried again "
                            "(%llu failed round(s) so far)",
                  f->name, where, trouble, (unsigned long long)f->failed_rounds);
        f->logged_ms = now;
    }
    f->troubled = 1;
    snprintf(f->trouble, sizeof(f->trouble), "%s", trouble);
    return 0;
}

void outbox_each(void (*fn)(void *ud, const outbox_figures_t *f), void *ud) {
    for (int i = 0; i < nfigures; i++) fn(ud, &figures[i]);
}

void outbox_shutdown(void) {
    free(figures);
    figures = NULL;
    nfigures = 0;
}

/* Start the relays of the outboxes L's script declared; runs protected. */
static int start_relays(lua_State *L) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "luka.outbox");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "start");
    lua_call(L, 0, 0);
    return 0;
}

void outbox_start(lua_State *L) {
    script_err_t err;
    lua_pushcfunction(L, start_relays);
    if (script_call(L, 0, 0, app_timeout(L), &err) != 0)
        log_error("outbox", "cannot start the outbox relays: %s", err.msg);
}

void outbox_inject_api(lua_State *L) {
    lua_pushcfunction(L, l_send);
    lua_setfield(L, -2, "outbox_send");
    lua_pushcfunction(L, l_report);
    lua_setfield(L, -2, "outbox_report");
}
