/* appmetrics.c - the registry of the metrics an app declares: names and
 * shapes checked once at declaration, then a series per set of label
 * values, found by hash on every update. */
#include "base/appmetrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/hist.h"

struct appmetrics {
    appmetric_t **metrics; /* in declaration order */
    int n, cap;
};

/* Prometheus' client libraries' defaults. */
static const double default_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5,   1,    2.5,   5,    10};

appmetrics_t *appmetrics_new(void) { return calloc(1, sizeof(appmetrics_t)); }

static void free_series(appseries_t *s, int nlabels) {
    for (int i = 0; i < nlabels; i++) free(s->values[i]);
    free(s->values);
    free(s->counts);
    free(s);
}

static void free_metric(appmetric_t *m) {
    for (int i = 0; i < m->nseries; i++) free_series(m->series[i], m->nlabels);
    for (int i = 0; i < m->nlabels; i++) free(m->labels[i]);
    free(m->series);
    free(m->hash);
    free(m->labels);
    free(m->buckets);
    free(m->name);
    free(m->help);
    free(m);
}

void appmetrics_free(appmetrics_t *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) free_metric(r->metrics[i]);
    free(r->metrics);
    free(r);
}

const char *appmetrics_type_name(int type) {
    return type == APPMETRIC_COUNTER ? "counter" : type == APPMETRIC_GAUGE ? "gauge" : "histogram";
}

int appmetrics_count(const appmetrics_t *r) { return r ? r->n : 0; }

const appmetric_t *appmetrics_at(const appmetrics_t *r, int i) { return r->metrics[i]; }

