/* admin_topics.c - `luka topics`: compare the app's luka.topic declarations
 * with the cluster and, with --apply, create what is missing and add
 * missing partitions (never deleting or shrinking); with --check, exit 1
 * on any difference, for CI. */
#include "cmd/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "base/cliopt.h"
#include "base/table.h"
#include "cmd/admin_client.h"

typedef struct admin {
    admin_client_t c;
    admin_args_t args;
    int apply;
    int check; /* --check: differences make the exit code 1 */
} admin_t;

/* Command-line options of topics, declared once. */
enum { OPT_BROKERS, OPT_TIMEOUT, OPT_APPLY, OPT_CHECK, NOPTS };

static const cliopt_t options[NOPTS] = {
    [OPT_BROKERS] = ADMIN_OPT_BROKERS,
    [OPT_TIMEOUT] = ADMIN_OPT_TIMEOUT,
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

static int option(void *ud, int opt, const char *v) {
    admin_t *a = ud;
    switch (opt) {
    case CLIOPT_ARG:
        return admin_arg_app(&a->args, v);
    case OPT_BROKERS:
        return admin_arg_brokers(&a->args, v);
    case OPT_TIMEOUT:
        return admin_arg_timeout(&a->args, v);
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
static int parse(admin_t *a, int argc, char **argv) {
    int rc = cliopt_parse(&topics_cmd, argc, argv, option, a);
    if (rc >= 0) return rc;
    if (!a->args.app_path)
        return cliopt_bad_usage("topics", "which app? usage: luka %s", topics_cmd.synopsis);
    if (a->apply && a->check)
        return cliopt_bad_usage("topics", "--check only looks and --apply changes: one at a time");
    return -1;
}

/* ---- luka topics ------------------------------------------------------ */

/* The cluster's configs of the existing declared topics that declare any,
 * as one DescribeConfigs result event (NULL with why when unavailable). */
static rd_kafka_event_t *describe_configs(admin_client_t *a, const rd_kafka_metadata_t *md, char *why,
                                          size_t len) {
    const app_t *app = a->app;
    rd_kafka_ConfigResource_t **res = calloc(app->ntopics + 1, sizeof(*res));
    rd_kafka_queue_t *q = rd_kafka_queue_new(a->rk);
    rd_kafka_AdminOptions_t *o = admin_options(a, a->rk);
    rd_kafka_event_t *ev = NULL;
    int n = 0;

    for (int i = 0; i < app->ntopics; i++)
        if (app->topics[i].config.n && admin_find_topic(md, app->topics[i].name))
            res[n++] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, app->topics[i].name);
    if (n == 0) goto done;
    rd_kafka_DescribeConfigs(a->rk, res, n, o, q);
    ev = admin_wait(a, q, RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT);
    if (!ev || rd_kafka_event_error(ev)) {
        admin_request_error(a, ev, why, len);
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
static int apply(admin_client_t *a, const rd_kafka_metadata_t *md) {
    const app_t *app = a->app;
    rd_kafka_NewTopic_t **create = calloc(app->ntopics + 1, sizeof(*create));
    const char **names = calloc(app->ntopics + 1, sizeof(*names));
    const char **grow_names = calloc(app->ntopics + 1, sizeof(*grow_names));
    rd_kafka_NewPartitions_t **grow = calloc(app->ntopics + 1, sizeof(*grow));
    rd_kafka_queue_t *q = rd_kafka_queue_new(a->rk);
    rd_kafka_AdminOptions_t *o = admin_options(a, a->rk);
    rd_kafka_event_t *ev;
    int ncreate = 0, ngrow = 0, failed = 0;
    char why[512], rbuf[512];

    for (int i = 0; i < app->ntopics; i++) {
        const topic_conf_t *t = &app->topics[i];
        const rd_kafka_metadata_topic_t *mt = admin_find_topic(md, t->name);
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
        ev = admin_wait(a, q, RD_KAFKA_EVENT_CREATETOPICS_RESULT);
        if (!ev || rd_kafka_event_error(ev)) {
            /* The whole request failed: say so for each topic. */
            for (int i = 0; i < ncreate; i++)
                printf("%s: cannot create: %s\n", names[i], admin_request_error(a, ev, rbuf, sizeof(rbuf)));
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
        ev = admin_wait(a, q, RD_KAFKA_EVENT_CREATEPARTITIONS_RESULT);
        if (!ev || rd_kafka_event_error(ev)) {
            for (int i = 0; i < ngrow; i++)
                printf("%s: cannot add partitions: %s\n", grow_names[i], admin_request_error(a, ev, rbuf, sizeof(rbuf)));
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

    memset(&a, 0, sizeof(a));
    a.args = admin_args("topics");
    if ((rc = parse(&a, argc, argv)) >= 0) return rc;
    rc = 1;
    if (admin_load(&a.c, &a.args) || admin_connect(&a.c)) goto done;
    app = a.c.app;
    if (app->ntopics == 0) {
        printf("%s declares no topics (luka.topic \"name\" { partitions = N, ... })\n", app->path);
        rc = 0;
        goto done;
    }
    if (!(md = admin_metadata(&a.c))) goto done;
    configs = describe_configs(&a.c, md, why, sizeof(why));

    table_cell(&t, "TOPIC"), table_cell(&t, "EXISTS"), table_cell(&t, "PARTITIONS");
    table_cell(&t, "DECLARED"), table_cell(&t, "REPLICATION"), table_cell(&t, "DECLARED");
    for (int i = 0; i < app->ntopics; i++) {
        const topic_conf_t *tc = &app->topics[i];
        const rd_kafka_metadata_topic_t *mt = admin_find_topic(md, tc->name);
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
        const rd_kafka_metadata_topic_t *mt = admin_find_topic(md, tc->name);
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
                differs, app->path, a.c.brokers);
        rc = 1;
    }
    if (a.apply && fixable) {
        int failed = apply(&a.c, md);
        if (failed) {
            fprintf(stderr, "luka: %d change(s) failed on %s\n", failed, a.c.brokers);
            rc = 1;
        }
    } else if (a.apply) {
        printf("nothing to create or grow\n");
    }
done:
    if (configs) rd_kafka_event_destroy(configs);
    if (md) rd_kafka_metadata_destroy(md);
    admin_close(&a.c);
    return rc;
}
