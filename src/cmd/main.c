/* main.c - the luka command line: parse the command and hand it over. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "cmd/admin.h"
#include "app/app.h"
#include "kafka/broker.h"
#include "runtime/host.h"
#include "api/lapi.h"
#include "base/log.h"
#include "cmd/pubcli.h"
#include "cmd/tail.h"
#include "cmd/testkit.h"

static const char usage_text[] =
    "usage: luka COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  run APP [ENDPOINT...]  run the app's endpoints (all, or the named ones)\n"
    "      --brokers LIST         Kafka bootstrap servers (overrides the app and KAFKA_BROKERS)\n"
    "      --embedded-broker      start an in-memory broker in-process and use it\n"
    "      --watch                reload when the app's Lua files change (SIGHUP always does)\n"
    "      --drain-timeout MS     how long shutdown waits for acks (default 10000)\n"
    "      --http HOST:PORT       serve /healthz, /readyz and /metrics (also LUKA_HTTP; default off)\n"
    "  check APP              validate the app and print its topology\n"
    "  options                print the reference of every app-script option\n"
    "  topics APP [--brokers LIST] [--apply] [--timeout MS]\n"
    "                         compare the app's luka.topic declarations with the cluster;\n"
    "                         --apply creates missing topics and adds missing partitions\n"
    "  lag APP [--brokers LIST] [--timeout MS]\n"
    "                         committed offset, log end and lag of each endpoint's group\n"
    "  test [SPEC_DIR] [BUSTED_OPTIONS...]\n"
    "                         run handler specs with busted and require \"luka.test\"\n"
    "  publish APP TARGET [--key K] [--header NAME=VALUE]... [--brokers LIST]\n"
    "                         publish each stdin line through the app's publisher TARGET\n"
    "  tail TOPIC [--group G] [--from beginning|end] [--brokers LIST] [--count N]\n"
    "                         print a topic's messages with offsets, keys and headers\n"
    "  broker [--brokers N] [--port P] [--topic NAME[:PARTITIONS]]... [--control]\n"
    "                         run an embedded Kafka-protocol broker (see luka broker --help)\n"
    "\n"
    "options for every command:\n"
    "  --log-level error|warn|info|debug   (also LUKA_LOG_LEVEL; default info)\n"
    "  --log-format text|json              (also LUKA_LOG_FORMAT; default text)\n"
    "  --version, --help\n";

static int bad_usage(const char *fmt, const char *arg) {
    fprintf(stderr, "luka: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "; run 'luka --help'\n");
    return 2;
}

/* Parse run/check arguments into o; returns 0 or an exit code. */
static int parse_run(int argc, char **argv, run_opts_t *o) {
    static const char *only[64];
    o->only = only;
    o->drain_timeout_ms = 10000;
    if (getenv("LUKA_HTTP") && *getenv("LUKA_HTTP")) o->http = getenv("LUKA_HTTP");
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (strcmp(a, "--brokers") == 0 && has_value) {
            o->brokers = argv[++i];
        } else if (strcmp(a, "--embedded-broker") == 0) {
            o->embedded_broker = 1;
        } else if (strcmp(a, "--watch") == 0) {
            o->watch = 1;
        } else if (strcmp(a, "--http") == 0 && has_value) {
            o->http = argv[++i];
        } else if (strcmp(a, "--drain-timeout") == 0 && has_value) {
            char *end;
            o->drain_timeout_ms = strtoll(argv[++i], &end, 10);
            if (*end || o->drain_timeout_ms < 0)
                return bad_usage("--drain-timeout takes milliseconds, got '%s'", argv[i]);
        } else if (a[0] == '-') {
            return bad_usage("unknown or incomplete option '%s'", a);
        } else if (!o->app_path) {
            o->app_path = a;
        } else if (o->nonly < 64) {
            only[o->nonly++] = a;
        }
    }
    if (!o->app_path) return bad_usage("%s needs the path of an app script", "this command");
    return 0;
}

/* Take --log-level out of argv wherever it is; LUKA_LOG_LEVEL sets the
 * default.  Returns 0 or an exit code. */
