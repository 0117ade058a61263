/* dedup_sqlite.c - the persistent dedup store: one SQLite file in WAL mode,
 * so a record survives a crash of the process and a replay after restart
 * skips what was already handled. */
#include <stdio.h>
#include <stdlib.h>

#include <sqlite3.h>

#include "stores/dedup.h"

/* Expired rows are deleted once every this many marks. */
#define PURGE_EVERY 1000

typedef struct sqlite_store {
    dedup_t base;
    sqlite3 *db;
    sqlite3_stmt *seen, *mark, *purge;
    int marks;
} sqlite_store_t;

static int fail(sqlite_store_t *s, const char *what, char *errbuf, size_t errlen) {
    snprintf(errbuf, errlen, "sqlite dedup store: %s: %s", what, sqlite3_errmsg(s->db));
    return -1;
}

static int sqlite_seen(dedup_t *d, const char *key, size_t len, char *errbuf, size_t errlen) {
    sqlite_store_t *s = (sqlite_store_t *)d;
    int rc;
    sqlite3_reset(s->seen);
    sqlite3_bind_text(s->seen, 1, d->scope, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s->seen, 2, key, (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(s->seen, 3, dedup_now_ms());
    rc = sqlite3_step(s->seen);
    if (rc == SQLITE_ROW) return 1;
    if (rc == SQLITE_DONE) return 0;
    return fail(s, "lookup", errbuf, errlen);
}

static int sqlite_mark(dedup_t *d, const char *key, size_t len, char *errbuf, size_t errlen) {
    sqlite_store_t *s = (sqlite_store_t *)d;
    int64_t now = dedup_now_ms();
    sqlite3_reset(s->mark);
    sqlite3_bind_text(s->mark, 1, d->scope, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s->mark, 2, key, (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(s->mark, 3, now + d->ttl_ms);
    if (sqlite3_step(s->mark) != SQLITE_DONE) return fail(s, "insert", errbuf, errlen);
    if (++s->marks % PURGE_EVERY == 0) {
        sqlite3_reset(s->purge);
        sqlite3_bind_int64(s->purge, 1, now);
        if (sqlite3_step(s->purge) != SQLITE_DONE) return fail(s, "purge", errbuf, errlen);
    }
    return 0;
}

static void sqlite_close(dedup_t *d) {
    sqlite_store_t *s = (sqlite_store_t *)d;
    sqlite3_finalize(s->seen);
    sqlite3_finalize(s->mark);
    sqlite3_finalize(s->purge);
    sqlite3_close(s->db);
    free(s);
}

static const dedup_ops_t sqlite_ops = {sqlite_seen, sqlite_mark, sqlite_close};

dedup_t *dedup_sqlite_open(const char *path, char *errbuf, size_t errlen) {
    sqlite_store_t *s = calloc(1, sizeof(*s));
    s->base.ops = &sqlite_ops;
    if (sqlite3_open(path, &s->db) != SQLITE_OK) {
        snprintf(errbuf, errlen, "sqlite dedup store: cannot open %s: %s", path,
                 sqlite3_errmsg(s->db));
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 5000);
    /* WAL with synchronous=NORMAL: a committed row survives a crash of the
     * process (not necessarily of the machine), at a cost of microseconds. */
    if (sqlite3_exec(s->db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                     "CREATE TABLE IF NOT EXISTS luka_dedup (scope TEXT NOT NULL, key BLOB NOT NULL,"
                     " expires INTEGER NOT NULL, PRIMARY KEY (scope, key)) WITHOUT ROWID;",
                     NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db,
                           "SELECT 1 FROM luka_dedup WHERE scope = ?1 AND key = ?2 AND expires > ?3",
                           -1, &s->seen, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO luka_dedup VALUES (?1, ?2, ?3)", -1,
                           &s->mark, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "DELETE FROM luka_dedup WHERE expires <= ?1", -1, &s->purge,
                           NULL) != SQLITE_OK) {
        snprintf(errbuf, errlen, "sqlite dedup store %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    return &s->base;
fail:
    sqlite_close(&s->base);
    return NULL;
}
