/* batch.c - batches of an endpoint with handle_batch.  Each partition
 * gathers the messages it delivers (already tracked, in offset order) and
 * cuts them into a batch at batch.max messages, or batch.wait after the
 * first one came.  A batch holds its partition until it is over, and
 * takes a slot of the endpoint's concurrency while its call runs.
 *
 * Dedup filters a batch before its first call; the calls themselves, and
 * what becomes of their messages, are batch_call.c's.  A delayed retry
 * waits here, in memory, the batch holding its partition but no slot. */
#include "flow/batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <uv.h>

#include "base/log.h"
#include "flow/batch_call.h"
#include "flow/outcome.h"
#include "flow/seen.h"

#define CTX(inf) INFLIGHT_CTX(inf)

/* A partition's side: what waits to be cut, and the batch holding it. */
typedef struct bpart {
    struct bpart *next;      /* the batcher's list */
    struct bpart *rnext;     /* the ready FIFO */
    const offsets_t *offsets; /* which partition (its tracker is unique to it) */
    inflight_t *head, *tail; /* come, not in a batch yet (qnext) */
    int nqueued;
    uint64_t first_at;   /* loop time (ms) the oldest of them came */
    uv_timer_t *timer;   /* cuts them after batch.wait */
    batch_t *batch;      /* the batch holding the partition, or NULL */
    int ready;           /* wants a slot: in the ready FIFO */
    batcher_t *owner;
} bpart_t;

struct batcher {
    flow_t *f;
    bpart_t *parts;
    bpart_t *ready, *ready_tail;
    int running; /* slots taken */
    int pumping, pump_again;
};

static void pump(batcher_t *bt);
static void end_batch(batch_t *b);
static void retry_in(batch_t *b, int64_t ms);

static const batch_ops_t ops = {end_batch, retry_in};

void batch_open(flow_t *f) {
    f->batcher = calloc(1, sizeof(*f->batcher));
    f->batcher->f = f;
}

static void free_timer(uv_handle_t *h) { free(h); }

static void close_timer(uv_timer_t **t) {
    if (!*t) return;
    uv_close((uv_handle_t *)*t, free_timer);
    *t = NULL;
}

static void arm(uv_loop_t *loop, uv_timer_t **t, uv_timer_cb cb, void *data, uint64_t ms) {
    if (!*t) {
        *t = malloc(sizeof(**t));
        uv_timer_init(loop, *t);
        (*t)->data = data;
    }
    uv_timer_start(*t, cb, ms, 0);
}

static bpart_t *part_of(batcher_t *bt, const offsets_t *o) {
    bpart_t *bp;
    for (bp = bt->parts; bp; bp = bp->next)
        if (bp->offsets == o) return bp;
    bp = calloc(1, sizeof(*bp));
    bp->offsets = o;
    bp->owner = bt;
    bp->next = bt->parts;
    bt->parts = bp;
    return bp;
}

static void unready(batcher_t *bt, bpart_t *bp) {
    bpart_t **p = &bt->ready, *prev = NULL;
    if (!bp->ready) return;
    while (*p && *p != bp) prev = *p, p = &(*p)->rnext;
    if (*p) {
        *p = bp->rnext;
        if (bt->ready_tail == bp) bt->ready_tail = prev;
    }
    bp->ready = 0;
}

/* A partition with nothing left goes: a tracker's address may be reused. */
static void maybe_free_part(batcher_t *bt, bpart_t *bp) {
    bpart_t **p;
    if (bp->head || bp->batch || bp->ready) return;
    close_timer(&bp->timer);
    for (p = &bt->parts; *p != bp; p = &(*p)->next) {}
    *p = bp->next;
    free(bp);
}

static void want_slot(batcher_t *bt, bpart_t *bp) {
    if (bp->ready) return;
    bp->ready = 1;
    bp->rnext = NULL;
    if (bt->ready_tail) bt->ready_tail->rnext = bp;
    else bt->ready = bp;
    bt->ready_tail = bp;
    pump(bt);
}

static void on_cut(uv_timer_t *t);

/* Cut what waits in bp when it is time: batch.max of them, or the oldest
 * waited batch.wait (force: the timer says so). */
