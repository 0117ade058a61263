/* table.c - text tables with aligned columns, as `luka topics` and
 * `luka lag` print them. */
#include "base/table.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void table_cell(table_t *t, const char *fmt, ...) {
    va_list ap;
    char buf[512];
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->cells = realloc(t->cells, t->cap * sizeof(*t->cells));
    }
    t->cells[t->n++] = strdup(buf);
}

void table_print(table_t *t) {
    int width[TABLE_MAX_COLS] = {0};
    for (int i = 0; i < t->n; i++) {
        int w = (int)strlen(t->cells[i]);
        if (w > width[i % t->ncols]) width[i % t->ncols] = w;
    }
    for (int i = 0; i < t->n; i++) {
        int last = i % t->ncols == t->ncols - 1;
        printf("%-*s%s", last ? 0 : width[i % t->ncols], t->cells[i], last ? "\n" : "  ");
    }
    for (int i = 0; i < t->n; i++) free(t->cells[i]);
    free(t->cells);
    t->cells = NULL;
    t->n = t->cap = 0;
}
