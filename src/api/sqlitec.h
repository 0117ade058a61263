/* sqlitec.h - luka.sqlite: a SQLite database for small apps, whose calls
 * are synchronous and block the loop while SQLite works. */
#ifndef LUKA_SQLITEC_H
#define LUKA_SQLITEC_H

#include <lua.h>

/* Fill the table at the top of the stack with sqlite(path). */
void sqlitec_inject_api(lua_State *L);

#endif
