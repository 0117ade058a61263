/* consumer.c - an endpoint's group consumer on the loop: open it, wake on
 * its queue's IO event, drain messages into the pipeline in bounded
 * batches, follow assignments, store done offsets, and close it in order. */
#include "consumer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Messages handled per wake-up before other loop work gets a turn. */
#define BATCH 1024
/* Messages in flight (handled, publishes unacknowledged) before the
 * endpoint stops taking more. */
#define MAX_INFLIGHT 10000

static void drain(endpoint_t *ep);

static void on_poll(uv_poll_t *w, int status, int events) {
    endpoint_t *ep = w->data;
    char buf[256];
    (void)status, (void)events;
    /* Empty the pipe first: an event that arrives while draining writes
     * again and wakes us again. */
    while (read(ep->fds[0], buf, sizeof(buf)) > 0) continue;
    drain(ep);
}

static void on_idle(uv_idle_t *w) { drain(w->data); }

static void drain(endpoint_t *ep) {
    int n = 0;
    while (!ep->stopped && ep->ninflight < MAX_INFLIGHT && n < BATCH) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(ep->rk, 0);
        if (!rkm) break;
        n++;
        if (rkm->err) {
            if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                log_warn("consumer", "[%s] %s", ep->conf->name, rd_kafka_message_errstr(rkm));
            rd_kafka_message_destroy(rkm);
            continue;
        }
        pipeline_handle(ep, rkm); /* rkm is the pipeline's now */
    }
    if (ep->dirty) consumer_store(ep);
    /* A full batch means more may be waiting, and the pipe will not tell
     * us again: keep going on the next loop iteration. */
    if (n == BATCH && !ep->stopped && ep->ninflight < MAX_INFLIGHT)
        uv_idle_start(&ep->idle, on_idle);
    else
        uv_idle_stop(&ep->idle);
}

void consumer_kick(endpoint_t *ep) {
    if (!ep->stopped && ep->ninflight == MAX_INFLIGHT / 2)
        uv_idle_start(&ep->idle, on_idle);
}

offsets_t *consumer_offsets(endpoint_t *ep, const char *topic, int32_t partition) {
    if (ep->last < ep->nparts) {
        offsets_t *o = ep->parts[ep->last];
        if (o->partition == partition && strcmp(o->topic, topic) == 0) return o;
    }
    for (int i = 0; i < ep->nparts; i++) {
        offsets_t *o = ep->parts[i];
        if (o->partition == partition && strcmp(o->topic, topic) == 0) {
            ep->last = i;
            return o;
        }
    }
    return NULL;
}

void consumer_store(endpoint_t *ep) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(ep->nparts);
    rd_kafka_resp_err_t err;

    ep->dirty = 0;
    for (int i = 0; i < ep->nparts; i++) {
        offsets_t *o = ep->parts[i];
        if (o->commit > o->stored)
            rd_kafka_topic_partition_list_add(l, o->topic, o->partition)->offset = o->commit;
    }
    if (l->cnt && (err = rd_kafka_offsets_store(ep->rk, l)) != 0)
        log_warn("consumer", "[%s] storing offsets: %s", ep->conf->name, rd_kafka_err2str(err));
    for (int i = 0; i < l->cnt; i++) {
        offsets_t *o = consumer_offsets(ep, l->elems[i].topic, l->elems[i].partition);
        if (l->elems[i].err == 0) o->stored = l->elems[i].offset;
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static void assign_parts(endpoint_t *ep, rd_kafka_topic_partition_list_t *parts) {
    if (ep->nparts + parts->cnt > ep->capparts) {
        ep->capparts = ep->nparts + parts->cnt;
        ep->parts = realloc(ep->parts, ep->capparts * sizeof(*ep->parts));
    }
    for (int i = 0; i < parts->cnt; i++)
        ep->parts[ep->nparts++] = offsets_new(parts->elems[i].topic, parts->elems[i].partition);
}

/* Before partitions go back to the group: wait (bounded) for the
 * publishes of messages already handled, store and commit what is done. */
static void revoke_parts(endpoint_t *ep, rd_kafka_topic_partition_list_t *parts) {
    rd_kafka_resp_err_t err;

    host_flush(ep->host, (int)ep->host->drain_timeout_ms);
    consumer_store(ep);
    err = rd_kafka_commit(ep->rk, NULL, 0);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        log_warn("consumer", "[%s] commit on revoke: %s", ep->conf->name, rd_kafka_err2str(err));
    for (int i = 0; i < parts->cnt; i++) {
        for (int j = 0; j < ep->nparts; j++) {
            offsets_t *o = ep->parts[j];
            if (o->partition != parts->elems[i].partition || strcmp(o->topic, parts->elems[i].topic))
                continue;
            o->revoked = 1;
            offsets_unref(o);
            ep->parts[j] = ep->parts[--ep->nparts];
            break;
        }
    }
    ep->last = 0;
}

static void describe(const rd_kafka_topic_partition_list_t *parts, char *buf, size_t len) {
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < parts->cnt && n < len; i++)
        n += snprintf(buf + n, len - n, "%s%s[%d]", i ? " " : "", parts->elems[i].topic,
                      (int)parts->elems[i].partition);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    endpoint_t *ep = opaque;
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    char list[1024];

    describe(parts, list, sizeof(list));
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        log_info("consumer", "[%s] assigned %s", ep->conf->name, parts->cnt ? list : "nothing");
        assign_parts(ep, parts);
        if (cooperative) rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
        else rd_kafka_assign(rk, parts);
    } else {
        log_info("consumer", "[%s] revoked %s", ep->conf->name, parts->cnt ? list : "nothing");
        revoke_parts(ep, parts);
        if (cooperative) rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
        else rd_kafka_assign(rk, NULL);
    }
}

