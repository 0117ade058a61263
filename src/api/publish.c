/* publish.c - luka.publish(target, payload [, opts]).
 *
 * The key is, in order: opts.key; the publisher's key rule (a payload field
 * or a function); the key of the message being handled, so an entity's
 * events stay in its partition; the message id.  Every message carries an
 * `id` header, a UUID unless the caller gave one, and a traceparent; one
 * published while a message is handled carries its correlation-id and
 * causation-id too. */
#include "api/publish.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "api/env.h"
#include "app/app.h"
#include "base/cliopt.h"
#include "base/json.h"
#include "base/log.h"
#include "base/trace.h"
#include "base/uuid.h"
#include "flow/outcome.h"
#include "flow/call.h"
#include "lua/script.h"
#include "lua/state.h"
#include "lua/task.h"

/* Raise the unknown-target error with luka.dsl's suggestion. */
static int unknown_target(lua_State *L, const char *target) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "luka.dsl");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "check_target");
    lua_pushstring(L, target);
    lua_call(L, 1, 2);
    return luaL_error(L, "luka.publish: %s", lua_tostring(L, -1));
}

/* Turn the key value at idx into bytes; numbers become their decimal
 * text.  Returns NULL for anything else. */
static const char *key_bytes(lua_State *L, int idx, size_t *len) {
    int t = lua_type(L, idx);
    if (t != LUA_TSTRING && t != LUA_TNUMBER) return NULL;
    return luaL_tolstring(L, idx, len); /* pushes the string */
}

/* Push the key the publisher's rule gives for the payload at 2, or nothing
 * when it has no rule.  Returns whether a key was pushed. */
static int rule_key(lua_State *L, const publisher_conf_t *conf) {
    if (conf->key_fn != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, conf->key_fn);
        lua_pushvalue(L, 2);
        lua_call(L, 1, 1);
    } else if (conf->key_field) {
        if (!lua_istable(L, 2))
            return luaL_error(L, "luka.publish('%s'): the key comes from field '%s', "
                                 "so the payload must be a table",
                              conf->name, conf->key_field);
        lua_getfield(L, 2, conf->key_field);
    } else {
        return 0;
    }
    if (lua_isnil(L, -1))
        return luaL_error(L, "luka.publish('%s'): the payload has no key: %s%s is nil",
                          conf->name, conf->key_field ? "field " : "the key function's result",
                          conf->key_field ? conf->key_field : "");
    return 1;
}

/* What l_publish allocates before a producer takes it, held by a
 * to-be-closed userdata: a raise on a bad option (or out of memory) frees
 * it, as does the return. */
#define GUARD_MT "luka.publish.guard"

typedef struct guard {
    char *value;
    rd_kafka_headers_t *hdrs;
} guard_t;

static int guard_close(lua_State *L) {
    guard_t *g = luaL_checkudata(L, 1, GUARD_MT);
    free(g->value);
    g->value = NULL;
    if (g->hdrs) rd_kafka_headers_destroy(g->hdrs);
    g->hdrs = NULL;
    return 0;
}

/* Headers luka adds unless the caller gives them (see add_context). */
enum {
    GIVEN_ID = 1,
    GIVEN_CORRELATION = 2,
    GIVEN_CAUSATION = 4,
    GIVEN_TRACEPARENT = 8,
    GIVEN_TRACESTATE = 16
};

static int given_bit(const char *name) {
    static const struct {
        const char *name;
        int bit;
    } known[] = {{"id", GIVEN_ID},
                 {"correlation-id", GIVEN_CORRELATION},
                 {"causation-id", GIVEN_CAUSATION},
                 {"traceparent", GIVEN_TRACEPARENT},
                 {"tracestate", GIVEN_TRACESTATE}};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(name, known[i].name) == 0) return known[i].bit;
    return 0;
}

/* Copy the header name of the message being handled to h; returns
 * whether it had one. */
