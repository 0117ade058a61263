/* meta.c - build a handler's meta table from a message.  Headers become a
 * name -> value table; of repeated names the last wins, as with Kafka's
 * lastHeader(), and a header without a value reads luka.null. */
#include "lua/meta.h"

#include <string.h>

#include "base/json.h"

static const char META_MT_KEY = 'm';

/* meta.headers of a message without headers is made on first use: most
 * handlers never look, and a table per message is a cost per message. */
static int meta_index(lua_State *L) {
    if (lua_type(L, 2) != LUA_TSTRING || strcmp(lua_tostring(L, 2), "headers") != 0) return 0;
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

void meta_push(lua_State *L, const message_t *m, int attempt, const char *trace_id) {
    int headers = m->headers && rd_kafka_header_cnt(m->headers) > 0;

    /* Sized for the fields it gets, so that no field rehashes it: a table
     * per message is most of what a raw handler costs, and its nodes are
     * most of the garbage it leaves. */
    lua_createtable(L, 0,
                    4 + (m->key != NULL) + (m->timestamp >= 0) + (trace_id != NULL) + 2 * headers);
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
    if (trace_id) {
        lua_pushstring(L, trace_id);
        lua_setfield(L, -2, "trace_id");
    }

    if (!headers) {
        push_mt(L);
        lua_setmetatable(L, -2);
        return;
    }
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
