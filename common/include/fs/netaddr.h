/* Client addresses behind proxies.
 *
 * A request's client address is its TCP peer, unless the peer is a trusted proxy (the edge);
 * then it is taken from X-Forwarded-For, read from the right: the first entry that is not
 * itself a trusted proxy is the client (each trusted hop appended the address it saw; what
 * lies further left was written by the client and proves nothing). A header from a peer that
 * is not trusted is ignored, so a client cannot choose the address its rate limits count.
 *
 * Pure functions, no global state: a list is built once at start and only read afterwards,
 * from any thread. */
#ifndef FS_NETADDR_H
#define FS_NETADDR_H
#include "fs/err.h"

#include <stdbool.h>
#include <stddef.h>

#define FS_ADDR_STR_MAX 46 /* INET6_ADDRSTRLEN */
#define FS_ADDR_LIST_MAX 32

typedef struct {
    int family;           /* AF_INET or AF_INET6 */
    unsigned char net[16]; /* network bytes, masked */
    int prefix;           /* bits */
} fs_cidr;

typedef struct {
    fs_cidr items[FS_ADDR_LIST_MAX];
    int n;
} fs_addr_list;

/* Parses "127.0.0.1, 10.0.0.0/8 ::1" (commas or spaces) into *list. An empty or NULL text
 * gives an empty list (nothing trusted). -1 with *err naming the bad entry. */
int fs_addr_list_parse(const char *text, fs_addr_list *list, fs_err *err);
/* true when `addr` (text; IPv4, IPv6, or IPv4-mapped IPv6) lies in one of the list's ranges */
bool fs_addr_list_has(const fs_addr_list *list, const char *addr);
/* Writes the client address of a request from `peer` (its TCP peer) and `xff` (the
 * X-Forwarded-For header, or NULL) into out (at least FS_ADDR_STR_MAX bytes). Entries that
 * are not addresses end the walk: the last good one to their right is the answer, or the
 * peer. Returns true when the address came from the header. */
bool fs_client_addr(const fs_addr_list *trusted, const char *peer, const char *xff, char *out,
                    size_t outlen);

#endif
