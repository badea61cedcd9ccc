#include "sample_value.h"

#include <stdio.h>
#include <string.h>

int fs_test_fill(avro_value_t *v, int seed)
{
    char buf[64];
    avro_schema_t s = avro_value_get_schema(v);
    switch (avro_value_get_type(v)) {
    case AVRO_NULL:
        return avro_value_set_null(v);
    case AVRO_BOOLEAN:
        return avro_value_set_boolean(v, seed & 1);
    case AVRO_INT32:
        return avro_value_set_int(v, seed * 7 - 3);
    case AVRO_INT64:
        return avro_value_set_long(v, 1795245798482LL + seed);
    case AVRO_FLOAT:
        return avro_value_set_float(v, (float)seed / 4);
    case AVRO_DOUBLE:
        return avro_value_set_double(v, seed / 8.0);
    case AVRO_STRING:
        snprintf(buf, sizeof buf, "s%d-\xea\xb5\xac\xeb\xa7\xa4", seed); /* + Korean "buy" */
        return avro_value_set_string(v, buf);
    case AVRO_BYTES: {
        unsigned char b[4] = {0, 0xff, (unsigned char)seed, 0x80};
        return avro_value_set_bytes(v, b, sizeof b);
    }
    case AVRO_FIXED: {
        unsigned char b[64] = {0};
        b[0] = (unsigned char)seed;
        return avro_value_set_fixed(v, b, (size_t)avro_schema_fixed_size(s));
    }
    case AVRO_ENUM:
        return avro_value_set_enum(v, seed % avro_schema_enum_number_of_symbols(s));
    case AVRO_UNION: {
        avro_value_t b;
        int n = (int)avro_schema_union_size(s);
        return avro_value_set_branch(v, n > 1 ? 1 : 0, &b) || fs_test_fill(&b, seed);
    }
    case AVRO_ARRAY:
        for (int i = 0; i < 2; i++) {
            avro_value_t e;
            if (avro_value_append(v, &e, NULL) || fs_test_fill(&e, seed + i + 1))
                return -1;
        }
        return 0;
    case AVRO_MAP:
        for (int i = 0; i < 2; i++) {
            avro_value_t e;
            snprintf(buf, sizeof buf, "k%d", i);
            if (avro_value_add(v, buf, &e, NULL, NULL) || fs_test_fill(&e, seed + i + 1))
                return -1;
        }
        return 0;
    case AVRO_RECORD: {
        size_t n = 0;
        if (avro_value_get_size(v, &n))
            return -1;
        for (size_t i = 0; i < n; i++) {
            avro_value_t f;
            if (avro_value_get_by_index(v, i, &f, NULL) || fs_test_fill(&f, seed + (int)i))
                return -1;
        }
        return 0;
    }
    default:
        return -1;
    }
}
