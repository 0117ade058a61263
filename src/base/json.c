/* json.c - Lua values to JSON text through jansson, and the luka.json API.
 * Encoding walks Lua values into a jansson tree and dumps it compactly;
 * decoding is json_decode.c's. */
#include "base/json.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <lauxlib.h>

/* As deep as jansson decodes (its JSON_PARSER_MAX_DEPTH), so whatever was
 * decoded can be encoded again; shallow enough that a table containing
 * itself fails fast instead of exhausting the C stack. */
#define ENCODE_MAX_DEPTH 2048

void json_init(lua_State *L) {
    /* luaL_newmetatable also sets __name, so tostring() and error messages
     * call these tables "luka.array". */
    luaL_newmetatable(L, JSON_ARRAY_MT);
    lua_pop(L, 1);
}

void json_push_null(lua_State *L) {
    lua_pushlightuserdata(L, NULL);
}

/* Encoding.  Only raw, non-raising Lua API calls are used here, so that
 * json_encode can run outside a protected call. */

/* Bytes of path kept in an error message; longer paths end in "...". */
#define PATH_ROOM 252

typedef struct {
    lua_State *L;
    int array_mt;   /* Stack index of the array metatable (nil before json_init) */
    char msg[160];  /* What went wrong, without the path */
    /* Where it went wrong.  Each level prepends its own step while the
     * recursion unwinds, so the path costs nothing unless encoding fails.
     * The steps sit at path[path_pos..PATH_ROOM); when they do not fit, the
     * deepest ones are dropped, as the root end is the one a reader knows. */
    char path[PATH_ROOM + 4];
    size_t path_pos;
    int path_cut;
    int digits;     /* Significant digits the floats need; 0 with none */
} encoder;

/* Record what went wrong; returns NULL so callers can return fail(...). */
__attribute__((format(printf, 2, 3)))
static json_t *fail(encoder *e, const char *fmt, ...) {
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return NULL;
}

/* The fewest significant digits, 15 to 17, with which d prints as text that
 * reads back as d.  Jansson prints every float of a document with one
 * precision (17 unless told), which writes 0.1 as 0.10000000000000001; 15
 * digits are enough for any decimal a person wrote, 17 for any double. */
static int real_digits(double d) {
    char buf[40];

    for (int p = 15; p < 17; p++) {
        snprintf(buf, sizeof(buf), "%.*g", p, d);
        if (strtod(buf, NULL) == d) return p;
    }
    return 17;
}

static void prepend(encoder *e, const char *step, size_t n) {
    size_t len = PATH_ROOM - e->path_pos, keep = len;

    if (n + len > PATH_ROOM) {
        keep = PATH_ROOM - n;
        e->path_cut = 1;
    }
    e->path_pos = PATH_ROOM - n - keep;
    memmove(e->path + e->path_pos + n, e->path + PATH_ROOM - len, keep);
    memcpy(e->path + e->path_pos, step, n);
}

/* Write the number key at idx as an object member name into buf (at least
 * 32 bytes): integers, and integer-valued floats below 1e21, in plain
 * decimal; other floats in the fewest digits that read back as the same
 * double.  Lua already stores integer-valued float keys that fit an integer
 * as integers, so the plain-decimal floats are only those beyond 2^63; 1e21
 * is where JavaScript switches to exponents too.  Returns the length, or -1
 * for an infinity (NaN cannot be a table key). */
static int number_key(lua_State *L, int idx, char *buf, size_t size) {
    lua_Number d;

    if (lua_isinteger(L, idx))
        return snprintf(buf, size, LUA_INTEGER_FMT, lua_tointeger(L, idx));
    d = lua_tonumber(L, idx);
    if (isinf(d)) return -1;
    if (d == floor(d) && fabs(d) < 1e21) return snprintf(buf, size, "%.0f", d);
    for (int precision = 15;; precision++) {
        int n = snprintf(buf, size, "%.*g", precision, d);
        if (precision == 17 || strtod(buf, NULL) == d) return n;
    }
}

static int is_identifier(const char *s, size_t n) {
    if (n == 0 || isdigit((unsigned char)s[0])) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_') return 0;
    return 1;
}

