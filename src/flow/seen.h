/* seen.h - the dedup lookup of a message in flight. */
#ifndef LUKA_SEEN_H
#define LUKA_SEEN_H

#include "flow/inflight.h"

/* Compute inf's dedup key and look it up.  Returns 1 when it was handled
 * before; 0 otherwise, with inf->dedup_key set when it has one.  A store
 * or key function that fails is logged: the message is handled anyway. */
int seen_before(inflight_t *inf);

#endif
