/* json_oracle.c - libFuzzer harness for src/json_decode.c against jansson:
 * the same bytes must give the same Lua value through json_decode and
 * through jansson's tree (fuzz/jansson_lua.h, the decoder luka had before):
 * same types (integer and float told apart, luka.null), strings byte for
 * byte, same keys, arrays marked as arrays.  Or both must refuse them, with
 * the same message.  Built and run by `make fuzz`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "jansson_lua.h"
#define HARNESS "json_oracle"
#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lua_State *L = state();
    char err[512], want[512];
    int rc, want_rc;

    lua_settop(L, 0);
    rc = json_decode(L, (const char *)data, size, err, sizeof(err));
    if (lua_gettop(L) != (rc == 0)) fail("json_decode left the stack wrong", rc ? err : NULL);
    want_rc = jansson_decode(L, (const char *)data, size, want, sizeof(want));
    if (rc != want_rc) fail(rc ? "json_decode refused what jansson took" : "json_decode took what jansson refused",
                            rc ? err : want);
    if (rc != 0) {
        if (strcmp(err, want) != 0) fail("the messages differ", err);
    } else if (!same(L, 1, 2)) {
        fail("json_decode and jansson give different values", NULL);
    }
    lua_settop(L, 0);
    /* One state serves every input; keep its garbage from piling up. */
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
