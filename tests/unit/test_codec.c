/* Unit tests of the Avro codec: round trip of every embedded schema, schema evolution in
 * both directions, canonical form and fingerprint, and hostile input (bad magic, unknown
 * fingerprint, truncation, trailing bytes, random corruption) that must give errors, not
 * crashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/codec.h"
#include "fs/schemas.h"
#include "sample_value.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int setup(void **state)
{
    fs_err err = {0};
    fs_codec *c = fs_codec_new(&err);
    if (!c)
        fail_msg("codec: %s", err.msg);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    fs_codec_destroy(*state);
    return 0;
}

static void encode_sample(const fs_schema *s, int seed, avro_value_t *v, void **buf, size_t *len)
{
    fs_err err = {0};
    assert_int_equal(fs_schema_value_new(s, v, &err), 0);
    assert_int_equal(fs_test_fill(v, seed), 0);
    assert_int_equal(fs_codec_encode(s, v, buf, len, &err), 0);
}

static void test_every_schema_round_trips(void **state)
{
    fs_codec *c = *state;
    assert_true(fs_codec_count(c) >= 30);
    assert_int_equal(fs_codec_count(c), fs_embedded_schemas_count);
    for (size_t i = 0; i < fs_codec_count(c); i++) {
        const fs_schema *s = fs_codec_at(c, i);
        avro_value_t v, out;
        void *buf;
        size_t len;
        encode_sample(s, (int)i, &v, &buf, &len);
        const uint8_t *b = buf;
        assert_int_equal(b[0], 0xC3);
        assert_int_equal(b[1], 0x01);
        uint64_t fp = 0;
        for (int k = 0; k < 8; k++)
            fp |= (uint64_t)b[2 + k] << (8 * k);
        assert_true(fp == fs_schema_fingerprint(s));

        const fs_schema *got = NULL;
        fs_err err = {0};
        if (fs_codec_decode(c, buf, len, &got, &out, &err))
            fail_msg("%s: %s", fs_schema_fullname(s), err.msg);
        if (fs_schema_is_reader(s)) {
            assert_ptr_equal(got, s);
            if (!avro_value_equal(&v, &out))
                fail_msg("%s: decoded value differs", fs_schema_fullname(s));
        } else { /* an older writer version (Name.vN.avsc): read as today's reader */
            assert_ptr_equal(got, fs_codec_reader(c, fs_schema_fullname(s)));
        }
        avro_value_decref(&out);
        avro_value_decref(&v);
        free(buf);
    }
}

static void test_lookup_by_short_and_full_name(void **state)
{
    fs_codec *c = *state;
    const fs_schema *a = fs_codec_reader(c, "ReserveStock");
    const fs_schema *b = fs_codec_reader(c, "flashsale.inventory.ReserveStock");
    assert_non_null(a);
    assert_ptr_equal(a, b);
    assert_string_equal(fs_schema_name(a), "ReserveStock");
    assert_null(fs_codec_reader(c, "NoSuchEvent"));
}

static const char *V1 =
    "{\"type\":\"record\",\"name\":\"Thing\",\"namespace\":\"t.ns\",\"doc\":\"v1\","
    "\"fields\":[{\"name\":\"id\",\"type\":\"string\"},{\"name\":\"qty\",\"type\":\"int\"},"
    "{\"name\":\"gone\",\"type\":\"string\"}]}";
static const char *V2 =
    "{\"type\":\"record\",\"name\":\"Thing\",\"namespace\":\"t.ns\",\"doc\":\"v2\","
    "\"fields\":[{\"name\":\"id\",\"type\":\"string\"},"
    "{\"name\":\"qty\",\"type\":\"long\",\"doc\":\"promoted from int\"},"
    "{\"name\":\"added\",\"type\":\"int\",\"default\":7},"
    "{\"name\":\"note\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"tags\",\"type\":{\"type\":\"array\",\"items\":\"string\"},\"default\":[\"a\",\"b\"]},"
    "{\"name\":\"sub\",\"type\":{\"type\":\"record\",\"name\":\"Sub\",\"fields\":["
    "  {\"name\":\"x\",\"type\":\"long\",\"default\":5},{\"name\":\"y\",\"type\":\"string\"}]},"
    "  \"default\":{\"y\":\"why\"}},"
    "{\"name\":\"color\",\"type\":{\"type\":\"enum\",\"name\":\"Color\",\"symbols\":[\"RED\",\"GREEN\"]},"
    "  \"default\":\"GREEN\"}]}";

