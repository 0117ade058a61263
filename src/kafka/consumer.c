/* consumer.c - an endpoint's group consumer on the loop: open it, wake on
 * its queue's IO event, drain messages into the pipeline in bounded
 * batches (pausing when too many wait to start), be the flow's source,
 * and close it in order.  Its partitions are partition.c's. */
#include "kafka/consumer.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "flow/pipeline.h"
#include "kafka/partition.h"
#include "kafka/txn.h"

/* Messages handled per wake-up, and the time they may take, before other
 * loop work (signals, timers, health) gets a turn. */
#define BATCH 1024
#define BATCH_NS 10000000
/* Messages in flight (handled, publishes unacknowledged) before the
 * endpoint stops taking more. */
#define MAX_INFLIGHT 10000
/* Done offsets are handed to librdkafka at most this often (it commits
 * them every auto.commit.interval.ms, a second): each hand-over walks every
 * partition, which cost a few percent of a raw handler's time when done
 * after every loop turn. */
#define STORE_MS 100

/* Log lines carry the endpoint as a field (text logs show it as [name]). */
#define EP_CTX(c) LOG_ENDPOINT((c)->name)

#define EP(f) ((endpoint_t *)((char *)(f) - offsetof(endpoint_t, flow)))

static void drain(endpoint_t *ep);

static void on_poll(uv_poll_t *w, int status, int events) {
    endpoint_t *ep = w->data;
    (void)status, (void)events;
    kafka_wake_drain(&ep->wake);
    drain(ep);
}

static void on_idle(uv_idle_t *w) { drain(w->data); }

/* librdkafka leaves the group when the consumer is not polled for
 * max.poll.interval.ms.  With every partition paused for a long backoff no
 * message wakes us, so poll once a second regardless. */
static void on_tick(uv_timer_t *t) {
    endpoint_t *ep = t->data;
    partitions_held_long(ep);
    /* Only when nothing else polled meanwhile: with slow handlers the
     * timer is always due, and a drain here besides the idle's would run
     * two calls per loop turn, delaying a signal by one more. */
    if (uv_hrtime() - ep->drained_at < 1000000000ull && !ep->held) return;
    ep->ticked = 1;
    drain(ep);
}

/* Runs after each loop turn while offsets wait; the one-second tick
 * makes sure another turn comes. */
static void on_store(uv_check_t *c) {
    endpoint_t *ep = c->data;
    if (uv_now(ep->client.env->loop) - ep->stored_at >= STORE_MS) partitions_store(ep);
}

/* One message from librdkafka into the flow, unless it was fetched before
 * a revoke, a pause or a seek: then it comes again, to whoever owns its
 * partition then. */
static void handle(endpoint_t *ep, rd_kafka_message_t *rkm) {
    partition_t *pt = partition_find(ep, rd_kafka_topic_name(rkm->rkt), rkm->partition);
    redelivery_t again, *a = NULL;
    message_t m;

    if (!pt || !partition_accept(pt, rkm->offset)) {
        rd_kafka_message_destroy(rkm);
        return;
    }
    if (pt->retry_offset == rkm->offset) {
        again.attempts = pt->retry_attempts;
        again.rounds = pt->retry_rounds;
        pt->retry_offset = -1;
        a = &again;
    }
    /* Where a replay after an abort starts, when no commit said it yet. */
    if (ep->txn && pt->txn_base < 0) pt->txn_base = rkm->offset;
    message_from_kafka(&m, rkm);
    pipeline_handle(&ep->flow, &m, pt->offsets, a); /* rkm is the pipeline's now */
}

static void drain(endpoint_t *ep) {
    uint64_t deadline = uv_hrtime() + BATCH_NS;
    int n = 0, more = 0;
    while (!ep->flow.stopped && ep->flow.ninflight < MAX_INFLIGHT) {
        /* Transactional: none while a transaction commits or aborts. */
        if (ep->txn && !txn_may_take(ep->txn)) break;
        if (pipeline_waiting(&ep->flow) >= ep->flow.conf->buffer) {
            if (!ep->held) partitions_hold(ep);
            /* Held: one poll a second still, for the group's sake. */
            if (!ep->ticked || n > 0) break;
        }
        rd_kafka_message_t *rkm;
        /* One handler call may take seconds, so the clock is read after
         * every message (uv_hrtime costs nanoseconds): signals, timers and
         * the health heartbeat then wait for one call at most, not for a
         * run of them. */
        if (n == BATCH || (n > 0 && uv_hrtime() > deadline)) {
            more = 1;
            break;
        }
        if (!(rkm = rd_kafka_consumer_poll(ep->rk, 0))) break;
        n++;
        if (rkm->err) {
            if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                log_at(LOG_WARN, "consumer", EP_CTX(ep->flow.conf), "%s",
                       rd_kafka_message_errstr(rkm));
            rd_kafka_message_destroy(rkm);
            continue;
        }
        handle(ep, rkm);
        if (ep->txn) txn_taken(ep->txn);
    }
    ep->ticked = 0;
    ep->drained_at = uv_hrtime();
    /* A batch cut short means more may be waiting, and the pipe will not
     * tell us again: keep going on the next loop iteration. */
    if (more && !ep->flow.stopped)
        uv_idle_start(&ep->idle, on_idle);
    else
        uv_idle_stop(&ep->idle);
}

