/* status.c - the status page's data (status.h): a ring of samples per
 * endpoint, publisher and assigned partition, taken every
 * STATUS_SAMPLE_MS, and the /status.json document built from them and
 * from the host as it is now.  Only the loop thread calls in here; the
 * HTTP thread gets the finished text. */
#include "ops/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ops/figures.h"

enum { SERIES_ENDPOINT, SERIES_PUBLISHER, SERIES_LAG };
/* Values per sample: an endpoint's consumed, handled, failed and
 * dead-lettered counts; a publisher's published, acked and failed; a
 * partition's lag (-1: unknown). */
#define NVALUES 4

static const char *const endpoint_counts[] = {"consumed", "handled", "failed", "dead_lettered"};
static const char *const publisher_counts[] = {"published", "acked", "failed"};

typedef struct series {
    int kind;
    char *name; /* the endpoint's or publisher's */
    char *topic; /* SERIES_LAG: the partition's */
    int32_t partition;
    uint64_t first, last; /* the numbers of its first and latest samples */
    int64_t v[STATUS_SAMPLES][NVALUES];
} series_t;

struct status {
    uint64_t n;                     /* samples taken; the next one's number */
    int64_t times[STATUS_SAMPLES];  /* wall clock (ms) of sample k at k % STATUS_SAMPLES */
    series_t **series;
    int nseries, capseries;
    uint64_t seq; /* documents built */
};

status_t *status_new(void) { return calloc(1, sizeof(status_t)); }

static void series_free(series_t *r) {
    free(r->name);
    free(r->topic);
    free(r);
}

void status_free(status_t *s) {
    if (!s) return;
    for (int i = 0; i < s->nseries; i++) series_free(s->series[i]);
    free(s->series);
    free(s);
}

static series_t *find(const status_t *s, int kind, const char *name, const char *topic,
                      int32_t partition) {
    for (int i = 0; i < s->nseries; i++) {
        series_t *r = s->series[i];
        if (r->kind == kind && strcmp(r->name, name) == 0 &&
            (kind != SERIES_LAG || (r->partition == partition && strcmp(r->topic, topic) == 0)))
            return r;
    }
    return NULL;
}

/* The series, made when new, with slot k's values set to -1. */
static series_t *touch(status_t *s, int kind, const char *name, const char *topic,
                       int32_t partition, uint64_t k) {
    series_t *r = find(s, kind, name, topic, partition);
    if (!r) {
        if (s->nseries == s->capseries) {
            s->capseries = s->capseries ? s->capseries * 2 : 16;
            s->series = realloc(s->series, (size_t)s->capseries * sizeof(*s->series));
        }
        r = calloc(1, sizeof(*r));
        r->kind = kind;
        r->name = strdup(name);
        r->topic = topic ? strdup(topic) : NULL;
        r->partition = partition;
        r->first = k;
        s->series[s->nseries++] = r;
    }
    r->last = k;
    for (int i = 0; i < NVALUES; i++) r->v[k % STATUS_SAMPLES][i] = -1;
    return r;
}

/* figures_lag's callback while sampling: the lag of an assigned partition. */
typedef struct lag_sampling {
    status_t *s;
    const char *endpoint;
    uint64_t k;
} lag_sampling_t;

static void sample_lag(void *ud, const char *topic, int32_t partition, int64_t lag) {
    lag_sampling_t *c = ud;
    series_t *r = find(c->s, SERIES_LAG, c->endpoint, topic, partition);
    /* Only partitions assigned now were touched for this sample. */
    if (r && r->last == c->k) r->v[c->k % STATUS_SAMPLES][0] = lag;
}

