/* Kernel command line parsing for lttle-init (see init.h for the syntax). */
#include "init.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define CMDLINE_MAX 8192 /* x86 COMMAND_LINE_SIZE is 2048; be generous */

int li_split_words(const char *s, char ***out)
{
	size_t cap = strlen(s) + 1;
	char *word = lt_malloc(cap);
	char **v = lt_calloc(1, sizeof(char *));
	if (!word || !v)
		goto fail;
	const char *p = s;
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		if (!*p)
			break;
		size_t n = 0;
		while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
			if (*p == '\'') {
				const char *end = strchr(p + 1, '\'');
				if (!end) {
					lt_fail("unterminated ' in \"%s\"", s);
					goto fail;
				}
				memcpy(word + n, p + 1, (size_t)(end - p - 1));
				n += (size_t)(end - p - 1);
				p = end + 1;
			} else if (*p == '\\' && p[1]) {
				word[n++] = p[1];
				p += 2;
			} else {
				word[n++] = *p++;
			}
		}
		if (li_strv_push(&v, word, n) < 0)
			goto fail;
	}
	free(word);
	*out = v;
	return 0;
fail:
	free(word);
	li_strv_free(v);
	return -1;
}

int li_parse_ports(const char *s, uint16_t *ports, size_t *n, size_t max)
{
	const char *p = s;
	while (*p) {
		char *end;
		if (!isdigit((unsigned char)*p))
			return lt_fail("bad port list \"%s\"", s);
		unsigned long v = strtoul(p, &end, 10);
		if (v == 0 || v > 65535)
			return lt_fail("port %lu out of range in \"%s\"", v, s);
		bool dup = false;
		for (size_t i = 0; i < *n; i++)
			dup |= ports[i] == v;
		if (!dup) {
			if (*n >= max)
				return lt_fail("more than %zu ports", max);
			ports[(*n)++] = (uint16_t)v;
		}
		p = end;
		if (*p == ',')
			p++;
		else if (*p)
			return lt_fail("bad port list \"%s\"", s);
	}
	return 0;
}

static int parse_hook(const char *v, enum li_hook *out)
{
	static const struct {
		const char *name;
		enum li_hook hook;
	} names[] = {{"auto", LI_HOOK_AUTO}, {"on", LI_HOOK_AUTO}, {"1", LI_HOOK_AUTO}, {"seccomp", LI_HOOK_SECCOMP},
		     {"off", LI_HOOK_OFF}, {"0", LI_HOOK_OFF}};
	for (size_t i = 0; i < LT_ARRAY_LEN(names); i++) {
		if (!strcmp(v, names[i].name)) {
			*out = names[i].hook;
			return 0;
		}
	}
	return lt_fail("lttle.hook=%s: expected auto, on, seccomp or off", v);
}

static int parse_overlay(const char *v, struct li_cmdline *c)
{
	if (!strcmp(v, "auto"))
		c->overlay = LI_OVL_AUTO;
	else if (!strcmp(v, "none"))
		c->overlay = LI_OVL_NONE;
	else if (!strcmp(v, "tmpfs"))
		c->overlay = LI_OVL_TMPFS;
	else if (!strncmp(v, "/dev/", 5) && v[5] && !strstr(v, "..") && !strchr(v + 5, '/')) {
		c->overlay = LI_OVL_DISK;
		free(c->overlay_dev);
		c->overlay_dev = lt_strdup(v);
		if (!c->overlay_dev)
			return -1;
	} else {
		return lt_fail("lttle.overlay=%s: expected auto, none, tmpfs or /dev/DISK", v);
	}
	return 0;
}

/* ip=CLIENT:SERVER:GW:MASK:HOST:DEV:AUTOCONF:... ("off"/"none" = no net). */
static int parse_ip(const char *v, struct li_cmdline *c)
{
	c->net = *v && strcmp(v, "off") && strcmp(v, "none");
	free(c->ip);
	c->ip = NULL;
	size_t n = strcspn(v, ":");
	if (c->net && n > 0 && n < 64 && strchr(v, ':')) {
		c->ip = lt_strndup(v, n);
		if (!c->ip)
			return -1;
	}
	return 0;
}

static int set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = lt_strdup(v);
	return *dst ? 0 : -1;
}

static int set_words(char ***dst, bool *set, const char *v)
{
	char **words;
	if (li_split_words(v, &words) < 0)
		return -1;
	li_strv_free(*dst);
	*dst = words;
	*set = true;
	return 0;
}

