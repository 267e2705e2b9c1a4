/* SPDX-License-Identifier: MIT */
/*
 * OCI images, the public face of src/oci: pull from a registry, import a tarball, list/remove/
 * collect, and turn an image into the read-only root disk a sandbox boots, with its config.
 * Every function returns 0 or -errno with one line in err saying what failed and what to do.
 */
#ifndef MATCHLOCK_OCI_H
#define MATCHLOCK_OCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "manifest.h" /* struct oci_image_config, oci_config_argv(), oci_config_fini() */

/* The image `run` uses when given neither --image nor --rootfs (scripts/default-image.sh). */
#define OCI_DEFAULT_IMAGE "matchlock/default"

/*
 * Plain HTTP is used only for loopback registries and those in this comma-separated list
 * (--insecure-registry, or $MATCHLOCK_INSECURE_REGISTRY); NULL for none. arch is the OCI
 * architecture wanted ("amd64", "arm64"): a multi-arch image's variant is chosen by it, and a
 * single-arch image of another one is refused (-ENOEXEC).
 */
int oci_pull(const char *ref, const char *insecure, const char *arch, char digest[72], char *err,
	     size_t errn);

/*
 * Resolve ref (a local tag first, else pulled) for architecture arch, build or reuse its
 * read-only ext4 (one per image digest, so a second call does no unpacking), write its path to
 * disk and the image config to cfg (free with oci_config_fini()). A local image of another
 * architecture is pulled again when it came from a registry, else refused (-ENOEXEC, err names
 * both).
 */
int oci_image_prepare(const char *ref, const char *arch, char *disk, size_t n,
		      struct oci_image_config *cfg, char *err, size_t errn);

/*
 * The same, only for an image that is local and built: -EAGAIN (err empty) when it would have
 * to pull or build, which oci_image_prepare then does (in a worker, so nothing waits for it).
 */
int oci_image_open(const char *ref, const char *arch, char *disk, size_t n,
		   struct oci_image_config *cfg, char *err, size_t errn);
/* Remove what process pid, killed while pulling, importing or building, left half-written. */
void oci_sweep_writer(pid_t pid);
/* Import a `docker save` archive or an OCI-layout tarball (optionally gzip/zstd) from fd as tag. */
int oci_image_import(const char *tag, int fd, char digest[72], char *err, size_t errn);

/* Print `TAG SOURCE SIZE CREATED` lines. */
int oci_image_list(FILE *out, char *err, size_t errn);
/* Untag ref (a name or a manifest digest) and collect what nothing uses any more. */
int oci_image_rm(const char *ref, uint64_t *freed, unsigned *nblobs, char *err, size_t errn);
int oci_image_gc(uint64_t *freed, unsigned *nblobs, char *err, size_t errn);

#endif
