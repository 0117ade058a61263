/* txn.c - an endpoint's Kafka transactions on the loop (see txn.h): the
 * state machine, the transactional producer and its sink, the rewind
 * after an abort.  Its thread is txn_thread.c's, the offsets topic
 * txn_offsets.c's; txn_int.h is what the three share.
 *
 * States, on the loop: INIT (init_transactions runs on the thread) ->
 * OPEN (messages are taken; a transaction is open) -> DRAIN (N messages
 * or T ms reached: take no more, wait until every message in flight is
 * done, its publishes acknowledged) -> COMMIT (the offsets written, then
 * send_offsets_to_transaction and commit_transaction on the thread) ->
 * OPEN again after begin_transaction.  A commit that fails with an
 * abortable error goes to ABORT (abort_transaction on the thread), then
 * rewinds every partition to its last committed offset and replays.  A
 * fatal error (fenced: another instance took the transactional.id) goes
 * to FAILED, and the endpoint stops.
 *
 * The producer's delivery reports come as events (RD_KAFKA_EVENT_DR), not
 * callbacks: commit_transaction flushes, and rd_kafka_flush serves the
 * main queue's callbacks on the calling thread unless reports are events.
 * So nothing of the flow ever runs on the thread: the loop serves the
 * events (serve below) and hands each report to delivery_report_cb. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "base/log.h"
#include "flow/pipeline.h"
#include "kafka/txn.h"
#include "kafka/txn_int.h"

char *txn_id(const endpoint_conf_t *conf) {
    char host[256] = "luka";
    const char *instance = conf->txn_instance;
    size_t n;
    char *id;
    if (!instance) {
        if (gethostname(host, sizeof(host)) != 0) snprintf(host, sizeof(host), "luka");
        host[sizeof(host) - 1] = '\0';
        instance = host;
    }
    n = strlen(conf->group) + strlen(conf->name) + strlen(instance) + 3;
    id = malloc(n);
    snprintf(id, n, "%s.%s.%s", conf->group, conf->name, instance);
    return id;
}

static partition_t *find_part(endpoint_t *ep, const char *topic, int32_t partition) {
    for (int i = 0; i < ep->nparts; i++)
        if (ep->parts[i]->offsets->partition == partition &&
            strcmp(ep->parts[i]->offsets->topic, topic) == 0)
            return ep->parts[i];
    return NULL;
}

/* The producer's events, on the loop ------------------------------------ */

static void fail(txn_t *t, const char *what, const char *why);