void status_sample(status_t *s, const host_t *h, int64_t now_ms) {
    uint64_t k = s->n;
    int slot = (int)(k % STATUS_SAMPLES);

    s->times[slot] = now_ms;
    for (int i = 0; i < h->neps; i++) {
        const endpoint_t *ep = h->eps[i];
        const endpoint_stats_t *st = &ep->flow.stats;
        const char *name = ep->flow.conf->name;
        series_t *r = touch(s, SERIES_ENDPOINT, name, NULL, 0, k);
        lag_sampling_t c = {s, name, k};
        r->v[slot][0] = (int64_t)st->consumed;
        r->v[slot][1] = (int64_t)st->handled;
        r->v[slot][2] = (int64_t)st->failed;
        r->v[slot][3] = (int64_t)st->dead_lettered;
        for (int p = 0; p < ep->nparts; p++)
            if (!ep->parts[p]->revoking)
                touch(s, SERIES_LAG, name, ep->parts[p]->offsets->topic,
                      ep->parts[p]->offsets->partition, k);
        figures_lag(ep, sample_lag, &c);
    }
    for (int i = 0; i < h->npubs; i++) {
        const publisher_t *p = h->pubs[i];
        series_t *r = touch(s, SERIES_PUBLISHER, p->sink.conf->name, NULL, 0, k);
        r->v[slot][0] = (int64_t)p->published;
        r->v[slot][1] = (int64_t)p->acked;
        r->v[slot][2] = (int64_t)p->failed;
    }
    /* What is gone (an endpoint a reload stopped, a revoked partition)
     * starts a new history if it comes back. */
    for (int i = 0; i < s->nseries;)
        if (s->series[i]->last != k) {
            series_free(s->series[i]);
            s->series[i] = s->series[--s->nseries];
        } else {
            i++;
        }
    s->n++;
}

/* The number of the oldest sample kept. */
static uint64_t oldest(const status_t *s) {
    return s->n > STATUS_SAMPLES ? s->n - STATUS_SAMPLES : 0;
}

static int64_t value(const series_t *r, uint64_t k, int i) {
    return r->v[k % STATUS_SAMPLES][i];
}

/* What a counter grew by from sample k - 1 to k; a counter that went back
 * was started again (an endpoint a reload restarted) from 0. */
static int64_t growth(const series_t *r, uint64_t k, int i) {
    int64_t a = value(r, k - 1, i), b = value(r, k, i);
    return b >= a ? b - a : b;
}

static double per_second(int64_t count, int64_t ms) {
    double rate = ms > 0 ? (double)count * 1000.0 / (double)ms : 0;
    return round(rate * 1000.0) / 1000.0; /* three decimals are plenty */
}

/* Counter i's rate per second over the last STATUS_RATE_WINDOW_MS of
 * samples; null until the series has two. */
static json_t *rate(const status_t *s, const series_t *r, int i) {
    uint64_t last, from, lo = oldest(s);
    int64_t sum = 0;

    if (!r || s->n == 0 || r->last != s->n - 1) return json_null();
    last = s->n - 1;
    from = last;
    while (from > lo && from > r->first &&
           s->times[last % STATUS_SAMPLES] - s->times[(from - 1) % STATUS_SAMPLES] <=
               STATUS_RATE_WINDOW_MS)
        from--;
    if (from == last) return json_null();
    for (uint64_t k = from + 1; k <= last; k++) sum += growth(r, k, i);
    return json_real(per_second(sum, s->times[last % STATUS_SAMPLES] - s->times[from % STATUS_SAMPLES]));
}

/* Counter i's rate between each kept sample and the one before, oldest
 * first; null where the series has no value for both. */
static json_t *rate_history(const status_t *s, const series_t *r, int i) {
    json_t *a = json_array();
    for (uint64_t k = oldest(s); k < s->n; k++) {
        if (!r || k == 0 || k - 1 < r->first || k > r->last) {
            json_array_append_new(a, json_null());
            continue;
        }
        json_array_append_new(
            a, json_real(per_second(growth(r, k, i), s->times[k % STATUS_SAMPLES] -
                                                         s->times[(k - 1) % STATUS_SAMPLES])));
    }
    return a;
}

/* totals, rates and history of a series of counters named names. */
static void counters(json_t *o, const status_t *s, const series_t *r, const char *const *names,
                     int n) {
    json_t *rates = json_object(), *history = json_object();
    for (int i = 0; i < n; i++) {
        json_object_set_new(rates, names[i], rate(s, r, i));
        json_object_set_new(history, names[i], rate_history(s, r, i));
    }
    json_object_set_new(o, "rates", rates);
    json_object_set_new(o, "history", history);
}