/* Served on the loop thread, like every callback of this consumer. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
    endpoint_t *ep = opaque;
    (void)rk, (void)len;
    free(ep->kafka_stats);
    ep->kafka_stats = json;
    return 1; /* we keep json */
}

/* The flow's source: what it asks of its consumer. */

static void source_redeliver(flow_t *f, const message_t *m, int attempts, int rounds,
                             int64_t delay_ms) {
    endpoint_t *ep = EP(f);
    partition_t *pt = partition_find(ep, m->topic, m->partition);
    /* A partition revoked meanwhile: its next owner gets the message. */
    if (!pt) return;
    partition_redeliver(pt, m->offset, attempts, rounds, delay_ms);
    /* What waited behind it comes again after the seek back. */
    pipeline_drop(f, pt->offsets, 0);
}

static void source_stop(flow_t *f) {
    endpoint_t *ep = EP(f);
    const kafka_env_t *env = ep->client.env;
    consumer_stop(ep);
    ep->halted = 1;
    if (env->stopped) env->stopped(env->ctx, ep);
}

static void source_progress(flow_t *f) {
    endpoint_t *ep = EP(f);
    if (ep->store.data && !ep->txn) uv_check_start(&ep->store, on_store);
}

static void source_finished(flow_t *f, const struct inflight *inf, int done) {
    endpoint_t *ep = EP(f);
    (void)inf, (void)done;
    /* Back-pressure eased: drain again. */
    if (ep->idle.data && !f->stopped && f->ninflight == MAX_INFLIGHT / 2)
        uv_idle_start(&ep->idle, on_idle);
}

static int source_seek(flow_t *f, const char *topic, int32_t partition, int64_t offset,
                       char *errbuf, size_t errlen) {
    endpoint_t *ep = EP(f);
    partition_t *pt = partition_find(ep, topic, partition);
    if (!pt || pt->revoking) {
        snprintf(errbuf, errlen, "%s[%d] is not assigned to endpoint '%s' in this process",
                 topic, (int)partition, f->conf->name);
        return -1;
    }
    log_at(LOG_INFO, "consumer", EP_CTX(f->conf), "luka.seek: %s[%d] goes on from offset %lld",
           topic, (int)partition, (long long)offset);
    partition_seek(pt, offset);
    /* What waited in the partition comes again after the seek. */
    pipeline_drop(f, pt->offsets, 0);
    return 0;
}

static void txn_stop(endpoint_t *ep) { source_stop(&ep->flow); }

static const txn_ops_t consumer_txn = {partitions_assign, txn_stop};

static const source_ops_t consumer_source = {source_redeliver, source_stop, source_progress,
                                             source_finished, source_seek};

static int set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errbuf,
               size_t errlen) {
    return rd_kafka_conf_set(conf, name, value, errbuf, errlen) == RD_KAFKA_CONF_OK ? 0 : -1;
}

