/* metrics.c - the loop thread's side of the operations endpoint.  Every
 * METRICS_TICK_MS a timer renders the Prometheus text (exposition format
 * 0.0.4) from the endpoints' and publishers' counters and librdkafka's
 * statistics, decides readiness, and publishes both with a heartbeat to
 * the HTTP thread, which never touches the host itself. */
#include "ops/metrics.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "kafka/consumer.h"
#include "ops/http.h"
#include "base/log.h"
#include "kafka/producer.h"

/* librdkafka's statistics change once a second at most (METRICS_STATS_
 * INTERVAL); parsing them on every tick would be wasted work. */
#define STATS_EVERY_TICKS (1000 / METRICS_TICK_MS)

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf_t;

struct metrics {
    host_t *host;
    http_t *http;
    uv_timer_t timer;
    unsigned ticks;
    sbuf_t text; /* /metrics, rebuilt on every tick */
    sbuf_t lag;  /* the lag samples, rebuilt from statistics */
    char unreachable[512]; /* why some client reaches no broker, or "" */
};

static void sb_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf_t *b, const char *fmt, ...) {
    va_list ap;
    int n;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (b->p && b->len + (size_t)n < b->cap) break;
        b->cap = (b->cap + (size_t)n + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    b->len += (size_t)n;
}

/* A label value: backslash, double quote and newline escaped. */
static void sb_label(sbuf_t *b, const char *name, const char *value, int first) {
    sb_printf(b, "%s%s=\"", first ? "" : ",", name);
    for (const char *p = value; *p; p++) {
        if (*p == '\\') sb_printf(b, "\\\\");
        else if (*p == '"') sb_printf(b, "\\\"");
        else if (*p == '\n') sb_printf(b, "\\n");
        else sb_printf(b, "%c", *p);
    }
    sb_printf(b, "\"");
}

static void family(sbuf_t *b, const char *name, const char *type, const char *help) {
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
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

/* Consumer lag per assigned partition, from an endpoint's statistics:
 * librdkafka's consumer_lag (high watermark minus committed offset);
 * -1 (unknown) and the internal partition -1 are skipped. */
static void lag_samples(sbuf_t *b, const endpoint_t *ep) {
    json_t *root, *topics, *t, *parts, *p;
    const char *tname, *pname;

    if (!ep->kafka_stats || !(root = json_loads(ep->kafka_stats, 0, NULL))) return;
    topics = json_object_get(root, "topics");
    json_object_foreach(topics, tname, t) {
        parts = json_object_get(t, "partitions");
        json_object_foreach(parts, pname, p) {
            json_int_t partition = json_integer_value(json_object_get(p, "partition"));
            json_t *lag = json_object_get(p, "consumer_lag");
            if (partition < 0 || !json_is_integer(lag) || json_integer_value(lag) < 0) continue;
            sb_printf(b, "luka_consumer_lag_messages{");
            sb_label(b, "endpoint", ep->flow.conf->name, 1);
            sb_label(b, "group", ep->flow.conf->group, 0);
            sb_label(b, "topic", tname, 0);
            sb_printf(b, ",partition=\"%lld\"} %lld\n", (long long)partition,
                      (long long)json_integer_value(lag));
        }
    }
    json_decref(root);
}

/* Rebuild what comes from librdkafka's statistics: lag and reachability. */
static void refresh_stats(struct metrics *m) {
    host_t *h = m->host;
    m->lag.len = 0;
    m->unreachable[0] = '\0';
    for (int i = 0; i < h->neps; i++) {
        endpoint_t *ep = h->eps[i];
        lag_samples(&m->lag, ep);
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

static long resident_bytes(void) {
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%*d %ld", &pages) != 1) pages = 0;
    fclose(f);
    return pages * sysconf(_SC_PAGESIZE);
}

/* One counter family with a sample per endpoint; off is the counter's
 * offset in endpoint_stats_t. */
static void endpoint_counter(sbuf_t *b, const host_t *h, const char *name, size_t off,
                             const char *help) {
    family(b, name, "counter", help);
    for (int i = 0; i < h->neps; i++) {
        const endpoint_t *ep = h->eps[i];
        sb_printf(b, "%s{", name);
        sb_label(b, "endpoint", ep->flow.conf->name, 1);
        sb_label(b, "group", ep->flow.conf->group, 0);
        sb_printf(b, "} %llu\n",
                  (unsigned long long)*(const uint64_t *)((const char *)&ep->flow.stats + off));
    }
}

/* One 0/1 gauge family with a sample per endpoint; off is the offset of
 * the int flag in endpoint_t. */
static void endpoint_flag(sbuf_t *b, const host_t *h, const char *name, size_t off,
                          const char *help) {
    family(b, name, "gauge", help);
    for (int i = 0; i < h->neps; i++) {
        const endpoint_t *ep = h->eps[i];
        sb_printf(b, "%s{", name);
        sb_label(b, "endpoint", ep->flow.conf->name, 1);
        sb_label(b, "group", ep->flow.conf->group, 0);
        sb_printf(b, "} %d\n", *(const int *)((const char *)ep + off) ? 1 : 0);
    }
}

static void publisher_counter(sbuf_t *b, const host_t *h, const char *name, size_t off,
                              const char *help) {
    family(b, name, "counter", help);
    for (int i = 0; i < h->npubs; i++) {
        const publisher_t *p = h->pubs[i];
        sb_printf(b, "%s{", name);
        sb_label(b, "publisher", p->sink.conf->name, 1);
        sb_printf(b, "} %llu\n", (unsigned long long)*(const uint64_t *)((const char *)p + off));
    }
}

#define EP(field) offsetof(endpoint_stats_t, field)
#define PUB(field) offsetof(publisher_t, field)

static void render(struct metrics *m, int ready) {
    host_t *h = m->host;
    sbuf_t *b = &m->text;

    b->len = 0;
    family(b, "luka_build_info", "gauge", "Always 1; the version label tells which luka runs.");
    sb_printf(b, "luka_build_info{version=\"%s\"} 1\n", LUKA_VERSION);
    family(b, "luka_ready", "gauge", "1 when /readyz answers 200.");
    sb_printf(b, "luka_ready %d\n", ready);

    endpoint_counter(b, h, "luka_messages_consumed_total", EP(consumed),
                     "Messages the endpoint took from Kafka.");
    endpoint_counter(b, h, "luka_messages_handled_total", EP(handled),
                     "Messages whose handler succeeded.");
    endpoint_counter(b, h, "luka_messages_failed_total", EP(failed),
                     "Handler failures once instant retries were used up (a message failing "
                     "again after a delayed retry counts again).");
    endpoint_counter(b, h, "luka_messages_retried_total", EP(retried),
                     "Retries, instant and delayed.");
    endpoint_counter(b, h, "luka_messages_dead_lettered_total", EP(dead_lettered),
                     "Messages handed to the error channel.");
    endpoint_counter(b, h, "luka_messages_deduplicated_total", EP(deduplicated),
                     "Messages skipped because their dedup key was already handled.");
    endpoint_counter(b, h, "luka_messages_resent_total", EP(resent),
                     "Messages resent to their topic by final_failure = \"resend\".");
    endpoint_counter(b, h, "luka_messages_released_total", EP(released),
                     "Messages released for a later delivery by final_failure = \"release\".");
    endpoint_counter(b, h, "luka_messages_ignored_total", EP(ignored),
                     "Messages committed unhandled by final_failure = \"ignore\".");
    endpoint_counter(b, h, "luka_messages_stopped_total", EP(stopped),
                     "Messages that stopped the endpoint (final_failure = \"stop\").");
    endpoint_counter(b, h, "luka_rebalances_total", EP(rebalances),
                     "Partition assignments and revocations.");

    endpoint_flag(b, h, "luka_endpoint_joined", offsetof(endpoint_t, joined),
                  "1 once the endpoint has joined its group.");
    endpoint_flag(b, h, "luka_endpoint_stopped", offsetof(endpoint_t, halted),
                  "1 once a final failure (\"stop\") stopped the endpoint; the others keep serving.");

    family(b, "luka_handler_duration_seconds", "histogram", "Time spent in the handler per call.");
    for (int i = 0; i < h->neps; i++) {
        const endpoint_t *ep = h->eps[i];
        uint64_t cumulative = 0;
        for (int k = 0; k <= DURATION_BUCKETS; k++) {
            cumulative += ep->flow.stats.duration_count[k];
            sb_printf(b, "luka_handler_duration_seconds_bucket{");
            sb_label(b, "endpoint", ep->flow.conf->name, 1);
            sb_label(b, "group", ep->flow.conf->group, 0);
            if (k < DURATION_BUCKETS) sb_printf(b, ",le=\"%g\"} %llu\n", duration_bounds[k],
                                                (unsigned long long)cumulative);
            else sb_printf(b, ",le=\"+Inf\"} %llu\n", (unsigned long long)cumulative);
        }
        sb_printf(b, "luka_handler_duration_seconds_sum{");
        sb_label(b, "endpoint", ep->flow.conf->name, 1);
        sb_label(b, "group", ep->flow.conf->group, 0);
        sb_printf(b, "} %.9g\n", ep->flow.stats.duration_sum);
        sb_printf(b, "luka_handler_duration_seconds_count{");
        sb_label(b, "endpoint", ep->flow.conf->name, 1);
        sb_label(b, "group", ep->flow.conf->group, 0);
        sb_printf(b, "} %llu\n", (unsigned long long)cumulative);
    }

    family(b, "luka_consumer_lag_messages", "gauge",
           "Messages between the committed offset and the end of the partition "
           "(librdkafka statistics, refreshed every second).");
    if (m->lag.len) sb_printf(b, "%.*s", (int)m->lag.len, m->lag.p);

    publisher_counter(b, h, "luka_messages_published_total", PUB(published),
                      "Messages queued for the publisher's topic.");
    publisher_counter(b, h, "luka_messages_acked_total", PUB(acked),
                      "Published messages the brokers acknowledged.");
    publisher_counter(b, h, "luka_messages_publish_failed_total", PUB(failed),
                      "Published messages that could not be delivered.");

    family(b, "luka_reloads_total", "counter", "App reloads that took effect.");
    sb_printf(b, "luka_reloads_total %llu\n", (unsigned long long)h->reloads);
    family(b, "luka_reload_failures_total", "counter",
           "App reloads refused (the running app was kept).");
    sb_printf(b, "luka_reload_failures_total %llu\n", (unsigned long long)h->reload_failures);
    family(b, "luka_process_resident_memory_bytes", "gauge", "Resident memory of the process.");
    sb_printf(b, "luka_process_resident_memory_bytes %ld\n", resident_bytes());
}

static void publish(struct metrics *m, int draining) {
    char why[600], *body;
    int ready;
    json_t *doc;
    http_status_t st;

    if (!draining && m->ticks++ % STATS_EVERY_TICKS == 0) refresh_stats(m);
    ready = !draining && readiness(m, why, sizeof(why));
    if (draining) snprintf(why, sizeof(why), "shutting down");
    render(m, ready);
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
    st.metrics = m->text.p;
    st.metrics_len = m->text.len;
    st.ready = ready;
    st.readiness = body;
    st.draining = draining;
    http_publish(m->http, &st);
    free(body);
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
    uv_timer_init(h->loop, &m->timer);
    m->timer.data = m;
    uv_timer_start(&m->timer, on_tick, 0, METRICS_TICK_MS);
    h->metrics = m;
    log_info("http", "serving /healthz, /readyz and /metrics on %s", addr);
    return 0;
}

static void metrics_drain(host_t *h) {
    if (!h->metrics) return;
    uv_timer_stop(&h->metrics->timer);
    publish(h->metrics, 1);
}

static void free_metrics(uv_handle_t *handle) {
    struct metrics *m = handle->data;
    free(m->text.p);
    free(m->lag.p);
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
