/* bench.h - what the candidates of scripts/bench-json share: the way each
 * of them turns the values it pushed on the Lua stack into a table. */
#ifndef BENCH_JSON_H
#define BENCH_JSON_H

#include <lua.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The values (or key-value pairs) pushed since slot `first` become one
 * table, made at its final size, which takes slot `first`. */
void bench_end_array(lua_State *L, int first);
void bench_end_object(lua_State *L, int first);
void bench_push_null(lua_State *L);

/* The simdjson candidates (simdjson.cpp, compiled for any x86-64 and for
 * AVX2): 0 with the value pushed, or -1. */
int simdjson_decode(lua_State *L, const char *buf, size_t len);
int simdjson_haswell_decode(lua_State *L, const char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif
