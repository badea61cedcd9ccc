/* Avro single-object codec with writer->reader projection; see fs/codec.h.
 *
 * Each registered schema keeps: the avro-c schema and its generic value class (shared by
 * all threads, values are made per call), the Parsing Canonical Form and its fingerprint,
 * and a map from record full name to the record's JSON definition, which is where field
 * defaults are read from during projection (avro-c does not keep defaults).
 *
 * Values are made and freed per record; avro-c's memory for them comes from per-thread
 * free lists (fs/avro_pool.h), installed below before main(). */
#include "fs/codec.h"
#include "fs/avro_pool.h"
#include "fs/schemas.h"

#include <errno.h>
#include <pthread.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Before main() and so before avro-c's first allocation, in every program that uses the
 * codec (this object is linked whenever the codec is). */
__attribute__((constructor)) static void avro_pool_install(void)
{
    fs_avro_pool_install();
}

struct fs_schema {
    char *fullname;
    const char *name; /* points into fullname */
    char *canonical;
    uint64_t fp;
    bool reader;
    avro_schema_t avro;
    avro_value_iface_t *iface;
    json_t *records; /* record full name -> JSON definition (for defaults) */
};

struct fs_codec {
    fs_schema **v;
    size_t n, cap;
};

/* ---- CRC-64-AVRO -------------------------------------------------------------------- */

#define CRC64_EMPTY 0xc15d213aa4d7a795ULL
static uint64_t crc64_table[256];
static pthread_once_t crc64_once = PTHREAD_ONCE_INIT;

static void crc64_init(void)
{
    for (int i = 0; i < 256; i++) {
        uint64_t fp = (uint64_t)i;
        for (int j = 0; j < 8; j++)
            fp = (fp >> 1) ^ (CRC64_EMPTY & (0 - (fp & 1)));
        crc64_table[i] = fp;
    }
}

uint64_t fs_crc64_avro(const void *buf, size_t len)
{
    pthread_once(&crc64_once, crc64_init);
    const uint8_t *p = buf;
    uint64_t fp = CRC64_EMPTY;
    for (size_t i = 0; i < len; i++)
        fp = (fp >> 8) ^ crc64_table[(fp ^ p[i]) & 0xff];
    return fp;
}

/* ---- Parsing Canonical Form ---------------------------------------------------------- */

static const char *const primitives[] = {"null", "boolean", "int", "long", "float",
                                         "double", "bytes", "string", NULL};

static bool is_primitive(const char *t)
{
    for (int i = 0; primitives[i]; i++)
        if (!strcmp(t, primitives[i]))
            return true;
    return false;
}

/* Full name of `name` declared (or referenced) in namespace `ns`. An explicit namespace
 * (`explicit_ns` non-NULL) wins over the enclosing one, and the empty string is the null
 * namespace, as the Avro specification and avro-c's parser have it. Returns malloc'd, or
 * NULL when out of memory. */
static char *full_name(const char *name, const char *explicit_ns, const char *ns)
{
    const char *prefix = strchr(name, '.') ? NULL : explicit_ns ? explicit_ns : ns;
    if (!prefix || !*prefix)
        return strdup(name);
    size_t n = strlen(prefix) + 1 + strlen(name) + 1;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%s.%s", prefix, name);
    return out;
}

static char *namespace_of(const char *fullname)
{
    const char *dot = strrchr(fullname, '.');
    return dot ? strndup(fullname, (size_t)(dot - fullname)) : strdup("");
}

/* What one canonical-form pass collects and how it failed. */
typedef struct {
    json_t *records; /* record definitions by full name (may be NULL) */
    bool oom;        /* an allocation failed: the schema may be valid */
} pcf_ctx;

/* `v`, or NULL with the pass marked out of memory when `v` is NULL (a failed allocation). */
static json_t *made(json_t *v, pcf_ctx *cx)
{
    if (!v)
        cx->oom = true;
    return v;
}

/* Sets obj[key] to `v` (stolen; may be NULL from a failed allocation). False when out of
 * memory. */
static bool put(json_t *obj, const char *key, json_t *v, pcf_ctx *cx)
{
    if (!v || json_object_set_new(obj, key, v)) {
        cx->oom = true;
        return false;
    }
    return true;
}

/* The canonical string of a named type referenced as `name` in namespace `ns`. */
static json_t *reference(const char *name, const char *ns, pcf_ctx *cx)
{
    char *fn = full_name(name, NULL, ns);
    json_t *r = fn ? json_string(fn) : NULL;
    free(fn);
    return made(r, cx);
}

/* Returns a new JSON value in canonical form, or NULL on a malformed schema or when out of
 * memory (then cx->oom). */
