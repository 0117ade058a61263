/* tail_print.h - how `luka tail` prints a message, in each of its styles.
 * Used by tail.c. */
#ifndef LUKA_TAIL_PRINT_H
#define LUKA_TAIL_PRINT_H

#include <stdio.h>

#include <librdkafka/rdkafka.h>

typedef struct tail_style {
    const char *format; /* -f: kcat's tokens, or NULL */
    int json;           /* -J: one JSON envelope per message */
    int pretty;         /* the output is a terminal: indent JSON values */
} tail_style_t;

/* Whether a -f format has only tokens tail knows; *tok gets the first one
 * it does not ('\0' for a lone % at the end). */
int tail_format_ok(const char *f, char *tok);

/* Print m in style t; returns 0, or -1 when out failed (errno set). */
int tail_print(FILE *out, const tail_style_t *t, const rd_kafka_message_t *m);

#endif