static void fail(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(char *errbuf, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

static int name_char(char c, int first, int colon) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
           (!first && c >= '0' && c <= '9');
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* for metrics, the same without ':' for labels. */
static int valid_name(const char *s, int colon) {
    if (!*s) return 0;
    for (const char *p = s; *p; p++)
        if (!name_char(*p, p == s, colon)) return 0;
    return 1;
}

/* A counter is exported as NAME_total whether or not it was declared with
 * the suffix, as Prometheus' client libraries do. */
static char *family_name(int type, const char *name) {
    size_t len = strlen(name);
    if (type == APPMETRIC_COUNTER && len > 6 && strcmp(name + len - 6, "_total") == 0) len -= 6;
    return strndup(name, len);
}

/* The sample names a metric's family exports, with the family's own. */
static int exported(int type, const char *family, char out[4][300]) {
    static const char *const counter[] = {"", "_total"}, *const gauge[] = {""},
                             *const histogram[] = {"", "_bucket", "_sum", "_count"};
    const char *const *sfx = type == APPMETRIC_COUNTER ? counter
                             : type == APPMETRIC_GAUGE ? gauge
                                                       : histogram;
    int n = type == APPMETRIC_COUNTER ? 2 : type == APPMETRIC_GAUGE ? 1 : 4;
    for (int i = 0; i < n; i++) snprintf(out[i], sizeof(out[i]), "%s%s", family, sfx[i]);
    return n;
}

/* "counter orders (labels: currency, country)", and a histogram's buckets. */
static void describe(char *out, size_t len, int type, const char *name, const char *const *labels,
                     int nlabels, const double *buckets, int nbuckets) {
    size_t at = (size_t)snprintf(out, len, "%s %s (labels:", appmetrics_type_name(type), name);
    for (int i = 0; i < nlabels && at < len; i++)
        at += (size_t)snprintf(out + at, len - at, "%s %s", i ? "," : "", labels[i]);
    if (!nlabels && at < len) at += (size_t)snprintf(out + at, len - at, " none");
    if (type == APPMETRIC_HISTOGRAM && at < len) {
        at += (size_t)snprintf(out + at, len - at, "; buckets:");
        for (int i = 0; i < nbuckets && at < len; i++)
            at += (size_t)snprintf(out + at, len - at, "%s %g", i ? "," : "", buckets[i]);
    }
    if (at < len) snprintf(out + at, len - at, ")");
}

static int same_shape(const appmetric_t *m, int type, const char *const *labels, int nlabels,
                      const double *buckets, int nbuckets) {
    if (m->type != type || m->nlabels != nlabels) return 0;
    for (int i = 0; i < nlabels; i++) {
        int found = 0;
        for (int k = 0; k < nlabels && !found; k++) found = strcmp(m->labels[k], labels[i]) == 0;
        if (!found) return 0;
    }
    if (type != APPMETRIC_HISTOGRAM) return 1;
    if (m->nbuckets != nbuckets) return 0;
    for (int i = 0; i < nbuckets; i++)
        if (m->buckets[i] != buckets[i]) return 0;
    return 1;
}

static int check_labels(const char *const *labels, int nlabels, char *errbuf, size_t errlen) {
    if (nlabels > APPMETRICS_MAX_LABELS) {
        fail(errbuf, errlen, "%d labels; a metric may have at most %d", nlabels,
             APPMETRICS_MAX_LABELS);
        return -1;
    }
    for (int i = 0; i < nlabels; i++) {
        if (!valid_name(labels[i], 0)) {
            fail(errbuf, errlen,
                 "bad label name '%s': letters, digits and _, not starting with a digit",
                 labels[i]);
            return -1;
        }
        if (strcmp(labels[i], "le") == 0 || strncmp(labels[i], "__", 2) == 0) {
            fail(errbuf, errlen,
                 "label name '%s' is reserved ('le' and names starting with '__' are "
                 "Prometheus' own)",
                 labels[i]);
            return -1;
        }
        for (int k = 0; k < i; k++)
            if (strcmp(labels[k], labels[i]) == 0) {
                fail(errbuf, errlen, "label '%s' is named twice", labels[i]);
                return -1;
            }
    }
    return 0;
}

static int check_buckets(const double *b, int n, char *errbuf, size_t errlen) {
    if (n > APPMETRICS_MAX_BUCKETS) {
        fail(errbuf, errlen, "%d buckets; a histogram may have at most %d", n,
             APPMETRICS_MAX_BUCKETS);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (!(b[i] - b[i] == 0)) { /* NaN or an infinity */
            fail(errbuf, errlen, "bucket %d is %g; buckets are finite (+Inf is always added)",
                 i + 1, b[i]);
            return -1;
        }
        if (i && b[i] <= b[i - 1]) {
            fail(errbuf, errlen, "buckets must increase strictly: %g follows %g (bucket %d)",
                 b[i], b[i - 1], i + 1);
            return -1;
        }
    }
    return 0;
}

static appseries_t *new_series(appmetric_t *m, const char *const *values, const size_t *lens,
                               uint32_t hash);

appmetric_t *appmetrics_declare(appmetrics_t *r, int type, const char *name, const char *help,
                                const char *const *labels, int nlabels, const double *buckets,
                                int nbuckets, char *errbuf, size_t errlen) {
    char mine[4][300], theirs[4][300], was[1024], now[1024], *family;
    int nmine;
    appmetric_t *m;

    if (!valid_name(name, 1) || strlen(name) > 200) {
        fail(errbuf, errlen,
             "bad metric name '%s': letters, digits, _ and :, not starting with a digit, at most "
             "200 characters",
             name);
        return NULL;
    }
    if (check_labels(labels, nlabels, errbuf, errlen)) return NULL;
    if (type == APPMETRIC_HISTOGRAM && nbuckets == 0) {
        buckets = default_buckets;
        nbuckets = (int)(sizeof(default_buckets) / sizeof(default_buckets[0]));
    }
    if (type == APPMETRIC_HISTOGRAM && check_buckets(buckets, nbuckets, errbuf, errlen))
        return NULL;
    family = family_name(type, name);
    nmine = exported(type, family, mine);
    for (int i = 0; i < r->n; i++) {
        int ntheirs, clash = 0;
        m = r->metrics[i];
        ntheirs = exported(m->type, m->name, theirs);
        for (int a = 0; a < nmine; a++)
            for (int b = 0; b < ntheirs; b++) clash |= strcmp(mine[a], theirs[b]) == 0;
        if (!clash) continue;
        if (strcmp(m->name, family) == 0 &&
            same_shape(m, type, labels, nlabels, buckets, nbuckets)) {
            free(family);
            free(m->help);
            m->help = strdup(help);
            return m;
        }
        describe(was, sizeof(was), m->type, m->name, (const char *const *)m->labels, m->nlabels,
                 m->buckets, m->nbuckets);
        describe(now, sizeof(now), type, family, labels, nlabels, buckets, nbuckets);
        if (strcmp(m->name, family) == 0)
            fail(errbuf, errlen, "%s was declared before as %s; declared again as %s", name, was,
                 now);
        else
            fail(errbuf, errlen, "%s would export a sample name of %s, declared before; declared "
                 "as %s", name, was, now);
        free(family);
        return NULL;
    }
    if (r->n == APPMETRICS_MAX_METRICS) {
        fail(errbuf, errlen, "%s would be metric %d; an app may declare at most %d", name, r->n + 1,
             APPMETRICS_MAX_METRICS);
        free(family);
        return NULL;
    }
    m = calloc(1, sizeof(*m));
    m->type = type;
    m->name = family;
    m->help = strdup(help);
    m->nlabels = nlabels;
    m->labels = calloc((size_t)nlabels + 1, sizeof(*m->labels));
    for (int i = 0; i < nlabels; i++) m->labels[i] = strdup(labels[i]);
    if (type == APPMETRIC_HISTOGRAM) {
        m->nbuckets = nbuckets;
        m->buckets = malloc((size_t)nbuckets * sizeof(*m->buckets));
        memcpy(m->buckets, buckets, (size_t)nbuckets * sizeof(*buckets));
    }
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 8;
        r->metrics = realloc(r->metrics, (size_t)r->cap * sizeof(*r->metrics));
    }
    r->metrics[r->n++] = m;
    /* A metric without labels has one series, shown (at 0) from the start,
     * as Prometheus' conventions ask. */
    if (!nlabels) new_series(m, NULL, NULL, 0);
    return m;
}

/* Whether s[0..len) is UTF-8 without NUL: label values are text in the
 * exposition format. */
static int text_ok(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        unsigned c = *p++;
        int more;
        uint32_t cp;
        if (c == 0) return 0;
        if (c < 0x80) continue;
        if (c >= 0xc2 && c <= 0xdf) more = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef) more = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4) more = 3, cp = c & 0x07;
        else return 0;
        if (end - p < more) return 0;
        for (int i = 0; i < more; i++) {
            if ((p[i] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        p += more;
        /* Overlong forms, surrogates, beyond U+10FFFF. */
        if ((more == 2 && cp < 0x800) || (more == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
    }
    return 1;
}

/* FNV-1a over the values, each followed by 0xff, which UTF-8 never uses. */
static uint32_t hash_values(const char *const *values, const size_t *lens, int n) {
    uint32_t h = 2166136261u;
    for (int i = 0; i < n; i++) {
        for (size_t k = 0; k < lens[i]; k++) h = (h ^ (unsigned char)values[i][k]) * 16777619u;
        h = (h ^ 0xffu) * 16777619u;
    }
    return h;
}

static void rehash(appmetric_t *m) {
    size_t n = m->nhash ? m->nhash * 2 : 16;
    appseries_t **hash = calloc(n, sizeof(*hash));
    for (int i = 0; i < m->nseries; i++) {
        appseries_t *s = m->series[i];
        s->chain = hash[s->hash & (n - 1)];
        hash[s->hash & (n - 1)] = s;
    }
    free(m->hash);
    m->hash = hash;
    m->nhash = n;
}

static appseries_t *new_series(appmetric_t *m, const char *const *values, const size_t *lens,
                               uint32_t hash) {
    appseries_t *s = calloc(1, sizeof(*s));
    s->values = calloc((size_t)m->nlabels + 1, sizeof(*s->values));
    for (int i = 0; i < m->nlabels; i++) s->values[i] = strndup(values[i], lens[i]);
    if (m->type == APPMETRIC_HISTOGRAM)
        s->counts = calloc((size_t)m->nbuckets + 1, sizeof(*s->counts));
    s->hash = hash;
    if (m->nseries == m->capseries) {
        m->capseries = m->capseries ? m->capseries * 2 : 4;
        m->series = realloc(m->series, (size_t)m->capseries * sizeof(*m->series));
    }
    m->series[m->nseries++] = s;
    if ((size_t)m->nseries > m->nhash) rehash(m);
    else {
        s->chain = m->hash[hash & (m->nhash - 1)];
        m->hash[hash & (m->nhash - 1)] = s;
    }
    return s;
}

appseries_t *appmetric_series(appmetric_t *m, const char *const *values, const size_t *lens,
                              char *errbuf, size_t errlen) {
    uint32_t hash;
    if (!m->nlabels) return m->series[0];
    hash = hash_values(values, lens, m->nlabels);
    for (appseries_t *s = m->hash ? m->hash[hash & (m->nhash - 1)] : NULL; s; s = s->chain) {
        int same = s->hash == hash;
        for (int i = 0; same && i < m->nlabels; i++)
            same = strlen(s->values[i]) == lens[i] && memcmp(s->values[i], values[i], lens[i]) == 0;
        if (same) return s;
    }
    for (int i = 0; i < m->nlabels; i++) {
        if (lens[i] > APPMETRICS_MAX_VALUE) {
            fail(errbuf, errlen, "the value of label %s is %zu bytes long; at most %d",
                 m->labels[i], lens[i], APPMETRICS_MAX_VALUE);
            return NULL;
        }
        if (!text_ok(values[i], lens[i])) {
            fail(errbuf, errlen, "the value of label %s is not UTF-8 text (or holds a NUL)",
                 m->labels[i]);
            return NULL;
        }
    }
    if (m->nseries >= APPMETRICS_MAX_SERIES) {
        fail(errbuf, errlen,
             "%d label sets already, the most a metric may have; a label whose value is "
             "different for every message (an id) makes one each time",
             m->nseries);
        return NULL;
    }
    return new_series(m, values, lens, hash);
}

void appmetric_observe(const appmetric_t *m, appseries_t *s, double v) {
    s->counts[hist_bucket(m->buckets, m->nbuckets, v)]++;
    s->count++;
    s->sum += v;
}