static json_t *pcf(json_t *s, const char *ns, pcf_ctx *cx)
{
    if (json_is_string(s)) {
        const char *t = json_string_value(s);
        return is_primitive(t) ? made(json_string(t), cx) : reference(t, ns, cx);
    }
    if (json_is_array(s)) {
        json_t *out = made(json_array(), cx);
        size_t i;
        json_t *b;
        json_array_foreach(s, i, b)
        {
            json_t *c = out ? pcf(b, ns, cx) : NULL;
            if (!c || json_array_append_new(out, c)) {
                if (c)
                    cx->oom = true; /* append_new released c */
                json_decref(out);
                return NULL;
            }
        }
        return out;
    }
    if (!json_is_object(s))
        return NULL;
    json_t *type = json_object_get(s, "type");
    if (json_is_object(type) || json_is_array(type))
        return pcf(type, ns, cx);
    if (!json_is_string(type))
        return NULL;
    const char *t = json_string_value(type);
    if (is_primitive(t))
        return made(json_string(t), cx);
    if (!strcmp(t, "record") || !strcmp(t, "error") || !strcmp(t, "enum") || !strcmp(t, "fixed")) {
        const char *name = json_string_value(json_object_get(s, "name"));
        if (!name)
            return NULL;
        json_t *out = made(json_object(), cx);
        char *fn = full_name(name, json_string_value(json_object_get(s, "namespace")), ns);
        char *inner_ns = fn ? namespace_of(fn) : NULL;
        bool ok = out && inner_ns && put(out, "name", json_string(fn), cx) &&
                  put(out, "type", json_string(t), cx);
        if (out && !inner_ns)
            cx->oom = true;
        if (ok && (!strcmp(t, "record") || !strcmp(t, "error"))) {
            json_t *fields = json_array();
            ok = (!cx->records || !json_object_set(cx->records, fn, s)) &&
                 put(out, "fields", json_incref(fields), cx);
            if (!ok)
                cx->oom = true;
            size_t i;
            json_t *fd;
            json_array_foreach(json_object_get(s, "fields"), i, fd)
            {
                if (!ok)
                    break;
                json_t *fname = json_object_get(fd, "name");
                json_t *ft = json_is_string(fname)
                                 ? pcf(json_object_get(fd, "type"), inner_ns, cx)
                                 : NULL;
                json_t *f = ft ? made(json_object(), cx) : NULL;
                ok = f && put(f, "name", json_incref(fname), cx) &&
                     put(f, "type", json_incref(ft), cx) && !json_array_append(fields, f);
                if (f && !ok)
                    cx->oom = true;
                json_decref(ft);
                json_decref(f);
            }
            json_decref(fields);
        } else if (ok) { /* enum, fixed: avro-c's parse, after this, checks what they hold */
            const char *key = !strcmp(t, "enum") ? "symbols" : "size";
            json_t *v = json_object_get(s, key);
            ok = !v || put(out, key, json_incref(v), cx);
        }
        free(fn);
        free(inner_ns);
        if (!ok) {
            json_decref(out);
            return NULL;
        }
        return out;
    }
    if (!strcmp(t, "array") || !strcmp(t, "map")) {
        const char *key = !strcmp(t, "array") ? "items" : "values";
        json_t *c = pcf(json_object_get(s, key), ns, cx);
        if (!c)
            return NULL;
        json_t *out = made(json_object(), cx);
        if (!out || !put(out, "type", json_string(t), cx) || !put(out, key, json_incref(c), cx)) {
            json_decref(c);
            json_decref(out);
            return NULL;
        }
        json_decref(c);
        return out;
    }
    /* A reference to a named type written as {"type": "Name"}. */
    return reference(t, ns, cx);
}

static char *canonical_and_records(const char *json, json_t **records_out, fs_err *err)
{
    json_error_t jerr;
    json_t *root = json_loads(json, 0, &jerr);
    if (!root) {
        /* jansson names every malformed input; a failure without a text is its own
         * allocation failing before it parsed anything. */
        if (json_error_code(&jerr) == json_error_out_of_memory || !jerr.text[0])
            fs_err_set(err, FS_ERR_FATAL, ENOMEM, "out of memory");
        else
            fs_err_set(err, FS_ERR_INVALID, 0, "schema is not JSON: %s (line %d)", jerr.text,
                       jerr.line);
        return NULL;
    }
    pcf_ctx cx = {.records = json_object()};
    json_t *c = cx.records ? pcf(root, "", &cx) : NULL;
    json_decref(root);
    bool formed = c != NULL; /* then a NULL text is json_dumps out of memory */
    char *text = c ? json_dumps(c, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY) : NULL;
    if (text) {
        /* jansson 2.14's dump can lose bytes and still return a text when its allocator
         * fails (test_codec found a key dropped), and the fingerprint is taken from this
         * text: it must read back as what was dumped. */
        json_t *back = json_loads(text, JSON_DECODE_ANY, NULL);
        if (!json_equal(back, c)) {
            free(text);
            text = NULL;
        }
        json_decref(back);
    }
    json_decref(c);
    json_t *records = cx.records;
    if (!text) {
        json_decref(records);
        if (formed || !records || cx.oom)
            fs_err_set(err, FS_ERR_FATAL, ENOMEM, "out of memory");
        else
            fs_err_set(err, FS_ERR_INVALID, 0, "schema is not a valid Avro schema");
        return NULL;
    }
    if (records_out)
        *records_out = records;
    else
        json_decref(records);
    return text;
}

char *fs_avro_canonical_form(const char *json, fs_err *err)
{
    return canonical_and_records(json, NULL, err);
}

/* ---- registry ----------------------------------------------------------------------- */

static void schema_free(fs_schema *s)
{
    if (!s)
        return;
    if (s->iface)
        avro_value_iface_decref(s->iface);
    if (s->avro)
        avro_schema_decref(s->avro);
    json_decref(s->records);
    free(s->canonical);
    free(s->fullname);
    free(s);
}

fs_codec *fs_codec_new_empty(void)
{
    return calloc(1, sizeof(fs_codec));
}

