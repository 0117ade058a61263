/* rng.h - the process's random numbers, for message ids (uuid.c) and
 * retry jitter (policy.c).  Not for secrets. */
#ifndef LUKA_RNG_H
#define LUKA_RNG_H

#include <stdint.h>

/* 64 random bits.  The first call seeds the generator from the kernel, so
 * every process draws its own sequence. */
uint64_t rng_next(void);

/* A double in [0, 1). */
double rng_unit(void);

#endif
