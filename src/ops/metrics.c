/* metrics.c - the loop thread's side of the operations endpoint.  Every
 * METRICS_TICK_MS a timer decides readiness and renders the Prometheus
 * text (exposition format 0.0.4, written by prom.c) from the endpoints'
 * figures (figures.c), the publishers' counters, the process (process.c),
 * librdkafka's statistics and the app's own metrics (luka.metrics); once
 * a second it builds the status page's document (status.c), sampled every
 * STATUS_SAMPLE_MS; and it publishes them with a heartbeat to the HTTP
 * thread, which never touches the host itself. */
#include "ops/metrics.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <lua.h>

#include "api/outbox.h"
#include "base/log.h"
#include "kafka/consumer.h"
#include "kafka/producer.h"
#include "ops/figures.h"
#include "ops/http.h"
#include "ops/process.h"
#include "ops/prom.h"
#include "ops/status.h"

/* librdkafka's statistics change once a second at most (METRICS_STATS_
 * INTERVAL); parsing them on every tick would be wasted work. */
#define STATS_EVERY_TICKS (1000 / METRICS_TICK_MS)
/* /metrics text longer than this is rebuilt once a second, not every tick. */
#define METRICS_LARGE (1 << 20)
/* The status page's history is sampled every this many ticks. */
#define SAMPLE_EVERY_TICKS (STATUS_SAMPLE_MS / METRICS_TICK_MS)

struct metrics {
    host_t *host;
    http_t *http;
    uv_timer_t timer;
    unsigned ticks;
    prom_t text; /* /metrics, rebuilt on every tick */
    prom_t lag;  /* the lag samples, rebuilt from statistics */
    char unreachable[512]; /* why some client reaches no broker, or "" */
    status_t *status;      /* the status page's history */
};

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The effective statistics.interval.ms of a client, following the order
 * in which host_kafka_conf and the clients apply configuration. */
static int stats_expected(const host_t *h, const kvlist_t *client) {
    const char *v = kvlist_get(client, "statistics.interval.ms");
    if (!v) v = getenv("LUKA_KAFKA_STATISTICS_INTERVAL_MS");
    if (!v) v = kvlist_get(&h->app->broker_config, "statistics.interval.ms");
    return !v || atoi(v) > 0;
}

/* Whether a client's statistics show a broker connection that is up:
 * 1 yes, 0 no, -1 no statistics (yet). */
static int reaches_broker(const char *stats) {
    json_t *root, *brokers, *b;
    const char *name;
    int up = 0;

    if (!stats || !(root = json_loads(stats, 0, NULL))) return -1;
    brokers = json_object_get(root, "brokers");
    json_object_foreach(brokers, name, b) {
        const char *source = json_string_value(json_object_get(b, "source"));
        const char *state = json_string_value(json_object_get(b, "state"));
        /* The internal broker stands for no connection at all. */
        if (source && strcmp(source, "internal") == 0) continue;
        if (state && strcmp(state, "UP") == 0) up = 1;
    }
    json_decref(root);
    return up;
}

/* A luka_consumer_lag_messages sample (figures_lag's callback). */
typedef struct lag_ctx {
    prom_t *b;
    const endpoint_t *ep;
} lag_ctx_t;

static void lag_sample(void *ud, const char *topic, int32_t partition, int64_t lag) {
    lag_ctx_t *c = ud;
    char p[24];
    prom_label_t labels[] = {{"endpoint", c->ep->flow.conf->name},
                             {"group", c->ep->flow.conf->group},
                             {"topic", topic},
                             {"partition", p}};
    snprintf(p, sizeof(p), "%d", (int)partition);
    prom_u64(c->b, "luka_consumer_lag_messages", labels, 4, (uint64_t)lag);
}

