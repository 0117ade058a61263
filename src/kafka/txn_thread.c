/* txn_thread.c - the thread of an endpoint's transactions (see txn_int.h):
 * librdkafka's transaction calls block for up to CALL_MS, and reading the
 * offsets topic back for seconds, so they run here, never on the loop.
 * It takes one job at a time (init, commit, abort) and, between jobs, the
 * assignment to read back; each end is told to the loop by t->async. */
#include <stdlib.h>

#include "kafka/txn.h"
#include "kafka/txn_int.h"

/* How long a transaction call may block the thread. */
#define CALL_MS 30000

static void *thread_main(void *arg) {
    txn_t *t = arg;
    rd_kafka_t *rk = t->pub->rk;

    pthread_mutex_lock(&t->mu);
    for (;;) {
        int job;
        restore_t *r = NULL;
        rd_kafka_error_t *error = NULL;

        while (!t->quit && t->job == J_NONE && !(t->restore && !t->restore->done))
            pthread_cond_wait(&t->cond, &t->mu);
        if (t->quit) break;
        job = t->job;
        if (job == J_NONE) r = t->restore;
        t->running = job != J_NONE;
        pthread_mutex_unlock(&t->mu);

        if (r) {
            txn_offsets_read_back(t, r);
        } else if (job == J_INIT) {
            error = rd_kafka_init_transactions(rk, CALL_MS);
            if (!error) error = rd_kafka_begin_transaction(rk);
        } else if (job == J_COMMIT) {
            if (t->offsets->cnt)
                error = rd_kafka_send_offsets_to_transaction(rk, t->offsets, t->cgmd, CALL_MS);
            if (!error) error = rd_kafka_commit_transaction(rk, CALL_MS);
            if (!error) error = rd_kafka_begin_transaction(rk);
        } else if (job == J_ABORT) {
            error = rd_kafka_abort_transaction(rk, CALL_MS);
            if (!error) error = rd_kafka_begin_transaction(rk);
        }

        pthread_mutex_lock(&t->mu);
        t->running = 0;
        if (r) {
            r->done = 1;
        } else {
            t->job = J_NONE;
            t->finished = 1;
            t->finished_job = job;
            t->result = error;
        }
        pthread_cond_broadcast(&t->cond);
        uv_async_send(&t->async);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

void txn_thread_init(txn_t *t) {
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cond, NULL);
}

void txn_thread_destroy(txn_t *t) {
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cond);
}

int txn_thread_start(txn_t *t, int job) {
    t->job = job;
    if (pthread_create(&t->thread, NULL, thread_main, t) != 0) {
        t->thread = 0;
        return -1;
    }
    return 0;
}

static void free_restore(restore_t *r) {
    rd_kafka_topic_partition_list_destroy(r->parts);
    free(r);
}

void txn_thread_stop(txn_t *t) {
    if (t->thread) {
        pthread_mutex_lock(&t->mu);
        t->quit = 1;
        if (t->restore) t->restore->cancelled = 1;
        pthread_cond_broadcast(&t->cond);
        pthread_mutex_unlock(&t->mu);
        pthread_join(t->thread, NULL);
    }
    if (t->restore) {
        free_restore(t->restore);
        t->restore = NULL;
    }
}

void txn_thread_submit(txn_t *t, int job) {
    pthread_mutex_lock(&t->mu);
    t->job = job;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->mu);
}

int txn_thread_busy(txn_t *t) {
    int busy;
    pthread_mutex_lock(&t->mu);
    busy = t->job != J_NONE || t->running;
    pthread_mutex_unlock(&t->mu);
    return busy;
}

int txn_thread_take(txn_t *t, int *job, rd_kafka_error_t **error) {
    pthread_mutex_lock(&t->mu);
    if (!t->finished) {
        pthread_mutex_unlock(&t->mu);
        return 0;
    }
    t->finished = 0;
    *job = t->finished_job;
    *error = t->result;
    t->result = NULL;
    pthread_mutex_unlock(&t->mu);
    return 1;
}

void txn_thread_restore(txn_t *t, restore_t *r) {
    pthread_mutex_lock(&t->mu);
    if (t->restore) t->restore->cancelled = 1; /* freed by on_async */
    /* One restore at a time: a new assignment replaces an older one. */
    if (t->restore && t->restore->done) {
        free_restore(t->restore);
        t->restore = NULL;
    }
    if (t->restore) {
        pthread_mutex_unlock(&t->mu);
        /* Wait for the older one to notice; it reads for at most 100 ms more. */
        pthread_mutex_lock(&t->mu);
        while (t->restore && !t->restore->done) pthread_cond_wait(&t->cond, &t->mu);
        if (t->restore) free_restore(t->restore);
    }
    t->restore = r;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->mu);
}

void txn_thread_cancel(txn_t *t) {
    pthread_mutex_lock(&t->mu);
    if (t->restore) t->restore->cancelled = 1;
    pthread_mutex_unlock(&t->mu);
}

restore_t *txn_thread_restored(txn_t *t) {
    restore_t *r = NULL;
    pthread_mutex_lock(&t->mu);
    if (t->restore && t->restore->done) {
        r = t->restore;
        t->restore = NULL;
    }
    pthread_mutex_unlock(&t->mu);
    return r;
}
