/* host.c - `luka run`: load the app, open its publishers and endpoints on
 * one libuv loop, run until a signal or a failure, then shut down in the
 * order that loses nothing: stop taking messages, let in-flight work
 * finish, flush producers, commit, leave the groups. */
#include "runtime/host.h"

#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>
#include <librdkafka/rdkafka.h>

#include "api/hooks.h"
#include "api/httpc.h"
#include "api/lapi.h"
#include "api/lmetrics.h"
#include "api/outbox.h"
#include "api/timer.h"
#include "base/cliopt.h"
#include "base/log.h"
#include "flow/inflight.h"
#include "flow/pipeline.h"
#include "lua/task.h"
#include "runtime/signals.h"

#define EMBEDDED_PARTITIONS 4

/* The host's sinks: its publishers by name, and its own for dead letters
 * to plain topics and resends, opened on first use. */

static sink_t *find_sink(void *ctx, const char *name) {
    host_t *h = ctx;
    for (int i = 0; i < h->npubs; i++)
        if (h->pubs[i] != h->internal && strcmp(h->pubs[i]->sink.conf->name, name) == 0)
            return &h->pubs[i]->sink;
    return NULL;
}

static publisher_conf_t internal_conf = {
    .name = "luka.internal", .topic = "", .where = "dead letters and resends", .key_fn = LUA_NOREF,
    .internal = 1, .on_delivery = LUA_NOREF};

static sink_t *internal_sink(void *ctx, char *errbuf, size_t errlen) {
    host_t *h = ctx;
    if (!h->internal && !h->stopping) {
        h->internal = producer_open(&h->kafka, &internal_conf, errbuf, errlen);
        if (h->internal) h->pubs[h->npubs++] = h->internal;
    }
    if (!h->internal && h->stopping) snprintf(errbuf, errlen, "shutting down");
    return h->internal ? &h->internal->sink : NULL;
}

/* Flush every publisher, waiting at most timeout_ms in all. */
static void flush_all(void *ctx, int timeout_ms) {
    host_t *h = ctx;
    uint64_t deadline = uv_hrtime() / 1000000 + (uint64_t)timeout_ms;
    for (int i = 0; i < h->npubs; i++) {
        uint64_t now = uv_hrtime() / 1000000;
        int left = now < deadline ? (int)(deadline - now) : 0;
        int n = producer_flush(h->pubs[i], left);
        if (n) log_warn("host", "publisher '%s': %d message(s) still unacknowledged after %d ms",
                        h->pubs[i]->sink.conf->name, n, timeout_ms);
    }
}

static void on_fatal(void *ctx) { host_stop(ctx, 1); }

/* The app's lifecycle hooks, as the Kafka clients report the moments. */
static void on_assigned(void *ctx, endpoint_t *ep, const rd_kafka_topic_partition_list_t *parts) {
    (void)ctx;
    hooks_partitions(ep->flow.L, ep->flow.conf, HOOK_ASSIGN, parts);
}

static void on_revoking(void *ctx, endpoint_t *ep, const rd_kafka_topic_partition_list_t *parts) {
    (void)ctx;
    hooks_partitions(ep->flow.L, ep->flow.conf, HOOK_REVOKE, parts);
}

static void on_stopping(void *ctx, endpoint_t *ep) {
    (void)ctx;
    hooks_stop(ep->flow.L, ep->flow.conf);
}

static void on_delivered(void *ctx, publisher_t *p, const message_t *m, rd_kafka_resp_err_t err) {
    (void)ctx;
    hooks_delivery(p->sink.conf, m, err, NULL);
}

/* Endpoints a final failure stopped leave their groups from the loop, not
 * from inside the handler call that stopped them. */
static void on_leave(uv_timer_t *t) {
    host_t *h = t->data;
    for (int i = 0; i < h->neps; i++)
        if (h->eps[i]->halted) consumer_leave(h->eps[i]);
}

/* A final failure stopped ep: it alone stops; the process exits 3 when no
 * endpoint is left serving. */
static void on_endpoint_stopped(void *ctx, endpoint_t *ep) {
    host_t *h = ctx;
    int serving = 0;
    for (int i = 0; i < h->neps; i++) serving += !h->eps[i]->halted;
    log_at(LOG_ERROR, "host", (&(log_ctx_t){.endpoint = ep->flow.conf->name, .partition = -1, .offset = -1}),
           "stopped by its final failure: it leaves group %s, uncommitted; %d endpoint(s) keep "
           "serving%s",
           ep->flow.conf->group, serving,
           serving ? "" : ", so luka exits 3 to be restarted and deliver the message again");
    if (!serving) {
        host_stop(h, 3);
        return;
    }
    uv_timer_start(&h->leave, on_leave, 0, 0);
}