static void test_old_writer_new_reader_fills_defaults(void **state)
{
    (void)state;
    fs_err err = {0};
    fs_codec *c = fs_codec_new_empty();
    const fs_schema *v1 = fs_codec_add(c, V1, false, &err);
    const fs_schema *v2 = fs_codec_add(c, V2, true, &err);
    assert_non_null(v1);
    assert_non_null(v2);
    assert_true(fs_schema_fingerprint(v1) != fs_schema_fingerprint(v2));

    avro_value_t w, r;
    assert_int_equal(fs_schema_value_new(v1, &w, &err), 0);
    assert_int_equal(fs_av_set_str(&w, "id", "order-1", &err), 0);
    assert_int_equal(fs_av_set_int(&w, "qty", 3, &err), 0);
    assert_int_equal(fs_av_set_str(&w, "gone", "dropped by the reader", &err), 0);
    void *buf;
    size_t len;
    assert_int_equal(fs_codec_encode(v1, &w, &buf, &len, &err), 0);

    const fs_schema *got;
    if (fs_codec_decode(c, buf, len, &got, &r, &err))
        fail_msg("decode: %s", err.msg);
    assert_ptr_equal(got, v2);
    const char *id;
    int64_t qty;
    int32_t added;
    assert_int_equal(fs_av_get_str(&r, "id", &id, &err), 0);
    assert_string_equal(id, "order-1");
    assert_int_equal(fs_av_get_long(&r, "qty", &qty, &err), 0);
    assert_int_equal(qty, 3);
    assert_int_equal(fs_av_get_int(&r, "added", &added, &err), 0);
    assert_int_equal(added, 7);
    const char *note = "x";
    assert_int_equal(fs_av_get_str(&r, "note", &note, &err), 0);
    assert_null(note);
    avro_value_t tags, t0, sub;
    size_t ntags;
    assert_int_equal(avro_value_get_by_name(&r, "tags", &tags, NULL), 0);
    avro_value_get_size(&tags, &ntags);
    assert_int_equal(ntags, 2);
    avro_value_get_by_index(&tags, 0, &t0, NULL);
    const char *s0;
    size_t sl;
    avro_value_get_string(&t0, &s0, &sl);
    assert_string_equal(s0, "a");
    assert_int_equal(avro_value_get_by_name(&r, "sub", &sub, NULL), 0);
    int64_t x;
    const char *y;
    assert_int_equal(fs_av_get_long(&sub, "x", &x, &err), 0);
    assert_int_equal(x, 5);
    assert_int_equal(fs_av_get_str(&sub, "y", &y, &err), 0);
    assert_string_equal(y, "why");
    avro_value_t color;
    int ci;
    avro_value_get_by_name(&r, "color", &color, NULL);
    avro_value_get_enum(&color, &ci);
    assert_int_equal(ci, 1);
    assert_int_equal(avro_value_get_by_name(&r, "gone", &t0, NULL) != 0, 1);

    avro_value_decref(&r);
    avro_value_decref(&w);
    free(buf);
    fs_codec_destroy(c);
}

static void test_new_writer_old_reader_drops_fields(void **state)
{
    (void)state;
    fs_err err = {0};
    fs_codec *c = fs_codec_new_empty();
    /* The reader (v1-like, without "gone") is older than the writer (v2). */
    const char *old_reader =
        "{\"type\":\"record\",\"name\":\"Thing\",\"namespace\":\"t.ns\",\"fields\":["
        "{\"name\":\"id\",\"type\":\"string\"},{\"name\":\"qty\",\"type\":\"long\"}]}";
    const fs_schema *w = fs_codec_add(c, V2, false, &err);
    const fs_schema *r = fs_codec_add(c, old_reader, true, &err);
    assert_non_null(w);
    assert_non_null(r);
    avro_value_t v, out;
    void *buf;
    size_t len;
    encode_sample(w, 4, &v, &buf, &len);
    const fs_schema *got;
    if (fs_codec_decode(c, buf, len, &got, &out, &err))
        fail_msg("decode: %s", err.msg);
    assert_ptr_equal(got, r);
    size_t n;
    avro_value_get_size(&out, &n);
    assert_int_equal(n, 2);
    avro_value_decref(&out);
    avro_value_decref(&v);
    free(buf);
    fs_codec_destroy(c);
}

