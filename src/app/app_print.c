/* app_print.c - the resolved topology of an app as `luka check` prints it:
 * broker, publishers, outboxes, and each endpoint with its policies (timeout, retry,
 * error channel, final failure, dedup) and librdkafka config.  Secrets are
 * masked: config values log_is_secret() names, and store URL passwords. */
#include "app/app.h"

#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "base/log.h"

/* The most delayed-retry backoffs listed one by one. */
#define SHOW_BACKOFFS 6

static const char *duration(int64_t ms, char *buf, size_t len) {
    if (ms > 0 && ms % 3600000 == 0) snprintf(buf, len, "%" PRId64 "h", ms / 3600000);
    else if (ms > 0 && ms % 60000 == 0) snprintf(buf, len, "%" PRId64 "m", ms / 60000);
    else if (ms > 0 && ms % 1000 == 0) snprintf(buf, len, "%" PRId64 "s", ms / 1000);
    else snprintf(buf, len, "%" PRId64 "ms", ms);
    return buf;
}

static void print_config(FILE *out, const kvlist_t *l) {
    for (int i = 0; i < l->n; i++)
        fprintf(out, "      %s = %s\n", l->items[i].key,
                log_is_secret(l->items[i].key) ? "********" : l->items[i].value);
}

/* "retry: 1 instant, 3 delayed after 1s, 2s, 4s (x2, max 30s): up to 8
 * calls".  Instant retries repeat in every delayed round, so a message is
 * handled at most (1 + instant) x (1 + delayed) times. */
static void print_retry(FILE *out, const policy_conf_t *p) {
    char a[32], b[32];
    double backoff = (double)p->initial_ms;
    long long calls = (1LL + p->instant) * (1LL + p->delayed);

    if (!p->instant && !p->delayed) {
        fputs("      retry: none (1 call)\n", out);
        return;
    }
    fputs("      retry: ", out);
    if (p->instant) fprintf(out, "%d instant%s", p->instant, p->delayed ? ", " : "");
    if (p->delayed) {
        fprintf(out, "%d delayed after ", p->delayed);
        for (int i = 0; i < p->delayed && i < SHOW_BACKOFFS; i++) {
            int64_t ms = backoff > (double)p->max_ms ? p->max_ms : (int64_t)backoff;
            fprintf(out, "%s%s", i ? ", " : "", duration(ms, a, sizeof(a)));
            backoff *= p->multiplier;
        }
        if (p->delayed > SHOW_BACKOFFS) fputs(", ...", out);
        fprintf(out, " (x%g, max %s%s)", p->multiplier, duration(p->max_ms, b, sizeof(b)),
                p->jitter ? ", jitter up to half off" : "");
    }
    fprintf(out, ": up to %lld calls\n", calls);
}

static void print_dedup(FILE *out, const policy_conf_t *p) {
    char ttl[32], store[512];
    if (!p->dedup) {
        fputs("      dedup: off\n", out);
        return;
    }
    fputs("      dedup: key ", out);
    if (p->dedup_field) fprintf(out, "from field %s", p->dedup_field);
    else if (p->dedup_fn != LUA_NOREF) fputs("from a function", out);
    else fprintf(out, "from header %s", p->dedup_header);
    fprintf(out, ", store %s", log_redact_url(p->dedup_store, store, sizeof(store)));
    if (strcmp(p->dedup_store, "memory") == 0)
        fprintf(out, " (at most %d keys)", p->dedup_max_entries);
    fprintf(out, ", ttl %s\n", duration(p->dedup_ttl_ms, ttl, sizeof(ttl)));
}

static void print_policy(FILE *out, const app_t *app, const policy_conf_t *p) {
    static const char *finals[] = {"stop", "resend", "release", "ignore"};
    const publisher_conf_t *pub;
    char t[32];

    fprintf(out, "      timeout: %s\n", duration(p->timeout_ms, t, sizeof(t)));
    print_retry(out, p);
    switch (p->error_kind) {
    case ERRCH_TOPIC:
        fprintf(out, "      error channel: topic %s\n", p->error_target);
        break;
    case ERRCH_PUBLISHER:
        pub = app_publisher(app, p->error_target);
        fprintf(out, "      error channel: publisher %s (topic %s)\n", p->error_target,
                pub ? pub->topic : "?");
        break;
    case ERRCH_FUNCTION:
        fputs("      error channel: a function\n", out);
        break;
    default:
        fputs("      error channel: none\n", out);
    }
    fprintf(out, "      final failure: %s\n", finals[p->final_failure]);
    print_dedup(out, p);
}

