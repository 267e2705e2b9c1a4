/* SPDX-License-Identifier: MIT */
/* libFuzzer: manifest/index/config JSON, and the platform choice, on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "oci/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct oci_manifest m;
	struct oci_image_config c;
	char err[256];
	if (oci_manifest_parse(data, size,
			       size & 1 ? "application/vnd.oci.image.index.v1+json" : NULL, &m, err,
			       sizeof(err)) == 0) {
		if (m.kind == OCI_KIND_INDEX)
			oci_index_choose(&m, OCI_OS, OCI_ARCH, err, sizeof(err));
		for (size_t i = 0; i < m.n; i++)
			if (!oci_digest_valid(m.entries[i].digest) ||
			    m.entries[i].size > OCI_MAX_BLOB_BYTES)
				abort();
		oci_manifest_fini(&m);
	}
	if (oci_config_parse(data, size, &c, err, sizeof(err)) == 0) {
		char *none[] = { NULL };
		free(oci_config_argv(&c, NULL, none));
		oci_config_fini(&c);
	}
	return 0;
}
