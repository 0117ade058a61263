/* app.c - load an app script into a fresh Lua state: set up the module path
 * beside the script, preload luka's own modules, run the script, and copy
 * the topology luka.dsl recorded into C structures. */
#include "app/app.h"

#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>
#include <lualib.h>

#include "app/embed.h"
#include "base/json.h"
#include "base/log.h"
#include "lua/script.h"
#include "lua/state.h"

/* An app script that runs longer than this at load time is stuck. */
#define LOAD_TIMEOUT_MS 10000

static int embed_loader(lua_State *L) {
    const embed_module_t *m = lua_touserdata(L, lua_upvalueindex(1));
    if (luaL_loadbuffer(L, m->data, m->len, m->chunkname) != LUA_OK) return lua_error(L);
    lua_pushstring(L, m->name);
    lua_call(L, 1, 1);
    return 1;
}

void app_open_modules(lua_State *L, lua_CFunction host_api) {
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    for (const embed_module_t *m = embed_modules; m->name; m++) {
        lua_pushlightuserdata(L, (void *)m);
        lua_pushcclosure(L, embed_loader, 1);
        lua_setfield(L, -2, m->name);
    }
    lua_pushcfunction(L, host_api);
    lua_setfield(L, -2, "luka.host");
    lua_pop(L, 2); /* preload, package */
}

/* Make luka's embedded modules and the host API requirable, and put the
 * app's directory first on the module path. */
static void setup_state(lua_State *L, const char *dir, lua_CFunction host_api) {
    luaL_openlibs(L);
    script_init(L);
    json_init(L);
    app_open_modules(L, host_api);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2); /* path, package */
}

static char *field_str(lua_State *L, int t, const char *name) {
    char *s = NULL;
    if (lua_getfield(L, t, name) == LUA_TSTRING) s = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    return s;
}

static void kvlist_read(lua_State *L, int t, const char *name, kvlist_t *l) {
    int n = 0;
    l->items = NULL;
    l->n = 0;
    if (lua_getfield(L, t, name) != LUA_TTABLE) goto done;
    lua_pushnil(L);
    while (lua_next(L, -2)) n++, lua_pop(L, 1);
    l->items = calloc(n ? n : 1, sizeof(kv_t));
    lua_pushnil(L);
    /* Stack: config, key, value.  luka.dsl has made both strings. */
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
            l->items[l->n].key = strdup(lua_tostring(L, -2));
            l->items[l->n].value = strdup(lua_tostring(L, -1));
            l->n++;
        }
        lua_pop(L, 1);
    }
done:
    lua_pop(L, 1);
}

static void kvlist_free(kvlist_t *l) {
    for (int i = 0; i < l->n; i++) free(l->items[i].key), free(l->items[i].value);
    free(l->items);
}

const char *kvlist_get(const kvlist_t *l, const char *key) {
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->items[i].key, key) == 0) return l->items[i].value;
    return NULL;
}

static int field_ref(lua_State *L, int t, const char *name, int type) {
    if (lua_getfield(L, t, name) == type) return luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    return LUA_NOREF;
}

/* A number luka.dsl's schema gives a default, or that may be absent
 * (absent: 0, or -1 for field_opt).  No default is repeated here. */
