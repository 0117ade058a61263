/* replay.c - `luka replay APP --from DLT`: publish an error channel's dead
 * letters again, to the topic each came from (its luka-dlt-original-topic
 * header) or to --to, without the dead-letter headers.  It reads the DLT up
 * to the end it had when replay started and keeps its progress in a group
 * of its own, committed only once the messages it published were
 * acknowledged: a second run replays nothing twice, and a crash replays at
 * most the unacknowledged tail again. */
#include "cmd/replay.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "base/cliopt.h"
#include "base/json.h"
#include "base/log.h"
#include "cmd/admin_client.h"
#include "flow/policy.h"
#include "lua/script.h"
#include "lua/state.h"

/* Messages published between two commits: a crash replays at most these. */
#define BATCH 500
/* How long one filter expression may run. */
#define FILTER_TIMEOUT_MS 1000
#define POLL_MS 100
/* Distinct skip reasons counted one by one; more go under the last. */
#define NREASONS 8

enum { OPT_FROM, OPT_TO, OPT_FILTER, OPT_LIMIT, OPT_DRY_RUN, OPT_GROUP, OPT_BROKERS, OPT_TIMEOUT,
       NOPTS };

static const cliopt_t options[NOPTS] = {
    [OPT_FROM] = {"from", 'f', "TOPIC", "the dead-letter topic to read (required)"},
    [OPT_TO] = {"to", 't', "TOPIC",
                "publish every message to TOPIC instead of the topic its\n"
                "luka-dlt-original-topic header names"},
    [OPT_FILTER] = {"filter", 0, "EXPR",
                    "replay only the messages for which the Lua expression is\n"
                    "true; it sees key, value, msg, headers, topic, partition,\n"
                    "offset, error and attempts (see the README)"},
    [OPT_LIMIT] = {"limit", 'n', "N", "stop after replaying N messages"},
    [OPT_DRY_RUN] = {"dry-run", 0, NULL,
                     "print what would be replayed; publish and commit nothing"},
    [OPT_GROUP] = {"group", 'g', "GROUP",
                   "the group replay keeps its progress in (default\n"
                   "luka-replay.DLT_TOPIC)"},
    [OPT_BROKERS] = ADMIN_OPT_BROKERS,
    [OPT_TIMEOUT] = ADMIN_OPT_TIMEOUT,
};

static const clicmd_t replay_cmd = {
    .name = "replay",
    .synopsis = "replay APP --from DLT_TOPIC [--to TOPIC] [--filter EXPR] [--limit N]\n"
                "       [--dry-run] [options]",
    .about = "Publish the dead letters of DLT_TOPIC again, up to the end the topic had\n"
             "when replay started: each to the topic it came from, or to --to, with\n"
             "its key, value and original headers and without the luka-dlt-* ones.\n"
             "Progress is committed in group luka-replay.DLT_TOPIC once what was\n"
             "published is acknowledged, so a second run replays only what came since.\n"
             "Exit code 1 when a message could not be published, the filter raised or\n"
             "the cluster could not be read; 2 on bad usage.",
    .opts = options,
    .nopts = NOPTS,
};

typedef struct reason {
    char text[200];
    long count;
} reason_t;

