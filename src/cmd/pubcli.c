/* pubcli.c - `luka publish APP TARGET`: publish each line of stdin by calling
 * the app's own luka.publish, so the publisher's key rule, JSON encoding and
 * id header are exactly those of production.  Only TARGET's producer opens;
 * the app's endpoints, timers and start-up publishes do not run. */
#include "cmd/pubcli.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "app/app.h"
#include "runtime/host.h"
#include "base/json.h"
#include "api/lapi.h"
#include "base/cliopt.h"
#include "base/log.h"
#include "kafka/producer.h"
#include "lua/script.h"
#include "api/timer.h"

/* How long the end of input waits for the last acknowledgements. */
#define FLUSH_TIMEOUT_MS 10000
/* A key function is user code, bounded like a handler. */
#define CALL_TIMEOUT_MS 10000
#define MAX_HEADERS 64

typedef struct pubcli {
    const char *app_path, *target, *key;
    const char *headers[MAX_HEADERS]; /* "name=value", as given */
    int nheaders;
} pubcli_t;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* Options */

enum { OPT_KEY, OPT_HEADER, OPT_BROKERS, NOPTS };

static const cliopt_t options[NOPTS] = {
    [OPT_KEY] = {"--key", "K", "key of every message, instead of the publisher's key rule"},
    [OPT_HEADER] = {"--header", "NAME=VALUE", "add a header to every message; repeatable"},
    [OPT_BROKERS] = {"--brokers", "LIST",
                     "bootstrap servers (default: the app's, else KAFKA_BROKERS,\n"
                     "else localhost:9092)"},
};

static void usage(FILE *out) {
    fputs("usage: luka publish APP TARGET [--key K] [--header NAME=VALUE]... [--brokers LIST]\n"
          "\n"
          "Publish each line of stdin through the app's publisher or channel TARGET,\n"
          "as luka.publish(TARGET, value, {key = K, headers = {...}}) would from a\n"
          "handler.  A line that is JSON is decoded and published re-encoded; any other\n"
          "line is published as it is, as a string.  Blank lines are skipped.  At the\n"
          "end of input, waits up to 10 s for acknowledgements and prints\n"
          "\"published N, failed F\" on stderr; the exit code is 1 if any failed.\n"
          "\n"
          "options (and luka's --log-level LEVEL):\n",
          out);
    cliopt_print(out, options, NOPTS);
}

#define bad_usage(...) cliopt_bad_usage("publish", __VA_ARGS__)

/* Fill c from argv.  Returns -1 to go on, or the exit code. */
static int parse(int argc, char **argv, pubcli_t *c, run_opts_t *ro) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int o;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (a[0] != '-') {
            if (!c->app_path) c->app_path = a;
            else if (!c->target) c->target = a;
            else return bad_usage("one target at a time: got '%s' and '%s'", c->target, a);
            continue;
        }
        if ((o = cliopt_find(options, NOPTS, a)) < 0) return bad_usage("unknown option '%s'", a);
        if (i + 1 >= argc) return bad_usage("%s needs a value: %s %s", a, a, options[o].arg);
        v = argv[++i];
        switch (o) {
        case OPT_KEY:
            c->key = v;
            break;
        case OPT_HEADER:
            if (!strchr(v, '=') || v[0] == '=')
                return bad_usage("--header takes NAME=VALUE, got '%s'", v);
            if (c->nheaders == MAX_HEADERS)
                return bad_usage("at most %d --header options", MAX_HEADERS);
            c->headers[c->nheaders++] = v;
            break;
        case OPT_BROKERS:
            if (!*v) return bad_usage("--brokers needs host:port[,host:port...], got ''");
            ro->brokers = v;
            break;
        }
    }
    if (!c->app_path) return bad_usage("which app? usage: luka publish APP TARGET");
    if (!c->target) return bad_usage("which publisher or channel? usage: luka publish APP TARGET");
    return -1;
}

/* Lua side, run through script_call */

/* unknown_target(name) -> luka.dsl's message for a name luka.publish would
 * refuse, with its suggestion. */
static int unknown_target(lua_State *L) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "luka.dsl");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "check_target");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 2); /* Stack: name, dsl, ok, message */
    return 1;
}

/* prepare(cli) -> luka.publish, opts: the function production calls and the
 * options table every line is published with. */
static int prepare(lua_State *L) {
    const pubcli_t *c = lua_touserdata(L, 1);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "luka");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "publish"); /* Stack: cli, luka, publish */
    lua_createtable(L, 0, 2);
    if (c->key) {
        lua_pushstring(L, c->key);
        lua_setfield(L, -2, "key");
    }
    if (c->nheaders) {
        lua_createtable(L, 0, c->nheaders); /* Stack: ..., opts, headers */
        for (int i = 0; i < c->nheaders; i++) {
            const char *eq = strchr(c->headers[i], '=');
            lua_pushlstring(L, c->headers[i], (size_t)(eq - c->headers[i]));
            lua_pushstring(L, eq + 1);
            lua_settable(L, -3);
        }
        lua_setfield(L, -2, "headers");
    }
    return 2;
}

