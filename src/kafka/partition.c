/* partition.c - an endpoint's assigned partitions: looked up, assigned,
 * and revoked (after their running handlers, up to the drain timeout);
 * paused for a delayed retry (then sought back) or while the buffer of
 * waiting messages is full; their done offsets handed to librdkafka. */
#include "kafka/partition.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "flow/pipeline.h"
#include "kafka/txn.h"

#define EP_CTX(c) LOG_ENDPOINT((c)->name)

/* Hand the offsets done since the last turn to librdkafka, which commits
 * them every auto.commit.interval.ms. */
void partitions_store(endpoint_t *ep) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(ep->nparts);
    rd_kafka_resp_err_t err;
    int first = 0;

    uv_check_stop(&ep->store);
    ep->stored_at = uv_now(ep->client.env->loop);
    /* A transactional endpoint commits its offsets in its transactions. */
    if (ep->left || ep->txn) {
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
        partition_t *pt = partition_find(ep, l->elems[i].topic, l->elems[i].partition);
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

/* Pause or resume every partition, but those a retry or a revoke holds. */
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

/* Runs after every loop turn while held. */
static void on_room(uv_check_t *c) {
    endpoint_t *ep = c->data;
    if (ep->held && pipeline_waiting(&ep->flow) > ep->flow.conf->buffer / 2) return;
    uv_check_stop(c);
    if (!ep->held) return;
    ep->held = 0;
    log_at(LOG_DEBUG, "consumer", EP_CTX(ep->flow.conf), "buffer has room again: taking messages");
    if (ep->held_paused && !ep->left) set_paused(ep, 0);
    ep->held_paused = 0;
    uv_idle_start(&ep->idle, ep->idle_cb);
}

/* The buffer of messages waiting behind busy lanes is full: take no more
 * from librdkafka (its prefetch queue holds them, bounded by its own
 * limits) until half have gone.  Pausing the partitions instead would
 * cost a second each time: librdkafka 2.0 drops what it prefetched for a
 * paused partition and fetches it again only after its fetch backoff. */
void partitions_hold(endpoint_t *ep) {
    ep->held = 1;
    ep->held_at = uv_now(ep->client.env->loop);
    log_at(LOG_DEBUG, "consumer", EP_CTX(ep->flow.conf),
           "%d message(s) wait behind busy %s (buffer %d): taking no more until half have gone",
           pipeline_waiting(&ep->flow),
           ep->flow.conf->ordering == ORDER_PARTITION ? "partitions" : "keys",
           ep->flow.conf->buffer);
    uv_check_start(&ep->room, on_room);
}

void partitions_held_long(endpoint_t *ep) {
    if (!ep->held || ep->held_paused ||
        uv_now(ep->client.env->loop) - ep->held_at < HOLD_PAUSE_MS)
        return;
    /* The consumer is polled once a second meanwhile, for the group's
     * sake, and each poll may take a message: past this long, pause. */
    log_at(LOG_DEBUG, "consumer", EP_CTX(ep->flow.conf),
           "the buffer stayed full for %d s: pausing the partitions", HOLD_PAUSE_MS / 1000);
    ep->held_paused = 1;
    set_paused(ep, 1);
}

partition_t *partition_find(endpoint_t *ep, const char *topic, int32_t partition) {
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
    log_ctx_t ctx = {.endpoint = pt->ep->flow.conf->name, .topic = o->topic,
                     .partition = o->partition, .offset = pt->expect};

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
int partition_accept(partition_t *pt, int64_t offset) {
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
void partition_redeliver(partition_t *pt, int64_t offset, int attempts, int rounds,
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

void partition_seek(partition_t *pt, int64_t offset) {
    offsets_t *o = pt->offsets;
    /* The first message tracked at or after offset, and all after it,
     * will come again: they no longer hold the commit back nor move it. */
    for (size_t i = 0; i < o->len; i++)
        if (o->offs[(o->head + i) % o->cap] >= offset) {
            offsets_void_from(o, o->first + i);
            break;
        }
    /* Ahead of a retry waiting for an earlier offset too: the seek is
     * what was asked last. */
    pt->waiting = 0;
    partition_redeliver(pt, offset, 0, 0, 0);
}

static void free_timer(uv_handle_t *h) { free(h); }

void partition_free(partition_t *pt) {
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
        pt->retry_offset = pt->expect = pt->txn_base = -1;
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
    /* The open transaction ends before its partitions go. */
    if (ep->txn) txn_end(ep->txn);
    partitions_store(ep);
    err = rd_kafka_commit(ep->rk, NULL, 0);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        log_at(LOG_WARN, "consumer", EP_CTX(ep->flow.conf), "commit on revoke: %s", rd_kafka_err2str(err));
    for (int i = 0; i < parts->cnt; i++) {
        partition_t *pt = partition_find(ep, parts->elems[i].topic, parts->elems[i].partition);
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
    /* What is done is committed; the partitions go next. */
    if (parts->cnt && env->revoking) env->revoking(env->ctx, ep, parts);
}

/* The revoke can go on: with abandon, handlers still running are given
 * up (their messages come again to the next owner).  Then what is done
 * is committed and the partitions go back to the group. */
void partitions_finish_revoke(endpoint_t *ep, int abandon) {
    rd_kafka_topic_partition_list_t *parts = ep->revoking;
    char why[512];

    uv_timer_stop(&ep->revoke_timer);
    ep->revoking = NULL;
    if (abandon)
        for (int i = 0; i < parts->cnt; i++) {
            partition_t *pt = partition_find(ep, parts->elems[i].topic, parts->elems[i].partition);
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
        partition_t *pt = partition_find(ep, parts->elems[i].topic, parts->elems[i].partition);
        if (pt) n += pipeline_running(&ep->flow, pt->offsets);
    }
    return n;
}

static void on_revoke_wait(uv_timer_t *t) {
    endpoint_t *ep = t->data;
    int n = running_in(ep, ep->revoking);
    if (n == 0) {
        partitions_finish_revoke(ep, 0);
    } else if (uv_now(ep->client.env->loop) - ep->revoke_at >=
               (uint64_t)ep->client.env->drain_timeout_ms) {
        log_at(LOG_WARN, "consumer", EP_CTX(ep->flow.conf),
               "%d handler(s) of revoked partitions still running after the drain timeout "
               "(%lld ms): abandoned, uncommitted",
               n, (long long)ep->client.env->drain_timeout_ms);
        partitions_finish_revoke(ep, 1);
    }
}

/* A revoke: what waits to start in those partitions is let go at once;
 * handlers already running may finish, up to the drain timeout, before
 * the done prefix is committed and the partitions go.  librdkafka holds
 * the rebalance until the unassign (partitions_finish_revoke). */
static int start_revoke(endpoint_t *ep, rd_kafka_topic_partition_list_t *parts) {
    int n;
    for (int i = 0; i < parts->cnt; i++) {
        partition_t *pt = partition_find(ep, parts->elems[i].topic, parts->elems[i].partition);
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

void partitions_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
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
        /* Transactional: assigned once its offsets are read back. */
        if (ep->txn && txn_assign(ep->txn, parts)) return;
        partitions_assign(ep, parts);
        return;
    }
    if (ep->txn) txn_revoke(ep->txn);
    if (start_revoke(ep, parts)) return;
    revoke_parts(ep, parts);
    if (kafka_rebalance_apply(rk, err, parts, why, sizeof(why)))
        log_at(LOG_WARN, "consumer", EP_CTX(ep->flow.conf), "unassigning %s: %s",
               parts->cnt ? list : "nothing", why);
}

void partitions_assign(endpoint_t *ep, rd_kafka_topic_partition_list_t *parts) {
    char list[1024], why[512];
    assign_parts(ep, parts);
    if (ep->held_paused) rd_kafka_pause_partitions(ep->rk, parts);
    if (kafka_rebalance_apply(ep->rk, RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, parts, why,
                              sizeof(why))) {
        log_partitions(parts, list, sizeof(list));
        log_at(LOG_WARN, "consumer", EP_CTX(ep->flow.conf), "assigning %s: %s",
               parts->cnt ? list : "nothing", why);
    } else if (parts->cnt && ep->client.env->assigned) {
        ep->client.env->assigned(ep->client.env->ctx, ep, parts);
    }
}

