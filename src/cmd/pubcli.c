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
#include "kafka/client.h"
#include "runtime/host.h"
#include "base/json.h"
#include "api/lapi.h"
#include "base/cliopt.h"
#include "base/log.h"
#include "cmd/admin_client.h"
#include "kafka/producer.h"
#include "lua/script.h"
#include "api/timer.h"

/* How long the end of input waits for the last acknowledgements. */
#define FLUSH_TIMEOUT_MS 10000
/* A key function is user code, bounded like a handler. */
#define CALL_TIMEOUT_MS 10000
#define MAX_HEADERS 64

#define MAX_PROPERTIES 64

typedef struct pubcli {
    const char *app_path, *target, *key;
    const char *headers[MAX_HEADERS]; /* "name=value", as given */
    int nheaders;
    /* Without an app (-t): lines go as they are, kcat -P style. */
    const char *topic, *key_delim;
    int partition; /* -p, or RD_KAFKA_PARTITION_UA */
    int null_empty; /* -Z */
    const char *props[MAX_PROPERTIES]; /* -X "name=value", as given */
    int nprops;
} pubcli_t;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* Options */

enum {
    OPT_TOPIC, OPT_BROKERS, OPT_KEY, OPT_KEY_DELIM, OPT_HEADER, OPT_PARTITION, OPT_NULL,
    OPT_PROPERTY, NOPTS
};

static const cliopt_t options[NOPTS] = {
    [OPT_TOPIC] = {"topic", 't', "TOPIC",
                   "publish to TOPIC without an app: each line is the value,\n"
                   "byte for byte"},
    [OPT_BROKERS] = {"brokers", 'b', "LIST",
                     "bootstrap servers (default: the app's, else KAFKA_BROKERS,\n"
                     "else localhost:9092)"},
    [OPT_KEY] = {"key", 'k', "KEY",
                 "key of every message, instead of the publisher's key rule"},
    [OPT_KEY_DELIM] = {"key-delimiter", 'K', "DELIM",
                       "with -t: a line is KEY DELIM VALUE (a line without DELIM\n"
                       "has no key)"},
    [OPT_HEADER] = {"header", 'H', "NAME=VALUE", "add a header to every message; repeatable"},
    [OPT_PARTITION] = {"partition", 'p', "N",
                       "with -t: to partition N (default: by the key's murmur2\n"
                       "hash, as luka's publishers and Java clients; no key: spread)"},
    [OPT_NULL] = {"null", 'Z', NULL,
                  "with -t: an empty value is sent as null (a tombstone),\n"
                  "an empty key as no key"},
    [OPT_PROPERTY] = {"property", 'X', "PROP=VALUE",
                      "with -t: a librdkafka producer property; repeatable"},
};

static const clicmd_t publish_cmd = {
    .name = "publish",
    .synopsis = "publish APP TARGET [-k KEY] [-H NAME=VALUE]... [-b BROKERS]\n"
                "       luka publish -t TOPIC [-K DELIM] [-k KEY] [-p N] [-Z] [-H NAME=VALUE]...\n"
                "                    [-X PROP=VALUE]... [-b BROKERS]",
    .about = "Publish each line of stdin.\n"
             "\n"
             "With an app: through its publisher or channel TARGET, as\n"
             "luka.publish(TARGET, value, {key = KEY, headers = {...}}) would from a\n"
             "handler, with the publisher's key rule, config and id header.  A line\n"
             "that is JSON is decoded and published re-encoded; any other line is\n"
             "published as it is, as a string.  Blank lines are skipped.\n"
             "\n"
             "With -t TOPIC: like kcat -P, each line as it is (empty lines skipped),\n"
             "keyed with -K or -k.\n"
             "\n"
             "At the end of input, waits up to 10 s for acknowledgements and prints\n"
             "\"published N, failed F\" on stderr; the exit code is 1 if any failed.",
    .opts = options,
    .nopts = NOPTS,
};

