/* prom.c - writing the Prometheus text format (prom.h).  An app may have
 * tens of thousands of series, rendered four times a second on the loop
 * thread: text is appended with memcpy, and integers are written without
 * printf. */
#include "ops/prom.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for len more bytes and a NUL. */
static void reserve(prom_t *b, size_t len) {
    if (b->len + len < b->cap) return;
    b->cap = (b->len + len + 1) * 2;
    b->p = realloc(b->p, b->cap);
}

static void put(prom_t *b, const char *s, size_t len) {
    reserve(b, len);
    memcpy(b->p + b->len, s, len);
    b->len += len;
    b->p[b->len] = '\0';
}

static void puts_(prom_t *b, const char *s) { put(b, s, strlen(s)); }

void prom_printf(prom_t *b, const char *fmt, ...) {
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* s with backslash and newline escaped, and with quote for a label value. */
static void escaped(prom_t *b, const char *s, int quote) {
    const char *run = s;
    for (const char *p = s;; p++) {
        if (*p && *p != '\\' && *p != '\n' && !(quote && *p == '"')) continue;
        put(b, run, (size_t)(p - run));
        if (!*p) break;
        puts_(b, *p == '\n' ? "\\n" : *p == '"' ? "\\\"" : "\\\\");
        run = p + 1;
    }
}

void prom_family(prom_t *b, const char *name, const char *type, const char *help) {
    puts_(b, "# HELP ");
    puts_(b, name);
    puts_(b, " ");
    escaped(b, help, 0);
    puts_(b, "\n# TYPE ");
    puts_(b, name);
    puts_(b, " ");
    puts_(b, type);
    puts_(b, "\n");
}

/* name{labels[,le="..."]} */
static void head(prom_t *b, const char *name, const prom_label_t *labels, int n, const char *le) {
    puts_(b, name);
    if (!n && !le) return;
    puts_(b, "{");
    for (int i = 0; i < n; i++) {
        if (i) puts_(b, ",");
        puts_(b, labels[i].name);
        puts_(b, "=\"");
        escaped(b, labels[i].value, 1);
        puts_(b, "\"");
    }
    if (le) {
        puts_(b, n ? ",le=\"" : "le=\"");
        puts_(b, le);
        puts_(b, "\"");
    }
    puts_(b, "}");
}

/* " v\n" */
static void put_u64(prom_t *b, uint64_t v) {
    char text[24], *p = text + sizeof(text);
    *--p = '\n';
    do *--p = (char)('0' + v % 10);
    while (v /= 10);
    *--p = ' ';
    put(b, p, (size_t)(text + sizeof(text) - p));
}

/* The shortest text that reads back as v, as Prometheus writes numbers. */
static void number(char *out, size_t len, double v) {
    if (isnan(v)) snprintf(out, len, "NaN");
    else if (isinf(v)) snprintf(out, len, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15) snprintf(out, len, "%.0f", v);
    else
        for (int digits = 15; digits <= 17; digits++) {
            snprintf(out, len, "%.*g", digits, v);
            if (strtod(out, NULL) == v) break;
        }
}

static void put_double(prom_t *b, double v) {
    char text[40];
    if (v >= 0 && v == floor(v) && v < 1e15) {
        put_u64(b, (uint64_t)v);
        return;
    }
    number(text, sizeof(text), v);
    puts_(b, " ");
    puts_(b, text);
    puts_(b, "\n");
}

void prom_u64(prom_t *b, const char *name, const prom_label_t *labels, int n, uint64_t v) {
    head(b, name, labels, n, NULL);
    put_u64(b, v);
}

void prom_double(prom_t *b, const char *name, const prom_label_t *labels, int n, double v) {
    head(b, name, labels, n, NULL);
    put_double(b, v);
}

/* A histogram's sample names and le values, made once for its series. */
typedef struct hist_names {
    char bucket[300], sum[300], count[300];
    char (*le)[40];
} hist_names_t;

static void names_init(hist_names_t *h, const char *name, const double *bounds, int nbounds) {
    snprintf(h->bucket, sizeof(h->bucket), "%s_bucket", name);
    snprintf(h->sum, sizeof(h->sum), "%s_sum", name);
    snprintf(h->count, sizeof(h->count), "%s_count", name);
    h->le = malloc(((size_t)nbounds + 1) * sizeof(*h->le));
    for (int k = 0; k < nbounds; k++) number(h->le[k], sizeof(h->le[k]), bounds[k]);
    snprintf(h->le[nbounds], sizeof(h->le[nbounds]), "+Inf");
}

static void series(prom_t *b, const hist_names_t *h, const prom_label_t *labels, int n,
                   int nbounds, const uint64_t *counts, double sum) {
    uint64_t cumulative = 0;
    for (int k = 0; k <= nbounds; k++) {
        cumulative += counts[k];
        head(b, h->bucket, labels, n, h->le[k]);
        put_u64(b, cumulative);
    }
    prom_double(b, h->sum, labels, n, sum);
    prom_u64(b, h->count, labels, n, cumulative);
}

void prom_histogram(prom_t *b, const char *name, const prom_label_t *labels, int n,
                    const double *bounds, int nbounds, const uint64_t *counts, double sum) {
    hist_names_t h;
    names_init(&h, name, bounds, nbounds);
    series(b, &h, labels, n, nbounds, counts, sum);
    free(h.le);
}

void prom_appmetrics(prom_t *b, const appmetrics_t *r, const char *prefix) {
    prom_label_t labels[APPMETRICS_MAX_LABELS];
    char name[300];
    hist_names_t h;

    for (int i = 0; i < appmetrics_count(r); i++) {
        const appmetric_t *m = appmetrics_at(r, i);
        snprintf(name, sizeof(name), "%s%s%s", prefix, m->name,
                 m->type == APPMETRIC_COUNTER ? "_total" : "");
        prom_family(b, name, appmetrics_type_name(m->type), m->help);
        for (int k = 0; k < m->nlabels; k++) labels[k].name = m->labels[k];
        if (m->type == APPMETRIC_HISTOGRAM) names_init(&h, name, m->buckets, m->nbuckets);
        for (int s = 0; s < m->nseries; s++) {
            const appseries_t *se = m->series[s];
            for (int k = 0; k < m->nlabels; k++) labels[k].value = se->values[k];
            if (m->type == APPMETRIC_HISTOGRAM)
                series(b, &h, labels, m->nlabels, m->nbuckets, se->counts, se->sum);
            else prom_double(b, name, labels, m->nlabels, se->value);
        }
        if (m->type == APPMETRIC_HISTOGRAM) free(h.le);
    }
}

void prom_free(prom_t *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
