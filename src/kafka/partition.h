/* partition.h - an endpoint's assigned partitions, as its consumer uses
 * them: lookup, whether a fetched message is taken, a delayed retry's
 * pause and seek back, the pause of a full buffer, rebalances, and the
 * hand-over of done offsets. */
#ifndef LUKA_PARTITION_H
#define LUKA_PARTITION_H

#include "kafka/endpoint.h"

/* The partition topic[partition] of ep, or NULL when not assigned. */
partition_t *partition_find(endpoint_t *ep, const char *topic, int32_t partition);

/* Whether a message of pt at offset is handled now: not while pt waits
 * for a retry or is being revoked (it comes again after the seek, or to
 * the next owner). */
int partition_accept(partition_t *pt, int64_t offset);

/* Deliver the message at offset again after delay_ms: pause pt, then seek
 * back and resume.  Other partitions keep flowing. */
void partition_redeliver(partition_t *pt, int64_t offset, int attempts, int rounds,
                         int64_t delay_ms);

/* luka.seek: read pt from offset on, through the same pause and seek as
 * a redelivery, at once (on the next loop turn).  Nothing tracked at or
 * after offset is committed until delivered again. */
void partition_seek(partition_t *pt, int64_t offset);

void partition_free(partition_t *pt);

/* Hand the offsets done since the last time to librdkafka, which commits
 * them every auto.commit.interval.ms. */
void partitions_store(endpoint_t *ep);

/* The buffer is full: take no more messages until it is half empty. */
void partitions_hold(endpoint_t *ep);

/* Held for HOLD_PAUSE_MS: pause the partitions too (the tick's polls
 * would otherwise take a message each). */
#define HOLD_PAUSE_MS 10000
void partitions_held_long(endpoint_t *ep);

/* librdkafka's rebalance callback for ep (its opaque). */
void partitions_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *parts, void *opaque);

/* Assign parts (offsets as given, RD_KAFKA_OFFSET_INVALID: the committed
 * one) and tell the app: what the rebalance callback does at once, or
 * txn.c once it read the offsets back. */
void partitions_assign(endpoint_t *ep, rd_kafka_topic_partition_list_t *parts);

/* End a revoke that waits for handlers now; with abandon, those still
 * running are given up, uncommitted. */
void partitions_finish_revoke(endpoint_t *ep, int abandon);

#endif
