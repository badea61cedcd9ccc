/* Client addresses behind proxies; see fs/netaddr.h. */
#include "fs/netaddr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Address text to bytes; IPv4-mapped IPv6 ("::ffff:1.2.3.4") becomes IPv4. */
static int parse_addr(const char *s, size_t len, int *family, unsigned char out[16])
{
    char buf[FS_ADDR_STR_MAX + 1];
    if (len == 0 || len > FS_ADDR_STR_MAX)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, out) == 1) {
        *family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, out) != 1)
        return -1;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (!memcmp(out, mapped, 12)) {
        memmove(out, out + 12, 4);
        *family = AF_INET;
    } else {
        *family = AF_INET6;
    }
    return 0;
}

static void mask(unsigned char *b, int bytes, int prefix)
{
    for (int i = 0; i < bytes; i++) {
        int keep = prefix - i * 8;
        b[i] &= keep >= 8 ? 0xff : keep <= 0 ? 0 : (unsigned char)(0xff << (8 - keep));
    }
}

int fs_addr_list_parse(const char *text, fs_addr_list *list, fs_err *err)
{
    memset(list, 0, sizeof *list);
    const char *p = text ? text : "";
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (!*p)
            break;
        const char *end = p;
        while (*end && *end != ' ' && *end != ',' && *end != '\t')
            end++;
        const char *slash = memchr(p, '/', (size_t)(end - p));
        size_t alen = (size_t)((slash ? slash : end) - p);
        fs_cidr c = {0};
        if (list->n == FS_ADDR_LIST_MAX)
            return fs_err_set(err, FS_ERR_FATAL, 0, "more than %d entries", FS_ADDR_LIST_MAX);
        if (parse_addr(p, alen, &c.family, c.net))
            return fs_err_set(err, FS_ERR_FATAL, 0, "\"%.*s\" is not an IP address", (int)(end - p), p);
        int max = c.family == AF_INET ? 32 : 128;
        c.prefix = max;
        if (slash) {
            char *stop = NULL, num[8];
            size_t nl = (size_t)(end - slash - 1);
            if (nl == 0 || nl >= sizeof num)
                return fs_err_set(err, FS_ERR_FATAL, 0, "\"%.*s\": bad prefix length", (int)(end - p), p);
            memcpy(num, slash + 1, nl);
            num[nl] = '\0';
            long v = strtol(num, &stop, 10);
            if (*stop || v < 0 || v > max)
                return fs_err_set(err, FS_ERR_FATAL, 0, "\"%.*s\": bad prefix length", (int)(end - p), p);
            c.prefix = (int)v;
        }
        mask(c.net, max / 8, c.prefix);
        list->items[list->n++] = c;
        p = end;
    }
    return 0;
}

static bool has_bytes(const fs_addr_list *list, int family, const unsigned char *b)
{
    for (int i = 0; i < list->n; i++) {
        const fs_cidr *c = &list->items[i];
        if (c->family != family)
            continue;
        unsigned char m[16];
        int bytes = family == AF_INET ? 4 : 16;
        memcpy(m, b, (size_t)bytes);
        mask(m, bytes, c->prefix);
        if (!memcmp(m, c->net, (size_t)bytes))
            return true;
    }
    return false;
}

bool fs_addr_list_has(const fs_addr_list *list, const char *addr)
{
    int family;
    unsigned char b[16];
    if (!list || !list->n || !addr || parse_addr(addr, strlen(addr), &family, b))
        return false;
    return has_bytes(list, family, b);
}

bool fs_client_addr(const fs_addr_list *trusted, const char *peer, const char *xff, char *out,
                    size_t outlen)
{
    snprintf(out, outlen, "%s", peer ? peer : "");
    if (!xff || !*xff || !fs_addr_list_has(trusted, peer))
        return false;
    bool from_header = false;
    const char *end = xff + strlen(xff);
    while (end > xff) {
        const char *start = end;
        while (start > xff && start[-1] != ',')
            start--;
        const char *a = start, *b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        int family;
        unsigned char bytes[16];
        if (parse_addr(a, (size_t)(b - a), &family, bytes))
            break; /* not an address: trust nothing further left */
        snprintf(out, outlen, "%.*s", (int)(b - a), a);
        from_header = true;
        if (!has_bytes(trusted, family, bytes))
            break; /* the first hop that is not ours: the client */
        end = start > xff ? start - 1 : xff;
    }
    return from_header;
}
