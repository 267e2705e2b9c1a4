/* SPDX-License-Identifier: MIT */
/*
 * matchlock cp SRC DEST (one of them ID:PATH) and matchlock diff ID [--apply [--to DIR]]: trees
 * between the host and a running sandbox, and the changes of its overlay mounts. The trees
 * travel as the tree stream (proto/tree.h) through a pipe handed to the supervisor over the
 * control socket, which relays it to the agent's SVC_TREE_* services under flow control: any
 * size, bounded memory. What comes out of the guest is hostile; it is parsed and written here,
 * as the invoking user, with every write beneath the destination (tree.c says how).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cli.h"
#include "common/log.h"
#include "common/util.h"
#include "control.h"
#include "proto/msg.h"
#include "proto/tree.h"

#define CP_CHUNK (64 * 1024)

static const char cp_usage[] =
    "usage: matchlock cp [--] SRC DEST\n"
    "\n"
    "Copy a file or directory between the host and a running sandbox; one of SRC and DEST is\n"
    "ID:PATH (ID or a unique prefix; PATH absolute), the other a host path. Like `docker cp`:\n"
    "DEST an existing directory receives SRC by its name (SRC/. : SRC's entries); otherwise\n"
    "DEST is created or replaced. Modes, modification times and symlinks are kept.\n";

static const char diff_usage[] =
    "usage: matchlock diff ID [GUEST_PATH] [--apply [--to HOST_DIR]]\n"
    "\n"
    "List what the sandbox changed in its overlay mounts (-v HOST:GUEST, the default mode):\n"
    "A added, C changed, D deleted, one path a line. GUEST_PATH picks one mount.\n"
    "\n"
    "  --apply        write the changes into the mount's host folder (the folder is untouched\n"
    "                 until then): added and changed files are copied, deletions applied\n"
    "  --to HOST_DIR  apply to HOST_DIR instead (one mount)\n";

/* "ID:PATH" names a sandbox path; a host path with a colon is written ./a:b. */
static bool split_ref(const char *arg, char *id, size_t idn, const char **path)
{
	const char *colon = strchr(arg, ':');
	const char *slash = strchr(arg, '/');
	if (!colon || colon == arg || (slash && slash < colon) || (size_t)(colon - arg) >= idn)
		return false;
	memcpy(id, arg, (size_t)(colon - arg));
	id[colon - arg] = 0;
	*path = colon + 1;
	return true;
}

/* The supervisor's answer to a tree request: 0, or -EIO with its message in err. */
static int tree_reply(int fd, char *err, size_t errn)
{
	uint8_t msg[4096];
	int fds[3], nfds = 0;
	ssize_t n = control_recv(fd, msg, sizeof(msg), fds, &nfds);
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	if (n < 2) {
		snprintf(err, errn, "the sandbox stopped");
		return -EIO;
	}
	struct rd r = rd_make(msg, (size_t)n), v;
	if (rd_u16(&r) == CTRL_OK)
		return 0;
	uint16_t tag;
	snprintf(err, errn, "refused");
	while (msg_next(&r, &tag, &v) > 0) {
		char *s = NULL;
		if (tag == T_MESSAGE && msg_dup_str(&v, 1000, &s) == 0) {
			snprintf(err, errn, "%s", s);
			free(s);
		}
	}
	return -EIO;
}

/* Ask for a tree out of the guest; returns the read end of its stream, or -errno with err. */
static int tree_request_pack(int fd, const char *path, uint32_t flags, uint32_t share, char *err,
			     size_t errn)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		snprintf(err, errn, "pipe: %s", strerror(errno));
		return -errno;
	}
	struct buf b = { 0 };
	buf_put_u16(&b, CTRL_TREE_PACK);
	if (path)
		msg_put_str(&b, T_PATH, path);
	msg_put_u32(&b, T_FLAGS, flags);
	msg_put_u32(&b, T_SHARE, share);
	int r = control_send(fd, &b, &p[1], 1);
	buf_fini(&b);
	close(p[1]);
	if (r < 0) {
		close(p[0]);
		snprintf(err, errn, "the sandbox's supervisor did not take the request");
		return r;
	}
	return p[0];
}

