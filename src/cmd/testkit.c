/* testkit.c - require "luka.test": load an app into a harness, deliver
 * messages to its endpoints through the real pipeline, run its timers on a
 * virtual clock, and look at what happened.  The harness is a host without
 * Kafka: its publishers record instead of producing, and a delayed retry
 * is delivered again at once (its backoff is recorded).  The app runs in
 * its own Lua state, as in production; payloads cross as JSON or strings. */
#include "cmd/testkit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "api/httpc.h"
#include "api/lapi.h"
#include "api/timer.h"
#include "app/app.h"
#include "base/json.h"
#include "base/offsets.h"
#include "cmd/testkit_log.h"
#include "flow/flow.h"
#include "flow/inflight.h"
#include "flow/pipeline.h"
#include "lua/meta.h"
#include "lua/script.h"
#include "lua/state.h"
#include "lua/task.h"

#define HARNESS_MT "luka.test.harness"
/* A message delivered this many times in one call is given up on. */
#define MAX_ROUNDS 100

typedef struct record {
    char *target, *topic;
    int32_t partition;
    char *key;
    size_t keylen;
    char *value;
    size_t len;
    rd_kafka_headers_t *headers;
} record_t;

typedef struct ack {
    publish_tag_t *tag;
    int fail;
} ack_t;

/* A partition the kit has delivered on: its offsets and the next one. */
typedef struct part {
    char *topic;
    int32_t partition;
    int64_t next;
    offsets_t *offsets;
} part_t;

struct testkit;

/* The kit's own sink and flow source, each knowing its kit. */
typedef struct tsink {
    sink_t sink;
    struct testkit *tk;
} tsink_t;

typedef struct tflow {
    flow_t flow;
    struct testkit *tk;
} tflow_t;

struct testkit {
    app_t *app;
    sinks_t sinks;
    api_env_t api;
    tsink_t *pubs; /* one per publisher, then the internal one */
    int npubs;
    tflow_t *flows; /* one per endpoint */
    int nflows;
    record_t *recs;
    int nrecs, caprecs;
    ack_t *acks;
    int nacks, capacks;
    int fail_next; /* publishes the pretend broker rejects */
    int64_t now;   /* the virtual clock: ms advanced since load */
    part_t *parts;
    int nparts;
    /* What the delivery in progress did. */
    int redeliver;
    redelivery_t again;
    int64_t delays[MAX_ROUNDS];
    int ndelays;
    int attempts, stage, done;
    char *error;
    uv_loop_t loop; /* where handlers wait on I/O (timers stay virtual) */
    testkit_logs_t *logs; /* what was logged since load */
};

static const publisher_conf_t internal_conf = {
    .name = "luka.internal", .topic = "", .where = "dead letters and resends", .key_fn = LUA_NOREF,
    .internal = 1};

/* The sink: records the message; the pretend broker acknowledges it (or
 * fails it, when told to) once the handler returned. */
static int sink_send(sink_t *s, const char *topic, int32_t partition, const char *key,
                     size_t keylen, char *value, size_t len, rd_kafka_headers_t *headers,
                     publish_tag_t *tag, char *errbuf, size_t errlen) {
    struct testkit *tk = ((tsink_t *)s)->tk;
    record_t *r;
    (void)errbuf, (void)errlen;
    if (tk->nrecs == tk->caprecs) {
        tk->caprecs = tk->caprecs ? tk->caprecs * 2 : 16;
        tk->recs = realloc(tk->recs, tk->caprecs * sizeof(*tk->recs));
    }
    r = &tk->recs[tk->nrecs++];
    r->target = strdup(s->conf->name);
    r->topic = strdup(topic ? topic : s->conf->topic);
    r->partition = partition;
    r->key = key ? malloc(keylen ? keylen : 1) : NULL;
    if (key) memcpy(r->key, key, keylen);
    r->keylen = keylen;
    r->value = value;
    r->len = len;
    r->headers = headers;
    if (tag) {
        if (tk->nacks == tk->capacks) {
            tk->capacks = tk->capacks ? tk->capacks * 2 : 16;
            tk->acks = realloc(tk->acks, tk->capacks * sizeof(*tk->acks));
        }
        tk->acks[tk->nacks].tag = tag;
        tk->acks[tk->nacks++].fail = tk->fail_next > 0 ? tk->fail_next-- > 0 : 0;
    }
    return 0;
}