/* A JSON string of s; bytes of invalid UTF-8 (a failure's message may
 * quote a payload) become '?', as JSON strings must be UTF-8. */
static json_t *text(const char *s) {
    json_t *j = json_string(s);
    char *copy;
    if (j) return j;
    copy = strdup(s);
    for (unsigned char *p = (unsigned char *)copy; *p; p++)
        if (*p >= 0x80) *p = '?';
    j = json_string(copy);
    free(copy);
    return j;
}

static const char *state_of(const host_t *h, const endpoint_t *ep) {
    if (ep->halted) return "stopped";
    if (h->stopping) return "stopping";
    if (!ep->joined) return "joining";
    if (ep->revoking) return "rebalancing";
    if (ep->held) return "paused";
    return "joined";
}

/* figures_lag's callback for the document: the lag now of one partition
 * in the "partitions" array being built. */
static void current_lag(void *ud, const char *topic, int32_t partition, int64_t lag) {
    json_t *parts = ud, *p;
    size_t i;
    json_array_foreach(parts, i, p) {
        if (json_integer_value(json_object_get(p, "partition")) == partition &&
            strcmp(json_string_value(json_object_get(p, "topic")), topic) == 0)
            json_object_set_new(p, "lag", json_integer(lag));
    }
}

static int by_partition(const void *a, const void *b) {
    const partition_t *x = *(partition_t *const *)a, *y = *(partition_t *const *)b;
    int c = strcmp(x->offsets->topic, y->offsets->topic);
    return c ? c : (x->offsets->partition > y->offsets->partition) -
                       (x->offsets->partition < y->offsets->partition);
}

static json_t *partitions(const status_t *s, const endpoint_t *ep) {
    json_t *parts = json_array();
    partition_t **sorted = malloc(((size_t)ep->nparts + 1) * sizeof(*sorted));
    int n = 0;

    for (int i = 0; i < ep->nparts; i++)
        if (!ep->parts[i]->revoking) sorted[n++] = ep->parts[i];
    qsort(sorted, (size_t)n, sizeof(*sorted), by_partition);
    for (int i = 0; i < n; i++) {
        const offsets_t *o = sorted[i]->offsets;
        const series_t *r = find(s, SERIES_LAG, ep->flow.conf->name, o->topic, o->partition);
        json_t *history = json_array();
        for (uint64_t k = oldest(s); k < s->n; k++) {
            int64_t lag = r && k >= r->first && k <= r->last ? value(r, k, 0) : -1;
            json_array_append_new(history, lag >= 0 ? json_integer(lag) : json_null());
        }
        json_array_append_new(parts, json_pack("{s:o,s:i,s:n,s:o}", "topic", text(o->topic),
                                               "partition", (int)o->partition, "lag",
                                               "history", history));
    }
    free(sorted);
    figures_lag(ep, current_lag, parts);
    return parts;
}

static json_t *endpoint(const status_t *s, const host_t *h, const endpoint_t *ep) {
    const endpoint_conf_t *conf = ep->flow.conf;
    const endpoint_stats_t *st = &ep->flow.stats;
    endpoint_figures_t f;
    json_t *o, *topics = json_array();

    figures_endpoint(ep, &f);
    for (int i = 0; i < conf->ntopics; i++) json_array_append_new(topics, text(conf->topics[i]));
    o = json_pack("{s:o,s:s,s:o,s:o,s:s,s:i,s:i,s:i,s:i,s:i}", "name", text(conf->name), "kind",
                  conf->channel ? "channel" : "consumer", "group", text(conf->group), "topics", topics,
                  "state", state_of(h, ep), "assigned", f.assigned, "in_flight", f.in_use,
                  "concurrency", f.concurrency, "waiting_io", f.io_waiting, "waiting", f.waiting);
    json_object_set_new(
        o, "totals",
        json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "consumed", (json_int_t)st->consumed, "handled",
                  (json_int_t)st->handled, "failed", (json_int_t)st->failed, "retried",
                  (json_int_t)st->retried, "dead_lettered", (json_int_t)st->dead_lettered,
                  "deduplicated", (json_int_t)st->deduplicated));
    counters(o, s, find(s, SERIES_ENDPOINT, conf->name, NULL, 0), endpoint_counts, 4);
    json_object_set_new(o, "partitions", partitions(s, ep));
    return o;
}

