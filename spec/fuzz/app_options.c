/* app_options.c - libFuzzer harness for the app-script validator (app_load
 * in src/app.c and lua/luka/dsl.lua): the input is the options table of a
 * declaration, as in
 *
 *     luka.consumer "x" <input>
 *
 * and the app is loaded from a memfd.  Property: no crash, and either an
 * app that declares consumer "x" with its topics and handler, or an error
 * message; an error from luka's own checks names the file and line.
 *
 * The script runs in a sandbox first: no process, file or binary-chunk
 * functions, and string.rep capped, so that a mutation cannot exit the
 * fuzzer, touch the disk, feed Lua forged bytecode (Lua does not verify
 * bytecode; that crash would be Lua's, not luka's) or allocate gigabytes
 * in one call.  Built and run by `make fuzz`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <lauxlib.h>

#include "app/app.h"
#include "api/lapi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char prelude[] =
    "local luka = require 'luka'; "
    "os.execute, os.exit, os.remove, os.rename, os.tmpname = nil; "
    "io.popen, io.open, io.lines, io.input, io.output, io.read, io.write, io.close, io.tmpfile = nil; "
    "io.stdin, io.stdout, io.stderr, print = nil; "
    "loadfile, dofile, string.dump, package.loadlib = nil; package.cpath = ''; "
    "do local l = load; load = function(c, n, m, ...) return l(c, n, 't', ...) end end; "
    "do local rep = string.rep; string.rep = function(s, n, ...) "
    "if type(n) == 'number' and n * #tostring(s) > 1e6 then error('rep capped by the harness', 2) end "
    "return rep(s, n, ...) end end\n"
    "luka.consumer \"x\" ";

static void fail(const char *what, const char *detail) {
    fprintf(stderr, "app_options: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

/* Whether msg starts with "PATH:LINE:". */
static int names_line(const char *msg, const char *path) {
    size_t n = strlen(path);
    const char *p = msg + n + 1;
    if (strncmp(msg, path, n) != 0 || msg[n] != ':' || *p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') p++;
    return *p == ':';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    static FILE *devnull;
    char err[2048] = "";
    app_t *app;

    if (fd < 0) {
        fd = memfd_create("luka-app", MFD_CLOEXEC);
        if (fd < 0) fail("memfd_create failed", NULL);
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        devnull = fopen("/dev/null", "w");
    }
    if (ftruncate(fd, 0) != 0 ||
        pwrite(fd, prelude, sizeof(prelude) - 1, 0) != (ssize_t)(sizeof(prelude) - 1) ||
        (size && pwrite(fd, data, size, sizeof(prelude) - 1) != (ssize_t)size))
        fail("cannot write the script", NULL);

    app = app_load(path, NULL, lapi_open, err, sizeof(err));
    if (app) {
        const endpoint_conf_t *e = app_endpoint(app, "x");
        if (!e) fail("a loaded app lacks consumer x", NULL);
        if (e->ntopics < 1 || !e->topics[0]) fail("consumer x has no topic", NULL);
        if (e->handle == LUA_NOREF || e->handle == LUA_REFNIL) fail("consumer x has no handler", NULL);
        app_print(app, devnull);
        app_free(app); /* and the timers made while loading, with its state */
        return 0;
    }
    if (!err[0]) fail("app_load failed without a message", NULL);
    if (!memchr(err, '\0', sizeof(err))) fail("the message is not terminated", NULL);
    /* Messages from luka.dsl's checks carry the declaration's label. */
    if (strstr(err, "consumer 'x'") && !names_line(err, path)) fail("no file:line in", err);
    return 0;
}