static const sink_ops_t kit_sink = {sink_send};

static sink_t *find_sink(void *ctx, const char *name) {
    struct testkit *tk = ctx;
    for (int i = 0; i < tk->npubs - 1; i++)
        if (strcmp(tk->pubs[i].sink.conf->name, name) == 0) return &tk->pubs[i].sink;
    return NULL;
}

static sink_t *internal_sink(void *ctx, char *errbuf, size_t errlen) {
    struct testkit *tk = ctx;
    (void)errbuf, (void)errlen;
    return &tk->pubs[tk->npubs - 1].sink;
}

/* The source: a delayed retry is delivered again at once, its backoff
 * recorded; a stop ends that delivery, not the harness. */
static void source_redeliver(flow_t *f, const message_t *m, int attempts, int rounds,
                             int64_t delay_ms) {
    struct testkit *tk = ((tflow_t *)f)->tk;
    (void)m;
    tk->redeliver = 1;
    tk->again = (redelivery_t){attempts, rounds};
    if (tk->ndelays < MAX_ROUNDS) tk->delays[tk->ndelays++] = delay_ms;
}

static void source_stop(flow_t *f) { f->stopped = 1; }

static void source_progress(flow_t *f) { (void)f; }

static void source_finished(flow_t *f, const struct inflight *inf, int done) {
    struct testkit *tk = ((tflow_t *)f)->tk;
    tk->attempts = inf->attempts;
    tk->stage = inf->stage;
    tk->done = done;
    free(tk->error);
    tk->error = inf->error ? strdup(inf->error) : NULL;
}

static const source_ops_t kit_source = {source_redeliver, source_stop, source_progress,
                                        source_finished};

/* The pretend broker answers every publish, in order; answers can lead to
 * more publishes (a dead letter after a failed one). */
static void ack_all(struct testkit *tk) {
    for (int i = 0; i < tk->nacks; i++) {
        ack_t a = tk->acks[i];
        pipeline_reported(a.tag, a.fail ? RD_KAFKA_RESP_ERR__MSG_TIMED_OUT : 0);
    }
    tk->nacks = 0;
}

static struct testkit *check(lua_State *L) {
    struct testkit **ud = luaL_checkudata(L, 1, HARNESS_MT);
    luaL_argcheck(L, *ud != NULL, 1, "the harness is closed");
    testkit_logs_capture((*ud)->logs); /* what its app logs now is its */
    return *ud;
}

/* Run f's loop until no handler waits and nothing waits to start, the
 * pretend broker answering every publish meanwhile. */
static void settle(struct testkit *tk, flow_t *f) {
    for (;;) {
        ack_all(tk);
        if (!pipeline_running(f, NULL) && !pipeline_waiting(f) && !tk->nacks) break;
        uv_run(&tk->loop, UV_RUN_ONCE);
    }
}

static void close_kit(struct testkit *tk) {
    for (int i = 0; i < tk->nflows; i++) pipeline_close(&tk->flows[i].flow);
    /* Closing the state stops its timers (on the virtual clock: freed). */
    app_free(tk->app);
    task_close_loop(&tk->loop);
    httpc_close_loop(&tk->loop);
    uv_run(&tk->loop, UV_RUN_DEFAULT); /* the closes */
    uv_loop_close(&tk->loop);
    for (int i = 0; i < tk->nrecs; i++) {
        record_t *r = &tk->recs[i];
        free(r->target), free(r->topic), free(r->key), free(r->value);
        if (r->headers) rd_kafka_headers_destroy(r->headers);
    }
    for (int i = 0; i < tk->nparts; i++) {
        free(tk->parts[i].topic);
        offsets_unref(tk->parts[i].offsets);
    }
    free(tk->parts), free(tk->recs), free(tk->acks), free(tk->error);
    free(tk->pubs), free(tk->flows);
    testkit_logs_free(tk->logs);
    free(tk);
}

