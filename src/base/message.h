/* message.h - a consumed message as the pipeline sees it: the fields of a
 * Kafka record, whoever produced it.  The consumer fills one from a
 * librdkafka message it keeps until the pipeline is done with it. */
#ifndef LUKA_MESSAGE_H
#define LUKA_MESSAGE_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <librdkafka/rdkafka.h>

typedef struct message {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const char *key; /* NULL when the record has none */
    size_t key_len;
    const char *payload; /* NULL for a tombstone */
    size_t len;
    int64_t timestamp;           /* milliseconds, or -1 */
    rd_kafka_headers_t *headers; /* NULL when there are none */
    rd_kafka_message_t *rkm;     /* what the fields point into, or NULL */
    void *own; /* without rkm: one malloc'd block holding the fields */
} message_t;

/* Fill m from rkm, which m then owns. */
static inline void message_from_kafka(message_t *m, rd_kafka_message_t *rkm) {
    m->topic = rd_kafka_topic_name(rkm->rkt);
    m->partition = rkm->partition;
    m->offset = rkm->offset;
    m->key = rkm->key;
    m->key_len = rkm->key_len;
    m->payload = rkm->payload;
    m->len = rkm->len;
    m->timestamp = rd_kafka_message_timestamp(rkm, NULL);
    m->headers = NULL;
    rd_kafka_message_headers(rkm, &m->headers);
    m->rkm = rkm;
    m->own = NULL;
}

static inline void message_release(message_t *m) {
    if (m->rkm) rd_kafka_message_destroy(m->rkm);
    if (m->own) {
        if (m->headers) rd_kafka_headers_destroy(m->headers);
        free(m->own);
    }
    m->rkm = NULL;
    m->own = NULL;
}

#endif
