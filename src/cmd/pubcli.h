/* pubcli.h - `luka publish`: publish the lines of stdin through one of an
 * app's publishers, with its key rule and JSON encoding.  Called by main.c. */
#ifndef LUKA_PUBCLI_H
#define LUKA_PUBCLI_H

/* argv[0] is "publish".  Returns the process exit code: 0, 1 when the app
 * or any message failed, 2 on a bad option. */
int pubcli_main(int argc, char **argv);

#endif
