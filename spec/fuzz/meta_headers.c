/* meta_headers.c - libFuzzer harness for src/meta.c: a message_t with a
 * fuzzed topic, partition, offset, timestamp, key and headers (built with
 * rd_kafka_headers_new and rd_kafka_header_add) goes through meta_push.
 * Property: no crash, one table pushed, every field as in the message, and
 * meta.headers maps each header name to the value of its last occurrence
 * (luka.null for a header without a value), with meta.id taken from an
 * "id" header whose value is a string.  Built and run by `make fuzz`.
 *
 * Input layout, read front to back (missing bytes read as 0):
 *   u8 attempt, u8 flags (1: key, 2: timestamp, 4: headers),
 *   i32 partition, i64 offset, i64 timestamp,
 *   u8 topic length, topic, u16 key length, key,
 *   then headers until the input ends: u8 name length, name,
 *   u16 value length (0xffff: no value), value. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <librdkafka/rdkafka.h>

#define HARNESS "meta_headers"
#include "harness.h"
#include "base/message.h"
#include "lua/meta.h"


typedef struct {
    const uint8_t *p;
    size_t left;
} reader_t;

static uint64_t take(reader_t *r, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) {
        v = v << 8 | (r->left ? *r->p : 0);
        if (r->left) r->p++, r->left--;
    }
    return v;
}

/* Up to n bytes; *got says how many there were. */
static const char *take_bytes(reader_t *r, size_t n, size_t *got) {
    const char *s = (const char *)r->p;
    *got = n < r->left ? n : r->left;
    r->p += *got;
    r->left -= *got;
    return s;
}

static void expect_integer(lua_State *L, const char *field, int64_t want) {
    if (lua_getfield(L, -1, field) != LUA_TNUMBER || !lua_isinteger(L, -1) ||
        lua_tointeger(L, -1) != want)
        fail("wrong field", field);
    lua_pop(L, 1);
}

static void expect_bytes(lua_State *L, int idx, const char *want, size_t len, const char *what) {
    size_t got;
    const char *s;
    if (lua_type(L, idx) != LUA_TSTRING) fail("not a string", what);
    s = lua_tolstring(L, idx, &got);
    if (got != len || memcmp(s, want, len) != 0) fail("wrong bytes", what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    reader_t r = {data, size};
    lua_State *L = state();
    message_t m;
    char topic[256];
    size_t n;
    int attempt, flags, top;
    const char *s;

    memset(&m, 0, sizeof(m));
    attempt = (int)take(&r, 1);
    flags = (int)take(&r, 1);
    m.partition = (int32_t)take(&r, 4);
    m.offset = (int64_t)take(&r, 8);
    m.timestamp = (int64_t)take(&r, 8);
    if (!(flags & 2)) m.timestamp = -1;
    /* A topic name is a C string: librdkafka hands it over NUL-terminated. */
    s = take_bytes(&r, take(&r, 1), &n);
    memcpy(topic, s, n);
    topic[n] = '\0';
    m.topic = topic;
    s = take_bytes(&r, take(&r, 2), &n);
    if (flags & 1) m.key = s, m.key_len = n;
    if (flags & 4) {
        m.headers = rd_kafka_headers_new(8);
        while (r.left) {
            char name[256];
            size_t vlen;
            s = take_bytes(&r, take(&r, 1), &n);
            /* Names are C strings too (rd_kafka_header_get_all). */
            for (size_t i = 0; i < n; i++) name[i] = s[i] ? s[i] : '_';
            name[n] = '\0';
            vlen = take(&r, 2);
            if (vlen == 0xffff) {
                rd_kafka_header_add(m.headers, name, (ssize_t)n, NULL, 0);
            } else {
                s = take_bytes(&r, vlen, &vlen);
                rd_kafka_header_add(m.headers, name, (ssize_t)n, s, (ssize_t)vlen);
            }
        }
    }

    lua_settop(L, 0);
    meta_push(L, &m, attempt, NULL);
    top = lua_gettop(L);
    if (top != 1 || !lua_istable(L, 1)) fail("meta_push did not push one table", NULL);

    lua_getfield(L, 1, "topic");
    expect_bytes(L, -1, topic, strlen(topic), "topic");
    lua_pop(L, 1);
    expect_integer(L, "partition", m.partition);
    expect_integer(L, "offset", m.offset);
    expect_integer(L, "attempt", attempt);
    if (m.timestamp >= 0) expect_integer(L, "timestamp", m.timestamp);
    else if (lua_getfield(L, 1, "timestamp") != LUA_TNIL) fail("a timestamp where none was", NULL);
    else lua_pop(L, 1);
    lua_getfield(L, 1, "key");
    if (m.key) expect_bytes(L, -1, m.key, m.key_len, "key");
    else if (!lua_isnil(L, -1)) fail("a key where none was", NULL);
    lua_pop(L, 1);

    if (lua_getfield(L, 1, "headers") != LUA_TTABLE) fail("meta.headers is not a table", NULL);
    /* Stack: meta, headers.  Each name reads as its last value... */
    for (size_t i = 0; m.headers; i++) {
        const char *name;
        const void *v, *last;
        size_t vs, ls;
        if (rd_kafka_header_get_all(m.headers, i, &name, &v, &vs)) break;
        if (rd_kafka_header_get_last(m.headers, name, &last, &ls)) fail("get_last lost a name", name);
        lua_getfield(L, 2, name);
        if (last) expect_bytes(L, -1, last, ls, name);
        else if (lua_type(L, -1) != LUA_TLIGHTUSERDATA || lua_touserdata(L, -1)) fail("not luka.null", name);
        lua_pop(L, 1);
    }
    /* ...and holds no other names. */
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        const void *v;
        size_t vs;
        if (lua_type(L, -2) != LUA_TSTRING || !m.headers ||
            rd_kafka_header_get_last(m.headers, lua_tostring(L, -2), &v, &vs))
            fail("a header name the message does not have", lua_tostring(L, -2));
        lua_pop(L, 1);
    }

    /* meta.id is the id header's value when that is a string. */
    lua_getfield(L, 2, "id");
    lua_getfield(L, 1, "id");
    if (lua_type(L, -2) == LUA_TSTRING ? !lua_rawequal(L, -1, -2) : !lua_isnil(L, -1))
        fail("meta.id is not the id header", NULL);

    if (m.headers) rd_kafka_headers_destroy(m.headers);
    lua_settop(L, 0);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
