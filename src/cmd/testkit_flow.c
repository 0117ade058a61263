/* testkit_flow.c - the test kit as the source of its endpoints' flows:
 * harness:deliver and harness:deliver_all hand a batch of messages to an
 * endpoint's pipeline, in order, run the harness's loop until every one
 * has settled (the pretend broker answering publishes meanwhile), and
 * report what happened to each.  A delayed retry runs at once, its backoff
 * recorded, as production would run it later: by a seek back (the message
 * and what waited behind it in its partition come again) or, under
 * concurrency, in memory.  A release is shown once: the message is not
 * delivered again, and holds back what production would hold behind it
 * until the batch ends. */
#include "cmd/testkit_flow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>

#include "base/json.h"
#include "base/offsets.h"
#include "cmd/testkit_log.h"
#include "flow/inflight.h"
#include "flow/pipeline.h"

#define BATCH_MT "luka.test.batch"
/* Backoffs recorded per message; more are counted in attempts only. */
#define MAX_DELAYS 100

/* A partition the kit has delivered on: its offsets and the next one. */
typedef struct part {
    char *topic;
    int32_t partition;
    int64_t next;
    offsets_t *offsets;
    int held; /* until the batch ends: seeking back to a released message */
} part_t;

/* One message of a batch: what each of its deliveries is built from, and
 * what became of it. */
typedef struct item {
    char *topic, *key, *payload; /* copies; key and payload may be NULL */
    size_t keylen, len;
    int32_t partition;
    int64_t offset, timestamp;
    rd_kafka_headers_t *headers;
    part_t *part;
    redelivery_t again; /* with has_again: what a delivery again had */
    int has_again;
    const void *block; /* its message's block while in the flow: how it is known */
    int pending;       /* to be handed to the flow (again) */
    int parked;        /* released, in memory: waits for the batch's end */
    int ended, committed;
    const char *outcome;
    int attempts;
    char *error;
    int64_t delays[MAX_DELAYS];
    int ndelays;
} item_t;

typedef struct batch {
    item_t *items;
    int n;
} batch_t;

typedef struct tflow {
    flow_t flow;
    testkit_flows_t *kit;
} tflow_t;

struct testkit_flows {
    uv_loop_t *loop;
    testkit_sinks_t *sinks;
    tflow_t *flows; /* one per endpoint */
    int nflows;
    part_t **parts; /* each its own block: items point at them */
    int nparts;
    batch_t *batch;        /* the batch being delivered, or NULL */
    endpoint_stats_t seen; /* its flow's counters when its last message ended */
    int *calls, ncalls, capcalls; /* sizes of the handle_batch calls made for it */
    int seeking;           /* dropped now: behind a seek back, delivered again */
};

#define KIT(f) (((tflow_t *)(f))->kit)

static item_t *find_item(testkit_flows_t *k, const void *block) {
    if (!k->batch || !block) return NULL;
    for (int i = 0; i < k->batch->n; i++)
        if (k->batch->items[i].block == block) return &k->batch->items[i];
    return NULL;
}

static int item_of(void *ctx, const inflight_t *inf) {
    testkit_flows_t *k = ctx;
    item_t *it = find_item(k, inf->msg.own);
    return it ? (int)(it - k->batch->items) : -1;
}

static void add_delay(item_t *it, int64_t delay_ms) {
    if (it->ndelays < MAX_DELAYS) it->delays[it->ndelays++] = delay_ms;
}

static void note(item_t *it, const inflight_t *inf) {
    it->attempts = inf->attempts;
    free(it->error);
    it->error = inf->error ? strdup(inf->error) : NULL;
}

/* The policy released it, or meta:pause paused it: the decisions that
 * could bring it back for ever.  It ends here, shown once. */
static void released(testkit_flows_t *k, item_t *it, const flow_t *f) {
    it->outcome = f->stats.paused > k->seen.paused ? "paused" : "released";
    k->seen = f->stats;
    it->ended = 1;
}

/* What the counters that moved say a message's end was. */
static const char *outcome(const endpoint_stats_t *a, const endpoint_stats_t *b, int done) {
    if (b->stopped > a->stopped) return "stopped";
    if (b->deduplicated > a->deduplicated) return "deduplicated";
    if (b->dead_lettered > a->dead_lettered) return "dead_lettered";
    if (b->resent > a->resent) return "resent";
    if (b->ignored > a->ignored) return "ignored";
    if (b->released > a->released) return "released";
    if (b->paused > a->paused) return "paused";
    if (b->handled > a->handled) return "handled";
    return done ? "committed" : "dropped";
}