/* Prepend the step to the key at idx: .name, ["odd key"] or [3]. */
static void prepend_key(encoder *e, int idx) {
    char step[64], num[32];
    const char *s;
    size_t len;
    int n;

    if (lua_type(e->L, idx) == LUA_TSTRING) {
        s = lua_tolstring(e->L, idx, &len);
        /* Long keys are cut so that one key cannot fill the whole path. */
        if (len <= 40 && is_identifier(s, len))
            n = snprintf(step, sizeof(step), ".%s", s);
        else
            n = snprintf(step, sizeof(step), "[\"%.*s%s\"]", len > 40 ? 37 : (int)len,
                         s, len > 40 ? "..." : "");
    } else {
        number_key(e->L, idx, num, sizeof(num));
        n = snprintf(step, sizeof(step), "[%s]", num);
    }
    prepend(e, step, (size_t)n);
}

static void prepend_index(encoder *e, lua_Integer i) {
    char step[32];

    prepend(e, step, (size_t)snprintf(step, sizeof(step), "[" LUA_INTEGER_FMT "]", i));
}

static json_t *encode_value(encoder *e, int idx, int depth);

static int has_array_mt(encoder *e, int idx) {
    int yes;

    if (!lua_getmetatable(e->L, idx)) return 0;     /* Stack: mt */
    yes = lua_rawequal(e->L, -1, e->array_mt);
    lua_pop(e->L, 1);
    return yes;
}

/* Returns n if the keys of the table at idx are exactly 1..n, else 0.  A
 * table with a string key is told apart at its first such key. */
static lua_Integer sequence_length(lua_State *L, int idx) {
    lua_Integer count = 0, max = 0, k;

    lua_pushnil(L);                                 /* Stack: nil */
    while (lua_next(L, idx)) {                      /* Stack: key, value */
        if (!lua_isinteger(L, -2) || (k = lua_tointeger(L, -2)) < 1) {
            lua_pop(L, 2);
            return 0;
        }
        if (k > max) max = k;
        count++;
        lua_pop(L, 1);                              /* Stack: key */
    }
    return max == count ? count : 0;
}

/* Encode the table at the absolute index idx.  On failure the stack is put
 * back as it was and the partial jansson tree freed. */
static json_t *encode_table(encoder *e, int idx, int depth) {
    lua_State *L = e->L;
    int top = lua_gettop(L);
    json_t *out = NULL, *item;
    lua_Integer n;
    int is_array;

    if (depth > ENCODE_MAX_DEPTH)
        return fail(e, "nesting deeper than %d (a cycle?)", ENCODE_MAX_DEPTH);
    /* Room for an iteration key and value, plus a metatable. */
    if (!lua_checkstack(L, 3)) return fail(e, "Lua stack overflow");

    /* A marked array keeps its metatable's word even when empty or holed;
     * an unmarked table is an array only when its keys are exactly 1..n. */
    is_array = has_array_mt(e, idx);
    n = is_array ? (lua_Integer)lua_rawlen(L, idx) : sequence_length(L, idx);
    if (is_array || n > 0) {
        if (!(out = json_array())) goto oom;
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);                 /* Stack: value */
            if (!(item = encode_value(e, top + 1, depth + 1))) {
                prepend_index(e, i);
                goto undo;
            }
            lua_pop(L, 1);
            if (json_array_append_new(out, item)) goto oom;
        }
        return out;
    }

    if (!(out = json_object())) goto oom;
    lua_pushnil(L);                                 /* Stack: nil */
    while (lua_next(L, idx)) {                      /* Stack: key, value */
        char num[32];
        const char *key;
        size_t klen, before;
        int kn;

        switch (lua_type(L, -2)) {
        case LUA_TSTRING:
            key = lua_tolstring(L, -2, &klen);
            break;
        case LUA_TNUMBER:
            if ((kn = number_key(L, -2, num, sizeof(num))) < 0) {
                fail(e, "cannot use an infinite number as an object key");
                goto undo;
            }
            key = num;
            klen = (size_t)kn;
            break;
        default:
            fail(e, "cannot use a %s as an object key", luaL_typename(L, -2));
            goto undo;
        }
        if (!(item = encode_value(e, top + 2, depth + 1))) {
            prepend_key(e, top + 1);
            goto undo;
        }
        before = json_object_size(out);
        if (json_object_setn_new(out, key, klen, item)) {
            fail(e, "invalid UTF-8 in object key");
            goto undo;
        }
        /* Keys 1 and "1" both become "1"; dropping one silently would lose
         * data. */
        if (json_object_size(out) == before) {
            fail(e, "key \"%.*s\" appears twice (as a number and as a string)",
                 (int)klen, key);
            goto undo;
        }
        lua_pop(L, 1);                              /* Stack: key */
    }
    return out;

