/* Guest networking around the app: loopback (always: the forwarder joins
 * vsock to 127.0.0.1), and /etc/hosts + /etc/resolv.conf when the kernel
 * configured an interface from ip=. */
#include "init.h"

#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

int li_net_lo_up(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return lt_fail_errno("socket");
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	int rc = 0;
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
		rc = lt_fail_errno("lo flags");
	} else if (!(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
			rc = lt_fail_errno("bring lo up");
	}
	close(fd);
	return rc;
}

static int append(char *buf, size_t cap, size_t *len, const char *fmt, ...) LT_PRINTF(4, 5);
static int append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= cap - *len)
		return lt_fail("generated file larger than %zu bytes", cap);
	*len += (size_t)n;
	return 0;
}

static bool plain_token(const char *s, size_t max)
{
	size_t n = strlen(s);
	return n > 0 && n <= max && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					     "0123456789.-_:") == n;
}

int li_net_hosts(const char *hostname, const char *ip, char *buf, size_t cap)
{
	size_t len = 0;
	if (!plain_token(hostname, 64))
		return lt_fail("hostname \"%.64s\" is not a plain name", hostname);
	if (ip && !plain_token(ip, 45))
		return lt_fail("address \"%.45s\" is not plain", ip);
	if (cap)
		buf[0] = '\0';
	if (append(buf, cap, &len, "127.0.0.1\tlocalhost\n"
				   "::1\tlocalhost ip6-localhost ip6-loopback\n") < 0)
		return -1;
	return append(buf, cap, &len, "%s\t%s\n", ip ? ip : "127.0.1.1", hostname);
}

int li_net_resolv(const char *pnp, char *const *dns, char *buf, size_t cap)
{
	size_t len = 0;
	if (cap)
		buf[0] = '\0';
	/* /proc/net/pnp is already resolv.conf syntax: keep what a resolver
	 * understands, drop the "#PROTO: ..." comment and the rest. */
	char line[256];
	for (const char *p = pnp; p && *p;) {
		size_t n = strcspn(p, "\n");
		if (n < sizeof(line)) {
			memcpy(line, p, n);
			line[n] = '\0';
			char word[16], arg[200];
			if (sscanf(line, "%15s %199s", word, arg) == 2 &&
			    (!strcmp(word, "nameserver") || !strcmp(word, "search") ||
			     !strcmp(word, "domain")) &&
			    plain_token(arg, 199) && strcmp(arg, "0.0.0.0") &&
			    append(buf, cap, &len, "%s %s\n", word, arg) < 0)
				return -1;
		}
		p += n;
		if (*p)
			p++;
	}
	for (size_t i = 0; dns && dns[i]; i++) {
		if (!plain_token(dns[i], 45))
			return lt_fail("lttle.dns server \"%.45s\" is not an address", dns[i]);
		if (append(buf, cap, &len, "nameserver %s\n", dns[i]) < 0)
			return -1;
	}
	return 0;
}
