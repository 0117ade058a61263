/* pgc_values.c - the values of luka.pg: Lua arguments as PostgreSQL's text
 * parameters, and a result's rows as Lua tables by column type (README,
 * "PostgreSQL calls"), for api/pgc.c. */
#include "api/pgc_values.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "base/json.h"

/* Type OIDs of pg_type.h that results are converted by. */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_OID 26
#define OID_JSON 114
#define OID_FLOAT4 700
#define OID_FLOAT8 701
#define OID_JSONB 3802

void pgc_check_params(lua_State *L, int first, int n) {
    if (n > 65535) luaL_error(L, "luka.pg: at most 65535 parameters, got %d", n);
    for (int i = 0; i < n; i++) {
        int idx = first + i, t = lua_type(L, idx);
        if (t == LUA_TNIL || t == LUA_TBOOLEAN || t == LUA_TNUMBER || t == LUA_TTABLE) continue;
        if (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL) continue;
        if (t == LUA_TSTRING) {
            size_t len;
            const char *s = lua_tolstring(L, idx, &len);
            if (memchr(s, '\0', len))
                luaL_argerror(L, idx, "a string with a zero byte cannot be a parameter; send bytes "
                                      "as hex text with decode($n, 'hex')");
            continue;
        }
        luaL_typeerror(L, idx, "nil, luka.null, boolean, number, string or table");
    }
}

int pgc_param(lua_State *L, int idx, char **out, char *err, size_t errlen) {
    char buf[64];
    const char *s = NULL;
    size_t len;

    *out = NULL;
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        s = lua_toboolean(L, idx) ? "true" : "false";
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            snprintf(buf, sizeof(buf), "%lld", (long long)lua_tointeger(L, idx));
        } else {
            double d = lua_tonumber(L, idx);
            if (isnan(d)) snprintf(buf, sizeof(buf), "NaN");
            else if (isinf(d)) snprintf(buf, sizeof(buf), "%sInfinity", d < 0 ? "-" : "");
            else snprintf(buf, sizeof(buf), "%.17g", d);
        }
        s = buf;
        break;
    case LUA_TSTRING:
        s = lua_tostring(L, idx);
        break;
    case LUA_TTABLE:
        if (!(*out = json_encode(L, idx, &len, err, errlen))) return -2;
        return 0;
    default: /* nil, luka.null */
        return 0;
    }
    if (!(*out = strdup(s))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* The error of result r (or of a broken connection), for messages:
 * "SQLSTATE: message (DETAIL: ...)". */
void pgc_result_error(const PGresult *r, char *buf, size_t len) {
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    const char *detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
    if (!msg) msg = PQresultErrorMessage(r);
    snprintf(buf, len, "%s %s: %s%s%s%s", sev ? sev : "ERROR", state ? state : "?????", msg,
             detail ? " (DETAIL: " : "", detail ? detail : "", detail ? ")" : "");
}

static void push_cell(lua_State *L, Oid type, const char *v, int len) {
    char *end;
    switch (type) {
    case OID_BOOL:
        lua_pushboolean(L, v[0] == 't');
        return;
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
    case OID_OID:
        lua_pushinteger(L, (lua_Integer)strtoll(v, &end, 10));
        return;
    case OID_FLOAT4:
    case OID_FLOAT8:
        lua_pushnumber(L, (lua_Number)strtod(v, &end));
        return;
    case OID_JSON:
    case OID_JSONB: {
        char err[200];
        if (json_decode(L, v, (size_t)len, err, sizeof(err)) != 0) lua_pushlstring(L, v, (size_t)len);
        return;
    }
    case OID_BYTEA: {
        size_t n;
        unsigned char *b = PQunescapeBytea((const unsigned char *)v, &n);
        if (!b) luaL_error(L, "out of memory");
        lua_pushlstring(L, (const char *)b, n);
        PQfreemem(b);
        return;
    }
    default: /* numeric (exact), text and the rest: PostgreSQL's text */
        lua_pushlstring(L, v, (size_t)len);
    }
}

/* The rows of result 1 as a sequence of tables keyed by column name, with
 * count set. */
int pgc_push_rows(lua_State *L) {
    const PGresult *r = lua_touserdata(L, 1);
    int nrows = PQntuples(r), nf = PQnfields(r);
    const char *count = PQcmdTuples((PGresult *)r);

    luaL_checkstack(L, 6, "a result");
    lua_createtable(L, nrows, 1);
    for (int i = 0; i < nrows; i++) {
        lua_createtable(L, 0, nf);
        for (int f = 0; f < nf; f++) {
            if (PQgetisnull(r, i, f)) json_push_null(L);
            else push_cell(L, PQftype(r, f), PQgetvalue(r, i, f), PQgetlength(r, i, f));
            lua_setfield(L, -2, PQfname(r, f));
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_pushinteger(L, count && count[0] ? (lua_Integer)strtoll(count, NULL, 10) : nrows);
    lua_setfield(L, -2, "count");
    return 1;
}
