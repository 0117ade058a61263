/* consumer.c - an endpoint's group consumer on the loop: open it, wake on
 * its queue's IO event, drain messages into the pipeline in bounded
 * batches, follow assignments, deliver a message again after its backoff,
 * store done offsets, and close it in order. */
#include "kafka/consumer.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "flow/pipeline.h"

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
#define EP_CTX(c) (&(log_ctx_t){(c)->name, NULL, -1, -1})

#define EP(f) ((endpoint_t *)((char *)(f) - offsetof(endpoint_t, flow)))

static void drain(endpoint_t *ep);
static partition_t *find_partition(endpoint_t *ep, const char *topic, int32_t partition);
static int accept_offset(partition_t *pt, int64_t offset);

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
static void on_tick(uv_timer_t *t) { drain(t->data); }

/* Hand the offsets done since the last turn to librdkafka, which commits
 * them every auto.commit.interval.ms. */
static void store_offsets(endpoint_t *ep) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(ep->nparts);
    rd_kafka_resp_err_t err;
    int first = 0;

    uv_check_stop(&ep->store);
    ep->stored_at = uv_now(ep->client.env->loop);
    if (ep->left) {
        rd_kafka_topic_partition_list_destroy(l);
        return;
    }
    for (int i = 0; i < ep->nparts; i++) {
        offsets_t *o = ep->parts[i]->offsets;
        if (o->commit <= o->stored) continue;
        first |= o->stored < 0;
        rd_kafka_topic_partition_list_add(l, o->topic, o->partition)->offset = o->commit;
    }
    if (l->cnt && ep->rk && (err = rd_kafka_offsets_store(ep->rk, l)) != 0)
        log_at(LOG_WARN, "consumer", EP_CTX(ep->flow.conf), "storing offsets: %s",
               rd_kafka_err2str(err));
    for (int i = 0; i < l->cnt; i++) {
        partition_t *pt = find_partition(ep, l->elems[i].topic, l->elems[i].partition);
        if (l->elems[i].err == 0) pt->offsets->stored = l->elems[i].offset;
    }
    rd_kafka_topic_partition_list_destroy(l);
    /* librdkafka's commit timer runs from the assignment, so its first
     * commit lands up to two intervals after it.  With luka's own 1 s
     * interval, the first done offsets of a partition are committed at
     * once instead; an app that chose its interval keeps it. */
    if (first && ep->commit_first && ep->rk) {
        log_at(LOG_DEBUG, "consumer", EP_CTX(ep->flow.conf),
               "committing the first done offsets of the assignment");
        rd_kafka_commit(ep->rk, NULL, 1);
    }
}

/* Runs after each loop turn while offsets wait; the one-second tick
 * makes sure another turn comes. */
static void on_store(uv_check_t *c) {
    endpoint_t *ep = c->data;
    if (uv_now(ep->client.env->loop) - ep->stored_at >= STORE_MS) store_offsets(ep);
}

/* One message from librdkafka into the flow, unless it was fetched before
 * a revoke, a pause or a seek: then it comes again, to whoever owns its
 * partition then. */
static void handle(endpoint_t *ep, rd_kafka_message_t *rkm) {
    partition_t *pt = find_partition(ep, rd_kafka_topic_name(rkm->rkt), rkm->partition);
    redelivery_t again, *a = NULL;
    message_t m;

    if (!pt || !accept_offset(pt, rkm->offset)) {
        rd_kafka_message_destroy(rkm);
        return;
    }
    if (pt->retry_offset == rkm->offset) {
        again.attempts = pt->retry_attempts;
        again.rounds = pt->retry_rounds;
        pt->retry_offset = -1;
        a = &again;
    }
    message_from_kafka(&m, rkm);
    pipeline_handle(&ep->flow, &m, pt->offsets, a); /* rkm is the pipeline's now */
}

/* The buffer of messages waiting behind busy lanes is full: pause every
 * partition, and resume them once it is half empty.  Polling goes on
 * meanwhile (the group needs it); librdkafka drops what it had fetched
 * for a paused partition and fetches it again after the resume. */