/* Feed a tree stream from in to fn until EOF or fn's error. */
static int tree_drain(int in, int (*fn)(void *o, const uint8_t *p, size_t n), void *o)
{
	static uint8_t chunk[CP_CHUNK];
	for (;;) {
		ssize_t n = read(in, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : 0;
		int r = fn(o, chunk, (size_t)n);
		if (r < 0)
			return r;
	}
}

static int feed_unpack(void *o, const uint8_t *p, size_t n)
{
	return tree_unpack_feed(o, p, n);
}

/*
 * Unpack a guest tree at dest (host): the stream's failure, the guest's, or the supervisor's,
 * whichever explains it best, goes to err.
 */
static int unpack_from_guest(int fd, const char *gpath, uint32_t pflags, uint32_t share,
			     const char *dest, const char *base, unsigned uflags, char *err,
			     size_t errn)
{
	int in = tree_request_pack(fd, gpath, pflags, share, err, errn);
	if (in < 0)
		return in;
	struct tree_unpack *u = calloc(1, sizeof(*u));
	int r = u ? tree_unpack_init(u, dest, base, uflags) : -ENOMEM;
	if (r == 0)
		r = tree_drain(in, feed_unpack, u);
	close(in);
	if (r < 0 && u && u->err[0]) {
		/*
		 * We refused the stream (a bad record, a write that failed here): say so at once.
		 * Leaving closes the control connection, which cancels the transfer in the guest.
		 */
		snprintf(err, errn, "%s", u->err);
		tree_unpack_fini(u);
		free(u);
		return r;
	}
	char guest_err[1200] = "";
	int g = tree_reply(fd, guest_err, sizeof(guest_err));
	if (g < 0) {
		/* The guest's reason (no such path) explains a short stream best. */
		snprintf(err, errn, "%s", guest_err);
		r = g;
	} else if (r == 0 && (r = tree_unpack_finish(u)) < 0) {
		snprintf(err, errn, "%s", u->err);
	} else if (r < 0) {
		snprintf(err, errn, "%s", u && u->err[0] ? u->err : strerror(-r));
	}
	if (u)
		tree_unpack_fini(u);
	free(u);
	return r;
}

/* Pack a host tree into the guest at dest. */
static int pack_to_guest(int fd, const char *src, const char *dest, char *err, size_t errn)
{
	char base[256];
	bool contents;
	struct tree_pack *pk = calloc(1, sizeof(*pk));
	if (!pk)
		return -ENOMEM;
	int r = tree_src_base(src, base, sizeof(base), &contents);
	if (r < 0 || (r = tree_pack_open(pk, src, 0)) < 0) {
		snprintf(err, errn, "%s", pk->err[0] ? pk->err : strerror(-r));
		tree_pack_close(pk);
		free(pk);
		return r;
	}
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		r = -errno;
		snprintf(err, errn, "pipe: %s", strerror(errno));
		tree_pack_close(pk);
		free(pk);
		return r;
	}
	struct buf b = { 0 };
	buf_put_u16(&b, CTRL_TREE_UNPACK);
	msg_put_str(&b, T_PATH, dest);
	msg_put_str(&b, T_NAME, base);
	msg_put_u32(&b, T_FLAGS, contents ? TREE_CONTENTS : 0);
	r = control_send(fd, &b, &p[0], 1);
	buf_fini(&b);
	close(p[0]);
	if (r < 0)
		snprintf(err, errn, "the sandbox's supervisor did not take the request");
	static uint8_t chunk[CP_CHUNK];
	while (r == 0) {
		ssize_t n = tree_pack_read(pk, chunk, sizeof(chunk));
		if (n <= 0) {
			if (n < 0) {
				r = (int)n;
				snprintf(err, errn, "%s", pk->err);
			}
			break;
		}
		/* EPIPE: the guest gave up (its reason comes in the reply). */
		if (write_all(p[1], chunk, (size_t)n) < 0)
			break;
	}
	close(p[1]);
	tree_pack_close(pk);
	free(pk);
	char guest_err[1200];
	int g = tree_reply(fd, guest_err, sizeof(guest_err));
	if (r == 0 && g < 0) {
		snprintf(err, errn, "%s", guest_err);
		r = g;
	}
	return r;
}

