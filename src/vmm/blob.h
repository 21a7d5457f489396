/* Versioned state blobs: "LTST" magic, u16 version, u16 kind, u32 payload
 * length, then records (u32 tag, u32 len, bytes). Little-endian (x86). */
#ifndef LTTLE_VMM_BLOB_H
#define LTTLE_VMM_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

#define LT_BLOB_MAGIC 0x5453544cU /* "LTST" */
#define LT_BLOB_HDR 12

/* Writer: begin reserves the header, end patches the length. */
int lt_blob_begin(struct lt_buf *b, uint16_t kind, uint16_t version, size_t *start);
int lt_blob_end(struct lt_buf *b, size_t start);
int lt_blob_put(struct lt_buf *b, uint32_t tag, const void *data, uint32_t len);
int lt_blob_put_u64(struct lt_buf *b, uint32_t tag, uint64_t v);

/* Reader over one blob. */
struct lt_blob_reader {
	const uint8_t *p;
	size_t len;
	uint16_t version;
};
/* Verifies the header (kind, version <= max_version, length). */
int lt_blob_open(struct lt_blob_reader *r, const void *blob, size_t n, uint16_t kind,
		 uint16_t max_version, const char *what);
/* Finds the nth (0-based) record with tag; NULL if absent. */
const void *lt_blob_find(const struct lt_blob_reader *r, uint32_t tag, uint32_t nth,
			 uint32_t *len);
/* Copies a record of exactly len bytes; fails naming what. */
int lt_blob_get(const struct lt_blob_reader *r, uint32_t tag, uint32_t nth, void *out,
		uint32_t len, const char *what);
int lt_blob_get_u64(const struct lt_blob_reader *r, uint32_t tag, uint64_t *v, const char *what);

#endif
