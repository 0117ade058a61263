/* txn.h - the Kafka transactions of an endpoint declared with
 * transactional = true (README, "Exactly-once"): its own transactional,
 * idempotent producer, through which every publish of its messages goes
 * (handler outputs, dead letters, resends); a commit every N messages or
 * T ms that writes the input offsets in the same transaction (to the
 * group, with send_offsets_to_transaction, and to luka's offsets topic,
 * which the embedded broker's mock needs); an abort that rewinds and
 * replays; the offsets read back on assignment.  librdkafka's blocking
 * transaction calls run on a thread of the endpoint's own, never on the
 * loop, except when partitions go back to the group or the endpoint
 * leaves: then the open transaction ends before they go (documented as
 * blocking, like the flush already done there). */
#ifndef LUKA_TXN_H
#define LUKA_TXN_H

#include "kafka/endpoint.h"

/* luka's offsets topic: one record per group, topic and partition, keyed
 * "<topic>/<partition>/<group>", valued with the next offset to read. */
#define TXN_OFFSETS_TOPIC "__luka_offsets"

typedef struct txn txn_t;

/* The configuration of a reader of the offsets topic: read_committed,
 * partition EOFs reported, no log lines or errors served.  NULL with why. */
rd_kafka_conf_t *txn_reader_conf(const kafka_env_t *env, char *why, size_t len);

/* Read the offsets topic to its end (its last stable offset) with a new
 * consumer of conf (which it takes), and set the offset of each of parts
 * that group has a record for to the last one; the others are left as
 * they are.  Blocking: a thread's, or a command's.  cancel (may be NULL)
 * stops it.  Returns 0, or -1 with errbuf. */
int txn_read_offsets(rd_kafka_conf_t *conf, const char *group,
                     rd_kafka_topic_partition_list_t *parts, const volatile int *cancel,
                     char *errbuf, size_t errlen);

/* The transactional.id of an endpoint: "<group>.<endpoint>.<instance>"
 * (malloc'd), instance being the conf's, else the host name. */
char *txn_id(const endpoint_conf_t *conf);

/* What txn.c asks of the endpoint's consumer (filled by consumer.c):
 * assign parts, at the offsets given (partitions_assign); stop the
 * endpoint, as a final failure does. */
typedef struct txn_ops {
    void (*assign)(endpoint_t *ep, rd_kafka_topic_partition_list_t *parts);
    void (*stop)(endpoint_t *ep);
} txn_ops_t;

/* Open ep's transactions (its producer; init_transactions starts on the
 * thread).  NULL with errbuf. */
txn_t *txn_open(endpoint_t *ep, const txn_ops_t *ops, char *errbuf, size_t errlen);

/* The sink every publish of ep's messages goes to. */
sink_t *txn_sink(txn_t *t);

/* Whether ep may take a message now: not before the first transaction
 * began, nor while one commits or aborts. */
int txn_may_take(const txn_t *t);

/* ep took a message into the open transaction. */
void txn_taken(txn_t *t);

/* An assignment: the offsets of parts are read back from the offsets topic
 * (on the thread) before ep assigns them (partitions_assign).  Returns 1
 * when it took the assignment over. */
int txn_assign(txn_t *t, rd_kafka_topic_partition_list_t *parts);

/* A revoke: forget an assignment still reading its offsets. */
void txn_revoke(txn_t *t);

/* End the open transaction now (blocking, bounded): commit it when every
 * message in it is done, else abort it and rewind.  Before partitions go
 * back to the group and before ep leaves it. */
void txn_end(txn_t *t);

/* Whether it was fenced or failed for good (the endpoint stopped). */
int txn_failed(const txn_t *t);

/* Commits and aborts so far, for the log and the status. */
void txn_counts(const txn_t *t, uint64_t *commits, uint64_t *aborts);

/* End the open transaction (txn_end), stop the thread, close the
 * producer; the handles are freed by the loop. */
void txn_close(txn_t *t);

#endif