fs_codec *fs_codec_new(fs_err *err)
{
    if (fs_avro_pool_check(err)) /* FLASHSALE_AVRO_POOL was not a boolean */
        return NULL;
    fs_codec *c = fs_codec_new_empty();
    if (!c) {
        fs_err_set(err, FS_ERR_FATAL, ENOMEM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < fs_embedded_schemas_count; i++) {
        const char *path = fs_embedded_schemas[i].path;
        /* "Name.avsc" is the reader; "Name.vN.avsc" an older writer version. */
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        bool reader = strchr(base, '.') == strrchr(base, '.');
        if (!fs_codec_add(c, fs_embedded_schemas[i].json, reader, err)) {
            char m[sizeof err->msg];
            snprintf(m, sizeof m, "%s", err->msg);
            fs_err_set(err, FS_ERR_FATAL, 0, "schemas/%s: %s", path, m);
            fs_codec_destroy(c);
            return NULL;
        }
    }
    return c;
}

void fs_codec_destroy(fs_codec *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        schema_free(c->v[i]);
    free(c->v);
    free(c);
}

const fs_schema *fs_codec_add(fs_codec *c, const char *json, bool reader, fs_err *err)
{
    fs_schema *s = calloc(1, sizeof *s);
    if (!s) {
        fs_err_set(err, FS_ERR_FATAL, ENOMEM, "out of memory");
        return NULL;
    }
    s->canonical = canonical_and_records(json, &s->records, err);
    if (!s->canonical)
        goto fail;
    if (avro_schema_from_json_length(json, strlen(json), &s->avro)) {
        fs_err_set(err, FS_ERR_INVALID, 0, "avro: %s", avro_strerror());
        goto fail;
    }
    if (!is_avro_named_type(s->avro)) {
        fs_err_set(err, FS_ERR_INVALID, 0, "top-level schema must be a named type");
        goto fail;
    }
    const char *ns = avro_schema_namespace(s->avro);
    s->fullname = full_name(avro_schema_name(s->avro), ns, NULL);
    if (!s->fullname) {
        fs_err_set(err, FS_ERR_FATAL, ENOMEM, "out of memory");
        goto fail;
    }
    s->name = strrchr(s->fullname, '.') ? strrchr(s->fullname, '.') + 1 : s->fullname;
    s->fp = fs_crc64_avro(s->canonical, strlen(s->canonical));
    s->reader = reader;
    s->iface = avro_generic_class_from_schema(s->avro);
    if (!s->iface) {
        fs_err_set(err, FS_ERR_INVALID, 0, "avro: %s", avro_strerror());
        goto fail;
    }
    for (size_t i = 0; i < c->n; i++) {
        if (c->v[i]->fp == s->fp) { /* same schema registered twice: keep one */
            if (reader)
                c->v[i]->reader = true;
            schema_free(s);
            s = c->v[i];
            goto demote;
        }
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        fs_schema **v = realloc(c->v, cap * sizeof *v);
        if (!v) {
            fs_err_set(err, FS_ERR_FATAL, ENOMEM, "out of memory");
            goto fail;
        }
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = s;
demote:
    if (reader) /* one reader per full name */
        for (size_t i = 0; i < c->n; i++)
            if (c->v[i] != s && !strcmp(c->v[i]->fullname, s->fullname))
                c->v[i]->reader = false;
    return s;
fail:
    schema_free(s);
    return NULL;
}

const fs_schema *fs_codec_reader(const fs_codec *c, const char *name)
{
    bool full = strchr(name, '.') != NULL;
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i]->reader && !strcmp(full ? c->v[i]->fullname : c->v[i]->name, name))
            return c->v[i];
    return NULL;
}

const fs_schema *fs_codec_by_fingerprint(const fs_codec *c, uint64_t fp)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i]->fp == fp)
            return c->v[i];
    return NULL;
}

size_t fs_codec_count(const fs_codec *c)
{
    return c->n;
}
const fs_schema *fs_codec_at(const fs_codec *c, size_t i)
{
    return i < c->n ? c->v[i] : NULL;
}
const char *fs_schema_fullname(const fs_schema *s)
{
    return s->fullname;
}
const char *fs_schema_name(const fs_schema *s)
{
    return s->name;
}
const char *fs_schema_canonical(const fs_schema *s)
{
    return s->canonical;
}
uint64_t fs_schema_fingerprint(const fs_schema *s)
{
    return s->fp;
}
avro_schema_t fs_schema_avro(const fs_schema *s)
{
    return s->avro;
}
bool fs_schema_is_reader(const fs_schema *s)
{
    return s->reader;
}

int fs_schema_value_new(const fs_schema *s, avro_value_t *out, fs_err *err)
{
    if (avro_generic_value_new(s->iface, out))
        return fs_err_set(err, FS_ERR_FATAL, ENOMEM, "avro: %s", avro_strerror());
    return 0;
}

/* ---- encode / decode ---------------------------------------------------------------- */

int fs_codec_encode(const fs_schema *s, avro_value_t *v, void **buf, size_t *len, fs_err *err)
{
    size_t size = 0;
    if (avro_value_sizeof(v, &size))
        return fs_err_set(err, FS_ERR_INVALID, 0, "avro sizeof %s: %s", s->name, avro_strerror());
    uint8_t *out = malloc(FS_AVRO_HEADER_LEN + size);
    if (!out)
        return fs_err_set(err, FS_ERR_FATAL, ENOMEM, "out of memory");
    out[0] = FS_AVRO_MAGIC0;
    out[1] = FS_AVRO_MAGIC1;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(s->fp >> (8 * i));
    avro_writer_t w = avro_writer_memory((char *)out + FS_AVRO_HEADER_LEN, (int64_t)size);
    int rc = avro_value_write(w, v);
    avro_writer_free(w);
    if (rc) {
        free(out);
        return fs_err_set(err, FS_ERR_INVALID, rc, "avro encode %s: %s", s->name,
                          avro_strerror());
    }
    *buf = out;
    *len = FS_AVRO_HEADER_LEN + size;
    return 0;
}

static int project(avro_value_t *src, avro_value_t *dst, const fs_schema *rs, fs_err *err);
static int apply_default(json_t *def, avro_value_t *dst, const fs_schema *rs, fs_err *err);

static const char *named_fullname(avro_schema_t s, char *buf, size_t n)
{
    const char *ns = avro_schema_namespace(s);
    if (ns && *ns)
        snprintf(buf, n, "%s.%s", ns, avro_schema_name(s));
    else
        snprintf(buf, n, "%s", avro_schema_name(s));
    return buf;
}

/* Whether a writer (non-union) schema can be read as reader schema r. */
static bool schema_matches(avro_schema_t w, avro_schema_t r)
{
    avro_type_t wt = avro_typeof(w), rt = avro_typeof(r);
    if (wt == rt) {
        if (is_avro_named_type(w))
            return !strcmp(avro_schema_name(w), avro_schema_name(r));
        return true;
    }
    switch (wt) {
    case AVRO_INT32:
        return rt == AVRO_INT64 || rt == AVRO_FLOAT || rt == AVRO_DOUBLE;
    case AVRO_INT64:
        return rt == AVRO_FLOAT || rt == AVRO_DOUBLE;
    case AVRO_FLOAT:
        return rt == AVRO_DOUBLE;
    case AVRO_STRING:
        return rt == AVRO_BYTES;
    case AVRO_BYTES:
        return rt == AVRO_STRING;
    default:
        return false;
    }
}

