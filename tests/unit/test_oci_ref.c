/* References, digests, platforms and the transport policy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "oci/internal.h"

#define D64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void expect_ref(const char *in, const char *canonical)
{
	struct oci_ref r;
	if (oci_ref_parse(in, &r) < 0)
		fail_msg("'%s' rejected: %s", in, lt_errmsg());
	char *s = oci_ref_string(&r);
	if (strcmp(s, canonical))
		fail_msg("'%s' -> '%s', want '%s'", in, s, canonical);
	free(s);
	oci_ref_free(&r);
}

static void expect_bad_ref(const char *in, const char *msg_part)
{
	struct oci_ref r;
	if (oci_ref_parse(in, &r) == 0) {
		char *s = oci_ref_string(&r);
		fail_msg("'%s' accepted as '%s'", in, s);
	}
	if (msg_part && !strstr(lt_errmsg(), msg_part))
		fail_msg("'%s': message '%s' lacks '%s'", in, lt_errmsg(), msg_part);
}

static void test_ref_docker_normalisation(void **state)
{
	(void)state;
	expect_ref("alpine", "docker.io/library/alpine:latest");
	expect_ref("alpine:3.19", "docker.io/library/alpine:3.19");
	expect_ref("library/alpine", "docker.io/library/alpine:latest");
	expect_ref("user/app", "docker.io/user/app:latest");
	expect_ref("docker.io/alpine", "docker.io/library/alpine:latest");
	expect_ref("index.docker.io/user/app:v1", "docker.io/user/app:v1");
	expect_ref("registry-1.docker.io/library/busybox", "docker.io/library/busybox:latest");
	expect_ref("ghcr.io/org/app:tag", "ghcr.io/org/app:tag");
	expect_ref("ghcr.io/org/team/app", "ghcr.io/org/team/app:latest");
	expect_ref("localhost/x", "localhost/x:latest");
	expect_ref("localhost:5000/x:1", "localhost:5000/x:1");
	expect_ref("127.0.0.1:5000/app:v1", "127.0.0.1:5000/app:v1");
	expect_ref("[::1]:5000/app:v1", "[::1]:5000/app:v1");
	expect_ref("host:5000/name@sha256:" D64, "host:5000/name@sha256:" D64);
	expect_ref("host:5000/name:v2@sha256:" D64, "host:5000/name:v2@sha256:" D64);
	expect_ref("alpine@sha256:" D64, "docker.io/library/alpine@sha256:" D64);
	expect_ref("my.registry/a.b/c_d/e__f/g-h---i:Tag_1.0-rc", 
		   "my.registry/a.b/c_d/e__f/g-h---i:Tag_1.0-rc");
	/* A port-like tag on a bare name is a tag, as Docker reads it. */
	expect_ref("localhost:5000", "docker.io/library/localhost:5000");
	/* An uppercase first component is a registry host. */
	expect_ref("Registry.Example/app", "Registry.Example/app:latest");
}

static void test_ref_fields(void **state)
{
	(void)state;
	struct oci_ref r;
	assert_int_equal(oci_ref_parse("127.0.0.1:5000/team/app:v1", &r), 0);
	assert_string_equal(r.registry, "127.0.0.1:5000");
	assert_string_equal(r.repository, "team/app");
	assert_string_equal(r.tag, "v1");
	assert_null(r.digest);
	oci_ref_free(&r);
	assert_int_equal(oci_ref_parse("x.io/app@sha256:" D64, &r), 0);
	assert_null(r.tag);
	assert_string_equal(r.digest, "sha256:" D64);
	oci_ref_free(&r);
}

static void test_ref_invalid(void **state)
{
	(void)state;
	char long_tag[200], long_name[300];
	memset(long_tag, 'a', sizeof(long_tag));
	memcpy(long_tag, "x:", 2);
	long_tag[131] = '\0';
	memset(long_name, 'a', sizeof(long_name));
	memcpy(long_name, "r.io/", 5);
	long_name[260] = '\0';
	expect_bad_ref("", "empty");
	expect_bad_ref("Alpine", "lowercase");
	expect_bad_ref("ghcr.io/Org/app", "lowercase");
	expect_bad_ref("app:", "tag");
	expect_bad_ref("app:-bad", "tag");
	expect_bad_ref("app:t@g", NULL);
	expect_bad_ref(long_tag, "tag");
	expect_bad_ref(long_name, "longer");
	expect_bad_ref("app@sha256:abc", "digest");
	expect_bad_ref("app@sha512:" D64 D64, "digest");
	expect_bad_ref("app@sha256:" "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
		       "digest");
	expect_bad_ref("a b", "whitespace");
	expect_bad_ref("app\n", "whitespace");
	expect_bad_ref("héllo", "non-ASCII");
	expect_bad_ref(D64, "image ID");
	expect_bad_ref("reg.io//app", "component");
	expect_bad_ref("reg.io/app/", "component");
	expect_bad_ref("reg.io/-app", "component");
	expect_bad_ref("reg.io/app_", "component");
	expect_bad_ref("reg.io/a___b", "component");
	expect_bad_ref("reg.io/a..b", "component");
	expect_bad_ref("reg.io/../etc", "component");
	expect_bad_ref("-reg.io/app", "host");
	expect_bad_ref("reg-.io/app", "host");
	expect_bad_ref("reg..io/app", "host");
	expect_bad_ref("reg.io:/app", "port");
	expect_bad_ref("reg.io:99999/app", "port");
	expect_bad_ref("reg.io:0/app", "port");
	expect_bad_ref("reg.io:12a/app", "port");
	expect_bad_ref("[zz::1]:5000/app", "IPv6");
	expect_bad_ref("[::1/app", "IPv6");
	expect_bad_ref("/app", NULL);
	expect_bad_ref("a@b@c", NULL);
	/* The message names the input. */
	expect_bad_ref("Bad/Name", "Bad/Name");
}

