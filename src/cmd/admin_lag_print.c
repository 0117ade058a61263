/* admin_lag_print.c - `luka lag`'s two outputs: the table, columns as
 * kafka-consumer-groups --describe prints them (then the app's endpoint),
 * and --json, one document built with jansson.  Its fields are listed in
 * the README ("Topics and lag"). */
#include "cmd/admin_lag.h"

#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "base/table.h"

/* A member column's text: "-" when unknown or empty. */
static const char *shown(const char *s) { return s && *s ? s : "-"; }

static void part_row(table_t *t, const lag_group_t *g, const lag_part_t *p, int with_app) {
    const lag_member_t *m = p->member;
    table_cell(t, "%s", g->name), table_cell(t, "%s", p->topic);
    if (p->partition < 0) {
        for (int i = 0; i < 7; i++) table_cell(t, "-");
        if (with_app) table_cell(t, "%s (%s)", shown(p->endpoint), p->error);
        return;
    }
    table_cell(t, "%d", p->partition);
    if (p->committed >= 0) table_cell(t, "%lld", (long long)p->committed);
    else table_cell(t, "-");
    if (p->log_end >= 0) table_cell(t, "%lld", (long long)p->log_end);
    else table_cell(t, "?");
    if (p->committed >= 0 && p->log_end >= 0)
        table_cell(t, "%lld",
                   (long long)(p->log_end > p->committed ? p->log_end - p->committed : 0));
    else if (p->log_end >= 0) table_cell(t, "-");
    else table_cell(t, "?");
    table_cell(t, "%s", shown(m ? m->consumer_id : NULL));
    table_cell(t, "%s", shown(m ? m->host : NULL));
    table_cell(t, "%s", shown(m ? m->client_id : NULL));
    if (with_app) table_cell(t, "%s", shown(p->endpoint));
}

void lag_print_table(const lag_report_t *r) {
    table_t t = {.ncols = r->with_app ? 10 : 9};
    int rows = 0;
    for (int i = 0; i < r->ngroups; i++) rows += r->groups[i].nparts + r->groups[i].nmembers;
    if (rows == 0) return;
    table_cell(&t, "GROUP"), table_cell(&t, "TOPIC"), table_cell(&t, "PARTITION");
    table_cell(&t, "CURRENT-OFFSET"), table_cell(&t, "LOG-END-OFFSET"), table_cell(&t, "LAG");
    table_cell(&t, "CONSUMER-ID"), table_cell(&t, "HOST"), table_cell(&t, "CLIENT-ID");
    if (r->with_app) table_cell(&t, "ENDPOINT");
    for (int i = 0; i < r->ngroups; i++) {
        const lag_group_t *g = &r->groups[i];
        for (int k = 0; k < g->nparts; k++) part_row(&t, g, &g->parts[k], r->with_app);
        /* A member assigned none of the rows, as kafka-consumer-groups
         * shows one: with "-" for the partition columns. */
        for (int m = 0; m < g->nmembers; m++) {
            if (g->members[m].rows) continue;
            table_cell(&t, "%s", g->name);
            for (int c = 0; c < 5; c++) table_cell(&t, "-");
            table_cell(&t, "%s", shown(g->members[m].consumer_id));
            table_cell(&t, "%s", shown(g->members[m].host));
            table_cell(&t, "%s", shown(g->members[m].client_id));
            if (r->with_app) table_cell(&t, "-");
        }
    }
    table_print(&t);
}

/* A string, or null for NULL. */
static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

static json_t *int_or_null(int64_t v, int known) {
    return known ? json_integer((json_int_t)v) : json_null();
}

static json_t *member_json(const lag_member_t *m) {
    json_t *o = json_object(), *a = json_array();
    json_object_set_new(o, "consumer_id", str_or_null(m->consumer_id));
    json_object_set_new(o, "host", str_or_null(m->host));
    json_object_set_new(o, "client_id", str_or_null(m->client_id));
    json_object_set_new(o, "group_instance_id", str_or_null(m->instance_id));
    for (int i = 0; m->assignment && i < m->assignment->cnt; i++) {
        json_t *tp = json_object();
        json_object_set_new(tp, "topic", json_string(m->assignment->elems[i].topic));
        json_object_set_new(tp, "partition", json_integer(m->assignment->elems[i].partition));
        json_array_append_new(a, tp);
    }
    json_object_set_new(o, "assignment", a);
    return o;
}

static json_t *part_json(const lag_part_t *p) {
    json_t *o = json_object();
    int committed = p->committed >= 0, end = p->log_end >= 0;
    const lag_member_t *m = p->member;
    json_object_set_new(o, "topic", json_string(p->topic));
    json_object_set_new(o, "partition", int_or_null(p->partition, p->partition >= 0));
    json_object_set_new(o, "current_offset", int_or_null(p->committed, committed));
    json_object_set_new(o, "log_end_offset", int_or_null(p->log_end, end));
    json_object_set_new(o, "lag", int_or_null(p->log_end > p->committed ? p->log_end - p->committed
                                                                        : 0,
                                              committed && end));
    json_object_set_new(o, "consumer_id", str_or_null(m ? m->consumer_id : NULL));
    json_object_set_new(o, "host", str_or_null(m ? m->host : NULL));
    json_object_set_new(o, "client_id", str_or_null(m ? m->client_id : NULL));
    json_object_set_new(o, "endpoint", str_or_null(p->endpoint));
    json_object_set_new(o, "error", str_or_null(p->error));
    return o;
}

static json_t *group_json(const lag_group_t *g) {
    json_t *o = json_object(), *parts = json_array(), *members;
    int64_t total = 0;
    int known = g->members_error[0] == '\0';
    json_object_set_new(o, "group", json_string(g->name));
    json_object_set_new(o, "state", str_or_null(g->state));
    members = known ? json_array() : json_null();
    for (int m = 0; known && m < g->nmembers; m++)
        json_array_append_new(members, member_json(&g->members[m]));
    json_object_set_new(o, "members", members);
    json_object_set_new(o, "members_error", known ? json_null() : json_string(g->members_error));
    for (int i = 0; i < g->nparts; i++) {
        const lag_part_t *p = &g->parts[i];
        if (p->committed >= 0 && p->log_end > p->committed) total += p->log_end - p->committed;
        json_array_append_new(parts, part_json(p));
    }
    json_object_set_new(o, "lag", json_integer((json_int_t)total));
    json_object_set_new(o, "partitions", parts);
    return o;
}

int lag_print_json(const lag_report_t *r) {
    json_t *doc = json_object(), *groups = json_array();
    int rc;
    json_object_set_new(doc, "brokers", json_string(r->brokers));
    for (int i = 0; i < r->ngroups; i++) json_array_append_new(groups, group_json(&r->groups[i]));
    json_object_set_new(doc, "groups", groups);
    rc = json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (rc == 0 && (fputc('\n', stdout) == EOF || fflush(stdout))) rc = -1;
    json_decref(doc);
    if (rc) fprintf(stderr, "luka lag: cannot write the JSON document to stdout\n");
    return rc ? -1 : 0;
}