/* The source: a delayed retry without concurrency is a seek back, as the
 * consumer does it; the message comes again at once, and what waited
 * behind it in its partition after it. */
static void source_redeliver(flow_t *f, const message_t *m, int attempts, int rounds,
                             int64_t delay_ms) {
    testkit_flows_t *k = KIT(f);
    item_t *it = find_item(k, m->own);

    if (!it) return;
    add_delay(it, delay_ms);
    if (f->stats.released > k->seen.released || f->stats.paused > k->seen.paused) {
        /* Nothing after it in its partition would run any more. */
        released(k, it, f);
        it->part->held = 1;
    } else {
        it->again = (redelivery_t){attempts, rounds};
        it->has_again = it->pending = 1;
        k->seeking = 1;
    }
    pipeline_drop(f, it->part->offsets, 0);
    k->seeking = 0;
}

static void source_stop(flow_t *f) { f->stopped = 1; }

static void source_progress(flow_t *f) { (void)f; }

/* Every counter a message moves moves just before it ends, so those that
 * moved since the last end are its. */
static void source_finished(flow_t *f, const inflight_t *inf, int done) {
    testkit_flows_t *k = KIT(f);
    item_t *it = find_item(k, inf->msg.own);
    const char *o = outcome(&k->seen, &f->stats, done);

    if (!it) return; /* a retry's old record: the new one has the message */
    k->seen = f->stats;
    it->block = NULL;
    if (k->seeking) it->pending = 1;
    note(it, inf);
    if (!it->pending && !it->ended) {
        it->ended = 1;
        it->outcome = o;
    }
}

/* No seek: the kit's partitions are the messages a spec delivers. */
static const source_ops_t kit_source = {source_redeliver, source_stop, source_progress,
                                        source_finished, NULL};

/* A retry waiting in memory (under concurrency) runs at once; a release
 * is parked, holding its lane and its offset, until the batch ends. */
static void on_batch(flow_t *f, int size) {
    testkit_flows_t *k = KIT(f);
    if (k->ncalls == k->capcalls) {
        k->capcalls = k->capcalls ? k->capcalls * 2 : 16;
        k->calls = realloc(k->calls, (size_t)k->capcalls * sizeof(*k->calls));
    }
    k->calls[k->ncalls++] = size;
}

static int64_t retry_wait(flow_t *f, const inflight_t *again) {
    testkit_flows_t *k = KIT(f);
    item_t *it = find_item(k, again->msg.own);

    if (!it) return 0;
    add_delay(it, again->delay_ms);
    if (f->stats.released == k->seen.released) return 0;
    released(k, it, f);
    it->parked = 1;
    return INT64_MAX;
}

testkit_flows_t *testkit_flows_open(app_t *app, uv_loop_t *loop, testkit_sinks_t *sinks,
                                    char *errbuf, size_t errlen) {
    testkit_flows_t *k = calloc(1, sizeof(*k));

    k->loop = loop;
    k->sinks = sinks;
    k->flows = calloc(app->neps + 1, sizeof(*k->flows));
    for (int i = 0; i < app->neps; i++) {
        flow_t *f = &k->flows[i].flow;
        k->flows[i].kit = k;
        /* The kit keeps its dedup record in memory, whatever the app says. */
        if (pipeline_open(f, &app->eps[i], app->L, loop, app->dir, "memory", &kit_source,
                          &sinks->sinks, errbuf, errlen)) {
            testkit_flows_close(k);
            return NULL;
        }
        /* As the consumer sets it. */
        f->retry_in_memory = app->eps[i].concurrency > 1;
        f->retry_wait = retry_wait;
        f->on_batch = on_batch;
        k->nflows++;
    }
    return k;
}

void testkit_flows_close(testkit_flows_t *k) {
    for (int i = 0; i < k->nflows; i++) pipeline_close(&k->flows[i].flow);
    for (int i = 0; i < k->nparts; i++) {
        free(k->parts[i]->topic);
        offsets_unref(k->parts[i]->offsets);
        free(k->parts[i]);
    }
    free(k->parts), free(k->flows), free(k->calls), free(k);
}

flow_t *testkit_flow(lua_State *L, testkit_flows_t *k, const char *name) {
    luaL_Buffer b;
    for (int i = 0; i < k->nflows; i++)
        if (strcmp(k->flows[i].flow.conf->name, name) == 0) return &k->flows[i].flow;
    luaL_buffinit(L, &b);
    for (int i = 0; i < k->nflows; i++) {
        if (i) luaL_addstring(&b, ", ");
        luaL_addstring(&b, k->flows[i].flow.conf->name);
    }
    luaL_pushresult(&b);
    luaL_error(L, "deliver: the app has no endpoint '%s'; it has: %s", name, lua_tostring(L, -1));
    return NULL;
}

