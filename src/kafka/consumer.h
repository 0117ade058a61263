/* consumer.h - an endpoint: one librdkafka group consumer driven by the
 * libuv loop, feeding its flow.  Its queue wakes the loop through an
 * IO-event pipe; messages are drained in bounded batches into the
 * pipeline; it is the flow's source: it delivers a message again after a
 * backoff (pause, then seek back), stores done offsets for librdkafka's
 * periodic commit, and stops on a final failure. */
#ifndef LUKA_CONSUMER_H
#define LUKA_CONSUMER_H

#include "kafka/endpoint.h"

/* Open the endpoint conf, whose calls run in L and whose publishes go to
 * sinks.  NULL with errbuf naming the endpoint. */
endpoint_t *consumer_open(const kafka_env_t *env, const endpoint_conf_t *conf, lua_State *L,
                          const sinks_t *sinks, char *errbuf, size_t errlen);

/* Take no more messages. */
void consumer_stop(endpoint_t *ep);

/* The endpoint is about to leave its group: run the environment's
 * stopping hook (its on_stop), once.  consumer_leave and consumer_close
 * do it themselves; the runtime calls it earlier at shutdown, while the
 * publishers still take what the hook publishes. */
void consumer_stopping(endpoint_t *ep);

/* Wait (bounded) for the publishes of what was handled, commit the done
 * offsets, let go of what is still in flight (uncommitted) and leave the
 * group, keeping the endpoint, its counts and its client until
 * consumer_close.  For an endpoint a final failure stopped. */
void consumer_leave(endpoint_t *ep);

/* Commit, leave the group, and free the endpoint (its handles are released
 * by the loop). */
void consumer_close(endpoint_t *ep);

#endif
