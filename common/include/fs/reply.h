/* Decision replies: the inventory processor's answer, straight to the API instance waiting
 * for it, before the processor's transaction commits.
 *
 * Why this is safe, and what else must hold, is in docs/architecture.md ("Answer at the
 * decision"): a decision is a pure function of the ordered command log and the committed
 * state, so the one a partition's single writer has taken is the one that commits, whether
 * its transaction commits now or the command is re-decided after an abort or by the next
 * owner. The reply is only the fast path: a lost datagram costs latency, never an answer,
 * because the API also reads the committed decisions (inventory.events, read_committed).
 *
 * Wire: a command carries the headers `reply-to` ("IPv4:port" of the API's UDP socket) and
 * `reply-token` (32 hex characters, random per request). The processor sends one UDP
 * datagram: "FSR1", the 32 token characters, the command's partition (4 bytes, big endian)
 * and the event exactly as it produces it to inventory.events (Avro single-object). The API
 * accepts a datagram only for a request still waiting with that token, so a stray or forged
 * datagram from someone who cannot read the command topic changes nothing.
 *
 * Threads: a sender is used by one thread; parsing is pure. */
#ifndef FS_REPLY_H
#define FS_REPLY_H
#include "fs/err.h"
#include <stddef.h>
#include <stdint.h>

#define FS_REPLY_TOKEN_LEN 32
#define FS_REPLY_MAX 4096

typedef struct fs_reply_sender fs_reply_sender;
/* NULL with *err when no socket can be had. Destroy accepts NULL. */
fs_reply_sender *fs_reply_sender_new(fs_err *err);
void fs_reply_sender_destroy(fs_reply_sender *s);
/* Best effort, never blocks: returns 0 when handed to the kernel, -1 otherwise (a bad
 * address or token, a full socket buffer); the caller goes on either way. */
int fs_reply_send(fs_reply_sender *s, const char *to, const char *token, int32_t partition,
                  const void *event, size_t len);

/* Opens a UDP socket on `addr` (IPv4, port 0: any) and writes the "IP:port" that commands
 * should name into bound. Returns the descriptor, or -1 with *err. */
int fs_reply_listen(const char *addr, char *bound, size_t n, fs_err *err);
/* Splits a datagram. Returns 0 with token (NUL-terminated copy), partition and the event's
 * bytes (pointing into buf), or -1 when it is not a reply. */
int fs_reply_parse(const void *buf, size_t len, char token[FS_REPLY_TOKEN_LEN + 1], int32_t *partition,
                   const void **event, size_t *event_len);

#endif
