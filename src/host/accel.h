/* SPDX-License-Identifier: MIT */
/* Choosing the accelerator: KVM only where it can boot a normal kernel, else TCG. */
#ifndef MATCHLOCK_ACCEL_H
#define MATCHLOCK_ACCEL_H

#include <stddef.h>

#include "arch.h"

enum accel { ACCEL_TCG, ACCEL_KVM, ACCEL_END };
extern const char *const accel_names[ACCEL_END];

/*
 * want: "auto", "kvm" or "tcg", for a guest of architecture arch (KVM runs only the host's own).
 * Sets *out and a one-line reason in why. Returns 0, or -EINVAL for an unknown name, or -ENODEV
 * when "kvm" was asked for and cannot work (why says why).
 */
int accel_choose(const char *want, enum guest_arch arch, enum accel *out, char *why, size_t n);

#endif
