/* libFuzzer target: bytes as OCI layers through the flattener and a writer.
 *
 * Input: one control byte, then layer data. Control bit 0 picks the format
 * (0 ext4, 1 squashfs); bit 1 splits the rest into two layers at the
 * position given by the next two bytes (little endian), so whiteouts,
 * opaque dirs and hardlinks across layers get exercised. Limits are small
 * so every input stays cheap. A build may fail (most inputs are not valid
 * tars); it must never crash, leak or leave its output behind on error.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rootfs/rootfs.h"

static char dir[64];

static int layer_fd(const uint8_t *data, size_t n, char path[64])
{
	int fd = memfd_create("layer", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	if (n && write(fd, data, n) != (ssize_t)n)
		abort();
	snprintf(path, 64, "/proc/self/fd/%d", fd);
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/fuzz-layer.XXXXXX");
		if (!mkdtemp(dir))
			abort();
		lt_log_set_level(LT_LOG_ERROR);
	}
	if (size < 1)
		return 0;
	uint8_t ctl = data[0];
	data++;
	size--;
	size_t split = size;
	if ((ctl & 2) && size >= 2) {
		split = (size_t)(data[0] | data[1] << 8);
		data += 2;
		size -= 2;
		if (split > size)
			split = size;
	}
	char p1[64], p2[64];
	int fd1 = layer_fd(data, split, p1);
	int fd2 = -1;
	const char *layers[2] = {p1, p2};
	size_t n_layers = 1;
	if (ctl & 2) {
		fd2 = layer_fd(data + split, size - split, p2);
		n_layers = 2;
	}
	struct rootfs_inject inj = {.path = "/.lttle/init", .data = "x", .len = 1, .mode = 0755};
	struct rootfs_spec spec = {
		.format = (ctl & 1) ? ROOTFS_SQUASHFS : ROOTFS_EXT4,
		.layers = layers,
		.n_layers = n_layers,
		.injects = &inj,
		.n_injects = 1,
		.limits = {.max_entries = 20000, .max_file_size = 1 << 20,
			   .max_total_size = 4 << 20, .max_metadata = 64 << 20},
	};
	char out[128];
	snprintf(out, sizeof(out), "%s/out.img", dir);
	int rc = rootfs_build(&spec, out, NULL);
	if (rc < 0 && access(out, F_OK) == 0)
		abort(); /* a failed build must leave nothing behind */
	unlink(out);
	close(fd1);
	if (fd2 >= 0)
		close(fd2);
	return 0;
}
