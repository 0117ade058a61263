/* testkit.h - the handler test kit: an app loaded into a harness whose
 * endpoints' flows have the kit as their source and whose publishers are
 * the kit's sinks, so a spec delivers messages through the production
 * pipeline and policies, with no broker, and looks at what was published,
 * retried, dead-lettered or committed.  `luka test` runs busted with the
 * kit available as require "luka.test". */
#ifndef LUKA_TESTKIT_H
#define LUKA_TESTKIT_H

#include <lua.h>

/* The opener of the luka.test module. */
int testkit_open(lua_State *L);

/* `luka test [SPEC_DIR] [BUSTED_OPTIONS...]`. */
int testkit_main(int argc, char **argv);

#endif
