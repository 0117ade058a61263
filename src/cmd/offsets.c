/* offsets.c - `luka offsets APP --group G --reset WHERE`: move a group's
 * committed offsets, like kafka-consumer-groups --reset-offsets.  It prints
 * the plan; only with --execute does it commit, and only into a group
 * without members, which the group coordinator itself checks:
 *
 * - The new offsets are committed as a non-member (generation -1), as
 *   Kafka's AlterConsumerGroupOffsets does: a coordinator accepts that only
 *   for a group with no members (UNKNOWN_MEMBER_ID otherwise).
 * - librdkafka 2.0.2's mock cluster (the embedded broker) refuses it for
 *   any group that ever had a member, and has no DescribeGroups to ask
 *   (asking deadlocks librdkafka: see admin_lag.c).  There luka joins the
 *   group itself and reads the JoinGroup answer (librdkafka's cgrp debug
 *   line, the only place it shows it): only when luka leads a generation
 *   of one member does it commit, as that member.  A member that joins
 *   meanwhile starts a new generation, and the coordinator refuses the
 *   commit.  The running members, if any, see one rebalance. */
#include "cmd/replay.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/cliopt.h"
#include "base/log.h"
#include "cmd/admin_client.h"
#include "kafka/apiversions.h"

#define POLL_MS 100
/* How long the join waits for its generation: a dead member's session
 * (6 s in luka's specs, 45 s by default) may have to expire first. */
#define JOIN_WAIT_MS 60000

enum { OPT_GROUP, OPT_RESET, OPT_TOPIC, OPT_EXECUTE, OPT_BROKERS, OPT_TIMEOUT, NOPTS };

static const cliopt_t options[NOPTS] = {
    [OPT_GROUP] = {"group", 'g', "GROUP", "the consumer group (required)"},
    [OPT_RESET] = {"reset", 0, "WHERE",
                   "earliest, latest, an OFFSET, an ISO-8601 time\n"
                   "(2026-11-29T19:00:00Z) or @EPOCH_MS (required)"},
    [OPT_TOPIC] = {"topic", 't', "TOPIC[:PARTITION]",
                   "only this topic, or partition (repeatable; default: the\n"
                   "topics the app's endpoints in GROUP consume)"},
    [OPT_EXECUTE] = {"execute", 0, NULL,
                     "commit the new offsets (default: only print the plan);\n"
                     "refused while the group has members"},
    [OPT_BROKERS] = ADMIN_OPT_BROKERS,
    [OPT_TIMEOUT] = ADMIN_OPT_TIMEOUT,
};

static const clicmd_t offsets_cmd = {
    .name = "offsets",
    .synopsis = "offsets APP --group GROUP --reset earliest|latest|OFFSET|TIME\n"
                "       [--topic TOPIC[:PARTITION]]... [--execute] [options]",
    .about = "Print, for each partition, the group's committed offset and the one it\n"
             "would be reset to; with --execute, commit the new ones.  Like\n"
             "kafka-consumer-groups --reset-offsets, --execute is refused while the\n"
             "group has members: stop its consumers first.  An OFFSET out of the\n"
             "log's range is moved to its nearest end; a TIME resets to the first\n"
             "message at or after it (the end when none is).  Exit code 1 when the\n"
             "cluster could not be read, the group has members or a commit failed.",
    .opts = options,
    .nopts = NOPTS,
};

enum { RESET_EARLIEST, RESET_LATEST, RESET_OFFSET, RESET_TIME };

typedef struct offsets {
    admin_args_t args;
    const char *group, *reset;
    const char **topics; /* --topic, as given */
    int ntopics, execute;
    int how;
    int64_t arg;
    admin_client_t c;
    const rd_kafka_metadata_t *md;
    rd_kafka_topic_partition_list_t *plan; /* .offset new, current in opaque */
    int64_t *current;
    /* The join (on a cluster without DescribeGroups). */
    int joined, leader, members, join_error, assigned;
    char join_why[256];
} offsets_t;