/* Publish one line with the function and options at fn and fn + 1.
 * Returns 0 when it was queued, or -1 after logging why not. */
static int publish_line(lua_State *L, int fn, const pubcli_t *c, const char *line, size_t len,
                        long long lineno) {
    script_err_t err;
    char why[256];
    int rc = 0;

    lua_pushvalue(L, fn);
    lua_pushstring(L, c->target);
    if (json_decode(L, line, len, why, sizeof(why)) != 0) lua_pushlstring(L, line, len);
    lua_pushvalue(L, fn + 1);
    if (script_call(L, 3, 2, CALL_TIMEOUT_MS, &err) != 0) {
        log_error("publish", "line %lld: %s", lineno, err.msg);
        return -1;
    }
    if (lua_isnil(L, -2)) { /* nil, message: it could not be queued */
        log_error("publish", "line %lld: %s", lineno, lua_tostring(L, -1));
        rc = -1;
    }
    lua_pop(L, 2);
    return rc;
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t') return 0;
    return 1;
}

int pubcli_main(int argc, char **argv) {
    pubcli_t c;
    run_opts_t ro;
    host_t h;
    uv_loop_t loop;
    struct sigaction sa;
    publisher_t *p = NULL, *pubs[1];
    const publisher_conf_t *conf;
    script_err_t serr;
    char err[2048], *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long long lineno = 0, refused = 0;
    lua_State *L;
    int rc, fn;

    memset(&c, 0, sizeof(c));
    memset(&ro, 0, sizeof(ro));
    memset(&h, 0, sizeof(h));
    if ((rc = parse(argc, argv, &c, &ro)) >= 0) return rc;
    rc = 1;
    uv_loop_init(&loop);
    h.loop = &loop;

    if (!(h.app = app_load(c.app_path, err, sizeof(err)))) {
        log_error("app", "%s", err);
        goto done;
    }
    L = h.app->L;
    if (!(conf = app_publisher(h.app, c.target))) {
        lua_pushcfunction(L, unknown_target);
        lua_pushstring(L, c.target);
        if (script_call(L, 1, 1, 0, &serr) == 0) {
            log_error("publish", "%s: %s", c.app_path, lua_tostring(L, -1));
            lua_pop(L, 1);
        } else {
            log_error("publish", "%s: unknown publish target '%s'", c.app_path, c.target);
        }
        goto done;
    }
    host_resolve_brokers(&h, &ro);
    if (!(p = producer_open(&h, conf, err, sizeof(err)))) {
        log_error("publish", "%s", err);
        goto done;
    }
    /* Where luka.publish finds its publisher, as in `luka run`. */
    pubs[0] = p;
    h.pubs = pubs;
    h.npubs = 1;
    lapi_set_host(L, &h);
    lua_pushcfunction(L, prepare);
    lua_pushlightuserdata(L, &c);
    if (script_call(L, 1, 2, 0, &serr) != 0) {
        log_error("publish", "%s", serr.msg);
        goto done;
    }
    fn = lua_gettop(L) - 1; /* Stack: publish, opts */

    /* A signal ends the input early, as end of file would: what was queued
     * is still flushed and counted.  A second one kills at once. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND; /* and no SA_RESTART, so getline returns */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if (isatty(STDIN_FILENO))
        log_info("publish", "type one message per line for '%s'; Ctrl-D ends", c.target);
    while (!stop_requested && (n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        if (blank(line, (size_t)n)) continue;
        if (publish_line(L, fn, &c, line, (size_t)n, lineno)) refused++;
        /* Serve delivery reports as we go, so failures show while typing. */
        while (rd_kafka_poll(p->rk, 0) > 0) continue;
    }
    if (stop_requested)
        log_warn("publish", "interrupted after line %lld; flushing what was queued", lineno);
    if (ferror(stdin) && !stop_requested) {
        log_error("publish", "reading stdin: %s", strerror(errno));
        refused++;
    }

    {
        int left = producer_flush(p, FLUSH_TIMEOUT_MS);
        unsigned long long failed = (unsigned long long)refused + p->failed + (unsigned)left;
        if (left)
            log_error("publish", "%d message(s) not acknowledged within %d s", left,
                      FLUSH_TIMEOUT_MS / 1000);
        fprintf(stderr, "published %llu, failed %llu\n", (unsigned long long)p->acked, failed);
        rc = failed ? 1 : 0;
    }
done:
    h.npubs = 0;
    if (p) producer_close(p);
    if (h.app) timer_stop_all(h.app->L);
    uv_run(&loop, UV_RUN_DEFAULT); /* the producer's and timers' close callbacks */
    app_free(h.app);
    free(h.brokers);
    free(line);
    if (uv_loop_close(&loop) != 0) log_warn("publish", "loop closed with handles still open");
    return rc;
}
