/* hooks.c - calling an app's lifecycle hooks (hooks.h): build the
 * argument, call through the one door into user code with the app's
 * runtime timeout, and log a failure with the hook's name. */
#include "api/hooks.h"

#include <string.h>

#include <lauxlib.h>

#include "base/log.h"

#define EP_CTX(c) LOG_ENDPOINT((c)->name)

/* Call the function below nargs arguments; on failure log it as hook
 * name of what (ctx names an endpoint, or NULL with what a publisher). */
static int call(lua_State *L, int nargs, const char *name, const log_ctx_t *ctx,
                const char *what, script_err_t *err) {
    if (script_call(L, nargs, 0, app_timeout(L), err) == 0) return 0;
    if (ctx)
        log_at(LOG_ERROR, "hook", ctx, "%s failed: %s%s%s", name, err->msg,
               err->traceback[0] ? "\n" : "", err->traceback);
    else
        log_error("hook", "[%s] %s failed: %s%s%s", what, name, err->msg,
                  err->traceback[0] ? "\n" : "", err->traceback);
    return -1;
}

int hooks_partitions(lua_State *L, const endpoint_conf_t *conf, int which,
                     const rd_kafka_topic_partition_list_t *parts) {
    int ref = which == HOOK_ASSIGN ? conf->on_assign : conf->on_revoke;
    script_err_t err;

    if (ref == LUA_NOREF || !L) return 0;
    if (!lua_checkstack(L, 4)) return -1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_createtable(L, parts->cnt, 0);
    for (int i = 0; i < parts->cnt; i++) {
        /* Stack: fn, list, entry */
        lua_createtable(L, 0, 2);
        lua_pushstring(L, parts->elems[i].topic);
        lua_setfield(L, -2, "topic");
        lua_pushinteger(L, parts->elems[i].partition);
        lua_setfield(L, -2, "partition");
        lua_rawseti(L, -2, i + 1);
    }
    return call(L, 1, which == HOOK_ASSIGN ? "on_assign" : "on_revoke", EP_CTX(conf), NULL, &err);
}

int hooks_stop(lua_State *L, const endpoint_conf_t *conf) {
    script_err_t err;
    if (conf->on_stop == LUA_NOREF || !L) return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, conf->on_stop);
    return call(L, 0, "on_stop", EP_CTX(conf), NULL, &err);
}

int hooks_delivery(const publisher_conf_t *conf, const message_t *m, rd_kafka_resp_err_t err,
                   script_err_t *errout) {
    lua_State *L = conf->L;
    const void *id = NULL;
    size_t idlen = 0;
    script_err_t serr;

    if (conf->on_delivery == LUA_NOREF || !L) return 0;
    if (!lua_checkstack(L, 4)) return -1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, conf->on_delivery);
    /* Stack: fn, report */
    lua_createtable(L, 0, 6);
    lua_pushstring(L, m->topic);
    lua_setfield(L, -2, "topic");
    /* A message that never reached a partition has none, nor an offset. */
    if (m->partition >= 0) {
        lua_pushinteger(L, m->partition);
        lua_setfield(L, -2, "partition");
    }
    if (!err && m->offset >= 0) {
        lua_pushinteger(L, m->offset);
        lua_setfield(L, -2, "offset");
    }
    if (m->key) {
        lua_pushlstring(L, m->key, m->key_len);
        lua_setfield(L, -2, "key");
    }
    if (m->headers && rd_kafka_header_get_last(m->headers, "id", &id, &idlen) == 0 && id) {
        lua_pushlstring(L, id, idlen);
        lua_setfield(L, -2, "id");
    }
    if (err) {
        lua_pushstring(L, rd_kafka_err2str(err));
        lua_setfield(L, -2, "error");
    }
    return call(L, 1, "on_delivery", NULL, conf->name, errout ? errout : &serr);
}