static void serve(txn_t *t) {
    rd_kafka_queue_t *q = rd_kafka_queue_get_main(t->pub->rk);
    rd_kafka_event_t *ev;
    while ((ev = rd_kafka_queue_poll(q, 0))) {
        const rd_kafka_message_t *rkm;
        const char *fac, *str;
        int level;
        switch (rd_kafka_event_type(ev)) {
        case RD_KAFKA_EVENT_DR:
            while ((rkm = rd_kafka_event_message_next(ev)))
                delivery_report_cb(t->pub->rk, rkm, t->pub);
            break;
        case RD_KAFKA_EVENT_LOG:
            rd_kafka_event_log(ev, &fac, &str, &level);
            log_at(level <= 3 ? LOG_ERROR : level == 4 ? LOG_WARN : level <= 6 ? LOG_INFO : LOG_DEBUG,
                   "rdkafka", EP_CTX(t->ep), "%s %s: %s", rd_kafka_name(t->pub->rk), fac, str);
            break;
        case RD_KAFKA_EVENT_ERROR:
            if (rd_kafka_event_error_is_fatal(ev))
                fail(t, "fatal error", rd_kafka_event_error_string(ev));
            else
                log_at(LOG_WARN, "txn", EP_CTX(t->ep), "%s: %s",
                       rd_kafka_err2name(rd_kafka_event_error(ev)), rd_kafka_event_error_string(ev));
            break;
        default:
            break;
        }
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
}

static void on_wake(uv_poll_t *w, int status, int events) {
    txn_t *t = w->data;
    (void)status, (void)events;
    kafka_wake_drain(&t->pub->wake);
    delivery_run_deferred(t->pub);
    serve(t);
}

/* The sink: luka.publish, dead letters and resends of ep's messages. */
static int sink_send(sink_t *s, const char *topic, int32_t partition, const char *key,
                     size_t keylen, char *value, size_t len, rd_kafka_headers_t *headers,
                     publish_tag_t *tag, char *errbuf, size_t errlen) {
    publisher_t *p = (publisher_t *)((char *)s - offsetof(publisher_t, sink));
    rd_kafka_resp_err_t err;
    int waited = 0;

    if (!topic || !*topic) {
        free(value);
        snprintf(errbuf, errlen, "%s: no topic", s->conf->name);
        return -1;
    }
    for (;;) {
        err = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                                RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE(value, len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                                RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(tag),
                                RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || waited >= 30000) break;
        /* Never drop: wait for reports (deferred: we may be inside user
         * code) to make room. */
        rd_kafka_event_t *ev;
        rd_kafka_queue_t *q = rd_kafka_queue_get_main(p->rk);
        p->sending = 1;
        if ((ev = rd_kafka_queue_poll(q, 100))) {
            const rd_kafka_message_t *rkm;
            if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_DR)
                while ((rkm = rd_kafka_event_message_next(ev))) delivery_report_cb(p->rk, rkm, p);
            rd_kafka_event_destroy(ev);
        }
        p->sending = 0;
        rd_kafka_queue_destroy(q);
        waited += 100;
    }
    if (err) {
        free(value);
        snprintf(errbuf, errlen, "%s: cannot queue a message for topic %s: %s", s->conf->name,
                 topic, rd_kafka_err2str(err));
        return -1;
    }
    p->published++;
    return 0;
}

static const sink_ops_t txn_sink_ops = {sink_send};

/* Commit, abort, rewind ------------------------------------------------- */

static void wake_drain(txn_t *t) {
    endpoint_t *ep = t->ep;
    if (!ep->flow.stopped && ep->idle.data) uv_idle_start(&ep->idle, ep->idle_cb);
}

static void on_interval(uv_timer_t *timer);

static void open_next(txn_t *t) {
    t->state = T_OPEN;
    t->taken = 0;
    uv_timer_start(&t->timer, on_interval, (uint64_t)t->interval_ms, 0);
    wake_drain(t);
}

/* Every partition goes back to where the last committed transaction left
 * it: what was taken since is let go of, uncommitted, and fetched again. */
static void rewind_parts(txn_t *t) {
    endpoint_t *ep = t->ep;
    for (int i = 0; i < ep->nparts; i++) {
        partition_t *pt = ep->parts[i];
        offsets_t *o = pt->offsets;
        rd_kafka_topic_partition_list_t *l;
        rd_kafka_error_t *error;
        if (pt->revoking) continue;
        pipeline_drop(&ep->flow, o, 1);
        pt->offsets = offsets_new(o->topic, o->partition);
        o->revoked = 1;
        offsets_unref(o);
        pt->retry_offset = -1;
        if (pt->txn_base < 0) continue; /* nothing was taken */
        l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, pt->offsets->topic, pt->offsets->partition)->offset =
            pt->txn_base;
        if ((error = rd_kafka_seek_partitions(ep->rk, l, 5000))) {
            log_at(LOG_ERROR, "txn", EP_CTX(ep), "rewinding %s[%d] to %lld: %s",
                   pt->offsets->topic, (int)pt->offsets->partition, (long long)pt->txn_base,
                   rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        } else {
            pt->expect = pt->txn_base;
        }
        if (pt->waiting) {
            pt->waiting = 0;
            uv_timer_stop(pt->timer);
            rd_kafka_resume_partitions(ep->rk, l);
        }
        rd_kafka_topic_partition_list_destroy(l);
    }
}

