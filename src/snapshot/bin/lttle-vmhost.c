/* lttle-vmhost: the lean, statically linked VM-host process behind
 * `lttle restore` and `lttle vmm-shell` (and what the lttle engine starts
 * for restores and shells). It links only the VMM, the snapshot module,
 * util, jansson, zstd and libseccomp, so a restore in a fresh process
 * does not pay for loading the CLI's dozens of shared libraries.
 *   lttle-vmhost restore SNAPSHOT [OPTIONS]     as `lttle restore`
 *   lttle-vmhost vmm-shell --control SOCK ...   as `lttle vmm-shell`
 *   lttle-vmhost boot --kernel K ...            a cold boot (the engine's) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "cli.h"

int cmd_vmm_boot(int argc, char **argv);

int cli_fail(const char *cmd)
{
	fprintf(stderr, "lttle %s: %s\n", cmd, lt_errmsg());
	return 1;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "lttle %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see 'lttle %s --help')\n", cmd);
	return 2;
}

void cli_reset_getopt(void)
{
	optind = 0;
	opterr = 1;
}

char *cli_find_libexec(const char *name)
{
	lt_fail("%s: not available inside lttle-vmhost", name);
	return NULL;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		fprintf(stderr, "usage: lttle-vmhost restore|vmm-shell|boot [OPTIONS]\n");
		return 2;
	}
	cli_reset_getopt();
	if (!strcmp(argv[1], "restore"))
		return cmd_restore(argc - 1, argv + 1);
	if (!strcmp(argv[1], "vmm-shell"))
		return cmd_vmm_shell(argc - 1, argv + 1);
	if (!strcmp(argv[1], "boot"))
		return cmd_vmm_boot(argc - 1, argv + 1);
	fprintf(stderr, "lttle-vmhost: unknown command '%s'\n", argv[1]);
	return 2;
}
