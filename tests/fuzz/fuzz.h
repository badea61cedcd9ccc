/* Support of the libFuzzer harnesses (tests/fuzz/fuzz_*.c): a reader that turns the fuzzer's
 * bytes into choices, and checks that stop the run with a message naming what broke.
 *
 * The reader never fails: once the bytes are used up every choice is 0 (the first option),
 * so any input, even an empty one, is a valid program for a harness, and a byte the fuzzer
 * changes changes one choice. A failed check prints the file, line and values to stderr and
 * aborts, which libFuzzer reports as a crash and saves the input. */
#ifndef FS_FUZZ_H
#define FS_FUZZ_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The JWT secret the jwt harness verifies with and make_seeds signs its seed tokens with. */
#define FZ_JWT_SECRET "fuzz-secret-0123456789abcdefghijklmnopqrstuvwxyz"

typedef struct {
    const uint8_t *p;
    size_t n, at;
} fz_input;

fz_input fz_input_of(const uint8_t *data, size_t size);
bool fz_more(const fz_input *in); /* bytes left */
uint8_t fz_byte(fz_input *in);
/* A number in [0, n) (n >= 1) from one byte, or two when n > 256. */
uint32_t fz_pick(fz_input *in, uint32_t n);
bool fz_bool(fz_input *in);
/* Up to max bytes as a NUL-terminated string into out[max + 1]; a 0 byte ends it early. */
size_t fz_text(fz_input *in, char *out, size_t max);

_Noreturn void fz_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define FZ_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fz_fail(__FILE__, __LINE__, "check failed: %s", #cond);                                \
    } while (0)
/* Equal integers / strings; the message names the field and both values. */
#define FZ_SAME_INT(what, a, b)                                                                    \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_)                                                                              \
            fz_fail(__FILE__, __LINE__, "%s: %lld != %lld", what, a_, b_);                         \
    } while (0)
#define FZ_SAME_STR(what, a, b) fz_same_str(__FILE__, __LINE__, what, a, b)
void fz_same_str(const char *file, int line, const char *what, const char *a, const char *b);

/* The codec every harness decodes with, made once (from LLVMFuzzerInitialize); a codec that
 * cannot be made fails the run. */
struct fs_codec;
struct fs_codec *fz_codec_new(void);

#endif
