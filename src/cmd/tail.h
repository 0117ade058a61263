/* tail.h - `luka tail`: print a topic's messages for a person to read, with
 * where each was, when, its key and headers.  Called by main.c. */
#ifndef LUKA_TAIL_H
#define LUKA_TAIL_H

/* argv[0] is "tail".  Returns the process exit code: 0, 1 on a runtime
 * failure, 2 on a bad option. */
int tail_main(int argc, char **argv);

#endif
