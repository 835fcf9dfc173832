/* nyx's commands other than running a script: help, version, db. */
#ifndef NYX_CLI_H
#define NYX_CLI_H

/* Exit statuses, as the README documents them. */
enum { NYX_EXIT_OK = 0, NYX_EXIT_FAILURE = 1, NYX_EXIT_USAGE = 2 };

int nyx_cli_is_command(const char *word);

/* Runs argv[0] (a command word) with its arguments; returns the exit
 * status. */
int nyx_cli_run(int argc, char **argv);

void nyx_cli_usage(void);   /* the full help, to stdout */
void nyx_cli_version(void); /* one line, to stdout */

/* "nyx: <what>\n" then a hint to try --help, to stderr; returns 2. */
int nyx_cli_usage_error(const char *what);

#endif
