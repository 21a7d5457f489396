/* lttle pull: fetch an image from an OCI registry into the store. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "oci/oci.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: lttle pull REF [--platform OS/ARCH[/VARIANT]] [--insecure] [--quiet]\n\n"
		"Pulls an image from an OCI distribution registry into the store\n"
		"($LTTLE_HOME) and prints its manifest digest on stdout.\n\n"
		"  REF                 alpine, ghcr.io/org/app:tag, host:port/name@sha256:...\n"
		"  -p, --platform P    image to pick from a multi-platform index\n"
		"                      (default: this host, e.g. linux/amd64)\n"
		"      --insecure      allow plain HTTP (and unverified TLS) to a\n"
		"                      non-loopback registry; loopback ones always may\n"
		"  -q, --quiet         no progress output\n"
		"  -h, --help          this help\n\n"
		"Credentials come from $DOCKER_CONFIG/config.json or ~/.docker/config.json.\n");
}

int cmd_pull(int argc, char **argv)
{
	static const struct option opts[] = {
		{"platform", required_argument, NULL, 'p'},
		{"insecure", no_argument, NULL, 'I'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct oci_pull_opts o = {0};
	int c;
	while ((c = getopt_long(argc, argv, "p:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'p': o.platform = optarg; break;
		case 'I': o.insecure = true; break;
		case 'q': o.quiet = true; break;
		case 'h': usage(stdout); return 0;
		default: return cli_usage("pull", "invalid option");
		}
	}
	if (optind + 1 != argc)
		return cli_usage("pull", "expected exactly one image reference");
	struct oci_store *s;
	char digest[OCI_DIGEST_MAX];
	if (oci_store_open(lt_home(), &s) < 0)
		return cli_fail("pull");
	int rc = oci_pull(s, argv[optind], &o, digest);
	oci_store_close(s);
	if (rc < 0)
		return cli_fail("pull");
	printf("%s\n", digest);
	return 0;
}
