/* host.h - the running luka process: one libuv loop, the app it runs, its
 * publishers and endpoints, signals and the shutdown sequence.  What is
 * added to a run (hot reload, the operations endpoint) hooks into it
 * through host_ops_t, so the host calls none of it by name. */
#ifndef LUKA_HOST_H
#define LUKA_HOST_H

#include <stdint.h>

#include <uv.h>

#include "api/lapi.h"
#include "app/app.h"
#include "base/appmetrics.h"
#include "flow/flow.h"
#include "kafka/broker.h"
#include "kafka/client.h"
#include "kafka/consumer.h"
#include "kafka/producer.h"

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

typedef struct host host_t;

/* Something added to a run, called on the loop; any hook may be NULL.
 * start: before any client opens (0, or -1 with errbuf: the run fails);
 * running: every client is open; hangup: SIGHUP; draining: shutdown
 * began; stop: at exit, also after a failed start of another.
 * statistics_ms: the statistics interval its clients need, or NULL. */
typedef struct host_ops {
    const char *name;
    int (*start)(host_t *h, char *errbuf, size_t errlen);
    void (*running)(host_t *h);
    void (*hangup)(host_t *h);
    void (*draining)(host_t *h);
    void (*stop)(host_t *h);
    const char *statistics_ms;
} host_ops_t;

struct host {
    uv_loop_t *loop;
    app_t *app;
    char *brokers;
    broker_t *embedded;
    kafka_env_t kafka; /* what its Kafka clients share; app swapped on reload */
    sinks_t sinks;     /* its publishers, as the flows and luka.publish see them */
    api_env_t api;     /* what the app's state is bound to */
    appmetrics_t *appmetrics; /* luka.metrics' registry: every state of the run shares it */
    publisher_t **pubs; /* one per app->pubs entry, same order, + the internal one */
    int npubs;
    publisher_t *internal; /* dead letters to plain topics and resends */
    endpoint_t **eps;
    int neps;
    const run_opts_t *opts;
    const host_ops_t *const *ops; /* NULL-terminated */
    struct metrics *metrics;      /* the operations endpoint's, or NULL */
    struct signals *stop_signals; /* SIGINT and SIGTERM: see signals.h */
    uv_signal_t sigchld, sighup;
    uv_timer_t shutdown, leave;
    int signals;
    int stopping;
    int exit_code;
    uint64_t stop_at; /* when stopping began (loop ms) */
    int waited;       /* shutdown has waited for running handlers */
    int64_t drain_timeout_ms;
    uint64_t reloads, reload_failures;
};

/* `luka run`, with what ops (NULL-terminated) add: returns the process
 * exit code. */
int host_run(const run_opts_t *opts, const host_ops_t *const *ops);

/* Start the orderly shutdown, with the exit code the process ends with. */
void host_stop(host_t *h, int exit_code);

/* Whether the endpoint runs: all do unless some were named on the command
 * line. */
int host_selected(const host_t *h, const char *name);

/* `luka check`: validate the app and print its topology. */
int host_check(const run_opts_t *opts);

#endif