static int copy_header(rd_kafka_headers_t *h, const inflight_t *cur, const char *name) {
    const void *v;
    size_t n;
    if (!cur->msg.headers || rd_kafka_header_get_last(cur->msg.headers, name, &v, &n) || !v)
        return 0;
    rd_kafka_header_add(h, name, -1, v, (ssize_t)n);
    return 1;
}

/* The context a message carries from the one being handled (cur, or NULL
 * outside handlers), as Ecotone and W3C Trace Context have it:
 * correlation-id (the input's, or else its id), causation-id (the input's
 * id), and traceparent continuing the input's trace with the handling's
 * span as parent (outside handlers, a new trace per message). */
static void add_context(rd_kafka_headers_t *h, inflight_t *cur, int given) {
    char tp[TRACEPARENT_LEN + 1];
    trace_t fresh;

    if (cur) inflight_read_context(cur);
    if (cur && !(given & GIVEN_CORRELATION) && !copy_header(h, cur, "correlation-id") && cur->id)
        rd_kafka_header_add(h, "correlation-id", -1, cur->id, (ssize_t)cur->id_len);
    if (cur && !(given & GIVEN_CAUSATION) && cur->id)
        rd_kafka_header_add(h, "causation-id", -1, cur->id, (ssize_t)cur->id_len);
    if (given & GIVEN_TRACEPARENT) return;
    if (!cur) trace_new(&fresh);
    trace_format(cur ? &cur->trace : &fresh, tp);
    rd_kafka_header_add(h, "traceparent", -1, tp, TRACEPARENT_LEN);
    /* Vendors' trace state travels with the trace it belongs to. */
    if (cur && cur->traced && !(given & GIVEN_TRACESTATE))
        copy_header(h, cur, "tracestate");
}

/* Read opts.headers into g->hdrs, adding the id header unless the caller
 * gave one (then copied into id), and the trace and correlation headers
 * of the message being handled, cur. */
static void read_headers(lua_State *L, int opts, char *id, guard_t *g, inflight_t *cur) {
    int given = 0;
    g->hdrs = rd_kafka_headers_new(8);
    if (opts && lua_getfield(L, opts, "headers") != LUA_TNIL) {
        luaL_argcheck(L, lua_istable(L, -1), 3, "opts.headers must be a table of name = value");
        lua_pushnil(L);
        /* Stack: headers, name, value */
        while (lua_next(L, -2)) {
            size_t n, vn;
            const char *name, *v;
            if (lua_type(L, -2) != LUA_TSTRING)
                luaL_argerror(L, 3, "opts.headers: header names must be strings");
            name = lua_tolstring(L, -2, &n);
            if (!(v = key_bytes(L, -1, &vn)))
                luaL_error(L, "luka.publish: header '%s' must be a string or a number", name);
            given |= given_bit(name);
            if (strcmp(name, "id") == 0)
                snprintf(id, UUID_LEN + 1, "%.*s", (int)(vn < UUID_LEN ? vn : UUID_LEN), v);
            rd_kafka_header_add(g->hdrs, name, (ssize_t)n, v, (ssize_t)vn);
            lua_pop(L, 2);
        }
    }
    if (opts) lua_pop(L, 1);
    if (!(given & GIVEN_ID)) rd_kafka_header_add(g->hdrs, "id", 2, id, UUID_LEN);
    add_context(g->hdrs, cur, given);
}

/* Refuse an option luka.publish does not take, with the nearest it does:
 * a misspelt key must not silently pick another partition. */
static void check_options(lua_State *L, int opts) {
    static const char *known[] = {"key", "partition", "headers", "wait"};
    lua_pushnil(L);
    while (lua_next(L, opts)) {
        const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        int ok = 0;
        lua_pop(L, 1);
        for (size_t i = 0; name && i < sizeof(known) / sizeof(known[0]); i++)
            ok |= strcmp(name, known[i]) == 0;
        if (ok) continue;
        if (!name)
            luaL_argerror(L, 3, "opts: option names are strings (key, partition, headers, wait)");
        cliopt_near_t near = cliopt_near(name);
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            cliopt_near_add(&near, known[i]);
        if (near.best)
            luaL_error(L, "luka.publish: unknown option '%s'; did you mean '%s'?", name, near.best);
        luaL_error(L, "luka.publish: unknown option '%s'; it takes key, partition, headers and wait",
                   name);
    }
}