typedef struct replay {
    admin_args_t args;
    const char *from, *to, *filter, *group_flag;
    char group[512];
    long limit;
    int dry_run;
    admin_client_t c;
    rd_kafka_t *consumer, *producer;
    lua_State *L;
    int filter_ref;
    const rd_kafka_metadata_t *md;
    int nparts;
    int64_t *high;   /* each partition's end when replay started */
    int64_t *next;   /* the offset after the last message looked at, or -1 */
    int64_t *failed; /* the lowest offset whose publish failed, or INT64_MAX */
    int64_t *committed;
    char *done;
    long replayed, filtered, skipped, pending, failures;
    reason_t reasons[NREASONS];
    int nreasons;
    char failure[2048];
} replay_t;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static int option(void *ud, int opt, const char *v) {
    replay_t *r = ud;
    switch (opt) {
    case CLIOPT_ARG:
        return admin_arg_app(&r->args, v);
    case OPT_FROM:
        if (!*v) return cliopt_bad_usage("replay", "--from needs a topic, got ''");
        r->from = v;
        break;
    case OPT_TO:
        if (!*v) return cliopt_bad_usage("replay", "--to needs a topic, got ''");
        r->to = v;
        break;
    case OPT_FILTER:
        r->filter = v;
        break;
    case OPT_LIMIT:
        if (cliopt_long(v, 1, 1000000000L, &r->limit))
            return cliopt_bad_usage("replay", "--limit takes a count of 1 or more, got '%s'", v);
        break;
    case OPT_DRY_RUN:
        r->dry_run = 1;
        break;
    case OPT_GROUP:
        if (!*v) return cliopt_bad_usage("replay", "--group needs a group id, got ''");
        r->group_flag = v;
        break;
    case OPT_BROKERS:
        return admin_arg_brokers(&r->args, v);
    case OPT_TIMEOUT:
        return admin_arg_timeout(&r->args, v);
    }
    return 0;
}

/* The filter: the expression becomes the body of a function of the
 * variables it may use.  Returns -1 to go on, or the exit code. */
static int compile_filter(replay_t *r) {
    static const char prefix[] =
        "local key, value, msg, headers, topic, partition, offset, error, attempts = ... "
        "return (";
    luaL_Buffer b;
    r->L = state_new();
    luaL_openlibs(r->L);
    script_init(r->L);
    json_init(r->L);
    luaL_buffinit(r->L, &b);
    luaL_addstring(&b, prefix);
    luaL_addstring(&b, r->filter);
    luaL_addstring(&b, "\n)");
    luaL_pushresult(&b);
    if (luaL_loadbuffer(r->L, lua_tostring(r->L, -1), lua_rawlen(r->L, -1), "=--filter") !=
        LUA_OK) {
        /* The prefix shares the expression's first line: the message's
         * line numbers are the expression's. */
        fprintf(stderr,
                "luka replay: --filter is not a Lua expression: %s; write an expression such "
                "as: error:find('timeout') and partition == 0\n",
                lua_tostring(r->L, -1));
        return 2;
    }
    r->filter_ref = luaL_ref(r->L, LUA_REGISTRYINDEX);
    lua_pop(r->L, 1);
    return -1;
}

/* Returns -1 to go on, or the exit code. */
static int parse(replay_t *r, int argc, char **argv) {
    int rc;
    if ((rc = cliopt_parse(&replay_cmd, argc, argv, option, r)) >= 0) return rc;
    if (!r->args.app_path)
        return cliopt_bad_usage("replay", "which app? usage: luka replay APP --from DLT_TOPIC");
    if (!r->from)
        return cliopt_bad_usage("replay", "which dead-letter topic? give --from DLT_TOPIC");
    if (r->group_flag) snprintf(r->group, sizeof(r->group), "%s", r->group_flag);
    else snprintf(r->group, sizeof(r->group), "luka-replay.%s", r->from);
    if (r->filter) return compile_filter(r);
    return -1;
}

static void count_skip(replay_t *r, const char *fmt, const char *arg) {
    char text[200];
    int i;
    snprintf(text, sizeof(text), fmt, arg);
    for (i = 0; i < r->nreasons; i++)
        if (strcmp(r->reasons[i].text, text) == 0) break;
    if (i == r->nreasons && r->nreasons < NREASONS - 1) {
        r->nreasons++;
        snprintf(r->reasons[i].text, sizeof(r->reasons[i].text), "%s", text);
    } else if (i == r->nreasons || i == NREASONS) {
        /* The last slot gathers the rest. */
        i = NREASONS - 1;
        r->nreasons = NREASONS;
        snprintf(r->reasons[i].text, sizeof(r->reasons[i].text), "other reasons");
    }
    r->reasons[i].count++;
    r->skipped++;
}

/* A header's value as a string (copied into buf), or NULL. */
static const char *header(rd_kafka_headers_t *h, const char *name, char *buf, size_t len) {
    const void *v;
    size_t n;
    if (!h || rd_kafka_header_get_last(h, name, &v, &n) || !v) return NULL;
    if (n >= len) n = len - 1;
    memcpy(buf, v, n);
    buf[n] = '\0';
    return buf;
}

