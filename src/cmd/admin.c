/* admin.c - `luka topics` compares the app's luka.topic declarations with
 * the cluster and, with --apply, creates what is missing and adds missing
 * partitions (never deleting or shrinking); `luka lag` shows each
 * endpoint's group offsets like kafka-consumer-groups --describe. */
#include "cmd/admin.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "base/cliopt.h"
#include "base/table.h"
#include "api/lapi.h"
#include "kafka/client.h"
#include "runtime/host.h"
#include "base/log.h"

/* How long each cluster request waits for its answer, unless --timeout. */
#define TIMEOUT_MS 10000

typedef struct admin {
    app_t *app;
    char *brokers;
    kafka_env_t env; /* the app and its brokers, for kafka_conf */
    run_opts_t opts;
    int apply;
    int check; /* --check: differences make the exit code 1 */
    int timeout_ms;
    rd_kafka_t *rk; /* a producer handle serves every admin call */
} admin_t;

/* Command-line options of topics and lag, declared once. */
enum { OPT_BROKERS, OPT_TIMEOUT, OPT_APPLY, OPT_CHECK, NOPTS };

/* The longest --timeout: an hour. */
#define MAX_TIMEOUT_MS (60 * 60 * 1000)

static const cliopt_t options[NOPTS] = {
    [OPT_BROKERS] = {"brokers", 'b', "LIST",
                     "bootstrap servers (default: the app's luka.broker, else\n"
                     "KAFKA_BROKERS, else localhost:9092)"},
    [OPT_TIMEOUT] = {"timeout", 0, "DURATION",
                     "how long each request to the cluster waits: 500ms, 5s,\n"
                     "2m; a bare number is milliseconds (default 10s)"},
    [OPT_APPLY] = {"apply", 0, NULL,
                   "create missing topics and add missing partitions (never\n"
                   "deletes, shrinks or changes configs)"},
    [OPT_CHECK] = {"check", 0, NULL,
                   "exit 1 when the cluster differs from the declarations,\n"
                   "for CI"},
};

static const clicmd_t topics_cmd = {
    .name = "topics",
    .synopsis = "topics APP [--check | --apply] [options]",
    .about = "Compare the app's luka.topic declarations with the cluster: a table of\n"
             "each declared topic (exists, partitions, replication, against what is\n"
             "declared), then a line for each difference.  Exit code 0 when the\n"
             "report (and every change --apply asked) succeeded, 1 when the cluster\n"
             "could not be read, a change failed, or --check found a difference.",
    .opts = options,
    .nopts = NOPTS,
};

static const clicmd_t lag_cmd = {
    .name = "lag",
    .synopsis = "lag APP [options]",
    .about = "For each endpoint's group and topic partition: the committed offset, the\n"
             "log end offset and the lag, like kafka-consumer-groups --describe.\n"
             "Exit code 1 when the cluster could not be read.",
    .opts = options,
    .nopts = OPT_TIMEOUT + 1, /* --brokers and --timeout */
};

typedef struct admin_parse {
    admin_t *a;
    const clicmd_t *cmd;
} admin_parse_t;

static int option(void *ud, int opt, const char *v) {
    admin_parse_t *p = ud;
    admin_t *a = p->a;
    int64_t ms;
    switch (opt) {
    case CLIOPT_ARG:
        if (a->opts.app_path)
            return cliopt_bad_usage(p->cmd->name, "one app at a time: got '%s' and '%s'",
                                    a->opts.app_path, v);
        a->opts.app_path = v;
        break;
    case OPT_BROKERS:
        if (!*v) return cliopt_bad_usage(p->cmd->name, "--brokers needs host:port[,...], got ''");
        a->opts.brokers = v;
        break;
    case OPT_TIMEOUT:
        if (cliopt_duration(v, MAX_TIMEOUT_MS, &ms) || ms == 0)
            return cliopt_bad_usage(p->cmd->name, "--timeout takes %s, got '%s'",
                                    CLIOPT_DURATION_HINT, v);
        a->timeout_ms = (int)ms;
        break;
    case OPT_APPLY:
        a->apply = 1;
        break;
    case OPT_CHECK:
        a->check = 1;
        break;
    }
    return 0;
}

