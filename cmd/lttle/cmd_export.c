/* lttle export: write an image as an OCI image layout tar. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "oci/oci.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: lttle export REF FILE\n\n"
		"Writes the image as an OCI image layout tar (readable by\n"
		"`skopeo copy oci-archive:FILE ...` and `lttle import`). FILE '-' is stdout.\n\n"
		"  -h, --help   this help\n");
}

int cmd_export(int argc, char **argv)
{
	static const struct option opts[] = {
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'h': usage(stdout); return 0;
		default: return cli_usage("export", "invalid option");
		}
	}
	if (optind + 2 != argc)
		return cli_usage("export", "expected REF and FILE");
	struct oci_store *s;
	if (oci_store_open(lt_home(), &s) < 0)
		return cli_fail("export");
	int rc = oci_export(s, argv[optind], argv[optind + 1]);
	oci_store_close(s);
	return rc < 0 ? cli_fail("export") : 0;
}
