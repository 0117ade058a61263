/* figures.c - an endpoint's figures, gathered (figures.h). */
#include "ops/figures.h"

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
