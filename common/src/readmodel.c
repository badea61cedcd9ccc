/* Redis read-model keys; see fs/readmodel.h. */
#include "fs/readmodel.h"

#include <stdbool.h>
#include <stdio.h>

const char *fs_rm_key(char *out, size_t n, long long gen, fs_rm_kind kind, const char *id)
{
    static const char *const kinds[] = {"p:", "products", "o:", "h:", "offsets", "meta", "*"};
    const char *k = (unsigned)kind < sizeof kinds / sizeof kinds[0] ? kinds[kind] : NULL;
    bool with_id = kind == FS_RM_PRODUCT || kind == FS_RM_ORDER || kind == FS_RM_HISTORY;
    int len = !k || (with_id && !id) ? -1
                                     : snprintf(out, n, "fs:rm:%lld:%s%s", gen, k, with_id ? id : "");
    if (len < 0 || (size_t)len >= n) {
        if (n)
            out[0] = '\0';
        return NULL;
    }
    return out;
}
