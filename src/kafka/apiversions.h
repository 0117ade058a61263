/* apiversions.h - ask a cluster whether it answers a request type, with one
 * ApiVersions request on a plain socket: librdkafka learns this on each of
 * its connections but keeps it to itself.  Used by `luka lag`, which must
 * not call DescribeConsumerGroups on a cluster without DescribeGroups
 * (librdkafka 2.0.2 then deadlocks or aborts: see cmd/admin_lag.c). */
#ifndef LUKA_APIVERSIONS_H
#define LUKA_APIVERSIONS_H

#include <stddef.h>

/* Kafka's ApiKey of DescribeGroups. */
#define KAFKA_API_DESCRIBE_GROUPS 15

/* Whether the first of brokers ("host:port,...", as bootstrap.servers) that
 * answers an ApiVersions v0 request in plaintext lists api_key: 1 or 0.
 * -1 when none answered within timeout_ms each, with why in errbuf. */
int kafka_api_supported(const char *brokers, int api_key, int timeout_ms, char *errbuf,
                        size_t errlen);

#endif
