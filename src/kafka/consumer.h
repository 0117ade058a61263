/* consumer.h - an endpoint: one librdkafka group consumer driven by the
 * libuv loop, feeding its flow.  Its queue wakes the loop through an
 * IO-event pipe; messages are drained in bounded batches into the
 * pipeline; it is the flow's source: it delivers a message again after a
 * backoff (pause, then seek back), stores done offsets for librdkafka's
 * periodic commit, and stops on a final failure. */
#ifndef LUKA_CONSUMER_H
#define LUKA_CONSUMER_H

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
    uv_check_t room;    /* while held: resumes once the buffer is half empty */
    int held;           /* every partition paused: the buffer is full */
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
} endpoint_t;

/* Open the endpoint conf, whose calls run in L and whose publishes go to
 * sinks.  NULL with errbuf naming the endpoint. */
endpoint_t *consumer_open(const kafka_env_t *env, const endpoint_conf_t *conf, lua_State *L,
                          const sinks_t *sinks, char *errbuf, size_t errlen);

/* Take no more messages. */
void consumer_stop(endpoint_t *ep);

/* Wait (bounded) for the publishes of what was handled, commit the done
 * offsets, let go of what is still in flight (uncommitted) and leave the
 * group, keeping the endpoint, its counts and its client until
 * consumer_close.  For an endpoint a final failure stopped. */
void consumer_leave(endpoint_t *ep);

/* Commit, leave the group, and free the endpoint (its handles are released
 * by the loop). */
void consumer_close(endpoint_t *ep);

#endif
