/* Guest memory access for device models and the boot builder.
 *
 * Everything the guest controls (addresses, lengths) goes through
 * lt_gmem_ptr, which returns a host pointer only when the whole range lies
 * inside one RAM region. Device models and unit tests share this: a test
 * builds an lt_gmem over a buffer it owns. */
#ifndef LTTLE_VMM_GMEM_H
#define LTTLE_VMM_GMEM_H

#include <stdint.h>
#include <string.h>

#include "vmm/vmm.h"

struct lt_gmem {
	const struct lt_mem_region *r;
	size_t n;
};

static inline void *lt_gmem_ptr(const struct lt_gmem *m, uint64_t gpa, uint64_t len)
{
	for (size_t i = 0; i < m->n; i++) {
		const struct lt_mem_region *r = &m->r[i];
		if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa))
			return r->hva + (gpa - r->gpa);
	}
	return NULL;
}

/* Copies in/out of guest memory; -1 if the range is not RAM. */
static inline int lt_gmem_read(const struct lt_gmem *m, uint64_t gpa, void *dst, uint64_t len)
{
	void *p = lt_gmem_ptr(m, gpa, len);
	if (!p)
		return -1;
	memcpy(dst, p, len);
	return 0;
}

static inline int lt_gmem_write(const struct lt_gmem *m, uint64_t gpa, const void *src, uint64_t len)
{
	void *p = lt_gmem_ptr(m, gpa, len);
	if (!p)
		return -1;
	memcpy(p, src, len);
	return 0;
}

#endif
