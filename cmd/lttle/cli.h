/* The lttle CLI: one binary, one file per command (cmd_<name>.c). */
#ifndef LTTLE_CLI_H
#define LTTLE_CLI_H

#include <getopt.h>
#include <stdbool.h>

#include "util/util.h"

typedef int (*cli_cmd_fn)(int argc, char **argv);

/* Each command: argv[0] is the command name; returns the process exit
 * code. On failure a command prints one line "lttle <cmd>: <error>" via
 * cli_error() and returns 1 (2 for usage errors). */
int cmd_pull(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_build(int argc, char **argv);
int cmd_images(int argc, char **argv);
int cmd_rmi(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_deploy(int argc, char **argv);
int cmd_apps(int argc, char **argv);
int cmd_ps(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_logs(int argc, char **argv);
int cmd_pause(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_scale(int argc, char **argv);
int cmd_vmm_shell(int argc, char **argv);

/* Prints "lttle <cmd>: <lt_errmsg()>" and returns 1. */
int cli_fail(const char *cmd);
/* Prints "lttle <cmd>: <message>" plus a --help hint, returns 2. */
int cli_usage(const char *cmd, const char *fmt, ...) LT_PRINTF(2, 3);
/* Resets getopt state so each command can parse its own argv. */
void cli_reset_getopt(void);
/* The path of a helper file installed beside the lttle binary
 * (e.g. "lttle-init"), falling back to $LTTLE_LIBEXEC and
 * /usr/lib/lttle. Caller frees; NULL if not found. */
char *cli_find_libexec(const char *name);

#endif
