/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/common/log.c: log_sanitize() (what a terminal may receive from our
 * messages), the capped, rotated sandbox log file and the reader that follows it.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common/log.h"
#include "common/util.h"

/* log_sanitize(src) into a roomy buffer equals want. */
#define CHECK_SAN(src, want)                                         \
	do {                                                         \
		char out_[256];                                      \
		size_t n_ = log_sanitize(out_, sizeof(out_), (src)); \
		CHECK_EQ_MEM(out_, n_, (want), strlen(want));        \
		CHECK_EQ_INT(out_[n_], 0);                           \
	} while (0)

static void test_sanitize_passes_text(void)
{
	CHECK_SAN("", "");
	CHECK_SAN("DNS denied other.org A: no rule (x) ~!",
		  "DNS denied other.org A: no rule (x) ~!");
	CHECK_SAN("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x8d",
		  "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x8d");
	CHECK_SAN("\xc2\xa0nbsp", "\xc2\xa0nbsp"); /* U+00A0: the first code point past C1 */
}

static void test_sanitize_escapes_controls(void)
{
	CHECK_SAN("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m");
	CHECK_SAN("a\nmatchlock: forged", "a\\x0amatchlock: forged");
	CHECK_SAN("t\tr\rb\bd\x7f", "t\\x09r\\x0db\\x08d\\x7f");
	CHECK_SAN("\x07\x01", "\\x07\\x01");
	/* C1 controls in UTF-8 (U+009B is CSI, U+0085 NEL) and raw 8-bit C1 bytes. */
	CHECK_SAN("\xc2\x9b"
		  "2J",
		  "\\xc2\\x9b"
		  "2J");
	CHECK_SAN("\xc2\x85", "\\xc2\\x85");
	CHECK_SAN("\x9b"
		  "2J\x90",
		  "\\x9b"
		  "2J\\x90");
	/* OSC (set the title) through ESC ] ... BEL. */
	CHECK_SAN("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07");
}

static void test_sanitize_invalid_utf8(void)
{
	CHECK_SAN("\xff\xfe", "\\xff\\xfe");
	CHECK_SAN("\xc3", "\\xc3"); /* truncated */
	CHECK_SAN("\xc3(", "\\xc3("); /* bad continuation */
	CHECK_SAN("\xc0\x9b", "\\xc0\\x9b"); /* overlong CSI */
	CHECK_SAN("\xe0\x82\x9b", "\\xe0\\x82\\x9b"); /* overlong, 3 bytes */
	CHECK_SAN("\xed\xa0\x80", "\\xed\\xa0\\x80"); /* a surrogate */
	CHECK_SAN("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"); /* past U+10FFFF */
	/* A bad lead byte does not swallow the ASCII after it. */
	CHECK_SAN("\xe2\x82"
		  "ab",
		  "\\xe2\\x82"
		  "ab");
}

static void test_sanitize_bounds(void)
{
	char out[8];
	/* Never a partial escape or character at the cut; always terminated. */
	CHECK_EQ_INT(log_sanitize(out, sizeof(out), "abc\x1b\x1b"), 7);
	CHECK(!strcmp(out, "abc\\x1b"));
	CHECK_EQ_INT(log_sanitize(out, sizeof(out), "abcd\x1b"), 4);
	CHECK(!strcmp(out, "abcd"));
	CHECK_EQ_INT(log_sanitize(out, sizeof(out), "abcdef\xc3\xa9"), 6);
	CHECK(!strcmp(out, "abcdef"));
	CHECK_EQ_INT(log_sanitize(out, sizeof(out), "abcdefghij"), 7);
	CHECK(!strcmp(out, "abcdefg"));
	CHECK_EQ_INT(log_sanitize(out, 1, "abc"), 0);
	CHECK_EQ_INT(out[0], 0);
	CHECK_EQ_INT(log_sanitize(out, 0, "abc"), 0);
	/* Every byte value, one at a time: the output holds no control byte. */
	for (int c = 1; c < 256; c++) {
		char in[2] = { (char)c, 0 }, o[8];
		size_t n = log_sanitize(o, sizeof(o), in);
		bool clean = true;
		for (size_t i = 0; i < n; i++)
			clean &= (unsigned char)o[i] >= 0x20 && (unsigned char)o[i] < 0x7f;
		if (!CHECK(clean && n >= 1))
			fprintf(stderr, "byte 0x%02x\n", c);
	}
}

static off_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* A log capped at 1000 bytes: many writes keep log + log.1 under 2000, and the reader sees
 * log.1 then log, in order, ending with the newest bytes. */
