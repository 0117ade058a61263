// simdjson.cpp - the simdjson candidate of scripts/bench-json: On Demand
// walks the document and pushes each value as it comes.  Enough of the
// semantics for the benchmark: numbers beyond int64 are refused rather than
// matched to jansson, and trailing text is not looked for.
//
// On Demand runs the implementation chosen when this file is compiled:
// with Debian's portable flags that is "fallback" (no SIMD); the script
// compiles it a second time with -march=haswell (AVX2), as SIMDJSON_FN
// simdjson_haswell_decode.
#include <cstring>
#include <vector>

#include <simdjson.h>

#include "bench.h"

#ifndef SIMDJSON_FN
#define SIMDJSON_FN simdjson_decode
#endif

using namespace simdjson;

static int push(lua_State *L, ondemand::value v);

static int push_array(lua_State *L, ondemand::array a) {
    int first = lua_gettop(L) + 1;
    for (auto item : a) {
        ondemand::value v;
        if (item.get(v) || !lua_checkstack(L, 4) || push(L, v)) return -1;
    }
    bench_end_array(L, first);
    return 0;
}

static int push_object(lua_State *L, ondemand::object o) {
    int first = lua_gettop(L) + 1;
    for (auto field : o) {
        std::string_view key;
        ondemand::value v;
        if (field.unescaped_key().get(key) || !lua_checkstack(L, 4)) return -1;
        lua_pushlstring(L, key.data(), key.size());
        if (field.value().get(v) || push(L, v)) return -1;
    }
    bench_end_object(L, first);
    return 0;
}

static int push(lua_State *L, ondemand::value v) {
    ondemand::json_type t;
    if (v.type().get(t)) return -1;
    switch (t) {
    case ondemand::json_type::object: {
        ondemand::object o;
        return v.get_object().get(o) ? -1 : push_object(L, o);
    }
    case ondemand::json_type::array: {
        ondemand::array a;
        return v.get_array().get(a) ? -1 : push_array(L, a);
    }
    case ondemand::json_type::string: {
        std::string_view s;
        if (v.get_string().get(s)) return -1;
        lua_pushlstring(L, s.data(), s.size());
        return 0;
    }
    case ondemand::json_type::number: {
        ondemand::number n;
        if (v.get_number().get(n)) return -1;
        if (n.is_int64()) lua_pushinteger(L, n.get_int64());
        else if (n.is_double()) lua_pushnumber(L, n.get_double());
        else return -1;
        return 0;
    }
    case ondemand::json_type::boolean: {
        bool b;
        if (v.get_bool().get(b)) return -1;
        lua_pushboolean(L, b);
        return 0;
    }
    case ondemand::json_type::null:
        if (!v.is_null()) return -1;
        bench_push_null(L);
        return 0;
    }
    return -1;
}

extern "C" int SIMDJSON_FN(lua_State *L, const char *buf, size_t len) {
    // Kafka payloads are not padded: copy each into a padded buffer, as
    // luka would have to.
    static ondemand::parser parser;
    static std::vector<char> padded;
    ondemand::document doc;
    ondemand::value v;
    int top = lua_gettop(L);

    if (padded.size() < len + SIMDJSON_PADDING) padded.resize(len + SIMDJSON_PADDING);
    memcpy(padded.data(), buf, len);
    if (parser.iterate(padded.data(), len, padded.size()).get(doc) || doc.get_value().get(v) ||
        push(L, v)) {
        lua_settop(L, top);
        return -1;
    }
    return 0;
}
