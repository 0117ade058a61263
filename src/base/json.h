/* json.h - JSON payloads to Lua values (json_decode.c) and back (json.c,
 * through jansson).
 *
 * Used by the message pipeline (decode each payload, encode what handlers
 * publish) and by the luka.json Lua API. */
#ifndef LUKA_JSON_H
#define LUKA_JSON_H

#include <stddef.h>

#include <lua.h>

/* Registry key of the metatable that marks a table as a JSON array. */
#define JSON_ARRAY_MT "luka.array"

/* Make the array metatable.  Call once per Lua state before anything else
 * in this file. */
void json_init(lua_State *L);

/* Push luka.null: the value JSON null decodes to. */
void json_push_null(lua_State *L);

/* Decode buf[0..len) and push the value.  Returns 0, or -1 with a message
 * naming the position ("invalid JSON at line 1, column 7 (byte 6): ...") in
 * errbuf and nothing pushed. */
int json_decode(lua_State *L, const char *buf, size_t len, char *errbuf,
                size_t errlen);

/* Encode the value at idx.  Returns a malloc'd string (*len set), or NULL
 * with a message in errbuf. */
char *json_encode(lua_State *L, int idx, size_t *len, char *errbuf,
                  size_t errlen);

/* Fill the table at the top of the stack with json.encode/json.decode/
 * json.null/json.array for Lua code (luka.json). */
void json_inject_api(lua_State *L);

#endif
