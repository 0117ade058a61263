/* process.c - the process's figures from /proc/self/stat, /proc/stat and
 * /proc/self/fd (process.h). */
#include "ops/process.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* The boot time, in seconds since the epoch: the clock starttime counts
 * from.  It does not change while we run. */
static double boot_time(void) {
    static double btime = -1;
    char line[256];
    FILE *f;
    if (btime >= 0) return btime;
    if (!(f = fopen("/proc/stat", "r"))) return 0;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "btime ", 6) == 0) btime = strtod(line + 6, NULL);
    fclose(f);
    return btime >= 0 ? btime : 0;
}

/* CPU times, start time and memory from /proc/self/stat.  The command
 * name (field 2) may hold spaces and parentheses: fields are counted from
 * the last ')'. */
static int read_stat(process_figures_t *f) {
    char buf[1024], *p, *save, *field[24];
    size_t len;
    int n = 2; /* fields seen: pid and the name */
    double ticks = (double)sysconf(_SC_CLK_TCK), page = (double)sysconf(_SC_PAGESIZE);
    FILE *in = fopen("/proc/self/stat", "r");

    if (!in) return -1;
    len = fread(buf, 1, sizeof(buf) - 1, in);
    fclose(in);
    buf[len] = '\0';
    if (!(p = strrchr(buf, ')')) || ticks <= 0) return -1;
    for (char *t = strtok_r(p + 1, " ", &save); t && n < 24; t = strtok_r(NULL, " ", &save))
        field[n++] = t; /* field[k] is field k + 1 of proc(5) */
    if (n < 24) return -1;
    /* 14 utime and 15 stime in ticks, 22 starttime in ticks since boot,
     * 23 vsize in bytes, 24 rss in pages. */
    f->cpu_seconds = (strtod(field[13], NULL) + strtod(field[14], NULL)) / ticks;
    f->start_time = boot_time() + strtod(field[21], NULL) / ticks;
    f->virtual_bytes = strtod(field[22], NULL);
    f->resident_bytes = strtod(field[23], NULL) * page;
    return 0;
}

static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;
    if (!d) return -1;
    while ((e = readdir(d)))
        /* Not ".", "..", nor the descriptor this listing holds open. */
        if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d)) n++;
    closedir(d);
    return n;
}

int process_read(process_figures_t *f) {
    struct rlimit rl;
    int rc = 0, fds;
    memset(f, 0, sizeof(*f));
    if (read_stat(f)) rc = -1;
    if ((fds = count_fds()) < 0) rc = -1;
    else f->open_fds = fds;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        f->max_fds = rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur;
    return rc;
}
