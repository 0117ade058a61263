/* admin_lag.h - what `luka lag` learns about each group, as admin_lag.c
 * gathers it from the cluster and admin_lag_print.c prints it: a table
 * like kafka-consumer-groups --describe, or one JSON document. */
#ifndef LUKA_ADMIN_LAG_H
#define LUKA_ADMIN_LAG_H

#include <stdint.h>

#include <librdkafka/rdkafka.h>

/* A member of a group, as DescribeConsumerGroups tells it; the strings
 * point into the result event, which outlives the report. */
typedef struct lag_member {
    const char *consumer_id, *host, *client_id;
    const char *instance_id; /* group.instance.id, or NULL */
    const rd_kafka_topic_partition_list_t *assignment; /* may be NULL */
    int rows; /* how many of the group's rows it owns */
} lag_member_t;

/* One row: a topic partition of the group. */
typedef struct lag_part {
    const char *topic;
    int partition;    /* -1: the topic does not exist */
    int64_t committed; /* -1: the group has committed nothing here */
    int64_t log_end;   /* -1: not read (see error) */
    lag_member_t *member;       /* assigned to it, or NULL */
    const char *endpoint;       /* the app's endpoint reading it, or NULL */
    const char *error;          /* a static string, or NULL */
} lag_part_t;

typedef struct lag_group {
    const char *name;
    const char *state; /* "Stable", "Empty", ...: NULL when not described */
    /* Why the members are unknown ("" when they are known). */
    char members_error[512];
    lag_member_t *members;
    int nmembers;
    lag_part_t *parts;
    int nparts, cap;
} lag_group_t;

typedef struct lag_report {
    const char *brokers;
    lag_group_t *groups;
    int ngroups;
    int with_app; /* print the ENDPOINT column */
} lag_report_t;

/* Print r as an aligned table on stdout; nothing when it has no row. */
void lag_print_table(const lag_report_t *r);

/* Print r as one JSON document on stdout.  Returns 0, or -1 when it could
 * not be written. */
int lag_print_json(const lag_report_t *r);

#endif
