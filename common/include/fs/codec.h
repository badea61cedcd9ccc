/* Avro codec for every record on every topic.
 *
 * Wire format: Avro single-object encoding
 *     0xC3 0x01 | CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form (8 bytes,
 *     little endian) | Avro binary payload
 * so any Avro implementation can decode a record given the schema, and the fingerprint
 * names the writer's schema without a registry service.
 *
 * Schemas: every .avsc file under schemas/ is embedded at build time and registered by
 * fs_codec_new(). For each full name (e.g. "flashsale.inventory.ReserveStock") exactly one
 * schema is the *reader* (the current version, file Name.avsc); older versions (Name.vN.avsc)
 * are writer-only. Decoding looks the writer's schema up by fingerprint and, when it is not
 * the reader, projects the writer's value onto the reader's schema with Avro's resolution
 * rules: fields matched by name, reader fields absent from the writer take their default,
 * writer fields unknown to the reader are dropped, int->long->float->double promotion,
 * enum by symbol, unions by branch type. (avro-c's own resolver rejects reader fields
 * missing from the writer, so the projection is done here.)
 *
 * Errors: a record that cannot be decoded (too short, wrong magic, unknown fingerprint,
 * truncated or trailing bytes, unresolvable) returns -1 with class FS_ERR_INVALID; callers
 * route it to a dead-letter topic. Decoding never aborts the process.
 *
 * Threads: after setup (fs_codec_new + fs_codec_add) the codec is read-only and may be used
 * from any number of threads at once. */
#ifndef FS_CODEC_H
#define FS_CODEC_H
#include "fs/err.h"
#include <avro.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fs_codec fs_codec;
typedef struct fs_schema fs_schema;

#define FS_AVRO_MAGIC0 0xC3
#define FS_AVRO_MAGIC1 0x01
#define FS_AVRO_HEADER_LEN 10

/* A codec holding the embedded schemas. Returns NULL with *err on a broken schema, or when
 * FLASHSALE_AVRO_POOL is not a boolean (fs/avro_pool.h). */
fs_codec *fs_codec_new(fs_err *err);
/* A codec with no schemas (tests, tools). */
fs_codec *fs_codec_new_empty(void);
void fs_codec_destroy(fs_codec *codec); /* NULL-safe */

/* Registers one more schema (JSON text). `reader` makes it the current schema of its full
 * name (replacing any earlier reader); otherwise it is writer-only. Not thread-safe: call
 * during setup. Returns the schema (owned by the codec) or NULL with *err. */
const fs_schema *fs_codec_add(fs_codec *codec, const char *json, bool reader, fs_err *err);

/* The reader schema of a full name or of a short name ("ReserveStock", the event-type
 * header), or NULL. */
const fs_schema *fs_codec_reader(const fs_codec *codec, const char *name);
const fs_schema *fs_codec_by_fingerprint(const fs_codec *codec, uint64_t fp);
size_t fs_codec_count(const fs_codec *codec);
const fs_schema *fs_codec_at(const fs_codec *codec, size_t i);

const char *fs_schema_fullname(const fs_schema *s);
const char *fs_schema_name(const fs_schema *s);      /* short name: the event-type header */
const char *fs_schema_canonical(const fs_schema *s); /* Parsing Canonical Form */
uint64_t fs_schema_fingerprint(const fs_schema *s);
avro_schema_t fs_schema_avro(const fs_schema *s);
bool fs_schema_is_reader(const fs_schema *s);

/* A new generic value of the schema, zero-filled; the caller releases it with
 * avro_value_decref(). Returns 0 or -1. */
int fs_schema_value_new(const fs_schema *s, avro_value_t *out, fs_err *err);

/* Encodes v (a value of schema s) into a malloc'd buffer *buf of *len bytes (header
 * included). The caller frees *buf. Returns 0 or -1. */
int fs_codec_encode(const fs_schema *s, avro_value_t *v, void **buf, size_t *len, fs_err *err);

/* Decodes a single-object encoded record into a new value of the *reader* schema of the
 * writer's full name. On success *schema_out is that reader schema and *out must be
 * released with avro_value_decref(). On failure nothing needs releasing. */
int fs_codec_decode(const fs_codec *codec, const void *buf, size_t len,
                    const fs_schema **schema_out, avro_value_t *out, fs_err *err);

/* CRC-64-AVRO of a byte string (exposed for tests). */
uint64_t fs_crc64_avro(const void *buf, size_t len);
/* Parsing Canonical Form of a schema's JSON text; malloc'd, or NULL with *err. */
char *fs_avro_canonical_form(const char *json, fs_err *err);

/* Field access helpers for generic record values. They return 0, or -1 with *err naming
 * the field when it is missing or of another type. Strings returned by the getters point
 * into the value and live as long as it does. */
int fs_av_get_str(avro_value_t *rec, const char *field, const char **out, fs_err *err);
int fs_av_get_int(avro_value_t *rec, const char *field, int32_t *out, fs_err *err);
int fs_av_get_long(avro_value_t *rec, const char *field, int64_t *out, fs_err *err);
int fs_av_set_str(avro_value_t *rec, const char *field, const char *v, fs_err *err);
int fs_av_set_int(avro_value_t *rec, const char *field, int32_t v, fs_err *err);
int fs_av_set_long(avro_value_t *rec, const char *field, int64_t v, fs_err *err);
int fs_av_get_bool(avro_value_t *rec, const char *field, bool *out, fs_err *err);
/* An optional field (["null", T]) set to null. */
int fs_av_set_null(avro_value_t *rec, const char *field, fs_err *err);
/* An enum field by symbol: an unknown symbol is an error. */
int fs_av_set_enum(avro_value_t *rec, const char *field, const char *symbol, fs_err *err);
int fs_av_get_enum(avro_value_t *rec, const char *field, char *out, size_t n, fs_err *err);
int fs_av_set_bool(avro_value_t *rec, const char *field, bool v, fs_err *err);
/* A string field copied into out[n]: an absent (null) optional field reads as "";
 * a value that does not fit is an error (FS_ERR_INVALID), never cut short. */
int fs_av_get_strcpy(avro_value_t *rec, const char *field, char *out, size_t n, fs_err *err);

/* Tolerant record access for schemas that share field names: a field the record's schema
 * lacks is skipped (put) or reads as absent (read). Optional fields are ["null", T] unions:
 * put with present=false (or an empty string) writes null. int and long convert. */
int fs_av_put_str(avro_value_t *rec, const char *field, const char *v, bool present);
int fs_av_put_long(avro_value_t *rec, const char *field, int64_t v, bool present);
int fs_av_put_bool(avro_value_t *rec, const char *field, bool v);
/* Enum fields by symbol; a string field takes the symbol as text. */
int fs_av_put_symbol(avro_value_t *rec, const char *field, const char *symbol);
void fs_av_read_str(avro_value_t *rec, const char *field, char *out, size_t n, bool *present);
int64_t fs_av_read_long(avro_value_t *rec, const char *field, int64_t def, bool *present);
bool fs_av_read_bool(avro_value_t *rec, const char *field, bool def);
/* Reads an enum field's symbol (or a string field) into out; "" when absent. */
void fs_av_read_symbol(avro_value_t *rec, const char *field, char *out, size_t n);

#endif
