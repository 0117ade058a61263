/* admin_lag.c - `luka lag`: each group's committed offsets against the log
 * end offsets, with the member each partition is assigned to, like
 * kafka-consumer-groups --describe.  The groups are an app's endpoints'
 * (luka lag APP) or named (--group G); without an app, a group's topics
 * are those it has committed offsets for or its members are assigned.
 * Printing is admin_lag_print.c's. */
#include "cmd/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cliopt.h"
#include "cmd/admin_client.h"
#include "cmd/admin_lag.h"
#include "kafka/apiversions.h"
#include "kafka/txn.h"

/* Command-line options of lag, declared once. */
enum { OPT_BROKERS, OPT_TIMEOUT, OPT_GROUP, OPT_JSON, NOPTS };

static const cliopt_t options[NOPTS] = {
    [OPT_BROKERS] = ADMIN_OPT_BROKERS,
    [OPT_TIMEOUT] = ADMIN_OPT_TIMEOUT,
    [OPT_GROUP] = {"group", 'g', "GROUP",
                   "only this group (repeatable); without APP, its topics are\n"
                   "those it has committed offsets for or is assigned"},
    [OPT_JSON] = {"json", 0, NULL, "print one JSON document instead of the table"},
};

static const clicmd_t lag_cmd = {
    .name = "lag",
    .synopsis = "lag APP [--group GROUP]... [options]\n"
                "       luka lag --group GROUP [--group GROUP]... [options]",
    .about = "For each group and topic partition: the committed offset, the log end\n"
             "offset, the lag and the member it is assigned to (consumer id, host,\n"
             "client id), like kafka-consumer-groups --describe.  The groups are the\n"
             "app's endpoints' or those named with --group.  Exit code 1 when the\n"
             "cluster could not be read, or a group named without APP has neither\n"
             "committed offsets nor members.",
    .opts = options,
    .nopts = NOPTS,
};

typedef struct lag {
    admin_client_t c;
    admin_args_t args;
    const char **only; /* --group, in order */
    int nonly;
    int json;
    const rd_kafka_metadata_t *md;
    rd_kafka_t *describer;       /* the handle DescribeConsumerGroups ran on */
    int stuck;                   /* ... and librdkafka deadlocked it: see describe() */
    rd_kafka_event_t **described; /* each group's description, or NULL */
    lag_report_t r;
} lag_t;

static int option(void *ud, int opt, const char *v) {
    lag_t *l = ud;
    switch (opt) {
    case CLIOPT_ARG:
        return admin_arg_app(&l->args, v);
    case OPT_BROKERS:
        return admin_arg_brokers(&l->args, v);
    case OPT_TIMEOUT:
        return admin_arg_timeout(&l->args, v);
    case OPT_GROUP:
        if (!*v) return cliopt_bad_usage("lag", "--group needs a group id, got ''");
        for (int i = 0; i < l->nonly; i++)
            if (strcmp(l->only[i], v) == 0) return 0;
        l->only[l->nonly++] = v;
        break;
    case OPT_JSON:
        l->json = 1;
        break;
    }
    return 0;
}

/* Returns -1 to go on, or the exit code. */
static int parse(lag_t *l, int argc, char **argv) {
    int rc;
    /* Each --group takes an argument: argc bounds their number. */
    if (!(l->only = calloc((size_t)argc + 1, sizeof(*l->only))))
        return cliopt_bad_usage("lag", "out of memory");
    if ((rc = cliopt_parse(&lag_cmd, argc, argv, option, l)) >= 0) return rc;
    if (!l->args.app_path && !l->nonly)
        return cliopt_bad_usage("lag", "which app or group? usage: luka lag APP, or luka lag "
                                       "--group GROUP");
    return -1;
}

static lag_group_t *find_group(lag_t *l, const char *name) {
    for (int i = 0; i < l->r.ngroups; i++)
        if (strcmp(l->r.groups[i].name, name) == 0) return &l->r.groups[i];
    return NULL;
}

static void add_group(lag_t *l, const char *name) {
    if (!find_group(l, name)) l->r.groups[l->r.ngroups++].name = name;
}

/* The groups to show: the app's endpoints' (those named with --group, each
 * of which must be one of them), or the named ones.  Returns -1 to go on,
 * or the exit code. */
