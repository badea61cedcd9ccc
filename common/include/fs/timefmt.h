/* Times on the API: RFC 3339 / ISO 8601 UTC strings with milliseconds
 * ("2026-11-21T08:00:00.000Z"). Inside, milliseconds since the Unix epoch. */
#ifndef FS_TIMEFMT_H
#define FS_TIMEFMT_H
#include <stdint.h>

#define FS_TIME_STR_LEN 32
/* Formats ms into out (at least FS_TIME_STR_LEN bytes). */
void fs_time_format(int64_t ms, char *out);
/* Parses "YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM|-HH:MM)". Returns 0 or -1. */
int fs_time_parse(const char *s, int64_t *ms);

#endif