/* Returns -1 to go on, or the exit code. */
static int parse(admin_t *a, const clicmd_t *cmd, int argc, char **argv) {
    admin_parse_t p = {a, cmd};
    int rc = cliopt_parse(cmd, argc, argv, option, &p);
    if (rc >= 0) return rc;
    if (!a->opts.app_path) return cliopt_bad_usage(cmd->name, "which app? usage: luka %s", cmd->synopsis);
    if (a->apply && a->check)
        return cliopt_bad_usage(cmd->name, "--check only looks and --apply changes: one at a time");
    return -1;
}

/* librdkafka's connection errors say less than the failed call will: keep
 * them for --log-level debug. */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk, (void)opaque;
    log_debug("admin", "%s: %s", rd_kafka_err2name(err), reason);
}

/* A client configured like luka run's (brokers, the app's broker config,
 * LUKA_KAFKA_*), plus extra and, for a consumer, group. */
static rd_kafka_t *client(admin_t *a, rd_kafka_type_t type, const kvlist_t *extra,
                          const char *group, char *errbuf, size_t errlen) {
    rd_kafka_conf_t *conf = kafka_conf(&a->env, extra, errbuf, errlen);
    rd_kafka_t *rk;
    if (!conf) return NULL;
    rd_kafka_conf_set_error_cb(conf, error_cb);
    /* Only look: never commit anything for the group. */
    if (group && (rd_kafka_conf_set(conf, "group.id", group, errbuf, errlen) ||
                  rd_kafka_conf_set(conf, "enable.auto.commit", "false", errbuf, errlen))) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    if (!(rk = rd_kafka_new(type, conf, errbuf, errlen))) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    /* conf is now owned by rk; its log lines wait on the main queue. */
    rd_kafka_set_log_queue(rk, NULL);
    return rk;
}

static void serve_logs(rd_kafka_t *rk) {
    while (rd_kafka_poll(rk, 0) > 0) continue;
}

/* Parse, load the app and open the client.  Returns -1 to go on, or the
 * exit code. */
static int open_admin(admin_t *a, const clicmd_t *cmd, int argc, char **argv) {
    char err[2048];
    int rc;

    memset(a, 0, sizeof(*a));
    a->timeout_ms = TIMEOUT_MS;
    if ((rc = parse(a, cmd, argc, argv)) >= 0) return rc;
    if (!(a->app = app_load(a->opts.app_path, NULL, lapi_open, err, sizeof(err)))) {
        fprintf(stderr, "luka: %s\n", err);
        return 1;
    }
    a->brokers = kafka_brokers(a->opts.brokers, a->app);
    a->env.app = a->app;
    a->env.brokers = a->brokers;
    if (!(a->rk = client(a, RD_KAFKA_PRODUCER, NULL, NULL, err, sizeof(err)))) {
        fprintf(stderr, "luka: %s\n", err);
        return 1;
    }
    return -1;
}

static void close_admin(admin_t *a) {
    if (a->rk) {
        serve_logs(a->rk);
        rd_kafka_destroy(a->rk);
    }
    free(a->brokers);
    if (a->app) app_free(a->app);
}

static const rd_kafka_metadata_topic_t *find_topic(const rd_kafka_metadata_t *md,
                                                    const char *name) {
    for (int i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, name) == 0 && !md->topics[i].err) return &md->topics[i];
    return NULL;
}

static const rd_kafka_metadata_t *metadata(admin_t *a) {
    const rd_kafka_metadata_t *md;
    rd_kafka_resp_err_t err = rd_kafka_metadata(a->rk, 1, NULL, &md, a->timeout_ms);
    if (err) {
        fprintf(stderr, "luka: cannot read the cluster's metadata from %s: %s\n", a->brokers,
                rd_kafka_err2str(err));
        return NULL;
    }
    return md;
}

/* The result event of an admin call, or NULL when none came in time. */
static rd_kafka_event_t *wait_result(admin_t *a, rd_kafka_queue_t *q, rd_kafka_event_type_t type) {
    rd_kafka_event_t *ev;
    /* librdkafka answers by the request timeout; the margin covers it. */
    while ((ev = rd_kafka_queue_poll(q, a->timeout_ms + 5000))) {
        if (rd_kafka_event_type(ev) == type) return ev;
        rd_kafka_event_destroy(ev);
    }
    return NULL;
}

static rd_kafka_AdminOptions_t *admin_options(admin_t *a) {
    char why[256];
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(a->rk, RD_KAFKA_ADMIN_OP_ANY);
    rd_kafka_AdminOptions_set_request_timeout(o, a->timeout_ms, why, sizeof(why));
    rd_kafka_AdminOptions_set_operation_timeout(o, a->timeout_ms, why, sizeof(why));
    return o;
}