static int pick_groups(lag_t *l) {
    const app_t *app = l->c.app;
    int n = l->nonly + (app ? app->neps : 0);
    if (!(l->r.groups = calloc((size_t)n + 1, sizeof(*l->r.groups)))) {
        fprintf(stderr, "luka lag: out of memory\n");
        return 1;
    }
    if (!app) {
        for (int i = 0; i < l->nonly; i++) add_group(l, l->only[i]);
        return -1;
    }
    for (int i = 0; i < l->nonly; i++) {
        cliopt_near_t near = cliopt_near(l->only[i]);
        int found = 0;
        for (int k = 0; k < app->neps && !found; k++) {
            found = strcmp(app->eps[k].group, l->only[i]) == 0;
            cliopt_near_add(&near, app->eps[k].group);
        }
        if (!found)
            return cliopt_bad_usage("lag",
                                    "%s has no endpoint in group '%s'%s%s%s; see them with: "
                                    "luka check %s, or leave out APP",
                                    app->path, l->only[i], near.best ? " (did you mean '" : "",
                                    near.best ? near.best : "", near.best ? "'?)" : "", app->path);
    }
    for (int k = 0; k < app->neps; k++) {
        int wanted = l->nonly == 0;
        for (int i = 0; i < l->nonly && !wanted; i++)
            wanted = strcmp(app->eps[k].group, l->only[i]) == 0;
        if (wanted) add_group(l, app->eps[k].group);
    }
    return -1;
}

/* Fill in g's state and members from its description.  Returns 0, or 1
 * when the cluster does not answer DescribeGroups. */
static int described(lag_group_t *g, const rd_kafka_ConsumerGroupDescription_t *d) {
    const rd_kafka_error_t *err = rd_kafka_ConsumerGroupDescription_error(d);
    if (err) {
        snprintf(g->members_error, sizeof(g->members_error), "%s%s",
                 rd_kafka_error_code(err) == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE
                     ? "the cluster does not answer DescribeGroups: "
                     : "cannot describe the group: ",
                 rd_kafka_error_string(err));
        return rd_kafka_error_code(err) == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE;
    }
    g->state = rd_kafka_consumer_group_state_name(rd_kafka_ConsumerGroupDescription_state(d));
    g->nmembers = (int)rd_kafka_ConsumerGroupDescription_member_count(d);
    g->members = calloc((size_t)g->nmembers + 1, sizeof(*g->members));
    for (int k = 0; k < g->nmembers; k++) {
        const rd_kafka_MemberDescription_t *m =
            rd_kafka_ConsumerGroupDescription_member(d, (size_t)k);
        g->members[k].consumer_id = rd_kafka_MemberDescription_consumer_id(m);
        g->members[k].host = rd_kafka_MemberDescription_host(m);
        g->members[k].client_id = rd_kafka_MemberDescription_client_id(m);
        g->members[k].instance_id = rd_kafka_MemberDescription_group_instance_id(m);
        g->members[k].assignment =
            rd_kafka_MemberAssignment_partitions(rd_kafka_MemberDescription_assignment(m));
    }
    return 0;
}

/* Ask the group coordinators for each group's state and members with
 * DescribeConsumerGroups, one group at a time, on a handle of its own.
 *
 * Not on a cluster without DescribeGroups (the embedded broker: librdkafka
 * 2.0.2's mock cluster has none): there librdkafka 2.0.2 answers
 * UNSUPPORTED_FEATURE and then deadlocks the handle's main thread (the
 * request's other groups and every later request go unanswered, and
 * rd_kafka_destroy() never returns), or aborts on an assertion
 * (rd_kafka_enq_once_del_source_return), depending on timing.  So a
 * plaintext cluster is asked first with ApiVersions; the member columns
 * then show "-" with one note.  Should librdkafka still answer
 * UNSUPPORTED_FEATURE or not answer at all (a cluster not asked), the
 * asking ends and the handle is abandoned (l->stuck), to go with the
 * process.  Returns 0, or -1 when a group could not be described for
 * another reason. */
/* The cluster does not answer DescribeGroups, as groups[from] found: say
 * so for it and every group after it, with one note. */
