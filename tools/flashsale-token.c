/* flashsale-token: prints an access token (HS256 JWT) signed with FLASHSALE_JWT_SECRET.
 *
 *   flashsale-token --sub MEMBER_ID --role member|admin [--ttl SECONDS]   (ttl 3600)
 *
 * For operators, tests and load tests. The secret comes from the environment only. */
#include "fs/config.h"
#include "fs/jwt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void)
{
    fprintf(stderr, "usage: flashsale-token --sub ID --role member|admin [--ttl SECONDS]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *sub = NULL, *role = NULL, *secret = NULL;
    long ttl = 3600;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            return usage();
        if (!strcmp(argv[i], "--sub"))
            sub = argv[++i];
        else if (!strcmp(argv[i], "--role"))
            role = argv[++i];
        else if (!strcmp(argv[i], "--ttl")) {
            char *end;
            ttl = strtol(argv[++i], &end, 10);
            if (*end || ttl < 1 || ttl > 366L * 24 * 3600)
                return usage();
        } else
            return usage();
    }
    if (!sub || !role || !*sub)
        return usage();
    fs_err err = {0};
    if (fs_env_secret("FLASHSALE_JWT_SECRET", FS_JWT_SECRET_MIN, true, &secret, &err)) {
        fprintf(stderr, "flashsale-token: %s\n", err.msg);
        return 2;
    }
    char *tok = NULL;
    if (fs_jwt_issue(secret, sub, role, ttl, &tok, &err)) {
        fprintf(stderr, "flashsale-token: %s\n", err.msg);
        return 1;
    }
    printf("%s\n", tok);
    free(tok);
    return 0;
}