static void set_paused(endpoint_t *ep, int pause) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(ep->nparts);
    for (int i = 0; i < ep->nparts; i++)
        if (!ep->parts[i]->waiting && !ep->parts[i]->revoking)
            rd_kafka_topic_partition_list_add(l, ep->parts[i]->offsets->topic,
                                              ep->parts[i]->offsets->partition);
    if (l->cnt) {
        if (pause) rd_kafka_pause_partitions(ep->rk, l);
        else rd_kafka_resume_partitions(ep->rk, l);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static void on_room(uv_check_t *c) {
    endpoint_t *ep = c->data;
    if (ep->held && pipeline_waiting(&ep->flow) > ep->flow.conf->buffer / 2) return;
    uv_check_stop(c);
    if (!ep->held) return;
    ep->held = 0;
    log_at(LOG_DEBUG, "consumer", EP_CTX(ep->flow.conf), "buffer has room again: resuming");
    if (!ep->left) set_paused(ep, 0);
}

static void hold(endpoint_t *ep) {
    ep->held = 1;
    log_at(LOG_DEBUG, "consumer", EP_CTX(ep->flow.conf),
           "%d message(s) wait behind busy %s (buffer %d): pausing until half have gone",
           pipeline_waiting(&ep->flow),
           ep->flow.conf->ordering == ORDER_PARTITION ? "partitions" : "keys",
           ep->flow.conf->buffer);
    set_paused(ep, 1);
    uv_check_start(&ep->room, on_room);
}

static void drain(endpoint_t *ep) {
    uint64_t deadline = uv_hrtime() + BATCH_NS;
    int n = 0, more = 0;
    while (!ep->flow.stopped && ep->flow.ninflight < MAX_INFLIGHT) {
        if (!ep->held && pipeline_waiting(&ep->flow) >= ep->flow.conf->buffer) hold(ep);
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
    }
    /* A batch cut short means more may be waiting, and the pipe will not
     * tell us again: keep going on the next loop iteration. */
    if (more && !ep->flow.stopped)
        uv_idle_start(&ep->idle, on_idle);
    else
        uv_idle_stop(&ep->idle);
}

static partition_t *find_partition(endpoint_t *ep, const char *topic, int32_t partition) {
    if (ep->last < ep->nparts) {
        partition_t *pt = ep->parts[ep->last];
        if (pt->offsets->partition == partition && strcmp(pt->offsets->topic, topic) == 0)
            return pt;
    }
    for (int i = 0; i < ep->nparts; i++) {
        partition_t *pt = ep->parts[i];
        if (pt->offsets->partition == partition && strcmp(pt->offsets->topic, topic) == 0) {
            ep->last = i;
            return pt;
        }
    }
    return NULL;
}

/* The message a retry went back for is gone, and the log goes on at
 * offset: say what was skipped. */
static void skipped(partition_t *pt, int64_t offset) {
    const offsets_t *o = pt->offsets;
    log_ctx_t ctx = {pt->ep->flow.conf->name, o->topic, o->partition, pt->expect};

    if (offset > pt->expect)
        log_at(LOG_WARN, "consumer", &ctx,
               "offsets %lld..%lld are gone (removed by retention or compaction while the "
               "message waited for its retry); going on from offset %lld",
               (long long)pt->expect, (long long)offset - 1, (long long)offset);
    else
        log_at(LOG_WARN, "consumer", &ctx,
               "offset %lld is gone and the log now begins before it (auto.offset.reset); "
               "going on from offset %lld",
               (long long)pt->expect, (long long)offset);
    if (pt->retry_offset == pt->expect) pt->retry_offset = -1;
}

/* Whether a message of pt at offset should be handled now; a message
 * fetched while pt waits for a retry is dropped (it comes again after the
 * seek back). */
static int accept_offset(partition_t *pt, int64_t offset) {
    if (pt->waiting || pt->revoking) return 0;
    if (pt->expect >= 0) {
        /* A seek is a version barrier in librdkafka: nothing fetched before
         * it is returned after it.  So the first message after the seek is
         * where the log goes on, which is the offset sought unless
         * retention or compaction removed it while the retry waited (the
         * fetch then goes on from the next offset kept, or from wherever
         * auto.offset.reset leads).  Waiting for the exact offset would
         * stall the partition for good. */
        if (offset != pt->expect) skipped(pt, offset);
        pt->expect = -1;
    }
    return 1;
}

static rd_kafka_topic_partition_list_t *one(partition_t *pt, int64_t offset) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, pt->offsets->topic, pt->offsets->partition)->offset = offset;
    return l;
}

