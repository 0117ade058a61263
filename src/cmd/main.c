/* main.c - the luka command line: luka's own options (--log-level,
 * --log-format, --version, --help), then the command, found in one table,
 * which parses the rest with cliopt.  run, check, options and test are
 * parsed here; the others in their own files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <librdkafka/rdkafka.h>
#include <lua.h>
#include <lualib.h>
#include <uv.h>

#include "cmd/admin.h"
#include "app/app.h"
#include "kafka/broker.h"
#include "base/cliopt.h"
#include "api/lapi.h"
#include "lua/script.h"
#include "lua/state.h"
#include "ops/metrics.h"
#include "runtime/host.h"
#include "runtime/reload.h"
#include "base/log.h"
#include "cmd/outbox_cli.h"
#include "cmd/pubcli.h"
#include "cmd/replay.h"
#include "cmd/tail.h"
#include "cmd/testkit.h"

/* The longest --drain-timeout: a day, far above any sensible drain. */
#define MAX_DRAIN_MS (24LL * 60 * 60 * 1000)
#define DEFAULT_DRAIN_MS 10000

/* luka run and luka check */

enum { RUN_BROKERS, RUN_EMBEDDED, RUN_WATCH, RUN_DRAIN, RUN_HTTP, NRUN };

static const cliopt_t run_options[NRUN] = {
    [RUN_BROKERS] = {"brokers", 'b', "LIST",
                     "Kafka bootstrap servers (default: the app's luka.broker,\n"
                     "else KAFKA_BROKERS, else localhost:9092)"},
    [RUN_EMBEDDED] = {"embedded-broker", 0, NULL,
                      "start an in-memory broker in-process, with the app's\n"
                      "declared topics, and use it"},
    [RUN_WATCH] = {"watch", 0, NULL,
                   "reload when the app's Lua files change (SIGHUP always does)"},
    [RUN_DRAIN] = {"drain-timeout", 0, "DURATION",
                   "how long shutdown waits for handlers and acks: 500ms,\n"
                   "5s, 2m; a bare number is milliseconds (default 10s)"},
    [RUN_HTTP] = {"http", 0, "HOST:PORT",
                  "serve /healthz, /readyz and /metrics (also LUKA_HTTP;\n"
                  "default off)"},
};

static const clicmd_t run_cmd = {
    .name = "run",
    .synopsis = "run APP [ENDPOINT...] [options]",
    .about = "Run the app's endpoints: all of them, or only those named (its publishers\n"
             "and timers run either way).  The first SIGINT or SIGTERM drains and exits\n"
             "0; SIGHUP reloads the app.",
    .opts = run_options,
    .nopts = NRUN,
};

static const clicmd_t check_cmd = {
    .name = "check",
    .synopsis = "check APP [options]",
    .about = "Load the app, check every client's librdkafka configuration, and print\n"
             "its topology; nothing connects.  Exit code 1 when the app is wrong.",
    .opts = run_options,
    .nopts = 1, /* --brokers only */
};

typedef struct run_parse {
    const clicmd_t *cmd;
    run_opts_t *o;
} run_parse_t;

static int run_option(void *ud, int opt, const char *v) {
    run_parse_t *p = ud;
    run_opts_t *o = p->o;
    switch (opt) {
    case CLIOPT_ARG:
        if (!o->app_path) o->app_path = v;
        else if (p->cmd == &run_cmd) o->only[o->nonly++] = v;
        else return cliopt_bad_usage(p->cmd->name, "one app at a time: got '%s' and '%s'",
                                     o->app_path, v);
        break;
    case RUN_BROKERS:
        if (!*v) return cliopt_bad_usage(p->cmd->name, "--brokers needs host:port[,...], got ''");
        o->brokers = v;
        break;
    case RUN_EMBEDDED:
        o->embedded_broker = 1;
        break;
    case RUN_WATCH:
        o->watch = 1;
        break;
    case RUN_DRAIN:
        if (cliopt_duration(v, MAX_DRAIN_MS, &o->drain_timeout_ms))
            return cliopt_bad_usage(p->cmd->name, "--drain-timeout takes %s, got '%s'",
                                    CLIOPT_DURATION_HINT, v);
        break;
    case RUN_HTTP:
        o->http = v;
        break;
    }
    return 0;
}

/* Fill o for run or check; o->only is malloc'd.  Returns -1 to go on, or
 * the exit code. */
static int parse_run(const clicmd_t *cmd, int argc, char **argv, run_opts_t *o) {
    run_parse_t p = {cmd, o};
    int rc;
    memset(o, 0, sizeof(*o));
    o->drain_timeout_ms = DEFAULT_DRAIN_MS;
    if (getenv("LUKA_HTTP") && *getenv("LUKA_HTTP")) o->http = getenv("LUKA_HTTP");
    if (!(o->only = calloc((size_t)argc, sizeof(*o->only)))) return 1;
    if ((rc = cliopt_parse(cmd, argc, argv, run_option, &p)) >= 0) return rc;
    if (!o->app_path) return cliopt_bad_usage(cmd->name, "which app? usage: luka %s", cmd->synopsis);
    return -1;
}