/* A realistic evolution: an older ReserveStock without the multi-item fields (which the
 * current schema adds with defaults) still decodes with the current reader. */
static void test_project_schema_older_version_decodes(void **state)
{
    fs_codec *c = *state;
    const fs_schema *cur = fs_codec_reader(c, "ReserveStock");
    json_t *old = json_loads(fs_schema_canonical(cur), 0, NULL);
    json_t *fields = json_object_get(old, "fields");
    for (size_t i = json_array_size(fields); i-- > 0;) {
        const char *n = json_string_value(json_object_get(json_array_get(fields, i), "name"));
        if (!strcmp(n, "item_index") || !strcmp(n, "item_count"))
            json_array_remove(fields, i);
    }
    char *old_text = json_dumps(old, JSON_COMPACT);
    json_decref(old);
    fs_err err = {0};
    fs_codec *c2 = fs_codec_new(&err);
    const fs_schema *oldw = fs_codec_add(c2, old_text, false, &err);
    free(old_text);
    assert_non_null(oldw);
    assert_ptr_equal(fs_codec_reader(c2, "ReserveStock") != NULL, 1);

    avro_value_t v, out;
    void *buf;
    size_t len;
    encode_sample(oldw, 9, &v, &buf, &len);
    const fs_schema *got;
    if (fs_codec_decode(c2, buf, len, &got, &out, &err))
        fail_msg("decode: %s", err.msg);
    assert_string_equal(fs_schema_fullname(got), "flashsale.inventory.ReserveStock");
    int32_t idx, cnt;
    assert_int_equal(fs_av_get_int(&out, "item_index", &idx, &err), 0);
    assert_int_equal(fs_av_get_int(&out, "item_count", &cnt, &err), 0);
    assert_int_equal(idx, 0);
    assert_int_equal(cnt, 1);
    avro_value_decref(&out);
    avro_value_decref(&v);
    free(buf);
    fs_codec_destroy(c2);
}

/* A string with a NUL inside, written with an older schema, reaches the reader whole (found
 * by tests/fuzz/fuzz_avro.c: the projection copied it with strndup, which stops at the NUL,
 * and avro-c then read the full length out of the shorter copy). */
static void test_projected_string_keeps_inner_nul(void **state)
{
    (void)state;
    fs_err err = {0};
    fs_codec *c = fs_codec_new_empty();
    const fs_schema *v1 = fs_codec_add(c, V1, false, &err);
    const fs_schema *v2 = fs_codec_add(c, V2, true, &err);
    assert_non_null(v1);
    assert_non_null(v2);
    avro_value_t w, r, f;
    assert_int_equal(fs_schema_value_new(v1, &w, &err), 0);
    assert_int_equal(avro_value_get_by_name(&w, "id", &f, NULL), 0);
    assert_int_equal(avro_value_set_string_len(&f, "ab\0cdefgh", 10), 0); /* 9 bytes + NUL */
    assert_int_equal(fs_av_set_int(&w, "qty", 1, &err), 0);
    assert_int_equal(fs_av_set_str(&w, "gone", "x", &err), 0);
    void *buf;
    size_t len;
    assert_int_equal(fs_codec_encode(v1, &w, &buf, &len, &err), 0);
    const fs_schema *got;
    if (fs_codec_decode(c, buf, len, &got, &r, &err))
        fail_msg("decode: %s", err.msg);
    const char *id;
    size_t n;
    assert_int_equal(avro_value_get_by_name(&r, "id", &f, NULL), 0);
    assert_int_equal(avro_value_get_string(&f, &id, &n), 0);
    assert_int_equal(n, 10);
    assert_memory_equal(id, "ab\0cdefgh", 10);
    avro_value_decref(&r);
    avro_value_decref(&w);
    free(buf);
    fs_codec_destroy(c);
}

static void test_missing_field_without_default_is_an_error(void **state)
{
    (void)state;
    fs_err err = {0};
    fs_codec *c = fs_codec_new_empty();
    const char *w =
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":\"int\"}]}";
    const char *r = "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":"
                    "\"int\"},{\"name\":\"b\",\"type\":\"int\"}]}";
    const fs_schema *ws = fs_codec_add(c, w, false, &err);
    assert_non_null(fs_codec_add(c, r, true, &err));
    avro_value_t v, out;
    void *buf;
    size_t len;
    encode_sample(ws, 1, &v, &buf, &len);
    const fs_schema *got;
    assert_int_equal(fs_codec_decode(c, buf, len, &got, &out, &err), -1);
    assert_int_equal(err.cls, FS_ERR_INVALID);
    assert_non_null(strstr(err.msg, "no default"));
    avro_value_decref(&v);
    free(buf);
    fs_codec_destroy(c);
}