/* Whether the filter passes m.  Returns 1 or 0, or -1 with r->failure. */
static int filter_passes(replay_t *r, const rd_kafka_message_t *m, rd_kafka_headers_t *h,
                         const char *topic) {
    lua_State *L = r->L;
    char why[512], buf[64];
    const char *name;
    const void *v;
    size_t n;
    script_err_t err;
    int pass;

    lua_rawgeti(L, LUA_REGISTRYINDEX, r->filter_ref);
    if (m->key) lua_pushlstring(L, m->key, m->key_len);
    else lua_pushnil(L);
    if (m->payload) lua_pushlstring(L, m->payload, m->len);
    else lua_pushnil(L);
    if (!m->payload || json_decode(L, m->payload, m->len, why, sizeof(why)) != 0) lua_pushnil(L);
    lua_newtable(L);
    for (size_t i = 0; h && rd_kafka_header_get_all(h, i, &name, &v, &n) == 0; i++) {
        if (v) lua_pushlstring(L, v, n);
        else lua_pushboolean(L, 0);
        lua_setfield(L, -2, name);
    }
    if (topic) lua_pushstring(L, topic);
    else lua_pushnil(L);
    lua_pushinteger(L, m->partition);
    lua_pushinteger(L, m->offset);
    if (header(h, DLT_ERROR, why, sizeof(why))) lua_pushstring(L, why);
    else lua_pushnil(L);
    if (header(h, DLT_ATTEMPTS, buf, sizeof(buf))) lua_pushinteger(L, strtoll(buf, NULL, 10));
    else lua_pushnil(L);
    if (script_call(L, 9, 1, FILTER_TIMEOUT_MS, &err) != 0) {
        snprintf(r->failure, sizeof(r->failure),
                 "--filter raised on %s[%d]@%lld: %s; nothing from this message on is replayed "
                 "or committed",
                 r->from, (int)m->partition, (long long)m->offset, err.msg);
        return -1;
    }
    pass = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return pass;
}

/* Delivery reports: a failed publish holds back its partition's commit. */
static void delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    replay_t *r = opaque;
    int64_t *src = m->_private; /* {partition, offset} of the dead letter */
    (void)rk;
    r->pending--;
    if (m->err) {
        if (src[1] < r->failed[src[0]]) r->failed[src[0]] = src[1];
        if (!r->failures++)
            snprintf(r->failure, sizeof(r->failure),
                     "cannot publish %s[%d]@%lld again to %s: %s", r->from, (int)src[0],
                     (long long)src[1], rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
    }
    free(src);
}

/* Publish m again to topic, without the dead-letter headers.  Returns 0,
 * or -1 with r->failure. */
