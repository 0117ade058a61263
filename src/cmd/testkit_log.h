/* testkit_log.h - the test kit's log capture, for testkit.c: every record
 * luka's logger takes while a harness is in use (its load, deliveries and
 * timers: luka.log, print in JSON mode, luka's own lines, at every level)
 * is kept for app:logs() and deliver's `logs`.  The kit runs everything
 * on one thread, so a harness in use is the one whose method runs. */
#ifndef LUKA_TESTKIT_LOG_H
#define LUKA_TESTKIT_LOG_H

#include <stdint.h>

#include <lua.h>

typedef struct testkit_logs testkit_logs_t;

testkit_logs_t *testkit_logs_new(void);

/* Stop capturing into l if it does, and free it. */
void testkit_logs_free(testkit_logs_t *l);

/* From now on, records are kept in l (NULL: not kept). */
void testkit_logs_capture(testkit_logs_t *l);

/* How many records l holds. */
int testkit_logs_count(const testkit_logs_t *l);

/* The records go to now (the harness in use), or NULL. */
testkit_logs_t *testkit_logs_capturing(void);

/* Which message a record is about. */
typedef struct testkit_about {
    const char *topic;
    int32_t partition;
    int64_t offset;
} testkit_about_t;

/* Push a sequence of l's records from first (from 0) on, each
 * { level, component, msg, fields, context, traceback }: those about the
 * message about, or all of them (about NULL). */
void testkit_logs_push(lua_State *L, const testkit_logs_t *l, int first,
                       const testkit_about_t *about);

#endif
