/* reload.c - hot reload.  The new app is loaded and validated in full in a
 * fresh Lua state; on any error the old one keeps running.  Otherwise the
 * endpoints and publishers whose Kafka identity (topics, group, client
 * config, dedup store) is unchanged are kept and pointed at the new
 * handlers, so their consumers never leave the group; the others are
 * stopped (after a commit) or started.  Nothing runs during the swap: it
 * happens from a loop callback, never inside a handler. */
#include "runtime/reload.h"

#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "api/lapi.h"
#include "api/timer.h"
#include "base/log.h"
#include "kafka/consumer.h"
#include "kafka/producer.h"
#include "lua/state.h"
#include "lua/task.h"

/* Editors write a file in several steps; wait for the last. */
#define DEBOUNCE_MS 100

/* One process runs one host, so the watch state is a single static. */
typedef struct watch {
    uv_fs_event_t **dirs; /* one watcher per directory holding a file */
    int ndirs;
    char **files; /* real paths */
    int nfiles;
    uv_timer_t debounce;
    int debounce_open;
    int active; /* --watch is on */
} watch_t;

static watch_t watch;

static int same_kv(const kvlist_t *a, const kvlist_t *b) {
    if (a->n != b->n) return 0;
    for (int i = 0; i < a->n; i++) {
        const char *v = kvlist_get(b, a->items[i].key);
        if (!v || strcmp(v, a->items[i].value)) return 0;
    }
    return 1;
}