static int set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errbuf,
               size_t errlen) {
    return rd_kafka_conf_set(conf, name, value, errbuf, errlen) == RD_KAFKA_CONF_OK ? 0 : -1;
}

endpoint_t *consumer_open(host_t *h, const endpoint_conf_t *conf, char *errbuf, size_t errlen) {
    endpoint_t *ep = calloc(1, sizeof(*ep));
    rd_kafka_topic_partition_list_t *topics = NULL;
    rd_kafka_conf_t *kconf;
    rd_kafka_resp_err_t err;
    char why[512];

    ep->host = h;
    ep->conf = conf;
    ep->fds[0] = ep->fds[1] = -1;
    kconf = host_kafka_conf(h, NULL, why, sizeof(why));
    if (!kconf) goto fail;
    /* At-least-once: librdkafka commits in the background, but only the
     * offsets this endpoint stored, and it stores only done prefixes.
     * A one-second interval bounds what a crash replays. */
    if (set(kconf, "group.id", conf->group, why, sizeof(why)) ||
        set(kconf, "enable.auto.offset.store", "false", why, sizeof(why)) ||
        set(kconf, "auto.commit.interval.ms", "1000", why, sizeof(why)))
        goto fail;
    for (int i = 0; i < conf->config.n; i++)
        if (set(kconf, conf->config.items[i].key, conf->config.items[i].value, why, sizeof(why)))
            goto fail;
    rd_kafka_conf_set_rebalance_cb(kconf, rebalance_cb);
    rd_kafka_conf_set_opaque(kconf, ep);
    ep->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kconf, why, sizeof(why));
    if (!ep->rk) goto fail;
    kconf = NULL; /* now owned by rk */
    rd_kafka_set_log_queue(ep->rk, NULL);
    rd_kafka_poll_set_consumer(ep->rk);
    ep->queue = rd_kafka_queue_get_consumer(ep->rk);

    if (pipe2(ep->fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(why, sizeof(why), "pipe: %s", strerror(errno));
        goto fail;
    }
    rd_kafka_queue_io_event_enable(ep->queue, ep->fds[1], "1", 1);
    uv_poll_init(h->loop, &ep->poll, ep->fds[0]);
    uv_idle_init(h->loop, &ep->idle);
    ep->poll.data = ep->idle.data = ep;
    uv_poll_start(&ep->poll, UV_READABLE, on_poll);

    topics = rd_kafka_topic_partition_list_new(conf->ntopics);
    for (int i = 0; i < conf->ntopics; i++)
        rd_kafka_topic_partition_list_add(topics, conf->topics[i], RD_KAFKA_PARTITION_UA);
    err = rd_kafka_subscribe(ep->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        snprintf(why, sizeof(why), "subscribe: %s", rd_kafka_err2str(err));
        goto fail;
    }
    log_info("consumer", "[%s] subscribed to %d topic(s) as group %s", conf->name, conf->ntopics,
             conf->group);
    /* Anything queued before the IO event was enabled would not wake us. */
    uv_idle_start(&ep->idle, on_idle);
    return ep;
fail:
    snprintf(errbuf, errlen, "endpoint '%s' (%s): %s", conf->name, conf->where, why);
    if (kconf) rd_kafka_conf_destroy(kconf);
    consumer_close(ep);
    return NULL;
}

void consumer_stop(endpoint_t *ep) {
    if (ep->stopped) return;
    ep->stopped = 1;
    if (ep->poll.data) {
        uv_poll_stop(&ep->poll);
        uv_idle_stop(&ep->idle);
    }
}

static void free_ep(uv_handle_t *handle) {
    endpoint_t *ep = handle->data;
    /* The pipe may be closed only now that nothing polls it. */
    close(ep->fds[0]);
    close(ep->fds[1]);
    free(ep);
}

void consumer_close(endpoint_t *ep) {
    rd_kafka_resp_err_t err;
    int dropped;

    consumer_stop(ep);
    if (ep->rk) {
        consumer_store(ep);
        dropped = pipeline_abandon(ep);
        if (dropped)
            log_warn("consumer", "[%s] %d message(s) left uncommitted; they will be delivered again",
                     ep->conf->name, dropped);
        if (ep->queue) {
            rd_kafka_queue_io_event_enable(ep->queue, -1, NULL, 0);
            rd_kafka_queue_destroy(ep->queue);
        }
        /* Commits the stored offsets and leaves the group; the revoke it
         * triggers runs rebalance_cb on this thread. */
        if ((err = rd_kafka_consumer_close(ep->rk)) != 0)
            log_warn("consumer", "[%s] close: %s", ep->conf->name, rd_kafka_err2str(err));
        rd_kafka_destroy(ep->rk);
        ep->rk = NULL;
        log_info("consumer", "[%s] closed", ep->conf->name);
    }
    for (int i = 0; i < ep->nparts; i++) offsets_unref(ep->parts[i]);
    free(ep->parts);
    ep->parts = NULL;
    ep->nparts = 0;
    if (ep->poll.data) {
        uv_close((uv_handle_t *)&ep->poll, NULL);
        uv_close((uv_handle_t *)&ep->idle, free_ep);
    } else {
        if (ep->fds[0] >= 0) close(ep->fds[0]);
        if (ep->fds[1] >= 0) close(ep->fds[1]);
        free(ep);
    }
}
