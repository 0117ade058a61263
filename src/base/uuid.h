/* uuid.h - random (version 4) UUIDs for message ids. */
#ifndef LUKA_UUID_H
#define LUKA_UUID_H

#define UUID_LEN 36

/* Write a new UUID and its terminating NUL into out. */
void uuid_v4(char out[UUID_LEN + 1]);

#endif