static void close_cb(uv_handle_t *handle) { (void)handle; }

static void on_shutdown(uv_timer_t *t) {
    host_t *h = t->data;
    int n, running = 0;

    /* No timer ticks again.  Handlers and timer callbacks waiting on I/O
     * may finish, up to the drain timeout (an outbox relay's round
     * commits what was acknowledged); what waited to start is left
     * uncommitted (it comes again). */
    timer_stop_all(h->app->L);
    for (int i = 0; i < h->neps; i++) running += pipeline_running(&h->eps[i]->flow, NULL);
    running += timer_running(h->app->L);
    if (running && uv_now(h->loop) - h->stop_at < (uint64_t)h->drain_timeout_ms) {
        if (!h->waited++)
            log_info("host", "waiting up to %lld ms for %d handler(s) or timer callback(s) still "
                             "running",
                     (long long)h->drain_timeout_ms, running);
        uv_timer_start(t, on_shutdown, 10, 0);
        return;
    }
    /* on_stop runs while the publishers still take what it publishes. */
    for (int i = 0; i < h->neps; i++) consumer_stopping(h->eps[i]);
    flush_all(h, (int)h->drain_timeout_ms);
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
    uv_close((uv_handle_t *)&h->leave, close_cb);
    uv_close((uv_handle_t *)t, close_cb);
    log_info("host", "stopped");
}

void host_stop(host_t *h, int exit_code) {
    if (h->stopping) return;
    h->stopping = 1;
    h->exit_code = exit_code;
    for (const host_ops_t *const *o = h->ops; *o; o++)
        if ((*o)->draining) (*o)->draining(h);
    for (int i = 0; i < h->neps; i++) consumer_stop(h->eps[i]);
    h->stop_at = uv_now(h->loop);
    /* The rest runs from the loop, never from inside a handler or a
     * librdkafka callback that is still on the stack. */
    uv_timer_start(&h->shutdown, on_shutdown, 0, 0);
}

/* The first SIGINT or SIGTERM, on the loop; signals.c logs it, and exits
 * on a second one even while this loop is busy in a handler or a flush. */
static void on_stop_signal(void *data, int signum) {
    (void)signum;
    host_stop(data, 0);
}

