/* cliopt.c - parse a command's options with getopt_long from its cliopt_t
 * table, print that table as --help, and report mistakes in one style,
 * with the nearest option when a name is mistyped. */
#include "base/cliopt.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* getopt_long's value for option i of the table; letters stay below it. */
#define LONG_BASE 256
/* Left column of the help, where the option's name and value go. */
#define HELP_COLUMN 24
/* Room for the help beside it, in an 80-column terminal. */
#define HELP_WIDTH (79 - 2 - HELP_COLUMN - 1)

int cliopt_bad_usage(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "luka %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "; run 'luka %s --help'\n", cmd);
    return 2;
}

/* The help of one option, its words wrapped to fit 80 columns beside the
 * left column; a \n in the help is a space like any other. */
static void print_row(FILE *out, int letter, const char *name, const char *arg,
                      const char *help) {
    char left[96];
    int n = letter ? snprintf(left, sizeof(left), "-%c, ", letter)
                   : snprintf(left, sizeof(left), "    ");
    int col = 0;
    snprintf(left + n, sizeof(left) - (size_t)n, "--%s%s%s", name, arg ? " " : "", arg ? arg : "");
    if (strlen(left) > HELP_COLUMN) fprintf(out, "  %s\n  %-*s ", left, HELP_COLUMN, "");
    else fprintf(out, "  %-*s ", HELP_COLUMN, left);
    while (*help) {
        size_t w;
        help += strspn(help, " \n");
        if (!*help) break;
        w = strcspn(help, " \n");
        if (col && col + 1 + (int)w > HELP_WIDTH) {
            fprintf(out, "\n  %-*s ", HELP_COLUMN, "");
            col = 0;
        }
        fprintf(out, "%s%.*s", col ? " " : "", (int)w, help);
        col += (col ? 1 : 0) + (int)w;
        help += w;
    }
    fputc('\n', out);
}

void cliopt_usage(FILE *out, const clicmd_t *cmd) {
    fprintf(out, "usage: luka %s\n", cmd->synopsis);
    if (cmd->about) fprintf(out, "\n%s\n", cmd->about);
    fputs("\noptions (and luka's --log-level LEVEL and --log-format text|json):\n", out);
    for (int i = 0; i < cmd->nopts; i++)
        print_row(out, cmd->opts[i].letter, cmd->opts[i].name, cmd->opts[i].arg, cmd->opts[i].help);
    print_row(out, 'h', "help", NULL, "print this help");
    if (cmd->print_after) cmd->print_after(out);
}

/* The index of the option with this letter, or -1. */
static int by_letter(const clicmd_t *cmd, int letter) {
    for (int i = 0; i < cmd->nopts; i++)
        if (cmd->opts[i].letter == letter) return i;
    return -1;
}

/* The index of the option called name (name_len bytes), -2 for help, or -1. */
static int by_name(const clicmd_t *cmd, const char *name, size_t name_len) {
    for (int i = 0; i < cmd->nopts; i++)
        if (strlen(cmd->opts[i].name) == name_len && !strncmp(cmd->opts[i].name, name, name_len))
            return i;
    return name_len == 4 && !strncmp(name, "help", 4) ? -2 : -1;
}

/* Whether a pass-through command takes arg as one of its own options. */
static int own_option(const clicmd_t *cmd, const char *arg) {
    if (arg[0] != '-' || !arg[1]) return 0;
    if (arg[1] == '-')
        return arg[2] && by_name(cmd, arg + 2, strcspn(arg + 2, "=")) != -1;
    return arg[1] == 'h' || by_letter(cmd, arg[1]) >= 0;
}

/* "--name" or "-l" for the option getopt reported as val. */
static const char *shown(const clicmd_t *cmd, int val, char *buf, size_t len) {
    if (val >= LONG_BASE) snprintf(buf, len, "--%s", cmd->opts[val - LONG_BASE].name);
    else snprintf(buf, len, "-%c", val);
    return buf;
}