static int parse_dns(const char *v, struct li_cmdline *c)
{
	while (*v) {
		size_t n = strcspn(v, ",");
		if (n > 0 && li_strv_push(&c->dns, v, n) < 0)
			return -1;
		v += n;
		if (*v == ',')
			v++;
	}
	return 0;
}

static int apply_param(struct li_cmdline *c, const char *key, const char *v)
{
	if (!strcmp(key, "lttle.entrypoint"))
		return set_words(&c->entrypoint, &c->entrypoint_set, v);
	if (!strcmp(key, "lttle.cmd"))
		return set_words(&c->cmd, &c->cmd_set, v);
	if (!strcmp(key, "lttle.env")) {
		const char *eq = strchr(v, '=');
		if (!eq || eq == v)
			return lt_fail("lttle.env=%s: expected KEY=VALUE", v);
		return li_strv_push(&c->env, v, strlen(v));
	}
	if (!strcmp(key, "lttle.workdir"))
		return set_str(&c->workdir, v);
	if (!strcmp(key, "lttle.user"))
		return set_str(&c->user, v);
	if (!strcmp(key, "lttle.hostname"))
		return set_str(&c->hostname, v);
	if (!strcmp(key, "lttle.ports"))
		return li_parse_ports(v, c->ports, &c->n_ports, LI_MAX_PORTS) < 0
			       ? lt_fail_ctx("lttle.ports")
			       : 0;
	if (!strcmp(key, "lttle.hook"))
		return parse_hook(v, &c->hook);
	if (!strcmp(key, "lttle.overlay"))
		return parse_overlay(v, c);
	if (!strcmp(key, "lttle.dns"))
		return parse_dns(v, c);
	if (!strcmp(key, "lttle.events"))
		return *v == '/' ? set_str(&c->events, v)
				 : lt_fail("lttle.events=%s: expected an absolute path", v);
	if (!strcmp(key, "lttle.log")) {
		if (strcmp(v, "kmsg") && strcmp(v, "console"))
			return lt_fail("lttle.log=%s: expected kmsg or console", v);
		c->log_console = !strcmp(v, "console");
		return 0;
	}
	if (!strcmp(key, "lttle.restore_tty")) {
		size_t n = strlen(v);
		if (n == 0 || n > 31 || strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != n)
			return lt_fail("lttle.restore_tty=%.40s: expected a tty name like ttyS1", v);
		return set_str(&c->restore_tty, v);
	}
	if (!strcmp(key, "ip"))
		return parse_ip(v, c);
	return 0; /* someone else's parameter */
}

/* Next kernel parameter: blanks separate, "double quotes" group and are
 * dropped. Returns false at the end. */
static bool next_param(const char **pp, char *buf, size_t cap)
{
	const char *p = *pp;
	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	if (!*p)
		return false;
	size_t n = 0;
	bool quoted = false;
	for (; *p && (quoted || (*p != ' ' && *p != '\t' && *p != '\n')); p++) {
		if (*p == '"')
			quoted = !quoted;
		else if (n + 1 < cap)
			buf[n++] = *p;
	}
	buf[n] = '\0';
	*pp = p;
	return true;
}

int li_cmdline_parse(const char *text, struct li_cmdline *out)
{
	memset(out, 0, sizeof(*out));
	if (strlen(text) > CMDLINE_MAX)
		return lt_fail("kernel command line longer than %d bytes", CMDLINE_MAX);
	char *buf = lt_malloc(strlen(text) + 1);
	if (!buf)
		return -1;
	const char *p = text;
	int rc = 0;
	while (rc == 0 && next_param(&p, buf, strlen(text) + 1)) {
		if (!strcmp(buf, "--"))
			break;
		char *eq = strchr(buf, '=');
		if (!eq)
			continue;
		*eq = '\0';
		rc = apply_param(out, buf, eq + 1);
	}
	free(buf);
	if (rc < 0)
		li_cmdline_free(out);
	return rc;
}

void li_cmdline_free(struct li_cmdline *c)
{
	li_strv_free(c->entrypoint);
	li_strv_free(c->cmd);
	li_strv_free(c->env);
	li_strv_free(c->dns);
	free(c->workdir);
	free(c->user);
	free(c->hostname);
	free(c->overlay_dev);
	free(c->ip);
	free(c->events);
	free(c->restore_tty);
	memset(c, 0, sizeof(*c));
}
