/* host.h - the running luka process: one libuv loop, the app it runs, its
 * publishers and endpoints, signals and the shutdown sequence. */
#ifndef LUKA_HOST_H
#define LUKA_HOST_H

#include <stdint.h>

#include <uv.h>

#include "app/app.h"
#include "kafka/broker.h"

struct publisher;
struct endpoint;
struct inflight;

typedef struct run_opts {
    const char *app_path;
    const char **only; /* endpoint names given on the command line */
    int nonly;
    const char *brokers; /* --brokers */
    int embedded_broker;
    int watch; /* --watch: reload when the app's files change */
    const char *http; /* --http HOST:PORT or LUKA_HTTP; NULL: no HTTP endpoint */
    int64_t drain_timeout_ms;
} run_opts_t;

typedef struct host {
    uv_loop_t *loop;
    app_t *app;
    char *brokers;
    broker_t *embedded;
    struct publisher **pubs; /* one per app->pubs entry, same order */
    int npubs;
    struct publisher *internal; /* see host_internal_publisher */
    struct endpoint **eps;
    int neps;
    struct inflight *current; /* message whose handler is running */
    const run_opts_t *opts;
    struct signals *stop_signals; /* SIGINT and SIGTERM: see signals.h */
    uv_signal_t sigchld, sighup;
    int signals;
    int stopping;
    int exit_code;
    int64_t drain_timeout_ms;
    uint64_t reloads, reload_failures;
    struct testkit *test; /* under `luka test`: clients have no Kafka */
    struct metrics *metrics; /* --http: see metrics.h; NULL when off */
} host_t;

/* `luka run`: returns the process exit code. */
int host_run(const run_opts_t *opts);

/* Start the orderly shutdown, with the exit code the process ends with. */
void host_stop(host_t *h, int exit_code);

struct publisher *host_publisher(host_t *h, const char *name);

/* Whether the endpoint runs: all do unless some were named on the command
 * line. */
int host_selected(const host_t *h, const char *name);

/* The producer for dead letters to plain topics and for resends, opened on
 * first use with the broker-wide config.  NULL with errbuf on failure. */
struct publisher *host_internal_publisher(host_t *h, char *errbuf, size_t errlen);

/* librdkafka configuration common to every client: bootstrap servers,
 * client id, the app's broker config, then extra (may be NULL).  Returns
 * NULL with errbuf naming the property. */
struct rd_kafka_conf_s *host_kafka_conf(host_t *h, const kvlist_t *extra,
                                        char *errbuf, size_t errlen);

/* Flush every publisher, waiting at most timeout_ms in all. */
void host_flush(host_t *h, int timeout_ms);

/* Store the done offsets of every endpoint whose offsets moved. */
void host_store_offsets(host_t *h);

/* Build, then discard, the librdkafka configuration of every client the
 * app declares, so a wrong property is reported before anything connects.
 * Returns 0, or -1 with errbuf naming the client and the property. */
int host_check_config(host_t *h, char *errbuf, size_t errlen);

/* Set h->brokers (malloc'd): --brokers, else the app's luka.broker,
 * else KAFKA_BROKERS, else localhost:9092. */
void host_resolve_brokers(host_t *h, const run_opts_t *o);

/* `luka check`: validate the app and print its topology. */
int host_check(const run_opts_t *opts);

#endif
