/* flow.h - an endpoint's message flow as the layers above see it: where its
 * messages come from (a source), where its publishes go (sinks), and what
 * it counted.  The Kafka consumer and the test kit each fill in a source;
 * the Kafka producer and the test kit each implement a sink.  The flow
 * calls them and knows nothing else of either. */
#ifndef LUKA_FLOW_H
#define LUKA_FLOW_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <lua.h>
#include <uv.h>

#include "app/app.h"
#include "base/hist.h"
#include "base/message.h"
#include "stores/dedup.h"

struct batcher;
struct inflight;
struct publish_tag;
struct sched;
typedef struct flow flow_t;
typedef struct sink sink_t;

/* Where publishes go.  send queues one message to topic (NULL: the sink's
 * own); value is malloc'd and becomes the sink's, headers too on success.
 * tag is what the delivery report brings back to the flow
 * (pipeline_publish_done), or NULL for a publish made outside any message.
 * Returns 0, or -1 with errbuf set (value freed, headers still the
 * caller's). */
typedef struct sink_ops {
    int (*send)(sink_t *s, const char *topic, int32_t partition, const char *key, size_t keylen,
                char *value, size_t len, rd_kafka_headers_t *headers, struct publish_tag *tag,
                char *errbuf, size_t errlen);
} sink_ops_t;

struct sink {
    const sink_ops_t *ops;
    const publisher_conf_t *conf; /* its name, topic and key rule */
};

/* The sinks a flow and luka.publish may send to: the app's publishers by
 * name, and luka's own for dead letters to plain topics and resends (opened
 * on first use; NULL with errbuf when it cannot be).  Filled by the
 * runtime, or by the test kit. */
typedef struct sinks {
    sink_t *(*find)(void *ctx, const char *name);
    sink_t *(*internal)(void *ctx, char *errbuf, size_t errlen);
    void *ctx;
} sinks_t;

/* Where messages come from, and what that side must hear back. */
typedef struct source_ops {
    /* Deliver m again after delay_ms, with the handler calls (attempts) and
     * deliveries (rounds) it had; nothing after it in its partition may be
     * handled first.  m is only read during the call. */
    void (*redeliver)(flow_t *f, const message_t *m, int attempts, int rounds, int64_t delay_ms);
    /* A final failure stopped the endpoint: it takes no more messages. */
    void (*stop)(flow_t *f);
    /* Some partition's commit offset moved. */
    void (*progress)(flow_t *f);
    /* A message left the flow; done: its offset may be committed. */
    void (*finished)(flow_t *f, const struct inflight *inf, int done);
    /* luka.seek: read topic[partition] from offset on; what waits in that
     * partition is dropped and nothing at or after offset is committed
     * until delivered again.  NULL where there are no partitions (the
     * test kit).  Returns 0, or -1 with errbuf. */
    int (*seek)(flow_t *f, const char *topic, int32_t partition, int64_t offset, char *errbuf,
                size_t errlen);
} source_ops_t;

/* What the endpoint decided, counted once per message and decision. */
typedef struct endpoint_stats {
    uint64_t consumed, handled, failed, retried, dead_lettered, deduplicated, resent,
        released, ignored, stopped, paused;
    uint64_t rebalances; /* assignments and revocations */
    /* Seconds per handler call, with buckets up to the endpoint's time
     * limit (as it was when the flow opened). */
    hist_t duration;
    /* Seconds from the message's timestamp to the start of its handler,
     * once per delivery (a message without a timestamp is not counted). */
    hist_t age;
    /* Messages per batch handed to handle_batch, counted at its first
     * call (after dedup); empty for an endpoint with handle. */
    hist_t batch_size;
} endpoint_stats_t;

/* One of the last failures of an endpoint, for the status page. */
#define FLOW_FAILURES 20
typedef struct flow_failure {
    uint64_t seq;    /* failures in the process before it and it: orders every endpoint's */
    int64_t time_ms; /* wall clock, milliseconds since the epoch */
    char topic[256];
    int32_t partition;
    int64_t offset;
    int attempt;
    char error[512]; /* cut short when longer */
} flow_failure_t;

struct flow {
    const endpoint_conf_t *conf; /* the current definition: a reload swaps it */
    lua_State *L;                /* the state its calls run in: swapped with conf */
    dedup_t *dedup;              /* NULL without dedup */
    const source_ops_t *source;
    const sinks_t *sinks;
    uv_loop_t *loop;            /* where handlers wait; NULL: they cannot */
    struct sched *sched;        /* which message runs next */
    struct inflight *inflight;  /* messages in flight, newest first */
    struct batcher *batcher;    /* with handle_batch: its batches (batch.c); else NULL */
    /* Told of each call of handle_batch and its size; NULL: nobody asks
     * (the test kit reports the sizes). */
    void (*on_batch)(flow_t *f, int size);
    int ninflight;
    int stopped; /* takes no more messages: failures are left uncommitted */
    int retry_in_memory; /* a delayed retry waits in memory, not by a seek back */
    /* NULL, or where every publish made for its messages goes, with the
     * topic of the publisher named (a transactional endpoint's producer:
     * handler outputs, dead letters and resends in its transactions). */
    sink_t *txn;
    /* How long a retry waiting in memory waits, given its record (whose
     * delay_ms is the policy's backoff); NULL: that backoff.  The test
     * kit, whose clock is virtual, retries at once, and parks a release
     * until the end of the delivery to show it once. */
    int64_t (*retry_wait)(flow_t *f, const struct inflight *again);
    int pumping, pump_again; /* starting what may run (pipeline.c) */
    endpoint_stats_t stats;
    /* Its last FLOW_FAILURES handler failures (outcome.c), a ring whose
     * next slot is failures_next; nfailures are filled. */
    flow_failure_t failures[FLOW_FAILURES];
    int nfailures, failures_next;
    flow_t *next_open; /* the process's open flows, for luka.seek (pipeline.c) */
};

#endif
