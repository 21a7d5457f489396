/* Deploy spec parsing and validation (see spec.h). */
#include "spec.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oci/oci.h"
#include "proxy/proxy.h"
#include "util/util.h"

void dmn_spec_defaults(struct dmn_spec *s)
{
	memset(s, 0, sizeof(*s));
	s->min = DMN_DEF_MIN;
	s->max = DMN_DEF_MAX;
	s->concurrency = DMN_DEF_CONCURRENCY;
	dmn_parse_duration_ms(DMN_DEF_IDLE_TIMEOUT, &s->idle_timeout_ms);
	dmn_parse_duration_ms(DMN_DEF_SCALE_DOWN, &s->scale_down_ms);
	dmn_parse_duration_ms(DMN_DEF_QUEUE_TIMEOUT, &s->queue_timeout_ms);
	snprintf(s->trigger_text, sizeof(s->trigger_text), "%s", DMN_DEF_TRIGGER);
	dmn_parse_trigger(DMN_DEF_TRIGGER, &s->trigger);
	s->mem_mib = DMN_DEF_MEM_MIB;
	s->cpus = DMN_DEF_CPUS;
	snprintf(s->engine, sizeof(s->engine), "%s", DMN_DEF_ENGINE);
}

void dmn_spec_free(struct dmn_spec *s)
{
	if (s->env)
		for (size_t k = 0; k < s->nenv; k++)
			free(s->env[k]);
	free(s->env);
	s->env = NULL;
	s->nenv = 0;
}

/* ---- validators ------------------------------------------------------- */

bool dmn_name_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > DMN_NAME_MAX || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t k = 0; k < n; k++)
		if (!((s[k] >= 'a' && s[k] <= 'z') || (s[k] >= '0' && s[k] <= '9') || s[k] == '-'))
			return false;
	return true;
}

