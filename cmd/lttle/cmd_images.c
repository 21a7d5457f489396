/* lttle images: list the images in the store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli.h"
#include "oci/oci.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: lttle images [--json]\n\n"
		"Lists the images in the store: REF, DIGEST, SIZE (compressed layers +\n"
		"config) and CREATED (when the ref was stored).\n\n"
		"  --json       a JSON array of {ref, digest, size, created (unix seconds)}\n"
		"  -h, --help   this help\n");
}

static const char *ago(int64_t t, char *buf, size_t len)
{
	int64_t d = (int64_t)time(NULL) - t;
	if (t <= 0)
		snprintf(buf, len, "unknown");
	else if (d < 60)
		snprintf(buf, len, "%s", d < 2 ? "just now" : "seconds ago");
	else if (d < 3600)
		snprintf(buf, len, "%lld minutes ago", (long long)(d / 60));
	else if (d < 86400)
		snprintf(buf, len, "%lld hours ago", (long long)(d / 3600));
	else
		snprintf(buf, len, "%lld days ago", (long long)(d / 86400));
	return buf;
}

static int print_json(const struct oci_image_info *v, size_t n)
{
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < n; i++) {
		json_t *o = json_pack("{s:s, s:s, s:I, s:I}", "ref", v[i].ref, "digest", v[i].digest,
				      "size", (json_int_t)v[i].size, "created",
				      (json_int_t)v[i].created);
		if (!o || json_array_append_new(arr, o) < 0) {
			json_decref(arr);
			arr = NULL;
		}
	}
	if (!arr || json_dumpf(arr, stdout, JSON_INDENT(2)) < 0) {
		json_decref(arr);
		lt_fail("cannot format the image list");
		return -1;
	}
	json_decref(arr);
	putchar('\n');
	return 0;
}

static void print_table(const struct oci_image_info *v, size_t n)
{
	int w = 3;
	for (size_t i = 0; i < n; i++)
		if ((int)strlen(v[i].ref) > w)
			w = (int)strlen(v[i].ref);
	printf("%-*s  %-12s  %10s  %s\n", w, "REF", "DIGEST", "SIZE", "CREATED");
	for (size_t i = 0; i < n; i++) {
		char sz[32], when[64];
		printf("%-*s  %.12s  %10s  %s\n", w, v[i].ref, v[i].digest + 7,
		       lt_human_size(v[i].size, sz, sizeof(sz)), ago(v[i].created, when, sizeof(when)));
	}
}

int cmd_images(int argc, char **argv)
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
		default: return cli_usage("images", "invalid option");
		}
	}
	if (optind != argc)
		return cli_usage("images", "unexpected argument '%s'", argv[optind]);
	struct oci_store *s;
	struct oci_image_info *v;
	size_t n;
	if (oci_store_open(lt_home(), &s) < 0)
		return cli_fail("images");
	int rc = oci_store_list(s, &v, &n);
	oci_store_close(s);
	if (rc < 0)
		return cli_fail("images");
	if (json)
		rc = print_json(v, n);
	else
		print_table(v, n);
	oci_image_info_free(v, n);
	return rc < 0 ? cli_fail("images") : 0;
}