static void unsupported(lag_t *l, int from) {
    for (int k = from + 1; k < l->r.ngroups; k++)
        memcpy(l->r.groups[k].members_error, l->r.groups[from].members_error,
               sizeof(l->r.groups[k].members_error));
    fprintf(stderr,
            "luka lag: CONSUMER-ID, HOST and CLIENT-ID show '-': the cluster at %s does not "
            "answer DescribeGroups (the embedded broker does not)\n",
            l->c.brokers);
}

static int describe(lag_t *l) {
    rd_kafka_queue_t *q = NULL;
    rd_kafka_AdminOptions_t *o = NULL;
    char why[256] = "";
    int rc = 0, i = 0;

    if (!(l->described = calloc((size_t)l->r.ngroups + 1, sizeof(*l->described)))) goto failed;
    if (admin_plaintext(&l->c) &&
        kafka_api_supported(l->c.brokers, KAFKA_API_DESCRIBE_GROUPS,
                            l->c.timeout_ms < 5000 ? l->c.timeout_ms : 5000, why,
                            sizeof(why)) == 0) {
        snprintf(l->r.groups[0].members_error, sizeof(l->r.groups[0].members_error),
                 "the cluster does not answer DescribeGroups (its ApiVersions list lacks it)");
        unsupported(l, 0);
        return 0;
    }
    why[0] = '\0'; /* not asked, or no answer: librdkafka will tell */
    if (!(l->describer = admin_handle(&l->c, why, sizeof(why)))) goto failed;
    q = rd_kafka_queue_new(l->describer);
    o = admin_options(&l->c, l->describer);
    for (; i < l->r.ngroups; i++) {
        lag_group_t *g = &l->r.groups[i];
        const rd_kafka_ConsumerGroupDescription_t **descs;
        rd_kafka_event_t *ev;
        size_t n = 0;

        rd_kafka_DescribeConsumerGroups(l->describer, &g->name, 1, o, q);
        if (!(ev = admin_wait(&l->c, q, RD_KAFKA_EVENT_DESCRIBECONSUMERGROUPS_RESULT))) {
            l->stuck = 1; /* destroying it might not return either */
            admin_request_error(&l->c, NULL, why, sizeof(why));
            goto failed;
        }
        l->described[i] = ev; /* the members' strings point into it */
        if (rd_kafka_event_error(ev) == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE) {
            snprintf(g->members_error, sizeof(g->members_error),
                     "the cluster does not answer DescribeGroups: %s",
                     rd_kafka_event_error_string(ev));
            break;
        }
        if (rd_kafka_event_error(ev)) {
            admin_request_error(&l->c, ev, why, sizeof(why));
            snprintf(g->members_error, sizeof(g->members_error), "cannot describe the group: %s",
                     why);
        } else {
            descs = rd_kafka_DescribeConsumerGroups_result_groups(
                rd_kafka_event_DescribeConsumerGroups_result(ev), &n);
            if (n != 1)
                snprintf(g->members_error, sizeof(g->members_error),
                         "cannot describe the group: %zu descriptions for one group", n);
            else if (described(g, descs[0]))
                break;
        }
        if (g->members_error[0]) {
            fprintf(stderr, "luka lag: group %s: CONSUMER-ID, HOST and CLIENT-ID unknown: %s\n",
                    g->name, g->members_error);
            rc = -1;
        }
    }
    if (i < l->r.ngroups) {
        l->stuck = 1;
        unsupported(l, i);
    }
    goto done;
failed:
    for (; i < l->r.ngroups; i++) {
        lag_group_t *g = &l->r.groups[i];
        snprintf(g->members_error, sizeof(g->members_error), "cannot describe the group: %s",
                 why[0] ? why : "out of memory");
        fprintf(stderr, "luka lag: group %s: CONSUMER-ID, HOST and CLIENT-ID unknown: %s\n",
                g->name, g->members_error);
    }
    rc = -1;
done:
    if (o) rd_kafka_AdminOptions_destroy(o);
    if (q) rd_kafka_queue_destroy(q);
    return rc;
}

