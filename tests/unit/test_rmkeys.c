/* The Redis read model's key builder (common/src/readmodel.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/readmodel.h"

#include <string.h>

static void test_keys(void **state)
{
    (void)state;
    char k[FS_RM_KEY_MAX];
    assert_string_equal(fs_rm_key(k, sizeof k, 7, FS_RM_PRODUCT, "p-1"), "fs:rm:7:p:p-1");
    assert_string_equal(fs_rm_key(k, sizeof k, 7, FS_RM_PRODUCTS, NULL), "fs:rm:7:products");
    assert_string_equal(fs_rm_key(k, sizeof k, 12, FS_RM_ORDER, "o-9"), "fs:rm:12:o:o-9");
    assert_string_equal(fs_rm_key(k, sizeof k, 12, FS_RM_HISTORY, "o-9"), "fs:rm:12:h:o-9");
    assert_string_equal(fs_rm_key(k, sizeof k, 3, FS_RM_OFFSETS, "ignored"), "fs:rm:3:offsets");
    assert_string_equal(fs_rm_key(k, sizeof k, 3, FS_RM_META, NULL), "fs:rm:3:meta");
    assert_string_equal(fs_rm_key(k, sizeof k, 3, FS_RM_ALL, NULL), "fs:rm:3:*");
    /* the Lua reader spells the same layout */
    assert_non_null(strstr(FS_RM_LUA_GET_ORDER, "':o:'"));
    assert_non_null(strstr(FS_RM_LUA_GET_ORDER, "':h:'"));
    /* never cut short, never without its id */
    char small[12];
    assert_null(fs_rm_key(small, sizeof small, 7, FS_RM_PRODUCT, "a-long-product-id"));
    assert_string_equal(small, "");
    assert_null(fs_rm_key(k, sizeof k, 7, FS_RM_ORDER, NULL));
    assert_null(fs_rm_key(k, sizeof k, 7, (fs_rm_kind)99, "x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_keys)};
    return cmocka_run_group_tests_name("rmkeys", tests, NULL, NULL);
}