static int project_record(avro_value_t *src, avro_value_t *dst, const fs_schema *rs, fs_err *err)
{
    avro_schema_t rsch = avro_value_get_schema(dst);
    size_t n = 0;
    avro_value_get_size(dst, &n);
    json_t *def_fields = NULL;
    char fn[256];
    json_t *rdef = json_object_get(rs->records, named_fullname(rsch, fn, sizeof fn));
    def_fields = json_object_get(rdef, "fields");
    for (size_t i = 0; i < n; i++) {
        const char *fname = avro_schema_record_field_name(rsch, (int)i);
        avro_value_t dfield, sfield;
        avro_value_get_by_index(dst, i, &dfield, NULL);
        if (avro_value_get_by_name(src, fname, &sfield, NULL) == 0) {
            if (project(&sfield, &dfield, rs, err))
                return -1;
            continue;
        }
        json_t *fd = json_array_get(def_fields, i);
        json_t *def = json_object_get(fd, "default");
        if (!def)
            return fs_err_set(err, FS_ERR_INVALID, 0,
                              "field %s.%s is missing in the writer's schema and has no default",
                              fn, fname);
        if (apply_default(def, &dfield, rs, err))
            return -1;
    }
    return 0;
}

static int project(avro_value_t *src, avro_value_t *dst, const fs_schema *rs, fs_err *err)
{
    avro_type_t st = avro_value_get_type(src), dt = avro_value_get_type(dst);
    if (st == AVRO_UNION) {
        avro_value_t branch;
        if (avro_value_get_current_branch(src, &branch))
            return fs_err_set(err, FS_ERR_INVALID, 0, "union without a branch");
        return project(&branch, dst, rs, err);
    }
    if (dt == AVRO_UNION) {
        avro_schema_t us = avro_value_get_schema(dst);
        avro_schema_t ws = avro_value_get_schema(src);
        size_t nb = avro_schema_union_size(us);
        for (size_t i = 0; i < nb; i++) {
            if (schema_matches(ws, avro_schema_union_branch(us, (int)i))) {
                avro_value_t b;
                if (avro_value_set_branch(dst, (int)i, &b))
                    return fs_err_set(err, FS_ERR_INVALID, 0, "avro: %s", avro_strerror());
                return project(src, &b, rs, err);
            }
        }
        return fs_err_set(err, FS_ERR_INVALID, 0, "no union branch of the reader matches %s",
                          avro_schema_type_name(ws));
    }
    int rc = 0;
    switch (st) {
    case AVRO_NULL:
        if (dt != AVRO_NULL)
            goto mismatch;
        rc = avro_value_set_null(dst);
        break;
    case AVRO_BOOLEAN: {
        int b;
        if (dt != AVRO_BOOLEAN)
            goto mismatch;
        rc = avro_value_get_boolean(src, &b) || avro_value_set_boolean(dst, b);
        break;
    }
    case AVRO_INT32: {
        int32_t x;
        rc = avro_value_get_int(src, &x);
        if (dt == AVRO_INT32)
            rc = rc || avro_value_set_int(dst, x);
        else if (dt == AVRO_INT64)
            rc = rc || avro_value_set_long(dst, x);
        else if (dt == AVRO_FLOAT)
            rc = rc || avro_value_set_float(dst, (float)x);
        else if (dt == AVRO_DOUBLE)
            rc = rc || avro_value_set_double(dst, x);
        else
            goto mismatch;
        break;
    }
    case AVRO_INT64: {
        int64_t x;
        rc = avro_value_get_long(src, &x);
        if (dt == AVRO_INT64)
            rc = rc || avro_value_set_long(dst, x);
        else if (dt == AVRO_FLOAT)
            rc = rc || avro_value_set_float(dst, (float)x);
        else if (dt == AVRO_DOUBLE)
            rc = rc || avro_value_set_double(dst, (double)x);
        else
            goto mismatch;
        break;
    }
    case AVRO_FLOAT: {
        float x;
        rc = avro_value_get_float(src, &x);
        if (dt == AVRO_FLOAT)
            rc = rc || avro_value_set_float(dst, x);
        else if (dt == AVRO_DOUBLE)
            rc = rc || avro_value_set_double(dst, x);
        else
            goto mismatch;
        break;
    }
    case AVRO_DOUBLE: {
        double x;
        if (dt != AVRO_DOUBLE)
            goto mismatch;
        rc = avro_value_get_double(src, &x) || avro_value_set_double(dst, x);
        break;
    }
    case AVRO_STRING:
    case AVRO_BYTES: {
        const void *p = NULL;
        size_t n = 0;
        if (st == AVRO_STRING) {
            const char *s = NULL;
            rc = avro_value_get_string(src, &s, &n);
            p = s;
            if (!rc && n)
                n--; /* size includes the NUL */
        } else {
            rc = avro_value_get_bytes(src, &p, &n);
        }
        if (rc)
            break;
        if (dt == AVRO_BYTES)
            rc = avro_value_set_bytes(dst, (void *)p, n);
        else if (dt == AVRO_STRING) {
            /* all n bytes, also past a NUL inside (strndup would stop there, and avro-c then
             * copy n + 1 bytes out of a shorter buffer) */
            char *tmp = malloc(n + 1);
            if (tmp) {
                memcpy(tmp, p, n);
                tmp[n] = '\0';
            }
            rc = !tmp || avro_value_set_string_len(dst, tmp, n + 1);
            free(tmp);
        } else
            goto mismatch;
        break;
    }
    case AVRO_FIXED: {
        const void *p;
        size_t n;
        if (dt != AVRO_FIXED)
            goto mismatch;
        rc = avro_value_get_fixed(src, &p, &n) || avro_value_set_fixed(dst, (void *)p, n);
        break;
    }
    case AVRO_ENUM: {
        int idx;
        if (dt != AVRO_ENUM)
            goto mismatch;
        rc = avro_value_get_enum(src, &idx);
        if (rc)
            break;
        const char *sym = avro_schema_enum_get(avro_value_get_schema(src), idx);
        int ridx = sym ? avro_schema_enum_get_by_name(avro_value_get_schema(dst), sym) : -1;
        if (ridx < 0)
            return fs_err_set(err, FS_ERR_INVALID, 0, "enum symbol %s unknown to the reader",
                              sym ? sym : "?");
        rc = avro_value_set_enum(dst, ridx);
        break;
    }
    case AVRO_ARRAY: {
        size_t n = 0;
        if (dt != AVRO_ARRAY)
            goto mismatch;
        if (avro_value_get_size(src, &n))
            return fs_err_set(err, FS_ERR_INVALID, 0, "avro: %s", avro_strerror());
        for (size_t i = 0; i < n; i++) {
            avro_value_t se, de;
            if (avro_value_get_by_index(src, i, &se, NULL) || avro_value_append(dst, &de, NULL) ||
                project(&se, &de, rs, err))
                return err && err->cls ? -1 : fs_err_set(err, FS_ERR_INVALID, 0, "array item");
        }
        break;
    }
    case AVRO_MAP: {
        size_t n = 0;
        if (dt != AVRO_MAP)
            goto mismatch;
        if (avro_value_get_size(src, &n))
            return fs_err_set(err, FS_ERR_INVALID, 0, "avro: %s", avro_strerror());
        for (size_t i = 0; i < n; i++) {
            avro_value_t se, de;
            const char *key;
            if (avro_value_get_by_index(src, i, &se, &key) ||
                avro_value_add(dst, key, &de, NULL, NULL) || project(&se, &de, rs, err))
                return err && err->cls ? -1 : fs_err_set(err, FS_ERR_INVALID, 0, "map value");
        }
        break;
    }
    case AVRO_RECORD:
        if (dt != AVRO_RECORD)
            goto mismatch;
        return project_record(src, dst, rs, err);
    default:
        goto mismatch;
    }
    if (rc)
        return fs_err_set(err, FS_ERR_INVALID, rc, "avro: %s", avro_strerror());
    return 0;
mismatch:
    return fs_err_set(err, FS_ERR_INVALID, 0, "writer type %s cannot be read as %s",
                      avro_schema_type_name(avro_value_get_schema(src)),
                      avro_schema_type_name(avro_value_get_schema(dst)));
}

