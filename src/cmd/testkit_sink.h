/* testkit_sink.h - the test kit's pretend broker, for testkit.c and
 * testkit_flow.c: the harness's publishers are sinks that record each
 * publish, with the delivered message it was made for, and acknowledge it
 * (or fail it, when told to) when the harness asks. */
#ifndef LUKA_TESTKIT_SINK_H
#define LUKA_TESTKIT_SINK_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <lua.h>

#include "app/app.h"
#include "flow/flow.h"
#include "flow/inflight.h"
#include "lua/script.h"

/* One publish, as the pretend broker got it. */
typedef struct testkit_record {
    char *target, *topic;
    int32_t partition;
    char *key; /* NULL: none */
    size_t keylen;
    char *value; /* NULL: a tombstone */
    size_t len;
    rd_kafka_headers_t *headers;
    int item; /* the message of the batch it was made for, from 0; -1: none */
} testkit_record_t;

typedef struct testkit_pub testkit_pub_t;
typedef struct testkit_ack testkit_ack_t;

typedef struct testkit_sinks {
    sinks_t sinks; /* where the flows and luka.publish find the publishers */
    testkit_pub_t *pubs; /* one per publisher, then the internal one */
    int npubs;
    testkit_record_t *recs; /* every publish since the app loaded */
    int nrecs, caprecs;
    testkit_ack_t *acks; /* publishes not answered yet */
    int nacks, capacks;
    int fail_next; /* publishes the pretend broker will fail */
    /* Where an on_delivery hook that fails is told, besides the log
     * (may be NULL). */
    void (*hook_failed)(void *ud, const script_err_t *err);
    void *hook_ud;
    /* Which message of the batch being delivered inf stands for (from 0),
     * or -1; NULL between batches.  testkit_flow.c sets it. */
    int (*item_of)(void *ctx, const inflight_t *inf);
    void *item_ctx;
} testkit_sinks_t;

/* Set s up with a sink for each of app's publishers and one for luka's
 * dead letters and resends. */
void testkit_sinks_open(testkit_sinks_t *s, const app_t *app);

/* Let go of the sinks and every record. */
void testkit_sinks_close(testkit_sinks_t *s);

/* The pretend broker answers every publish waiting for it, in order;
 * answers can lead to more publishes (a dead letter after a failed
 * publish), which it answers too.  A publish made outside any message
 * (a timer's, the script's while loading) is reported to its publisher's
 * on_delivery: on partition 0 unless it named one, at the next offset of
 * that partition's pretend log. */
void testkit_sinks_ack(testkit_sinks_t *s);

/* Push r as a table { target, topic, partition, key, value, payload,
 * headers }, payload decoded when it is JSON. */
void testkit_push_record(lua_State *L, const testkit_record_t *r);

/* Push a sequence of the records from first on. */
void testkit_push_records(lua_State *L, const testkit_sinks_t *s, int first);

#endif
