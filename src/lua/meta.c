/* meta.c - build a handler's meta table from a message.  Headers become a
 * name -> value table; of repeated names the last wins, as with Kafka's
 * lastHeader(), and a header without a value reads luka.null.  Two fields
 * are made on first use, since most handlers never look and a string or a
 * table per message is a cost per message: the empty headers of a
 * message without any, and trace_id. */
#include "lua/meta.h"

#include <string.h>

#include <lauxlib.h>

#include "base/cliopt.h"
#include "base/json.h"

/* The longest pause: a day. */
#define MAX_PAUSE_MS (24LL * 60 * 60 * 1000)

static const char META_MT_KEY = 'm';

/* Where trace ids come from: the last meta_push's. */
static meta_trace_fn trace_source;

/* The trace id of the message meta (at 1) was made for, from its topic,
 * partition and offset, or nil. */
static int trace_id(lua_State *L) {
    const char *id;
    lua_getfield(L, 1, "topic");
    lua_getfield(L, 1, "partition");
    lua_getfield(L, 1, "offset");
    /* Stack: meta, key, topic, partition, offset */
    if (!trace_source || lua_type(L, 3) != LUA_TSTRING || !lua_isinteger(L, 4) ||
        !lua_isinteger(L, 5) ||
        !(id = trace_source(lua_tostring(L, 3), (int32_t)lua_tointeger(L, 4),
                            (int64_t)lua_tointeger(L, 5))))
        return 0;
    lua_pushstring(L, id);
    lua_pushvalue(L, -1);
    lua_setfield(L, 1, "trace_id");
    return 1;
}

/* Where meta:pause goes. */
static meta_pause_fn pause_source;

void meta_set_pause(meta_pause_fn fn) { pause_source = fn; }

/* meta:pause(duration): the handler returns normally after it; the flow
 * then pauses the message's partition and delivers the message again. */
static int l_pause(lua_State *L) {
    int64_t ms;
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_isinteger(L, 2) && lua_tointeger(L, 2) >= 0 && lua_tointeger(L, 2) <= MAX_PAUSE_MS)
        ms = lua_tointeger(L, 2);
    else if (lua_type(L, 2) != LUA_TSTRING || cliopt_duration(lua_tostring(L, 2), MAX_PAUSE_MS, &ms))
        return luaL_argerror(L, 2, "meta:pause takes a duration such as \"500ms\", \"5s\" or "
                                   "\"2m\", or milliseconds, up to a day");
    lua_getfield(L, 1, "topic");
    lua_getfield(L, 1, "partition");
    lua_getfield(L, 1, "offset");
    /* Stack: meta, duration, topic, partition, offset */
    if (!pause_source || lua_type(L, 3) != LUA_TSTRING || !lua_isinteger(L, 4) ||
        !lua_isinteger(L, 5) ||
        pause_source(lua_tostring(L, 3), (int32_t)lua_tointeger(L, 4), lua_tointeger(L, 5), ms))
        return luaL_error(L, "meta:pause: only while the handler of this message runs (not from "
                             "a timer, another message's handler or the error channel)");
    return 0;
}

static int meta_index(lua_State *L) {
    const char *key = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "";
    if (strcmp(key, "trace_id") == 0) return trace_id(L);
    if (strcmp(key, "pause") == 0) {
        lua_pushcfunction(L, l_pause);
        return 1;
    }
    if (strcmp(key, "headers") != 0) return 0;
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, 1, "headers");
    return 1;
}

static void push_mt(lua_State *L) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &META_MT_KEY) == LUA_TTABLE) return;
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, meta_index);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &META_MT_KEY);
}

void meta_push(lua_State *L, const message_t *m, int attempt, meta_trace_fn trace) {
    int headers = m->headers && rd_kafka_header_cnt(m->headers) > 0;

    /* Sized for the fields it gets, so that no field rehashes it: a table
     * per message is most of what a raw handler costs, and its nodes are
     * most of the garbage it leaves. */
    lua_createtable(L, 0, 4 + (m->key != NULL) + (m->timestamp >= 0) + 2 * headers);
    lua_pushstring(L, m->topic);
    lua_setfield(L, -2, "topic");
    lua_pushinteger(L, m->partition);
    lua_setfield(L, -2, "partition");
    lua_pushinteger(L, m->offset);
    lua_setfield(L, -2, "offset");
    if (m->key) {
        lua_pushlstring(L, m->key, m->key_len);
        lua_setfield(L, -2, "key");
    }
    if (m->timestamp >= 0) {
        lua_pushinteger(L, m->timestamp);
        lua_setfield(L, -2, "timestamp");
    }
    lua_pushinteger(L, attempt);
    lua_setfield(L, -2, "attempt");
    trace_source = trace;
    push_mt(L);
    lua_setmetatable(L, -2);
    if (!headers) return;
    meta_push_headers(L, m->headers);
    /* Stack: meta, headers */
    if (lua_getfield(L, -1, "id") == LUA_TSTRING) lua_setfield(L, -3, "id");
    else lua_pop(L, 1);
    lua_setfield(L, -2, "headers");
}

void meta_push_headers(lua_State *L, const rd_kafka_headers_t *hdrs) {
    const char *name;
    const void *val;
    size_t size;
    lua_createtable(L, 0, hdrs ? (int)rd_kafka_header_cnt(hdrs) : 0);
    for (size_t i = 0; hdrs && !rd_kafka_header_get_all(hdrs, i, &name, &val, &size); i++) {
        if (val) lua_pushlstring(L, val, size);
        else json_push_null(L);
        lua_setfield(L, -2, name);
    }
}
