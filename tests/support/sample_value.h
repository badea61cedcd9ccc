/* Test support: fills a generic Avro value with deterministic sample data for its schema
 * (strings "s<seed>", numbers from the seed, the non-null union branch, two array items,
 * two map entries), so that every schema can be round-tripped without hand-written data. */
#ifndef FS_TEST_SAMPLE_VALUE_H
#define FS_TEST_SAMPLE_VALUE_H
#include <avro.h>

int fs_test_fill(avro_value_t *v, int seed);

#endif