#define bad_usage(...) cliopt_bad_usage("publish", __VA_ARGS__)

static int option(void *ud, int opt, const char *v) {
    pubcli_t *c = ((void **)ud)[0];
    run_opts_t *ro = ((void **)ud)[1];
    long n;
    switch (opt) {
    case CLIOPT_ARG:
        if (!c->app_path) c->app_path = v;
        else if (!c->target) c->target = v;
        else return bad_usage("one target at a time: got '%s' and '%s'", c->target, v);
        break;
    case OPT_TOPIC:
        if (!*v) return bad_usage("the topic name is empty");
        c->topic = v;
        break;
    case OPT_KEY:
        c->key = v;
        break;
    case OPT_KEY_DELIM:
        if (!*v) return bad_usage("-K needs a delimiter, got ''");
        c->key_delim = v;
        break;
    case OPT_HEADER:
        if (!strchr(v, '=') || v[0] == '=')
            return bad_usage("--header takes NAME=VALUE, got '%s'", v);
        if (c->nheaders == MAX_HEADERS)
            return bad_usage("at most %d --header options", MAX_HEADERS);
        c->headers[c->nheaders++] = v;
        break;
    case OPT_PARTITION:
        if (cliopt_long(v, 0, INT32_MAX, &n))
            return bad_usage("-p takes a partition number, got '%s'", v);
        c->partition = (int)n;
        break;
    case OPT_NULL:
        c->null_empty = 1;
        break;
    case OPT_PROPERTY:
        if (!strchr(v, '=') || v[0] == '=')
            return bad_usage("-X takes PROPERTY=VALUE, got '%s'", v);
        if (c->nprops == MAX_PROPERTIES)
            return bad_usage("at most %d -X options", MAX_PROPERTIES);
        c->props[c->nprops++] = v;
        break;
    case OPT_BROKERS:
        if (!*v) return bad_usage("--brokers needs host:port[,host:port...], got ''");
        ro->brokers = v;
        break;
    }
    return 0;
}

/* Fill c from argv.  Returns -1 to go on, or the exit code. */
static int parse(int argc, char **argv, pubcli_t *c, run_opts_t *ro) {
    void *ud[2] = {c, ro};
    int rc;
    c->partition = RD_KAFKA_PARTITION_UA;
    if ((rc = cliopt_parse(&publish_cmd, argc, argv, option, ud)) >= 0) return rc;
    if (c->topic) {
        if (c->app_path)
            return bad_usage("-t publishes without an app: got '%s' too", c->app_path);
        return -1;
    }
    if (c->key_delim || c->partition != RD_KAFKA_PARTITION_UA || c->null_empty || c->nprops)
        return bad_usage("-K, -p, -Z and -X go with -t TOPIC; an app's publisher has its own "
                         "key rule and config");
    if (!c->app_path)
        return bad_usage("which app, or which topic? usage: luka publish APP TARGET, or "
                         "luka publish -t TOPIC");
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

/* Without an app */

/* A signal ends the input early, as end of file would: what was queued is
 * still flushed and counted.  A second one kills at once. */
static void catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND; /* and no SA_RESTART, so getline returns */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}


typedef struct raw {
    const pubcli_t *c;
    const char *brokers;
    unsigned long long acked, failed;
} raw_t;

static void raw_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    raw_t *r = opaque;
    (void)rk;
    if (!m->err) {
        r->acked++;
        return;
    }
    /* The first failure says why; the count says how many. */
    if (!r->failed++)
        log_error("publish", "%s[%d]: %s", r->c->topic, (int)m->partition,
                  rd_kafka_err2str(m->err));
}

static void raw_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    raw_t *r = opaque;
    (void)rk;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__RESOLVE ||
        err == RD_KAFKA_RESP_ERR__TRANSPORT)
        log_error("publish", "cannot reach the brokers at %s: %s; check --brokers or "
                             "KAFKA_BROKERS (retrying)",
                  r->brokers, reason);
    else
        log_error("publish", "%s: %s", rd_kafka_err2name(err), reason);
}

