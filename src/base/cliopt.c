/* cliopt.c - print option tables and report command-line mistakes, for the
 * commands that declare their options with cliopt_t. */
#include "base/cliopt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void cliopt_print(FILE *out, const cliopt_t *opts, int n) {
    for (int i = 0; i < n; i++) {
        char left[64];
        snprintf(left, sizeof(left), "%s %s", opts[i].name, opts[i].arg);
        fprintf(out, "  %-26s ", left);
        /* Continuation lines of the help line up under its first. */
        for (const char *c = opts[i].help; *c; c++) {
            fputc(*c, out);
            if (*c == '\n') fprintf(out, "%29s", "");
        }
        fputc('\n', out);
    }
    fputs("  --help                     print this help\n", out);
}

int cliopt_find(const cliopt_t *opts, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(opts[i].name, name) == 0) return i;
    return -1;
}

int cliopt_bad_usage(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "luka %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "; run 'luka %s --help'\n", cmd);
    return 2;
}

int cliopt_long(const char *s, long min, long max, long *out) {
    char *end;
    long v;

    if (!s || !*s) return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max) return -1;
    *out = v;
    return 0;
}