bool dmn_instance_id_valid(const char *s)
{
	const char *dash = strrchr(s, '-');
	if (!dash || dash == s || !dash[1] || strlen(s) > DMN_NAME_MAX + 21)
		return false;
	for (const char *p = dash + 1; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	char name[DMN_NAME_MAX + 1];
	size_t n = (size_t)(dash - s);
	if (n > DMN_NAME_MAX)
		return false;
	memcpy(name, s, n);
	name[n] = '\0';
	return dmn_name_valid(name);
}

int dmn_name_from_ref(const char *ref, char out[DMN_NAME_MAX + 1])
{
	struct oci_ref r;
	if (oci_ref_parse(ref, &r) < 0)
		return -1;
	const char *base = strrchr(r.repository, '/');
	base = base ? base + 1 : r.repository;
	size_t n = 0;
	for (const char *p = base; *p && n < DMN_NAME_MAX; p++) {
		char c = (char)tolower((unsigned char)*p);
		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
			out[n++] = c;
		else if (n && out[n - 1] != '-')
			out[n++] = '-';
	}
	while (n && out[n - 1] == '-')
		n--;
	out[n] = '\0';
	oci_ref_free(&r);
	if (!dmn_name_valid(out))
		return lt_fail("cannot derive an app name from '%s' (pass --name)", ref);
	return 0;
}

int dmn_parse_duration_ms(const char *s, uint64_t *ms)
{
	const char *p = s;
	uint64_t v = 0;
	if (!*p || strlen(s) > 24)
		return lt_fail("bad duration '%s' (want e.g. 250ms, 30s, 5m, 1h)", s);
	size_t digits = 0;
	while (*p >= '0' && *p <= '9') {
		if (v > DMN_DURATION_MAX_MS)
			return lt_fail("duration '%s' is too long", s);
		v = v * 10 + (uint64_t)(*p++ - '0');
		digits++;
	}
	if (!digits)
		return lt_fail("bad duration '%s' (want e.g. 250ms, 30s, 5m, 1h)", s);
	uint64_t mul;
	if (!*p || !strcmp(p, "s"))
		mul = 1000;
	else if (!strcmp(p, "ms"))
		mul = 1;
	else if (!strcmp(p, "m"))
		mul = 60 * 1000;
	else if (!strcmp(p, "h"))
		mul = 3600 * 1000;
	else if (!strcmp(p, "d"))
		mul = 24 * 3600 * 1000;
	else
		return lt_fail("bad duration '%s' (units: ms, s, m, h, d)", s);
	if (v > DMN_DURATION_MAX_MS / mul)
		return lt_fail("duration '%s' is too long (at most 30 days)", s);
	*ms = v * mul;
	return 0;
}

static int parse_u32_range(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
	uint64_t v;
	if (lt_parse_u64(s, &v) < 0 || v < lo || v > hi)
		return lt_fail("'%s' is not a number in %u..%u", s, lo, hi);
	*out = (uint32_t)v;
	return 0;
}

int dmn_parse_trigger(const char *s, struct dmn_trigger *t)
{
	uint32_t v = 0;
	memset(t, 0, sizeof(*t));
	if (!strcmp(s, "first-listen")) {
		t->kind = DMN_TRIG_FIRST_LISTEN;
	} else if (!strncmp(s, "nth-listen:", 11)) {
		if (parse_u32_range(s + 11, 1, 1000, &v) < 0)
			return lt_fail_ctx("trigger nth-listen:N");
		t->kind = DMN_TRIG_NTH_LISTEN;
		t->n = v;
	} else if (!strncmp(s, "listen-port:", 12)) {
		if (parse_u32_range(s + 12, 1, 65535, &v) < 0)
			return lt_fail_ctx("trigger listen-port:P");
		t->kind = DMN_TRIG_LISTEN_PORT;
		t->port = (uint16_t)v;
	} else if (!strcmp(s, "userspace-ready")) {
		t->kind = DMN_TRIG_READY;
	} else if (!strcmp(s, "manual")) {
		t->kind = DMN_TRIG_MANUAL;
	} else {
		return lt_fail("bad trigger '%.40s' (want first-listen, nth-listen:N, listen-port:P, "
			       "userspace-ready or manual)", s);
	}
	return 0;
}

int dmn_parse_port(const char *s, struct dmn_port *p)
{
	char *listen = NULL;
	uint16_t guest;
	if (strlen(s) >= sizeof(p->listen))
		return lt_fail("port spec '%.40s...' is too long", s);
	if (lt_parse_port_spec(s, &listen, &guest) < 0)
		return -1;
	if (guest == 0) {
		free(listen);
		return lt_fail("port spec '%s': the guest port must not be 0", s);
	}
	/* "8080" alone (no address) listens on loopback, not everywhere */
	bool bare = !strchr(listen, ':');
	int n = snprintf(p->listen, sizeof(p->listen), "%s%s", bare ? DMN_DEF_LISTEN ":" : "",
			 listen);
	free(listen);
	if (n < 0 || (size_t)n >= sizeof(p->listen))
		return lt_fail("port spec '%s' is too long", s);
	p->guest = guest;
	return 0;
}

static bool env_valid(const char *s)
{
	const char *eq = strchr(s, '=');
	if (!eq || eq == s || strlen(s) > DMN_ENV_LEN_MAX)
		return false;
	for (const char *p = s; p < eq; p++)
		if (!(isalnum((unsigned char)*p) || *p == '_') || (p == s && isdigit((unsigned char)*p)))
			return false;
	for (const char *p = eq; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

static bool host_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > DMN_HOST_MAX)
		return false;
	for (size_t k = 0; k < n; k++) {
		char c = s[k];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
			return false;
	}
	return s[0] != '.' && s[0] != '-';
}

/* An absolute path without control bytes or ".." components. */
static bool path_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > DMN_PATH_MAX || s[0] != '/')
		return false;
	for (size_t k = 0; k < n; k++)
		if ((unsigned char)s[k] < 0x20 || s[k] == 0x7f)
			return false;
	return !strstr(s, "/../") && (n < 3 || strcmp(s + n - 3, "/.."));
}

/* ---- JSON ------------------------------------------------------------- */

static int get_str(json_t *v, const char *key, char *out, size_t size)
{
	if (!json_is_string(v))
		return lt_fail("field '%s' must be a string", key);
	const char *s = json_string_value(v);
	if (json_string_length(v) != strlen(s))
		return lt_fail("field '%s' contains a NUL byte", key);
	if (strlen(s) >= size)
		return lt_fail("field '%s' is too long (at most %zu bytes)", key, size - 1);
	memcpy(out, s, strlen(s) + 1);
	return 0;
}

static int get_u32(json_t *v, const char *key, uint32_t lo, uint32_t hi, uint32_t *out)
{
	if (!json_is_integer(v))
		return lt_fail("field '%s' must be an integer", key);
	json_int_t x = json_integer_value(v);
	if (x < (json_int_t)lo || x > (json_int_t)hi)
		return lt_fail("field '%s' must be in %u..%u (got %lld)", key, lo, hi, (long long)x);
	*out = (uint32_t)x;
	return 0;
}

/* A duration: a string with a unit, or an integer number of ms. */
static int get_duration(json_t *v, const char *key, uint64_t *ms)
{
	if (json_is_integer(v)) {
		json_int_t x = json_integer_value(v);
		if (x < 0 || (uint64_t)x > DMN_DURATION_MAX_MS)
			return lt_fail("field '%s' must be 0..%llu ms", key,
				       (unsigned long long)DMN_DURATION_MAX_MS);
		*ms = (uint64_t)x;
		return 0;
	}
	char buf[32];
	if (get_str(v, key, buf, sizeof(buf)) < 0 || dmn_parse_duration_ms(buf, ms) < 0)
		return lt_fail_ctx("field '%s'", key);
	return 0;
}