static int unknown_option(const clicmd_t *cmd, const char *arg) {
    cliopt_near_t near;
    char name[128];
    if (arg[0] != '-' || arg[1] != '-') /* an unknown letter */
        return cliopt_bad_usage(cmd->name, "unknown option '%s'", arg);
    snprintf(name, sizeof(name), "%.*s", (int)strcspn(arg + 2, "="), arg + 2);
    near = cliopt_near(name);
    for (int i = 0; i < cmd->nopts; i++) cliopt_near_add(&near, cmd->opts[i].name);
    cliopt_near_add(&near, "help");
    if (near.best)
        return cliopt_bad_usage(cmd->name, "unknown option '--%s' (did you mean '--%s'?)", name,
                                near.best);
    return cliopt_bad_usage(cmd->name, "unknown option '--%s'", name);
}

int cliopt_parse(const clicmd_t *cmd, int argc, char **argv, cliopt_cb cb, void *ud) {
    struct option *longs = calloc((size_t)cmd->nopts + 2, sizeof(*longs));
    char *shorts = malloc((size_t)cmd->nopts * 2 + 8), *s = shorts;
    char buf[128];
    int rc = -1, c;

    if (!longs || !shorts) {
        rc = cliopt_bad_usage(cmd->name, "out of memory");
        goto done;
    }
    /* "-": positional arguments come back in order, as 1, so options may
     * follow them; "+": stop at the first one.  ":": report a missing
     * value as ':' rather than print getopt's own message. */
    *s++ = cmd->pass_through ? '+' : '-';
    *s++ = ':';
    *s++ = 'h';
    for (int i = 0; i < cmd->nopts; i++) {
        const cliopt_t *o = &cmd->opts[i];
        longs[i] = (struct option){o->name, o->arg ? required_argument : no_argument, NULL,
                                   LONG_BASE + i};
        if (o->letter) {
            *s++ = (char)o->letter;
            if (o->arg) *s++ = ':';
        }
    }
    *s = '\0';
    longs[cmd->nopts] = (struct option){"help", no_argument, NULL, 'h'};

    opterr = 0;
    optind = 0; /* glibc: start afresh, whoever parsed before */
    while (rc < 0) {
        /* optind is 0 before the first call, which starts at argv[1]. */
        int at = optind ? optind : 1;
        if (cmd->pass_through && at < argc && !own_option(cmd, argv[at])) break;
        if ((c = getopt_long(argc, argv, shorts, longs, NULL)) == -1) break;
        if (c == 1) {
            if ((c = cb(ud, CLIOPT_ARG, optarg))) rc = c;
        } else if (c == 'h') {
            cliopt_usage(stdout, cmd);
            rc = 0;
        } else if (c == ':') {
            const char *name = shown(cmd, optopt, buf, sizeof(buf));
            const cliopt_t *o = &cmd->opts[optopt >= LONG_BASE ? optopt - LONG_BASE
                                                               : by_letter(cmd, optopt)];
            rc = cliopt_bad_usage(cmd->name, "%s needs a value: %s %s", name, name, o->arg);
        } else if (c == '?' && optopt >= LONG_BASE) {
            rc = cliopt_bad_usage(cmd->name, "%s takes no value, got '%s'",
                                  shown(cmd, optopt, buf, sizeof(buf)), argv[optind - 1]);
        } else if (c == '?' && optopt == 'h' && !strncmp(argv[optind - 1], "--", 2)) {
            rc = cliopt_bad_usage(cmd->name, "--help takes no value");
        } else if (c == '?' && optopt) {
            snprintf(buf, sizeof(buf), "-%c", optopt);
            rc = unknown_option(cmd, buf);
        } else if (c == '?') {
            rc = unknown_option(cmd, argv[optind - 1]);
        } else {
            int i = c >= LONG_BASE ? c - LONG_BASE : by_letter(cmd, c);
            if ((c = cb(ud, i, optarg))) rc = c;
        }
    }
    /* After -- (or, passing through, the first argument not ours): the
     * rest is positional. */
    for (int i = optind ? optind : 1; rc < 0 && i < argc; i++)
        if ((c = cb(ud, CLIOPT_ARG, argv[i]))) rc = c;
done:
    free(longs);
    free(shorts);
    optind = 0;
    return rc;
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

int cliopt_duration(const char *s, int64_t max_ms, int64_t *out) {
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 60 * 60 * 1000}};
    char *end;
    long long n;

    if (!s || *s < '0' || *s > '9') return -1;
    errno = 0;
    n = strtoll(s, &end, 10);
    if (errno) return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(end, units[i].unit) == 0) {
            if (n > max_ms / units[i].ms) return -1;
            *out = n * units[i].ms;
            return 0;
        }
    return -1;
}

