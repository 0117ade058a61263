/* outbox_cli.c - `luka outbox APP [--create]`: create the tables of an
 * app's outboxes (luka.outbox), or show how many rows each holds unsent
 * and how old the oldest is.  A command run by hand: it talks to
 * PostgreSQL with libpq's blocking calls, with no loop to hold up. */
#include "cmd/outbox_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "api/lapi.h"
#include "app/app.h"
#include "base/cliopt.h"
#include "base/log.h"

enum { OUTBOX_CREATE, OUTBOX_NAME, NOUTBOX };

static const cliopt_t outbox_options[NOUTBOX] = {
    [OUTBOX_CREATE] = {"create", 0, NULL,
                       "create each outbox's table and its index of unsent rows\n"
                       "(if they do not exist yet)"},
    [OUTBOX_NAME] = {"outbox", 0, "NAME", "only this outbox (default: every one)"},
};

static const clicmd_t outbox_cmd = {
    .name = "outbox",
    .synopsis = "outbox APP [--create] [--outbox NAME]",
    .about = "For each outbox the app declares (luka.outbox), print its unsent rows and\n"
             "the age of the oldest; with --create, create its table first.  Exit code\n"
             "1 when a database cannot be reached or a statement fails.",
    .opts = outbox_options,
    .nopts = NOUTBOX,
};

typedef struct outbox_args {
    const char *app, *only;
    int create;
} outbox_args_t;

static int outbox_option(void *ud, int opt, const char *v) {
    outbox_args_t *a = ud;
    switch (opt) {
    case CLIOPT_ARG:
        if (a->app)
            return cliopt_bad_usage("outbox", "one app at a time: got '%s' and '%s'", a->app, v);
        a->app = v;
        break;
    case OUTBOX_CREATE:
        a->create = 1;
        break;
    case OUTBOX_NAME:
        a->only = v;
        break;
    }
    return 0;
}

/* "CREATE INDEX ... outbox_unsent": the index is named after the table,
 * without its schema (an index lives in its table's schema). */
static void create_sql(const outbox_conf_t *o, char *sql, size_t len) {
    const char *dot = strchr(o->table, '.');
    snprintf(sql, len,
             "CREATE TABLE IF NOT EXISTS %s (\n"
             "  id bigserial PRIMARY KEY,\n"
             "  topic text,\n"
             "  key text,\n"
             "  payload text,\n"
             "  headers jsonb,\n"
             "  created_at timestamptz NOT NULL DEFAULT now(),\n"
             "  sent_at timestamptz\n"
             ");\n"
             "CREATE INDEX IF NOT EXISTS %s_unsent ON %s (id) WHERE sent_at IS NULL;\n",
             o->table, dot ? dot + 1 : o->table, o->table);
}

static void quiet(void *arg, const char *message) { (void)arg, (void)message; }

/* Run sql on conn; 0, or -1 after printing why. */
static int exec(PGconn *conn, const outbox_conf_t *o, const char *sql, PGresult **out) {
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fprintf(stderr, "luka outbox: outbox '%s': %s", o->name, PQresultErrorMessage(res));
        PQclear(res);
        return -1;
    }
    if (out) *out = res;
    else PQclear(res);
    return 0;
}

/* Create (with create) and report one outbox; 0 or -1. */
static int one(const outbox_conf_t *o, int create) {
    char url[1024], sql[2048];
    PGresult *res = NULL;
    PGconn *conn;
    int rc = -1;

    log_redact_url(o->db, url, sizeof(url));
    conn = PQconnectdb(o->db);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "luka outbox: outbox '%s': cannot connect to %s: %s", o->name, url,
                PQerrorMessage(conn));
        goto done;
    }
    PQsetNoticeProcessor(conn, quiet, NULL); /* "already exists, skipping" */
    if (create) {
        create_sql(o, sql, sizeof(sql));
        if (exec(conn, o, sql, NULL)) goto done;
        printf("outbox %s: table %s ready in %s\n", o->name, o->table, url);
    }
    snprintf(sql, sizeof(sql),
             "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 "
             "FROM %s WHERE sent_at IS NULL",
             o->table);
    if (exec(conn, o, sql, &res)) goto done;
    printf("outbox %s: table %s, %s row(s) pending, oldest %.1fs, publisher %s   (%s)\n", o->name,
           o->table, PQgetvalue(res, 0, 0), atof(PQgetvalue(res, 0, 1)), o->publisher, url);
    rc = 0;
done:
    if (res) PQclear(res);
    PQfinish(conn);
    return rc;
}

int outbox_cli_main(int argc, char **argv) {
    outbox_args_t a = {0};
    char err[2048];
    app_t *app;
    int rc, found = 0;

    if ((rc = cliopt_parse(&outbox_cmd, argc, argv, outbox_option, &a)) >= 0) return rc;
    if (!a.app) return cliopt_bad_usage("outbox", "which app? usage: luka %s", outbox_cmd.synopsis);
    if (!(app = app_load(a.app, NULL, lapi_open, err, sizeof(err)))) {
        fprintf(stderr, "luka: %s\n", err);
        return 1;
    }
    rc = 0;
    for (int i = 0; i < app->noutboxes; i++) {
        if (a.only && strcmp(a.only, app->outboxes[i].name) != 0) continue;
        found++;
        if (one(&app->outboxes[i], a.create)) rc = 1;
    }
    if (!found && a.only) {
        cliopt_near_t near = cliopt_near(a.only);
        for (int i = 0; i < app->noutboxes; i++) cliopt_near_add(&near, app->outboxes[i].name);
        fprintf(stderr, "luka outbox: %s declares no outbox '%s'%s%s%s\n", a.app, a.only,
                near.best ? " (did you mean '" : "", near.best ? near.best : "",
                near.best ? "'?)" : "");
        rc = 1;
    } else if (!found) {
        fprintf(stderr,
                "luka outbox: %s declares no outbox; declare one with luka.outbox \"name\" "
                "{ db = \"postgres://...\", publisher = \"...\" }\n",
                a.app);
        rc = 1;
    }
    app_free(app);
    return rc;
}
