/* lttle rmi: remove image refs and garbage-collect unreferenced blobs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "oci/oci.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: lttle rmi REF... [--json]\n\n"
		"Removes refs (a name, or a digest / unique digest prefix naming one\n"
		"ref) from the store, then deletes the blobs no remaining ref uses.\n\n"
		"  --json       print {\"removed\":[{ref,digest}...],\"freed\":BYTES}\n"
		"  -h, --help   this help\n");
}

int cmd_rmi(int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	bool json = false;
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'h': usage(stdout); return 0;
		default: return cli_usage("rmi", "invalid option");
		}
	}
	if (optind >= argc)
		return cli_usage("rmi", "expected at least one image");
	struct oci_store *s;
	if (oci_store_open(lt_home(), &s) < 0)
		return cli_fail("rmi");
	json_t *removed = json_array();
	uint64_t total = 0;
	int rc = removed ? 0 : lt_fail("out of memory");
	for (int i = optind; rc == 0 && i < argc; i++) {
		char digest[OCI_DIGEST_MAX];
		uint64_t freed = 0;
		if ((rc = oci_store_resolve(s, argv[i], digest)) < 0 ||
		    (rc = oci_store_remove(s, argv[i], &freed)) < 0)
			break;
		total += freed;
		if (json)
			json_array_append_new(removed, json_pack("{s:s, s:s}", "ref", argv[i],
								 "digest", digest));
		else
			printf("Removed %s (%.19s)\n", argv[i], digest);
	}
	oci_store_close(s);
	if (rc == 0 && json) {
		json_t *o = json_pack("{s:O, s:I}", "removed", removed, "freed", (json_int_t)total);
		if (!o || json_dumpf(o, stdout, JSON_INDENT(2)) < 0)
			rc = lt_fail("cannot format the result");
		else
			putchar('\n');
		json_decref(o);
	} else if (rc == 0) {
		char sz[32];
		printf("Freed %s\n", lt_human_size(total, sz, sizeof(sz)));
	}
	json_decref(removed);
	return rc < 0 ? cli_fail("rmi") : 0;
}