/* Rebuild what comes from librdkafka's statistics: lag and reachability. */
static void refresh_stats(struct metrics *m) {
    host_t *h = m->host;
    m->lag.len = 0;
    m->unreachable[0] = '\0';
    for (int i = 0; i < h->neps; i++) {
        endpoint_t *ep = h->eps[i];
        lag_ctx_t c = {&m->lag, ep};
        figures_lag(ep, lag_sample, &c);
        if (!m->unreachable[0] && stats_expected(h, &ep->flow.conf->config) &&
            reaches_broker(ep->kafka_stats) == 0)
            snprintf(m->unreachable, sizeof(m->unreachable),
                     "endpoint %s has no connection to any broker", ep->flow.conf->name);
    }
    for (int i = 0; i < h->npubs && !m->unreachable[0]; i++) {
        publisher_t *p = h->pubs[i];
        int r = reaches_broker(p->kafka_stats);
        if (!stats_expected(h, &p->sink.conf->config)) continue;
        if (r == 0)
            snprintf(m->unreachable, sizeof(m->unreachable),
                     "publisher %s has no connection to any broker", p->sink.conf->name);
        else if (r < 0)
            snprintf(m->unreachable, sizeof(m->unreachable),
                     "publisher %s has not reported its broker connections yet", p->sink.conf->name);
    }
}

/* 1 when ready; otherwise 0 and why, in a sentence. */
static int readiness(struct metrics *m, char *why, size_t len) {
    host_t *h = m->host;
    if (h->stopping) {
        snprintf(why, len, "shutting down");
        return 0;
    }
    for (int i = 0; i < h->neps; i++)
        if (!h->eps[i]->joined && !h->eps[i]->halted) {
            snprintf(why, len, "endpoint %s has not joined group %s", h->eps[i]->flow.conf->name,
                     h->eps[i]->flow.conf->group);
            return 0;
        }
    if (m->unreachable[0]) {
        snprintf(why, len, "%s", m->unreachable);
        return 0;
    }
    return 1;
}

/* The labels of an endpoint's samples. */
#define EP_LABELS(f) {{"endpoint", (f)->name}, {"group", (f)->group}}

/* A reader per figure, for the table below. */
#define FIGURE(field, expr)                                                                        \
    static uint64_t get_##field(const endpoint_figures_t *f) { return (uint64_t)(expr); }
FIGURE(consumed, f->stats->consumed)
FIGURE(handled, f->stats->handled)
FIGURE(failed, f->stats->failed)
FIGURE(retried, f->stats->retried)
FIGURE(dead_lettered, f->stats->dead_lettered)
FIGURE(deduplicated, f->stats->deduplicated)
FIGURE(resent, f->stats->resent)
FIGURE(released, f->stats->released)
FIGURE(ignored, f->stats->ignored)
FIGURE(stopped_total, f->stats->stopped)
FIGURE(rebalances, f->stats->rebalances)
FIGURE(joined, f->joined ? 1 : 0)
FIGURE(stopped, f->stopped ? 1 : 0)
FIGURE(assigned, f->assigned)
FIGURE(in_use, f->in_use)
FIGURE(io_waiting, f->io_waiting)
FIGURE(concurrency, f->concurrency)
FIGURE(waiting, f->waiting)

/* The families with one sample per endpoint, each labelled endpoint and
 * group, in the order /metrics shows them. */
static const struct {
    const char *name, *type, *help;
    uint64_t (*get)(const endpoint_figures_t *f);
} endpoint_families[] = {
    {"luka_messages_consumed_total", "counter", "Messages the endpoint took from Kafka.",
     get_consumed},
    {"luka_messages_handled_total", "counter", "Messages whose handler succeeded.", get_handled},
    {"luka_messages_failed_total", "counter",
     "Handler failures once instant retries were used up (a message failing again after a "
     "delayed retry counts again).",
     get_failed},
    {"luka_messages_retried_total", "counter", "Retries, instant and delayed.", get_retried},
    {"luka_messages_dead_lettered_total", "counter", "Messages handed to the error channel.",
     get_dead_lettered},
    {"luka_messages_deduplicated_total", "counter",
     "Messages skipped because their dedup key was already handled.", get_deduplicated},
    {"luka_messages_resent_total", "counter",
     "Messages resent to their topic by final_failure = \"resend\".", get_resent},
    {"luka_messages_released_total", "counter",
     "Messages released for a later delivery by final_failure = \"release\".", get_released},
    {"luka_messages_ignored_total", "counter",
     "Messages committed unhandled by final_failure = \"ignore\".", get_ignored},
    {"luka_messages_stopped_total", "counter",
     "Messages that stopped the endpoint (final_failure = \"stop\").", get_stopped_total},
    {"luka_rebalances_total", "counter", "Partition assignments and revocations.",
     get_rebalances},
    {"luka_endpoint_joined", "gauge", "1 once the endpoint has joined its group.", get_joined},
    {"luka_endpoint_stopped", "gauge",
     "1 once a final failure (\"stop\") stopped the endpoint; the others keep serving.",
     get_stopped},
    {"luka_endpoint_assigned_partitions", "gauge",
     "Partitions the group assigned to the endpoint.", get_assigned},
    {"luka_endpoint_handlers_in_flight", "gauge",
     "Handler calls in flight, running or waiting on I/O (concurrency in use).", get_in_use},
    {"luka_endpoint_handlers_waiting_io", "gauge",
     "Handler calls in flight that wait on I/O (luka.http, luka.redis, luka.sleep).",
     get_io_waiting},
    {"luka_endpoint_concurrency", "gauge",
     "Handler calls the endpoint may have in flight at once.", get_concurrency},
    {"luka_endpoint_messages_waiting", "gauge",
     "Messages taken from Kafka that wait for their key, their partition or a free handler "
     "slot (the buffer).",
     get_waiting},
};