static void consider(batcher_t *bt, bpart_t *bp, int force) {
    const endpoint_conf_t *conf = bt->f->conf;
    uv_loop_t *loop = bt->f->loop;

    if (bp->batch || bp->ready || !bp->head) return;
    if (!force && bp->nqueued < conf->batch_max && loop && conf->batch_wait_ms > 0) {
        uint64_t due = bp->first_at + (uint64_t)conf->batch_wait_ms, now = uv_now(loop);
        if (now < due) {
            arm(loop, &bp->timer, on_cut, bp, due - now);
            return;
        }
    }
    if (bp->timer) uv_timer_stop(bp->timer);
    want_slot(bt, bp);
}

static void on_cut(uv_timer_t *t) {
    bpart_t *bp = t->data;
    consider(bp->owner, bp, 1);
}

void batch_push(flow_t *f, inflight_t *inf) {
    batcher_t *bt = f->batcher;
    bpart_t *bp = part_of(bt, inf->offsets);

    inf->qnext = NULL;
    if (bp->tail) bp->tail->qnext = inf;
    else bp->head = inf, bp->first_at = f->loop ? uv_now(f->loop) : 0;
    bp->tail = inf;
    bp->nqueued++;
    consider(bt, bp, 0);
}

void batch_flush(flow_t *f) {
    for (bpart_t *bp = f->batcher->parts, *next; bp; bp = next) {
        next = bp->next; /* a batch that ends at once may free bp */
        consider(f->batcher, bp, 1);
    }
}

/* The next batch of bp: up to batch.max of what waits. */
static batch_t *cut(batcher_t *bt, bpart_t *bp) {
    int max = bt->f->conf->batch_max;
    int n = bp->nqueued < max ? bp->nqueued : max;
    batch_t *b = calloc(1, sizeof(*b));

    b->f = bt->f;
    b->ops = &ops;
    b->part = bp;
    b->m = malloc((size_t)n * sizeof(*b->m));
    b->state_ref = LUA_NOREF;
    for (int i = 0; i < n; i++) {
        inflight_t *inf = bp->head;
        bp->head = inf->qnext;
        inf->qnext = NULL;
        b->m[b->n++] = inf;
    }
    if (!bp->head) bp->tail = NULL;
    bp->nqueued -= n;
    /* What is left waits from now for the next batch. */
    if (bp->head && bt->f->loop) bp->first_at = uv_now(bt->f->loop);
    bp->batch = b;
    return b;
}

/* The batch is over: its partition is free for the next one. */
static void end_batch(batch_t *b) {
    bpart_t *bp = b->part;
    batcher_t *bt = bp->owner;

    if (b->slot) bt->running--;
    close_timer(&b->timer);
    bp->batch = NULL;
    free(b->m);
    free(b);
    consider(bt, bp, 0);
    maybe_free_part(bt, bp);
    pump(bt);
}


/* Skip what dedup says was handled, before the first call. */
static void filter(batch_t *b) {
    flow_t *f = b->part->owner->f;
    char *gone;
    int any = 0;

    b->filtered = 1;
    if (!f->dedup) return;
    gone = calloc((size_t)b->n, 1);
    for (int i = 0; i < b->n; i++) {
        inflight_t *inf = b->m[i];
        if (!seen_before(inf)) continue;
        log_at(LOG_INFO, "dedup", CTX(inf), "key '%.*s' already handled: skipped from the batch",
               (int)inf->dedup_len, inf->dedup_key);
        f->stats.deduplicated++;
        gone[i] = 1, any = 1;
        outcome_settle(inf, STAGE_IGNORE);
    }
    if (any) batch_compact(b, gone);
    free(gone);
}

/* Each message's age as its batch starts, once per delivery. */
static void observe_ages(batch_t *b) {
    hist_t *h = &b->part->owner->f->stats.age;
    uv_timeval64_t now;
    double t;
    uv_gettimeofday(&now);
    t = (double)now.tv_sec + now.tv_usec / 1e6;
    for (int i = 0; i < b->n; i++) {
        double age;
        if (b->m[i]->msg.timestamp < 0) continue;
        age = t - (double)b->m[i]->msg.timestamp / 1e3;
        /* A producer's clock ahead of ours makes a message from the future. */
        hist_observe(h, age > 0 ? age : 0);
    }
}

