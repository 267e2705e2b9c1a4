/* SPDX-License-Identifier: MIT */
/*
 * Messages carried inside mux frames: the OPEN services, the CTL message types, and the TLV
 * encoding of their fields (u16 tag, u32 length, bytes; little-endian). Unknown tags are
 * skipped, so either side can add fields without breaking the other; limits below bound what a
 * hostile peer can make the reader allocate.
 */
#ifndef MATCHLOCK_MSG_H
#define MATCHLOCK_MSG_H

#include <stdint.h>

#include "../common/buf.h"

/* OPEN services (first u16 of an OPEN payload). */
enum msg_service {
	SVC_EXEC = 1, /* host -> guest: run a process; chan IN = stdin, OUT/ERR = output */
	/*
	 * guest -> host: one redirected TCP connection; body T_ADDR + T_PORT (original
	 * destination). chan IN = bytes towards the destination, OUT = bytes back; EOF on a chan is
	 * a half-close. The host closes with ECONNREFUSED when policy denies (the agent resets).
	 */
	SVC_TCP = 2,
	SVC_FILE_WRITE, /* host -> guest: T_PATH, T_MODE, T_APPEND; chan IN = content; CTL_EXIT */
	SVC_FILE_READ, /* host -> guest: T_PATH, T_OFFSET, T_LENGTH; chan OUT = content; CTL_EXIT */
	SVC_FILE_LIST, /* host -> guest: T_PATH; chan OUT = records (u32 length + TLVs T_NAME,
			  T_SIZE, T_MODE, T_TIME_NS); ends with CTL_EXIT */
	SVC_PORT, /* host -> guest: T_PORT; a connection to that port on the guest's loopback.
		     chan IN = bytes to it, OUT = bytes back (port forwarding) */
	/*
	 * guest -> host, on the file-service link (the virtio port "matchlock.fs", a mux of its own
	 * that carries nothing else; agent/fuse.c says why): the FUSE connection of one host-folder
	 * mount; body T_SHARE (the mount's index in CTL_CONFIG's T_MOUNT list), at most one stream
	 * per share. chan IN = records `u32 LE length + raw FUSE request` (as read from
	 * /dev/fuse), chan OUT = records `u32 LE length + raw FUSE reply`; a record is at most
	 * MSG_FS_MAX_RECORD bytes, a longer one fails the stream. Many requests are in flight at
	 * once; replies come in any order (the FUSE header's unique matches them). The host closes
	 * with ENOENT for a share it does not have, EBUSY for one already served.
	 */
	SVC_FS,
	/*
	 * host -> guest: a tree as a tree stream (proto/tree.h) on chan OUT; body T_PATH and
	 * T_FLAGS (TREE_OVERLAY, TREE_NO_DATA; TREE_UPPER with T_SHARE instead of T_PATH: the upper
	 * layer of that overlay mount). Ends with CTL_EXIT or CTL_ERROR.
	 */
	SVC_TREE_PACK,
	/*
	 * host -> guest: chan IN = a tree stream unpacked at T_PATH the way `docker cp` does;
	 * T_NAME = the source's last name, T_FLAGS (TREE_CONTENTS). Ends with CTL_EXIT or
	 * CTL_ERROR.
	 */
	SVC_TREE_UNPACK,
};

