/* applog.c - the app's own log lines: luka.log.debug/info/warn/error(msg
 * [, fields]), and print in JSON mode.  They go through luka's logger with
 * the context of the message whose code runs (flow/call.c knows it) or,
 * outside handlers, of the app alone.  Fields become JSON fields (tables
 * as JSON, what JSON cannot hold described), or key=value in text; a
 * traceback among them becomes the record's own. */
#include "api/applog.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "app/app.h"
#include "base/json.h"
#include "base/log.h"
#include "flow/call.h"

/* Nested tables deeper than this are described, not encoded: a cycle
 * stops here too. */
#define FIELD_DEPTH 16
/* A field's JSON past this many bytes is described instead. */
#define FIELD_MAX 65536

/* A growing text, for a field's JSON.  Not a luaL_Buffer: encoding walks
 * tables with lua_next, which needs the stack while the text grows. */
typedef struct buf {
    char *p;
    size_t len, cap;
    int failed; /* out of memory: the field is described instead */
} buf_t;

static void put(buf_t *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap * 2 > b->len + n + 1 ? b->cap * 2 : b->len + n + 1;
        char *grown = realloc(b->p, cap);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void put_str(buf_t *b, const char *s) { put(b, s, strlen(s)); }

static void put_json_string(buf_t *b, const char *s, size_t n) {
    char *tmp = malloc(6 * n + 3);
    if (!tmp) {
        b->failed = 1;
        return;
    }
    put(b, tmp, log_json_string(tmp, s, n));
    free(tmp);
}

/* A float as the fewest digits that read back as the same number. */
static void format_float(char *out, size_t cap, double d) {
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(out, cap, "%.*g", digits, d);
        if (strtod(out, NULL) == d) return;
    }
}

/* Write the number at idx as JSON, or describe it (NaN and infinities
 * have no JSON). */
static void put_number(lua_State *L, buf_t *b, int idx) {
    char num[64];
    if (lua_isinteger(L, idx)) {
        snprintf(num, sizeof(num), LUA_INTEGER_FMT, lua_tointeger(L, idx));
        put_str(b, num);
        return;
    }
    double d = lua_tonumber(L, idx);
    if (isnan(d) || isinf(d)) {
        put_str(b, isnan(d) ? "\"nan\"" : d > 0 ? "\"inf\"" : "\"-inf\"");
        return;
    }
    format_float(num, sizeof(num), d);
    put_str(b, num);
}

/* What cannot be JSON (a function, a coroutine, a userdata, a table met
 * again or too deep) as a string describing it: "function: 0x55...". */
static void put_described(lua_State *L, buf_t *b, int idx, const char *why) {
    size_t n;
    const char *s = luaL_tolstring(L, idx, &n);
    if (why) {
        lua_pushfstring(L, "%s (%s)", s, why);
        s = lua_tolstring(L, -1, &n);
        lua_pop(L, 1);
    }
    put_json_string(b, s, n);
    lua_pop(L, 1);
}

static void put_value(lua_State *L, buf_t *b, int idx, int seen, int depth);

/* Whether the table at idx is a JSON array: marked as one, or with keys
 * exactly 1..n. */
static lua_Integer array_length(lua_State *L, int idx) {
    lua_Integer count = 0, max = 0;
    if (lua_getmetatable(L, idx)) {
        int marked;
        luaL_getmetatable(L, JSON_ARRAY_MT);
        marked = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (marked) return (lua_Integer)lua_rawlen(L, idx);
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
            lua_pop(L, 1);
            return -1;
        }
        if (lua_tointeger(L, -1) > max) max = lua_tointeger(L, -1);
        count++;
    }
    return count > 0 && max == count ? count : -1;
}

/* The table at idx as JSON, its tables marked in seen (the index of a
 * table) while they are being written. */
