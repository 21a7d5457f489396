/* Host routing input (HTTP request heads from the network) and address
 * parsing for listeners. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy.h"

static int find(const char *req, char *host, size_t *hl, int *status)
{
	return lt_http_find_host(req, strlen(req), 8192, host, 256, hl, status);
}

static void expect_host(const char *req, const char *want)
{
	char host[256];
	size_t hl = 0;
	int status = -1;
	int rc = find(req, host, &hl, &status);
	if (rc != 1)
		fail_msg("'%s': rc %d (%s)", req, rc, lt_errmsg());
	assert_string_equal(host, want);
	assert_int_equal(status, 0);
}

static void expect_bad(const char *req, int want_status, const char *msg_part)
{
	char host[256];
	size_t hl = 0;
	int status = 0;
	assert_int_equal(find(req, host, &hl, &status), -1);
	assert_int_equal(status, want_status);
	if (msg_part && !strstr(lt_errmsg(), msg_part))
		fail_msg("'%s': message '%s' lacks '%s'", req, lt_errmsg(), msg_part);
}

static void test_host_basic(void **state)
{
	(void)state;
	expect_host("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", "example.com");
	expect_host("GET / HTTP/1.1\r\nUser-Agent: x\r\nhOsT:   Example.COM:8080  \r\n\r\n",
		    "example.com");
	expect_host("POST /x?y HTTP/1.0\nHost: a.b\n\n", "a.b");
	expect_host("GET / HTTP/1.1\r\nHost: app.local.\r\n\r\n", "app.local");
	expect_host("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", "[::1]");
	expect_host("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "127.0.0.1");
}

static void test_absolute_form_wins(void **state)
{
	(void)state;
	expect_host("GET http://Real.Example:81/p HTTP/1.1\r\nHost: other\r\n\r\n", "real.example");
	expect_host("GET http://user@h.example/ HTTP/1.1\r\n\r\n", "h.example");
}

static void test_head_length_and_incomplete(void **state)
{
	(void)state;
	const char *req = "GET / HTTP/1.1\r\nHost: a\r\n\r\nBODYBYTES";
	char host[256];
	size_t hl = 0;
	int status;
	assert_int_equal(find(req, host, &hl, &status), 1);
	assert_int_equal(hl, strlen(req) - 9);
	/* every strict prefix of the head asks for more */
	for (size_t n = 0; n < hl; n++)
		assert_int_equal(lt_http_find_host(req, n, 8192, host, 256, &hl, &status), 0);
}