/* CTL message types (first u16 of a CTL payload). */
enum msg_ctl {
	CTL_HELLO = 1, /* guest -> host on stream 0: T_VERSION, T_BOOT_NS, T_READY_NS */
	CTL_CONFIG, /* host -> guest on stream 0: T_HOSTNAME, T_TIME_NS, T_SEED, T_CPU_MILLI, T_NET,
		       T_HOSTS_LINE, T_CA_PEM, T_MOUNT, T_VOLUME */
	/*
	 * guest -> host on stream 0: config applied (mounts included). A config the guest cannot
	 * apply (a mount that failed) is answered with CTL_ERROR instead, T_MESSAGE saying why.
	 */
	CTL_READY,
	CTL_POWEROFF, /* host -> guest on stream 0: stop everything, power off */
	CTL_ERROR, /* either way: T_ERRNO, T_MESSAGE (stream 0: the link is closing) */
	CTL_RESIZE, /* host -> guest on an exec stream: T_ROWS, T_COLS */
	CTL_SIGNAL, /* host -> guest on an exec stream: T_SIGNAL (to the process group) */
	CTL_EXIT, /* guest -> host on an exec stream: T_EXIT_CODE or T_EXIT_SIGNAL */
	CTL_DNS_QUERY, /* guest -> host on stream 0: T_DNS_TAG, T_DNS_MSG (one DNS message) */
	CTL_DNS_REPLY, /* host -> guest on stream 0: T_DNS_TAG, T_DNS_MSG */
	CTL_END,
};

enum msg_tag {
	T_VERSION = 1, /* u32 */
	T_BOOT_NS, /* u64: guest CLOCK_BOOTTIME when the agent started */
	T_READY_NS, /* u64: guest CLOCK_BOOTTIME when the agent said hello */
	T_HOSTNAME, /* string */
	T_ARGV, /* string, repeated in order */
	T_ENV, /* "KEY=VALUE", repeated */
	T_CWD, /* string */
	T_USER, /* "name", "uid", "name:group" or "uid:gid" */
	T_ROWS, /* u16 */
	T_COLS, /* u16 */
	T_TTY, /* u8: allocate a PTY */
	T_STDIN, /* u8: stdin is streamed (else /dev/null) */
	T_SIGNAL, /* u32 */
	T_EXIT_CODE, /* u32 */
	T_EXIT_SIGNAL, /* u32 */
	T_ERRNO, /* u32 */
	T_MESSAGE, /* string */
	T_TIME_NS, /* u64: wall clock, CLOCK_REALTIME */
	T_TIMEOUT_S, /* u32: seconds */
	T_CPU_MILLI, /* u32: CPU quota in thousandths of a CPU (only when fractional) */
	T_PATH, /* string */
	T_MODE, /* u32: st_mode bits */
	T_NAME, /* string */
	T_SIZE, /* u64 */
	T_APPEND, /* u8: file write appends instead of truncating */
	T_OFFSET, /* u64: file read starts here */
	T_LENGTH, /* u64: file read returns at most this much */
	T_LOCAL_PORT, /* u16: a port on the host (control socket: port forwarding) */
	T_ADDR_TEXT, /* string: an address as text (control socket: port forwarding) */
	T_SEED, /* bytes in CTL_CONFIG: fresh entropy for the guest's RNG (clones must differ) */
	T_NET, /* u8 in CTL_CONFIG: 1 = set up the redirected network, 0 = loopback only */
	T_HOSTS_LINE, /* string in CTL_CONFIG: "ADDR NAME", repeated, for the guest's /etc/hosts */
	T_ADDR, /* 4 or 16 bytes, network order */
	T_PORT, /* u16 */
	T_DNS_TAG, /* u32: matches a reply to its query */
	T_DNS_MSG, /* bytes: a DNS message without the TCP length prefix */
	T_CA_PEM, /* string in CTL_CONFIG: the sandbox CA certificate (PEM) for the trust stores */
	/*
	 * string in CTL_CONFIG, repeated: one host-folder mount, "INDEX MODE GUESTPATH" -- INDEX
	 * the share's number for SVC_FS (0, 1, ... in order), MODE ro, rw or overlay, GUESTPATH
	 * absolute and normalised (it may contain spaces: it is the rest of the string).
	 */
	T_MOUNT,
	T_SHARE, /* u32 in SVC_FS's OPEN: the share's index */
	T_KIND, /* u8 in a tree stream record: enum tree_kind */
	T_LINK, /* string in a tree stream record: a symlink's target */
	T_OPAQUE, /* u8 in a tree stream record: an overlay directory hiding what was below */
	T_FLAGS, /* u32: SVC_TREE_PACK / SVC_TREE_UNPACK flags (proto/tree.h) */
	/*
	 * string in CTL_CONFIG, repeated: one named volume, "INDEX MODE GUESTPATH" -- the disk
	 * whose serial is MSG_VOLUME_SERIAL INDEX, MODE ro or rw, GUESTPATH as in T_MOUNT.
	 */
	T_VOLUME,
	/*
	 * 20 bytes in an exec request, repeated: a resource limit for the process, u32 resource
	 * (RLIMIT_*), u64 soft, u64 hard, little endian (the OCI runtime's process.rlimits). A
	 * value of its own, clear of the tags other branches append.
	 */
	T_RLIMIT = 0x78,
};

