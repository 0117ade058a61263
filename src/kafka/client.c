/* client.c - the configuration every librdkafka client of luka starts
 * from, its log and error callbacks, and the IO-event pipe that wakes the
 * loop when a client's queue has something. */
#include "kafka/client.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    int lvl = level <= 3 ? LOG_ERROR : level == 4 ? LOG_WARN : level <= 6 ? LOG_INFO : LOG_DEBUG;
    log_at(lvl, "rdkafka", NULL, "%s %s: %s", rd_kafka_name(rk), fac, buf);
}

/* Served on the loop thread (log.queue and the clients' queues). */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    const kafka_env_t *env = opaque ? ((kafka_client_t *)opaque)->env : NULL;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__RESOLVE ||
        err == RD_KAFKA_RESP_ERR__TRANSPORT) {
        log_error("kafka", "cannot reach the brokers at %s: %s; check --brokers or KAFKA_BROKERS "
                           "(luka keeps retrying)",
                  env && env->brokers ? env->brokers : "?", reason);
        return;
    }
    log_error("kafka", "%s: %s: %s", rd_kafka_name(rk), rd_kafka_err2name(err), reason);
    if (rd_kafka_fatal_error(rk, NULL, 0) && env && env->fatal) env->fatal(env->ctx);
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

void kafka_env_each(kafka_env_cb cb, void *ud) {
    extern char **environ;
    for (char **e = environ; *e; e++) {
        char name[256];
        const char *value = env_property(*e, name);
        if (value) cb(ud, *e, (size_t)(value - 1 - *e), name, value);
    }
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

rd_kafka_conf_t *kafka_conf(const kafka_env_t *env, const kvlist_t *extra, char *errbuf,
                            size_t errlen) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const kvlist_t *lists[2] = {&env->app->broker_config, extra};
    const char *client_id = env->app->client_id ? env->app->client_id : "luka";

    if (rd_kafka_conf_set(conf, "bootstrap.servers", env->brokers, errbuf, errlen) ||
        rd_kafka_conf_set(conf, "client.id", client_id, errbuf, errlen) ||
        rd_kafka_conf_set(conf, "log.queue", "true", errbuf, errlen))
        goto fail;
    /* --http reads readiness and lag from statistics; the app may override. */
    if (env->statistics_ms && rd_kafka_conf_set(conf, "statistics.interval.ms",
                                                env->statistics_ms, errbuf, errlen))
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

int kafka_check_config(const kafka_env_t *env, char *errbuf, size_t errlen) {
    extern char **environ;
    const app_t *app = env->app;
    char why[512];
    rd_kafka_conf_t *conf;

    /* The app's config tables were checked as the script declared them;
     * the environment reaches every client, so it may set none of the
     * properties luka sets itself. */
    for (char **e = environ; *e; e++) {
        char name[256];
        const char *value = env_property(*e, name);
        if (value && app_check_property(app, "all", name, value, why, sizeof(why))) {
            snprintf(errbuf, errlen, "environment %.*s sets %s", (int)(value - 1 - *e), *e, why);
            return -1;
        }
    }
    for (int i = 0; i < app->npubs; i++) {
        const publisher_conf_t *p = &app->pubs[i];
        if (!(conf = kafka_conf(env, &p->config, why, sizeof(why)))) {
            snprintf(errbuf, errlen, "%s: publisher '%s': config: %s", p->where, p->name, why);
            return -1;
        }
        rd_kafka_conf_destroy(conf);
    }
    for (int i = 0; i < app->neps; i++) {
        const endpoint_conf_t *e = &app->eps[i];
        if (!(conf = kafka_conf(env, &e->config, why, sizeof(why)))) {
            snprintf(errbuf, errlen, "%s: %s '%s': config: %s", e->where,
                     e->channel ? "channel" : "consumer", e->name, why);
            return -1;
        }
        rd_kafka_conf_destroy(conf);
    }
    if (app->npubs + app->neps == 0) {
        if (!(conf = kafka_conf(env, NULL, why, sizeof(why)))) {
            snprintf(errbuf, errlen, "broker config: %s", why);
            return -1;
        }
        rd_kafka_conf_destroy(conf);
    }
    return 0;
}

char *kafka_brokers(const char *flag, const app_t *app) {
    const char *env = getenv("KAFKA_BROKERS");
    const char *b = flag                        ? flag
                    : app && app->brokers       ? app->brokers
                    : env && *env               ? env
                                                : "localhost:9092";
    return strdup(b);
}

int kafka_rebalance_apply(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t *parts, char *errbuf, size_t errlen) {
    int assign = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;

    if (strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0)
        error = assign ? rd_kafka_incremental_assign(rk, parts)
                       : rd_kafka_incremental_unassign(rk, parts);
    else
        aerr = rd_kafka_assign(rk, assign ? parts : NULL);
    if (!error && !aerr) return 0;
    snprintf(errbuf, errlen, "%s", error ? rd_kafka_error_string(error) : rd_kafka_err2str(aerr));
    if (error) rd_kafka_error_destroy(error);
    return -1;
}

int kafka_wake_open(kafka_wake_t *w, uv_loop_t *loop, rd_kafka_queue_t *q, uv_poll_cb cb,
                    void *data, char *errbuf, size_t errlen) {
    /* The write end must not block: librdkafka writes from its threads. */
    if (pipe2(w->fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        w->fds[0] = w->fds[1] = -1;
        snprintf(errbuf, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    rd_kafka_queue_io_event_enable(q, w->fds[1], "1", 1);
    uv_poll_init(loop, &w->poll, w->fds[0]);
    w->poll.data = data;
    uv_poll_start(&w->poll, UV_READABLE, cb);
    return 0;
}

void kafka_wake_drain(kafka_wake_t *w) {
    char buf[256];
    while (read(w->fds[0], buf, sizeof(buf)) > 0) continue;
}

void kafka_wake_kick(kafka_wake_t *w) {
    if (write(w->fds[1], "1", 1) < 0) log_debug("kafka", "wake-up pipe is full");
}

void kafka_wake_close_fds(kafka_wake_t *w) {
    if (w->fds[0] >= 0) close(w->fds[0]);
    if (w->fds[1] >= 0) close(w->fds[1]);
    w->fds[0] = w->fds[1] = -1;
}