/* `luka options`: the app-script option reference, from luka.dsl's schema. */
static int print_options(void) {
    lua_State *L = lapi_newstate();
    int rc = 0;
    luaL_openlibs(L);
    app_open_modules(L);
    if (luaL_dostring(L, "return require('luka.dsl').reference()") != LUA_OK) {
        fprintf(stderr, "luka: %s\n", lua_tostring(L, -1));
        rc = 1;
    } else {
        fputs(lua_tostring(L, -1), stdout);
    }
    lapi_close(L);
    return rc;
}

/* Whether --log-level or LUKA_LOG_LEVEL chose the level. */
static int level_given;

static int parse_log_level(int *argc, char **argv) {
    const char *env = getenv("LUKA_LOG_LEVEL");
    if (env && *env) {
        level_given = 1;
        int l = log_level_parse(env);
        if (l < 0) return bad_usage("LUKA_LOG_LEVEL must be error, warn, info or debug, got '%s'", env);
        log_level = l;
    }
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--log-level") != 0) continue;
        if (i + 1 >= *argc || log_level_parse(argv[i + 1]) < 0)
            return bad_usage("--log-level must be error, warn, info or debug, got '%s'",
                             i + 1 < *argc ? argv[i + 1] : "nothing");
        log_level = log_level_parse(argv[i + 1]);
        level_given = 1;
        memmove(argv + i, argv + i + 2, (*argc - i - 2 + 1) * sizeof(*argv));
        *argc -= 2;
        i--;
    }
    return 0;
}

/* Take --log-format out of argv wherever it is; LUKA_LOG_FORMAT sets the
 * default.  Returns 0 or an exit code. */
static int parse_log_format(int *argc, char **argv) {
    const char *env = getenv("LUKA_LOG_FORMAT");
    if (env && *env) {
        if (log_format_parse(env) < 0)
            return bad_usage("LUKA_LOG_FORMAT must be text or json, got '%s'", env);
        log_format = log_format_parse(env);
    }
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--log-format") != 0) continue;
        if (i + 1 >= *argc || log_format_parse(argv[i + 1]) < 0)
            return bad_usage("--log-format must be text or json, got '%s'",
                             i + 1 < *argc ? argv[i + 1] : "nothing");
        log_format = log_format_parse(argv[i + 1]);
        memmove(argv + i, argv + i + 2, (*argc - i - 2 + 1) * sizeof(*argv));
        *argc -= 2;
        i--;
    }
    return 0;
}

int main(int argc, char **argv) {
    run_opts_t o;
    const char *cmd;
    int rc;

    if ((rc = parse_log_level(&argc, argv))) return rc;
    if ((rc = parse_log_format(&argc, argv))) return rc;
    if (argc < 2) {
        fputs(usage_text, stderr);
        return 2;
    }
    cmd = argv[1];
    memset(&o, 0, sizeof(o));
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("luka %s\n", LUKA_VERSION);
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (strcmp(cmd, "broker") == 0) return broker_main(argc - 1, argv + 1);
    if (strcmp(cmd, "tail") == 0) return tail_main(argc - 1, argv + 1);
    if (strcmp(cmd, "publish") == 0) return pubcli_main(argc - 1, argv + 1);
    if (strcmp(cmd, "run") == 0) {
        if ((rc = parse_run(argc - 2, argv + 2, &o))) return rc;
        return host_run(&o);
    }
    if (strcmp(cmd, "options") == 0) return print_options();
    if (strcmp(cmd, "test") == 0) {
        /* Handlers fail on purpose in specs: their logs would drown
         * busted's report unless asked for. */
        if (!level_given) log_level = -1;
        return testkit_main(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "check") == 0) {
        if ((rc = parse_run(argc - 2, argv + 2, &o))) return rc;
        return host_check(&o);
    }
    if (strcmp(cmd, "topics") == 0) return admin_topics(argc - 2, argv + 2);
    if (strcmp(cmd, "lag") == 0) return admin_lag(argc - 2, argv + 2);
    return bad_usage("unknown command '%s'", cmd);
}
