/* Paired latency probe for the proxy benchmark: one keep-alive HTTP
 * connection straight to the backend and one through the proxy; requests
 * alternate between them one at a time, so both sides sample the same
 * machine conditions (noise on a shared host hits both alike).
 *
 *   proxy_latency DIRECT_PORT PROXY_PORT [N]
 * prints: "direct p50 p90 p99 p999" and "proxy ..." in microseconds.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int dial(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int one = 1;
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("connect");
		exit(1);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* One request; reads the whole response (Content-Length framed). */
static double one(int fd)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
	char buf[65536];
	double t0 = now_us();
	if (write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) {
		perror("write");
		exit(1);
	}
	size_t got = 0, want = 0;
	for (;;) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - got);
		if (n <= 0) {
			fprintf(stderr, "proxy_latency: connection closed\n");
			exit(1);
		}
		got += (size_t)n;
		if (!want) {
			char *end = memmem(buf, got, "\r\n\r\n", 4);
			char *cl = memmem(buf, got, "Content-Length: ", 16);
			if (!end || !cl)
				continue;
			want = (size_t)(end - buf) + 4 + strtoul(cl + 16, NULL, 10);
		}
		if (got >= want)
			break;
	}
	return now_us() - t0;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void report(const char *name, double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp);
	printf("%s %.0f %.0f %.0f %.0f\n", name, v[n / 2], v[n * 90 / 100], v[n * 99 / 100],
	       v[n * 999 / 1000]);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: proxy_latency DIRECT_PORT PROXY_PORT [N]\n");
		return 2;
	}
	int n = argc > 3 ? atoi(argv[3]) : 20000;
	if (n < 100)
		n = 100;
	int d = dial(atoi(argv[1])), p = dial(atoi(argv[2]));
	double *dv = malloc(sizeof(double) * (size_t)n), *pv = malloc(sizeof(double) * (size_t)n);
	for (int k = 0; k < 200; k++) /* warm up */
		one(d), one(p);
	for (int k = 0; k < n; k++) {
		if (k & 1) {
			pv[k] = one(p);
			dv[k] = one(d);
		} else {
			dv[k] = one(d);
			pv[k] = one(p);
		}
	}
	report("direct", dv, n);
	report("proxy", pv, n);
	return 0;
}