static void endpoint_histogram(prom_t *b, const endpoint_figures_t *fig, int n, const char *name,
                               const char *help, size_t off) {
    prom_family(b, name, "histogram", help);
    for (int i = 0; i < n; i++) {
        prom_label_t labels[] = EP_LABELS(&fig[i]);
        const hist_t *hg = (const hist_t *)((const char *)fig[i].stats + off);
        prom_histogram(b, name, labels, 2, hg->bounds, hg->n, hg->counts, hg->sum);
    }
}

static void publisher_counter(prom_t *b, const host_t *h, const char *name, size_t off,
                              const char *help) {
    prom_family(b, name, "counter", help);
    for (int i = 0; i < h->npubs; i++) {
        const publisher_t *p = h->pubs[i];
        prom_label_t label = {"publisher", p->sink.conf->name};
        prom_u64(b, name, &label, 1, *(const uint64_t *)((const char *)p + off));
    }
}

#define PUB(field) offsetof(publisher_t, field)

static void render_endpoints(prom_t *b, const host_t *h) {
    endpoint_figures_t *fig = calloc((size_t)h->neps + 1, sizeof(*fig));
    int n = h->neps;

    for (int i = 0; i < n; i++) figures_endpoint(h->eps[i], &fig[i]);
    for (size_t k = 0; k < sizeof(endpoint_families) / sizeof(endpoint_families[0]); k++) {
        prom_family(b, endpoint_families[k].name, endpoint_families[k].type,
                    endpoint_families[k].help);
        for (int i = 0; i < n; i++) {
            prom_label_t labels[] = EP_LABELS(&fig[i]);
            prom_u64(b, endpoint_families[k].name, labels, 2, endpoint_families[k].get(&fig[i]));
        }
    }
    endpoint_histogram(b, fig, n, "luka_handler_duration_seconds",
                       "Time spent in the handler per call, waiting on I/O included; the last "
                       "bucket is the handler's time limit.",
                       offsetof(endpoint_stats_t, duration));
    endpoint_histogram(b, fig, n, "luka_message_age_seconds",
                       "Time from the message's timestamp to the start of its handler, once per "
                       "delivery.",
                       offsetof(endpoint_stats_t, age));
    endpoint_histogram(b, fig, n, "luka_batch_size",
                       "Messages per batch handed to handle_batch, after dedup; empty for "
                       "endpoints with handle.",
                       offsetof(endpoint_stats_t, batch_size));
    free(fig);
}

/* The transactional outboxes' relays (api/outbox.c): one family at a time. */
typedef struct outbox_family {
    prom_t *b;
    const char *name;
    int which;
} outbox_family_t;

static void outbox_sample(void *ud, const outbox_figures_t *f) {
    outbox_family_t *c = ud;
    prom_label_t label = {"outbox", f->name};
    switch (c->which) {
    case 0:
        if (f->pending >= 0) prom_u64(c->b, c->name, &label, 1, (uint64_t)f->pending);
        break;
    case 1:
        if (f->oldest_age >= 0) prom_double(c->b, c->name, &label, 1, f->oldest_age);
        break;
    case 2:
        prom_u64(c->b, c->name, &label, 1, f->published);
        break;
    default:
        prom_u64(c->b, c->name, &label, 1, f->errors);
    }
}