static int apply_default(json_t *def, avro_value_t *dst, const fs_schema *rs, fs_err *err)
{
    int rc = 0;
    switch (avro_value_get_type(dst)) {
    case AVRO_NULL:
        rc = avro_value_set_null(dst);
        break;
    case AVRO_BOOLEAN:
        rc = avro_value_set_boolean(dst, json_is_true(def));
        break;
    case AVRO_INT32:
        rc = avro_value_set_int(dst, (int32_t)json_integer_value(def));
        break;
    case AVRO_INT64:
        rc = avro_value_set_long(dst, (int64_t)json_integer_value(def));
        break;
    case AVRO_FLOAT:
        rc = avro_value_set_float(dst, (float)json_number_value(def));
        break;
    case AVRO_DOUBLE:
        rc = avro_value_set_double(dst, json_number_value(def));
        break;
    case AVRO_STRING:
        rc = !json_is_string(def) ||
             avro_value_set_string_len(dst, json_string_value(def), json_string_length(def) + 1);
        break;
    case AVRO_BYTES:
    case AVRO_FIXED: {
        /* JSON default of bytes: a string whose code points 0-255 are the bytes. */
        const unsigned char *s = (const unsigned char *)json_string_value(def);
        size_t n = json_string_length(def), k = 0;
        unsigned char *b = malloc(n + 1);
        if (!b || !s) {
            free(b);
            rc = 1;
            break;
        }
        for (size_t i = 0; i < n; i++) {
            if (s[i] == 0xC2 || s[i] == 0xC3) { /* two-byte UTF-8 for 0x80-0xFF */
                b[k++] = (unsigned char)(((s[i] & 0x03) << 6) | (s[i + 1] & 0x3f));
                i++;
            } else
                b[k++] = s[i];
        }
        rc = avro_value_get_type(dst) == AVRO_BYTES ? avro_value_set_bytes(dst, b, k)
                                                    : avro_value_set_fixed(dst, b, k);
        free(b);
        break;
    }
    case AVRO_ENUM: {
        int idx = json_is_string(def)
                      ? avro_schema_enum_get_by_name(avro_value_get_schema(dst),
                                                     json_string_value(def))
                      : -1;
        rc = idx < 0 || avro_value_set_enum(dst, idx);
        break;
    }
    case AVRO_UNION: { /* a union's default is of its first branch */
        avro_value_t b;
        if (avro_value_set_branch(dst, 0, &b))
            return fs_err_set(err, FS_ERR_INVALID, 0, "avro: %s", avro_strerror());
        return apply_default(def, &b, rs, err);
    }
    case AVRO_ARRAY: {
        size_t i;
        json_t *e;
        json_array_foreach(def, i, e)
        {
            avro_value_t de;
            if (avro_value_append(dst, &de, NULL) || apply_default(e, &de, rs, err))
                return -1;
        }
        break;
    }
    case AVRO_MAP: {
        const char *k;
        json_t *e;
        json_object_foreach(def, k, e)
        {
            avro_value_t de;
            if (avro_value_add(dst, k, &de, NULL, NULL) || apply_default(e, &de, rs, err))
                return -1;
        }
        break;
    }
    case AVRO_RECORD: {
        avro_schema_t rsch = avro_value_get_schema(dst);
        char fn[256];
        json_t *fields = json_object_get(
            json_object_get(rs->records, named_fullname(rsch, fn, sizeof fn)), "fields");
        size_t n = 0;
        avro_value_get_size(dst, &n);
        for (size_t i = 0; i < n; i++) {
            const char *fname = avro_schema_record_field_name(rsch, (int)i);
            json_t *v = json_object_get(def, fname);
            if (!v)
                v = json_object_get(json_array_get(fields, i), "default");
            avro_value_t df;
            avro_value_get_by_index(dst, i, &df, NULL);
            if (!v)
                return fs_err_set(err, FS_ERR_INVALID, 0, "no default for %s.%s", fn, fname);
            if (apply_default(v, &df, rs, err))
                return -1;
        }
        break;
    }
    default:
        rc = 1;
    }
    if (rc)
        return fs_err_set(err, FS_ERR_INVALID, 0, "bad default value for %s",
                          avro_schema_type_name(avro_value_get_schema(dst)));
    return 0;
}

