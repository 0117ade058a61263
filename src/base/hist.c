/* hist.c - fixed-capacity histograms (hist.h). */
#include "base/hist.h"

#include <string.h>

/* Prometheus' default buckets, widened at both ends: handlers take from
 * tens of microseconds (a pure function) to their time limit (30 s by
 * default, longer when set). */
static const double ladder[] = {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                0.5,    1,      2.5,   5,     10,   30,    60,   120,  300,
                                600,    1800,   3600};
#define NLADDER ((int)(sizeof(ladder) / sizeof(ladder[0])))

void hist_init(hist_t *h, const double *bounds, int n) {
    memset(h, 0, sizeof(*h));
    if (n > HIST_MAX) n = HIST_MAX;
    if (n > 0) memcpy(h->bounds, bounds, (size_t)n * sizeof(*bounds));
    h->n = n;
}

int hist_bucket(const double *bounds, int n, double v) {
    int lo = 0, hi = n;
    /* The first bound >= v: Prometheus buckets are "le", less or equal. */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (v <= bounds[mid]) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

void hist_observe(hist_t *h, double v) {
    h->counts[hist_bucket(h->bounds, h->n, v)]++;
    h->count++;
    h->sum += v;
}

int hist_bounds_upto(double *out, double limit) {
    int n = 0;
    for (int i = 0; i < NLADDER && ladder[i] < limit && n < HIST_MAX - 1; i++) out[n++] = ladder[i];
    if (limit > 0) out[n++] = limit;
    return n;
}
