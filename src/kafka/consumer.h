/* consumer.h - an endpoint: one librdkafka group consumer driven by the
 * libuv loop.  Its queue wakes the loop through an IO-event pipe; messages
 * are drained in bounded batches into the pipeline; done offsets are stored
 * for librdkafka's periodic commit; a partition can be paused and sought
 * back to deliver a message again after a backoff. */
#ifndef LUKA_CONSUMER_H
#define LUKA_CONSUMER_H

#include <librdkafka/rdkafka.h>
#include <uv.h>

#include "app/app.h"
#include "stores/dedup.h"
#include "runtime/host.h"
#include "base/message.h"
#include "base/offsets.h"
#include "flow/pipeline.h"

/* An assigned partition. */
typedef struct partition {
    struct endpoint *ep;
    offsets_t *offsets; /* a reference: messages in flight may outlive us */
    /* A message waiting to be delivered again, and the attempts it had. */
    int64_t retry_offset; /* -1 when none */
    int retry_attempts, retry_rounds;
    int waiting;     /* paused until the timer fires */
    int64_t expect;  /* the offset sought back to, until a message arrives; else -1 */
    uv_timer_t *timer;
} partition_t;

/* Upper bounds, in seconds, of the handler duration histogram's buckets. */
#define DURATION_BUCKETS 12
extern const double duration_bounds[DURATION_BUCKETS];

/* What the endpoint decided, counted once per message and decision. */
typedef struct endpoint_stats {
    uint64_t consumed, handled, failed, retried, dead_lettered, deduplicated, resent,
        released, ignored, stopped;
    uint64_t rebalances; /* assignments and revocations */
    uint64_t duration_count[DURATION_BUCKETS + 1]; /* per bucket, the last is +Inf */
    double duration_sum;                           /* seconds in handlers */
} endpoint_stats_t;

typedef struct endpoint {
    host_t *host;
    const endpoint_conf_t *conf;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    int fds[2]; /* the queue's IO-event pipe */
    uv_poll_t poll;
    uv_idle_t idle;   /* continues a drain cut short by the batch budget */
    uv_timer_t tick;  /* polls now and then, so paused partitions keep us in the group */
    partition_t **parts;
    int nparts, capparts;
    int last; /* index of the last partition looked up */
    inflight_t *inflight;
    int ninflight;
    dedup_t *dedup;
    int joined;  /* has had an assignment (maybe empty) from its group */
    char *kafka_stats; /* librdkafka's latest statistics JSON, or NULL */
    int stopped; /* takes no more messages */
    int closing; /* handles still to be closed */
    int dirty;   /* some partition's commit offset moved */
    endpoint_stats_t stats;
} endpoint_t;

endpoint_t *consumer_open(host_t *h, const endpoint_conf_t *conf, char *errbuf,
                          size_t errlen);

/* The assigned partition, or NULL. */
partition_t *consumer_partition(endpoint_t *ep, const char *topic, int32_t partition);

/* The partition, assigned now if it was not (the test kit's way in). */
partition_t *consumer_assign(endpoint_t *ep, const char *topic, int32_t partition);

/* Whether a message of pt at offset should be handled now; a message
 * fetched while pt waits for a retry is dropped (it comes again after the
 * seek back).  The first message after the seek is taken even when its
 * offset is not the one sought: that one is gone, and what was skipped is
 * logged. */
int consumer_accept(partition_t *pt, int64_t offset);

/* Deliver the message at offset again after delay_ms: pause the partition,
 * then seek back and resume.  Other partitions keep flowing. */
void consumer_redeliver(partition_t *pt, int64_t offset, int attempts, int rounds,
                        int64_t delay_ms);

/* Hand done offsets to librdkafka, which commits them periodically. */
void consumer_store(endpoint_t *ep);

/* Take no more messages. */
void consumer_stop(endpoint_t *ep);

/* Resume draining after back-pressure eased. */
void consumer_kick(endpoint_t *ep);

/* Commit, leave the group, and free the endpoint (its handles are released
 * by the loop). */
void consumer_close(endpoint_t *ep);

#endif
