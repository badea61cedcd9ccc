/* Mail header values that cannot inject headers.
 *
 * A value made only of printable ASCII is kept as it is. Anything else (UTF-8 text such as
 * a Korean product name) becomes RFC 2047 encoded-words, "=?UTF-8?B?...?=", at most 64
 * characters each, folded onto continuation lines; control characters (CR and LF among them)
 * are replaced by spaces first, so no value can end its header line or start another. */
#ifndef FS_MAILHDR_H
#define FS_MAILHDR_H
#include <stddef.h>

/* Writes the header-safe form of `in` into out (NUL-terminated). Returns 0, or -1 when out
 * is too small (out then holds an empty string). */
int fs_mail_header_value(const char *in, char *out, size_t outlen);

#endif
