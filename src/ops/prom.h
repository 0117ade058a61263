/* prom.h - the Prometheus text exposition format (0.0.4), written into a
 * growing buffer: families, samples with escaped labels, histograms, and
 * the metrics an app declared (base/appmetrics.h).  metrics.c builds
 * /metrics with it. */
#ifndef LUKA_PROM_H
#define LUKA_PROM_H

#include <stddef.h>
#include <stdint.h>

#include "base/appmetrics.h"

typedef struct prom {
    char *p;
    size_t len, cap;
} prom_t;

typedef struct prom_label {
    const char *name, *value;
} prom_label_t;

void prom_printf(prom_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* # HELP and # TYPE lines; help is escaped. */
void prom_family(prom_t *b, const char *name, const char *type, const char *help);

/* One sample: name{labels} value. */
void prom_u64(prom_t *b, const char *name, const prom_label_t *labels, int n, uint64_t v);
void prom_double(prom_t *b, const char *name, const prom_label_t *labels, int n, double v);

/* A histogram's samples (name_bucket with le, name_sum, name_count) from
 * per-bucket counts, the last one +Inf. */
void prom_histogram(prom_t *b, const char *name, const prom_label_t *labels, int n,
                    const double *bounds, int nbounds, const uint64_t *counts, double sum);

/* Every metric of r, each under prefix + its name (a counter's + _total). */
void prom_appmetrics(prom_t *b, const appmetrics_t *r, const char *prefix);

void prom_free(prom_t *b);

#endif
