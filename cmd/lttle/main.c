/* lttle: turn OCI images into KVM microVMs. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Commands are linked in by their own files; a weak reference lets the
 * binary build while an area is still missing, and says so at run time. */
#pragma weak cmd_pull
#pragma weak cmd_import
#pragma weak cmd_export
#pragma weak cmd_build
#pragma weak cmd_images
#pragma weak cmd_rmi
#pragma weak cmd_inspect
#pragma weak cmd_run
#pragma weak cmd_snapshot
#pragma weak cmd_restore
#pragma weak cmd_deploy
#pragma weak cmd_apps
#pragma weak cmd_ps
#pragma weak cmd_info
#pragma weak cmd_logs
#pragma weak cmd_pause
#pragma weak cmd_resume
#pragma weak cmd_stop
#pragma weak cmd_rm
#pragma weak cmd_scale
#pragma weak cmd_vmm_shell

struct command {
	const char *name;
	cli_cmd_fn fn;
	const char *summary;
};

static const struct command commands[] = {
	{"pull", cmd_pull, "pull an image from an OCI registry"},
	{"import", cmd_import, "import an OCI layout or docker-save tarball"},
	{"export", cmd_export, "write an image as an OCI layout tar"},
	{"build", cmd_build, "flatten an image into an ext4 or squashfs rootfs"},
	{"images", cmd_images, "list images in the store"},
	{"rmi", cmd_rmi, "remove images and garbage-collect their blobs"},
	{"inspect", cmd_inspect, "show an image's manifest and config"},
	{"run", cmd_run, "boot a microVM on the lttle VMM"},
	{"snapshot", cmd_snapshot, "snapshot a running VM"},
	{"restore", cmd_restore, "restore a VM from a snapshot"},
	{"deploy", cmd_deploy, "deploy an image as a scale-to-zero service"},
	{"apps", cmd_apps, "list deployed apps"},
	{"ps", cmd_ps, "list instances"},
	{"info", cmd_info, "show an app or instance"},
	{"logs", cmd_logs, "show an app's or instance's console"},
	{"pause", cmd_pause, "pause an app or instance"},
	{"resume", cmd_resume, "resume an app or instance"},
	{"stop", cmd_stop, "stop an app or instance"},
	{"rm", cmd_rm, "remove an app"},
	{"scale", cmd_scale, "set an app's min/max instances"},
	{"vmm-shell", cmd_vmm_shell, "(internal) a pre-made VM waiting for a restore"},
};

static void usage(FILE *out)
{
	fprintf(out, "usage: lttle COMMAND [OPTIONS]\n\n"
		     "Turns OCI images into KVM microVMs that start in milliseconds.\n\n"
		     "Commands:\n");
	for (size_t i = 0; i < LT_ARRAY_LEN(commands); i++)
		if (commands[i].fn)
			fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\nRun 'lttle COMMAND --help' for a command's options.\n"
		     "Environment: LTTLE_HOME (store root, default ~/.local/share/lttle),\n"
		     "             LTTLE_LOG (error|warn|info|debug).\n");
}

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
	optind = 0; /* glibc: 0 also reinitialises its internal state */
	opterr = 1;
}

static char *self_dir(void)
{
	char buf[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	char *slash = strrchr(buf, '/');
	if (!slash)
		return NULL;
	*slash = '\0';
	return lt_strdup(buf);
}

char *cli_find_libexec(const char *name)
{
	const char *env = getenv("LTTLE_LIBEXEC");
	char *dir = self_dir();
	const char *dirs[] = {env, dir, "/usr/local/lib/lttle", "/usr/lib/lttle"};
	char *found = NULL;
	for (size_t i = 0; i < LT_ARRAY_LEN(dirs) && !found; i++) {
		if (!dirs[i])
			continue;
		char *p = lt_path_join(dirs[i], name);
		if (p && access(p, R_OK) == 0)
			found = p;
		else
			free(p);
	}
	free(dir);
	if (!found)
		lt_fail("cannot find %s (looked beside the lttle binary, in $LTTLE_LIBEXEC "
			"and /usr/lib/lttle)", name);
	return found;
}

int main(int argc, char **argv)
{
	/* A closed pipe on stdout must not kill us mid-write of a store. */
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *name = argv[1];
	if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(name, "--version")) {
		printf("lttle 0.1.0\n");
		return 0;
	}
	for (size_t i = 0; i < LT_ARRAY_LEN(commands); i++) {
		if (strcmp(commands[i].name, name))
			continue;
		if (!commands[i].fn) {
			fprintf(stderr, "lttle %s: not available in this build\n", name);
			return 1;
		}
		cli_reset_getopt();
		return commands[i].fn(argc - 1, argv + 1);
	}
	fprintf(stderr, "lttle: unknown command '%s' (see 'lttle --help')\n", name);
	return 2;
}
