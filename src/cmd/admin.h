/* admin.h - `luka topics` and `luka lag`: an app's declared topics and its
 * groups' offsets, read from the cluster (and for `topics --apply`, written
 * to it) with librdkafka's admin API.  Used by main.c. */
#ifndef LUKA_ADMIN_H
#define LUKA_ADMIN_H

/* `luka topics APP [--check | --apply] [options]`; argv[0] is "topics".
 * Exit code: 0 when the report (and every change asked) succeeded, 1 when
 * the cluster could not be read, a change failed or --check found a
 * difference, 2 on bad usage. */
int admin_topics(int argc, char **argv);

/* `luka lag APP [options]`; argv[0] is "lag".  Same exit codes. */
int admin_lag(int argc, char **argv);

#endif
