/* admin_client.c - what the commands that talk to the cluster (topics,
 * lag, offsets, replay) share: their APP, --brokers and --timeout
 * arguments, the librdkafka handles configured like luka run's clients,
 * their logs kept for --log-level debug, and the waiting and wording every
 * request shares. */
#include "cmd/admin_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/lapi.h"
#include "base/log.h"

/* librdkafka's connection errors say less than the failed call will: keep
 * them for --log-level debug. */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk, (void)opaque;
    log_debug("admin", "%s: %s", rd_kafka_err2name(err), reason);
}

admin_args_t admin_args(const char *cmd) {
    return (admin_args_t){.cmd = cmd, .timeout_ms = ADMIN_TIMEOUT_MS};
}

int admin_arg_app(admin_args_t *a, const char *v) {
    if (a->app_path)
        return cliopt_bad_usage(a->cmd, "one app at a time: got '%s' and '%s'", a->app_path, v);
    a->app_path = v;
    return 0;
}

int admin_arg_brokers(admin_args_t *a, const char *v) {
    if (!*v) return cliopt_bad_usage(a->cmd, "--brokers needs host:port[,...], got ''");
    a->brokers = v;
    return 0;
}

int admin_arg_timeout(admin_args_t *a, const char *v) {
    int64_t ms;
    if (cliopt_duration(v, ADMIN_MAX_TIMEOUT_MS, &ms) || ms == 0)
        return cliopt_bad_usage(a->cmd, "--timeout takes %s, got '%s'", CLIOPT_DURATION_HINT, v);
    a->timeout_ms = (int)ms;
    return 0;
}

rd_kafka_t *admin_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errbuf, size_t errlen) {
    rd_kafka_t *rk = rd_kafka_new(type, conf, errbuf, errlen);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    /* conf is now owned by rk; its log lines wait on the main queue. */
    rd_kafka_set_log_queue(rk, NULL);
    if (type == RD_KAFKA_CONSUMER) rd_kafka_poll_set_consumer(rk);
    return rk;
}

rd_kafka_t *admin_handle(admin_client_t *a, char *errbuf, size_t errlen) {
    rd_kafka_conf_t *conf = kafka_conf(&a->env, NULL, errbuf, errlen);
    if (!conf) return NULL;
    rd_kafka_conf_set_error_cb(conf, error_cb);
    return admin_new(RD_KAFKA_PRODUCER, conf, errbuf, errlen);
}

rd_kafka_conf_t *admin_consumer_conf(admin_client_t *a, const char *group, char *errbuf,
                                     size_t errlen) {
    rd_kafka_conf_t *conf = kafka_conf(&a->env, NULL, errbuf, errlen);
    if (!conf) return NULL;
    if (rd_kafka_conf_set(conf, "group.id", group, errbuf, errlen) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errbuf, errlen) ||
        rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", errbuf, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

int admin_committed(admin_client_t *a, rd_kafka_t *rk, const char *group,
                    rd_kafka_topic_partition_list_t *parts) {
    rd_kafka_resp_err_t err = rd_kafka_committed(rk, parts, a->timeout_ms);
    if (!err) return 0;
    fprintf(stderr, "luka %s: cannot read group %s's committed offsets: %s\n", a->cmd, group,
            rd_kafka_err2str(err));
    return -1;
}

int admin_watermarks(admin_client_t *a, rd_kafka_t *rk, const char *topic, int32_t partition,
                     int64_t *low, int64_t *high) {
    rd_kafka_resp_err_t err =
        rd_kafka_query_watermark_offsets(rk, topic, partition, low, high, a->timeout_ms);
    if (!err) return 0;
    fprintf(stderr, "luka %s: cannot read the offsets of %s[%d]: %s\n", a->cmd, topic,
            (int)partition, rd_kafka_err2str(err));
    return -1;
}

int admin_load(admin_client_t *a, const admin_args_t *args) {
    char err[2048];

    memset(a, 0, sizeof(*a));
    a->cmd = args->cmd;
    a->timeout_ms = args->timeout_ms;
    if (args->app_path &&
        !(a->app = app_load(args->app_path, NULL, lapi_open, err, sizeof(err)))) {
        fprintf(stderr, "luka: %s\n", err);
        return -1;
    }
    a->brokers = kafka_brokers(args->brokers, a->app);
    a->env.app = a->app ? a->app : &a->none;
    a->env.brokers = a->brokers;
    return 0;
}

int admin_plaintext(admin_client_t *a) {
    char err[512], value[64] = "";
    size_t size = sizeof(value);
    rd_kafka_conf_t *conf = kafka_conf(&a->env, NULL, err, sizeof(err));
    if (!conf) return 0;
    if (rd_kafka_conf_get(conf, "security.protocol", value, &size) != RD_KAFKA_CONF_OK) value[0] = 0;
    rd_kafka_conf_destroy(conf);
    return strcasecmp(value, "plaintext") == 0;
}

int admin_connect(admin_client_t *a) {
    char err[2048];
    if (!(a->rk = admin_handle(a, err, sizeof(err)))) {
        fprintf(stderr, "luka: %s\n", err);
        return -1;
    }
    return 0;
}

void admin_serve_logs(rd_kafka_t *rk) {
    while (rd_kafka_poll(rk, 0) > 0) continue;
}

void admin_close(admin_client_t *a) {
    if (a->rk) {
        admin_serve_logs(a->rk);
        rd_kafka_destroy(a->rk);
    }
    free(a->brokers);
    if (a->app) app_free(a->app);
    memset(a, 0, sizeof(*a));
}

const rd_kafka_metadata_topic_t *admin_find_topic(const rd_kafka_metadata_t *md,
                                                  const char *name) {
    for (int i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, name) == 0 && !md->topics[i].err) return &md->topics[i];
    return NULL;
}

const rd_kafka_metadata_t *admin_metadata(admin_client_t *a) {
    const rd_kafka_metadata_t *md;
    rd_kafka_resp_err_t err = rd_kafka_metadata(a->rk, 1, NULL, &md, a->timeout_ms);
    if (err) {
        fprintf(stderr, "luka: cannot read the cluster's metadata from %s: %s\n", a->brokers,
                rd_kafka_err2str(err));
        return NULL;
    }
    return md;
}

rd_kafka_event_t *admin_wait(admin_client_t *a, rd_kafka_queue_t *q, rd_kafka_event_type_t type) {
    rd_kafka_event_t *ev;
    /* librdkafka answers by the request timeout; the margin covers it. */
    while ((ev = rd_kafka_queue_poll(q, a->timeout_ms + 5000))) {
        if (rd_kafka_event_type(ev) == type) return ev;
        rd_kafka_event_destroy(ev);
    }
    return NULL;
}

rd_kafka_AdminOptions_t *admin_options(admin_client_t *a, rd_kafka_t *rk) {
    char why[256];
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_ANY);
    rd_kafka_AdminOptions_set_request_timeout(o, a->timeout_ms, why, sizeof(why));
    rd_kafka_AdminOptions_set_operation_timeout(o, a->timeout_ms, why, sizeof(why));
    return o;
}

const char *admin_request_error(admin_client_t *a, rd_kafka_event_t *ev, char *buf, size_t len) {
    if (ev)
        snprintf(buf, len, "%s (%s)", rd_kafka_event_error_string(ev),
                 rd_kafka_err2name(rd_kafka_event_error(ev)));
    else
        snprintf(buf, len, "no answer from %s within %d ms", a->brokers, a->timeout_ms + 5000);
    return buf;
}