/* A publish with opts.wait: its own tag, whose report resumes the handler
 * that waits for it.  Outside the message's stage accounting: the handler
 * hears how it went and decides. */
typedef struct pubwait {
    publish_tag_t tag;
    task_t *task;
    int cancelled; /* the handler stopped waiting: free it on the report */
    char id[UUID_LEN + 1];
} pubwait_t;

static void waited(publish_tag_t *t, rd_kafka_resp_err_t err) {
    pubwait_t *w = (pubwait_t *)t;
    lua_State *co;
    if (w->cancelled) {
        free(w);
        return;
    }
    co = task_thread(w->task);
    if (err) {
        lua_pushnil(co);
        lua_pushfstring(co, "not delivered: %s", rd_kafka_err2str(err));
        task_wake(w->task, 2);
    } else {
        lua_pushstring(co, w->id);
        task_wake(w->task, 1);
    }
    free(w);
}

static void wait_cancel(void *req) { ((pubwait_t *)req)->cancelled = 1; }

/* luka.publish(target, payload [, opts]) -> message id, or nil, error */
static int l_publish(lua_State *L) {
    const char *target = luaL_checkstring(L, 1);
    const api_env_t *env = api_env(L);
    inflight_t *current = call_current();
    int opts = lua_isnoneornil(L, 3) ? 0 : 3;
    const char *key = NULL;
    size_t keylen = 0, len = 0;
    int32_t partition = RD_KAFKA_PARTITION_UA;
    char id[UUID_LEN + 1], err[512];
    publish_tag_t *tag;
    pubwait_t *w = NULL;
    task_t *task = NULL;
    sink_t *p;
    guard_t *g;
    char *value;
    int sent;

    luaL_checkany(L, 2);
    if (opts) {
        luaL_checktype(L, 3, LUA_TTABLE);
        check_options(L, 3);
    }
    lua_settop(L, 3);
    uuid_v4(id);
    if (opts) {
        const char *why;
        lua_getfield(L, 3, "wait");
        if (lua_toboolean(L, -1) && !(task = task_self(L, &why))) {
            lua_pushnil(L);
            lua_pushfstring(L, "luka.publish('%s', ..., { wait = true }): %s", target, why);
            return 2;
        }
        lua_pop(L, 1);
    }

    if (!env) {
        /* The script is still loading: keep it until a host runs it. */
        state_push_deferred(L);
        lua_createtable(L, 0, 5);
        lua_pushvalue(L, 1);
        lua_setfield(L, -2, "target");
        lua_pushvalue(L, 2);
        lua_setfield(L, -2, "payload");
        lua_pushvalue(L, 3);
        lua_setfield(L, -2, "opts");
        lua_pushstring(L, id);
        lua_setfield(L, -2, "id");
        luaL_where(L, 1); /* "file:line: " */
        lua_pushlstring(L, lua_tostring(L, -1), lua_rawlen(L, -1) > 2 ? lua_rawlen(L, -1) - 2 : 0);
        lua_setfield(L, -3, "where");
        lua_pop(L, 1);
        lua_rawseti(L, -2, luaL_len(L, -2) + 1);
        lua_pushstring(L, id);
        return 1;
    }
    if (!(p = env->sinks->find(env->sinks->ctx, target))) return unknown_target(L, target);
    g = lua_newuserdatauv(L, sizeof(*g), 0);
    g->value = NULL;
    g->hdrs = NULL;
    luaL_setmetatable(L, GUARD_MT);
    lua_toclose(L, 4);

    /* Key: stack slot 5 holds it as bytes, or nil. */
    if (opts && lua_getfield(L, opts, "key") != LUA_TNIL) {
        if (!(key = key_bytes(L, -1, &keylen)))
            return luaL_argerror(L, 3, "opts.key must be a string or a number");
    } else {
        lua_pop(L, opts ? 1 : 0);
        if (rule_key(L, p->conf)) {
            if (!(key = key_bytes(L, -1, &keylen)))
                return luaL_error(L, "luka.publish('%s'): the key must be a string or a number, got %s",
                                  target, luaL_typename(L, -1));
        } else if (current && current->msg.key) {
            key = current->msg.key;
            keylen = current->msg.key_len;
        }
    }
    if (opts && lua_getfield(L, opts, "partition") != LUA_TNIL) {
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
            return luaL_argerror(L, 3, "opts.partition must be a partition number (0, 1, ...)");
        partition = (int32_t)lua_tointeger(L, -1);
    }

    /* Every option is read before the payload is copied or encoded. */
    read_headers(L, opts, id, g, current);
    if (lua_type(L, 2) == LUA_TSTRING) {
        const char *s = lua_tolstring(L, 2, &len);
        g->value = malloc(len ? len : 1);
        memcpy(g->value, s, len);
    } else if (!lua_isnil(L, 2)) {
        g->value = json_encode(L, 2, &len, err, sizeof(err));
        if (!g->value) return luaL_error(L, "luka.publish('%s'): payload: %s", target, err);
    }
    if (!key) {
        key = id;
        keylen = strlen(id);
    }
    value = g->value;
    g->value = NULL; /* the sink's now, sent or not */
    if (task) {
        w = calloc(1, sizeof(*w));
        w->tag.reported = waited;
        w->task = task;
        memcpy(w->id, id, sizeof(w->id));
        tag = &w->tag;
    } else {
        tag = current ? inflight_tag(current) : NULL;
    }
    /* A transactional endpoint's message: into its transaction, to the
     * publisher's topic. */
    if (current && current->flow && current->flow->txn)
        sent = current->flow->txn->ops->send(current->flow->txn, p->conf->topic, partition, key,
                                             keylen, value, len, g->hdrs, tag, err, sizeof(err));
    else
        sent = p->ops->send(p, NULL, partition, key, keylen, value, len, g->hdrs, tag, err,
                            sizeof(err));
    if (sent) {
        free(w);
        if (current && !task) outcome_send_failed(current, err);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    g->hdrs = NULL; /* the sink's now */
    if (task) {
        snprintf(err, sizeof(err), "the acknowledgement of a publish to %s", target);
        return task_wait(L, task, err, wait_cancel, w);
    }
    if (tag) outcome_sent(tag);
    lua_pushstring(L, id);
    return 1;
}

void publish_deferred(lua_State *L) {
    script_err_t err;
    state_push_deferred(L);
    for (lua_Integer i = 1, n = luaL_len(L, -1); i <= n; i++) {
        lua_rawgeti(L, -1, i); /* Stack: list, entry */
        lua_pushcfunction(L, l_publish);
        lua_getfield(L, -2, "target");
        lua_getfield(L, -3, "payload");
        if (lua_getfield(L, -4, "opts") != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
        }
        /* Stack: list, entry, publish, target, payload, opts.  Keep the id
         * the script was given back then. */
        if (lua_getfield(L, -1, "headers") != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setfield(L, -3, "headers");
        }
        lua_getfield(L, -1, "id"); /* Stack: ..., opts, headers, id */
        if (lua_isnil(L, -1)) {
            lua_getfield(L, -7, "id");
            lua_setfield(L, -3, "id");
        }
        lua_pop(L, 2);
        if (script_call(L, 3, 0, app_timeout(L), &err) != 0) log_error("publish", "%s", err.msg);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    state_clear_deferred(L);
}

void publish_inject_api(lua_State *L) {
    if (luaL_newmetatable(L, GUARD_MT)) {
        lua_pushcfunction(L, guard_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, guard_close);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_publish);
    lua_setfield(L, -2, "publish");
}
