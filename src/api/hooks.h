/* hooks.h - an app's lifecycle hooks: an endpoint's on_assign, on_revoke
 * and on_stop, and a publisher's on_delivery for what is published outside
 * handlers.  The runtime calls them from the loop through the Kafka
 * clients' kafka_env_t; the test kit calls on_delivery when its pretend
 * broker answers.  Each goes through script_call under the app's runtime
 * timeout; a hook that fails is logged with its name and its endpoint or
 * publisher, and nothing else changes. */
#ifndef LUKA_HOOKS_H
#define LUKA_HOOKS_H

#include <librdkafka/rdkafka.h>
#include <lua.h>

#include "app/app.h"
#include "base/message.h"
#include "lua/script.h"

enum { HOOK_ASSIGN, HOOK_REVOKE };

/* on_assign or on_revoke (which) of the endpoint conf, whose functions
 * live in L, with parts as a sequence of { topic, partition }.  Returns 0
 * (also when the endpoint has no such hook), or -1 when it failed. */
int hooks_partitions(lua_State *L, const endpoint_conf_t *conf, int which,
                     const rd_kafka_topic_partition_list_t *parts);

/* on_stop of the endpoint conf.  Returns as hooks_partitions. */
int hooks_stop(lua_State *L, const endpoint_conf_t *conf);

/* on_delivery of the publisher conf (in conf->L) for the delivery report
 * of m: the message as produced, with its partition and offset when
 * delivered; err 0 when it was.  Returns as hooks_partitions, with err
 * filled on failure when errout is not NULL. */
int hooks_delivery(const publisher_conf_t *conf, const message_t *m, rd_kafka_resp_err_t err,
                   script_err_t *errout);

#endif
