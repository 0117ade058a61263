/* producer.c - a publisher's librdkafka producer on the loop: opened with
 * luka's delivery settings, sent to as a sink (each message carrying the
 * tag of the message in flight that published it), flushed and closed in
 * order.  Its reports are delivery.c's. */
#include "kafka/producer.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

/* How long a full producer queue may hold up a publish before it fails. */
#define QUEUE_FULL_WAIT_MS 30000

/* Delivery latency: from a millisecond (acks=all on a local cluster) to
 * message.timeout.ms (5 minutes by default), when a report must come. */
static const double latency_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                        0.5,   1,      2.5,   5,    10,    30,   60,  300};
#define NLATENCY ((int)(sizeof(latency_bounds) / sizeof(latency_bounds[0])))

static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
    publisher_t *p = opaque;
    (void)rk, (void)len;
    free(p->kafka_stats);
    p->kafka_stats = json;
    return 1; /* we keep json */
}

static int sink_send(sink_t *s, const char *topic, int32_t partition, const char *key, size_t keylen,
                char *value, size_t len, rd_kafka_headers_t *headers, publish_tag_t *tag,
                char *errbuf, size_t errlen) {
    publisher_t *p = (publisher_t *)((char *)s - offsetof(publisher_t, sink));
    rd_kafka_resp_err_t err;
    int waited = 0;

    if (!topic) topic = s->conf->topic;
    for (;;) {
        err = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic),
                                RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_KEY(key, keylen),
                                RD_KAFKA_V_VALUE(value, len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                                RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(tag),
                                RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || waited >= QUEUE_FULL_WAIT_MS) break;
        /* Never drop: serve delivery reports to make room, then retry.
         * The reports themselves wait for the loop (see delivery.c). */
        p->sending = 1;
        rd_kafka_poll(p->rk, 100);
        p->sending = 0;
        waited += 100;
    }
    if (err) {
        free(value);
        snprintf(errbuf, errlen, "publisher '%s': cannot queue a message for topic %s: %s",
                 s->conf->name, topic, rd_kafka_err2str(err));
        return -1;
    }
    p->published++;
    return 0;
}

static const sink_ops_t producer_sink = {sink_send};

publisher_t *producer_open(const kafka_env_t *env, const publisher_conf_t *conf, char *errbuf,
                           size_t errlen) {
    publisher_t *p = calloc(1, sizeof(*p));
    rd_kafka_conf_t *kconf = NULL;
    rd_kafka_queue_t *q;
    char why[512];

    p->client.env = env;
    p->sink.ops = &producer_sink;
    p->sink.conf = conf;
    p->wake.fds[0] = p->wake.fds[1] = -1;
    hist_init(&p->latency, latency_bounds, NLATENCY);
    kconf = kafka_conf(env, NULL, why, sizeof(why));
    if (!kconf) goto fail;
    /* Not the idempotent producer: in the chaos spec (Produce requests
     * failing with NOT_LEADER_FOR_PARTITION) librdkafka 2.0.2's idempotent
     * producer acknowledged messages the broker never stored, and a
     * duplicate is better than a loss.  One request in flight per broker
     * keeps retries from reordering a key's messages.  murmur2 places keys
     * on the partitions Java and KafkaJS clients choose for them.  A
     * publisher's config can change all three. */
    if (rd_kafka_conf_set(kconf, "acks", "all", why, sizeof(why)) ||
        rd_kafka_conf_set(kconf, "max.in.flight.requests.per.connection", "1", why, sizeof(why)) ||
        rd_kafka_conf_set(kconf, "partitioner", "murmur2_random", why, sizeof(why)))
        goto fail;
    /* The internal producer sends on messages a broker already took (dead
     * letters, resends), with headers added: librdkafka's own 1 MB cap
     * must not be what refuses them; the broker's limit still applies. */
    if (conf->internal &&
        rd_kafka_conf_set(kconf, "message.max.bytes", "67108864", why, sizeof(why)))
        goto fail;
    for (int i = 0; i < conf->config.n; i++)
        if (rd_kafka_conf_set(kconf, conf->config.items[i].key, conf->config.items[i].value, why,
                              sizeof(why)) != RD_KAFKA_CONF_OK)
            goto fail;
    rd_kafka_conf_set_dr_msg_cb(kconf, delivery_report_cb);
    rd_kafka_conf_set_stats_cb(kconf, stats_cb);
    rd_kafka_conf_set_opaque(kconf, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kconf, why, sizeof(why));
    if (!p->rk) goto fail;
    kconf = NULL; /* now owned by rk */
    rd_kafka_set_log_queue(p->rk, NULL);
    q = rd_kafka_queue_get_main(p->rk);
    if (kafka_wake_open(&p->wake, env->loop, q, delivery_on_wake, p, why, sizeof(why))) {
        rd_kafka_queue_destroy(q);
        goto fail;
    }
    rd_kafka_queue_destroy(q);
    /* Anything queued before the event was enabled (a log line about a
     * refused connection, say) would never wake us: look once now. */
    kafka_wake_kick(&p->wake);
    return p;
fail:
    snprintf(errbuf, errlen, "publisher '%s' (%s): %s", conf->name, conf->where, why);
    if (kconf) rd_kafka_conf_destroy(kconf);
    producer_close(p);
    return NULL;
}

int producer_flush(publisher_t *p, int timeout_ms) {
    if (!p->rk) return 0;
    delivery_run_deferred(p);
    rd_kafka_flush(p->rk, timeout_ms);
    return rd_kafka_outq_len(p->rk);
}

static void free_pub(uv_handle_t *handle) {
    publisher_t *p = handle->data;
    kafka_wake_close_fds(&p->wake);
    free(p->kafka_stats);
    for (int i = 0; i < p->ndeferred; i++) message_release(&p->deferred[i].m);
    free(p->deferred);
    free(p);
}

void producer_close(publisher_t *p) {
    if (p->rk) {
        /* Whatever is still queued now will not be delivered: purge it so
         * that its delivery reports fail the messages that published it
         * (at shutdown they stay uncommitted; in a reload they go to their
         * policies), then let go of the producer. */
        rd_kafka_queue_t *q = rd_kafka_queue_get_main(p->rk);
        delivery_run_deferred(p);
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(p->rk, 1000);
        rd_kafka_queue_io_event_enable(q, -1, NULL, 0);
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy(p->rk);
        p->rk = NULL;
    }
    if (p->wake.poll.data) {
        uv_close((uv_handle_t *)&p->wake.poll, free_pub);
    } else {
        p->wake.poll.data = p;
        free_pub((uv_handle_t *)&p->wake.poll);
    }
}