static void test_bad_heads(void **state)
{
	(void)state;
	expect_bad("GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n", 400, "missing Host");
	expect_bad("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "more than one");
	expect_bad("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "HTTP/1");
	expect_bad("GET /\r\nHost: a\r\n\r\n", 400, NULL);
	expect_bad(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, NULL);
	expect_bad("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400, "folding");
	expect_bad("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "invalid character");
	expect_bad("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, NULL);
	expect_bad("GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n", 400, "port");
	expect_bad("GET / HTTP/1.1\r\nHost: \r\n\r\n", 400, "empty");
	expect_bad("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400, "IPv6");
	expect_bad("GET / HTTP/1.1\r\nNo colon here\r\nHost: a\r\n\r\n", 400, "malformed");
	char longhost[400];
	memset(longhost, 'a', sizeof(longhost));
	longhost[sizeof(longhost) - 1] = '\0';
	char req[600];
	snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", longhost);
	expect_bad(req, 400, "too long");
}

static void test_oversized_head(void **state)
{
	(void)state;
	char *big = malloc(10000);
	int n = snprintf(big, 10000, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
	memset(big + n, 'x', 10000 - (size_t)n);
	char host[256];
	size_t hl;
	int status = 0;
	/* below the limit: wait for more; at the limit: 431 */
	assert_int_equal(lt_http_find_host(big, 4000, 8192, host, 256, &hl, &status), 0);
	assert_int_equal(lt_http_find_host(big, 10000, 8192, host, 256, &hl, &status), -1);
	assert_int_equal(status, 431);
	free(big);
}

/* Random mutations of valid heads: never crash, never read past len, and
 * any host found is normalised. Run under ASan this finds overreads. */
static void test_mutations(void **state)
{
	(void)state;
	const char *seeds[] = {
		"GET / HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n\r\n",
		"GET http://a.b:1/x HTTP/1.1\r\nHost: c\r\n\r\n",
		"GET / HTTP/1.0\nHost: [::1]:80\n\n",
	};
	srand(1234);
	char host[256];
	for (int iter = 0; iter < 200000; iter++) {
		const char *s = seeds[iter % 3];
		size_t len = strlen(s);
		char *buf = malloc(len); /* exact size: ASan catches overreads */
		memcpy(buf, s, len);
		int muts = 1 + rand() % 4;
		for (int m = 0; m < muts; m++)
			buf[rand() % len] = (char)(rand() % 256);
		size_t cut = (size_t)rand() % (len + 1);
		size_t hl = 0;
		int status = 0;
		int rc = lt_http_find_host(buf, cut, 64, host, sizeof(host), &hl, &status);
		if (rc == 1) {
			assert_true(hl <= cut);
			for (const char *p = host; *p; p++)
				assert_false(*p >= 'A' && *p <= 'Z');
			assert_true(strlen(host) > 0);
		} else if (rc < 0) {
			assert_true(status == 400 || status == 431);
		}
		free(buf);
	}
}

static void test_listen_addr(void **state)
{
	(void)state;
	struct sockaddr_storage ss;
	socklen_t len;
	assert_int_equal(lt_parse_listen_addr("8080", &ss, &len), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
	assert_int_equal(ntohs(v4->sin_port), 8080);
	assert_int_equal(v4->sin_addr.s_addr, htonl(INADDR_ANY));
	assert_int_equal(lt_parse_listen_addr("127.0.0.1:0", &ss, &len), 0);
	assert_int_equal(v4->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
	assert_int_equal(lt_parse_listen_addr("localhost:9", &ss, &len), 0);
	assert_int_equal(v4->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
	assert_int_equal(lt_parse_listen_addr("[::1]:443", &ss, &len), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 443);
	const char *bad[] = {"", "abc", "1.2.3.4:99999", "[::1]80", "example.com:80",
			     ":80", "1.2.3.4:", "[::1", "-1", "1.2.3.4:8o"};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
		if (lt_parse_listen_addr(bad[k], &ss, &len) == 0)
			fail_msg("'%s' accepted", bad[k]);
}

static void test_port_spec(void **state)
{
	(void)state;
	char *l = NULL;
	uint16_t g = 0;
	assert_int_equal(lt_parse_port_spec("127.0.0.1:8080:80", &l, &g), 0);
	assert_string_equal(l, "127.0.0.1:8080");
	assert_int_equal(g, 80);
	free(l);
	assert_int_equal(lt_parse_port_spec("8080:3000", &l, &g), 0);
	assert_string_equal(l, "8080");
	assert_int_equal(g, 3000);
	free(l);
	assert_int_equal(lt_parse_port_spec("[::1]:8080:80", &l, &g), 0);
	assert_string_equal(l, "[::1]:8080");
	free(l);
	const char *bad[] = {"8080", "8080:0", ":80", "8080:", "x:80", "1.2.3.4:1:70000",
			     "[::1]:80"};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		l = NULL;
		if (lt_parse_port_spec(bad[k], &l, &g) == 0)
			fail_msg("'%s' accepted as '%s':%u", bad[k], l, g);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_basic),
		cmocka_unit_test(test_absolute_form_wins),
		cmocka_unit_test(test_head_length_and_incomplete),
		cmocka_unit_test(test_bad_heads),
		cmocka_unit_test(test_oversized_head),
		cmocka_unit_test(test_mutations),
		cmocka_unit_test(test_listen_addr),
		cmocka_unit_test(test_port_spec),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
