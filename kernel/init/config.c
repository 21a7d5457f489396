/* The image config written by `lttle build` (LT_GUEST_CONFIG_PATH).
 * jansson is linked statically into the init; the input is bounded in
 * size here and jansson bounds nesting depth. */
#include "init.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* A JSON array of strings (or null / absent) into a vector. *out stays
 * NULL when absent so "no cmd" differs from "empty cmd". */
static int get_strv(json_t *root, const char *key, bool need_eq, char ***out)
{
	json_t *arr = json_object_get(root, key);
	*out = NULL;
	if (!arr || json_is_null(arr))
		return 0;
	if (!json_is_array(arr))
		return lt_fail("\"%s\" is not an array", key);
	if (json_array_size(arr) > LI_MAX_ARGS)
		return lt_fail("\"%s\" has more than %d entries", key, LI_MAX_ARGS);
	char **v = lt_calloc(1, sizeof(char *));
	if (!v)
		return -1;
	size_t i;
	json_t *item;
	json_array_foreach(arr, i, item) {
		if (!json_is_string(item)) {
			lt_fail("\"%s\"[%zu] is not a string", key, i);
			goto fail;
		}
		const char *s = json_string_value(item);
		size_t n = json_string_length(item);
		if (n > LI_MAX_STR || strlen(s) != n) {
			lt_fail("\"%s\"[%zu] is too long or holds a NUL byte", key, i);
			goto fail;
		}
		if (need_eq && (s[0] == '=' || !strchr(s, '='))) {
			lt_fail("\"%s\"[%zu] \"%.40s\" is not KEY=VALUE", key, i, s);
			goto fail;
		}
		if (li_strv_push(&v, s, n) < 0)
			goto fail;
	}
	*out = v;
	return 0;
fail:
	li_strv_free(v);
	return -1;
}

static int get_str(json_t *root, const char *key, char **out)
{
	json_t *s = json_object_get(root, key);
	const char *v = "";
	if (s && !json_is_null(s)) {
		if (!json_is_string(s))
			return lt_fail("\"%s\" is not a string", key);
		if (json_string_length(s) > 4096 || strlen(json_string_value(s)) != json_string_length(s))
			return lt_fail("\"%s\" is too long or holds a NUL byte", key);
		v = json_string_value(s);
	}
	*out = lt_strdup(v);
	return *out ? 0 : -1;
}

/* exposed_ports: 80 or "80" or "80/tcp"; udp ports are not forwarded. */
static int get_ports(json_t *root, struct li_config *c)
{
	json_t *arr = json_object_get(root, "exposed_ports");
	if (!arr || json_is_null(arr))
		return 0;
	if (!json_is_array(arr))
		return lt_fail("\"exposed_ports\" is not an array");
	size_t i;
	json_t *item;
	json_array_foreach(arr, i, item) {
		char num[16];
		if (json_is_integer(item)) {
			json_int_t v = json_integer_value(item);
			if (v < 1 || v > 65535)
				return lt_fail("\"exposed_ports\"[%zu] %lld is out of range", i,
					       (long long)v);
			snprintf(num, sizeof(num), "%lld", (long long)v);
		} else if (json_is_string(item)) {
			const char *s = json_string_value(item);
			size_t n = strspn(s, "0123456789");
			if (n == 0 || n >= sizeof(num) ||
			    (s[n] && strcmp(s + n, "/tcp") && strcmp(s + n, "/udp")))
				return lt_fail("\"exposed_ports\"[%zu] \"%.20s\" is not PORT[/tcp]", i, s);
			if (!strcmp(s + n, "/udp"))
				continue;
			memcpy(num, s, n);
			num[n] = '\0';
		} else {
			return lt_fail("\"exposed_ports\"[%zu] is not a port", i);
		}
		if (li_parse_ports(num, c->ports, &c->n_ports, LI_MAX_PORTS) < 0)
			return lt_fail_ctx("\"exposed_ports\"[%zu]", i);
	}
	return 0;
}

int li_config_parse(const char *json, size_t len, struct li_config *out)
{
	memset(out, 0, sizeof(*out));
	if (len > LI_CONFIG_MAX)
		return lt_fail("config is %zu bytes, more than %d", len, LI_CONFIG_MAX);
	/* jansson seeds its hash from /dev/urandom, which stalls a freshly
	 * booted guest until the RNG is ready (seconds under TCG); the config
	 * is ours and bounded, so a time-based seed is enough. */
	static bool seeded;
	if (!seeded) {
		json_object_seed((size_t)(lt_now_ns() | 1));
		seeded = true;
	}
	json_error_t jerr;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return lt_fail("config is not valid JSON: %s (line %d)", jerr.text, jerr.line);
	int rc = -1;
	if (!json_is_object(root)) {
		lt_fail("config is not a JSON object");
		goto out;
	}
	if (get_strv(root, "env", true, &out->env) < 0 ||
	    get_strv(root, "entrypoint", false, &out->entrypoint) < 0 ||
	    get_strv(root, "cmd", false, &out->cmd) < 0 ||
	    get_str(root, "workdir", &out->workdir) < 0 || get_str(root, "user", &out->user) < 0 ||
	    get_ports(root, out) < 0)
		goto out;
	if (!out->env && !(out->env = lt_calloc(1, sizeof(char *))))
		goto out;
	rc = 0;
out:
	json_decref(root);
	if (rc < 0)
		li_config_free(out);
	return rc;
}

int li_config_load(const char *path, struct li_config *out)
{
	char *buf;
	size_t len;
	if (lt_read_file(path, LI_CONFIG_MAX, &buf, &len) < 0)
		return -1;
	int rc = li_config_parse(buf, len, out);
	free(buf);
	if (rc < 0)
		return lt_fail_ctx("%s", path);
	return 0;
}

void li_config_free(struct li_config *c)
{
	li_strv_free(c->env);
	li_strv_free(c->entrypoint);
	li_strv_free(c->cmd);
	free(c->workdir);
	free(c->user);
	memset(c, 0, sizeof(*c));
}
