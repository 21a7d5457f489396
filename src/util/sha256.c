#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

struct lt_sha256 {
	EVP_MD_CTX *ctx;
};

struct lt_sha256 *lt_sha256_new(void)
{
	struct lt_sha256 *h = lt_calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->ctx = EVP_MD_CTX_new();
	if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(h->ctx);
		free(h);
		lt_fail("cannot initialise sha256");
		return NULL;
	}
	return h;
}

int lt_sha256_update(struct lt_sha256 *h, const void *data, size_t n)
{
	if (EVP_DigestUpdate(h->ctx, data, n) != 1)
		return lt_fail("sha256 update failed");
	return 0;
}

int lt_sha256_final(struct lt_sha256 *h, uint8_t out[LT_SHA256_LEN])
{
	unsigned int len = 0;
	if (EVP_DigestFinal_ex(h->ctx, out, &len) != 1 || len != LT_SHA256_LEN)
		return lt_fail("sha256 final failed");
	return 0;
}

void lt_sha256_free(struct lt_sha256 *h)
{
	if (!h)
		return;
	EVP_MD_CTX_free(h->ctx);
	free(h);
}

void lt_hex(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

int lt_sha256_hex(const void *data, size_t n, char out[LT_SHA256_HEX])
{
	uint8_t raw[LT_SHA256_LEN];
	unsigned int len = 0;
	if (EVP_Digest(data, n, raw, &len, EVP_sha256(), NULL) != 1)
		return lt_fail("sha256 failed");
	lt_hex(raw, sizeof(raw), out);
	return 0;
}

int lt_sha256_file_hex(const char *path, char out[LT_SHA256_HEX])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return lt_fail_errno("cannot open %s", path);
	struct lt_sha256 *h = lt_sha256_new();
	if (!h) {
		close(fd);
		return -1;
	}
	uint8_t buf[1 << 16];
	int rc = 0;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = lt_fail_errno("cannot read %s", path);
			break;
		}
		if (n == 0)
			break;
		if ((rc = lt_sha256_update(h, buf, (size_t)n)) < 0)
			break;
	}
	uint8_t raw[LT_SHA256_LEN];
	if (rc == 0 && (rc = lt_sha256_final(h, raw)) == 0)
		lt_hex(raw, sizeof(raw), out);
	lt_sha256_free(h);
	close(fd);
	return rc;
}