static json_t *publisher(const status_t *s, const publisher_t *p) {
    const publisher_conf_t *conf = p->sink.conf;
    json_t *o = json_pack("{s:o,s:o,s:{s:I,s:I,s:I}}", "name", text(conf->name), "topic", text(conf->topic),
                          "totals", "published", (json_int_t)p->published, "acked",
                          (json_int_t)p->acked, "failed", (json_int_t)p->failed);
    counters(o, s, find(s, SERIES_PUBLISHER, conf->name, NULL, 0), publisher_counts, 3);
    return o;
}

typedef struct failure_ref {
    const flow_failure_t *f;
    const char *endpoint;
} failure_ref_t;

static int newest_first(const void *a, const void *b) {
    const failure_ref_t *x = a, *y = b;
    return (x->f->seq < y->f->seq) - (x->f->seq > y->f->seq);
}

/* The last STATUS_FAILURES failures over every endpoint, newest first. */
static json_t *failures(const host_t *h) {
    failure_ref_t *all = malloc(((size_t)h->neps * FLOW_FAILURES + 1) * sizeof(*all));
    json_t *list = json_array();
    int n = 0;

    for (int i = 0; i < h->neps; i++)
        for (int j = 0; j < h->eps[i]->flow.nfailures; j++)
            all[n++] = (failure_ref_t){&h->eps[i]->flow.failures[j], h->eps[i]->flow.conf->name};
    qsort(all, (size_t)n, sizeof(*all), newest_first);
    for (int i = 0; i < n && i < STATUS_FAILURES; i++) {
        const flow_failure_t *f = all[i].f;
        json_array_append_new(list, json_pack("{s:I,s:o,s:o,s:i,s:I,s:i,s:o}", "time_ms",
                                              (json_int_t)f->time_ms, "endpoint", text(all[i].endpoint),
                                              "topic", text(f->topic), "partition", (int)f->partition,
                                              "offset", (json_int_t)f->offset, "attempt",
                                              f->attempt, "error", text(f->error)));
    }
    free(all);
    return list;
}

char *status_json(status_t *s, const host_t *h, int ready, const char *why, int64_t now_ms,
                  size_t *len) {
    json_t *doc, *eps = json_array(), *pubs = json_array(), *times = json_array();
    char *out;

    for (uint64_t k = oldest(s); k < s->n; k++)
        json_array_append_new(times, json_integer(s->times[k % STATUS_SAMPLES]));
    for (int i = 0; i < h->neps; i++) json_array_append_new(eps, endpoint(s, h, h->eps[i]));
    for (int i = 0; i < h->npubs; i++) json_array_append_new(pubs, publisher(s, h->pubs[i]));
    doc = json_pack("{s:s,s:o,s:I,s:I,s:b,s:b,s:i,s:i,s:i,s:o,s:o,s:o,s:o}", "version",
                    LUKA_VERSION, "app", text(h->app->path), "seq", (json_int_t)++s->seq,
                    "time_ms", (json_int_t)now_ms, "ready", ready, "stopping", h->stopping,
                    "sample_interval_ms", STATUS_SAMPLE_MS, "history_window_ms",
                    STATUS_SAMPLE_MS * STATUS_SAMPLES, "rate_window_ms", STATUS_RATE_WINDOW_MS,
                    "samples_ms", times, "endpoints", eps, "publishers", pubs, "failures",
                    failures(h));
    if (!doc) { /* cannot happen: every string is made valid UTF-8 */
        *len = 0;
        return NULL;
    }
    if (!ready) json_object_set_new(doc, "reason", text(why));
    out = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(12));
    json_decref(doc);
    *len = out ? strlen(out) : 0;
    return out;
}
