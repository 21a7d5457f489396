/* WWW-Authenticate parsing, docker config credentials, base64. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "oci/internal.h"

static void test_bearer(void **state)
{
	(void)state;
	struct oci_challenge c;
	assert_int_equal(oci_auth_parse_challenge(
				 "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
				 "scope=\"repository:library/alpine:pull\"",
				 &c),
			 0);
	assert_string_equal(c.scheme, "bearer");
	assert_string_equal(c.realm, "https://auth.docker.io/token");
	assert_string_equal(c.service, "registry.docker.io");
	assert_string_equal(c.scope, "repository:library/alpine:pull");
	assert_null(c.error);
	oci_challenge_free(&c);
	/* Case-insensitive scheme and names, spaces, a comma inside quotes,
	 * escapes, unknown params, a token value. */
	assert_int_equal(oci_auth_parse_challenge(
				 "bearer  REALM = \"http://127.0.0.1:9/t?a=1\" , x=y,"
				 " scope=\"repository:a/b:pull,push repository:c:pull\", "
				 "service=registry, error=\"insufficient_\\\"scope\\\"\"",
				 &c),
			 0);
	assert_string_equal(c.realm, "http://127.0.0.1:9/t?a=1");
	assert_string_equal(c.scope, "repository:a/b:pull,push repository:c:pull");
	assert_string_equal(c.error, "insufficient_\"scope\"");
	assert_string_equal(c.service, "registry");
	oci_challenge_free(&c);
}

static void test_basic_and_multiple(void **state)
{
	(void)state;
	struct oci_challenge c;
	assert_int_equal(oci_auth_parse_challenge("Basic realm=\"Registry Realm\"", &c), 0);
	assert_string_equal(c.scheme, "basic");
	assert_string_equal(c.realm, "Registry Realm");
	oci_challenge_free(&c);
	assert_int_equal(oci_auth_parse_challenge("Basic", &c), 0);
	assert_string_equal(c.scheme, "basic");
	assert_null(c.realm);
	oci_challenge_free(&c);
	/* Several challenges: Bearer is preferred wherever it appears. */
	assert_int_equal(oci_auth_parse_challenge(
				 "Basic realm=\"x\", Bearer realm=\"https://a/token\",service=\"s\"", &c),
			 0);
	assert_string_equal(c.scheme, "bearer");
	assert_string_equal(c.realm, "https://a/token");
	assert_string_equal(c.service, "s");
	oci_challenge_free(&c);
	assert_int_equal(oci_auth_parse_challenge("Negotiate abc, Basic realm=\"r\"", &c), 0);
	assert_string_equal(c.scheme, "basic");
	oci_challenge_free(&c);
}

static void test_bad_challenges(void **state)
{
	(void)state;
	struct oci_challenge c;
	assert_int_equal(oci_auth_parse_challenge(NULL, &c), -1);
	assert_int_equal(oci_auth_parse_challenge("", &c), -1);
	assert_int_equal(oci_auth_parse_challenge("Negotiate", &c), -1);
	assert_non_null(strstr(lt_errmsg(), "unsupported"));
	assert_int_equal(oci_auth_parse_challenge("Bearer service=\"x\"", &c), -1);
	assert_non_null(strstr(lt_errmsg(), "realm"));
	assert_int_equal(oci_auth_parse_challenge("Bearer realm=\"unterminated", &c), -1);
	assert_int_equal(oci_auth_parse_challenge("Bearer realm=", &c), -1);
	assert_int_equal(oci_auth_parse_challenge("\"Bearer\"", &c), -1);
	assert_int_equal(oci_auth_parse_challenge("Bearer realm=\"a\" junk\"", &c), -1);
	char *huge = malloc(20000);
	memset(huge, 'a', 19999);
	huge[19999] = '\0';
	memcpy(huge, "Bearer realm=\"", 14);
	assert_int_equal(oci_auth_parse_challenge(huge, &c), -1);
	free(huge);
}

static void test_base64(void **state)
{
	(void)state;
	static const struct {
		const char *raw, *enc;
	} v[] = {{"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="},
		 {"user:p@ss:word", "dXNlcjpwQHNzOndvcmQ="}};
	for (size_t i = 0; i < LT_ARRAY_LEN(v); i++) {
		char *e = oci_base64_encode((const uint8_t *)v[i].raw, strlen(v[i].raw));
		assert_string_equal(e, v[i].enc);
		free(e);
		uint8_t *d;
		size_t n;
		assert_int_equal(oci_base64_decode(v[i].enc, &d, &n), 0);
		assert_int_equal(n, strlen(v[i].raw));
		assert_memory_equal(d, v[i].raw, n);
		free(d);
	}
	uint8_t *d;
	size_t n;
	assert_int_equal(oci_base64_decode("Zm9vYg", &d, &n), 0); /* unpadded */
	assert_int_equal(n, 4);
	free(d);
	assert_int_equal(oci_base64_decode("Zm9v\n", &d, &n), 0);
	free(d);
	assert_int_equal(oci_base64_decode("Z", &d, &n), -1);
	assert_int_equal(oci_base64_decode("Zm9v!", &d, &n), -1);
	assert_int_equal(oci_base64_decode("Zm=v", &d, &n), -1);
	assert_int_equal(oci_base64_decode("Zg=", &d, &n), -1);
}