static int option(void *ud, int opt, const char *v) {
    offsets_t *o = ud;
    long n;
    switch (opt) {
    case CLIOPT_ARG:
        return admin_arg_app(&o->args, v);
    case OPT_GROUP:
        if (!*v) return cliopt_bad_usage("offsets", "--group needs a group id, got ''");
        o->group = v;
        break;
    case OPT_RESET:
        o->reset = v;
        if (strcmp(v, "earliest") == 0) o->how = RESET_EARLIEST;
        else if (strcmp(v, "latest") == 0) o->how = RESET_LATEST;
        else if (cliopt_long(v, 0, 0x7fffffffffffffffL, &n) == 0) o->how = RESET_OFFSET, o->arg = n;
        else if (cliopt_time(v, &o->arg) == 0) o->how = RESET_TIME;
        else
            return cliopt_bad_usage("offsets",
                                    "--reset takes earliest, latest, an offset (42), an "
                                    "ISO-8601 time (2026-11-29T19:00:00Z) or @EPOCH_MS, got '%s'",
                                    v);
        break;
    case OPT_TOPIC:
        if (!*v || *v == ':') return cliopt_bad_usage("offsets", "--topic needs TOPIC[:PARTITION], got '%s'", v);
        o->topics[o->ntopics++] = v;
        break;
    case OPT_EXECUTE:
        o->execute = 1;
        break;
    case OPT_BROKERS:
        return admin_arg_brokers(&o->args, v);
    case OPT_TIMEOUT:
        return admin_arg_timeout(&o->args, v);
    }
    return 0;
}

static int parse(offsets_t *o, int argc, char **argv) {
    int rc;
    if (!(o->topics = calloc((size_t)argc + 1, sizeof(*o->topics)))) return 1;
    if ((rc = cliopt_parse(&offsets_cmd, argc, argv, option, o)) >= 0) return rc;
    if (!o->args.app_path)
        return cliopt_bad_usage("offsets", "which app? usage: luka offsets APP --group GROUP "
                                           "--reset WHERE");
    if (!o->group) return cliopt_bad_usage("offsets", "which group? give --group GROUP");
    if (!o->reset)
        return cliopt_bad_usage("offsets", "reset to where? give --reset earliest, latest, an "
                                           "offset or a time");
    return -1;
}

/* Add every partition of topic (or only partition, when >= 0).  Returns
 * 0, or -1 after printing why. */
static int add_topic(offsets_t *o, const char *topic, long partition) {
    const rd_kafka_metadata_topic_t *mt = admin_find_topic(o->md, topic);
    if (!mt) {
        fprintf(stderr, "luka offsets: topic '%s' does not exist at %s\n", topic, o->c.brokers);
        return -1;
    }
    if (partition >= mt->partition_cnt) {
        fprintf(stderr, "luka offsets: %s has %d partition(s), 0..%d: there is no partition %ld\n",
                topic, mt->partition_cnt, mt->partition_cnt - 1, partition);
        return -1;
    }
    for (int p = 0; p < mt->partition_cnt; p++)
        if ((partition < 0 || p == partition) &&
            !rd_kafka_topic_partition_list_find(o->plan, topic, mt->partitions[p].id))
            rd_kafka_topic_partition_list_add(o->plan, topic, mt->partitions[p].id);
    return 0;
}

/* The partitions to reset.  Returns 0, or -1 (or 2: bad usage). */
static int pick(offsets_t *o) {
    const app_t *app = o->c.app;
    o->plan = rd_kafka_topic_partition_list_new(16);
    for (int i = 0; i < o->ntopics; i++) {
        char topic[512];
        const char *colon = strrchr(o->topics[i], ':');
        long partition = -1;
        snprintf(topic, sizeof(topic), "%s", o->topics[i]);
        if (colon) {
            if (cliopt_long(colon + 1, 0, 1000000, &partition))
                return cliopt_bad_usage("offsets", "--topic %s: the partition after ':' must be "
                                                   "a number",
                                        o->topics[i]);
            topic[colon - o->topics[i]] = '\0';
        }
        if (add_topic(o, topic, partition)) return -1;
    }
    if (o->ntopics) return 0;
    for (int e = 0; e < app->neps; e++)
        if (strcmp(app->eps[e].group, o->group) == 0)
            for (int k = 0; k < app->eps[e].ntopics; k++)
                if (add_topic(o, app->eps[e].topics[k], -1)) return -1;
    if (o->plan->cnt == 0) {
        cliopt_near_t near = cliopt_near(o->group);
        for (int e = 0; e < app->neps; e++) cliopt_near_add(&near, app->eps[e].group);
        return cliopt_bad_usage("offsets",
                                "%s has no endpoint in group '%s'%s%s%s; see them with luka "
                                "check %s, or name the topics with --topic",
                                app->path, o->group, near.best ? " (did you mean '" : "",
                                near.best ? near.best : "", near.best ? "'?)" : "", app->path);
    }
    return 0;
}

