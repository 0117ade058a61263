/* table.h - text tables with aligned columns, filled a cell at a time,
 * row after row, and printed once.  Used by the cluster commands. */
#ifndef LUKA_TABLE_H
#define LUKA_TABLE_H

#define TABLE_MAX_COLS 16

typedef struct table {
    char **cells;
    int ncols, n, cap; /* ncols: set by the caller, at most TABLE_MAX_COLS */
} table_t;

/* Add the next cell, formatted. */
void table_cell(table_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Print the rows on stdout, columns aligned, and empty the table. */
void table_print(table_t *t);

#endif
