/* testkit_log.c - the test kit's log capture: a sink of luka's logger
 * (base/log.h) that copies each record into the harness in use, and
 * hands the copies to a spec as tables, fields decoded from their JSON. */
#include "cmd/testkit_log.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "base/json.h"
#include "base/log.h"

typedef struct field {
    char *name, *value;
    int json;
} field_t;

/* One record, copied: a record lives only during the sink's call. */
typedef struct entry {
    int level;
    char *component, *msg, *traceback;
    field_t *fields;
    int nfields;
    int has_ctx;
    char *app, *endpoint, *group, *topic, *key, *id, *trace_id;
    size_t key_len, id_len;
    int32_t partition;
    int64_t offset;
} entry_t;

struct testkit_logs {
    entry_t *e;
    int n, cap;
};

/* Where records go now. */
static testkit_logs_t *capturing;

static char *dup_n(const char *s, size_t n) {
    char *d;
    if (!s || !(d = malloc(n + 1))) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static char *dup(const char *s) { return s ? dup_n(s, strlen(s)) : NULL; }

static void sink(void *ud, const log_record_t *r) {
    testkit_logs_t *l = capturing;
    const log_ctx_t *c = r->ctx;
    entry_t *e;
    (void)ud;

    if (!l) return;
    if (l->n == l->cap) {
        entry_t *grown = realloc(l->e, (size_t)(l->cap ? 2 * l->cap : 16) * sizeof(*l->e));
        if (!grown) return;
        l->e = grown;
        l->cap = l->cap ? 2 * l->cap : 16;
    }
    e = &l->e[l->n++];
    memset(e, 0, sizeof(*e));
    e->level = r->level;
    e->component = dup(r->component);
    e->msg = dup(r->message);
    e->traceback = dup(r->traceback);
    e->fields = r->nfields ? calloc((size_t)r->nfields, sizeof(*e->fields)) : NULL;
    for (int i = 0; e->fields && i < r->nfields; i++) {
        const log_field_t *f = &r->fields[i];
        e->fields[e->nfields++] = (field_t){dup(f->name), dup(f->value), f->json};
    }
    if (!c) return;
    e->has_ctx = 1;
    e->app = dup(c->app);
    e->endpoint = dup(c->endpoint);
    e->group = dup(c->group);
    e->topic = dup(c->topic);
    e->partition = c->partition;
    e->offset = c->offset;
    e->key = dup_n(c->key, c->key_len);
    e->key_len = c->key_len;
    e->id = dup_n(c->id, c->id_len);
    e->id_len = c->id_len;
    e->trace_id = dup(c->trace_id);
}

testkit_logs_t *testkit_logs_new(void) { return calloc(1, sizeof(testkit_logs_t)); }

testkit_logs_t *testkit_logs_capturing(void) { return capturing; }

void testkit_logs_capture(testkit_logs_t *l) {
    capturing = l;
    log_set_sink(l ? sink : NULL, NULL);
}

void testkit_logs_free(testkit_logs_t *l) {
    if (!l) return;
    if (capturing == l) testkit_logs_capture(NULL);
    for (int i = 0; i < l->n; i++) {
        entry_t *e = &l->e[i];
        free(e->component), free(e->msg), free(e->traceback);
        for (int j = 0; j < e->nfields; j++) free(e->fields[j].name), free(e->fields[j].value);
        free(e->fields);
        free(e->app), free(e->endpoint), free(e->group), free(e->topic), free(e->key);
        free(e->id), free(e->trace_id);
    }
    free(l->e);
    free(l);
}

int testkit_logs_count(const testkit_logs_t *l) { return l->n; }

static void set_string(lua_State *L, const char *name, const char *s, size_t n) {
    if (!s) return;
    lua_pushlstring(L, s, n);
    lua_setfield(L, -2, name);
}

static void set_str(lua_State *L, const char *name, const char *s) {
    if (s) set_string(L, name, s, strlen(s));
}

/* Push e's context: { app, endpoint, group, topic, partition, offset, key,
 * id, trace_id }, those it has. */
static void push_context(lua_State *L, const entry_t *e) {
    lua_createtable(L, 0, 9);
    if (!e->has_ctx) return;
    set_str(L, "app", e->app);
    set_str(L, "endpoint", e->endpoint);
    set_str(L, "group", e->group);
    set_str(L, "topic", e->topic);
    if (e->topic && e->partition >= 0) {
        lua_pushinteger(L, e->partition);
        lua_setfield(L, -2, "partition");
    }
    if (e->topic && e->offset >= 0) {
        lua_pushinteger(L, e->offset);
        lua_setfield(L, -2, "offset");
    }
    set_string(L, "key", e->key, e->key_len);
    set_string(L, "id", e->id, e->id_len);
    set_str(L, "trace_id", e->trace_id);
}

static void push_entry(lua_State *L, const entry_t *e) {
    char err[256];
    lua_createtable(L, 0, 6);
    set_str(L, "level", log_level_name(e->level));
    set_str(L, "component", e->component);
    set_str(L, "msg", e->msg);
    set_str(L, "traceback", e->traceback);
    lua_createtable(L, 0, e->nfields);
    for (int i = 0; i < e->nfields; i++) {
        const field_t *f = &e->fields[i];
        if (!f->name || !f->value) continue; /* not copied: out of memory */
        if (!f->json || json_decode(L, f->value, strlen(f->value), err, sizeof(err)) != 0)
            lua_pushstring(L, f->value);
        lua_setfield(L, -2, f->name);
    }
    lua_setfield(L, -2, "fields");
    push_context(L, e);
    lua_setfield(L, -2, "context");
}

static int is_about(const entry_t *e, const testkit_about_t *a) {
    return e->topic && e->partition == a->partition && e->offset == a->offset &&
           strcmp(e->topic, a->topic) == 0;
}

void testkit_logs_push(lua_State *L, const testkit_logs_t *l, int first,
                       const testkit_about_t *about) {
    int n = 0;
    lua_createtable(L, l->n > first ? l->n - first : 0, 0);
    for (int i = first; i < l->n; i++) {
        if (about && !is_about(&l->e[i], about)) continue;
        push_entry(L, &l->e[i]);
        lua_rawseti(L, -2, ++n);
    }
}
