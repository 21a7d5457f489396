/* Transport policy: which registries may be spoken to over plain HTTP,
 * which host serves a registry name, and retry pacing. Pure functions, so
 * the rules are unit-tested without any network. */
#include "internal.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define RETRY_BASE_MS 250
#define RETRY_CAP_MS 8000
#define RETRY_AFTER_CAP_MS 30000

/* Splits "host", "host:port", "[v6]:port" or a bare "v6" into host. */
static int host_part(const char *hp, char *host, size_t cap)
{
	const char *start = hp, *end;
	if (hp[0] == '[') {
		start = hp + 1;
		end = strchr(start, ']');
		if (!end)
			return -1;
	} else {
		const char *first = strchr(hp, ':');
		/* Two or more colons without brackets: a bare IPv6 address. */
		end = (first && strchr(first + 1, ':')) ? hp + strlen(hp)
			: first ? first : hp + strlen(hp);
	}
	size_t n = (size_t)(end - start);
	if (n == 0 || n >= cap)
		return -1;
	memcpy(host, start, n);
	host[n] = '\0';
	return 0;
}

bool oci_host_is_loopback(const char *host_port)
{
	char host[128];
	if (!host_port || host_part(host_port, host, sizeof(host)) < 0)
		return false;
	if (!strcasecmp(host, "localhost"))
		return true;
	struct in_addr a4;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	struct in6_addr a6;
	if (inet_pton(AF_INET6, host, &a6) == 1) {
		if (IN6_IS_ADDR_LOOPBACK(&a6))
			return true;
		return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
	}
	return false;
}

int oci_registry_schemes(const char *registry, bool insecure, const char *out[2])
{
	out[0] = "https";
	out[1] = NULL;
	if (insecure || oci_host_is_loopback(registry)) {
		out[1] = "http";
		return 2;
	}
	return 1;
}

const char *oci_registry_api_host(const char *registry)
{
	return strcmp(registry, "docker.io") ? registry : "registry-1.docker.io";
}

bool oci_url_allowed(const char *url, bool insecure)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL;
	bool ok = false;
	if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		goto done;
	if (!strcasecmp(scheme, "https"))
		ok = true;
	else if (!strcasecmp(scheme, "http"))
		ok = insecure || oci_host_is_loopback(host);
done:
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return ok;
}

long oci_retry_delay_ms(int attempt, const char *retry_after)
{
	if (retry_after && *retry_after) {
		char *end;
		long secs = strtol(retry_after, &end, 10);
		if (end != retry_after && *end == '\0' && secs >= 0)
			return secs * 1000 > RETRY_AFTER_CAP_MS ? RETRY_AFTER_CAP_MS : secs * 1000;
		time_t when = curl_getdate(retry_after, NULL);
		if (when > 0) {
			long ms = (long)(when - time(NULL)) * 1000;
			if (ms < 0)
				ms = 0;
			return ms > RETRY_AFTER_CAP_MS ? RETRY_AFTER_CAP_MS : ms;
		}
	}
	if (attempt < 0)
		attempt = 0;
	if (attempt > 10)
		attempt = 10;
	long ms = (long)RETRY_BASE_MS << attempt;
	return ms > RETRY_CAP_MS ? RETRY_CAP_MS : ms;
}
