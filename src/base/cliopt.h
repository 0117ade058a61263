/* cliopt.h - the option tables of luka's smaller commands (tail, publish):
 * each option declared once, with its help, which drives parsing and
 * --help alike; and the small parsers they share. */
#ifndef LUKA_CLIOPT_H
#define LUKA_CLIOPT_H

#include <stdio.h>

typedef struct cliopt {
    const char *name, *arg, *help; /* help may span lines with \n */
} cliopt_t;

/* Print the options, help lined up, then --help. */
void cliopt_print(FILE *out, const cliopt_t *opts, int n);

/* The index of the option called name, or -1. */
int cliopt_find(const cliopt_t *opts, int n, const char *name);

/* A whole-string decimal integer in [min, max]: 0, or -1 for anything else. */
int cliopt_long(const char *s, long min, long max, long *out);

/* Report a command-line mistake of command cmd; returns exit code 2. */
int cliopt_bad_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