oom:
    fail(e, "out of memory");
undo:
    lua_settop(L, top);
    json_decref(out);
    return NULL;
}

static json_t *encode_value(encoder *e, int idx, int depth) {
    lua_State *L = e->L;
    json_t *v;

    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return json_null();
    case LUA_TBOOLEAN:
        return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            v = json_integer((json_int_t)lua_tointeger(L, idx));
        } else {
            lua_Number d = lua_tonumber(L, idx);

            if (isnan(d)) return fail(e, "cannot encode NaN");
            if (isinf(d)) return fail(e, "cannot encode %s", d > 0 ? "inf" : "-inf");
            if (e->digits < 17) {
                int p = real_digits(d);
                if (p > e->digits) e->digits = p;
            }
            v = json_real(d);
        }
        return v ? v : fail(e, "out of memory");
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);

        /* Jansson checks the UTF-8; its only other failure is out of memory. */
        return (v = json_stringn(s, len)) ? v : fail(e, "invalid UTF-8 in string");
    }
    case LUA_TTABLE:
        return encode_table(e, idx, depth);
    case LUA_TLIGHTUSERDATA:
        if (!lua_touserdata(L, idx)) return json_null();
        return fail(e, "cannot encode a light userdata other than luka.null");
    default:
        return fail(e, "cannot encode a %s", luaL_typename(L, idx));
    }
}

char *json_encode(lua_State *L, int idx, size_t *len, char *errbuf,
                  size_t errlen) {
    encoder e;
    json_t *root;
    char *out;

    idx = lua_absindex(L, idx);
    if (!lua_checkstack(L, 1)) {
        snprintf(errbuf, errlen, "cannot encode JSON: Lua stack overflow");
        return NULL;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, JSON_ARRAY_MT);
    e.L = L;
    e.array_mt = lua_gettop(L);
    e.path_pos = PATH_ROOM;
    e.path[PATH_ROOM] = '\0';
    e.path_cut = 0;
    e.digits = 0;
    root = encode_value(&e, idx, 1);
    lua_pop(L, 1);
    if (!root) {
        if (e.path_cut) memcpy(e.path + PATH_ROOM, "...", 4);
        if (e.path_pos < PATH_ROOM)
            snprintf(errbuf, errlen, "%s at %s", e.msg, e.path + e.path_pos);
        else
            snprintf(errbuf, errlen, "%s", e.msg);
        return NULL;
    }
    /* Jansson allocates with malloc unless json_set_alloc_funcs says
     * otherwise, which is what lets callers free() the result. */
    out = json_dumps(root, JSON_COMPACT | JSON_ENCODE_ANY |
                               (e.digits ? JSON_REAL_PRECISION(e.digits) : 0));
    json_decref(root);
    if (!out) {
        snprintf(errbuf, errlen, "cannot encode JSON: out of memory");
        return NULL;
    }
    *len = strlen(out);
    return out;
}

/* The luka.json Lua API */

static int api_encode(lua_State *L) {
    char err[512];
    size_t len;
    char *s;

    luaL_checkany(L, 1);
    if (!(s = json_encode(L, 1, &len, err, sizeof(err)))) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    /* A memory error raised here would leak s: one buffer, lost only when
     * Lua is already out of memory. */
    lua_pushlstring(L, s, len);
    free(s);
    return 1;
}

static int api_decode(lua_State *L) {
    char err[512];
    size_t len;
    const char *s;

    luaL_checktype(L, 1, LUA_TSTRING);
    s = lua_tolstring(L, 1, &len);
    if (json_decode(L, s, len, err, sizeof(err))) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return 1;
}

static int api_array(lua_State *L) {
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_settop(L, 1);
    }
    luaL_setmetatable(L, JSON_ARRAY_MT);
    return 1;
}

void json_inject_api(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"encode", api_encode},
        {"decode", api_decode},
        {"array", api_array},
        {NULL, NULL},
    };

    luaL_setfuncs(L, fns, 0);
    json_push_null(L);
    lua_setfield(L, -2, "null");
}