static void test_canonical_form_rules(void **state)
{
    (void)state;
    fs_err err = {0};
    /* docs, defaults, aliases stripped; names made full; attributes ordered; {"type":"int"}
     * collapsed; nested types inherit the enclosing namespace. */
    const char *in =
        "{\"doc\":\"d\",\"fields\":[{\"type\":{\"type\":\"int\"},\"name\":\"a\",\"default\":1,"
        "\"doc\":\"x\"},{\"name\":\"e\",\"type\":{\"symbols\":[\"A\",\"B\"],\"type\":\"enum\","
        "\"name\":\"E\",\"aliases\":[\"Old\"]}},{\"name\":\"r\",\"type\":\"E\"},"
        "{\"name\":\"m\",\"type\":{\"values\":\"long\",\"type\":\"map\"}}],"
        "\"namespace\":\"a.b\",\"name\":\"R\",\"type\":\"record\"}";
    char *pcf = fs_avro_canonical_form(in, &err);
    assert_non_null(pcf);
    assert_string_equal(
        pcf, "{\"name\":\"a.b.R\",\"type\":\"record\",\"fields\":[{\"name\":\"a\",\"type\":"
             "\"int\"},{\"name\":\"e\",\"type\":{\"name\":\"a.b.E\",\"type\":\"enum\","
             "\"symbols\":[\"A\",\"B\"]}},{\"name\":\"r\",\"type\":\"a.b.E\"},{\"name\":\"m\","
             "\"type\":{\"type\":\"map\",\"values\":\"long\"}}]}");
    free(pcf);
    /* Reference values of CRC-64-AVRO: the empty input gives the seed, and fingerprints of
     * primitive schemas from the Avro specification's test data. */
    assert_true(fs_crc64_avro("", 0) == 0xc15d213aa4d7a795ULL);
    assert_true((int64_t)fs_crc64_avro("\"null\"", 6) == 7195948357588979594LL);
    assert_true((int64_t)fs_crc64_avro("\"int\"", 5) == 8247732601305521295LL);
    /* Whole pipeline (canonical form, then fingerprint) on vectors from the same data. */
    struct {
        const char *in, *pcf;
        int64_t fp;
    } vec[] = {
        {"{\"type\":\"fixed\",\"name\":\"foo\",\"size\":15}",
         "{\"name\":\"foo\",\"type\":\"fixed\",\"size\":15}", 1756455273707447556LL},
        {"{\"type\":\"record\",\"name\":\"foo\",\"fields\":[{\"name\":\"f1\",\"type\":\"boolean\"}]}",
         "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[{\"name\":\"f1\",\"type\":\"boolean\"}]}",
         7843277075252814651LL},
    };
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
        char *c = fs_avro_canonical_form(vec[i].in, &err);
        assert_non_null(c);
        assert_string_equal(c, vec[i].pcf);
        assert_true((int64_t)fs_crc64_avro(c, strlen(c)) == vec[i].fp);
        free(c);
    }
}

/* An explicit empty namespace is the null namespace, not the enclosing one (the Avro
 * specification; avro-c's parser agrees), and what is nested in it inherits that. */