static void test_digest(void **state)
{
	(void)state;
	assert_true(oci_digest_valid("sha256:" D64));
	assert_false(oci_digest_valid(NULL));
	assert_false(oci_digest_valid("sha256:" D64 "0"));
	assert_false(oci_digest_valid("sha256:0123"));
	assert_false(oci_digest_valid("sha512:" D64));
	assert_false(oci_digest_valid("SHA256:" D64));
	assert_false(oci_digest_valid(D64));
	assert_int_equal(oci_digest_prefix_len("sha256:abcdef012345"), 12);
	assert_int_equal(oci_digest_prefix_len("abc"), 3);
	assert_int_equal(oci_digest_prefix_len(D64), 64);
	assert_int_equal(oci_digest_prefix_len(D64 "0"), -1);
	assert_int_equal(oci_digest_prefix_len("xyz"), -1);
	assert_int_equal(oci_digest_prefix_len(""), -1);
}

static void expect_platform(const char *in, const char *os, const char *arch, const char *var)
{
	struct oci_platform p;
	if (oci_platform_parse(in, &p) < 0)
		fail_msg("'%s' rejected: %s", in, lt_errmsg());
	assert_string_equal(p.os, os);
	assert_string_equal(p.arch, arch);
	assert_string_equal(p.variant, var);
}

