/* endpoint.h - what an endpoint is made of: its consumer, its flow, its
 * assigned partitions and the loop handles that drive them.  Shared by
 * consumer.c (the consumer) and partition.c (the partitions). */
#ifndef LUKA_ENDPOINT_H
#define LUKA_ENDPOINT_H

#include <librdkafka/rdkafka.h>
#include <uv.h>

#include "app/app.h"
#include "base/offsets.h"
#include "flow/flow.h"
#include "kafka/client.h"

/* An assigned partition. */
typedef struct partition {
    struct endpoint *ep;
    offsets_t *offsets; /* a reference: messages in flight may outlive us */
    /* A message waiting to be delivered again, and the attempts it had. */
    int64_t retry_offset; /* -1 when none */
    int retry_attempts, retry_rounds;
    int waiting;     /* paused until the timer fires */
    int revoking;    /* revoked: waits for its running handlers, takes nothing */
    int64_t expect;  /* the offset sought back to, until a message arrives; else -1 */
    int64_t txn_base; /* transactional: where the open transaction began reading it; else -1 */
    uv_timer_t *timer;
} partition_t;

typedef struct endpoint {
    kafka_client_t client; /* first: librdkafka's opaque for this consumer */
    flow_t flow;           /* its conf, its stats, its messages in flight */
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    kafka_wake_t wake;
    uv_idle_t idle;   /* continues a drain cut short by the batch budget */
    uv_timer_t tick;  /* polls now and then, so paused partitions keep us in the group */
    uv_check_t store; /* hands done offsets to librdkafka after a loop turn */
    uint64_t stored_at; /* the loop's time (ms) they were last handed over */
    uv_check_t room;    /* while held: takes messages again once the buffer is half empty */
    int held;           /* the buffer is full: no message is taken */
    int held_paused;    /* held long enough that the partitions are paused too */
    uint64_t held_at;   /* when it began (loop ms) */
    uv_idle_cb idle_cb; /* what idle runs: the drain */
    int ticked;         /* this drain is the one-second tick's */
    uint64_t drained_at; /* when a drain last ended (uv_hrtime) */
    rd_kafka_topic_partition_list_t *revoking; /* a revoke waiting for handlers */
    uint64_t revoke_at;      /* when it began (loop ms) */
    uv_timer_t revoke_timer; /* checks on it */
    partition_t **parts;
    int nparts, capparts;
    int last; /* index of the last partition looked up */
    int joined;  /* has had an assignment (maybe empty) from its group */
    char *kafka_stats; /* librdkafka's latest statistics JSON, or NULL */
    int closing; /* handles still to be closed */
    int halted;  /* stopped by a final failure (the rest of the process goes on) */
    int left;    /* has left its group (consumer_leave) */
    int commit_first; /* commit a partition's first done offsets at once (store_offsets) */
    int opened;       /* consumer_open succeeded */
    int said_stop;    /* its stopping hook ran (consumer_stopping) */
    struct txn *txn;  /* transactional = true: its transactions (txn.h); else NULL */
} endpoint_t;

#endif
