/* host.c - `luka run`: load the app, open its publishers and endpoints on
 * one libuv loop, run until a signal or a failure, then shut down in the
 * order that loses nothing: stop taking messages, let in-flight work
 * finish, flush producers, commit, leave the groups. */
#include "runtime/host.h"

#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <librdkafka/rdkafka.h>

#include "base/cliopt.h"
#include "kafka/consumer.h"
#include "api/lapi.h"
#include "base/log.h"
#include "ops/metrics.h"
#include "kafka/producer.h"
#include "api/publish.h"
#include "runtime/reload.h"
#include "runtime/signals.h"
#include "api/timer.h"

#define EMBEDDED_PARTITIONS 4

/* librdkafka's callbacks only get their client's opaque, which is an
 * endpoint or a publisher; one process runs one host. */
static host_t *running;

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    int lvl = level <= 3 ? LOG_ERROR : level == 4 ? LOG_WARN : level <= 6 ? LOG_INFO : LOG_DEBUG;
    log_at(lvl, "rdkafka", NULL, "%s %s: %s", rd_kafka_name(rk), fac, buf);
}

/* Every client's opaque is an endpoint_t or a publisher_t, and both begin
 * with their host_t pointer. */
_Static_assert(offsetof(endpoint_t, host) == 0, "endpoint_t starts with its host");
_Static_assert(offsetof(publisher_t, host) == 0, "publisher_t starts with its host");
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    host_t *h = opaque ? *(host_t **)opaque : running;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__RESOLVE ||
        err == RD_KAFKA_RESP_ERR__TRANSPORT) {
        log_error("kafka", "cannot reach the brokers at %s: %s; check --brokers or KAFKA_BROKERS "
                           "(luka keeps retrying)",
                  h && h->brokers ? h->brokers : "?", reason);
        return;
    }
    log_error("kafka", "%s: %s: %s", rd_kafka_name(rk), rd_kafka_err2name(err), reason);
    if (rd_kafka_fatal_error(rk, NULL, 0) && h && !h->test) host_stop(h, 1);
}

/* LUKA_KAFKA_SASL_PASSWORD=x sets sasl.password=x on every client, so a
 * container gets credentials and TLS settings from its environment without
 * putting them in the app script.  For an environment entry that is such a
 * variable, writes the property's name into name and returns its value;
 * NULL for any other entry. */
