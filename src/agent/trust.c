/* SPDX-License-Identifier: MIT */
/*
 * Install the sandbox CA (a certificate, never a key) where TLS clients of common images look:
 * appended to the system bundles of Debian/Ubuntu, Alpine and Fedora/RHEL layouts (the Debian one
 * is created when the image has none), alone in GUEST_CA_FILE, and GUEST_CA_BUNDLE pointing at a
 * bundle holding it plus the image's CAs (what SSL_CERT_FILE and friends name).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "common/log.h"
#include "common/util.h"
#include "proto/msg.h"

static int write_file(const char *path, const char *text, bool append)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0644);
	if (fd < 0)
		return -errno;
	int r = 0;
	if (append)
		r = write_all(fd, "\n", 1);
	if (r >= 0)
		r = write_all(fd, text, strlen(text));
	close(fd);
	return r;
}

/*
 * Where each bundle ended before our first append: a later config (a pool's standby claimed,
 * pool.h on the host) replaces the CA instead of adding one, so no earlier CA stays trusted.
 */
static off_t bundle_base[3] = { -1, -1, -1 };

int trust_install_ca(const char *pem)
{
	static const char *const bundles[] = { "/etc/ssl/certs/ca-certificates.crt",
					       "/etc/ssl/cert.pem",
					       "/etc/pki/tls/certs/ca-bundle.crt" };
	struct stat seen[3];
	unsigned nseen = 0;
	const char *first = NULL;
	mkdir_p("/etc/ssl/certs", 0755);
	int r = write_file(GUEST_CA_FILE, pem, false);
	if (r < 0)
		warn("cannot write %s: %s", GUEST_CA_FILE, strerror(-r));
	for (size_t i = 0; i < sizeof(bundles) / sizeof(bundles[0]); i++) {
		struct stat st;
		if (stat(bundles[i], &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		bool dup = false; /* Alpine's cert.pem links to ca-certificates.crt: append once */
		for (unsigned k = 0; k < nseen; k++)
			dup |= seen[k].st_dev == st.st_dev && seen[k].st_ino == st.st_ino;
		if (!first)
			first = bundles[i];
		if (dup)
			continue;
		seen[nseen++] = st;
		if (bundle_base[i] < 0)
			bundle_base[i] = st.st_size;
		else if (truncate(bundles[i], bundle_base[i]) < 0)
			warn("cannot replace the sandbox CA in %s: %s", bundles[i],
			     strerror(errno));
		if ((r = write_file(bundles[i], pem, true)) < 0)
			warn("cannot add the sandbox CA to %s: %s", bundles[i], strerror(-r));
	}
	if (!first) {
		first = bundles[0];
		bundle_base[0] = 0; /* ours: a later CA replaces it */
		if ((r = write_file(first, pem, false)) < 0)
			warn("cannot write %s: %s", first, strerror(-r));
	}
	unlink(GUEST_CA_BUNDLE);
	if (symlink(first, GUEST_CA_BUNDLE) < 0)
		warn("cannot link %s: %s", GUEST_CA_BUNDLE, strerror(errno));
	return 0;
}
