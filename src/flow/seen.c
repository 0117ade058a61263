/* seen.c - whether a message's dedup key was handled before: the key
 * from a header, a payload field or the app's function, looked up in the
 * endpoint's store.  The pipeline asks for each message, the batches
 * (batch.c) for each message of a batch before its first call. */
#include "flow/seen.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "base/log.h"
#include "flow/call.h"

int seen_before(inflight_t *inf) {
    flow_t *f = inf->flow;
    const policy_conf_t *pol = &f->conf->policy;
    lua_State *L = f->L;
    int top = lua_gettop(L), rc = 0;
    char err[512];
    size_t len;
    const char *key = NULL;
    script_err_t serr;

    if (pol->dedup_header) {
        const void *v;
        if (inf->msg.headers &&
            !rd_kafka_header_get_last(inf->msg.headers, pol->dedup_header, &v, &len) && v)
            key = v;
    } else if (call_user(inf, pol->dedup_fn, pol->dedup_field, 0, 1, &serr) == 0) {
        if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
            lua_pushvalue(L, -1);
            key = lua_tolstring(L, -1, &len); /* a copy: never converts the original */
        }
    } else if (strncmp(serr.msg, "decode error:", 13) != 0) {
        /* A payload that does not decode has no key; the handler call
         * reports the decode error. */
        log_warn("dedup", "[%s] key function failed: %s; handling the message anyway",
                 f->conf->name, serr.msg);
    }
    if (key) {
        inf->dedup_key = malloc(len ? len : 1);
        memcpy(inf->dedup_key, key, len);
        inf->dedup_len = len;
        rc = dedup_seen(f->dedup, key, len, err, sizeof(err));
        if (rc < 0) {
            log_warn("dedup", "[%s] %s; handling the message anyway", f->conf->name, err);
            rc = 0;
        }
    }
    lua_settop(L, top);
    return rc;
}