/* ---- structural validation ---------------------------------------------------------
 * avro-c trusts lengths and counts read from the wire (a corrupt length becomes a huge or
 * negative malloc). Before a payload reaches avro-c it is walked once against the writer's
 * schema: varints well formed, lengths non-negative and within the remaining bytes, enum
 * indexes and union branches in range, nesting bounded, and no byte left over. */

#define SCAN_MAX_DEPTH 64
#define SCAN_MAX_ITEMS (1 << 20) /* items of zero-byte types (null) per array */

static int scan_varint(const uint8_t **p, const uint8_t *end, int64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*p >= end)
            return -1;
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1); /* zig-zag */
            return 0;
        }
    }
    return -1;
}

static int scan_len(const uint8_t **p, const uint8_t *end)
{
    int64_t n;
    if (scan_varint(p, end, &n) || n < 0 || n > end - *p)
        return -1;
    *p += n;
    return 0;
}

static int scan(avro_schema_t s, const uint8_t **p, const uint8_t *end, int depth)
{
    int64_t n;
    if (depth > SCAN_MAX_DEPTH)
        return -1;
    switch (avro_typeof(s)) {
    case AVRO_NULL:
        return 0;
    case AVRO_BOOLEAN:
        if (*p >= end || **p > 1)
            return -1;
        (*p)++;
        return 0;
    case AVRO_INT32:
        return scan_varint(p, end, &n) || n < INT32_MIN || n > INT32_MAX ? -1 : 0;
    case AVRO_INT64:
        return scan_varint(p, end, &n);
    case AVRO_FLOAT:
    case AVRO_DOUBLE: {
        int64_t w = avro_typeof(s) == AVRO_FLOAT ? 4 : 8;
        if (end - *p < w)
            return -1;
        *p += w;
        return 0;
    }
    case AVRO_STRING:
    case AVRO_BYTES:
        return scan_len(p, end);
    case AVRO_FIXED: {
        int64_t w = avro_schema_fixed_size(s);
        if (end - *p < w)
            return -1;
        *p += w;
        return 0;
    }
    case AVRO_ENUM:
        return scan_varint(p, end, &n) || n < 0 || n >= avro_schema_enum_number_of_symbols(s)
                   ? -1
                   : 0;
    case AVRO_UNION:
        if (scan_varint(p, end, &n) || n < 0 || (size_t)n >= avro_schema_union_size(s))
            return -1;
        return scan(avro_schema_union_branch(s, (int)n), p, end, depth + 1);
    case AVRO_ARRAY:
    case AVRO_MAP: {
        bool map = avro_typeof(s) == AVRO_MAP;
        avro_schema_t item = map ? avro_schema_map_values(s) : avro_schema_array_items(s);
        int64_t total = 0;
        for (;;) {
            if (scan_varint(p, end, &n))
                return -1;
            if (n == 0)
                return 0;
            if (n < 0) { /* negative count: a byte size follows */
                int64_t bytes;
                if (n == INT64_MIN || scan_varint(p, end, &bytes) || bytes < 0 ||
                    bytes > end - *p)
                    return -1;
                n = -n;
            }
            /* (checked before adding: total + n could overflow) */
            if (n > SCAN_MAX_ITEMS - total || (map && n > end - *p))
                return -1;
            total += n;
            for (int64_t i = 0; i < n; i++)
                if ((map && scan_len(p, end)) || scan(item, p, end, depth + 1))
                    return -1;
        }
    }
    case AVRO_RECORD: {
        size_t nf = avro_schema_record_size(s);
        for (size_t i = 0; i < nf; i++)
            if (scan(avro_schema_record_field_get_by_index(s, (int)i), p, end, depth + 1))
                return -1;
        return 0;
    }
    case AVRO_LINK:
        return scan(avro_schema_link_target(s), p, end, depth + 1);
    default:
        return -1;
    }
}

int fs_codec_decode(const fs_codec *c, const void *buf, size_t len, const fs_schema **schema_out,
                    avro_value_t *out, fs_err *err)
{
    const uint8_t *p = buf;
    if (!p || len < FS_AVRO_HEADER_LEN)
        return fs_err_set(err, FS_ERR_INVALID, 0, "record too short (%zu bytes)", len);
    if (p[0] != FS_AVRO_MAGIC0 || p[1] != FS_AVRO_MAGIC1)
        return fs_err_set(err, FS_ERR_INVALID, 0,
                          "not Avro single-object encoding (magic %02x %02x)", p[0], p[1]);
    uint64_t fp = 0;
    for (int i = 0; i < 8; i++)
        fp |= (uint64_t)p[2 + i] << (8 * i);
    const fs_schema *ws = fs_codec_by_fingerprint(c, fp);
    if (!ws)
        return fs_err_set(err, FS_ERR_INVALID, 0, "unknown schema fingerprint %016llx",
                          (unsigned long long)fp);
    const fs_schema *rs = ws->reader ? ws : fs_codec_reader(c, ws->fullname);
    if (!rs)
        return fs_err_set(err, FS_ERR_INVALID, 0, "no reader schema for %s", ws->fullname);

    const uint8_t *cur = p + FS_AVRO_HEADER_LEN, *end = p + len;
    if (scan(ws->avro, &cur, end, 0))
        return fs_err_set(err, FS_ERR_INVALID, 0, "%s payload: truncated or corrupt", ws->name);
    if (cur != end)
        return fs_err_set(err, FS_ERR_INVALID, 0, "%s payload: %zu trailing bytes after the record",
                          ws->name, (size_t)(end - cur));

    avro_value_t wv;
    if (fs_schema_value_new(ws, &wv, err))
        return -1;
    avro_reader_t r = avro_reader_memory((const char *)p + FS_AVRO_HEADER_LEN,
                                         (int64_t)(len - FS_AVRO_HEADER_LEN));
    int rc = avro_value_read(r, &wv);
    avro_reader_free(r);
    if (rc) {
        avro_value_decref(&wv);
        return fs_err_set(err, FS_ERR_INVALID, rc, "%s payload: %s", ws->name, avro_strerror());
    }
    if (rs == ws) {
        *out = wv;
        *schema_out = rs;
        return 0;
    }
    avro_value_t rv;
    if (fs_schema_value_new(rs, &rv, err)) {
        avro_value_decref(&wv);
        return -1;
    }
    rc = project(&wv, &rv, rs, err);
    avro_value_decref(&wv);
    if (rc) {
        avro_value_decref(&rv);
        return -1;
    }
    *out = rv;
    *schema_out = rs;
    return 0;
}