static void test_log_file_rotates(void)
{
	char dir[] = "/tmp/test_log.XXXXXX", path[64], old[64];
	if (!CHECK(mkdtemp(dir)))
		return;
	snprintf(path, sizeof(path), "%s/log", dir);
	snprintf(old, sizeof(old), "%s/log.1", dir);
	struct log_file *lf = log_file_open(path, 1000);
	CHECK(lf != NULL);
	struct log_reader *follow = log_reader_open(path);
	CHECK(follow != NULL);
	char chunk[101];
	unsigned seq = 0;
	size_t followed = 0;
	int prev = -1;
	bool ordered = true;
	char last[4];
	for (int i = 0; i < 500; i++) {
		/* 100-byte records "NNNN" + padding, numbered so order can be checked. */
		snprintf(chunk, sizeof(chunk), "%04u%095d\n", seq++, 0);
		log_file_write(lf, chunk, 100);
		CHECK(file_size(path) <= 1000);
		CHECK(file_size(old) <= 1000);
		if (i % 7 == 0) {
			/* A follower reading now and then sees strictly increasing records. */
			char buf[4000]; /* whole records: every write is one record */
			ssize_t n;
			while ((n = log_reader_read(follow, buf, sizeof(buf))) > 0) {
				followed += (size_t)n;
				for (ssize_t k = 0; k + 100 <= n; k += 100) {
					char num[5] = { 0 };
					memcpy(num, buf + k, 4);
					int rec = atoi(num);
					ordered &= rec > prev;
					prev = rec;
				}
			}
		}
	}
	/* One write larger than the cap keeps its last cap bytes. */
	char big[3000];
	memset(big, 'z', sizeof(big));
	log_file_write(lf, big, sizeof(big));
	CHECK_EQ_INT(file_size(path), 1000);
	CHECK_EQ_INT(file_size(old), 1000);
	log_file_close(lf);
	CHECK(followed > 0);
	CHECK(ordered);
	CHECK(prev >= 490); /* it kept up to the end */
	log_reader_free(follow);

	/* A fresh reader: log.1 (records) then log (the z's), nothing else. */
	struct log_reader *lr = log_reader_open(path);
	if (!CHECK(lr != NULL))
		return;
	char all[4096];
	size_t len = 0;
	ssize_t n;
	while ((n = log_reader_read(lr, all + len, sizeof(all) - len)) > 0)
		len += (size_t)n;
	log_reader_free(lr);
	CHECK_EQ_INT(len, 2000);
	memcpy(last, all + 900, 4);
	CHECK(!memcmp(last, "0499", 4)); /* the last record before the big write ends log.1 */
	CHECK(all[1000] == 'z' && all[1999] == 'z');
	unlink(path);
	unlink(old);
	rmdir(dir);
}

/* A reader opened before any rotation follows the file across one. */
static void test_log_reader_follows_rotation(void)
{
	char dir[] = "/tmp/test_log.XXXXXX", path[64], old[64];
	if (!CHECK(mkdtemp(dir)))
		return;
	snprintf(path, sizeof(path), "%s/log", dir);
	snprintf(old, sizeof(old), "%s/log.1", dir);
	CHECK(log_reader_open(path) == NULL); /* no log yet */
	struct log_file *lf = log_file_open(path, 10);
	CHECK(lf != NULL);
	log_file_write(lf, "aaaaaaaa", 8);
	struct log_reader *lr = log_reader_open(path);
	char buf[64];
	ssize_t n = log_reader_read(lr, buf, sizeof(buf));
	CHECK_EQ_MEM(buf, n, "aaaaaaaa", 8);
	CHECK_EQ_INT(log_reader_read(lr, buf, sizeof(buf)), 0);
	log_file_write(lf, "bb", 2); /* still fits: 10 */
	log_file_write(lf, "cccc", 4); /* rotates: log.1 = a..abb, log = cccc */
	size_t len = 0;
	while ((n = log_reader_read(lr, buf + len, sizeof(buf) - len)) > 0)
		len += (size_t)n;
	CHECK_EQ_MEM(buf, len, "bbcccc", 6);
	log_file_close(lf);
	log_reader_free(lr);
	unlink(path);
	unlink(old);
	rmdir(dir);
}

int main(int argc, char **argv)
{
	check_init(argc, argv);
	CHECK_RUN(test_sanitize_passes_text);
	CHECK_RUN(test_sanitize_escapes_controls);
	CHECK_RUN(test_sanitize_invalid_utf8);
	CHECK_RUN(test_sanitize_bounds);
	CHECK_RUN(test_log_file_rotates);
	CHECK_RUN(test_log_reader_follows_rotation);
	return check_summary();
}
