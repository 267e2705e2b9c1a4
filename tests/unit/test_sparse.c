/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for sparse_copy() (src/common/sparse.c): a template's RAM is the guest's memory
 * copied page for page, except that zero pages become holes, so the template is sparse and a
 * restore maps them without reading anything.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common/sparse.h"

#define PAGE 4096
#define MIB (1 << 20)
#define SIZE (8 * MIB)

static int mem_file(void)
{
	int fd = memfd_create("test-ram", MFD_CLOEXEC);
	CHECK(fd >= 0);
	return fd;
}

static void put_page(int fd, off_t at, int byte)
{
	char page[PAGE];
	memset(page, byte, sizeof(page));
	CHECK_EQ_INT(pwrite(fd, page, sizeof(page), at), PAGE);
}

/* The first offset at or after at that holds data, or -1 if only holes follow. */
static off_t next_data(int fd, off_t at)
{
	off_t r = lseek(fd, at, SEEK_DATA);
	return r < 0 && errno == ENXIO ? -1 : r;
}

static void test_copy_keeps_content_and_holes(void)
{
	int from = mem_file(), to = mem_file();
	CHECK_EQ_INT(ftruncate(from, SIZE + MIB), 0);
	put_page(from, 0, 'a');
	put_page(from, MIB - PAGE, 'b'); /* two pages across the copy's 1 MiB chunks */
	put_page(from, MIB, 'c');
	put_page(from, 3 * MIB, 0); /* written, but zero: must become a hole */
	put_page(from, 5 * MIB + PAGE, 'd');
	put_page(from, SIZE - PAGE, 'e');
	put_page(from, SIZE, 'f'); /* past the RAM: not copied */
	CHECK_EQ_INT(sparse_copy(from, to, SIZE), 0);

	struct stat st;
	CHECK_EQ_INT(fstat(to, &st), 0);
	CHECK_EQ_INT(st.st_size, SIZE);
	char *a = malloc(SIZE), *b = malloc(SIZE);
	CHECK_EQ_INT(pread(from, a, SIZE, 0), SIZE);
	CHECK_EQ_INT(pread(to, b, SIZE, 0), SIZE);
	CHECK(memcmp(a, b, SIZE) == 0);
	free(a);
	free(b);

	CHECK_EQ_INT(next_data(to, 0), 0);
	CHECK_EQ_INT(next_data(to, PAGE), MIB - PAGE);
	CHECK_EQ_INT(next_data(to, MIB + PAGE), 5 * MIB + PAGE); /* the zero page is a hole */
	CHECK_EQ_INT(next_data(to, 5 * MIB + 2 * PAGE), SIZE - PAGE);
	close(from);
	close(to);
}

static void test_copy_of_untouched_memory_is_all_hole(void)
{
	int from = mem_file(), to = mem_file();
	CHECK_EQ_INT(ftruncate(from, SIZE), 0);
	CHECK_EQ_INT(sparse_copy(from, to, SIZE), 0);
	struct stat st;
	CHECK_EQ_INT(fstat(to, &st), 0);
	CHECK_EQ_INT(st.st_size, SIZE);
	CHECK_EQ_INT(st.st_blocks, 0);
	CHECK_EQ_INT(next_data(to, 0), -1);
	close(from);
	close(to);
}

int main(int argc, char **argv)
{
	check_init(argc, argv);
	CHECK_RUN(test_copy_keeps_content_and_holes);
	CHECK_RUN(test_copy_of_untouched_memory_is_all_hole);
	return check_summary();
}
