/* hist.h - a histogram of fixed capacity, as Prometheus counts one: a
 * count per bucket between increasing upper bounds (and one above them,
 * +Inf), a total and a sum.  The flow keeps handler durations and message
 * ages in them, the publishers their delivery latencies; ops renders them.
 * No allocation: a hist_t can be copied and reset with memset. */
#ifndef LUKA_HIST_H
#define LUKA_HIST_H

#include <stdint.h>

#define HIST_MAX 24

typedef struct hist {
    int n;                         /* upper bounds in use */
    double bounds[HIST_MAX];       /* strictly increasing */
    uint64_t counts[HIST_MAX + 1]; /* per bucket, not cumulative; [n] is +Inf */
    uint64_t count;
    double sum;
} hist_t;

/* An empty histogram with the first n (at most HIST_MAX) of bounds. */
void hist_init(hist_t *h, const double *bounds, int n);

void hist_observe(hist_t *h, double v);

/* The index of the bucket v falls in among n increasing bounds: the first
 * bound v does not exceed, or n (+Inf). */
int hist_bucket(const double *bounds, int n, double v);

/* Bounds for a duration limited to limit seconds: those of a standard
 * ladder (0.1 ms up to an hour) below limit, then limit itself, so the
 * last bucket before +Inf is "within the limit".  Returns how many were
 * written to out (at most HIST_MAX). */
int hist_bounds_upto(double *out, double limit);

#endif
