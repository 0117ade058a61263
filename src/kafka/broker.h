/* broker.h - the embedded Kafka-protocol broker, on librdkafka's mock cluster.
 *
 * `luka broker` runs one in its own process; `luka run --embedded-broker`
 * starts one inside the host.  The in-process functions need no event loop
 * and install no signal handlers. */
#ifndef LUKA_BROKER_H
#define LUKA_BROKER_H

#include <stddef.h>
#include <stdio.h>

#define BROKER_MAX_BROKERS 64
#define BROKER_MAX_PARTITIONS 100000
#define BROKER_DEFAULT_PARTITIONS 4

typedef struct broker broker_t;

/* Start a cluster of nbrokers (ids 1..nbrokers) on loopback.  Returns NULL
 * with errbuf set. */
broker_t *broker_start(int nbrokers, char *errbuf, size_t errlen);

/* Comma-separated bootstrap address list ("127.0.0.1:PORT,...").  Owned by
 * the broker, valid until broker_stop. */
const char *broker_bootstraps(const broker_t *b);

/* Create a topic, or do nothing if it exists.  0 or -1 with errbuf. */
int broker_create_topic(broker_t *b, const char *topic, int partitions,
                        char *errbuf, size_t errlen);

/* Apply one control command ("down 1", "fail Produce 1 TRANSPORT", ...; the
 * list is in `luka broker --help`), for fault injection.  0, or -1 with
 * errbuf.  "help" is not a command here: only the CLI prints help. */
int broker_control(broker_t *b, const char *line, char *errbuf, size_t errlen);

/* Destroy the cluster; clients connected to it see their connections drop. */
void broker_stop(broker_t *b);

/* Kafka's rule for topic names: 1..249 characters of [A-Za-z0-9._-].  0, or
 * -1 with errbuf. */
int broker_check_topic_name(const char *name, char *errbuf, size_t errlen);

/* Print the control commands, each with its help, for --help. */
void broker_print_commands(FILE *out);

/* The `luka broker` command (brokercli.c).  Returns the process exit code. */
int broker_main(int argc, char **argv);

#endif
