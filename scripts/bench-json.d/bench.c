/* bench.c - scripts/bench-json's program: decode the same JSON messages into
 * Lua with each candidate decoder, check that they all give jansson's values,
 * then time them (`bench time`) or run one of them for callgrind to count
 * (`bench count CANDIDATE SIZE N`, counting inside run_decodes only). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>
#include <yajl_parse.h>

#include "../../spec/fuzz/jansson_lua.h"
#include "bench.h"
#include "base/json.h"

#define MESSAGES 1000 /* distinct messages of each size, decoded in turn */

typedef int decode_fn(lua_State *L, const char *buf, size_t len);

/* Candidates */

static int decode_jansson(lua_State *L, const char *buf, size_t len) {
    char err[256];
    return jansson_decode(L, buf, len, err, sizeof(err));
}

static int decode_luka(lua_State *L, const char *buf, size_t len) {
    char err[256];
    return json_decode(L, buf, len, err, sizeof(err));
}

void bench_push_null(lua_State *L) {
    json_push_null(L);
}

void bench_end_array(lua_State *L, int first) {
    int n = lua_gettop(L) - first + 1;

    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushvalue(L, first + i);
        lua_rawseti(L, -2, i + 1);
    }
    luaL_setmetatable(L, JSON_ARRAY_MT);
    lua_replace(L, first);
    lua_settop(L, first);
}

void bench_end_object(lua_State *L, int first) {
    int n = (lua_gettop(L) - first + 1) / 2;

    lua_createtable(L, 0, n);
    for (int i = 0; i < 2 * n; i += 2) {
        lua_pushvalue(L, first + i);
        lua_pushvalue(L, first + i + 1);
        lua_rawset(L, -3);
    }
    lua_replace(L, first);
    lua_settop(L, first);
}

/* yajl: its callbacks push each value; a stack of where each open
 * container's values start makes the tables at their ends. */
typedef struct {
    lua_State *L;
    int depth, first[64];
} yajl_ctx;

static int y_room(yajl_ctx *c) {
    return lua_checkstack(c->L, 4);
}
static int y_null(void *u) {
    yajl_ctx *c = u;
    return y_room(c) ? (json_push_null(c->L), 1) : 0;
}
static int y_boolean(void *u, int b) {
    yajl_ctx *c = u;
    return y_room(c) ? (lua_pushboolean(c->L, b), 1) : 0;
}
static int y_integer(void *u, long long i) {
    yajl_ctx *c = u;
    return y_room(c) ? (lua_pushinteger(c->L, i), 1) : 0;
}
static int y_double(void *u, double d) {
    yajl_ctx *c = u;
    return y_room(c) ? (lua_pushnumber(c->L, d), 1) : 0;
}
static int y_string(void *u, const unsigned char *s, size_t n) {
    yajl_ctx *c = u;
    return y_room(c) ? (lua_pushlstring(c->L, (const char *)s, n), 1) : 0;
}
static int y_start(void *u) {
    yajl_ctx *c = u;
    if (c->depth == 64) return 0;
    c->first[c->depth++] = lua_gettop(c->L) + 1;
    return 1;
}
static int y_end_map(void *u) {
    yajl_ctx *c = u;
    bench_end_object(c->L, c->first[--c->depth]);
    return 1;
}
static int y_end_array(void *u) {
    yajl_ctx *c = u;
    bench_end_array(c->L, c->first[--c->depth]);
    return 1;
}

static const yajl_callbacks y_callbacks = {
    y_null, y_boolean, y_integer, y_double, NULL, y_string,
    y_start, y_string, y_end_map, y_start, y_end_array,
};

static int decode_yajl(lua_State *L, const char *buf, size_t len) {
    yajl_ctx c = {L, 0, {0}};
    yajl_handle h = yajl_alloc(&y_callbacks, NULL, &c);
    int top = lua_gettop(L), ok;

    ok = yajl_parse(h, (const unsigned char *)buf, len) == yajl_status_ok &&
         yajl_complete_parse(h) == yajl_status_ok;
    yajl_free(h);
    if (!ok) lua_settop(L, top);
    return ok ? 0 : -1;
}