static lag_part_t *add_part(lag_group_t *g, const char *topic, int partition,
                            const char *endpoint) {
    lag_part_t *p;
    if (g->nparts == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 16;
        g->parts = realloc(g->parts, (size_t)g->cap * sizeof(*g->parts));
    }
    p = &g->parts[g->nparts++];
    *p = (lag_part_t){.topic = topic, .partition = partition, .committed = -1, .log_end = -1,
                      .endpoint = endpoint};
    return p;
}

static int has_topic(const lag_group_t *g, const char *topic) {
    for (int i = 0; i < g->nparts; i++)
        if (strcmp(g->parts[i].topic, topic) == 0) return 1;
    return 0;
}

/* Every partition of topic (a row saying so when it does not exist). */
static void add_topic(lag_t *l, lag_group_t *g, const char *topic, const char *endpoint) {
    const rd_kafka_metadata_topic_t *mt = admin_find_topic(l->md, topic);
    if (has_topic(g, topic)) return;
    if (!mt) {
        if (!endpoint)
            fprintf(stderr, "luka lag: group %s has committed offsets for topic %s, which does "
                            "not exist\n", g->name, topic);
        add_part(g, topic, -1, endpoint)->error = "topic does not exist";
        return;
    }
    for (int p = 0; p < mt->partition_cnt; p++)
        add_part(g, mt->topic, mt->partitions[p].id, endpoint);
}

/* The group's committed offsets of parts (NULL: of every partition it has
 * committed), or NULL after printing why. */
static rd_kafka_topic_partition_list_t *
committed(lag_t *l, const char *group, const rd_kafka_topic_partition_list_t *parts) {
    rd_kafka_ListConsumerGroupOffsets_t *req = rd_kafka_ListConsumerGroupOffsets_new(group, parts);
    rd_kafka_queue_t *q = rd_kafka_queue_new(l->c.rk);
    rd_kafka_AdminOptions_t *o = admin_options(&l->c, l->c.rk);
    rd_kafka_topic_partition_list_t *out = NULL;
    const rd_kafka_group_result_t **res;
    rd_kafka_event_t *ev;
    char why[512];
    size_t n = 0;

    rd_kafka_ListConsumerGroupOffsets(l->c.rk, &req, 1, o, q);
    ev = admin_wait(&l->c, q, RD_KAFKA_EVENT_LISTCONSUMERGROUPOFFSETS_RESULT);
    if (!ev || rd_kafka_event_error(ev)) {
        admin_request_error(&l->c, ev, why, sizeof(why));
    } else {
        res = rd_kafka_ListConsumerGroupOffsets_result_groups(
            rd_kafka_event_ListConsumerGroupOffsets_result(ev), &n);
        if (n == 1 && rd_kafka_group_result_error(res[0]))
            snprintf(why, sizeof(why), "%s",
                     rd_kafka_error_string(rd_kafka_group_result_error(res[0])));
        else if (n == 1)
            out = rd_kafka_topic_partition_list_copy(rd_kafka_group_result_partitions(res[0]));
        else
            snprintf(why, sizeof(why), "%zu group results for one group", n);
    }
    if (!out)
        fprintf(stderr, "luka: cannot read the committed offsets of group %s from %s: %s\n",
                group, l->c.brokers, why);
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_ListConsumerGroupOffsets_destroy(req);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
    return out;
}

/* Add the topics of list that hold a committed offset. */
static void add_committed_topics(lag_t *l, lag_group_t *g,
                                 const rd_kafka_topic_partition_list_t *list) {
    for (int i = 0; i < list->cnt; i++)
        if (list->elems[i].err == 0 && list->elems[i].offset >= 0)
            add_topic(l, g, list->elems[i].topic, NULL);
}

/* Without an app: the topics the group has committed offsets for, and
 * those its members are assigned.  Returns 0, or -1 after printing why. */