/* The producer: luka's common client config (LUKA_KAFKA_*), then -X.  Keys
 * are spread as luka's publishers and Java clients spread them (murmur2),
 * not as kcat does, so that a tombstone sent here lands on the partition
 * of the key an app published. */
static rd_kafka_t *raw_producer(raw_t *r, const kafka_env_t *env, char *errbuf, size_t errlen) {
    rd_kafka_conf_t *conf = kafka_conf(env, NULL, errbuf, errlen);
    if (!conf) return NULL;
    if (rd_kafka_conf_set(conf, "partitioner", "murmur2_random", errbuf, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    for (int i = 0; i < r->c->nprops; i++) {
        char name[256];
        const char *eq = strchr(r->c->props[i], '=');
        snprintf(name, sizeof(name), "%.*s", (int)(eq - r->c->props[i]), r->c->props[i]);
        char why[512];
        if (rd_kafka_conf_set(conf, name, eq + 1, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
            snprintf(errbuf, errlen, "-X %s: %s", r->c->props[i], why);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, raw_dr_cb);
    rd_kafka_conf_set_error_cb(conf, raw_error_cb);
    rd_kafka_conf_set_opaque(conf, r);
    return admin_new(RD_KAFKA_PRODUCER, conf, errbuf, errlen);
}

/* Queue one line: KEY DELIM VALUE with -K, else the value.  Returns 0, or
 * -1 after logging why not. */
static int raw_line(rd_kafka_t *rk, const pubcli_t *c, rd_kafka_headers_t *hdrs, char *line,
                    size_t len, long long lineno) {
    const char *key = c->key, *value = line;
    size_t klen = key ? strlen(key) : 0, vlen = len;
    rd_kafka_resp_err_t err;

    if (c->key_delim) {
        char *d = memmem(line, len, c->key_delim, strlen(c->key_delim));
        if (d) {
            key = line, klen = (size_t)(d - line);
            value = d + strlen(c->key_delim), vlen = len - klen - strlen(c->key_delim);
        }
    }
    if (c->null_empty && key && !klen) key = NULL;
    if (c->null_empty && !vlen) value = NULL;
    for (;;) {
        /* producev owns the headers only when it succeeds. */
        rd_kafka_headers_t *copy = c->nheaders ? rd_kafka_headers_copy(hdrs) : NULL;
        err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(c->topic), RD_KAFKA_V_PARTITION(c->partition),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_KEY(key, key ? klen : 0),
                                RD_KAFKA_V_VALUE((void *)value, value ? vlen : 0),
                                RD_KAFKA_V_HEADERS(copy), RD_KAFKA_V_END);
        if (err && copy) rd_kafka_headers_destroy(copy);
        /* A full queue waits for deliveries rather than dropping the line. */
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || stop_requested) break;
        rd_kafka_poll(rk, 100);
    }
    if (err) {
        log_error("publish", "line %lld: %s", lineno, rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

static int publish_raw(const pubcli_t *c, const run_opts_t *ro) {
    raw_t r = {c, NULL, 0, 0};
    app_t none; /* no app: the common client config without one */
    kafka_env_t env;
    char *brokers;
    rd_kafka_t *rk;
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(c->nheaders);
    char err[1024], *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long long lineno = 0, refused = 0;
    int rc = 1;

    memset(&none, 0, sizeof(none));
    memset(&env, 0, sizeof(env));
    env.app = &none;
    env.brokers = r.brokers = brokers = kafka_brokers(ro->brokers, NULL);
    for (int i = 0; i < c->nheaders; i++) {
        const char *eq = strchr(c->headers[i], '=');
        rd_kafka_header_add(hdrs, c->headers[i], eq - c->headers[i], eq + 1, -1);
    }
    if (!(rk = raw_producer(&r, &env, err, sizeof(err)))) {
        log_error("publish", "%s", err);
        goto done;
    }
    catch_signals();
    if (isatty(STDIN_FILENO))
        log_info("publish", "type one message per line for topic '%s'; Ctrl-D ends", c->topic);
    while (!stop_requested && (n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        if (n > 0 && line[n - 1] == '\n') line[--n] = '\0';
        if (n == 0) continue; /* as kcat: an empty line is no message */
        if (raw_line(rk, c, hdrs, line, (size_t)n, lineno)) refused++;
        rd_kafka_poll(rk, 0);
    }
    if (stop_requested)
        log_warn("publish", "interrupted after line %lld; flushing what was queued", lineno);
    if (ferror(stdin) && !stop_requested) {
        log_error("publish", "reading stdin: %s", strerror(errno));
        refused++;
    }
    rd_kafka_flush(rk, FLUSH_TIMEOUT_MS);
    {
        int left = rd_kafka_outq_len(rk);
        unsigned long long failed = (unsigned long long)refused + r.failed + (unsigned)left;
        if (left)
            log_error("publish", "%d message(s) not acknowledged within %d s", left,
                      FLUSH_TIMEOUT_MS / 1000);
        fprintf(stderr, "published %llu, failed %llu\n", r.acked, failed);
        rc = failed ? 1 : 0;
    }
    /* Serve the last log lines before closing. */
    rd_kafka_poll(rk, 0);
    rd_kafka_destroy(rk);
done:
    rd_kafka_headers_destroy(hdrs);
    free(brokers);
    free(line);
    return rc;
}

/* The one publisher `luka publish APP TARGET` opens. */
static sink_t *only_sink(void *ctx, const char *name) {
    publisher_t *p = ctx;
    return strcmp(p->sink.conf->name, name) == 0 ? &p->sink : NULL;
}

int pubcli_main(int argc, char **argv) {
    pubcli_t c;
    run_opts_t ro;
    app_t *app = NULL;
    char *brokers = NULL;
    kafka_env_t env;
    sinks_t sinks;
    api_env_t api;
    uv_loop_t loop;
    publisher_t *p = NULL;
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
    memset(&env, 0, sizeof(env));
    if ((rc = parse(argc, argv, &c, &ro)) >= 0) return rc;
    if (c.topic) return publish_raw(&c, &ro);
    rc = 1;
    uv_loop_init(&loop);

    if (!(app = app_load(c.app_path, NULL, lapi_open, err, sizeof(err)))) {
        log_error("app", "%s", err);
        goto done;
    }
    L = app->L;
    if (!(conf = app_publisher(app, c.target))) {
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
    env.loop = &loop;
    env.app = app;
    env.brokers = brokers = kafka_brokers(ro.brokers, app);
    if (!(p = producer_open(&env, conf, err, sizeof(err)))) {
        log_error("publish", "%s", err);
        goto done;
    }
    /* Where luka.publish finds its publisher, as in `luka run`. */
    sinks = (sinks_t){only_sink, NULL, p};
    api = (api_env_t){&loop, &sinks};
    api_bind(L, &api);
    lua_pushcfunction(L, prepare);
    lua_pushlightuserdata(L, &c);
    if (script_call(L, 1, 2, 0, &serr) != 0) {
        log_error("publish", "%s", serr.msg);
        goto done;
    }
    fn = lua_gettop(L) - 1; /* Stack: publish, opts */

    catch_signals();

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
    if (p) producer_close(p);
    app_free(app); /* its timers close with its state */
    uv_run(&loop, UV_RUN_DEFAULT); /* the producer's and timers' close callbacks */
    free(brokers);
    free(line);
    if (uv_loop_close(&loop) != 0) log_warn("publish", "loop closed with handles still open");
    return rc;
}