/* Push the app script test.load means: path as it is when absolute, else
 * from the directory of the Lua file that called test.load (the spec), else
 * from the current directory (the project root).  Raises naming both when
 * neither has it. */
static const char *resolve(lua_State *L, const char *path) {
    const char *spec = NULL, *slash;
    lua_Debug ar;

    if (path[0] == '/') return lua_pushstring(L, path);
    /* The nearest caller written in a file, past pcall and the like. */
    for (int level = 1; !spec && lua_getstack(L, level, &ar); level++)
        if (lua_getinfo(L, "S", &ar) && ar.source[0] == '@') spec = ar.source + 1;
    if (spec) {
        slash = strrchr(spec, '/');
        lua_pushlstring(L, spec, slash ? (size_t)(slash - spec + 1) : 0);
        lua_pushstring(L, path);
        lua_concat(L, 2);
        if (access(lua_tostring(L, -1), R_OK) == 0) return lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    if (access(path, R_OK) == 0) return lua_pushstring(L, path);
    luaL_error(L, "luka.test.load: no app script '%s' beside %s or in the current directory", path,
               spec ? spec : "the spec");
    return NULL;
}

/* test.load(app_path) -> harness */
static int l_load(lua_State *L) {
    const char *path = resolve(L, luaL_checkstring(L, 1));
    struct testkit *tk = calloc(1, sizeof(*tk)), **ud;
    char err[2048];

    ud = lua_newuserdatauv(L, sizeof(*ud), 0);
    *ud = NULL;
    luaL_setmetatable(L, HARNESS_MT);
    uv_loop_init(&tk->loop);
    testkit_logs_capture(tk->logs = testkit_logs_new());
    if (!(tk->app = app_load(path, NULL, lapi_open, err, sizeof(err)))) {
        close_kit(tk);
        return luaL_error(L, "luka.test.load: %s", err);
    }
    tk->pubs = calloc(tk->app->npubs + 1, sizeof(*tk->pubs));
    for (int i = 0; i <= tk->app->npubs; i++) {
        tk->pubs[i].sink.ops = &kit_sink;
        tk->pubs[i].sink.conf = i < tk->app->npubs ? &tk->app->pubs[i] : &internal_conf;
        tk->pubs[i].tk = tk;
    }
    tk->npubs = tk->app->npubs + 1;
    tk->sinks = (sinks_t){find_sink, internal_sink, tk};
    /* No loop: the app's timers wait on the virtual clock harness:advance moves. */
    tk->api = (api_env_t){NULL, &tk->sinks};
    tk->flows = calloc(tk->app->neps + 1, sizeof(*tk->flows));
    for (int i = 0; i < tk->app->neps; i++) {
        /* The kit keeps its dedup record in memory, whatever the app says. */
        tk->flows[i].tk = tk;
        if (pipeline_open(&tk->flows[i].flow, &tk->app->eps[i], tk->app->L, &tk->loop,
                          tk->app->dir, "memory", &kit_source, &tk->sinks, err, sizeof(err))) {
            close_kit(tk);
            return luaL_error(L, "luka.test.load: %s", err);
        }
        tk->nflows++;
    }
    api_bind(tk->app->L, &tk->api);
    lapi_start(tk->app->L);
    *ud = tk;
    return 1;
}

static flow_t *find_flow(lua_State *L, struct testkit *tk, const char *name) {
    luaL_Buffer b;
    for (int i = 0; i < tk->nflows; i++)
        if (strcmp(tk->flows[i].flow.conf->name, name) == 0) return &tk->flows[i].flow;
    luaL_buffinit(L, &b);
    for (int i = 0; i < tk->nflows; i++) {
        if (i) luaL_addstring(&b, ", ");
        luaL_addstring(&b, tk->flows[i].flow.conf->name);
    }
    luaL_pushresult(&b);
    luaL_error(L, "deliver: the app has no endpoint '%s'; it has: %s", name, lua_tostring(L, -1));
    return NULL;
}

/* The partition topic[partition], made on first delivery. */
static part_t *find_part(struct testkit *tk, const char *topic, int32_t partition) {
    for (int i = 0; i < tk->nparts; i++)
        if (tk->parts[i].partition == partition && strcmp(tk->parts[i].topic, topic) == 0)
            return &tk->parts[i];
    tk->parts = realloc(tk->parts, (tk->nparts + 1) * sizeof(*tk->parts));
    tk->parts[tk->nparts] = (part_t){strdup(topic), partition, 0, offsets_new(topic, partition)};
    return &tk->parts[tk->nparts++];
}

/* Push a recorded publish as a table. */
static void push_record(lua_State *L, const record_t *r) {
    char err[256];
    lua_createtable(L, 0, 7);
    lua_pushstring(L, r->target);
    lua_setfield(L, -2, "target");
    lua_pushstring(L, r->topic);
    lua_setfield(L, -2, "topic");
    if (r->partition >= 0) {
        lua_pushinteger(L, r->partition);
        lua_setfield(L, -2, "partition");
    }
    if (r->key) {
        lua_pushlstring(L, r->key, r->keylen);
        lua_setfield(L, -2, "key");
    }
    if (r->value) {
        lua_pushlstring(L, r->value, r->len);
        lua_setfield(L, -2, "value");
        /* payload: the value decoded when it is JSON, else the string. */
        if (json_decode(L, r->value, r->len, err, sizeof(err)) != 0)
            lua_pushlstring(L, r->value, r->len);
        lua_setfield(L, -2, "payload");
    }
    meta_push_headers(L, r->headers);
    lua_setfield(L, -2, "headers");
}

/* Build one delivery of the message described by src into m. */
typedef struct source {
    const char *topic, *key, *payload;
    size_t keylen, len;
    int32_t partition;
    int64_t offset, timestamp;
    rd_kafka_headers_t *headers;
} source_t;

static void build(message_t *m, const source_t *src) {
    size_t tlen = strlen(src->topic) + 1;
    char *block = malloc(tlen + src->keylen + src->len + 1);
    memcpy(block, src->topic, tlen);
    if (src->key) memcpy(block + tlen, src->key, src->keylen);
    if (src->payload) memcpy(block + tlen + src->keylen, src->payload, src->len);
    memset(m, 0, sizeof(*m));
    m->topic = block;
    m->partition = src->partition;
    m->offset = src->offset;
    m->key = src->key ? block + tlen : NULL;
    m->key_len = src->keylen;
    m->payload = src->payload ? block + tlen + src->keylen : NULL;
    m->len = src->len;
    m->timestamp = src->timestamp;
    m->headers = rd_kafka_headers_copy(src->headers);
    m->own = block;
}

static const char *outcome(const endpoint_stats_t *a, const endpoint_stats_t *b, int done) {
    if (b->stopped > a->stopped) return "stopped";
    if (b->deduplicated > a->deduplicated) return "deduplicated";
    if (b->dead_lettered > a->dead_lettered) return "dead_lettered";
    if (b->resent > a->resent) return "resent";
    if (b->ignored > a->ignored) return "ignored";
    if (b->released > a->released) return "released";
    if (b->handled > a->handled) return "handled";
    return done ? "committed" : "dropped";
}

/* harness:deliver(endpoint, payload [, meta]) -> result */
static int l_deliver(lua_State *L) {
    struct testkit *tk = check(L);
    flow_t *f = find_flow(L, tk, luaL_checkstring(L, 2));
    int has_meta = lua_istable(L, 4), first = tk->nrecs, attempt = 1;
    int firstlog = testkit_logs_count(tk->logs);
    endpoint_stats_t before = f->stats;
    char *encoded = NULL, err[512];
    source_t src = {0};
    redelivery_t *again = NULL;
    part_t *pt;

    if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TTABLE);
    lua_settop(L, 4);
    /* Stack: harness, endpoint, payload, meta */
    if (lua_type(L, 3) == LUA_TSTRING) {
        src.payload = lua_tolstring(L, 3, &src.len);
    } else if (!lua_isnil(L, 3)) {
        if (!(encoded = json_encode(L, 3, &src.len, err, sizeof(err))))
            return luaL_error(L, "deliver: payload: %s", err);
        src.payload = encoded;
    }
    src.topic = f->conf->topics[0];
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        src.timestamp = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    }
    src.headers = rd_kafka_headers_new(4);
    src.offset = -1;
    if (has_meta) {
        if (lua_getfield(L, 4, "topic") == LUA_TSTRING) src.topic = lua_tostring(L, -1);
        if (lua_getfield(L, 4, "partition") == LUA_TNUMBER) src.partition = (int32_t)lua_tointeger(L, -1);
        if (lua_getfield(L, 4, "offset") == LUA_TNUMBER) src.offset = lua_tointeger(L, -1);
        if (lua_getfield(L, 4, "timestamp") == LUA_TNUMBER) src.timestamp = lua_tointeger(L, -1);
        if (lua_getfield(L, 4, "attempt") == LUA_TNUMBER) attempt = (int)lua_tointeger(L, -1);
        if (lua_getfield(L, 4, "key") != LUA_TNIL) src.key = luaL_tolstring(L, -1, &src.keylen);
        if (lua_getfield(L, 4, "headers") == LUA_TTABLE) {
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                size_t vn;
                const char *v = luaL_tolstring(L, -1, &vn);
                rd_kafka_header_add(src.headers, luaL_checkstring(L, -3), -1, v, (ssize_t)vn);
                lua_pop(L, 2);
            }
        }
        /* The strings stay on the stack, alive, until we return. */
    }
    pt = find_part(tk, src.topic, src.partition);
    if (src.offset < 0) src.offset = pt->next;
    if (src.offset >= pt->next) pt->next = src.offset + 1;
    if (attempt > 1) {
        tk->again = (redelivery_t){attempt - 1, 0};
        again = &tk->again;
    }
    tk->ndelays = tk->attempts = tk->done = 0;
    free(tk->error);
    tk->error = NULL;
    for (int round = 0; round < MAX_ROUNDS; round++) {
        message_t m;
        tk->redeliver = 0;
        build(&m, &src);
        pipeline_handle(f, &m, pt->offsets, again);
        settle(tk, f);
        /* release would deliver it forever: once shows the decision. */
        if (!tk->redeliver || f->stats.released > before.released) break;
        again = &tk->again;
    }
    rd_kafka_headers_destroy(src.headers);
    free(encoded);

    lua_createtable(L, 0, 8);
    lua_pushstring(L, outcome(&before, &f->stats, tk->done));
    lua_setfield(L, -2, "outcome");
    lua_pushboolean(L, pt->offsets->commit > src.offset);
    lua_setfield(L, -2, "committed");
    lua_pushinteger(L, tk->attempts);
    lua_setfield(L, -2, "attempts");
    lua_pushinteger(L, src.offset);
    lua_setfield(L, -2, "offset");
    if (tk->error) {
        lua_pushstring(L, tk->error);
        lua_setfield(L, -2, "error");
    }
    lua_createtable(L, tk->ndelays, 0);
    for (int i = 0; i < tk->ndelays; i++) {
        lua_pushinteger(L, tk->delays[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "retries");
    lua_createtable(L, tk->nrecs - first, 0);
    for (int i = first; i < tk->nrecs; i++) {
        const void *v;
        size_t vn;
        push_record(L, &tk->recs[i]);
        if (tk->recs[i].headers && !rd_kafka_header_get_last(tk->recs[i].headers,
                                                             "luka-dlt-original-topic", &v, &vn)) {
            lua_pushvalue(L, -1);
            lua_setfield(L, -4, "dead_letter");
        }
        lua_rawseti(L, -2, i - first + 1);
    }
    lua_setfield(L, -2, "published");
    testkit_logs_push(L, tk->logs, firstlog);
    lua_setfield(L, -2, "logs");
    /* A stop ends that delivery, not the harness. */
    for (int i = 0; i < tk->nflows; i++) tk->flows[i].flow.stopped = 0;
    return 1;
}

/* harness:published() -> every message published since the app loaded */
static int l_published(lua_State *L) {
    struct testkit *tk = check(L);
    lua_createtable(L, tk->nrecs, 0);
    for (int i = 0; i < tk->nrecs; i++) {
        push_record(L, &tk->recs[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* harness:logs() -> every record logged since the app loaded */
static int l_logs(lua_State *L) {
    testkit_logs_push(L, check(L)->logs, 0);
    return 1;
}

/* harness:fail_publishes(n): the next n publishes are not acknowledged. */
static int l_fail_publishes(lua_State *L) {
    struct testkit *tk = check(L);
    tk->fail_next = (int)luaL_optinteger(L, 2, 1);
    return 0;
}

/* harness:counters(endpoint) -> the endpoint's decision counters */
static int l_counters(lua_State *L) {
    struct testkit *tk = check(L);
    flow_t *f = find_flow(L, tk, luaL_checkstring(L, 2));
    const endpoint_stats_t *s = &f->stats;
    const struct { const char *name; uint64_t v; } c[] = {
        {"consumed", s->consumed},       {"handled", s->handled},
        {"failed", s->failed},           {"retried", s->retried},
        {"dead_lettered", s->dead_lettered}, {"deduplicated", s->deduplicated},
        {"resent", s->resent},           {"released", s->released},
        {"ignored", s->ignored},         {"stopped", s->stopped},
    };
    lua_createtable(L, 0, 10);
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        lua_pushinteger(L, (lua_Integer)c[i].v);
        lua_setfield(L, -2, c[i].name);
    }
    return 1;
}

/* Collects the failures of timer callbacks into the table at index t. */
typedef struct timer_errors {
    lua_State *L;
    int t;
} timer_errors_t;

static void timer_failed(void *ud, const script_err_t *err) {
    timer_errors_t *e = ud;
    lua_pushstring(e->L, err->msg);
    lua_rawseti(e->L, e->t, (lua_Integer)luaL_len(e->L, e->t) + 1);
}

/* harness:advance(ms or duration) -> { fired, errors, published, now } */
static int l_advance(lua_State *L) {
    struct testkit *tk = check(L);
    int first = tk->nrecs, fired;
    lua_Integer ms;
    timer_errors_t errors;

    /* Stack: harness, interval; luka.dsl reads a duration as the app would. */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "luka.dsl");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "duration");
    lua_pushvalue(L, 2);
    lua_call(L, 1, 2);
    if (!lua_isinteger(L, -2)) return luaL_argerror(L, 2, lua_tostring(L, -1));
    ms = lua_tointeger(L, -2);
    lua_settop(L, 1);
    lua_createtable(L, 0, 4);
    lua_newtable(L);
    errors = (timer_errors_t){L, lua_gettop(L)};
    fired = timer_advance(tk->app->L, ms, timer_failed, &errors);
    ack_all(tk);
    lua_setfield(L, -2, "errors");
    lua_pushinteger(L, fired);
    lua_setfield(L, -2, "fired");
    lua_createtable(L, tk->nrecs - first, 0);
    for (int i = first; i < tk->nrecs; i++) {
        push_record(L, &tk->recs[i]);
        lua_rawseti(L, -2, i - first + 1);
    }
    lua_setfield(L, -2, "published");
    lua_pushinteger(L, tk->now += ms);
    lua_setfield(L, -2, "now");
    return 1;
}

static int l_close(lua_State *L) {
    struct testkit **ud = luaL_checkudata(L, 1, HARNESS_MT);
    if (*ud) close_kit(*ud);
    *ud = NULL;
    return 0;
}

int testkit_open(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"deliver", l_deliver}, {"published", l_published}, {"logs", l_logs},
        {"fail_publishes", l_fail_publishes},
        {"counters", l_counters}, {"advance", l_advance}, {"close", l_close}, {NULL, NULL}};
    json_init(L);
    if (luaL_newmetatable(L, HARNESS_MT)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_close);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_load);
    lua_setfield(L, -2, "load");
    json_push_null(L);
    lua_setfield(L, -2, "null");
    lua_newtable(L);
    json_inject_api(L);
    lua_setfield(L, -2, "json");
    return 1;
}