static void test_canonical_form_empty_namespace(void **state)
{
    (void)state;
    fs_err err = {0};
    const char *in = "{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"a.b\",\"fields\":["
                     "{\"name\":\"n\",\"type\":{\"type\":\"record\",\"name\":\"N\","
                     "\"namespace\":\"\",\"fields\":[{\"name\":\"e\",\"type\":{\"type\":\"enum\","
                     "\"name\":\"E\",\"symbols\":[\"X\"]}},{\"name\":\"e2\",\"type\":\"E\"}]}},"
                     "{\"name\":\"f\",\"type\":{\"type\":\"fixed\",\"name\":\"F\",\"size\":2}}]}";
    char *pcf = fs_avro_canonical_form(in, &err);
    assert_non_null(pcf);
    assert_string_equal(
        pcf, "{\"name\":\"a.b.R\",\"type\":\"record\",\"fields\":[{\"name\":\"n\",\"type\":"
             "{\"name\":\"N\",\"type\":\"record\",\"fields\":[{\"name\":\"e\",\"type\":"
             "{\"name\":\"E\",\"type\":\"enum\",\"symbols\":[\"X\"]}},{\"name\":\"e2\","
             "\"type\":\"E\"}]}},{\"name\":\"f\",\"type\":{\"name\":\"a.b.F\",\"type\":"
             "\"fixed\",\"size\":2}}]}");
    free(pcf);
    /* avro-c reads it the same way: N and the E declared inside it have no namespace, F
     * has the enclosing one. */
    fs_codec *c = fs_codec_new_empty();
    const fs_schema *fs = fs_codec_add(c, in, true, &err);
    assert_non_null(fs);
    avro_schema_t n = avro_schema_record_field_get(fs_schema_avro(fs), "n");
    avro_schema_t e = avro_schema_record_field_get(n, "e");
    avro_schema_t f = avro_schema_record_field_get(fs_schema_avro(fs), "f");
    assert_non_null(n);
    assert_non_null(e);
    assert_non_null(f);
    const char *nns = avro_schema_namespace(n), *ens = avro_schema_namespace(e);
    assert_true(!nns || !*nns);
    assert_true(!ens || !*ens);
    assert_string_equal(avro_schema_namespace(f), "a.b");
    fs_codec_destroy(c);
}

/* jansson's allocator failing at each of its calls after the parse's (the canonical form's,
 * its records' and its text's) in turn: the schema is then reported out of memory, never as
 * invalid, and nothing leaks. (jansson's parser reports some of its own allocation failures
 * as syntax errors, so the parse's calls are left alone.) */
static int fail_at, allocs;

static void *failing_malloc(size_t n)
{
    return allocs++ == fail_at ? NULL : malloc(n);
}

static void test_canonical_form_out_of_memory(void **state)
{
    (void)state;
    const char *in = "{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"a\",\"fields\":["
                     "{\"name\":\"x\",\"type\":[\"null\",{\"type\":\"array\",\"items\":"
                     "{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\"]}}]},"
                     "{\"name\":\"y\",\"type\":{\"type\":\"map\",\"values\":\"E\"}}]}";
    fs_err err = {0};
    char *want = fs_avro_canonical_form(in, &err);
    assert_non_null(want);
    fail_at = -1; /* count the parse's calls */
    allocs = 0;
    json_set_alloc_funcs(failing_malloc, free);
    json_t *parsed = json_loads(in, 0, NULL);
    json_set_alloc_funcs(malloc, free);
    assert_non_null(parsed);
    json_decref(parsed);
    int failures = 0;
    for (fail_at = allocs;; fail_at++) {
        allocs = 0;
        json_set_alloc_funcs(failing_malloc, free);
        err = (fs_err){0};
        char *got = fs_avro_canonical_form(in, &err);
        json_set_alloc_funcs(malloc, free);
        if (allocs <= fail_at) { /* no call failed: the whole form */
            assert_non_null(got);
            assert_string_equal(got, want);
            free(got);
            break;
        }
        if (got) { /* jansson may survive a failed call (e.g. a hash table's growth) */
            assert_string_equal(got, want);
            free(got);
            continue;
        }
        failures++;
        if (err.cls != FS_ERR_FATAL || err.code != ENOMEM)
            fail_msg("allocation %d failed: \"%s\" (class %d)", fail_at, err.msg, err.cls);
    }
    assert_true(failures > 10);
    free(want);
}

/* Array block counts that add up past INT64_MAX are refused at once (found by
 * tests/fuzz/fuzz_avro.c: the count of items summed over blocks overflowed, and for items
 * of no bytes, such as null, the validator would then walk 2^63 of them). */