static void start(batch_t *b) {
    batcher_t *bt = b->part->owner;
    flow_t *f = bt->f;

    b->slot = 1;
    bt->running++;
    if (!b->filtered) {
        b->busy = 1;
        filter(b);
        b->busy = 0;
        if (b->n == 0) {
            end_batch(b);
            return;
        }
        hist_observe(&f->stats.batch_size, b->n);
        observe_ages(b);
    }
    batch_call(b);
}

/* Start what may start: batches waiting for a slot, in the order they
 * asked.  Nested calls leave the work to the outermost. */
static void pump(batcher_t *bt) {
    if (bt->pumping) {
        bt->pump_again = 1;
        return;
    }
    bt->pumping = 1;
    do {
        bt->pump_again = 0;
        while (!bt->f->stopped && bt->ready && bt->running < bt->f->conf->concurrency) {
            bpart_t *bp = bt->ready;
            bt->ready = bp->rnext;
            if (!bt->ready) bt->ready_tail = NULL;
            bp->ready = 0;
            start(bp->batch ? bp->batch : cut(bt, bp));
        }
    } while (bt->pump_again);
    bt->pumping = 0;
}

/* Retry the rest after its delay. */
static void on_retry(uv_timer_t *t) {
    batch_t *b = t->data;
    uv_timer_stop(t);
    want_slot(b->part->owner, b->part);
}

static void retry_in(batch_t *b, int64_t ms) {
    batcher_t *bt = b->part->owner;
    b->slot = 0;
    bt->running--;
    arm(bt->f->loop, &b->timer, on_retry, b, (uint64_t)ms);
    pump(bt);
}

int batch_waiting(const flow_t *f) {
    int n = 0;
    for (const bpart_t *bp = f->batcher->parts; bp; bp = bp->next) {
        n += bp->nqueued;
        if (bp->batch && !bp->batch->task && !bp->batch->busy) n += bp->batch->n;
    }
    return n;
}

int batch_in_use(const flow_t *f) { return f->batcher->running; }

int batch_running(const flow_t *f, const offsets_t *o) {
    int n = 0;
    for (const bpart_t *bp = f->batcher->parts; bp; bp = bp->next)
        n += bp->batch && bp->batch->task && (!o || bp->offsets == o);
    return n;
}

int batch_busy(const flow_t *f) {
    for (const bpart_t *bp = f->batcher->parts; bp; bp = bp->next)
        if (bp->head || bp->batch) return 1;
    return 0;
}

/* Let go of batch b without running it further. */
static int drop_batch(batch_t *b) {
    int n = b->n;

    if (b->task)
        log_at(LOG_WARN, "flow", CTX(b->m[0]),
               "batch handler still running after the drain timeout: abandoned, uncommitted; its "
               "%d message(s) come again",
               b->n);
    batch_call_stop(b);
    unready(b->part->owner, b->part);
    for (int i = 0; i < b->n; i++) batch_let_go(b->m[i]);
    b->n = 0;
    end_batch(b);
    return n;
}

int batch_drop(flow_t *f, const offsets_t *o, int running_too) {
    batcher_t *bt = f->batcher;
    int n = 0;

    for (bpart_t *bp = bt->parts, *next; bp; bp = next) {
        batch_t *b = bp->batch;
        next = bp->next;
        if (o && bp->offsets != o) continue;
        while (bp->head) {
            inflight_t *inf = bp->head;
            bp->head = inf->qnext;
            bp->nqueued--;
            batch_let_go(inf);
            n++;
        }
        bp->tail = NULL;
        if (bp->timer) uv_timer_stop(bp->timer);
        if (b && !b->busy && (!b->task || running_too)) {
            n += drop_batch(b); /* may free bp */
            continue;
        }
        if (!b) unready(bt, bp);
        maybe_free_part(bt, bp);
    }
    if (n) pump(bt);
    return n;
}

void batch_close(flow_t *f) {
    batcher_t *bt = f->batcher;
    if (!bt) return;
    while (bt->parts) {
        bpart_t *bp = bt->parts;
        batch_t *b = bp->batch;
        bt->parts = bp->next;
        if (b) {
            batch_call_stop(b);
            close_timer(&b->timer);
            free(b->m);
            free(b);
        }
        close_timer(&bp->timer);
        free(bp);
    }
    free(bt);
    f->batcher = NULL;
}

