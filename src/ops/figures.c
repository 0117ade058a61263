/* figures.c - an endpoint's figures, gathered (figures.h). */
#include "ops/figures.h"

#include <stdlib.h>

#include <jansson.h>

#include "flow/pipeline.h"

void figures_endpoint(const endpoint_t *ep, endpoint_figures_t *f) {
    const flow_t *flow = &ep->flow;
    f->name = flow->conf->name;
    f->group = flow->conf->group;
    f->stats = &flow->stats;
    f->joined = ep->joined;
    f->stopped = ep->halted;
    f->assigned = 0;
    for (int i = 0; i < ep->nparts; i++) f->assigned += !ep->parts[i]->revoking;
    f->in_use = pipeline_in_use(flow);
    f->io_waiting = pipeline_running(flow, NULL);
    f->concurrency = flow->conf->concurrency;
    f->waiting = pipeline_waiting(flow);
}

/* librdkafka's consumer_lag per partition; the internal partition -1 and
 * an unknown lag (-1) are skipped. */
void figures_lag(const endpoint_t *ep, figures_lag_cb cb, void *ud) {
    json_t *root, *topics, *t, *parts, *p;
    const char *tname, *pname;

    if (!ep->kafka_stats || !(root = json_loads(ep->kafka_stats, 0, NULL))) return;
    topics = json_object_get(root, "topics");
    json_object_foreach(topics, tname, t) {
        parts = json_object_get(t, "partitions");
        json_object_foreach(parts, pname, p) {
            json_int_t id = json_integer_value(json_object_get(p, "partition"));
            json_t *lag = json_object_get(p, "consumer_lag");
            if (id < 0 || !json_is_integer(lag) || json_integer_value(lag) < 0) continue;
            cb(ud, tname, (int32_t)id, (int64_t)json_integer_value(lag));
        }
    }
    json_decref(root);
}