static int same_str(const char *a, const char *b) {
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Whether the running consumer for a can serve b unchanged. */
static int same_endpoint(const endpoint_conf_t *a, const endpoint_conf_t *b) {
    const policy_conf_t *pa = &a->policy, *pb = &b->policy;
    if (strcmp(a->group, b->group) || a->ntopics != b->ntopics || !same_kv(&a->config, &b->config))
        return 0;
    /* The scheduler's shape is fixed while messages are in it. */
    if (a->concurrency != b->concurrency || a->ordering != b->ordering) return 0;
    /* So is whether messages gather in batches (their size may change). */
    if ((a->handle_batch == LUA_NOREF) != (b->handle_batch == LUA_NOREF)) return 0;
    /* A transactional endpoint's producer and commits are set at its open. */
    if (a->transactional != b->transactional || a->txn_messages != b->txn_messages ||
        a->txn_interval_ms != b->txn_interval_ms || !same_str(a->txn_instance, b->txn_instance))
        return 0;
    for (int i = 0; i < a->ntopics; i++)
        if (strcmp(a->topics[i], b->topics[i])) return 0;
    return pa->dedup == pb->dedup && same_str(pa->dedup_store, pb->dedup_store) &&
           pa->dedup_ttl_ms == pb->dedup_ttl_ms && pa->dedup_max_entries == pb->dedup_max_entries;
}

static int same_publisher(const publisher_conf_t *a, const publisher_conf_t *b) {
    return strcmp(a->topic, b->topic) == 0 && same_kv(&a->config, &b->config);
}

static void fail(host_t *h, uint64_t t0, const char *why) {
    h->reload_failures++;
    log_error("reload", "reload failed after %.1f ms; still running the previous code: %s",
              (double)(uv_hrtime() - t0) / 1e6, why);
}

static void reload_watch(host_t *h);

/* Apps a reload replaced whose handlers were still running: each stays
 * open (and bound, so what those handlers publish goes out) until its
 * last task ends, checked every RETIRE_MS. */
#define RETIRE_MS 50
static struct {
    app_t **apps;
    int n;
    uv_timer_t timer;
    int timer_open;
} retired;

static void reap(int all) {
    for (int i = 0; i < retired.n;) {
        app_t *app = retired.apps[i];
        int left = task_count(app->L);
        if (left && !all) {
            i++;
            continue;
        }
        if (left)
            log_warn("reload", "closing the replaced app with %d handler(s) still running", left);
        else
            log_info("reload", "the replaced app's last handler ended: its state is closed");
        api_bind(app->L, NULL);
        app_free(app);
        retired.apps[i] = retired.apps[--retired.n];
    }
    if (!retired.n && retired.timer_open) uv_timer_stop(&retired.timer);
}

static void on_reap(uv_timer_t *t) {
    (void)t;
    reap(0);
}

static void retire(host_t *h, app_t *old) {
    int left = task_count(old->L);
    if (!left) {
        api_bind(old->L, NULL);
        app_free(old);
        return;
    }
    log_info("reload", "%d handler(s) still run on the replaced app: it closes when they end", left);
    retired.apps = realloc(retired.apps, (size_t)(retired.n + 1) * sizeof(*retired.apps));
    retired.apps[retired.n++] = old;
    if (!retired.timer_open) {
        uv_timer_init(h->loop, &retired.timer);
        retired.timer_open = 1;
    }
    uv_timer_start(&retired.timer, on_reap, RETIRE_MS, RETIRE_MS);
}

static void do_reload(host_t *h) {
    uint64_t t0 = uv_hrtime();
    app_t *next, *old = h->app;
    publisher_t **pubs = NULL, **reuse_p = NULL, **old_pubs;
    endpoint_t **eps = NULL, **reuse_e = NULL, **old_eps;
    int npubs = 0, neps = 0, kept = 0, started = 0, stopped = 0, old_npubs, old_neps;
    char err[2048];
    size_t len;
    char *state;
    kafka_env_t probe;

    if (h->stopping) return;
    if (!(state = state_get_luka_state(old->L, &len, err, sizeof(err)))) {
        char why[2200];
        snprintf(why, sizeof(why), "luka.state cannot be carried over: %s", err);
        fail(h, t0, why);
        return;
    }
    next = app_load(old->path, state, lapi_open, err, sizeof(err));
    free(state);
    if (!next) {
        fail(h, t0, err);
        return;
    }
    probe = h->kafka;
    probe.app = next;
    if (kafka_check_config(&probe, err, sizeof(err))) {
        fail(h, t0, err);
        app_free(next);
        return;
    }

    /* Open what is new first, with the new broker config: if anything
     * fails, nothing has changed. */
    h->kafka.app = next;
    pubs = calloc(next->npubs + 2, sizeof(*pubs));
    reuse_p = calloc(h->npubs + 1, sizeof(*reuse_p));
    for (int i = 0; i < next->npubs; i++) {
        publisher_t *p = NULL;
        for (int j = 0; j < h->npubs && !p; j++)
            if (h->pubs[j] != h->internal && !reuse_p[j] &&
                strcmp(h->pubs[j]->sink.conf->name, next->pubs[i].name) == 0 &&
                same_publisher(h->pubs[j]->sink.conf, &next->pubs[i]))
                p = reuse_p[j] = h->pubs[j];
        if (!p && !(p = producer_open(&h->kafka, &next->pubs[i], err, sizeof(err)))) goto rollback;
        pubs[npubs++] = p;
    }
    eps = calloc(next->neps + 1, sizeof(*eps));
    reuse_e = calloc(h->neps + 1, sizeof(*reuse_e));
    for (int i = 0; i < next->neps; i++) {
        endpoint_t *ep = NULL;
        if (!host_selected(h, next->eps[i].name)) continue;
        for (int j = 0; j < h->neps && !ep; j++)
            if (!reuse_e[j] && !h->eps[j]->halted &&
                strcmp(h->eps[j]->flow.conf->name, next->eps[i].name) == 0 &&
                same_endpoint(h->eps[j]->flow.conf, &next->eps[i]))
                ep = reuse_e[j] = h->eps[j];
        if (!ep && !(ep = consumer_open(&h->kafka, &next->eps[i], next->L, &h->sinks, err,
                                        sizeof(err))))
            goto rollback;
        eps[neps++] = ep;
    }

    /* The swap.  Kept clients take the new definitions, which name the
     * new state's handlers; the rest of the old go, committing first. */
    for (int i = 0; i < npubs; i++) pubs[i]->sink.conf = &next->pubs[i];
    for (int k = 0; k < neps; k++) {
        int was_kept = 0;
        for (int j = 0; j < h->neps; j++) was_kept |= reuse_e[j] == eps[k];
        eps[k]->flow.conf = app_endpoint(next, eps[k]->flow.conf->name);
        eps[k]->flow.L = next->L;
        if (was_kept) {
            kept++;
        } else {
            started++;
            log_info("reload", "started endpoint '%s'", eps[k]->flow.conf->name);
        }
    }
    if (h->internal) pubs[npubs++] = h->internal;
    timer_stop_all(old->L);
    old_pubs = h->pubs, old_npubs = h->npubs;
    old_eps = h->eps, old_neps = h->neps;
    h->pubs = pubs;
    h->npubs = npubs;
    h->eps = eps;
    h->neps = neps;
    h->app = next;
    /* The old clients go once the host runs the new app: the delivery
     * reports their closing serves reach the policies of kept endpoints,
     * which call into the new state (a purged publish fails its message
     * like any other).  Their own definitions live until the old app is
     * freed below. */
    for (int j = 0; j < old_neps; j++)
        if (!reuse_e[j]) {
            log_info("reload", "stopping endpoint '%s'", old_eps[j]->flow.conf->name);
            consumer_close(old_eps[j]);
            stopped++;
        }
    for (int j = 0; j < old_npubs; j++)
        if (!reuse_p[j] && old_pubs[j] != h->internal) {
            producer_flush(old_pubs[j], (int)h->drain_timeout_ms);
            producer_close(old_pubs[j]);
        }
    free(old_pubs);
    free(old_eps);
    retire(h, old);
    api_bind(next->L, &h->api);
    lapi_start(next->L);
    free(reuse_p);
    free(reuse_e);
    h->reloads++;
    log_info("reload", "reloaded %s in %.1f ms: %d endpoint(s) kept, %d started, %d stopped",
             next->path, (double)(uv_hrtime() - t0) / 1e6, kept, started, stopped);
    if (watch.active) reload_watch(h);
    return;

rollback:
    for (int i = 0; i < npubs; i++) {
        int reused = 0;
        for (int j = 0; j < h->npubs; j++) reused |= reuse_p[j] == pubs[i];
        if (!reused) producer_close(pubs[i]);
    }
    for (int i = 0; i < neps; i++) {
        int reused = 0;
        for (int j = 0; j < h->neps; j++) reused |= reuse_e[j] == eps[i];
        if (!reused) consumer_close(eps[i]);
    }
    free(pubs), free(eps), free(reuse_p), free(reuse_e);
    h->kafka.app = old;
    fail(h, t0, err);
    app_free(next);
}

static void on_debounce(uv_timer_t *t) { do_reload(t->data); }

void reload_request(host_t *h, const char *why) {
    if (h->stopping) return;
    if (!watch.debounce_open || !uv_is_active((uv_handle_t *)&watch.debounce))
        log_info("reload", "%s: reloading", why);
    if (!watch.debounce_open) {
        uv_timer_init(h->loop, &watch.debounce);
        watch.debounce.data = h;
        watch.debounce_open = 1;
    }
    uv_timer_start(&watch.debounce, on_debounce, DEBOUNCE_MS, 0);
}

static void on_change(uv_fs_event_t *e, const char *filename, int events, int status) {
    host_t *h = e->data;
    char dir[PATH_MAX], path[PATH_MAX * 2];
    size_t size = sizeof(dir);
    (void)events;
    if (status < 0 || !filename || uv_fs_event_getpath(e, dir, &size)) return;
    snprintf(path, sizeof(path), "%s/%s", dir, filename);
    for (int i = 0; i < watch.nfiles; i++)
        if (strcmp(path, watch.files[i]) == 0) {
            char why[PATH_MAX * 2 + 16];
            snprintf(why, sizeof(why), "%s changed", path);
            reload_request(h, why);
            return;
        }
}

static void free_handle(uv_handle_t *handle) { free(handle); }

static void unwatch(void) {
    for (int i = 0; i < watch.ndirs; i++) uv_close((uv_handle_t *)watch.dirs[i], free_handle);
    free(watch.dirs);
    watch.dirs = NULL;
    watch.ndirs = 0;
    for (int i = 0; i < watch.nfiles; i++) free(watch.files[i]);
    free(watch.files);
    watch.files = NULL;
    watch.nfiles = 0;
}

/* Directories are watched rather than files, because editors often save
 * by writing a new file and renaming it over the old one. */
static void reload_watch(host_t *h) {
    const app_t *app = h->app;

    unwatch();
    watch.active = 1;
    watch.files = calloc(app->nfiles + 1, sizeof(char *));
    watch.dirs = calloc(app->nfiles + 1, sizeof(uv_fs_event_t *));
    for (int i = 0; i < app->nfiles; i++) {
        char *real = realpath(app->files[i], NULL), *copy, *dir;
        int known = 0;
        if (!real) continue;
        watch.files[watch.nfiles++] = real;
        copy = strdup(real);
        dir = dirname(copy);
        for (int d = 0; d < watch.ndirs && !known; d++) {
            char have[PATH_MAX];
            size_t size = sizeof(have);
            known = !uv_fs_event_getpath(watch.dirs[d], have, &size) && strcmp(have, dir) == 0;
        }
        if (!known) {
            uv_fs_event_t *e = malloc(sizeof(*e));
            uv_fs_event_init(h->loop, e);
            e->data = h;
            if (uv_fs_event_start(e, on_change, dir, 0) == 0) {
                watch.dirs[watch.ndirs++] = e;
            } else {
                log_warn("reload", "cannot watch %s", dir);
                uv_close((uv_handle_t *)e, free_handle);
            }
        }
        free(copy);
    }
    log_info("reload", "watching %d file(s) in %d director%s for changes", watch.nfiles,
             watch.ndirs, watch.ndirs == 1 ? "y" : "ies");
}

static void reload_stop(host_t *h) {
    (void)h;
    unwatch();
    watch.active = 0;
    if (watch.debounce_open) {
        uv_close((uv_handle_t *)&watch.debounce, NULL);
        watch.debounce_open = 0;
    }
}

/* At exit every handler has been abandoned or has ended. */
static void reload_exit(host_t *h) {
    reload_stop(h);
    reap(1);
    free(retired.apps);
    retired.apps = NULL;
    if (retired.timer_open) uv_close((uv_handle_t *)&retired.timer, NULL);
    retired.timer_open = 0;
}

static void on_running(host_t *h) {
    if (h->opts->watch) reload_watch(h);
}

static void on_hangup(host_t *h) { reload_request(h, "SIGHUP"); }

const host_ops_t reload_host_ops = {
    .name = "reload",
    .running = on_running,
    .hangup = on_hangup,
    .draining = reload_stop,
    .stop = reload_exit,
};
