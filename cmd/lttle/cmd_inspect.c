/* lttle inspect: show an image's manifest digest, config and layers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "oci/oci.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: lttle inspect REF [--json]\n\n"
		"Shows a stored image: manifest and config digests, platform, the\n"
		"runtime configuration (entrypoint, cmd, env, workdir, user, ports)\n"
		"and the layers. REF may be a name, a digest or a digest prefix.\n\n"
		"  --json       machine-readable output (includes the whole config)\n"
		"  -h, --help   this help\n");
}

static const char *cfg_str(const json_t *cfg, const char *key)
{
	const char *s = json_string_value(json_object_get(cfg, key));
	return s ? s : "";
}

static json_t *layers_json(const struct oci_image *img, uint64_t *total)
{
	json_t *arr = json_array();
	*total = 0;
	for (size_t i = 0; arr && i < img->n_layers; i++) {
		const struct oci_layer *l = &img->layers[i];
		*total += l->size;
		json_array_append_new(arr, json_pack("{s:s, s:s, s:I}", "digest", l->digest,
						     "media_type", l->media_type, "size",
						     (json_int_t)l->size));
	}
	return arr;
}

static char *platform_of(const json_t *cfg)
{
	const char *v = cfg_str(cfg, "variant");
	return lt_sprintf("%s/%s%s%s", cfg_str(cfg, "os"), cfg_str(cfg, "architecture"),
			  *v ? "/" : "", v);
}

static int print_json(const struct oci_image *img, json_t *rt)
{
	uint64_t total;
	json_t *layers = layers_json(img, &total);
	char *pf = platform_of(img->config);
	json_t *o = json_pack("{s:o, s:s, s:s, s:s, s:s, s:I, s:O, s:O, s:O}", "ref",
			      img->ref ? json_string(img->ref) : json_null(), "digest",
			      img->manifest_digest, "config_digest", img->config_digest, "platform",
			      pf ? pf : "", "created", cfg_str(img->config, "created"), "layers_size",
			      (json_int_t)total, "runtime", rt, "layers", layers,
			      "config", img->config);
	int rc = 0;
	if (!o || json_dumpf(o, stdout, JSON_INDENT(2)) < 0)
		rc = lt_fail("cannot format the image");
	else
		putchar('\n');
	json_decref(o);
	json_decref(layers);
	free(pf);
	return rc;
}

static void print_list(const char *label, json_t *arr)
{
	char *s = json_dumps(arr, JSON_COMPACT);
	printf("%-12s%s\n", label, s ? s : "[]");
	free(s);
}

static void print_text(const struct oci_image *img, json_t *rt)
{
	uint64_t total = 0;
	char sz[32];
	char *pf = platform_of(img->config);
	for (size_t i = 0; i < img->n_layers; i++)
		total += img->layers[i].size;
	printf("%-12s%s\n", "Ref:", img->ref ? img->ref : "(none)");
	printf("%-12s%s\n", "Digest:", img->manifest_digest);
	printf("%-12s%s\n", "Config:", img->config_digest);
	printf("%-12s%s\n", "Platform:", pf ? pf : "");
	printf("%-12s%s\n", "Created:", cfg_str(img->config, "created"));
	printf("%-12s%s in %zu layers\n", "Size:", lt_human_size(total, sz, sizeof(sz)),
	       img->n_layers);
	print_list("Entrypoint:", json_object_get(rt, "entrypoint"));
	print_list("Cmd:", json_object_get(rt, "cmd"));
	printf("%-12s%s\n", "WorkingDir:", json_string_value(json_object_get(rt, "workdir")));
	printf("%-12s%s\n", "User:", json_string_value(json_object_get(rt, "user")));
	print_list("Ports:", json_object_get(rt, "exposed_ports"));
	size_t i;
	json_t *e;
	printf("Env:\n");
	json_array_foreach(json_object_get(rt, "env"), i, e)
		printf("  %s\n", json_string_value(e));
	printf("Layers:\n");
	for (i = 0; i < img->n_layers; i++) {
		const struct oci_layer *l = &img->layers[i];
		const char *mt = strrchr(l->media_type, '.');
		printf("  %s  %10s  %s\n", l->digest, lt_human_size(l->size, sz, sizeof(sz)),
		       mt ? mt + 1 : l->media_type);
	}
	free(pf);
}

int cmd_inspect(int argc, char **argv)
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
		default: return cli_usage("inspect", "invalid option");
		}
	}
	if (optind + 1 != argc)
		return cli_usage("inspect", "expected exactly one image");
	struct oci_store *s;
	struct oci_image *img = NULL;
	if (oci_store_open(lt_home(), &s) < 0)
		return cli_fail("inspect");
	int rc = oci_image_load(s, argv[optind], &img);
	oci_store_close(s);
	json_t *rt = rc == 0 ? oci_image_runtime_config(img) : NULL;
	if (rc == 0 && !rt)
		rc = -1;
	if (rc == 0 && json)
		rc = print_json(img, rt);
	else if (rc == 0)
		print_text(img, rt);
	json_decref(rt);
	oci_image_free(img);
	return rc < 0 ? cli_fail("inspect") : 0;
}