static void expect_creds(const char *json, const char *registry, const char *user,
			 const char *pass)
{
	char *u, *p;
	int rc = oci_docker_auth_parse(json, registry, &u, &p);
	if (!user) {
		assert_int_equal(rc, 1);
		assert_null(u);
		return;
	}
	if (rc != 0)
		fail_msg("%s: rc %d (%s)", registry, rc, lt_errmsg());
	assert_string_equal(u, user);
	assert_string_equal(p, pass);
	free(u);
	free(p);
}

static void test_docker_config(void **state)
{
	(void)state;
	/* alice:secret, bob:pw:with:colons, hub:hubpw */
	static const char cfg[] =
		"{\"auths\":{"
		"\"127.0.0.1:5000\":{\"auth\":\"YWxpY2U6c2VjcmV0\"},"
		"\"https://ghcr.io/v2/\":{\"auth\":\"Ym9iOnB3OndpdGg6Y29sb25z\"},"
		"\"https://index.docker.io/v1/\":{\"auth\":\"aHViOmh1YnB3\"},"
		"\"plain.example\":{\"username\":\"carol\",\"password\":\"pw\"},"
		"\"empty.example\":{}"
		"},\"credsStore\":\"desktop\"}";
	expect_creds(cfg, "127.0.0.1:5000", "alice", "secret");
	expect_creds(cfg, "ghcr.io", "bob", "pw:with:colons");
	expect_creds(cfg, "docker.io", "hub", "hubpw");
	expect_creds(cfg, "plain.example", "carol", "pw");
	expect_creds(cfg, "empty.example", NULL, NULL);
	expect_creds(cfg, "127.0.0.1:5001", NULL, NULL);
	expect_creds(cfg, "127.0.0.1", NULL, NULL);
	expect_creds(cfg, "other.io", NULL, NULL);
	/* An exact key wins over a Docker Hub alias. */
	static const char two[] = "{\"auths\":{\"index.docker.io\":{\"auth\":\"YTpi\"},"
				  "\"docker.io\":{\"auth\":\"Yzpk\"}}}";
	expect_creds(two, "docker.io", "c", "d");
	expect_creds("{}", "docker.io", NULL, NULL);
	char *u, *p;
	assert_int_equal(oci_docker_auth_parse("{\"auths\":{\"r\":{\"auth\":\"!!\"}}}", "r", &u, &p), -1);
	assert_int_equal(oci_docker_auth_parse("{\"auths\":{\"r\":{\"auth\":\"bm9jb2xvbg==\"}}}", "r",
					       &u, &p),
			 -1);
	assert_non_null(strstr(lt_errmsg(), "user:password"));
	assert_int_equal(oci_docker_auth_parse("{", "r", &u, &p), -1);
	assert_non_null(strstr(lt_errmsg(), "malformed"));
}

static void test_docker_config_file(void **state)
{
	(void)state;
	char dir[] = "/tmp/lttle-dockercfg.XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[128];
	snprintf(path, sizeof(path), "%s/config.json", dir);
	setenv("DOCKER_CONFIG", dir, 1);
	char *u, *p;
	assert_int_equal(oci_docker_auth_lookup("127.0.0.1:5000", &u, &p), 1);
	const char *cfg = "{\"auths\":{\"127.0.0.1:5000\":{\"auth\":\"YWxpY2U6c2VjcmV0\"}}}";
	assert_int_equal(lt_write_file_atomic(path, cfg, strlen(cfg), 0600), 0);
	assert_int_equal(oci_docker_auth_lookup("127.0.0.1:5000", &u, &p), 0);
	assert_string_equal(u, "alice");
	assert_string_equal(p, "secret");
	free(u);
	free(p);
	assert_int_equal(lt_write_file_atomic(path, "{oops", 5, 0600), 0);
	assert_int_equal(oci_docker_auth_lookup("127.0.0.1:5000", &u, &p), -1);
	assert_non_null(strstr(lt_errmsg(), path));
	/* Without DOCKER_CONFIG: $HOME/.docker/config.json. */
	unsetenv("DOCKER_CONFIG");
	char home[160];
	snprintf(home, sizeof(home), "%s/.docker", dir);
	assert_int_equal(lt_mkdir_p(home, 0700), 0);
	snprintf(path, sizeof(path), "%s/.docker/config.json", dir);
	assert_int_equal(lt_write_file_atomic(path, cfg, strlen(cfg), 0600), 0);
	setenv("HOME", dir, 1);
	assert_int_equal(oci_docker_auth_lookup("127.0.0.1:5000", &u, &p), 0);
	assert_string_equal(u, "alice");
	free(u);
	free(p);
	lt_rm_rf(dir);
}

int main(void)
{
	lt_log_set_level(LT_LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bearer),
		cmocka_unit_test(test_basic_and_multiple),
		cmocka_unit_test(test_bad_challenges),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_docker_config),
		cmocka_unit_test(test_docker_config_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
