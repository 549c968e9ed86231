/*
 * fuzz_check - the one assertion of the libFuzzer targets: CHECK(cond)
 * prints the failed invariant with its FILE:LINE and aborts, which
 * libFuzzer reports as a crash and keeps the input.
 */
#ifndef HK_FUZZ_CHECK_H
#define HK_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                              \
	do {                                                                     \
		if (!(cond)) {                                                   \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, \
			        __LINE__, #cond);                                \
			abort();                                                 \
		}                                                                \
	} while (0)

#endif
