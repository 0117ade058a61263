/* client.h - what every librdkafka client of luka shares: its configuration
 * (bootstrap servers, client id, the app's broker config, LUKA_KAFKA_*),
 * its log and error callbacks, and the IO-event pipe through which its
 * queue wakes the loop.  The runtime fills a kafka_env_t; the commands
 * that only talk to the cluster (tail, publish -t, topics, lag) fill one
 * with the brokers and the app alone. */
#ifndef LUKA_CLIENT_H
#define LUKA_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <uv.h>

#include "app/app.h"
#include "base/message.h"

struct endpoint;
struct publisher;

typedef struct kafka_env {
    uv_loop_t *loop;
    const char *brokers;
    const app_t *app;          /* broker config and client id; a reload swaps it */
    const char *statistics_ms; /* statistics.interval.ms to set, or NULL */
    int64_t drain_timeout_ms;  /* how long a revoke waits for publishes */
    /* Filled by the runtime (any may be NULL), called on the loop thread.
     * fatal: a client hit a fatal error.  flush: wait (bounded) for every
     * publisher's reports, before a revoke commits.  stopped: a final
     * failure stopped the endpoint. */
    void (*fatal)(void *ctx);
    void (*flush)(void *ctx, int timeout_ms);
    void (*stopped)(void *ctx, struct endpoint *ep);
    /* The app's lifecycle hooks, on the loop thread and never inside user
     * code (any may be NULL).  assigned: ep got parts.  revoking: parts
     * are about to go back to the group, their handlers done and offsets
     * committed.  stopping: ep stops, before it leaves its group.
     * delivered: the report of m, published outside any message (err 0:
     * delivered), for a publisher whose conf has on_delivery. */
    void (*assigned)(void *ctx, struct endpoint *ep, const rd_kafka_topic_partition_list_t *parts);
    void (*revoking)(void *ctx, struct endpoint *ep, const rd_kafka_topic_partition_list_t *parts);
    void (*stopping)(void *ctx, struct endpoint *ep);
    void (*delivered)(void *ctx, struct publisher *p, const message_t *m, rd_kafka_resp_err_t err);
    void *ctx;
} kafka_env_t;

/* Every client's opaque (an endpoint_t, a publisher_t) begins with this. */
typedef struct kafka_client {
    const kafka_env_t *env;
} kafka_client_t;

/* The configuration of a new client: bootstrap servers, client id, the
 * app's broker config, then extra (may be NULL), then LUKA_KAFKA_*, with
 * luka's log and error callbacks.  NULL with errbuf naming the property. */
rd_kafka_conf_t *kafka_conf(const kafka_env_t *env, const kvlist_t *extra, char *errbuf,
                            size_t errlen);

/* Build, then discard, the configuration of every client the app declares,
 * so a wrong property is reported before anything connects; refuse a
 * LUKA_KAFKA_* variable that sets a property luka sets itself.  Returns 0,
 * or -1 with errbuf naming the client and the property. */
int kafka_check_config(const kafka_env_t *env, char *errbuf, size_t errlen);

/* Call cb for each LUKA_KAFKA_* variable of the environment with the
 * variable's name (varlen bytes of var), the librdkafka property it sets
 * and its value, in the environment's order. */
typedef void (*kafka_env_cb)(void *ud, const char *var, size_t varlen, const char *property,
                             const char *value);
void kafka_env_each(kafka_env_cb cb, void *ud);

/* The brokers to use (malloc'd): flag (--brokers), else the app's
 * luka.broker, else KAFKA_BROKERS, else localhost:9092. */
char *kafka_brokers(const char *flag, const app_t *app);

/* Carry out a rebalance (err: assign or revoke parts) with the calls its
 * protocol needs, eager or cooperative.  Returns 0, or -1 with why
 * librdkafka refused it in errbuf (after the group session was lost, say:
 * what is fetched then no longer matches the caller's records). */
int kafka_rebalance_apply(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t *parts, char *errbuf, size_t errlen);

/* A client queue's wake-up: librdkafka writes to a pipe when the queue
 * goes from empty to non-empty, and the loop polls the pipe. */
typedef struct kafka_wake {
    int fds[2];
    uv_poll_t poll;
} kafka_wake_t;

/* Enable the IO event of q on a new pipe, polled by loop with cb (whose
 * handle's data is data).  Returns 0, or -1 with errbuf. */
int kafka_wake_open(kafka_wake_t *w, uv_loop_t *loop, rd_kafka_queue_t *q, uv_poll_cb cb,
                    void *data, char *errbuf, size_t errlen);

/* Empty the pipe, before serving the queue: an event that arrives while
 * serving writes again and wakes the loop again. */
void kafka_wake_drain(kafka_wake_t *w);

/* Wake the loop as the queue would. */
void kafka_wake_kick(kafka_wake_t *w);

/* Close the pipe's ends; call it once the poll handle is closed. */
void kafka_wake_close_fds(kafka_wake_t *w);

#endif