void app_print(const app_t *app, FILE *out) {
    fprintf(out, "app %s\n", app->path);
    fprintf(out, "  broker %s, client_id %s\n",
            app->brokers ? app->brokers : "(from --brokers, KAFKA_BROKERS or localhost:9092)",
            app->client_id ? app->client_id : "luka");
    print_config(out, &app->broker_config);
    for (int i = 0; i < app->npubs; i++) {
        const publisher_conf_t *p = &app->pubs[i];
        fprintf(out, "  publisher %s -> topic %s, key %s%s%s   (%s)\n", p->name, p->topic,
                p->key_field ? "from field "
                             : (p->key_fn != LUA_NOREF ? "from a function" : "message id"),
                p->key_field ? p->key_field : "", p->channel ? ", channel" : "", p->where);
        if (p->on_delivery != LUA_NOREF) fputs("      hooks: on_delivery\n", out);
        print_config(out, &p->config);
    }
    for (int i = 0; i < app->noutboxes; i++) {
        const outbox_conf_t *o = &app->outboxes[i];
        const publisher_conf_t *p = app_publisher(app, o->publisher);
        char url[1024], poll[32];
        fprintf(out, "  outbox %s: table %s in %s -> publisher %s (topic %s, or the row's)   (%s)\n",
                o->name, o->table, log_redact_url(o->db, url, sizeof(url)), o->publisher,
                p ? p->topic : "?", o->where);
        fprintf(out, "      relay: %d row(s) per round, polls every %s\n", o->batch,
                duration(o->poll_ms, poll, sizeof(poll)));
    }
    for (int i = 0; i < app->neps; i++) {
        const endpoint_conf_t *e = &app->eps[i];
        fprintf(out, "  %s %s <- topics ", e->channel ? "channel" : "consumer", e->name);
        for (int t = 0; t < e->ntopics; t++) fprintf(out, "%s%s", t ? "," : "", e->topics[t]);
        fprintf(out, ", group %s, format %s   (%s)\n", e->group,
                e->format == FORMAT_RAW ? "raw" : "json", e->where);
        print_policy(out, app, &e->policy);
        if (e->handle_batch != LUA_NOREF)
            fprintf(out, "      batches: up to %d messages of one partition, cut after %lld ms\n",
                    e->batch_max, (long long)e->batch_wait_ms);
        if (e->concurrency > 1)
            fprintf(out, "      concurrency: %d, one at a time per %s, buffer %d\n", e->concurrency,
                    (const char *[]){"key", "partition", "message (no order)"}[e->ordering],
                    e->buffer);
        else
            fputs("      concurrency: 1 (one handler call at a time)\n", out);
        if (e->on_assign != LUA_NOREF || e->on_revoke != LUA_NOREF || e->on_stop != LUA_NOREF)
            fprintf(out, "      hooks:%s%s%s\n", e->on_assign != LUA_NOREF ? " on_assign" : "",
                    e->on_revoke != LUA_NOREF ? " on_revoke" : "",
                    e->on_stop != LUA_NOREF ? " on_stop" : "");
        if (e->transactional) {
            /* The id's formula is kafka/txn.c's txn_id. */
            char host[256] = "luka";
            if (!e->txn_instance && gethostname(host, sizeof(host)) != 0) strcpy(host, "luka");
            host[sizeof(host) - 1] = '\0';
            fprintf(out,
                    "      transactional: transactional.id %s.%s.%s, a commit every %d message(s) "
                    "or %lld ms, read_committed\n",
                    e->group, e->name, e->txn_instance ? e->txn_instance : host, e->txn_messages,
                    (long long)e->txn_interval_ms);
        }
        print_config(out, &e->config);
    }
}
