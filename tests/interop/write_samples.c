/* Writes, for every embedded schema, a sample record in single-object encoding
 * (<dir>/<fullname>.bin), the schema's JSON (<fullname>.avsc) and avro-c's JSON rendering
 * of the value (<fullname>.json), for decode_with_python_avro.py to check. */
#include "fs/codec.h"
#include "fs/schemas.h"
#include "sample_value.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int write_file(const char *dir, const char *name, const char *ext, const void *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        perror(path);
        if (f)
            fclose(f);
        return -1;
    }
    return fclose(f);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    fs_err err = {0};
    fs_codec *c = fs_codec_new(&err);
    if (!c) {
        fprintf(stderr, "codec: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    for (size_t i = 0; i < fs_embedded_schemas_count && !rc; i++) {
        const fs_schema *s = fs_codec_at(c, i);
        avro_value_t v;
        void *buf;
        size_t len;
        char *json = NULL;
        if (fs_schema_value_new(s, &v, &err) || fs_test_fill(&v, (int)i + 1) ||
            fs_codec_encode(s, &v, &buf, &len, &err)) {
            fprintf(stderr, "%s: %s\n", fs_schema_fullname(s), err.msg);
            return 1;
        }
        avro_value_to_json(&v, 1, &json);
        const char *schema_json = NULL;
        for (size_t k = 0; k < fs_embedded_schemas_count; k++) {
            fs_codec *one = fs_codec_new_empty();
            const fs_schema *t = fs_codec_add(one, fs_embedded_schemas[k].json, true, &err);
            if (t && fs_schema_fingerprint(t) == fs_schema_fingerprint(s))
                schema_json = fs_embedded_schemas[k].json;
            fs_codec_destroy(one);
        }
        rc = !schema_json || !json ||
             write_file(argv[1], fs_schema_fullname(s), "bin", buf, len) ||
             write_file(argv[1], fs_schema_fullname(s), "json", json, strlen(json)) ||
             write_file(argv[1], fs_schema_fullname(s), "avsc", schema_json, strlen(schema_json));
        free(json);
        free(buf);
        avro_value_decref(&v);
    }
    fs_codec_destroy(c);
    printf("wrote %zu samples to %s\n", fs_embedded_schemas_count, argv[1]);
    return rc;
}