static void test_platform_parse(void **state)
{
	(void)state;
	struct oci_platform p;
	expect_platform("linux/amd64", "linux", "amd64", "");
	expect_platform("linux/x86_64", "linux", "amd64", "");
	expect_platform("Linux/AMD64", "linux", "amd64", "");
	expect_platform("linux/amd64/v3", "linux", "amd64", "v3");
	expect_platform("linux/amd64/v1", "linux", "amd64", "");
	expect_platform("linux/arm64", "linux", "arm64", "");
	expect_platform("linux/arm64/v8", "linux", "arm64", "");
	expect_platform("linux/aarch64", "linux", "arm64", "");
	expect_platform("linux/arm", "linux", "arm", "v7");
	expect_platform("linux/arm/6", "linux", "arm", "v6");
	expect_platform("linux/armhf", "linux", "arm", "v7");
	expect_platform("arm64", "linux", "arm64", "");
	expect_platform("windows/amd64", "windows", "amd64", "");
	assert_int_equal(oci_platform_parse("", &p), -1);
	assert_int_equal(oci_platform_parse("linux/", &p), -1);
	assert_int_equal(oci_platform_parse("linux/amd64/v3/x", &p), -1);
	assert_int_equal(oci_platform_parse("linux/am d64", &p), -1);
	assert_int_equal(oci_platform_parse("linux/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &p), -1);
	oci_platform_host(&p);
	assert_string_equal(p.os, "linux");
	assert_true(p.arch[0] != '\0');
}

static struct oci_platform pf(const char *s)
{
	struct oci_platform p;
	assert_int_equal(oci_platform_parse(s, &p), 0);
	return p;
}

static void test_platform_score(void **state)
{
	(void)state;
	struct oci_platform amd = pf("linux/amd64"), arm64 = pf("linux/arm64");
	struct oci_platform v7 = pf("linux/arm/v7"), v6 = pf("linux/arm/v6"), v5 = pf("linux/arm/v5");
	struct oci_platform v3 = pf("linux/amd64/v3"), v2 = pf("linux/amd64/v2");
	assert_int_equal(oci_platform_score(&amd, &amd), 100);
	assert_int_equal(oci_platform_score(&amd, &arm64), 0);
	struct oci_platform a64v8 = pf("linux/arm64/v8");
	assert_int_equal(oci_platform_score(&arm64, &a64v8), 100);
	struct oci_platform win = pf("windows/amd64");
	assert_int_equal(oci_platform_score(&win, &amd), 0);
	/* An arm/v7 host runs v6 and v5 images, preferring the newer. */
	assert_true(oci_platform_score(&v7, &v6) > oci_platform_score(&v7, &v5));
	assert_true(oci_platform_score(&v7, &v7) > oci_platform_score(&v7, &v6));
	assert_int_equal(oci_platform_score(&v6, &v7), 0);
	/* amd64/v3 runs v2 and baseline images; baseline runs only baseline. */
	assert_true(oci_platform_score(&v3, &v2) > oci_platform_score(&v3, &amd));
	assert_true(oci_platform_score(&v3, &amd) > 0);
	assert_int_equal(oci_platform_score(&amd, &v2), 0);
	char buf[64];
	assert_string_equal(oci_platform_string(&v7, buf, sizeof(buf)), "linux/arm/v7");
	assert_string_equal(oci_platform_string(&amd, buf, sizeof(buf)), "linux/amd64");
}

static void test_loopback_policy(void **state)
{
	(void)state;
	assert_true(oci_host_is_loopback("localhost"));
	assert_true(oci_host_is_loopback("LOCALHOST:5000"));
	assert_true(oci_host_is_loopback("127.0.0.1:5000"));
	assert_true(oci_host_is_loopback("127.255.1.2"));
	assert_true(oci_host_is_loopback("[::1]:5000"));
	assert_true(oci_host_is_loopback("::1"));
	assert_true(oci_host_is_loopback("[::ffff:127.0.0.1]:80"));
	assert_false(oci_host_is_loopback("128.0.0.1"));
	assert_false(oci_host_is_loopback("10.0.0.1:5000"));
	assert_false(oci_host_is_loopback("0.0.0.0"));
	assert_false(oci_host_is_loopback("127.evil.com"));
	assert_false(oci_host_is_loopback("localhost.evil.com"));
	assert_false(oci_host_is_loopback("[::2]:5000"));
	assert_false(oci_host_is_loopback("ghcr.io"));
	assert_false(oci_host_is_loopback(""));

	const char *sch[2];
	assert_int_equal(oci_registry_schemes("ghcr.io", false, sch), 1);
	assert_string_equal(sch[0], "https");
	assert_int_equal(oci_registry_schemes("192.168.1.10:5000", false, sch), 1);
	assert_int_equal(oci_registry_schemes("192.168.1.10:5000", true, sch), 2);
	assert_string_equal(sch[1], "http");
	assert_int_equal(oci_registry_schemes("127.0.0.1:5000", false, sch), 2);
	assert_string_equal(sch[0], "https");
	assert_string_equal(sch[1], "http");
	assert_int_equal(oci_registry_schemes("localhost:5000", false, sch), 2);

	assert_string_equal(oci_registry_api_host("docker.io"), "registry-1.docker.io");
	assert_string_equal(oci_registry_api_host("ghcr.io"), "ghcr.io");

	assert_true(oci_url_allowed("https://cdn.example.com/blob", false));
	assert_false(oci_url_allowed("http://cdn.example.com/blob", false));
	assert_true(oci_url_allowed("http://cdn.example.com/blob", true));
	assert_true(oci_url_allowed("http://127.0.0.1:5000/v2/", false));
	assert_true(oci_url_allowed("http://[::1]:5000/v2/", false));
	assert_false(oci_url_allowed("http://127.0.0.1.nip.io/v2/", false));
	assert_false(oci_url_allowed("ftp://127.0.0.1/x", true));
	assert_false(oci_url_allowed("file:///etc/passwd", true));
	assert_false(oci_url_allowed("not a url", true));
}

static void test_retry_delay(void **state)
{
	(void)state;
	assert_int_equal(oci_retry_delay_ms(0, NULL), 250);
	assert_int_equal(oci_retry_delay_ms(1, NULL), 500);
	assert_int_equal(oci_retry_delay_ms(3, NULL), 2000);
	assert_int_equal(oci_retry_delay_ms(10, NULL), 8000);
	assert_int_equal(oci_retry_delay_ms(100, NULL), 8000);
	assert_int_equal(oci_retry_delay_ms(0, "2"), 2000);
	assert_int_equal(oci_retry_delay_ms(0, "0"), 0);
	assert_int_equal(oci_retry_delay_ms(0, "3600"), 30000);
	assert_int_equal(oci_retry_delay_ms(2, "soon"), 1000);
	/* An HTTP date a few seconds ahead. */
	char date[64];
	time_t t = time(NULL) + 5;
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", gmtime(&t));
	long ms = oci_retry_delay_ms(0, date);
	assert_true(ms >= 3000 && ms <= 5000);
	t = time(NULL) - 100;
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", gmtime(&t));
	assert_int_equal(oci_retry_delay_ms(0, date), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ref_docker_normalisation),
		cmocka_unit_test(test_ref_fields),
		cmocka_unit_test(test_ref_invalid),
		cmocka_unit_test(test_digest),
		cmocka_unit_test(test_platform_parse),
		cmocka_unit_test(test_platform_score),
		cmocka_unit_test(test_loopback_policy),
		cmocka_unit_test(test_retry_delay),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