/* SIGHUP: what the run's additions do with it (hot reload reloads). */
static void on_hangup(uv_signal_t *s, int signum) {
    host_t *h = s->data;
    (void)signum;
    for (const host_ops_t *const *o = h->ops; *o; o++)
        if ((*o)->hangup) (*o)->hangup(h);
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

int host_run(const run_opts_t *o, const host_ops_t *const *ops) {
    static const host_ops_t *const none[] = {NULL};
    const char *statistics_ms = NULL;
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
    h->ops = ops ? ops : none;
    for (const host_ops_t *const *e = h->ops; *e; e++)
        if ((*e)->statistics_ms) statistics_ms = (*e)->statistics_ms;
    uv_timer_init(h->loop, &h->shutdown);
    uv_timer_init(h->loop, &h->leave);
    h->shutdown.data = h->leave.data = h;
    /* Before the app loads: its metrics, and those of every reload, go to
     * one registry, so that values survive reloads. */
    h->appmetrics = appmetrics_new();
    lmetrics_share(h->appmetrics);
    if (!(h->app = app_load(o->app_path, NULL, lapi_open, err, sizeof(err)))) {
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
        h->brokers = kafka_brokers(o->brokers, h->app);
    }
    h->kafka = (kafka_env_t){.loop = h->loop,
                             .brokers = h->brokers,
                             .app = h->app,
                             .statistics_ms = statistics_ms,
                             .drain_timeout_ms = h->drain_timeout_ms,
                             .fatal = on_fatal,
                             .flush = flush_all,
                             .stopped = on_endpoint_stopped,
                             .assigned = on_assigned,
                             .revoking = on_revoking,
                             .stopping = on_stopping,
                             .delivered = on_delivered,
                             .ctx = h};
    h->sinks = (sinks_t){find_sink, internal_sink, h};
    h->api = (api_env_t){h->loop, &h->sinks};
    if (kafka_check_config(&h->kafka, err, sizeof(err))) {
        log_error("app", "%s", err);
        goto done;
    }
    /* Before any client opens: a port in use is reported before anything
     * connects. */
    for (const host_ops_t *const *e = h->ops; *e; e++)
        if ((*e)->start && (*e)->start(h, err, sizeof(err))) {
            log_error((*e)->name, "%s", err);
            goto done;
        }

    h->pubs = calloc(h->app->npubs + 1, sizeof(*h->pubs)); /* + the internal one */
    for (int i = 0; i < h->app->npubs; i++) {
        if (!(h->pubs[h->npubs] = producer_open(&h->kafka, &h->app->pubs[i], err, sizeof(err)))) {
            log_error("app", "%s", err);
            host_stop(h, 1);
            break;
        }
        h->npubs++;
    }
    h->eps = calloc(h->app->neps + 1, sizeof(*h->eps));
    for (int i = 0; i < h->app->neps && !h->stopping; i++) {
        if (!host_selected(h, h->app->eps[i].name)) continue;
        if (!(h->eps[h->neps] = consumer_open(&h->kafka, &h->app->eps[i], h->app->L, &h->sinks,
                                              err, sizeof(err)))) {
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
        for (const host_ops_t *const *e = h->ops; *e; e++)
            if ((*e)->running) (*e)->running(h);
        log_info("host", "running %s: %d endpoint(s), %d publisher(s), brokers %s", o->app_path,
                 h->neps, h->npubs, h->brokers);
        /* Starts the timers and makes the publishes of the script's load. */
        api_bind(h->app->L, &h->api);
        lapi_start(h->app->L);
    }
    uv_run(h->loop, UV_RUN_DEFAULT);
    rc = h->exit_code;
done:
    for (const host_ops_t *const *e = h->ops; *e; e++)
        if ((*e)->stop) (*e)->stop(h);
    if (!h->stopping) {
        /* Never started: the timers on the loop were all that ran. */
        uv_close((uv_handle_t *)&h->shutdown, close_cb);
        uv_close((uv_handle_t *)&h->leave, close_cb);
    }
    if (h->app) timer_close_all(h->app->L); /* before their tasks go below */
    task_shutdown(); /* nothing is left by now, unless the loop never ran */
    if (h->app) {
        uv_run(h->loop, UV_RUN_NOWAIT); /* let stopped timers close */
        app_free(h->app);
    }
    /* After the app's state, whose tasks have let go of their requests. */
    httpc_shutdown();
    free(h->pubs);
    free(h->eps);
    free(h->brokers);
    if (h->embedded) broker_stop(h->embedded);
    task_close_loop(h->loop);
    uv_run(h->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(h->loop) != 0) log_warn("host", "loop closed with handles still open");
    inflight_shutdown();
    outbox_shutdown();
    /* After every state that declared metrics in it. */
    lmetrics_share(NULL);
    appmetrics_free(h->appmetrics);
    return rc;
}

/* The LUKA_KAFKA_* properties, as `luka check` lists them. */
typedef struct env_lines {
    char **lines;
    int n, cap;
} env_lines_t;

static void add_env_line(void *ud, const char *var, size_t varlen, const char *property,
                         const char *value) {
    env_lines_t *l = ud;
    char line[1024];
    snprintf(line, sizeof(line), "      %s = %s   (%.*s)", property,
             log_is_secret(property) ? "********" : value, (int)varlen, var);
    if (l->n == l->cap) {
        char **grown = realloc(l->lines, (l->cap = l->cap ? l->cap * 2 : 8) * sizeof(char *));
        if (!grown) return;
        l->lines = grown;
    }
    if ((l->lines[l->n] = strdup(line))) l->n++;
}

static int by_text(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every client gets these after its own config, so they are listed apart. */
static void print_env_properties(FILE *out) {
    env_lines_t l = {0};
    kafka_env_each(add_env_line, &l);
    if (!l.n) return;
    fputs("  librdkafka properties from LUKA_KAFKA_*, on every client:\n", out);
    qsort(l.lines, (size_t)l.n, sizeof(char *), by_text);
    for (int i = 0; i < l.n; i++) {
        fprintf(out, "%s\n", l.lines[i]);
        free(l.lines[i]);
    }
    free(l.lines);
}

int host_check(const run_opts_t *o) {
    kafka_env_t env = {0};
    char err[2048];
    app_t *app;
    int rc = 1;

    if (!(app = app_load(o->app_path, NULL, lapi_open, err, sizeof(err)))) {
        fprintf(stderr, "luka: %s\n", err);
        return 1;
    }
    env.app = app;
    env.brokers = kafka_brokers(o->brokers, app);
    if (kafka_check_config(&env, err, sizeof(err))) {
        fprintf(stderr, "luka: %s\n", err);
        goto done;
    }
    app_print(app, stdout);
    print_env_properties(stdout);
    printf("ok\n");
    rc = 0;
done:
    free((char *)env.brokers);
    app_free(app);
    return rc;
}
