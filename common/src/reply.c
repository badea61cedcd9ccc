/* Decision replies over UDP; see fs/reply.h. The sender caches the last few parsed
 * addresses (there is one per API instance, so a handful). */
#include "fs/reply.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CACHE 16

struct fs_reply_sender {
    int fd;
    struct {
        char to[64];
        struct sockaddr_in sa;
    } cache[CACHE];
    int next;
};

static int parse_addr(const char *s, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65535)
        return -1;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

fs_reply_sender *fs_reply_sender_new(fs_err *err)
{
    fs_reply_sender *s = calloc(1, sizeof *s);
    if (!s) {
        fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
        return NULL;
    }
    s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        fs_err_set(err, FS_ERR_FATAL, errno, "reply socket: %s", strerror(errno));
        free(s);
        return NULL;
    }
    return s;
}

void fs_reply_sender_destroy(fs_reply_sender *s)
{
    if (!s)
        return;
    close(s->fd);
    free(s);
}

static bool token_ok(const char *t)
{
    if (!t || strlen(t) != FS_REPLY_TOKEN_LEN)
        return false;
    for (const char *c = t; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
            return false;
    return true;
}

int fs_reply_send(fs_reply_sender *s, const char *to, const char *token, int32_t partition,
                  const void *event, size_t len)
{
    if (!s || !to || !token_ok(token) || len + 40 > FS_REPLY_MAX || strlen(to) >= 64)
        return -1;
    struct sockaddr_in *sa = NULL;
    for (int i = 0; i < CACHE; i++)
        if (!strcmp(s->cache[i].to, to)) {
            sa = &s->cache[i].sa;
            break;
        }
    if (!sa) {
        int slot = s->next++ % CACHE;
        if (parse_addr(to, &s->cache[slot].sa)) {
            s->cache[slot].to[0] = '\0';
            return -1;
        }
        snprintf(s->cache[slot].to, sizeof s->cache[slot].to, "%s", to);
        sa = &s->cache[slot].sa;
    }
    unsigned char buf[FS_REPLY_MAX];
    memcpy(buf, "FSR1", 4);
    memcpy(buf + 4, token, FS_REPLY_TOKEN_LEN);
    uint32_t p = htonl((uint32_t)partition);
    memcpy(buf + 4 + FS_REPLY_TOKEN_LEN, &p, 4);
    memcpy(buf + 8 + FS_REPLY_TOKEN_LEN, event, len);
    ssize_t n = sendto(s->fd, buf, len + 8 + FS_REPLY_TOKEN_LEN, MSG_DONTWAIT, (struct sockaddr *)sa,
                       sizeof *sa);
    return n < 0 ? -1 : 0;
}

int fs_reply_listen(const char *addr, char *bound, size_t n, fs_err *err)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
        return fs_err_set(err, FS_ERR_INVALID, 0, "reply address \"%.64s\": not an IPv4 address", addr);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fs_err_set(err, FS_ERR_FATAL, errno, "reply socket: %s", strerror(errno));
    int big = 4 << 20; /* a burst of decisions must not overflow the receive buffer */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    socklen_t sl = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || getsockname(fd, (struct sockaddr *)&sa, &sl)) {
        int e = errno;
        close(fd);
        return fs_err_set(err, FS_ERR_FATAL, e, "reply socket bind %s: %s", addr, strerror(e));
    }
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
    snprintf(bound, n, "%s:%u", ip, (unsigned)ntohs(sa.sin_port));
    return fd;
}

int fs_reply_parse(const void *buf, size_t len, char token[FS_REPLY_TOKEN_LEN + 1], int32_t *partition,
                   const void **event, size_t *event_len)
{
    const unsigned char *b = buf;
    if (len <= 8 + FS_REPLY_TOKEN_LEN || memcmp(b, "FSR1", 4))
        return -1;
    memcpy(token, b + 4, FS_REPLY_TOKEN_LEN);
    token[FS_REPLY_TOKEN_LEN] = '\0';
    if (!token_ok(token))
        return -1;
    uint32_t p;
    memcpy(&p, b + 4 + FS_REPLY_TOKEN_LEN, 4);
    *partition = (int32_t)ntohl(p);
    *event = b + 8 + FS_REPLY_TOKEN_LEN;
    *event_len = len - 8 - FS_REPLY_TOKEN_LEN;
    return 0;
}
