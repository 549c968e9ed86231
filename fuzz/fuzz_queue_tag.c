/*
 * fuzz_queue_tag - the reader of mail references from outside
 * (relay/queue_tag.c): queue_tag_ref_parse() on a VERP tag or an
 * Original-Envelope-Id. Checked: an accepted reference is QUEUEID-TAG in
 * canonical form (id upper case and valid, '-', 16 to 64 lower-case hex
 * digits), as long as the input, and the id returned is its first part;
 * parsing the canonical form again gives the same.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay/queue_tag.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[QUEUE_REF_MAX + 1], id[QUEUE_ID_LEN + 1];
	if (!queue_tag_ref_parse((const char *)data, size, out, id))
		return 0;
	size_t n = strlen(out);
	CHECK(n == size && n >= QUEUE_ID_LEN + 1 + QUEUE_TAG_HEX && n <= QUEUE_REF_MAX);
	CHECK(queue_id_valid(id) && memcmp(out, id, QUEUE_ID_LEN) == 0 && out[QUEUE_ID_LEN] == '-');
	for (size_t i = QUEUE_ID_LEN + 1; i < n; i++)
		CHECK(strchr("0123456789abcdef", out[i]) != NULL);
	char again[QUEUE_REF_MAX + 1], id2[QUEUE_ID_LEN + 1];
	CHECK(queue_tag_ref_parse(out, n, again, id2));
	CHECK(strcmp(again, out) == 0 && strcmp(id, id2) == 0);
	return 0;
}
