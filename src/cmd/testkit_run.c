/* testkit_run.c - `luka test`: busted run inside luka, with require
 * "luka.test" (testkit.c) available.  Its report owns stdout: what the app
 * under test writes there (print in handlers, timers or the script) goes
 * to stderr while the kit runs, so `-o junit` or `-o TAP` stays parseable.
 * A missing busted is named with the package that brings it. */
#include "cmd/testkit.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "api/lapi.h"
#include "app/app.h"
#include "base/json.h"
#include "lua/script.h"
#include "lua/state.h"

#define BUSTED_HINT                                                                               \
    "luka test: busted is not installed (no busted.runner on the Lua 5.4 module path);\n"         \
    "install it with: apt-get install lua-busted   (or scripts/setup test, in luka's checkout)\n"

/* Runs with the report's file handle as its argument: busted and the spec
 * files write there (io.write, io.stdout and print alike), while C's stdout,
 * which the apps' states print to, now leads to stderr. */
static const char RUNNER[] =
    "local report = ...\n"
    "io.stdout = report\n"
    "io.output(report)\n"
    "function print(...)\n"
    "  for i = 1, select('#', ...) do\n"
    "    if i > 1 then report:write('\\t') end\n"
    "    report:write(tostring((select(i, ...))))\n"
    "  end\n"
    "  report:write('\\n')\n"
    "end\n"
    "require('busted.runner')({ standalone = false })\n";

static int close_report(lua_State *L) {
    luaL_Stream *p = luaL_checkudata(L, 1, LUA_FILEHANDLE);
    return luaL_fileresult(L, fclose(p->f) == 0, NULL);
}

/* Move the real stdout to a new descriptor, point descriptor 1 at stderr,
 * and push a Lua file handle for the first: the report.  Returns -1 when
 * the descriptors cannot be had (then nothing changed). */
static int push_report(lua_State *L) {
    int fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    luaL_Stream *p;
    FILE *f;

    if (fd < 0) return -1;
    if (!(f = fdopen(fd, "w"))) {
        close(fd);
        return -1;
    }
    fflush(stdout);
    if (dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
        fclose(f);
        return -1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    p = lua_newuserdatauv(L, sizeof(*p), 0);
    p->f = f;
    p->closef = close_report;
    luaL_setmetatable(L, LUA_FILEHANDLE);
    return 0;
}

static int busted_installed(lua_State *L) {
    int found;
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchpath");
    lua_pushliteral(L, "busted.runner");
    lua_getfield(L, -3, "path");
    lua_call(L, 2, 1);
    found = lua_isstring(L, -1);
    lua_pop(L, 2); /* result, package */
    return found;
}

int testkit_main(int argc, char **argv) {
    lua_State *L = state_new();
    script_err_t err;
    int rc = 0;

    luaL_openlibs(L);
    script_init(L);
    json_init(L);
    app_open_modules(L, lapi_open);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, testkit_open);
    lua_setfield(L, -2, "luka.test");
    lua_pop(L, 2);
    if (!busted_installed(L)) {
        fputs(BUSTED_HINT, stderr);
        rc = 1;
        goto done;
    }
    /* busted reads its command line from the global arg. */
    lua_createtable(L, argc, 1);
    lua_pushliteral(L, "luka test");
    lua_rawseti(L, -2, 0);
    for (int i = 1; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    if (argc < 2) {
        lua_pushliteral(L, "spec");
        lua_rawseti(L, -2, 1);
    }
    lua_setglobal(L, "arg");
    /* A chunk that fails to load leaves only its message on the stack; a
     * call that fails fills err, traceback included. */
    if (luaL_loadstring(L, RUNNER) != LUA_OK) {
        fprintf(stderr, "luka test: %s\n", lua_tostring(L, -1));
        rc = 1;
    } else if (push_report(L) != 0) {
        perror("luka test: cannot set stdout aside for the report");
        rc = 1;
    } else if (script_call(L, 1, 0, 0, &err) != 0) {
        fprintf(stderr, "luka test: %s\n%s\n", err.msg, err.traceback);
        rc = 1;
    }
done:
    state_close(L);
    return rc;
}
