/* Support of the libFuzzer harnesses; see fuzz.h. */
#include "fuzz.h"

#include "fs/codec.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

fz_input fz_input_of(const uint8_t *data, size_t size)
{
    return (fz_input){data, size, 0};
}

bool fz_more(const fz_input *in)
{
    return in->at < in->n;
}

uint8_t fz_byte(fz_input *in)
{
    return in->at < in->n ? in->p[in->at++] : 0;
}

uint32_t fz_pick(fz_input *in, uint32_t n)
{
    uint32_t v = fz_byte(in);
    if (n > 256)
        v = v << 8 | fz_byte(in);
    return n ? v % n : 0;
}

bool fz_bool(fz_input *in)
{
    return fz_byte(in) & 1;
}

size_t fz_text(fz_input *in, char *out, size_t max)
{
    size_t k = 0;
    while (k < max && fz_more(in)) {
        uint8_t c = fz_byte(in);
        if (!c)
            break;
        out[k++] = (char)c;
    }
    out[k] = '\0';
    return k;
}

void fz_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "\n%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

void fz_same_str(const char *file, int line, const char *what, const char *a, const char *b)
{
    if (strcmp(a, b))
        fz_fail(file, line, "%s: \"%s\" != \"%s\"", what, a, b);
}

struct fs_codec *fz_codec_new(void)
{
    fs_err err = {0};
    fs_codec *codec = fs_codec_new(&err);
    if (!codec)
        fz_fail(__FILE__, __LINE__, "codec: %s", err.msg);
    return codec;
}