static void put_table(lua_State *L, buf_t *b, int idx, int seen, int depth) {
    lua_Integer n;
    int first = 1;

    lua_pushvalue(L, idx);
    if (lua_rawget(L, seen) != LUA_TNIL || depth > FIELD_DEPTH || !lua_checkstack(L, 8)) {
        lua_pop(L, 1);
        put_described(L, b, idx, depth > FIELD_DEPTH ? "nested too deep" : "a cycle");
        return;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, idx);
    lua_pushboolean(L, 1);
    lua_rawset(L, seen);
    if ((n = array_length(L, idx)) >= 0) {
        put_str(b, "[");
        for (lua_Integer i = 1; i <= n; i++) {
            if (i > 1) put_str(b, ",");
            lua_rawgeti(L, idx, i);
            put_value(L, b, lua_gettop(L), seen, depth + 1);
            lua_pop(L, 1);
        }
        put_str(b, "]");
    } else {
        put_str(b, "{");
        lua_pushnil(L);
        /* Stack: ..., key, value */
        while (lua_next(L, idx)) {
            size_t kn;
            const char *k;
            if (!first) put_str(b, ",");
            first = 0;
            k = luaL_tolstring(L, -2, &kn); /* Stack: ..., key, value, name */
            put_json_string(b, k, kn);
            put_str(b, ":");
            if (log_is_secret(k)) put_str(b, "\"********\"");
            else put_value(L, b, lua_gettop(L) - 1, seen, depth + 1);
            lua_pop(L, 2);
        }
        put_str(b, "}");
    }
    lua_pushvalue(L, idx);
    lua_pushnil(L);
    lua_rawset(L, seen);
}

static void put_value(lua_State *L, buf_t *b, int idx, int seen, int depth) {
    size_t n;
    const char *s;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: /* a hole in a marked array */
        put_str(b, "null");
        break;
    case LUA_TBOOLEAN:
        put_str(b, lua_toboolean(L, idx) ? "true" : "false");
        break;
    case LUA_TNUMBER:
        put_number(L, b, idx);
        break;
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &n);
        put_json_string(b, s, n);
        break;
    case LUA_TTABLE:
        put_table(L, b, idx, seen, depth);
        break;
    case LUA_TLIGHTUSERDATA:
        if (!lua_touserdata(L, idx)) { /* luka.null */
            put_str(b, "null");
            break;
        }
        /* fall through */
    default:
        put_described(L, b, idx, NULL);
    }
}

/* The fields of one record, sorted by name, and anchored in a Lua table
 * at index anchor until the record is written. */
typedef struct fields {
    log_field_t *f;
    int n;
    const char *traceback;
} fields_t;

static int by_name(const void *a, const void *b) {
    return strcmp(((const log_field_t *)a)->name, ((const log_field_t *)b)->name);
}

/* Keep the string on top of the stack alive in anchor; returns it. */
static const char *anchor_top(lua_State *L, int anchor) {
    const char *s = lua_tostring(L, -1);
    lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
    return s;
}

/* A string field: as it is, unless it holds a traceback (from
 * debug.traceback or an xpcall handler), which becomes the record's when
 * it has none yet; a string with a zero byte goes as JSON. */
static void string_field(lua_State *L, int idx, int anchor, fields_t *fs, log_field_t *f) {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n), *tb = strstr(s, "stack traceback:\n");
    if (!fs->traceback && tb && (tb == s || tb[-1] == '\n')) {
        fs->traceback = tb;
        n = (size_t)(tb - s) - (tb > s); /* what came before, without its newline */
    }
    if (strlen(s) < n) {
        buf_t b = {0};
        put_json_string(&b, s, n);
        lua_pushstring(L, b.p && !b.failed ? b.p : "\"\"");
        free(b.p);
        f->json = 1;
    } else {
        lua_pushlstring(L, s, n);
    }
    f->value = anchor_top(L, anchor);
}

/* Read the fields table at idx into fs.  Everything fs points to is
 * anchored in the table at anchor. */