static int run_main(int argc, char **argv) {
    run_opts_t o;
    int rc = parse_run(&run_cmd, argc, argv, &o);
    if (rc < 0) {
        /* Hot reload always (SIGHUP), the operations endpoint with --http. */
        const host_ops_t *ops[] = {&reload_host_ops, o.http ? &metrics_host_ops : NULL, NULL};
        rc = host_run(&o, ops);
    }
    free(o.only);
    return rc;
}

static int check_main(int argc, char **argv) {
    run_opts_t o;
    int rc = parse_run(&check_cmd, argc, argv, &o);
    if (rc < 0) rc = host_check(&o);
    free(o.only);
    return rc;
}

/* luka options: the app-script option reference, from luka.dsl's schema. */

static const clicmd_t options_cmd = {
    .name = "options",
    .synopsis = "options",
    .about = "Print the reference of every option an app script can set, from the\n"
             "schema luka checks apps against.",
};

static int no_argument_cb(void *ud, int opt, const char *v) {
    (void)opt;
    return cliopt_bad_usage(((const clicmd_t *)ud)->name, "unexpected argument '%s'", v);
}

static int options_main(int argc, char **argv) {
    script_err_t err;
    lua_State *L;
    int rc;
    if ((rc = cliopt_parse(&options_cmd, argc, argv, no_argument_cb, (void *)&options_cmd)) >= 0)
        return rc;
    L = state_new();
    rc = 0;
    luaL_openlibs(L);
    script_init(L);
    app_open_modules(L, lapi_open);
    if (luaL_loadstring(L, "return require('luka.dsl').reference()") != LUA_OK) {
        fprintf(stderr, "luka: %s\n", lua_tostring(L, -1));
        rc = 1;
    } else if (script_call(L, 0, 1, 0, &err) != 0) {
        fprintf(stderr, "luka: %s\n", err.msg);
        rc = 1;
    } else {
        fputs(lua_tostring(L, -1), stdout);
    }
    state_close(L);
    return rc;
}

/* luka test: luka's help, or busted with the arguments as they are. */

static const clicmd_t test_cmd = {
    .name = "test",
    .synopsis = "test [SPEC_DIR] [BUSTED_OPTIONS...]",
    .about = "Run handler specs with busted (default SPEC_DIR: spec), with\n"
             "require \"luka.test\" available to load an app without Kafka.  Every\n"
             "argument, from the first that is not -h/--help, is busted's: see\n"
             "busted --help for its options (-o TAP, --filter PATTERN, ...).\n"
             "Handler logs are off unless --log-level is given.  stdout is busted's\n"
             "report: what the app under test prints goes to stderr.",
    .pass_through = 1,
};

typedef struct argv_list {
    char **argv;
    int argc;
} argv_list_t;

static int collect_cb(void *ud, int opt, const char *v) {
    argv_list_t *l = ud;
    (void)opt;
    l->argv[l->argc++] = (char *)v;
    return 0;
}

/* Whether --log-level or LUKA_LOG_LEVEL chose the level. */
static int level_given;

static int test_main(int argc, char **argv) {
    argv_list_t l = {calloc((size_t)argc + 1, sizeof(char *)), 1};
    int rc;
    if (!l.argv) return 1;
    l.argv[0] = argv[0];
    if ((rc = cliopt_parse(&test_cmd, argc, argv, collect_cb, &l)) < 0) {
        /* Handlers fail on purpose in specs: their logs would drown
         * busted's report unless asked for. */
        if (!level_given) log_level = -1;
        rc = testkit_main(l.argc, l.argv);
    }
    free(l.argv);
    return rc;
}

/* The commands */

static const struct command {
    const char *name, *args, *summary;
    int (*main)(int argc, char **argv);
} commands[] = {
    {"run", "APP [ENDPOINT...]", "run the app's endpoints (all, or the named ones)", run_main},
    {"check", "APP", "validate the app and print its topology", check_main},
    {"options", "", "print the reference of every app-script option", options_main},
    {"topics", "APP", "compare the app's declared topics with the cluster; --apply\n"
                      "creates and grows them, --check fails on a difference",
     admin_topics},
    {"lag", "APP | --group G", "each group's committed offsets, log end, lag and members\n"
                               "(an app's endpoints' groups, or those named)",
     admin_lag},
    {"outbox", "APP", "each outbox's unsent rows and the oldest one's age;\n"
                      "--create creates the outbox tables",
     outbox_cli_main},
    {"replay", "APP --from DLT", "publish a dead-letter topic's messages again to the topics\n"
                                 "they came from (or --to), once each",
     replay_main},
    {"offsets", "APP --group G", "reset a group's committed offsets (--reset earliest, latest,\n"
                                 "an offset or a time); a plan unless --execute",
     offsets_main},
    {"test", "[SPEC_DIR]", "run handler specs with busted and require \"luka.test\"", test_main},
    {"publish", "APP TARGET", "publish each stdin line through the app's publisher TARGET;\n"
                              "with -t TOPIC and no app, as it is (like kcat -P)",
     pubcli_main},
    {"tail", "TOPIC", "print a topic's messages (like kcat -C)", tail_main},
    {"broker", "", "run an embedded Kafka-protocol broker on loopback", broker_main},
};