static rd_kafka_t *consumer(offsets_t *o, int debug, char *errbuf, size_t errlen);

/* The first offset of topic[partition] from `from` to high whose message
 * has a timestamp at or after ts, read from the log; high when none.  For
 * a cluster that answers no ListOffsets by time: librdkafka 2.0.2's mock
 * answers -1 ("none") to every one. */
static int64_t scan_time(offsets_t *o, rd_kafka_t *rk, const char *topic, int32_t partition,
                         int64_t from, int64_t high, int64_t ts) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    int64_t found = high, last = from - 1;
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = from;
    if (rd_kafka_assign(rk, l) == 0) {
        for (int idle = 0; found == high && last < high - 1 && idle < o->c.timeout_ms;) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, POLL_MS);
            if (!m || m->err || m->partition != partition) {
                idle += POLL_MS;
            } else {
                idle = 0;
                last = m->offset;
                if (rd_kafka_message_timestamp(m, NULL) >= ts) found = m->offset;
            }
            if (m) rd_kafka_message_destroy(m);
        }
        rd_kafka_assign(rk, NULL);
    }
    rd_kafka_topic_partition_list_destroy(l);
    return found;
}

/* Work out the new offsets, and read the current ones.  Returns 0, or -1
 * after printing why. */
static int plan(offsets_t *o) {
    rd_kafka_topic_partition_list_t *times = NULL;
    rd_kafka_t *rk;
    rd_kafka_resp_err_t err;
    char errbuf[512];
    int rc = -1;

    if (!(rk = consumer(o, 0, errbuf, sizeof(errbuf)))) {
        fprintf(stderr, "luka offsets: %s\n", errbuf);
        return -1;
    }
    o->current = calloc((size_t)o->plan->cnt + 1, sizeof(*o->current));
    if (admin_committed(&o->c, rk, o->group, o->plan)) goto done;
    for (int i = 0; i < o->plan->cnt; i++) o->current[i] = o->plan->elems[i].offset;
    if (o->how == RESET_TIME) {
        times = rd_kafka_topic_partition_list_copy(o->plan);
        for (int i = 0; i < times->cnt; i++) times->elems[i].offset = o->arg;
        if ((err = rd_kafka_offsets_for_times(rk, times, o->c.timeout_ms))) {
            fprintf(stderr, "luka offsets: cannot look up the offsets at %s: %s\n", o->reset,
                    rd_kafka_err2str(err));
            goto done;
        }
    }
    for (int i = 0; i < o->plan->cnt; i++) {
        rd_kafka_topic_partition_t *e = &o->plan->elems[i];
        int64_t low, high, to;
        if (admin_watermarks(&o->c, rk, e->topic, e->partition, &low, &high)) goto done;
        switch (o->how) {
        case RESET_EARLIEST: to = low; break;
        case RESET_LATEST: to = high; break;
        case RESET_OFFSET: to = o->arg < low ? low : o->arg > high ? high : o->arg; break;
        default:
            to = times->elems[i].offset >= 0 ? times->elems[i].offset : high;
            /* "None at or after ts": true when the last message is older;
             * otherwise the cluster did not look, so read the log. */
            if (to == high && high > low &&
                scan_time(o, rk, e->topic, e->partition, high - 1, high, o->arg) < high)
                to = scan_time(o, rk, e->topic, e->partition, low, high, o->arg);
            break;
        }
        e->offset = to;
        e->err = 0;
    }
    rc = 0;
done:
    if (times) rd_kafka_topic_partition_list_destroy(times);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

static void print_plan(const offsets_t *o) {
    printf("%-30s %9s %12s %12s\n", "TOPIC", "PARTITION", "CURRENT", "NEW");
    for (int i = 0; i < o->plan->cnt; i++) {
        char cur[32];
        if (o->current[i] >= 0) snprintf(cur, sizeof(cur), "%lld", (long long)o->current[i]);
        else snprintf(cur, sizeof(cur), "-");
        printf("%-30s %9d %12s %12lld\n", o->plan->elems[i].topic, (int)o->plan->elems[i].partition,
               cur, (long long)o->plan->elems[i].offset);
    }
}

/* librdkafka's cgrp debug lines, during the join: the JoinGroup answer
 * says whether this member leads, and how many members the leader got. */
static void join_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    offsets_t *o = rd_kafka_opaque(rk);
    const char *count;
    (void)level;
    log_debug("offsets", "rdkafka %s: %s", fac, buf);
    if (!strstr(buf, "JoinGroup response: ")) return;
    if (!strstr(buf, "(no error)")) {
        o->join_error = 1;
        snprintf(o->join_why, sizeof(o->join_why), "%s", buf);
        return;
    }
    o->joined = 1;
    o->leader = strstr(buf, " (me), my MemberId ") != NULL;
    if ((count = strstr(buf, "member metadata count "))) o->members = atoi(count + 22);
}