static void render_outboxes(prom_t *b) {
    static const struct {
        const char *name, *type, *help;
    } families[] = {
        {"luka_outbox_pending_rows", "gauge",
         "Rows of the outbox table not sent yet, at the relay's last look."},
        {"luka_outbox_oldest_pending_age_seconds", "gauge",
         "Seconds since the oldest unsent row was written (0 when none waits)."},
        {"luka_outbox_published_total", "counter",
         "Rows the relay published, the broker acknowledged and the relay marked sent."},
        {"luka_outbox_failed_rounds_total", "counter",
         "Relay rounds that failed (database unreachable, rows not acknowledged)."},
    };
    for (int i = 0; i < 4; i++) {
        outbox_family_t c = {b, families[i].name, i};
        prom_family(b, families[i].name, families[i].type, families[i].help);
        outbox_each(outbox_sample, &c);
    }
}

static void render_process(prom_t *b) {
    process_figures_t p;
    process_read(&p);
    prom_family(b, "process_cpu_seconds_total", "counter",
                "Total user and system CPU time spent in seconds.");
    prom_double(b, "process_cpu_seconds_total", NULL, 0, p.cpu_seconds);
    prom_family(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    prom_double(b, "process_resident_memory_bytes", NULL, 0, p.resident_bytes);
    prom_family(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    prom_double(b, "process_virtual_memory_bytes", NULL, 0, p.virtual_bytes);
    prom_family(b, "process_open_fds", "gauge", "Number of open file descriptors.");
    prom_double(b, "process_open_fds", NULL, 0, p.open_fds);
    prom_family(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
    prom_double(b, "process_max_fds", NULL, 0, p.max_fds);
    prom_family(b, "process_start_time_seconds", "gauge",
                "Start time of the process since unix epoch in seconds.");
    prom_double(b, "process_start_time_seconds", NULL, 0, p.start_time);
    /* The name luka used before the standard ones; kept for dashboards. */
    prom_family(b, "luka_process_resident_memory_bytes", "gauge",
                "Resident memory of the process (the same as process_resident_memory_bytes).");
    prom_double(b, "luka_process_resident_memory_bytes", NULL, 0, p.resident_bytes);
}

static void render(struct metrics *m, int ready) {
    host_t *h = m->host;
    prom_t *b = &m->text;
    /* librdkafka's version is the library's, loaded now; Lua's, the
     * headers' luka was built with (liblua5.4 has no run-time release). */
    prom_label_t build[] = {{"version", LUKA_VERSION},
                            {"librdkafka_version", rd_kafka_version_str()},
                            {"lua_version", LUA_VERSION_MAJOR "." LUA_VERSION_MINOR
                                            "." LUA_VERSION_RELEASE}};

    b->len = 0;
    prom_family(b, "luka_build_info", "gauge",
                "Always 1; the labels tell which luka runs, on which librdkafka and Lua.");
    prom_u64(b, "luka_build_info", build, 3, 1);
    prom_family(b, "luka_ready", "gauge", "1 when /readyz answers 200.");
    prom_u64(b, "luka_ready", NULL, 0, (uint64_t)ready);
    render_process(b);
    render_endpoints(b, h);

    prom_family(b, "luka_consumer_lag_messages", "gauge",
                "Messages between the committed offset and the end of the partition "
                "(librdkafka statistics, refreshed every second).");
    if (m->lag.len) prom_printf(b, "%.*s", (int)m->lag.len, m->lag.p);

    publisher_counter(b, h, "luka_messages_published_total", PUB(published),
                      "Messages queued for the publisher's topic.");
    publisher_counter(b, h, "luka_messages_acked_total", PUB(acked),
                      "Published messages the brokers acknowledged.");
    publisher_counter(b, h, "luka_messages_publish_failed_total", PUB(failed),
                      "Published messages that could not be delivered.");
    prom_family(b, "luka_publish_latency_seconds", "histogram",
                "Time from a publish to its delivery report, acknowledged or failed.");
    for (int i = 0; i < h->npubs; i++) {
        const publisher_t *p = h->pubs[i];
        prom_label_t label = {"publisher", p->sink.conf->name};
        prom_histogram(b, "luka_publish_latency_seconds", &label, 1, p->latency.bounds,
                       p->latency.n, p->latency.counts, p->latency.sum);
    }

    render_outboxes(b);

    prom_family(b, "luka_reloads_total", "counter", "App reloads that took effect.");
    prom_u64(b, "luka_reloads_total", NULL, 0, h->reloads);
    prom_family(b, "luka_reload_failures_total", "counter",
                "App reloads refused (the running app was kept).");
    prom_u64(b, "luka_reload_failures_total", NULL, 0, h->reload_failures);
    prom_appmetrics(b, h->appmetrics, "luka_app_");
}

static void publish(struct metrics *m, int draining) {
    char why[600], *body, *status = NULL;
    unsigned tick = m->ticks++;
    int ready, second = tick % STATS_EVERY_TICKS == 0, fresh;
    int64_t now = wall_ms();
    json_t *doc;
    http_status_t st = {0};

    if (!draining && second) refresh_stats(m);
    ready = !draining && readiness(m, why, sizeof(why));
    if (draining) snprintf(why, sizeof(why), "shutting down");
    /* An app with tens of thousands of series makes megabytes of text,
     * about 10 ms of work each: that is rebuilt once a second only
     * (Prometheus scrapes far less often). */
    fresh = draining || second || m->text.len < METRICS_LARGE;
    if (fresh) render(m, ready);
    doc = ready ? json_pack("{s:b}", "ready", 1) : json_pack("{s:b,s:s}", "ready", 0, "reason", why);
    /* Endpoints a final failure stopped are named, ready or not. */
    for (int i = 0; doc && i < m->host->neps; i++)
        if (m->host->eps[i]->halted) {
            json_t *list = json_object_get(doc, "stopped");
            if (!list) json_object_set_new(doc, "stopped", list = json_array());
            json_array_append_new(list, json_string(m->host->eps[i]->flow.conf->name));
        }
    body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!draining && tick % SAMPLE_EVERY_TICKS == 0) status_sample(m->status, m->host, now);
    if (draining || second)
        status = status_json(m->status, m->host, ready, why, now, &st.status_len);
    st.status = status;
    st.metrics = fresh ? m->text.p : NULL;
    st.metrics_len = m->text.len;
    st.ready = ready;
    st.readiness = body;
    st.draining = draining;
    http_publish(m->http, &st);
    free(body);
    free(status);
}

static void on_tick(uv_timer_t *t) { publish(t->data, 0); }

static int metrics_start(host_t *h, char *errbuf, size_t errlen) {
    const char *addr = h->opts->http;
    struct metrics *m = calloc(1, sizeof(*m));
    if (!(m->http = http_start(addr, errbuf, errlen))) {
        free(m);
        return -1;
    }
    m->host = h;
    m->status = status_new();
    uv_timer_init(h->loop, &m->timer);
    m->timer.data = m;
    uv_timer_start(&m->timer, on_tick, 0, METRICS_TICK_MS);
    h->metrics = m;
    log_info("http", "serving the status page (/, /status.json), /healthz, /readyz and /metrics on %s",
             addr);
    return 0;
}

static void metrics_drain(host_t *h) {
    if (!h->metrics) return;
    uv_timer_stop(&h->metrics->timer);
    publish(h->metrics, 1);
}

static void free_metrics(uv_handle_t *handle) {
    struct metrics *m = handle->data;
    prom_free(&m->text);
    prom_free(&m->lag);
    status_free(m->status);
    free(m);
}

static void metrics_stop(host_t *h) {
    struct metrics *m = h->metrics;
    if (!m) return;
    h->metrics = NULL;
    http_stop(m->http);
    uv_close((uv_handle_t *)&m->timer, free_metrics);
}

const host_ops_t metrics_host_ops = {
    .name = "http",
    .start = metrics_start,
    .draining = metrics_drain,
    .stop = metrics_stop,
    .statistics_ms = METRICS_STATS_INTERVAL,
};