static void on_redeliver(uv_timer_t *t) {
    partition_t *pt = t->data;
    endpoint_t *ep = pt->ep;
    rd_kafka_topic_partition_list_t *l = one(pt, pt->retry_offset);
    rd_kafka_error_t *error;

    /* Seek while still paused, so nothing is fetched from the old
     * position; librdkafka drops what was queued before the seek (see
     * consumer_accept). */
    if ((error = rd_kafka_seek_partitions(ep->rk, l, 5000))) {
        log_at(LOG_WARN, "consumer", EP_CTX(ep->flow.conf), "seek %s[%d] to %lld: %s", pt->offsets->topic,
                 (int)pt->offsets->partition, (long long)pt->retry_offset,
                 rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        /* Then it fetches from where it was, and nothing may be dropped. */
        pt->expect = -1;
    } else {
        pt->expect = pt->retry_offset;
    }
    pt->waiting = 0;
    rd_kafka_resume_partitions(ep->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
}

/* Deliver the message at offset again after delay_ms: pause the partition,
 * then seek back and resume.  Other partitions keep flowing. */
static void redeliver(partition_t *pt, int64_t offset, int attempts, int rounds,
                      int64_t delay_ms) {
    endpoint_t *ep = pt->ep;
    rd_kafka_topic_partition_list_t *l;

    /* Already going back to an earlier offset: this message comes again
     * with it. */
    if (pt->waiting && pt->retry_offset <= offset) return;
    l = one(pt, offset);
    rd_kafka_pause_partitions(ep->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    pt->retry_offset = offset;
    pt->retry_attempts = attempts;
    pt->retry_rounds = rounds;
    pt->waiting = 1;
    if (!pt->timer) {
        pt->timer = malloc(sizeof(*pt->timer));
        uv_timer_init(ep->client.env->loop, pt->timer);
        pt->timer->data = pt;
    }
    uv_timer_start(pt->timer, on_redeliver, (uint64_t)delay_ms, 0);
}

static void free_timer(uv_handle_t *h) { free(h); }

static void partition_free(partition_t *pt) {
    pt->offsets->revoked = 1;
    offsets_unref(pt->offsets);
    if (pt->timer) uv_close((uv_handle_t *)pt->timer, free_timer);
    free(pt);
}

static void assign_parts(endpoint_t *ep, rd_kafka_topic_partition_list_t *parts) {
    if (ep->nparts + parts->cnt > ep->capparts) {
        ep->capparts = ep->nparts + parts->cnt;
        ep->parts = realloc(ep->parts, ep->capparts * sizeof(*ep->parts));
    }
    for (int i = 0; i < parts->cnt; i++) {
        partition_t *pt = calloc(1, sizeof(*pt));
        pt->ep = ep;
        pt->offsets = offsets_new(parts->elems[i].topic, parts->elems[i].partition);
        pt->retry_offset = pt->expect = -1;
        ep->parts[ep->nparts++] = pt;
    }
}

/* Before partitions go back to the group: wait (bounded) for the
 * publishes of messages already handled, store and commit what is done.
 * A message waiting for redelivery is simply not committed: the next owner
 * gets it. */
static void revoke_parts(endpoint_t *ep, rd_kafka_topic_partition_list_t *parts) {
    rd_kafka_resp_err_t err;

    const kafka_env_t *env = ep->client.env;

    if (env->flush) env->flush(env->ctx, (int)env->drain_timeout_ms);
    store_offsets(ep);
    err = rd_kafka_commit(ep->rk, NULL, 0);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        log_at(LOG_WARN, "consumer", EP_CTX(ep->flow.conf), "commit on revoke: %s", rd_kafka_err2str(err));
    for (int i = 0; i < parts->cnt; i++) {
        partition_t *pt = find_partition(ep, parts->elems[i].topic, parts->elems[i].partition);
        if (!pt) continue;
        if (pt->waiting) {
            /* librdkafka keeps a partition paused across an unassign and a
             * new assignment, so the pause goes with the retry that made
             * it; otherwise the partition stalls when it comes back to us.
             * The message it waited for is uncommitted: the next owner of
             * the partition gets it. */
            rd_kafka_topic_partition_list_t *l = one(pt, RD_KAFKA_OFFSET_INVALID);
            rd_kafka_resume_partitions(ep->rk, l);
            rd_kafka_topic_partition_list_destroy(l);
            log_at(LOG_INFO, "consumer", EP_CTX(ep->flow.conf),
                   "%s[%d]: revoked while offset %lld waited for its retry; it comes again to the "
                   "partition's next owner",
                   pt->offsets->topic, (int)pt->offsets->partition, (long long)pt->retry_offset);
        }
        for (int j = 0; j < ep->nparts; j++)
            if (ep->parts[j] == pt) ep->parts[j] = ep->parts[--ep->nparts];
        partition_free(pt);
    }
    ep->last = 0;
}

/* The revoke can go on: with abandon, handlers still running are given
 * up (their messages come again to the next owner).  Then what is done
 * is committed and the partitions go back to the group. */
static void finish_revoke(endpoint_t *ep, int abandon) {
    rd_kafka_topic_partition_list_t *parts = ep->revoking;
    char why[512];

    uv_timer_stop(&ep->revoke_timer);
    ep->revoking = NULL;
    if (abandon)
        for (int i = 0; i < parts->cnt; i++) {
            partition_t *pt = find_partition(ep, parts->elems[i].topic, parts->elems[i].partition);
            if (pt) pipeline_drop(&ep->flow, pt->offsets, 1);
        }
    revoke_parts(ep, parts);
    if (kafka_rebalance_apply(ep->rk, RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS, parts, why, sizeof(why)))
        log_at(LOG_WARN, "consumer", EP_CTX(ep->flow.conf), "unassigning: %s", why);
    rd_kafka_topic_partition_list_destroy(parts);
}

static int running_in(endpoint_t *ep, const rd_kafka_topic_partition_list_t *parts) {
    int n = 0;
    for (int i = 0; i < parts->cnt; i++) {
        partition_t *pt = find_partition(ep, parts->elems[i].topic, parts->elems[i].partition);
        if (pt) n += pipeline_running(&ep->flow, pt->offsets);
    }
    return n;
}

static void on_revoke_wait(uv_timer_t *t) {
    endpoint_t *ep = t->data;
    int n = running_in(ep, ep->revoking);
    if (n == 0) {
        finish_revoke(ep, 0);
    } else if (uv_now(ep->client.env->loop) - ep->revoke_at >=
               (uint64_t)ep->client.env->drain_timeout_ms) {
        log_at(LOG_WARN, "consumer", EP_CTX(ep->flow.conf),
               "%d handler(s) of revoked partitions still running after the drain timeout "
               "(%lld ms): abandoned, uncommitted",
               n, (long long)ep->client.env->drain_timeout_ms);
        finish_revoke(ep, 1);
    }
}

/* A revoke: what waits to start in those partitions is let go at once;
 * handlers already running may finish, up to the drain timeout, before
 * the done prefix is committed and the partitions go.  librdkafka holds
 * the rebalance until the unassign (finish_revoke). */
static int start_revoke(endpoint_t *ep, rd_kafka_topic_partition_list_t *parts) {
    int n;
    for (int i = 0; i < parts->cnt; i++) {
        partition_t *pt = find_partition(ep, parts->elems[i].topic, parts->elems[i].partition);
        if (!pt) continue;
        pt->revoking = 1;
        pipeline_drop(&ep->flow, pt->offsets, 0);
    }
    if (!(n = running_in(ep, parts)) || ep->left) return 0;
    log_at(LOG_INFO, "consumer", EP_CTX(ep->flow.conf),
           "waiting up to %lld ms for %d handler(s) of the revoked partitions",
           (long long)ep->client.env->drain_timeout_ms, n);
    ep->revoking = rd_kafka_topic_partition_list_copy(parts);
    ep->revoke_at = uv_now(ep->client.env->loop);
    uv_timer_start(&ep->revoke_timer, on_revoke_wait, 10, 10);
    return 1;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    endpoint_t *ep = opaque;
    int assign = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
    char list[1024], why[512];

    log_partitions(parts, list, sizeof(list));
    ep->flow.stats.rebalances++;
    log_at(LOG_INFO, "consumer", EP_CTX(ep->flow.conf), "%s %s", assign ? "assigned" : "revoked",
           parts->cnt ? list : "nothing");
    if (assign) {
        ep->joined = 1;
        assign_parts(ep, parts);
        if (ep->held) rd_kafka_pause_partitions(rk, parts);
    } else {
        if (start_revoke(ep, parts)) return;
        revoke_parts(ep, parts);
    }
    if (kafka_rebalance_apply(rk, err, parts, why, sizeof(why)))
        log_at(LOG_WARN, "consumer", EP_CTX(ep->flow.conf), "%s %s: %s",
               assign ? "assigning" : "unassigning", parts->cnt ? list : "nothing", why);
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
    partition_t *pt = find_partition(ep, m->topic, m->partition);
    /* A partition revoked meanwhile: its next owner gets the message. */
    if (!pt) return;
    redeliver(pt, m->offset, attempts, rounds, delay_ms);
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
    if (ep->store.data) uv_check_start(&ep->store, on_store);
}

static void source_finished(flow_t *f, const struct inflight *inf, int done) {
    endpoint_t *ep = EP(f);
    (void)inf, (void)done;
    /* Back-pressure eased: drain again. */
    if (ep->idle.data && !f->stopped && f->ninflight == MAX_INFLIGHT / 2)
        uv_idle_start(&ep->idle, on_idle);
}

static const source_ops_t consumer_source = {source_redeliver, source_stop, source_progress,
                                             source_finished};

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
    rd_kafka_conf_set_rebalance_cb(kconf, rebalance_cb);
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
    uv_timer_start(&ep->tick, on_tick, 1000, 1000);

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
    /* A revoke waiting for handlers: they are abandoned below anyway. */
    if (ep->revoking) finish_revoke(ep, 1);
    /* Before left is set: store_offsets does nothing after (the revoke
     * that the close below makes must not store for partitions it gives
     * back), and done offsets wait up to STORE_MS for a loop turn. */
    if (ep->rk) store_offsets(ep);
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
     * triggers runs rebalance_cb on this thread. */
    if ((err = rd_kafka_consumer_close(ep->rk)) != 0)
        log_at(LOG_WARN, "consumer", EP_CTX(ep->flow.conf), "close: %s", rd_kafka_err2str(err));
    log_at(LOG_INFO, "consumer", EP_CTX(ep->flow.conf), "left group %s", ep->flow.conf->group);
}

void consumer_leave(endpoint_t *ep) {
    const kafka_env_t *env = ep->client.env;
    if (ep->left) return;
    consumer_stop(ep);
    if (env->flush) env->flush(env->ctx, (int)env->drain_timeout_ms);
    leave(ep);
}

void consumer_close(endpoint_t *ep) {
    consumer_stop(ep);
    leave(ep);
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