static int get_ports(json_t *v, struct dmn_spec *s)
{
	if (!json_is_array(v))
		return lt_fail("field 'ports' must be an array of \"[ADDR:]HOSTPORT:GUESTPORT\"");
	if (json_array_size(v) > DMN_MAX_PORTS)
		return lt_fail("field 'ports': at most %d ports", DMN_MAX_PORTS);
	size_t i;
	json_t *e;
	json_array_foreach(v, i, e) {
		char buf[96];
		if (get_str(e, "ports[]", buf, sizeof(buf)) < 0 ||
		    dmn_parse_port(buf, &s->ports[i]) < 0)
			return lt_fail_ctx("field 'ports'");
		for (size_t k = 0; k < i; k++)
			if (!strcmp(s->ports[k].listen, s->ports[i].listen) &&
			    strcmp(strrchr(s->ports[i].listen, ':'), ":0"))
				return lt_fail("field 'ports': %s is given twice", s->ports[i].listen);
	}
	s->nports = json_array_size(v);
	return 0;
}

static int get_env(json_t *v, struct dmn_spec *s)
{
	if (!json_is_array(v))
		return lt_fail("field 'env' must be an array of \"KEY=VALUE\"");
	size_t n = json_array_size(v);
	if (n > DMN_MAX_ENV)
		return lt_fail("field 'env': at most %d variables", DMN_MAX_ENV);
	dmn_spec_free(s);
	s->env = lt_calloc(n + 1, sizeof(char *));
	if (!s->env)
		return -1;
	size_t i;
	json_t *e;
	json_array_foreach(v, i, e) {
		if (!json_is_string(e) || json_string_length(e) != strlen(json_string_value(e)) ||
		    !env_valid(json_string_value(e)))
			return lt_fail("field 'env': entry %zu is not KEY=VALUE (KEY: letters, digits, "
				       "'_'; no control bytes; at most %d bytes)",
				       i, DMN_ENV_LEN_MAX);
		s->env[i] = lt_strdup(json_string_value(e));
		if (!s->env[i])
			return -1;
		s->nenv = i + 1;
	}
	return 0;
}

static int get_field(const char *key, json_t *v, struct dmn_spec *s)
{
	if (!strcmp(key, "name")) {
		if (get_str(v, key, s->name, sizeof(s->name)) < 0)
			return -1;
		if (!dmn_name_valid(s->name))
			return lt_fail("field 'name': '%s' is not a valid app name (a-z, 0-9 and '-', "
				       "at most %d, starting and ending with a letter or digit)",
				       s->name, DMN_NAME_MAX);
	} else if (!strcmp(key, "ref")) {
		struct oci_ref r;
		if (get_str(v, key, s->ref, sizeof(s->ref)) < 0)
			return -1;
		for (const char *p = s->ref; *p; p++)
			if ((unsigned char)*p <= 0x20 || *p == 0x7f)
				return lt_fail("field 'ref': control byte or space in the reference");
		if (oci_ref_parse(s->ref, &r) < 0)
			return lt_fail_ctx("field 'ref'");
		oci_ref_free(&r);
	} else if (!strcmp(key, "ports")) {
		return get_ports(v, s);
	} else if (!strcmp(key, "host")) {
		if (get_str(v, key, s->host, sizeof(s->host)) < 0)
			return -1;
		for (char *p = s->host; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		if (s->host[0] && !host_valid(s->host))
			return lt_fail("field 'host': '%s' is not a host name", s->host);
	} else if (!strcmp(key, "min")) {
		return get_u32(v, key, 0, DMN_MAX_INSTANCES, &s->min);
	} else if (!strcmp(key, "max")) {
		return get_u32(v, key, 1, DMN_MAX_INSTANCES, &s->max);
	} else if (!strcmp(key, "concurrency")) {
		return get_u32(v, key, 1, DMN_MAX_CONCURRENCY, &s->concurrency);
	} else if (!strcmp(key, "idle_timeout")) {
		return get_duration(v, key, &s->idle_timeout_ms);
	} else if (!strcmp(key, "scale_down")) {
		return get_duration(v, key, &s->scale_down_ms);
	} else if (!strcmp(key, "queue_timeout")) {
		if (get_duration(v, key, &s->queue_timeout_ms) < 0)
			return -1;
		if (!s->queue_timeout_ms)
			return lt_fail("field 'queue_timeout' must be positive");
	} else if (!strcmp(key, "trigger")) {
		if (get_str(v, key, s->trigger_text, sizeof(s->trigger_text)) < 0 ||
		    dmn_parse_trigger(s->trigger_text, &s->trigger) < 0)
			return lt_fail_ctx("field 'trigger'");
	} else if (!strcmp(key, "mem")) {
		return get_u32(v, key, 32, DMN_MAX_MEM_MIB, &s->mem_mib);
	} else if (!strcmp(key, "cpus")) {
		return get_u32(v, key, 1, DMN_MAX_CPUS, &s->cpus);
	} else if (!strcmp(key, "env")) {
		return get_env(v, s);
	} else if (!strcmp(key, "kernel")) {
		if (get_str(v, key, s->kernel, sizeof(s->kernel)) < 0)
			return -1;
		if (s->kernel[0] && !path_valid(s->kernel))
			return lt_fail("field 'kernel' must be an absolute path");
	} else if (!strcmp(key, "cmdline")) {
		if (get_str(v, key, s->cmdline, sizeof(s->cmdline)) < 0)
			return -1;
		for (const char *p = s->cmdline; *p; p++)
			if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e || *p == '"')
				return lt_fail("field 'cmdline': only printable ASCII without '\"'");
	} else if (!strcmp(key, "engine")) {
		if (get_str(v, key, s->engine, sizeof(s->engine)) < 0)
			return -1;
		if (strcmp(s->engine, "auto") && strcmp(s->engine, "lttle") &&
		    strcmp(s->engine, "qemu") && strcmp(s->engine, "proc"))
			return lt_fail("field 'engine': '%s' is not auto, lttle or qemu", s->engine);
	} else if (!strcmp(key, "insecure")) {
		if (!json_is_boolean(v))
			return lt_fail("field 'insecure' must be true or false");
		s->insecure = json_is_true(v);
	} else {
		return lt_fail("unknown field '%.64s'", key);
	}
	return 0;
}

