/* admin_client.h - the cluster client the commands that talk to the
 * cluster share: their APP, --brokers and --timeout arguments, one
 * librdkafka handle configured like luka run's clients, the cluster's
 * metadata, group consumers, offsets, and waiting for an admin request's
 * result with the same timeout and the same wording of failures.  Used by
 * admin_topics.c, admin_lag*.c, offsets.c and replay.c (and admin_new by
 * tail.c and pubcli.c). */
#ifndef LUKA_ADMIN_CLIENT_H
#define LUKA_ADMIN_CLIENT_H

#include <librdkafka/rdkafka.h>

#include "app/app.h"
#include "base/cliopt.h"
#include "kafka/client.h"

/* How long each cluster request waits for its answer, unless --timeout. */
#define ADMIN_TIMEOUT_MS 10000

/* The longest --timeout: an hour. */
#define ADMIN_MAX_TIMEOUT_MS (60 * 60 * 1000)

/* The --brokers and --timeout entries of a command's option table:
 * [OPT_BROKERS] = ADMIN_OPT_BROKERS. */
#define ADMIN_OPT_BROKERS                                                                          \
    {"brokers", 'b', "LIST",                                                                       \
     "bootstrap servers (default: the app's luka.broker, else\n"                                   \
     "KAFKA_BROKERS, else localhost:9092)"}
#define ADMIN_OPT_TIMEOUT                                                                          \
    {"timeout", 0, "DURATION",                                                                     \
     "how long each request to the cluster waits: 500ms, 5s,\n"                                    \
     "2m; a bare number is milliseconds (default 10s)"}

/* What every such command takes alike, as parsed. */
typedef struct admin_args {
    const char *cmd;      /* "topics": its messages start "luka topics: " */
    const char *app_path; /* APP, or NULL */
    const char *brokers;  /* --brokers, or NULL */
    int timeout_ms;       /* --timeout, else ADMIN_TIMEOUT_MS */
} admin_args_t;

/* The arguments of command cmd before parsing. */
admin_args_t admin_args(const char *cmd);

/* Take the positional APP, --brokers or --timeout's value v, from a
 * cliopt_cb: returns what it returns (0, or cliopt_bad_usage's 2). */
int admin_arg_app(admin_args_t *a, const char *v);
int admin_arg_brokers(admin_args_t *a, const char *v);
int admin_arg_timeout(admin_args_t *a, const char *v);

typedef struct admin_client {
    const char *cmd; /* the command, for its messages */
    app_t *app;     /* the loaded app, or NULL for a command run without one */
    app_t none;     /* the client config of a command run without an app */
    char *brokers;  /* malloc'd */
    kafka_env_t env; /* the app and its brokers, for kafka_conf */
    int timeout_ms;
    rd_kafka_t *rk; /* a producer handle serves every admin call */
} admin_client_t;

/* Load args->app_path (NULL: no app) and choose the brokers from
 * args->brokers (NULL: the app's, else KAFKA_BROKERS, else
 * localhost:9092).  Returns 0, or -1 after printing why on stderr;
 * admin_close either way. */
int admin_load(admin_client_t *a, const admin_args_t *args);

/* Whether a's clients speak plaintext (security.protocol), so that a plain
 * socket can talk to the brokers as they do. */
int admin_plaintext(admin_client_t *a);

/* Open a->rk.  Returns 0, or -1 after printing why on stderr. */
int admin_connect(admin_client_t *a);

void admin_close(admin_client_t *a);

/* Another handle configured like a's (a->env set), or NULL with errbuf. */
rd_kafka_t *admin_handle(admin_client_t *a, char *errbuf, size_t errlen);

/* A new handle of type on conf, which it takes (destroyed on failure);
 * its logs wait on its main queue, served by its polls (a consumer's by
 * rd_kafka_consumer_poll).  NULL with errbuf. */
rd_kafka_t *admin_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errbuf, size_t errlen);

/* The configuration of a consumer in group, configured like a's handles,
 * that commits only when told: NULL with errbuf. */
rd_kafka_conf_t *admin_consumer_conf(admin_client_t *a, const char *group, char *errbuf,
                                     size_t errlen);

/* Read group's committed offsets of parts into parts, on rk (one of
 * group's consumers).  Returns 0, or -1 after printing why on stderr. */
int admin_committed(admin_client_t *a, rd_kafka_t *rk, const char *group,
                    rd_kafka_topic_partition_list_t *parts);

/* The first and end offsets of topic[partition], on rk.  Returns 0, or -1
 * after printing why on stderr. */
int admin_watermarks(admin_client_t *a, rd_kafka_t *rk, const char *topic, int32_t partition,
                     int64_t *low, int64_t *high);

/* Serve rk's log lines (they wait on its main queue). */
void admin_serve_logs(rd_kafka_t *rk);

/* Every topic's metadata, or NULL after printing why on stderr. */
const rd_kafka_metadata_t *admin_metadata(admin_client_t *a);

/* A topic of md that exists without error, or NULL. */
const rd_kafka_metadata_topic_t *admin_find_topic(const rd_kafka_metadata_t *md,
                                                  const char *name);

/* Request options for a request on rk (a->rk or another admin_handle)
 * with the client's timeout; the caller destroys them. */
rd_kafka_AdminOptions_t *admin_options(admin_client_t *a, rd_kafka_t *rk);

/* The result event of type on q, or NULL when none came in time. */
rd_kafka_event_t *admin_wait(admin_client_t *a, rd_kafka_queue_t *q, rd_kafka_event_type_t type);

/* Why a whole admin request failed (ev NULL: it never answered), in buf. */
const char *admin_request_error(admin_client_t *a, rd_kafka_event_t *ev, char *buf, size_t len);

#endif