/* The transaction committed: l's offsets are where a replay starts. */
static void committed(txn_t *t, const rd_kafka_topic_partition_list_t *l) {
    for (int i = 0; l && i < l->cnt; i++) {
        partition_t *pt = find_part(t->ep, l->elems[i].topic, l->elems[i].partition);
        if (!pt) continue;
        pt->txn_base = l->elems[i].offset;
        pt->offsets->stored = l->elems[i].offset;
    }
    t->commits++;
}

static void fail(txn_t *t, const char *what, const char *why) {
    endpoint_t *ep = t->ep;
    if (t->state == T_FAILED || t->state == T_CLOSED) return;
    t->state = T_FAILED;
    uv_timer_stop(&t->timer);
    uv_check_stop(&t->check);
    log_at(LOG_ERROR, "txn", EP_CTX(ep),
           "%s of transactional.id %s: %s; the endpoint stops, its open transaction uncommitted "
           "(another instance with the same transactional.id fences this one: give each "
           "instance its own, transaction = { instance = ... })",
           what, t->id, why);
    if (!ep->flow.stopped) t->ops->stop(ep);
}

/* A job of the thread ended (on the loop, or inline after waiting). */
static void job_done(txn_t *t) {
    rd_kafka_error_t *error;
    int job;
    if (!txn_thread_take(t, &job, &error)) return;

    if (t->cgmd) rd_kafka_consumer_group_metadata_destroy(t->cgmd);
    t->cgmd = NULL;
    if (t->state == T_FAILED || t->state == T_CLOSED) {
        if (error) rd_kafka_error_destroy(error);
        if (t->offsets) rd_kafka_topic_partition_list_destroy(t->offsets);
        t->offsets = NULL;
        return;
    }
    if (error && rd_kafka_error_is_fatal(error)) {
        fail(t, job == J_INIT ? "init_transactions" : "a transaction", rd_kafka_error_string(error));
    } else if (job == J_INIT) {
        if (error) {
            log_at(LOG_WARN, "txn", EP_CTX(t->ep), "init_transactions (%s): %s; trying again", t->id,
                   rd_kafka_error_string(error));
            txn_thread_submit(t, J_INIT);
        } else {
            log_at(LOG_INFO, "txn", EP_CTX(t->ep), "transactional.id %s ready", t->id);
            open_next(t);
        }
    } else if (job == J_COMMIT) {
        if (!error) {
            committed(t, t->offsets);
            log_at(LOG_DEBUG, "txn", EP_CTX(t->ep), "committed a transaction of %d message(s)",
                   t->taken);
            open_next(t);
        } else {
            log_at(LOG_WARN, "txn", EP_CTX(t->ep), "commit failed (%s): aborting and replaying",
                   rd_kafka_error_string(error));
            t->state = T_ABORT;
            txn_thread_submit(t, J_ABORT);
        }
    } else if (job == J_ABORT) {
        if (error) {
            /* Retriable (a timeout): the abort is tried again. */
            log_at(LOG_WARN, "txn", EP_CTX(t->ep), "abort: %s; trying again",
                   rd_kafka_error_string(error));
            txn_thread_submit(t, J_ABORT);
        } else {
            t->aborts++;
            rewind_parts(t);
            log_at(LOG_WARN, "txn", EP_CTX(t->ep),
                   "transaction aborted: its %d message(s) are delivered again", t->taken);
            open_next(t);
        }
    }
    if (error) rd_kafka_error_destroy(error);
    if (job == J_COMMIT && t->offsets) {
        rd_kafka_topic_partition_list_destroy(t->offsets);
        t->offsets = NULL;
    }
}