/* Optimal string alignment distance: insertions, deletions, substitutions
 * and swaps of neighbours each count one.  Longer words are nobody's
 * typo of a command or option name and count as far. */
static int distance(const char *a, const char *b) {
    enum { MAX = 64 };
    size_t la = strlen(a), lb = strlen(b);
    int d[MAX + 1][MAX + 1];

    if (la > MAX || lb > MAX) return MAX;
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int cost = a[i - 1] != b[j - 1], v = d[i - 1][j - 1] + cost;
            if (d[i - 1][j] + 1 < v) v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[la][lb];
}

cliopt_near_t cliopt_near(const char *word) {
    return (cliopt_near_t){word, NULL, 0};
}

void cliopt_near_add(cliopt_near_t *n, const char *candidate) {
    int d = distance(n->word, candidate);
    if (d > 0 && d <= (int)strlen(candidate) / 3 + 1 && (!n->best || d < n->distance)) {
        n->best = candidate;
        n->distance = d;
    }
}

/* n digits at *p, as a number (*p moves past them); -1 when one is not a
 * digit.  Never reads past the string's end. */
static int digits(const char **p, int n) {
    int v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (**p < '0' || **p > '9') return -1;
        v = v * 10 + (**p - '0');
    }
    return v;
}

/* Is c next at *p?  Then *p moves past it. */
static int lit(const char **p, char c) {
    if (**p != c) return 0;
    (*p)++;
    return 1;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
}

int cliopt_time(const char *s, int64_t *ms) {
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0, off = 0;
    int64_t t;

    if (lit(&p, '@')) {
        long v;
        if (cliopt_long(p, 0, 0x7fffffffffffL, &v)) return -1;
        *ms = v;
        return 0;
    }
    if ((y = digits(&p, 4)) < 0 || !lit(&p, '-') || (mo = digits(&p, 2)) < 1 || mo > 12 ||
        !lit(&p, '-') || (d = digits(&p, 2)) < 1 || d > mdays[mo - 1])
        return -1;
    if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))) return -1;
    if (lit(&p, 'T') || lit(&p, ' ')) {
        if ((h = digits(&p, 2)) < 0 || h > 23 || !lit(&p, ':') || (mi = digits(&p, 2)) < 0 ||
            mi > 59 || !lit(&p, ':') || (sec = digits(&p, 2)) < 0 || sec > 59)
            return -1;
        if (lit(&p, '.')) {
            int n = 0;
            for (; *p >= '0' && *p <= '9'; p++, n++)
                if (n < 3) frac = frac * 10 + (*p - '0');
            if (n == 0) return -1;
            for (; n < 3; n++) frac *= 10;
        }
        if (*p == '+' || *p == '-') {
            int sign = *p++ == '+' ? 1 : -1, oh, om;
            if ((oh = digits(&p, 2)) < 0 || oh > 23 || !lit(&p, ':') || (om = digits(&p, 2)) < 0 ||
                om > 59)
                return -1;
            off = sign * (oh * 3600 + om * 60);
        } else {
            lit(&p, 'Z');
        }
    }
    if (*p) return -1;
    t = (days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off) * 1000 + frac;
    if (t < 0) return -1; /* before 1970: librdkafka reads -1 and -2 as latest, earliest */
    *ms = t;
    return 0;
}