static int publish(replay_t *r, const rd_kafka_message_t *m, rd_kafka_headers_t *h,
                   const char *topic, int32_t partition) {
    rd_kafka_headers_t *copy = h ? rd_kafka_headers_copy(h) : rd_kafka_headers_new(0);
    rd_kafka_resp_err_t err;
    int64_t *src = malloc(2 * sizeof(*src));
    const char *name;
    const void *v;
    size_t n;

    if (!src) {
        rd_kafka_headers_destroy(copy);
        snprintf(r->failure, sizeof(r->failure), "out of memory");
        return -1;
    }
    src[0] = m->partition, src[1] = m->offset;
    /* Remove every luka-dlt-* header (each name once: remove takes all of
     * its values), and the resend policy's attempt count, so that the
     * handler starts again at attempt 1. */
    for (size_t i = 0; rd_kafka_header_get_all(copy, i, &name, &v, &n) == 0;) {
        if (strncmp(name, "luka-dlt-", 9) == 0 || strcmp(name, ATTEMPTS_HEADER) == 0) {
            char gone[256];
            snprintf(gone, sizeof(gone), "%s", name);
            rd_kafka_header_remove(copy, gone);
        } else {
            i++;
        }
    }
    for (;;) {
        err = rd_kafka_producev(r->producer, RD_KAFKA_V_TOPIC(topic),
                                RD_KAFKA_V_PARTITION(partition),
                                RD_KAFKA_V_KEY(m->key, m->key_len),
                                RD_KAFKA_V_VALUE(m->payload, m->len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_HEADERS(copy), RD_KAFKA_V_OPAQUE(src), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
        rd_kafka_poll(r->producer, 100); /* room comes with delivery reports */
    }
    if (err) {
        rd_kafka_headers_destroy(copy);
        free(src);
        snprintf(r->failure, sizeof(r->failure), "cannot publish %s[%d]@%lld again to %s: %s",
                 r->from, (int)m->partition, (long long)m->offset, topic, rd_kafka_err2str(err));
        return -1;
    }
    /* copy is now owned by the message. */
    r->pending++;
    return 0;
}

/* Wait for every publish's report, then commit each partition up to what
 * was looked at, but never past a failed publish.  Returns 0, or -1. */
static int settle(replay_t *r) {
    rd_kafka_topic_partition_list_t *l;
    rd_kafka_resp_err_t err;
    int rc = 0;

    if (r->producer) {
        while (r->pending > 0) {
            if (rd_kafka_flush(r->producer, r->c.timeout_ms + 30000) ==
                    RD_KAFKA_RESP_ERR__TIMED_OUT &&
                r->pending > 0) {
                snprintf(r->failure, sizeof(r->failure),
                         "%ld publish(es) not acknowledged by %s; nothing after them is "
                         "committed",
                         r->pending, r->c.brokers);
                return -1;
            }
        }
    }
    if (r->dry_run) return r->failures ? -1 : 0;
    l = rd_kafka_topic_partition_list_new(r->nparts);
    for (int p = 0; p < r->nparts; p++) {
        int64_t to = r->next[p] < r->failed[p] ? r->next[p] : r->failed[p];
        if (to > r->committed[p]) rd_kafka_topic_partition_list_add(l, r->from, p)->offset = to;
    }
    if (l->cnt && (err = rd_kafka_commit(r->consumer, l, 0)) == 0) {
        for (int i = 0; i < l->cnt; i++) {
            if (l->elems[i].err) {
                err = l->elems[i].err;
            } else {
                r->committed[l->elems[i].partition] = l->elems[i].offset;
                log_debug("replay", "committed %s[%d] up to offset %lld in group %s", r->from,
                          (int)l->elems[i].partition, (long long)l->elems[i].offset, r->group);
            }
        }
    }
    if (l->cnt && err) {
        snprintf(r->failure, sizeof(r->failure),
                 "cannot commit replay's progress in group %s: %s (another consumer in that "
                 "group? give --group)",
                 r->group, rd_kafka_err2str(err));
        rc = -1;
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc || r->failures ? -1 : 0;
}

/* Look at one dead letter: skip it, filter it out, print it (--dry-run)
 * or publish it.  Returns 0, or -1 with r->failure. */
static int one(replay_t *r, const rd_kafka_message_t *m) {
    rd_kafka_headers_t *h = NULL;
    char topic_buf[512], part_buf[32], why[512];
    const char *topic;
    int32_t partition = RD_KAFKA_PARTITION_UA;
    const rd_kafka_metadata_topic_t *mt;
    int pass;

    rd_kafka_message_headers(m, &h);
    topic = r->to ? r->to : header(h, DLT_TOPIC, topic_buf, sizeof(topic_buf));
    if (r->filter && (pass = filter_passes(r, m, h, topic)) <= 0) {
        if (pass < 0) return -1;
        r->filtered++;
        return 0;
    }
    if (!topic) {
        count_skip(r, "no %s header (not a luka dead letter? give --to TOPIC)", DLT_TOPIC);
        return 0;
    }
    if (!(mt = admin_find_topic(r->md, topic))) {
        count_skip(r, "topic '%s' does not exist", topic);
        return 0;
    }
    /* Back to the partition it came from, whatever partitioner first put
     * it there; elsewhere (--to) by its key. */
    if (!r->to && header(h, DLT_PARTITION, part_buf, sizeof(part_buf))) {
        long p = strtol(part_buf, NULL, 10);
        if (p >= 0 && p < mt->partition_cnt) partition = (int32_t)p;
    }
    r->replayed++;
    if (r->dry_run) {
        printf("%s[%d]@%lld -> %s", r->from, (int)m->partition, (long long)m->offset, topic);
        if (m->key) printf("  key=%.*s", (int)m->key_len, (const char *)m->key);
        if (header(h, DLT_ERROR, why, sizeof(why))) printf("  error=%s", why);
        putchar('\n');
        return 0;
    }
    return publish(r, m, h, topic, partition);
}

/* The partitions of --from, their ends, and where the group left off;
 * then assign those with something left.  Returns 0, or -1 after printing
 * why. */
static int start(replay_t *r) {
    const rd_kafka_metadata_topic_t *mt = admin_find_topic(r->md, r->from);
    rd_kafka_topic_partition_list_t *l;
    rd_kafka_resp_err_t err;
    int rc = -1, left = 0;

    if (!mt) {
        fprintf(stderr, "luka replay: topic '%s' does not exist at %s; the dead-letter topic is "
                        "the endpoint's error_channel (see luka check %s)\n",
                r->from, r->c.brokers, r->args.app_path);
        return -1;
    }
    if (r->to && !admin_find_topic(r->md, r->to)) {
        fprintf(stderr, "luka replay: --to topic '%s' does not exist at %s; create it first "
                        "(luka topics --apply)\n",
                r->to, r->c.brokers);
        return -1;
    }
    r->nparts = mt->partition_cnt;
    r->high = calloc((size_t)r->nparts, sizeof(*r->high));
    r->next = calloc((size_t)r->nparts, sizeof(*r->next));
    r->failed = calloc((size_t)r->nparts, sizeof(*r->failed));
    r->committed = calloc((size_t)r->nparts, sizeof(*r->committed));
    r->done = calloc((size_t)r->nparts, 1);
    l = rd_kafka_topic_partition_list_new(r->nparts);
    for (int p = 0; p < r->nparts; p++) rd_kafka_topic_partition_list_add(l, r->from, p);
    if (admin_committed(&r->c, r->consumer, r->group, l)) goto done;
    for (int p = 0; p < r->nparts; p++) {
        int64_t low;
        if (admin_watermarks(&r->c, r->consumer, r->from, p, &low, &r->high[p])) goto done;
        r->failed[p] = INT64_MAX;
        l->elems[p].offset = l->elems[p].offset >= low ? l->elems[p].offset : low;
        r->committed[p] = l->elems[p].offset; /* only progress past it is committed */
        r->next[p] = l->elems[p].offset;
        r->done[p] = l->elems[p].offset >= r->high[p];
        left += !r->done[p];
        log_debug("replay", "%s[%d]: from %lld to %lld", r->from, p,
                  (long long)l->elems[p].offset, (long long)r->high[p]);
    }
    if (left && (err = rd_kafka_assign(r->consumer, l))) {
        fprintf(stderr, "luka replay: cannot assign %s: %s\n", r->from, rd_kafka_err2str(err));
        goto done;
    }
    rc = 0;
done:
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

static int all_done(const replay_t *r) {
    for (int p = 0; p < r->nparts; p++)
        if (!r->done[p]) return 0;
    return 1;
}

/* Read until every partition reached its end (or --limit, or a signal),
 * settling every BATCH publishes.  Returns 0, or -1 with r->failure. */
static int loop(replay_t *r) {
    long since = 0;
    while (!all_done(r) && !stop_requested && (!r->limit || r->replayed < r->limit)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(r->consumer, POLL_MS);
        int p, rc = 0;
        if (r->producer) rd_kafka_poll(r->producer, 0);
        if (!m) continue;
        p = m->partition;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (p >= 0 && p < r->nparts) r->done[p] = 1;
        } else if (m->err) {
            log_warn("replay", "%s", rd_kafka_message_errstr(m));
        } else if (p >= 0 && p < r->nparts && !r->done[p] && m->offset < r->high[p]) {
            long before = r->replayed;
            if ((rc = one(r, m)) == 0) {
                r->next[p] = m->offset + 1;
                since += r->replayed - before;
            }
            if (m->offset + 1 >= r->high[p]) r->done[p] = 1;
        } else if (p >= 0 && p < r->nparts) {
            r->done[p] = 1; /* came after replay started */
        }
        rd_kafka_message_destroy(m);
        if (rc) return -1;
        if (since >= BATCH) {
            since = 0;
            if (settle(r)) return -1;
        }
    }
    return 0;
}

static void summary(const replay_t *r, int failed) {
    printf("%s %ld message(s) from %s%s%s; filtered out %ld; skipped %ld%s\n",
           r->dry_run ? "would replay" : "replayed", r->replayed, r->from, r->to ? " to " : "",
           r->to ? r->to : "", r->filtered, r->skipped,
           r->dry_run ? " (dry run: nothing published or committed)" : "");
    for (int i = 0; i < r->nreasons; i++)
        printf("  skipped %ld: %s\n", r->reasons[i].count, r->reasons[i].text);
    if (!r->dry_run && !failed) printf("progress committed in group %s\n", r->group);
    fflush(stdout);
}

static rd_kafka_t *open_client(replay_t *r, rd_kafka_type_t type, char *errbuf, size_t errlen) {
    rd_kafka_conf_t *conf = type == RD_KAFKA_CONSUMER
                                ? admin_consumer_conf(&r->c, r->group, errbuf, errlen)
                                : kafka_conf(&r->c.env, NULL, errbuf, errlen);
    if (!conf) return NULL;
    if (type == RD_KAFKA_CONSUMER) {
        if (rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errbuf, errlen) ||
            rd_kafka_conf_set(conf, "enable.partition.eof", "true", errbuf, errlen))
            goto failed;
    } else {
        /* As luka's publishers: acknowledged by every in-sync replica. */
        if (rd_kafka_conf_set(conf, "acks", "all", errbuf, errlen) ||
            rd_kafka_conf_set(conf, "max.in.flight.requests.per.connection", "1", errbuf,
                              errlen) ||
            rd_kafka_conf_set(conf, "partitioner", "murmur2_random", errbuf, errlen))
            goto failed;
        rd_kafka_conf_set_dr_msg_cb(conf, delivered);
        rd_kafka_conf_set_opaque(conf, r);
    }
    return admin_new(type, conf, errbuf, errlen);
failed:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

int replay_main(int argc, char **argv) {
    replay_t r;
    struct sigaction sa;
    char errbuf[1024];
    int rc;

    memset(&r, 0, sizeof(r));
    r.args = admin_args("replay");
    r.filter_ref = LUA_NOREF;
    if ((rc = parse(&r, argc, argv)) >= 0) goto done;
    rc = 1;
    if (admin_load(&r.c, &r.args)) goto done;
    if (admin_connect(&r.c) || !(r.md = admin_metadata(&r.c))) goto done;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if (!(r.consumer = open_client(&r, RD_KAFKA_CONSUMER, errbuf, sizeof(errbuf))) ||
        (!r.dry_run && !(r.producer = open_client(&r, RD_KAFKA_PRODUCER, errbuf, sizeof(errbuf))))) {
        fprintf(stderr, "luka replay: %s\n", errbuf);
        goto done;
    }
    if (start(&r)) goto done;
    /* After a failure too, what was acknowledged before it is committed. */
    rc = loop(&r);
    rc = settle(&r) || rc ? 1 : 0;
    if (rc) fprintf(stderr, "luka replay: %s\n", r.failure[0] ? r.failure : "failed");
    summary(&r, rc);
done:
    if (r.consumer) {
        rd_kafka_consumer_close(r.consumer);
        rd_kafka_destroy(r.consumer);
    }
    if (r.producer) {
        rd_kafka_flush(r.producer, r.c.timeout_ms);
        rd_kafka_destroy(r.producer);
    }
    if (r.md) rd_kafka_metadata_destroy(r.md);
    admin_close(&r.c);
    if (r.L) state_close(r.L);
    free(r.high);
    free(r.next);
    free(r.failed);
    free(r.committed);
    free(r.done);
    return rc;
}