static int discover_topics(lag_t *l, lag_group_t *g) {
    rd_kafka_topic_partition_list_t *all = committed(l, g->name, NULL), *each = NULL;
    if (!all) return -1;
    add_committed_topics(l, g, all);
    for (int m = 0; m < g->nmembers; m++)
        for (int i = 0; g->members[m].assignment && i < g->members[m].assignment->cnt; i++)
            add_topic(l, g, g->members[m].assignment->elems[i].topic, NULL);
    if (g->nparts == 0) {
        /* Kafka answers "every committed offset" (an OffsetFetch without
         * topics); librdkafka 2.0's mock cluster answers it with nothing.
         * Ask for each partition of each topic instead: on a real cluster
         * this finds nothing more, for a group that has committed nothing. */
        each = rd_kafka_topic_partition_list_new(64);
        for (int t = 0; t < l->md->topic_cnt; t++) {
            const rd_kafka_metadata_topic_t *mt = &l->md->topics[t];
            if (mt->err || strncmp(mt->topic, "__", 2) == 0) continue; /* internal topics */
            for (int p = 0; p < mt->partition_cnt; p++)
                rd_kafka_topic_partition_list_add(each, mt->topic, mt->partitions[p].id);
        }
        if (each->cnt) {
            rd_kafka_topic_partition_list_t *found = committed(l, g->name, each);
            if (found) {
                add_committed_topics(l, g, found);
                rd_kafka_topic_partition_list_destroy(found);
            } else {
                g->nparts = -1; /* why is printed */
            }
        }
        rd_kafka_topic_partition_list_destroy(each);
    }
    rd_kafka_topic_partition_list_destroy(all);
    if (g->nparts < 0) {
        g->nparts = 0;
        return -1;
    }
    if (g->nparts == 0) {
        fprintf(stderr, "luka lag: group '%s' has no committed offsets at %s %s\n", g->name,
                l->c.brokers,
                g->members_error[0] ? "(and its members could not be asked)"
                : g->nmembers       ? "(its members are assigned no partitions)"
                                    : "and no members");
        return -1;
    }
    return 0;
}

/* With an app: the topics of the group's endpoints, the first endpoint
 * that reads a topic named in its row. */
static void app_topics(lag_t *l, lag_group_t *g) {
    const app_t *app = l->c.app;
    for (int e = 0; e < app->neps; e++) {
        if (strcmp(app->eps[e].group, g->name) != 0) continue;
        for (int k = 0; k < app->eps[e].ntopics; k++)
            add_topic(l, g, app->eps[e].topics[k], app->eps[e].name);
    }
}

static int by_topic_partition(const void *a, const void *b) {
    const lag_part_t *x = a, *y = b;
    int c = strcmp(x->topic, y->topic);
    return c ? c : (x->partition > y->partition) - (x->partition < y->partition);
}

static lag_member_t *assigned(lag_group_t *g, const char *topic, int partition) {
    for (int m = 0; m < g->nmembers; m++)
        if (g->members[m].assignment &&
            rd_kafka_topic_partition_list_find(g->members[m].assignment, topic, partition))
            return &g->members[m];
    return NULL;
}

/* A transactional consumer's offsets are also in luka's offsets topic,
 * and only there against the embedded broker (whose mock never stores
 * offsets sent with a transaction): when the group has committed nothing
 * for some of parts and that topic exists, its records for the group.
 * NULL when there are none to read. */
static rd_kafka_topic_partition_list_t *luka_offsets(lag_t *l, const lag_group_t *g,
                                                     const rd_kafka_topic_partition_list_t *parts,
                                                     const rd_kafka_topic_partition_list_t *got) {
    rd_kafka_topic_partition_list_t *mine;
    rd_kafka_conf_t *conf;
    char why[1024];
    int missing = 0;

    if (!admin_find_topic(l->md, TXN_OFFSETS_TOPIC)) return NULL;
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *c =
            rd_kafka_topic_partition_list_find(got, parts->elems[i].topic, parts->elems[i].partition);
        if (!c || c->offset < 0) missing++;
    }
    if (!missing || !(conf = txn_reader_conf(&l->c.env, why, sizeof(why)))) return NULL;
    mine = rd_kafka_topic_partition_list_copy(parts);
    for (int i = 0; i < mine->cnt; i++) mine->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
    if (txn_read_offsets(conf, g->name, mine, NULL, why, sizeof(why))) {
        fprintf(stderr, "luka lag: group %s: %s\n", g->name, why);
        rd_kafka_topic_partition_list_destroy(mine);
        return NULL;
    }
    return mine;
}

/* Fill in the rows of g: committed offsets, log end offsets, members.
 * Returns 0, or -1 after printing why something could not be read. */
