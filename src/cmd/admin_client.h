/* admin_client.h - the cluster client `luka topics` and `luka lag` share:
 * one librdkafka handle configured like luka run's clients, the cluster's
 * metadata, and waiting for an admin request's result with the same
 * timeout and the same wording of failures.  Used by admin_topics.c and
 * admin_lag*.c. */
#ifndef LUKA_ADMIN_CLIENT_H
#define LUKA_ADMIN_CLIENT_H

#include <librdkafka/rdkafka.h>

#include "app/app.h"
#include "kafka/client.h"

/* How long each cluster request waits for its answer, unless --timeout. */
#define ADMIN_TIMEOUT_MS 10000

/* The longest --timeout: an hour. */
#define ADMIN_MAX_TIMEOUT_MS (60 * 60 * 1000)

typedef struct admin_client {
    app_t *app;     /* the loaded app, or NULL for a command run without one */
    app_t none;     /* the client config of a command run without an app */
    char *brokers;  /* malloc'd */
    kafka_env_t env; /* the app and its brokers, for kafka_conf */
    int timeout_ms;
    rd_kafka_t *rk; /* a producer handle serves every admin call */
} admin_client_t;

/* Load app_path (NULL: no app) and choose the brokers from the flag (NULL:
 * the app's, else KAFKA_BROKERS, else localhost:9092).  Returns 0, or -1
 * after printing why on stderr; admin_close either way. */
int admin_load(admin_client_t *a, const char *app_path, const char *brokers, int timeout_ms);

/* Whether a's clients speak plaintext (security.protocol), so that a plain
 * socket can talk to the brokers as they do. */
int admin_plaintext(admin_client_t *a);

/* Open a->rk.  Returns 0, or -1 after printing why on stderr. */
int admin_connect(admin_client_t *a);

void admin_close(admin_client_t *a);

/* Another handle configured like a's (a->env set), or NULL with errbuf. */
rd_kafka_t *admin_handle(admin_client_t *a, char *errbuf, size_t errlen);

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