/* ---- field helpers ------------------------------------------------------------------ */

static int field(avro_value_t *rec, const char *name, avro_value_t *f, fs_err *err)
{
    if (avro_value_get_by_name(rec, name, f, NULL))
        return fs_err_set(err, FS_ERR_INVALID, 0, "no field %s", name);
    if (avro_value_get_type(f) == AVRO_UNION) { /* optional field: take / pick non-null */
        int disc;
        avro_value_t b;
        if (avro_value_get_discriminant(f, &disc) == 0 && disc >= 0 &&
            avro_value_get_current_branch(f, &b) == 0)
            *f = b;
    }
    return 0;
}

int fs_av_get_str(avro_value_t *rec, const char *name, const char **out, fs_err *err)
{
    avro_value_t f;
    size_t n;
    if (field(rec, name, &f, err))
        return -1;
    if (avro_value_get_type(&f) == AVRO_NULL) {
        *out = NULL;
        return 0;
    }
    if (avro_value_get_string(&f, out, &n))
        return fs_err_set(err, FS_ERR_INVALID, 0, "field %s is not a string", name);
    return 0;
}

int fs_av_get_int(avro_value_t *rec, const char *name, int32_t *out, fs_err *err)
{
    avro_value_t f;
    if (field(rec, name, &f, err))
        return -1;
    if (avro_value_get_int(&f, out))
        return fs_err_set(err, FS_ERR_INVALID, 0, "field %s is not an int", name);
    return 0;
}

int fs_av_get_long(avro_value_t *rec, const char *name, int64_t *out, fs_err *err)
{
    avro_value_t f;
    if (field(rec, name, &f, err))
        return -1;
    if (avro_value_get_long(&f, out))
        return fs_err_set(err, FS_ERR_INVALID, 0, "field %s is not a long", name);
    return 0;
}

/* For an optional field (["null", T]) select the T branch before setting. */
static int field_for_set(avro_value_t *rec, const char *name, avro_value_t *f, fs_err *err)
{
    if (avro_value_get_by_name(rec, name, f, NULL))
        return fs_err_set(err, FS_ERR_INVALID, 0, "no field %s", name);
    if (avro_value_get_type(f) == AVRO_UNION) {
        avro_value_t b;
        if (avro_value_set_branch(f, 1, &b))
            return fs_err_set(err, FS_ERR_INVALID, 0, "field %s: %s", name, avro_strerror());
        *f = b;
    }
    return 0;
}

int fs_av_set_str(avro_value_t *rec, const char *name, const char *v, fs_err *err)
{
    avro_value_t f;
    if (!v) { /* NULL sets an optional field to null */
        if (avro_value_get_by_name(rec, name, &f, NULL) || avro_value_get_type(&f) != AVRO_UNION)
            return fs_err_set(err, FS_ERR_INVALID, 0, "field %s is not optional", name);
        avro_value_t b;
        return avro_value_set_branch(&f, 0, &b) || avro_value_set_null(&b)
                   ? fs_err_set(err, FS_ERR_INVALID, 0, "field %s", name)
                   : 0;
    }
    if (field_for_set(rec, name, &f, err))
        return -1;
    if (avro_value_set_string(&f, v))
        return fs_err_set(err, FS_ERR_INVALID, 0, "field %s is not a string", name);
    return 0;
}

int fs_av_set_int(avro_value_t *rec, const char *name, int32_t v, fs_err *err)
{
    avro_value_t f;
    if (field_for_set(rec, name, &f, err))
        return -1;
    if (avro_value_set_int(&f, v))
        return fs_err_set(err, FS_ERR_INVALID, 0, "field %s is not an int", name);
    return 0;
}

int fs_av_set_long(avro_value_t *rec, const char *name, int64_t v, fs_err *err)
{
    avro_value_t f;
    if (field_for_set(rec, name, &f, err))
        return -1;
    if (avro_value_set_long(&f, v))
        return fs_err_set(err, FS_ERR_INVALID, 0, "field %s is not a long", name);
    return 0;
}

int fs_av_get_bool(avro_value_t *rec, const char *name, bool *out, fs_err *err)
{
    avro_value_t f;
    int b;
    if (field(rec, name, &f, err))
        return -1;
    if (avro_value_get_boolean(&f, &b))
        return fs_err_set(err, FS_ERR_INVALID, 0, "field %s is not a boolean", name);
    *out = b != 0;
    return 0;
}

int fs_av_set_bool(avro_value_t *rec, const char *name, bool v, fs_err *err)
{
    avro_value_t f;
    if (field_for_set(rec, name, &f, err))
        return -1;
    if (avro_value_set_boolean(&f, v))
        return fs_err_set(err, FS_ERR_INVALID, 0, "field %s is not a boolean", name);
    return 0;
}

int fs_av_set_null(avro_value_t *rec, const char *name, fs_err *err)
{
    avro_value_t f, b;
    if (avro_value_get_by_name(rec, name, &f, NULL) || avro_value_get_type(&f) != AVRO_UNION)
        return fs_err_set(err, FS_ERR_INVALID, 0, "field %s is not optional", name);
    return avro_value_set_branch(&f, 0, &b) || avro_value_set_null(&b)
               ? fs_err_set(err, FS_ERR_INVALID, 0, "field %s: %s", name, avro_strerror())
               : 0;
}