static int64_t field_opt(lua_State *L, int t, const char *name, int64_t absent) {
    int64_t v = absent;
    if (lua_getfield(L, t, name) == LUA_TNUMBER) v = (int64_t)lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

static int64_t field_int(lua_State *L, int t, const char *name) { return field_opt(L, t, name, 0); }

/* Copy an endpoint's policy options; luka.dsl applied the defaults.
 * Stack on entry: the endpoint record at index e. */
static void read_policy(lua_State *L, int e, const app_t *app, policy_conf_t *p) {
    static const char *finals[] = {"stop", "resend", "release", "ignore"};
    char *final;

    p->error_fn = p->dedup_fn = LUA_NOREF;
    p->timeout_ms = field_int(L, e, "timeout");
    if (lua_getfield(L, e, "retry") == LUA_TTABLE) {
        p->instant = (int)field_int(L, -1, "instant");
        if (lua_getfield(L, -1, "delayed") == LUA_TTABLE) {
            p->delayed = (int)field_int(L, -1, "attempts");
            p->initial_ms = field_int(L, -1, "initial");
            p->max_ms = field_int(L, -1, "max");
            lua_getfield(L, -1, "multiplier");
            p->multiplier = lua_tonumber(L, -1);
            lua_pop(L, 1);
            lua_getfield(L, -1, "jitter");
            p->jitter = lua_toboolean(L, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (p->delayed == 0) {
        /* release waits between deliveries even without delayed retries. */
        p->initial_ms = p->max_ms = 1000;
        p->multiplier = 1;
    }

    p->error_fn = field_ref(L, e, "error_channel", LUA_TFUNCTION);
    if (p->error_fn != LUA_NOREF) {
        p->error_kind = ERRCH_FUNCTION;
    } else if ((p->error_target = field_str(L, e, "error_channel"))) {
        p->error_kind = app_publisher(app, p->error_target) ? ERRCH_PUBLISHER : ERRCH_TOPIC;
    }
    final = field_str(L, e, "final_failure");
    for (int i = 0; final && i < 4; i++)
        if (strcmp(final, finals[i]) == 0) p->final_failure = i;
    free(final);

    if (lua_getfield(L, e, "dedup") == LUA_TTABLE) {
        p->dedup = 1;
        p->dedup_field = field_str(L, -1, "key");
        p->dedup_fn = field_ref(L, -1, "key", LUA_TFUNCTION);
        p->dedup_header = field_str(L, -1, "header");
        if (!p->dedup_field && p->dedup_fn == LUA_NOREF && !p->dedup_header)
            p->dedup_header = strdup("id");
        p->dedup_ttl_ms = field_int(L, -1, "ttl");
        p->dedup_store = field_str(L, -1, "store");
        p->dedup_max_entries = (int)field_int(L, -1, "max_entries");
    }
    lua_pop(L, 1);
}

/* Copy registry().publishers and registry().endpoints into the app.
 * Stack on entry: registry. */
static void read_topology(lua_State *L, app_t *app) {
    int reg = lua_gettop(L);

    if (lua_getfield(L, reg, "broker") == LUA_TTABLE) {
        app->brokers = field_str(L, -1, "brokers");
        app->client_id = field_str(L, -1, "client_id");
        kvlist_read(L, -1, "config", &app->broker_config);
    }
    lua_pop(L, 1);

    lua_getfield(L, reg, "publishers");
    app->npubs = (int)luaL_len(L, -1);
    app->pubs = calloc(app->npubs ? app->npubs : 1, sizeof(*app->pubs));
    for (int i = 0; i < app->npubs; i++) {
        publisher_conf_t *p = &app->pubs[i];
        lua_rawgeti(L, -1, i + 1); /* Stack: registry, publishers, p */
        p->name = field_str(L, -1, "name");
        p->topic = field_str(L, -1, "topic");
        p->where = field_str(L, -1, "where");
        p->key_field = field_str(L, -1, "key");
        p->key_fn = field_ref(L, -1, "key", LUA_TFUNCTION);
        kvlist_read(L, -1, "config", &p->config);
        p->on_delivery = field_ref(L, -1, "on_delivery", LUA_TFUNCTION);
        p->L = L;
        lua_getfield(L, -1, "channel");
        p->channel = lua_toboolean(L, -1);
        lua_pop(L, 2);
    }
    lua_pop(L, 1);

    if (lua_getfield(L, reg, "runtime") == LUA_TTABLE) {
        app->memory_limit = (size_t)field_int(L, -1, "memory_limit");
        app->timeout_ms = field_int(L, -1, "timeout");
    }
    lua_pop(L, 1);

    lua_getfield(L, reg, "topics");
    app->ntopics = (int)luaL_len(L, -1);
    app->topics = calloc(app->ntopics ? app->ntopics : 1, sizeof(*app->topics));
    for (int i = 0; i < app->ntopics; i++) {
        topic_conf_t *t = &app->topics[i];
        lua_rawgeti(L, -1, i + 1); /* Stack: registry, topics, t */
        t->name = field_str(L, -1, "name");
        t->where = field_str(L, -1, "where");
        t->partitions = (int)field_opt(L, -1, "partitions", -1);
        t->replication = (int)field_opt(L, -1, "replication", -1);
        kvlist_read(L, -1, "config", &t->config);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    lua_getfield(L, reg, "outboxes");
    app->noutboxes = (int)luaL_len(L, -1);
    app->outboxes = calloc(app->noutboxes ? app->noutboxes : 1, sizeof(*app->outboxes));
    for (int i = 0; i < app->noutboxes; i++) {
        outbox_conf_t *o = &app->outboxes[i];
        lua_rawgeti(L, -1, i + 1); /* Stack: registry, outboxes, o */
        o->name = field_str(L, -1, "name");
        o->where = field_str(L, -1, "where");
        o->db = field_str(L, -1, "db");
        o->table = field_str(L, -1, "table");
        o->publisher = field_str(L, -1, "publisher");
        o->batch = (int)field_int(L, -1, "batch");
        o->poll_ms = field_int(L, -1, "poll");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    lua_getfield(L, reg, "endpoints");
    app->neps = (int)luaL_len(L, -1);
    app->eps = calloc(app->neps ? app->neps : 1, sizeof(*app->eps));
    for (int i = 0; i < app->neps; i++) {
        endpoint_conf_t *e = &app->eps[i];
        char *kind, *format;
        lua_rawgeti(L, -1, i + 1); /* Stack: registry, endpoints, e */
        e->name = field_str(L, -1, "name");
        e->group = field_str(L, -1, "group");
        e->where = field_str(L, -1, "where");
        kind = field_str(L, -1, "kind");
        e->channel = kind && strcmp(kind, "channel") == 0;
        free(kind);
        format = field_str(L, -1, "format");
        e->format = format && strcmp(format, "raw") == 0 ? FORMAT_RAW : FORMAT_JSON;
        free(format);
        kvlist_read(L, -1, "config", &e->config);
        e->handle = field_ref(L, -1, "handle", LUA_TFUNCTION);
        e->handle_batch = field_ref(L, -1, "handle_batch", LUA_TFUNCTION);
        if (lua_getfield(L, -1, "batch") == LUA_TTABLE) {
            e->batch_max = (int)field_int(L, -1, "max");
            e->batch_wait_ms = field_int(L, -1, "wait");
        }
        lua_pop(L, 1);
        e->on_assign = field_ref(L, -1, "on_assign", LUA_TFUNCTION);
        e->on_revoke = field_ref(L, -1, "on_revoke", LUA_TFUNCTION);
        e->on_stop = field_ref(L, -1, "on_stop", LUA_TFUNCTION);
        read_policy(L, lua_gettop(L), app, &e->policy);
        e->concurrency = (int)field_int(L, -1, "concurrency");
        e->buffer = (int)field_int(L, -1, "buffer");
        lua_getfield(L, -1, "transactional");
        e->transactional = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (lua_getfield(L, -1, "transaction") == LUA_TTABLE) {
            e->txn_messages = (int)field_int(L, -1, "messages");
            e->txn_interval_ms = field_int(L, -1, "interval");
            e->txn_instance = field_str(L, -1, "instance");
        }
        lua_pop(L, 1);
        format = field_str(L, -1, "ordering");
        e->ordering = !format || strcmp(format, "key") == 0 ? ORDER_KEY
                      : strcmp(format, "partition") == 0   ? ORDER_PARTITION
                                                           : ORDER_NONE;
        free(format);
        /* A batch holds its partition while it runs. */
        if (e->handle_batch != LUA_NOREF) e->ordering = ORDER_PARTITION;
        lua_getfield(L, -1, "topics");
        e->ntopics = (int)luaL_len(L, -1);
        e->topics = calloc(e->ntopics + 1, sizeof(char *));
        for (int t = 0; t < e->ntopics; t++) {
            lua_rawgeti(L, -1, t + 1);
            e->topics[t] = strdup(lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
}

/* Publishes made while the script loaded are sent once the host starts;
 * their targets are checked now, so a typo stops the app before it
 * connects.  Stack on entry: the luka.dsl module at index dsl. */
static void check_deferred(lua_State *L, int dsl) {
    state_push_deferred(L);
    for (lua_Integer i = 1, n = luaL_len(L, -1); i <= n; i++) {
        lua_rawgeti(L, -1, i); /* Stack: list, entry */
        lua_getfield(L, dsl, "check_target");
        lua_getfield(L, -2, "target");
        lua_call(L, 1, 2); /* Stack: list, entry, ok, message */
        if (!lua_toboolean(L, -2)) {
            lua_getfield(L, -3, "where");
            luaL_error(L, "%s: %s", lua_tostring(L, -1), lua_tostring(L, -2));
        }
        lua_pop(L, 3);
    }
    lua_pop(L, 1);
}

/* Read what the script declared; runs in protected mode, app at index 1. */
static int read_app(lua_State *L) {
    app_t *app = lua_touserdata(L, 1);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "luka.dsl");
    lua_call(L, 1, 1); /* Stack: app, dsl */
    check_deferred(L, 2);
    lua_getfield(L, 2, "registry");
    lua_call(L, 0, 1);
    read_topology(L, app);
    return 0;
}

/* Record the script and every module it loaded from the app's directory:
 * what --watch watches.  Runs in protected mode, app at index 1. */
static int list_files(lua_State *L) {
    app_t *app = lua_touserdata(L, 1);
    size_t dirlen = strlen(app->dir);
    int cap = 8;

    app->files = calloc(cap, sizeof(char *));
    app->files[app->nfiles++] = strdup(app->path);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    lua_pushnil(L);
    /* Stack: app, package, loaded, name, module */
    while (lua_next(L, -2)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) continue;
        lua_getfield(L, -3, "searchpath");
        lua_pushvalue(L, -2);
        lua_getfield(L, -5, "path");
        lua_call(L, 2, 1);
        if (lua_isstring(L, -1)) {
            const char *f = lua_tostring(L, -1);
            if (strncmp(f, app->dir, dirlen) == 0 && f[dirlen] == '/') {
                if (app->nfiles == cap) app->files = realloc(app->files, (cap *= 2) * sizeof(char *));
                app->files[app->nfiles++] = strdup(f);
            }
        }
        lua_pop(L, 1);
    }
    return 0;
}

static const char TIMEOUT_KEY = 't';

int64_t app_timeout(lua_State *L) {
    int64_t ms;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &TIMEOUT_KEY);
    ms = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return ms;
}

static const char NAME_KEY = 'n';
static const char DIR_KEY = 'd';

const char *app_dir(lua_State *L) {
    const char *dir;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &DIR_KEY);
    dir = lua_tostring(L, -1); /* anchored by the registry */
    lua_pop(L, 1);
    return dir;
}

const char *app_name(lua_State *L) {
    const char *name;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &NAME_KEY);
    name = lua_tostring(L, -1); /* anchored by the registry */
    lua_pop(L, 1);
    return name;
}

/* Name the app after its script's file, without ".lua". */
static void set_name(lua_State *L, const char *path) {
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t n = strlen(base);
    if (n > 4 && strcmp(base + n - 4, ".lua") == 0) n -= 4;
    lua_pushlstring(L, base, n);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &NAME_KEY);
}

app_t *app_load(const char *path, const char *state_json, lua_CFunction host_api, char *errbuf,
                size_t errlen) {
    app_t *app = calloc(1, sizeof(*app));
    script_err_t err;
    char *tmp;
    lua_State *L;

    app->path = strdup(path);
    tmp = strdup(path);
    app->dir = strdup(dirname(tmp));
    free(tmp);
    app->L = L = state_new();
    if (!L) {
        snprintf(errbuf, errlen, "%s: cannot create a Lua state: out of memory", path);
        goto fail;
    }
    set_name(L, path);
    lua_pushstring(L, app->dir);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &DIR_KEY);
    setup_state(L, app->dir, host_api);
    if (state_json && state_set_luka_state(L, state_json, strlen(state_json), errbuf, errlen))
        goto fail;

    if (luaL_loadfile(L, path) != LUA_OK) {
        snprintf(errbuf, errlen, "%s", lua_tostring(L, -1));
        goto fail;
    }
    if (script_call(L, 0, 0, LOAD_TIMEOUT_MS, &err) != 0) {
        snprintf(errbuf, errlen, "%s", err.msg);
        goto fail;
    }
    lua_pushcfunction(L, read_app);
    lua_pushlightuserdata(L, app);
    if (script_call(L, 1, 0, LOAD_TIMEOUT_MS, &err) != 0) {
        snprintf(errbuf, errlen, "%s", err.msg);
        goto fail;
    }
    lua_pushcfunction(L, list_files);
    lua_pushlightuserdata(L, app);
    if (script_call(L, 1, 0, LOAD_TIMEOUT_MS, &err) != 0) {
        snprintf(errbuf, errlen, "%s", err.msg);
        goto fail;
    }
    state_set_memory_limit(L, app->memory_limit);
    /* Timer callbacks and other code outside handlers run under it. */
    lua_pushinteger(L, app->timeout_ms);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &TIMEOUT_KEY);
    if (app->neps == 0 && app->npubs == 0 && app->ntopics == 0) {
        snprintf(errbuf, errlen,
                 "%s: declares no consumer, channel or publisher; "
                 "add one with luka.consumer \"name\" { ... }",
                 path);
        goto fail;
    }
    return app;
fail:
    app_free(app);
    return NULL;
}

void app_free(app_t *app) {
    if (!app) return;
    /* Closing the state stops its timers too (see api/timer.c). */
    if (app->L) state_close(app->L);
    for (int i = 0; i < app->npubs; i++) {
        publisher_conf_t *p = &app->pubs[i];
        free(p->name), free(p->topic), free(p->where), free(p->key_field);
        kvlist_free(&p->config);
    }
    for (int i = 0; i < app->neps; i++) {
        endpoint_conf_t *e = &app->eps[i];
        free(e->name), free(e->group), free(e->where), free(e->txn_instance);
        for (int t = 0; t < e->ntopics; t++) free(e->topics[t]);
        free(e->topics);
        kvlist_free(&e->config);
        free(e->policy.error_target), free(e->policy.dedup_field);
        free(e->policy.dedup_header), free(e->policy.dedup_store);
    }
    for (int i = 0; i < app->ntopics; i++) {
        free(app->topics[i].name), free(app->topics[i].where);
        kvlist_free(&app->topics[i].config);
    }
    for (int i = 0; i < app->noutboxes; i++) {
        outbox_conf_t *o = &app->outboxes[i];
        free(o->name), free(o->where), free(o->db), free(o->table), free(o->publisher);
    }
    free(app->pubs), free(app->eps), free(app->topics), free(app->outboxes);
    free(app->brokers), free(app->client_id);
    kvlist_free(&app->broker_config);
    for (int i = 0; i < app->nfiles; i++) free(app->files[i]);
    free(app->files);
    free(app->path), free(app->dir);
    free(app);
}

const publisher_conf_t *app_publisher(const app_t *app, const char *name) {
    for (int i = 0; i < app->npubs; i++)
        if (strcmp(app->pubs[i].name, name) == 0) return &app->pubs[i];
    return NULL;
}

const endpoint_conf_t *app_endpoint(const app_t *app, const char *name) {
    for (int i = 0; i < app->neps; i++)
        if (strcmp(app->eps[i].name, name) == 0) return &app->eps[i];
    return NULL;
}

/* dsl.owned_property(clients, key, value); runs in protected mode. */
static int owned_property(lua_State *L) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "luka.dsl");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "owned_property");
    lua_rotate(L, 1, 2); /* Stack: dsl, owned_property, clients, key, value */
    lua_call(L, 3, 1);
    return 1;
}

int app_check_property(const app_t *app, const char *clients, const char *key, const char *value,
                       char *errbuf, size_t errlen) {
    lua_State *L = app->L;
    script_err_t err;
    int rc = 0;

    lua_pushcfunction(L, owned_property);
    lua_pushstring(L, clients);
    lua_pushstring(L, key);
    lua_pushstring(L, value);
    if (script_call(L, 3, 1, LOAD_TIMEOUT_MS, &err) != 0) {
        snprintf(errbuf, errlen, "%s", err.msg);
        return -1;
    }
    if (lua_type(L, -1) == LUA_TSTRING) {
        snprintf(errbuf, errlen, "%s", lua_tostring(L, -1));
        rc = -1;
    }
    lua_pop(L, 1);
    return rc;
}
