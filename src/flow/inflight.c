/* inflight.c - records of messages in flight: made when a message enters
 * the flow, finished in one place, kept (without their message) until the
 * last delivery report that names them, then reused. */
#include "flow/inflight.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/trace.h"

/* Finished records are kept for the next messages: one malloc and free
 * fewer per message. */
#define SPARE_MAX 1024
static inflight_t *spare;
static int nspare;

/* Records whose outcome is decided but whose publishes are not all
 * reported yet: a report must never reach freed memory. */
static inflight_t *lingering;

static void recycle(inflight_t *inf) {
    if (nspare == SPARE_MAX) {
        free(inf);
        return;
    }
    inf->next = spare;
    spare = inf;
    nspare++;
}

static inflight_t *record(flow_t *f, offsets_t *o) {
    inflight_t *inf = spare;
    if (inf) {
        spare = inf->next;
        nspare--;
        memset(inf, 0, sizeof(*inf));
    } else {
        inf = calloc(1, sizeof(*inf));
    }
    inf->flow = f;
    inf->offsets = o;
    inf->pause_ms = -1;
    offsets_ref(o);
    inf->next = f->inflight;
    if (f->inflight) f->inflight->prev = inf;
    f->inflight = inf;
    f->ninflight++;
    return inf;
}

void inflight_read_context(inflight_t *inf) {
    rd_kafka_headers_t *h = inf->msg.headers;
    const void *v;
    size_t n;
    char why[128];

    if (inf->context_read) return;
    inf->context_read = 1; /* before the log line below, which asks again */
    if (h && !rd_kafka_header_get_last(h, "id", &v, &n) && v) {
        inf->id = v;
        inf->id_len = n;
    }
    if (h && !rd_kafka_header_get_last(h, "traceparent", &v, &n) && v) {
        if (trace_parse(&inf->trace, v, n, why, sizeof(why)) == 0) {
            trace_child(&inf->trace);
            inf->traced = 1;
            return;
        }
        trace_new(&inf->trace);
        log_at(LOG_DEBUG, "trace", INFLIGHT_CTX(inf),
               "traceparent '%.*s' ignored (%s): a new trace starts", (int)(n < 80 ? n : 80),
               (const char *)v, why);
        return;
    }
    trace_new(&inf->trace);
}

inflight_t *inflight_new(flow_t *f, message_t *m, offsets_t *o) {
    inflight_t *inf = record(f, o);
    inf->msg = *m; /* the record owns the message now */
    inf->seq = offsets_track(o, m->offset);
    return inf;
}

const log_ctx_t *inflight_log_ctx(inflight_t *inf, log_ctx_t *c) {
    const endpoint_conf_t *conf = inf->flow ? inf->flow->conf : NULL;

    if (inf->msg.topic) inflight_read_context(inf);
    *c = (log_ctx_t){.endpoint = conf ? conf->name : NULL,
                     .group = conf ? conf->group : NULL,
                     .topic = inf->msg.topic,
                     .partition = inf->msg.partition,
                     .offset = inf->msg.offset,
                     .key = inf->msg.key,
                     .key_len = inf->msg.key_len,
                     .id = inf->id,
                     .id_len = inf->id_len,
                     .trace_id = inf->trace.trace_id};
    return c;
}

inflight_t *inflight_respawn(inflight_t *inf) {
    inflight_t *again = record(inf->flow, inf->offsets);

    again->msg = inf->msg;
    memset(&inf->msg, 0, sizeof(inf->msg));
    again->seq = inf->seq;
    again->attempts = inf->attempts;
    again->rounds = inf->rounds + 1;
    again->dedup_key = inf->dedup_key;
    again->dedup_len = inf->dedup_len;
    again->error = inf->error;
    again->traceback = inf->traceback;
    again->context_read = inf->context_read;
    again->id = inf->id;
    again->id_len = inf->id_len;
    again->trace = inf->trace;
    again->traced = inf->traced;
    inf->dedup_key = inf->error = inf->traceback = NULL;
    inflight_finish(inf, 0);
    return again;
}

void inflight_shutdown(void) {
    while (lingering) {
        inflight_t *next = lingering->next;
        free(lingering);
        lingering = next;
    }
    while (spare) {
        inflight_t *next = spare->next;
        free(spare);
        spare = next;
    }
    nspare = 0;
}

static int outstanding(const inflight_t *inf) {
    int n = 0;
    for (int i = 0; i < INFLIGHT_STAGES; i++) n += inf->tags[i].pending;
    return n;
}

void inflight_finish(inflight_t *inf, int done) {
    flow_t *f = inf->flow;

    if (done && offsets_done(inf->offsets, inf->seq)) f->source->progress(f);
    if (inf->prev) inf->prev->next = inf->next;
    else f->inflight = inf->next;
    if (inf->next) inf->next->prev = inf->prev;
    f->ninflight--;
    f->source->finished(f, inf, done);

    /* The record no longer stands for a message: let go of what it holds,
     * and of the record itself once no delivery report can name it. */
    message_release(&inf->msg);
    offsets_unref(inf->offsets);
    inf->offsets = NULL;
    free(inf->dedup_key);
    free(inf->error);
    free(inf->traceback);
    free(inf->error_channel_failed);
    inf->dedup_key = inf->error = inf->traceback = inf->error_channel_failed = NULL;
    inf->flow = NULL;
    if (outstanding(inf) == 0) {
        recycle(inf);
        return;
    }
    inf->prev = NULL;
    inf->next = lingering;
    if (lingering) lingering->prev = inf;
    lingering = inf;
}

publish_tag_t *inflight_tag(inflight_t *inf) {
    publish_tag_t *t = &inf->tags[inf->tag];
    t->inf = inf;
    return t;
}

void inflight_new_stage(inflight_t *inf) {
    if (inf->tag + 1 < INFLIGHT_STAGES) inf->tag++;
}

inflight_t *inflight_reported(publish_tag_t *t) {
    inflight_t *inf = t->inf;

    t->pending--;
    if (!inf->flow) {
        /* Its outcome was decided (or its flow closed): let go of it
         * after its last report. */
        if (outstanding(inf) == 0) {
            if (inf->prev) inf->prev->next = inf->next;
            else lingering = inf->next;
            if (inf->next) inf->next->prev = inf->prev;
            recycle(inf);
        }
        return NULL;
    }
    return t == &inf->tags[inf->tag] ? inf : NULL;
}
