/* pgc_values.h - Lua values to PostgreSQL's text parameters and results
 * to Lua values, for api/pgc.c. */
#ifndef LUKA_PGC_VALUES_H
#define LUKA_PGC_VALUES_H

#include <stddef.h>

#include <libpq-fe.h>
#include <lua.h>

/* Raise unless the n values from index first on can be parameters: nil,
 * luka.null, a boolean, a number, a string without a zero byte, a table. */
void pgc_check_params(lua_State *L, int first, int n);

/* The text of the parameter at idx, malloc'd, in *out (NULL: SQL NULL).
 * Returns 0, or -1 (out of memory) or -2 (a table that is no JSON) with
 * err filled. */
int pgc_param(lua_State *L, int idx, char **out, char *err, size_t errlen);

/* The error of result r, for messages: "ERROR SQLSTATE: message (DETAIL:
 * ...)". */
void pgc_result_error(const PGresult *r, char *buf, size_t len);

/* lua_CFunction: push the rows of the PGresult given as light userdata 1,
 * a sequence of tables keyed by column name, with count set. */
int pgc_push_rows(lua_State *L);

#endif
