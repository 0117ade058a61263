/* process.h - the process's own figures, read from /proc/self as
 * Prometheus' process collectors read them, for /metrics (the standard
 * process_* metrics) and the status page. */
#ifndef LUKA_PROCESS_H
#define LUKA_PROCESS_H

typedef struct process_figures {
    double cpu_seconds;     /* user and system CPU time */
    double start_time;      /* seconds since the epoch */
    double resident_bytes;  /* resident memory */
    double virtual_bytes;   /* virtual memory */
    double open_fds;        /* open file descriptors */
    double max_fds;         /* their limit (RLIMIT_NOFILE), or -1 for none */
} process_figures_t;

/* Fill f; returns 0, or -1 when /proc could not be read (f then holds
 * what could, the rest 0). */
int process_read(process_figures_t *f);

#endif
