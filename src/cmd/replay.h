/* replay.h - `luka replay` (replay.c) and `luka offsets` (offsets.c): put
 * dead letters back on their topics, and move a group's committed offsets,
 * for operating on the stream after the fact.  Used by main.c. */
#ifndef LUKA_REPLAY_H
#define LUKA_REPLAY_H

/* `luka replay APP --from DLT [options]`; argv[0] is "replay".  Exit code
 * 0, 1 when something could not be replayed or committed, 2 on bad usage. */
int replay_main(int argc, char **argv);

/* `luka offsets APP --group G --reset WHERE [options]`; argv[0] is
 * "offsets".  Same exit codes; 1 also when the group has members. */
int offsets_main(int argc, char **argv);

#endif
