/* testkit_sink.c - the test kit's pretend broker: sinks that record each
 * publish (with the delivered message it belongs to) instead of producing
 * it, and answer the publishes when the harness asks, failing as many as
 * a spec told them to. */
#include "cmd/testkit_sink.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "api/hooks.h"
#include "base/json.h"
#include "flow/call.h"
#include "flow/pipeline.h"
#include "lua/meta.h"

struct testkit_pub {
    sink_t sink;
    testkit_sinks_t *owner;
};

struct testkit_ack {
    publish_tag_t *tag; /* NULL: a publish made outside any message */
    int fail;
    int rec;                       /* its record */
    const publisher_conf_t *conf;  /* the publisher it went to */
};

static const publisher_conf_t internal_conf = {
    .name = "luka.internal", .topic = "", .where = "dead letters and resends", .key_fn = LUA_NOREF,
    .internal = 1, .on_delivery = LUA_NOREF};

/* The message a publish belongs to: its stage's tag names it; a publish a
 * handler waits for is made by the message whose code runs now. */
static int item_of(testkit_sinks_t *s, const publish_tag_t *tag) {
    const inflight_t *inf = tag && !tag->reported ? tag->inf : call_current();
    return s->item_of && inf ? s->item_of(s->item_ctx, inf) : -1;
}

static int sink_send(sink_t *sink, const char *topic, int32_t partition, const char *key,
                     size_t keylen, char *value, size_t len, rd_kafka_headers_t *headers,
                     publish_tag_t *tag, char *errbuf, size_t errlen) {
    testkit_sinks_t *s = ((testkit_pub_t *)sink)->owner;
    testkit_record_t *r;
    (void)errbuf, (void)errlen;

    if (s->nrecs == s->caprecs) {
        s->caprecs = s->caprecs ? s->caprecs * 2 : 16;
        s->recs = realloc(s->recs, s->caprecs * sizeof(*s->recs));
    }
    r = &s->recs[s->nrecs++];
    r->target = strdup(sink->conf->name);
    r->topic = strdup(topic ? topic : sink->conf->topic);
    r->partition = partition;
    r->key = key ? malloc(keylen ? keylen : 1) : NULL;
    if (key) memcpy(r->key, key, keylen);
    r->keylen = keylen;
    r->value = value; /* the record's now, and the headers too */
    r->len = len;
    r->headers = headers;
    r->item = item_of(s, tag);
    if (s->nacks == s->capacks) {
        s->capacks = s->capacks ? s->capacks * 2 : 16;
        s->acks = realloc(s->acks, s->capacks * sizeof(*s->acks));
    }
    s->acks[s->nacks].tag = tag;
    s->acks[s->nacks].rec = s->nrecs - 1;
    s->acks[s->nacks].conf = sink->conf;
    s->acks[s->nacks++].fail = s->fail_next > 0 ? s->fail_next-- > 0 : 0;
    return 0;
}

static const sink_ops_t kit_sink = {sink_send};

static sink_t *find_sink(void *ctx, const char *name) {
    testkit_sinks_t *s = ctx;
    for (int i = 0; i < s->npubs - 1; i++)
        if (strcmp(s->pubs[i].sink.conf->name, name) == 0) return &s->pubs[i].sink;
    return NULL;
}

static sink_t *internal_sink(void *ctx, char *errbuf, size_t errlen) {
    testkit_sinks_t *s = ctx;
    (void)errbuf, (void)errlen;
    return &s->pubs[s->npubs - 1].sink;
}

void testkit_sinks_open(testkit_sinks_t *s, const app_t *app) {
    memset(s, 0, sizeof(*s));
    s->npubs = app->npubs + 1;
    s->pubs = calloc(s->npubs, sizeof(*s->pubs));
    for (int i = 0; i < s->npubs; i++) {
        s->pubs[i].sink.ops = &kit_sink;
        s->pubs[i].sink.conf = i < app->npubs ? &app->pubs[i] : &internal_conf;
        s->pubs[i].owner = s;
    }
    s->sinks = (sinks_t){find_sink, internal_sink, s};
}

void testkit_sinks_close(testkit_sinks_t *s) {
    for (int i = 0; i < s->nrecs; i++) {
        testkit_record_t *r = &s->recs[i];
        free(r->target), free(r->topic), free(r->key), free(r->value);
        if (r->headers) rd_kafka_headers_destroy(r->headers);
    }
    free(s->recs), free(s->acks), free(s->pubs);
    memset(s, 0, sizeof(*s));
}

/* The report of a's publish for its publisher's on_delivery. */
static void report(testkit_sinks_t *s, const testkit_ack_t *a) {
    const testkit_record_t *r = &s->recs[a->rec];
    message_t m = {0};
    script_err_t err;
    int32_t partition = r->partition >= 0 ? r->partition : 0;

    if (a->conf->on_delivery == LUA_NOREF) return;
    m.topic = r->topic;
    m.partition = partition;
    m.offset = 0;
    for (int i = 0; i < a->rec; i++)
        m.offset += strcmp(s->recs[i].topic, r->topic) == 0 &&
                    (s->recs[i].partition >= 0 ? s->recs[i].partition : 0) == partition;
    m.key = r->key;
    m.key_len = r->keylen;
    m.headers = r->headers;
    m.timestamp = -1;
    if (hooks_delivery(a->conf, &m, a->fail ? RD_KAFKA_RESP_ERR__MSG_TIMED_OUT : 0, &err) &&
        s->hook_failed)
        s->hook_failed(s->hook_ud, &err);
}

void testkit_sinks_ack(testkit_sinks_t *s) {
    /* A report may send more (a dead letter, what on_delivery publishes),
     * growing the array. */
    for (int i = 0; i < s->nacks; i++) {
        testkit_ack_t a = s->acks[i];
        if (a.tag) pipeline_reported(a.tag, a.fail ? RD_KAFKA_RESP_ERR__MSG_TIMED_OUT : 0);
        else report(s, &a);
    }
    s->nacks = 0;
}

void testkit_push_record(lua_State *L, const testkit_record_t *r) {
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

void testkit_push_records(lua_State *L, const testkit_sinks_t *s, int first) {
    lua_createtable(L, s->nrecs - first, 0);
    for (int i = first; i < s->nrecs; i++) {
        testkit_push_record(L, &s->recs[i]);
        lua_rawseti(L, -2, i - first + 1);
    }
}
