/* testkit.h - the handler test kit: an app loaded into a host whose
 * clients have no Kafka.  A spec delivers messages to endpoints; they run
 * through the production pipeline and policies, and what they published,
 * retried, dead-lettered or committed is recorded for assertions.
 * `luka test` runs busted with the kit available as require "luka.test". */
#ifndef LUKA_TESTKIT_H
#define LUKA_TESTKIT_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <lua.h>

struct testkit;
struct publisher;
struct inflight;

/* producer_send's stand-in: records the message; the kit acknowledges it
 * (or fails it, when told to) once the handler returns.  Takes value and
 * headers.  Returns 0. */
int testkit_publish(struct testkit *tk, struct publisher *p, const char *topic, int32_t partition,
                    const char *key, size_t keylen, char *value, size_t len,
                    rd_kafka_headers_t *headers, struct inflight *inf, char *errbuf,
                    size_t errlen);

/* consumer_redeliver's stand-in: the kit delivers the message again at
 * once, recording the backoff it would have waited. */
void testkit_redeliver(struct testkit *tk, int64_t offset, int64_t delay_ms);

/* The pipeline finished a message (done: its offset may be committed). */
void testkit_finished(struct testkit *tk, const struct inflight *inf, int done);

/* The opener of the luka.test module. */
int testkit_open(lua_State *L);

/* `luka test [SPEC_DIR] [BUSTED_OPTIONS...]`. */
int testkit_main(int argc, char **argv);

#endif
