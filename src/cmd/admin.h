/* admin.h - `luka topics` and `luka lag`: an app's declared topics and its
 * groups' offsets, read from the cluster (and for `topics --apply`, written
 * to it) with librdkafka's admin API.  Used by main.c. */
#ifndef LUKA_ADMIN_H
#define LUKA_ADMIN_H

/* `luka topics APP [--brokers LIST] [--apply]`, argv after "topics".
 * Exit code: 0 when the report (and every change asked) succeeded, 1 when
 * the cluster could not be read or a change failed, 2 on bad usage. */
int admin_topics(int argc, char **argv);

/* `luka lag APP [--brokers LIST]`, argv after "lag".  Same exit codes. */
int admin_lag(int argc, char **argv);

#endif