endpoint_t *consumer_open(const kafka_env_t *env, const endpoint_conf_t *conf, lua_State *L,
                          const sinks_t *sinks, char *errbuf, size_t errlen) {
    endpoint_t *ep = calloc(1, sizeof(*ep));
    rd_kafka_topic_partition_list_t *topics = NULL;
    rd_kafka_conf_t *kconf = NULL;
    rd_kafka_resp_err_t err;
    char why[512];

    ep->client.env = env;
    ep->wake.fds[0] = ep->wake.fds[1] = -1;
    if (pipeline_open(&ep->flow, conf, L, env->loop, env->app->dir, NULL, &consumer_source, sinks,
                      errbuf, errlen)) {
        free(ep);
        return NULL;
    }
    /* Under concurrency a delayed retry waits in memory, holding back its
     * key alone; one at a time, the partition pauses and seeks back. */
    ep->flow.retry_in_memory = conf->concurrency > 1;
    kconf = kafka_conf(env, NULL, why, sizeof(why));
    if (!kconf) goto fail;
    /* At-least-once: librdkafka commits in the background, but only the
     * offsets this endpoint stored, and it stores only done prefixes.
     * A one-second interval bounds what a crash replays. */
    if (set(kconf, "group.id", conf->group, why, sizeof(why)) ||
        set(kconf, "enable.auto.offset.store", "false", why, sizeof(why)) ||
        set(kconf, "auto.commit.interval.ms", "1000", why, sizeof(why)))
        goto fail;
    /* Exactly-once: offsets are committed in the transactions (txn.c),
     * and what aborted transactions wrote is never read. */
    if (conf->transactional &&
        (set(kconf, "isolation.level", "read_committed", why, sizeof(why)) ||
         set(kconf, "enable.auto.commit", "false", why, sizeof(why))))
        goto fail;
    ep->commit_first = !kvlist_get(&conf->config, "auto.commit.interval.ms") &&
                       !kvlist_get(&env->app->broker_config, "auto.commit.interval.ms") &&
                       !getenv("LUKA_KAFKA_AUTO_COMMIT_INTERVAL_MS");
    /* librdkafka 2.0 stops fetching for up to a second once its queue
     * holds queued.min.messages (100,000 by default, counted over all
     * partitions of the consumer queue): its broker thread sleeps until
     * something else wakes it.  The queue must hold about a second of
     * handler work or handlers wait; each queued message costs about
     * 460 bytes of RSS, and a fetch response is held until its last
     * message goes, so fetches are kept to 1 MiB.  The figures behind
     * these two numbers, and how to trade memory for speed, are in
     * README.md, "Performance"; an app's config overrides both. */
    if (set(kconf, "queued.min.messages", "190000", why, sizeof(why)) ||
        set(kconf, "fetch.max.bytes", "1048576", why, sizeof(why)))
        goto fail;
    for (int i = 0; i < conf->config.n; i++)
        if (set(kconf, conf->config.items[i].key, conf->config.items[i].value, why, sizeof(why)))
            goto fail;
    rd_kafka_conf_set_rebalance_cb(kconf, partitions_rebalance_cb);
    rd_kafka_conf_set_stats_cb(kconf, stats_cb);
    rd_kafka_conf_set_opaque(kconf, ep);
    ep->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kconf, why, sizeof(why));
    if (!ep->rk) goto fail;
    kconf = NULL; /* now owned by rk */
    rd_kafka_set_log_queue(ep->rk, NULL);
    rd_kafka_poll_set_consumer(ep->rk);
    ep->queue = rd_kafka_queue_get_consumer(ep->rk);
    if (kafka_wake_open(&ep->wake, env->loop, ep->queue, on_poll, ep, why, sizeof(why))) goto fail;
    uv_idle_init(env->loop, &ep->idle);
    uv_timer_init(env->loop, &ep->tick);
    uv_check_init(env->loop, &ep->store);
    uv_check_init(env->loop, &ep->room);
    uv_timer_init(env->loop, &ep->revoke_timer);
    ep->idle.data = ep->tick.data = ep->store.data = ep->room.data = ep->revoke_timer.data = ep;
    ep->idle_cb = on_idle;
    uv_timer_start(&ep->tick, on_tick, 1000, 1000);
    if (conf->transactional) {
        if (!(ep->txn = txn_open(ep, &consumer_txn, why, sizeof(why)))) goto fail;
        ep->flow.txn = txn_sink(ep->txn);
    }

    topics = rd_kafka_topic_partition_list_new(conf->ntopics);
    for (int i = 0; i < conf->ntopics; i++)
        rd_kafka_topic_partition_list_add(topics, conf->topics[i], RD_KAFKA_PARTITION_UA);
    err = rd_kafka_subscribe(ep->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        snprintf(why, sizeof(why), "subscribe: %s", rd_kafka_err2str(err));
        goto fail;
    }
    log_at(LOG_INFO, "consumer", EP_CTX(conf), "subscribed to %d topic(s) as group %s",
           conf->ntopics, conf->group);
    /* Anything queued before the IO event was enabled would not wake us. */
    uv_idle_start(&ep->idle, on_idle);
    ep->opened = 1;
    return ep;
fail:
    snprintf(errbuf, errlen, "endpoint '%s' (%s): %s", conf->name, conf->where, why);
    if (kconf) rd_kafka_conf_destroy(kconf);
    consumer_close(ep);
    return NULL;
}