/* The partition topic[partition], made on first delivery. */
static part_t *find_part(testkit_flows_t *k, const char *topic, int32_t partition) {
    part_t *pt;
    for (int i = 0; i < k->nparts; i++)
        if (k->parts[i]->partition == partition && strcmp(k->parts[i]->topic, topic) == 0)
            return k->parts[i];
    k->parts = realloc(k->parts, (k->nparts + 1) * sizeof(*k->parts));
    pt = k->parts[k->nparts++] = calloc(1, sizeof(*pt));
    pt->topic = strdup(topic);
    pt->partition = partition;
    pt->offsets = offsets_new(topic, partition);
    return pt;
}

/* A batch is a userdata, so that a spec's mistake raised while reading it
 * (a payload that does not encode) frees what was read. */
static void batch_free(batch_t *b) {
    for (int i = 0; i < b->n; i++) {
        item_t *it = &b->items[i];
        free(it->topic), free(it->key), free(it->payload), free(it->error);
        if (it->headers) rd_kafka_headers_destroy(it->headers);
    }
    free(b->items);
    b->items = NULL;
    b->n = 0;
}

static int batch_gc(lua_State *L) {
    batch_free(luaL_checkudata(L, 1, BATCH_MT));
    return 0;
}

static batch_t *new_batch(lua_State *L, int n) {
    batch_t *b = lua_newuserdatauv(L, sizeof(*b), 0);
    b->items = NULL;
    b->n = 0;
    if (luaL_newmetatable(L, BATCH_MT)) {
        lua_pushcfunction(L, batch_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    b->items = calloc(n ? n : 1, sizeof(*b->items));
    return b;
}

static char *copy(const char *s, size_t len) {
    char *c = malloc(len + 1);
    memcpy(c, s, len);
    c[len] = '\0';
    return c;
}

/* Read the message at stack index payload with its meta (a table, or nil)
 * into the batch's next item, taking its offset in its partition.  what
 * prefixes errors ("deliver", "deliver_all: message 2"). */
static void read_item(lua_State *L, testkit_flows_t *k, flow_t *f, batch_t *b, int payload,
                      int meta, const char *what) {
    item_t *it = &b->items[b->n++];
    int top = lua_gettop(L);
    char err[512];
    struct timespec ts;
    const char *s;
    size_t len;

    it->partition = 0;
    it->offset = -1;
    clock_gettime(CLOCK_REALTIME, &ts);
    it->timestamp = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    it->headers = rd_kafka_headers_new(4);
    if (lua_type(L, payload) == LUA_TSTRING) {
        s = lua_tolstring(L, payload, &len);
        it->payload = copy(s, len);
        it->len = len;
    } else if (!lua_isnil(L, payload)) {
        if (!(it->payload = json_encode(L, payload, &it->len, err, sizeof(err))))
            luaL_error(L, "%s: payload: %s", what, err);
    }
    if (!lua_isnil(L, meta) && !lua_istable(L, meta))
        luaL_error(L, "%s: meta must be a table, not %s", what, luaL_typename(L, meta));
    s = f->conf->topics[0];
    if (lua_istable(L, meta)) {
        if (lua_getfield(L, meta, "topic") == LUA_TSTRING) s = lua_tostring(L, -1);
        if (lua_getfield(L, meta, "partition") == LUA_TNUMBER)
            it->partition = (int32_t)lua_tointeger(L, -1);
        if (lua_getfield(L, meta, "offset") == LUA_TNUMBER) it->offset = lua_tointeger(L, -1);
        if (lua_getfield(L, meta, "timestamp") == LUA_TNUMBER) it->timestamp = lua_tointeger(L, -1);
        if (lua_getfield(L, meta, "attempt") == LUA_TNUMBER && lua_tointeger(L, -1) > 1) {
            it->again = (redelivery_t){(int)lua_tointeger(L, -1) - 1, 0};
            it->has_again = 1;
        }
        if (lua_getfield(L, meta, "key") != LUA_TNIL) {
            const char *key = luaL_tolstring(L, -1, &it->keylen);
            it->key = copy(key, it->keylen);
        }
        if (lua_getfield(L, meta, "headers") == LUA_TTABLE) {
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                /* Stack: ..., headers, name, value */
                const char *v = luaL_tolstring(L, -1, &len);
                rd_kafka_header_add(it->headers, luaL_checkstring(L, -3), -1, v, (ssize_t)len);
                lua_pop(L, 2);
            }
        }
    }
    it->topic = strdup(s);
    lua_settop(L, top);
    it->part = find_part(k, it->topic, it->partition);
    if (it->offset < 0) it->offset = it->part->next;
    if (it->offset >= it->part->next) it->part->next = it->offset + 1;
    it->pending = 1;
}

/* One delivery of it, as a message the flow takes. */
static void build(message_t *m, const item_t *it) {
    size_t tlen = strlen(it->topic) + 1;
    char *block = malloc(tlen + it->keylen + it->len + 1);
    memcpy(block, it->topic, tlen);
    if (it->key) memcpy(block + tlen, it->key, it->keylen);
    if (it->payload) memcpy(block + tlen + it->keylen, it->payload, it->len);
    memset(m, 0, sizeof(*m));
    m->topic = block;
    m->partition = it->partition;
    m->offset = it->offset;
    m->key = it->key ? block + tlen : NULL;
    m->key_len = it->keylen;
    m->payload = it->payload ? block + tlen + it->keylen : NULL;
    m->len = it->len;
    m->timestamp = it->timestamp;
    m->headers = rd_kafka_headers_copy(it->headers);
    m->own = block;
}

/* Whether an item before item i in its partition is still to be handed
 * over: Kafka gives a partition's messages in order, after a seek too. */
static int behind(const batch_t *b, int i) {
    for (int j = 0; j < i; j++)
        if (b->items[j].pending && b->items[j].part == b->items[i].part) return 1;
    return 0;
}

/* Hand the flow what is to be delivered, in order.  Nothing is delivered
 * to a stopped endpoint, nor after a released message in its partition. */
static void hand_over(batch_t *b, flow_t *f) {
    for (int i = 0; i < b->n; i++) {
        item_t *it = &b->items[i];
        message_t m;
        if (!it->pending || behind(b, i)) continue;
        it->pending = 0;
        if (f->stopped || it->part->held) {
            it->ended = 1;
            it->outcome = "dropped";
            continue;
        }
        build(&m, it);
        it->block = m.own;
        pipeline_handle(f, &m, it->part->offsets, it->has_again ? &it->again : NULL);
    }
}

static int pending(const batch_t *b) {
    for (int i = 0; i < b->n; i++)
        if (b->items[i].pending) return 1;
    return 0;
}

/* Whether what is left in f can only wait for ever: no handler runs, and
 * no retry is due but parked releases. */
static int stuck(testkit_flows_t *k, const flow_t *f) {
    if (pipeline_batch_busy(f)) return 0;
    for (const inflight_t *inf = f->inflight; inf; inf = inf->next) {
        const item_t *it = find_item(k, inf->msg.own);
        if (inf->task || (inf->timer && !(it && it->parked))) return 0;
    }
    return 1;
}

/* Run the loop until every message of the batch has ended (or waits
 * behind a release) and every publish is answered.  Between two turns of
 * the loop, the pretend broker answers and the flow is handed what comes
 * (again) until neither has more: a handler that waits for a publish
 * waits for this.  A stopped endpoint lets go of what waits. */
static void settle(testkit_flows_t *k, batch_t *b, flow_t *f) {
    for (;;) {
        do {
            testkit_sinks_ack(k->sinks);
            if (f->stopped) pipeline_drop(f, NULL, 0);
            hand_over(b, f);
            /* Batches are cut at once: the kit's clock does not run. */
            pipeline_flush(f);
        } while (k->sinks->nacks || pending(b));
        if (!f->ninflight || stuck(k, f)) break;
        uv_run(k->loop, UV_RUN_ONCE);
    }
}

/* Where the records of a batch begin: publishes and log lines. */
typedef struct firsts {
    int record, log;
} firsts_t;

static firsts_t firsts(const testkit_flows_t *k) {
    const testkit_logs_t *logs = testkit_logs_capturing();
    return (firsts_t){k->sinks->nrecs, logs ? testkit_logs_count(logs) : 0};
}

/* Push the result of item i, with the records and log lines from first on
 * made for it (with all_records, every one: a batch of one owns all). */
static void push_result(lua_State *L, const testkit_sinks_t *s, const item_t *it, int i,
                        firsts_t first, int all_records) {
    const testkit_logs_t *logs = testkit_logs_capturing();
    testkit_about_t about = {it->topic, it->partition, it->offset};
    int n = 0;
    lua_createtable(L, 0, 8);
    lua_pushstring(L, it->ended ? it->outcome : "dropped");
    lua_setfield(L, -2, "outcome");
    lua_pushboolean(L, it->committed);
    lua_setfield(L, -2, "committed");
    lua_pushinteger(L, it->attempts);
    lua_setfield(L, -2, "attempts");
    lua_pushinteger(L, it->offset);
    lua_setfield(L, -2, "offset");
    if (it->error) {
        lua_pushstring(L, it->error);
        lua_setfield(L, -2, "error");
    }
    lua_createtable(L, it->ndelays, 0);
    for (int d = 0; d < it->ndelays; d++) {
        lua_pushinteger(L, it->delays[d]);
        lua_rawseti(L, -2, d + 1);
    }
    lua_setfield(L, -2, "retries");
    lua_newtable(L);
    for (int r = first.record; r < s->nrecs; r++) {
        const void *v;
        size_t vn;
        if (!all_records && s->recs[r].item != i) continue;
        testkit_push_record(L, &s->recs[r]);
        if (s->recs[r].headers &&
            !rd_kafka_header_get_last(s->recs[r].headers, "luka-dlt-original-topic", &v, &vn)) {
            lua_pushvalue(L, -1);
            lua_setfield(L, -4, "dead_letter");
        }
        lua_rawseti(L, -2, ++n);
    }
    lua_setfield(L, -2, "published");
    if (!logs) return;
    testkit_logs_push(L, logs, first.log, all_records ? NULL : &about);
    lua_setfield(L, -2, "logs");
}

/* Deliver batch b to f and settle it; the stack is left as it was. */
static void run_batch(testkit_flows_t *k, batch_t *b, flow_t *f) {
    k->batch = b;
    k->seen = f->stats;
    k->sinks->item_of = item_of;
    k->sinks->item_ctx = k;
    settle(k, b, f);
    for (int i = 0; i < b->n; i++)
        b->items[i].committed = b->items[i].part->offsets->commit > b->items[i].offset;
    /* Parked releases and what waits behind them end with the batch,
     * uncommitted. */
    pipeline_drop(f, NULL, 0);
    k->sinks->item_of = NULL;
    k->batch = NULL;
    for (int i = 0; i < k->nparts; i++) k->parts[i]->held = 0;
    /* A stop ends that delivery, not the harness. */
    for (int i = 0; i < k->nflows; i++) k->flows[i].flow.stopped = 0;
}

int testkit_deliver(lua_State *L, testkit_flows_t *k) {
    flow_t *f = testkit_flow(L, k, luaL_checkstring(L, 2));
    firsts_t first = firsts(k);
    batch_t *b;

    lua_settop(L, 4);
    /* Stack: harness, endpoint, payload, meta, batch */
    b = new_batch(L, 1);
    read_item(L, k, f, b, 3, 4, "deliver");
    run_batch(k, b, f);
    push_result(L, k->sinks, &b->items[0], 0, first, 1);
    batch_free(b);
    return 1;
}

int testkit_deliver_all(lua_State *L, testkit_flows_t *k) {
    return testkit_deliver_batch(L, k, 0);
}

int testkit_deliver_batch(lua_State *L, testkit_flows_t *k, int batch) {
    flow_t *f = testkit_flow(L, k, luaL_checkstring(L, 2));
    firsts_t first = firsts(k);
    int n;
    char what[64];
    batch_t *b;

    luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    n = (int)luaL_len(L, 3);
    /* Stack: harness, endpoint, list, batch */
    b = new_batch(L, n);
    for (int i = 1; i <= n; i++) {
        snprintf(what, sizeof(what), "%s: message %d", batch ? "deliver_batch" : "deliver_all", i);
        if (lua_rawgeti(L, 3, i) != LUA_TTABLE)
            luaL_error(L, "%s: give { payload, meta }, not %s", what, luaL_typename(L, -1));
        /* Stack: ..., batch, { payload, meta }, payload, meta */
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        read_item(L, k, f, b, lua_gettop(L) - 1, lua_gettop(L), what);
        lua_pop(L, 3);
    }
    if (batch && f->conf->handle_batch == LUA_NOREF)
        luaL_error(L, "deliver_batch: endpoint '%s' has handle, not handle_batch; use deliver_all",
                   f->conf->name);
    k->ncalls = 0;
    run_batch(k, b, f);
    lua_createtable(L, n, 1);
    for (int i = 0; i < n; i++) {
        push_result(L, k->sinks, &b->items[i], i, first, n == 1);
        lua_rawseti(L, -2, i + 1);
    }
    if (batch) {
        lua_createtable(L, k->ncalls, 0);
        for (int i = 0; i < k->ncalls; i++) {
            lua_pushinteger(L, k->calls[i]);
            lua_rawseti(L, -2, i + 1);
        }
        lua_setfield(L, -2, "calls");
    }
    batch_free(b);
    return 1;
}
