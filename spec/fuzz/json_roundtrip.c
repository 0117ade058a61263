/* json_roundtrip.c - libFuzzer harness for src/base/json_decode.c and src/base/json.c: any bytes go through
 * json_decode; whatever decodes must encode again with json_encode, and
 * decoding that text must give a Lua value equal to the first: same types
 * (integer and float told apart), same strings byte for byte, same keys,
 * and arrays still marked as arrays.  Built and run by `make fuzz`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#define HARNESS "json_roundtrip"
#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lua_State *L = state();
    char err[512];
    size_t len;
    char *text;

    lua_settop(L, 0);
    if (json_decode(L, (const char *)data, size, err, sizeof(err)) != 0) {
        if (lua_gettop(L) != 0) fail("a failed decode left values on the stack", err);
        if (!err[0]) fail("a failed decode gave no message", NULL);
        return 0;
    }
    if (lua_gettop(L) != 1) fail("decode did not push exactly one value", NULL);
    text = json_encode(L, 1, &len, err, sizeof(err));
    if (!text) fail("a decoded value does not encode", err);
    if (lua_gettop(L) != 1) fail("encode changed the stack", NULL);
    if (json_decode(L, text, len, err, sizeof(err)) != 0) fail("encoded text does not decode", err);
    if (!same(L, 1, 2)) fail("decode(encode(decode(x))) differs from decode(x)", text);
    free(text);
    lua_settop(L, 0);
    /* One state serves every input; keep its garbage from piling up. */
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
