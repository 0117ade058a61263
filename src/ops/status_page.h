/* status_page.h - the status page: one self-contained HTML file
 * (src/ops/status.html, its CSS and JavaScript inline) compiled into luka
 * by scripts/embed-page.  http.c serves it at /; it reads /status.json. */
#ifndef LUKA_STATUS_PAGE_H
#define LUKA_STATUS_PAGE_H

#include <stddef.h>

extern const char *const status_page;
extern const size_t status_page_len;

#endif
