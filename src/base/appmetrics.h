/* appmetrics.h - the metrics an app declares (luka.metrics): counters,
 * gauges and histograms by name, each with its label names and a series
 * of values per set of label values.
 *
 * The registry is plain C, outside any Lua state: the runtime keeps one
 * for the process, so values survive a hot reload (the new state declares
 * the same names and gets the same metrics).  api/lmetrics.c is the Lua
 * side; ops renders a registry for /metrics and can list it for a status
 * page (appmetrics_count, appmetrics_at).  Only the loop thread uses it. */
#ifndef LUKA_APPMETRICS_H
#define LUKA_APPMETRICS_H

#include <stddef.h>
#include <stdint.h>

enum { APPMETRIC_COUNTER, APPMETRIC_GAUGE, APPMETRIC_HISTOGRAM };

/* Label value sets a metric may have; the next one is refused, so that a
 * label taking an id per message cannot eat the memory. */
#define APPMETRICS_MAX_SERIES 10000
#define APPMETRICS_MAX_LABELS 16
#define APPMETRICS_MAX_BUCKETS 64
#define APPMETRICS_MAX_VALUE 1024 /* bytes of one label value */
#define APPMETRICS_MAX_METRICS 1000

typedef struct appseries {
    char **values;  /* one per label, in the metric's order */
    double value;   /* a counter's or a gauge's */
    uint64_t *counts; /* a histogram's: per bucket, not cumulative; the last is +Inf */
    uint64_t count;
    double sum;
    uint32_t hash;
    struct appseries *chain; /* the metric's hash chain */
} appseries_t;

typedef struct appmetric {
    int type;
    char *name; /* as declared, less a counter's "_total" */
    char *help;
    char **labels;
    int nlabels;
    double *buckets; /* a histogram's upper bounds, strictly increasing */
    int nbuckets;
    appseries_t **series; /* in the order they were first used */
    int nseries, capseries;
    appseries_t **hash;
    size_t nhash;
} appmetric_t;

typedef struct appmetrics appmetrics_t;

appmetrics_t *appmetrics_new(void);
void appmetrics_free(appmetrics_t *r);

/* "counter", "gauge" or "histogram". */
const char *appmetrics_type_name(int type);

/* Declare a metric, or find the one declared before under that name with
 * the same type, labels (in any order) and buckets; its help becomes help.
 * A histogram without buckets (nbuckets 0) gets Prometheus' defaults.
 * Returns NULL with errbuf set (naming both shapes when the name was
 * declared differently). */
appmetric_t *appmetrics_declare(appmetrics_t *r, int type, const char *name, const char *help,
                                const char *const *labels, int nlabels, const double *buckets,
                                int nbuckets, char *errbuf, size_t errlen);

/* The series for values (one per label of m, in m's order, lens their
 * lengths), made on first use.  NULL with errbuf set when a value is not
 * valid UTF-8 or too long, or m has APPMETRICS_MAX_SERIES already. */
appseries_t *appmetric_series(appmetric_t *m, const char *const *values, const size_t *lens,
                              char *errbuf, size_t errlen);

/* A histogram's observation; a counter or gauge takes value directly. */
void appmetric_observe(const appmetric_t *m, appseries_t *s, double v);

/* What a registry holds, in declaration order. */
int appmetrics_count(const appmetrics_t *r);
const appmetric_t *appmetrics_at(const appmetrics_t *r, int i);

#endif
