/* app.h - an app script loaded into its own Lua state, and the topology it
 * declared (broker, publishers, endpoints) copied out into C.
 *
 * The host runs an app; `luka check` prints one; a reload loads a new one
 * beside the old. */
#ifndef LUKA_APP_H
#define LUKA_APP_H

#include <stdint.h>
#include <stdio.h>

#include <lua.h>

typedef struct kv {
    char *key, *value;
} kv_t;

typedef struct kvlist {
    kv_t *items;
    int n;
} kvlist_t;

enum { FORMAT_JSON, FORMAT_RAW };
enum { ORDER_KEY, ORDER_PARTITION, ORDER_NONE };

typedef struct publisher_conf {
    char *name, *topic, *where;
    char *key_field; /* payload field holding the key, or NULL */
    int key_fn;      /* registry ref of a key function, or LUA_NOREF */
    kvlist_t config;
    int channel;
    int internal; /* luka's own, for dead letters and resends */
    int on_delivery; /* registry ref of on_delivery(report), or LUA_NOREF */
    lua_State *L;    /* the state its functions live in; NULL for luka's own */
} publisher_conf_t;

enum { FINAL_STOP, FINAL_RESEND, FINAL_RELEASE, FINAL_IGNORE };
enum { ERRCH_NONE, ERRCH_TOPIC, ERRCH_PUBLISHER, ERRCH_FUNCTION };

/* What an endpoint does when its handler fails, and how it deduplicates. */
typedef struct policy_conf {
    int instant;           /* extra immediate attempts */
    int delayed;           /* delayed retries; 0 = none */
    int64_t initial_ms, max_ms;
    double multiplier;
    int jitter;
    int error_kind;        /* ERRCH_* */
    char *error_target;    /* topic or publisher name */
    int error_fn;          /* registry ref, or LUA_NOREF */
    int final_failure;     /* FINAL_* */
    int64_t timeout_ms;    /* handler time limit */
    int dedup;             /* deduplication is on */
    char *dedup_field;     /* payload field giving the key, or NULL */
    char *dedup_header;    /* header giving the key, or NULL */
    int dedup_fn;          /* registry ref of function(msg, meta), or LUA_NOREF */
    int64_t dedup_ttl_ms;
    char *dedup_store;     /* "memory", "sqlite:PATH" or "redis://..." */
    int dedup_max_entries;
} policy_conf_t;

typedef struct endpoint_conf {
    char *name, *group, *where;
    int channel;
    char **topics;
    int ntopics;
    int format;
    kvlist_t config;
    int handle; /* registry ref of the handler, or LUA_NOREF with handle_batch */
    int handle_batch;      /* registry ref of function(batch), or LUA_NOREF */
    int batch_max;         /* with handle_batch: most messages in a batch */
    int64_t batch_wait_ms; /* and longest its first message waits for more */
    policy_conf_t policy;
    int concurrency; /* handler calls in flight at once */
    int ordering;    /* ORDER_*: what runs one at a time */
    int buffer;      /* messages held behind busy lanes before pausing */
    /* Lifecycle hooks (api/hooks.h): registry refs, or LUA_NOREF. */
    int on_assign, on_revoke, on_stop;
    /* transactional = true (README, "Exactly-once"): a commit every
     * txn_messages messages or txn_interval_ms; txn_instance names this
     * instance in the transactional.id (NULL: the host name). */
    int transactional;
    int txn_messages;
    int64_t txn_interval_ms;
    char *txn_instance;
} endpoint_conf_t;

/* A declared topic (luka.topic); -1 leaves a count to the cluster. */
typedef struct topic_conf {
    char *name, *where;
    int partitions, replication;
    kvlist_t config;
} topic_conf_t;

/* A transactional outbox (luka.outbox): the table a relay publishes. */
typedef struct outbox_conf {
    char *name, *where;
    char *db;        /* postgres:// URL, password included: mask it to show it */
    char *table;     /* [schema.]name, lower case */
    char *publisher; /* a publisher or channel of the app */
    int batch;       /* rows per round */
    int64_t poll_ms;
} outbox_conf_t;

typedef struct app {
    lua_State *L;
    char *path; /* as given */
    char *dir;  /* its directory, where handler modules are found */
    char *brokers, *client_id;
    kvlist_t broker_config;
    publisher_conf_t *pubs;
    int npubs;
    endpoint_conf_t *eps;
    int neps;
    topic_conf_t *topics;
    int ntopics;
    outbox_conf_t *outboxes;
    int noutboxes;
    size_t memory_limit; /* bytes the Lua state may hold, 0 for no limit */
    int64_t timeout_ms;  /* limit of user code run outside handlers (timers) */
    char **files; /* the Lua files it loaded from its directory, script first */
    int nfiles;
} app_t;

/* Load and validate an app script, with luka.state set from state_json
 * (may be NULL; how a reload carries state over) before the script runs.
 * host_api opens the luka.host module the script's `require "luka"`
 * needs (lapi_open: the api layer is above this one).  Returns NULL with a
 * message that names the file and line in errbuf. */
app_t *app_load(const char *path, const char *state_json, lua_CFunction host_api, char *errbuf,
                size_t errlen);

/* The limit, in ms, of the app's code run outside handlers (timer
 * callbacks, publishes made while loading): luka.runtime's timeout. */
int64_t app_timeout(lua_State *L);

/* The app's name for log lines its code writes: its script's file name
 * without ".lua". */
const char *app_name(lua_State *L);

/* The app's directory, where relative paths of its files are found
 * (luka.sqlite); NULL in a state that is not an app's. */
const char *app_dir(lua_State *L);

void app_free(app_t *app);

const publisher_conf_t *app_publisher(const app_t *app, const char *name);
const endpoint_conf_t *app_endpoint(const app_t *app, const char *name);

/* Look a property up in a config list; NULL when absent. */
const char *kvlist_get(const kvlist_t *l, const char *key);

/* Whether the app may set a librdkafka property on luka's clients of kind
 * "consumer", "producer" or "all": 0 if so, else -1 with why not and what
 * to do instead in errbuf.  luka.dsl's table of the properties luka sets
 * itself decides, as it does for the app's config options. */
int app_check_property(const app_t *app, const char *clients, const char *key, const char *value,
                       char *errbuf, size_t errlen);

/* Make luka's modules requirable in L (package.preload). */
void app_open_modules(lua_State *L, lua_CFunction host_api);

/* Print the resolved topology, as `luka check` shows it. */
void app_print(const app_t *app, FILE *out);

#endif