/* DRAIN: every message of the transaction is done (or nothing runs). */
static void try_commit(txn_t *t) {
    endpoint_t *ep = t->ep;
    if (t->state != T_DRAIN || ep->flow.ninflight > 0) return;
    uv_check_stop(&t->check);
    if (t->taken == 0) {
        open_next(t);
        return;
    }
    t->state = T_COMMIT;
    if (!(t->offsets = txn_offsets_write(t))) {
        t->state = T_ABORT;
        txn_thread_submit(t, J_ABORT);
        return;
    }
    t->cgmd = rd_kafka_consumer_group_metadata(ep->rk);
    txn_thread_submit(t, J_COMMIT);
}

static void on_check(uv_check_t *c) { try_commit(c->data); }

static void start_drain(txn_t *t) {
    if (t->state != T_OPEN) return;
    uv_timer_stop(&t->timer);
    t->state = T_DRAIN;
    uv_check_start(&t->check, on_check);
}

static void on_interval(uv_timer_t *timer) {
    txn_t *t = timer->data;
    if (t->state != T_OPEN) return;
    if (t->taken == 0) uv_timer_start(&t->timer, on_interval, (uint64_t)t->interval_ms, 0);
    else start_drain(t);
}

/* The thread's news: a job ended, or an assignment's offsets were read. */
static void on_async(uv_async_t *a) {
    txn_t *t = a->data;
    restore_t *r;
    job_done(t);
    if (!(r = txn_thread_restored(t))) return;
    if (!r->cancelled && t->state != T_CLOSED) {
        if (r->error[0]) {
            fail(t, "reading the offsets back", r->error);
        } else {
            char list[1024];
            log_partitions(r->parts, list, sizeof(list));
            log_at(LOG_INFO, "txn", EP_CTX(t->ep), "offsets read back: %s", list);
            t->ops->assign(t->ep, r->parts);
            for (int i = 0; i < r->parts->cnt; i++) {
                partition_t *pt = find_part(t->ep, r->parts->elems[i].topic,
                                                 r->parts->elems[i].partition);
                if (pt && r->parts->elems[i].offset >= 0) pt->txn_base = r->parts->elems[i].offset;
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(r->parts);
    free(r);
}

/* Wait for the thread's transaction jobs (a failed commit asks for an
 * abort: that one too) and take their results.  Meanwhile the producer's
 * events are served here: commit and abort wait for every delivery
 * report to be served. */
static void wait_jobs(txn_t *t) {
    for (;;) {
        if (!txn_thread_busy(t)) {
            job_done(t);
            if (!txn_thread_busy(t)) return;
            continue;
        }
        delivery_run_deferred(t->pub);
        serve(t);
        usleep(2000);
    }
}

/* The public side -------------------------------------------------------- */

sink_t *txn_sink(txn_t *t) { return &t->pub->sink; }

int txn_may_take(const txn_t *t) { return t->state == T_OPEN; }

void txn_taken(txn_t *t) {
    if (++t->taken >= t->messages) start_drain(t);
}

int txn_failed(const txn_t *t) { return t->state == T_FAILED; }

void txn_counts(const txn_t *t, uint64_t *commits, uint64_t *aborts) {
    *commits = t->commits;
    *aborts = t->aborts;
}

int txn_assign(txn_t *t, rd_kafka_topic_partition_list_t *parts) {
    restore_t *r;
    if (t->state == T_FAILED || t->state == T_CLOSED || parts->cnt == 0) return 0;
    r = calloc(1, sizeof(*r));
    r->parts = rd_kafka_topic_partition_list_copy(parts);
    for (int i = 0; i < r->parts->cnt; i++) r->parts->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
    txn_thread_restore(t, r);
    log_at(LOG_INFO, "txn", EP_CTX(t->ep), "reading the offsets of the assignment back from %s",
           TXN_OFFSETS_TOPIC);
    return 1;
}

void txn_revoke(txn_t *t) { txn_thread_cancel(t); }

void txn_end(txn_t *t) {
    endpoint_t *ep = t->ep;
    int64_t timeout = ep->client.env->drain_timeout_ms;
    uint64_t deadline = uv_hrtime() / 1000000 + (uint64_t)(timeout > 0 ? timeout : 10000);

    wait_jobs(t);
    if (t->state != T_OPEN && t->state != T_DRAIN) return;
    uv_timer_stop(&t->timer);
    uv_check_stop(&t->check);
    /* The publishes of what was handled: their reports finish messages. */
    while (rd_kafka_outq_len(t->pub->rk) > 0 && uv_hrtime() / 1000000 < deadline) {
        delivery_run_deferred(t->pub);
        serve(t);
        if (rd_kafka_outq_len(t->pub->rk) > 0) usleep(2000);
    }
    delivery_run_deferred(t->pub);
    serve(t);
    if (t->taken == 0) {
        /* Nothing in it: it stays open. */
        t->state = T_OPEN;
        return;
    }
    /* Committed when every message in it is done, else aborted: the
     * outputs of a message still in flight are in it, not its offset. */
    if (ep->flow.ninflight == 0 && (t->offsets = txn_offsets_write(t))) {
        t->state = T_COMMIT;
        t->cgmd = rd_kafka_consumer_group_metadata(ep->rk);
        log_at(LOG_INFO, "txn", EP_CTX(ep), "committing the open transaction (%d message(s))",
               t->taken);
        txn_thread_submit(t, J_COMMIT);
    } else {
        log_at(LOG_WARN, "txn", EP_CTX(ep),
               "aborting the open transaction: %d of its message(s) not done", ep->flow.ninflight);
        t->state = T_ABORT;
        txn_thread_submit(t, J_ABORT);
    }
    wait_jobs(t);
}

txn_t *txn_open(endpoint_t *ep, const txn_ops_t *ops, char *errbuf, size_t errlen) {
    const endpoint_conf_t *ec = ep->flow.conf;
    txn_t *t = calloc(1, sizeof(*t));
    publisher_t *p = calloc(1, sizeof(*p));
    rd_kafka_conf_t *kconf = NULL;
    rd_kafka_queue_t *q;
    char why[512], name[512];
    static const double bounds[] = {0.001, 0.01, 0.1, 1, 10, 60, 300};

    t->ep = ep;
    t->ops = ops;
    t->pub = p;
    t->env = *ep->client.env;
    t->env.fatal = NULL; /* a fatal error stops this endpoint alone (serve) */
    t->env.delivered = NULL;
    t->id = txn_id(ec);
    t->messages = ec->txn_messages > 0 ? ec->txn_messages : 1000;
    t->interval_ms = ec->txn_interval_ms > 0 ? ec->txn_interval_ms : 100;
    snprintf(name, sizeof(name), "%s (transactional)", ec->name);
    t->conf = (publisher_conf_t){.name = strdup(name), .topic = "", .where = ec->where,
                                 .key_fn = LUA_NOREF, .on_delivery = LUA_NOREF, .internal = 1};
    txn_thread_init(t);
    p->client.env = &t->env;
    p->sink.ops = &txn_sink_ops;
    p->sink.conf = &t->conf;
    p->wake.fds[0] = p->wake.fds[1] = -1;
    hist_init(&p->latency, bounds, (int)(sizeof(bounds) / sizeof(bounds[0])));

    if (!(kconf = kafka_conf(&t->env, NULL, why, sizeof(why)))) goto fail;
    /* The consumer's config does not reach this producer; a transaction
     * must outlive a commit interval and the handlers of its messages. */
    if (rd_kafka_conf_set(kconf, "transactional.id", t->id, why, sizeof(why)) ||
        rd_kafka_conf_set(kconf, "enable.idempotence", "true", why, sizeof(why)) ||
        rd_kafka_conf_set(kconf, "acks", "all", why, sizeof(why)) ||
        rd_kafka_conf_set(kconf, "partitioner", "murmur2_random", why, sizeof(why)) ||
        rd_kafka_conf_set(kconf, "message.max.bytes", "67108864", why, sizeof(why)))
        goto fail;
    rd_kafka_conf_set_events(kconf, RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_LOG);
    rd_kafka_conf_set_opaque(kconf, p);
    if (!(p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kconf, why, sizeof(why)))) goto fail;
    kconf = NULL;
    rd_kafka_set_log_queue(p->rk, NULL);
    q = rd_kafka_queue_get_main(p->rk);
    if (kafka_wake_open(&p->wake, ep->client.env->loop, q, on_wake, t, why, sizeof(why))) {
        rd_kafka_queue_destroy(q);
        goto fail;
    }
    rd_kafka_queue_destroy(q);
    kafka_wake_kick(&p->wake);
    if (!(t->reader_conf = txn_reader_conf(&t->env, why, sizeof(why)))) goto fail;
    uv_timer_init(ep->client.env->loop, &t->timer);
    uv_check_init(ep->client.env->loop, &t->check);
    uv_async_init(ep->client.env->loop, &t->async, on_async);
    t->timer.data = t->check.data = t->async.data = t;
    t->handles = 4;
    t->state = T_INIT;
    if (txn_thread_start(t, J_INIT)) {
        snprintf(why, sizeof(why), "cannot start its thread");
        t->state = T_CLOSED;
        txn_close(t);
        snprintf(errbuf, errlen, "transactional endpoint '%s': %s", ec->name, why);
        return NULL;
    }
    log_at(LOG_INFO, "txn", EP_CTX(ep),
           "transactional: transactional.id %s, a commit every %d message(s) or %lld ms", t->id,
           t->messages, (long long)t->interval_ms);
    return t;
fail:
    snprintf(errbuf, errlen, "transactional endpoint '%s': %s", ec->name, why);
    if (kconf) rd_kafka_conf_destroy(kconf);
    if (p->wake.poll.data) {
        /* The loop owns the poll handle now: close it with the rest. */
        t->state = T_CLOSED;
        t->handles = 1;
        t->thread = 0;
        txn_close(t);
        return NULL;
    }
    if (p->rk) rd_kafka_destroy(p->rk);
    kafka_wake_close_fds(&p->wake);
    if (t->reader_conf) rd_kafka_conf_destroy(t->reader_conf);
    free(t->conf.name);
    free(t->id);
    free(p);
    txn_thread_destroy(t);
    free(t);
    return NULL;
}

static void free_txn(uv_handle_t *h) {
    txn_t *t = h->data;
    if (--t->handles > 0) return;
    kafka_wake_close_fds(&t->pub->wake);
    for (int i = 0; i < t->pub->ndeferred; i++) message_release(&t->pub->deferred[i].m);
    free(t->pub->deferred);
    free(t->pub);
    free(t->conf.name);
    free(t->id);
    txn_thread_destroy(t);
    free(t);
}

void txn_close(txn_t *t) {
    int started = t->handles == 4;
    if (t->state != T_CLOSED && t->pub->rk) txn_end(t);
    t->state = T_CLOSED;
    txn_thread_stop(t);
    job_done(t);
    if (t->offsets) rd_kafka_topic_partition_list_destroy(t->offsets);
    t->offsets = NULL;
    if (t->cgmd) rd_kafka_consumer_group_metadata_destroy(t->cgmd);
    t->cgmd = NULL;
    if (t->reader_conf) rd_kafka_conf_destroy(t->reader_conf);
    t->reader_conf = NULL;
    if (t->pub->rk) {
        rd_kafka_queue_t *q = rd_kafka_queue_get_main(t->pub->rk);
        delivery_run_deferred(t->pub);
        rd_kafka_purge(t->pub->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        serve(t);
        rd_kafka_queue_io_event_enable(q, -1, NULL, 0);
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy(t->pub->rk);
        t->pub->rk = NULL;
    }
    if (started) {
        uv_close((uv_handle_t *)&t->timer, free_txn);
        uv_close((uv_handle_t *)&t->check, free_txn);
        uv_close((uv_handle_t *)&t->async, free_txn);
    }
    uv_close((uv_handle_t *)&t->pub->wake.poll, free_txn);
}