/* The join's rebalances: the generation is complete (and commits are
 * accepted) once the assignment arrives. */
static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    offsets_t *o = opaque;
    char why[256];
    o->assigned = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
    if (kafka_rebalance_apply(rk, err, parts, why, sizeof(why)))
        log_warn("offsets", "group %s: applying the rebalance: %s", o->group, why);
}

static rd_kafka_t *consumer(offsets_t *o, int debug, char *errbuf, size_t errlen) {
    rd_kafka_conf_t *conf = admin_consumer_conf(&o->c, o->group, errbuf, errlen);
    if (!conf) return NULL;
    if ((debug && rd_kafka_conf_set(conf, "debug", "cgrp", errbuf, errlen)) ||
        /* The join is short: the broker's minimum session, so that the
         * coordinator does not hold the group's next join for the default
         * 45 s (the mock cluster takes the group's timeouts from its
         * members').  LUKA_KAFKA_* and the app's config still decide. */
        (debug && !getenv("LUKA_KAFKA_SESSION_TIMEOUT_MS") &&
         (rd_kafka_conf_set(conf, "session.timeout.ms", "6000", errbuf, errlen) ||
          rd_kafka_conf_set(conf, "max.poll.interval.ms", "6000", errbuf, errlen)))) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    if (debug) {
        rd_kafka_conf_set_log_cb(conf, join_log_cb);
        rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    }
    rd_kafka_conf_set_opaque(conf, o);
    return admin_new(RD_KAFKA_CONSUMER, conf, errbuf, errlen);
}

/* Commit the plan on rk.  Returns 0, or the error. */
static rd_kafka_resp_err_t commit(offsets_t *o, rd_kafka_t *rk) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_copy(o->plan);
    rd_kafka_resp_err_t err = rd_kafka_commit(rk, l, 0);
    for (int i = 0; !err && i < l->cnt; i++) err = l->elems[i].err;
    rd_kafka_topic_partition_list_destroy(l);
    return err;
}

/* On a cluster without DescribeGroups: join, and commit only as the one
 * member of the generation.  Returns 0, or -1 after printing why. */
