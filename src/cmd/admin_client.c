/* admin_client.c - the librdkafka handle behind `luka topics` and `luka
 * lag`: configured like luka run's clients, its logs kept for --log-level
 * debug, and the waiting and wording every admin request shares. */
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

rd_kafka_t *admin_handle(admin_client_t *a, char *errbuf, size_t errlen) {
    rd_kafka_conf_t *conf = kafka_conf(&a->env, NULL, errbuf, errlen);
    rd_kafka_t *rk;
    if (!conf) return NULL;
    rd_kafka_conf_set_error_cb(conf, error_cb);
    if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errbuf, errlen))) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    /* conf is now owned by rk; its log lines wait on the main queue. */
    rd_kafka_set_log_queue(rk, NULL);
    return rk;
}

int admin_load(admin_client_t *a, const char *app_path, const char *brokers, int timeout_ms) {
    char err[2048];

    memset(a, 0, sizeof(*a));
    a->timeout_ms = timeout_ms;
    if (app_path && !(a->app = app_load(app_path, NULL, lapi_open, err, sizeof(err)))) {
        fprintf(stderr, "luka: %s\n", err);
        return -1;
    }
    a->brokers = kafka_brokers(brokers, a->app);
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