static void test_block_counts_cannot_overflow(void **state)
{
    (void)state;
    fs_err err = {0};
    fs_codec *c = fs_codec_new_empty();
    const fs_schema *s = fs_codec_add(
        c, "{\"type\":\"record\",\"name\":\"Nulls\",\"fields\":[{\"name\":\"a\","
           "\"type\":{\"type\":\"array\",\"items\":\"null\"}}]}",
        true, &err);
    assert_non_null(s);
    uint8_t b[32] = {FS_AVRO_MAGIC0, FS_AVRO_MAGIC1};
    size_t n = 2;
    for (int i = 0; i < 8; i++)
        b[n++] = (uint8_t)(fs_schema_fingerprint(s) >> (8 * i));
    b[n++] = 28; /* a block of 14 nulls (zig-zag) */
    uint64_t z = (uint64_t)(INT64_MAX - 13) << 1; /* then one of INT64_MAX - 13 */
    for (; z >= 0x80; z >>= 7)
        b[n++] = (uint8_t)(z | 0x80);
    b[n++] = (uint8_t)z;
    b[n++] = 0; /* the end of the array */
    const fs_schema *got;
    avro_value_t out;
    assert_int_equal(fs_codec_decode(c, b, n, &got, &out, &err), -1);
    assert_int_equal(err.cls, FS_ERR_INVALID);
    fs_codec_destroy(c);
}

static void test_hostile_input_gives_errors(void **state)
{
    fs_codec *c = *state;
    fs_err err = {0};
    const fs_schema *got;
    avro_value_t out;
    const uint8_t junk[] = {0x7b, 0x22, 0x61, 0x22, 0x3a, 0x31, 0x7d, 0, 0, 0, 0, 0};
    assert_int_equal(fs_codec_decode(c, junk, sizeof junk, &got, &out, &err), -1);
    assert_int_equal(err.cls, FS_ERR_INVALID);
    assert_non_null(strstr(err.msg, "magic"));
    assert_int_equal(fs_codec_decode(c, junk, 3, &got, &out, &err), -1);
    assert_non_null(strstr(err.msg, "too short"));
    assert_int_equal(fs_codec_decode(c, NULL, 0, &got, &out, &err), -1);

    srand(42);
    for (size_t i = 0; i < fs_codec_count(c); i++) {
        const fs_schema *s = fs_codec_at(c, i);
        avro_value_t v;
        void *buf;
        size_t len;
        encode_sample(s, (int)i, &v, &buf, &len);
        uint8_t *b = buf;

        /* unknown fingerprint */
        b[5] ^= 0x5a;
        assert_int_equal(fs_codec_decode(c, b, len, &got, &out, &err), -1);
        assert_non_null(strstr(err.msg, "unknown schema fingerprint"));
        b[5] ^= 0x5a;

        /* every truncation */
        for (size_t cut = 0; cut < len; cut++) {
            if (fs_codec_decode(c, b, cut, &got, &out, &err) == 0) {
                /* a shorter prefix can only decode if it is a complete record, which the
                 * samples never are (their last field is non-empty) */
                avro_value_decref(&out);
                fail_msg("%s: truncated at %zu decoded", fs_schema_name(s), cut);
            }
        }

        /* trailing garbage */
        uint8_t *longer = malloc(len + 1);
        memcpy(longer, b, len);
        longer[len] = 0x02;
        assert_int_equal(fs_codec_decode(c, longer, len + 1, &got, &out, &err), -1);
        assert_non_null(strstr(err.msg, "trailing"));
        free(longer);

        /* random corruption of the payload: any outcome but a crash or a leak */
        for (int k = 0; k < 200; k++) {
            uint8_t *m = malloc(len);
            memcpy(m, b, len);
            for (int flips = 1 + rand() % 3; flips > 0; flips--)
                m[FS_AVRO_HEADER_LEN + (size_t)rand() % (len - FS_AVRO_HEADER_LEN)] =
                    (uint8_t)rand();
            if (fs_codec_decode(c, m, len, &got, &out, &err) == 0)
                avro_value_decref(&out);
            free(m);
        }
        avro_value_decref(&v);
        free(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_schema_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup_by_short_and_full_name, setup, teardown),
        cmocka_unit_test(test_old_writer_new_reader_fills_defaults),
        cmocka_unit_test(test_new_writer_old_reader_drops_fields),
        cmocka_unit_test_setup_teardown(test_project_schema_older_version_decodes, setup,
                                        teardown),
        cmocka_unit_test(test_projected_string_keeps_inner_nul),
        cmocka_unit_test(test_missing_field_without_default_is_an_error),
        cmocka_unit_test(test_canonical_form_rules),
        cmocka_unit_test(test_canonical_form_empty_namespace),
        cmocka_unit_test(test_canonical_form_out_of_memory),
        cmocka_unit_test_setup_teardown(test_hostile_input_gives_errors, setup, teardown),
        cmocka_unit_test(test_block_counts_cannot_overflow),
    };
    return cmocka_run_group_tests_name("codec", tests, NULL, NULL);
}