int cmd_cp(int argc, char **argv)
{
	int i = 1;
	if (i < argc && (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))) {
		fputs(cp_usage, stdout);
		return 0;
	}
	if (i < argc && !strcmp(argv[i], "--"))
		i++;
	if (argc - i != 2) {
		fputs(cp_usage, stderr);
		return EXIT_MATCHLOCK;
	}
	const char *src = argv[i], *dest = argv[i + 1], *gsrc = NULL, *gdest = NULL;
	char sid[64], did[64], id[64], err[8800] = "";
	bool from = split_ref(src, sid, sizeof(sid), &gsrc);
	bool to = split_ref(dest, did, sizeof(did), &gdest);
	if (from == to) {
		error("cp: exactly one of SRC and DEST must be ID:PATH (a sandbox path)");
		return EXIT_MATCHLOCK;
	}
	const char *gpath = from ? gsrc : gdest;
	if (gpath[0] != '/') {
		error("cp: %s: the sandbox path must be absolute", from ? src : dest);
		return EXIT_MATCHLOCK;
	}
	signal(SIGPIPE, SIG_IGN);
	int fd = cli_connect_sandbox(from ? sid : did, id, sizeof(id), err, sizeof(err));
	if (fd < 0) {
		error("cp: %s", err);
		return EXIT_MATCHLOCK;
	}
	int r;
	if (from) {
		char base[256];
		bool contents;
		r = tree_src_base(gsrc, base, sizeof(base), &contents);
		if (r == 0)
			r = unpack_from_guest(fd, gsrc, 0, 0, dest, base,
					      contents ? TREE_CONTENTS : 0, err, sizeof(err));
		else
			snprintf(err, sizeof(err), "%s: name too long", src);
	} else {
		r = pack_to_guest(fd, src, gdest, err, sizeof(err));
	}
	close(fd);
	if (r < 0) {
		error("cp: %s", err);
		return 1;
	}
	return 0;
}

/* ---- diff ------------------------------------------------------------------------------------ */

struct mount_info {
	unsigned index;
	char mode[16];
	char *guest, *host;
};

/* The sandbox's host folders (CTRL_MOUNTS); returns how many, or -1 with err. */
static int get_mounts(int fd, struct mount_info *m, unsigned max, char *err, size_t errn)
{
	struct buf b = { 0 };
	buf_put_u16(&b, CTRL_MOUNTS);
	int r = control_send(fd, &b, NULL, 0);
	buf_fini(&b);
	static uint8_t msg[CONTROL_MAX_MSG];
	int fds[3], nfds = 0;
	ssize_t n = r < 0 ? -1 : control_recv(fd, msg, sizeof(msg), fds, &nfds);
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	struct rd rr = rd_make(msg, n > 0 ? (size_t)n : 0), v;
	if (n < 2 || rd_u16(&rr) != CTRL_OK) {
		snprintf(err, errn,
			 "the sandbox's supervisor cannot list its mounts (is it older?)");
		return -1;
	}
	uint16_t tag;
	unsigned k = 0;
	while (msg_next(&rr, &tag, &v) > 0) {
		char *s = NULL;
		if (msg_dup_str(&v, MSG_MAX_STR, &s) < 0)
			continue;
		if (tag == T_MOUNT && k < max) {
			int off = 0;
			if (sscanf(s, "%u %15s %n", &m[k].index, m[k].mode, &off) == 2 && off > 0) {
				m[k].guest = strdup(s + off);
				k++;
			}
		} else if (tag == T_PATH && k > 0 && !m[k - 1].host) {
			m[k - 1].host = strdup(s);
		}
		free(s);
	}
	return (int)k;
}

struct diff_list {
	const char *guest; /* the mount's guest path, to prefix names with */
	int host_fd; /* the host folder: was a name there before (C) or not (A)? */
	unsigned lines;
};

static int diff_entry(void *o, const struct tree_entry *e)
{
	struct diff_list *d = o;
	if (!e->path[0])
		return 0; /* the mount's root */
	char c = 'D';
	if (e->kind != TREE_DELETE) {
		struct open_how how = {
			.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
			.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS,
		};
		long f = syscall(SYS_openat2, d->host_fd, e->path, &how, sizeof(how));
		c = f < 0 && errno == ENOENT ? 'A' : 'C';
		if (f >= 0)
			close((int)f);
	}
	/* Guest names go to a terminal: control characters are shown as '?'. */
	char shown[TREE_MAX_PATH + 1];
	size_t n = strlen(e->path);
	for (size_t i = 0; i <= n; i++)
		shown[i] = (unsigned char)e->path[i] < 0x20 && e->path[i] ? '?' : e->path[i];
	printf("%c %s%s%s\n", c, d->guest, strcmp(d->guest, "/") ? "/" : "", shown);
	d->lines++;
	return 0;
}

static int diff_data(void *o, const uint8_t *p, size_t n)
{
	(void)o, (void)p, (void)n;
	return 0;
}

static int diff_file_end(void *o)
{
	(void)o;
	return 0;
}