static void read_fields(lua_State *L, int idx, int anchor, int seen, fields_t *fs) {
    int cap = 0;
    lua_pushnil(L);
    /* Stack: ..., key, value */
    while (lua_next(L, idx)) {
        log_field_t *f;
        int value = lua_gettop(L);
        lua_pushvalue(L, -2);
        luaL_tolstring(L, -1, NULL);
        lua_remove(L, -2);
        /* Stack: ..., key, value, name */
        if (strcmp(lua_tostring(L, -1), "traceback") == 0 && lua_type(L, value) == LUA_TSTRING) {
            fs->traceback = lua_tostring(L, value); /* anchored by the fields table */
            lua_pop(L, 2);
            continue;
        }
        if (fs->n == cap) {
            log_field_t *grown = realloc(fs->f, (size_t)(cap ? 2 * cap : 8) * sizeof(*fs->f));
            if (!grown) {
                lua_pop(L, 3); /* out of memory: the fields read so far */
                break;
            }
            fs->f = grown;
            cap = cap ? 2 * cap : 8;
        }
        f = &fs->f[fs->n++];
        f->name = anchor_top(L, anchor);
        f->json = 0;
        if (lua_type(L, value) == LUA_TSTRING) {
            string_field(L, value, anchor, fs, f);
        } else {
            buf_t b = {0};
            put_value(L, &b, value, seen, 1);
            if (!b.p || b.failed || b.len > FIELD_MAX) {
                lua_pushfstring(L, "%s (too big to log)", luaL_tolstring(L, value, NULL));
                lua_remove(L, -2);
            } else {
                lua_pushlstring(L, b.p, b.len);
                f->json = 1;
            }
            free(b.p);
            f->value = anchor_top(L, anchor);
        }
        lua_pop(L, 1); /* the value */
    }
    if (fs->n > 1) qsort(fs->f, (size_t)fs->n, sizeof(*fs->f), by_name);
}

/* The context of a line the app's code writes now. */
static const log_ctx_t *context(lua_State *L, log_ctx_t *c) {
    inflight_t *inf = call_current();
    if (inf && inf->flow) inflight_log_ctx(inf, c);
    else *c = (log_ctx_t){.partition = -1, .offset = -1};
    c->app = app_name(L);
    return c;
}

/* luka.log.<level>(msg [, fields]); the level is upvalue 1. */
static int l_log(lua_State *L) {
    int level = (int)lua_tointeger(L, lua_upvalueindex(1));
    fields_t fs = {NULL, 0, NULL};
    log_ctx_t ctx;

    if (lua_type(L, 1) != LUA_TSTRING)
        return luaL_error(L, "luka.log.%s: msg must be a string, got %s", log_level_name(level),
                          luaL_typename(L, 1));
    if (!lua_isnoneornil(L, 2) && !lua_istable(L, 2))
        return luaL_error(L, "luka.log.%s: fields must be a table, got %s", log_level_name(level),
                          luaL_typename(L, 2));
    if (!log_enabled(level)) return 0;
    lua_settop(L, 2);
    lua_newtable(L); /* 3: anchors the strings of the record */
    lua_newtable(L); /* 4: the tables being written, against cycles */
    if (lua_istable(L, 2)) read_fields(L, 2, 3, 4, &fs);
    log_put(&(log_record_t){level, "app", context(L, &ctx), lua_tostring(L, 1), fs.f, fs.n,
                            fs.traceback});
    free(fs.f);
    return 0;
}

/* print(...) as Lua's own in text mode; in JSON mode, a log line at info
 * (component "print"), so that every line luka writes stays JSON.  Lua's
 * print is upvalue 1. */
static int l_print(lua_State *L) {
    int n = lua_gettop(L);
    luaL_Buffer b;
    log_ctx_t ctx;

    if (log_format != LOG_JSON) {
        lua_pushvalue(L, lua_upvalueindex(1));
        lua_insert(L, 1);
        lua_call(L, n, 0);
        return 0;
    }
    if (!log_enabled(LOG_INFO)) return 0;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1) luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    log_put(&(log_record_t){LOG_INFO, "print", context(L, &ctx), lua_tostring(L, -1), NULL, 0,
                            NULL});
    return 0;
}

void applog_inject_api(lua_State *L) {
    lua_createtable(L, 0, 4);
    for (int level = LOG_ERROR; level <= LOG_DEBUG; level++) {
        lua_pushinteger(L, level);
        lua_pushcclosure(L, l_log, 1);
        lua_setfield(L, -2, log_level_name(level));
    }
    lua_setfield(L, -2, "log");
    /* The app's print, unless it was replaced already (a second require
     * of luka.host in the same state). */
    lua_getglobal(L, "print");
    if (lua_tocfunction(L, -1) != l_print) {
        lua_pushcclosure(L, l_print, 1);
        lua_setglobal(L, "print");
    } else {
        lua_pop(L, 1);
    }
}