int fs_av_set_enum(avro_value_t *rec, const char *name, const char *symbol, fs_err *err)
{
    avro_value_t f;
    if (avro_value_get_by_name(rec, name, &f, NULL) || avro_value_get_type(&f) != AVRO_ENUM)
        return fs_err_set(err, FS_ERR_INVALID, 0, "field %s is not an enum", name);
    int i = avro_schema_enum_get_by_name(avro_value_get_schema(&f), symbol);
    if (i < 0 || avro_value_set_enum(&f, i))
        return fs_err_set(err, FS_ERR_INVALID, 0, "field %s: no symbol %s", name, symbol);
    return 0;
}

int fs_av_get_enum(avro_value_t *rec, const char *name, char *out, size_t n, fs_err *err)
{
    avro_value_t f;
    int i = 0;
    if (avro_value_get_by_name(rec, name, &f, NULL) || avro_value_get_type(&f) != AVRO_ENUM ||
        avro_value_get_enum(&f, &i))
        return fs_err_set(err, FS_ERR_INVALID, 0, "field %s is not an enum", name);
    const char *sym = avro_schema_enum_get(avro_value_get_schema(&f), i);
    if (!sym || strlen(sym) >= n)
        return fs_err_set(err, FS_ERR_INVALID, 0, "field %s: symbol %d unreadable", name, i);
    memcpy(out, sym, strlen(sym) + 1);
    return 0;
}

int fs_av_get_strcpy(avro_value_t *rec, const char *name, char *out, size_t n, fs_err *err)
{
    const char *s;
    if (fs_av_get_str(rec, name, &s, err))
        return -1;
    if (!s)
        s = "";
    size_t len = strlen(s);
    if (len >= n)
        return fs_err_set(err, FS_ERR_INVALID, 0, "field %s: %zu bytes, at most %zu", name, len,
                          n - 1);
    memcpy(out, s, len + 1);
    return 0;
}

/* ---- tolerant access ---------------------------------------------------------------- */

static bool has_field(avro_value_t *rec, const char *f, avro_value_t *out)
{
    return avro_value_get_by_name(rec, f, out, NULL) == 0;
}

/* Resolves an optional field to its value (null branch -> false). */
static bool opt_value(avro_value_t *field, avro_value_t *out)
{
    if (avro_value_get_type(field) != AVRO_UNION) {
        *out = *field;
        return true;
    }
    int disc;
    if (avro_value_get_discriminant(field, &disc) || disc < 0)
        return false;
    avro_value_get_current_branch(field, out);
    return avro_value_get_type(out) != AVRO_NULL;
}

int fs_av_put_str(avro_value_t *rec, const char *f, const char *v, bool present)
{
    avro_value_t fv, b;
    if (!has_field(rec, f, &fv))
        return 0;
    if (avro_value_get_type(&fv) == AVRO_UNION) {
        if (!present || !v || !*v)
            return avro_value_set_branch(&fv, 0, &b) || avro_value_set_null(&b);
        return avro_value_set_branch(&fv, 1, &b) || avro_value_set_string(&b, v);
    }
    return avro_value_set_string(&fv, v ? v : "");
}

int fs_av_put_long(avro_value_t *rec, const char *f, int64_t v, bool present)
{
    avro_value_t fv, b;
    if (!has_field(rec, f, &fv))
        return 0;
    if (avro_value_get_type(&fv) == AVRO_UNION) {
        if (!present)
            return avro_value_set_branch(&fv, 0, &b) || avro_value_set_null(&b);
        if (avro_value_set_branch(&fv, 1, &b))
            return -1;
        fv = b;
    }
    if (avro_value_get_type(&fv) == AVRO_INT32)
        return avro_value_set_int(&fv, (int32_t)v);
    return avro_value_set_long(&fv, v);
}

int fs_av_put_bool(avro_value_t *rec, const char *f, bool v)
{
    avro_value_t fv;
    if (!has_field(rec, f, &fv))
        return 0;
    return avro_value_set_boolean(&fv, v);
}

int fs_av_put_symbol(avro_value_t *rec, const char *f, const char *symbol)
{
    avro_value_t fv;
    if (!has_field(rec, f, &fv))
        return 0;
    if (avro_value_get_type(&fv) == AVRO_ENUM) {
        int i = avro_schema_enum_get_by_name(avro_value_get_schema(&fv), symbol);
        return i < 0 ? -1 : avro_value_set_enum(&fv, i);
    }
    return avro_value_set_string(&fv, symbol);
}

void fs_av_read_str(avro_value_t *rec, const char *f, char *out, size_t n, bool *present)
{
    avro_value_t fv, v;
    const char *s;
    size_t len;
    if (present)
        *present = false;
    out[0] = '\0';
    if (!has_field(rec, f, &fv) || !opt_value(&fv, &v) || avro_value_get_string(&v, &s, &len))
        return;
    snprintf(out, n, "%s", s);
    if (present)
        *present = true;
}

int64_t fs_av_read_long(avro_value_t *rec, const char *f, int64_t def, bool *present)
{
    avro_value_t fv, v;
    if (present)
        *present = false;
    if (!has_field(rec, f, &fv) || !opt_value(&fv, &v))
        return def;
    if (present)
        *present = true;
    if (avro_value_get_type(&v) == AVRO_INT32) {
        int32_t x = 0;
        avro_value_get_int(&v, &x);
        return x;
    }
    int64_t x = def;
    avro_value_get_long(&v, &x);
    return x;
}

bool fs_av_read_bool(avro_value_t *rec, const char *f, bool def)
{
    avro_value_t fv;
    int b;
    if (!has_field(rec, f, &fv) || avro_value_get_boolean(&fv, &b))
        return def;
    return b != 0;
}

void fs_av_read_symbol(avro_value_t *rec, const char *f, char *out, size_t n)
{
    avro_value_t fv;
    out[0] = '\0';
    if (!has_field(rec, f, &fv))
        return;
    if (avro_value_get_type(&fv) == AVRO_ENUM) {
        int i = 0;
        avro_value_get_enum(&fv, &i);
        const char *sym = avro_schema_enum_get(avro_value_get_schema(&fv), i);
        snprintf(out, n, "%s", sym ? sym : "");
    } else
        fs_av_read_str(rec, f, out, n, NULL);
}
