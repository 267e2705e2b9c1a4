/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer: the OCI runtime's config.json and process.json parser (src/host/runtime_config.c)
 * on arbitrary bytes. The first byte picks the document (even: config.json under a policy that
 * honours annotations or, bit 1, one that refuses them; odd: process.json); the rest is the
 * text. Whatever is accepted must be whole: a command, a user, the bounds kept.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "host/runtime_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	const char *text = (const char *)data + 1;
	size_t n = size - 1;
	struct runtime_policy pol;
	struct runtime_config c;
	char err[512];
	runtime_policy_default(&pol);
	pol.annotations = !(mode & 2);
	int r = mode & 1 ? runtime_process_parse(text, n, &c, err, sizeof(err))
			 : runtime_config_parse(text, n, "/", &pol, &c, err, sizeof(err));
	if (r == 0) {
		if (!c.args || !c.args[0] || !c.user[0])
			abort();
		if (!(mode & 1) && (!c.root || c.nmounts > RT_MAX_MOUNTS ||
				    c.nfiles > RT_MAX_FILES || !c.policy || !c.secrets))
			abort();
		runtime_config_fini(&c);
	} else if (!err[0] || memchr(err, 0, sizeof(err)) == NULL) {
		abort();
	}
	char sig[32];
	size_t k = n < sizeof(sig) - 1 ? n : sizeof(sig) - 1;
	memcpy(sig, text, k);
	sig[k] = 0;
	runtime_signal_parse(sig);
	return 0;
}
