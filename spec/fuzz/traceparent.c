/* traceparent.c - libFuzzer harness for src/base/trace.c: any bytes go
 * through trace_parse.  Property: no crash; a value it refuses has a
 * reason; one it reads has lower-case hex ids that are not all zeros, and
 * written back with trace_format and read again gives the same trace, and
 * its child keeps the trace id and flags with another well-formed span.
 * Built and run by `make fuzz`. */
#include <stdint.h>
#include <string.h>

#define HARNESS "traceparent"
#include "harness.h"
#include "base/trace.h"

static void check_hex(const char *s, size_t n, const char *what) {
    int zero = 1;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) fail("not hex", what);
        zero &= s[i] == '0';
    }
    if (s[n] != '\0') fail("not terminated", what);
    if (zero && strcmp(what, "flags") != 0) fail("all zeros", what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    trace_t t, again, child;
    char why[128] = "", out[TRACEPARENT_LEN + 1];

    if (trace_parse(&t, (const char *)data, size, why, sizeof(why)) != 0) {
        if (!why[0]) fail("refused without a reason", NULL);
        return 0;
    }
    check_hex(t.trace_id, TRACE_ID_LEN, "trace id");
    check_hex(t.span_id, TRACE_SPAN_LEN, "span id");
    check_hex(t.flags, 2, "flags");
    trace_format(&t, out);
    if (strlen(out) != TRACEPARENT_LEN || memcmp(out, "00-", 3) != 0) fail("bad format", out);
    if (trace_parse(&again, out, TRACEPARENT_LEN, why, sizeof(why)) != 0) fail("own output refused", out);
    if (memcmp(&t, &again, sizeof(t)) != 0) fail("round trip changed it", out);
    child = t;
    trace_child(&child);
    if (strcmp(child.trace_id, t.trace_id) || strcmp(child.flags, t.flags)) fail("child lost its trace", out);
    check_hex(child.span_id, TRACE_SPAN_LEN, "child span id");
    return 0;
}