static const struct tree_parse_ops diff_ops = {
	.entry = diff_entry,
	.data = diff_data,
	.file_end = diff_file_end,
};

struct diff_feed {
	struct tree_parser p;
	struct diff_list l;
};

static int feed_diff(void *o, const uint8_t *p, size_t n)
{
	struct diff_feed *f = o;
	return tree_parse_feed(&f->p, p, n, &diff_ops, &f->l);
}

static int diff_one(int fd, const struct mount_info *m, char *err, size_t errn)
{
	struct diff_feed *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	tree_parse_init(&f->p, true);
	f->l.guest = m->guest;
	f->l.host_fd = open(m->host, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = 0;
	if (f->l.host_fd < 0) {
		r = -errno;
		snprintf(err, errn, "host folder %s: %s", m->host, strerror(errno));
	}
	int in = r < 0
		     ? -1
		     : tree_request_pack(fd, NULL, TREE_UPPER | TREE_NO_DATA, m->index, err, errn);
	if (r == 0 && in < 0)
		r = in;
	if (in >= 0) {
		r = tree_drain(in, feed_diff, f);
		close(in);
		char guest_err[1200];
		int g = tree_reply(fd, guest_err, sizeof(guest_err));
		if (g < 0) {
			snprintf(err, errn, "%s: %s", m->guest, guest_err);
			r = g;
		} else if (r < 0 || (r = tree_parse_done(&f->p)) < 0) {
			snprintf(err, errn, "%s: malformed change list from the guest", m->guest);
		}
	}
	if (f->l.host_fd >= 0)
		close(f->l.host_fd);
	free(f);
	return r;
}

int cmd_diff(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "apply", no_argument, NULL, 'a' },
		{ "to", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool apply = false;
	const char *to = NULL;
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'a':
			apply = true;
			break;
		case 't':
			to = optarg;
			break;
		case 'h':
			fputs(diff_usage, stdout);
			return 0;
		default:
			error("diff: unknown flag %s (see --help)", argv[optind - 1]);
			return EXIT_MATCHLOCK;
		}
	}
	if (argc - optind < 1 || argc - optind > 2) {
		fputs(diff_usage, stderr);
		return EXIT_MATCHLOCK;
	}
	if (to && !apply) {
		error("diff: --to needs --apply");
		return EXIT_MATCHLOCK;
	}
	const char *want = argc - optind == 2 ? argv[optind + 1] : NULL;
	char id[64], err[8800] = "";
	signal(SIGPIPE, SIG_IGN);
	int fd = cli_connect_sandbox(argv[optind], id, sizeof(id), err, sizeof(err));
	if (fd < 0) {
		error("diff: %s", err);
		return EXIT_MATCHLOCK;
	}
	struct mount_info m[MSG_MAX_MOUNTS] = { 0 };
	int n = get_mounts(fd, m, MSG_MAX_MOUNTS, err, sizeof(err));
	int status = 0, chosen = 0;
	if (n < 0) {
		error("diff: %s", err);
		status = EXIT_MATCHLOCK;
	}
	for (int i = 0; i < n; i++) {
		bool overlay = !strcmp(m[i].mode, "overlay");
		if (want && strcmp(want, m[i].guest))
			continue;
		if (want && !overlay) {
			error("diff: %s is a %s mount: its writes go straight to the host folder",
			      want, m[i].mode);
			status = 1;
		}
		if (overlay)
			chosen++;
	}
	if (status == 0 && want && chosen == 0) {
		error("diff: %s: no such mount in %s", want, id);
		status = 1;
	} else if (status == 0 && to && chosen != 1) {
		error("diff: --to needs one overlay mount: name it (GUEST_PATH)");
		status = EXIT_MATCHLOCK;
	}
	for (int i = 0; status == 0 && i < n; i++) {
		if (strcmp(m[i].mode, "overlay") || (want && strcmp(want, m[i].guest)))
			continue;
		int r;
		if (apply) {
			r = unpack_from_guest(fd, NULL, TREE_UPPER, m[i].index, to ? to : m[i].host,
					      "", TREE_APPLY, err, sizeof(err));
		} else {
			r = diff_one(fd, &m[i], err, sizeof(err));
		}
		if (r < 0) {
			error("diff: %s", err);
			status = 1;
		}
	}
	for (int i = 0; i < n; i++) {
		free(m[i].guest);
		free(m[i].host);
	}
	close(fd);
	fflush(stdout);
	return status;
}