/* Why a whole admin request failed (ev NULL: it never answered). */
static const char *request_error(admin_t *a, rd_kafka_event_t *ev) {
    static char why[512];
    if (ev) snprintf(why, sizeof(why), "%s (%s)", rd_kafka_event_error_string(ev),
                     rd_kafka_err2name(rd_kafka_event_error(ev)));
    else snprintf(why, sizeof(why), "no answer from %s within %d ms", a->brokers,
                  a->timeout_ms + 5000);
    return why;
}

/* ---- luka topics ------------------------------------------------------ */

/* The cluster's configs of the existing declared topics that declare any,
 * as one DescribeConfigs result event (NULL with why when unavailable). */
static rd_kafka_event_t *describe_configs(admin_t *a, const rd_kafka_metadata_t *md, char *why,
                                          size_t len) {
    const app_t *app = a->app;
    rd_kafka_ConfigResource_t **res = calloc(app->ntopics + 1, sizeof(*res));
    rd_kafka_queue_t *q = rd_kafka_queue_new(a->rk);
    rd_kafka_AdminOptions_t *o = admin_options(a);
    rd_kafka_event_t *ev = NULL;
    int n = 0;

    for (int i = 0; i < app->ntopics; i++)
        if (app->topics[i].config.n && find_topic(md, app->topics[i].name))
            res[n++] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, app->topics[i].name);
    if (n == 0) goto done;
    rd_kafka_DescribeConfigs(a->rk, res, n, o, q);
    ev = wait_result(a, q, RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT);
    if (!ev || rd_kafka_event_error(ev)) {
        snprintf(why, len, "%s", request_error(a, ev));
        if (ev) rd_kafka_event_destroy(ev);
        ev = NULL;
    }
done:
    rd_kafka_ConfigResource_destroy_array(res, n);
    free(res);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
    return ev;
}

/* The cluster's value of a topic config: a pointer into ev, "" when the
 * topic has no such config, NULL when it could not be read. */
static const char *config_value(rd_kafka_event_t *ev, const char *topic, const char *name,
                                char *why, size_t len) {
    const rd_kafka_DescribeConfigs_result_t *r;
    const rd_kafka_ConfigResource_t **res;
    size_t nres, nent;

    if (!ev) return NULL;
    r = rd_kafka_event_DescribeConfigs_result(ev);
    res = rd_kafka_DescribeConfigs_result_resources(r, &nres);
    for (size_t i = 0; i < nres; i++) {
        const rd_kafka_ConfigEntry_t **ents;
        if (strcmp(rd_kafka_ConfigResource_name(res[i]), topic) != 0) continue;
        if (rd_kafka_ConfigResource_error(res[i])) {
            snprintf(why, len, "%s", rd_kafka_ConfigResource_error_string(res[i]));
            return NULL;
        }
        ents = rd_kafka_ConfigResource_configs(res[i], &nent);
        for (size_t k = 0; k < nent; k++)
            if (strcmp(rd_kafka_ConfigEntry_name(ents[k]), name) == 0) {
                const char *v = rd_kafka_ConfigEntry_value(ents[k]);
                return v ? v : "";
            }
        return "";
    }
    return NULL;
}

static void replication(const rd_kafka_metadata_topic_t *mt, int *min, int *max) {
    *min = *max = 0;
    for (int p = 0; p < mt->partition_cnt; p++) {
        int r = mt->partitions[p].replica_cnt;
        if (p == 0 || r < *min) *min = r;
        if (r > *max) *max = r;
    }
}

/* A topic result's error, as the broker worded it when it did. */
static const char *result_error(const rd_kafka_topic_result_t *res) {
    const char *s = rd_kafka_topic_result_error_string(res);
    return s && *s ? s : rd_kafka_err2str(rd_kafka_topic_result_error(res));
}

/* Create the missing topics and grow the short ones.  Returns how many
 * changes failed. */