static int fill(lag_t *l, lag_group_t *g) {
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(g->nparts + 1);
    rd_kafka_topic_partition_list_t *got = NULL, *mine = NULL;
    int rc = 0, used = 0;

    qsort(g->parts, (size_t)g->nparts, sizeof(*g->parts), by_topic_partition);
    for (int i = 0; i < g->nparts; i++)
        if (g->parts[i].partition >= 0)
            rd_kafka_topic_partition_list_add(parts, g->parts[i].topic, g->parts[i].partition);
    if (parts->cnt && !(got = committed(l, g->name, parts))) rc = -1;
    if (got) mine = luka_offsets(l, g, parts, got);
    for (int i = 0; i < g->nparts; i++) {
        lag_part_t *p = &g->parts[i];
        const rd_kafka_topic_partition_t *c;
        rd_kafka_resp_err_t err;
        int64_t lo, hi;
        if (p->partition < 0) continue;
        if ((p->member = assigned(g, p->topic, p->partition))) p->member->rows++;
        if (!got) {
            p->error = "committed offset not read";
            continue;
        }
        c = rd_kafka_topic_partition_list_find(got, p->topic, p->partition);
        if (c && c->err) p->error = rd_kafka_err2str(c->err);
        else if (c && c->offset >= 0) p->committed = c->offset;
        if (mine && (c = rd_kafka_topic_partition_list_find(mine, p->topic, p->partition)) &&
            c->offset > p->committed) {
            p->committed = c->offset;
            used++;
        }
        err = rd_kafka_query_watermark_offsets(l->c.rk, p->topic, p->partition, &lo, &hi,
                                               l->c.timeout_ms);
        if (err) {
            fprintf(stderr, "luka: %s[%d]: cannot read the log end offset: %s\n", p->topic,
                    p->partition, rd_kafka_err2str(err));
            p->error = rd_kafka_err2str(err);
            rc = -1;
        } else {
            p->log_end = hi;
        }
    }
    if (used)
        fprintf(stderr,
                "luka lag: group %s: %d committed offset(s) read from %s (a transactional "
                "consumer's, written with its outputs)\n",
                g->name, used, TXN_OFFSETS_TOPIC);
    if (mine) rd_kafka_topic_partition_list_destroy(mine);
    if (got) rd_kafka_topic_partition_list_destroy(got);
    rd_kafka_topic_partition_list_destroy(parts);
    return rc;
}

int admin_lag(int argc, char **argv) {
    lag_t l;
    int rc;

    memset(&l, 0, sizeof(l));
    l.args = admin_args("lag");
    if ((rc = parse(&l, argc, argv)) >= 0) goto done;
    rc = 1;
    if (admin_load(&l.c, &l.args)) goto done;
    if ((rc = pick_groups(&l)) >= 0) goto done;
    rc = 1;
    if (admin_connect(&l.c)) goto done;
    if (l.r.ngroups == 0) {
        printf("%s declares no consumers or channels\n", l.c.app->path);
        rc = 0;
        goto done;
    }
    if (!(l.md = admin_metadata(&l.c))) goto done;
    rc = 0;
    if (describe(&l)) rc = 1;
    for (int i = 0; i < l.r.ngroups; i++) {
        lag_group_t *g = &l.r.groups[i];
        if (l.c.app) app_topics(&l, g);
        else if (discover_topics(&l, g)) rc = 1;
        if (fill(&l, g)) rc = 1;
    }
    l.r.brokers = l.c.brokers;
    l.r.with_app = l.c.app != NULL;
    if (l.json) {
        if (lag_print_json(&l.r)) rc = 1;
    } else {
        lag_print_table(&l.r);
    }
done:
    for (int i = 0; i < l.r.ngroups; i++) {
        free(l.r.groups[i].members);
        free(l.r.groups[i].parts);
    }
    free(l.r.groups);
    for (int i = 0; l.described && i < l.r.ngroups; i++)
        if (l.described[i]) rd_kafka_event_destroy(l.described[i]);
    free(l.described);
    if (l.describer && !l.stuck) {
        admin_serve_logs(l.describer);
        rd_kafka_destroy(l.describer);
    }
    if (l.md) rd_kafka_metadata_destroy(l.md);
    admin_close(&l.c);
    free(l.only);
    return rc;
}
