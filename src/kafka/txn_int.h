/* txn_int.h - what the three files of an endpoint's transactions share,
 * and no one else sees: the txn struct, its states and the thread's jobs.
 * txn.c runs the transaction on the loop, txn_offsets.c writes and reads
 * back __luka_offsets, txn_thread.c runs librdkafka's blocking calls.
 * Each includes txn.h first; this one does not, so that txn.c and txn.h,
 * one module to `make lint`, and this header form no include cycle. */
#ifndef LUKA_TXN_INT_H
#define LUKA_TXN_INT_H

#include <pthread.h>

#include "kafka/endpoint.h"
#include "kafka/producer.h"

#define EP_CTX(ep) LOG_ENDPOINT((ep)->flow.conf->name)

/* The states, on the loop (txn.c says how they follow each other). */
enum { T_INIT, T_OPEN, T_DRAIN, T_COMMIT, T_ABORT, T_FAILED, T_CLOSED };
/* What the thread is asked to do. */
enum { J_NONE, J_INIT, J_COMMIT, J_ABORT };

/* What was read back from the offsets topic for one assignment. */
typedef struct restore {
    rd_kafka_topic_partition_list_t *parts; /* the assignment; offsets filled in */
    volatile int cancelled;
    int done;
    char error[1024];
} restore_t;

struct txn {
    endpoint_t *ep;
    const struct txn_ops *ops;
    publisher_t *pub; /* the producer, seen as a publisher by delivery.c */
    publisher_conf_t conf;
    kafka_env_t env; /* ep's, but for fatal errors and reports outside messages */
    char *id;
    int messages;
    int64_t interval_ms;
    int state;
    int taken;              /* messages in the open transaction */
    uint64_t commits, aborts;
    uv_timer_t timer;       /* the commit interval */
    uv_check_t check;       /* DRAIN: looks after each loop turn whether all is done */
    uv_async_t async;       /* the thread finished something */
    int handles;            /* handles still to be closed */
    /* The thread and what it is asked, under mu. */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int job, running, quit;
    rd_kafka_topic_partition_list_t *offsets;  /* J_COMMIT: what it commits */
    rd_kafka_consumer_group_metadata_t *cgmd;  /* J_COMMIT */
    rd_kafka_error_t *result;                  /* the job's error, or NULL */
    int finished;                              /* a job ended; its result waits */
    int finished_job;
    restore_t *restore;                        /* the assignment being read back */
    rd_kafka_conf_t *reader_conf;              /* the offsets reader's, duplicated per read */
};

/* txn_offsets.c.  The offsets of the open transaction: the list for
 * send_offsets_to_transaction, their records produced to the offsets
 * topic in the transaction.  NULL (logged) when one cannot be queued. */
rd_kafka_topic_partition_list_t *txn_offsets_write(struct txn *t);

/* txn_offsets.c.  Fill r's offsets from the offsets topic and the group's
 * committed ones, or r->error.  Blocking: the thread's. */
void txn_offsets_read_back(struct txn *t, restore_t *r);

/* txn_thread.c.  Its mutex and condition, made first, destroyed last. */
void txn_thread_init(struct txn *t);
void txn_thread_destroy(struct txn *t);

/* txn_thread.c.  Start the thread with job to do first.  Returns 0, or -1
 * (t->thread is 0 then). */
int txn_thread_start(struct txn *t, int job);

/* txn_thread.c.  Stop and join the thread, if it runs, and free an
 * assignment still being read back.  Blocks for the job it is running. */
void txn_thread_stop(struct txn *t);

/* txn_thread.c.  Ask the thread to do job (t->offsets and t->cgmd set
 * first for J_COMMIT). */
void txn_thread_submit(struct txn *t, int job);

/* txn_thread.c.  Whether a job is asked or running. */
int txn_thread_busy(struct txn *t);

/* txn_thread.c.  Take the result of a job that ended: 1 with job and
 * error (NULL, or the caller's to destroy), else 0. */
int txn_thread_take(struct txn *t, int *job, rd_kafka_error_t **error);

/* txn_thread.c.  Have r read back on the thread, in place of an older
 * assignment (waited for, then freed). */
void txn_thread_restore(struct txn *t, restore_t *r);

/* txn_thread.c.  Cancel the assignment being read back, if any. */
void txn_thread_cancel(struct txn *t);

/* txn_thread.c.  The assignment read back, now the caller's, or NULL. */
restore_t *txn_thread_restored(struct txn *t);

#endif