#define NCOMMANDS ((int)(sizeof(commands) / sizeof(commands[0])))

static void usage(FILE *out) {
    fputs("usage: luka COMMAND [ARGS] [OPTIONS]\n"
          "\n"
          "commands (luka COMMAND --help for each one's options):\n",
          out);
    for (int i = 0; i < NCOMMANDS; i++) {
        char left[64];
        snprintf(left, sizeof(left), "%s %s", commands[i].name, commands[i].args);
        fprintf(out, "  %-22s ", left);
        for (const char *c = commands[i].summary; *c; c++) {
            fputc(*c, out);
            if (*c == '\n') fprintf(out, "  %-22s ", "");
        }
        fputc('\n', out);
    }
    fputs("\n"
          "options for every command, anywhere on the line:\n"
          "  --log-level error|warn|info|debug   (also LUKA_LOG_LEVEL; default info)\n"
          "  --log-format text|json              (also LUKA_LOG_FORMAT; default text)\n"
          "\n"
          "  -V, --version   print the versions of luka, librdkafka, Lua and libuv\n"
          "  -h, --help      print this help\n",
          out);
}

static void version(void) {
    printf("luka %s\nlibrdkafka %s\n%s\nlibuv %s\n", LUKA_VERSION, rd_kafka_version_str(),
           LUA_RELEASE, uv_version_string());
}

static int bad_usage(const char *fmt, const char *arg) {
    fputs("luka: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("; run 'luka --help'\n", stderr);
    return 2;
}

/* Take --log-level and --log-format (and their =VALUE forms) out of argv,
 * wherever they are before a --; the environment sets the defaults.
 * Returns 0 or an exit code. */
static int parse_logging(int *argc, char **argv) {
    const char *env;
    if ((env = getenv("LUKA_LOG_LEVEL")) && *env) {
        if (log_level_parse(env) < 0)
            return bad_usage("LUKA_LOG_LEVEL must be error, warn, info or debug, got '%s'", env);
        log_level = log_level_parse(env);
        level_given = 1;
    }
    if ((env = getenv("LUKA_LOG_FORMAT")) && *env) {
        if (log_format_parse(env) < 0)
            return bad_usage("LUKA_LOG_FORMAT must be text or json, got '%s'", env);
        log_format = log_format_parse(env);
    }
    for (int i = 1; i < *argc && strcmp(argv[i], "--") != 0; i++) {
        const char *a = argv[i], *v;
        int level = strncmp(a, "--log-level", 11) == 0, n;
        size_t len = level ? 11 : 12;
        if (!level && strncmp(a, "--log-format", 12) != 0) continue;
        if (a[len] == '=') v = a + len + 1, n = 1;
        else if (a[len] == '\0') v = i + 1 < *argc ? argv[i + 1] : NULL, n = 2;
        else continue;
        if (level) {
            if (!v || log_level_parse(v) < 0)
                return bad_usage("--log-level must be error, warn, info or debug, got '%s'",
                                 v ? v : "nothing");
            log_level = log_level_parse(v);
            level_given = 1;
        } else {
            if (!v || log_format_parse(v) < 0)
                return bad_usage("--log-format must be text or json, got '%s'", v ? v : "nothing");
            log_format = log_format_parse(v);
        }
        memmove(argv + i, argv + i + n, (size_t)(*argc - i - n + 1) * sizeof(*argv));
        *argc -= n;
        i--;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *cmd;
    cliopt_near_t near;
    int rc;

    if ((rc = parse_logging(&argc, argv))) return rc;
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    cmd = argv[1];
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        version();
        return 0;
    }
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        /* luka help CMD is luka CMD --help. */
        if (!strcmp(cmd, "help") && argc > 2) {
            char *help[] = {argv[2], "--help", NULL};
            for (int i = 0; i < NCOMMANDS; i++)
                if (!strcmp(commands[i].name, argv[2])) return commands[i].main(2, help);
            cmd = argv[2];
        } else {
            usage(stdout);
            return 0;
        }
    } else {
        for (int i = 0; i < NCOMMANDS; i++)
            if (!strcmp(commands[i].name, cmd)) return commands[i].main(argc - 1, argv + 1);
    }
    if (cmd[0] == '-') return bad_usage("unknown option '%s' (a command comes first)", cmd);
    near = cliopt_near(cmd);
    for (int i = 0; i < NCOMMANDS; i++) cliopt_near_add(&near, commands[i].name);
    if (near.best) {
        fprintf(stderr, "luka: unknown command '%s' (did you mean '%s'?); run 'luka --help'\n",
                cmd, near.best);
        return 2;
    }
    return bad_usage("unknown command '%s'", cmd);
}
