/* redis_url.h - a Redis URL, redis://[[USER]:PASSWORD@]HOST[:PORT][/DB],
 * read into its parts for the dedup store and luka.redis.  The password is
 * handed to log_redact as it is read, so no log line can show it. */
#ifndef LUKA_REDIS_URL_H
#define LUKA_REDIS_URL_H

#include <stddef.h>

typedef struct redis_url {
    char host[256];
    int port; /* 6379 unless given */
    int db;   /* 0 unless given */
    char user[256], password[256]; /* "" when the URL has none */
} redis_url_t;

/* Read url into out.  Returns 0, or -1 with errbuf saying what is wrong,
 * the URL shown with its password masked. */
int redis_url_parse(const char *url, redis_url_t *out, char *errbuf, size_t errlen);

#endif
