/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer: the tar-path sanitiser and the WWW-Authenticate parser. A cleaned path must never be
 * absolute, never contain a ".." or "." component or an empty one, and always fit its buffer.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/auth.h"
#include "oci/unpack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char in[OCI_MAX_PATH + 64], out[OCI_MAX_PATH + 1];
	size_t n = size < sizeof(in) - 1 ? size : sizeof(in) - 1;
	memcpy(in, data, n);
	in[n] = 0;
	if (oci_tar_path_clean(in, out, sizeof(out)) == 0) {
		if (out[0] == '/' || !out[0] || strlen(out) > OCI_MAX_PATH)
			abort();
		for (char *p = out;;) {
			char *e = strchr(p, '/');
			size_t cl = e ? (size_t)(e - p) : strlen(p);
			if (cl == 0 || (cl == 1 && p[0] == '.') ||
			    (cl == 2 && p[0] == '.' && p[1] == '.'))
				abort();
			if (!e)
				break;
			p = e + 1;
		}
	}
	struct oci_challenge c;
	oci_challenge_parse((const char *)data, size, &c);
	return 0;
}
