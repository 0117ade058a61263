/* state.c - a Lua state with a counting, limiting allocator, and the
 * luka.state table kept in its registry. */
#include "lua/state.h"

#include <stdio.h>
#include <stdlib.h>

#include "base/json.h"
#include "lua/script.h"
#include "lua/task.h"

static const char STATE_KEY = 's';
static const char DEFERRED_KEY = 'd';

typedef struct mem {
    size_t used;
    size_t limit;
} mem_t;

static void *alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    mem_t *m = ud;
    if (nsize == 0) {
        if (ptr) m->used -= osize;
        free(ptr);
        return NULL;
    }
    /* Only user code is limited: the host's own pushes between calls must
     * not fail, and Lua never asks to shrink and fail. */
    if (m->limit && script_active == m && nsize > (ptr ? osize : 0) &&
        m->used + nsize - (ptr ? osize : 0) > m->limit)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (p) m->used += nsize - (ptr ? osize : 0);
    return p;
}

static int panic(lua_State *L) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "luka: unprotected Lua error: %s\n", msg ? msg : "?");
    abort();
}

lua_State *state_new(void) {
    mem_t *m = calloc(1, sizeof(*m));
    lua_State *L = m ? lua_newstate(alloc, m) : NULL;
    if (!L) {
        free(m);
        return NULL;
    }
    lua_atpanic(L, panic);
    return L;
}

void state_close(lua_State *L) {
    void *ud;
    lua_getallocf(L, &ud);
    script_forget(L);
    task_forget(L);
    lua_close(L);
    free(ud);
}

size_t state_memory(lua_State *L) {
    void *ud;
    lua_getallocf(L, &ud);
    return ((mem_t *)ud)->used;
}

void state_set_memory_limit(lua_State *L, size_t limit) {
    void *ud;
    lua_getallocf(L, &ud);
    ((mem_t *)ud)->limit = limit;
}

int state_registry_table(lua_State *L, const void *key) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TTABLE) return 0;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
    return 1;
}

void state_push_luka_state(lua_State *L) { state_registry_table(L, &STATE_KEY); }

int state_set_luka_state(lua_State *L, const char *json, size_t len, char *errbuf, size_t errlen) {
    if (json_decode(L, json, len, errbuf, errlen) != 0) return -1;
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        snprintf(errbuf, errlen, "luka.state must be a table");
        return -1;
    }
    lua_rawsetp(L, LUA_REGISTRYINDEX, &STATE_KEY);
    return 0;
}

char *state_get_luka_state(lua_State *L, size_t *len, char *errbuf, size_t errlen) {
    char *json;
    state_push_luka_state(L);
    json = json_encode(L, -1, len, errbuf, errlen);
    lua_pop(L, 1);
    return json;
}

void state_push_deferred(lua_State *L) { state_registry_table(L, &DEFERRED_KEY); }

void state_clear_deferred(lua_State *L) {
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &DEFERRED_KEY);
}