void consumer_stop(endpoint_t *ep) {
    if (ep->flow.stopped) return;
    ep->flow.stopped = 1;
    if (ep->wake.poll.data) uv_poll_stop(&ep->wake.poll);
    if (ep->idle.data) {
        uv_idle_stop(&ep->idle);
        uv_timer_stop(&ep->tick);
        uv_check_stop(&ep->room);
    }
}

/* The endpoint goes when the last of its handles is closed; libuv runs
 * close callbacks in no promised order. */
static void free_ep(uv_handle_t *handle) {
    endpoint_t *ep = handle->data;
    if (--ep->closing > 0) return;
    /* The pipe may be closed only now that nothing polls it. */
    kafka_wake_close_fds(&ep->wake);
    free(ep);
}

/* Hand back what the endpoint holds, in the order librdkafka needs: the
 * done offsets stored, every message let go of, then the close that
 * commits and leaves the group. */
static void leave(endpoint_t *ep) {
    rd_kafka_resp_err_t err;
    int dropped;

    if (ep->left) return;
    consumer_stopping(ep);
    /* A revoke waiting for handlers: they are abandoned below anyway. */
    if (ep->revoking) partitions_finish_revoke(ep, 1);
    /* The open transaction commits what is done, or aborts. */
    if (ep->txn) txn_end(ep->txn);
    /* Before left is set: partitions_store does nothing after (the revoke
     * that the close below makes must not store for partitions it gives
     * back), and done offsets wait up to STORE_MS for a loop turn. */
    if (ep->rk) partitions_store(ep);
    ep->left = 1;
    /* What is still in flight lets go of its librdkafka message before the
     * consumer closes, or the close would wait for it. */
    dropped = pipeline_close(&ep->flow);
    if (dropped)
        log_at(LOG_WARN, "consumer", EP_CTX(ep->flow.conf),
               "%d message(s) left uncommitted; they will be delivered again", dropped);
    if (!ep->rk) return;
    if (ep->queue) {
        rd_kafka_queue_io_event_enable(ep->queue, -1, NULL, 0);
        rd_kafka_queue_destroy(ep->queue);
        ep->queue = NULL;
    }
    /* Commits the stored offsets and leaves the group; the revoke it
     * triggers runs partitions_rebalance_cb on this thread. */
    if ((err = rd_kafka_consumer_close(ep->rk)) != 0)
        log_at(LOG_WARN, "consumer", EP_CTX(ep->flow.conf), "close: %s", rd_kafka_err2str(err));
    log_at(LOG_INFO, "consumer", EP_CTX(ep->flow.conf), "left group %s", ep->flow.conf->group);
}

void consumer_stopping(endpoint_t *ep) {
    const kafka_env_t *env = ep->client.env;
    if (!ep->opened || ep->said_stop || ep->left) return;
    ep->said_stop = 1;
    if (env->stopping) env->stopping(env->ctx, ep);
}

void consumer_leave(endpoint_t *ep) {
    const kafka_env_t *env = ep->client.env;
    if (ep->left) return;
    consumer_stop(ep);
    /* Before the flush: what the hook publishes goes out with the rest. */
    consumer_stopping(ep);
    if (env->flush) env->flush(env->ctx, (int)env->drain_timeout_ms);
    leave(ep);
}

void consumer_close(endpoint_t *ep) {
    consumer_stop(ep);
    leave(ep);
    if (ep->txn) {
        txn_close(ep->txn);
        ep->txn = NULL;
        ep->flow.txn = NULL;
    }
    if (ep->rk) {
        rd_kafka_destroy(ep->rk);
        ep->rk = NULL;
        log_at(LOG_INFO, "consumer", EP_CTX(ep->flow.conf), "closed");
    }
    for (int i = 0; i < ep->nparts; i++) partition_free(ep->parts[i]);
    free(ep->parts);
    free(ep->kafka_stats);
    ep->kafka_stats = NULL;
    ep->parts = NULL;
    ep->nparts = 0;
    ep->closing = 0;
    if (ep->wake.poll.data) ep->closing++;
    if (ep->idle.data) ep->closing += 5;
    if (ep->closing == 0) {
        kafka_wake_close_fds(&ep->wake);
        free(ep);
        return;
    }
    if (ep->wake.poll.data) uv_close((uv_handle_t *)&ep->wake.poll, free_ep);
    if (ep->idle.data) {
        uv_close((uv_handle_t *)&ep->tick, free_ep);
        uv_close((uv_handle_t *)&ep->idle, free_ep);
        uv_close((uv_handle_t *)&ep->store, free_ep);
        uv_close((uv_handle_t *)&ep->room, free_ep);
        uv_close((uv_handle_t *)&ep->revoke_timer, free_ep);
    }
}
