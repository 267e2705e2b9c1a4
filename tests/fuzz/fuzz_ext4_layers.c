/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer: an image layer as a hostile registry would send it, read and merged into the tree
 * the ext4 writer builds (src/oci/unpack.c + src/oci/ext4_layers.c), applied twice over itself so
 * whiteouts, opaque directories, replacements and hard links meet a populated tree. Nothing is
 * written (dst NULL): the writer's input is the tree, judged here.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "oci/ext4.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	if (fd < 0) {
		fd = memfd_create("layer", MFD_CLOEXEC);
		if (fd < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	struct oci_ext4_layer layers[2] = { { path, "layer 0" }, { path, "layer 1" } };
	char err[512];
	oci_ext4_from_layers(layers, 2, size % 2 == 0, "fuzz", NULL, err, sizeof(err));
	return 0;
}
