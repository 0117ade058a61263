/* outbox.h - the C half of luka.outbox's relay (lua/luka/outbox.lua):
 * publishing a round's rows and waiting for the broker's answers, and the
 * figures /metrics shows per outbox. */
#ifndef LUKA_OUTBOX_H
#define LUKA_OUTBOX_H

#include <stdint.h>

#include <lua.h>

/* What one outbox's relay has seen, kept for the process. */
typedef struct outbox_figures {
    char name[128];
    uint64_t published;  /* rows published and marked sent */
    int64_t pending;     /* unsent rows at the last look; -1: not looked yet */
    double oldest_age;   /* seconds since the oldest unsent row was written; -1: none */
    uint64_t errors;     /* rounds that failed (database, broker) */
    /* Its trouble, for logging it once per change. */
    int troubled;
    uint64_t failed_rounds;
    int64_t logged_ms;
    char trouble[512];
} outbox_figures_t;

/* Fill the table at the top of the stack with outbox_send and
 * outbox_report (the relay's calls). */
void outbox_inject_api(lua_State *L);

/* Start the relays of the outboxes L's app declared: a timer each.  Once
 * L is bound (lapi_start). */
void outbox_start(lua_State *L);

/* Call fn with the figures of every outbox seen so far. */
void outbox_each(void (*fn)(void *ud, const outbox_figures_t *f), void *ud);

/* Let go of the figures, at exit. */
void outbox_shutdown(void);

#endif