static int apply(admin_t *a, const rd_kafka_metadata_t *md) {
    const app_t *app = a->app;
    rd_kafka_NewTopic_t **create = calloc(app->ntopics + 1, sizeof(*create));
    const char **names = calloc(app->ntopics + 1, sizeof(*names));
    const char **grow_names = calloc(app->ntopics + 1, sizeof(*grow_names));
    rd_kafka_NewPartitions_t **grow = calloc(app->ntopics + 1, sizeof(*grow));
    rd_kafka_queue_t *q = rd_kafka_queue_new(a->rk);
    rd_kafka_AdminOptions_t *o = admin_options(a);
    rd_kafka_event_t *ev;
    int ncreate = 0, ngrow = 0, failed = 0;
    char why[512];

    for (int i = 0; i < app->ntopics; i++) {
        const topic_conf_t *t = &app->topics[i];
        const rd_kafka_metadata_topic_t *mt = find_topic(md, t->name);
        if (!mt) {
            rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(t->name, t->partitions, t->replication,
                                                            why, sizeof(why));
            if (!nt) {
                printf("%s: cannot create: %s\n", t->name, why);
                failed++;
                continue;
            }
            for (int k = 0; k < t->config.n; k++)
                rd_kafka_NewTopic_set_config(nt, t->config.items[k].key, t->config.items[k].value);
            names[ncreate] = t->name;
            create[ncreate++] = nt;
        } else if (t->partitions > mt->partition_cnt) {
            grow_names[ngrow] = t->name;
            grow[ngrow++] = rd_kafka_NewPartitions_new(t->name, (size_t)t->partitions, why,
                                                       sizeof(why));
        }
    }
    if (ncreate) {
        rd_kafka_CreateTopics(a->rk, create, ncreate, o, q);
        ev = wait_result(a, q, RD_KAFKA_EVENT_CREATETOPICS_RESULT);
        if (!ev || rd_kafka_event_error(ev)) {
            /* The whole request failed: say so for each topic. */
            for (int i = 0; i < ncreate; i++)
                printf("%s: cannot create: %s\n", names[i], request_error(a, ev));
            failed += ncreate;
        } else {
            size_t n;
            const rd_kafka_topic_result_t **res =
                rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
            for (size_t i = 0; i < n; i++) {
                rd_kafka_resp_err_t err = rd_kafka_topic_result_error(res[i]);
                const char *name = rd_kafka_topic_result_name(res[i]);
                if (err) {
                    printf("%s: cannot create: %s (%s)\n", name, result_error(res[i]),
                           rd_kafka_err2name(err));
                    failed++;
                } else {
                    printf("%s: created\n", name);
                }
            }
        }
        if (ev) rd_kafka_event_destroy(ev);
    }
    if (ngrow) {
        rd_kafka_CreatePartitions(a->rk, grow, ngrow, o, q);
        ev = wait_result(a, q, RD_KAFKA_EVENT_CREATEPARTITIONS_RESULT);
        if (!ev || rd_kafka_event_error(ev)) {
            for (int i = 0; i < ngrow; i++)
                printf("%s: cannot add partitions: %s\n", grow_names[i], request_error(a, ev));
            failed += ngrow;
        } else {
            size_t n;
            const rd_kafka_topic_result_t **res = rd_kafka_CreatePartitions_result_topics(
                rd_kafka_event_CreatePartitions_result(ev), &n);
            for (size_t i = 0; i < n; i++) {
                rd_kafka_resp_err_t err = rd_kafka_topic_result_error(res[i]);
                const char *name = rd_kafka_topic_result_name(res[i]);
                if (err) {
                    printf("%s: cannot add partitions: %s (%s)\n", name, result_error(res[i]),
                           rd_kafka_err2name(err));
                    failed++;
                } else {
                    printf("%s: partitions added\n", name);
                }
            }
        }
        if (ev) rd_kafka_event_destroy(ev);
    }
    rd_kafka_NewTopic_destroy_array(create, ncreate);
    rd_kafka_NewPartitions_destroy_array(grow, ngrow);
    free(create);
    free(names);
    free(grow_names);
    free(grow);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
    return failed;
}

