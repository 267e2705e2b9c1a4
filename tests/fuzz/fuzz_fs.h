/* SPDX-License-Identifier: MIT */
/* The record format of the fuzz_fs harness (see fuzz_fs.c), shared with make_seeds.py. */
#ifndef MATCHLOCK_FUZZ_FS_H
#define MATCHLOCK_FUZZ_FS_H

#define FUZZ_FS_OPCODE 0x3f /* op byte: the FUSE opcode */
#define FUZZ_FS_BAD_LEN 0x40 /* op byte: the header's len is one more than the bytes */
#define FUZZ_FS_RAW_NODE 0x80 /* op byte: the node byte is the nodeid itself */
#define FUZZ_FS_PATCH_NODE 0x80 /* patch byte: patch in a learned node id, not an fh */
#define FUZZ_FS_RECORD_HEAD 5 /* op, node, patch, u16 body length */

#endif