static const char *env_property(const char *entry, char name[static 256]) {
    static const char prefix[] = "LUKA_KAFKA_";
    const char *eq = strchr(entry, '=');
    size_t n;
    if (strncmp(entry, prefix, sizeof(prefix) - 1) || !eq) return NULL;
    n = (size_t)(eq - entry) - (sizeof(prefix) - 1);
    if (n == 0 || n >= 256) return NULL;
    for (size_t i = 0; i < n; i++) {
        char c = entry[sizeof(prefix) - 1 + i];
        name[i] = c == '_' ? '.' : (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    name[n] = '\0';
    return eq + 1;
}

static int env_kafka_conf(rd_kafka_conf_t *conf, char *errbuf, size_t errlen) {
    extern char **environ;
    for (char **e = environ; *e; e++) {
        char name[256];
        const char *value = env_property(*e, name);
        if (!value) continue;
        if (rd_kafka_conf_set(conf, name, value, errbuf, errlen) != RD_KAFKA_CONF_OK) {
            char why[512];
            snprintf(why, sizeof(why), "%s", errbuf);
            snprintf(errbuf, errlen, "environment %.*s: %s", (int)(value - 1 - *e), *e, why);
            return -1;
        }
    }
    return 0;
}

rd_kafka_conf_t *host_kafka_conf(host_t *h, const kvlist_t *extra, char *errbuf, size_t errlen) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const kvlist_t *lists[2] = {&h->app->broker_config, extra};

    if (rd_kafka_conf_set(conf, "bootstrap.servers", h->brokers, errbuf, errlen) ||
        rd_kafka_conf_set(conf, "client.id", h->app->client_id ? h->app->client_id : "luka",
                          errbuf, errlen) ||
        rd_kafka_conf_set(conf, "log.queue", "true", errbuf, errlen))
        goto fail;
    /* --http reads readiness and lag from statistics; the app may override. */
    if (h->metrics && rd_kafka_conf_set(conf, "statistics.interval.ms", METRICS_STATS_INTERVAL,
                                        errbuf, errlen) != RD_KAFKA_CONF_OK)
        goto fail;
    for (int l = 0; l < 2; l++)
        for (int i = 0; lists[l] && i < lists[l]->n; i++)
            if (rd_kafka_conf_set(conf, lists[l]->items[i].key, lists[l]->items[i].value, errbuf,
                                  errlen) != RD_KAFKA_CONF_OK)
                goto fail;
    if (env_kafka_conf(conf, errbuf, errlen)) goto fail;
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    log_redact_conf(conf); /* no log line shows its secrets */
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

int host_check_config(host_t *h, char *errbuf, size_t errlen) {
    extern char **environ;
    char why[512];
    rd_kafka_conf_t *conf;

    /* The app's config tables were checked as the script declared them;
     * the environment reaches every client, so it may set none of the
     * properties luka sets itself. */
    for (char **e = environ; *e; e++) {
        char name[256];
        const char *value = env_property(*e, name);
        if (value && app_check_property(h->app, "all", name, value, why, sizeof(why))) {
            snprintf(errbuf, errlen, "environment %.*s sets %s", (int)(value - 1 - *e), *e, why);
            return -1;
        }
    }

    for (int i = 0; i < h->app->npubs; i++) {
        const publisher_conf_t *p = &h->app->pubs[i];
        if (!(conf = host_kafka_conf(h, &p->config, why, sizeof(why)))) {
            snprintf(errbuf, errlen, "%s: publisher '%s': config: %s", p->where, p->name, why);
            return -1;
        }
        rd_kafka_conf_destroy(conf);
    }
    for (int i = 0; i < h->app->neps; i++) {
        const endpoint_conf_t *e = &h->app->eps[i];
        if (!(conf = host_kafka_conf(h, &e->config, why, sizeof(why)))) {
            snprintf(errbuf, errlen, "%s: %s '%s': config: %s", e->where,
                     e->channel ? "channel" : "consumer", e->name, why);
            return -1;
        }
        rd_kafka_conf_destroy(conf);
    }
    if (h->app->npubs + h->app->neps == 0 &&
        !(conf = host_kafka_conf(h, NULL, why, sizeof(why)))) {
        snprintf(errbuf, errlen, "broker config: %s", why);
        return -1;
    }
    return 0;
}

struct publisher *host_publisher(host_t *h, const char *name) {
    for (int i = 0; i < h->npubs; i++)
        if (strcmp(h->pubs[i]->conf->name, name) == 0) return h->pubs[i];
    return NULL;
}

static publisher_conf_t internal_conf = {
    .name = "luka.internal", .topic = "", .where = "dead letters and resends", .key_fn = LUA_NOREF,
    .internal = 1};

struct publisher *host_internal_publisher(host_t *h, char *errbuf, size_t errlen) {
    if (h->internal || h->stopping) return h->internal;
    h->internal = producer_open(h, &internal_conf, errbuf, errlen);
    if (h->internal) h->pubs[h->npubs++] = h->internal;
    return h->internal;
}

void host_flush(host_t *h, int timeout_ms) {
    uint64_t deadline = uv_hrtime() / 1000000 + (uint64_t)timeout_ms;
    for (int i = 0; i < h->npubs; i++) {
        uint64_t now = uv_hrtime() / 1000000;
        int left = now < deadline ? (int)(deadline - now) : 0;
        int n = producer_flush(h->pubs[i], left);
        if (n) log_warn("host", "publisher '%s': %d message(s) still unacknowledged after %d ms",
                        h->pubs[i]->conf->name, n, timeout_ms);
    }
    host_store_offsets(h);
}

void host_store_offsets(host_t *h) {
    for (int i = 0; i < h->neps; i++)
        if (h->eps[i]->dirty) consumer_store(h->eps[i]);
}

static void close_cb(uv_handle_t *handle) { (void)handle; }

static void on_shutdown(uv_timer_t *t) {
    host_t *h = t->data;
    int n;

    reload_stop(h);
    timer_stop_all(h->app->L);
    host_flush(h, (int)h->drain_timeout_ms);
    /* Producers go first: their purge fails whatever is still unacked, so
     * those messages stay uncommitted; then the consumers commit the rest
     * and leave their groups. */
    n = h->npubs;
    h->npubs = 0;
    h->internal = NULL;
    for (int i = 0; i < n; i++) producer_close(h->pubs[i]);
    for (int i = 0; i < h->neps; i++) consumer_close(h->eps[i]);
    h->neps = 0;
    if (h->signals) {
        signals_stop(h->stop_signals);
        h->stop_signals = NULL;
        uv_close((uv_handle_t *)&h->sigchld, close_cb);
        uv_close((uv_handle_t *)&h->sighup, close_cb);
        h->signals = 0;
    }
    uv_close((uv_handle_t *)t, close_cb);
    log_info("host", "stopped");
}

static uv_timer_t shutdown_timer;

void host_stop(host_t *h, int exit_code) {
    if (h->stopping) return;
    h->stopping = 1;
    h->exit_code = exit_code;
    metrics_drain(h);
    for (int i = 0; i < h->neps; i++) consumer_stop(h->eps[i]);
    if (h->test) return; /* the test kit reports it */
    /* The rest runs from the loop, never from inside a handler or a
     * librdkafka callback that is still on the stack. */
    uv_timer_init(h->loop, &shutdown_timer);
    shutdown_timer.data = h;
    uv_timer_start(&shutdown_timer, on_shutdown, 0, 0);
}

/* The first SIGINT or SIGTERM, on the loop; signals.c logs it, and exits
 * on a second one even while this loop is busy in a handler or a flush. */
static void on_stop_signal(void *data, int signum) {
    (void)signum;
    host_stop(data, 0);
}

/* SIGHUP reloads the app, as operators expect of a daemon. */
static void on_hangup(uv_signal_t *s, int signum) {
    (void)signum;
    reload_request(s->data, "SIGHUP");
}

/* As PID 1 in a container, luka inherits orphaned processes and must reap
 * them.  Only then: otherwise a handler's io.popen would lose its child. */
static void on_child(uv_signal_t *s, int signum) {
    (void)s, (void)signum;
    while (waitpid(-1, NULL, WNOHANG) > 0) continue;
}

int host_selected(const host_t *h, const char *name) {
    const run_opts_t *o = h->opts;
    if (o->nonly == 0) return 1;
    for (int i = 0; i < o->nonly; i++)
        if (strcmp(o->only[i], name) == 0) return 1;
    return 0;
}

void host_resolve_brokers(host_t *h, const run_opts_t *o) {
    const char *env = getenv("KAFKA_BROKERS");
    const char *b = o->brokers          ? o->brokers
                    : h->app->brokers   ? h->app->brokers
                    : env && *env       ? env
                                        : "localhost:9092";
    h->brokers = strdup(b);
}

/* The embedded broker has no CreateTopics: make the declared topics with
 * their partition counts, then every other topic the app uses. */
static int create_topics(host_t *h, char *errbuf, size_t errlen) {
    for (int i = 0; i < h->app->ntopics; i++) {
        const topic_conf_t *t = &h->app->topics[i];
        if (broker_create_topic(h->embedded, t->name,
                                t->partitions > 0 ? t->partitions : EMBEDDED_PARTITIONS, errbuf,
                                errlen))
            return -1;
    }
    for (int i = 0; i < h->app->npubs; i++)
        if (broker_create_topic(h->embedded, h->app->pubs[i].topic, EMBEDDED_PARTITIONS, errbuf,
                                errlen))
            return -1;
    for (int i = 0; i < h->app->neps; i++)
        for (int t = 0; t < h->app->eps[i].ntopics; t++)
            if (broker_create_topic(h->embedded, h->app->eps[i].topics[t], EMBEDDED_PARTITIONS,
                                    errbuf, errlen))
                return -1;
    return 0;
}

int host_run(const run_opts_t *o) {
    host_t host, *h = &host;
    uv_loop_t loop;
    char err[2048];
    int rc = 1;

    memset(h, 0, sizeof(*h));
    /* Handlers print; keep their lines whole and timely in pipes and logs. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    uv_loop_init(&loop);
    h->loop = &loop;
    h->drain_timeout_ms = o->drain_timeout_ms;
    h->opts = o;
    running = h;
    if (!(h->app = app_load(o->app_path, err, sizeof(err)))) {
        log_error("app", "%s", err);
        goto done;
    }
    for (int i = 0; i < o->nonly; i++)
        if (!app_endpoint(h->app, o->only[i])) {
            cliopt_near_t near = cliopt_near(o->only[i]);
            for (int k = 0; k < h->app->neps; k++) cliopt_near_add(&near, h->app->eps[k].name);
            log_error("app", "%s declares no endpoint named '%s'%s%s%s; see them with: luka check %s",
                      o->app_path, o->only[i], near.best ? " (did you mean '" : "",
                      near.best ? near.best : "", near.best ? "'?)" : "", o->app_path);
            rc = 2;
            goto done;
        }
    if (o->embedded_broker) {
        if (!(h->embedded = broker_start(1, err, sizeof(err)))) {
            log_error("broker", "%s", err);
            goto done;
        }
        h->brokers = strdup(broker_bootstraps(h->embedded));
        if (create_topics(h, err, sizeof(err))) {
            log_error("broker", "%s", err);
            goto done;
        }
        log_info("host", "embedded broker at %s", h->brokers);
    } else {
        host_resolve_brokers(h, o);
    }
    if (host_check_config(h, err, sizeof(err))) {
        log_error("app", "%s", err);
        goto done;
    }
    /* Before any client opens: they need to know to emit statistics, and a
     * port in use is reported before anything connects. */
    if (o->http && metrics_start(h, o->http, err, sizeof(err))) {
        log_error("http", "%s", err);
        goto done;
    }

    lapi_set_host(h->app->L, h);
    h->pubs = calloc(h->app->npubs + 1, sizeof(*h->pubs)); /* + the internal one */
    for (int i = 0; i < h->app->npubs; i++) {
        if (!(h->pubs[h->npubs] = producer_open(h, &h->app->pubs[i], err, sizeof(err)))) {
            log_error("app", "%s", err);
            host_stop(h, 1);
            break;
        }
        h->npubs++;
    }
    h->eps = calloc(h->app->neps + 1, sizeof(*h->eps));
    for (int i = 0; i < h->app->neps && !h->stopping; i++) {
        if (!host_selected(h, h->app->eps[i].name)) continue;
        if (!(h->eps[h->neps] = consumer_open(h, &h->app->eps[i], err, sizeof(err)))) {
            log_error("app", "%s", err);
            host_stop(h, 1);
            break;
        }
        h->neps++;
    }
    if (!h->stopping) {
        if (!(h->stop_signals = signals_start(h->loop, on_stop_signal, h, err, sizeof(err)))) {
            log_error("host", "%s", err);
            host_stop(h, 1);
        }
    }
    if (!h->stopping) {
        uv_signal_init(h->loop, &h->sigchld);
        if (getpid() == 1) uv_signal_start(&h->sigchld, on_child, SIGCHLD);
        uv_signal_init(h->loop, &h->sighup);
        h->sighup.data = h;
        uv_signal_start(&h->sighup, on_hangup, SIGHUP);
        h->signals = 1;
        if (o->watch) reload_watch(h);
        log_info("host", "running %s: %d endpoint(s), %d publisher(s), brokers %s", o->app_path,
                 h->neps, h->npubs, h->brokers);
        timer_start_all(h->app->L, h->loop);
        publish_deferred(h->app->L);
    }
    uv_run(h->loop, UV_RUN_DEFAULT);
    rc = h->exit_code;
done:
    metrics_stop(h);
    if (h->app) {
        timer_stop_all(h->app->L);
        uv_run(h->loop, UV_RUN_NOWAIT); /* let stopped timers close */
        app_free(h->app);
    }
    free(h->pubs);
    free(h->eps);
    free(h->brokers);
    if (h->embedded) broker_stop(h->embedded);
    uv_run(h->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(h->loop) != 0) log_warn("host", "loop closed with handles still open");
    pipeline_shutdown();
    running = NULL;
    return rc;
}

int host_check(const run_opts_t *o) {
    host_t host, *h = &host;
    char err[2048];
    int rc = 1;

    memset(h, 0, sizeof(*h));
    if (!(h->app = app_load(o->app_path, err, sizeof(err)))) {
        fprintf(stderr, "luka: %s\n", err);
        return 1;
    }
    host_resolve_brokers(h, o);
    if (host_check_config(h, err, sizeof(err))) {
        fprintf(stderr, "luka: %s\n", err);
        goto done;
    }
    app_print(h->app, stdout);
    printf("ok\n");
    rc = 0;
done:
    free(h->brokers);
    app_free(h->app);
    return rc;
}
