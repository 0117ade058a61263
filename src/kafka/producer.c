/* producer.c - a publisher's librdkafka producer on the loop.  Messages are
 * queued with the handling message as their opaque; each delivery report
 * completes (or fails) that message in the pipeline. */
#include "kafka/producer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "cmd/testkit.h"

/* How long a full producer queue may hold up a publish before it fails. */
#define QUEUE_FULL_WAIT_MS 30000

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque) {
    publisher_t *p = opaque;
    (void)rk;
    if (rkm->err) {
        p->failed++;
        log_error("producer", "[%s] delivery to %s failed: %s", p->conf->name,
                  rd_kafka_topic_name(rkm->rkt), rd_kafka_err2str(rkm->err));
    } else {
        p->acked++;
    }
    if (!rkm->_private) return;
    if (p->sending) {
        /* Served by producer_send's wait for room, inside a handler or a
         * policy: the report is handled from the loop, never re-entrantly
         * (its failure may call an error channel function). */
        if (p->ndeferred == p->capdeferred) {
            p->capdeferred = p->capdeferred ? p->capdeferred * 2 : 16;
            p->deferred = realloc(p->deferred, p->capdeferred * sizeof(*p->deferred));
        }
        p->deferred[p->ndeferred].tag = rkm->_private;
        p->deferred[p->ndeferred++].err = rkm->err;
        if (write(p->fds[1], "1", 1) < 0) log_debug("producer", "wake-up pipe is full");
        return;
    }
    pipeline_publish_done(rkm->_private, rkm->err);
}

/* Hand the reports deferred by dr_cb to the pipeline, oldest first.  Those
 * deferred meanwhile (a policy publishing into a full queue) wait for the
 * next round. */
static void run_deferred(publisher_t *p) {
    while (p->ndeferred) {
        deferred_report_t *list = p->deferred;
        int n = p->ndeferred;
        p->deferred = NULL;
        p->ndeferred = p->capdeferred = 0;
        for (int i = 0; i < n; i++) pipeline_publish_done(list[i].tag, list[i].err);
        free(list);
    }
}

static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
    publisher_t *p = opaque;
    (void)rk, (void)len;
    free(p->kafka_stats);
    p->kafka_stats = json;
    return 1; /* we keep json */
}

static void serve(publisher_t *p) {
    run_deferred(p);
    while (rd_kafka_poll(p->rk, 0) > 0) continue;
    host_store_offsets(p->host);
}

static void on_poll(uv_poll_t *w, int status, int events) {
    publisher_t *p = w->data;
    char buf[256];
    (void)status, (void)events;
    while (read(p->fds[0], buf, sizeof(buf)) > 0) continue;
    serve(p);
}

publisher_t *producer_open(host_t *h, const publisher_conf_t *conf, char *errbuf, size_t errlen) {
    publisher_t *p = calloc(1, sizeof(*p));
    rd_kafka_conf_t *kconf = NULL;
    rd_kafka_queue_t *q;
    char why[512];

    p->host = h;
    p->conf = conf;
    p->fds[0] = p->fds[1] = -1;
    if (h->test) return p; /* no Kafka: producer_send hands messages to the test kit */
    kconf = host_kafka_conf(h, NULL, why, sizeof(why));
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
    rd_kafka_conf_set_dr_msg_cb(kconf, dr_cb);
    rd_kafka_conf_set_stats_cb(kconf, stats_cb);
    rd_kafka_conf_set_opaque(kconf, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kconf, why, sizeof(why));
    if (!p->rk) goto fail;
    kconf = NULL; /* now owned by rk */
    rd_kafka_set_log_queue(p->rk, NULL);
    if (pipe2(p->fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(why, sizeof(why), "pipe: %s", strerror(errno));
        goto fail;
    }
    q = rd_kafka_queue_get_main(p->rk);
    rd_kafka_queue_io_event_enable(q, p->fds[1], "1", 1);
    /* Anything queued before the event was enabled (a log line about a
     * refused connection, say) would never wake us: look once now. */
    if (write(p->fds[1], "1", 1) < 0) log_debug("producer", "wake-up pipe is full");
    rd_kafka_queue_destroy(q);
    uv_poll_init(h->loop, &p->poll, p->fds[0]);
    p->poll.data = p;
    uv_poll_start(&p->poll, UV_READABLE, on_poll);
    return p;
fail:
    snprintf(errbuf, errlen, "publisher '%s' (%s): %s", conf->name, conf->where, why);
    if (kconf) rd_kafka_conf_destroy(kconf);
    producer_close(p);
    return NULL;
}

int producer_send(publisher_t *p, const char *topic, int32_t partition, const char *key,
                  size_t keylen, char *value, size_t len, rd_kafka_headers_t *headers,
                  inflight_t *inf, char *errbuf, size_t errlen) {
    publish_tag_t *tag = inf ? pipeline_publish_tag(inf) : NULL;
    rd_kafka_resp_err_t err;
    int waited = 0;

    if (!topic) topic = p->conf->topic;
    if (p->host->test)
        return testkit_publish(p->host->test, p, topic, partition, key, keylen, value, len, headers,
                               inf, errbuf, errlen);
    for (;;) {
        err = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic),
                                RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_KEY(key, keylen),
                                RD_KAFKA_V_VALUE(value, len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                                RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(tag),
                                RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || waited >= QUEUE_FULL_WAIT_MS) break;
        /* Never drop: serve delivery reports to make room, then retry.
         * The reports themselves wait for the loop (see dr_cb). */
        p->sending = 1;
        rd_kafka_poll(p->rk, 100);
        p->sending = 0;
        waited += 100;
    }
    if (err) {
        free(value);
        snprintf(errbuf, errlen, "publisher '%s': cannot queue a message for topic %s: %s",
                 p->conf->name, topic, rd_kafka_err2str(err));
        return -1;
    }
    p->published++;
    if (tag) pipeline_publish_added(tag);
    return 0;
}

int producer_flush(publisher_t *p, int timeout_ms) {
    if (!p->rk) return 0;
    run_deferred(p);
    rd_kafka_flush(p->rk, timeout_ms);
    return rd_kafka_outq_len(p->rk);
}

static void free_pub(uv_handle_t *handle) {
    publisher_t *p = handle->data;
    free(p->kafka_stats);
    free(p->deferred);
    close(p->fds[0]);
    close(p->fds[1]);
    free(p);
}

void producer_close(publisher_t *p) {
    if (p->rk) {
        /* Whatever is still queued now will not be delivered: purge it so
         * that its delivery reports fail the messages that published it
         * (at shutdown they stay uncommitted; in a reload they go to their
         * policies), then let go of the producer. */
        rd_kafka_queue_t *q = rd_kafka_queue_get_main(p->rk);
        run_deferred(p);
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(p->rk, 1000);
        rd_kafka_queue_io_event_enable(q, -1, NULL, 0);
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy(p->rk);
        p->rk = NULL;
    }
    if (p->poll.data) {
        uv_close((uv_handle_t *)&p->poll, free_pub);
    } else {
        if (p->fds[0] >= 0) close(p->fds[0]);
        if (p->fds[1] >= 0) close(p->fds[1]);
        free(p->kafka_stats);
        free(p->deferred);
        free(p);
    }
}