static const struct {
    const char *name;
    decode_fn *decode;
} candidates[] = {
    {"jansson", decode_jansson},
    {"yajl", decode_yajl},
    {"simdjson", simdjson_decode},
    {"simdjson-haswell", simdjson_haswell_decode},
    {"luka", decode_luka},
};
#define NCANDIDATES (int)(sizeof(candidates) / sizeof(candidates[0]))

/* Messages */

typedef struct {
    const char *name;
    char *text[MESSAGES];
    size_t len[MESSAGES], total;
} size_class;

static size_class sizes[2] = {{"150 B", {0}, {0}, 0}, {"2 KB", {0}, {0}, 0}};

static char *dup_text(const char *s, size_t *len) {
    char *t = strdup(s);
    if (!t) abort();
    *len = strlen(t);
    return t;
}

/* scripts/bench's order: 150 bytes, padded by the note. */
static void small_message(int i, char *out, size_t size) {
    char key[16], v[160];
    int n;

    snprintf(key, sizeof(key), "o-%07d", i);
    n = snprintf(v, sizeof(v),
                 "{\"orderId\":\"%s\",\"customer\":\"c-%d\",\"amount\":%d,\"currency\":\"EUR\","
                 "\"items\":[{\"sku\":\"A-%d\",\"qty\":%d}],\"ts\":%lld,\"note\":\"",
                 key, i % 997, i * 7919 % 100000, i % 13, i % 5 + 1, 1700000000000LL + i);
    snprintf(out, size, "%s%.*s\"}", v, 148 - n,
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
}

/* An order of about 2 KB: nested objects, an array of items, floats,
 * booleans, null, non-ASCII text and escapes. */
static void large_message(int i, char *out, size_t size) {
    size_t n = 0;

    n += (size_t)snprintf(out + n, size - n,
        "{\"orderId\":\"o-%07d\",\"customer\":{\"id\":\"c-%d\",\"name\":\"Zo\xc3\xab M\xc3\xbcller\","
        "\"email\":\"zoe%d@example.com\",\"address\":{\"street\":\"Hauptstra\xc3\x9f" "e %d\","
        "\"city\":\"Berlin\",\"zip\":\"10115\",\"country\":\"DE\"},\"vip\":%s,"
        "\"tags\":[\"new\",\"b2b\",\"eu\"]},\"amount\":%d.%02d,\"currency\":\"EUR\",\"items\":[",
        i, i % 997, i, i % 200, i % 2 ? "true" : "false", i * 7919 % 100000, i % 100);
    for (int k = 0; k < 12; k++)
        n += (size_t)snprintf(out + n, size - n,
            "%s{\"sku\":\"A-%d-%d\",\"name\":\"Widget \\\"%d\\\" \\u00e9\",\"qty\":%d,"
            "\"price\":%d.%02d,\"discount\":null,\"attrs\":{\"color\":\"red\",\"size\":\"M\","
            "\"weight\":%d.5}}",
            k ? "," : "", i % 13, k, k, k % 5 + 1, 10 + k * 3, (i + k) % 100, k + 1);
    snprintf(out + n, size - n,
        "],\"shipping\":{\"method\":\"express\",\"cost\":4.99,\"eta\":%lld},"
        "\"notes\":\"ring twice\\nleave at the door\",\"ts\":%lld}",
        1700000360000LL + i, 1700000000000LL + i);
}

static void make_messages(void) {
    char buf[4096];

    for (int i = 0; i < MESSAGES; i++) {
        small_message(i, buf, sizeof(buf));
        sizes[0].text[i] = dup_text(buf, &sizes[0].len[i]);
        sizes[0].total += sizes[0].len[i];
        large_message(i, buf, sizeof(buf));
        sizes[1].text[i] = dup_text(buf, &sizes[1].len[i]);
        sizes[1].total += sizes[1].len[i];
    }
}

/* Checking */

static int same(lua_State *L, int a, int b) {
    int t = lua_type(L, a), ok = 1, na = 0, nb = 0;

    if (t != lua_type(L, b)) return 0;
    switch (t) {
    case LUA_TNUMBER:
        if (lua_isinteger(L, a) != lua_isinteger(L, b)) return 0;
        return lua_isinteger(L, a) ? lua_tointeger(L, a) == lua_tointeger(L, b)
                                   : lua_tonumber(L, a) == lua_tonumber(L, b);
    case LUA_TSTRING:
        return lua_rawequal(L, a, b);
    case LUA_TBOOLEAN:
        return lua_toboolean(L, a) == lua_toboolean(L, b);
    case LUA_TLIGHTUSERDATA:
        return lua_touserdata(L, a) == lua_touserdata(L, b);
    case LUA_TTABLE:
        if (lua_getmetatable(L, a)) na = 1, lua_pop(L, 1);
        if (lua_getmetatable(L, b)) nb = 1, lua_pop(L, 1);
        if (na != nb) return 0;
        for (int k = 0; k < 2; k++) {
            int x = k ? b : a, y = k ? a : b;
            lua_pushnil(L);
            while (ok && lua_next(L, x)) {
                lua_pushvalue(L, -2);
                lua_rawget(L, y);
                ok = same(L, lua_gettop(L) - 1, lua_gettop(L));
                lua_pop(L, 2);
            }
            if (!ok) return lua_pop(L, 1), 0;
        }
        return 1;
    default:
        return 0;
    }
}

static lua_State *new_state(void) {
    lua_State *L = luaL_newstate();
    if (!L) abort();
    json_init(L);
    return L;
}

static void check_all(void) {
    lua_State *L = new_state();

    for (int s = 0; s < 2; s++)
        for (int i = 0; i < MESSAGES; i++)
            for (int c = 0; c < NCANDIDATES; c++) {
                lua_settop(L, 0);
                if (decode_jansson(L, sizes[s].text[i], sizes[s].len[i]) ||
                    candidates[c].decode(L, sizes[s].text[i], sizes[s].len[i]) ||
                    !same(L, 1, 2)) {
                    fprintf(stderr, "bench: %s does not decode %s message %d as jansson does\n",
                            candidates[c].name, sizes[s].name, i);
                    exit(1);
                }
            }
    lua_close(L);
}

/* Measuring */

/* callgrind counts inside this function only (--toggle-collect). */
__attribute__((noinline)) void run_decodes(lua_State *L, decode_fn *decode, size_class *s, long n);
__attribute__((noinline)) void run_decodes(lua_State *L, decode_fn *decode, size_class *s, long n) {
    for (long i = 0; i < n; i++) {
        if (decode(L, s->text[i % MESSAGES], s->len[i % MESSAGES])) abort();
        lua_settop(L, 0);
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    make_messages();
    if (argc == 5 && !strcmp(argv[1], "count")) {
        lua_State *L = new_state();
        int c, s = !strcmp(argv[3], "large");
        for (c = 0; c < NCANDIDATES && strcmp(candidates[c].name, argv[2]); c++) {}
        if (c == NCANDIDATES) return 2;
        run_decodes(L, candidates[c].decode, &sizes[s], atol(argv[4]));
        lua_close(L);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "time")) {
        long n = atol(argv[2]);
        check_all();
        printf("sizes: %zu and %zu bytes on average\n", sizes[0].total / MESSAGES,
               sizes[1].total / MESSAGES);
        for (int c = 0; c < NCANDIDATES; c++)
            for (int s = 0; s < 2; s++) {
                lua_State *L = new_state();
                long each = s ? n / 10 : n;
                double best = 1e9;
                /* The best of five: on a shared machine the others only
                 * add time. */
                run_decodes(L, candidates[c].decode, &sizes[s], each / 10);
                for (int r = 0; r < 5; r++) {
                    double t = now();
                    run_decodes(L, candidates[c].decode, &sizes[s], each);
                    t = (now() - t) / (double)each;
                    if (t < best) best = t;
                }
                printf("%s %d %.3f\n", candidates[c].name, s, best * 1e6);
                lua_close(L);
            }
        return 0;
    }
    fprintf(stderr, "usage: bench time N | bench count CANDIDATE small|large N\n");
    return 2;
}
