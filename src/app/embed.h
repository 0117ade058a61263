/* embed.h - the Lua modules compiled into the binary by scripts/embed. */
#ifndef LUKA_EMBED_H
#define LUKA_EMBED_H

#include <stddef.h>

typedef struct embed_module {
    const char *name;      /* module name for require, "luka.dsl" */
    const char *chunkname; /* "@lua/luka/dsl.lua", for tracebacks */
    const char *data;
    size_t len;
} embed_module_t;

/* Terminated by an entry whose name is NULL. */
extern const embed_module_t embed_modules[];

#endif