int admin_topics(int argc, char **argv) {
    admin_t a;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_event_t *configs = NULL;
    table_t t = {.ncols = 6};
    char why[512] = "";
    int rc, differs = 0, fixable = 0;
    const app_t *app;

    if ((rc = open_admin(&a, &topics_cmd, argc, argv)) >= 0) goto done;
    rc = 1;
    app = a.app;
    if (app->ntopics == 0) {
        printf("%s declares no topics (luka.topic \"name\" { partitions = N, ... })\n", app->path);
        rc = 0;
        goto done;
    }
    if (!(md = metadata(&a))) goto done;
    configs = describe_configs(&a, md, why, sizeof(why));

    table_cell(&t, "TOPIC"), table_cell(&t, "EXISTS"), table_cell(&t, "PARTITIONS");
    table_cell(&t, "DECLARED"), table_cell(&t, "REPLICATION"), table_cell(&t, "DECLARED");
    for (int i = 0; i < app->ntopics; i++) {
        const topic_conf_t *tc = &app->topics[i];
        const rd_kafka_metadata_topic_t *mt = find_topic(md, tc->name);
        int rmin = 0, rmax = 0;
        if (mt) replication(mt, &rmin, &rmax);
        table_cell(&t, "%s", tc->name);
        table_cell(&t, "%s", mt ? "yes" : "no");
        if (mt) table_cell(&t, "%d", mt->partition_cnt);
        else table_cell(&t, "-");
        if (tc->partitions > 0) table_cell(&t, "%d", tc->partitions);
        else table_cell(&t, "default");
        if (!mt) table_cell(&t, "-");
        else if (rmin == rmax) table_cell(&t, "%d", rmin);
        else table_cell(&t, "%d-%d", rmin, rmax);
        if (tc->replication > 0) table_cell(&t, "%d", tc->replication);
        else table_cell(&t, "default");
    }
    table_print(&t);

    /* Then what differs, a sentence each. */
    for (int i = 0; i < app->ntopics; i++) {
        const topic_conf_t *tc = &app->topics[i];
        const rd_kafka_metadata_topic_t *mt = find_topic(md, tc->name);
        int rmin, rmax;
        if (!mt) {
            printf("%s: missing: luka topics --apply creates it\n", tc->name);
            differs++, fixable++;
            continue;
        }
        replication(mt, &rmin, &rmax);
        if (tc->partitions > mt->partition_cnt) {
            printf("%s: %d partition(s), %d declared: luka topics --apply adds %d\n", tc->name,
                   mt->partition_cnt, tc->partitions, tc->partitions - mt->partition_cnt);
            differs++, fixable++;
        } else if (tc->partitions > 0 && tc->partitions < mt->partition_cnt) {
            printf("%s: %d partition(s), %d declared: Kafka cannot remove partitions; luka "
                   "leaves them\n",
                   tc->name, mt->partition_cnt, tc->partitions);
            differs++;
        }
        if (tc->replication > 0 && (rmin != tc->replication || rmax != tc->replication)) {
            printf("%s: replication factor %d, %d declared: luka does not change it (reassign "
                   "the partitions with Kafka's tools)\n",
                   tc->name, rmin, tc->replication);
            differs++;
        }
        for (int k = 0; k < tc->config.n; k++) {
            const kv_t *kv = &tc->config.items[k];
            char reason[512] = "";
            const char *v = config_value(configs, tc->name, kv->key, reason, sizeof(reason));
            if (!v) {
                printf("%s: config %s not compared: the cluster's configs could not be read: %s\n",
                       tc->name, kv->key, reason[0] ? reason : why);
                differs++;
            } else if (strcmp(v, kv->value) != 0) {
                printf("%s: config %s is %s, %s declared: luka sets configs only when it creates "
                       "a topic\n",
                       tc->name, kv->key, v[0] ? v : "(unset)", kv->value);
                differs++;
            }
        }
    }
    if (!differs) printf("every declared topic exists as declared\n");
    rc = 0;
    if (a.check && differs) {
        fprintf(stderr, "luka topics: %d difference(s) between %s and the cluster at %s\n",
                differs, app->path, a.brokers);
        rc = 1;
    }
    if (a.apply && fixable) {
        int failed = apply(&a, md);
        if (failed) {
            fprintf(stderr, "luka: %d change(s) failed on %s\n", failed, a.brokers);
            rc = 1;
        }
    } else if (a.apply) {
        printf("nothing to create or grow\n");
    }
done:
    if (configs) rd_kafka_event_destroy(configs);
    if (md) rd_kafka_metadata_destroy(md);
    close_admin(&a);
    return rc;
}

/* ---- luka lag --------------------------------------------------------- */

/* Whether an earlier endpoint already listed group and topic. */
static int listed(const app_t *app, int upto, const char *group, const char *topic) {
    for (int i = 0; i < upto; i++) {
        if (strcmp(app->eps[i].group, group) != 0) continue;
        for (int k = 0; k < app->eps[i].ntopics; k++)
            if (strcmp(app->eps[i].topics[k], topic) == 0) return 1;
    }
    return 0;
}