/*
 * The virtio-blk serials the guest finds its disks by (/sys/block/vdX/serial): the image (read
 * only), the sandbox's writable disk (ext4, empty: the root overlay's upper and the overlay
 * mounts' uppers), and volume INDEX ("vol" INDEX).
 */
#define MSG_ROOT_SERIAL "ml-root"
#define MSG_DISK_SERIAL "ml-disk"
#define MSG_VOLUME_SERIAL "ml-vol"
#define MSG_MAX_VOLUMES 8 /* T_VOLUME entries in one CTL_CONFIG (virtio-blk devices) */

/* Where the agent puts the sandbox CA: alone, and with the image's system CAs. */
#define GUEST_CA_FILE "/etc/ssl/matchlock-ca.pem"
#define GUEST_CA_BUNDLE "/etc/ssl/matchlock-bundle.pem"

#define MSG_MAX_DNS 4096 /* largest DNS message carried over the link */

/*
 * SVC_FS: the largest FUSE write the guest mounts with (max_write, max_read), and the largest
 * record either way: one such write (or read reply) plus FUSE's headers, as the kernel sizes
 * the /dev/fuse read buffer. The host's file server (src/fs/share.h) stays within it.
 */
#define MSG_FS_MAX_WRITE (128u * 1024)
#define MSG_FS_MAX_RECORD (MSG_FS_MAX_WRITE + 4096)
#define MSG_MAX_MOUNTS 16 /* T_MOUNT entries in one CTL_CONFIG */

#define MSG_MAX_ARGS 4096
#define MSG_MAX_ENV 4096
#define MSG_MAX_STR 4096 /* paths, names, messages */

/*
 * Append one TLV. A failure leaves b bad (buf.h): encode a whole message, then test b->bad
 * once; the return values are there for callers that stop early.
 */
int msg_put_tlv(struct buf *b, uint16_t tag, const void *p, uint32_t len);
int msg_put_str(struct buf *b, uint16_t tag, const char *s);
int msg_put_u8(struct buf *b, uint16_t tag, uint8_t v);
int msg_put_u16(struct buf *b, uint16_t tag, uint16_t v);
int msg_put_u32(struct buf *b, uint16_t tag, uint32_t v);
int msg_put_u64(struct buf *b, uint16_t tag, uint64_t v);

/*
 * Read the next TLV: returns 1 with *tag and *val (a cursor over the value) set, 0 at the end, or
 * -EPROTO if the remaining bytes are not a whole TLV.
 */
int msg_next(struct rd *r, uint16_t *tag, struct rd *val);
/* Copy a string value into a new NUL-terminated allocation; rejects embedded NULs and > max. */
int msg_dup_str(struct rd *val, size_t max, char **out);
/* Read a fixed-width value; -EPROTO if the length is wrong. */
int msg_get_u8(struct rd *val, uint8_t *v);
int msg_get_u16(struct rd *val, uint16_t *v);
int msg_get_u32(struct rd *val, uint32_t *v);
int msg_get_u64(struct rd *val, uint64_t *v);

#endif
