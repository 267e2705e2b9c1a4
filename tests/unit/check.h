/* SPDX-License-Identifier: MIT */
/*
 * A tiny header-only test harness. CHECK(), CHECK_EQ_INT() and CHECK_EQ_MEM() record a pass or
 * a failure (a failure is printed to stderr with file:line) and return whether the check held, so
 * a test can stop early: `if (!CHECK(p)) return;`. Each test program's main(argc, argv) calls
 * check_init(argc, argv), runs its test functions with CHECK_RUN(test_name) and returns
 * check_summary(), which prints the one final line "N passed, N failed".
 *
 * Arguments name the tests to run, with or without the "test_" prefix
 * (`build/tests/test_mux credit hostile_open`); none runs them all. A name that matches no test
 * is a failure, so a typo never passes.
 */
#ifndef MATCHLOCK_CHECK_H
#define MATCHLOCK_CHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define CHECK_MAX_NAMES 64 /* test names on one command line */

static unsigned check_passed, check_failed;
static int check_nnames;
static char **check_names;
static bool check_name_used[CHECK_MAX_NAMES];

static inline void check_init(int argc, char **argv)
{
	check_nnames = argc > 1 ? argc - 1 : 0;
	check_names = argv + 1;
	if (check_nnames > CHECK_MAX_NAMES) {
		fprintf(stderr, "%s: at most %d test names\n", argv[0], CHECK_MAX_NAMES);
		check_failed++;
		check_nnames = CHECK_MAX_NAMES;
	}
}

/* Run fn if no names were given or one of them is name (with or without "test_"). */
static inline void check_run(const char *name, void (*fn)(void))
{
	bool run = check_nnames == 0;
	for (int i = 0; i < check_nnames; i++) {
		const char *want = check_names[i];
		if (!strcmp(want, name) ||
		    (!strncmp(name, "test_", 5) && !strcmp(want, name + 5))) {
			check_name_used[i] = true;
			run = true;
		}
	}
	if (run)
		fn();
}
#define CHECK_RUN(fn) check_run(#fn, fn)

static inline int check_record(int ok, const char *file, int line, const char *expr)
{
	if (ok) {
		check_passed++;
		return 1;
	}
	check_failed++;
	fprintf(stderr, "%s:%d: check failed: %s\n", file, line, expr);
	return 0;
}

static inline int check_eq_int(intmax_t a, intmax_t b, const char *ea, const char *eb,
			       const char *file, int line)
{
	if (a == b) {
		check_passed++;
		return 1;
	}
	check_failed++;
	fprintf(stderr, "%s:%d: check failed: %s == %s (%jd != %jd)\n", file, line, ea, eb, a, b);
	return 0;
}

/* Equal lengths and equal bytes; never reads past the shorter of the two. */
static inline int check_eq_mem(const void *a, size_t na, const void *b, size_t nb, const char *ea,
			       const char *eb, const char *file, int line)
{
	size_t i = 0;
	if (na == nb) {
		const unsigned char *pa = a, *pb = b;
		while (i < na && pa[i] == pb[i])
			i++;
		if (i == na) {
			check_passed++;
			return 1;
		}
	}
	check_failed++;
	if (na != nb)
		fprintf(stderr, "%s:%d: check failed: %s == %s (length %zu != %zu)\n", file, line,
			ea, eb, na, nb);
	else
		fprintf(stderr, "%s:%d: check failed: %s == %s (differ at byte %zu)\n", file, line,
			ea, eb, i);
	return 0;
}

#define CHECK(cond) check_record(!!(cond), __FILE__, __LINE__, #cond)
#define CHECK_EQ_INT(a, b) check_eq_int((intmax_t)(a), (intmax_t)(b), #a, #b, __FILE__, __LINE__)
#define CHECK_EQ_MEM(a, na, b, nb) check_eq_mem((a), (na), (b), (nb), #a, #b, __FILE__, __LINE__)

/*
 * Print the final "N passed, N failed" line (a test name that matched nothing counts as a failure);
 * returns the exit status (0 if nothing failed).
 */
static inline int check_summary(void)
{
	for (int i = 0; i < check_nnames; i++) {
		if (!check_name_used[i]) {
			fprintf(stderr, "no test named %s\n", check_names[i]);
			check_failed++;
		}
	}
	fflush(stderr);
	printf("%u passed, %u failed\n", check_passed, check_failed);
	fflush(stdout); /* LeakSanitizer exits without flushing stdio */
	return check_failed ? 1 : 0;
}

#endif