/* The rows of one endpoint's group.  Returns 0, or -1 after printing why. */
static int group_rows(admin_t *a, const rd_kafka_metadata_t *md, int index, table_t *t) {
    const endpoint_conf_t *ep = &a->app->eps[index];
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(8);
    rd_kafka_t *consumer = NULL;
    rd_kafka_resp_err_t err;
    char why[512];
    int rc = -1;

    for (int k = 0; k < ep->ntopics; k++) {
        const rd_kafka_metadata_topic_t *mt;
        if (listed(a->app, index, ep->group, ep->topics[k])) continue;
        if (!(mt = find_topic(md, ep->topics[k]))) {
            table_cell(t, "%s", ep->group), table_cell(t, "%s", ep->topics[k]), table_cell(t, "-"), table_cell(t, "-");
            table_cell(t, "-"), table_cell(t, "-"), table_cell(t, "%s (topic does not exist)", ep->name);
            continue;
        }
        for (int p = 0; p < mt->partition_cnt; p++)
            rd_kafka_topic_partition_list_add(parts, mt->topic, mt->partitions[p].id);
    }
    if (parts->cnt == 0) {
        rc = 0;
        goto done;
    }
    rd_kafka_topic_partition_list_sort(parts, NULL, NULL);
    /* A consumer with the group's id that never subscribes: it asks the
     * group coordinator for the committed offsets without joining. */
    if (!(consumer = client(a, RD_KAFKA_CONSUMER, &ep->config, ep->group, why, sizeof(why)))) {
        fprintf(stderr, "luka: endpoint %s: %s\n", ep->name, why);
        goto done;
    }
    if ((err = rd_kafka_committed(consumer, parts, a->timeout_ms))) {
        fprintf(stderr, "luka: cannot read the committed offsets of group %s from %s: %s\n",
                ep->group, a->brokers, rd_kafka_err2str(err));
        goto done;
    }
    rc = 0;
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &parts->elems[i];
        int64_t lo, hi;
        table_cell(t, "%s", ep->group), table_cell(t, "%s", p->topic), table_cell(t, "%d", (int)p->partition);
        if (p->err == 0 && p->offset >= 0) table_cell(t, "%lld", (long long)p->offset);
        else table_cell(t, "-");
        err = rd_kafka_query_watermark_offsets(a->rk, p->topic, p->partition, &lo, &hi,
                                               a->timeout_ms);
        if (err) {
            fprintf(stderr, "luka: %s[%d]: cannot read the log end offset: %s\n", p->topic,
                    (int)p->partition, rd_kafka_err2str(err));
            table_cell(t, "?"), table_cell(t, "?");
            rc = -1;
        } else {
            table_cell(t, "%lld", (long long)hi);
            if (p->err == 0 && p->offset >= 0)
                table_cell(t, "%lld", (long long)(hi > p->offset ? hi - p->offset : 0));
            else table_cell(t, "-");
        }
        table_cell(t, "%s", ep->name);
    }
done:
    if (consumer) {
        serve_logs(consumer);
        rd_kafka_consumer_close(consumer);
        rd_kafka_destroy(consumer);
    }
    rd_kafka_topic_partition_list_destroy(parts);
    return rc;
}

int admin_lag(int argc, char **argv) {
    admin_t a;
    const rd_kafka_metadata_t *md = NULL;
    table_t t = {.ncols = 7};
    int rc;

    if ((rc = open_admin(&a, &lag_cmd, argc, argv)) >= 0) goto done;
    rc = 1;
    if (a.app->neps == 0) {
        printf("%s declares no consumers or channels\n", a.app->path);
        rc = 0;
        goto done;
    }
    if (!(md = metadata(&a))) goto done;
    table_cell(&t, "GROUP"), table_cell(&t, "TOPIC"), table_cell(&t, "PARTITION"), table_cell(&t, "CURRENT-OFFSET");
    table_cell(&t, "LOG-END-OFFSET"), table_cell(&t, "LAG"), table_cell(&t, "ENDPOINT");
    rc = 0;
    for (int i = 0; i < a.app->neps; i++)
        if (group_rows(&a, md, i, &t)) rc = 1;
    table_print(&t);
done:
    if (md) rd_kafka_metadata_destroy(md);
    close_admin(&a);
    return rc;
}