static int commit_joined(offsets_t *o) {
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(o->plan->cnt);
    rd_kafka_resp_err_t err;
    rd_kafka_t *rk;
    char errbuf[512];
    int rc = -1;

    if (!(rk = consumer(o, 1, errbuf, sizeof(errbuf)))) {
        fprintf(stderr, "luka offsets: %s\n", errbuf);
        rd_kafka_topic_partition_list_destroy(topics);
        return -1;
    }
    for (int i = 0; i < o->plan->cnt; i++)
        if (!rd_kafka_topic_partition_list_find(topics, o->plan->elems[i].topic, -1))
            rd_kafka_topic_partition_list_add(topics, o->plan->elems[i].topic, -1);
    log_info("offsets", "joining group %s to see whether it has members (the cluster at %s has "
                        "no DescribeGroups)",
             o->group, o->c.brokers);
    if ((err = rd_kafka_subscribe(rk, topics))) {
        fprintf(stderr, "luka offsets: cannot join group %s: %s\n", o->group,
                rd_kafka_err2str(err));
        goto done;
    }
    for (int waited = 0; !(o->joined && o->assigned) && waited < JOIN_WAIT_MS;
         waited += POLL_MS) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, POLL_MS);
        if (m) rd_kafka_message_destroy(m);
    }
    if (!o->joined || !o->assigned) {
        fprintf(stderr, "luka offsets: group %s did not let luka join within %d s%s%s; nothing "
                        "changed\n",
                o->group, JOIN_WAIT_MS / 1000, o->join_error ? ": " : "", o->join_why);
        goto done;
    }
    if (!o->leader || o->members != 1) {
        fprintf(stderr, "luka offsets: group %s has members (%s); stop its consumers, then run "
                        "this again; nothing changed\n",
                o->group,
                o->leader ? "luka was one of several" : "luka joined a generation led by another");
        goto done;
    }
    if ((err = commit(o, rk))) {
        fprintf(stderr, "luka offsets: cannot commit to group %s: %s (a member joined "
                        "meanwhile?); nothing changed\n",
                o->group, rd_kafka_err2str(err));
        goto done;
    }
    rc = 0;
done:
    rd_kafka_topic_partition_list_destroy(topics);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

/* Returns 0, or -1 after printing why. */
static int execute(offsets_t *o) {
    char errbuf[512];
    rd_kafka_resp_err_t err;
    rd_kafka_t *rk;
    int describes = -1;

    if (admin_plaintext(&o->c))
        describes = kafka_api_supported(o->c.brokers, KAFKA_API_DESCRIBE_GROUPS,
                                        o->c.timeout_ms < 5000 ? o->c.timeout_ms : 5000, errbuf,
                                        sizeof(errbuf));
    if (!(rk = consumer(o, 0, errbuf, sizeof(errbuf)))) {
        fprintf(stderr, "luka offsets: %s\n", errbuf);
        return -1;
    }
    /* As a non-member: the coordinator refuses it while the group has
     * members. */
    err = commit(o, rk);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (!err) return 0;
    if (err != RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID && err != RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION &&
        err != RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS) {
        fprintf(stderr, "luka offsets: cannot commit to group %s: %s; nothing changed\n",
                o->group, rd_kafka_err2str(err));
        return -1;
    }
    if (describes != 0) {
        fprintf(stderr, "luka offsets: group %s has members (its coordinator refused the reset: "
                        "%s); stop its consumers, then run this again (luka lag --group %s "
                        "shows them); nothing changed\n",
                o->group, rd_kafka_err2str(err), o->group);
        return -1;
    }
    return commit_joined(o);
}

int offsets_main(int argc, char **argv) {
    offsets_t o;
    int rc;

    memset(&o, 0, sizeof(o));
    o.args = admin_args("offsets");
    if ((rc = parse(&o, argc, argv)) >= 0) goto done;
    rc = 1;
    if (admin_load(&o.c, &o.args)) goto done;
    if (admin_connect(&o.c) || !(o.md = admin_metadata(&o.c))) goto done;
    if ((rc = pick(&o))) {
        if (rc < 0) rc = 1;
        goto done;
    }
    rc = 1;
    if (plan(&o)) goto done;
    print_plan(&o);
    if (!o.execute) {
        printf("group %s: nothing changed (a plan); add --execute to commit it\n", o.group);
        rc = 0;
    } else if (execute(&o) == 0) {
        printf("group %s: committed the new offsets\n", o.group);
        rc = 0;
    }
done:
    if (o.plan) rd_kafka_topic_partition_list_destroy(o.plan);
    if (o.md) rd_kafka_metadata_destroy(o.md);
    admin_close(&o.c);
    free(o.current);
    free(o.topics);
    return rc;
}
