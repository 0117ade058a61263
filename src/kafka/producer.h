/* producer.h - a publisher: one librdkafka producer for a declared
 * publisher or channel.  Delivery reports reach the loop through the
 * producer queue's IO-event pipe and complete the message that published. */
#ifndef LUKA_PRODUCER_H
#define LUKA_PRODUCER_H

#include <librdkafka/rdkafka.h>
#include <uv.h>

#include "app/app.h"
#include "runtime/host.h"
#include "flow/pipeline.h"

/* A delivery report that waits for the loop (see producer.c's dr_cb). */
typedef struct deferred_report {
    publish_tag_t *tag;
    rd_kafka_resp_err_t err;
} deferred_report_t;

typedef struct publisher {
    host_t *host;
    const publisher_conf_t *conf;
    rd_kafka_t *rk;
    int fds[2];
    uv_poll_t poll;
    uint64_t published, acked, failed;
    char *kafka_stats; /* librdkafka's latest statistics JSON, or NULL */
    int sending;       /* producer_send is serving reports to make room */
    deferred_report_t *deferred;
    int ndeferred, capdeferred;
} publisher_t;

publisher_t *producer_open(host_t *h, const publisher_conf_t *conf, char *errbuf,
                           size_t errlen);

/* Queue one message to topic (NULL: the publisher's).  value is malloc'd
 * and becomes the producer's; headers too, on success.  inf is the message
 * being handled, or NULL.  Returns 0, or -1 with errbuf set (value freed,
 * headers still the caller's). */
int producer_send(publisher_t *p, const char *topic, int32_t partition, const char *key, size_t keylen,
                  char *value, size_t len, rd_kafka_headers_t *headers,
                  inflight_t *inf, char *errbuf, size_t errlen);

/* Serve delivery reports until none are outstanding or timeout_ms passes.
 * Returns how many messages are still outstanding. */
int producer_flush(publisher_t *p, int timeout_ms);

void producer_close(publisher_t *p);

#endif
