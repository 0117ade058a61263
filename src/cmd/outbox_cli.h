/* outbox_cli.h - `luka outbox APP [--create]`: an app's outbox tables,
 * created or reported.  Used by main.c. */
#ifndef LUKA_OUTBOX_CLI_H
#define LUKA_OUTBOX_CLI_H

/* argv[0] is "outbox".  Exit code 0, 1 when a database or statement
 * failed or the app declares no such outbox, 2 on bad usage. */
int outbox_cli_main(int argc, char **argv);

#endif
