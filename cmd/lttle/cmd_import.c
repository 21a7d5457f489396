/* lttle import: load an OCI layout (dir or tar) or a docker-save tarball. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "oci/oci.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: lttle import FILE [--tag REF] [--platform OS/ARCH[/VARIANT]] [--quiet]\n\n"
		"Imports an OCI image layout (a directory or a tar, e.g. from\n"
		"`skopeo copy ... oci-archive:FILE`) or a `docker save` tarball into the\n"
		"store, verifying every digest, and prints the manifest digest.\n\n"
		"  -t, --tag REF       name to store the image under (default: the name\n"
		"                      recorded in the archive, else localhost/<file name>)\n"
		"  -p, --platform P    image to pick from a multi-platform layout\n"
		"  -q, --quiet         no output but the digest\n"
		"  -h, --help          this help\n");
}

int cmd_import(int argc, char **argv)
{
	static const struct option opts[] = {
		{"tag", required_argument, NULL, 't'},
		{"platform", required_argument, NULL, 'p'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct oci_import_opts o = {0};
	int c;
	while ((c = getopt_long(argc, argv, "t:p:qh", opts, NULL)) != -1) {
		switch (c) {
		case 't': o.tag = optarg; break;
		case 'p': o.platform = optarg; break;
		case 'q': o.quiet = true; break;
		case 'h': usage(stdout); return 0;
		default: return cli_usage("import", "invalid option");
		}
	}
	if (optind + 1 != argc)
		return cli_usage("import", "expected exactly one FILE");
	struct oci_store *s;
	char digest[OCI_DIGEST_MAX];
	if (oci_store_open(lt_home(), &s) < 0)
		return cli_fail("import");
	int rc = oci_import(s, argv[optind], &o, digest);
	oci_store_close(s);
	if (rc < 0)
		return cli_fail("import");
	printf("%s\n", digest);
	return 0;
}
