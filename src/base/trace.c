/* trace.c - W3C Trace Context's traceparent header: read, started and
 * continued with ids from the process's generator (rng.c).  Only the
 * version 00 layout exists so far: "00-<trace id>-<span id>-<flags>",
 * lower-case hex. */
#include "base/trace.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/rng.h"

static const char hex[] = "0123456789abcdef";

/* Whether s[0..n) is lower-case hex, as the recommendation requires. */
static int is_hex(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

static int all_zero(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != '0') return 0;
    return 1;
}

int trace_parse(trace_t *t, const char *v, size_t len, char *errbuf, size_t errlen) {
    const char *trace = v + 3, *span = trace + TRACE_ID_LEN + 1, *flags = span + TRACE_SPAN_LEN + 1;
    const char *why = NULL;

    if (len < TRACEPARENT_LEN || !is_hex(v, 2) || v[2] != '-')
        why = "not version-traceid-parentid-flags";
    else if (memcmp(v, "ff", 2) == 0)
        why = "version ff is invalid";
    /* A later version may add fields after a dash; 00 has none. */
    else if (memcmp(v, "00", 2) == 0 ? len != TRACEPARENT_LEN
                                     : len > TRACEPARENT_LEN && v[TRACEPARENT_LEN] != '-')
        why = "wrong length";
    else if (trace[TRACE_ID_LEN] != '-' || span[TRACE_SPAN_LEN] != '-')
        why = "not version-traceid-parentid-flags";
    else if (!is_hex(trace, TRACE_ID_LEN) || !is_hex(span, TRACE_SPAN_LEN) || !is_hex(flags, 2))
        why = "not lower-case hex";
    else if (all_zero(trace, TRACE_ID_LEN))
        why = "the trace id is all zeros";
    else if (all_zero(span, TRACE_SPAN_LEN))
        why = "the parent id is all zeros";
    if (why) {
        snprintf(errbuf, errlen, "%s", why);
        return -1;
    }
    memcpy(t->trace_id, trace, TRACE_ID_LEN);
    t->trace_id[TRACE_ID_LEN] = '\0';
    memcpy(t->span_id, span, TRACE_SPAN_LEN);
    t->span_id[TRACE_SPAN_LEN] = '\0';
    memcpy(t->flags, flags, 2);
    t->flags[2] = '\0';
    return 0;
}

/* Write the 64 bits of x as 16 hex digits, a byte (two digits) at a
 * time: one is made for every message luka handles. */
static void put_hex(char *out, uint64_t x) {
    for (int i = 14; i >= 0; i -= 2, x >>= 8) {
        out[i] = hex[(x >> 4) & 15];
        out[i + 1] = hex[x & 15];
    }
}

/* A random id of n 64-bit words, never all zeros (which means "none"). */
static void random_id(char *out, int words) {
    uint64_t w[2];
    do {
        for (int i = 0; i < words; i++) w[i] = rng_next();
    } while (w[0] == 0 && (words == 1 || w[1] == 0));
    for (int i = 0; i < words; i++) put_hex(out + 16 * i, w[i]);
    out[16 * words] = '\0';
}

void trace_new(trace_t *t) {
    random_id(t->trace_id, 2);
    random_id(t->span_id, 1);
    /* Sampled: a downstream service that samples by its parent records
     * its part of the trace, which is what starting one is for. */
    memcpy(t->flags, "01", 3);
}

void trace_child(trace_t *t) { random_id(t->span_id, 1); }

void trace_format(const trace_t *t, char out[TRACEPARENT_LEN + 1]) {
    snprintf(out, TRACEPARENT_LEN + 1, "00-%s-%s-%s", t->trace_id, t->span_id, t->flags);
}