int dmn_spec_from_json(json_t *j, struct dmn_spec *s)
{
	if (!json_is_object(j))
		return lt_fail("the request body must be a JSON object");
	const char *key;
	json_t *v;
	json_object_foreach(j, key, v) {
		if (get_field(key, v, s) < 0)
			return -1;
	}
	if (!s->ref[0])
		return lt_fail("field 'ref' is required");
	if (s->min > s->max)
		return lt_fail("min (%u) exceeds max (%u)", s->min, s->max);
	if (!s->name[0] && dmn_name_from_ref(s->ref, s->name) < 0)
		return -1;
	if (s->trigger.kind == DMN_TRIG_LISTEN_PORT && s->nports) {
		bool found = false;
		for (size_t k = 0; k < s->nports; k++)
			found |= s->ports[k].guest == s->trigger.port;
		if (!found)
			lt_warn("deploy %s: trigger port %u is not among the forwarded ports", s->name,
				s->trigger.port);
	}
	return 0;
}

int dmn_spec_parse(const char *body, size_t len, struct dmn_spec *s)
{
	if (len > DMN_BODY_MAX)
		return lt_fail("request body too large (%zu bytes, at most %d)", len, DMN_BODY_MAX);
	json_error_t err;
	json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
	if (!j)
		return lt_fail("malformed JSON at line %d column %d: %s", err.line, err.column,
			       err.text);
	int rc = dmn_spec_from_json(j, s);
	json_decref(j);
	return rc;
}

json_t *dmn_spec_to_json(const struct dmn_spec *s)
{
	json_t *ports = json_array(), *env = json_array();
	for (size_t k = 0; ports && k < s->nports; k++) {
		char buf[128];
		snprintf(buf, sizeof(buf), "%s:%u", s->ports[k].listen, s->ports[k].guest);
		json_array_append_new(ports, json_string(buf));
	}
	for (size_t k = 0; env && k < s->nenv; k++)
		json_array_append_new(env, json_string(s->env[k]));
	json_t *j = json_pack("{s:s, s:s, s:o, s:s, s:i, s:i, s:i, s:I, s:I, s:I, s:s, s:i, s:i, "
			      "s:o, s:s, s:s, s:s, s:b}",
			      "name", s->name, "ref", s->ref, "ports", ports, "host", s->host, "min",
			      (int)s->min, "max", (int)s->max, "concurrency", (int)s->concurrency,
			      "idle_timeout", (json_int_t)s->idle_timeout_ms, "scale_down",
			      (json_int_t)s->scale_down_ms, "queue_timeout",
			      (json_int_t)s->queue_timeout_ms, "trigger", s->trigger_text, "mem",
			      (int)s->mem_mib, "cpus", (int)s->cpus, "env", env, "kernel", s->kernel,
			      "cmdline", s->cmdline, "engine", s->engine, "insecure", s->insecure);
	if (!j)
		lt_fail("cannot format the deploy spec");
	return j;
}
