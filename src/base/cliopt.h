/* cliopt.h - luka's one command-line parser.  Each command declares its
 * options once in a table (long name, letter, value, help); that table
 * drives getopt_long, the usage errors and --help alike.  Also the small
 * value parsers commands share (integers, durations) and the did-you-mean
 * search used for commands, options and names.  Used by main.c and every
 * command's file. */
#ifndef LUKA_CLIOPT_H
#define LUKA_CLIOPT_H

#include <stdint.h>
#include <stdio.h>

typedef struct cliopt {
    const char *name; /* long name without "--" */
    int letter;       /* short option letter, or 0 */
    const char *arg;  /* the value's placeholder; NULL for a flag */
    const char *help; /* wrapped to 80 columns by --help; a \n is a space */
} cliopt_t;

typedef struct clicmd {
    const char *name;     /* "tail": messages start "luka tail: " */
    const char *synopsis; /* what follows "usage: luka "; may span lines */
    const char *about;    /* paragraphs after the usage line, or NULL */
    const cliopt_t *opts;
    int nopts;
    void (*print_after)(FILE *out); /* prints more after the options, or NULL */
    /* Stop at the first argument that is not one of opts (luka test:
     * the rest is busted's); it and everything after are positional. */
    int pass_through;
} clicmd_t;

/* What a cliopt_cb gets instead of an option's index in opts. */
#define CLIOPT_ARG (-1) /* a positional argument */

/* Called for each option in command-line order, with its index in opts
 * and its value (NULL for a flag), and for each positional argument with
 * CLIOPT_ARG.  Returns 0 to go on, or an exit code (cliopt_bad_usage's). */
typedef int (*cliopt_cb)(void *ud, int opt, const char *value);

/* Parse argv (argv[0] is the command's name) with getopt_long: --opt=value
 * and --opt value, -o value and -ovalue, clustered flags, -h/--help and --
 * to end the options.  Returns -1 to go on, 0 after printing help on
 * stdout, 2 after a usage error on stderr, or what cb returned. */
int cliopt_parse(const clicmd_t *cmd, int argc, char **argv, cliopt_cb cb, void *ud);

/* The command's help: usage, about, options with -h/--help, then print_after. */
void cliopt_usage(FILE *out, const clicmd_t *cmd);

/* Report a command-line mistake of command cmd in luka's one style,
 * "luka CMD: MESSAGE; run 'luka CMD --help'".  Returns exit code 2. */
int cliopt_bad_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A whole-string decimal integer in [min, max]: 0, or -1 for anything else. */
int cliopt_long(const char *s, long min, long max, long *out);

/* A duration in [0, max_ms] milliseconds: digits and a unit ms, s, m or h;
 * bare digits are milliseconds.  0, or -1 for anything else. */
int cliopt_duration(const char *s, int64_t max_ms, int64_t *out);

/* A time from 1970 on: @EPOCH_MS, or ISO-8601, a date (2026-11-29, UTC)
 * or a date and time (2026-11-29T19:00:00, T or a space) with optional
 * fractions of a second and a Z or +hh:mm / -hh:mm offset (none: UTC), in
 * epoch ms: 0, or -1 for anything else (a day the month lacks, 24:00). */
int cliopt_time(const char *s, int64_t *ms);

/* The help of a duration option's message: what cliopt_duration takes. */
#define CLIOPT_DURATION_HINT "a duration such as 500ms, 5s or 2m (a bare number is milliseconds)"

/* Did-you-mean: start with cliopt_near(word), offer each candidate name
 * with cliopt_near_add, then best is the nearest one close enough to be a
 * plausible typo (optimal string alignment distance at most a third of
 * its length plus one), or NULL. */
typedef struct cliopt_near {
    const char *word, *best;
    int distance;
} cliopt_near_t;

cliopt_near_t cliopt_near(const char *word);
void cliopt_near_add(cliopt_near_t *n, const char *candidate);

#endif
